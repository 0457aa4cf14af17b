//! The attested join, attacked: `POST /node/join` on a node with a peer listener, by callers
//! without the node key, with evidence for another key, replaying a victim's request, flooding
//! it; governance's node actions on nodes in the wrong state; the sealed secrets open only with
//! the encryption key the first join recorded.

use base64::Engine as _;
use cgs_host::gov::nodes::{JoinRequest, MAX_PENDING_NODES};
use hpke::{Deserializable as _, Kem as _, Serializable as _};
use serde_json::json;

use crate::http::start_with_peers;

type Kem = hpke::kem::X25519HkdfSha256;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn code(r: &cgs_client::ApiResponse) -> String {
    r.error().map(|e| e.error.code).unwrap_or_else(|| format!("<no envelope: {}>", String::from_utf8_lossy(&r.body)))
}

/// Virtual evidence for `key` (what `cgs-host join` presents without SEV-SNP).
fn evidence(key: &ed25519_dalek::SigningKey) -> serde_json::Value {
    json!({
        "kind": "virtual",
        "measurement": "11".repeat(48),
        "host_data": "00".repeat(32),
        "report_data": hex::encode(cgs_core::node_attestation::report_data_for(key.verifying_key().as_bytes())),
    })
}

fn request(key: &ed25519_dalek::SigningKey, enc: &[u8], evidence: serde_json::Value) -> JoinRequest {
    JoinRequest::signed(key, enc, "127.0.0.1:9001".into(), "127.0.0.1:9101".into(), evidence)
}

async fn post(c: &cgs_client::Client, body: &impl serde::Serialize) -> cgs_client::ApiResponse {
    c.request("POST", "/node/join", Some(serde_json::to_vec(body).unwrap()), &[]).await.unwrap()
}

async fn pass(n: &crate::http::Running, actions: serde_json::Value) -> cgs_client::ApiResponse {
    let r = n.member.propose(actions).await.unwrap();
    if r.status != 200 {
        return r;
    }
    let id = r.json().unwrap()["proposal_id"].as_str().unwrap().to_string();
    let mut last = r;
    for m in ["isv", "data-provider", "code-provider"] {
        if last.json().unwrap()["state"] != "Open" {
            break;
        }
        last = n.member(m).vote(&id, true).await.unwrap();
    }
    last
}

/// Node `id`'s raft role as `/node/network/nodes` shows it.
async fn role_of(c: &cgs_client::Client, id: u64) -> String {
    let nodes = c.get("/node/network/nodes").await.unwrap().ok_json().unwrap();
    let node = nodes["nodes"].as_array().unwrap().iter().find(|n| n["node_id"] == id).cloned();
    node.map_or_else(|| "absent".into(), |n| n["role"].as_str().unwrap_or_default().to_string())
}

