//! The raft log in redb: appends return at once; a writer thread commits everything queued in
//! one durable transaction (group commit) and then reports the flush.

// openraft's storage traits fix the error type (`StorageError`, ~200 bytes); helpers use it too.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use cgs_ledger_format::store_format as fmt;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, Vote};
use redb::{ReadableDatabase, ReadableTable};

use super::raft::{C, SErr, Shared, entry_of, meta_json, read_err, record_of, store_err};

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
    /// A leader's appends also go to its followers at once (`early.rs`).
    early: Arc<super::early::Early>,
    /// The log id of the last entry appended (none after a truncation).
    last_appended: Arc<Mutex<Option<LogId<u64>>>>,
    /// The last commit index openraft saved (early appends carry it to the followers).
    committed: Arc<Mutex<Option<LogId<u64>>>>,
}

impl LogStore {
    pub(crate) fn new(shared: Arc<Shared>, early: Arc<super::early::Early>) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let cache: Arc<Mutex<BTreeMap<u64, Entry<C>>>> = Arc::default();
        let (db_shared, cache2) = (shared.clone(), cache.clone());
        std::thread::Builder::new().name("cgs-log-writer".into()).spawn(move || writer(db_shared, cache2, rx))?;
        Ok(Self { shared, cache, jobs: tx, early, last_appended: Arc::default(), committed: Arc::default() })
    }

    fn send(&self, job: Job) -> Result<(), SErr> {
        self.jobs.send(job).map_err(|_| store_err("the log writer has stopped"))
    }

    /// The log id of the entry before `index`: `Some(None)` before the first entry, `None` if
    /// this log does not hold it (then no early append is made).
    fn log_id_before(&self, index: u64) -> Result<Option<Option<LogId<u64>>>, SErr> {
        let Some(prev) = index.checked_sub(1) else { return Ok(Some(None)) };
        if let Some(last) = *self.last_appended.lock().map_err(|_| read_err("log cache poisoned"))?
            && last.index == prev
        {
            return Ok(Some(Some(last)));
        }
        if let Some(e) = self.cache.lock().map_err(|_| read_err("log cache poisoned"))?.get(&prev) {
            return Ok(Some(Some(e.log_id)));
        }
        Ok(self.db_log_id(Some(prev))?.map(Some))
    }

    fn last_in_db(&self) -> Result<Option<LogId<u64>>, SErr> {
        self.db_log_id(None)
    }

    /// The log id of the durable entry at `index` (the last one if `None`).
    fn db_log_id(&self, index: Option<u64>) -> Result<Option<LogId<u64>>, SErr> {
        let tx = self.shared.db.begin_read().map_err(read_err)?;
        let t = match tx.open_table(fmt::RAFT_LOG) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(read_err(e)),
        };
        let value = match index {
            Some(i) => t.get(i).map_err(read_err)?,
            None => t.last().map_err(read_err)?.map(|(_, v)| v),
        };
        value.map(|v| entry_of(v.value()).map(|e| e.log_id).map_err(read_err)).transpose()
    }
}

/// `vote` as read back at start: this node's own committed vote becomes uncommitted (see
/// `read_vote`).
fn own_vote_uncommitted(vote: Vote<u64>, me: u64) -> Vote<u64> {
    if vote.is_committed() && vote.leader_id().voted_for() == Some(me) {
        Vote::new(vote.leader_id().get_term(), me)
    } else {
        vote
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
        // A batch of nothing but the committed index (openraft may lose it: it only saves
        // re-applying at start) is written without an fsync of its own; the next durable commit
        // carries it to disk. (An fsync for it delayed the next append behind it.)
        let durable = batch.iter().any(|j| !matches!(j, Job::Meta { done: None, .. }));
        let result = (|| -> Result<(), String> {
            let mut tx = shared.db.begin_write().map_err(|e| e.to_string())?;
            let durability = if durable { redb::Durability::Immediate } else { redb::Durability::None };
            tx.set_durability(durability).map_err(|e| e.to_string())?;
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
            let started = std::time::Instant::now();
            tx.commit().map_err(|e| e.to_string())?;
            if durable {
                shared.log_commits.observe(started.elapsed());
            }
            let written: usize =
                batch.iter().map(|j| if let Job::Append { entries, .. } = j { entries.len() } else { 0 }).sum();
            shared.log_entries.fetch_add(written as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(())
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

    /// The saved vote, except that this node's own *committed* vote comes back uncommitted: a
    /// node that led before it stopped does not take up leading again in the same term (openraft
    /// 0.9 would, from a committed vote of its own). It campaigns in a new term like any other.
    /// A leader sends entries to its followers before its own flush (`early.rs`): after a crash
    /// it may have lost entries of its term that followers hold, and leading on in that term it
    /// would give other entries the same log ids.
    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, SErr> {
        let vote: Option<Vote<u64>> = meta_json(&self.shared.db, "vote")?;
        Ok(vote.map(|v| own_vote_uncommitted(v, self.shared.node_id)))
    }

    /// Saved lazily: with the next durable write (openraft reads it back only to re-apply less
    /// at start; losing the latest costs nothing else).
    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), SErr> {
        *self.committed.lock().map_err(|_| store_err("log cache poisoned"))? = committed;
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
        let entries: Vec<Entry<C>> = entries.into_iter().collect();
        let Some(first) = entries.first().map(|e| e.log_id) else {
            return self.send(Job::Append { entries: Vec::new(), callback });
        };
        // A leader's own entries go to the followers now, while this node flushes them.
        // A membership change goes only the usual way: each node learns of it exactly as
        // openraft sends it (a node being removed gets no entries beyond what raft gives it).
        let membership = entries.iter().any(|e| matches!(e.payload, openraft::EntryPayload::Membership(_)));
        let early = match self.early.leading(first.leader_id.term).filter(|_| !membership) {
            Some(vote) => self.log_id_before(first.index)?.map(|prev| (vote, prev, entries.clone())),
            None => None,
        };
        let mut encoded = Vec::with_capacity(entries.len());
        let last = entries.last().map(|e| e.log_id);
        {
            let mut c = self.cache.lock().map_err(|_| store_err("log cache poisoned"))?;
            for e in entries {
                encoded.push((e.log_id, record_of(&e).encode()));
                c.insert(e.log_id.index, e);
            }
        }
        *self.last_appended.lock().map_err(|_| store_err("log cache poisoned"))? = last;
        self.send(Job::Append { entries: encoded, callback })?;
        if let Some((vote, prev, entries)) = early {
            let committed = *self.committed.lock().map_err(|_| store_err("log cache poisoned"))?;
            self.early.offer(vote, prev, entries, committed);
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), SErr> {
        *self.last_appended.lock().map_err(|_| store_err("log cache poisoned"))? = None;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_does_not_take_up_leading_again_in_the_same_term() {
        let own = Vote::new_committed(7, 2);
        let back = own_vote_uncommitted(own, 2);
        assert!(!back.is_committed());
        assert_eq!(back.leader_id(), own.leader_id(), "same term, still its own vote: it votes for no other in term 7");
        // Another leader's committed vote, and an uncommitted vote of its own, come back as saved.
        assert_eq!(own_vote_uncommitted(Vote::new_committed(7, 1), 2), Vote::new_committed(7, 1));
        assert_eq!(own_vote_uncommitted(Vote::new(7, 2), 2), Vote::new(7, 2));
    }
}
