//! The ledger as a [`Store`]: snapshots of the applied state (private tables decrypted) and
//! commits (private values and signed messages encrypted), proposed for the next raft record.

use std::sync::Arc;

use cgs_core::TxId;
use cgs_core::entry::{self, Payload, Read, TableRead, Transaction, Write};
use cgs_ledger_format::store_format as fmt;
use redb::ReadableDatabase;

use super::Ledger;
use super::crypto::LedgerSecrets;
use super::tasks::propose;
use crate::store::{
    CommitError, CommitFuture, Entry, KeyRange, ReadSet, Snapshot, Store, StoreError, TxMeta, Versioned, WriteSet,
};

/// A consistent view of applied state (a redb read transaction), decrypting private tables.
struct LedgerSnapshot {
    tx: redb::ReadTransaction,
    secret: Arc<LedgerSecrets>,
}

impl LedgerSnapshot {
    fn value(&self, table: &str, key: &[u8], stored: &[u8]) -> Result<Vec<u8>, StoreError> {
        if entry::is_private_table(table) {
            self.secret.decrypt(table, key, stored).map_err(|e| StoreError(e.to_string()))
        } else {
            Ok(stored.to_vec())
        }
    }
}

fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl Snapshot for LedgerSnapshot {
    fn blind(&self, data: &[u8]) -> [u8; 32] {
        self.secret.blind(data)
    }

    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Versioned>, StoreError> {
        let t = self.tx.open_table(fmt::STATE).map_err(store_err)?;
        let Some(v) = t.get(fmt::state_key(table, key).as_slice()).map_err(store_err)? else { return Ok(None) };
        let (version, stored) = fmt::decode_versioned(v.value()).ok_or_else(|| store_err("corrupt state value"))?;
        Ok(Some(Versioned { value: self.value(table, key, stored)?, version }))
    }

    fn range(&self, table: &str, range: &KeyRange, limit: usize, reverse: bool) -> Result<Vec<Entry>, StoreError> {
        let t = self.tx.open_table(fmt::STATE).map_err(store_err)?;
        let lo = fmt::state_key(table, range.start.as_deref().unwrap_or_default());
        let hi = match &range.end {
            Some(e) => fmt::state_key(table, e),
            None => {
                let mut h = table.as_bytes().to_vec();
                h.push(1);
                h
            }
        };
        if lo >= hi {
            return Ok(Vec::new());
        }
        let iter = t.range(lo.as_slice()..hi.as_slice()).map_err(store_err)?;
        let mut out = Vec::new();
        type Item<'a> =
            Result<(redb::AccessGuard<'a, &'static [u8]>, redb::AccessGuard<'a, &'static [u8]>), redb::StorageError>;
        let mut push = |r: Item<'_>| -> Result<bool, StoreError> {
            let (k, v) = r.map_err(store_err)?;
            let (_, key) = fmt::split_state_key(k.value()).ok_or_else(|| store_err("corrupt state key"))?;
            let (version, stored) = fmt::decode_versioned(v.value()).ok_or_else(|| store_err("corrupt state value"))?;
            out.push(Entry { key: key.to_vec(), value: self.value(table, key, stored)?, version });
            Ok(out.len() < limit)
        };
        if reverse {
            for r in iter.rev() {
                if !push(r)? {
                    break;
                }
            }
        } else {
            for r in iter {
                if !push(r)? {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn table_version(&self, table: &str) -> Result<Option<TxId>, StoreError> {
        let t = self.tx.open_table(fmt::TABLE_VERSIONS).map_err(store_err)?;
        Ok(t.get(table).map_err(store_err)?.and_then(|v| fmt::decode_tx_id(v.value())))
    }
}

impl Store for Ledger {
    fn snapshot(&self) -> Result<Arc<dyn Snapshot>, StoreError> {
        let tx = self.shared.db.begin_read().map_err(store_err)?;
        Ok(Arc::new(LedgerSnapshot { tx, secret: self.secret.clone() }))
    }

    fn commit(&self, reads: ReadSet, writes: WriteSet, meta: TxMeta) -> CommitFuture {
        // One secret version for the whole transaction: the current one. A node that does not
        // hold the version the ledger was re-keyed to writes nothing private.
        let private = !meta.envelope.is_empty()
            || writes.puts.keys().any(|(t, _)| entry::is_private_table(t))
            || writes.appends.iter().any(|(t, _, _)| entry::is_private_table(t));
        let (secret, secrets_at) = match self.secret.current_at() {
            Ok(s) => s,
            Err(e) if private => return Box::pin(async move { Err(CommitError::Store(StoreError(e))) }),
            // Nothing private is written.
            Err(_) => (self.secret.latest(), None),
        };
        let mut table_reads: Vec<TableRead> =
            reads.tables.into_iter().map(|(table, version)| TableRead { table, version }).collect();
        if private {
            // Ordered after a re-key this node had not opened yet (encrypted before the re-key
            // was applied, or by a new leader behind its log), the transaction conflicts and runs
            // again with the new version, instead of applying values written with the old one.
            table_reads.push(TableRead { table: super::crypto::SYS_LEDGER_SECRETS.into(), version: secrets_at });
        }
        let t = Transaction {
            tx_time_ms: meta.tx_time_ms,
            caller: meta.caller,
            operation: meta.operation,
            request_digest: meta.request_digest,
            // Signed governance messages name policies, specs and users: encrypted, bound to
            // their digest (which stays in clear, so a member holding a message can find it).
            envelope: if meta.envelope.is_empty() { meta.envelope } else { secret.encrypt_envelope(&meta.envelope) },
            claims_digest: [0; 32],
            reads: reads.keys.into_iter().map(|(table, key, version)| Read { table, key, version }).collect(),
            table_reads,
            writes: writes
                .puts
                .into_iter()
                .map(|((table, key), value)| {
                    let value = match value {
                        Some(v) if entry::is_private_table(&table) => Some(secret.encrypt(&table, &key, &v)),
                        other => other,
                    };
                    Write { table, key, value, append: false }
                })
                // An appended value's final key is only known when ordered: it is bound to its prefix.
                .chain(writes.appends.into_iter().map(|(table, prefix, value)| {
                    let value = if entry::is_private_table(&table) {
                        secret.encrypt_append(&table, &prefix, &value)
                    } else {
                        value
                    };
                    Write { table, key: prefix, value: Some(value), append: true }
                }))
                .collect(),
        };
        let payload = Payload::Transaction(t).encode();
        let proposals = self.proposals.clone();
        Box::pin(async move { propose(&proposals, payload).await.map(|(id, _)| id) })
    }

    fn last_committed(&self) -> TxId {
        self.last_applied()
    }
}
