//! A multi-party collaboration end to end: three members draft, amend, propose (rejected, then
//! accepted) a contract, accept a deployment spec and a clean-room policy; a clean-room caller
//! checks consent and records events; a registered user reads them; receipts verify offline;
//! kill switches and logging consent behave as documented; authorization is per contract.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use cgs_client::Member;
use cgs_e2e::{Sandbox, code};
use ed25519_dalek::Signer;
use serde_json::{Value, json};

async fn call(m: &Member, method: &str, path: &str, body: Option<Value>) -> cgs_client::ApiResponse {
    let r = m.authed(method, path, body.map(|b| b.to_string().into_bytes())).await.unwrap();
    cgs_e2e::record_answer(m.client.url(), method, path, &r);
    r
}

async fn ok(m: &Member, method: &str, path: &str, body: Option<Value>) -> Value {
    let r = call(m, method, path, body).await;
    assert!(r.status < 300, "{method} {path}: {} {}", r.status, String::from_utf8_lossy(&r.body));
    r.json().unwrap_or(Value::Null)
}

/// Propose `actions` as `proposer`, then have `voters` cast `votes` in order; returns the
/// proposal id and its final state.
async fn decide(proposer: &Member, actions: Value, voters: &[(&Member, bool)]) -> (String, String) {
    let r = proposer.propose(actions).await.unwrap().ok_json().unwrap();
    let id = r["proposal_id"].as_str().unwrap().to_string();
    let mut state = r["state"].as_str().unwrap().to_string();
    for (m, approve) in voters {
        if state != "Open" {
            break;
        }
        state = m.vote(&id, *approve).await.unwrap().ok_json().unwrap()["state"].as_str().unwrap().to_string();
    }
    (id, state)
}

