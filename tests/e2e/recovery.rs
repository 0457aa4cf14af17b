//! Disaster recovery with members' recovery shares: every node of a service is lost (one with
//! its keys in memory, one whose machine is gone); a new node starts from the ledger file left
//! behind, members submit a threshold of shares sealed to its attested key, and the service
//! serves again under the same certificate with its private data, on a re-keyed ledger.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cgs_core::gov::MessageType;
use cgs_e2e::{Launched, Sandbox, binaries, free_port, join_args};
use serde_json::json;

async fn pass(members: &[&cgs_client::Member], actions: serde_json::Value) -> String {
    cgs_e2e::pass(members, actions).await.unwrap()
}

fn cli_submit(url: &str, ca: &Path, key: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(&binaries().cli)
        .env("CGS_URL", url)
        .env("CGS_CA", ca)
        .env("CGS_KEY", key)
        .env("CGS_STATE_DIR", key.parent().unwrap().join("cli-state"))
        .args(["recovery", "submit"])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_nodes_are_all_lost_recovers_with_members_shares() {
    let tmp = tempfile::tempdir().unwrap();
    let p1 = format!("--peer-listen=127.0.0.1:{}", free_port());
    let n1 = Sandbox::start_in(&tmp.path().join("n1"), &[&p1, "--auto-trust"]).await.unwrap();
    let names = ["isv", "data-provider", "code-provider"];
    let members: Vec<cgs_client::Member> = names.iter().map(|m| n1.member(m)).collect();
    let all: Vec<&cgs_client::Member> = members.iter().collect();
    // The members' keys outlive the machines.
    let keys = tmp.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for m in names {
        std::fs::copy(n1.data.join("members").join(format!("{m}.key")), keys.join(format!("{m}.key"))).unwrap();
    }
    let service_cert = std::fs::read(&n1.ca).unwrap();

    // Shares exist from genesis (and were made again at each ack and proposal since, which
    // change the governance tables they are bound to): every member holds one, a majority of
    // them needed until set.
    let shown = |v: &serde_json::Value| (v["threshold"].as_u64(), v["members"].as_array().map(Vec::len));
    let r = recovery_of(&members[0]).await;
    assert_eq!(shown(&r), (Some(2), Some(3)), "{r}");
    let epoch = |r: &serde_json::Value| r["epoch"].as_u64().unwrap();
    let e0 = epoch(&r);
    assert!(e0 >= 1, "{r}");
    // Who may read them: members and users, not anyone.
    assert_eq!(n1.client.get("/gov/recovery").await.unwrap().status, 401);
    let isv_id = members[0].id();
    let mine = members[0].authed("GET", &format!("/gov/recovery/shares/{isv_id}"), None).await.unwrap();
    let mine = mine.ok_json().unwrap();
    assert_eq!(mine["epoch"].as_u64(), Some(e0));
    assert!(mine["share"]["ciphertext"].as_str().is_some_and(|c| c.len() > 40), "{mine}");
    assert_eq!(n1.client.get(&format!("/gov/recovery/shares/{isv_id}")).await.unwrap().status, 401);
    // The threshold is governed; above the members it fails, changing nothing (a simulation says
    // so beforehand).
    let sim = json!({"actions": [{"name": "set_recovery_threshold", "args": {"threshold": 4}}]});
    let r = members[0]
        .authed("POST", "/gov/proposals/simulate", Some(sim.to_string().into_bytes()))
        .await
        .unwrap()
        .ok_json()
        .unwrap();
    assert_eq!(r["apply"][0]["code"], "RecoveryThresholdTooHigh", "{r}");
    assert_eq!(pass(&all, json!([{"name": "set_recovery_threshold", "args": {"threshold": 4}}])).await, "Failed");
    assert_eq!(epoch(&recovery_of(&members[0]).await), e0, "a failed proposal changes nothing");
    assert_eq!(pass(&all, json!([{"name": "set_recovery_threshold", "args": {"threshold": 3}}])).await, "Accepted");
    let r = recovery_of(&members[0]).await;
    assert_eq!(shown(&r), (Some(3), Some(3)), "{r}");
    assert!(epoch(&r) > e0, "{r}");
    // Any change of the governance tables makes new shares, bound to the new state.
    let e1 = epoch(&r);
    assert_eq!(
        pass(&all, json!([{"name": "set_action_threshold", "args": {"action": "remove_jwt_issuer", "required": 2}}]))
            .await,
        "Accepted"
    );
    assert!(epoch(&recovery_of(&members[0]).await) > e1);
    assert_eq!(pass(&all, json!([{"name": "set_recovery_threshold", "args": {"threshold": 2}}])).await, "Accepted");

    // A second node, keys in memory (as under SEV-SNP).
    let dir = tmp.path().join("n2");
    let mut args = join_args(&dir, 0, free_port(), &n1);
    args.push("--keys-in-memory".into());
    let n2 = Launched::new(&args, Stdio::inherit(), &[]).unwrap().ready(&dir).await.unwrap();
    // A re-key: a new secret version, and new shares covering it.
    assert_eq!(pass(&all, json!([{"name": "trigger_ledger_rekey", "args": {}}])).await, "Accepted");
    let r = recovery_of(&members[0]).await;
    assert_eq!(r["versions"], json!([0, 1]), "{r}");
    // A member added holds a share at once; a member removed re-keys (its old share, with others,
    // could open only what was written before) and holds none.
    let extra = ed25519_dalek::SigningKey::from_bytes(&[11; 32]);
    let pem = cgs_core::gov::verifying_key_to_pem(&extra.verifying_key());
    let extra_id = cgs_core::gov::member_id(&extra.verifying_key());
    assert_eq!(pass(&all, json!([{"name": "set_member", "args": {"public_key": pem}}])).await, "Accepted");
    let r = recovery_of(&members[0]).await;
    assert_eq!(shown(&r), (Some(2), Some(4)), "{r}");
    assert_eq!(pass(&all, json!([{"name": "remove_member", "args": {"member_id": extra_id}}])).await, "Accepted");
    let r = recovery_of(&members[0]).await;
    assert_eq!(shown(&r), (Some(2), Some(3)), "{r}");
    assert_eq!(r["versions"], json!([0, 1, 2]), "removing a member re-keyed: {r}");
    let last_epoch = epoch(&r);
    // Private data written with version 2, through node 2.
    let isv2 =
        cgs_client::Member::new(n2.client.clone(), &std::fs::read_to_string(keys.join("isv.key")).unwrap()).unwrap();
    let r = isv2
        .propose(json!([{"name": "set_action_threshold", "args": {"action": "remove_jwt_issuer", "required": 1}}]))
        .await
        .unwrap();
    let before = r.clone().ok_json().unwrap()["proposal_id"].as_str().unwrap().to_string();
    let before_tx: cgs_core::TxId = r.header("x-cgs-tx-id").unwrap().parse().unwrap();
    let before_body = isv2.authed("GET", &format!("/gov/proposals/{before}"), None).await.unwrap();
    assert_eq!(before_body.status, 200);
    // Wait until node 2 applied it, then lose everything: node 1's machine and node 2's keys.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A member keeps the latest signed checkpoint: at a recovery, the ledger must extend it.
    let held_path = keys.join("checkpoint.txt");
    let out = std::process::Command::new(&binaries().cli)
        .env("CGS_URL", &n2.url)
        .env("CGS_CA", &n2.ca)
        .env("CGS_STATE_DIR", keys.join("cli-state"))
        .args(["ledger", "checkpoint", "--out"])
        .arg(&held_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let held_note = std::fs::read_to_string(&held_path).unwrap();
    let held_size = cgs_client::recovery::held_checkpoint(&held_note).unwrap().size;
    assert!(held_size > 0, "{held_note}");
    let (mut n1, mut n2) = (n1, n2);
    n1.kill();
    n2.kill();
    std::fs::remove_dir_all(&n1.data).unwrap();
    drop(n1);
    drop(n2);

    // `start` on that directory refuses (its keys are gone), naming recovery.
    let err = cgs_e2e::start_refused(&dir);
    assert!(err.contains("--recover"), "{err}");

    // Its file was not closed: the read-only check says what to do, and `--repair` (on a copy)
    // repairs, then verifies.
    let copy = tmp.path().join("killed-copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(dir.join("ledger.redb"), copy.join("ledger.redb")).unwrap();
    let out = std::process::Command::new(&binaries().cli).args(["ledger", "verify"]).arg(&copy).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--repair"), "{err}");
    let out = std::process::Command::new(&binaries().cli)
        .args(["--json", "ledger", "verify", "--repair"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let offline: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Recovery from the ledger file node 2 left, straight after the kill (it is repaired before
    // it is verified).
    let (launched, url, cert, client, status) = start_recovery(&dir, Stdio::inherit()).await;
    // Signed by the node key its evidence binds, whoever serves the listener's certificate.
    let node_key: [u8; 32] = {
        use base64::Engine as _;
        let k = base64::engine::general_purpose::STANDARD.decode(status["node_key"].as_str().unwrap()).unwrap();
        k.try_into().unwrap()
    };
    cgs_client::recovery::check_status_signature(&status, &node_key).unwrap();
    // What the verification found, for members to see.
    let verified = &status["verified"];
    assert!(verified["checkpoints"].as_u64().unwrap() > 0, "{status}");
    assert!(verified["signed_entries"].as_u64().unwrap() > 0, "{status}");
    // The same figures as the offline verifier's on a copy of the same file: the node shows
    // members what `cgs ledger verify` would find, not figures of its own.
    for (shown, offline_name) in [
        ("entries", "entries"),
        ("checkpoints", "checkpoints"),
        ("unsigned_tail", "unsigned_tail"),
        ("unapplied_entries", "unapplied_entries"),
        ("unapplied_digest", "unapplied_digest"),
        ("root", "root"),
    ] {
        assert_eq!(verified[shown], offline[offline_name], "{shown}: {status} against {offline}");
    }
    assert_eq!(verified["signed_entries"], offline["last_checkpoint"][0], "{status} against {offline}");
    // And what it says it applied is where the ledger ends.
    assert_eq!(status["last_applied_seqno"], verified["entries"], "{status}");
    let ca = tmp.path().join("recovery-cert.pem");
    std::fs::write(&ca, &cert).unwrap();
    assert_eq!(status["status"], "WaitingForRecoveryShares", "{status}");
    assert_eq!((status["threshold"].as_u64(), status["submitted"].as_u64()), (Some(2), Some(0)), "{status}");
    assert_eq!((status["epoch"].as_u64(), status["node_id"].as_u64()), (Some(last_epoch), Some(3)), "{status}");
    // What members compare with the transaction ids they know of: this copy has the last write.
    assert!(status["last_applied_seqno"].as_u64().unwrap() >= before_tx.seqno, "{status} {before_tx}");
    // A flood from one address holds at most 32 of the listener's connections (those past it
    // are closed at once), and members still get in.
    let addr: std::net::SocketAddr = url.trim_start_matches("https://").parse().unwrap();
    let mut flood = Vec::new();
    for _ in 0..40 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        flood.push(socket.connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut closed = 0;
    for s in &mut flood {
        use tokio::io::AsyncReadExt as _;
        let mut b = [0u8; 1];
        if matches!(tokio::time::timeout(Duration::from_millis(100), s.read(&mut b)).await, Ok(Ok(0) | Err(_))) {
            closed += 1;
        }
    }
    assert_eq!(closed, 8, "the connections past 32 from one address are closed");
    assert_eq!(client.get("/recovery").await.unwrap().status, 200, "another address is served");
    drop(flood);
    // Nothing else is served while recovering.
    let r = client.get("/gov/service").await.unwrap();
    assert_eq!((r.status, r.error().map(|e| e.error.code)), (503, Some("ServiceRecovering".into())));

    let as_member = |name: &str| {
        cgs_client::Member::new(client.clone(), &std::fs::read_to_string(keys.join(format!("{name}.key"))).unwrap())
            .unwrap()
    };
    let (isv, dp) = (as_member("isv"), as_member("data-provider"));
    let node_key = status["node_key"].as_str().unwrap().to_string();
    let code = |r: &cgs_client::ApiResponse| (r.status, r.error().map(|e| e.error.code).unwrap_or_default());
    // Attacks, each refused with its reason and nothing counted:
    // a stranger's key;
    let stranger = cgs_client::Member::from_key(client.clone(), ed25519_dalek::SigningKey::from_bytes(&[9; 32]));
    let fake = json!({"epoch": last_epoch, "node_key": node_key, "enc": "AAAA", "ciphertext": "AAAA"});
    assert_eq!(
        code(&post_share(&stranger, MessageType::RecoveryShare, fake.clone()).await),
        (401, "UnknownMember".into())
    );
    // a member's message of another type;
    assert_eq!(code(&post_share(&isv, MessageType::Ballot, fake.clone()).await), (400, "WrongMessageType".into()));
    // a share that does not open with the node's key;
    assert_eq!(code(&post_share(&isv, MessageType::RecoveryShare, fake.clone()).await), (400, "InvalidShare".into()));
    // a share of an older epoch, or sealed to another node;
    let mut old = fake.clone();
    old["epoch"] = (last_epoch - 1).into();
    assert_eq!(code(&post_share(&isv, MessageType::RecoveryShare, old).await), (409, "WrongEpoch".into()));
    let mut elsewhere = fake.clone();
    elsewhere["node_key"] = base64_of(&[7; 32]).into();
    assert_eq!(code(&post_share(&isv, MessageType::RecoveryShare, elsewhere).await), (400, "WrongNode".into()));
    // a message signed by one member posted as another's.
    let msg = isv.sign(MessageType::RecoveryShare, None, &fake);
    let r = isv.post_signed(&format!("/recovery/members/{}:recover", dp.id()), msg).await.unwrap();
    assert_eq!(code(&r), (400, "MemberIdMismatch".into()));
    assert_eq!(client.get("/recovery").await.unwrap().ok_json().unwrap()["submitted"], 0);

    // The CLI sends nothing unless the member names the measurement the node must run (any
    // SEV-SNP VM could ask otherwise), and refuses virtual evidence unless told it is a
    // development service.
    let (ok, _, err) = cli_submit(&url, &ca, &keys.join("isv.key"), &[]);
    assert!(!ok && err.contains("--measurement"), "{err}");
    let measured = status["evidence"]["measurement"].as_str().unwrap().to_string();
    let (ok, _, err) = cli_submit(&url, &ca, &keys.join("isv.key"), &["--measurement", &measured]);
    assert!(!ok && err.contains("virtual"), "{err}");
    assert_eq!(client.get("/recovery").await.unwrap().ok_json().unwrap()["submitted"], 0);
    // A member whose expected measurement the node does not report sends nothing either.
    let (ok, _, err) =
        cli_submit(&url, &ca, &keys.join("isv.key"), &["--allow-virtual", "--measurement", &"ab".repeat(48)]);
    assert!(!ok && err.contains("measurement"), "{err}");
    // A member who knows of a later transaction than this ledger holds refuses it as stale.
    let later = (before_tx.seqno + 1000).to_string();
    let (ok, _, err) = cli_submit(&url, &ca, &keys.join("isv.key"), &["--allow-virtual", "--min-seqno", &later]);
    assert!(!ok && err.contains("stale copy"), "{err}");
    // A member who pins the service certificate refuses another service's ledger.
    let (ok, _, err) =
        cli_submit(&url, &ca, &keys.join("isv.key"), &["--allow-virtual", "--service-cert", ca.to_str().unwrap()]);
    assert!(!ok && err.contains("another service"), "{err}");
    let pinned = tmp.path().join("service-cert.pem");
    std::fs::write(&pinned, &service_cert).unwrap();
    // A member who saw later shares than this ledger holds refuses it as rolled back.
    let newer = (last_epoch + 1).to_string();
    let (ok, _, err) = cli_submit(
        &url,
        &ca,
        &keys.join("isv.key"),
        &["--allow-virtual", "--min-epoch", &newer, "--service-cert", pinned.to_str().unwrap()],
    );
    assert!(!ok && err.contains("rolled-back"), "{err}");
    // A member who kept a checkpoint refuses a ledger that does not extend it: one whose tree of
    // that size has another root (a ledger rewritten from genesis), or one that ends before it.
    let with_line = |i: usize, line: &str| cgs_e2e::note_with_line(&held_note, i, line);
    let other_root = tmp.path().join("other-root.txt");
    std::fs::write(&other_root, with_line(2, &base64_of(&[7u8; 32]))).unwrap();
    let (ok, _, err) = cli_submit(
        &url,
        &ca,
        &keys.join("isv.key"),
        &["--allow-virtual", "--checkpoint", other_root.to_str().unwrap()],
    );
    assert!(!ok && err.contains("does not extend"), "{err}");
    let longer = tmp.path().join("longer.txt");
    std::fs::write(&longer, with_line(1, "99999999")).unwrap();
    let (ok, _, err) =
        cli_submit(&url, &ca, &keys.join("isv.key"), &["--allow-virtual", "--checkpoint", longer.to_str().unwrap()]);
    assert!(!ok && err.contains("fewer"), "{err}");
    // Without --checkpoint, the CLI checks the one it kept of the service (here: the one
    // `cgs ledger checkpoint` kept), altered here to another root.
    let kept =
        cgs_client::checkpoints::kept_path(&keys.join("cli-state"), &String::from_utf8_lossy(&service_cert)).unwrap();
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), held_note, "the CLI kept the checkpoint it fetched");
    std::fs::write(&kept, with_line(2, &base64_of(&[7u8; 32]))).unwrap();
    let (ok, _, err) = cli_submit(&url, &ca, &keys.join("isv.key"), &["--allow-virtual"]);
    assert!(!ok && err.contains("does not extend"), "{err}");
    std::fs::write(&kept, &held_note).unwrap();
    // The proof the CLI checks: anyone may ask; sizes outside the ledger are refused.
    let proof = client.get(&format!("/recovery/consistency?from={held_size}")).await.unwrap().ok_json().unwrap();
    assert_eq!((proof["from"].as_u64(), &proof["to"]), (Some(held_size), &status["verified"]["entries"]));
    for bad in ["", "?from=0", "?from=x", "?from=99999999"] {
        let r = client.get(&format!("/recovery/consistency{bad}")).await.unwrap();
        assert_eq!(code(&r).0, 400, "{bad}: {:?}", r.json());
    }
    assert_eq!(client.get("/recovery").await.unwrap().ok_json().unwrap()["submitted"], 0);
    let known = before_tx.seqno.to_string();
    let seen = last_epoch.to_string();
    let (ok, out, err) = cli_submit(
        &url,
        &ca,
        &keys.join("isv.key"),
        &["--allow-virtual", "--min-seqno", &known, "--min-epoch", &seen, "--service-cert", pinned.to_str().unwrap()],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("it extends the checkpoint you kept, of {held_size} entries")), "{out}");
    assert!(out.contains("1 of 2"), "{out}");
    // The same member again counts once.
    let check = cgs_client::recovery::NodeCheck { allow_virtual: true, ..Default::default() };
    let (again, _) = isv.submit_recovery_share(&check).await.unwrap();
    assert_eq!((again["submitted"].as_u64(), again["opened"].as_bool()), (Some(1), Some(false)), "{again}");
    // The second share opens the secrets.
    let (last, _) = dp.submit_recovery_share(&check).await.unwrap();
    assert_eq!(last["opened"], true, "{last}");

    let node = launched.ready(&dir).await.unwrap();
    assert_eq!(std::fs::read(dir.join("service-cert.pem")).unwrap(), service_cert, "the same service certificate");
    assert!(!dir.join("recovery").exists(), "the recovery listener's files are gone");
    // The private data written before the loss, under version 2, reads again.
    let isv =
        cgs_client::Member::new(node.client.clone(), &std::fs::read_to_string(keys.join("isv.key")).unwrap()).unwrap();
    let r = isv.authed("GET", &format!("/gov/proposals/{before}"), None).await.unwrap();
    assert_eq!((r.status, r.body.clone()), (200, before_body.body.clone()));
    // The old nodes are retired; the recovered node is the only voter; the ledger was re-keyed
    // and the shares made again.
    let listed = node.client.get("/node/network/nodes").await.unwrap().ok_json().unwrap();
    let status_of =
        |id: u64| listed["nodes"].as_array().unwrap().iter().find(|n| n["node_id"] == id).map(|n| n["status"].clone());
    assert_eq!(
        (status_of(1), status_of(2), status_of(3)),
        (Some(json!("Retired")), Some(json!("Retired")), Some(json!("Trusted"))),
        "{listed}"
    );
    let r = isv.authed("GET", "/gov/recovery", None).await.unwrap().ok_json().unwrap();
    assert!(epoch(&r) > last_epoch, "{r}");
    assert_eq!(r["versions"], json!([0, 1, 2, 3]), "{r}");
    assert_eq!(r["history"]["recovery_count"], 1, "{r}");
    assert_eq!(r["history"]["last"]["previous_nodes"], json!([1, 2]), "{r}");
    // It takes writes, written with the new version.
    let r = isv
        .propose(json!([{"name": "set_action_threshold", "args": {"action": "remove_jwt_issuer", "required": 2}}]))
        .await
        .unwrap();
    assert!(r.header("x-cgs-tx-id").is_some(), "{}", String::from_utf8_lossy(&r.body));
    // The recovered service grows again: a new node joins it and is trusted by proposal.
    let n4_dir = tmp.path().join("n4");
    let launched = Launched::new(&join_args(&n4_dir, 0, free_port(), &node), Stdio::inherit(), &[]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !node.client.get("/node/network/nodes").await.unwrap().ok_json().unwrap()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["node_id"] == 4 && n["status"] == "Pending")
    {
        assert!(Instant::now() < deadline, "node 4 did not ask to join the recovered service");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered: Vec<cgs_client::Member> = ["isv", "data-provider", "code-provider"]
        .iter()
        .map(|m| {
            cgs_client::Member::new(
                node.client.clone(),
                &std::fs::read_to_string(keys.join(format!("{m}.key"))).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let recovered: Vec<&cgs_client::Member> = recovered.iter().collect();
    assert_eq!(
        pass(&recovered, json!([{"name": "transition_node_to_trusted", "args": {"node_id": 4}}])).await,
        "Accepted"
    );
    let n4 = launched.ready(&n4_dir).await.unwrap();
    let isv4 =
        cgs_client::Member::new(n4.client.clone(), &std::fs::read_to_string(keys.join("isv.key")).unwrap()).unwrap();
    let r = isv4.authed("GET", &format!("/gov/proposals/{before}"), None).await.unwrap();
    assert_eq!((r.status, r.body.clone()), (200, before_body.body.clone()), "node 4 reads the recovered data");
    // Nothing secret on its disk.
    let on_disk: Vec<String> = std::fs::read_dir(dir.join("node"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(on_disk, vec!["node-id".to_string()]);
    // The whole history, across the recovery, verifies offline.
    let mut node = node;
    node.terminate().unwrap();
    let out = std::process::Command::new(&binaries().cli).args(["ledger", "verify"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(n4);

    // The operator edits one public row in the state of the ledger file, in a table the
    // recovery shares are not bound to: a recorded governance message now names another member
    // as its signer. `start --recover`
    // verifies the whole ledger first, and refuses the file before any member is asked for a
    // share.
    let (row, original) = {
        use cgs_ledger_format::store_format as fmt;
        let db = redb::Database::open(dir.join(fmt::FILE_NAME)).unwrap();
        let tx = db.begin_write().unwrap();
        let picked = {
            let mut state = tx.open_table(fmt::STATE).unwrap();
            let (k, v) = {
                use redb::ReadableTable as _;
                let mut rows =
                    state.iter().unwrap().map(|r| r.unwrap()).map(|(k, v)| (k.value().to_vec(), v.value().to_vec()));
                rows.find(|(k, _)| fmt::split_state_key(k).is_some_and(|(t, _)| t == "gov.envelopes"))
                    .expect("a recorded governance message in the state")
            };
            let (version, value) = fmt::decode_versioned(&v).unwrap();
            let mut record: serde_json::Value = serde_json::from_slice(value).unwrap();
            record["member_id"] = json!("0".repeat(64));
            let edited = record.to_string();
            state.insert(k.as_slice(), fmt::encode_versioned(version, edited.as_bytes()).as_slice()).unwrap();
            (k, v)
        };
        tx.commit().unwrap();
        picked
    };
    let refused = recover_refused(&dir);
    assert!(refused.contains("does not verify") && refused.contains("differs from the replay"), "{refused}");
    assert!(!dir.join("recovery").exists(), "nothing was served");
    {
        use cgs_ledger_format::store_format as fmt;
        let db = redb::Database::open(dir.join(fmt::FILE_NAME)).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(fmt::STATE).unwrap().insert(row.as_slice(), original.as_slice()).unwrap();
        tx.commit().unwrap();
    }

    // The operator edits the ledger file before recovering again, where no signature reaches:
    // past the last replicated record it appends one of its own, a transaction that adds a
    // member of its own with the `operator` role (holding no share, so the share holders are
    // unchanged) and an identity provider of its own, to sign in as a member and mint users'
    // tokens after the recovery. The file verifies (the record is not applied yet: no checkpoint
    // covers it), and the recovery commits it; but the shares are bound to the governance
    // tables: the recovery stops before it makes any share, and the directory refuses a plain
    // start.
    let op = ed25519_dalek::SigningKey::from_bytes(&[12; 32]);
    {
        use cgs_core::entry::{Payload, RaftBody, RaftRecord, Transaction, Write};
        use cgs_ledger_format::store_format as fmt;
        use redb::ReadableTable as _;
        let record = json!({
            "public_key": base64_of(op.verifying_key().as_bytes()),
            "status": "Active",
            "data": {"roles": ["operator"]},
        });
        let issuer = json!({"issuer": "https://op.example", "jwks": {"keys": []}});
        let write = |table: &str, key: &[u8], value: serde_json::Value| Write {
            table: table.into(),
            key: key.to_vec(),
            value: Some(value.to_string().into_bytes()),
            append: false,
        };
        let tx = Transaction {
            tx_time_ms: 0,
            caller: String::new(),
            operation: "forged".into(),
            request_digest: [0; 32],
            envelope: Vec::new(),
            claims_digest: [0; 32],
            reads: Vec::new(),
            table_reads: Vec::new(),
            writes: vec![
                write("gov.jwt_issuers", b"https://op.example", issuer),
                write("gov.members", cgs_core::gov::member_id(&op.verifying_key()).as_bytes(), record),
            ],
        };
        let db = redb::Database::open(dir.join(fmt::FILE_NAME)).unwrap();
        let wtx = db.begin_write().unwrap();
        {
            let mut log = wtx.open_table(fmt::RAFT_LOG).unwrap();
            let last = RaftRecord::decode(log.last().unwrap().unwrap().1.value()).unwrap();
            let forged = RaftRecord {
                term: last.term,
                index: last.index + 1,
                body: RaftBody::Batch(vec![Payload::Transaction(tx).encode()]),
            };
            log.insert(forged.index, forged.encode().as_slice()).unwrap();
        }
        wtx.commit().unwrap();
    }
    let out = std::process::Command::new(&binaries().cli).args(["ledger", "verify"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "nothing signs a record not yet applied: {}", String::from_utf8_lossy(&out.stderr));
    let log = tmp.path().join("forged-recovery.log");
    let (launched, _, _, client, status) =
        start_recovery(&dir, Stdio::from(std::fs::File::create(&log).unwrap())).await;
    // (The node may have left records of its own not applied yet, besides the forged one.)
    let unapplied = status["verified"]["unapplied_entries"].as_u64().unwrap();
    assert!(unapplied >= 1, "the forged record is shown as not applied: {status}");
    for name in ["isv", "data-provider"] {
        let m = cgs_client::Member::new(
            client.clone(),
            &std::fs::read_to_string(keys.join(format!("{name}.key"))).unwrap(),
        )
        .unwrap();
        m.submit_recovery_share(&check).await.unwrap();
    }
    let status = launched.wait_exit(Duration::from_secs(120)).expect("the recovery stops by itself");
    assert!(!status.success());
    let printed = std::fs::read_to_string(&log).unwrap();
    assert!(
        printed.contains("RecoveryStateMismatch") || printed.contains("not those the opened recovery shares"),
        "{printed}"
    );
    let err = cgs_e2e::start_refused(&dir);
    assert!(err.contains("did not finish"), "{err}");
    // The stopped attempt committed the forged record but signed nothing of what it recovered:
    // no checkpoint covers it (a signature would let the next attempt show it as signed).
    drop(redb::Database::open(dir.join(cgs_ledger_format::store_format::FILE_NAME)).unwrap()); // repaired if need be
    let report = cgs_ledger_format::verify::verify_data_dir(&dir, &[]).unwrap();
    let forged_seqno = {
        use cgs_ledger_format::store_format as fmt;
        use redb::{ReadableDatabase as _, ReadableTable as _};
        let db = redb::ReadOnlyDatabase::open(dir.join(fmt::FILE_NAME)).unwrap();
        let rtx = db.begin_read().unwrap();
        let log = rtx.open_table(fmt::LEDGER).unwrap();
        log.iter()
            .unwrap()
            .map(|r| r.unwrap())
            .find(|(_, v)| {
                matches!(cgs_core::entry::Entry::decode(v.value()).unwrap().payload,
                    cgs_core::entry::Payload::Transaction(ref t) if t.operation == "forged")
            })
            .map(|(k, _)| k.value())
            .expect("the forged record was applied")
    };
    let signed = report.last_checkpoint.map_or(0, |(size, _)| size);
    assert!(signed < forged_seqno, "entry {forged_seqno} (forged) is covered by a checkpoint of {signed}: {report:?}");
}

/// `cgs-host start --recover` on `dir`, expected to refuse at once: what it printed.
fn recover_refused(dir: &Path) -> String {
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(&binaries().host)
        .args(["start", "--recover", "--keys-in-memory", "--listen", "127.0.0.1:0", "--log", "warn"])
        .arg(format!("--peer-listen=127.0.0.1:{}", free_port()))
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err.reopen().unwrap())
        .spawn()
        .expect("run cgs-host");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "cgs-host start --recover on {} did not refuse (it waits for shares): {}",
                dir.display(),
                std::fs::read_to_string(err.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = std::fs::read_to_string(err.path()).unwrap();
    assert!(!status.success(), "cgs-host start --recover on {} did not refuse: {printed}", dir.display());
    printed
}

/// `cgs-host start --recover` on `dir` (keys in memory) with its log to `stderr`; once it serves
/// the recovery routes: the process, its URL, its listener's certificate, a client pinning it
/// and `GET /recovery`.
async fn start_recovery(
    dir: &Path,
    stderr: Stdio,
) -> (Launched, String, Vec<u8>, cgs_client::Client, serde_json::Value) {
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let args: Vec<std::ffi::OsString> = vec![
        "start".into(),
        "--dir".into(),
        dir.into(),
        format!("--listen=127.0.0.1:{port}").into(),
        format!("--peer-listen=127.0.0.1:{}", free_port()).into(),
        "--keys-in-memory".into(),
        "--recover".into(),
        "--log".into(),
        "warn".into(),
    ];
    let launched = Launched::new(&args, stderr, &[]).unwrap();
    let cert_path = dir.join("recovery").join("service-cert.pem");
    let deadline = Instant::now() + Duration::from_secs(120);
    let cert = loop {
        if let Ok(c) = std::fs::read(&cert_path)
            && !c.is_empty()
        {
            break c;
        }
        assert!(Instant::now() < deadline, "the recovering node wrote no listener certificate");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let client = cgs_client::Client::new(&url, &cert).unwrap();
    let status = loop {
        match client.get("/recovery").await {
            Ok(r) if r.status == 200 => break r.ok_json().unwrap(),
            other if Instant::now() > deadline => panic!("GET /recovery did not answer: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    (launched, url, cert, client, status)
}

async fn recovery_of(m: &cgs_client::Member) -> serde_json::Value {
    m.authed("GET", "/gov/recovery", None).await.unwrap().ok_json().unwrap()
}

async fn post_share(m: &cgs_client::Member, t: MessageType, payload: serde_json::Value) -> cgs_client::ApiResponse {
    let msg = m.sign(t, None, &payload);
    m.post_signed(&format!("/recovery/members/{}:recover", m.id()), msg).await.unwrap()
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}
