//! A service of three `cgs-host` processes on loopback: attested joins (one refused for its
//! measurement), trust by proposal, writes through every node, a plugin installed by governance
//! served by every node, and a removed node leaving the quorum.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cgs_e2e::{Launched, Sandbox, binaries, free_port};
use serde_json::json;

/// Propose `actions` as the first member and approve as every member until it is decided.
async fn pass(members: &[cgs_client::Member], actions: serde_json::Value) -> String {
    cgs_e2e::pass(&members.iter().collect::<Vec<_>>(), actions).await.unwrap()
}

fn join_args(dir: &Path, listen: u16, peer: u16, target: &Sandbox) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["join".into(), "--dir".into(), dir.into()];
    args.extend(["--log", "warn"].map(Into::into));
    args.extend([format!("--listen=127.0.0.1:{listen}"), format!("--peer-listen=127.0.0.1:{peer}")].map(Into::into));
    args.extend(["--target".into(), target.url.clone().into(), "--service-cert".into(), target.ca.clone().into()]);
    args
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

    // Remove node 3: it leaves the quorum; what is written afterwards does not reach it.
    assert_eq!(pass(&members, json!([{"name": "remove_node", "args": {"node_id": 3}}])).await, "Accepted");
    let listed = wait_for(&n1, "node 3 retired and out of raft", |n| {
        n.iter().any(|n| n["node_id"] == 3 && n["status"] == "Retired" && n["role"] == "None")
    })
    .await;
    assert_eq!(listed.iter().filter(|n| n["role"] == "Voter").count(), 2, "{listed:?}");
    let before = n3.client.get("/node/health").await.unwrap().ok_json().unwrap();
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
    let s = n3.client.get(&format!("/node/tx/{tx}")).await.unwrap();
    assert_eq!(s.status, 404, "the removed node did not receive {tx} ({before})");
    // Removing the last nodes is refused: node 3 is already retired.
    let r = members[0].propose(json!([{"name": "remove_node", "args": {"node_id": 3}}])).await.unwrap();
    assert_eq!(r.status, 405, "{}", String::from_utf8_lossy(&r.body));
}

/// A node of the fault test: its directory, ports, and the process while it runs.
struct FaultNode {
    dir: std::path::PathBuf,
    listen: u16,
    peer: u16,
    process: Option<Sandbox>,
}

impl FaultNode {
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.listen)
    }

    /// (Re)start it: node 1 is the sandbox, the others restart with `start`.
    async fn start(&mut self, first: bool) {
        let mut args: Vec<std::ffi::OsString> = if first {
            vec!["sandbox".into(), "--plugins".into(), cgs_e2e::plugins_dir().into()]
        } else {
            vec!["start".into()]
        };
        args.extend(["--dir".into(), self.dir.clone().into(), "--log".into(), "error".into()]);
        args.extend(
            [format!("--listen=127.0.0.1:{}", self.listen), format!("--peer-listen=127.0.0.1:{}", self.peer)]
                .map(Into::into),
        );
        if first {
            args.push("--auto-trust".into());
        }
        self.process = Some(Launched::new(&args, Stdio::inherit(), &[]).unwrap().ready(&self.dir).await.unwrap());
    }
}

/// The leader as the live nodes see it.
async fn leader(nodes: &[FaultNode]) -> Option<usize> {
    for n in nodes.iter().filter(|n| n.process.is_some()) {
        if let Ok(r) = n.process.as_ref().unwrap().client.get("/node/network").await
            && let Ok(v) = r.ok_json()
            && let Some(p) = v["primary_id"].as_u64()
        {
            return Some(p as usize - 1);
        }
    }
    None
}

