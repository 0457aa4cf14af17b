//! The cluster: nodes in separate processes.
//!
//! * **Join** (`POST /node/join`, see `gov::nodes`): a new node presents its evidence, whose
//!   `report_data` binds its node key, and a request signed with that key naming its X25519
//!   encryption key and addresses. It is recorded `Pending`; once governance trusts it, its
//!   next join request is answered with the service's secrets (ledger secret, service key and
//!   certificate, token key) sealed with HPKE to the encryption key it recorded, and the peers'
//!   keys and addresses.
//! * **Membership** ([`Cluster::run`]): every node accepts on its peer listener the keys of the
//!   trusted nodes and refuses retired ones; the leader makes a trusted node a learner, then a
//!   voter once it caught up, and removes retired nodes from the quorum.
//! * **Forwarding**: a node that does not lead passes writes to the leader over the peer
//!   connection and answers once it has applied the transaction itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use openraft::BasicNode;

use crate::error::{ErrorKind, ServiceError};
use crate::gov::Governance;
use crate::gov::nodes::{JoinRequest, NodeRecord, NodeStatus};
use crate::ledger::{Ledger, PeerNetwork};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// HPKE `info` of the sealed secrets.
pub const SEAL_INFO: &[u8] = b"cgs-join-secrets-v1";

/// The files (relative to the data directory) every node of a service shares, sealed to a
/// joining node: nothing else may be written by a join answer.
pub const SHARED_FILES: &[&str] =
    &["node/ledger-secret", "node/service-key.pem", "node/token-signing.key", "service-cert.pem"];

/// The [`SHARED_FILES`] of `dir`, base64 by name: what a join answer seals to a new node and
/// what the recovery shares protect.
pub fn read_shared_files(dir: &Path) -> Result<std::collections::BTreeMap<String, String>, String> {
    SHARED_FILES
        .iter()
        .map(|f| {
            let bytes = crate::fsutil::read_private(&dir.join(f)).map_err(|e| format!("{f}: {e}"))?;
            Ok((f.to_string(), B64.encode(bytes)))
        })
        .collect()
}

/// Check shared files received (base64 by name; `what` names where from): exactly
/// [`SHARED_FILES`], each decoding, the certificate the one `service_cert_pem` expects. Returns
/// where each goes under `dir`; nothing is written (everything is checked first).
pub fn decode_shared_files<'a>(
    files: impl IntoIterator<Item = (&'a String, &'a str)>,
    dir: &Path,
    service_cert_pem: &str,
    what: &str,
) -> Result<Vec<(PathBuf, Vec<u8>)>, String> {
    let files: Vec<(&String, &str)> = files.into_iter().collect();
    if files.len() != SHARED_FILES.len() || SHARED_FILES.iter().any(|f| !files.iter().any(|(n, _)| n == f)) {
        return Err(format!(
            "{what} must be exactly {SHARED_FILES:?}, not {:?}",
            files.iter().map(|(n, _)| n).collect::<Vec<_>>()
        ));
    }
    let mut decoded = Vec::new();
    for (name, v) in files {
        let bytes = B64.decode(v).map_err(|e| format!("{what}: {name}: {e}"))?;
        if name == "service-cert.pem" && bytes != service_cert_pem.as_bytes() {
            return Err(format!("{what} holds another service certificate than the one expected"));
        }
        decoded.push((dir.join(name), bytes));
    }
    Ok(decoded)
}

/// Where a node keeps its join encryption key (virtual mode: persisted with the node key).
fn encryption_key_path(dir: &Path) -> PathBuf {
    dir.join("node").join("join-encryption.key")
}

/// The node's join encryption key pair, X25519 `(private, public)`, derived from its seed.
fn encryption_keypair(dir: &Path) -> std::io::Result<([u8; 32], [u8; 32])> {
    let seed = crate::fsutil::load_or_create_secret(&encryption_key_path(dir), "key")?;
    Ok(cgs_ledger_format::seal::x25519_keypair(&seed))
}

