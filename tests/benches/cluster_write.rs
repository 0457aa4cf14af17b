//! Durable writes through a three-node CGS cluster over HTTPS, side by side with a three-member
//! etcd cluster on the same machine, in the same run.
//!
//! * CGS: `POST /app/contracts/bench/events?scope=bench` with a member's bearer token, a 40-byte
//!   JSON event; answered once the event's transaction is committed by a majority (fsynced) and
//!   applied. Connections go round-robin to the three nodes: writes sent to followers are
//!   forwarded to the leader.
//! * etcd (Debian's `etcd-server`, v3.4): `POST /v3/kv/put` on its JSON gateway with a 40-byte
//!   value; answered once committed by a majority (fsynced). Connections go round-robin to the
//!   three members (followers forward to the leader). Two etcd clusters: one as the issue names it
//!   (plain HTTP between clients and members and between members), and one configured as etcd is
//!   run in production and as CGS always runs: HTTPS for clients (TLS 1.3, the CA pinned) and
//!   mutual TLS between members (`--peer-client-cert-auth`).
//!
//! All three clusters are started up front; while one is measured, the others are stopped
//! (`SIGSTOP`), since an idle cluster still takes CPU for its timers, and continued after.
//!
//! ```text
//! cargo bench -p cgs-e2e --bench cluster_write -- [--duration SECS] [--warmup SECS] [--clients 1,256] [--systems etcd,etcd-tls,cgs] [--route all|leader]
//! ```

// A bench: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::json;

#[path = "common/load.rs"]
mod load;
use load::{Target, Window, Workload, report, run_scenario};

/// The event both systems write: 40 bytes.
const VALUE: &str = r#"{"step":"bench","rows":42,"ok":true,"x":1}"#;

struct Settings {
    window: Window,
    clients: Vec<usize>,
    /// Which of `etcd`, `etcd-tls`, `cgs` to run (all by default; one alone for profiling).
    systems: Vec<String>,
    /// Where connections go: `all` (round-robin over the members, the default) or `leader`
    /// (every connection to the member that leads: what forwarding costs, for both systems).
    route: String,
}

fn settings() -> Result<Settings> {
    let mut s = Settings {
        window: Window { warmup: Duration::from_secs(2), duration: Duration::from_secs(10) },
        clients: vec![1, 256],
        systems: ["etcd", "etcd-tls", "cgs"].map(String::from).to_vec(),
        route: "all".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--bench" || !arg.starts_with("--") {
            continue;
        }
        let (k, v) = match arg[2..].split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (arg[2..].to_string(), args.next().ok_or_else(|| anyhow!("{arg} needs a value"))?),
        };
        let secs = |v: &str| v.parse::<f64>().map(Duration::from_secs_f64).with_context(|| format!("--{k} {v}"));
        match k.as_str() {
            "duration" => s.window.duration = secs(&v)?,
            "warmup" => s.window.warmup = secs(&v)?,
            "systems" => s.systems = v.split(',').map(|x| x.trim().to_string()).collect(),
            "route" if v == "all" || v == "leader" => s.route = v,
            "clients" => {
                s.clients = v.split(',').map(|c| c.trim().parse()).collect::<Result<_, _>>().context("--clients")?
            }
            _ => bail!(
                "unknown option --{k} {v} (--duration SECS, --warmup SECS, --clients 1,256, --systems etcd,etcd-tls,cgs, \
                 --route all|leader)"
            ),
        }
    }
    Ok(s)
}

/// Three etcd members on loopback, each with its own data directory under `dir`.
struct Etcd {
    children: Vec<Child>,
    urls: Vec<String>,
    /// The CA of its certificates (TLS only).
    ca: Option<Vec<u8>>,
}

