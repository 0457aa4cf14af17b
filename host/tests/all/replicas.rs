//! Three replicas in one process (real ledgers over the in-process raft router, real runtimes,
//! real components): a plugin that governance activates on the leader is loaded and served by
//! every follower from its own applied state, by its own reconciler — nothing on the leader's
//! write path touches a follower.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cgs_core::gov::{MessageType, sign};
use cgs_host::gov::{Genesis, GenesisMember, GovConfig, Governance};
use cgs_host::ledger::{Ledger, LedgerConfig, Router};
use cgs_host::reconcile::Reconciler;
use cgs_host::runtime::{Caller, CallerKind, Method, PluginRequest, RouteMatch, Runtime};
use cgs_host::service::Services;

use crate::support::{fast_limits, plugin};

struct Replica {
    ledger: Arc<Ledger>,
    runtime: Arc<Runtime>,
    gov: Arc<Governance>,
    _dir: tempfile::TempDir,
}

/// A data directory for a replica: replicas of one service share its ledger secret (here by
/// copying it).
fn replica_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("node")).unwrap();
    std::fs::write(dir.path().join("node").join("ledger-secret"), [9u8; 32]).unwrap();
    dir
}

/// Node `id`'s ledger settings: fast checkpoints and elections.
fn replica_config(id: u64) -> LedgerConfig {
    LedgerConfig {
        node_id: id,
        signature_interval: Duration::from_millis(20),
        heartbeat: Duration::from_millis(100),
        election_timeout: Duration::from_millis(1000),
        ..LedgerConfig::default()
    }
}

