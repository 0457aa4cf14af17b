//! The raft state machine: applying committed records (read-set validation, write sets, Merkle
//! leaves, checkpoints) in one redb transaction per batch. Snapshots are disabled.

// openraft's storage traits fix the error type (`StorageError`, ~200 bytes); helpers use it too.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use cgs_core::TxId;
use cgs_core::entry::{self, Payload};
use cgs_ledger_format::store_format as fmt;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StoredMembership,
};
use redb::ReadableTable;

use super::merkle;
use super::raft::{ApplyResult, C, Outcome, SErr, Shared, meta_json, record_of, store_err};

/// Applies committed entries: read-set validation, write sets, Merkle leaves, checkpoints.
pub struct StateMachine {
    pub(crate) shared: Arc<Shared>,
    /// The last Merkle node applied at each level, `(index, hash)`: the left sibling the next
    /// append at that level needs, without reading it back from the file. Only the state
    /// machine writes the Merkle table, one batch at a time (openraft's state-machine worker
    /// owns this value); a batch that fails leaves it empty, and a miss reads the file.
    pub(crate) merkle_frontier: Vec<Option<(u64, merkle::Hash)>>,
}

/// A Merkle node of the `MERKLE` table (read-only or being written).
pub(crate) fn read_node(
    table: &impl redb::ReadableTable<(u8, u64), &'static [u8]>,
    level: u8,
    index: u64,
) -> Result<merkle::Hash, String> {
    let v = table
        .get((level, index))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("missing Merkle node ({level},{index})"))?;
    v.value().try_into().map_err(|_| "a Merkle node is not 32 bytes".to_string())
}

/// The `MERKLE` table being written, with the last node written at each level: an append
/// reads only left siblings, and the left sibling at a level is the last node written there.
struct RedbNodes<'a, 't> {
    table: &'a mut redb::Table<'t, (u8, u64), &'static [u8]>,
    frontier: &'a mut Vec<Option<(u64, merkle::Hash)>>,
}

impl merkle::Nodes for RedbNodes<'_, '_> {
    fn node(&self, level: u8, index: u64) -> Result<merkle::Hash, String> {
        match self.frontier.get(usize::from(level)) {
            Some(Some((i, hash))) if *i == index => Ok(*hash),
            _ => read_node(&*self.table, level, index),
        }
    }
}

impl merkle::NodesMut for RedbNodes<'_, '_> {
    fn put_node(&mut self, level: u8, index: u64, hash: &merkle::Hash) -> Result<(), String> {
        self.table.insert((level, index), hash.as_slice()).map_err(|e| e.to_string())?;
        let level = usize::from(level);
        if self.frontier.len() <= level {
            self.frontier.resize(level + 1, None);
        }
        self.frontier[level] = Some((index, *hash));
        Ok(())
    }
}

