//! The HTTPS layer in-process: real TLS 1.3, real plugins, the error envelope.

use std::net::SocketAddr;

use cgs_client::Client;
use cgs_host::node::{Creation, Node, NodeConfig, PluginSource};
use tokio::sync::watch;

use crate::support::{fast_limits, plugin};

pub(crate) struct Running {
    pub client: Client,
    /// The sandbox member `isv`.
    pub member: cgs_client::Member,
    _stop: watch::Sender<bool>,
    pub dir: tempfile::TempDir,
}

impl Running {
    /// The sandbox member `name` (`isv`, `data-provider`, `code-provider`).
    pub fn member(&self, name: &str) -> cgs_client::Member {
        let key = std::fs::read_to_string(self.dir.path().join(format!("data/members/{name}.key"))).unwrap();
        cgs_client::Member::new(self.client.clone(), &key).unwrap()
    }
}

async fn start(plugins: &[&str]) -> Running {
    start_with(plugins, cgs_host::gov::GovConfig::default()).await
}

/// An in-process sandbox node serving `plugins` with governance settings `gov`.
pub(crate) async fn start_with(plugins: &[&str], gov: cgs_host::gov::GovConfig) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("plugins");
    std::fs::create_dir_all(&pdir).unwrap();
    for p in plugins {
        std::fs::write(pdir.join(format!("{p}.wasm")), plugin(p)).unwrap();
    }
    let config = NodeConfig {
        dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
        creation: Creation::Sandbox { plugins: PluginSource::Dir(pdir) },
        runtime: fast_limits(),
        ledger: cgs_host::ledger::LedgerConfig::default(),
        gov,
    };
    let node = Node::open(config).await.unwrap();
    let client = Client::new(&node.url(), node.identity.service_cert_pem.as_bytes()).unwrap();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(node.serve(rx));
    let key = std::fs::read_to_string(dir.path().join("data/members/isv.key")).unwrap();
    let member = cgs_client::Member::new(client.clone(), &key).unwrap();
    Running { client, member, _stop: tx, dir }
}

fn code(r: &cgs_client::ApiResponse) -> String {
    r.error().map(|e| e.error.code).unwrap_or_else(|| format!("<no envelope: {}>", String::from_utf8_lossy(&r.body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_envelopes_and_statuses() {
    let n = start(&["constitution", "contracts", "chaos"]).await;
    let c = &n.client;

    let health = c.get("/node/health").await.unwrap().ok_json().unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["role"], "leader");

    let plugins = c.get("/gov/plugins").await.unwrap().ok_json().unwrap();
    let names: Vec<&str> = plugins["value"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["chaos", "constitution", "contracts"]);
    let contracts = &plugins["value"][2];
    assert_eq!(contracts["blake3"], cgs_core::Blake3Hash::of(plugin("contracts")).to_hex());
    assert_eq!(contracts["version"], "0.1.0");
    assert!(
        contracts["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["path"] == "/app/contracts/{id}" && r["method"] == "PUT")
    );

    let r = c.get("/nothing/here").await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (404, "RouteNotFound"));
    let r = c.get("/app/nothing").await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (404, "RouteNotFound"));
    let r = c.request("DELETE", "/app/contracts/c1", None, &[]).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (405, "MethodNotAllowed"));
    assert_eq!(r.header("allow"), Some("GET, PUT"));
    let r = c.request("POST", "/node/health", None, &[]).await.unwrap();
    assert_eq!(r.status, 405);

    // Bad input: never a 500.
    let m = &n.member;
    let r = m.authed("PUT", "/app/contracts/c1", Some(b"{not json".to_vec())).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (400, "InvalidJson"));
    let r = m.authed("PUT", "/app/contracts/c1", Some(vec![b'x'; (1 << 20) + 1])).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (413, "PayloadTooLarge"));
    let r = c.request("PUT", "/app/contracts/c1", Some(b"{}".to_vec()), &[]).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (401, "Unauthenticated"));
    let r = c.get("/app/contracts/a%zz").await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (400, "InvalidPath"));
    let r = c.get("/app/chaos/member-only").await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (401, "Unauthenticated"));
    let r = c.request("GET", "/app/contracts", None, &[("authorization", "Bearer nope")]).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (401, "InvalidCredentials"));

    // A write reports its transaction id; the stale-version path answers 412.
    let put = |v: serde_json::Value| m.authed("PUT", "/app/contracts/c1", Some(v.to_string().into_bytes()));
    let r = put(serde_json::json!({"data": {"x": 1}})).await.unwrap();
    assert_eq!(r.status, 201);
    let tx = r.header("x-cgs-tx-id").expect("x-cgs-tx-id").to_string();
    // The plugin asked for the committed tx id in its body (`cgs-fill-tx`); the header is gone.
    assert_eq!(r.json().unwrap()["tx_id"], tx.as_str());
    assert!(r.header("cgs-fill-tx").is_none());
    let r = put(serde_json::json!({"version": "9.9", "data": {}})).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (412, "PreconditionFailed"));
    let got = m.authed("GET", "/app/contracts/c1", None).await.unwrap().ok_json().unwrap();
    assert_eq!(got["version"], tx);

    // A plugin fault is a 500 with its own code, and the node keeps serving.
    let r = c.get("/app/chaos/panic").await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (500, "PluginPanicked"));
    assert!(r.error().unwrap().error.message.contains("chaos panic requested"));
    assert_eq!(c.get("/app/chaos/ok").await.unwrap().status, 200);
}
