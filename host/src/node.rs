//! A node: data directory, service identity, ledger, runtime, governance and the HTTPS server.
//!
//! Data directory layout:
//!
//! ```text
//! DIR/service-cert.pem        service certificate (clients pin it)
//! DIR/ledger.redb             the ledger: replicated log, applied state, Merkle nodes
//! DIR/node/service-key.pem    service key (owner-only; sealed to the TEE in production)
//! DIR/node/node-signing.key   node Ed25519 key signing checkpoints (idem)
//! DIR/node/token-signing.key  key signing member tokens until the first re-key (idem)
//! DIR/node/ledger-secret      version 0 of the ledger secret (idem); later versions are only
//!                             in the ledger, sealed to each node's key (sys.ledger_secrets)
//! DIR/node/node-id            a node that joined: the raft id the service gave it
//! DIR/node/join-encryption.key  a joining node's X25519 key, deleted once the secrets arrive
//! DIR/cache/                  compiled plugins, authenticated (runtime::cache)
//! DIR/members/                sandbox only: the demo members' keys
//! ```
//!
//! A new data directory needs a service: a genesis (`start --genesis`) or the sandbox's demo
//! consortium. Afterwards the plugins come from the ledger (the ones governance made active).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cgs_core::Blake3Hash;
use cgs_core::gov::{MessageType, ProposalBody, Vote};
use cgs_core::plugin::{Measurement, World};
use tokio::sync::watch;

use crate::gov::{Genesis, GenesisMember, GovConfig, GovError, Governance};
use crate::http::{self, Service};
use crate::ledger::{Ledger, LedgerConfig, LedgerError, Router};
use crate::runtime::{LoadError, Runtime, RuntimeConfig};
use crate::tls::{ServiceIdentity, TlsError};

/// Where plugin components come from at service creation.
#[derive(Debug, Clone)]
pub enum PluginSource {
    /// Every `*.wasm` in a directory.
    Dir(PathBuf),
    /// Build the workspace's default plugins reproducibly (`cgs plugin build`).
    Build {
        /// The source checkout.
        workspace: PathBuf,
    },
}

