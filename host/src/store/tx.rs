//! A transaction: a snapshot plus a read set and a write set, with read-own-writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Entry, KeyRange, ReadSet, Snapshot, StoreError, TxId, Versioned, WriteSet};

/// Why a transaction operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TxError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A transaction against a [`Snapshot`]. Reads see the transaction's own writes; nothing is
/// visible elsewhere until the runtime commits the read and write sets.
#[derive(Clone)]
pub struct Transaction {
    snapshot: Arc<dyn Snapshot>,
    reads: BTreeMap<(String, Vec<u8>), Option<TxId>>,
    scanned: BTreeMap<String, Option<TxId>>,
    writes: WriteSet,
}

impl Transaction {
    /// A transaction reading `snapshot`.
    pub fn new(snapshot: Arc<dyn Snapshot>) -> Self {
        Self { snapshot, reads: BTreeMap::new(), scanned: BTreeMap::new(), writes: WriteSet::new() }
    }

    /// The value at `key`: this transaction's write if any, else the snapshot's.
    pub fn get(&mut self, table: &str, key: &[u8]) -> Result<Option<Versioned>, TxError> {
        if let Some(w) = self.writes.puts.get(&(table.to_string(), key.to_vec())).cloned() {
            // Our own write has no version yet; report the version it replaces.
            let prior = self.read_committed(table, key)?.map(|v| v.version);
            return Ok(w.map(|value| Versioned { value, version: prior.unwrap_or_default() }));
        }
        self.read_committed(table, key)
    }

    fn read_committed(&mut self, table: &str, key: &[u8]) -> Result<Option<Versioned>, TxError> {
        let v = self.snapshot.get(table, key)?;
        self.reads.entry((table.to_string(), key.to_vec())).or_insert_with(|| v.as_ref().map(|v| v.version));
        Ok(v)
    }

    /// The service's keyed hash of `data` (see [`Snapshot::blind`]).
    pub fn blind(&self, data: &[u8]) -> [u8; 32] {
        self.snapshot.blind(data)
    }

    /// Write `value` at `key`.
    pub fn put(&mut self, table: &str, key: &[u8], value: Vec<u8>) {
        self.writes.puts.insert((table.to_string(), key.to_vec()), Some(value));
    }

    /// Append `value` under `prefix ‖ seqno ‖ n`, the key assigned when the transaction is
    /// ordered (not visible to this transaction's reads).
    pub fn append(&mut self, table: &str, prefix: &[u8], value: Vec<u8>) {
        self.writes.appends.push((table.to_string(), prefix.to_vec(), value));
    }

    /// Delete `key`; returns whether it existed (as this transaction sees it).
    pub fn delete(&mut self, table: &str, key: &[u8]) -> Result<bool, TxError> {
        let existed = self.get(table, key)?.is_some();
        self.writes.puts.insert((table.to_string(), key.to_vec()), None);
        Ok(existed)
    }

    /// Entries in `range` as this transaction sees them (snapshot merged with own writes).
    pub fn range(&mut self, table: &str, range: &KeyRange, limit: usize, reverse: bool) -> Result<Vec<Entry>, TxError> {
        let tv = self.snapshot.table_version(table)?;
        self.scanned.entry(table.to_string()).or_insert(tv);
        // Own writes in range can hide or add entries: fetch enough from the snapshot to fill
        // `limit` after removing deleted keys.
        let own: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = self
            .writes
            .puts
            .range((table.to_string(), Vec::new())..)
            .take_while(|((t, _), _)| t == table)
            .filter(|((_, k), _)| range.contains(k))
            .map(|((_, k), v)| (k, v))
            .collect();
        let base = self.snapshot.range(table, range, limit.saturating_add(own.len()), reverse)?;
        let mut merged: BTreeMap<Vec<u8>, Entry> = base.into_iter().map(|e| (e.key.clone(), e)).collect();
        for (k, v) in own {
            match v {
                Some(value) => {
                    let version = merged.get(k).map(|e| e.version).unwrap_or_default();
                    merged.insert(k.clone(), Entry { key: k.clone(), value: value.clone(), version });
                }
                None => {
                    merged.remove(k);
                }
            }
        }
        let out: Vec<Entry> = if reverse {
            merged.into_values().rev().take(limit).collect()
        } else {
            merged.into_values().take(limit).collect()
        };
        Ok(out)
    }

