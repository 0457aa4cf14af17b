//! The ledger entry format (version 1). Every integer is big-endian with a fixed width; every
//! variable-length field is length-prefixed. See `docs/ledger.md` for the byte layout.
//!
//! An entry is `version(u8) ‖ term(u64) ‖ seqno(u64) ‖ payload`; the payload (what the leader
//! proposes before the log assigns term and seqno) is `kind(u8) ‖ body`. The Merkle leaf of an
//! entry is `H(0x00 ‖ SHA-256(entry))`.
//!
//! (Length: ~550 lines of format code and ~90 of round-trip tests; one format, one module.)

use sha2::{Digest, Sha256};

use crate::TxId;

/// The entry format version written by this code.
pub const ENTRY_VERSION: u8 = 1;
/// Largest encoded entry accepted by the decoder (64 MiB).
pub const MAX_ENTRY_BYTES: usize = 64 << 20;

/// A ledger entry: one replicated log position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The term of the leader that proposed it.
    pub term: u64,
    /// Its position (1-based); the Merkle leaf index is `seqno - 1`.
    pub seqno: u64,
    /// What it holds.
    pub payload: Payload,
}

/// The content of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A new leader's first entry.
    Blank,
    /// A cluster membership change (openraft membership as JSON).
    Membership(Vec<u8>),
    /// A transaction: read set and write set of one request or governance action.
    Transaction(Transaction),
    /// A signature transaction: a signed checkpoint of the tree.
    Signature(SignatureEntry),
}

/// A read recorded for optimistic concurrency control at apply time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Internal table name.
    pub table: String,
    /// The key.
    pub key: Vec<u8>,
    /// The version seen (`None`: absent).
    pub version: Option<TxId>,
}

/// A scan recorded for phantom detection at apply time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRead {
    /// Internal table name.
    pub table: String,
    /// The table version seen (tx id of its last write, `None`: never written).
    pub version: Option<TxId>,
}

/// A write: `value` `None` deletes. An append (`append`) writes under
/// `key ‖ seqno (u64 BE) ‖ n (u32 BE)`, `n` counting the transaction's appends in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Internal table name.
    pub table: String,
    /// The key (for an append: the prefix).
    pub key: Vec<u8>,
    /// The new value (AES-256-GCM ciphertext for private tables), or `None` to delete.
    pub value: Option<Vec<u8>>,
    /// An append: the key is completed when the transaction is ordered.
    pub append: bool,
}

/// The key of the `n`-th append of the transaction at `seqno` under `prefix`.
pub fn append_key(prefix: &[u8], seqno: u64, n: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 12);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&seqno.to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k
}

impl Transaction {
    /// Each write with the key it is stored under once the transaction is at `seqno`: an
    /// append's prefix completed with `seqno ‖ n`, `n` counting the appends in order.
    pub fn resolved_writes(&self, seqno: u64) -> impl Iterator<Item = (&Write, Vec<u8>)> {
        let mut appends = 0u32;
        self.writes.iter().map(move |w| {
            let key = if w.append {
                appends += 1;
                append_key(&w.key, seqno, appends - 1)
            } else {
                w.key.clone()
            };
            (w, key)
        })
    }
}

/// A transaction entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transaction {
    /// Transaction time, ms since the Unix epoch, set by the leader.
    pub tx_time_ms: u64,
    /// The caller's id: member or session id, `user:<hex of the blinded issuer|subject>`, empty if
    /// anonymous.
    pub caller: String,
    /// What was done, e.g. `PUT /app/contracts/c1` or a governance action.
    pub operation: String,
    /// For a plugin request, the keyed hash (`kv.blind`) of `METHOD path\n` ‖ body; for a
    /// governance write, SHA-256 of its signed message.
    pub request_digest: [u8; 32],
    /// The signed message of a governance write, encrypted with the ledger secret and bound to
    /// `request_digest` (docs/ledger.md); else empty.
    pub envelope: Vec<u8>,
    /// Digest of application claims bound into the entry (zero if none).
    pub claims_digest: [u8; 32],
    /// Keys read.
    pub reads: Vec<Read>,
    /// Tables scanned.
    pub table_reads: Vec<TableRead>,
    /// Writes, in key order.
    pub writes: Vec<Write>,
}