/// A node's part in the cluster.
pub struct Cluster {
    /// The data directory (the shared secrets are read from it for a joining node).
    pub dir: PathBuf,
    /// The ledger.
    pub ledger: Arc<Ledger>,
    /// Governance (node records, the join).
    pub gov: Arc<Governance>,
    /// The peer network, when this node has a peer listener.
    pub network: Option<PeerNetwork>,
    /// Requests this node may be forwarding to the leader at once ([`MAX_FORWARDS`]).
    pub forward_slots: tokio::sync::Semaphore,
}

/// Requests a node forwards to the leader at once; more are answered 503 `ServiceBusy`.
pub const MAX_FORWARDS: usize = 256;

fn unavailable(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::unavailable(e.to_string())
}

impl Cluster {
    /// `POST /node/join`: the answer, and the transaction that recorded a new node.
    pub async fn join(&self, body: &[u8]) -> Result<(serde_json::Value, Option<cgs_core::TxId>), ServiceError> {
        let req: JoinRequest = serde_json::from_slice(body).map_err(|e| {
            ServiceError::new(
                ErrorKind::Invalid,
                "InvalidJoinRequest",
                format!(
                    "the body must be a join request {{public_key, encryption_key, address, peer_address, evidence, \
                     signature}}: {e}"
                ),
            )
        })?;
        if self.network.is_none() {
            return Err(ServiceError::new(
                ErrorKind::NotAllowedInState,
                "NoPeerListener",
                "this node was started without --peer-listen: no node can join through it",
            ));
        }
        let origin = self.ledger.origin().to_string();
        let joined = self.gov.join(&req, |k| (origin.clone(), crate::ledger::signer::verifier_key(&origin, k))).await?;
        let mut answer = serde_json::json!({"node_id": joined.record.node_id, "status": joined.status});
        if joined.status == NodeStatus::Trusted {
            answer["sealed_secrets"] = self.seal_secrets(&joined.record)?;
            answer["nodes"] = self.peers()?;
        }
        Ok((answer, joined.tx_id))
    }

    /// The service's shared secrets sealed to `record`'s encryption key (the one its first join
    /// recorded, never one a later request names).
    fn seal_secrets(&self, record: &NodeRecord) -> Result<serde_json::Value, ServiceError> {
        let key = record
            .encryption_key
            .as_deref()
            .and_then(|k| B64.decode(k).ok())
            .ok_or_else(|| unavailable(format!("node {} recorded no usable encryption key", record.node_id)))?;
        let files = read_shared_files(&self.dir).map_err(unavailable)?;
        let plain = serde_json::to_vec(&files).map_err(unavailable)?;
        let aad = format!("node {}", record.node_id);
        let (enc, ciphertext) = cgs_ledger_format::seal::seal_x25519(&key, SEAL_INFO, &aad, &plain)
            .map_err(|e| unavailable(format!("node {}'s recorded encryption key: {e}", record.node_id)))?;
        Ok(serde_json::json!({"enc": enc, "ciphertext": ciphertext, "aad": aad}))
    }

    /// The trusted nodes' ids, keys and peer addresses (what a joining node starts from).
    fn peers(&self) -> Result<serde_json::Value, ServiceError> {
        let nodes = self.gov.nodes()?;
        Ok(nodes
            .into_iter()
            .filter(|(_, s)| *s == NodeStatus::Trusted)
            .map(|(r, _)| {
                serde_json::json!({"node_id": r.node_id, "public_key": r.public_key, "peer_address": r.peer_address})
            })
            .collect())
    }

