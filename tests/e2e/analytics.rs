//! The analytics plugin's governance path, end to end on a real sandbox: the ISV publishes it with
//! `cgs plugin publish`, every member rebuilds it (`cgs plugin verify --proposal` → MATCH) and
//! votes; two data providers register datasets with rules and upload their keys; a query that
//! breaks a rule is refused with the rule named; a compliant query is approved by exactly the
//! derived approvers; an attested clean-room session gets run tickets; a kill switch and an
//! exhausted budget stop the next run; every run, completion and denial has a receipt that
//! verifies offline.

use std::collections::BTreeMap;
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

    // ---- two data providers register datasets with rules, seal their files, and upload their keys ----
    let room = cgs_e2e::cleanroom_binary();
    let files = sb.data.join("analytics");
    std::fs::create_dir_all(&files).unwrap();
    let (sales_csv, customers_csv) = (files.join("sales.csv"), files.join("customers.csv"));
    let (sales_file, customers_file) = (files.join("sales.csv.enc"), files.join("customers.csv.enc"));
    let data = Data::generate();
    std::fs::write(&sales_csv, data.sales_csv()).unwrap();
    std::fs::write(&customers_csv, data.customers_csv()).unwrap();
    let keygen = |name: &str| {
        let (okk, out, err) = tool(room, &["keygen"]);
        assert!(okk, "{err}");
        let path = files.join(format!("{name}.key"));
        std::fs::write(&path, &out).unwrap();
        (path, out.trim().to_string())
    };
    let (sales_key, sales_key_text) = keygen("sales");
    let (customers_key, customers_key_text) = keygen("customers");
    let (output_key, output_key_text) = keygen("output");
    for (key, dataset, clear, sealed) in
        [(&sales_key, "sales", &sales_csv, &sales_file), (&customers_key, "customers", &customers_csv, &customers_file)]
    {
        let args = [
            "seal",
            "--key-file",
            path(key),
            "--contract",
            "insights",
            "--dataset",
            dataset,
            path(clear),
            path(sealed),
        ];
        let (oks, _, err) = tool(room, &args);
        assert!(oks, "seal {dataset}: {err}");
    }
    assert!(!std::fs::read(&sales_file).unwrap().windows(5).any(|w| w == b"north"), "the files are sealed");
    let sales = json!({
        "description": "card sales by customer",
        "schema": [
            {"name": "customer_id", "type": "int", "join": true, "aggregate": false},
            {"name": "region", "type": "text", "output": true},
            {"name": "amount", "type": "float"},
        ],
        "aggregate_only": true, "min_group_size": 2,
        "location": format!("file://{}", sales_file.display()), "key_secret": "sales-key",
        "budget": {"epsilon": 1.2, "period_hours": 24},
    });
    assert_eq!(call(&dp, "PUT", "/app/contracts/insights/datasets/sales", Some(sales)).await.status, 201);
    let customers = json!({
        "schema": [
            {"name": "id", "type": "int", "join": true},
            {"name": "segment", "type": "text", "output": true},
            {"name": "email", "type": "text", "aggregate": false},
        ],
        "location": format!("file://{}", customers_file.display()), "key_secret": "customers-key",
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
    ok(&dp, "PUT", "/app/contracts/insights/secrets/sales-key", Some(json!({"value": sales_key_text}))).await;
    ok(&cp, "PUT", "/app/contracts/insights/secrets/customers-key", Some(json!({"value": customers_key_text}))).await;
    // The output's owner (code-provider) puts the key the result is sealed with; a key another
    // member put is refused by the clean room.
    ok(&cp, "PUT", "/app/contracts/insights/secrets/by-segment-output", Some(json!({"value": output_key_text}))).await;
    let rogue = B64.encode([9u8; 32]);
    ok(&isv, "PUT", "/app/contracts/insights/secrets/rogue-output", Some(json!({"value": rogue}))).await;
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

    // ---- the clean room (a real process on DataFusion) runs it on the sealed files ----
    let output = files.join("r1.csv.enc");
    let run_room = |run_id: &str, out_secret: &str| {
        tool(
            room,
            &[
                "run",
                "--url",
                &sb.url,
                "--ca",
                path(&sb.ca),
                "--contract",
                "insights",
                "--query",
                "by-segment",
                "--run-id",
                run_id,
                "--host-data",
                HOST_DATA,
                "--output-key-secret",
                out_secret,
                "--output",
                path(&output),
                "--data-dir",
                path(&files),
            ],
        )
    };
    // An output key that is not the output owner's: refused before any input is read (the
    // ticket of run r0 was issued, and its epsilon spent: it is a run that did not complete).
    let (okr, _, err) = run_room("r0", "rogue-output");
    assert!(!okr && err.contains("was put by") && err.contains(&cp.id()), "{err}");
    assert!(!output.exists());
    let none = ok(&dp, "GET", "/app/contracts/insights/events?scope=analytics&id=r0", None).await;
    assert_eq!(none["value"], json!([]), "nothing was read: no RecordAccess");
    let (okr, out, err) = run_room("r1", "by-segment-output");
    assert!(okr, "the clean room: {err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["rows_in"], data.rows_in(), "{report}");
    assert!(report.get("groups_dropped").is_none(), "how many groups were dropped is not published: {report}");
    // The output owner opens the result; it is what the same SQL gives on the clear files, and
    // what plain Rust computes from the data.
    let (oko, result, err) = tool(
        room,
        &["open", "--key-file", path(&output_key), "--contract", "insights", "--run-id", "r1", path(&output)],
    );
    assert!(oko, "{err}");
    let got = parse_result(&result);
    assert_eq!(got.len() as u64, report["rows_out"].as_u64().unwrap());
    assert_close(&data.by_segment(2), &got, "plain Rust on the clear data");
    assert!(!result.contains("platinum") && data.by_segment(0).contains_key("platinum"), "the small group is dropped");
    // Any party reads the run (its ticket and completion); the owners re-run it on their clear files.
    let record = ok(&dp, "GET", "/app/contracts/insights/runs/r1", None).await;
    assert_eq!(record["state"], "Completed");
    assert_eq!(record["completion"]["rows_out"], report["rows_out"]);
    let ticket = record["ticket"].clone();
    let ticket_out = record.to_string();
    let ticket_file = files.join("r1.ticket.json");
    std::fs::write(&ticket_file, &ticket_out).unwrap();
    let inputs = [format!("sales={}", sales_csv.display()), format!("customers={}", customers_csv.display())];
    let (okl, clear, err) =
        tool(room, &["local", "--ticket", path(&ticket_file), "--input", &inputs[0], "--input", &inputs[1]]);
    assert!(okl, "{err}");
    // (Rows in another order, sums in the last digit: two partitions aggregate in any order.)
    assert_close(&parse_result(&clear), &got, "the same SQL on the clear files");
    let (_, all, _) = tool(
        room,
        &["local", "--ticket", path(&ticket_file), "--input", &inputs[0], "--input", &inputs[1], "--keep-small-groups"],
    );
    assert!(all.contains("platinum,1,"), "{all}");

    // ---- what the ticket says, and idempotency ----
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
    assert_eq!(record["issued_tx"], report["ticket_tx_id"], "the run's record names the ticket's transaction");
    assert_eq!(ticket["group_size_column"], "n");
    assert_eq!(ticket["min_group_size"], 2);
    assert_eq!(ticket["output_owner"], cp.id());
    assert_eq!(ticket["datasets"][0]["key_secret"], "sales-key");
    assert_eq!(
        (&ticket["datasets"][0]["aggregate_only"], &ticket["datasets"][1]["aggregate_only"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(ticket["query_sha256"], hex::encode(sha2::Sha256::digest(ticket["sql"].as_str().unwrap())));
    // Another session never gets the run's ticket again (it could run it past the budget).
    let again = run("r1").await;
    assert_eq!((again.status, code(&again).as_str()), (409, "RunIdInUse"), "{}", String::from_utf8_lossy(&again.body));
    // The run is complete: not twice.
    let done =
        bearer(&sb.client, &token, "POST", "/app/contracts/insights/runs/r1/complete", Some(json!({"rows_out": 1})))
            .await;
    assert_eq!(done.status / 100, 4, "{}", String::from_utf8_lossy(&done.body));
    // The audit trail of the run: a RecordAccess per input and a RecordExecution.
    let events = ok(&dp, "GET", "/app/contracts/insights/events?scope=analytics&id=r1", None).await;
    let kinds: Vec<&str> =
        events["value"].as_array().unwrap().iter().map(|e| e["data"]["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["RecordAccess", "RecordAccess", "RecordExecution"], "{events}");
    let mut audit_txs: Vec<String> =
        events["value"].as_array().unwrap().iter().map(|e| e["tx_id"].as_str().unwrap().to_string()).collect();
    audit_txs.push(report["completion_tx_id"].as_str().unwrap().to_string());
    // A member is not a clean room.
    let r = call(&isv, "POST", "/app/contracts/insights/queries/by-segment/runs", Some(json!({"run_id": "m"}))).await;
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));

    // ---- a kill switch stops the next run ----
    ok(&dp, "POST", "/app/contracts/insights/consent/execution/disable", Some(json!({"reason": "audit pending"})))
        .await;
    let (okr, _, err) = run_room("r2", "by-segment-output");
    assert!(!okr && err.contains("ContractDisabled"), "the clean room is stopped: {err}");
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

    // ---- the budget: 0.4 of sales' 1.2 per run; r0, r1 and r4 spend it, the next run is denied ----
    let r4 = run("r4").await;
    assert_eq!(r4.status, 201, "{}", String::from_utf8_lossy(&r4.body));
    let done =
        bearer(&sb.client, &token, "POST", "/app/contracts/insights/runs/r4/complete", Some(json!({"rows_out": 0})))
            .await;
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
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
    for tx in txs.iter().chain(&audit_txs) {
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

    // ---- every answer above matches the schema the plugin describes in /openapi.json ----
    for path in [
        "/app/contracts/insights/datasets",
        "/app/contracts/insights/queries",
        "/app/contracts/insights/queries/by-segment",
    ] {
        ok(&dp, "GET", path, None).await;
    }
    if let Some(checked) = cgs_e2e::check_answers_against_openapi(&sb.client).await {
        let doc = sb.client.get("/openapi.json").await.unwrap().ok_json().unwrap();
        let mut described = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if op["tags"][0] == "analytics" {
                    described += 1;
                    let key = format!("{} {path}", method.to_uppercase());
                    assert!(checked.contains(&key), "{key} was checked against a real answer; checked: {checked:?}");
                }
            }
        }
        assert_eq!(described, 12, "every analytics route is described");
    }
}

/// Run `bin` with `args`: (success, stdout, stderr).
fn tool(bin: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(bin).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// The two providers' data, generated: sales of customers in three segments, one customer in a
/// fourth segment with a single sale (a group below the minimum), sales of unknown customers
/// (dropped by the join), and e-mails that need CSV quoting.
struct Data {
    customers: Vec<(i64, &'static str, String)>,
    sales: Vec<(i64, &'static str, f64)>,
}

impl Data {
    fn generate() -> Self {
        let segments = ["gold", "silver", "bronze"];
        let mut customers: Vec<_> =
            (0..40).map(|i| (i, segments[(i % 3) as usize], format!("\"o'neil, {i}\"@example.com"))).collect();
        customers.push((99, "platinum", "vip@example.com".into()));
        let regions = ["north", "south", "east", "west"];
        let mut sales: Vec<_> = (0..300i64)
            .map(|i| ((i * 7) % 40, regions[(i % 4) as usize], ((i * 37) % 1000) as f64 / 10.0 + 0.25))
            .collect();
        sales.push((99, "north", 1234.5));
        sales.extend((0..5).map(|i| (500 + i, "south", 10.0)));
        Self { customers, sales }
    }

    fn sales_csv(&self) -> String {
        let mut s = String::from("customer_id,region,amount\n");
        for (c, r, a) in &self.sales {
            s.push_str(&format!("{c},{r},{a}\n"));
        }
        s
    }

    fn customers_csv(&self) -> String {
        let mut s = String::from("id,segment,email\n");
        for (i, seg, email) in &self.customers {
            s.push_str(&format!("{i},{seg},\"{}\"\n", email.replace('"', "\"\"")));
        }
        s
    }

    fn rows_in(&self) -> u64 {
        (self.sales.len() + self.customers.len()) as u64
    }

    /// segment → (COUNT(*), SUM(amount)) of the inner join, groups of at least `min` rows.
    fn by_segment(&self, min: u64) -> BTreeMap<String, (u64, f64)> {
        let mut m = BTreeMap::<String, (u64, f64)>::new();
        for (c, _, amount) in &self.sales {
            if let Some((_, seg, _)) = self.customers.iter().find(|(i, _, _)| i == c) {
                let e = m.entry(seg.to_string()).or_default();
                e.0 += 1;
                e.1 += amount;
            }
        }
        m.retain(|_, (n, _)| *n >= min);
        m
    }
}

/// The same groups, the same counts, sums within rounding.
fn assert_close(want: &BTreeMap<String, (u64, f64)>, got: &BTreeMap<String, (u64, f64)>, what: &str) {
    assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>(), "{what}: {got:?}");
    for (segment, (n, total)) in want {
        let (gn, gtotal) = got[segment];
        assert!(gn == *n && (gtotal - total).abs() < 1e-6, "{what}: {segment}: ({gn}, {gtotal}) != ({n}, {total})");
    }
}

/// The clean room's output CSV (`segment,n,total`) as segment → (n, total).
fn parse_result(csv: &str) -> BTreeMap<String, (u64, f64)> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("segment,n,total"), "{csv}");
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), (f[1].parse().unwrap(), f[2].parse().unwrap()))
        })
        .collect()
}