/// A signature transaction: the leader's signed checkpoint of the tree at `tree_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureEntry {
    /// When it was signed (ms).
    pub tx_time_ms: u64,
    /// The signing node's raft id.
    pub node_id: u64,
    /// The tree size the checkpoint covers (≤ seqno − 1).
    pub tree_size: u64,
    /// The root at `tree_size`.
    pub root: [u8; 32],
    /// The C2SP signed note of the checkpoint.
    pub note: String,
    /// Ed25519 signature of the COSE receipt's Sig_structure (detached payload = root).
    pub cose_signature: [u8; 64],
}

/// Entry kinds (the first payload byte).
mod kind {
    pub const BLANK: u8 = 0;
    pub const MEMBERSHIP: u8 = 1;
    pub const TRANSACTION: u8 = 2;
    pub const SIGNATURE: u8 = 3;
}

/// Why bytes are not an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed ledger entry: {0}")]
pub struct DecodeError(pub String);

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    /// Length-prefixed (u16) UTF-8; callers keep names below 64 KiB.
    fn str16(&mut self, s: &str) {
        let b = &s.as_bytes()[..s.floor_char_boundary(u16::MAX as usize)];
        self.u16(b.len() as u16);
        self.raw(b);
    }
    fn bytes32(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.raw(b);
    }
    fn version(&mut self, v: Option<TxId>) {
        match v {
            None => self.u8(0),
            Some(t) => {
                self.u8(1);
                self.u64(t.term);
                self.u64(t.seqno);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError(format!("truncated at {what}")));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn str16(&mut self, what: &str) -> Result<String, DecodeError> {
        let n = self.u16(what)? as usize;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError(format!("{what} is not UTF-8")))
    }
    fn bytes32(&mut self, what: &str) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
    fn version(&mut self, what: &str) -> Result<Option<TxId>, DecodeError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => Ok(Some(TxId::new(self.u64(what)?, self.u64(what)?))),
            other => Err(DecodeError(format!("{what}: invalid version flag {other}"))),
        }
    }
    /// A count of items, each at least `min` bytes, checked against what is left.
    fn count(&mut self, what: &str, min: usize) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min) > self.0.len() {
            return Err(DecodeError(format!("{what}: count {n} exceeds the entry")));
        }
        Ok(n)
    }
}

