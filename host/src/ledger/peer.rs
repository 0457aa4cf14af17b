//! The raft network between processes: openraft's RPCs as HTTP/1.1 `POST /raft/{append,vote,
//! snapshot}` with JSON bodies, and clients' writes a follower passes to the leader (`POST
//! /forward/batch`, answers streamed back; `/forward` for one), over mutual TLS 1.3 on a
//! listener of their own.
//!
//! Each node presents a certificate made from its node key (Ed25519, the key that signs
//! checkpoints; TLS signs its own transcript format, so the two uses cannot be confused). A node
//! accepts a peer — as a server the client, as a client the server — only if the certificate's
//! key is the one it was given for that peer ([`PeerKeys`]); no CA, no shared secret. (Issue 13:
//! the keys will come from `sys.nodes`, recorded by the attested join.)
//!
//! * Every connection is a full handshake (no session tickets, no resumption), so a key removed
//!   from [`PeerKeys`] cannot come back through a resumed session; open connections re-check
//!   their key on every RPC.
//! * A connection speaks for the node its key belongs to: an RPC claiming another node as
//!   candidate or leader is refused (`403`).
//! * The listener bounds what strangers can hold: [`MAX_PEER_CONNECTIONS`], a handshake deadline,
//!   and a pause after a failed `accept` (out of file descriptors).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::raft::{Raft, TypeConfig};

/// Largest RPC body accepted (64 MiB: `max_payload_entries` entries of up to 1 MiB each would
/// not fit, but openraft splits by entry count and CGS's entries are far smaller).
const MAX_RPC_BYTES: usize = 64 << 20;

/// Connections the peer listener serves at once; more wait for a slot.
pub const MAX_PEER_CONNECTIONS: usize = 1024;

/// A peer connection without a request for this long is closed.
const PEER_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A TLS handshake must complete within this.
const HANDSHAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// The peers' node keys: node id → raw Ed25519 public key.
#[derive(Clone, Default)]
pub struct PeerKeys(Arc<RwLock<BTreeMap<u64, [u8; 32]>>>);

impl std::fmt::Debug for PeerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u64> = self.0.read().map(|m| m.keys().copied().collect()).unwrap_or_default();
        f.debug_tuple("PeerKeys").field(&ids).finish()
    }
}

impl PeerKeys {
    /// Accept node `id` with `key`.
    pub fn insert(&self, id: u64, key: [u8; 32]) {
        if let Ok(mut m) = self.0.write() {
            m.insert(id, key);
        }
    }

    /// Stop accepting node `id`.
    pub fn remove(&self, id: u64) {
        if let Ok(mut m) = self.0.write() {
            m.remove(&id);
        }
    }

    fn of(&self, id: u64) -> Option<[u8; 32]> {
        self.0.read().ok().and_then(|m| m.get(&id).copied())
    }

    fn knows(&self, key: &[u8; 32]) -> bool {
        self.id_of(key).is_some()
    }

    /// The node whose key `key` is.
    fn id_of(&self, key: &[u8; 32]) -> Option<u64> {
        self.0.read().ok().and_then(|m| m.iter().find(|(_, k)| *k == key).map(|(id, _)| *id))
    }
}

/// This node's certificate and key for the peer listener and its peer connections.
#[derive(Clone)]
pub struct PeerIdentity {
    cert: CertificateDer<'static>,
    key: Arc<PrivateKeyDer<'static>>,
    /// The raw Ed25519 public key.
    pub public_key: [u8; 32],
}

impl PeerIdentity {
    /// A self-signed certificate for the node key `seed` (its Ed25519 secret).
    pub fn from_node_key(seed: &[u8; 32]) -> Result<Self, String> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let sk = ed25519_dalek::SigningKey::from_bytes(seed);
        let pair = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: sk.to_bytes(),
            public_key: Some(ed25519_dalek::pkcs8::PublicKeyBytes(sk.verifying_key().to_bytes())),
        };
        let der = pair.to_pkcs8_der().map_err(|e| e.to_string())?;
        let pkcs8 = PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
        let kp =
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519).map_err(|e| e.to_string())?;
        let params = rcgen::CertificateParams::new(vec!["cgs-node".to_string()]).map_err(|e| e.to_string())?;
        let cert = params.self_signed(&kp).map_err(|e| e.to_string())?;
        Ok(Self {
            cert: cert.der().clone(),
            key: Arc::new(PrivateKeyDer::Pkcs8(pkcs8)),
            public_key: sk.verifying_key().to_bytes(),
        })
    }
}

