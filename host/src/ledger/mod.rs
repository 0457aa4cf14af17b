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
//!
//! Layout: `raft.rs` (the raft types and the state its parts share), `log_store.rs` (the raft log,
//! group-committed by a writer thread), `state_machine.rs` (applying records: read-set checks,
//! writes, Merkle leaves, checkpoints), `network.rs` (the in-process raft network), `tasks.rs`
//! (the proposers and the checkpoint signer), `store.rs` (the ledger as a `Store`), `proofs.rs`
//! (entries, receipts, consistency proofs, the state digest), `merkle.rs`, `signer.rs`, `crypto.rs`.

pub mod crypto;
mod early;
mod log_store;
pub mod merkle;
mod network;
pub mod peer;
mod proofs;
pub use proofs::consistency_in_file;
mod raft;
pub mod signer;
mod state_machine;
mod store;
mod tasks;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use cgs_core::TxId;
use cgs_ledger_format::store_format as fmt;
use openraft::BasicNode;
use redb::{Database, ReadableDatabase, ReadableTable};

pub use network::{Network, Router};
pub use peer::{PeerIdentity, PeerKeys, PeerNetwork};
pub use raft::{ApplyResult, Outcome, Proposal, Raft, TypeConfig};

use crate::store::{ReadSet, Store, TxMeta, WriteSet};
use crypto::LedgerSecrets;
use signer::NodeSigner;
use tasks::{Pending, proposer, signature_loop};

/// The tables whose applied changes a node acts on beyond serving them: the active plugins and
/// constitution (load or unload code) and the service status (open the app routes). Every
/// replica learns of them from [`Ledger::installed_state_changes`] as it applies entries.
pub const INSTALLED_STATE: &[&str] =
    &[crate::schema::tables::PLUGINS, crate::schema::tables::CONSTITUTION, crate::schema::tables::SERVICE];

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
    /// Sign no checkpoint until [`Ledger::release_signatures`]: a recovering node signs nothing
    /// of the log it recovers before its recovery transaction (which checks that log against
    /// the members' shares) has committed.
    pub hold_signatures: bool,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            signature_interval_txs: 1000,
            signature_interval: Duration::from_millis(100),
            heartbeat: Duration::from_millis(50),
            election_timeout: Duration::from_millis(150),
            hold_signatures: false,
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
    /// What early appends delivered (`early.rs`).
    early: Arc<early::EarlyAcks>,
    signer: Arc<NodeSigner>,
    secret: Arc<LedgerSecrets>,
    node_id: u64,
    /// Whether this node's key is in the applied state (checkpoints are signed only then).
    key_recorded: std::sync::atomic::AtomicBool,
    /// No checkpoint is signed while this is set ([`LedgerConfig::hold_signatures`]).
    signatures_held: std::sync::atomic::AtomicBool,
    proposals: tokio::sync::mpsc::UnboundedSender<Pending>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The ledger file.
    file: std::path::PathBuf,
    /// Recorded with the node key (see [`Ledger::set_record_extras`]).
    record_extras: Mutex<serde_json::Map<String, serde_json::Value>>,
}

/// Where a node keeps its node key (the checkpoint-signing key, also its peer identity).
pub(crate) fn node_key_path(dir: &Path) -> std::path::PathBuf {
    dir.join("node").join("node-signing.key")
}

/// The peer identity (certificate) of the node whose data directory is `dir`, made from its
/// node key (created if absent): what its [`PeerNetwork`] presents, and what peers are given
/// as its key ([`PeerIdentity::public_key`]).
pub fn peer_identity(dir: &Path) -> Result<PeerIdentity, LedgerError> {
    std::fs::create_dir_all(dir.join("node")).map_err(db_err)?;
    let seed = crate::fsutil::load_or_create_secret(&node_key_path(dir), "key").map_err(db_err)?;
    PeerIdentity::from_node_key(&seed).map_err(LedgerError::Raft)
}