impl Payload {
    /// Encode the payload (kind ‖ body).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(256));
        match self {
            Payload::Blank => w.u8(kind::BLANK),
            Payload::Membership(m) => {
                w.u8(kind::MEMBERSHIP);
                w.bytes32(m);
            }
            Payload::Transaction(t) => {
                w.u8(kind::TRANSACTION);
                w.u64(t.tx_time_ms);
                w.str16(&t.caller);
                w.str16(&t.operation);
                w.raw(&t.request_digest);
                w.bytes32(&t.envelope);
                w.raw(&t.claims_digest);
                w.u32(t.reads.len() as u32);
                for r in &t.reads {
                    w.str16(&r.table);
                    w.bytes32(&r.key);
                    w.version(r.version);
                }
                w.u32(t.table_reads.len() as u32);
                for r in &t.table_reads {
                    w.str16(&r.table);
                    w.version(r.version);
                }
                w.u32(t.writes.len() as u32);
                for x in &t.writes {
                    w.str16(&x.table);
                    w.bytes32(&x.key);
                    match (&x.value, x.append) {
                        (Some(v), false) => {
                            w.u8(0);
                            w.bytes32(v);
                        }
                        (None, _) => w.u8(1),
                        (Some(v), true) => {
                            w.u8(2);
                            w.bytes32(v);
                        }
                    }
                }
            }
            Payload::Signature(s) => {
                w.u8(kind::SIGNATURE);
                w.u64(s.tx_time_ms);
                w.u64(s.node_id);
                w.u64(s.tree_size);
                w.raw(&s.root);
                w.bytes32(s.note.as_bytes());
                w.raw(&s.cose_signature);
            }
        }
        w.0
    }

    /// Decode a payload; every byte must be used.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let p = match r.u8("kind")? {
            kind::BLANK => Payload::Blank,
            kind::MEMBERSHIP => Payload::Membership(r.bytes32("membership")?),
            kind::TRANSACTION => {
                let tx_time_ms = r.u64("tx_time")?;
                let caller = r.str16("caller")?;
                let operation = r.str16("operation")?;
                let request_digest = r.arr::<32>("request digest")?;
                let envelope = r.bytes32("envelope")?;
                let claims_digest = r.arr::<32>("claims digest")?;
                let n = r.count("reads", 7)?;
                let mut reads = Vec::with_capacity(n);
                for _ in 0..n {
                    reads.push(Read {
                        table: r.str16("read table")?,
                        key: r.bytes32("read key")?,
                        version: r.version("read version")?,
                    });
                }
                let n = r.count("table reads", 3)?;
                let mut table_reads = Vec::with_capacity(n);
                for _ in 0..n {
                    table_reads.push(TableRead { table: r.str16("scan table")?, version: r.version("scan version")? });
                }
                let n = r.count("writes", 7)?;
                let mut writes = Vec::with_capacity(n);
                for _ in 0..n {
                    let table = r.str16("write table")?;
                    let key = r.bytes32("write key")?;
                    let (value, append) = match r.u8("write op")? {
                        0 => (Some(r.bytes32("write value")?), false),
                        1 => (None, false),
                        2 => (Some(r.bytes32("append value")?), true),
                        other => return Err(DecodeError(format!("invalid write op {other}"))),
                    };
                    writes.push(Write { table, key, value, append });
                }
                Payload::Transaction(Transaction {
                    tx_time_ms,
                    caller,
                    operation,
                    request_digest,
                    envelope,
                    claims_digest,
                    reads,
                    table_reads,
                    writes,
                })
            }
            kind::SIGNATURE => {
                let tx_time_ms = r.u64("tx_time")?;
                let node_id = r.u64("node id")?;
                let tree_size = r.u64("tree size")?;
                let root = r.arr::<32>("root")?;
                let note =
                    String::from_utf8(r.bytes32("note")?).map_err(|_| DecodeError("note is not UTF-8".into()))?;
                let cose_signature = r.arr::<64>("cose signature")?;
                Payload::Signature(SignatureEntry { tx_time_ms, node_id, tree_size, root, note, cose_signature })
            }
            other => return Err(DecodeError(format!("unknown entry kind {other}"))),
        };
        if !r.0.is_empty() {
            return Err(DecodeError(format!("{} trailing bytes", r.0.len())));
        }
        Ok(p)
    }
}

impl Entry {
    /// The tx id.
    pub fn tx_id(&self) -> TxId {
        TxId::new(self.term, self.seqno)
    }

    /// Encode the entry.
    pub fn encode(&self) -> Vec<u8> {
        encode_with_payload(self.term, self.seqno, &self.payload.encode())
    }

    /// Decode an entry; every byte must be used.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(DecodeError(format!("{} bytes is larger than the {MAX_ENTRY_BYTES}-byte limit", bytes.len())));
        }
        let mut r = Reader(bytes);
        let v = r.u8("version")?;
        if v != ENTRY_VERSION {
            return Err(DecodeError(format!("unknown entry version {v}")));
        }
        let term = r.u64("term")?;
        let seqno = r.u64("seqno")?;
        Ok(Entry { term, seqno, payload: Payload::decode(r.0)? })
    }
}

/// One record of the replicated (raft) log. The leader groups the transactions that arrive while
/// the previous group is being flushed into one record (group commit); applying a record expands
/// it into consecutive ledger entries, one per transaction, each with its own seqno and Merkle
/// leaf. Blank and membership records expand into one entry each.
///
/// Layout: `version(u8) ‖ term(u64) ‖ index(u64) ‖ kind(u8) ‖ body` with kind 0 blank (no body),
/// 1 membership (`u32 len ‖ JSON`), 2 batch (`u32 count ‖ (u32 len ‖ payload)*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftRecord {
    /// The leader's term.
    pub term: u64,
    /// The raft log index (0-based).
    pub index: u64,
    /// What it holds.
    pub body: RaftBody,
}