/// The raw Ed25519 key of a certificate's subject public key, if it is one.
fn ed25519_key(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    use x509_cert::der::Decode;
    let c = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    let spki = &c.tbs_certificate.subject_public_key_info;
    // id-Ed25519 (RFC 8410).
    if spki.algorithm.oid != x509_cert::der::oid::ObjectIdentifier::new_unwrap("1.3.101.112") {
        return None;
    }
    spki.subject_public_key.as_bytes()?.try_into().ok()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(msg: &str) -> rustls::Error {
    rustls::Error::General(msg.to_string())
}

/// The handshake signature checks both sides share: TLS 1.3 and Ed25519 only.
#[derive(Debug)]
struct Handshake(Arc<rustls::crypto::CryptoProvider>);

impl Handshake {
    fn tls12(&self) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls_error("peers speak TLS 1.3 only"))
    }

    /// The peer's signature over the transcript, checked with its certificate's key.
    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The server side: a client is accepted if its certificate's key is a known peer's. The
/// handshake signature proves it holds the key.
#[derive(Debug)]
struct KnownPeers {
    keys: PeerKeys,
    handshake: Handshake,
}

impl ClientCertVerifier for KnownPeers {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match ed25519_key(end_entity) {
            Some(k) if self.keys.knows(&k) => Ok(ClientCertVerified::assertion()),
            Some(_) => Err(tls_error("the peer's node key is not one of this service's nodes")),
            None => Err(tls_error("a peer certificate must carry an Ed25519 node key")),
        }
    }

    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.handshake.tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.handshake.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.handshake.schemes()
    }
}

/// The client side: the server must present exactly the key expected for the node dialled.
#[derive(Debug)]
struct ExpectedPeer {
    key: [u8; 32],
    handshake: Handshake,
}

impl ServerCertVerifier for ExpectedPeer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match ed25519_key(end_entity) {
            Some(k) if k == self.key => Ok(ServerCertVerified::assertion()),
            _ => Err(tls_error("the peer did not present the node key expected for it")),
        }
    }

    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.handshake.tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.handshake.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.handshake.schemes()
    }
}

/// The TLS configuration of the peer listener.
pub fn server_config(identity: &PeerIdentity, keys: &PeerKeys) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = provider();
    let verifier = Arc::new(KnownPeers { keys: keys.clone(), handshake: Handshake(provider.clone()) });
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(|e| e.to_string())?;
    // A resumed session skips the client certificate check: full handshakes only.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// Public for the host's forwarding tests, which dial a peer with it as a follower would.
#[doc(hidden)]
/// The TLS configuration of a connection to the peer whose node key is `key`, as `identity`.
pub fn client_config(identity: &PeerIdentity, key: [u8; 32]) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ExpectedPeer { key, handshake: Handshake(provider) }))
        .with_client_auth_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(|e| e.to_string())?;
    // Every node has the same server name: never resume (it would skip `ExpectedPeer`).
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// A client's request that a node of the service (not the leader) passes to the leader:
/// `POST /forward` on the peer listener.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Forwarded {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// The request's headers (those with text values).
    pub headers: Vec<(String, String)>,
    /// Base64 of the body.
    pub body: String,
}

/// The leader's answer to a [`Forwarded`] request.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ForwardedAnswer {
    /// HTTP status.
    pub status: u16,
    /// The answer's headers (those with text values).
    pub headers: Vec<(String, String)>,
    /// Base64 of the body.
    pub body: String,
}

/// What answers forwarded requests: the node's HTTP service, given the forwarding node's id.
pub type ForwardHandler = Arc<
    dyn Fn(u64, Forwarded) -> std::pin::Pin<Box<dyn std::future::Future<Output = ForwardedAnswer> + Send>>
        + Send
        + Sync,
>;

/// Where the peer listener sends forwarded requests; set once the HTTP service exists (until
/// then they are refused with 503).
#[derive(Clone, Default)]
pub struct Forwarding(Arc<std::sync::OnceLock<ForwardHandler>>);

impl Forwarding {
    /// Answer forwarded requests with `handler`.
    pub fn set(&self, handler: ForwardHandler) {
        let _ = self.0.set(handler);
    }
}