/// Whether node 1's peer listener at `peer` refuses node 2's connection when it presents `key`:
/// the TLS handshake breaks (`NetworkError`), or — a key removed between the handshake and the
/// RPC — the RPC's own check of the key refuses it (403, "no longer one of this service's
/// nodes"). An accepted key reaches the next check, which refuses node 2 speaking for node 3
/// (403) before raft sees it.
async fn peer_refuses(c: &cgs_client::Client, peer: std::net::SocketAddr, key: &ed25519_dalek::SigningKey) -> bool {
    use openraft::network::{RPCOption, RaftNetwork as _, RaftNetworkFactory as _};
    let id = c.get("/node/identity").await.unwrap().ok_json().unwrap();
    let node1: [u8; 32] = B64.decode(id["public_key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let keys = cgs_host::ledger::PeerKeys::default();
    keys.insert(1, node1);
    let me = cgs_host::ledger::PeerIdentity::from_node_key(&key.to_bytes()).unwrap();
    let mut client =
        cgs_host::ledger::PeerNetwork::new(me, keys).new_client(1, &openraft::BasicNode::new(peer.to_string())).await;
    let vote = openraft::raft::VoteRequest::new(openraft::Vote::new(0, 3), None);
    let why = format!("{:?}", client.vote(vote, RPCOption::new(std::time::Duration::from_secs(5))).await.unwrap_err());
    let refused = why.contains("NetworkError") || why.contains("no longer one of this service's nodes");
    assert!(refused || why.contains("may only speak for itself"), "{why}");
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_are_checked_and_secrets_reach_only_the_joiner() {
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let n = start_with_peers(&["constitution", "contracts"], peer).await;
    let c = &n.client;
    let victim = ed25519_dalek::SigningKey::from_bytes(&rand::random());
    let (victim_sk, victim_pk) = Kem::derive_keypair(&rand::random::<[u8; 32]>());
    let (attacker_sk, attacker_pk) = Kem::derive_keypair(&rand::random::<[u8; 32]>());

    // Not JSON, unknown fields, a malformed key: 400 with what to send.
    let r = c.request("POST", "/node/join", Some(b"{".to_vec()), &[]).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (400, "InvalidJoinRequest"));
    let mut extra = serde_json::to_value(request(&victim, &victim_pk.to_bytes(), evidence(&victim))).unwrap();
    extra["admin"] = json!(true);
    assert_eq!(code(&post(c, &extra).await), "InvalidJoinRequest");
    // The victim's request with the attacker's encryption key: the signature no longer holds.
    let mut stolen = request(&victim, &victim_pk.to_bytes(), evidence(&victim));
    stolen.encryption_key = B64.encode(attacker_pk.to_bytes());
    let r = post(c, &stolen).await;
    assert_eq!((r.status, code(&r).as_str()), (401, "InvalidSignature"));
    // The attacker signs for its own key but presents the victim's evidence: report_data binds
    // the victim's key, not the attacker's.
    let attacker = ed25519_dalek::SigningKey::from_bytes(&rand::random());
    let r = post(c, &request(&attacker, &attacker_pk.to_bytes(), evidence(&victim))).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "JoinRefused"), "{}", String::from_utf8_lossy(&r.body));
    assert!(r.error().unwrap().error.message.contains("report_data"), "{}", String::from_utf8_lossy(&r.body));
    // Port 0 or 0.0.0.0 cannot be dialled.
    let unreachable = JoinRequest::signed(
        &victim,
        &victim_pk.to_bytes(),
        "127.0.0.1:9001".into(),
        "0.0.0.0:9101".into(),
        evidence(&victim),
    );
    assert_eq!(code(&post(c, &unreachable).await), "InvalidJoinRequest");

    // The victim joins: Pending, recorded (x-cgs-tx-id), no secrets.
    let first = request(&victim, &victim_pk.to_bytes(), evidence(&victim));
    let r = post(c, &first).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.header("x-cgs-tx-id").is_some());
    let v = r.json().unwrap();
    assert_eq!((v["node_id"].as_u64(), v["status"].as_str()), (Some(2), Some("Pending")), "{v}");
    assert!(v.get("sealed_secrets").is_none(), "{v}");
    // A Pending node's key is not accepted on the peer listener.
    assert!(peer_refuses(c, peer, &victim).await, "a Pending node's key is refused");
    // Asked again: the same record, nothing written.
    let r = post(c, &first).await;
    assert_eq!(r.json().unwrap()["node_id"], 2);
    assert!(r.header("x-cgs-tx-id").is_none());

    // Governance's node actions refuse nodes in the wrong state.
    let r = n.member.propose(json!([{"name": "transition_node_to_trusted", "args": {"node_id": 9}}])).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (404, "NodeNotFound"));
    let r = n.member.propose(json!([{"name": "transition_node_to_trusted", "args": {"node_id": 1}}])).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (405, "NodeNotPending"));
    let r = n.member.propose(json!([{"name": "remove_node", "args": {"node_id": 1}}])).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (405, "LastNode"), "no trusted voter would remain");
    let r = n.member.propose(json!([{"name": "remove_node", "args": {"node_id": "2"}}])).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (400, "InvalidActionArgs"));
    // Without a member key: nothing to propose with.
    let r = c.post_json("/gov/proposals", &json!({"actions": []})).await.unwrap();
    assert!(r.status == 400 || r.status == 401, "{}", r.status);

    // Trusted: the answer carries the secrets sealed to the recorded key; the attacker's replay
    // of the victim's exact request gets only that ciphertext.
    assert_eq!(
        pass(&n, json!([{"name": "transition_node_to_trusted", "args": {"node_id": 2}}])).await.json().unwrap()["state"],
        "Accepted"
    );
    let v = post(c, &first).await.json().unwrap();
    assert_eq!(v["status"], "Trusted", "{v}");
    // Trusted: its key is accepted (within the reconciler's period).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while peer_refuses(c, peer, &victim).await {
        assert!(std::time::Instant::now() < deadline, "a Trusted node's key is accepted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The leader adds it as a learner; it never answers (nothing listens at its peer address),
    // so it must stay a learner: were it made a voter, the quorum would need it, and the removal
    // below, like every other write, would wait forever.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while role_of(c, 2).await != "Learner" {
        assert!(std::time::Instant::now() < deadline, "node 2 becomes a learner");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(role_of(c, 2).await, "Learner", "a learner that never answered is not made a voter");
    let sealed = &v["sealed_secrets"];
    let enc =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(&B64.decode(sealed["enc"].as_str().unwrap()).unwrap()).unwrap();
    let ct = B64.decode(sealed["ciphertext"].as_str().unwrap()).unwrap();
    let open = |sk: &<Kem as hpke::Kem>::PrivateKey| {
        hpke::single_shot_open::<hpke::aead::ChaCha20Poly1305, hpke::kdf::HkdfSha256, Kem>(
            &hpke::OpModeR::Base,
            sk,
            &enc,
            cgs_host::cluster::SEAL_INFO,
            &ct,
            b"node 2",
        )
    };
    assert!(open(&attacker_sk).is_err(), "the attacker's key does not open the victim's secrets");
    let files: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&open(&victim_sk).unwrap()).unwrap();
    let secret = B64.decode(files["node/ledger-secret"].as_str().unwrap()).unwrap();
    assert_eq!(secret, std::fs::read(n.dir.path().join("data/node/ledger-secret")).unwrap());
    assert_eq!(files.len(), cgs_host::cluster::SHARED_FILES.len());
    // The node list shows it, and what its evidence said.
    let nodes = c.get("/node/network/nodes").await.unwrap().ok_json().unwrap();
    let two = nodes["nodes"].as_array().unwrap().iter().find(|n| n["node_id"] == 2).unwrap().clone();
    assert_eq!(
        (two["status"].as_str(), two["measurement"].as_str()),
        (Some("Trusted"), Some("11".repeat(48).as_str()))
    );

    // Retired: refused for good, with the same key (no secrets) and counted out.
    assert_eq!(
        pass(&n, json!([{"name": "remove_node", "args": {"node_id": 2}}])).await.json().unwrap()["state"],
        "Accepted"
    );
    let v = post(c, &first).await.json().unwrap();
    assert_eq!(v["status"], "Retired", "{v}");
    // Retired: refused again, once raft's configuration no longer holds it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !peer_refuses(c, peer, &victim).await {
        assert!(std::time::Instant::now() < deadline, "a Retired node's key is refused");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(v.get("sealed_secrets").is_none(), "{v}");

    // A flood of joins with fresh keys: at most MAX_PENDING_NODES wait; then 503.
    let mut refused = None;
    for _ in 0..=MAX_PENDING_NODES {
        let k = ed25519_dalek::SigningKey::from_bytes(&rand::random());
        let r = post(c, &request(&k, &victim_pk.to_bytes(), evidence(&k))).await;
        if r.status != 200 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the flood is refused");
    assert_eq!((r.status, code(&r).as_str()), (503, "TooManyPendingNodes"));

    // Re-keying follows the state, not the action's name: retiring node 2 (it held the
    // secret) re-keyed; retiring a node that never held one (Pending, node 3) does not.
    let version = |v: serde_json::Value| v["ledger_secret"]["version"].as_u64();
    let before = version(c.get("/node/network").await.unwrap().ok_json().unwrap());
    assert_eq!(before, Some(1), "removing node 2 re-keyed");
    assert_eq!(
        pass(&n, json!([{"name": "remove_node", "args": {"node_id": 3}}])).await.json().unwrap()["state"],
        "Accepted"
    );
    assert_eq!(version(c.get("/node/network").await.unwrap().ok_json().unwrap()), before, "no holder was retired");
}

