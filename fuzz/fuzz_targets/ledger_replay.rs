//! `cgs_ledger_format::verify::verify_data_dir`: what `cgs ledger verify DIR` does, on a
//! `ledger.redb` this target writes (in a tmpfs directory) from a fuzzed sequence of operations.
//!
//! The input (`arbitrary`) is a list of operations — blank and membership records, transactions
//! whose reads see the current or a stale version, checkpoints (signature entries the harness
//! signs with the test node key over the recomputed root), term changes, and raw payload bytes —
//! and an optional tamper: one byte of one stored entry changed, with or without the node's
//! stored leaf hash updated to match.
//!
//! The harness writes what a node writes: the replicated log (one record per operation), the
//! ledger (its expansion), the Merkle leaves and interior nodes, the state and the refused
//! transactions of a replay of the ledger (read-set check, then writes; appends completed with
//! `seqno ‖ n`), its table versions, its index of checkpoints, and the node's counters
//! (`ledger_size`, `ledger_term`, `last_non_signature`, `last_checkpoint`, `applied`). The input
//! may also set the count of applied entries back.
//!
//! Properties:
//! * nothing panics, whatever the entries;
//! * an honest ledger (no raw payloads, no tamper) verifies, and the report counts its entries,
//!   transactions, refused transactions, checkpoints and state keys;
//! * a ledger whose count of applied entries was set back never verifies;
//! * a tampered entry never verifies, whether the stored leaf still names the original or was
//!   rewritten too (the replicated log it was applied from differs).
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::LazyLock;

use arbitrary::Arbitrary;
use base64::Engine as _;
use cgs_core::TxId;
use cgs_core::entry::{Entry, Payload, RaftBody, RaftRecord, Read, SignatureEntry, TableRead, Transaction, Write};
use cgs_core::merkle::{CompactTree, leaf_hash, node_hash};
use cgs_ledger_format::store_format as fmt;
use cgs_ledger_format::verify::verify_data_dir;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const TABLES: &[&str] = &["contracts.contracts", "audit.events", "consent.options"];
const KEYS: &[&[u8]] = &[b"a", b"b", b"c\0d"];