/// The raft id a joined node was given (`DIR/node/node-id`), if this directory is one's.
pub fn recorded_node_id(dir: &Path) -> Result<Option<u64>, LedgerError> {
    match std::fs::read_to_string(dir.join("node").join("node-id")) {
        Ok(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| LedgerError::Db(format!("{}: not a node id", dir.join("node").join("node-id").display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(db_err(e)),
    }
}

/// Remember the raft id a joining node was given.
pub fn record_node_id(dir: &Path, id: u64) -> Result<(), LedgerError> {
    crate::fsutil::write_atomic(&dir.join("node").join("node-id"), id.to_string().as_bytes()).map_err(db_err)
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// The ledger file of `dir`, opened without raft (it must not be open elsewhere): what a
/// recovering node reads before it starts.
pub fn open_file(dir: &Path) -> Result<Database, LedgerError> {
    Database::open(dir.join(fmt::FILE_NAME)).map_err(db_err)
}

/// Every row of `table` in the applied state of `db`.
pub fn read_state_table(db: &Database, table: &str) -> Result<Vec<KeyValue>, String> {
    state_rows(&db.begin_read().map_err(|e| e.to_string())?, table)
}

/// Every row of `table` in the applied state, as the read transaction `tx` sees it.
pub(crate) fn state_rows(tx: &redb::ReadTransaction, table: &str) -> Result<Vec<KeyValue>, String> {
    let state = tx.open_table(fmt::STATE).map_err(|e| e.to_string())?;
    let lo = fmt::state_key(table, b"");
    let mut hi = table.as_bytes().to_vec();
    hi.push(1);
    let mut out = Vec::new();
    for r in state.range(lo.as_slice()..hi.as_slice()).map_err(|e| e.to_string())? {
        let (k, v) = r.map_err(|e| e.to_string())?;
        let Some((t, key)) = fmt::split_state_key(k.value()) else { continue };
        if t != table {
            continue;
        }
        let Some((_, value)) = fmt::decode_versioned(v.value()) else { continue };
        out.push((key.to_vec(), value.to_vec()));
    }
    Ok(out)
}

/// The last applied ledger entry (`term.seqno`) and the raft log's last index in `db`.
pub fn read_positions(db: &Database) -> Result<(TxId, u64), LedgerError> {
    let applied = TxId::new(meta_u64(db, "ledger_term")?, meta_u64(db, "ledger_size")?);
    let tx = db.begin_read().map_err(db_err)?;
    let log = tx.open_table(fmt::RAFT_LOG).map_err(db_err)?;
    let last = log.last().map_err(db_err)?.map(|(k, _)| k.value()).unwrap_or(0);
    Ok((applied, last))
}

/// Recovery: append to the raft log in `dir` a configuration naming node `node_id` (at
/// `raft_addr`) as the only voter, so that it elects itself when raft starts and commits every
/// entry of its log. The entry keeps the last entry's term (raft's rules hold: a log only grows).
pub fn make_sole_voter(dir: &Path, node_id: u64, raft_addr: &str) -> Result<(), LedgerError> {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership};
    let db = Database::open(dir.join(fmt::FILE_NAME)).map_err(db_err)?;
    let tx = db.begin_write().map_err(db_err)?;
    {
        let mut log = tx.open_table(fmt::RAFT_LOG).map_err(db_err)?;
        let last = match log.last().map_err(db_err)? {
            Some((_, v)) => raft::entry_of(v.value()).map_err(LedgerError::Db)?.log_id,
            None => return Err(LedgerError::Db("the raft log is empty: there is nothing to recover".into())),
        };
        let membership = Membership::new(
            vec![std::collections::BTreeSet::from([node_id])],
            BTreeMap::from([(node_id, BasicNode::new(raft_addr))]),
        );
        let entry: Entry<raft::C> = Entry {
            log_id: LogId::new(CommittedLeaderId::new(last.leader_id.term, 0), last.index + 1),
            payload: EntryPayload::Membership(membership),
        };
        log.insert(last.index + 1, raft::record_of(&entry).encode().as_slice()).map_err(db_err)?;
    }
    tx.commit().map_err(db_err)?;
    Ok(())
}

impl Ledger {
    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
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
    /// Open (or create) the ledger in `dir`, with a raft node reaching its peers through
    /// `network` (a [`Router`] in this process, or a [`PeerNetwork`]).
    /// `origin` names the log at creation (kept afterwards).
    pub async fn open(
        dir: &Path,
        config: LedgerConfig,
        origin: &str,
        network: impl Into<Network>,
    ) -> Result<Arc<Ledger>, LedgerError> {
        let network = network.into();
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
        let signer = Arc::new(NodeSigner::load_or_create(&node_key_path(dir), &log_origin).map_err(db_err)?);
        let secret = Arc::new(LedgerSecrets::load_or_create(&dir.join("node").join("ledger-secret")).map_err(db_err)?);

        let applied = meta_u64(&db, "ledger_size")?;
        let applied_term = meta_u64(&db, "ledger_term")?;
        let last_non_signature = meta_u64(&db, "last_non_signature")?;
        let last_checkpoint = meta_u64(&db, "last_checkpoint")?;
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
            applied_waiters: Default::default(),
            installed_tx,
            log_commits: Default::default(),
            apply_commits: Default::default(),
            log_entries: Default::default(),
            secrets: secret.clone(),
            node_key: signer.signing_key().clone(),
            node_id: config.node_id,
        });
        // The versions re-keying gave this node (sealed to its key in the ledger).
        shared.open_secrets();

        let early = early::Early::new(config.node_id, network.clone());
        let log = log_store::LogStore::new(shared.clone(), early.clone()).map_err(db_err)?;
        let sm = state_machine::StateMachine { shared: shared.clone(), merkle_frontier: Vec::new() };
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
        let replicas = early::EarlyNetwork { network: network.clone(), acks: early.acks.clone() };
        let raft = Raft::new(config.node_id, raft_config, replicas, log, sm)
            .await
            .map_err(|e| LedgerError::Raft(e.to_string()))?;
        early.start(raft.server_metrics());
        if let Network::InProcess(router) = &network {
            router.add(config.node_id, raft.clone());
        }

        let (proposals, rx) = tokio::sync::mpsc::unbounded_channel();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        let mut tasks = vec![
            tokio::spawn(proposer(raft.clone(), rx.clone(), turn.clone())),
            tokio::spawn(proposer(raft.clone(), rx, turn)),
        ];
        let ledger = Arc::new(Ledger {
            raft,
            shared,
            early: early.acks.clone(),
            signer,
            secret,
            node_id: config.node_id,
            key_recorded: Default::default(),
            signatures_held: std::sync::atomic::AtomicBool::new(config.hold_signatures),
            proposals,
            tasks: Mutex::new(Vec::new()),
            file: dir.join(fmt::FILE_NAME),
            record_extras: Default::default(),
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

    /// What this node records with its key in `sys.nodes` besides it (addresses, what its
    /// evidence says), set before the first [`Ledger::record_node_key`].
    pub fn set_record_extras(&self, extra: serde_json::Map<String, serde_json::Value>) {
        if let Ok(mut e) = self.record_extras.lock() {
            *e = extra;
        }
    }

    /// Record this node's checkpoint key in `sys.nodes` (once): nothing is written when the
    /// key is recorded already (a node that joined was recorded by its join), or when this node
    /// does not lead (a leader records its key before it signs).
    pub async fn record_node_key(&self) -> Result<(), LedgerError> {
        let key = self.node_id.to_be_bytes().to_vec();
        let identity = self.identity();
        let snap = self.snapshot().map_err(db_err)?;
        let current = snap.get("sys.nodes", &key).map_err(db_err)?;
        if let Some(c) = &current {
            // Recorded (by the first start or the join): never rewritten.
            let v = serde_json::from_slice::<serde_json::Value>(&c.value).unwrap_or_default();
            if v["public_key"] != identity.public_key.as_str() {
                tracing::error!(
                    node = self.node_id,
                    "sys.nodes records another key for this node id: this data directory's node key is not the \
                     one the service knows"
                );
            }
            return Ok(());
        }
        if !self.is_leader() {
            return Ok(());
        }
        let mut value = serde_json::to_value(&identity).map_err(db_err)?;
        if let (Ok(extra), Some(v)) = (self.record_extras.lock(), value.as_object_mut()) {
            for (k, x) in extra.iter() {
                v.entry(k.clone()).or_insert(x.clone());
            }
        }
        let value = serde_json::to_vec(&value).map_err(db_err)?;
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
        match self.commit(reads, writes, meta).await {
            Ok(_) => Ok(()),
            // Another task of this node (the first start and the checkpoint task race for it
            // on a new leader) recorded it between the read and the commit: recorded is done.
            Err(crate::store::CommitError::Conflict(why)) => {
                let again = self.snapshot().map_err(db_err)?;
                if again.get("sys.nodes", &self.node_id.to_be_bytes()).map_err(db_err)?.is_some() {
                    Ok(())
                } else {
                    Err(LedgerError::Raft(format!("conflict: {why}")))
                }
            }
            Err(e) => Err(LedgerError::Raft(e.to_string())),
        }
    }

    /// The log origin (fixed at creation).
    pub fn origin(&self) -> &str {
        &self.signer.origin
    }

    /// This node's raft id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Sign the node attestation document `doc` with the node key.
    pub fn sign_attestation(&self, doc: &serde_json::Value) -> [u8; 64] {
        self.signer.sign_attestation(doc)
    }

    /// Sign checkpoints again (after [`LedgerConfig::hold_signatures`]), starting now.
    pub fn release_signatures(&self) {
        self.signatures_held.store(false, Ordering::Release);
        self.shared.sign_now.notify_one();
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
        let applied = || self.shared.applied.load(Ordering::Acquire) >= seqno;
        if applied() {
            return true;
        }
        let woken = {
            let Ok(mut waiters) = self.shared.applied_waiters.lock() else { return false };
            // Checked again under the lock: the apply stores `applied` before it takes the lock
            // to wake waiters, so either it sees this waiter or this sees its store.
            if applied() {
                return true;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            waiters.entry(seqno).or_default().push(tx);
            rx
        };
        if tokio::time::timeout(timeout, woken).await.is_ok_and(|r| r.is_ok()) {
            return true;
        }
        // Timed out: leave nothing behind for a seqno that may never come.
        if let Ok(mut waiters) = self.shared.applied_waiters.lock()
            && let Some(list) = waiters.get_mut(&seqno)
        {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                waiters.remove(&seqno);
            }
        }
        applied()
    }

    /// The ledger secret versions this node holds.
    pub fn secrets(&self) -> &Arc<LedgerSecrets> {
        &self.secret
    }

    /// The service's keyed hash of `data` (see `Snapshot::blind`).
    pub fn blind(&self, data: &[u8]) -> [u8; 32] {
        self.secret.blind(data)
    }

    /// The seqno of the last applied transaction that changed [`INSTALLED_STATE`] (at open: the
    /// applied size), as it changes.
    pub fn installed_state_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.installed_tx.subscribe()
    }

    /// The nodes of the service as raft sees them: `(node id, address, voter, leader)`, and the
    /// current term.
    pub fn nodes(&self) -> (Vec<(u64, String, bool, bool)>, u64) {
        // Read in place (the metrics' replication map is not cloned for a node list).
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let nodes = membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone(), voters.contains(id), m.current_leader == Some(*id)))
            .collect();
        (nodes, m.current_term)
    }

    /// The ledger's figures for `/metrics`.
    pub fn stats(&self) -> crate::metrics::LedgerStats {
        let m = self.raft.metrics().borrow().clone();
        let last_log = m.last_log_index.unwrap_or(0);
        let replication_lag = m
            .replication
            .iter()
            .flatten()
            .filter(|(peer, _)| **peer != self.node_id)
            .map(|(peer, matched)| (*peer, last_log.saturating_sub(matched.map_or(0, |l| l.index))))
            .collect();
        crate::metrics::LedgerStats {
            log_commits: self.shared.log_commits.snapshot(),
            apply_commits: self.shared.apply_commits.snapshot(),
            log_entries: self.shared.log_entries.load(Ordering::Relaxed),
            file_bytes: std::fs::metadata(&self.file).map(|m| m.len()).unwrap_or(0),
            last_checkpoint: self.shared.last_checkpoint.load(Ordering::Acquire),
            checkpoint_lag: self
                .shared
                .applied
                .load(Ordering::Acquire)
                .saturating_sub(self.shared.last_checkpoint.load(Ordering::Acquire)),
            raft_last_log: last_log,
            raft_applied: m.last_applied.map_or(0, |l| l.index),
            replication_lag,
            early_appends: [
                self.early.sent.load(Ordering::Relaxed),
                self.early.confirmed.load(Ordering::Relaxed),
                self.early.trimmed.load(Ordering::Relaxed),
                self.early.answered.load(Ordering::Relaxed),
            ],
        }
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
        // openraft's workers (the state machine's, the log store's) end after its core: each
        // holds the shared state, and with it the database and its file lock. Return once they
        // are gone, so the same directory can be opened again at once.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.shared) > 1 {
            if std::time::Instant::now() > deadline {
                tracing::warn!(
                    holders = Arc::strong_count(&self.shared),
                    "the ledger database is still held 5 s after shutdown: reopening it now would fail"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn stop_tasks(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}