/// Serve openraft's RPCs for `raft` (and requests forwarded to this node, if it leads) to the
/// peers `keys` accepts, on `listener`, until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    raft: Raft,
    keys: PeerKeys,
    forwarding: Forwarding,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_PEER_CONNECTIONS));
    // Forwarded requests of batches served at once: over every connection as many as
    // connections could carry one each, and per peer as many as a node forwards at once. A
    // batch waits for its slots before any of its requests starts (it is not refused).
    let items = BatchSlots::default();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                // Out of file descriptors (or a transient error): do not spin.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        // Raft answers and forwarded answers are small and latency-bound: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let (acceptor, raft, keys, stop, fwd, items) =
            (acceptor.clone(), raft.clone(), keys.clone(), stop.clone(), forwarding.clone(), items.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(tcp)).await else { return };
            // The verifier accepted the certificate: it carries a known key.
            let Some(key) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(ed25519_key) else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                handle(raft.clone(), keys.clone(), fwd.clone(), items.clone(), key, req)
            });
            let io = hyper_util::rt::TokioIo::new(tls);
            // An idle connection (no request for 30 s) is closed: slots are for working peers.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(PEER_IDLE_TIMEOUT)
                .serve_connection(io, service);
            let mut stop = stop;
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// Whether the vote in an RPC is cast by (vote) or for (append, snapshot) the node `from`.
fn speaks_for(vote: &openraft::Vote<u64>, from: u64) -> bool {
    vote.leader_id().voted_for() == Some(from)
}

async fn handle(
    raft: Raft,
    keys: PeerKeys,
    forwarding: Forwarding,
    items: BatchSlots,
    key: [u8; 32],
    req: Request<hyper::body::Incoming>,
) -> Result<Response<PeerBody>, hyper::Error> {
    // The key is checked again for every RPC: a node removed meanwhile is refused at once.
    let Some(from) = keys.id_of(&key) else {
        return Ok(answer(StatusCode::FORBIDDEN, b"this node key is no longer one of this service's nodes".to_vec()));
    };
    if req.method() != hyper::Method::POST {
        return Ok(answer(StatusCode::METHOD_NOT_ALLOWED, b"POST only".to_vec()));
    }
    let path = req.uri().path().to_string();
    if !matches!(path.as_str(), "/raft/append" | "/raft/vote" | "/raft/snapshot" | "/forward" | "/forward/batch") {
        return Ok(answer(StatusCode::NOT_FOUND, b"no such RPC".to_vec()));
    }
    let body = match http_body_util::Limited::new(req.into_body(), MAX_RPC_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(answer(StatusCode::PAYLOAD_TOO_LARGE, b"too large".to_vec())),
    };
    let impostor = || answer(StatusCode::FORBIDDEN, format!("node {from} may only speak for itself").into_bytes());
    let bad = |e: serde_json::Error| answer(StatusCode::BAD_REQUEST, e.to_string().into_bytes());
    let out = match path.as_str() {
        "/forward/batch" => {
            let Some(handler) = forwarding.0.get().cloned() else {
                return Ok(answer(StatusCode::SERVICE_UNAVAILABLE, b"this node is not serving yet".to_vec()));
            };
            let reqs = match parse_batch(&body) {
                Ok(reqs) => reqs,
                Err(e) => return Ok(answer(StatusCode::BAD_REQUEST, e.into_bytes())),
            };
            let Some(slots) = items.take(from, reqs.len()).await else {
                return Ok(answer(StatusCode::SERVICE_UNAVAILABLE, b"this node is stopping".to_vec()));
            };
            return Ok(answer_batch(from, handler, reqs, slots, keys, key));
        }
        "/forward" => {
            let Some(handler) = forwarding.0.get().cloned() else {
                return Ok(answer(StatusCode::SERVICE_UNAVAILABLE, b"this node is not serving yet".to_vec()));
            };
            match serde_json::from_slice::<Forwarded>(&body) {
                Ok(req) => serde_json::to_vec(&handler(from, req).await),
                Err(e) => return Ok(bad(e)),
            }
        }
        "/raft/append" => match serde_json::from_slice::<AppendEntriesRequest<TypeConfig>>(&body) {
            Ok(rpc) if !speaks_for(&rpc.vote, from) => return Ok(impostor()),
            Ok(rpc) => serde_json::to_vec(&raft.append_entries(rpc).await),
            Err(e) => return Ok(bad(e)),
        },
        "/raft/vote" => match serde_json::from_slice::<VoteRequest<u64>>(&body) {
            Ok(rpc) if !speaks_for(&rpc.vote, from) => return Ok(impostor()),
            Ok(rpc) => serde_json::to_vec(&raft.vote(rpc).await),
            Err(e) => return Ok(bad(e)),
        },
        _ => match serde_json::from_slice::<InstallSnapshotRequest<TypeConfig>>(&body) {
            Ok(rpc) if !speaks_for(&rpc.vote, from) => return Ok(impostor()),
            Ok(rpc) => serde_json::to_vec(&raft.install_snapshot(rpc).await),
            Err(e) => return Ok(bad(e)),
        },
    };
    Ok(match out {
        Ok(bytes) => answer(StatusCode::OK, bytes),
        Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, e.to_string().into_bytes()),
    })
}