/// Apply committed records in one (non-durable) redb transaction: expand each into ledger
/// entries, append their Merkle leaves, check each transaction's read set and apply its writes.
/// The raft log is the durable record: after a crash the state is rebuilt by re-applying from the
/// last durable `applied`.
fn apply_batch(
    shared: &Shared,
    frontier: &mut Vec<Option<(u64, merkle::Hash)>>,
    entries: Vec<Entry<C>>,
) -> Result<Vec<ApplyResult>, String> {
    let mut tx = shared.db.begin_write().map_err(|e| e.to_string())?;
    tx.set_durability(redb::Durability::None).map_err(|e| e.to_string())?;
    let mut results = Vec::with_capacity(entries.len());
    let mut last_non_sig = shared.last_non_signature.load(Ordering::Acquire);
    let mut last_checkpoint = shared.last_checkpoint.load(Ordering::Acquire);
    let mut size = shared.applied.load(Ordering::Acquire);
    let mut term = shared.applied_term.load(Ordering::Acquire);
    let mut installed = None;
    let mut rekeyed = false;
    // Each table's version as of this batch: written once at the end instead of once per write
    // (an event batch writes the same few tables over and over).
    let mut table_versions: std::collections::BTreeMap<String, [u8; 16]> = Default::default();
    {
        let mut ledger = tx.open_table(fmt::LEDGER).map_err(|e| e.to_string())?;
        let mut state = tx.open_table(fmt::STATE).map_err(|e| e.to_string())?;
        let mut versions = tx.open_table(fmt::TABLE_VERSIONS).map_err(|e| e.to_string())?;
        let mut nodes = tx.open_table(fmt::MERKLE).map_err(|e| e.to_string())?;
        let mut invalid = tx.open_table(fmt::INVALID).map_err(|e| e.to_string())?;
        let mut checkpoints = tx.open_table(fmt::CHECKPOINTS).map_err(|e| e.to_string())?;
        let mut meta = tx.open_table(fmt::META).map_err(|e| e.to_string())?;
        for e in &entries {
            let record = record_of(e);
            let payloads: Vec<&[u8]> = match &e.payload {
                EntryPayload::Normal(p) => p.0.iter().map(Vec::as_slice).collect(),
                _ => Vec::new(),
            };
            let mut outcomes = Vec::new();
            for (i, bytes) in record.expand(size + 1).into_iter().enumerate() {
                let seqno = size + 1;
                ledger.insert(seqno, bytes.as_slice()).map_err(|e| e.to_string())?;
                merkle::append(
                    &mut RedbNodes { table: &mut nodes, frontier },
                    seqno - 1,
                    merkle::leaf(&entry::leaf_input(&bytes)),
                )?;
                let tx_id = TxId::new(record.term, seqno);
                let payload = match payloads.get(i) {
                    Some(p) => Payload::decode(p).map_err(|e| e.to_string())?,
                    None => Payload::Blank,
                };
                let outcome = match payload {
                    Payload::Blank | Payload::Membership(_) => {
                        last_non_sig = seqno;
                        Outcome::Applied
                    }
                    Payload::Transaction(t) => {
                        last_non_sig = seqno;
                        match validate(&state, &versions, &table_versions, &t)? {
                            Some(why) => {
                                invalid.insert(seqno, ()).map_err(|e| e.to_string())?;
                                Outcome::Conflict(why)
                            }
                            None => {
                                let enc = fmt::encode_tx_id(tx_id);
                                for (w, key) in t.resolved_writes(seqno) {
                                    if super::INSTALLED_STATE.contains(&w.table.as_str()) {
                                        installed = Some(seqno);
                                    }
                                    rekeyed |= w.table == super::crypto::SYS_LEDGER_SECRETS;
                                    let k = fmt::state_key(&w.table, &key);
                                    match &w.value {
                                        Some(v) => {
                                            state
                                                .insert(k.as_slice(), fmt::encode_versioned(tx_id, v).as_slice())
                                                .map_err(|e| e.to_string())?;
                                        }
                                        None => {
                                            state.remove(k.as_slice()).map_err(|e| e.to_string())?;
                                        }
                                    }
                                    match table_versions.get_mut(w.table.as_str()) {
                                        Some(v) => *v = enc,
                                        None => {
                                            table_versions.insert(w.table.clone(), enc);
                                        }
                                    }
                                }
                                Outcome::Applied
                            }
                        }
                    }
                    Payload::Signature(sig) => {
                        checkpoints.insert(sig.tree_size, seqno).map_err(|e| e.to_string())?;
                        last_checkpoint = last_checkpoint.max(sig.tree_size);
                        Outcome::Applied
                    }
                };
                outcomes.push((tx_id, outcome));
                size = seqno;
                term = record.term;
            }
            if let EntryPayload::Membership(m) = &e.payload {
                let stored = StoredMembership::new(Some(e.log_id), m.clone());
                meta.insert("membership", serde_json::to_vec(&stored).map_err(|e| e.to_string())?.as_slice())
                    .map_err(|e| e.to_string())?;
            }
            results.push(ApplyResult(outcomes));
        }
        for (table, version) in &table_versions {
            versions.insert(table.as_str(), version.as_slice()).map_err(|e| e.to_string())?;
        }
        if let Some(last) = entries.last() {
            meta.insert("applied", serde_json::to_vec(&Some(last.log_id)).map_err(|e| e.to_string())?.as_slice())
                .map_err(|e| e.to_string())?;
        }
        meta.insert("ledger_size", size.to_be_bytes().as_slice()).map_err(|e| e.to_string())?;
        meta.insert("ledger_term", term.to_be_bytes().as_slice()).map_err(|e| e.to_string())?;
        meta.insert("last_non_signature", last_non_sig.to_be_bytes().as_slice()).map_err(|e| e.to_string())?;
        meta.insert("last_checkpoint", last_checkpoint.to_be_bytes().as_slice()).map_err(|e| e.to_string())?;
    }
    let started = std::time::Instant::now();
    tx.commit().map_err(|e| e.to_string())?;
    shared.apply_commits.observe(started.elapsed());
    // The size before the term: a reader that sees the term sees this size or a later one.
    shared.applied.store(size, Ordering::Release);
    shared.applied_term.store(term, Ordering::Release);
    shared.last_non_signature.store(last_non_sig, Ordering::Release);
    shared.last_checkpoint.store(last_checkpoint, Ordering::Release);
    // A new secret version is taken up before anyone hears of what was applied: a leader writes
    // nothing more with the old one once the re-key is applied.
    if rekeyed {
        shared.open_secrets();
    }
    shared.wake_applied(size);
    if let Some(seqno) = installed {
        shared.installed_tx.send_replace(seqno);
    }
    if last_non_sig.saturating_sub(last_checkpoint) >= shared.signature_interval_txs {
        shared.sign_now.notify_one();
    }
    Ok(results)
}