    /// `GET /node/network/nodes`: every recorded node, its status, and raft's view of it.
    pub fn nodes_view(&self) -> Result<Vec<serde_json::Value>, ServiceError> {
        let (raft_nodes, _) = self.ledger.nodes();
        let leader = self.ledger.raft.metrics().borrow().current_leader;
        let mut out = Vec::new();
        for (r, status) in self.gov.nodes()? {
            let raft = raft_nodes.iter().find(|n| n.0 == r.node_id);
            out.push(serde_json::json!({
                "node_id": r.node_id,
                "status": status,
                "role": match raft {
                    Some((_, _, true, _)) => "Voter",
                    Some(_) => "Learner",
                    None => "None",
                },
                "primary": leader == Some(r.node_id),
                "address": r.address,
                "peer_address": r.peer_address,
                "public_key": r.public_key,
                "evidence_kind": r.evidence_kind,
                "measurement": r.measurement,
                "host_data": r.host_data,
            }));
        }
        Ok(out)
    }

    /// Keep the peer keys and (on the leader) raft's membership in line with the node records,
    /// until `stop` (returns `false`) or until this node is retired and no longer a voter in
    /// the applied configuration (returns `true`: the node stops serving).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) -> bool {
        let mut stall = Stall::default();
        let mut out_since: Option<std::time::Instant> = None;
        let mut leaderless_since: Option<std::time::Instant> = None;
        let patience = Duration::from_millis(self.ledger.raft.config().election_timeout_max * 2);
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::debug!(error = %e, "membership reconciliation");
            }
            // A retired node stops once its removal committed here; or, once raft's newest
            // configuration leaves it out, when no leader has reached it for two election
            // timeouts (the leader stops replicating to a removed node, which may then never
            // hear of the commit). A retired leader leads 2 s more, so its followers hear that
            // its removal committed (openraft steps it down once it applied that).
            let retirement = retirement(&self.ledger);
            if self.ledger.raft.metrics().borrow().current_leader.is_some() {
                leaderless_since = None;
            } else {
                leaderless_since.get_or_insert_with(std::time::Instant::now);
            }
            let out = match retirement {
                Retirement::Done => true,
                Retirement::Voted => leaderless_since.is_some_and(|t| t.elapsed() >= patience),
                Retirement::No => false,
            };
            if !out {
                out_since = None;
            } else if out_since.get_or_insert_with(std::time::Instant::now).elapsed() >= Duration::from_secs(2) {
                tracing::warn!(node = self.ledger.node_id(), "this node was removed from the service: stopping");
                return true;
            }
            self.break_split_votes(&mut stall).await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop.changed() => return false,
            }
        }
    }

    /// openraft 0.9 draws a node's election timeout once, when the process starts: two voters
    /// whose draws fall within a round trip of each other start their elections together, vote
    /// for themselves, refuse each other — and do it again at the next timeout, for as long as
    /// both live (seen once in the fault test: 60 s without a leader after a kill, both
    /// survivors campaigning within 2 ms of each other every 6 s). A voter that has seen no
    /// leader for twice the longest election timeout starts one election itself, after a delay
    /// drawn afresh each time, which breaks the tie; then it waits as long again.
    async fn break_split_votes(&self, stall: &mut Stall) {
        if self.network.is_none() {
            return;
        }
        let raft = &self.ledger.raft;
        let m = raft.metrics().borrow().clone();
        let voters = m.membership_config.membership().voter_ids().count();
        let voter = m.membership_config.membership().voter_ids().any(|v| v == self.ledger.node_id());
        let now = std::time::Instant::now();
        if m.current_leader.is_some() || voters < 2 || !voter {
            *stall = Stall::default();
            return;
        }
        let config = raft.config();
        let since = *stall.since.get_or_insert(now);
        let patience = Duration::from_millis(config.election_timeout_max * 2);
        match stall.nudge_at {
            None if now.duration_since(since) >= patience => {
                let jitter = rand::random::<u64>() % config.election_timeout_min.max(1);
                stall.nudge_at = Some(now + Duration::from_millis(jitter));
            }
            Some(at) if now >= at => {
                tracing::info!(
                    stalled_ms = now.duration_since(since).as_millis() as u64,
                    "no leader: starting an election"
                );
                if let Err(e) = raft.trigger().elect().await {
                    tracing::warn!(error = %e, "could not start an election");
                }
                *stall = Stall { since: Some(now), nudge_at: None };
            }
            _ => {}
        }
    }

    async fn reconcile(&self) -> Result<(), String> {
        let Some(network) = &self.network else { return Ok(()) };
        let nodes = self.gov.nodes().map_err(|e| e.to_string())?;
        let me = self.ledger.node_id();
        let m = self.ledger.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let learners: std::collections::BTreeSet<u64> = membership.learner_ids().collect();
        for (r, status) in &nodes {
            match (status, r.key()) {
                (NodeStatus::Trusted, Some(k)) if r.node_id != me => network.keys().insert(r.node_id, k),
                // Retired is final, once raft's configuration no longer holds the node (until
                // then the change that removes it must reach it). Other absences are not acted
                // on: a node catching up has not applied every record yet, and keeps the keys
                // its join gave it.
                (NodeStatus::Retired, _) if !voters.contains(&r.node_id) && !learners.contains(&r.node_id) => {
                    network.keys().remove(r.node_id)
                }
                _ => {}
            }
        }
        if !self.ledger.is_leader() {
            return Ok(());
        }
        let last = m.last_log_index.unwrap_or(0);
        let raft = &self.ledger.raft;
        let e = |e: openraft::error::RaftError<u64, openraft::error::ClientWriteError<u64, BasicNode>>| e.to_string();
        let mut failures = Vec::new();
        for (r, status) in &nodes {
            let id = r.node_id;
            // Each change on its own: one that cannot be made now does not hold up the others.
            let change: Result<(), String> = async {
                match status {
                    NodeStatus::Trusted if !voters.contains(&id) && !learners.contains(&id) => {
                        let Some(addr) = &r.peer_address else { return Ok(()) };
                        tracing::info!(node = id, %addr, "adding trusted node as a learner");
                        raft.add_learner(id, BasicNode::new(addr), false).await.map_err(e)?;
                    }
                    NodeStatus::Trusted if learners.contains(&id) => {
                        // Only a learner that has acknowledged the log, up to close to its end,
                        // becomes a voter. One never heard from would count towards the quorum
                        // without being able to vote: in a short log "0 + 64 >= last" held, and an
                        // unreachable trusted node stalled every write, its own removal included.
                        let matched = m.replication.as_ref().and_then(|r| r.get(&id)).and_then(|l| *l).map(|l| l.index);
                        if matched.is_some_and(|matched| matched + 64 >= last) {
                            tracing::info!(node = id, "the learner caught up: making it a voter");
                            let ids = std::collections::BTreeSet::from([id]);
                            raft.change_membership(openraft::ChangeMembers::AddVoterIds(ids), false)
                                .await
                                .map_err(e)?;
                        }
                    }
                    NodeStatus::Retired if voters.contains(&id) => {
                        tracing::info!(node = id, "removing retired node from the quorum");
                        let ids = std::collections::BTreeSet::from([id]);
                        raft.change_membership(openraft::ChangeMembers::RemoveVoters(ids), false).await.map_err(e)?;
                    }
                    NodeStatus::Retired if learners.contains(&id) => {
                        let ids = std::collections::BTreeSet::from([id]);
                        raft.change_membership(openraft::ChangeMembers::RemoveNodes(ids), false).await.map_err(e)?;
                    }
                    _ => {}
                }
                Ok(())
            }
            .await;
            if let Err(why) = change {
                failures.push(format!("node {id}: {why}"));
            }
        }
        if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
    }

    /// The leader's id and peer address, if this node is not it and knows it.
    pub fn leader_elsewhere(&self) -> Option<(u64, String)> {
        // Read in place: this runs for every forwarded request.
        let metrics = self.ledger.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader?;
        if leader == self.ledger.node_id() {
            return None;
        }
        m.membership_config.membership().get_node(&leader).map(|n| (leader, n.addr.clone()))
    }
}