#[derive(Arbitrary, Debug)]
enum Op {
    Blank,
    Membership(Vec<u8>),
    Tx { reads: Vec<(u8, u8, bool)>, scans: Vec<(u8, bool)>, writes: Vec<(u8, u8, Option<Vec<u8>>, bool)> },
    Checkpoint,
    NewTerm,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Tamper {
    entry: u16,
    pos: u16,
    mask: u8,
    rehash: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    register_key: bool,
    set_back: Option<u16>,
    pin: bool,
    ops: Vec<Op>,
    tamper: Option<Tamper>,
}

/// The replay the node would have done (the state it would hold).
#[derive(Default)]
struct Model {
    state: BTreeMap<(String, Vec<u8>), (TxId, Vec<u8>)>,
    tables: BTreeMap<String, TxId>,
    invalid: Vec<u64>,
    transactions: u64,
}

impl Model {
    fn apply(&mut self, seqno: u64, tx_id: TxId, t: &Transaction) {
        self.transactions += 1;
        let conflict =
            t.reads.iter().any(|r| self.state.get(&(r.table.clone(), r.key.clone())).map(|(v, _)| *v) != r.version)
                || t.table_reads.iter().any(|r| self.tables.get(&r.table).copied() != r.version);
        if conflict {
            self.invalid.push(seqno);
            return;
        }
        for (w, key) in t.resolved_writes(seqno) {
            match &w.value {
                Some(v) => {
                    self.state.insert((w.table.clone(), key), (tx_id, v.clone()));
                }
                None => {
                    self.state.remove(&(w.table.clone(), key));
                }
            }
            self.tables.insert(w.table.clone(), tx_id);
        }
    }
}

/// `CGS_FUZZ_DEBUG=1`: print what each input built and the verdict.
static DEBUG: LazyLock<bool> = LazyLock::new(|| std::env::var_os("CGS_FUZZ_DEBUG").is_some());

static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let base = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let d = base.join(format!("cgs-fuzz-ledger-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
});

struct Built {
    raft: Vec<Vec<u8>>,
    ledger: Vec<Vec<u8>>,
    leaves: Vec<[u8; 32]>,
    model: Model,
    checkpoints: Vec<u64>,
    /// What the node records beside the state as it applies: tree size → seqno of each
    /// signature entry, the last entry's term, the last entry that is not a signature.
    checkpoint_index: BTreeMap<u64, u64>,
    last_term: u64,
    last_non_signature: u64,
    honest: bool,
}

fn build(input: &Input) -> Built {
    let key = cgs_fuzz::node_key();
    let mut b = Built {
        raft: vec![],
        ledger: vec![],
        leaves: vec![],
        model: Model::default(),
        checkpoints: vec![],
        checkpoint_index: BTreeMap::new(),
        last_term: 0,
        last_non_signature: 0,
        honest: true,
    };
    let mut term = 1u64;
    let mut tree = CompactTree::new();
    let mut ops: Vec<Op> = Vec::new();
    if input.register_key {
        let record = serde_json::json!({
            "public_key": base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes()),
            "origin": cgs_fuzz::ORIGIN,
        });
        let t = Transaction {
            operation: "record node key".into(),
            writes: vec![Write {
                table: "sys.nodes".into(),
                key: 1u64.to_be_bytes().to_vec(),
                value: Some(record.to_string().into_bytes()),
                append: false,
            }],
            ..Transaction::default()
        };
        ops.push(Op::Raw(Payload::Transaction(t).encode()));
    }
    let user_ops = input.ops.iter().take(40);
    for op in ops.iter().chain(user_ops) {
        let seqno = b.ledger.len() as u64 + 1;
        let body = match op {
            Op::NewTerm => {
                term += 1;
                continue;
            }
            Op::Blank => RaftBody::Blank,
            Op::Membership(m) => RaftBody::Membership(m.clone()),
            Op::Tx { reads, scans, writes } => {
                let mut t = Transaction {
                    tx_time_ms: seqno,
                    caller: "m1".into(),
                    operation: "PUT /app/x".into(),
                    ..Transaction::default()
                };
                for (tb, k, current) in reads.iter().take(4) {
                    let (table, key) = (TABLES[*tb as usize % TABLES.len()], KEYS[*k as usize % KEYS.len()]);
                    let seen = b.model.state.get(&(table.to_string(), key.to_vec())).map(|(v, _)| *v);
                    let version = if *current { seen } else { Some(TxId::new(term, seqno + 7)) };
                    t.reads.push(Read { table: table.into(), key: key.to_vec(), version });
                }
                for (tb, current) in scans.iter().take(2) {
                    let table = TABLES[*tb as usize % TABLES.len()];
                    let version = if *current { b.model.tables.get(table).copied() } else { Some(TxId::new(0, 1)) };
                    t.table_reads.push(TableRead { table: table.into(), version });
                }
                for (tb, k, value, append) in writes.iter().take(4) {
                    let (table, key) = (TABLES[*tb as usize % TABLES.len()], KEYS[*k as usize % KEYS.len()]);
                    let append = *append && value.is_some();
                    t.writes.push(Write { table: table.into(), key: key.to_vec(), value: value.clone(), append });
                }
                RaftBody::Batch(vec![Payload::Transaction(t).encode()])
            }
            Op::Checkpoint => {
                let size = seqno - 1;
                let root = tree.root();
                let s = SignatureEntry {
                    tx_time_ms: seqno,
                    node_id: 1,
                    tree_size: size,
                    root,
                    note: cgs_fuzz::receipts::checkpoint(&key, size, &root),
                    cose_signature: cgs_fuzz::receipts::sign_root(&key, size, &root),
                };
                if !input.register_key {
                    b.honest = false; // no key is recorded for node 1: must fail
                }
                b.checkpoints.push(size);
                RaftBody::Batch(vec![Payload::Signature(s).encode()])
            }
            Op::Raw(p) => {
                if !(input.register_key && b.ledger.is_empty()) {
                    b.honest = false;
                }
                RaftBody::Batch(vec![p.clone()])
            }
        };
        let rec = RaftRecord { term, index: b.raft.len() as u64, body };
        for bytes in rec.expand(seqno) {
            match Entry::decode(&bytes) {
                Ok(Entry { seqno, payload: Payload::Signature(s), .. }) => {
                    b.checkpoint_index.insert(s.tree_size, seqno);
                }
                Ok(e) => {
                    if let Payload::Transaction(t) = &e.payload {
                        b.model.apply(e.seqno, e.tx_id(), t);
                    }
                    b.last_non_signature = e.seqno;
                }
                Err(_) => b.last_non_signature = b.ledger.len() as u64 + 1,
            }
            b.last_term = rec.term;
            let leaf = leaf_hash(&Sha256::digest(&bytes));
            tree.push(leaf);
            b.leaves.push(leaf);
            b.ledger.push(bytes);
        }
        b.raft.push(rec.encode());
    }
    b
}