fn user_token(key: &ed25519_dalek::SigningKey, iss: &str, sub: &str) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"});
    let claims = json!({"iss": iss, "sub": sub, "aud": "cgs", "exp": exp});
    let input = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
    format!("{input}.{}", B64URL.encode(key.sign(input.as_bytes()).to_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_collaborate_on_a_clean_room() {
    let sb = Sandbox::start(&[]).await.unwrap();
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let key = |name: &str| sb.data.join("members").join(format!("{name}.key"));
    let all = [isv.id(), dp.id(), cp.id()];

    // Draft (through the CLI) and amend; a stale amend gets 412.
    let parties = ["--collaborator", &all[1], "--collaborator", &all[2], "--user", "https://idp.example|analyst"];
    let mut args = vec!["--json", "contract", "create", "collab", "--data", r#"{"purpose":"joint analytics"}"#];
    args.extend(parties);
    let (okay, out, err) = sb.cli(Some(&key("isv")), &args);
    assert!(okay, "{err}");
    let v1 = serde_json::from_str::<Value>(&out).unwrap()["tx_id"].as_str().unwrap().to_string();
    let amended = ok(&dp, "PUT", "/app/contracts/collab", Some(json!({"version": v1, "data": {"purpose": "joint analytics", "rows": 1000}, "collaborators": all, "users": ["https://idp.example|analyst"]}))).await;
    let v2 = amended["tx_id"].as_str().unwrap().to_string();
    let stale = call(&cp, "PUT", "/app/contracts/collab", Some(json!({"version": v1, "data": {}}))).await;
    assert_eq!((stale.status, code(&stale).as_str()), (412, "PreconditionFailed"));
    let c = ok(&cp, "GET", "/app/contracts/collab", None).await;
    assert_eq!((c["state"].as_str(), c["version"].as_str()), (Some("Draft"), Some(v2.as_str())));
    assert_eq!(c["data"]["rows"], 1000);

    // Proposed; one member rejects and it is Rejected (back to Draft); re-proposed and accepted.
    let set = json!([{"name": "contracts.set_contract", "args": {"contract_id": "collab", "version": v2}}]);
    let (p1, state) = decide(&isv, set.clone(), &[]).await;
    assert_eq!(state, "Open");
    assert_eq!(ok(&dp, "GET", "/app/contracts/collab", None).await["state"], "Proposed");
    let listed = ok(&dp, "GET", "/app/contracts?state=Proposed", None).await;
    assert_eq!(listed["value"][0]["id"], "collab");
    // (Signed messages are deterministic: another member proposes, or it would be a replay.)
    let again = dp.propose(set.clone()).await.unwrap();
    assert_eq!((again.status, code(&again).as_str()), (409, "ContractAlreadyProposed"));
    let amend = call(&dp, "PUT", "/app/contracts/collab", Some(json!({"version": v2, "data": {}}))).await;
    assert_eq!((amend.status, code(&amend).as_str()), (405, "ContractAlreadyProposed"));
    let state = dp.vote(&p1, false).await.unwrap().ok_json().unwrap()["state"].as_str().unwrap().to_string();
    assert_eq!(state, "Rejected");
    assert_eq!(ok(&dp, "GET", "/app/contracts/collab", None).await["state"], "Draft");
    let (p2, state) = decide(&cp, set, &[(&isv, true), (&dp, true), (&cp, true)]).await;
    assert_eq!(state, "Accepted");
    let c = ok(&cp, "GET", "/app/contracts/collab", None).await;
    assert_eq!((c["state"].as_str(), c["proposal_id"].as_str()), (Some("Accepted"), Some(p2.as_str())));
    let votes = c["final_votes"].as_array().unwrap();
    assert_eq!(votes.len(), 3);
    assert!(
        votes.iter().all(|v| v["vote"] == "approve" && all.contains(&v["member_id"].as_str().unwrap().to_string()))
    );
    let frozen = call(&isv, "PUT", "/app/contracts/collab", Some(json!({"version": c["version"], "data": {}}))).await;
    assert_eq!((frozen.status, code(&frozen).as_str()), (405, "ContractAlreadyAccepted"));

    // Deployment spec and clean-room policy, each by proposal.
    let everyone = [(&isv, true), (&dp, true), (&cp, true)];
    let spec = json!({"image": "registry.example/analytics@sha256:abcd", "replicas": 2});
    let (_, state) = decide(
        &cp,
        json!([{"name": "contracts.set_deployment_spec", "args": {"contract_id": "collab", "data": spec}}]),
        &everyone,
    )
    .await;
    assert_eq!(state, "Accepted");
    assert_eq!(ok(&dp, "GET", "/app/contracts/collab/deployment-spec", None).await["data"], spec);
    let (okay, _, err) = sb.cli(
        Some(&key("isv")),
        &[
            "policy",
            "propose",
            "collab",
            "--add",
            "--claim",
            "x-ms-sevsnpvm-hostdata=aa11",
            "--claim",
            "x-ms-sevsnpvm-hostdata=bb22",
            "--claim",
            "x-ms-sevsnpvm-is-debuggable=false",
        ],
    );
    assert!(okay, "{err}");
    let open = ok(&isv, "GET", "/app/contracts/collab/cleanroom-policy", None).await;
    let pol = open["proposal_ids"][0].as_str().unwrap().to_string();
    for m in [&isv, &dp, &cp] {
        m.vote(&pol, true).await.unwrap().ok_json().unwrap();
    }
    let (_, state) = decide(&dp, json!([{"name": "contracts.set_cleanroom_policy", "args": {"contract_id": "collab", "type": "remove", "claims": {"x-ms-sevsnpvm-hostdata": ["bb22", "not-there"]}}}]), &everyone).await;
    assert_eq!(state, "Accepted", "removing an absent value is a no-op, not an error");
    let policy = ok(&cp, "GET", "/app/contracts/collab/cleanroom-policy", None).await;
    assert_eq!(policy["policy"], json!({"x-ms-sevsnpvm-hostdata": ["aa11"], "x-ms-sevsnpvm-is-debuggable": [false]}));

    // A registered user of a trusted issuer reads what the contract names them in.
    let idp = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": B64URL.encode(idp.verifying_key().as_bytes())});
    let (_, state) = decide(&isv, json!([
        {"name": "set_jwt_issuer", "args": {"issuer": "https://idp.example", "jwks": {"keys": [jwk]}, "audience": "cgs"}},
        {"name": "set_user_identity", "args": {"issuer": "https://idp.example", "subject": "analyst"}},
        {"name": "set_user_identity", "args": {"issuer": "https://idp.example", "subject": "outsider"}},
    ]), &everyone).await;
    assert_eq!(state, "Accepted");
    let as_user = |sub: &str, path: &str| {
        let auth = format!("Bearer {}", user_token(&idp, "https://idp.example", sub));
        let client = sb.client.clone();
        let path = path.to_string();
        async move { client.request("GET", &path, None, &[("authorization", auth.as_str())]).await.unwrap() }
    };
    let r = as_user("analyst", "/app/contracts/collab").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(as_user("analyst", "/gov/members").await.status, 200, "users read the member list");
    let r = as_user("analyst", "/gov/proposals").await;
    assert_eq!((r.status, code(&r).as_str()), (403, "CallerKindNotAllowed"), "proposals are for members");
    let r = as_user("outsider", "/app/contracts/collab").await;
    assert_eq!((r.status, code(&r).as_str()), (403, "NotAContractParty"));
    let r = as_user("stranger", "/app/contracts/collab").await;
    assert_eq!((r.status, code(&r).as_str()), (401, "InvalidCredentials"), "an unregistered identity");
    let forged = ed25519_dalek::SigningKey::from_bytes(&[43; 32]);
    let auth = format!("Bearer {}", user_token(&forged, "https://idp.example", "analyst"));
    let r = sb.client.request("GET", "/app/contracts/collab", None, &[("authorization", auth.as_str())]).await.unwrap();
    assert_eq!((r.status, code(&r).as_str()), (401, "InvalidCredentials"), "a key the issuer does not publish");

    // The clean-room caller (a member token until attested sessions exist): consent, four events.
    assert_eq!(ok(&cp, "GET", "/app/contracts/collab/consent/execution", None).await["status"], "enabled");
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let mut written = Vec::new();
    for (i, scope) in ["train", "train", "score", "train"].iter().enumerate() {
        let r = ok(
            &cp,
            "POST",
            &format!("/app/contracts/collab/events?scope={scope}&id=run-1"),
            Some(json!({"step": i, "timestamp": 1})),
        )
        .await;
        assert!(r["timestamp"].as_u64().unwrap() >= before, "the leader's time, not the client's");
        written.push((r["seqno"].as_u64().unwrap(), r["tx_id"].as_str().unwrap().to_string()));
    }
    assert!(written.windows(2).all(|w| w[0].0 < w[1].0));
    // Read back in order, two per page, following next_link (as the user).
    let mut seen = Vec::new();
    let mut next = Some("/app/contracts/collab/events?limit=2".to_string());
    let mut pages = 0;
    while let Some(path) = next {
        let page: Value = as_user("analyst", &path).await.ok_json().unwrap();
        pages += 1;
        for e in page["value"].as_array().unwrap() {
            seen.push((e["seqno"].as_u64().unwrap(), e["tx_id"].as_str().unwrap().to_string()));
            assert_eq!(e["data"]["step"], seen.len() - 1);
        }
        next = page["next_link"].as_str().map(str::to_string);
    }
    assert_eq!(seen, written);
    assert!(pages >= 2);
    let newest = ok(&isv, "GET", "/app/contracts/collab/events?order=desc&limit=1", None).await;
    assert_eq!(newest["value"][0]["seqno"], written[3].0);
    let scoped = ok(&isv, "GET", "/app/contracts/collab/events?scope=score", None).await;
    assert_eq!(scoped["value"].as_array().unwrap().len(), 1);
    assert_eq!(scoped["value"][0]["seqno"], written[2].0);

    // A receipt for one event verifies offline against the node's key.
    let node_key = sb.verifier_key().await.unwrap();
    let file = sb.data.parent().unwrap().join("event.receipt");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Receipts are for the contract's parties: the CLI signs in with a collaborator's key.
        let key = sb.data.join("members").join("isv.key");
        let (okay, _, err) = sb.cli(Some(&key), &["receipt", "get", &written[1].1, "-o", file.to_str().unwrap()]);
        if okay {
            break;
        }
        assert!(err.contains("NotReady") && Instant::now() < deadline, "{err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (okay, out, err) = sb.cli(None, &["receipt", "verify", file.to_str().unwrap(), "--node-key", &node_key]);
    assert!(okay && out.contains(&written[1].1), "{out}{err}");

    // A member's kill switch: the next check is disabled and names them; lifting it re-enables.
    let (okay, _, err) =
        sb.cli(Some(&key("data-provider")), &["consent", "disable", "collab", "--reason", "audit pending"]);
    assert!(okay, "{err}");
    let s = ok(&cp, "GET", "/app/contracts/collab/consent/execution", None).await;
    assert_eq!((s["status"].as_str(), s["reason"]["code"].as_str()), (Some("disabled"), Some("ContractDisabled")));
    let msg = s["reason"]["message"].as_str().unwrap();
    assert!(msg.contains(&all[1]) && msg.contains("data-provider") && msg.contains("audit pending"), "{msg}");
    ok(&isv, "POST", "/app/contracts/collab/consent/execution/enable", None).await;
    assert_eq!(
        ok(&cp, "GET", "/app/contracts/collab/consent/execution", None).await["status"],
        "disabled",
        "only its owner lifts a switch"
    );
    ok(&dp, "POST", "/app/contracts/collab/consent/execution/enable", None).await;
    assert_eq!(ok(&cp, "GET", "/app/contracts/collab/consent/execution", None).await["status"], "enabled");

    // Logging: enabled by proposal, then disabled by one member without a vote.
    let logging = |name: &str| json!([{"name": name, "args": {"contract_id": "collab"}}]);
    assert_eq!(ok(&cp, "GET", "/app/contracts/collab/consent/logging", None).await["status"], "disabled");
    let (p_log, state) = decide(&isv, logging("consent.enable_logging"), &[(&isv, true), (&dp, true)]).await;
    assert_eq!(state, "Open", "enabling needs every voter");
    let open = ok(&isv, "GET", "/app/contracts/collab/consent-proposals", None).await;
    assert!(open.to_string().contains(&p_log), "the open logging proposal is listed: {open}");
    let state = cp.vote(&p_log, true).await.unwrap().ok_json().unwrap()["state"].as_str().unwrap().to_string();
    assert_eq!(state, "Accepted");
    assert_eq!(ok(&cp, "GET", "/app/contracts/collab/consent/logging", None).await["status"], "enabled");
    let (_, state) = decide(&cp, logging("consent.disable_logging"), &[]).await;
    assert_eq!(state, "Accepted", "withdrawing consent needs no votes");
    let s = ok(&isv, "GET", "/app/contracts/collab/consent/logging", None).await;
    assert_eq!((s["status"].as_str(), s["reason"]["code"].as_str()), (Some("disabled"), Some("LoggingDisabled")));

    // Authorization is per contract: a party to `collab` is not a party to `private`.
    ok(&isv, "PUT", "/app/contracts/private", Some(json!({"data": {}, "collaborators": [all[0]]}))).await;
    for path in ["/app/contracts/private", "/app/contracts/private/consent/execution", "/app/contracts/private/events"]
    {
        let r = call(&dp, "GET", path, None).await;
        assert_eq!((r.status, code(&r).as_str()), (403, "NotAContractParty"), "{path}");
        let r = as_user("analyst", path).await;
        assert_eq!((r.status, code(&r).as_str()), (403, "NotAContractParty"), "{path}");
    }
    let mine = ok(&dp, "GET", "/app/contracts", None).await;
    assert_eq!(mine["value"].as_array().unwrap().len(), 1, "the list holds only contracts the caller is a party to");

    // Revoked: execution is off for good.
    let (_, state) =
        decide(&dp, json!([{"name": "contracts.revoke_contract", "args": {"contract_id": "collab"}}]), &everyone).await;
    assert_eq!(state, "Accepted");
    let s = ok(&cp, "GET", "/app/contracts/collab/consent/execution", None).await;
    assert_eq!(s["reason"]["code"], "ContractRevoked");
    let r = call(&dp, "POST", "/app/contracts/collab/consent/execution/enable", None).await;
    assert_eq!((r.status, code(&r).as_str()), (405, "ContractRevoked"));

    // Every success answer above matches the schema its plugin describes in /openapi.json, and
    // every route the service plugins describe was among them.
    if let Some(checked) = cgs_e2e::check_answers_against_openapi(&sb.client).await {
        let doc = sb.client.get("/openapi.json").await.unwrap().ok_json().unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let plugin = op["tags"][0].as_str().unwrap_or_default();
                if ["contracts", "consent", "audit"].contains(&plugin) {
                    let key = format!("{} {path}", method.to_uppercase());
                    assert!(op["responses"].as_object().unwrap().keys().any(|s| s.starts_with('2')), "{key}");
                    assert!(checked.contains(&key), "{key} was checked against a real answer; checked: {checked:?}");
                }
            }
        }
    }
}