/// The body of the peer listener's answers: whole, or a stream of frames (a batch's answers).
type PeerBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn answer(status: StatusCode, body: Vec<u8>) -> Response<PeerBody> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    r
}

/// Forwarded requests in one batch, at most.
/// As many as a node forwards at once, so one batch always fits a peer's share of the leader's
/// slots ([`BatchSlots`]).
pub const MAX_BATCH: usize = crate::cluster::MAX_FORWARDS;

/// The requests of a `POST /forward/batch` body: frames `len (u32, big-endian) ‖ JSON of a
/// [`Forwarded`]`, at most [`MAX_BATCH`].
fn parse_batch(body: &[u8]) -> Result<Vec<Forwarded>, String> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        if out.len() == MAX_BATCH {
            return Err(format!("a batch holds at most {MAX_BATCH} requests"));
        }
        let (len, tail) = rest.split_first_chunk::<4>().ok_or("a frame's length is cut off")?;
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return Err(format!("frame {} announces {len} bytes, {} follow", out.len(), tail.len()));
        }
        let (item, tail) = tail.split_at(len);
        out.push(serde_json::from_slice(item).map_err(|e| format!("frame {}: {e}", out.len()))?);
        rest = tail;
    }
    if out.is_empty() {
        return Err("an empty batch".into());
    }
    Ok(out)
}

/// The slots of requests of batches the leader serves at once: [`MAX_PEER_CONNECTIONS`] in all,
/// [`crate::cluster::MAX_FORWARDS`] per peer (one peer cannot take the others' share).
#[derive(Clone)]
struct BatchSlots {
    all: Arc<tokio::sync::Semaphore>,
    per_peer: Arc<std::sync::Mutex<BTreeMap<u64, Arc<tokio::sync::Semaphore>>>>,
}

impl Default for BatchSlots {
    fn default() -> Self {
        Self { all: Arc::new(tokio::sync::Semaphore::new(MAX_PEER_CONNECTIONS)), per_peer: Default::default() }
    }
}

impl BatchSlots {
    /// Slots for `n` requests of peer `from` (waiting for them); `None` once closed.
    async fn take(&self, from: u64, n: usize) -> Option<Arc<[tokio::sync::OwnedSemaphorePermit; 2]>> {
        let mine = self
            .per_peer
            .lock()
            .ok()?
            .entry(from)
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(crate::cluster::MAX_FORWARDS)))
            .clone();
        // A batch holds at most MAX_BATCH requests, a peer's whole share: always satisfiable.
        let n = u32::try_from(n).ok()?;
        let peer = mine.acquire_many_owned(n).await.ok()?;
        let all = self.all.clone().acquire_many_owned(n).await.ok()?;
        Some(Arc::new([peer, all]))
    }
}

