//! The ledger's background work: group commit (proposers turning queued payloads into raft
//! records: two for a node alone, one in a cluster) and the signature loop that proposes
//! checkpoints.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cgs_core::TxId;
use cgs_core::entry::{Payload, SignatureEntry};
use cgs_ledger_format::store_format as fmt;
use redb::ReadableDatabase;

use super::proofs::ReadNodes;
use super::{Ledger, LedgerError, Outcome, Proposal, Raft, db_err, merkle, now_ms};
use crate::store::{CommitError, Store as _, StoreError};

/// A payload waiting to be proposed, and who waits for its outcome.
pub(super) struct Pending {
    payload: Vec<u8>,
    done: tokio::sync::oneshot::Sender<Result<(TxId, Outcome), CommitError>>,
}

/// Most payloads in one raft record.
const MAX_BATCH: usize = 4096;
/// Most payload bytes in one raft record.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// Group commit: take everything queued (up to a limit) as one raft record. Two of these run, so
/// that while one record is being flushed the next is already formed and queued behind it
/// (openraft 0.9 flushes one append at a time).
///
/// While the membership has other nodes (voters or learners), they take `turn` in order and
/// hold it from forming a record until it is applied: one record at a time. There every record
/// costs each node a flush, an apply and peer messages, and the leader's flush already overlaps
/// its followers' (early append): records half as many and twice as large took ~6% more writes
/// at 256 clients with the same CPU, and more at 4-64 clients (BENCHMARKS.md, seventh session).
/// Both keep running, so the queue is still served if one of them ends (a panic releases the
/// turn as it unwinds).
pub(super) async fn proposer(
    raft: Raft,
    rx: Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Pending>>>,
    turn: Arc<tokio::sync::Mutex<()>>,
) {
    let server = raft.server_metrics();
    loop {
        let in_cluster = server.borrow().membership_config.membership().nodes().count() > 1;
        let _turn = if in_cluster { Some(turn.lock().await) } else { None };
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut bytes = first.payload.len();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(p) => {
                        bytes += p.payload.len();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        let (payloads, waiters): (Vec<Vec<u8>>, Vec<_>) = batch.into_iter().map(|p| (p.payload, p.done)).unzip();
        match raft.client_write(Proposal(payloads)).await {
            Ok(resp) => {
                let mut outcomes = resp.data.0.into_iter();
                for w in waiters {
                    let r = match outcomes.next() {
                        Some((id, Outcome::Applied)) => Ok((id, Outcome::Applied)),
                        Some((_, Outcome::Conflict(why))) => Err(CommitError::Conflict(why)),
                        None => {
                            Err(CommitError::Store(StoreError("the record applied fewer entries than proposed".into())))
                        }
                    };
                    let _ = w.send(r);
                }
            }
            Err(e) => {
                let msg = match &e {
                    openraft::error::RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(f)) => {
                        format!("this node is not the leader (leader: {:?})", f.leader_id)
                    }
                    other => other.to_string(),
                };
                for w in waiters {
                    let _ = w.send(Err(CommitError::Store(StoreError(msg.clone()))));
                }
            }
        }
    }
}

impl Ledger {
    /// Queue a payload for the next raft record and wait for its outcome.
    async fn propose(&self, payload: Vec<u8>) -> Result<(TxId, Outcome), CommitError> {
        propose(&self.proposals, payload).await
    }

    /// Propose a signed checkpoint of everything applied, if anything is unsigned.
    async fn sign_checkpoint(&self) -> Result<bool, LedgerError> {
        if !self.is_leader() {
            return Ok(false);
        }
        let applied = self.shared.applied.load(Ordering::Acquire);
        let last_non_sig = self.shared.last_non_signature.load(Ordering::Acquire);
        let last_cp = self.shared.last_checkpoint.load(Ordering::Acquire);
        if last_non_sig <= last_cp || applied == 0 {
            return Ok(false);
        }
        // A checkpoint verifies only against a key the ledger records: none is signed before this
        // node's key is applied (`record_node_key`), or `cgs ledger verify` would refuse it.
        if !self.key_recorded.load(Ordering::Acquire) {
            let snap = self.snapshot().map_err(db_err)?;
            if snap.get("sys.nodes", &self.node_id.to_be_bytes()).map_err(db_err)?.is_none() {
                // A leader whose key is not recorded yet (a new leader after a failover) records it.
                self.record_node_key().await?;
                return Ok(false);
            }
            self.key_recorded.store(true, Ordering::Release);
        }
        // Held (a recovery not committed yet): the key is recorded above, nothing is signed.
        if self.signatures_held.load(Ordering::Acquire) {
            return Ok(false);
        }
        // A new leader signs once it applied an entry of its own term (its first, blank
        // record): every entry of earlier terms — an earlier leader's checkpoint among them — is
        // applied then, so its checkpoint never covers less than one before it in the log.
        let term = self.raft.metrics().borrow().current_term;
        if self.shared.applied_term.load(Ordering::Acquire) != term {
            return Ok(false);
        }
        // Read after the term: the state machine publishes the size before the term.
        let applied = self.shared.applied.load(Ordering::Acquire);
        let root = {
            let rtx = self.shared.db.begin_read().map_err(db_err)?;
            let nodes = ReadNodes(rtx.open_table(fmt::MERKLE).map_err(db_err)?);
            merkle::root(&nodes, applied).map_err(LedgerError::Db)?
        };
        let payload = Payload::Signature(SignatureEntry {
            tx_time_ms: now_ms(),
            node_id: self.node_id,
            tree_size: applied,
            root,
            note: self.signer.sign_checkpoint(applied, &root),
            cose_signature: self.signer.sign_receipt_root(applied, &root),
        });
        self.propose(payload.encode()).await.map_err(|e| LedgerError::Raft(e.to_string()))?;
        Ok(true)
    }
}

pub(super) async fn propose(
    proposals: &tokio::sync::mpsc::UnboundedSender<Pending>,
    payload: Vec<u8>,
) -> Result<(TxId, Outcome), CommitError> {
    let (done, rx) = tokio::sync::oneshot::channel();
    proposals
        .send(Pending { payload, done })
        .map_err(|_| CommitError::Store(StoreError("the ledger is shut down".into())))?;
    rx.await.map_err(|_| CommitError::Store(StoreError("the ledger is shut down".into())))?
}

pub(super) async fn signature_loop(ledger: std::sync::Weak<Ledger>, interval: Duration) {
    loop {
        let notify = match ledger.upgrade() {
            Some(l) => l.shared.clone(),
            None => return,
        };
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = notify.sign_now.notified() => {}
        }
        drop(notify);
        let Some(l) = ledger.upgrade() else { return };
        if let Err(e) = l.sign_checkpoint().await {
            tracing::debug!(error = %e, "checkpoint not signed");
        }
    }
}