/// A CA and a certificate for 127.0.0.1 (server and client use) signed by it, as PEM files in
/// `dir`: `(ca, cert, key)`.
fn tls_files(dir: &std::path::Path) -> Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &Issuer::new(ca, &ca_key))?;
    let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&paths.0, ca_cert.pem())?;
    std::fs::write(&paths.1, cert.pem())?;
    std::fs::write(&paths.2, key.serialize_pem())?;
    Ok(paths)
}

impl Etcd {
    fn start(dir: &std::path::Path, tls: bool) -> Result<Etcd> {
        let bin = which("etcd").ok_or_else(|| {
            anyhow!("no `etcd` on PATH: `apt-get install etcd-server etcd-client` (the peer this bench compares with)")
        })?;
        let scheme = if tls { "https" } else { "http" };
        let files = if tls { Some(tls_files(&dir.join("tls"))?) } else { None };
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (cgs_e2e::free_port(), cgs_e2e::free_port())).collect();
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("e{i}={scheme}://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut children = Vec::new();
        let mut urls = Vec::new();
        for (i, (c, p)) in ports.iter().enumerate() {
            let client = format!("{scheme}://127.0.0.1:{c}");
            let peer = format!("{scheme}://127.0.0.1:{p}");
            let mut cmd = Command::new(&bin);
            cmd.args(["--name", &format!("e{i}"), "--data-dir"])
                .arg(dir.join(format!("e{i}")))
                .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &cluster, "--initial-cluster-token", "cgs-bench"])
                .args(["--initial-cluster-state", "new", "--logger", "zap", "--log-level", "error"]);
            if let Some((ca, cert, key)) = &files {
                cmd.arg("--cert-file").arg(cert).arg("--key-file").arg(key);
                cmd.arg("--peer-cert-file").arg(cert).arg("--peer-key-file").arg(key);
                cmd.arg("--peer-trusted-ca-file").arg(ca).arg("--peer-client-cert-auth");
            }
            children.push(cmd.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().context("start etcd")?);
            urls.push(client);
        }
        let ca = files.map(|(ca, _, _)| std::fs::read(ca)).transpose()?;
        Ok(Etcd { children, urls, ca })
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    fn targets(&self) -> Result<Vec<Target>> {
        self.urls.iter().map(|u| Target::new(u, self.ca.as_deref())).collect()
    }

    /// The index of the member that leads (`/v3/maintenance/status`: its `member_id` is the
    /// `leader`).
    async fn leader(&self) -> Result<usize> {
        for (i, (url, target)) in self.urls.iter().zip(self.targets()?).enumerate() {
            let mut s = target.connect().await?;
            let req = hyper::Request::post("/v3/maintenance/status")
                .header(hyper::header::HOST, url.split_once("://").map_or(url.as_str(), |(_, a)| a))
                .body(http_body_util::Full::new(Bytes::from_static(b"{}")))?;
            let r = s.send_request(req).await?;
            let body = http_body_util::BodyExt::collect(r.into_body()).await?.to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            if v["header"]["member_id"] == v["leader"] {
                return Ok(i);
            }
        }
        bail!("no etcd member says it leads")
    }

    /// Wait until a put through every member commits.
    async fn ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        for (url, target) in self.urls.iter().zip(self.targets()?) {
            loop {
                let ok = async {
                    let mut s = target.connect().await?;
                    let req = hyper::Request::post("/v3/kv/put")
                        .header(hyper::header::HOST, url.split_once("://").map_or(url.as_str(), |(_, a)| a))
                        .body(http_body_util::Full::new(Bytes::from(put_body())))?;
                    let r = s.send_request(req).await?;
                    Ok::<bool, anyhow::Error>(r.status() == 200)
                }
                .await
                .unwrap_or(false);
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("etcd at {url} did not commit a put within 60 s");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Processes stopped (`SIGSTOP`) while another system is measured, continued (`SIGCONT`) when
/// dropped. Idle, a raft cluster still ticks (heartbeats, timers): measured here, two idle etcd
/// clusters took ~3% of the machine's CPU during CGS's window, and idle CGS ~0.5% during etcd's,
/// so each system is measured with the others stopped.
struct Paused(Vec<u32>);

impl Paused {
    fn new(pids: Vec<u32>) -> Paused {
        for &p in &pids {
            signal(p, rustix::process::Signal::STOP);
        }
        Paused(pids)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for &p in &self.0 {
            signal(p, rustix::process::Signal::CONT);
        }
    }
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn runs_cgs(s: &Settings) -> bool {
    s.systems.iter().any(|x| x == "cgs")
}

/// Wait until an event write commits through every CGS node (at most 60 s).
async fn cgs_ready(nodes: &[cgs_e2e::Sandbox]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let pem = std::fs::read_to_string(nodes[0].data.join("members").join("isv.key"))?;
    for n in nodes {
        let member = cgs_client::Member::new(n.client.clone(), &pem)?;
        loop {
            let r = member.authed("POST", "/app/contracts/bench/events?scope=ready", Some(VALUE.into())).await;
            if r.is_ok_and(|r| r.ok().is_ok()) {
                break;
            }
            if Instant::now() > deadline {
                bail!("CGS node {} did not commit an event within 60 s", n.url);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(name)).find(|p| p.is_file())
}

fn put_body() -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({"key": b64.encode("bench"), "value": b64.encode(VALUE)}).to_string()
}

#[tokio::main]
async fn main() -> Result<()> {
    let s = settings()?;
    let tmp = tempfile::tempdir()?;
    eprintln!("starting a 3-member etcd cluster and a 3-node CGS cluster (builds cgs-host and the plugins first)...");
    let etcd = Etcd::start(&tmp.path().join("etcd"), false)?;
    let etcd_tls = Etcd::start(&tmp.path().join("etcd-tls"), true)?;
    let nodes = cgs_e2e::start_cluster(&tmp.path().join("cgs"), 3, &[]).await?;
    etcd.ready().await?;
    etcd_tls.ready().await?;
    let members: Vec<cgs_client::Member> =
        ["isv", "data-provider", "code-provider"].iter().map(|m| nodes[0].member(m)).collect();
    let isv = &members[0];
    let body = json!({"data": {"purpose": "cluster benchmark"}});
    isv.authed("PUT", "/app/contracts/bench", Some(body.to_string().into_bytes())).await?.ok()?;
    let v = isv.authed("GET", "/app/contracts/bench", None).await?.ok_json()?;
    let set = json!([{"name": "contracts.set_contract", "args": {"contract_id": "bench", "version": v["version"]}}]);
    let state = cgs_e2e::pass(&members.iter().collect::<Vec<_>>(), set).await?;
    if state != "Accepted" {
        bail!("the bench contract was not accepted: {state}");
    }
    let token = isv.token().await?;
    let ca = std::fs::read(&nodes[0].ca)?;
    let cgs: Vec<Target> = nodes.iter().map(|n| Target::new(&n.url, Some(&ca))).collect::<Result<_>>()?;
    let (etcd_targets, etcd_tls_targets) = (etcd.targets()?, etcd_tls.targets()?);
    // Where each scenario's connections go, given the member that leads now: the leader first
    // (one client talks to it), then the others; only the leader with `--route leader`. A
    // cluster stopped during another system's window may have elected another leader since.
    let route = |all: &[Target], leader: usize| -> Vec<Target> {
        if s.route == "leader" {
            return vec![all[leader].clone()];
        }
        let mut v = all[leader..].to_vec();
        v.extend_from_slice(&all[..leader]);
        v
    };
    let cgs_leader = || async {
        let v = isv.authed("GET", "/node/network", None).await?.ok_json()?;
        let id = v["primary_id"].as_u64().ok_or_else(|| anyhow!("no CGS node leads: {v}"))?;
        // Node ids follow the order the nodes were started in.
        Ok::<usize, anyhow::Error>(id as usize - 1)
    };

    let mut outcomes = Vec::new();
    for &clients in &s.clients {
        let put = Workload {
            name: format!("etcd 3.4 put ({} B value)", VALUE.len()),
            method: hyper::Method::POST,
            path: "/v3/kv/put".into(),
            body: Some(Bytes::from(put_body())),
            authorization: None,
        };
        let put_tls = Workload { name: format!("etcd 3.4 put, TLS ({} B value)", VALUE.len()), ..put.clone() };
        let runs = |name: &str| s.systems.iter().any(|x| x == name);
        let cgs_pids: Vec<u32> = nodes.iter().map(cgs_e2e::Sandbox::pid).collect();
        if runs("etcd") {
            let _others = Paused::new([etcd_tls.pids(), cgs_pids.clone()].concat());
            etcd.ready().await?;
            let targets = route(&etcd_targets, etcd.leader().await?);
            outcomes.push(run_scenario(&targets, put, clients, &s.window, None).await);
        }
        if runs("etcd-tls") {
            let _others = Paused::new([etcd.pids(), cgs_pids.clone()].concat());
            etcd_tls.ready().await?;
            let targets = route(&etcd_tls_targets, etcd_tls.leader().await?);
            outcomes.push(run_scenario(&targets, put_tls, clients, &s.window, None).await);
        }
        let event = Workload {
            name: format!("CGS event write ({} B event)", VALUE.len()),
            method: hyper::Method::POST,
            path: "/app/contracts/bench/events?scope=bench".into(),
            body: Some(Bytes::from(VALUE)),
            authorization: Some(format!("Bearer {token}")),
        };
        if runs("cgs") {
            let _others = Paused::new([etcd.pids(), etcd_tls.pids()].concat());
            // Continued after another system's window, the nodes may hold an election (their
            // timers ran out while stopped): wait until a write commits through every node.
            cgs_ready(&nodes).await?;
            let targets = route(&cgs, cgs_leader().await?);
            outcomes.push(run_scenario(&targets, event, clients, &s.window, None).await);
        }
    }
    report(&mut outcomes);
    if runs_cgs(&s) {
        // What each node's /metrics says of the run (all client counts together).
        println!("\nCGS nodes' /metrics after the runs (every client count together):\n");
        println!(
            "| node | role | log fsyncs | mean fsync ms | mean apply commit ms | early appends sent | confirmed | requests answered early |"
        );
        println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        let v = isv.authed("GET", "/node/network", None).await?.ok_json()?;
        let leader = v["primary_id"].as_u64().unwrap_or(0);
        let pem = std::fs::read_to_string(nodes[0].data.join("members").join("isv.key"))?;
        for (i, n) in nodes.iter().enumerate() {
            let member = cgs_client::Member::new(n.client.clone(), &pem)?;
            let text = member.authed("GET", "/metrics", None).await?;
            text.ok()?;
            let text = String::from_utf8_lossy(&text.body).into_owned();
            let get = |name: &str| -> f64 {
                text.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().parse().ok())).unwrap_or(f64::NAN)
            };
            let mean = |kind: &str| {
                1000.0 * get(&format!("cgs_ledger_commit_seconds_sum{{kind=\"{kind}\"}}"))
                    / get(&format!("cgs_ledger_commit_seconds_count{{kind=\"{kind}\"}}"))
            };
            let early = |kind: &str| get(&format!("cgs_raft_early_appends_total{{kind=\"{kind}\"}}"));
            println!(
                "| {} | {} | {} | {:.3} | {:.3} | {} | {} | {} |",
                i + 1,
                if leader == i as u64 + 1 { "leader" } else { "follower" },
                get("cgs_ledger_commit_seconds_count{kind=\"log\"}"),
                mean("log"),
                mean("apply"),
                early("sent"),
                early("confirmed"),
                early("answered"),
            );
        }
    }
    drop(nodes);
    drop(etcd);
    drop(etcd_tls);
    Ok(())
}
