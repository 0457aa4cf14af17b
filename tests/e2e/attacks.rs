//! The attacks of the trust review, performed against real `cgs-host` processes over real TLS
//! with real plugins: each test does what the attacker did and asserts that it now fails.
//! (Slow clients and HTTP/2 early errors are in `attacks_http.rs`.)

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cgs_client::{ApiResponse, Member};
use cgs_core::gov::MessageType;
use cgs_e2e::{Sandbox, bearer, call, code, ok, open_session, session_with_nonce};
use serde_json::{Value, json};

fn status_code(r: &ApiResponse) -> (u16, String) {
    (r.status, code(r))
}

/// Propose `actions` as the first member and have every member approve; the final state.
async fn decide(members: &[&Member], actions: Value) -> String {
    cgs_e2e::pass(members, actions).await.unwrap()
}

/// Create contract `id` as `creator` with `body` and have everyone accept it.
async fn accepted_contract(members: &[&Member], creator: &Member, id: &str, body: Value) {
    let r = call(creator, "PUT", &format!("/app/contracts/{id}"), Some(body)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let v = ok(creator, "GET", &format!("/app/contracts/{id}"), None).await;
    let set = json!([{"name": "contracts.set_contract", "args": {"contract_id": id, "version": v["version"]}}]);
    assert_eq!(decide(members, set).await, "Accepted");
}

/// Wait until a receipt for `tx` is ready (a checkpoint covers it) for `m`.
async fn receipt_for(m: &Member, tx: &str, query: &str) -> ApiResponse {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = call(m, "GET", &format!("/node/receipt/{tx}{query}"), None).await;
        if r.status != 503 || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Item 1: a contract whose collaborators exclude you is not readable through its receipt or
/// entry; anonymous callers get nothing; a receipt proves inclusion without the write set; and
/// the ledger file a node operator holds reveals none of the confidential data (drafts, policies,
/// kill-switch reasons, events, user identities).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_reads_need_the_right_to_read_what_was_written() {
    let mut sb = Sandbox::start(&[]).await.unwrap();
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let everyone = [&isv, &dp, &cp];
    // `deal` is between the ISV and the data provider only.
    let draft = json!({"data": {"terms": "MARKER-DRAFT-TERMS"}, "collaborators": [isv.id(), dp.id()],
        "users": ["https://idp.example|MARKER-USER-SUBJECT"]});
    let r = call(&isv, "PUT", "/app/contracts/deal", Some(draft)).await;
    assert_eq!(r.status, 201);
    let tx = r.header("x-cgs-tx-id").unwrap().to_string();
    let r = call(&cp, "GET", "/app/contracts/deal", None).await;
    assert_eq!(status_code(&r), (403, "NotAContractParty".into()));

    // Anonymous: 401 on every route exposing the transaction.
    for path in [format!("/node/receipt/{tx}"), format!("/node/receipt/{tx}?format=json"), format!("/node/entry/{tx}")]
    {
        let r = sb.client.get(&path).await.unwrap();
        assert_eq!(status_code(&r), (401, "Unauthenticated".into()), "{path}");
    }
    // A member who is not a party: 403, in every form.
    for query in ["", "?format=json", "?format=json&entry=true"] {
        let r = receipt_for(&cp, &tx, query).await;
        assert_eq!(status_code(&r), (403, "NotAllowedToRead".into()), "receipt{query}");
    }
    let r = call(&cp, "GET", &format!("/node/entry/{tx}"), None).await;
    assert_eq!(status_code(&r), (403, "NotAllowedToRead".into()));

    // A party gets the receipt; without `entry=true` it carries the entry's hash only, and it
    // verifies offline.
    let node_key = sb.verifier_key().await.unwrap();
    let vk = cgs_core::note::VerifierKey::parse(&node_key).unwrap();
    let bare = receipt_for(&dp, &tx, "").await;
    assert_eq!(bare.status, 200);
    let v = cgs_core::receipt::verify_cose(&bare.body, &vk.key).unwrap();
    assert!(v.entry.is_none() && !contains(&bare.body, b"MARKER"));
    let full = receipt_for(&dp, &tx, "?format=json&entry=true").await.ok_json().unwrap();
    let receipt: cgs_core::receipt::JsonReceipt = serde_json::from_value(full).unwrap();
    let with_entry = cgs_core::receipt::verify_json(&receipt, &vk).unwrap();
    assert_eq!(with_entry.leaf_input, v.leaf_input);
    let entry = B64.decode(receipt.entry.unwrap()).unwrap();
    assert!(!contains(&entry, b"MARKER-DRAFT"), "even for a party, the raw entry holds the draft encrypted");
    // The entry route decrypts what a party may read.
    let e = ok(&dp, "GET", &format!("/node/entry/{tx}"), None).await;
    let written: Vec<u8> = e["writes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["value"].as_str())
        .flat_map(|v| B64.decode(v).unwrap())
        .collect();
    assert!(contains(&written, b"MARKER-DRAFT-TERMS"));

    // Everything else confidential: a policy (by proposal), a kill-switch reason, an event, a
    // registered user.
    accepted_contract(
        &everyone,
        &isv,
        "room",
        json!({"data": {}, "users": ["https://idp.example|MARKER-USER-SUBJECT"]}),
    )
    .await;
    let pol = json!([{"name": "contracts.set_cleanroom_policy", "args": {"contract_id": "room", "type": "add",
        "claims": {"x-ms-sevsnpvm-hostdata": ["MARKER-POLICY-VALUE"]}}}]);
    assert_eq!(decide(&everyone, pol).await, "Accepted");
    let spec = json!([{"name": "contracts.set_deployment_spec", "args": {"contract_id": "room", "data": {"image": "MARKER-SPEC"}}}]);
    assert_eq!(decide(&everyone, spec).await, "Accepted");
    ok(&dp, "POST", "/app/contracts/room/consent/execution/disable", Some(json!({"reason": "MARKER-KILL-REASON"})))
        .await;
    ok(&dp, "POST", "/app/contracts/room/consent/execution/enable", None).await;
    let r = call(
        &isv,
        "POST",
        "/app/contracts/room/events?scope=MARKER-SCOPE&id=MARKER-EVENT-ID",
        Some(json!({"result": "MARKER-EVENT-DATA"})),
    )
    .await;
    assert_eq!(r.status, 201);
    let user = json!([
        {"name": "set_jwt_issuer", "args": {"issuer": "https://idp.example", "audience": "cgs", "jwks": {"keys": []}}},
        {"name": "set_user_identity", "args": {"issuer": "https://idp.example", "subject": "MARKER-USER-SUBJECT", "data": {"name": "MARKER-USER-NAME"}}},
    ]);
    assert_eq!(decide(&everyone, user).await, "Accepted");
    let events = ok(&isv, "GET", "/app/contracts/room/events?scope=MARKER-SCOPE", None).await;
    assert_eq!(events["value"][0]["data"]["result"], "MARKER-EVENT-DATA", "the blinded index still finds it");

    let data = sb.data.clone();
    assert!(sb.terminate().unwrap().success());
    let file = std::fs::read(data.join(cgs_ledger_format::store_format::FILE_NAME)).unwrap();
    for marker in [
        "MARKER-DRAFT-TERMS",
        "MARKER-USER-SUBJECT",
        "MARKER-USER-NAME",
        "MARKER-POLICY-VALUE",
        "MARKER-SPEC",
        "MARKER-KILL-REASON",
        "MARKER-EVENT-DATA",
        "MARKER-SCOPE",
        "MARKER-EVENT-ID",
    ] {
        assert!(!contains(&file, marker.as_bytes()), "the ledger file reveals {marker}");
    }
    // And it still verifies offline.
    let out = std::process::Command::new(&cgs_e2e::binaries().cli)
        .args(["ledger", "verify", data.to_str().unwrap(), "--node-key", &node_key])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Review finding H1 and M3: reading a governance transaction is not reading everything it
/// wrote. The ballot that accepts a contract rewrites that contract; a member outside its
/// `collaborators` may read the ballot (`GET /node/entry`) but not the contract in it, and nobody
/// gets another member's signed login back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_entries_do_not_hand_out_the_contracts_they_touch() {
    let mut sb = Sandbox::start(&[]).await.unwrap();
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let draft = json!({"data": {"terms": "MARKER-H1-TERMS"}, "collaborators": [isv.id(), dp.id()]});
    assert_eq!(call(&isv, "PUT", "/app/contracts/deal", Some(draft)).await.status, 201);
    let v = ok(&isv, "GET", "/app/contracts/deal", None).await;
    let set = json!([{"name": "contracts.set_contract", "args": {"contract_id": "deal", "version": v["version"]}}]);
    let r = isv.propose(set).await.unwrap().ok_json().unwrap();
    let id = r["proposal_id"].as_str().unwrap().to_string();
    let mut deciding = None;
    for m in [&isv, &dp, &cp] {
        let r = m.vote(&id, true).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        if r.json().unwrap()["state"] == "Accepted" {
            deciding = Some(r.header("x-cgs-tx-id").expect("a ballot names its transaction").to_string());
            break;
        }
    }
    let tx = deciding.expect("the proposal is accepted");

    let values = |e: &Value| -> Vec<u8> {
        e["writes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| w["value"].as_str())
            .flat_map(|v| B64.decode(v).unwrap())
            .collect()
    };
    // A party sees the accepted contract in the ballot's entry.
    let e = ok(&dp, "GET", &format!("/node/entry/{tx}"), None).await;
    assert!(contains(&values(&e), b"MARKER-H1-TERMS"), "{e}");
    assert!(e["envelope"].is_string(), "members see ballots");
    // The member outside it reads the ballot, but the contract's value is withheld.
    let e = ok(&cp, "GET", &format!("/node/entry/{tx}"), None).await;
    assert_eq!(e["operation"], "ballot");
    assert!(!contains(&values(&e), b"MARKER-H1"), "a non-party read the contract through a ballot: {e}");
    let withheld: Vec<&Value> = e["writes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["table"] == "contracts.contracts" && w["value_withheld"] == true)
        .collect();
    assert_eq!(withheld.len(), 1, "{e}");

    // Logins: every member may read the transaction, nobody gets the signed login back.
    let (term, last) = tx.split_once('.').unwrap();
    let mut logins = 0;
    for seqno in 1..=last.parse::<u64>().unwrap() {
        let r = call(&cp, "GET", &format!("/node/entry/{term}.{seqno}"), None).await;
        if r.status != 200 {
            continue;
        }
        let e = r.json().unwrap();
        if e["operation"] == "login" {
            logins += 1;
            assert!(e["envelope"].is_null() && e["envelope_withheld"] == true, "{e}");
        }
    }
    assert!(logins >= 1, "the sandbox's members logged in");
    assert!(sb.terminate().unwrap().success());
}

/// Item 2: a captured signed message re-posted in another encoding — tag removed, tag in a
/// two-byte head, indefinite lengths — is refused, and the same bytes again are a replay: a
/// captured login yields no new token, a withdrawn proposal does not come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_encoded_signed_messages_are_refused() {
    let sb = Sandbox::start(&[]).await.unwrap();
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let variants = |msg: &[u8]| -> Vec<(&'static str, Vec<u8>)> {
        assert_eq!(msg[..2], [0xd2, 0x84]);
        let mut indefinite = vec![0xd2, 0x9f];
        indefinite.extend_from_slice(&msg[2..]);
        indefinite.push(0xff);
        vec![
            ("untagged", msg[1..].to_vec()),
            ("tag in a two-byte head (d8 12)", [&[0xd8, 0x12][..], &msg[1..]].concat()),
            ("indefinite-length array", indefinite),
            ("trailing byte", [msg, &[0x00][..]].concat()),
        ]
    };

    // A captured login.
    let login = isv.sign(MessageType::Login, None, &json!({"nonce": 1}));
    let r = isv.post_signed("/gov/login", login.clone()).await.unwrap();
    assert_eq!(r.status, 200);
    for (what, bytes) in variants(&login) {
        let r = isv.post_signed("/gov/login", bytes).await.unwrap();
        assert_eq!(status_code(&r), (400, "InvalidSignedMessage".into()), "login {what}");
        assert!(r.json().unwrap().get("token").is_none());
    }
    let r = isv.post_signed("/gov/login", login).await.unwrap();
    assert_eq!(status_code(&r), (409, "Replay".into()));

    // A withdrawn proposal does not come back under a new id.
    let proposal = isv.sign(
        MessageType::Proposal,
        None,
        &json!({"actions": [{"name": "set_member_data", "args": {"member_id": isv.id(), "member_data": {"name": "isv2"}}}]}),
    );
    let p = isv.post_signed("/gov/proposals", proposal.clone()).await.unwrap().ok_json().unwrap();
    let id = p["proposal_id"].as_str().unwrap().to_string();
    assert_eq!(isv.withdraw(&id).await.unwrap().ok_json().unwrap()["state"], "Withdrawn");
    for (what, bytes) in variants(&proposal) {
        let r = isv.post_signed("/gov/proposals", bytes).await.unwrap();
        assert_eq!(status_code(&r), (400, "InvalidSignedMessage".into()), "proposal {what}");
    }
    let r = isv.post_signed("/gov/proposals", proposal).await.unwrap();
    assert_eq!(status_code(&r), (409, "Replay".into()));
    let open = ok(&isv, "GET", "/gov/proposals?state=Open", None).await;
    assert_eq!(open["value"].as_array().unwrap().len(), 0, "{open}");

    // Idempotent submissions, not replays: the same content signed twice in one second (each
    // message with its own `cgs.msg.nonce`) makes two proposals; either message sent again is a
    // replay.
    let body = json!({"actions": [{"name": "set_member_data", "args": {"member_id": isv.id(), "member_data": {"name": "isv3"}}}]});
    let (a, b) = (isv.sign(MessageType::Proposal, None, &body), isv.sign(MessageType::Proposal, None, &body));
    let ra = isv.post_signed("/gov/proposals", a.clone()).await.unwrap().ok_json().unwrap();
    let rb = isv.post_signed("/gov/proposals", b.clone()).await.unwrap().ok_json().unwrap();
    assert_ne!(ra["proposal_id"], rb["proposal_id"], "two proposals");
    for again in [a, b] {
        let r = isv.post_signed("/gov/proposals", again).await.unwrap();
        assert_eq!(status_code(&r), (409, "Replay".into()));
    }
    for p in [&ra, &rb] {
        isv.withdraw(p["proposal_id"].as_str().unwrap()).await.unwrap().ok_json().unwrap();
    }

    // A ballot re-encoded is not a second vote (nor a replay that slips through).
    let p = isv
        .propose(json!([{"name": "set_member_data", "args": {"member_id": cp.id(), "member_data": {"name": "cp"}}}]))
        .await;
    let id = p.unwrap().ok_json().unwrap()["proposal_id"].as_str().unwrap().to_string();
    let ballot = dp.sign(MessageType::Ballot, Some(&id), &json!({"vote": "approve"}));
    let path = format!("/gov/proposals/{id}/ballots");
    assert_eq!(dp.post_signed(&path, ballot.clone()).await.unwrap().status, 200);
    for (what, bytes) in variants(&ballot) {
        let r = dp.post_signed(&path, bytes).await.unwrap();
        assert_eq!(status_code(&r), (400, "InvalidSignedMessage".into()), "ballot {what}");
    }
    // A non-empty unprotected header (unsigned, so an attacker could add one) is refused.
    let unprotected_at = 4 + ballot[3] as usize;
    let mut extra = ballot[..unprotected_at].to_vec();
    extra.extend_from_slice(&[0xa1, 0x04, 0x41, 0x00]);
    extra.extend_from_slice(&ballot[unprotected_at + 1..]);
    let r = dp.post_signed(&path, extra).await.unwrap();
    assert_eq!(status_code(&r), (400, "InvalidSignedMessage".into()));
}

/// Item 3: a kill switch, a revocation or a policy change stops a clean room's sessions at once:
/// no new session, no secret, no ID token, no consent "enabled", no event — with the token it
/// already holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_is_enforced_on_every_session_use() {
    use hpke::{Kem as _, Serializable as _};
    let sb = Sandbox::start(&[]).await.unwrap();
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let everyone = [&isv, &dp, &cp];
    let host_data = "11".repeat(32);
    accepted_contract(&everyone, &isv, "room", json!({"data": {}})).await;
    let setup = json!([
        {"name": "contracts.set_cleanroom_policy", "args": {"contract_id": "room", "type": "add", "claims": {"x-ms-sevsnpvm-hostdata": [host_data]}}},
        {"name": "oidc.enable_issuer", "args": {}},
        {"name": "oidc.set_issuer_url", "args": {"url": "https://issuer.example"}},
        {"name": "oidc.set_audiences", "args": {"contract_id": "room", "audiences": ["api://storage"]}},
    ]);
    assert_eq!(decide(&everyone, setup).await, "Accepted");
    ok(&isv, "PUT", "/app/contracts/room/secrets/db", Some(json!({"value": "hunter2"}))).await;
    let (_, pk) = hpke::kem::X25519HkdfSha256::gen_keypair(&mut rand::rngs::OsRng);
    let pk = pk.to_bytes().to_vec();
    let s = open_session(&sb.client, "room", &host_data, &pk).await.ok_json().unwrap();
    let token = s["token"].as_str().unwrap().to_string();
    let c = &sb.client;
    // What a session does; all succeed while the contract may run.
    let uses = |token: String| async move {
        vec![
            ("consent", bearer(c, &token, "GET", "/app/contracts/room/consent/execution", None).await),
            ("secret", bearer(c, &token, "POST", "/app/contracts/room/secrets/db/release", None).await),
            (
                "id token",
                bearer(c, &token, "POST", "/app/contracts/room/oauth/token", Some(json!({"aud": "api://storage"})))
                    .await,
            ),
            ("event", bearer(c, &token, "POST", "/app/contracts/room/events", Some(json!({"step": 1}))).await),
            ("spec", bearer(c, &token, "GET", "/app/contracts/room/deployment-spec", None).await),
        ]
    };
    for (what, r) in uses(token.clone()).await {
        assert!(r.status < 300, "{what}: {} {}", r.status, String::from_utf8_lossy(&r.body));
    }

    // One member's kill switch: every use with the existing token is refused at once, naming
    // them; no new session either. Lifting it restores the session.
    ok(&cp, "POST", "/app/contracts/room/consent/execution/disable", Some(json!({"reason": "audit finding"}))).await;
    for (what, r) in uses(token.clone()).await {
        assert_eq!(status_code(&r), (405, "ContractDisabled".into()), "{what}");
        assert!(r.error().unwrap().error.message.contains(&cp.id()), "{what}");
    }
    // A new session is refused; the anonymous caller learns neither who nor why (finding M1),
    // and with evidence the policy refuses, not even that the switch is on.
    let r = open_session(c, "room", &host_data, &pk).await;
    assert_eq!(status_code(&r), (405, "ContractDisabled".into()));
    let msg = r.error().unwrap().error.message;
    assert!(!msg.contains(&cp.id()) && !msg.contains("audit finding"), "{msg}");
    let r = open_session(c, "room", &"99".repeat(32), &pk).await;
    assert_eq!(status_code(&r), (403, "PolicyMismatch".into()));
    let r = session_with_nonce(c, "room", &host_data, &pk, "not-a-nonce").await;
    assert_eq!(status_code(&r), (400, "InvalidNonce".into()));
    ok(&cp, "POST", "/app/contracts/room/consent/execution/enable", None).await;
    assert_eq!(bearer(c, &token, "POST", "/app/contracts/room/secrets/db/release", None).await.status, 200);

    // A policy change: sessions admitted under the old policy are void.
    let widen = json!([{"name": "contracts.set_cleanroom_policy", "args": {"contract_id": "room", "type": "add", "claims": {"x-ms-sevsnpvm-hostdata": ["22".repeat(32)]}}}]);
    assert_eq!(decide(&everyone, widen).await, "Accepted");
    for (what, r) in uses(token.clone()).await {
        assert_eq!(status_code(&r), (401, "SessionInvalidated".into()), "{what}");
    }
    let s2 = open_session(c, "room", &host_data, &pk).await.ok_json().unwrap();
    let token2 = s2["token"].as_str().unwrap().to_string();
    assert_eq!(bearer(c, &token2, "GET", "/app/contracts/room/consent/execution", None).await.status, 200);

    // Revocation: off for good, for every session and every new one.
    let revoke = json!([{"name": "contracts.revoke_contract", "args": {"contract_id": "room"}}]);
    assert_eq!(decide(&everyone, revoke).await, "Accepted");
    for (what, r) in uses(token2).await {
        assert_eq!(status_code(&r), (405, "ContractRevoked".into()), "{what}");
    }
    let r = open_session(c, "room", &host_data, &pk).await;
    assert_eq!(status_code(&r), (405, "ContractRevoked".into()));
}

/// Item 4: a workload plugin approved by the members tries to read the host's secrets and other
/// governance tables by name: it gets none of them (and writes none), while what app plugins
/// need (members, proposals, …) stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malicious_plugin_cannot_read_governance_secrets() {
    let sb = Sandbox::start(&[]).await.unwrap();
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let everyone = [&isv, &dp, &cp];
    // Something to steal: a contract secret, OIDC keys, a user identity, an issuer.
    accepted_contract(&everyone, &isv, "room", json!({"data": {}})).await;
    ok(&isv, "PUT", "/app/contracts/room/secrets/db", Some(json!({"value": "hunter2"}))).await;
    let setup = json!([
        {"name": "oidc.enable_issuer", "args": {}},
        {"name": "set_jwt_issuer", "args": {"issuer": "https://idp.example", "audience": "cgs", "jwks": {"keys": []}}},
        {"name": "set_user_identity", "args": {"issuer": "https://idp.example", "subject": "alice"}},
    ]);
    assert_eq!(decide(&everyone, setup).await, "Accepted");

    // The ISV publishes `snoop`; the members approve it (as they would a plugin they did not
    // read closely enough).
    let dir = tempfile::tempdir().unwrap();
    let req = cgs_build::BuildRequest {
        workspace: cgs_e2e::workspace(),
        selection: cgs_build::Selection::Named(vec!["snoop".into()]),
        out_dir: Some(dir.path().to_path_buf()),
        quiet: true,
    };
    cgs_build::build(&req).unwrap();
    let bytes = std::fs::read(dir.path().join("snoop.wasm")).unwrap();
    let r = isv.authed("PUT", "/gov/blobs", Some(bytes)).await.unwrap().ok_json().unwrap();
    let hash = r["blake3"].as_str().unwrap().to_string();
    let set = json!([{"name": "set_plugin", "args": {"name": "snoop", "version": "0.1.0", "blake3": hash}}]);
    assert_eq!(decide(&everyone, set).await, "Accepted");

    let get = |path: String| {
        let c = sb.client.clone();
        async move { c.get(&path).await.unwrap() }
    };
    // Positive control: what app plugins need is readable.
    let members = get("/app/snoop/gov/members".into()).await;
    assert_eq!(members.status, 200, "{}", String::from_utf8_lossy(&members.body));
    assert_eq!(members.json().unwrap()["entries"].as_array().unwrap().len(), 3);
    assert_eq!(get("/app/snoop/gov/proposals".into()).await.status, 200);
    // The host's secrets and governance's confidential or node tables: refused, every one.
    for table in [
        "private.secrets",
        "private.oidc_keys",
        "private.anything",
        "user_identities",
        "jwt_issuers",
        "oidc",
        "envelopes",
        "blobs",
        "thresholds",
        "node_measurements",
        "recovery",
    ] {
        let r = get(format!("/app/snoop/gov/{table}")).await;
        assert_eq!(r.status, 403, "gov.{table}: {}", String::from_utf8_lossy(&r.body));
        assert!(!contains(&r.body, b"hunter2"));
    }
    // Nor through the cross-plugin namespace (`app.gov.…` is not another plugin), nor by writing.
    for path in ["/app/snoop/app/gov/private.secrets", "/app/snoop/app/gov/user_identities", "/app/snoop/app/sys/nodes"]
    {
        let r = get(path.into()).await;
        assert_eq!(r.status, 403, "{path}: {}", String::from_utf8_lossy(&r.body));
    }
    let r = sb.client.put_json("/app/snoop/gov/members", &json!({})).await.unwrap();
    assert_eq!(r.status, 403);
    let r = sb.client.put_json("/app/snoop/gov/private.secrets", &json!({})).await.unwrap();
    assert_eq!(r.status, 403);

    // What the host enforces for clean rooms is not the snoop's to say: with `room`'s policy set
    // and a member's kill switch on (through the consent plugin, as members do), the snoop's
    // attempts to widen the contract, replace its policy or turn the switch off are refused,
    // and a clean room of `room` is still turned away for the kill switch.
    let host_data = "11".repeat(32);
    let pol = json!([{"name": "contracts.set_cleanroom_policy", "args": {"contract_id": "room", "type": "add", "claims": {"x-ms-sevsnpvm-hostdata": [host_data]}}}]);
    assert_eq!(decide(&everyone, pol).await, "Accepted");
    ok(&dp, "POST", "/app/contracts/room/consent/execution/disable", Some(json!({"reason": "stop"}))).await;
    for (what, body) in [("contract", json!(null)), ("policy", json!(null)), ("kill-switch", json!(dp.id()))] {
        let r = sb.client.put_json(&format!("/app/snoop/cleanroom/{what}/room"), &body).await.unwrap();
        assert_eq!(r.status, 500, "{what}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json().unwrap()["error"]["code"], "CleanroomNotPermitted", "{what}");
    }
    for r in ["/gov/private.cleanroom_contracts", "/gov/private.cleanroom_policies", "/gov/private.kill_switches"] {
        let r = get(format!("/app/snoop{r}")).await;
        assert_eq!(r.status, 403, "the host's clean-room tables are not readable either");
    }
    let r = open_session(&sb.client, "room", &host_data, &[7u8; 32]).await;
    assert_eq!(r.status, 405, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().unwrap()["error"]["code"], "ContractDisabled");
}

/// Item 5: an ID token's subject and audience are governance's, not the clean room's; no token
/// (and no discovery document) before an issuer URL is set, whatever `Host` says; tokens never
/// outlive the session, carry a `jti`, say when the session's evidence was virtual; old signing
/// keys can be retired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_say_what_governance_decided() {
    let sb = Sandbox::start(&[]).await.unwrap();
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let everyone = [&isv, &dp, &cp];
    let host_data = "11".repeat(32);
    for id in ["a", "b"] {
        accepted_contract(&everyone, &isv, id, json!({"data": {}})).await;
        let pol = json!([{"name": "contracts.set_cleanroom_policy", "args": {"contract_id": id, "type": "add", "claims": {"x-ms-sevsnpvm-hostdata": [host_data]}}}]);
        assert_eq!(decide(&everyone, pol).await, "Accepted");
    }
    let c = &sb.client;
    let pk = [9u8; 32];
    let b = open_session(c, "b", &host_data, &pk).await.ok_json().unwrap();
    let b_token = b["token"].as_str().unwrap().to_string();

    // (Item 1.) A clean room of contract B presenting the same public key as A's clean room is
    // not A's session: it cannot read the receipts of what A's session wrote.
    let a = open_session(c, "a", &host_data, &pk).await.ok_json().unwrap();
    assert_ne!(a["session_id"], b["session_id"], "session ids are per admission, not per key");
    let a_token = a["token"].as_str().unwrap().to_string();
    let ev = bearer(c, &a_token, "POST", "/app/contracts/a/events", Some(json!({"secret": "of a"}))).await;
    assert_eq!(ev.status, 201);
    let tx = ev.header("x-cgs-tx-id").unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = bearer(c, &a_token, "GET", &format!("/node/receipt/{tx}"), None).await;
        if r.status == 200 {
            break;
        }
        assert!(r.status == 503 && Instant::now() < deadline, "{}", String::from_utf8_lossy(&r.body));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for path in [format!("/node/receipt/{tx}"), format!("/node/entry/{tx}")] {
        let r = bearer(c, &b_token, "GET", &path, None).await;
        assert_eq!(status_code(&r), (403, "NotAllowedToRead".into()), "{path}");
    }
    let ask = |body: Value| bearer(c, &b_token, "POST", "/app/contracts/b/oauth/token", Some(body));

    // Enabled, but no issuer URL: no token, no discovery — a spoofed Host header changes nothing.
    assert_eq!(decide(&everyone, json!([{"name": "oidc.enable_issuer", "args": {}}])).await, "Accepted");
    let r = ask(json!({"aud": "api://storage"})).await;
    assert_eq!(status_code(&r), (405, "IssuerUrlNotSet".into()));
    let r = c.request("GET", "/.well-known/openid-configuration", None, &[("host", "evil.example")]).await.unwrap();
    assert_eq!(status_code(&r), (405, "IssuerUrlNotSet".into()));
    assert!(!contains(&r.body, b"evil.example"));

    let setup = json!([
        {"name": "oidc.set_issuer_url", "args": {"url": "https://issuer.example"}},
        {"name": "oidc.set_audiences", "args": {"contract_id": "a", "audiences": ["api://a-storage"]}},
        {"name": "oidc.set_audiences", "args": {"contract_id": "b", "audiences": ["api://b-storage"]}},
    ]);
    assert_eq!(decide(&everyone, setup).await, "Accepted");
    // Contract B's clean room asks for A's subject or A's audience: refused.
    let r = ask(json!({"aud": "api://b-storage", "sub": "a"})).await;
    assert_eq!(status_code(&r), (403, "SubjectNotAllowed".into()));
    let r = ask(json!({"aud": "api://a-storage"})).await;
    assert_eq!(status_code(&r), (403, "AudienceNotAllowed".into()));
    // What it gets: B's subject and audience, a fresh jti, no later than the session's expiry.
    let first = ask(json!({"aud": "api://b-storage"})).await.ok_json().unwrap();
    let second = ask(json!({"aud": "api://b-storage"})).await.ok_json().unwrap();
    let claims = |t: &Value| -> Value {
        let payload = t["id_token"].as_str().unwrap().split('.').nth(1).unwrap().to_string();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    };
    let (c1, c2) = (claims(&first), claims(&second));
    assert_eq!(
        (c1["iss"].as_str(), c1["sub"].as_str(), c1["aud"].as_str()),
        (Some("https://issuer.example"), Some("b"), Some("api://b-storage"))
    );
    assert_ne!(c1["jti"], c2["jti"]);
    assert!(c1["exp"].as_u64().unwrap() <= b["expires_at"].as_u64().unwrap());
    assert_eq!(c1["x-cgs-insecure-attestation"], true);
    let disco = c.get("/.well-known/openid-configuration").await.unwrap().ok_json().unwrap();
    assert_eq!(disco["issuer"], "https://issuer.example");

    // Rotation, then retirement of the old key: it leaves the JWKS; the signing key cannot go.
    let old_kid = first["kid"].as_str().unwrap().to_string();
    assert_eq!(decide(&everyone, json!([{"name": "oidc.rotate_key", "args": {}}])).await, "Accepted");
    let new_kid = ask(json!({"aud": "api://b-storage"})).await.ok_json().unwrap()["kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, old_kid);
    let r = isv.propose(json!([{"name": "oidc.retire_key", "args": {"kid": new_kid}}])).await.unwrap();
    assert_eq!(status_code(&r), (405, "SigningKeyInUse".into()));
    assert_eq!(decide(&everyone, json!([{"name": "oidc.retire_key", "args": {"kid": old_kid}}])).await, "Accepted");
    let keys = c.get("/oidc/keys").await.unwrap().ok_json().unwrap();
    let kids: Vec<&str> = keys["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, vec![new_kid.as_str()]);
}

/// Item 6: a secret belongs to the member who put it; nobody else replaces or deletes it, and
/// nothing is accepted after revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_belong_to_the_member_who_put_them() {
    let sb = Sandbox::start(&[]).await.unwrap();
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let everyone = [&isv, &dp, &cp];
    accepted_contract(&everyone, &isv, "room", json!({"data": {}})).await;
    ok(&dp, "PUT", "/app/contracts/room/secrets/storage-key", Some(json!({"value": "dp-key"}))).await;
    // Another collaborator tries to overwrite it, or delete it.
    let r = call(&isv, "PUT", "/app/contracts/room/secrets/storage-key", Some(json!({"value": "attacker"}))).await;
    assert_eq!(status_code(&r), (403, "NotSecretOwner".into()));
    assert!(r.error().unwrap().error.message.contains(&dp.id()));
    let r = call(&cp, "DELETE", "/app/contracts/room/secrets/storage-key", None).await;
    assert_eq!(status_code(&r), (403, "NotSecretOwner".into()));
    // The owner replaces and deletes it; then it is gone.
    ok(&dp, "PUT", "/app/contracts/room/secrets/storage-key", Some(json!({"value": "dp-key-2"}))).await;
    ok(&dp, "DELETE", "/app/contracts/room/secrets/storage-key", None).await;
    let r = call(&dp, "DELETE", "/app/contracts/room/secrets/storage-key", None).await;
    assert_eq!(status_code(&r), (404, "SecretNotFound".into()));
    ok(&dp, "PUT", "/app/contracts/room/secrets/other", Some(json!({"value": "v"}))).await;
    // After revocation nothing new is accepted, not even from the owner; the owner may still
    // withdraw theirs (finding M9), nobody else.
    let revoke = json!([{"name": "contracts.revoke_contract", "args": {"contract_id": "room"}}]);
    assert_eq!(decide(&everyone, revoke).await, "Accepted");
    let late = Some(json!({"value": "late"}));
    let r = call(&dp, "PUT", "/app/contracts/room/secrets/other", late.clone()).await;
    assert_eq!(status_code(&r), (405, "ContractRevoked".into()));
    let r = call(&dp, "PUT", "/app/contracts/room/secrets/new", late).await;
    assert_eq!(status_code(&r), (405, "ContractRevoked".into()));
    let r = call(&isv, "DELETE", "/app/contracts/room/secrets/other", None).await;
    assert_eq!(status_code(&r), (403, "NotSecretOwner".into()));
    ok(&dp, "DELETE", "/app/contracts/room/secrets/other", None).await;
    let r = call(&dp, "DELETE", "/app/contracts/room/secrets/other", None).await;
    assert_eq!(status_code(&r), (404, "SecretNotFound".into()));
}

/// Item 9: an invited member (Accepted, not yet acked) logs in and may read and ack — nothing
/// else: no contracts, no blobs, no secrets, no proposals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invited_members_only_read_and_ack_until_they_ack() {
    let sb = Sandbox::start(&[]).await.unwrap();
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let everyone = [&isv, &dp, &cp];
    accepted_contract(&everyone, &isv, "room", json!({"data": {}})).await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[33; 32]);
    let pem = cgs_core::gov::verifying_key_to_pem(&key.verifying_key());
    let add = json!([{"name": "set_member", "args": {"public_key": pem, "member_data": {"name": "newcomer"}}}]);
    assert_eq!(decide(&everyone, add).await, "Accepted");
    let newcomer = Member::from_key(sb.client.clone(), key);
    let me = ok(&newcomer, "GET", &format!("/gov/members/{}", newcomer.id()), None).await;
    assert_eq!(me["status"], "Accepted", "it may log in and read");
    assert_eq!(call(&newcomer, "GET", "/app/contracts", None).await.status, 200);
    for (method, path, body) in [
        ("PUT", "/app/contracts/mine", Some(json!({"data": {}}))),
        ("PUT", "/app/contracts/room/secrets/s", Some(json!({"value": "v"}))),
        ("POST", "/app/contracts/room/consent/execution/disable", None),
    ] {
        let r = call(&newcomer, method, path, body).await;
        assert_eq!(status_code(&r), (403, "MemberNotActive".into()), "{method} {path}");
    }
    let r = newcomer.authed("PUT", "/gov/blobs", Some(b"\0asm blob".to_vec())).await.unwrap();
    assert_eq!(status_code(&r), (403, "MemberNotActive".into()));
    let r = newcomer.propose(json!([{"name": "transition_service_to_open", "args": {}}])).await.unwrap();
    assert_eq!(status_code(&r), (403, "MemberNotActive".into()));
    // Once it acks, it acts.
    newcomer.ack().await.unwrap().ok().unwrap();
    let r = call(&newcomer, "PUT", "/app/contracts/mine", Some(json!({"data": {}}))).await;
    assert_eq!(r.status, 201);
}

