//! The analytics plugin's governance path, end to end on a real sandbox: the ISV publishes it with
//! `cgs plugin publish`, every member rebuilds it (`cgs plugin verify --proposal` → MATCH) and
//! votes; two data providers register datasets with rules and upload their keys; a query that
//! breaks a rule is refused with the rule named; a compliant query is approved by exactly the
//! derived approvers; an attested clean-room session gets run tickets; a kill switch and an
//! exhausted budget stop the next run; every run, completion and denial has a receipt that
//! verifies offline.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cgs_client::{Client, Member};
use cgs_e2e::{Sandbox, bearer, call, code, ok, open_session};
use serde_json::{Value, json};
use sha2::Digest;

/// A clean-room session of `contract` with virtual evidence of `host_data`: its token.
async fn session(client: &Client, contract: &str, host_data: &str) -> String {
    let r = open_session(client, contract, host_data, &[7u8; 32]).await;
    r.ok_json().unwrap()["token"].as_str().unwrap().to_string()
}

/// The JSON receipt of `tx`, once a checkpoint covers it, verified offline with the node's key.
async fn receipt_verifies(m: &Member, tx: &str, key: &cgs_core::note::VerifierKey) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = call(m, "GET", &format!("/node/receipt/{tx}?format=json&entry=true"), None).await;
        if r.status != 503 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(r.status, 200, "receipt of {tx}: {}", String::from_utf8_lossy(&r.body));
    let v = cgs_core::receipt::verify(&r.body, key).unwrap_or_else(|e| panic!("receipt of {tx}: {e}"));
    assert_eq!(v.tx_id.map(|t| t.to_string()).as_deref(), Some(tx), "the entry proves the transaction");
}

