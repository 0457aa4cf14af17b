//! The ledger: the service's source of truth.
//!
//! * a replicated log (openraft 0.9) whose entries are ledger transactions — read set, write set,
//!   caller, operation, claims digest, transaction time set by the leader — stored with the
//!   applied state in one redb file per node;
//! * optimistic concurrency decided **at apply time** from the recorded read set, identically on
//!   every replica, so only the leader executes plugins and followers apply write sets;
//! * an RFC 9162 Merkle tree over every entry, signed checkpoints (C2SP notes) every N entries or
//!   T ms, COSE receipts, consistency proofs;
//! * private tables encrypted with the ledger secret before they reach an entry or the state.

pub mod crypto;
pub mod merkle;
mod raft;
pub mod signer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use cgs_core::TxId;
use cgs_core::entry::{self, Payload, Read, SignatureEntry, TableRead, Transaction, Write};
use cgs_ledger_format::store_format as fmt;
use openraft::BasicNode;
use redb::{Database, ReadableDatabase, ReadableTable};

pub use raft::{ApplyResult, Outcome, Proposal, Raft, Router, TypeConfig};

use crate::store::{
    CommitError, CommitFuture, Entry, KeyRange, ReadSet, Snapshot, Store, StoreError, TxMeta, Versioned, WriteSet,
};
use crypto::LedgerSecret;
use signer::NodeSigner;

/// The tables whose applied changes a node acts on beyond serving them: the active plugins and
/// constitution (load or unload code) and the service status (open the app routes). Every
/// replica learns of them from [`Ledger::installed_state_changes`] as it applies entries.
pub const INSTALLED_STATE: &[&str] = &["gov.plugins", "gov.constitution", "gov.service"];

/// Ledger settings.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// This node's raft id.
    pub node_id: u64,
    /// Sign a checkpoint after this many entries…
    pub signature_interval_txs: u64,
    /// …or this long after the first unsigned entry.
    pub signature_interval: Duration,
    /// Raft heartbeat.
    pub heartbeat: Duration,
    /// Raft election timeout (minimum; the maximum is twice this).
    pub election_timeout: Duration,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            signature_interval_txs: 1000,
            signature_interval: Duration::from_millis(100),
            heartbeat: Duration::from_millis(50),
            election_timeout: Duration::from_millis(150),
        }
    }
}

/// A ledger failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The database failed.
    #[error("ledger database: {0}")]
    Db(String),
    /// Raft failed.
    #[error("replication: {0}")]
    Raft(String),
    /// Not found.
    #[error("{0}")]
    NotFound(String),
    /// Not yet possible (e.g. no checkpoint covers the transaction yet).
    #[error("{0}")]
    NotReady(String),
    /// The request is not valid.
    #[error("{0}")]
    Invalid(String),
}

fn db_err(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Db(e.to_string())
}

/// The status of a transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum TxStatus {
    /// In the log, not yet committed.
    Pending,
    /// Committed and applied.
    Committed,
    /// Never committed at this id, or committed but refused by its read-set check.
    Invalid,
}

/// A receipt in both encodings.
pub struct ReceiptData {
    /// COSE_Sign1 bytes.
    pub cose: Vec<u8>,
    /// The JSON form.
    pub json: cgs_core::receipt::JsonReceipt,
}

/// Who signs this ledger's checkpoints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeIdentity {
    /// Raft id.
    pub node_id: u64,
    /// Base64 of the raw Ed25519 public key.
    pub public_key: String,
    /// C2SP verifier key (`origin+keyid+base64`).
    pub verifier_key: String,
    /// Log origin.
    pub origin: String,
}