/// How far a node's retirement went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retirement {
    /// Not retired (or raft's configuration still counts its vote).
    No,
    /// Retired, and raft's newest configuration (appended here, maybe not committed yet) leaves
    /// it out: its acknowledgement of that change is sent, and the other voters of the previous
    /// configuration are a majority of it without this node (so the change can commit, or be
    /// redone, without it).
    Voted,
    /// Retired, and a configuration leaving it out is committed and applied here.
    Done,
}

/// How far the retirement of `ledger`'s node went.
pub fn retirement(ledger: &Ledger) -> Retirement {
    let me = ledger.node_id();
    // raft's view first (in memory): the state is read only once raft has taken the vote away.
    let m = ledger.raft.metrics().borrow().clone();
    let configs = m.membership_config.membership().get_joint_config();
    if configs.last().is_some_and(|target| target.contains(&me))
        || crate::gov::nodes::node_status(ledger, me) != Some(NodeStatus::Retired)
    {
        return Retirement::No;
    }
    let config_at = m.membership_config.log_id().map(|l| l.index);
    let applied = m.last_applied.map(|l| l.index);
    if config_at <= applied {
        return Retirement::Done;
    }
    // Removing one of two voters: if the leader fails before the change commits, the new leader
    // needs this node's vote to finish it; it keeps running until the change commits here.
    let before = configs.first().cloned().unwrap_or_default();
    let others = before.iter().filter(|n| **n != me).count();
    if others * 2 > before.len() { Retirement::Voted } else { Retirement::No }
}