/// The README's walk-through (examples/sql-cleanroom/demo/walkthrough.sh), run as written against
/// a fresh sandbox with the built `cgs` and `cgs-sql-cleanroom`: every step succeeds, and the
/// output its owner opens has the groups the demo data holds, without the one below the minimum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs() {
    let sb = Sandbox::start(&[]).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let script = cgs_e2e::workspace().join("examples/sql-cleanroom/demo/walkthrough.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .current_dir(work.path())
        .env("CGS_URL", &sb.url)
        .env("CGS_CA", &sb.ca)
        .env("MEMBERS", sb.data.join("members"))
        .env("CGS", &cgs_e2e::binaries().cli)
        .env("ROOM", cgs_e2e::cleanroom_binary())
        .env("CGS_STATE_DIR", work.path().join("cli-state"))
        .env_remove("CGS_KEY")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in [
        "MATCH: analytics rebuilt locally = proposed on the service",
        "ColumnNotAllowedInOutput (400): query refused: column `customers.email`",
        "query by-segment is Approved",
        "segment,n,total",
        "ContractDisabled (405)",
        "ticket issued, 0.25 epsilon",
        "\"type\":\"RecordExecution\"",
    ] {
        assert!(stdout.contains(line) || stderr.contains(line), "`{line}` missing:\n{stdout}\n{stderr}");
    }
    let result: Vec<&str> =
        stdout.lines().skip_while(|l| *l != "segment,n,total").skip(1).take_while(|l| !l.trim().is_empty()).collect();
    let mut segments: Vec<&str> = result.iter().map(|l| l.split(',').next().unwrap()).collect();
    segments.sort();
    assert_eq!(segments, ["bronze", "gold", "silver"], "platinum (one sale) is dropped: {result:?}");
    assert!(work.path().join("analytics-demo/run-1.csv.enc").exists());
}