/// Item 10: the smaller holes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonces_issuers_policies_and_virtual_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut sb = Sandbox::start_in(&data, &["--max-nonces", "20", "--jwks-url-allow", "https://idp.example/tenant"])
        .await
        .unwrap();
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let everyone = [&isv, &dp, &cp];
    let host_data = "11".repeat(32);
    for id in ["a", "b"] {
        accepted_contract(&everyone, &isv, id, json!({"data": {}})).await;
        let pol = json!([{"name": "contracts.set_cleanroom_policy", "args": {"contract_id": id, "type": "add", "claims": {"x-ms-sevsnpvm-hostdata": [host_data]}}}]);
        assert_eq!(decide(&everyone, pol).await, "Accepted");
    }
    let c = &sb.client;

    // Nonces are bound to their contract: one asked for A does not open a session of B.
    let r = c.get("/cleanroom/nonce").await.unwrap();
    assert_eq!(status_code(&r), (400, "MissingParameter".into()));
    let nonce = c.get("/cleanroom/nonce?contract_id=a").await.unwrap().ok_json().unwrap()["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    let r = session_with_nonce(c, "b", &host_data, &[1; 32], &nonce).await;
    assert_eq!(status_code(&r), (400, "InvalidNonce".into()));
    // …and capped: flooding the nonce route stops at the cap with a clear 503.
    let mut refused = None;
    for i in 0..40 {
        let r = c.get("/cleanroom/nonce?contract_id=a").await.unwrap();
        if r.status != 200 {
            refused = Some((i, status_code(&r), r.header("retry-after").map(str::to_string)));
            break;
        }
    }
    let (at, status, retry) = refused.expect("the nonce store is capped");
    assert_eq!(status, (503, "ServiceBusy".into()));
    assert!(at <= 20 && retry.is_some(), "refused after {at}");

    // A JWT issuer without an audience is refused.
    let r = isv
        .propose(json!([{"name": "set_jwt_issuer", "args": {"issuer": "https://idp.example", "jwks": {"keys": []}}}]))
        .await
        .unwrap();
    assert_eq!(status_code(&r), (400, "InvalidActionArgs".into()));
    assert!(r.error().unwrap().error.message.contains("audience"));
    // The JWKS allow-list is not a string prefix: `/tenant` does not admit `/tenant2` nor a
    // look-alike host (such URLs are never fetched; the user is told why).
    let idp = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    for (issuer, url) in [
        ("https://idp.example", "https://idp.example/tenant2/keys"),
        ("https://idp2.example", "https://idp.example.evil.net/tenant/keys"),
    ] {
        let reg = json!([
            {"name": "set_jwt_issuer", "args": {"issuer": issuer, "audience": "cgs", "jwks_url": url}},
            {"name": "set_user_identity", "args": {"issuer": issuer, "subject": "alice"}},
        ]);
        assert_eq!(decide(&everyone, reg).await, "Accepted");
        let token = user_token(&idp, issuer, "alice");
        let r = bearer(c, &token, "GET", "/app/contracts", None).await;
        assert_eq!(r.status, 401);
        assert!(r.error().unwrap().error.message.contains("--jwks-url-allow"), "{url}");
    }
    // Removing a claim's last values would drop the constraint: refused.
    let loosen = json!([{"name": "contracts.set_cleanroom_policy", "args": {"contract_id": "a", "type": "remove", "claims": {"x-ms-sevsnpvm-hostdata": [host_data]}}}]);
    let r = isv.propose(loosen).await.unwrap();
    assert_eq!(status_code(&r), (400, "PolicyWouldLoosen".into()));

    // Whether virtual evidence is accepted is the service's, decided at creation, not the
    // subcommand's: the sandbox's data directory started with `start` still says (and does) so.
    assert!(sb.terminate().unwrap().success());
    let args: Vec<std::ffi::OsString> = vec![
        "start".into(),
        "--dir".into(),
        data.clone().into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--log".into(),
        "warn".into(),
    ];
    let mut sb = Sandbox::spawn(&data, &args).await.unwrap();
    let service = sb.client.get("/gov/service").await.unwrap().ok_json().unwrap();
    assert_eq!(service["insecure_virtual_attestation"], true);
    let r = open_session(&sb.client, "a", &host_data, &[1; 32]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().unwrap()["insecure"], true);

    // `cgs ledger verify` without a pinned key says loudly what it trusts.
    let data_copy = tmp.path().join("copy");
    std::fs::create_dir_all(&data_copy).unwrap();
    assert!(sb.terminate().unwrap().success());
    std::fs::copy(
        data.join(cgs_ledger_format::store_format::FILE_NAME),
        data_copy.join(cgs_ledger_format::store_format::FILE_NAME),
    )
    .unwrap();
    let out = std::process::Command::new(&cgs_e2e::binaries().cli)
        .args(["ledger", "verify", data_copy.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stderr.contains("WARNING") && stderr.contains("recorded in this ledger itself"), "{stderr}");
    assert!(stdout.contains("UNPINNED"), "{stdout}");
}

fn user_token(key: &ed25519_dalek::SigningKey, iss: &str, sub: &str) -> String {
    use ed25519_dalek::Signer;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"});
    let claims = json!({"iss": iss, "sub": sub, "aud": "cgs", "exp": exp});
    let input = format!("{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()));
    format!("{input}.{}", b64.encode(key.sign(input.as_bytes()).to_bytes()))
}

/// Item 11: member keys written by `cgs keygen` (and the sandbox) are PKCS#8 v1, which OpenSSL
/// 3.0 and Python's `cryptography` read; keys in the older v2 form still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_key_files_interoperate() {
    let sb = Sandbox::start(&[]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("auditor");
    let (ok_, _, err) = sb.cli(None, &["keygen", "--out", prefix.to_str().unwrap()]);
    assert!(ok_, "{err}");
    let sandbox_key = sb.data.join("members").join("isv.key");
    for key in [prefix.with_extension("key"), sandbox_key.clone()] {
        let pem = std::fs::read_to_string(&key).unwrap();
        let der = B64.decode(pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>()).unwrap();
        assert_eq!(der.len(), 48, "{}: RFC 8410 PKCS#8 v1 is 48 bytes", key.display());
        assert_eq!(&der[..7], &[0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05], "version 0 (v1)");
        openssl_reads(&key);
        python_reads(&key);
    }
    // A key in the v2 form (with the public key) still signs in.
    let v2 = {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let k = cgs_core::gov::signing_key_from_pem(&std::fs::read_to_string(&sandbox_key).unwrap()).unwrap();
        k.to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF).unwrap().to_string()
    };
    let v2_path = tmp.path().join("isv-v2.key");
    std::fs::write(&v2_path, v2).unwrap();
    let (ok_, out, err) = sb.cli(Some(&v2_path), &["member", "list"]);
    assert!(ok_, "{out}{err}");
}

fn openssl_reads(key: &Path) {
    match std::process::Command::new("openssl").args(["pkey", "-in"]).arg(key).arg("-noout").output() {
        Ok(out) => assert!(
            out.status.success(),
            "openssl pkey refuses {}: {}",
            key.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => println!("skipped: openssl is not installed"),
    }
}

fn python_reads(key: &Path) {
    let script = "import sys\nfrom cryptography.hazmat.primitives.serialization import load_pem_private_key\n\
                  load_pem_private_key(open(sys.argv[1],'rb').read(), None)\n";
    let probe = std::process::Command::new("python3").args(["-c", "import cryptography"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!("skipped: python3 with `cryptography` is not installed");
        return;
    }
    let out = std::process::Command::new("python3").args(["-c", script]).arg(key).output().unwrap();
    assert!(out.status.success(), "cryptography refuses {}: {}", key.display(), String::from_utf8_lossy(&out.stderr));
}
