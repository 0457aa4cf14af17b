//! An in-memory [`Store`]: no durability, serializable optimistic commits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{
    CommitError, CommitFuture, Entry, KeyRange, ReadSet, Snapshot, Store, StoreError, TxId, TxMeta, Versioned, WriteSet,
};

type Table = BTreeMap<Vec<u8>, (Vec<u8>, TxId)>;

#[derive(Default, Clone)]
struct State {
    tables: BTreeMap<String, Table>,
    table_versions: BTreeMap<String, TxId>,
}

struct MemSnapshot(Arc<State>);

/// A store that keeps committed state in memory (term 1, seqno counting up from 1).
pub struct MemStore {
    inner: Mutex<Inner>,
}

struct Inner {
    state: Arc<State>,
    last: TxId,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self { inner: Mutex::new(Inner { state: Arc::new(State::default()), last: TxId::default() }) }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError("in-memory store lock poisoned".into()))
    }
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

/// The blinding key of in-memory stores (they hold no secrets).
const MEM_BLIND_KEY: [u8; 32] = *b"cgs in-memory store blinding key";

impl Snapshot for MemSnapshot {
    fn blind(&self, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&MEM_BLIND_KEY, data).as_bytes()
    }

    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Versioned>, StoreError> {
        Ok(self
            .0
            .tables
            .get(table)
            .and_then(|t| t.get(key))
            .map(|(v, ver)| Versioned { value: v.clone(), version: *ver }))
    }

    fn range(&self, table: &str, range: &KeyRange, limit: usize, reverse: bool) -> Result<Vec<Entry>, StoreError> {
        let Some(t) = self.0.tables.get(table) else { return Ok(Vec::new()) };
        use std::ops::Bound;
        let lo = range.start.as_ref().map_or(Bound::Unbounded, |s| Bound::Included(s.clone()));
        let hi = range.end.as_ref().map_or(Bound::Unbounded, |e| Bound::Excluded(e.clone()));
        if let (Some(s), Some(e)) = (&range.start, &range.end)
            && s >= e
        {
            return Ok(Vec::new());
        }
        let it = t.range((lo, hi));
        let to_entry =
            |(k, (v, ver)): (&Vec<u8>, &(Vec<u8>, TxId))| Entry { key: k.clone(), value: v.clone(), version: *ver };
        Ok(if reverse { it.rev().take(limit).map(to_entry).collect() } else { it.take(limit).map(to_entry).collect() })
    }

    fn table_version(&self, table: &str) -> Result<Option<TxId>, StoreError> {
        Ok(self.0.table_versions.get(table).copied())
    }
}

impl Store for MemStore {
    fn snapshot(&self) -> Result<Arc<dyn Snapshot>, StoreError> {
        Ok(Arc::new(MemSnapshot(self.lock()?.state.clone())))
    }

    fn commit(&self, reads: ReadSet, writes: WriteSet, _meta: TxMeta) -> CommitFuture {
        Box::pin(std::future::ready(self.commit_now(reads, writes)))
    }

    fn last_committed(&self) -> TxId {
        self.inner.lock().map(|i| i.last).unwrap_or_default()
    }
}

impl MemStore {
    fn commit_now(&self, reads: ReadSet, writes: WriteSet) -> Result<TxId, CommitError> {
        let mut inner = self.lock()?;
        for (table, key, seen) in &reads.keys {
            let now = inner.state.tables.get(table).and_then(|t| t.get(key)).map(|(_, v)| *v);
            if now != *seen {
                return Err(CommitError::Conflict(format!("key in `{table}` changed since it was read")));
            }
        }
        for (table, seen) in &reads.tables {
            if inner.state.table_versions.get(table) != seen.as_ref() {
                return Err(CommitError::Conflict(format!("table `{table}` changed since it was scanned")));
            }
        }
        if writes.is_empty() {
            return Ok(inner.last);
        }
        let id = TxId::new(1, inner.last.seqno + 1);
        let state = Arc::make_mut(&mut inner.state);
        for (n, (table, prefix, value)) in writes.appends.into_iter().enumerate() {
            state.table_versions.insert(table.clone(), id);
            let key = cgs_core::entry::append_key(&prefix, id.seqno, n as u32);
            state.tables.entry(table).or_default().insert(key, (value, id));
        }
        for ((table, key), value) in writes.puts {
            state.table_versions.insert(table.clone(), id);
            let t = state.tables.entry(table).or_default();
            match value {
                Some(v) => {
                    t.insert(key, (v, id));
                }
                None => {
                    t.remove(&key);
                }
            }
        }
        inner.last = id;
        Ok(id)
    }
}