/// Under a steady write load from clients on every node, the leader is killed (SIGKILL) and
/// restarted again and again, and a node is paused (SIGSTOP) as if partitioned: every write a
/// client saw acknowledged (its `x-cgs-tx-id`) is committed and identical on every node, and
/// every node's files pass `cgs ledger verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_kills_lose_no_acknowledged_write() {
    let kills: usize = std::env::var("CGS_FAULT_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes: Vec<FaultNode> = (1..=3)
        .map(|i| FaultNode {
            dir: tmp.path().join(format!("n{i}")),
            listen: free_port(),
            peer: free_port(),
            process: None,
        })
        .collect();
    nodes[0].start(true).await;
    let n1 = nodes[0].process.take().unwrap();
    let key_pem = std::fs::read_to_string(nodes[0].dir.join("members").join("isv.key")).unwrap();
    let members: Vec<cgs_client::Member> =
        ["isv", "data-provider", "code-provider"].iter().map(|m| n1.member(m)).collect();
    // The sandbox's members trust joining nodes (`--auto-trust`).
    for node in &mut nodes[1..] {
        let args = join_args(&node.dir, node.listen, node.peer, &n1);
        node.process = Some(Launched::new(&args, Stdio::inherit(), &[]).unwrap().ready(&node.dir).await.unwrap());
    }
    nodes[0].process = Some(n1);
    // A contract whose events the clients write.
    let isv = &members[0];
    let body = json!({"data": {"purpose": "fault test"}});
    isv.authed("PUT", "/app/contracts/faults", Some(body.to_string().into_bytes())).await.unwrap().ok().unwrap();
    let v = isv.authed("GET", "/app/contracts/faults", None).await.unwrap().ok_json().unwrap();
    let set = json!([{"name": "contracts.set_contract", "args": {"contract_id": "faults", "version": v["version"]}}]);
    assert_eq!(pass(&members, set).await, "Accepted");
    let token = isv.token().await.unwrap();

    // The writers: two per node; on any failure a writer moves to the next node.
    let ca = std::fs::read(nodes[0].dir.join("service-cert.pem")).unwrap();
    let urls: Vec<String> = nodes.iter().map(FaultNode::url).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6usize {
        let clients: Vec<cgs_client::Client> = urls.iter().map(|u| cgs_client::Client::new(u, &ca).unwrap()).collect();
        let (stop, token) = (stop.clone(), token.clone());
        writers.push(tokio::spawn(async move {
            let mut acked: Vec<(String, String)> = Vec::new();
            let (mut at, mut seq, mut failed) = (w % 3, 0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let event = json!({"writer": w, "seq": seq}).to_string();
                let auth = format!("Bearer {token}");
                let r = clients[at]
                    .request(
                        "POST",
                        "/app/contracts/faults/events?scope=faults",
                        Some(event.clone().into_bytes()),
                        &[("authorization", &auth)],
                    )
                    .await;
                match r {
                    Ok(r) if r.status == 200 || r.status == 201 => {
                        acked.push((
                            r.header("x-cgs-tx-id").expect("an acknowledged write names its tx").to_string(),
                            event,
                        ));
                        seq += 1;
                    }
                    _ => {
                        failed += 1;
                        at = (at + 1) % 3;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (acked, failed)
        }));
    }

    // The faults.
    let started = Instant::now();
    let mut killed = 0;
    while killed < kills {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let Some(l) = leader(&nodes).await else { continue };
        let mut p = nodes[l].process.take().unwrap();
        p.kill();
        drop(p);
        killed += 1;
        // A new leader among the others, then the killed node back (it catches up from the log).
        let deadline = Instant::now() + Duration::from_secs(60);
        while leader(&nodes).await.is_none_or(|n| n == l) {
            assert!(Instant::now() < deadline, "no new leader within 60 s of kill {killed}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        nodes[l].start(l == 0).await;
        if killed == kills / 2 {
            // A partition: a follower stops answering for 8 s, then comes back.
            let now = leader(&nodes).await.unwrap_or(l);
            let f = (0..3).find(|i| *i != now).unwrap_or(0);
            let pid = nodes[f].process.as_ref().unwrap().pid().to_string();
            std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap();
            tokio::time::sleep(Duration::from_secs(8)).await;
            std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap();
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    let mut failed = 0;
    for w in writers {
        let (a, f) = w.await.unwrap();
        acked.extend(a);
        failed += f;
    }
    let elapsed = started.elapsed();
    assert!(acked.len() > 100, "the load went on through the faults: {} writes", acked.len());

    // Every acknowledged write is committed, and the same entry, on every node.
    for n in &nodes {
        let c = &n.process.as_ref().unwrap().client;
        let deadline = Instant::now() + Duration::from_secs(60);
        let last = acked.iter().map(|(tx, _)| tx.split('.').nth(1).unwrap().parse::<u64>().unwrap()).max().unwrap();
        while c.get("/node/health").await.unwrap().ok_json().unwrap()["last_tx"]
            .as_str()
            .is_none_or(|s| s.split('.').nth(1).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) < last)
        {
            assert!(Instant::now() < deadline, "{} did not catch up", n.url());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let members_on: Vec<cgs_client::Member> = nodes
        .iter()
        .map(|n| cgs_client::Member::new(n.process.as_ref().unwrap().client.clone(), &key_pem).unwrap())
        .collect();
    let mut lost = 0;
    for (tx, event) in &acked {
        let mut entries = Vec::new();
        for m in &members_on {
            let s = m.client.get(&format!("/node/tx/{tx}")).await.unwrap();
            if s.status != 200 || s.json().unwrap()["status"] != "Committed" {
                lost += 1;
                eprintln!("LOST {tx} ({event}) on {}: {}", m.client.url(), String::from_utf8_lossy(&s.body));
                continue;
            }
            entries.push(m.authed("GET", &format!("/node/entry/{tx}"), None).await.unwrap().body);
        }
        assert!(entries.windows(2).all(|w| w[0] == w[1]), "{tx} differs between nodes");
    }
    eprintln!(
        "fault test: {killed} leader kills, 1 pause of 8 s, {} writes acknowledged, {failed} failed attempts \
         (retried elsewhere), lost {lost}, in {:.0} s",
        acked.len(),
        elapsed.as_secs_f64()
    );
    assert_eq!(lost, 0);

    // Every node's files verify (stopped first: the verifier reads a closed ledger).
    for n in &mut nodes {
        n.process.as_mut().unwrap().terminate().unwrap();
        let out = std::process::Command::new(&binaries().cli).args(["ledger", "verify"]).arg(&n.dir).output().unwrap();
        assert!(out.status.success(), "{}: {}", n.dir.display(), String::from_utf8_lossy(&out.stderr));
    }
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
