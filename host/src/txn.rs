//! One transaction of the service layer over the ledger, and the one way to commit it.
//!
//! Governance, authentication and clean rooms all read committed state through a [`StateTx`]
//! (typed JSON records of host-owned tables) and write through [`Core::write`]: run the decision
//! on a snapshot, commit it with what caused it, and re-run it on a conflict (optimistic
//! concurrency: nothing is locked). A write that changes what the node runs (plugins, the
//! constitution, the service status) answers only once the reconciler has loaded it.

use std::sync::Arc;
use std::time::Duration;

use cgs_core::TxId;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ErrorKind, ServiceError};
use crate::executor::off_executor;
use crate::ledger::Ledger;
use crate::reconcile::Reconciler;
use crate::runtime::Runtime;
use crate::store::{CommitError, Store, Transaction, TxMeta};

/// A transaction: typed JSON access to host-owned tables, at one snapshot.
pub struct StateTx {
    /// The underlying transaction (reads are recorded for the commit-time check).
    pub tx: Transaction,
    /// Service time (ms), fixed for the transaction.
    pub now_ms: u64,
}

impl StateTx {
    /// The record at `key` of `table`.
    pub fn get<T: DeserializeOwned>(&mut self, table: &str, key: &str) -> Result<Option<T>, ServiceError> {
        match self.tx.get(table, key.as_bytes()).map_err(ServiceError::unavailable)? {
            Some(v) => serde_json::from_slice(&v.value)
                .map(Some)
                .map_err(|e| ServiceError::unavailable(format!("corrupt {table} record: {e}"))),
            None => Ok(None),
        }
    }

    /// Write the record at `key` of `table`.
    pub fn put<T: Serialize>(&mut self, table: &str, key: &str, value: &T) -> Result<(), ServiceError> {
        self.tx.put(table, key.as_bytes(), serde_json::to_vec(value).map_err(ServiceError::unavailable)?);
        Ok(())
    }

    /// Every record of `table`, in key order.
    pub fn scan<T: DeserializeOwned>(&mut self, table: &str) -> Result<Vec<(String, T)>, ServiceError> {
        let entries = self
            .tx
            .range(table, &crate::store::KeyRange::default(), usize::MAX, false)
            .map_err(ServiceError::unavailable)?;
        entries
            .into_iter()
            .map(|e| {
                let k = String::from_utf8_lossy(&e.key).into_owned();
                serde_json::from_slice(&e.value)
                    .map(|v| (k, v))
                    .map_err(|e| ServiceError::unavailable(format!("corrupt {table} record: {e}")))
            })
            .collect()
    }
}

/// The result of a write: the answer and the transaction that committed it.
#[derive(Debug)]
pub struct Written {
    /// The answer.
    pub body: serde_json::Value,
    /// The committed transaction.
    pub tx_id: TxId,
}

/// What a write records about its cause.
pub struct Cause<'a> {
    /// What it is: `proposal`, `PUT secret …`.
    pub operation: &'a str,
    /// The signed message it carried (empty for bearer-token writes).
    pub envelope: &'a [u8],
}

/// How many times a write is re-run after a conflict before `503 TransactionConflict`.
const RETRIES: usize = 8;

/// What the service layer runs on: the runtime, the ledger and the reconciler.
pub struct Core {
    /// The plugin runtime.
    pub runtime: Arc<Runtime>,
    /// The ledger.
    pub ledger: Arc<Ledger>,
    /// Loads what the applied state makes active.
    pub reconciler: Arc<Reconciler>,
}

impl Core {
    /// A transaction at the latest committed state.
    pub fn begin(&self) -> Result<StateTx, ServiceError> {
        Ok(StateTx {
            tx: Transaction::new(self.ledger.snapshot().map_err(ServiceError::unavailable)?),
            now_ms: self.runtime.now_ms(),
        })
    }

    /// Commit `g` as a transaction of `caller` (recorded; blinded by the caller for users).
    pub async fn commit(&self, g: StateTx, cause: &Cause<'_>, caller: &str) -> Result<TxId, ServiceError> {
        let installs = g.tx.writes_any(crate::ledger::INSTALLED_STATE);
        let (reads, writes) = g.tx.into_sets();
        let meta = TxMeta {
            caller: caller.to_string(),
            plugin: String::new(),
            operation: cause.operation.to_string(),
            request_digest: {
                use sha2::Digest;
                sha2::Sha256::digest(cause.envelope).into()
            },
            envelope: cause.envelope.to_vec(),
            tx_time_ms: g.now_ms,
        };
        let id = self.ledger.commit(reads, writes, meta).await.map_err(|e| match e {
            CommitError::Conflict(_) => ServiceError::new(
                ErrorKind::Contended,
                "TransactionConflict",
                "a concurrent governance change conflicted; retry",
            ),
            CommitError::Store(s) => ServiceError::unavailable(s.0),
        })?;
        if installs {
            // Committed: a failure to load it is the node's problem (the reconciler logs it and
            // retries at the next change or restart), not the caller's.
            if !self.reconciler.caught_up(id.seqno, Duration::from_secs(120)).await {
                tracing::error!(tx = %id, "the node has not loaded what the transaction made active yet");
            }
        }
        Ok(id)
    }

    /// Run `decide` on a fresh transaction and commit what it wrote, re-running it (on a new
    /// snapshot) when a concurrent change conflicts. `decide` answers the response body and the
    /// caller to record.
    pub async fn write<F>(&self, cause: Cause<'_>, decide: F) -> Result<Written, ServiceError>
    where
        F: Fn(&mut StateTx) -> Result<(serde_json::Value, String), ServiceError>,
    {
        let mut attempts = 0;
        loop {
            let mut g = self.begin()?;
            let (body, caller) = off_executor(|| decide(&mut g))?;
            match self.commit(g, &cause, &caller).await {
                Ok(tx_id) => return Ok(Written { body, tx_id }),
                Err(e) if e.kind == ErrorKind::Contended && attempts < RETRIES => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }
}
