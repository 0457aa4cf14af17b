//! Offline verification of a stopped node's data directory (`cgs ledger verify DIR`).
//!
//! Reads `DIR/ledger.redb` read-only and, independently of the host's code:
//!
//! 1. checks that log positions are contiguous from 1 and that every entry decodes, sits at the
//!    seqno it claims, and never lowers the term;
//! 2. recomputes every Merkle leaf `H(0x00 ‖ SHA-256(entry))` and every interior node of a
//!    complete subtree (and compares each with the node's stored one, where stored: an altered
//!    leaf pinpoints an altered entry, an altered interior node would make the node sign a wrong
//!    root) and the root after every entry;
//! 3. at every signature entry, checks that the checkpoint covers only earlier entries, that its
//!    root equals the recomputed root at its size, that its C2SP note is signed by the key the
//!    ledger recorded for that node (`sys.nodes`, or a pinned key) and names the same size and
//!    root, and that the COSE receipt signature over the root verifies; checkpoints only grow,
//!    and all roots come from one append-only sequence, so successive checkpoints are consistent;
//! 4. requires the count of entries the node records as applied to be the ledger's (a node
//!    writes its entries and that count in one transaction: set back, it would hide entries from
//!    the state a node or a recovery starts from), replays every transaction — the read-set
//!    check that decides whether it applied, then its writes — and requires the node's state, its list of refused transactions, its table
//!    versions, its index of checkpoints and its counters (`ledger_term`, `last_non_signature`,
//!    `last_checkpoint`) to equal the replay's;
//! 5. requires every stored ledger entry to be the expansion of the replicated log's records, and
//!    counts the entries the replicated log holds beyond the ledger (not applied yet); the
//!    replicated record the node records as applied must be the one the ledger ends with.
//!
//! The first failure is reported with the seqno it concerns.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use cgs_core::TxId;
use cgs_core::entry::{Entry, Payload};
use cgs_core::merkle::{self, CompactTree};
use cgs_core::note::{self, VerifierKey};
use redb::{ReadableDatabase, ReadableTable};
use sha2::{Digest, Sha256};

use crate::store_format as fmt;

/// What a successful verification found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Entries in the log.
    pub entries: u64,
    /// Transaction entries.
    pub transactions: u64,
    /// Transactions refused by their read-set check.
    pub invalid_transactions: u64,
    /// Signature entries (checkpoints).
    pub checkpoints: u64,
    /// Size and seqno of the last checkpoint.
    pub last_checkpoint: Option<(u64, u64)>,
    /// Entries not yet covered by a checkpoint.
    pub unsigned_tail: u64,
    /// Entries the replicated log holds beyond the ledger (received, not applied yet): no
    /// checkpoint covers them either.
    pub unapplied_entries: u64,
    /// SHA-256 (hex) over the replicated records beyond the ledger, in order (of nothing if
    /// none): what a node would apply next, which no checkpoint covers.
    pub unapplied_digest: String,
    /// Entries the node records as applied (always `entries`: otherwise the file is refused).
    pub applied: u64,
    /// Root of the whole log (hex).
    pub root: String,
    /// The log origin.
    pub origin: String,
    /// Node keys found in the ledger (`verifier key` strings).
    pub node_keys: Vec<String>,
    /// Keys in the replayed state.
    pub state_keys: u64,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seqno {seqno}: {reason}")]
pub struct Failure {
    /// The entry concerned (0: the file as a whole).
    pub seqno: u64,
    /// What is wrong.
    pub reason: String,
}

fn fail<T>(seqno: u64, reason: impl Into<String>) -> Result<T, Failure> {
    Err(Failure { seqno, reason: reason.into() })
}

/// The replayed state: value and version per `(table, key)`, table versions, and what the node
/// records beside them as it applies (its index of checkpoints, the last entry's term, the last
/// entry that is not a signature, the largest checkpoint).
#[derive(Default)]
struct Replay {
    state: BTreeMap<(String, Vec<u8>), (TxId, Vec<u8>)>,
    tables: BTreeMap<String, TxId>,
    invalid: Vec<u64>,
    checkpoints: BTreeMap<u64, u64>,
    term: u64,
    last_non_signature: u64,
    last_checkpoint: u64,
}

/// A node's recorded checkpoint key.
#[derive(serde::Deserialize)]
struct NodeRecord {
    public_key: String,
    origin: String,
}

