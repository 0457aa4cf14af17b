//! The raft network: the in-process router connecting the raft instances of one process (tests
//! and single-process clusters), and [`Network`], which also reaches other processes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};

use super::raft::{Raft, TypeConfig};

/// Connects the raft instances of one process.
#[derive(Clone, Default)]
pub struct Router(Arc<Mutex<BTreeMap<u64, Raft>>>);

impl Router {
    /// Make `raft` reachable as `id`.
    pub fn add(&self, id: u64, raft: Raft) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(id, raft);
        }
    }

    fn get(&self, id: u64) -> Option<Raft> {
        self.0.lock().ok().and_then(|m| m.get(&id).cloned())
    }
}

/// A client of one peer through the router.
pub struct InProcessNetwork {
    router: Router,
    target: u64,
}

fn unreachable<E: std::error::Error>(target: u64) -> RPCError<u64, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!("node {target} is not in this process"))))
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = InProcessNetwork;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Self::Network {
        InProcessNetwork { router: self.clone(), target }
    }
}

impl RaftNetwork<TypeConfig> for InProcessNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self.router.get(self.target).ok_or_else(|| unreachable(self.target))?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        let raft = self.router.get(self.target).ok_or_else(|| unreachable(self.target))?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self.router.get(self.target).ok_or_else(|| unreachable(self.target))?;
        raft.vote(rpc).await.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
    }
}

/// How a ledger reaches its peers: in this process (tests, the sandbox) or over the peer
/// listeners of other processes ([`super::peer`]).
#[derive(Clone)]
pub enum Network {
    /// Raft instances of this process.
    InProcess(Router),
    /// Other processes, over mutual TLS.
    Peers(super::peer::PeerNetwork),
}

impl From<Router> for Network {
    fn from(r: Router) -> Self {
        Network::InProcess(r)
    }
}

impl From<super::peer::PeerNetwork> for Network {
    fn from(p: super::peer::PeerNetwork) -> Self {
        Network::Peers(p)
    }
}

/// A client of one peer, through either network.
pub enum NetworkClient {
    /// In this process.
    InProcess(InProcessNetwork),
    /// Over the peer listener.
    Peer(super::peer::PeerClient),
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = NetworkClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        match self {
            Network::InProcess(r) => NetworkClient::InProcess(r.new_client(target, node).await),
            Network::Peers(p) => NetworkClient::Peer(p.new_client(target, node).await),
        }
    }
}

impl RaftNetwork<TypeConfig> for NetworkClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self {
            NetworkClient::InProcess(n) => n.append_entries(rpc, option).await,
            NetworkClient::Peer(n) => n.append_entries(rpc, option).await,
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        match self {
            NetworkClient::InProcess(n) => n.install_snapshot(rpc, option).await,
            NetworkClient::Peer(n) => n.install_snapshot(rpc, option).await,
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self {
            NetworkClient::InProcess(n) => n.vote(rpc, option).await,
            NetworkClient::Peer(n) => n.vote(rpc, option).await,
        }
    }
}
