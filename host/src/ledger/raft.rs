//! openraft 0.9 on redb: the log store (group commit on a writer thread), the state machine
//! (read-set validation, write sets, Merkle leaves, checkpoints) and an in-process network.

// openraft's storage traits fix the error type (`StorageError`, ~200 bytes); helpers use it too.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cgs_core::TxId;
use cgs_core::entry::{self, Payload, RaftBody, RaftRecord};
use cgs_ledger_format::store_format as fmt;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::merkle;

/// What the leader proposes as one raft record: encoded [`Payload`]s (transactions and
/// signatures) that arrived together (group commit). Applying it expands it into one ledger
/// entry per payload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Proposal(pub Vec<Vec<u8>>);

/// The outcome of one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Applied.
    Applied,
    /// Not applied: something the transaction read changed before it was ordered.
    Conflict(String),
}

/// The outcomes of a record's ledger entries, with their tx ids, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult(pub Vec<(TxId, Outcome)>);

openraft::declare_raft_types!(
    /// CGS's raft types.
    pub TypeConfig:
        D = Proposal,
        R = ApplyResult,
        NodeId = u64,
        Node = BasicNode,
);

/// The raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
type C = TypeConfig;
type SErr = StorageError<u64>;

fn store_err(e: impl std::fmt::Display) -> SErr {
    StorageIOError::write(AnyError::error(e.to_string())).into()
}

fn read_err(e: impl std::fmt::Display) -> SErr {
    StorageIOError::read(AnyError::error(e.to_string())).into()
}

/// State shared by the log store, the state machine and the ledger façade.
pub(crate) struct Shared {
    pub db: Database,
    /// Ledger entries applied (the seqno of the last one).
    pub applied: AtomicU64,
    /// The term of the last applied ledger entry.
    pub applied_term: AtomicU64,
    /// Seqno of the last applied entry that is not a signature.
    pub last_non_signature: AtomicU64,
    /// Tree size of the last applied checkpoint.
    pub last_checkpoint: AtomicU64,
    /// Wakes the signer when enough entries are waiting for a checkpoint.
    pub sign_now: tokio::sync::Notify,
    /// Entries per checkpoint.
    pub signature_interval_txs: u64,
    /// Tells waiters about progress of `applied`.
    pub applied_tx: tokio::sync::watch::Sender<u64>,
    /// The seqno of the last applied transaction that wrote one of [`super::INSTALLED_STATE`]:
    /// what the node must act on (load plugins, open the service), on every replica.
    pub installed_tx: tokio::sync::watch::Sender<u64>,
}

/// Encode an openraft entry as a replicated-log record.
pub(crate) fn record_of(e: &Entry<C>) -> RaftRecord {
    let body = match &e.payload {
        EntryPayload::Blank => RaftBody::Blank,
        EntryPayload::Normal(p) => RaftBody::Batch(p.0.clone()),
        EntryPayload::Membership(m) => RaftBody::Membership(serde_json::to_vec(m).unwrap_or_default()),
    };
    RaftRecord { term: e.log_id.leader_id.term, index: e.log_id.index, body }
}

/// Decode a replicated-log record into an openraft entry.
pub(crate) fn entry_of(b: &[u8]) -> Result<Entry<C>, String> {
    let r = RaftRecord::decode(b).map_err(|e| e.to_string())?;
    let payload = match r.body {
        RaftBody::Blank => EntryPayload::Blank,
        RaftBody::Membership(m) => EntryPayload::Membership(serde_json::from_slice(&m).map_err(|e| e.to_string())?),
        RaftBody::Batch(items) => EntryPayload::Normal(Proposal(items)),
    };
    Ok(Entry { log_id: LogId::new(CommittedLeaderId::new(r.term, 0), r.index), payload })
}

