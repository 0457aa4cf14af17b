//! A node: data directory, service identity, runtime, plugins and the HTTPS server.
//!
//! Data directory layout (see `docs/data-dir.md`):
//!
//! ```text
//! DIR/service-cert.pem        service certificate (clients pin it)
//! DIR/ledger.redb             the ledger: replicated log, applied state, Merkle nodes
//! DIR/node/service-key.pem    service key (owner-only; sealed to the TEE in production)
//! DIR/node/node-signing.key   node Ed25519 key signing checkpoints (idem)
//! DIR/node/ledger-secret      AES-256-GCM key of private tables (idem)
//! DIR/cache/                  compiled plugins, authenticated (runtime::cache)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cgs_core::plugin::Measurement;
use tokio::sync::watch;

use crate::http::{self, Service};
use crate::ledger::{Ledger, LedgerConfig, LedgerError, Router};
use crate::runtime::{LoadError, Runtime, RuntimeConfig};
use crate::tls::{ServiceIdentity, TlsError};

/// Where a node gets its plugins at start.
#[derive(Debug, Clone)]
pub enum PluginSource {
    /// Every `*.wasm` in a directory.
    Dir(PathBuf),
    /// Build the workspace's default plugins reproducibly (`cgs plugin build`), then load them.
    Build {
        /// The source checkout.
        workspace: PathBuf,
    },
}

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data directory.
    pub dir: PathBuf,
    /// Listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Plugins to load.
    pub plugins: PluginSource,
    /// Runtime limits.
    pub runtime: RuntimeConfig,
    /// Ledger settings.
    pub ledger: LedgerConfig,
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
    /// A plugin failed to load.
    #[error("plugin {path}: {source}")]
    Plugin {
        /// The file.
        path: String,
        /// Why.
        source: LoadError,
    },
    /// Building plugins failed.
    #[error(transparent)]
    Build(#[from] cgs_core::build::BuildError),
    /// Reading plugins failed.
    #[error(transparent)]
    Measure(#[from] cgs_core::plugin::PluginError),
    /// The ledger failed to open or start.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// A started node, ready to serve.
pub struct Node {
    /// The runtime.
    pub runtime: Arc<Runtime>,
    /// The ledger.
    pub ledger: Arc<Ledger>,
    /// The service identity.
    pub identity: ServiceIdentity,
    /// The data directory.
    pub dir: PathBuf,
    /// Where the service certificate is.
    pub service_cert_path: PathBuf,
    /// The loaded plugins.
    pub plugins: Vec<Measurement>,
    listener: tokio::net::TcpListener,
    /// The address actually bound.
    pub local_addr: SocketAddr,
}

fn plugin_files(dir: &Path) -> Result<Vec<PathBuf>, NodeError> {
    let io = |source| NodeError::Dir { path: dir.display().to_string(), source };
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let p = e.map_err(io)?.path();
        if p.extension().is_some_and(|x| x == "wasm") {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

impl Node {
    /// Prepare the data directory, identity, runtime and plugins, and bind the listener.
    pub async fn open(config: NodeConfig) -> Result<Node, NodeError> {
        let dir = &config.dir;
        std::fs::create_dir_all(dir).map_err(|source| NodeError::Dir { path: dir.display().to_string(), source })?;
        let identity = ServiceIdentity::load_or_create(dir, &[config.listen.ip().to_string()])?;
        // The log origin names this service in checkpoints; fixed at creation.
        let origin = {
            use sha2::Digest;
            format!("cgs/{}", &hex::encode(sha2::Sha256::digest(identity.service_cert_pem.as_bytes()))[..16])
        };
        let ledger = Ledger::open(dir, config.ledger.clone(), &origin, Router::default()).await?;
        ledger.initialize_single(&config.listen.to_string()).await?;
        ledger.wait_for_leader(std::time::Duration::from_secs(30)).await?;
        ledger.record_node_key().await?;
        let runtime = Arc::new(Runtime::new(config.runtime.clone(), ledger.clone(), Some(&dir.join("cache")))?);

        let files = match &config.plugins {
            PluginSource::Dir(d) => plugin_files(d)?,
            PluginSource::Build { workspace } => {
                let req = cgs_core::build::BuildRequest::new(workspace);
                cgs_core::build::build(&req)?.into_iter().map(|b| b.path).collect()
            }
        };
        let mut plugins = Vec::new();
        for f in files {
            let bytes = std::fs::read(&f).map_err(|source| NodeError::Dir { path: f.display().to_string(), source })?;
            let plugin =
                runtime.load(&bytes).map_err(|source| NodeError::Plugin { path: f.display().to_string(), source })?;
            plugins.push(Measurement { info: plugin.info.clone(), blake3: plugin.blake3, size: bytes.len() as u64 });
        }

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| NodeError::Listen { addr: config.listen, source })?;
        let local_addr = listener.local_addr().map_err(|source| NodeError::Listen { addr: config.listen, source })?;
        Ok(Node {
            runtime,
            ledger,
            identity,
            dir: dir.clone(),
            service_cert_path: dir.join("service-cert.pem"),
            plugins,
            listener,
            local_addr,
        })
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
        let service = Arc::new(Service { runtime: self.runtime.clone(), ledger: self.ledger.clone() });
        let served = http::serve(self.listener, tls, service, shutdown).await;
        self.ledger.shutdown().await;
        served.map_err(|source| NodeError::Listen { addr: self.local_addr, source })
    }
}