/// Open `dir`'s ledger file once for writing, so that redb repairs a file its node did not close
/// (killed, or its machine stopped), then close it. Nothing of the ledger is written or applied.
pub fn repair(dir: &Path) -> Result<(), Failure> {
    let path = dir.join(fmt::FILE_NAME);
    if !path.is_file() {
        return fail(0, format!("{} does not exist", path.display()));
    }
    redb::Database::open(&path)
        .map(drop)
        .map_err(|e| Failure { seqno: 0, reason: format!("cannot open {} to repair it: {e}", path.display()) })
}

/// Verify the data directory `dir`. `pinned` keys, if any, are the only keys accepted for
/// checkpoints (otherwise the keys the ledger records are used, and reported).
pub fn verify_data_dir(dir: &Path, pinned: &[VerifierKey]) -> Result<Report, Failure> {
    verify_data_dir_with_progress(dir, pinned, &mut |_, _| {})
}

/// [`verify_data_dir`], calling `progress(entries checked, entries in the log)` every 1024
/// entries and at the end.
pub fn verify_data_dir_with_progress(
    dir: &Path,
    pinned: &[VerifierKey],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Report, Failure> {
    let path = dir.join(fmt::FILE_NAME);
    if !path.is_file() {
        return fail(0, format!("{} does not exist", path.display()));
    }
    let db = redb::ReadOnlyDatabase::open(&path).map_err(|e| match e {
        redb::DatabaseError::RepairAborted => Failure {
            seqno: 0,
            reason: format!(
                "{} was not closed by its node (killed, or its machine stopped) and needs the repair a writer does \
                 on open, which this read-only check does not do: run `cgs ledger verify --repair` on a copy \
                 (not a node start: a node would apply and sign what its log holds)",
                path.display()
            ),
        },
        e => Failure { seqno: 0, reason: format!("cannot open {}: {e}", path.display()) },
    })?;
    let rtx = db.begin_read().map_err(|e| Failure { seqno: 0, reason: e.to_string() })?;
    let dberr = |e: &dyn std::fmt::Display| Failure { seqno: 0, reason: format!("unreadable ledger: {e}") };

    let meta = rtx.open_table(fmt::META).map_err(|e| dberr(&e))?;
    let meta_bytes = |k: &str| -> Result<Option<Vec<u8>>, Failure> {
        Ok(meta.get(k).map_err(|e| dberr(&e))?.map(|v| v.value().to_vec()))
    };
    match meta_bytes("format")? {
        Some(f) if f == fmt::FORMAT_VERSION.to_be_bytes() => {}
        other => return fail(0, format!("unsupported or missing format {other:?}")),
    }
    let origin =
        String::from_utf8(meta_bytes("origin")?.unwrap_or_default()).map_err(|_| dberr(&"origin is not UTF-8"))?;
    let applied: u64 = meta_bytes("ledger_size")?.and_then(|b| b.try_into().ok().map(u64::from_be_bytes)).unwrap_or(0);

    let log = rtx.open_table(fmt::LEDGER).map_err(|e| dberr(&e))?;
    let merkle_nodes = rtx.open_table(fmt::MERKLE).map_err(|e| dberr(&e))?;
    let invalid_table = rtx.open_table(fmt::INVALID).map_err(|e| dberr(&e))?;

    let mut report = Report { origin: origin.clone(), applied, ..Report::default() };
    let mut tree = CompactTree::new();
    // Roots of the tree at every size from `roots_base` on: a checkpoint never covers fewer
    // entries than the previous one, so roots below the last checkpoint's size are dropped.
    let mut roots: Vec<merkle::Hash> = vec![tree.root()];
    let mut roots_base = 0u64;
    // At each level, the last complete node of an even index (the left sibling of the next).
    let mut left_at: Vec<Option<merkle::Hash>> = Vec::new();
    let mut replay = Replay::default();
    let mut keys: BTreeMap<u64, VerifierKey> = BTreeMap::new();
    let mut last_term = 0u64;
    let mut last_checkpoint_size = 0u64;

    let total = redb::ReadableTableMetadata::len(&log).map_err(|e| dberr(&e))?;
    for (expected, item) in (1u64..).zip(log.iter().map_err(|e| dberr(&e))?) {
        if expected % 1024 == 0 {
            progress(expected, total);
        }
        let (k, v) = item.map_err(|e| dberr(&e))?;
        let (key, bytes) = (k.value(), v.value());
        if key != expected {
            return fail(expected, format!("entry {expected} is missing (the next stored entry is {key})"));
        }
        let entry = Entry::decode(bytes).map_err(|e| Failure { seqno: key, reason: e.to_string() })?;
        if entry.seqno != key {
            return fail(
                key,
                format!("the entry stored at {key} says it is entry {} (entries moved or swapped)", entry.seqno),
            );
        }
        if entry.term < last_term {
            return fail(key, format!("term {} is lower than the previous entry's term {last_term}", entry.term));
        }
        last_term = entry.term;
        let leaf = merkle::leaf_hash(&Sha256::digest(bytes));
        if let Some(stored) = merkle_nodes.get((0u8, key - 1)).map_err(|e| dberr(&e))?
            && stored.value() != leaf.as_slice()
        {
            return fail(key, "the entry does not hash to the leaf recorded when it was applied (entry altered)");
        }
        let (mut level, mut index, mut node) = (0usize, key - 1, leaf);
        loop {
            if level > 0
                && let Some(stored) = merkle_nodes.get((level as u8, index)).map_err(|e| dberr(&e))?
                && stored.value() != node.as_slice()
            {
                return fail(
                    key,
                    format!("the stored Merkle node at level {level}, index {index} is not the hash of its subtree"),
                );
            }
            if index & 1 == 0 {
                if left_at.len() <= level {
                    left_at.resize(level + 1, None);
                }
                left_at[level] = Some(node);
                break;
            }
            let Some(left) = left_at.get(level).copied().flatten() else { break };
            node = merkle::node_hash(&left, &node);
            level += 1;
            index >>= 1;
        }
        tree.push(leaf);
        roots.push(tree.root());
        report.entries += 1;

        replay.term = entry.term;
        match &entry.payload {
            Payload::Blank | Payload::Membership(_) => replay.last_non_signature = key,
            Payload::Transaction(t) => {
                replay.last_non_signature = key;
                report.transactions += 1;
                let tx_id = entry.tx_id();
                let conflict = t
                    .reads
                    .iter()
                    .any(|r| replay.state.get(&(r.table.clone(), r.key.clone())).map(|(v, _)| *v) != r.version)
                    || t.table_reads.iter().any(|r| replay.tables.get(&r.table).copied() != r.version);
                if conflict {
                    replay.invalid.push(key);
                    report.invalid_transactions += 1;
                } else {
                    for (w, final_key) in t.resolved_writes(key) {
                        let sk = (w.table.clone(), final_key);
                        match &w.value {
                            Some(val) => {
                                replay.state.insert(sk, (tx_id, val.clone()));
                            }
                            None => {
                                replay.state.remove(&sk);
                            }
                        }
                        replay.tables.insert(w.table.clone(), tx_id);
                        if w.table == "sys.nodes" {
                            let node_id = w.key.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0);
                            match w.value.as_deref().map(serde_json::from_slice::<NodeRecord>) {
                                Some(Ok(rec)) => {
                                    let pk: [u8; 32] = base64::engine::general_purpose::STANDARD
                                        .decode(&rec.public_key)
                                        .ok()
                                        .and_then(|b| b.try_into().ok())
                                        .ok_or_else(|| Failure {
                                            seqno: key,
                                            reason: "a recorded node key is not 32 bytes of base64".into(),
                                        })?;
                                    let vk = VerifierKey::new(&rec.origin, &pk).map_err(|e| Failure {
                                        seqno: key,
                                        reason: format!("a recorded node key is invalid: {e}"),
                                    })?;
                                    if !pinned.is_empty() && !pinned.iter().any(|p| p == &vk) {
                                        return fail(
                                            key,
                                            format!(
                                                "node {node_id} records key {vk}, which is not one of the pinned keys"
                                            ),
                                        );
                                    }
                                    report.node_keys.push(vk.to_string());
                                    keys.insert(node_id, vk);
                                }
                                Some(Err(e)) => return fail(key, format!("a node key record does not decode: {e}")),
                                None => {
                                    keys.remove(&node_id);
                                }
                            }
                        }
                    }
                }
            }
            Payload::Signature(s) => {
                report.checkpoints += 1;
                if s.tree_size >= key {
                    return fail(key, format!("the checkpoint covers {} entries but is entry {key}", s.tree_size));
                }
                if s.tree_size < last_checkpoint_size {
                    return fail(
                        key,
                        format!("checkpoint size {} is below the previous one ({last_checkpoint_size})", s.tree_size),
                    );
                }
                let expected_root = roots[(s.tree_size - roots_base) as usize];
                if expected_root != s.root {
                    return fail(
                        key,
                        format!(
                            "the checkpoint root does not match the entries: an entry between {} and {} was altered",
                            last_checkpoint_size + 1,
                            s.tree_size
                        ),
                    );
                }
                let vk = match keys.get(&s.node_id) {
                    Some(k) => k.clone(),
                    None => {
                        return fail(
                            key,
                            format!("node {} signed a checkpoint but no key is recorded for it", s.node_id),
                        );
                    }
                };
                let cp = note::verify_checkpoint(&s.note, std::slice::from_ref(&vk))
                    .map_err(|e| Failure { seqno: key, reason: format!("checkpoint note: {e}") })?;
                if cp.size != s.tree_size || cp.root != s.root || cp.origin != origin {
                    return fail(key, "the signed checkpoint names another size, root or origin than its entry");
                }
                verify_cose_root(&vk, s.tree_size, &s.root, &s.cose_signature)
                    .map_err(|reason| Failure { seqno: key, reason })?;
                replay.checkpoints.insert(s.tree_size, key);
                replay.last_checkpoint = replay.last_checkpoint.max(s.tree_size);
                last_checkpoint_size = s.tree_size;
                roots.drain(..(s.tree_size - roots_base) as usize);
                roots_base = s.tree_size;
                report.last_checkpoint = Some((s.tree_size, key));
            }
        }
    }
    if applied != report.entries {
        return fail(
            applied.min(report.entries) + 1,
            format!(
                "the node records {applied} entries as applied but its ledger holds {}: a node writes both in one \
                 transaction, so the file was altered",
                report.entries
            ),
        );
    }
    report.unsigned_tail = report.entries - last_checkpoint_size;
    report.root = hex::encode(tree.root());

    // The node's applied state must be the replay of the whole ledger.
    let replayed = replay;
    let state = rtx.open_table(fmt::STATE).map_err(|e| dberr(&e))?;
    let mut seen = 0u64;
    for item in state.iter().map_err(|e| dberr(&e))? {
        let (k, v) = item.map_err(|e| dberr(&e))?;
        let (table, key) = fmt::split_state_key(k.value()).ok_or_else(|| dberr(&"corrupt state key"))?;
        let (version, value) = fmt::decode_versioned(v.value()).ok_or_else(|| dberr(&"corrupt state value"))?;
        match replayed.state.get(&(table.to_string(), key.to_vec())) {
            Some((rv, rval)) if *rv == version && rval.as_slice() == value => {}
            Some((rv, _)) => {
                return fail(
                    version.seqno.max(rv.seqno),
                    format!(
                        "state of `{table}` differs from the replay of the ledger (state version {version}, replay {rv})"
                    ),
                );
            }
            None => {
                return fail(
                    version.seqno,
                    format!("state holds a key of `{table}` (version {version}) that the ledger never wrote"),
                );
            }
        }
        seen += 1;
    }
    if seen != replayed.state.len() as u64 {
        let missing = replayed
            .state
            .iter()
            .find(|((t, k), _)| state.get(fmt::state_key(t, k).as_slice()).ok().flatten().is_none());
        let seqno = missing.map(|(_, (v, _))| v.seqno).unwrap_or(applied);
        return fail(seqno, "the state lacks a key the ledger wrote");
    }
    let stored_invalid: Vec<u64> =
        invalid_table.iter().map_err(|e| dberr(&e))?.filter_map(|r| r.ok().map(|(k, _)| k.value())).collect();
    if stored_invalid != replayed.invalid {
        let first = stored_invalid.iter().zip(&replayed.invalid).find(|(a, b)| a != b).map(|(a, b)| *a.min(b));
        let seqno = first.unwrap_or_else(|| {
            let n = stored_invalid.len().min(replayed.invalid.len());
            stored_invalid.get(n).or_else(|| replayed.invalid.get(n)).copied().unwrap_or(0)
        });
        return fail(seqno, "the node's list of refused transactions differs from the replay");
    }
    report.state_keys = seen;

    // What the node records beside the state as it applies, and reads back when it continues:
    // table versions (its read-set checks), its index of checkpoints (receipts), the term of the
    // last entry, the last entry that is not a signature and the largest checkpoint (when to
    // sign next).
    let table_versions = rtx.open_table(fmt::TABLE_VERSIONS).map_err(|e| dberr(&e))?;
    let mut stored_tables = 0usize;
    for item in table_versions.iter().map_err(|e| dberr(&e))? {
        let (k, v) = item.map_err(|e| dberr(&e))?;
        let version = fmt::decode_tx_id(v.value()).ok_or_else(|| dberr(&"corrupt table version"))?;
        if replayed.tables.get(k.value()) != Some(&version) {
            return fail(
                version.seqno.max(replayed.tables.get(k.value()).map_or(0, |v| v.seqno)),
                format!("the version of table `{}` differs from the replay of the ledger", k.value()),
            );
        }
        stored_tables += 1;
    }
    if stored_tables != replayed.tables.len() {
        return fail(applied, "the node's table versions lack a table the ledger wrote");
    }
    let checkpoints = rtx.open_table(fmt::CHECKPOINTS).map_err(|e| dberr(&e))?;
    let mut stored_checkpoints = BTreeMap::new();
    for item in checkpoints.iter().map_err(|e| dberr(&e))? {
        let (k, v) = item.map_err(|e| dberr(&e))?;
        stored_checkpoints.insert(k.value(), v.value());
    }
    if stored_checkpoints != replayed.checkpoints {
        let first = stored_checkpoints
            .iter()
            .zip(&replayed.checkpoints)
            .find(|(a, b)| a != b)
            .map(|((_, a), (_, b))| *a.min(b))
            .unwrap_or(applied);
        return fail(first, "the node's index of checkpoints differs from the ledger's signature entries");
    }
    if applied > 0 {
        for (name, want) in [
            ("ledger_term", replayed.term),
            ("last_non_signature", replayed.last_non_signature),
            ("last_checkpoint", replayed.last_checkpoint),
        ] {
            let got = meta_bytes(name)?.and_then(|b| b.try_into().ok().map(u64::from_be_bytes));
            if got != Some(want) {
                return fail(applied, format!("the node's `{name}` ({got:?}) is not the ledger's ({want})"));
            }
        }
    }

    // The ledger must be exactly the expansion of the replicated log it was applied from.
    let raft_log = rtx.open_table(fmt::RAFT_LOG).map_err(|e| dberr(&e))?;
    let mut next_seqno = 1u64;
    let mut last_term = 0u64;
    // The replicated records after which the ledger ends at the last applied entry (one, and
    // any records after it that expand to no entry).
    let mut applied_records: Vec<u64> = Vec::new();
    let mut unapplied = Sha256::new();
    for (want_index, item) in (0u64..).zip(raft_log.iter().map_err(|e| dberr(&e))?) {
        let (k, v) = item.map_err(|e| dberr(&e))?;
        if k.value() != want_index {
            return fail(next_seqno, format!("replicated log record {want_index} is missing (next is {})", k.value()));
        }
        let rec = cgs_core::entry::RaftRecord::decode(v.value())
            .map_err(|e| Failure { seqno: next_seqno, reason: format!("replicated log record {want_index}: {e}") })?;
        if rec.index != want_index || rec.term < last_term {
            return fail(next_seqno, format!("replicated log record {want_index} is out of place"));
        }
        last_term = rec.term;
        if next_seqno > report.entries {
            unapplied.update((v.value().len() as u64).to_be_bytes());
            unapplied.update(v.value());
        }
        for bytes in rec.expand(next_seqno) {
            if next_seqno > report.entries {
                report.unapplied_entries += 1;
            } else {
                match log.get(next_seqno).map_err(|e| dberr(&e))? {
                    Some(stored) if stored.value() == bytes.as_slice() => {}
                    _ => {
                        return fail(
                            next_seqno,
                            "the ledger entry differs from the replicated log it was applied from",
                        );
                    }
                }
            }
            next_seqno += 1;
        }
        if next_seqno == applied + 1 && applied > 0 {
            applied_records.push(rec.index);
        }
    }
    if next_seqno <= report.entries {
        return fail(next_seqno, "the ledger has entries the replicated log does not contain");
    }
    report.unapplied_digest = hex::encode(unapplied.finalize());
    // The node continues applying after the record it says it applied last: it must be the one
    // whose expansion ends at the ledger's last applied entry (set back, the node would apply
    // records again, each entry a second time).
    if applied > 0 {
        let recorded = meta_bytes("applied")?
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["index"].as_u64());
        if !recorded.is_some_and(|r| applied_records.contains(&r)) {
            return fail(
                applied,
                format!(
                    "the node records replicated log record {recorded:?} as its last applied, but the ledger's \
                     entries end with record {:?}",
                    applied_records.first()
                ),
            );
        }
    }
    progress(report.entries, report.entries);
    Ok(report)
}

/// Check the Ed25519 signature of the COSE receipt Sig_structure over the root of the tree of
/// `size`, as the host builds it (`receipt::signed_root_bytes`).
fn verify_cose_root(key: &VerifierKey, size: u64, root: &[u8; 32], signature: &[u8; 64]) -> Result<(), String> {
    let kid = Sha256::digest(key.key.as_bytes()).to_vec();
    let data = cgs_core::receipt::signed_root_bytes(&kid, size, root);
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    key.key
        .verify_strict(&data, &sig)
        .map_err(|e| format!("the COSE signature over the checkpoint root does not verify: {e}"))
}