/// Serve a batch's requests at once and stream each answer as it is ready: frames
/// `index (u32) ‖ len (u32) ‖ JSON of a [`ForwardedAnswer`]`, in the order they complete (a slow
/// request does not hold back the others). The batch's slots are released when its last request
/// is done; if the forwarding node hangs up, its requests still being served are dropped, as a
/// client's request is when it hangs up. Each request checks that its node is still one of the
/// service's before it is served.
fn answer_batch(
    from: u64,
    handler: ForwardHandler,
    reqs: Vec<Forwarded>,
    slots: Arc<[tokio::sync::OwnedSemaphorePermit; 2]>,
    keys: PeerKeys,
    key: [u8; 32],
) -> Response<PeerBody> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(reqs.len());
    let mut tasks = Vec::with_capacity(reqs.len());
    for (i, req) in reqs.into_iter().enumerate() {
        let (handler, tx, slots, keys) = (handler.clone(), tx.clone(), slots.clone(), keys.clone());
        tasks.push(
            tokio::spawn(async move {
                let _slots = slots;
                let answer = if keys.id_of(&key) == Some(from) {
                    handler(from, req).await
                } else {
                    use base64::Engine as _;
                    let error = serde_json::json!({"error": {
                        "code": "NodeRemoved",
                        "message": format!("node {from}, which passed this request on, is no longer one of this service's nodes; send it to another node"),
                    }});
                    ForwardedAnswer {
                        status: 503,
                        headers: vec![("content-type".into(), "application/json".into())],
                        body: base64::engine::general_purpose::STANDARD.encode(error.to_string()),
                    }
                };
                let json = serde_json::to_vec(&answer).unwrap_or_default();
                let mut frame = Vec::with_capacity(8 + json.len());
                frame.extend_from_slice(&(i as u32).to_be_bytes());
                frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
                frame.extend_from_slice(&json);
                let _ = tx.send(Bytes::from(frame)).await;
            })
            .abort_handle(),
        );
    }
    let mut r = Response::new(ChannelBody { rx, tasks }.boxed());
    *r.status_mut() = StatusCode::OK;
    r
}

/// A response body fed by a channel; the frames ready when polled go out together. Dropped
/// (the connection closed), it stops the tasks still feeding it.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for ChannelBody {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let first = match self.rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => b,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let mut more = Vec::new();
        while more.len() < 64 << 10 {
            match self.rx.try_recv() {
                Ok(b) => {
                    if more.is_empty() {
                        more.extend_from_slice(&first);
                    }
                    more.extend_from_slice(&b);
                }
                Err(_) => break,
            }
        }
        let data = if more.is_empty() { first } else { Bytes::from(more) };
        Poll::Ready(Some(Ok(hyper::body::Frame::data(data))))
    }
}

/// openraft's network over the peer listeners: node `id` is dialled at its `BasicNode.addr`
/// (`host:port` of its peer listener) and must present the key [`PeerKeys`] holds for it.
#[derive(Clone)]
pub struct PeerNetwork {
    identity: PeerIdentity,
    keys: PeerKeys,
    /// Idle connections used to forward requests, by peer.
    idle: Arc<std::sync::Mutex<BTreeMap<u64, Vec<Connection>>>>,
    /// Where requests forwarded to a peer queue for their batch, by peer.
    batchers: Arc<std::sync::Mutex<BTreeMap<u64, Batcher>>>,
}

/// The queue of requests forwarded to one peer at one address.
struct Batcher {
    addr: String,
    queue: tokio::sync::mpsc::Sender<Job>,
}

/// A request waiting for its batch: its frame (JSON of a [`Forwarded`]) and who awaits the answer.
struct Job {
    frame: Vec<u8>,
    answer: tokio::sync::oneshot::Sender<Result<ForwardedAnswer, String>>,
}

/// Batches a node has in flight to one peer at once, each counted until its answers are in or
/// [`BATCH_HOLD`] has passed. A request arriving while they all are joins the next batch: one
/// request alone goes at once, and under load each batch carries what queued meanwhile (one TLS
/// exchange and one HTTP request for many).
const BATCHES_IN_FLIGHT: usize = 4;

/// A batch stops taking requests once this large (one larger request still goes, alone).
const MAX_BATCH_BYTES: usize = 4 << 20;

/// How long a batch counts against [`BATCHES_IN_FLIGHT`] at most (its answers may take longer).
const BATCH_HOLD: std::time::Duration = std::time::Duration::from_millis(50);

/// How long a batch's exchange may take in all (a forward itself waits 30 s at most).
const BATCH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(35);

/// An HTTP/1.1 connection to a peer.
type Connection = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Idle forwarding connections kept per peer.
const MAX_IDLE_FORWARD: usize = crate::cluster::MAX_FORWARDS;

impl PeerNetwork {
    /// A network for the node with `identity`, accepting the peers in `keys`.
    pub fn new(identity: PeerIdentity, keys: PeerKeys) -> Self {
        Self { identity, keys, idle: Default::default(), batchers: Default::default() }
    }

    /// The peers' keys this network accepts.
    pub fn keys(&self) -> &PeerKeys {
        &self.keys
    }