/// Check a transaction's read set against the current state (`batch_versions`: table versions
/// written earlier in this batch, not yet in `versions`); `Some(reason)` on a conflict.
fn validate(
    state: &redb::Table<'_, &'static [u8], &'static [u8]>,
    versions: &redb::Table<'_, &'static str, &'static [u8]>,
    batch_versions: &std::collections::BTreeMap<String, [u8; 16]>,
    t: &entry::Transaction,
) -> Result<Option<String>, String> {
    for r in &t.reads {
        let k = fmt::state_key(&r.table, &r.key);
        let now = state.get(k.as_slice()).map_err(|e| e.to_string())?.and_then(|v| fmt::decode_tx_id(v.value()));
        if now != r.version {
            return Ok(Some(format!("a key of `{}` changed since it was read", r.table)));
        }
    }
    for r in &t.table_reads {
        let now = match batch_versions.get(r.table.as_str()) {
            Some(v) => fmt::decode_tx_id(v),
            None => {
                versions.get(r.table.as_str()).map_err(|e| e.to_string())?.and_then(|v| fmt::decode_tx_id(v.value()))
            }
        };
        if now != r.version {
            return Ok(Some(format!("table `{}` changed since it was scanned", r.table)));
        }
    }
    Ok(None)
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotBuilder = NoSnapshots;

    async fn applied_state(&mut self) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), SErr> {
        let applied: Option<LogId<u64>> = meta_json::<Option<LogId<u64>>>(&self.shared.db, "applied")?.flatten();
        let membership = meta_json(&self.shared.db, "membership")?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, SErr>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<C>> = entries.into_iter().collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let (shared, frontier) = (&self.shared, &mut self.merkle_frontier);
        // redb's writer lock may wait for the log writer's fsync: keep that off the async worker.
        crate::executor::off_executor(|| {
            let applied = apply_batch(shared, frontier, entries);
            if applied.is_err() {
                // Nodes of a batch that did not commit: forget them all (the file is read).
                frontier.clear();
            }
            applied
        })
        .map_err(store_err)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        NoSnapshots
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Err(store_err("snapshots are not supported: every node keeps the full ledger"))
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta<u64, BasicNode>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        Err(store_err("snapshots are not supported: every node keeps the full ledger"))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, SErr> {
        Ok(None)
    }
}

/// Snapshots are disabled (`SnapshotPolicy::Never`): a ledger node keeps and replicates the full
/// log, which is what receipts and offline verification need.
pub struct NoSnapshots;

impl RaftSnapshotBuilder<C> for NoSnapshots {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, SErr> {
        Err(store_err("snapshots are not supported: every node keeps the full ledger"))
    }
}