async fn replica(id: u64, router: &Router) -> Replica {
    let dir = replica_dir();
    // What a node's data directory holds (the recovery shares cover the service key).
    cgs_host::tls::ServiceIdentity::load_or_create(dir.path(), &[]).unwrap();
    let ledger = Ledger::open(dir.path(), replica_config(id), "cgs/replicas", router.clone()).await.unwrap();
    let runtime = Arc::new(Runtime::new(fast_limits(), ledger.clone(), None).unwrap());
    let reconciler = Reconciler::start(runtime.clone(), ledger.clone()).unwrap();
    let services = Services::new(
        runtime.clone(),
        ledger.clone(),
        reconciler,
        &dir.path().join("node").join("token-signing.key"),
        GovConfig::default(),
    )
    .unwrap();
    Replica { ledger, runtime, gov: services.gov, _dir: dir }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// `GET path` through a replica's own runtime, as its HTTP layer would serve it.
fn get(rt: &Runtime, path: &str) -> Result<serde_json::Value, String> {
    let registry = rt.registry();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let RouteMatch::Found { plugin, route, params } = registry.find_route(Method::Get, &segments) else {
        return Err(format!("no route for GET {path}"));
    };
    let req = PluginRequest {
        plugin: registry.get(&plugin).unwrap().clone(),
        route,
        params,
        path: path.to_string(),
        query: vec![],
        headers: vec![],
        body: vec![],
        caller: Caller { kind: CallerKind::Member, id: "m".into(), ..Caller::anonymous() },
    };
    let r =
        cgs_host::store::now(rt.handle(&req)).ok_or("a GET never waits for a commit")?.map_err(|e| format!("{e:?}"))?;
    serde_json::from_slice(&r.body).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_activated_on_the_leader_is_served_by_every_follower() {
    let router = Router::default();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(replica(id, &router).await);
    }
    let voters = (1..=3).map(|i| (i, openraft::BasicNode::new(format!("node-{i}")))).collect::<BTreeMap<_, _>>();
    nodes[0].ledger.raft.initialize(voters).await.unwrap();
    let leader = nodes[0].ledger.wait_for_leader(Duration::from_secs(20)).await.unwrap() as usize - 1;
    let l = &nodes[leader];
    l.ledger.record_node_key().await.unwrap();

    // Genesis on the leader: one member, the constitution, no app plugin.
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let member = cgs_core::gov::member_id(&key.verifying_key());
    let (constitution, greetings) = (plugin("constitution"), plugin("greetings"));
    let blobs: BTreeMap<_, _> =
        [constitution, greetings].iter().map(|b| (cgs_core::Blake3Hash::of(b), b.to_vec())).collect();
    let genesis = Genesis {
        members: vec![GenesisMember {
            public_key: cgs_core::gov::verifying_key_to_pem(&key.verifying_key()),
            member_data: serde_json::json!({"name": "m"}),
        }],
        constitution: cgs_core::Blake3Hash::of(constitution).to_hex(),
        plugins: vec![],
        insecure_virtual_attestation: false,
    };
    l.gov.create_service(&genesis, &blobs).await.unwrap();
    let digest = l.gov.state_digest().unwrap();
    let ack = sign(
        &key,
        MessageType::Ack,
        now_secs(),
        None,
        serde_json::json!({"state_digest": digest}).to_string().as_bytes(),
    );
    l.gov.ack(&member, &ack).await.unwrap();
    for n in &nodes {
        assert!(n.runtime.registry().get("greetings").is_none(), "nothing is active yet");
    }

    // set_plugin, voted on the leader.
    let caller = Caller { kind: CallerKind::Member, id: member.clone(), ..Caller::anonymous() };
    l.gov.put_blob(&caller, greetings.to_vec()).await.unwrap();
    let hash = cgs_core::Blake3Hash::of(greetings).to_hex();
    let actions = serde_json::json!({"actions": [{"name": "set_plugin", "args": {"name": "greetings", "version": "0.1.0", "blake3": hash}}]});
    let proposal = sign(&key, MessageType::Proposal, now_secs(), None, actions.to_string().as_bytes());
    let created = l.gov.propose(&proposal).await.unwrap();
    let id = created.body["proposal_id"].as_str().unwrap().to_string();
    let ballot = sign(&key, MessageType::Ballot, now_secs(), Some(&id), br#"{"vote":"approve"}"#);
    let voted = l.gov.ballot(&id, &ballot).await.unwrap();
    assert_eq!(voted.body["state"], "Accepted", "{}", voted.body);
    let target = l.ledger.applied();

    // Every replica loads it from what it applied, and serves it.
    for (i, n) in nodes.iter().enumerate() {
        assert!(n.ledger.wait_applied(target, Duration::from_secs(20)).await, "replica {} did not apply", i + 1);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(p) = n.runtime.registry().get("greetings") {
                assert_eq!(p.blake3.to_hex(), hash, "replica {}", i + 1);
                break;
            }
            assert!(Instant::now() < deadline, "replica {} never loaded the plugin", i + 1);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Its own route table answers (the plugin itself: a greeting nobody wrote).
        let r = get(&n.runtime, "/greetings/nobody");
        assert!(r.as_ref().is_err_and(|e| e.contains("GreetingNotFound")), "replica {}: {r:?}", i + 1);
    }
    for n in &nodes {
        n.ledger.shutdown().await;
    }
}

/// Three ledgers in separate raft networks that reach each other only over their peer
/// listeners: mutual TLS 1.3 on loopback, each node presenting a certificate of its node key
/// and accepting only the keys it was given. A write on the leader is applied by every node; a
/// stranger's key is refused by a node, and a node whose key is not the one expected is refused
/// by the dialler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_over_mutual_tls_on_loopback() {
    use cgs_host::ledger::{PeerIdentity, PeerKeys, PeerNetwork, peer, peer_identity};
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};

    let keys = PeerKeys::default();
    let mut dirs = Vec::new();
    let mut listeners = Vec::new();
    let mut identities = Vec::new();
    for id in 1..=3u64 {
        let dir = replica_dir();
        let identity = peer_identity(dir.path()).unwrap();
        keys.insert(id, identity.public_key);
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        identities.push(identity);
        dirs.push(dir);
    }
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut ledgers = Vec::new();
    let mut members = BTreeMap::new();
    for (i, (listener, identity)) in listeners.into_iter().zip(&identities).enumerate() {
        let id = i as u64 + 1;
        // Each node its own network: nothing is shared but the keys it was given.
        let net = PeerNetwork::new(identity.clone(), keys.clone());
        let ledger = Ledger::open(dirs[i].path(), replica_config(id), "cgs/peers", net).await.unwrap();
        members.insert(id, openraft::BasicNode::new(listener.local_addr().unwrap().to_string()));
        let tls = peer::server_config(identity, &keys).unwrap();
        tokio::spawn(peer::serve(listener, tls, ledger.raft.clone(), keys.clone(), Default::default(), stop.clone()));
        ledgers.push(ledger);
    }
    ledgers[0].raft.initialize(members.clone()).await.unwrap();
    let leader = ledgers[0].wait_for_leader(Duration::from_secs(20)).await.unwrap() as usize - 1;
    ledgers[leader].record_node_key().await.unwrap();
    let target = ledgers[leader].applied();
    assert!(target > 0);
    for l in &ledgers {
        assert!(l.wait_applied(target, Duration::from_secs(20)).await, "every node applies the leader's write");
    }
    // Every node sees the same three voters and the same primary.
    for l in &ledgers {
        let (nodes, _) = l.nodes();
        assert_eq!(nodes.iter().filter(|n| n.2).count(), 3, "{nodes:?}");
        assert_eq!(nodes.iter().filter(|n| n.3).map(|n| n.0).collect::<Vec<_>>(), vec![leader as u64 + 1], "{nodes:?}");
    }
    // …and, once the checkpoint that follows it is in, all stand at the same transaction.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let at: Vec<_> = ledgers.iter().map(|l| l.last_applied()).collect();
        if at.iter().all(|t| *t == at[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "the replicas do not converge: {at:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Early appends: the leader sends what it appends to the followers while it flushes it; they
    // confirm, and openraft's replication requests then leave those entries out. Followers send
    // none. The replicas still agree on every entry.
    // (A follower still catching up refuses an early send that does not continue its log: so
    // write until a few went through.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0u32;
    loop {
        use cgs_host::store::{Store as _, Transaction, TxMeta};
        n += 1;
        let mut tx = Transaction::new(ledgers[leader].snapshot().unwrap());
        tx.put("p.t", &n.to_be_bytes(), b"early".to_vec());
        let (r, w) = tx.into_sets();
        ledgers[leader].commit(r, w, TxMeta { operation: "put".into(), ..TxMeta::default() }).await.unwrap();
        let [sent, confirmed, trimmed, answered] = ledgers[leader].stats().early_appends;
        if confirmed >= 3 && answered >= 3 {
            assert!(sent >= confirmed && trimmed >= answered, "{sent} {confirmed} {trimmed} {answered}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "early appends: {sent} sent, {confirmed} confirmed, {trimmed} entries trimmed, {answered} requests answered"
        );
    }
    let target = ledgers[leader].applied();
    for l in &ledgers {
        assert!(l.wait_applied(target, Duration::from_secs(20)).await);
    }
    for (i, l) in ledgers.iter().enumerate() {
        if i != leader {
            assert_eq!(l.stats().early_appends, [0; 4], "node {} is a follower", i + 1);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let digests: Vec<_> = ledgers.iter().map(|l| l.state_digest().unwrap()).collect();
        if digests.iter().all(|d| *d == digests[0]) {
            assert!(digests[0].0 >= target);
            break;
        }
        assert!(Instant::now() < deadline, "the replicas' states differ: {digests:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A stranger with a key of its own, dialling node 1 whose key it knows: node 1 refuses it.
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger: PeerIdentity = peer_identity(stranger_dir.path()).unwrap();
    let knows_node1 = PeerKeys::default();
    knows_node1.insert(1, identities[0].public_key);
    let vote = |candidate: u64| openraft::raft::VoteRequest::new(openraft::Vote::new(0, candidate), None);
    let opt = || RPCOption::new(Duration::from_secs(5));
    // Control: node 2, expecting node 1's key, asking for its own (stale) vote gets an answer.
    let mut control = PeerNetwork::new(identities[1].clone(), keys.clone()).new_client(1, &members[&1]).await;
    let answer = control.vote(vote(2), opt()).await;
    assert!(answer.is_ok_and(|a| !a.vote_granted), "a stale vote request is answered, not granted");
    // Node 2 speaking for node 3: refused, whatever the term.
    let why = format!("{:?}", control.vote(vote(3), opt()).await.unwrap_err());
    assert!(why.contains("node 2 may only speak for itself"), "{why}");
    let mut client = PeerNetwork::new(stranger.clone(), knows_node1).new_client(1, &members[&1]).await;
    let refused = client.vote(vote(99), opt()).await;
    let why = format!("{:?}", refused.unwrap_err());
    // TLS 1.3: the client's side of the handshake completes before the server judges its
    // certificate, so the refusal breaks the exchange (not the connect, which a wrong address
    // would: `Unreachable`).
    assert!(why.contains("NetworkError"), "node 1 refuses a peer whose key it was not given: {why}");
    // A member of the cluster dialling node 1 but expecting another key: the dialler refuses.
    let wrong = PeerKeys::default();
    wrong.insert(1, stranger.public_key);
    let mut client = PeerNetwork::new(identities[1].clone(), wrong).new_client(1, &members[&1]).await;
    let refused = client.vote(vote(2), opt()).await;
    let why = format!("{:?}", refused.unwrap_err());
    assert!(
        why.contains("did not present the node key expected"),
        "node 2 refuses node 1's listener presenting another key: {why}"
    );
    // A node removed from the keys is refused at once on its open connection, and cannot
    // resume a session (there are none) to come back.
    keys.remove(2);
    let why = format!("{:?}", control.vote(vote(2), opt()).await.unwrap_err());
    assert!(why.contains("no longer one of this service's nodes"), "{why}");
    let mut fresh = PeerNetwork::new(identities[1].clone(), {
        let k = PeerKeys::default();
        k.insert(1, identities[0].public_key);
        k
    })
    .new_client(1, &members[&1])
    .await;
    assert!(fresh.vote(vote(2), opt()).await.is_err(), "a new connection of the removed node is refused");
    keys.insert(2, identities[1].public_key);

    let _ = stop_tx.send(true);
    for l in &ledgers {
        l.shutdown().await;
    }
}

/// A leader's ledger (node 1) with its peer listener bound but not served yet, and the identity
/// of a follower (node 2) both know: what the forwarding tests start from.
struct PeerPair {
    leader_id: cgs_host::ledger::PeerIdentity,
    follower_id: cgs_host::ledger::PeerIdentity,
    keys: cgs_host::ledger::PeerKeys,
    listener: tokio::net::TcpListener,
    addr: String,
    ledger: Arc<Ledger>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl PeerPair {
    async fn new() -> Self {
        use cgs_host::ledger::{PeerKeys, PeerNetwork, peer_identity};
        let (dir1, dir2) = (replica_dir(), replica_dir());
        let (leader_id, follower_id) = (peer_identity(dir1.path()).unwrap(), peer_identity(dir2.path()).unwrap());
        let keys = PeerKeys::default();
        keys.insert(1, leader_id.public_key);
        keys.insert(2, follower_id.public_key);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let network = PeerNetwork::new(leader_id.clone(), keys.clone());
        let ledger = Ledger::open(dir1.path(), replica_config(1), "cgs/peers", network).await.unwrap();
        Self { leader_id, follower_id, keys, listener, addr, ledger, _dirs: (dir1, dir2) }
    }
}

/// Requests a node forwards to the leader travel in batches (`POST /forward/batch` on the peer
/// listener), and each answer comes back as soon as the leader has it: a request the leader is
/// still serving does not hold back the others of its batch. Every caller gets its own answer,
/// with the forwarding node's id as the leader saw it. (One thread: the requests queue before
/// the batcher runs, so they share one batch.)
#[tokio::test(flavor = "current_thread")]
async fn forwarded_requests_share_batches_and_each_answer_returns_when_ready() {
    use base64::Engine as _;
    use cgs_host::ledger::peer::{ForwardHandler, Forwarded, ForwardedAnswer, Forwarding};
    use cgs_host::ledger::{PeerNetwork, peer};

    let b64 = base64::engine::general_purpose::STANDARD;
    let PeerPair { leader_id, follower_id, keys, listener, addr, ledger, _dirs } = PeerPair::new().await;
    // The leader's side: `/slow` waits for its gate; anything else answers at once, naming who
    // forwarded what.
    let (slow_tx, slow_gate) = tokio::sync::watch::channel(false);
    // `/hold/…` waits for its own gate, counted as it arrives.
    let (hold_tx, hold_gate) = tokio::sync::watch::channel(false);
    let held_now = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let held_count = held_now.clone();
    let handler: ForwardHandler = Arc::new(move |from, req: Forwarded| {
        let (mut slow_gate, mut hold_gate, held_count) = (slow_gate.clone(), hold_gate.clone(), held_count.clone());
        Box::pin(async move {
            if req.uri == "/slow" {
                let _ = slow_gate.wait_for(|open| *open).await;
            }
            if req.uri.starts_with("/hold/") {
                held_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = hold_gate.wait_for(|open| *open).await;
            }
            let body = format!("{from} {} {} {}", req.method, req.uri, req.body);
            let body = base64::engine::general_purpose::STANDARD.encode(body);
            ForwardedAnswer { status: 200, headers: vec![("x-echo".into(), req.uri.clone())], body }
        })
    });
    let forwarding = Forwarding::default();
    forwarding.set(handler);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let tls = peer::server_config(&leader_id, &keys).unwrap();
    tokio::spawn(peer::serve(listener, tls, ledger.raft.clone(), keys.clone(), forwarding, stop));

    let net = PeerNetwork::new(follower_id.clone(), keys.clone());
    let request = |uri: String| Forwarded {
        method: "POST".into(),
        uri: uri.clone(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: b64.encode(format!("{{\"for\":\"{uri}\"}}")),
    };
    let send = |uri: String| {
        let (net, addr, req) = (net.clone(), addr.clone(), request(uri));
        tokio::spawn(async move { net.forward(1, &addr, &req).await })
    };
    // Queued together (nothing runs before the test awaits), sent as one batch.
    let slow = send("/slow".into());
    let fast: Vec<_> = (0..120).map(|i| send(format!("/fast/{i}"))).collect();
    for (i, f) in fast.into_iter().enumerate() {
        let answer = tokio::time::timeout(Duration::from_secs(30), f)
            .await
            .expect("a request answered by the leader is not held back by a slower one of its batch")
            .unwrap()
            .unwrap();
        let uri = format!("/fast/{i}");
        let body = String::from_utf8(b64.decode(&answer.body).unwrap()).unwrap();
        assert_eq!(body, format!("2 POST {uri} {}", b64.encode(format!("{{\"for\":\"{uri}\"}}"))), "its own answer");
        assert_eq!((answer.status, answer.headers), (200, vec![("x-echo".to_string(), uri)]));
    }
    assert!(!slow.is_finished(), "the slow request is still being served");
    let _ = slow_tx.send(true);
    let answer = tokio::time::timeout(Duration::from_secs(30), slow).await.unwrap().unwrap().unwrap();
    assert!(String::from_utf8(b64.decode(&answer.body).unwrap()).unwrap().starts_with("2 POST /slow "));

    // Each request is checked again when it is served: a batch that arrived while its node was
    // one of the service's, and waits for the leader's slots (the node's 256 are held), is
    // answered `503 NodeRemoved` for each request once its node is removed.
    let held: Vec<_> = (0..256).map(|i| send(format!("/hold/{i}"))).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while held_now.load(std::sync::atomic::Ordering::SeqCst) < 256 {
        assert!(std::time::Instant::now() < deadline, "the held requests reach the leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waiting = send("/fast/waiting".into());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "it waits for the node's slots");
    keys.remove(2);
    let _ = hold_tx.send(true);
    for h in held {
        let answer = tokio::time::timeout(Duration::from_secs(30), h).await.unwrap().unwrap().unwrap();
        assert_eq!(answer.status, 200, "already being served when the node was removed");
    }
    let answer = tokio::time::timeout(Duration::from_secs(30), waiting).await.unwrap().unwrap().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&b64.decode(&answer.body).unwrap()).unwrap();
    assert_eq!((answer.status, body["error"]["code"].as_str()), (503, Some("NodeRemoved")), "{body}");

    // A node the leader no longer counts among the service's is refused, for every request of
    // its batches.
    let refused = net.forward(1, &addr, &request("/fast/after-removal".into())).await;
    let why = format!("{refused:?}");
    assert!(why.contains("no longer one of this service's nodes"), "{why}");
    let _ = stop_tx.send(true);
    ledger.shutdown().await;
}

/// A leader of an older version has no `POST /forward/batch` (it answers `404`): the forwarding
/// node then sends each request alone on `POST /forward`, and every caller still gets its own
/// answer, from the leader's real `/forward` handler. The older leader is played by a proxy that
/// holds the leader's peer identity: it answers `404` to batches and passes every other RPC to
/// the real leader's peer listener over a connection of its own, as the forwarding node.
#[tokio::test]
async fn forwarding_to_a_leader_without_batches_sends_each_request_alone() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use base64::Engine as _;
    use cgs_host::ledger::peer::{ForwardHandler, Forwarded, ForwardedAnswer, Forwarding};
    use cgs_host::ledger::{PeerNetwork, peer};
    use http_body_util::BodyExt as _;

    let b64 = base64::engine::general_purpose::STANDARD;
    let PeerPair { leader_id, follower_id, keys, listener, addr: leader_addr, ledger, _dirs } = PeerPair::new().await;
    let handler: ForwardHandler = Arc::new(move |from, req: Forwarded| {
        Box::pin(async move {
            let body = base64::engine::general_purpose::STANDARD.encode(format!("{from} {} {}", req.method, req.uri));
            ForwardedAnswer { status: 201, headers: vec![("x-echo".into(), req.uri.clone())], body }
        })
    });
    let forwarding = Forwarding::default();
    forwarding.set(handler);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(peer::serve(
        listener,
        peer::server_config(&leader_id, &keys).unwrap(),
        ledger.raft.clone(),
        keys.clone(),
        forwarding,
        stop,
    ));

    // The older leader: TLS as the leader, batches refused, the rest passed on.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap().to_string();
    let (batches, singles) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let acceptor = tokio_rustls::TlsAcceptor::from(peer::server_config(&leader_id, &keys).unwrap());
    let upstream = peer::client_config(&follower_id, leader_id.public_key).unwrap();
    {
        let (batches, singles, leader_addr) = (batches.clone(), singles.clone(), leader_addr.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = proxy.accept().await.unwrap();
                let (acceptor, upstream, batches, singles, leader_addr) =
                    (acceptor.clone(), upstream.clone(), batches.clone(), singles.clone(), leader_addr.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (upstream, batches, singles, leader_addr) =
                            (upstream.clone(), batches.clone(), singles.clone(), leader_addr.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            if parts.uri.path() == "/forward/batch" {
                                batches.fetch_add(1, SeqCst);
                                let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
                                    b"no such RPC",
                                )));
                                *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                return Ok::<_, hyper::Error>(r);
                            }
                            if parts.uri.path() == "/forward" {
                                singles.fetch_add(1, SeqCst);
                            }
                            let tcp = tokio::net::TcpStream::connect(&leader_addr).await.unwrap();
                            let name = rustls::pki_types::ServerName::try_from("cgs-node").unwrap();
                            let tls = tokio_rustls::TlsConnector::from(upstream).connect(name, tcp).await.unwrap();
                            let (mut send, conn) =
                                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
                            tokio::spawn(conn);
                            let req = hyper::Request::from_parts(parts, http_body_util::Full::new(body));
                            let resp = send.send_request(req).await?;
                            let (parts, body) = resp.into_parts();
                            let body = body.collect().await?.to_bytes();
                            Ok(hyper::Response::from_parts(parts, http_body_util::Full::new(body)))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    }

    let net = PeerNetwork::new(follower_id.clone(), keys.clone());
    let sent: Vec<_> = (0..20)
        .map(|i| {
            let (net, addr) = (net.clone(), proxy_addr.clone());
            let req = Forwarded {
                method: "POST".into(),
                uri: format!("/app/{i}"),
                headers: vec![("content-type".into(), "application/json".into())],
                body: b64.encode("{}"),
            };
            tokio::spawn(async move { net.forward(1, &addr, &req).await })
        })
        .collect();
    for (i, f) in sent.into_iter().enumerate() {
        let answer = tokio::time::timeout(Duration::from_secs(30), f).await.expect("answered").unwrap().unwrap();
        let body = String::from_utf8(b64.decode(&answer.body).unwrap()).unwrap();
        assert_eq!(body, format!("2 POST /app/{i}"), "its own answer, as the leader saw it");
        assert_eq!((answer.status, answer.headers), (201, vec![("x-echo".to_string(), format!("/app/{i}"))]));
    }
    assert!(batches.load(SeqCst) >= 1, "a batch was tried first");
    assert_eq!(singles.load(SeqCst), 20, "then each request went alone");
    let _ = stop_tx.send(true);
    ledger.shutdown().await;
}