    /// Pass a client's request to node `target` (the leader) at `addr`, over a connection that
    /// must present `target`'s key. Requests to the same peer travel in batches
    /// (`POST /forward/batch`, [`BATCHES_IN_FLIGHT`]); each answer comes back as soon as the
    /// leader has it.
    pub async fn forward(&self, target: u64, addr: &str, req: &Forwarded) -> Result<ForwardedAnswer, String> {
        let frame = serde_json::to_vec(req).map_err(|e| e.to_string())?;
        if frame.len() + 4 > MAX_RPC_BYTES {
            return Err("the request is too large to forward".into());
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        let queue = {
            let mut batchers = self.batchers.lock().map_err(|_| "forwarding is broken (a lock was poisoned)")?;
            match batchers.get(&target) {
                Some(b) if b.addr == addr && !b.queue.is_closed() => b.queue.clone(),
                _ => {
                    // A new peer, or its address changed: the old queue ends once drained.
                    // As many as the node forwards at once (`forward_slots`): the bound is
                    // reached only if requests whose callers gave up are still queued.
                    let (queue, jobs) = tokio::sync::mpsc::channel(crate::cluster::MAX_FORWARDS);
                    tokio::spawn(self.clone().batcher(target, addr.to_string(), jobs));
                    batchers.insert(target, Batcher { addr: addr.to_string(), queue: queue.clone() });
                    queue
                }
            }
        };
        queue.try_send(Job { frame, answer }).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => {
                "as many requests as this node may forward already wait for the leader".to_string()
            }
            tokio::sync::mpsc::error::TrySendError::Closed(_) => "forwarding to this peer stopped".to_string(),
        })?;
        answered.await.map_err(|_| "the batch carrying the request was dropped".to_string())?
    }

    /// Send what `jobs` queues for `target` in batches, [`BATCHES_IN_FLIGHT`] at once. A batch
    /// counts as in flight until its answers are all in or [`BATCH_HOLD`] has passed, whichever
    /// is first: slow requests on the leader do not stop a node's forwarding.
    async fn batcher(self, target: u64, addr: String, mut jobs: tokio::sync::mpsc::Receiver<Job>) {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT));
        loop {
            let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
            let mut batch = Vec::new();
            let mut size = 0;
            while batch.len() < MAX_BATCH && size < MAX_BATCH_BYTES {
                let job = if batch.is_empty() {
                    match jobs.recv().await {
                        Some(j) => j,
                        None => return,
                    }
                } else {
                    match jobs.try_recv() {
                        Ok(j) => j,
                        Err(_) => break,
                    }
                };
                // Its caller gave up (timed out, or its client left): not sent at all.
                if job.answer.is_closed() {
                    continue;
                }
                if !batch.is_empty() && size + job.frame.len() + 4 > MAX_RPC_BYTES {
                    let _ = job.answer.send(Err("the leader is busy with larger requests; retry shortly".into()));
                    continue;
                }
                size += job.frame.len() + 4;
                batch.push(Some(job));
            }
            let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move {
                let _permit = permit;
                let _ = tokio::time::timeout(BATCH_HOLD, done).await;
            });
            let (net, addr) = (self.clone(), addr.clone());
            tokio::spawn(async move {
                net.send_batch(target, addr, batch).await;
                let _ = done_tx.send(());
            });
        }
    }

    /// One batch's exchange: every job gets its answer, or the reason there is none.
    async fn send_batch(&self, target: u64, addr: String, mut batch: Vec<Option<Job>>) {
        let conn = self.idle.lock().ok().and_then(|mut m| m.get_mut(&target).and_then(Vec::pop));
        let mut client = PeerClient { target, addr, identity: self.identity.clone(), keys: self.keys.clone(), conn };
        let outcome = match tokio::time::timeout(BATCH_DEADLINE, client.batch(&mut batch)).await {
            Ok(Ok(true)) => Ok(()),
            // A leader of an older version: one request per exchange.
            Ok(Ok(false)) => {
                for job in batch.iter_mut().filter_map(Option::take) {
                    let client = PeerClient {
                        target,
                        addr: client.addr.clone(),
                        identity: self.identity.clone(),
                        keys: self.keys.clone(),
                        conn: None,
                    };
                    tokio::spawn(async move {
                        let mut client = client;
                        let answer = client.call_bytes("/forward", job.frame).await.and_then(|b| {
                            serde_json::from_slice::<ForwardedAnswer>(&b).map_err(|e| CallError::Io(e.to_string()))
                        });
                        let _ = job.answer.send(answer.map_err(|e| match e {
                            CallError::Connect(w) | CallError::Io(w) | CallError::Refused(w) => w,
                            CallError::TooLarge => "the request is too large to forward".into(),
                        }));
                    });
                }
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no complete answer within {} s", BATCH_DEADLINE.as_secs())),
        };
        if let (Some(c), Ok(mut idle)) = (client.conn.take(), self.idle.lock()) {
            let list = idle.entry(target).or_default();
            if list.len() < MAX_IDLE_FORWARD {
                list.push(c);
            }
        }
        let why = outcome.err().unwrap_or_else(|| "the leader's answers broke off".into());
        for job in batch.into_iter().flatten() {
            let _ = job.answer.send(Err(why.clone()));
        }
    }
}

