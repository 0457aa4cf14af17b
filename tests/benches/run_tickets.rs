//! Run-ticket issuance of the `analytics` plugin on a real `cgs-host sandbox` (issue 16): tickets/s
//! and latency percentiles, with a baseline taken in the same run on the same durable-write path —
//! an audit event appended by the same clean-room session.
//!
//! Each ticket request has a fresh run id, so each is a real issuance: approval, kill switches,
//! the rules re-checked on the canonical SQL, both datasets' consent and budgets, the deduction,
//! the ticket, an audit record — one committed ledger transaction with a receipt.
//!
//! ```text
//! cargo bench -p cgs-e2e --bench run_tickets -- [--duration SECS] [--warmup SECS] [--conns N]
//! ```

// A bench: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde_json::{Value, json};

#[path = "common/load.rs"]
mod load;
use load::{Target, Window, Workload, report, run_scenario};

const HOST_DATA: &str = "bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22";

fn arg(name: &str, default: f64) -> Result<f64> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == format!("--{name}") {
            let v = args.next().context("a value")?;
            return v.parse().with_context(|| format!("--{name} {v}"));
        }
    }
    Ok(default)
}

async fn ok(m: &cgs_client::Member, method: &str, path: &str, body: Value) -> Value {
    let r = m.authed(method, path, Some(body.to_string().into_bytes())).await.unwrap();
    assert!(r.status < 300, "{method} {path}: {} {}", r.status, String::from_utf8_lossy(&r.body));
    r.json().unwrap_or(Value::Null)
}

#[tokio::main]
async fn main() -> Result<()> {
    let duration = Duration::from_secs_f64(arg("duration", 10.0)?);
    let warmup = Duration::from_secs_f64(arg("warmup", 2.0)?);
    let conns = arg("conns", 16.0)? as usize;
    if conns == 0 {
        bail!("--conns needs at least one connection");
    }
    eprintln!("starting the sandbox...");
    let sb = cgs_e2e::Sandbox::start(&[]).await?;
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let everyone = [&isv, &dp, &cp];
    let key = sb.data.join("members").join("isv.key");
    eprintln!("publishing the analytics plugin and voting it in...");
    let (published, out, err) = sb.cli(Some(&key), &["--json", "plugin", "publish", "plugins/analytics"]);
    if !published {
        bail!("publish: {out}{err}");
    }
    let proposal = serde_json::from_str::<Value>(&out)?["proposal_id"].as_str().unwrap().to_string();
    for m in everyone {
        m.vote(&proposal, true).await?.ok()?;
    }
    let all = [isv.id(), dp.id(), cp.id()];
    ok(&isv, "PUT", "/app/contracts/bench", json!({"data": {}, "collaborators": all})).await;
    let v = isv.authed("GET", "/app/contracts/bench", None).await?.ok_json()?;
    let set = json!([{"name": "contracts.set_contract", "args": {"contract_id": "bench", "version": v["version"]}}]);
    assert_eq!(cgs_e2e::pass(&everyone, set).await?, "Accepted");
    let policy = json!([{"name": "contracts.set_cleanroom_policy", "args": {"contract_id": "bench", "type": "add", "claims": {"x-ms-sevsnpvm-hostdata": [HOST_DATA]}}}]);
    assert_eq!(cgs_e2e::pass(&everyone, policy).await?, "Accepted");
    let budget = json!({"epsilon": 1000.0, "period_hours": 8760});
    ok(&dp, "PUT", "/app/contracts/bench/datasets/sales", json!({
        "schema": [{"name": "customer_id", "type": "int", "join": true, "aggregate": false}, {"name": "region", "type": "text", "output": true}, {"name": "amount", "type": "float"}],
        "aggregate_only": true, "min_group_size": 5, "location": "file:///sales", "key_secret": "k1", "budget": budget})).await;
    ok(
        &cp,
        "PUT",
        "/app/contracts/bench/datasets/customers",
        json!({
        "schema": [{"name": "id", "type": "int", "join": true}, {"name": "segment", "type": "text", "output": true}],
        "location": "file:///customers", "key_secret": "k2", "budget": budget}),
    )
    .await;
    let sql = "SELECT c.segment, COUNT(*) AS n, SUM(s.amount) AS total FROM sales s JOIN customers c ON s.customer_id = c.id GROUP BY c.segment";
    ok(
        &isv,
        "PUT",
        "/app/contracts/bench/queries/q",
        json!({"sql": sql, "epsilon": 0.000001, "output_owner": cp.id()}),
    )
    .await;
    for m in [&dp, &cp] {
        ok(m, "POST", "/app/contracts/bench/queries/q/approve", json!({"revision": 1})).await;
    }
    // An attested clean-room session (virtual evidence in the sandbox).
    let session = cgs_e2e::open_session(&sb.client, "bench", HOST_DATA, &[9u8; 32]).await.ok_json()?;
    let token = format!("Bearer {}", session["token"].as_str().unwrap());

    let target = [Target::new(&sb.url, Some(&std::fs::read(&sb.ca)?))?];
    let window = Window { warmup, duration };
    let mut outcomes = Vec::new();
    // The baseline first, then the tickets, on the same connections count.
    let events = Workload {
        name: "baseline: audit event (same session)".into(),
        method: hyper::Method::POST,
        path: "/app/contracts/bench/events?scope=bench".into(),
        body: Some(Bytes::from(json!({"run": "baseline", "rows": 42}).to_string())),
        authorization: Some(token.clone()),
    };
    outcomes.push(run_scenario(&target, events, conns, &window, None).await);
    let tickets = Workload {
        name: "run ticket (fresh run id each)".into(),
        method: hyper::Method::POST,
        path: "/app/contracts/bench/queries/q/runs".into(),
        body: Some(Bytes::from(json!({"run_id": "r{n}"}).to_string())),
        authorization: Some(token),
    };
    outcomes.push(run_scenario(&target, tickets, conns, &window, None).await);
    report(&mut outcomes);
    let runs = dp.authed("GET", "/app/contracts/bench/runs?dataset=sales", None).await?.ok_json()?;
    eprintln!(
        "records in the analytics log (the newest 1000 are listed): {}",
        runs["value"].as_array().map_or(0, Vec::len)
    );
    Ok(())
}