/// Governance's join policy: measurements (any only with virtual evidence allowed and no list),
/// then only the listed ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_join_policy_is_governance_s() {
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let n = start_with_peers(&["constitution", "contracts"], peer).await;
    let c = &n.client;
    let (_, pk) = Kem::derive_keypair(&rand::random::<[u8; 32]>());
    assert_eq!(
        pass(&n, json!([{"name": "add_node_measurement", "args": {"measurement": "22".repeat(48)}}]))
            .await
            .json()
            .unwrap()["state"],
        "Accepted"
    );
    let k = ed25519_dalek::SigningKey::from_bytes(&rand::random());
    let r = post(c, &request(&k, &pk.to_bytes(), evidence(&k))).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "JoinRefused"));
    assert!(r.error().unwrap().error.message.contains("measurement"), "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        pass(&n, json!([{"name": "add_node_host_data", "args": {"host_data": "33".repeat(32)}}])).await.json().unwrap()
            ["state"],
        "Accepted"
    );
    let mut ev = evidence(&k);
    ev["measurement"] = json!("22".repeat(48));
    let r = post(c, &request(&k, &pk.to_bytes(), ev.clone())).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "JoinRefused"), "host_data 00… is not allowed");
    ev["host_data"] = json!("33".repeat(32));
    let r = post(c, &request(&k, &pk.to_bytes(), ev)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}