    /// Whether the transaction wrote anything.
    pub fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Whether the transaction writes any of `tables`.
    pub fn writes_any(&self, tables: &[&str]) -> bool {
        self.writes.puts.keys().any(|(t, _)| tables.contains(&t.as_str()))
            || self.writes.appends.iter().any(|(t, _, _)| tables.contains(&t.as_str()))
    }

    /// The read and write sets, for commit.
    pub fn into_sets(self) -> (ReadSet, WriteSet) {
        let reads = ReadSet {
            keys: self.reads.into_iter().map(|((t, k), v)| (t, k, v)).collect(),
            tables: self.scanned.into_iter().collect(),
        };
        (reads, self.writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemStore, Store, TxMeta};

    fn commit(store: &MemStore, tx: Transaction) -> Result<TxId, crate::store::CommitError> {
        let (r, w) = tx.into_sets();
        crate::store::now(store.commit(r, w, TxMeta::default())).expect("in-memory commits are immediate")
    }

    #[test]
    fn read_own_writes_and_overlay_ranges() {
        let store = MemStore::new();
        let mut tx = Transaction::new(store.snapshot().unwrap());
        for k in [b"a", b"b", b"c"] {
            tx.put("p.t", k, k.to_vec());
        }
        commit(&store, tx).unwrap();

        let mut tx = Transaction::new(store.snapshot().unwrap());
        tx.put("p.t", b"bb", b"new".to_vec());
        assert!(tx.delete("p.t", b"a").unwrap());
        assert!(!tx.delete("p.t", b"zz").unwrap());
        assert_eq!(tx.get("p.t", b"bb").unwrap().unwrap().value, b"new");
        assert!(tx.get("p.t", b"a").unwrap().is_none());
        let keys: Vec<_> =
            tx.range("p.t", &KeyRange::default(), 10, false).unwrap().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, vec![b"b".to_vec(), b"bb".to_vec(), b"c".to_vec()]);
        let keys: Vec<_> = tx.range("p.t", &KeyRange::default(), 2, true).unwrap().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, vec![b"c".to_vec(), b"bb".to_vec()]);
        // Nothing is visible outside before commit.
        assert!(store.snapshot().unwrap().get("p.t", b"bb").unwrap().is_none());
        commit(&store, tx).unwrap();
        assert!(store.snapshot().unwrap().get("p.t", b"bb").unwrap().is_some());
        assert!(store.snapshot().unwrap().get("p.t", b"a").unwrap().is_none());
    }

    #[test]
    fn conflicting_reads_abort() {
        let store = MemStore::new();
        let mut t1 = Transaction::new(store.snapshot().unwrap());
        let mut t2 = Transaction::new(store.snapshot().unwrap());
        assert!(t1.get("p.t", b"k").unwrap().is_none());
        assert!(t2.get("p.t", b"k").unwrap().is_none());
        t1.put("p.t", b"k", b"1".to_vec());
        t2.put("p.t", b"k", b"2".to_vec());
        commit(&store, t1).unwrap();
        assert!(matches!(commit(&store, t2), Err(crate::store::CommitError::Conflict(_))));

        // A scan conflicts with an insert into the scanned table (no phantoms).
        let mut t3 = Transaction::new(store.snapshot().unwrap());
        let n = t3.range("p.t", &KeyRange::default(), 100, false).unwrap().len();
        t3.put("p.count", b"n", n.to_string().into_bytes());
        let mut t4 = Transaction::new(store.snapshot().unwrap());
        t4.put("p.t", b"k2", b"x".to_vec());
        commit(&store, t4).unwrap();
        assert!(matches!(commit(&store, t3), Err(crate::store::CommitError::Conflict(_))));

        // Blind writes never conflict.
        let mut t5 = Transaction::new(store.snapshot().unwrap());
        t5.put("p.t", b"k", b"3".to_vec());
        let id = commit(&store, t5).unwrap();
        assert_eq!(store.snapshot().unwrap().get("p.t", b"k").unwrap().unwrap().version, id);
    }
}