/// The content of a raft record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaftBody {
    /// A new leader's first record.
    Blank,
    /// A membership change (openraft JSON).
    Membership(Vec<u8>),
    /// Encoded [`Payload`]s (transactions and signatures), in order.
    Batch(Vec<Vec<u8>>),
}

impl RaftRecord {
    /// Encode the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(64));
        w.u8(ENTRY_VERSION);
        w.u64(self.term);
        w.u64(self.index);
        match &self.body {
            RaftBody::Blank => w.u8(0),
            RaftBody::Membership(m) => {
                w.u8(1);
                w.bytes32(m);
            }
            RaftBody::Batch(items) => {
                w.u8(2);
                w.u32(items.len() as u32);
                for p in items {
                    w.bytes32(p);
                }
            }
        }
        w.0
    }

    /// Decode a record; every byte must be used.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let v = r.u8("version")?;
        if v != ENTRY_VERSION {
            return Err(DecodeError(format!("unknown record version {v}")));
        }
        let term = r.u64("term")?;
        let index = r.u64("index")?;
        let body = match r.u8("record kind")? {
            0 => RaftBody::Blank,
            1 => RaftBody::Membership(r.bytes32("membership")?),
            2 => {
                let n = r.count("batch", 4)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(r.bytes32("batch item")?);
                }
                RaftBody::Batch(items)
            }
            other => return Err(DecodeError(format!("unknown record kind {other}"))),
        };
        if !r.0.is_empty() {
            return Err(DecodeError(format!("{} trailing bytes", r.0.len())));
        }
        Ok(Self { term, index, body })
    }

    /// How many ledger entries this record expands into.
    pub fn entry_count(&self) -> u64 {
        match &self.body {
            RaftBody::Batch(items) => items.len() as u64,
            _ => 1,
        }
    }

    /// The encoded ledger entries of this record, numbered from `first_seqno`.
    pub fn expand(&self, first_seqno: u64) -> Vec<Vec<u8>> {
        match &self.body {
            RaftBody::Blank => vec![encode_with_payload(self.term, first_seqno, &Payload::Blank.encode())],
            RaftBody::Membership(m) => {
                vec![encode_with_payload(self.term, first_seqno, &Payload::Membership(m.clone()).encode())]
            }
            RaftBody::Batch(items) => {
                items.iter().zip(first_seqno..).map(|(p, seqno)| encode_with_payload(self.term, seqno, p)).collect()
            }
        }
    }
}