/// How long this voter has seen no leader, and when it starts an election of its own.
#[derive(Debug, Default)]
struct Stall {
    since: Option<std::time::Instant>,
    nudge_at: Option<std::time::Instant>,
}

// ===== the joining side =====

/// What a joining node needs to know.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// Its data directory.
    pub dir: PathBuf,
    /// `https://host:port` of a node of the service.
    pub target: String,
    /// The service certificate (PEM) the target must present.
    pub service_cert_pem: String,
    /// Its HTTPS address, as the others reach it.
    pub address: String,
    /// Its peer address, as the others reach it.
    pub peer_address: String,
}

/// A trusted peer, from the join answer.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Peer {
    /// Raft id.
    pub node_id: u64,
    /// Base64 node key.
    pub public_key: String,
    /// Its peer address.
    pub peer_address: Option<String>,
}

/// A node the service trusted, with the secrets written to its data directory.
#[derive(Debug, Clone)]
pub struct Joined {
    /// Its raft id.
    pub node_id: u64,
    /// The trusted peers.
    pub peers: Vec<Peer>,
}

/// Ask `opts.target` to join, every second until the service trusts this node (printing, once,
/// what the members must do), then write the secrets it sealed to this node. A refusal (bad
/// evidence, a measurement governance does not allow) ends it with the service's message.
pub async fn join_service(opts: &JoinOptions) -> Result<Joined, String> {
    std::fs::create_dir_all(opts.dir.join("node")).map_err(|e| format!("{}: {e}", opts.dir.display()))?;
    let seed = crate::fsutil::load_or_create_secret(&crate::ledger::node_key_path(&opts.dir), "key")
        .map_err(|e| format!("node key: {e}"))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let (sk, pk) = encryption_keypair(&opts.dir).map_err(|e| format!("encryption key: {e}"))?;
    let evidence = crate::attest::NodeEvidence::new(key.verifying_key().to_bytes(), opts.service_cert_pem.clone())
        .evidence()
        .clone();
    let request = JoinRequest::signed(&key, &pk, opts.address.clone(), opts.peer_address.clone(), evidence);
    let body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    let client = PinnedClient::new(&opts.target, &opts.service_cert_pem)?;
    let mut told = false;
    let mut unreachable_since: Option<std::time::Instant> = None;
    loop {
        let (status, answer) = match client.post("/node/join", &body).await {
            Ok(r) => {
                unreachable_since = None;
                r
            }
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > Duration::from_secs(60) {
                    return Err(format!("{} is unreachable: {e}", opts.target));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if status >= 400 {
            let code = answer["error"]["code"].as_str().unwrap_or("Error");
            let message = answer["error"]["message"].as_str().unwrap_or("");
            if status == 503 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            return Err(format!("the service refused the join ({status} {code}): {message}"));
        }
        let node_id = answer["node_id"].as_u64().ok_or("the join answer names no node id")?;
        if answer["status"] == "Pending" {
            if !told {
                eprintln!(
                    "joined as node {node_id}, Pending: members trust it with a proposal of \
                     transition_node_to_trusted {{\"node_id\": {node_id}}} (cgs node trust {node_id})"
                );
                told = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if answer["status"] != "Trusted" {
            return Err(format!("node {node_id} is {} in this service: it cannot join again", answer["status"]));
        }
        let sealed = &answer["sealed_secrets"];
        let field = |f: &str| sealed[f].as_str().unwrap_or_default();
        let aad = format!("node {node_id}");
        let plain = cgs_ledger_format::seal::open_x25519(&sk, SEAL_INFO, &aad, field("enc"), field("ciphertext"))
            .map_err(|e| format!("the sealed secrets do not open with this node's key: {e}"))?;
        let files: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&plain).map_err(|e| format!("sealed secrets: {e}"))?;
        // Everything is checked before anything is written.
        let decoded = decode_shared_files(
            files.iter().map(|(n, v)| (n, v.as_str().unwrap_or_default())),
            &opts.dir,
            &opts.service_cert_pem,
            "the sealed secrets",
        )?;
        let mut peers: Vec<Peer> =
            serde_json::from_value(answer["nodes"].clone()).map_err(|e| format!("nodes: {e}"))?;
        peers.retain(|p| p.node_id != node_id);
        if peers.is_empty() {
            return Err("the join answer names no other node of the service to replicate from".into());
        }
        for (path, bytes) in decoded {
            crate::fsutil::write_private(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        // The encryption key served its one purpose.
        crate::fsutil::remove_private(&encryption_key_path(&opts.dir));
        return Ok(Joined { node_id, peers });
    }
}

/// An HTTPS/1.1 client of one service node, pinning the service certificate.
struct PinnedClient {
    authority: String,
    host: String,
    tls: Arc<rustls::ClientConfig>,
}

impl PinnedClient {
    fn new(target: &str, service_cert_pem: &str) -> Result<Self, String> {
        let authority = target
            .strip_prefix("https://")
            .ok_or_else(|| format!("--target must be an https:// URL, not {target:?}"))?
            .trim_end_matches('/')
            .to_string();
        if authority.contains('/') || authority.is_empty() {
            return Err(format!("--target must be https://host:port, not {target:?}"));
        }
        let host = match authority.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h.trim_start_matches('[').trim_end_matches(']').to_string(),
            _ => return Err(format!("--target must name a port: {target:?}")),
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut service_cert_pem.as_bytes()) {
            let c = c.map_err(|e| format!("service certificate: {e}"))?;
            roots.add(c).map_err(|e| format!("service certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the service certificate file holds no certificate".into());
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { authority, host, tls: Arc::new(tls) })
    }

    async fn post(&self, path: &str, body: &[u8]) -> Result<(u16, serde_json::Value), String> {
        use http_body_util::BodyExt as _;
        let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&self.authority))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from(self.host.clone()).map_err(|e| e.to_string())?;
        let tls =
            tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp).await.map_err(|e| e.to_string())?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::post(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(body)))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(30), send.send_request(req))
            .await
            .map_err(|_| "no answer within 30 s".to_string())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), 1 << 20);
        let bytes = tokio::time::timeout(Duration::from_secs(30), body.collect())
            .await
            .map_err(|_| "the answer did not arrive within 30 s".to_string())?
            .map_err(|e| format!("the answer is unreadable or over 1 MiB: {e}"))?
            .to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok((status, json))
    }
}