/// A connection to one peer (re-established when it breaks).
pub struct PeerClient {
    target: u64,
    addr: String,
    identity: PeerIdentity,
    keys: PeerKeys,
    conn: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        PeerClient {
            target,
            addr: node.addr.clone(),
            identity: self.identity.clone(),
            keys: self.keys.clone(),
            conn: None,
        }
    }
}

impl PeerClient {
    async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
        let key = self.keys.of(self.target).ok_or_else(|| format!("no node key is known for node {}", self.target))?;
        let tls = client_config(&self.identity, key)?;
        let tcp = tokio::time::timeout(HANDSHAKE_DEADLINE, tokio::net::TcpStream::connect(&self.addr))
            .await
            .map_err(|_| format!("{}: no connection within {} s", self.addr, HANDSHAKE_DEADLINE.as_secs()))?
            .map_err(|e| format!("{}: {e}", self.addr))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from("cgs-node").map_err(|e| e.to_string())?;
        let stream = tokio::time::timeout(HANDSHAKE_DEADLINE, tokio_rustls::TlsConnector::from(tls).connect(name, tcp))
            .await
            .map_err(|_| "the TLS handshake did not complete in time".to_string())?
            .map_err(|e| e.to_string())?;
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(send)
    }

    /// `POST /forward/batch` with the jobs of `batch`, handing each answer to its job (taken
    /// out of `batch`) as it arrives: `Ok(false)` if the peer has no such RPC (an older
    /// version). The connection is kept only after a complete exchange.
    async fn batch(&mut self, batch: &mut [Option<Job>]) -> Result<bool, String> {
        let mut body = Vec::with_capacity(batch.iter().flatten().map(|j| 4 + j.frame.len()).sum());
        for job in batch.iter().flatten() {
            body.extend_from_slice(&(job.frame.len() as u32).to_be_bytes());
            body.extend_from_slice(&job.frame);
        }
        let mut req = Request::post("/forward/batch")
            .header(hyper::header::HOST, "cgs-node")
            .header(hyper::header::CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        // A pooled connection the leader closed meanwhile fails before the request is written:
        // the request comes back and goes once more on a new connection (never twice to the
        // leader).
        let (conn, resp) = loop {
            let pooled = self.conn.take().filter(|c| !c.is_closed());
            let fresh = pooled.is_none();
            let mut conn = match pooled {
                Some(c) => c,
                None => self.connect().await?,
            };
            if let Err(e) = conn.ready().await {
                if fresh {
                    return Err(e.to_string());
                }
                continue;
            }
            match conn.try_send_request(req).await {
                Ok(resp) => break (conn, resp),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => req = unsent,
                    _ => return Err(e.into_error().to_string()),
                },
            }
        };
        let status = resp.status();
        let mut body = resp.into_body();
        if status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if status != StatusCode::OK {
            let bytes = http_body_util::Limited::new(body, 64 << 10).collect().await.map(|c| c.to_bytes());
            return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes.unwrap_or_default())));
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() else { continue };
            buf.extend_from_slice(&data);
            let mut at = 0;
            while let Some(head) = buf.get(at..at + 8) {
                let index = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
                let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
                let Some(json) = buf.get(at + 8..at + 8 + len) else { break };
                let answer = serde_json::from_slice::<ForwardedAnswer>(json).map_err(|e| e.to_string())?;
                let job = batch.get_mut(index).and_then(Option::take).ok_or("an answer to no request of the batch")?;
                let _ = job.answer.send(Ok(answer));
                at += 8 + len;
            }
            buf.drain(..at);
            if buf.len() > MAX_RPC_BYTES {
                return Err("an answer is too large".into());
            }
        }
        if !buf.is_empty() {
            return Err("the last answer is cut off".into());
        }
        self.conn = Some(conn);
        Ok(true)
    }

    /// POST `rpc` to `path`; the decoded JSON answer. The connection is taken for the call and
    /// kept only after a complete exchange: a call openraft cancels (its timeout) or that fails
    /// leaves nothing half-used behind.
    async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        rpc: &Req,
    ) -> Result<Resp, CallError> {
        let body = serde_json::to_vec(rpc).map_err(|e| CallError::Io(e.to_string()))?;
        let bytes = self.call_bytes(path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| CallError::Io(e.to_string()))
    }

    /// POST the JSON `body` to `path`; the answer's body.
    async fn call_bytes(&mut self, path: &str, body: Vec<u8>) -> Result<Bytes, CallError> {
        if body.len() > MAX_RPC_BYTES {
            return Err(CallError::TooLarge);
        }
        let mut conn = match self.conn.take().filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => self.connect().await.map_err(CallError::Connect)?,
        };
        conn.ready().await.map_err(|e| CallError::Io(e.to_string()))?;
        let req = Request::post(path)
            .header(hyper::header::HOST, "cgs-node")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CallError::Io(e.to_string()))?;
        let resp = conn.send_request(req).await.map_err(|e| CallError::Io(e.to_string()))?;
        let status = resp.status();
        let bytes = http_body_util::Limited::new(resp.into_body(), MAX_RPC_BYTES)
            .collect()
            .await
            .map_err(|e| CallError::Io(e.to_string()))?
            .to_bytes();
        self.conn = Some(conn);
        match status {
            StatusCode::OK => Ok(bytes),
            StatusCode::PAYLOAD_TOO_LARGE => Err(CallError::TooLarge),
            s => Err(CallError::Refused(format!("{s}: {}", String::from_utf8_lossy(&bytes)))),
        }
    }
}