fn write_db(b: &Built, ledger: &[Vec<u8>], leaves: &[[u8; 32]], applied: u64) {
    let path = DIR.join(fmt::FILE_NAME);
    let _ = std::fs::remove_file(&path);
    let db = redb::Database::create(&path).unwrap();
    let w = db.begin_write().unwrap();
    {
        let mut meta = w.open_table(fmt::META).unwrap();
        meta.insert("format", fmt::FORMAT_VERSION.to_be_bytes().as_slice()).unwrap();
        meta.insert("origin", cgs_fuzz::ORIGIN.as_bytes()).unwrap();
        meta.insert("ledger_size", applied.to_be_bytes().as_slice()).unwrap();
        let mut raft = w.open_table(fmt::RAFT_LOG).unwrap();
        for (i, r) in b.raft.iter().enumerate() {
            raft.insert(i as u64, r.as_slice()).unwrap();
        }
        let mut log = w.open_table(fmt::LEDGER).unwrap();
        for (i, e) in ledger.iter().enumerate() {
            log.insert(i as u64 + 1, e.as_slice()).unwrap();
        }
        let mut merkle = w.open_table(fmt::MERKLE).unwrap();
        for (i, l) in leaves.iter().enumerate() {
            merkle.insert((0u8, i as u64), l.as_slice()).unwrap();
        }
        // And the node's interior nodes: every complete aligned subtree of the leaves given.
        let (mut level, mut nodes) = (0u8, leaves.to_vec());
        while nodes.len() >= 2 {
            nodes = nodes.chunks_exact(2).map(|c| node_hash(&c[0], &c[1])).collect();
            level += 1;
            for (i, h) in nodes.iter().enumerate() {
                merkle.insert((level, i as u64), h.as_slice()).unwrap();
            }
        }
        let mut invalid = w.open_table(fmt::INVALID).unwrap();
        let mut state = w.open_table(fmt::STATE).unwrap();
        {
            for s in &b.model.invalid {
                invalid.insert(*s, ()).unwrap();
            }
            for ((table, key), (version, value)) in &b.model.state {
                state
                    .insert(fmt::state_key(table, key).as_slice(), fmt::encode_versioned(*version, value).as_slice())
                    .unwrap();
            }
        }
        let mut tables = w.open_table(fmt::TABLE_VERSIONS).unwrap();
        let mut checkpoints = w.open_table(fmt::CHECKPOINTS).unwrap();
        if !b.ledger.is_empty() {
            for (table, version) in &b.model.tables {
                tables.insert(table.as_str(), fmt::encode_tx_id(*version).as_slice()).unwrap();
            }
            for (size, seqno) in &b.checkpoint_index {
                checkpoints.insert(*size, *seqno).unwrap();
            }
            let last_checkpoint = b.checkpoint_index.keys().next_back().copied().unwrap_or(0);
            meta.insert("ledger_term", b.last_term.to_be_bytes().as_slice()).unwrap();
            meta.insert("last_non_signature", b.last_non_signature.to_be_bytes().as_slice()).unwrap();
            meta.insert("last_checkpoint", last_checkpoint.to_be_bytes().as_slice()).unwrap();
            let last_record = serde_json::json!({"index": b.raft.len() as u64 - 1});
            meta.insert("applied", last_record.to_string().as_bytes()).unwrap();
        }
    }
    w.commit().unwrap();
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary(&mut arbitrary::Unstructured::new(data)) else { return };
    let b = build(&input);
    let n = b.ledger.len() as u64;
    let applied = n;
    let pinned = if input.pin { vec![cgs_fuzz::node_verifier()] } else { vec![] };

    write_db(&b, &b.ledger, &b.leaves, applied);
    let honest = verify_data_dir(&DIR, &pinned);
    if *DEBUG {
        eprintln!(
            "entries {n} applied {applied} checkpoints {} honest {} -> {:?}",
            b.checkpoints.len(),
            b.honest,
            honest.as_ref().map(|r| r.entries)
        );
    }
    if b.honest {
        let r = honest.as_ref().unwrap_or_else(|f| panic!("an honest ledger does not verify: {f}"));
        assert_eq!(r.entries, n);
        assert_eq!(r.checkpoints, b.checkpoints.len() as u64);
        assert_eq!(r.transactions, b.model.transactions);
        assert_eq!(r.invalid_transactions, b.model.invalid.len() as u64);
        assert_eq!(r.state_keys, b.model.state.len() as u64);
    }
    if n == 0 || honest.is_err() {
        return;
    }
    if let Some(k) = input.set_back {
        let back = 1 + u64::from(k) % n;
        write_db(&b, &b.ledger, &b.leaves, n - back);
        let r = verify_data_dir(&DIR, &pinned);
        assert!(r.is_err(), "the applied count set back by {back} of {n} still verifies");
    }
    let Some(t) = &input.tamper else { return };
    let i = t.entry as usize % b.ledger.len();
    let mut ledger = b.ledger.clone();
    let pos = t.pos as usize % ledger[i].len();
    ledger[i][pos] ^= t.mask | 1;
    let mut leaves = b.leaves.clone();
    if t.rehash {
        leaves[i] = leaf_hash(&Sha256::digest(&ledger[i]));
    }
    write_db(&b, &ledger, &leaves, applied);
    let tampered = verify_data_dir(&DIR, &pinned);
    assert!(tampered.is_err(), "entry {} tampered (rehash {}) still verifies", i + 1, t.rehash);
});