/// The ledger of one node.
pub struct Ledger {
    /// The raft instance.
    pub raft: Raft,
    shared: Arc<raft::Shared>,
    signer: Arc<NodeSigner>,
    secret: Arc<LedgerSecret>,
    node_id: u64,
    /// Whether this node's key is in the applied state (checkpoints are signed only then).
    key_recorded: std::sync::atomic::AtomicBool,
    proposals: tokio::sync::mpsc::UnboundedSender<Pending>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// A payload waiting to be proposed, and who waits for its outcome.
struct Pending {
    payload: Vec<u8>,
    done: tokio::sync::oneshot::Sender<Result<(TxId, Outcome), CommitError>>,
}

/// Most payloads in one raft record.
const MAX_BATCH: usize = 4096;
/// Most payload bytes in one raft record.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// Group commit: take everything queued (up to a limit) as one raft record. Two of these run, so
/// that while one record is being replicated and flushed the next is already formed and queued
/// behind it (openraft 0.9 flushes one append at a time).
async fn proposer(raft: Raft, rx: Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Pending>>>) {
    loop {
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

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn meta_u64(db: &Database, key: &str) -> Result<u64, LedgerError> {
    let tx = db.begin_read().map_err(db_err)?;
    let t = tx.open_table(fmt::META).map_err(db_err)?;
    Ok(t.get(key).map_err(db_err)?.and_then(|v| v.value().try_into().ok().map(u64::from_be_bytes)).unwrap_or(0))
}

impl Ledger {
    /// Open (or create) the ledger in `dir`, with a raft node reachable through `router`.
    /// `origin` names the log at creation (kept afterwards).
    pub async fn open(
        dir: &Path,
        config: LedgerConfig,
        origin: &str,
        router: Router,
    ) -> Result<Arc<Ledger>, LedgerError> {
        std::fs::create_dir_all(dir.join("node")).map_err(db_err)?;
        let db = Database::create(dir.join(fmt::FILE_NAME)).map_err(db_err)?;
        // Create every table, record the format and the origin on first open.
        let log_origin = {
            let tx = db.begin_write().map_err(db_err)?;
            let log_origin: String;
            {
                tx.open_table(fmt::RAFT_LOG).map_err(db_err)?;
                tx.open_table(fmt::LEDGER).map_err(db_err)?;
                tx.open_table(fmt::STATE).map_err(db_err)?;
                tx.open_table(fmt::TABLE_VERSIONS).map_err(db_err)?;
                tx.open_table(fmt::MERKLE).map_err(db_err)?;
                tx.open_table(fmt::INVALID).map_err(db_err)?;
                tx.open_table(fmt::CHECKPOINTS).map_err(db_err)?;
                let mut meta = tx.open_table(fmt::META).map_err(db_err)?;
                let format = meta.get("format").map_err(db_err)?.map(|v| v.value().to_vec());
                match format {
                    None => {
                        meta.insert("format", fmt::FORMAT_VERSION.to_be_bytes().as_slice()).map_err(db_err)?;
                    }
                    Some(f) if f == fmt::FORMAT_VERSION.to_be_bytes() => {}
                    Some(f) => {
                        return Err(LedgerError::Db(format!(
                            "this data directory holds ledger format {f:?}, this build reads format {} (format 2 \
                             encrypts every plugin table): start with a new data directory",
                            fmt::FORMAT_VERSION
                        )));
                    }
                }
                let stored =
                    meta.get("origin").map_err(db_err)?.map(|v| String::from_utf8_lossy(v.value()).into_owned());
                log_origin = match stored {
                    Some(o) => o,
                    None => {
                        meta.insert("origin", origin.as_bytes()).map_err(db_err)?;
                        origin.to_string()
                    }
                };
            }
            tx.commit().map_err(db_err)?;
            log_origin
        };
        let signer = Arc::new(
            NodeSigner::load_or_create(&dir.join("node").join("node-signing.key"), &log_origin).map_err(db_err)?,
        );
        let secret = Arc::new(LedgerSecret::load_or_create(&dir.join("node").join("ledger-secret")).map_err(db_err)?);

        let applied = meta_u64(&db, "ledger_size")?;
        let applied_term = meta_u64(&db, "ledger_term")?;
        let last_non_signature = meta_u64(&db, "last_non_signature")?;
        let last_checkpoint = meta_u64(&db, "last_checkpoint")?;
        let (applied_tx, _) = tokio::sync::watch::channel(applied);
        // At open, what is applied is taken as changed: the reconciler loads it once.
        let (installed_tx, _) = tokio::sync::watch::channel(applied);
        let shared = Arc::new(raft::Shared {
            db,
            applied: applied.into(),
            applied_term: applied_term.into(),
            last_non_signature: last_non_signature.into(),
            last_checkpoint: last_checkpoint.into(),
            sign_now: tokio::sync::Notify::new(),
            signature_interval_txs: config.signature_interval_txs.max(1),
            applied_tx,
            installed_tx,
        });

        let log = raft::LogStore::new(shared.clone()).map_err(db_err)?;
        let sm = raft::StateMachine { shared: shared.clone() };
        let hb = config.heartbeat.as_millis().max(1) as u64;
        let et = config.election_timeout.as_millis().max(hb as u128 * 2) as u64;
        let raft_config = openraft::Config {
            cluster_name: "cgs".into(),
            heartbeat_interval: hb,
            election_timeout_min: et,
            election_timeout_max: et * 2,
            snapshot_policy: openraft::SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: u64::MAX,
            max_payload_entries: 1024,
            ..Default::default()
        };
        let raft_config = Arc::new(raft_config.validate().map_err(|e| LedgerError::Raft(e.to_string()))?);
        let raft = Raft::new(config.node_id, raft_config, router.clone(), log, sm)
            .await
            .map_err(|e| LedgerError::Raft(e.to_string()))?;
        router.add(config.node_id, raft.clone());

        let (proposals, rx) = tokio::sync::mpsc::unbounded_channel();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let mut tasks =
            vec![tokio::spawn(proposer(raft.clone(), rx.clone())), tokio::spawn(proposer(raft.clone(), rx))];
        let ledger = Arc::new(Ledger {
            raft,
            shared,
            signer,
            secret,
            node_id: config.node_id,
            key_recorded: Default::default(),
            proposals,
            tasks: Mutex::new(Vec::new()),
        });
        tasks.push(tokio::spawn(signature_loop(Arc::downgrade(&ledger), config.signature_interval)));
        if let Ok(mut t) = ledger.tasks.lock() {
            *t = tasks;
        }
        Ok(ledger)
    }

    /// Make this node a one-member cluster if the ledger is new; no-op otherwise.
    pub async fn initialize_single(&self, addr: &str) -> Result<(), LedgerError> {
        if self.raft.is_initialized().await.map_err(|e| LedgerError::Raft(e.to_string()))? {
            return Ok(());
        }
        let mut members = BTreeMap::new();
        members.insert(self.node_id, BasicNode::new(addr));
        self.raft.initialize(members).await.map_err(|e| LedgerError::Raft(e.to_string()))
    }

    /// Wait until some node leads and this node has applied everything the leader had when it
    /// started leading.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, LedgerError> {
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is elected")
            .await
            .map_err(|e| LedgerError::NotReady(e.to_string()))?;
        Ok(m.current_leader.unwrap_or_default())
    }

    /// Whether this node currently leads.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.node_id)
    }

    /// Role for `/node/health`.
    pub fn role(&self) -> &'static str {
        let m = self.raft.metrics().borrow().clone();
        match m.state {
            openraft::ServerState::Leader => "leader",
            openraft::ServerState::Learner => "learner",
            openraft::ServerState::Candidate => "candidate",
            openraft::ServerState::Follower => "follower",
            openraft::ServerState::Shutdown => "shutdown",
        }
    }