/// How the service is created if the data directory holds none.
#[derive(Debug, Clone)]
pub enum Creation {
    /// Never: the data directory must already hold a service.
    Existing,
    /// From a genesis document; its plugin hashes are looked up in `plugins`.
    Genesis {
        /// The genesis.
        genesis: Genesis,
        /// Where the components are.
        plugins: PluginSource,
    },
    /// A node joining the service a node of it serves (`cgs-host join`); a data directory that
    /// holds a ledger already restarts that node instead.
    Join {
        /// `https://host:port` of a node of the service.
        target: String,
        /// The service certificate (PEM) it must present.
        service_cert_pem: String,
    },
    /// Recovery (`cgs-host start --recover`): the data directory holds a ledger whose node's
    /// secrets are gone; members' recovery shares open them (see [`crate::recovery`]), and this
    /// node becomes the service's only node, under a new node id and key.
    Recover,
    /// The sandbox: a demo consortium of three members whose keys are written under
    /// `DIR/members`, every plugin of `plugins`, virtual attestation allowed; the sandbox acks
    /// for its members and votes the service open.
    Sandbox {
        /// Where the components are.
        plugins: PluginSource,
    },
}

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data directory.
    pub dir: PathBuf,
    /// Listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The peer listener (raft and forwarded requests, mutual TLS with node keys), for a service
    /// of several nodes; `None` for a node that never has peers.
    pub peer_listen: Option<SocketAddr>,
    /// Service creation.
    pub creation: Creation,
    /// Runtime limits.
    pub runtime: RuntimeConfig,
    /// Ledger settings.
    pub ledger: LedgerConfig,
    /// Governance settings.
    pub gov: GovConfig,
    /// HTTPS connection limits and timeouts.
    pub http: http::HttpLimits,
    /// A bearer token that may read `GET /metrics` (the operator's scraper); members always may.
    pub metrics_token: Option<crate::metrics::Secret>,
    /// Sandbox only (a development cluster): its members vote `transition_node_to_trusted` for
    /// every node that joins with evidence the join policy accepts.
    pub auto_trust: bool,
    /// Keep the node's keys and the service's secrets in this process's memory only (never in
    /// `DIR/node`): a restart joins the service again as a new node. Always so under SEV-SNP.
    pub keys_in_memory: bool,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Data directory problems.
    #[error("data directory {path}: {source}")]
    Dir {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Identity problems.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Runtime setup.
    #[error(transparent)]
    Runtime(#[from] LoadError),
    /// Building plugins failed.
    #[error(transparent)]
    Build(#[from] cgs_build::BuildError),
    /// Reading plugins failed.
    #[error(transparent)]
    Measure(#[from] cgs_core::plugin::PluginError),
    /// The ledger failed to open or start.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Governance failed (creation, opening, loading plugins).
    #[error("governance: {0}")]
    Gov(#[from] GovError),
    /// The active plugins could not be loaded.
    #[error(transparent)]
    Reconcile(#[from] crate::reconcile::ReconcileError),
    /// The configuration does not fit the data directory.
    #[error("{0}")]
    Config(String),
    /// This node was removed from the service (`remove_node`).
    #[error(
        "node {0} was removed from this service (remove_node): it no longer serves and never rejoins; to add this \
         machine again, join with a new data directory (a new node id and key)"
    )]
    Retired(u64),
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// A sandbox member: name, id, key file.
#[derive(Debug, Clone)]
pub struct SandboxMember {
    /// Name (`isv`, `data-provider`, `code-provider`).
    pub name: String,
    /// Member id.
    pub id: String,
    /// PKCS#8 PEM private key file.
    pub key_path: PathBuf,
}

/// A started node, ready to serve.
pub struct Node {
    /// The runtime.
    pub runtime: Arc<Runtime>,
    /// The ledger.
    pub ledger: Arc<Ledger>,
    /// Governance.
    pub gov: Arc<Governance>,
    /// Callers and their credentials.
    pub auth: Arc<crate::auth::Auth>,
    /// Clean-room sessions, secrets, ID tokens.
    pub cleanroom: Arc<crate::cleanroom::Cleanroom>,
    /// The service identity.
    pub identity: ServiceIdentity,
    /// The data directory.
    pub dir: PathBuf,
    /// Where the service certificate is.
    pub service_cert_path: PathBuf,
    /// The sandbox's members (empty for other nodes).
    pub sandbox_members: Vec<SandboxKey>,
    /// What the sandbox did to open the service, if anything.
    pub opened: Option<String>,
    gov_config: GovConfig,
    http_limits: http::HttpLimits,
    metrics_token: Option<crate::metrics::Secret>,
    listener: tokio::net::TcpListener,
    /// The address actually bound.
    pub local_addr: SocketAddr,
    /// This node's evidence (`GET /node/attestation`), computed on first use.
    pub evidence: Arc<crate::attest::NodeEvidence>,
    /// This node's part in the cluster.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// Where requests forwarded to this node go (set when it serves).
    forwarding: crate::ledger::peer::Forwarding,
    /// Stops the peer listener.
    peer_stop: watch::Sender<bool>,
    /// The peer listener's address, if any.
    pub peer_addr: Option<SocketAddr>,
    auto_trust: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Dir { path: path.display().to_string(), source }
}

/// The components of a plugin source, by hash.
fn load_blobs(source: &PluginSource) -> Result<BTreeMap<Blake3Hash, Vec<u8>>, NodeError> {
    let files: Vec<PathBuf> = match source {
        PluginSource::Dir(d) => {
            let mut files = Vec::new();
            for e in std::fs::read_dir(d).map_err(io_err(d))? {
                let p = e.map_err(io_err(d))?.path();
                if p.extension().is_some_and(|x| x == "wasm") {
                    files.push(p);
                }
            }
            files
        }
        PluginSource::Build { workspace } => {
            let req = cgs_build::BuildRequest::new(workspace);
            cgs_build::build(&req)?.into_iter().map(|b| b.path).collect()
        }
    };
    let mut blobs = BTreeMap::new();
    for f in files {
        let bytes = std::fs::read(&f).map_err(io_err(&f))?;
        blobs.insert(Blake3Hash::of(&bytes), bytes);
    }
    Ok(blobs)
}

/// Names, roles and tenants of the sandbox's demo consortium.
const SANDBOX_MEMBERS: &[(&str, &str)] =
    &[("isv", "Contoso Software (ISV)"), ("data-provider", "Fabrikam Data"), ("code-provider", "Northwind Models")];

/// A sandbox member: who, its signing key, its tenant.
pub type SandboxKey = (SandboxMember, ed25519_dalek::SigningKey, String);

/// The sandbox's members in `dir/members`: their keys are made on first use and kept.
pub fn sandbox_members(dir: &Path) -> Result<Vec<SandboxKey>, NodeError> {
    let mdir = dir.join("members");
    std::fs::create_dir_all(&mdir).map_err(io_err(&mdir))?;
    let mut out = Vec::new();
    for (name, tenant) in SANDBOX_MEMBERS {
        let key_path = mdir.join(format!("{name}.key"));
        let key = match std::fs::read_to_string(&key_path) {
            Ok(pem) => cgs_core::gov::signing_key_from_pem(&pem)
                .map_err(|e| NodeError::Config(format!("{}: {e}", key_path.display())))?,
            Err(_) => {
                let key = ed25519_dalek::SigningKey::from_bytes(&rand::random());
                crate::fsutil::write_private(&key_path, cgs_core::gov::signing_key_to_pem(&key).as_bytes())
                    .map_err(io_err(&key_path))?;
                let pub_path = mdir.join(format!("{name}.pub"));
                crate::fsutil::write_atomic(
                    &pub_path,
                    cgs_core::gov::verifying_key_to_pem(&key.verifying_key()).as_bytes(),
                )
                .map_err(io_err(&pub_path))?;
                key
            }
        };
        let id = cgs_core::gov::member_id(&key.verifying_key());
        out.push((SandboxMember { name: name.to_string(), id, key_path }, key, tenant.to_string()));
    }
    Ok(out)
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A sandbox member's signed message, now, with a fresh nonce.
fn sign_now(key: &ed25519_dalek::SigningKey, t: MessageType, proposal_id: Option<&str>, payload: &[u8]) -> Vec<u8> {
    let nonce: [u8; 16] = rand::random();
    cgs_core::gov::sign_nonced(key, t, now_secs(), proposal_id, Some(&nonce), payload)
}

/// The sandbox's first member proposes `actions` and every member approves until the
/// constitution resolves it: the proposal id and its final state.
pub async fn sandbox_vote(
    gov: &Governance,
    members: &[SandboxKey],
    actions: Vec<cgs_core::gov::ActionBody>,
) -> Result<(String, String), GovError> {
    // Serializing names and JSON values cannot fail; an empty payload would be refused anyway.
    let payload = serde_json::to_vec(&ProposalBody { actions }).unwrap_or_default();
    let proposal = sign_now(&members[0].1, MessageType::Proposal, None, &payload);
    let created = gov.propose(&proposal).await?;
    let id = created.body["proposal_id"].as_str().unwrap_or_default().to_string();
    let mut state = created.body["state"].as_str().unwrap_or_default().to_string();
    for (_, key, _) in members {
        if state != "Open" {
            break;
        }
        let ballot = sign_now(
            key,
            MessageType::Ballot,
            Some(&id),
            serde_json::json!({"vote": Vote::Approve}).to_string().as_bytes(),
        );
        let r = gov.ballot(&id, &ballot).await?;
        state = r.body["state"].as_str().unwrap_or_default().to_string();
    }
    Ok((id, state))
}

impl Node {
    /// Prepare the data directory, identity, ledger, runtime and governance (creating the
    /// service if needed), and bind the listener.
    pub async fn open(config: NodeConfig) -> Result<Node, NodeError> {
        let dir = &config.dir;
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| NodeError::Listen { addr: config.listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| NodeError::Listen { addr: config.listen, source })?;
        let peer_listener = match config.peer_listen {
            Some(addr) if addr.port() == 0 => {
                return Err(NodeError::Config(
                    "--peer-listen needs a fixed port: the other nodes dial it, also after a restart".into(),
                ));
            }
            Some(addr) => {
                Some(tokio::net::TcpListener::bind(addr).await.map_err(|source| NodeError::Listen { addr, source })?)
            }
            None => None,
        };
        let peer_addr = config.peer_listen;
        let has_ledger = dir.join(cgs_ledger_format::store_format::FILE_NAME).exists();
        if crate::recovery::pending_marker(dir).exists() && !matches!(config.creation, Creation::Recover) {
            return Err(NodeError::Config(format!(
                "a recovery of {} did not finish: run `cgs-host start --recover` on it again (members submit their \
                 shares again)",
                dir.display()
            )));
        }
        let keys_in_memory = config.keys_in_memory || crate::attest::snp_available();
        if keys_in_memory {
            crate::fsutil::keep_secrets_in_memory(&dir.join("node"));
            if has_ledger && !matches!(config.creation, Creation::Join { .. } | Creation::Recover) {
                return Err(NodeError::Config(format!(
                    "{} belongs to a node whose keys lived in its process's memory only: they are gone. Restart it \
                     with `cgs-host join --dir {} --target <a running node> --service-cert FILE ...`: it joins the \
                     service again as a new node and receives the ledger again; members then trust it and remove \
                     its old node id (a service where a majority of the voters lost their keys needs recovery: \
                     `cgs-host start --recover`, see docs/cluster.md)",
                    dir.display(),
                    dir.display()
                )));
            }
        } else if peer_addr.is_some() {
            tracing::warn!(
                dir = %dir.display(),
                "this node keeps its node key and the service's secrets in files under DIR/node: this build does \
                 not keep them only in memory unless started with --keys-in-memory (always so under SEV-SNP)"
            );
        }
        // Recovery: collect the members' shares before anything else is opened.
        let recovered = if matches!(config.creation, Creation::Recover) {
            if !has_ledger {
                return Err(NodeError::Config(format!(
                    "{} holds no ledger: --recover starts from the ledger file of a node of the service",
                    dir.display()
                )));
            }
            let raft_addr = peer_addr.unwrap_or(local_addr).to_string();
            Some(crate::recovery::collect(dir, &listener, &raft_addr, config.gov.max_clock_skew).await?)
        } else {
            None
        };
        // A node that joined a service (now restarting) never founds one of its own.
        let joined_before = crate::ledger::recorded_node_id(dir)?.is_some() && recovered.is_none();
        // A new node joining: the service's secrets (and certificate) arrive sealed to it.
        let mut joined = None;
        // With keys in memory, every start is a join (the keys of the last one are gone).
        if let Creation::Join { target, service_cert_pem } = &config.creation
            && (!has_ledger || keys_in_memory)
        {
            let Some(peer) = peer_addr else {
                return Err(NodeError::Config("a joining node needs --peer-listen".into()));
            };
            if local_addr.ip().is_unspecified() || peer.ip().is_unspecified() {
                return Err(NodeError::Config(
                    "a joining node needs addresses the others can dial: give --listen and --peer-listen a \
                     specific IP, not 0.0.0.0"
                        .into(),
                ));
            }
            let opts = crate::cluster::JoinOptions {
                dir: dir.clone(),
                target: target.clone(),
                service_cert_pem: service_cert_pem.clone(),
                address: local_addr.to_string(),
                peer_address: peer.to_string(),
            };
            joined = Some(crate::cluster::join_service(&opts).await.map_err(NodeError::Config)?);
            if has_ledger {
                // Keys in memory: the disk is not trusted, and a ledger file left there while the
                // node was down could have been edited (state is not checked against the Merkle
                // tree at open). The node starts from an empty ledger and receives it all again.
                let file = dir.join(cgs_ledger_format::store_format::FILE_NAME);
                std::fs::remove_file(&file).map_err(io_err(&file))?;
                tracing::warn!(dir = %dir.display(), "keys in memory: the ledger left on disk is discarded; catching up from the service");
            }
        }
        let identity = ServiceIdentity::load_or_create(dir, &[config.listen.ip().to_string()])?;
        // The log origin names this service in checkpoints; fixed at creation.
        let origin = {
            use sha2::Digest;
            format!("cgs/{}", &hex::encode(sha2::Sha256::digest(identity.service_cert_pem.as_bytes()))[..16])
        };
        let mut ledger_config = config.ledger.clone();
        if peer_listener.is_some() {
            // Between processes an append carries up to `max_payload_entries` entries (plugin
            // blobs among them) over TLS, and openraft times it out after one heartbeat: slower
            // heartbeats, and elections after 3-6 s of silence (CCF's default is 4 s).
            ledger_config.heartbeat = ledger_config.heartbeat.max(Duration::from_millis(500));
            ledger_config.election_timeout = ledger_config.election_timeout.max(Duration::from_millis(3000));
        }
        if let Some(j) = &joined {
            ledger_config.node_id = j.node_id;
            crate::ledger::record_node_id(dir, j.node_id)?;
        } else if let Some(r) = &recovered {
            ledger_config.node_id = r.node_id;
            // Nothing of the recovered log is signed before the recovery transaction checked it
            // against the shares and committed (a stopped attempt leaves its tail unsigned).
            ledger_config.hold_signatures = true;
        } else if has_ledger {
            ledger_config.node_id = crate::ledger::recorded_node_id(dir)?.unwrap_or(ledger_config.node_id);
        }
        let forwarding = crate::ledger::peer::Forwarding::default();
        let (peer_stop, peer_stop_rx) = watch::channel(false);
        let (ledger, network) = match peer_listener {
            Some(peer_listener) => {
                let peer_identity = crate::ledger::peer_identity(dir)?;
                let keys = crate::ledger::PeerKeys::default();
                for p in joined.iter().flat_map(|j| &j.peers) {
                    let record =
                        crate::gov::nodes::NodeRecord { public_key: p.public_key.clone(), ..Default::default() };
                    if let Some(k) = record.key() {
                        keys.insert(p.node_id, k);
                    }
                }
                let network = crate::ledger::PeerNetwork::new(peer_identity.clone(), keys.clone());
                let ledger = Ledger::open(dir, ledger_config.clone(), &origin, network.clone()).await?;
                // The keys of the trusted nodes this node knows of already (a restart).
                // A recovered node never accepts the nodes it replaces (retired in its first
                // transaction).
                let replaced = recovered.as_ref().map(|r| r.previous_nodes.clone()).unwrap_or_default();
                for (id, k) in crate::gov::nodes::trusted_keys(&ledger) {
                    if id != ledger.node_id() && !replaced.contains(&id) {
                        keys.insert(id, k);
                    }
                }
                let tls = crate::ledger::peer::server_config(&peer_identity, &keys).map_err(LedgerError::Raft)?;
                tokio::spawn(crate::ledger::peer::serve(
                    peer_listener,
                    tls,
                    ledger.raft.clone(),
                    keys,
                    forwarding.clone(),
                    peer_stop_rx,
                ));
                (ledger, Some(network))
            }
            None => (Ledger::open(dir, ledger_config.clone(), &origin, Router::default()).await?, None),
        };
        if let Some(r) = &recovered {
            // The re-keyed versions (version 0 was written with the files and opened by the ledger).
            for v in &r.versions {
                ledger.secrets().insert(crate::ledger::crypto::LedgerSecret::versioned(v.version(), v.bytes()));
            }
        }
        let evidence =
            Arc::new(crate::attest::NodeEvidence::new(ledger.public_key(), identity.service_cert_pem.clone()));
        {
            // What the founding node records of itself (a joined node's join recorded it).
            let ev = evidence.evidence();
            let mut extra = serde_json::Map::new();
            extra.insert("address".into(), local_addr.to_string().into());
            if let Some(p) = peer_addr {
                extra.insert("peer_address".into(), p.to_string().into());
            }
            for (k, f) in [("evidence_kind", "kind"), ("measurement", "measurement"), ("host_data", "host_data")] {
                if let Some(v) = ev.get(f) {
                    extra.insert(k.into(), v.clone());
                }
            }
            ledger.set_record_extras(extra);
        }
        // A retired node never serves again once its vote is not needed for its removal (`Done`,
        // or `Voted`: the others are a majority without it). Where it still is (one of two
        // voters), its retirement reads `No` and it runs until the removal commits, then stops.
        if crate::cluster::retirement(&ledger) != crate::cluster::Retirement::No {
            return Err(NodeError::Retired(ledger.node_id()));
        }
        match &joined {
            None if recovered.is_some() => {
                // The only voter of the configuration recovery appended: it elects itself.
                ledger.wait_for_leader(Duration::from_secs(120)).await?;
            }
            None if joined_before => {
                if network.is_none() {
                    return Err(NodeError::Config(format!(
                        "{} is a node that joined a service: restart it with --peer-listen",
                        dir.display()
                    )));
                }
                ledger.wait_for_leader(Duration::from_secs(120)).await?;
            }
            None => {
                // The founding node: a one-node raft group (no-op once initialized).
                let raft_addr = peer_addr.unwrap_or(config.listen).to_string();
                ledger.initialize_single(&raft_addr).await?;
                ledger.wait_for_leader(Duration::from_secs(if network.is_some() { 120 } else { 30 })).await?;
            }
            Some(j) => {
                // The leader adds this node as a learner: wait until it applied its own record.
                eprintln!("node {} trusted: catching up with the service's ledger ...", j.node_id);
                let deadline = std::time::Instant::now() + Duration::from_secs(300);
                while !crate::gov::nodes::trusted_keys(&ledger).iter().any(|(id, _)| *id == j.node_id) {
                    if std::time::Instant::now() > deadline {
                        return Err(NodeError::Config(format!(
                            "node {} was trusted but received no ledger entries within 300 s: can the leader reach \
                             its peer address {}?",
                            j.node_id,
                            peer_addr.map(|a| a.to_string()).unwrap_or_default()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        ledger.record_node_key().await?;
        // The compiled-plugin cache is authenticated with a key kept beside it: with keys in
        // memory the disk is not trusted, so plugins are compiled at every start instead.
        let cache = (!keys_in_memory).then(|| dir.join("cache"));
        let runtime = Arc::new(Runtime::new(config.runtime.clone(), ledger.clone(), cache.as_deref())?);
        let reconciler = crate::reconcile::Reconciler::start(runtime.clone(), ledger.clone())?;
        let services = crate::service::Services::new(
            runtime.clone(),
            ledger.clone(),
            reconciler,
            &dir.join("node").join("token-signing.key"),
            config.gov.clone(),
        )
        .map_err(io_err(dir))?;
        let gov = services.gov.clone();

        let mut sandbox_list = Vec::new();
        let mut opened = None;
        let created = gov.created()?;
        match &config.creation {
            Creation::Existing | Creation::Join { .. } | Creation::Recover if !created => {
                return Err(NodeError::Config(format!(
                    "{} holds no service yet: create one with `cgs-host start --genesis FILE --plugins DIR` (or run `cgs-host sandbox`)",
                    dir.display()
                )));
            }
            Creation::Genesis { .. } if created => {
                return Err(NodeError::Config(format!(
                    "{} already holds a service; restart it without --genesis",
                    dir.display()
                )));
            }
            Creation::Genesis { genesis, plugins } => {
                let blobs = load_blobs(plugins)?;
                gov.create_service(genesis, &blobs).await?;
            }
            Creation::Sandbox { plugins } => {
                let members = sandbox_members(dir)?;
                if !created {
                    let blobs = load_blobs(plugins)?;
                    let mut constitution = None;
                    let mut apps = Vec::new();
                    for (h, b) in &blobs {
                        match cgs_core::plugin::read_info(b)?.world {
                            World::Constitution => constitution = Some(h.to_hex()),
                            World::AppPlugin => apps.push(h.to_hex()),
                        }
                    }
                    let constitution =
                        constitution.ok_or_else(|| NodeError::Config(
                            "the plugins include no constitution: a new sandbox needs the constitution and core plugins \
                             (start it once without --plugins to build them from a CGS checkout, then restart it with \
                             --plugins DIR --watch)"
                                .into(),
                        ))?;
                    let genesis = Genesis {
                        members: members
                            .iter()
                            .map(|(m, k, tenant)| GenesisMember {
                                public_key: cgs_core::gov::verifying_key_to_pem(&k.verifying_key()),
                                member_data: serde_json::json!({"name": m.name, "tenant": tenant, "roles": [m.name]}),
                            })
                            .collect(),
                        constitution,
                        plugins: apps,
                        insecure_virtual_attestation: true,
                    };
                    gov.create_service(&genesis, &blobs).await?;
                }
                opened = Self::sandbox_open(&gov, &members).await?;
                sandbox_list = members;
            }
            Creation::Recover => {
                if let Some(r) = &recovered {
                    let (tx, body) = gov.complete_recovery(r).await?;
                    ledger.release_signatures();
                    let marker = crate::recovery::pending_marker(dir);
                    std::fs::remove_file(&marker).map_err(io_err(&marker))?;
                    eprintln!(
                        "recovery: transaction {tx} retired nodes {}, re-keyed the ledger and made new recovery shares",
                        body["retired"]
                    );
                }
            }
            Creation::Existing | Creation::Join { .. } => {}
        }
        let cluster = Arc::new(crate::cluster::Cluster {
            dir: dir.clone(),
            ledger: ledger.clone(),
            gov: gov.clone(),
            network,
            forward_slots: tokio::sync::Semaphore::new(crate::cluster::MAX_FORWARDS),
        });

        Ok(Node {
            evidence,
            runtime,
            ledger,
            gov,
            auth: services.auth,
            cleanroom: services.cleanroom,
            identity,
            dir: dir.clone(),
            service_cert_path: dir.join("service-cert.pem"),
            sandbox_members: sandbox_list,
            opened,
            gov_config: config.gov.clone(),
            http_limits: config.http,
            metrics_token: config.metrics_token.clone(),
            listener,
            local_addr,
            cluster,
            forwarding,
            peer_stop,
            peer_addr,
            auto_trust: config.auto_trust,
        })
    }

    /// Ack for every sandbox member and vote `transition_service_to_open`, if still Opening.
    async fn sandbox_open(gov: &Governance, members: &[SandboxKey]) -> Result<Option<String>, NodeError> {
        if gov.service()?["status"] == "Open" {
            return Ok(None);
        }
        let digest = {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                match gov.state_digest() {
                    Ok(d) => break d,
                    Err(e) if e.kind == crate::error::ErrorKind::NotReady && std::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        for (m, key, _) in members {
            let status = gov.list_members(Some(&m.id))?["status"].clone();
            if status != "Active" {
                let msg = sign_now(
                    key,
                    MessageType::Ack,
                    None,
                    serde_json::json!({"state_digest": digest}).to_string().as_bytes(),
                );
                gov.ack(&m.id, &msg).await?;
            }
        }
        let action =
            cgs_core::gov::ActionBody { name: "transition_service_to_open".into(), args: serde_json::json!({}) };
        let (id, _) = sandbox_vote(gov, members, vec![action]).await?;
        Ok(Some(format!("members acked the service state and voted transition_service_to_open (proposal {id})")))
    }

    /// The active plugins, with their measurements.
    pub fn plugins(&self) -> Vec<Measurement> {
        self.runtime
            .registry()
            .plugins()
            .map(|p| Measurement { info: p.info.clone(), blake3: p.blake3, size: 0 })
            .collect()
    }

    /// The HTTPS URL clients use.
    pub fn url(&self) -> String {
        match self.local_addr {
            SocketAddr::V4(a) => format!("https://{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("https://[{}]:{}", a.ip(), a.port()),
        }
    }

    /// Serve until `shutdown` turns true.
    pub async fn serve(self, shutdown: watch::Receiver<bool>) -> Result<(), NodeError> {
        let tls = self.identity.server_config()?;
        let service = Arc::new(Service {
            runtime: self.runtime.clone(),
            ledger: self.ledger.clone(),
            gov: self.gov.clone(),
            auth: self.auth.clone(),
            cleanroom: self.cleanroom.clone(),
            evidence: self.evidence.clone(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            metrics_token: self.metrics_token.clone(),
            cluster: self.cluster.clone(),
            openapi_cache: Default::default(),
        });
        let policy = self.http_limits.body_policy();
        let forwarded = service.clone();
        self.forwarding.set(Arc::new(move |from, req| {
            let s = forwarded.clone();
            Box::pin(async move { s.answer_forwarded(from, req, policy).await })
        }));
        // Stop when told to, or when this node has been removed from the service.
        let (stop_tx, stop) = watch::channel(false);
        let retired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let membership = {
            let (cluster, mut shutdown, retired) = (self.cluster.clone(), shutdown.clone(), retired.clone());
            tokio::spawn(async move {
                tokio::select! {
                    true = cluster.run(shutdown.clone()) => {
                        retired.store(true, std::sync::atomic::Ordering::Release);
                    }
                    _ = shutdown.wait_for(|s| *s) => {}
                }
                let _ = stop_tx.send(true);
            })
        };
        // A development cluster: the sandbox's members trust every node that joined.
        let trust = (self.auto_trust && !self.sandbox_members.is_empty()).then(|| {
            let (gov, ledger, members) = (self.gov.clone(), self.ledger.clone(), self.sandbox_members.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if !ledger.is_leader() {
                        continue;
                    }
                    let pending: Vec<u64> = gov
                        .nodes()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|(_, s)| *s == crate::gov::nodes::NodeStatus::Pending)
                        .map(|(r, _)| r.node_id)
                        .collect();
                    for id in pending {
                        let action = cgs_core::gov::ActionBody {
                            name: "transition_node_to_trusted".into(),
                            args: serde_json::json!({"node_id": id}),
                        };
                        match sandbox_vote(&gov, &members, vec![action]).await {
                            Ok((p, state)) => tracing::info!(node = id, proposal = %p, %state, "the sandbox's members trusted a joining node"),
                            Err(e) => tracing::warn!(node = id, error = %e, "trusting a joining node failed"),
                        }
                    }
                }
            })
        });
        // Drop expired proposals: every minute, or more often for short lifetimes.
        let gov = self.gov.clone();
        let ledger = self.ledger.clone();
        let every = (self.gov_config.proposal_ttl / 4).clamp(Duration::from_millis(500), Duration::from_secs(60));
        let sweeper = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if ledger.is_leader()
                    && let Err(e) = gov.drop_expired().await
                {
                    tracing::debug!(error = %e, "expiring proposals failed");
                }
            }
        });
        // Fetch issuers' JWKS given by URL (allowed by the operator) when due.
        let auth = self.auth.clone();
        let jwks = tokio::spawn(async move {
            loop {
                auth.refresh_jwks().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let served = http::serve(self.listener, tls, service, self.http_limits, stop).await;
        sweeper.abort();
        jwks.abort();
        membership.abort();
        if let Some(t) = trust {
            t.abort();
        }
        let _ = self.peer_stop.send(true);
        self.ledger.shutdown().await;
        served.map_err(|source| NodeError::Listen { addr: self.local_addr, source })?;
        if retired.load(std::sync::atomic::Ordering::Acquire) {
            return Err(NodeError::Retired(self.ledger.node_id()));
        }
        Ok(())
    }
}