fn meta_get(db: &Database, key: &str) -> Result<Option<Vec<u8>>, SErr> {
    let tx = db.begin_read().map_err(read_err)?;
    let t = match tx.open_table(fmt::META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    Ok(t.get(key).map_err(read_err)?.map(|v| v.value().to_vec()))
}

fn meta_json<T: serde::de::DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, SErr> {
    match meta_get(db, key)? {
        Some(b) => Ok(Some(serde_json::from_slice(&b).map_err(read_err)?)),
        None => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// Log store

enum Job {
    Append { entries: Vec<(LogId<u64>, Vec<u8>)>, callback: LogFlushed<C> },
    Truncate { from: u64, done: tokio::sync::oneshot::Sender<Result<(), String>> },
    Meta { key: &'static str, value: Vec<u8>, done: Option<tokio::sync::oneshot::Sender<Result<(), String>>> },
}

/// The raft log in redb: appends return at once, a writer thread commits everything queued in
/// one durable transaction (group commit) and then reports the flush.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    cache: Arc<Mutex<BTreeMap<u64, Entry<C>>>>,
    jobs: std::sync::mpsc::Sender<Job>,
}

impl LogStore {
    pub(crate) fn new(shared: Arc<Shared>) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let cache: Arc<Mutex<BTreeMap<u64, Entry<C>>>> = Arc::default();
        let (db_shared, cache2) = (shared.clone(), cache.clone());
        std::thread::Builder::new().name("cgs-log-writer".into()).spawn(move || writer(db_shared, cache2, rx))?;
        Ok(Self { shared, cache, jobs: tx })
    }

    fn send(&self, job: Job) -> Result<(), SErr> {
        self.jobs.send(job).map_err(|_| store_err("the log writer has stopped"))
    }

    fn last_in_db(&self) -> Result<Option<LogId<u64>>, SErr> {
        let tx = self.shared.db.begin_read().map_err(read_err)?;
        let t = match tx.open_table(fmt::RAFT_LOG) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(read_err(e)),
        };
        match t.last().map_err(read_err)? {
            Some((_, v)) => Ok(Some(entry_of(v.value()).map_err(read_err)?.log_id)),
            None => Ok(None),
        }
    }
}

/// The writer thread: batch every queued job into one durable redb transaction.
fn writer(shared: Arc<Shared>, cache: Arc<Mutex<BTreeMap<u64, Entry<C>>>>, rx: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 8192 {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let result = (|| -> Result<(), String> {
            let mut tx = shared.db.begin_write().map_err(|e| e.to_string())?;
            tx.set_durability(redb::Durability::Immediate).map_err(|e| e.to_string())?;
            {
                let mut log = tx.open_table(fmt::RAFT_LOG).map_err(|e| e.to_string())?;
                let mut meta = tx.open_table(fmt::META).map_err(|e| e.to_string())?;
                for job in &batch {
                    match job {
                        Job::Append { entries, .. } => {
                            for (id, bytes) in entries {
                                log.insert(id.index, bytes.as_slice()).map_err(|e| e.to_string())?;
                            }
                        }
                        Job::Truncate { from, .. } => {
                            let doomed: Vec<u64> = log
                                .range(*from..)
                                .map_err(|e| e.to_string())?
                                .filter_map(|r| r.ok().map(|(k, _)| k.value()))
                                .collect();
                            for k in doomed {
                                log.remove(k).map_err(|e| e.to_string())?;
                            }
                        }
                        Job::Meta { key, value, .. } => {
                            meta.insert(*key, value.as_slice()).map_err(|e| e.to_string())?;
                        }
                    }
                }
            }
            tx.commit().map_err(|e| e.to_string())
        })();
        for job in batch {
            match job {
                Job::Append { entries, callback } => {
                    if result.is_ok() {
                        if let Ok(mut c) = cache.lock() {
                            for (id, _) in &entries {
                                if c.get(&id.index).is_some_and(|e| e.log_id == *id) {
                                    c.remove(&id.index);
                                }
                            }
                        }
                        callback.log_io_completed(Ok(()));
                    } else {
                        let msg = result.clone().err().unwrap_or_default();
                        callback.log_io_completed(Err(std::io::Error::other(msg)));
                    }
                }
                Job::Truncate { done, .. } => {
                    let _ = done.send(result.clone());
                }
                Job::Meta { done, .. } => {
                    if let Some(d) = done {
                        let _ = d.send(result.clone());
                    }
                }
            }
        }
    }
    let _ = &shared;
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, SErr> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => Some(e + 1),
            Bound::Excluded(e) => Some(*e),
            Bound::Unbounded => None,
        };
        let cached: BTreeMap<u64, Entry<C>> = {
            let c = self.cache.lock().map_err(|_| read_err("log cache poisoned"))?;
            match end {
                Some(e) => c.range(start..e).map(|(k, v)| (*k, v.clone())).collect(),
                None => c.range(start..).map(|(k, v)| (*k, v.clone())).collect(),
            }
        };
        let mut out = BTreeMap::new();
        let first_cached = cached.keys().next().copied();
        let db_end = match (first_cached, end) {
            (Some(f), Some(e)) => Some(f.min(e)),
            (Some(f), None) => Some(f),
            (None, e) => e,
        };
        if db_end.is_none_or(|e| e > start) {
            let tx = self.shared.db.begin_read().map_err(read_err)?;
            match tx.open_table(fmt::RAFT_LOG) {
                Ok(t) => {
                    let iter = match db_end {
                        Some(e) => t.range(start..e),
                        None => t.range(start..),
                    }
                    .map_err(read_err)?;
                    for r in iter {
                        let (_, v) = r.map_err(read_err)?;
                        let e = entry_of(v.value()).map_err(read_err)?;
                        out.insert(e.log_id.index, e);
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(read_err(e)),
            }
        }
        out.extend(cached);
        Ok(out.into_values().collect())
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<C>, SErr> {
        let purged: Option<LogId<u64>> = meta_json(&self.shared.db, "purged")?;
        let cached =
            self.cache.lock().map_err(|_| read_err("log cache poisoned"))?.values().next_back().map(|e| e.log_id);
        let last = match cached {
            Some(c) => Some(c),
            None => self.last_in_db()?,
        };
        Ok(LogState { last_purged_log_id: purged, last_log_id: last.or(purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), SErr> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let value = serde_json::to_vec(vote).map_err(store_err)?;
        self.send(Job::Meta { key: "vote", value, done: Some(tx) })?;
        rx.await.map_err(store_err)?.map_err(store_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, SErr> {
        meta_json(&self.shared.db, "vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), SErr> {
        let value = serde_json::to_vec(&committed).map_err(store_err)?;
        self.send(Job::Meta { key: "committed", value, done: None })
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, SErr> {
        Ok(meta_json::<Option<LogId<u64>>>(&self.shared.db, "committed")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        {
            let mut c = self.cache.lock().map_err(|_| store_err("log cache poisoned"))?;
            for e in entries {
                encoded.push((e.log_id, record_of(&e).encode()));
                c.insert(e.log_id.index, e);
            }
        }
        self.send(Job::Append { entries: encoded, callback })
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), SErr> {
        {
            let mut c = self.cache.lock().map_err(|_| store_err("log cache poisoned"))?;
            let doomed: Vec<u64> = c.range(log_id.index..).map(|(k, _)| *k).collect();
            for k in doomed {
                c.remove(&k);
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Truncate { from: log_id.index, done: tx })?;
        rx.await.map_err(store_err)?.map_err(store_err)
    }

    /// A ledger never forgets: purging only records how far snapshots would allow it.
    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), SErr> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let value = serde_json::to_vec(&log_id).map_err(store_err)?;
        self.send(Job::Meta { key: "purged", value, done: Some(tx) })?;
        rx.await.map_err(store_err)?.map_err(store_err)
    }
}

// ---------------------------------------------------------------------------------------------
// State machine

/// Applies committed entries: read-set validation, write sets, Merkle leaves, checkpoints.
pub struct StateMachine {
    pub(crate) shared: Arc<Shared>,
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

struct RedbNodes<'a, 't>(&'a mut redb::Table<'t, (u8, u64), &'static [u8]>);

impl merkle::Nodes for RedbNodes<'_, '_> {
    fn node(&self, level: u8, index: u64) -> Result<merkle::Hash, String> {
        read_node(&*self.0, level, index)
    }
}

impl merkle::NodesMut for RedbNodes<'_, '_> {
    fn put_node(&mut self, level: u8, index: u64, hash: &merkle::Hash) -> Result<(), String> {
        self.0.insert((level, index), hash.as_slice()).map(|_| ()).map_err(|e| e.to_string())
    }
}

/// Apply committed records in one (non-durable) redb transaction: expand each into ledger
/// entries, append their Merkle leaves, check each transaction's read set and apply its writes.
/// The raft log is the durable record: after a crash the state is rebuilt by re-applying from the
/// last durable `applied`.
fn apply_batch(shared: &Shared, entries: Vec<Entry<C>>) -> Result<Vec<ApplyResult>, String> {
    let mut tx = shared.db.begin_write().map_err(|e| e.to_string())?;
    tx.set_durability(redb::Durability::None).map_err(|e| e.to_string())?;
    let mut results = Vec::with_capacity(entries.len());
    let mut last_non_sig = shared.last_non_signature.load(Ordering::Acquire);
    let mut last_checkpoint = shared.last_checkpoint.load(Ordering::Acquire);
    let mut size = shared.applied.load(Ordering::Acquire);
    let mut term = shared.applied_term.load(Ordering::Acquire);
    let mut installed = None;
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
                merkle::append(&mut RedbNodes(&mut nodes), seqno - 1, merkle::leaf(&entry::leaf_input(&bytes)))?;
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
                        match validate(&state, &versions, &t)? {
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
                                    versions.insert(w.table.as_str(), enc.as_slice()).map_err(|e| e.to_string())?;
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
        if let Some(last) = entries.last() {
            meta.insert("applied", serde_json::to_vec(&Some(last.log_id)).map_err(|e| e.to_string())?.as_slice())
                .map_err(|e| e.to_string())?;
        }
        meta.insert("ledger_size", size.to_be_bytes().as_slice()).map_err(|e| e.to_string())?;
        meta.insert("ledger_term", term.to_be_bytes().as_slice()).map_err(|e| e.to_string())?;
        meta.insert("last_non_signature", last_non_sig.to_be_bytes().as_slice()).map_err(|e| e.to_string())?;
        meta.insert("last_checkpoint", last_checkpoint.to_be_bytes().as_slice()).map_err(|e| e.to_string())?;
    }
    tx.commit().map_err(|e| e.to_string())?;
    shared.applied_term.store(term, Ordering::Release);
    shared.applied.store(size, Ordering::Release);
    shared.last_non_signature.store(last_non_sig, Ordering::Release);
    shared.last_checkpoint.store(last_checkpoint, Ordering::Release);
    shared.applied_tx.send_replace(size);
    if let Some(seqno) = installed {
        shared.installed_tx.send_replace(seqno);
    }
    if last_non_sig.saturating_sub(last_checkpoint) >= shared.signature_interval_txs {
        shared.sign_now.notify_one();
    }
    Ok(results)
}

/// Check a transaction's read set against the current state; `Some(reason)` on a conflict.
fn validate(
    state: &redb::Table<'_, &'static [u8], &'static [u8]>,
    versions: &redb::Table<'_, &'static str, &'static [u8]>,
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
        let now = versions.get(r.table.as_str()).map_err(|e| e.to_string())?.and_then(|v| fmt::decode_tx_id(v.value()));
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
        let shared = self.shared.clone();
        // redb's writer lock may wait for the log writer's fsync: keep that off the async worker.
        crate::executor::off_executor(|| apply_batch(&shared, entries)).map_err(store_err)
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

// ---------------------------------------------------------------------------------------------
// In-process network (tests and single-process clusters)

pub use network::Router;

mod network {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use openraft::BasicNode;
    use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
        VoteResponse,
    };

    use super::{Raft, TypeConfig};

    /// Connects the raft instances of one process.
    #[derive(Clone, Default)]
    pub struct Router(Arc<Mutex<BTreeMap<u64, Raft>>>);

    impl Router {
        /// Make `raft` reachable as `id`.
        pub fn add(&self, id: u64, raft: Raft) {
            if let Ok(mut m) = self.0.lock() {
                m.insert(id, raft);
            }
        }

        fn get(&self, id: u64) -> Option<Raft> {
            self.0.lock().ok().and_then(|m| m.get(&id).cloned())
        }
    }

    /// A client of one peer through the router.
    pub struct InProcessNetwork {
        router: Router,
        target: u64,
    }

    fn unreachable<E: std::error::Error>(target: u64) -> RPCError<u64, BasicNode, E> {
        RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!("node {target} is not in this process"))))
    }

    impl RaftNetworkFactory<TypeConfig> for Router {
        type Network = InProcessNetwork;

        async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Self::Network {
            InProcessNetwork { router: self.clone(), target }
        }
    }

    impl RaftNetwork<TypeConfig> for InProcessNetwork {
        async fn append_entries(
            &mut self,
            rpc: AppendEntriesRequest<TypeConfig>,
            _option: RPCOption,
        ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
            let raft = self.router.get(self.target).ok_or_else(|| unreachable(self.target))?;
            raft.append_entries(rpc)
                .await
                .map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
        }

        async fn install_snapshot(
            &mut self,
            rpc: InstallSnapshotRequest<TypeConfig>,
            _option: RPCOption,
        ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>>
        {
            let raft = self.router.get(self.target).ok_or_else(|| unreachable(self.target))?;
            raft.install_snapshot(rpc)
                .await
                .map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
        }

        async fn vote(
            &mut self,
            rpc: VoteRequest<u64>,
            _option: RPCOption,
        ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
            let raft = self.router.get(self.target).ok_or_else(|| unreachable(self.target))?;
            raft.vote(rpc).await.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
        }
    }
}