    /// The last applied ledger entry (tx id). Seqnos are assigned when a record is applied, so
    /// this is both the last and the committed transaction of this node's ledger.
    pub fn last_applied(&self) -> TxId {
        TxId::new(self.shared.applied_term.load(Ordering::Acquire), self.shared.applied.load(Ordering::Acquire))
    }

    /// Record this node's checkpoint key in `sys.nodes` (once).
    pub async fn record_node_key(&self) -> Result<(), LedgerError> {
        let key = self.node_id.to_be_bytes().to_vec();
        let identity = self.identity();
        let value = serde_json::to_vec(&identity).map_err(db_err)?;
        let snap = self.snapshot().map_err(db_err)?;
        let current = snap.get("sys.nodes", &key).map_err(db_err)?;
        if current.as_ref().is_some_and(|v| v.value == value) {
            return Ok(());
        }
        let mut writes = WriteSet::new();
        writes.puts.insert(("sys.nodes".to_string(), key.clone()), Some(value));
        let reads = ReadSet { keys: vec![("sys.nodes".into(), key, current.map(|c| c.version))], tables: vec![] };
        let meta = TxMeta {
            caller: format!("node:{}", self.node_id),
            plugin: String::new(),
            operation: "record node key".into(),
            request_digest: [0; 32],
            envelope: Vec::new(),
            tx_time_ms: now_ms(),
        };
        self.commit(reads, writes, meta).await.map(|_| ()).map_err(|e| LedgerError::Raft(e.to_string()))
    }