/// Why an RPC got no answer.
#[derive(Debug)]
enum CallError {
    /// No connection could be made (or the peer's key was refused): openraft backs off.
    Connect(String),
    /// The exchange broke off.
    Io(String),
    /// The peer refused it.
    Refused(String),
    /// Too large for one RPC.
    TooLarge,
}

impl CallError {
    fn rpc<E: std::error::Error>(self, entries: u64) -> RPCError<u64, BasicNode, E> {
        match self {
            CallError::Connect(why) | CallError::Refused(why) => {
                RPCError::Unreachable(Unreachable::new(&std::io::Error::other(why)))
            }
            CallError::Io(why) => RPCError::Network(NetworkError::new(&std::io::Error::other(why))),
            CallError::TooLarge => {
                RPCError::PayloadTooLarge(openraft::error::PayloadTooLarge::new_entries_hint((entries / 2).max(1)))
            }
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let hint = rpc.entries.len() as u64;
        let r: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
            self.call("/raft/append", &rpc).await.map_err(|e| e.rpc(hint))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        let hint = 1;
        let r: Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> =
            self.call("/raft/snapshot", &rpc).await.map_err(|e| e.rpc(hint))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let hint = 1;
        let r: Result<VoteResponse<u64>, RaftError<u64>> =
            self.call("/raft/vote", &rpc).await.map_err(|e| e.rpc(hint))?;
        r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(item: &[u8]) -> Vec<u8> {
        let mut f = (item.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(item);
        f
    }

    fn request(uri: &str) -> Vec<u8> {
        let f = Forwarded { method: "POST".into(), uri: uri.into(), headers: vec![], body: String::new() };
        serde_json::to_vec(&f).unwrap()
    }

    #[test]
    fn a_batch_is_its_frames_in_order() {
        let body = [frame(&request("/a")), frame(&request("/b"))].concat();
        let reqs = parse_batch(&body).unwrap();
        assert_eq!(reqs.iter().map(|r| r.uri.as_str()).collect::<Vec<_>>(), ["/a", "/b"]);
    }

    #[test]
    fn malformed_batches_are_refused_with_the_reason() {
        let one = frame(&request("/a"));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "an empty batch"),
            (one[..3].to_vec(), "length is cut off"),
            (one[..one.len() - 1].to_vec(), "announces"),
            (frame(b"{not json"), "frame 0"),
            ([one.clone(), frame(b"[]")].concat(), "frame 1"),
            (one.repeat(MAX_BATCH + 1), "at most 256"),
        ];
        for (body, why) in cases {
            let e = parse_batch(&body).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
        assert_eq!(parse_batch(&one.repeat(MAX_BATCH)).unwrap().len(), MAX_BATCH);
    }
}