/// Encode an entry from its log position and an already encoded payload.
pub fn encode_with_payload(term: u64, seqno: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + payload.len());
    out.push(ENTRY_VERSION);
    out.extend_from_slice(&term.to_be_bytes());
    out.extend_from_slice(&seqno.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The leaf input of an entry: SHA-256 of its encoding. The Merkle leaf is
/// `H(0x00 ‖ leaf_input)`.
pub fn leaf_input(entry_bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(entry_bytes).into()
}

/// Whether an internal table is private: its values are encrypted with the ledger secret in
/// entries and in the state (docs/ledger.md, "What the ledger files reveal"). Plugin tables
/// (`<plugin>.<table>`) are private unless the table's name starts with `public.`. Governance
/// tables (`gov.<table>`) are public — members, plugins, the constitution, service status —
/// except `gov.private.*` (the host's secrets) and [`CONFIDENTIAL_GOV_TABLES`]; `sys.*` is public.
pub fn is_private_table(table: &str) -> bool {
    match table.split_once('.') {
        Some(("gov", rest)) => rest.starts_with("private.") || CONFIDENTIAL_GOV_TABLES.contains(&table),
        Some(("sys", _)) | None => false,
        Some((_, rest)) => !rest.starts_with("public."),
    }
}

/// Governance tables that plugins may read but the ledger files must not reveal: proposals
/// (their actions carry clean-room policies, deployment specs and user identities; so do the
/// signed messages recorded in entries, which are encrypted too) and the registered users.
pub const CONFIDENTIAL_GOV_TABLES: &[&str] = &["gov.proposals", "gov.user_identities"];

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Entry> {
        vec![
            Entry { term: 1, seqno: 1, payload: Payload::Blank },
            Entry { term: 1, seqno: 2, payload: Payload::Membership(br#"{"voters":[1]}"#.to_vec()) },
            Entry {
                term: 2,
                seqno: 3,
                payload: Payload::Transaction(Transaction {
                    tx_time_ms: 1_700_000_000_000,
                    caller: "m1".into(),
                    operation: "PUT /app/x".into(),
                    request_digest: [4; 32],
                    envelope: vec![1, 2, 3],
                    claims_digest: [5; 32],
                    reads: vec![Read { table: "p.t".into(), key: b"k".to_vec(), version: Some(TxId::new(1, 2)) }],
                    table_reads: vec![TableRead { table: "p.t".into(), version: None }],
                    writes: vec![
                        Write { table: "p.t".into(), key: b"k".to_vec(), value: Some(b"v".to_vec()), append: false },
                        Write { table: "p.t".into(), key: b"z".to_vec(), value: None, append: false },
                        Write { table: "p.log".into(), key: b"c1".to_vec(), value: Some(b"e".to_vec()), append: true },
                    ],
                }),
            },
            Entry {
                term: 2,
                seqno: 4,
                payload: Payload::Signature(SignatureEntry {
                    tx_time_ms: 9,
                    node_id: 1,
                    tree_size: 3,
                    root: [7; 32],
                    note: "o\n3\nAA==\n\n— o AAAA\n".into(),
                    cose_signature: [8; 64],
                }),
            },
        ]
    }

    #[test]
    fn round_trip_and_strict_decoding() {
        for e in sample() {
            let b = e.encode();
            assert_eq!(Entry::decode(&b).unwrap(), e);
            // Every truncation fails; so does a trailing byte.
            for n in 0..b.len() {
                assert!(Entry::decode(&b[..n]).is_err(), "truncated at {n}");
            }
            let mut long = b.clone();
            long.push(0);
            assert!(Entry::decode(&long).is_err());
        }
        let mut bad = sample()[0].encode();
        bad[0] = 2;
        assert!(Entry::decode(&bad).is_err(), "unknown version");
    }

    #[test]
    fn raft_records_round_trip_and_expand() {
        let tx = sample()[2].payload.encode();
        let r = RaftRecord { term: 3, index: 9, body: RaftBody::Batch(vec![tx.clone(), tx.clone()]) };
        let b = r.encode();
        assert_eq!(RaftRecord::decode(&b).unwrap(), r);
        for n in 0..b.len() {
            assert!(RaftRecord::decode(&b[..n]).is_err());
        }
        let entries = r.expand(41);
        assert_eq!(entries.len(), 2);
        let e = Entry::decode(&entries[1]).unwrap();
        assert_eq!((e.term, e.seqno), (3, 42));
        assert_eq!(
            Entry::decode(&RaftRecord { term: 1, index: 0, body: RaftBody::Blank }.expand(1)[0]).unwrap().payload,
            Payload::Blank
        );
    }

    #[test]
    fn private_tables() {
        assert!(is_private_table("secrets.private.values"));
        assert!(is_private_table("gov.private.recovery"));
        assert!(is_private_table("contracts.contracts"), "plugin tables are private by default");
        assert!(is_private_table("audit.events"));
        assert!(!is_private_table("notes.public.index"), "unless named public.*");
        assert!(!is_private_table("gov.members"), "governance tables are public by default");
        assert!(is_private_table("gov.proposals") && is_private_table("gov.user_identities"));
        assert!(!is_private_table("sys.nodes"));
        assert!(!is_private_table("no-namespace"));
    }
}