    /// Sign the node attestation document `doc` with the node key.
    pub fn sign_attestation(&self, doc: &serde_json::Value) -> [u8; 64] {
        self.signer.sign_attestation(doc)
    }

    /// The node's public key (raw Ed25519).
    pub fn public_key(&self) -> [u8; 32] {
        self.signer.public_key().to_bytes()
    }

    /// This node's identity.
    pub fn identity(&self) -> NodeIdentity {
        NodeIdentity {
            node_id: self.node_id,
            public_key: base64::engine::general_purpose::STANDARD.encode(self.signer.public_key().as_bytes()),
            verifier_key: self.signer.verifier_key(),
            origin: self.signer.origin.clone(),
        }
    }

    /// The status of a transaction id; `None` if no entry has that seqno yet. Tx ids are given
    /// out once applied, so a known id is `Committed` or `Invalid`, never `Pending`.
    pub fn status(&self, tx: TxId) -> Result<Option<TxStatus>, LedgerError> {
        let applied = self.shared.applied.load(Ordering::Acquire);
        if tx.seqno == 0 || tx.seqno > applied {
            return Ok(None);
        }
        let rtx = self.shared.db.begin_read().map_err(db_err)?;
        let ledger = rtx.open_table(fmt::LEDGER).map_err(db_err)?;
        let term = ledger
            .get(tx.seqno)
            .map_err(db_err)?
            .and_then(|v| v.value().get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes));
        if term != Some(tx.term) {
            return Ok(Some(TxStatus::Invalid));
        }
        let invalid = rtx.open_table(fmt::INVALID).map_err(db_err)?;
        Ok(Some(if invalid.get(tx.seqno).map_err(db_err)?.is_some() { TxStatus::Invalid } else { TxStatus::Committed }))
    }

    /// Wait until `seqno` is applied (or `timeout`).
    pub async fn wait_applied(&self, seqno: u64, timeout: Duration) -> bool {
        let mut rx = self.shared.applied_tx.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|a| *a >= seqno)).await.is_ok_and(|r| r.is_ok())
    }

    /// The entry at `tx` as stored (private values and signed messages encrypted) and decoded;
    /// `NotFound` unless `tx` is an applied entry of that term.
    pub fn entry(&self, tx: TxId) -> Result<(Vec<u8>, entry::Entry), LedgerError> {
        if self.status(tx)?.is_none() {
            return Err(LedgerError::NotFound(format!("no transaction {tx}")));
        }
        let rtx = self.shared.db.begin_read().map_err(db_err)?;
        let bytes = self.entry_bytes(&rtx, tx.seqno)?;
        let e = entry::Entry::decode(&bytes).map_err(db_err)?;
        if e.tx_id() != tx {
            return Err(LedgerError::NotFound(format!("no transaction {tx} (seqno {} is {})", tx.seqno, e.tx_id())));
        }
        Ok((bytes, e))
    }

    /// The signed governance message an entry records (decrypted), if any.
    pub fn open_envelope(&self, t: &entry::Transaction) -> Result<Option<Vec<u8>>, LedgerError> {
        if t.envelope.is_empty() {
            return Ok(None);
        }
        self.secret.decrypt_envelope(&t.request_digest, &t.envelope).map(Some).map_err(db_err)
    }

    /// The plaintext of a value written at `key` of `table` (decrypted if the table is private).
    pub fn open_value(&self, table: &str, key: &[u8], stored: &[u8]) -> Result<Vec<u8>, LedgerError> {
        if entry::is_private_table(table) {
            self.secret.decrypt(table, key, stored).map_err(db_err)
        } else {
            Ok(stored.to_vec())
        }
    }

    /// The service's keyed hash of `data` (see `Snapshot::blind`).
    pub fn blind(&self, data: &[u8]) -> [u8; 32] {
        self.secret.blind(data)
    }

    fn entry_bytes(&self, rtx: &redb::ReadTransaction, seqno: u64) -> Result<Vec<u8>, LedgerError> {
        let log = rtx.open_table(fmt::LEDGER).map_err(db_err)?;
        let v = log.get(seqno).map_err(db_err)?.ok_or_else(|| LedgerError::NotFound(format!("no entry {seqno}")))?;
        Ok(v.value().to_vec())
    }

    /// The signature entry of the first checkpoint whose tree contains `seqno`.
    fn covering_checkpoint(
        &self,
        rtx: &redb::ReadTransaction,
        seqno: u64,
    ) -> Result<Option<SignatureEntry>, LedgerError> {
        let cps = rtx.open_table(fmt::CHECKPOINTS).map_err(db_err)?;
        let Some(found) = cps.range(seqno..).map_err(db_err)?.next() else { return Ok(None) };
        let (_, sig_seqno) = found.map_err(db_err)?;
        let bytes = self.entry_bytes(rtx, sig_seqno.value())?;
        match entry::Entry::decode(&bytes).map_err(db_err)?.payload {
            Payload::Signature(s) => Ok(Some(s)),
            _ => Err(LedgerError::Db(format!(
                "checkpoint index points at entry {} which is not a signature",
                sig_seqno.value()
            ))),
        }
    }

    /// The seqno of the last applied transaction that changed [`INSTALLED_STATE`] (at open: the
    /// applied size), as it changes.
    pub fn installed_state_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.installed_tx.subscribe()
    }

    /// A receipt for a committed transaction.
    pub fn receipt(&self, tx: TxId, with_entry: bool) -> Result<ReceiptData, LedgerError> {
        match self.status(tx)? {
            Some(TxStatus::Committed) => {}
            Some(TxStatus::Pending) => {
                return Err(LedgerError::NotReady(format!("transaction {tx} is not committed yet")));
            }
            Some(TxStatus::Invalid) => {
                return Err(LedgerError::Invalid(format!(
                    "transaction {tx} is invalid: it was not committed at this id"
                )));
            }
            None => return Err(LedgerError::NotFound(format!("no transaction {tx}"))),
        }
        let rtx = self.shared.db.begin_read().map_err(db_err)?;
        let sig = self
            .covering_checkpoint(&rtx, tx.seqno)?
            .ok_or_else(|| LedgerError::NotReady(format!("no signed checkpoint covers {tx} yet; retry shortly")))?;
        let nodes = ReadNodes(rtx.open_table(fmt::MERKLE).map_err(db_err)?);
        let path = merkle::inclusion_proof(&nodes, tx.seqno - 1, sig.tree_size).map_err(LedgerError::Db)?;
        let bytes = self.entry_bytes(&rtx, tx.seqno)?;
        let leaf_input = entry::leaf_input(&bytes);
        let kid = self.node_kid(sig.node_id)?;
        let cose = signer::encode_cose_receipt(&signer::ReceiptParts {
            kid: &kid,
            tree_size: sig.tree_size,
            leaf_index: tx.seqno - 1,
            path: &path,
            signature: &sig.cose_signature,
            tx_id: tx,
            leaf_input: &leaf_input,
            entry: with_entry.then_some(bytes.as_slice()),
        });
        let json = cgs_core::receipt::JsonReceipt {
            tx_id: tx.to_string(),
            leaf_index: tx.seqno - 1,
            leaf_input: hex::encode(leaf_input),
            entry: with_entry.then(|| base64::engine::general_purpose::STANDARD.encode(&bytes)),
            tree_size: sig.tree_size,
            inclusion_proof: path.iter().map(hex::encode).collect(),
            checkpoint: sig.note,
        };
        Ok(ReceiptData { cose, json })
    }

    /// The COSE `kid` of a node: SHA-256 of its public key (this node's, or one recorded).
    fn node_kid(&self, node_id: u64) -> Result<Vec<u8>, LedgerError> {
        if node_id == self.node_id {
            return Ok(self.signer.kid().to_vec());
        }
        let snap = self.snapshot().map_err(db_err)?;
        let rec = snap
            .get("sys.nodes", &node_id.to_be_bytes())
            .map_err(db_err)?
            .ok_or_else(|| LedgerError::Db(format!("node {node_id} has no recorded key")))?;
        let id: serde_json::Value = serde_json::from_slice(&rec.value).map_err(db_err)?;
        let pk = base64::engine::general_purpose::STANDARD
            .decode(id["public_key"].as_str().unwrap_or_default())
            .map_err(db_err)?;
        use sha2::Digest;
        Ok(sha2::Sha256::digest(pk).to_vec())
    }

    /// Roots of the latest `n` checkpoints, newest first.
    pub fn recent_checkpoint_roots(&self, n: usize) -> Result<Vec<[u8; 32]>, LedgerError> {
        let rtx = self.shared.db.begin_read().map_err(db_err)?;
        let cps = rtx.open_table(fmt::CHECKPOINTS).map_err(db_err)?;
        let mut out = Vec::new();
        for r in cps.iter().map_err(db_err)?.rev().take(n) {
            let (_, seqno) = r.map_err(db_err)?;
            if let Payload::Signature(s) =
                entry::Entry::decode(&self.entry_bytes(&rtx, seqno.value())?).map_err(db_err)?.payload
            {
                out.push(s.root);
            }
        }
        Ok(out)
    }

    /// The latest signed checkpoint (C2SP note text).
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, LedgerError> {
        let size = self.shared.last_checkpoint.load(Ordering::Acquire);
        if size == 0 {
            return Ok(None);
        }
        let rtx = self.shared.db.begin_read().map_err(db_err)?;
        Ok(self.covering_checkpoint(&rtx, size)?.map(|s| (s.tree_size, s.note)))
    }

    /// A consistency proof between two tree sizes (both ≤ the applied size), with the signed
    /// checkpoints of those sizes when they exist.
    pub fn consistency(&self, from: u64, to: u64) -> Result<serde_json::Value, LedgerError> {
        let applied = self.shared.applied.load(Ordering::Acquire);
        if from == 0 || from > to {
            return Err(LedgerError::Invalid(format!("a consistency proof needs 0 < from ≤ to (got {from}, {to})")));
        }
        if to > applied {
            return Err(LedgerError::Invalid(format!("the tree has {applied} entries; `to` must not exceed that")));
        }
        let rtx = self.shared.db.begin_read().map_err(db_err)?;
        let nodes = ReadNodes(rtx.open_table(fmt::MERKLE).map_err(db_err)?);
        let proof = merkle::consistency_proof(&nodes, from, to).map_err(LedgerError::Db)?;
        let root_from = merkle::root(&nodes, from).map_err(LedgerError::Db)?;
        let root_to = merkle::root(&nodes, to).map_err(LedgerError::Db)?;
        let cps = rtx.open_table(fmt::CHECKPOINTS).map_err(db_err)?;
        let note_of = |size: u64| -> Result<Option<String>, LedgerError> {
            match cps.get(size).map_err(db_err)? {
                Some(s) => match entry::Entry::decode(&self.entry_bytes(&rtx, s.value())?).map_err(db_err)?.payload {
                    Payload::Signature(sig) => Ok(Some(sig.note)),
                    _ => Ok(None),
                },
                None => Ok(None),
            }
        };
        Ok(serde_json::json!({
            "from": from,
            "to": to,
            "root_from": hex::encode(root_from),
            "root_to": hex::encode(root_to),
            "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
            "checkpoint_from": note_of(from)?,
            "checkpoint_to": note_of(to)?,
        }))
    }

    /// A digest of everything applied: `(applied, Merkle root, SHA-256 over the raw state and
    /// table versions)`. Equal on replicas that applied the same log.
    pub fn state_digest(&self) -> Result<(u64, String, String), LedgerError> {
        use sha2::Digest;
        let rtx = self.shared.db.begin_read().map_err(db_err)?;
        let applied = self.shared.applied.load(Ordering::Acquire);
        let nodes = ReadNodes(rtx.open_table(fmt::MERKLE).map_err(db_err)?);
        let root = merkle::root(&nodes, applied).map_err(LedgerError::Db)?;
        let mut h = sha2::Sha256::new();
        for table in [fmt::STATE] {
            let t = rtx.open_table(table).map_err(db_err)?;
            for r in t.iter().map_err(db_err)? {
                let (k, v) = r.map_err(db_err)?;
                h.update((k.value().len() as u64).to_be_bytes());
                h.update(k.value());
                h.update((v.value().len() as u64).to_be_bytes());
                h.update(v.value());
            }
        }
        let versions = rtx.open_table(fmt::TABLE_VERSIONS).map_err(db_err)?;
        for r in versions.iter().map_err(db_err)? {
            let (k, v) = r.map_err(db_err)?;
            h.update(k.value().as_bytes());
            h.update(v.value());
        }
        Ok((applied, hex::encode(root), hex::encode(h.finalize())))
    }

    /// The number of applied entries (the tree size).
    pub fn applied(&self) -> u64 {
        self.shared.applied.load(Ordering::Acquire)
    }

    /// Stop raft, the proposers and the signer.
    pub async fn shutdown(&self) {
        let tasks: Vec<_> = self.tasks.lock().map(|mut t| t.drain(..).collect()).unwrap_or_default();
        for t in &tasks {
            t.abort();
        }
        // Wait until they are gone: an aborted task drops what it holds (the raft handle, and
        // through it the database) only when it next runs, and the file stays locked until then.
        for t in tasks {
            let _ = t.await;
        }
        let _ = self.raft.shutdown().await;
    }

    fn stop_tasks(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }

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

