//! openraft 0.9 on redb: the raft types, and the state shared by the log store
//! (`log_store.rs`), the state machine (`state_machine.rs`) and the ledger façade; the
//! in-process network is `network.rs`.

// openraft's storage traits fix the error type (`StorageError`, ~200 bytes); helpers use it too.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::atomic::AtomicU64;

use cgs_core::TxId;
use cgs_core::entry::{RaftBody, RaftRecord};
use cgs_ledger_format::store_format as fmt;
use openraft::{AnyError, BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, StorageError, StorageIOError};
use redb::{Database, ReadableDatabase};
use serde::{Deserialize, Serialize};

/// What the leader proposes as one raft record: encoded [`Payload`](cgs_core::entry::Payload)s
/// (transactions and signatures) that arrived together (group commit). Applying it expands it
/// into one ledger entry per payload.
#[derive(Clone, Debug)]
pub struct Proposal(pub Vec<Vec<u8>>);

// On the wire between nodes (JSON), each payload is a base64 string: a third larger than the
// bytes instead of four times (an array of numbers), and quick to encode. (The log store keeps
// its own binary encoding.)
impl Serialize for Proposal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        use serde::ser::SerializeSeq as _;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for p in &self.0 {
            seq.serialize_element(&base64::engine::general_purpose::STANDARD.encode(p))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let items: Vec<String> = Vec::deserialize(d)?;
        items
            .into_iter()
            .map(|s| base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom))
            .collect::<Result<_, _>>()
            .map(Proposal)
    }
}

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
pub(super) type C = TypeConfig;
pub(super) type SErr = StorageError<u64>;

pub(super) fn store_err(e: impl std::fmt::Display) -> SErr {
    StorageIOError::write(AnyError::error(e.to_string())).into()
}

pub(super) fn read_err(e: impl std::fmt::Display) -> SErr {
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
    /// Who waits for `applied` to reach a seqno ([`super::Ledger::wait_applied`]), by seqno:
    /// each apply wakes only those it satisfies (a watch would wake every waiter at every apply).
    pub applied_waiters: std::sync::Mutex<std::collections::BTreeMap<u64, Vec<tokio::sync::oneshot::Sender<()>>>>,
    /// The seqno of the last applied transaction that wrote one of [`super::INSTALLED_STATE`]:
    /// what the node must act on (load plugins, open the service), on every replica.
    pub installed_tx: tokio::sync::watch::Sender<u64>,
    /// Latency of the raft log's durable commits (`/metrics`).
    pub log_commits: crate::metrics::IoHistogram,
    /// Latency of the applied state's (non-durable) commits (`/metrics`).
    pub apply_commits: crate::metrics::IoHistogram,
    /// Raft log entries written (`/metrics`).
    pub log_entries: AtomicU64,
    /// The ledger secrets this node holds.
    pub secrets: std::sync::Arc<super::crypto::LedgerSecrets>,
    /// The node key: it opens the secret versions sealed to this node.
    pub node_key: ed25519_dalek::SigningKey,
    /// This node's raft id.
    pub node_id: u64,
}

impl Shared {
    /// Wake the waiters `applied` (just stored) satisfies.
    pub fn wake_applied(&self, applied: u64) {
        let ready = match self.applied_waiters.lock() {
            Ok(mut w) => {
                let later = w.split_off(&(applied + 1));
                std::mem::replace(&mut *w, later)
            }
            Err(_) => return,
        };
        for tx in ready.into_values().flatten() {
            let _ = tx.send(());
        }
    }
}

/// A key and its value.
use super::KeyValue;

impl Shared {
    /// Open the ledger secret versions sealed to this node in the applied state
    /// (`sys.ledger_secrets`) that it does not hold yet, and note the highest version named.
    /// Called at open and after applying a transaction that wrote the table.
    pub fn open_secrets(&self) {
        use super::crypto::WrappedSecret;
        let (rows, table_version) = match self.secret_rows() {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "reading sys.ledger_secrets failed");
                return;
            }
        };
        let mut named = 0;
        for (key, value) in rows {
            let Some((version, node)) = super::crypto::parse_table_key(&key) else { continue };
            named = named.max(version);
            if node != Some(self.node_id) || self.secrets.holds(version) {
                continue;
            }
            match serde_json::from_slice::<WrappedSecret>(&value).map_err(|e| e.to_string()).and_then(|w| {
                if w.version != version {
                    return Err(format!("the record of version {version} holds version {}", w.version));
                }
                w.open(self.node_id, &self.node_key)
            }) {
                Ok(secret) => {
                    tracing::info!(version, "opened a new ledger secret version");
                    self.secrets.insert(secret);
                }
                Err(e) => tracing::error!(version, error = %e, "a ledger secret sealed to this node does not open"),
            }
        }
        // Named after the versions are held: a write in between uses the one it holds, and its
        // read of the table (at the version set last) makes it run again if it was older.
        self.secrets.set_named(named);
        self.secrets.set_table_version(table_version);
    }

    /// `(key, value)` of every row of `sys.ledger_secrets`, and the table's version, read at
    /// once.
    fn secret_rows(&self) -> Result<(Vec<KeyValue>, Option<TxId>), String> {
        let table = super::crypto::SYS_LEDGER_SECRETS;
        // The rows and the table's version in one read transaction: they match.
        let tx = self.db.begin_read().map_err(|e| e.to_string())?;
        let out = super::state_rows(&tx, table)?;
        let versions = tx.open_table(fmt::TABLE_VERSIONS).map_err(|e| e.to_string())?;
        let version = versions.get(table).map_err(|e| e.to_string())?.and_then(|v| fmt::decode_tx_id(v.value()));
        Ok((out, version))
    }
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

pub(super) fn meta_json<T: serde::de::DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, SErr> {
    match meta_get(db, key)? {
        Some(b) => Ok(Some(serde_json::from_slice(&b).map_err(read_err)?)),
        None => Ok(None),
    }
}
