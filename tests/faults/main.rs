//! The cluster's fault test, in its own test binary: cargo runs test binaries one after another,
//! so its three nodes, six writers and twenty leader kills do not share the machine's ~1.1 cores
//! with the other end-to-end tests (whose start-up deadlines they pushed past, once).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use cgs_e2e::{Launched, Sandbox, binaries, free_port, join_args};
use serde_json::json;

/// Propose `actions` as the first member and approve as every member until it is decided.
async fn pass(members: &[cgs_client::Member], actions: serde_json::Value) -> String {
    cgs_e2e::pass(&members.iter().collect::<Vec<_>>(), actions).await.unwrap()
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