impl Drop for Ledger {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

async fn propose(
    proposals: &tokio::sync::mpsc::UnboundedSender<Pending>,
    payload: Vec<u8>,
) -> Result<(TxId, Outcome), CommitError> {
    let (done, rx) = tokio::sync::oneshot::channel();
    proposals
        .send(Pending { payload, done })
        .map_err(|_| CommitError::Store(StoreError("the ledger is shut down".into())))?;
    rx.await.map_err(|_| CommitError::Store(StoreError("the ledger is shut down".into())))?
}

async fn signature_loop(ledger: std::sync::Weak<Ledger>, interval: Duration) {
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

/// Merkle nodes from a read transaction.
struct ReadNodes(redb::ReadOnlyTable<(u8, u64), &'static [u8]>);

impl merkle::Nodes for ReadNodes {
    fn node(&self, level: u8, index: u64) -> Result<merkle::Hash, String> {
        raft::read_node(&self.0, level, index)
    }
}

/// A consistent view of applied state (a redb read transaction), decrypting private tables.
struct LedgerSnapshot {
    tx: redb::ReadTransaction,
    secret: Arc<LedgerSecret>,
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
        let t = Transaction {
            tx_time_ms: meta.tx_time_ms,
            caller: meta.caller,
            operation: meta.operation,
            request_digest: meta.request_digest,
            // Signed governance messages name policies, specs and users: encrypted, bound to
            // their digest (which stays in clear, so a member holding a message can find it).
            envelope: if meta.envelope.is_empty() {
                meta.envelope
            } else {
                self.secret.encrypt_envelope(&meta.envelope)
            },
            claims_digest: [0; 32],
            reads: reads.keys.into_iter().map(|(table, key, version)| Read { table, key, version }).collect(),
            table_reads: reads.tables.into_iter().map(|(table, version)| TableRead { table, version }).collect(),
            writes: writes
                .puts
                .into_iter()
                .map(|((table, key), value)| {
                    let value = match value {
                        Some(v) if entry::is_private_table(&table) => Some(self.secret.encrypt(&table, &key, &v)),
                        other => other,
                    };
                    Write { table, key, value, append: false }
                })
                // An appended value's final key is only known when ordered: it is bound to its prefix.
                .chain(writes.appends.into_iter().map(|(table, prefix, value)| {
                    let value = if entry::is_private_table(&table) {
                        self.secret.encrypt_append(&table, &prefix, &value)
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
