//! A service of three `cgs-host` processes on loopback: attested joins (one refused for its
//! measurement), trust by proposal, writes through every node, a plugin installed by governance
//! served by every node, and a removed node leaving the quorum.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cgs_e2e::{Launched, Sandbox, binaries, free_port, join_args};
use serde_json::json;

/// Propose `actions` as the first member and approve as every member until it is decided.
async fn pass(members: &[cgs_client::Member], actions: serde_json::Value) -> String {
    cgs_e2e::pass(&members.iter().collect::<Vec<_>>(), actions).await.unwrap()
}

/// The node list as node 1 sees it.
async fn nodes(sb: &Sandbox) -> Vec<serde_json::Value> {
    let v = sb.client.get("/node/network/nodes").await.unwrap().ok_json().unwrap();
    v["nodes"].as_array().unwrap().clone()
}

async fn wait_for<F: Fn(&[serde_json::Value]) -> bool>(sb: &Sandbox, what: &str, ok: F) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = nodes(sb).await;
        if ok(&n) {
            return n;
        }
        assert!(Instant::now() < deadline, "{what} within 60 s: {n:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Launch a joining node, trust it once it is Pending, and wait until it serves.
async fn join(n1: &Sandbox, members: &[cgs_client::Member], dir: &Path, id: u64) -> Sandbox {
    let peer = free_port();
    let launched = Launched::new(&join_args(dir, 0, peer, n1), Stdio::inherit(), &[]).unwrap();
    let listed = wait_for(n1, "the new node is recorded Pending", |n| n.iter().any(|n| n["node_id"] == id)).await;
    let me = listed.iter().find(|n| n["node_id"] == id).unwrap();
    assert_eq!((me["status"].as_str(), me["role"].as_str()), (Some("Pending"), Some("None")), "{me}");
    assert_eq!(me["evidence_kind"], "virtual", "{me}");
    assert_eq!(me["peer_address"], format!("127.0.0.1:{peer}"), "{me}");
    // Pending: not part of raft, and its peer key is not accepted yet.
    assert_eq!(
        pass(members, json!([{"name": "transition_node_to_trusted", "args": {"node_id": id}}])).await,
        "Accepted"
    );
    let node = launched.ready(dir).await.unwrap();
    assert_eq!(
        std::fs::read(dir.join("service-cert.pem")).unwrap(),
        std::fs::read(&n1.ca).unwrap(),
        "one service certificate for the whole service"
    );
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_join_replicate_and_remove_a_node() {
    let tmp = tempfile::tempdir().unwrap();
    let p1 = free_port();
    let n1 = Sandbox::start_in(&tmp.path().join("n1"), &["--peer-listen", &format!("127.0.0.1:{p1}")]).await.unwrap();
    let members: Vec<cgs_client::Member> =
        ["isv", "data-provider", "code-provider"].iter().map(|m| n1.member(m)).collect();

    // Governance allows one measurement that is not this build's: the join is refused, clearly.
    let other = "ab".repeat(48);
    assert_eq!(
        pass(&members, json!([{"name": "add_node_measurement", "args": {"measurement": other}}])).await,
        "Accepted"
    );
    let refused_dir = tmp.path().join("refused");
    // The service's answer, as a joining node's operator sees it.
    let out = std::process::Command::new(&binaries().host)
        .args(join_args(&refused_dir, 0, free_port(), &n1))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("JoinRefused") && err.contains("measurement"), "{err}");
    assert_eq!(nodes(&n1).await.len(), 1, "a refused node is not recorded");
    // This build's measurement (virtual evidence: SHA-384 of the cgs-host executable).
    let own = {
        use sha2::Digest;
        hex::encode(sha2::Sha384::digest(std::fs::read(&binaries().host).unwrap()))
    };
    assert_eq!(
        pass(&members, json!([{"name": "add_node_measurement", "args": {"measurement": own}}])).await,
        "Accepted"
    );

    let n2 = join(&n1, &members, &tmp.path().join("n2"), 2).await;
    let n3 = join(&n1, &members, &tmp.path().join("n3"), 3).await;
    let listed = wait_for(&n1, "three voters", |n| n.iter().filter(|n| n["role"] == "Voter").count() == 3).await;
    assert_eq!(listed.iter().filter(|n| n["primary"] == true).count(), 1, "{listed:?}");
    assert!(listed.iter().all(|n| n["status"] == "Trusted"), "{listed:?}");

    // A follower checks a blob upload's member before reading (or forwarding) its 32 MiB.
    let r = n2.client.request("PUT", "/gov/blobs", Some(vec![0u8; 4 << 20]), &[]).await.unwrap();
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    // Writes through every node (followers forward them to the leader); each read on every node.
    let all = [&n1, &n2, &n3];
    let mut proposals = Vec::new();
    for (i, node) in all.iter().enumerate() {
        let isv = cgs_client::Member::new(
            node.client.clone(),
            &std::fs::read_to_string(n1.data.join("members").join("isv.key")).unwrap(),
        )
        .unwrap();
        let r = isv
            .propose(
                json!([{"name": "set_action_threshold", "args": {"action": "remove_jwt_issuer", "required": i + 1}}]),
            )
            .await
            .unwrap();
        assert!(r.header("x-cgs-tx-id").is_some(), "a write through node {} names its transaction", i + 1);
        proposals.push(r.ok_json().unwrap()["proposal_id"].as_str().unwrap().to_string());
    }
    for node in all {
        let isv = cgs_client::Member::new(
            node.client.clone(),
            &std::fs::read_to_string(n1.data.join("members").join("isv.key")).unwrap(),
        )
        .unwrap();
        for id in &proposals {
            let r = isv.authed("GET", &format!("/gov/proposals/{id}"), None).await.unwrap();
            assert_eq!(r.status, 200, "proposal {id} read on {}", node.url);
        }
    }

    // A plugin governance installs is served by every node.
    let out = tmp.path().join("built");
    cgs_build::build(&cgs_build::BuildRequest {
        workspace: cgs_e2e::workspace(),
        selection: cgs_build::Selection::Named(vec!["snoop".into()]),
        out_dir: Some(out.clone()),
        quiet: true,
    })
    .unwrap();
    let bytes = std::fs::read(out.join("snoop.wasm")).unwrap();
    // Uploaded through a follower.
    let isv2 = cgs_client::Member::new(
        n2.client.clone(),
        &std::fs::read_to_string(n1.data.join("members").join("isv.key")).unwrap(),
    )
    .unwrap();
    let blob = isv2.authed("PUT", "/gov/blobs", Some(bytes)).await.unwrap().ok_json().unwrap();
    let set = json!([{"name": "set_plugin", "args": {"name": "snoop", "version": "0.1.0", "blake3": blob["blake3"]}}]);
    assert_eq!(pass(&members, set).await, "Accepted");
    for node in all {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = node.client.get("/app/snoop/gov/members").await.unwrap();
            if r.status != 404 {
                break;
            }
            assert!(Instant::now() < deadline, "snoop is not served by {} within 60 s", node.url);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The leader sent what it appended to the followers while it flushed it ("early append"),
    // they confirmed it, and replication requests were answered by those confirmations.
    let primary = members[0].authed("GET", "/node/network", None).await.unwrap().ok_json().unwrap()["primary_id"]
        .as_u64()
        .unwrap();
    for (i, node) in all.iter().enumerate() {
        let m = cgs_client::Member::new(
            node.client.clone(),
            &std::fs::read_to_string(n1.data.join("members").join("isv.key")).unwrap(),
        )
        .unwrap();
        let r = m.authed("GET", "/metrics", None).await.unwrap();
        let text = String::from_utf8_lossy(&r.body).into_owned();
        let count = |kind: &str| -> u64 {
            let name = format!("cgs_raft_early_appends_total{{kind=\"{kind}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(name.as_str())).and_then(|v| v.parse().ok()).unwrap()
        };
        if i as u64 + 1 == primary {
            assert!(count("confirmed") > 0 && count("answered") > 0, "{text}");
        }
    }

    // What node 3 holds and keeps after its removal: version 0 of the ledger secret and the
    // token key. A member token it mints is accepted while it is trusted.
    let n3_dir = tmp.path().join("n3");
    let origin =
        n1.client.get("/node/identity").await.unwrap().ok_json().unwrap()["origin"].as_str().unwrap().to_string();
    let forged = mint_member_token(&n3_dir, &origin, &members[0].id());
    let r =
        n1.client.request("GET", "/gov/members", None, &[("authorization", format!("Bearer {forged}").as_str())]).await;
    assert_eq!(r.unwrap().status, 200, "a token of the service's key is accepted (the forgery works before)");

    // Remove node 3: it leaves the quorum, the ledger is re-keyed, and node 3 stops.
    let mut n3 = n3;
    assert_eq!(pass(&members, json!([{"name": "remove_node", "args": {"node_id": 3}}])).await, "Accepted");
    let listed = wait_for(&n1, "node 3 retired and out of raft", |n| {
        n.iter().any(|n| n["node_id"] == 3 && n["status"] == "Retired" && n["role"] == "None")
    })
    .await;
    assert_eq!(listed.iter().filter(|n| n["role"] == "Voter").count(), 2, "{listed:?}");
    let r = members[0]
        .propose(json!([{"name": "set_action_threshold", "args": {"action": "remove_user_identity", "required": 2}}]))
        .await
        .unwrap();
    let tx = r.header("x-cgs-tx-id").unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for node in [&n1, &n2] {
        let s = node.client.get(&format!("/node/tx/{tx}")).await.unwrap().ok_json().unwrap();
        assert_eq!(s["status"], "Committed", "{tx} on {}", node.url);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = n3.exited() {
            break s;
        }
        assert!(Instant::now() < deadline, "the removed node still runs 30 s after its removal");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "a removed node stops with an error status: {status}");
    // Started again, it refuses at once, saying why.
    let out =
        std::process::Command::new(&binaries().host).args(join_args(&n3_dir, 0, free_port(), &n1)).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("node 3 was removed from this service"), "{err}");
    // The token key moved with the re-key: node 3's forgery is refused, the members' clients
    // log in again by themselves.
    let r =
        n1.client.request("GET", "/gov/members", None, &[("authorization", format!("Bearer {forged}").as_str())]).await;
    let r = r.unwrap();
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(members[0].authed("GET", "/gov/members", None).await.unwrap().status, 200);
    // Removing node 3 again is refused: it is already retired.
    let r = members[0].propose(json!([{"name": "remove_node", "args": {"node_id": 3}}])).await.unwrap();
    assert_eq!(r.status, 405, "{}", String::from_utf8_lossy(&r.body));
    // A proposal later, members re-key at will.
    assert_eq!(pass(&members, json!([{"name": "trigger_ledger_rekey", "args": {}}])).await, "Accepted");
    let r = members[0]
        .propose(json!([{"name": "set_action_threshold", "args": {"action": "remove_user_identity", "required": 1}}]))
        .await
        .unwrap();
    let latest = r.ok_json().unwrap()["proposal_id"].as_str().unwrap().to_string();
    // Proposals are private: reading one written with version 2 needs version 2. A node trusted
    // after both re-keys is given both; a restarted node opens them again from its ledger.
    let n4 = join(&n1, &members, &tmp.path().join("n4"), 4).await;
    let peer2 = nodes(&n1).await.into_iter().find(|n| n["node_id"] == 2).unwrap()["peer_address"].clone();
    let peer2: u16 = peer2.as_str().unwrap().rsplit_once(':').unwrap().1.parse().unwrap();
    let mut n2 = n2;
    n2.terminate().unwrap();
    let n2_dir = tmp.path().join("n2");
    let n2 =
        Launched::new(&join_args(&n2_dir, 0, peer2, &n1), Stdio::inherit(), &[]).unwrap().ready(&n2_dir).await.unwrap();
    let mut signed_by_another = false;
    for node in [&n1, &n2, &n4] {
        let isv = cgs_client::Member::new(
            node.client.clone(),
            &std::fs::read_to_string(n1.data.join("members").join("isv.key")).unwrap(),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let r = loop {
            let r = isv.authed("GET", &format!("/gov/proposals/{latest}"), None).await.unwrap();
            if r.status != 404 || Instant::now() > deadline {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(r.status, 200, "{} reads a version-2 value: {}", node.url, String::from_utf8_lossy(&r.body));
        assert_eq!(r.ok_json().unwrap()["actions"][0]["name"], "set_action_threshold");
        let net = node.client.get("/node/network").await.unwrap().ok_json().unwrap();
        assert_eq!(net["ledger_secret"], json!({"version": 2, "current": true}), "{} {net}", node.url);
        // A member's CLI keeps the service's checkpoint whichever node answers: signed by the node
        // that leads (a follower shows its leader's signature), each extending the one kept from
        // the node asked before. (A follower a few entries behind is given time by the CLI; one
        // that just restarted is waited for here, so that the test does not hang on CI's load.)
        let kept_path = cgs_client::checkpoints::kept_path(
            &tmp.path().join("cli-state"),
            &std::fs::read_to_string(&n1.ca).unwrap(),
        )
        .unwrap();
        if let Some((_, kept)) = cgs_client::checkpoints::load(&kept_path).unwrap() {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let r = node.client.get("/node/checkpoint").await.unwrap();
                let size = (r.status == 200)
                    .then(|| cgs_client::recovery::held_checkpoint(&String::from_utf8_lossy(&r.body)).ok())
                    .flatten()
                    .map_or(0, |c| c.size);
                if size >= kept.size {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not reach the kept checkpoint ({}) in 60 s",
                    node.url,
                    kept.size
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let out = std::process::Command::new(&binaries().cli)
            .env("CGS_URL", &node.url)
            .env("CGS_CA", &n1.ca)
            .env("CGS_STATE_DIR", tmp.path().join("cli-state"))
            .args(["ledger", "checkpoint"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", node.url, String::from_utf8_lossy(&out.stderr));
        let note = String::from_utf8(out.stdout).unwrap();
        let listed = nodes(node).await;
        let key_of = |n: &serde_json::Value| {
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD.decode(n["public_key"].as_str().unwrap()).unwrap();
            let origin = cgs_client::recovery::held_checkpoint(&note).unwrap().origin;
            cgs_core::note::VerifierKey::new(&origin, &raw.try_into().unwrap()).unwrap()
        };
        let signer: Vec<u64> = listed
            .iter()
            .filter(|n| cgs_core::note::verify_checkpoint(&note, &[key_of(n)]).is_ok())
            .map(|n| n["node_id"].as_u64().unwrap())
            .collect();
        assert_eq!(signer.len(), 1, "one node signed the checkpoint {} showed: {signer:?}", node.url);
        assert!(
            listed.iter().any(|n| n["node_id"] == signer[0] && n["status"] == "Trusted"),
            "a trusted node signed it: {listed:?}"
        );
        let answering = node.client.get("/node/network").await.unwrap().ok_json().unwrap()["node_id"].as_u64().unwrap();
        signed_by_another |= signer[0] != answering;
    }
    assert!(signed_by_another, "some node showed a checkpoint its leader signed, not its own");

    // The operator's attack: node 1's ledger file with node 3's secrets. What was written before
    // the removal opens; nothing written after does.
    drop((n2, n4));
    let mut n1 = n1;
    n1.terminate().unwrap();
    let (before, after) = private_values_opened_with(&n1.data, &n3_dir.join("node").join("ledger-secret"));
    assert!(before.0 > 0 && before.0 == before.1, "node 3 opens what was written before: {before:?}");
    assert!(after.0 > 0 && after.1 == 0, "node 3 opens nothing written after its removal: {after:?}");
    assert!(after.2.contains(&1) && after.2.contains(&2), "versions 1 (remove_node) and 2 (rekey): {:?}", after.2);
}

/// Values found, values opened, secret versions seen.
type Tally = (usize, usize, Vec<u32>);

/// A node started with `--keys-in-memory` (what every node does under SEV-SNP) writes no key or
/// secret to its data directory; killed and started again, it joins as a new node, is trusted,
/// receives the ledger again (the one left on its untrusted disk is discarded) and serves; members
/// remove its old id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_keys_in_memory_rejoins_as_a_new_node_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let p1 = format!("--peer-listen=127.0.0.1:{}", free_port());
    let n1 = Sandbox::start_in(&tmp.path().join("n1"), &[&p1, "--auto-trust"]).await.unwrap();
    let members: Vec<cgs_client::Member> =
        ["isv", "data-provider", "code-provider"].iter().map(|m| n1.member(m)).collect();
    let dir = tmp.path().join("n2");
    let mut args = join_args(&dir, 0, free_port(), &n1);
    args.push("--keys-in-memory".into());
    let n2 = Launched::new(&args, Stdio::inherit(), &[]).unwrap().ready(&dir).await.unwrap();
    wait_for(&n1, "node 2 a voter", |n| n.iter().any(|n| n["node_id"] == 2 && n["role"] == "Voter")).await;
    // A third node (keys in files), so that two of three voters remain while node 2 is down.
    let n3_dir = tmp.path().join("n3");
    let _n3 = Launched::new(&join_args(&n3_dir, 0, free_port(), &n1), Stdio::inherit(), &[])
        .unwrap()
        .ready(&n3_dir)
        .await
        .unwrap();
    wait_for(&n1, "node 3 a voter", |n| n.iter().any(|n| n["node_id"] == 3 && n["role"] == "Voter")).await;
    // Nothing secret on disk: the node key, the join key, the ledger secret, the service key and
    // the token key live in the process only.
    let on_disk = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir.join("node"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    };
    assert_eq!(on_disk(&dir), vec!["node-id".to_string()], "only the node id is written");
    // No compiled-plugin cache either: its authentication key would sit on the untrusted disk.
    assert!(!dir.join("cache").exists(), "no plugin cache with keys in memory");
    let isv2 = cgs_client::Member::new(
        n2.client.clone(),
        &std::fs::read_to_string(n1.data.join("members").join("isv.key")).unwrap(),
    )
    .unwrap();
    let r = isv2
        .propose(json!([{"name": "set_action_threshold", "args": {"action": "remove_jwt_issuer", "required": 2}}]))
        .await
        .unwrap();
    let before = r.ok_json().unwrap()["proposal_id"].as_str().unwrap().to_string();

    // Killed, its keys are gone. Started again the same way, it joins as node 4.
    let mut n2 = n2;
    n2.kill();
    let n2 = Launched::new(&args, Stdio::inherit(), &[]).unwrap().ready(&dir).await.unwrap();
    let listed = wait_for(&n1, "node 4 a voter", |n| n.iter().any(|n| n["node_id"] == 4 && n["role"] == "Voter")).await;
    let old = listed.iter().find(|n| n["node_id"] == 2).unwrap();
    let new = listed.iter().find(|n| n["node_id"] == 4).unwrap();
    assert_ne!(old["public_key"], new["public_key"], "a new node key: {listed:?}");
    assert_eq!(on_disk(&dir), vec!["node-id".to_string()]);
    assert!(!dir.join("cache").exists(), "no plugin cache with keys in memory");
    assert_eq!(std::fs::read_to_string(dir.join("node").join("node-id")).unwrap(), "4");
    // It serves what was written before its restart (private: it holds the secrets again) and
    // takes writes; members retire the old id.
    let isv2 = cgs_client::Member::new(
        n2.client.clone(),
        &std::fs::read_to_string(n1.data.join("members").join("isv.key")).unwrap(),
    )
    .unwrap();
    let r = isv2.authed("GET", &format!("/gov/proposals/{before}"), None).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(pass(&members, json!([{"name": "remove_node", "args": {"node_id": 2}}])).await, "Accepted");
    wait_for(&n1, "node 2 out of raft", |n| n.iter().any(|n| n["node_id"] == 2 && n["role"] == "None")).await;
    let r = isv2
        .propose(json!([{"name": "set_action_threshold", "args": {"action": "remove_jwt_issuer", "required": 1}}]))
        .await
        .unwrap();
    assert!(r.header("x-cgs-tx-id").is_some(), "{}", String::from_utf8_lossy(&r.body));
    // A founding-style restart of such a directory is refused, saying what to do.
    drop(n2);
    let err = cgs_e2e::start_refused(&dir);
    assert!(err.contains("cgs-host join --dir"), "{err}");
}

/// A member token for `member` signed with the token key in `dir` (what a node holds).
fn mint_member_token(dir: &Path, origin: &str, member: &str) -> String {
    use base64::Engine as _;
    use ed25519_dalek::Signer as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let seed: [u8; 32] = std::fs::read(dir.join("node").join("token-signing.key")).unwrap().try_into().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = json!({"alg": "EdDSA", "typ": "JWT"});
    let claims = json!({"sub": member, "aud": "cgs:member", "iat": now, "exp": now + 3600, "iss": origin});
    let input = format!("{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()));
    format!("{input}.{}", b64.encode(key.sign(input.as_bytes()).to_bytes()))
}

/// Every private value (puts) and signed message in the ledger file of `data`, tried with the
/// version-0 secret in `secret_file`: `(values, opened, versions seen)` for those written with
/// version 0 and for those written with later versions.
fn private_values_opened_with(data: &Path, secret_file: &Path) -> (Tally, Tally) {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let secret: [u8; 32] = std::fs::read(secret_file).unwrap().try_into().unwrap();
    let cipher = aes_gcm::Aes256Gcm::new(&secret.into());
    let open = |aad: &[u8], stored: &[u8]| -> bool {
        // As version 0 writes (binding ‖ nonce ‖ ct); a later version's value is tried both with
        // and without its version prefix (binding ‖ version ‖ nonce ‖ ct).
        let attempts: Vec<(usize, Vec<u8>)> = if stored[0] & 0x10 == 0 {
            vec![(1, aad.to_vec())]
        } else {
            let mut prefixed = vec![b'v'];
            prefixed.extend_from_slice(&stored[1..5]);
            prefixed.push(stored[0] & !0x10);
            prefixed.extend_from_slice(aad);
            vec![(5, prefixed), (5, aad.to_vec())]
        };
        attempts.iter().any(|(at, aad)| {
            let (nonce, ct) = stored[*at..].split_at(12);
            cipher.decrypt(aes_gcm::Nonce::from_slice(nonce), Payload { msg: ct, aad }).is_ok()
        })
    };
    let db = redb::Database::open(data.join(cgs_ledger_format::store_format::FILE_NAME)).unwrap();
    let rtx = redb::ReadableDatabase::begin_read(&db).unwrap();
    let ledger = rtx.open_table(cgs_ledger_format::store_format::LEDGER).unwrap();
    let (mut v0, mut later) = ((0, 0, vec![0]), (0, 0, Vec::new()));
    for item in redb::ReadableTable::iter(&ledger).unwrap() {
        let (_, v) = item.unwrap();
        let cgs_core::entry::Payload::Transaction(t) = cgs_core::entry::Entry::decode(v.value()).unwrap().payload
        else {
            continue;
        };
        let mut values: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if !t.envelope.is_empty() {
            let mut aad = b"cgs.envelope\0".to_vec();
            aad.extend_from_slice(&t.request_digest);
            values.push((aad, t.envelope.clone()));
        }
        for w in &t.writes {
            let Some(value) = &w.value else { continue };
            if w.append || !cgs_core::entry::is_private_table(&w.table) {
                continue;
            }
            let mut aad = w.table.as_bytes().to_vec();
            aad.push(0);
            aad.extend_from_slice(&w.key);
            values.push((aad, value.clone()));
        }
        for (aad, stored) in values {
            let opened = open(&aad, &stored);
            let tally = if stored[0] & 0x10 == 0 { &mut v0 } else { &mut later };
            tally.0 += 1;
            tally.1 += usize::from(opened);
            if stored[0] & 0x10 != 0 {
                let version = u32::from_be_bytes(stored[1..5].try_into().unwrap());
                if !tally.2.contains(&version) {
                    tally.2.push(version);
                }
            }
        }
    }
    (v0, later)
}

/// `cgs-host cluster --nodes 2`: a development cluster of separate processes, one command; it
/// prints the sandbox's next steps and every node, both nodes vote, and Ctrl-C (SIGTERM) stops
/// them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_command_runs_a_development_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    // Two free ports a hundred apart for each node (client, peer).
    let base = loop {
        let p = free_port();
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if p < 60000 && free(p + 1) && free(p + 100) && free(p + 101) {
            break p;
        }
    };
    let mut args: Vec<std::ffi::OsString> = vec!["cluster".into(), "--nodes".into(), "2".into(), "--dir".into()];
    args.push(tmp.path().join("c").into());
    args.extend(["--base-port".into(), base.to_string().into(), "--plugins".into(), cgs_e2e::plugins_dir().into()]);
    let launched = Launched::new(&args, Stdio::inherit(), &[]).unwrap();
    // The sandbox's banner comes first: its URL is node 1's.
    let mut n1 = launched.ready(&tmp.path().join("c").join("n1")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let printed = loop {
        let p = n1.printed().join("\n");
        if p.contains("Stop with Ctrl-C") && p.contains("CGS cluster: 2 nodes") {
            break p;
        }
        assert!(Instant::now() < deadline, "the cluster's summary within 120 s: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(printed.contains(&format!("node 2: https://127.0.0.1:{}", base + 1)), "{printed}");
    assert!(printed.contains("Next steps:") && printed.contains("members (keys under"), "{printed}");
    let listed = wait_for(&n1, "two voters", |n| n.iter().filter(|n| n["role"] == "Voter").count() == 2).await;
    assert_eq!(listed[1]["peer_address"], format!("127.0.0.1:{}", base + 101), "{listed:?}");
    let status = n1.terminate().unwrap();
    assert!(status.success(), "{status}");
    // Both nodes stopped with it.
    for port in [base, base + 1] {
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "port {port} is free again");
    }
}