/// The clean room's host_data (virtual evidence), as the contract's policy admits it.
const HOST_DATA: &str = "aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analytics_collaboration_from_publication_to_receipts() {
    let sb = Sandbox::start(&[]).await.unwrap();
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let key = |name: &str| sb.data.join("members").join(format!("{name}.key"));
    let everyone = [&isv, &dp, &cp];

    // ---- the ISV publishes the plugin; each member rebuilds it, gets MATCH, and approves ----
    let (okp, out, err) = sb.cli(Some(&key("isv")), &["--json", "plugin", "publish", "plugins/analytics"]);
    assert!(okp, "publish: {out}{err}");
    let published: Value = serde_json::from_str(&out).unwrap();
    let proposal = published["proposal_id"].as_str().unwrap().to_string();
    assert_eq!(published["args"]["name"], "analytics");
    for (m, name) in [(&isv, "isv"), (&dp, "data-provider"), (&cp, "code-provider")] {
        let (okv, out, err) = sb.cli(Some(&key(name)), &["plugin", "verify", "analytics", "--proposal", &proposal]);
        assert!(okv && out.starts_with("MATCH"), "{name}: {out}{err}");
        m.vote(&proposal, true).await.unwrap().ok().unwrap();
    }
    let plugins = sb.client.get("/gov/plugins").await.unwrap().ok_json().unwrap();
    assert!(plugins.to_string().contains("\"analytics\""), "installed by vote: {plugins}");

    // ---- the contract, accepted, with a clean-room policy ----
    let all = [isv.id(), dp.id(), cp.id()];
    let r = call(
        &isv,
        "PUT",
        "/app/contracts/insights",
        Some(json!({"data": {"purpose": "sales insights"}, "collaborators": all})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let v = ok(&isv, "GET", "/app/contracts/insights", None).await;
    let set = json!([{"name": "contracts.set_contract", "args": {"contract_id": "insights", "version": v["version"]}}]);
    assert_eq!(cgs_e2e::pass(&everyone, set).await.unwrap(), "Accepted");
    let policy = json!([{"name": "contracts.set_cleanroom_policy", "args": {"contract_id": "insights", "type": "add", "claims": {"x-ms-sevsnpvm-hostdata": [HOST_DATA]}}}]);
    assert_eq!(cgs_e2e::pass(&everyone, policy).await.unwrap(), "Accepted");

    // ---- two data providers register datasets with rules, and upload their keys ----
    let sales = json!({
        "description": "card sales by customer",
        "schema": [
            {"name": "customer_id", "type": "int", "join": true, "aggregate": false},
            {"name": "region", "type": "text", "output": true},
            {"name": "amount", "type": "float"},
        ],
        "aggregate_only": true, "min_group_size": 2,
        "location": "file:///data/sales.csv.enc", "key_secret": "sales-key",
        "budget": {"epsilon": 1.0, "period_hours": 24},
    });
    assert_eq!(call(&dp, "PUT", "/app/contracts/insights/datasets/sales", Some(sales)).await.status, 201);
    let customers = json!({
        "schema": [
            {"name": "id", "type": "int", "join": true},
            {"name": "segment", "type": "text", "output": true},
            {"name": "email", "type": "text", "aggregate": false},
        ],
        "location": "file:///data/customers.csv.enc", "key_secret": "customers-key",
        "budget": {"epsilon": 5.0, "period_hours": 24},
    });
    // The second provider uses the CLI (`cgs dataset put`, through the client library).
    let file = sb.data.join("customers.json");
    std::fs::write(&file, customers.to_string()).unwrap();
    let (okc, out, err) = sb.cli(
        Some(&key("code-provider")),
        &["dataset", "put", "insights", "customers", "--file", file.to_str().unwrap()],
    );
    assert!(okc && out.contains(&format!("owner {}", cp.id())), "{out}{err}");
    let (_, out, _) = sb.cli(Some(&key("isv")), &["dataset", "show", "insights", "customers"]);
    assert!(out.contains("email") && out.contains("segment              text   output, aggregate"), "{out}");
    ok(&dp, "PUT", "/app/contracts/insights/secrets/sales-key", Some(json!({"value": B64.encode([1u8; 32])}))).await;
    ok(&cp, "PUT", "/app/contracts/insights/secrets/customers-key", Some(json!({"value": B64.encode([2u8; 32])})))
        .await;
    // Only the owner changes a dataset.
    let d = ok(&isv, "GET", "/app/contracts/insights/datasets/sales", None).await;
    let mut grab = d.clone();
    for k in ["name", "owner", "consent", "updated_at_ms"] {
        grab.as_object_mut().unwrap().remove(k);
    }
    let r = call(&isv, "PUT", "/app/contracts/insights/datasets/sales", Some(grab)).await;
    assert_eq!((r.status, code(&r).as_str()), (403, "NotDatasetOwner"), "{}", String::from_utf8_lossy(&r.body));

    // ---- a query that breaks a rule: refused, naming the column and the rule ----
    let r = call(
        &isv,
        "PUT",
        "/app/contracts/insights/queries/leak",
        Some(json!({"sql": "SELECT email, COUNT(*) FROM customers GROUP BY email", "epsilon": 0.1})),
    )
    .await;
    assert_eq!((r.status, code(&r).as_str()), (400, "ColumnNotAllowedInOutput"));
    let msg = r.error().unwrap().error.message;
    assert!(msg.contains("`customers.email`") && msg.contains("output: false"), "{msg}");
    let r = call(
        &isv,
        "PUT",
        "/app/contracts/insights/queries/rows",
        Some(json!({"sql": "SELECT region, amount FROM sales", "epsilon": 0.1})),
    )
    .await;
    assert_eq!(code(&r), "ColumnNotAllowedInOutput", "amount is not an output column");
    let r = call(
        &isv,
        "PUT",
        "/app/contracts/insights/queries/rows",
        Some(json!({"sql": "SELECT region FROM sales", "epsilon": 0.1})),
    )
    .await;
    assert_eq!(code(&r), "AggregationRequired", "{}", String::from_utf8_lossy(&r.body));

    // ---- a compliant query, for code-provider's output: approved by exactly dp and cp ----
    let sql = "SELECT c.segment, COUNT(*) AS n, SUM(s.amount) AS total FROM sales s JOIN customers c ON s.customer_id = c.id GROUP BY c.segment";
    let q = ok(
        &isv,
        "PUT",
        "/app/contracts/insights/queries/by-segment",
        Some(json!({"sql": sql, "epsilon": 0.4, "output_owner": cp.id()})),
    )
    .await;
    let mut expected = vec![dp.id(), cp.id()];
    expected.sort();
    assert_eq!(q["approvers"], json!(expected), "derived from ownership, not from the client");
    let r =
        call(&isv, "POST", "/app/contracts/insights/queries/by-segment/approve", Some(json!({"revision": 1}))).await;
    assert_eq!(code(&r), "NotAnApprover", "the author is not an approver");
    let a = ok(&dp, "POST", "/app/contracts/insights/queries/by-segment/approve", Some(json!({"revision": 1}))).await;
    assert_eq!(a["state"], "Pending");
    let (_, out, _) = sb.cli(Some(&key("code-provider")), &["query", "show", "insights", "by-segment"]);
    assert!(out.contains("revision 1") && out.contains("Pending") && out.contains("inputs: sales, customers"), "{out}");
    let (oka, out, err) =
        sb.cli(Some(&key("code-provider")), &["query", "approve", "insights", "by-segment", "--revision", "1"]);
    assert!(oka && out.contains("query by-segment is Approved"), "{out}{err}");

    // ---- the clean room: an attested session gets a ticket; runs are idempotent ----
    let token = session(&sb.client, "insights", HOST_DATA).await;
    let run = |run_id: &'static str| {
        let (client, token) = (sb.client.clone(), token.clone());
        async move {
            bearer(
                &client,
                &token,
                "POST",
                "/app/contracts/insights/queries/by-segment/runs",
                Some(json!({"run_id": run_id})),
            )
            .await
        }
    };
    let r = run("r1").await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let ticket = r.json().unwrap();
    assert_eq!(ticket["group_size_column"], "n");
    assert_eq!(ticket["min_group_size"], 2);
    assert_eq!(ticket["output_owner"], cp.id());
    assert_eq!(ticket["datasets"][0]["key_secret"], "sales-key");
    assert_eq!(ticket["query_sha256"], hex::encode(sha2::Sha256::digest(ticket["sql"].as_str().unwrap())));
    let again = run("r1").await.json().unwrap();
    assert_eq!(again["tx_id"], ticket["tx_id"], "the same run id: the same ticket");
    let done = bearer(
        &sb.client,
        &token,
        "POST",
        "/app/contracts/insights/runs/r1/complete",
        Some(json!({"rows_out": 3, "rows_in": 12})),
    )
    .await;
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
    // A member is not a clean room.
    let r = call(&isv, "POST", "/app/contracts/insights/queries/by-segment/runs", Some(json!({"run_id": "m"}))).await;
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));

    // ---- a kill switch stops the next run ----
    ok(&dp, "POST", "/app/contracts/insights/consent/execution/disable", Some(json!({"reason": "audit pending"})))
        .await;
    let r = run("r2").await;
    assert_eq!((r.status, code(&r).as_str()), (405, "ContractDisabled"), "{}", String::from_utf8_lossy(&r.body));
    // The host refuses a session of a disabled contract before any plugin runs: the refusal
    // names who pulled the switch, and the switch itself is the recorded transaction.
    let refusal = r.json().unwrap();
    assert!(refusal["error"]["message"].as_str().unwrap().contains("audit pending"), "{refusal}");
    assert!(refusal.get("tx_id").is_none(), "{refusal}");
    ok(&dp, "POST", "/app/contracts/insights/consent/execution/enable", None).await;
    // ---- a dataset owner's consent too ----
    ok(&cp, "POST", "/app/contracts/insights/datasets/customers/consent/disable", None).await;
    let r = run("r3").await;
    assert_eq!((r.status, code(&r).as_str()), (405, "DatasetConsentDisabled"), "{}", String::from_utf8_lossy(&r.body));
    let consent_denial = r.json().unwrap()["tx_id"].as_str().unwrap().to_string();
    ok(&cp, "POST", "/app/contracts/insights/datasets/customers/consent/enable", None).await;

    // ---- the budget: 0.4 of sales' 1.0 per run; the third run in the period is denied ----
    assert_eq!(run("r4").await.status, 201);
    let r = run("r5").await;
    assert_eq!((r.status, code(&r).as_str()), (429, "BudgetExhausted"), "{}", String::from_utf8_lossy(&r.body));
    let budget_denial = r.json().unwrap()["tx_id"].as_str().unwrap().to_string();

    // ---- every run, completion and denial is listed per dataset, with a receipt ----
    let log = ok(&dp, "GET", "/app/contracts/insights/runs?dataset=sales", None).await;
    let records = log["value"].as_array().unwrap();
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"run") && kinds.contains(&"completion") && kinds.contains(&"denial"), "{kinds:?}");
    let txs: Vec<String> = records.iter().map(|r| r["tx_id"].as_str().unwrap().to_string()).collect();
    assert!(txs.contains(&budget_denial) && txs.contains(&consent_denial), "{txs:?}");
    let vk = cgs_core::note::VerifierKey::parse(&sb.verifier_key().await.unwrap()).unwrap();
    for tx in &txs {
        receipt_verifies(&dp, tx, &vk).await;
    }
    let (_, out, _) = sb.cli(Some(&key("data-provider")), &["run", "list", "insights", "--dataset", "sales"]);
    assert!(out.contains("DENIED BudgetExhausted") && out.contains("ticket issued, 0.4 epsilon"), "{out}");
    let (okr, _, err) = sb.cli(
        Some(&key("isv")),
        &["query", "submit", "insights", "x", "--sql", "SELECT email FROM customers", "--epsilon", "0.1"],
    );
    assert!(!okr && err.contains("ColumnNotAllowedInOutput"), "the CLI says the rule: {err}");
    // Users and other contracts' sessions see none of it.
    let r = sb.client.get("/app/contracts/insights/runs").await.unwrap();
    assert_eq!(r.status, 401);
}
