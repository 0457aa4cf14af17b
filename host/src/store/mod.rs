//! The transactional key-value store behind the plugins' `kv`.
//!
//! [`Store`] is what the runtime needs from storage: consistent snapshots of committed state and
//! an optimistic commit that checks the read set. [`MemStore`] keeps everything in memory; the
//! ledger store (redb + replicated log) implements the same trait.
//!
//! Table names here are internal names: `<plugin>.<table>` for plugin tables and `gov.<name>` for
//! governance tables. The runtime maps a plugin's short names to these.

mod mem;
mod tx;

use std::sync::Arc;

pub use cgs_core::TxId;
pub use mem::MemStore;

/// Poll a future that is expected to be ready at once (an in-memory commit); `None` if it is
/// not.
pub fn now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}
pub use tx::{Transaction, TxError};

/// A stored value with the id of the transaction that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: Vec<u8>,
    /// The tx id of its last write.
    pub version: TxId,
}

/// One entry of a range scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// The tx id of its last write.
    pub version: TxId,
}

/// Bounds of a range scan: `start <= key < end`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// Inclusive lower bound.
    pub start: Option<Vec<u8>>,
    /// Exclusive upper bound.
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Whether `key` is inside.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.start.as_deref().is_none_or(|s| key >= s) && self.end.as_deref().is_none_or(|e| key < e)
    }
}

/// A storage failure (not a conflict).
#[derive(Debug, Clone, thiserror::Error)]
#[error("store failure: {0}")]
pub struct StoreError(pub String);

/// A consistent, read-only view of committed state.
pub trait Snapshot: Send + Sync {
    /// The value at `key`.
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Versioned>, StoreError>;
    /// Entries in `range`, in key order (or reverse), at most `limit`.
    fn range(&self, table: &str, range: &KeyRange, limit: usize, reverse: bool) -> Result<Vec<Entry>, StoreError>;
    /// The tx id of the last write to any key of `table` (for detecting phantoms in range reads).
    fn table_version(&self, table: &str) -> Result<Option<TxId>, StoreError>;
    /// A keyed hash of `data` under the service's blinding key (derived from the ledger secret):
    /// what stands for confidential data in keys, which the ledger files show.
    fn blind(&self, data: &[u8]) -> [u8; 32];
}

/// What a transaction read: checked at commit time.
#[derive(Debug, Clone, Default)]
pub struct ReadSet {
    /// Keys read, with the version seen (`None`: absent).
    pub keys: Vec<(String, Vec<u8>, Option<TxId>)>,
    /// Tables scanned, with the table version seen.
    pub tables: Vec<(String, Option<TxId>)>,
}

/// What a transaction writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSet {
    /// Puts (`Some`) and deletes (`None`) by `(table, key)`.
    pub puts: std::collections::BTreeMap<(String, Vec<u8>), Option<Vec<u8>>>,
    /// Appends `(table, prefix, value)`: the key `prefix ‖ seqno ‖ n` is assigned when the
    /// transaction is ordered.
    pub appends: Vec<(String, Vec<u8>, Vec<u8>)>,
}

impl WriteSet {
    /// No writes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing is written.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.appends.is_empty()
    }
}

/// Who and what caused a transaction; recorded with it.
#[derive(Debug, Clone, Default)]
pub struct TxMeta {
    /// The caller's id (member id, user, session), empty if anonymous.
    pub caller: String,
    /// The plugin that ran.
    pub plugin: String,
    /// `METHOD /path` of the request, or the action name.
    pub operation: String,
    /// A digest of the request: keyed (`blind`) for plugin requests, SHA-256 of the signed message
    /// for governance writes.
    pub request_digest: [u8; 32],
    /// The raw signed envelope of a governance write (recorded encrypted in the ledger entry).
    pub envelope: Vec<u8>,
    /// Transaction time (ms since the Unix epoch) set by the leader.
    pub tx_time_ms: u64,
}

/// A commit failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// Something this transaction read changed since; the caller may re-execute.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of a commit, once the transaction is ordered (and, for the ledger, replicated,
/// durable and applied).
pub type CommitFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<TxId, CommitError>> + Send>>;

/// Committed state plus optimistic commits.
pub trait Store: Send + Sync + 'static {
    /// A snapshot of the latest committed state.
    fn snapshot(&self) -> Result<Arc<dyn Snapshot>, StoreError>;
    /// Commit `writes` if nothing in `reads` changed by the time the transaction is ordered;
    /// resolves to the new tx id.
    fn commit(&self, reads: ReadSet, writes: WriteSet, meta: TxMeta) -> CommitFuture;
    /// The id of the last committed transaction (`0.0` if none).
    fn last_committed(&self) -> TxId;
}
