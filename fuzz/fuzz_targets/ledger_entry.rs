//! `cgs_core::entry`: ledger entries, their payloads and the replicated-log (raft) records, as
//! `cgs ledger verify` and receipt verification decode them from files an outsider may hand over.
//!
//! Two modes, chosen by the first byte:
//! * raw bytes (even first byte): `Entry::decode`, `Payload::decode` and `RaftRecord::decode` of
//!   the rest; on success `encode` gives back exactly the input (decode∘encode = identity), and a
//!   raft record expands into entries that decode to its payloads at consecutive seqnos;
//! * structured (odd first byte): an `Entry` built from the rest with `arbitrary` is encoded and
//!   must decode to an equal entry. Strings may be inflated past the 64 KiB a `u16` length can
//!   hold (`Writer::str16` truncates those): the encoding must then still decode.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use cgs_core::TxId;
use cgs_core::entry::{
    Entry, Payload, RaftBody, RaftRecord, Read, SignatureEntry, TableRead, Transaction, Write, encode_with_payload,
};
use libfuzzer_sys::fuzz_target;

fn raw(data: &[u8]) {
    if let Ok(e) = Entry::decode(data) {
        assert_eq!(e.encode(), data, "Entry: decode∘encode is not the identity");
        assert_eq!(e.tx_id(), TxId::new(e.term, e.seqno));
    }
    if let Ok(p) = Payload::decode(data) {
        assert_eq!(p.encode(), data, "Payload: decode∘encode is not the identity");
        let e = Entry::decode(&encode_with_payload(3, 9, data)).expect("a payload makes an entry");
        assert_eq!(e.payload, p);
    }
    if let Ok(r) = RaftRecord::decode(data) {
        assert_eq!(r.encode(), data, "RaftRecord: decode∘encode is not the identity");
        let first = r.index.wrapping_add(1) % (1 << 40);
        let expanded = r.expand(first);
        assert_eq!(expanded.len() as u64, r.entry_count());
        for (i, bytes) in expanded.iter().enumerate() {
            let decoded = Entry::decode(bytes);
            match &r.body {
                RaftBody::Batch(items) => {
                    assert_eq!(decoded.as_ref().ok().map(|e| &e.payload), Payload::decode(&items[i]).ok().as_ref());
                }
                RaftBody::Blank => assert_eq!(decoded.as_ref().unwrap().payload, Payload::Blank),
                RaftBody::Membership(m) => {
                    assert_eq!(decoded.as_ref().unwrap().payload, Payload::Membership(m.clone()))
                }
            }
            if let Ok(e) = decoded {
                assert_eq!((e.term, e.seqno), (r.term, first + i as u64));
            }
        }
    }
}

/// A string, sometimes inflated past 64 KiB by repeating a (possibly multi-byte) piece.
fn string(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let s = String::arbitrary(u)?;
    if !s.is_empty() && u.ratio(1, 16)? {
        let target = 65_536 + usize::from(u8::arbitrary(u)?);
        return Ok(s.repeat(target.div_ceil(s.len())));
    }
    Ok(s)
}

fn version(u: &mut Unstructured<'_>) -> arbitrary::Result<Option<TxId>> {
    Ok(if bool::arbitrary(u)? { Some(TxId::new(u.arbitrary()?, u.arbitrary()?)) } else { None })
}

fn entry(u: &mut Unstructured<'_>) -> arbitrary::Result<Entry> {
    let payload = match u.int_in_range(0..=3u8)? {
        0 => Payload::Blank,
        1 => Payload::Membership(u.arbitrary()?),
        2 => {
            let mut t = Transaction {
                tx_time_ms: u.arbitrary()?,
                caller: string(u)?,
                operation: string(u)?,
                request_digest: u.arbitrary()?,
                envelope: u.arbitrary()?,
                claims_digest: u.arbitrary()?,
                ..Transaction::default()
            };
            for _ in 0..u.int_in_range(0..=4u8)? {
                t.reads.push(Read { table: string(u)?, key: u.arbitrary()?, version: version(u)? });
            }
            for _ in 0..u.int_in_range(0..=4u8)? {
                t.table_reads.push(TableRead { table: string(u)?, version: version(u)? });
            }
            for _ in 0..u.int_in_range(0..=4u8)? {
                let value: Option<Vec<u8>> = u.arbitrary()?;
                let append = value.is_some() && bool::arbitrary(u)?;
                t.writes.push(Write { table: string(u)?, key: u.arbitrary()?, value, append });
            }
            Payload::Transaction(t)
        }
        _ => Payload::Signature(SignatureEntry {
            tx_time_ms: u.arbitrary()?,
            node_id: u.arbitrary()?,
            tree_size: u.arbitrary()?,
            root: u.arbitrary()?,
            note: String::arbitrary(u)?,
            cose_signature: {
                let mut s = [0u8; 64];
                u.fill_buffer(&mut s)?;
                s
            },
        }),
    };
    Ok(Entry { term: u.arbitrary()?, seqno: u.arbitrary()?, payload })
}

fn strings_fit(e: &Entry) -> bool {
    let ok = |s: &str| s.len() <= usize::from(u16::MAX);
    match &e.payload {
        Payload::Transaction(t) => {
            ok(&t.caller)
                && ok(&t.operation)
                && t.reads.iter().all(|r| ok(&r.table))
                && t.table_reads.iter().all(|r| ok(&r.table))
                && t.writes.iter().all(|w| ok(&w.table))
        }
        _ => true,
    }
}

fn structured(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(e) = entry(&mut u) else { return };
    let bytes = e.encode();
    let decoded = Entry::decode(&bytes);
    if strings_fit(&e) {
        assert_eq!(decoded.as_ref(), Ok(&e), "encode∘decode is not the identity");
    } else {
        // Oversized names are cut to 64 KiB by the encoder; the entry must still decode.
        let d = decoded.unwrap_or_else(|err| panic!("an entry with a string over 64 KiB does not decode: {err}"));
        assert_eq!(d.encode(), bytes);
    }
    // Every entry a raft batch of it expands into decodes back.
    let rec = RaftRecord { term: e.term, index: 0, body: RaftBody::Batch(vec![e.payload.encode()]) };
    let back = RaftRecord::decode(&rec.encode()).expect("a raft record round-trips");
    assert_eq!(back, rec);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 { raw(rest) } else { structured(rest) }
});
