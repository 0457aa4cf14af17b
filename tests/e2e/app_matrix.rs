//! A negative matrix over every clean-room route under `/app` and the contract governance
//! actions: bad JSON, missing and unknown fields, oversize bodies, unknown and foreign contracts,
//! anonymous callers, bad ids and query values, and state errors each answer the documented
//! status and code in the error envelope — never a 500. Every row runs; all mismatches are
//! reported together.

use cgs_client::{ApiResponse, ClientError, Member};
use cgs_e2e::{Sandbox, code};
use serde_json::{Value, json};

/// One byte over the 1 MiB body limit.
const OVERSIZE: usize = (1 << 20) + 1;
/// A contract that does not exist.
const UNKNOWN: &str = "no-such-contract";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Isv,
    DataProvider,
    CodeProvider,
}

/// One request and the error it must get.
struct Row {
    what: String,
    who: Who,
    method: &'static str,
    path: String,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
}

fn row(
    what: impl Into<String>,
    who: Who,
    method: &'static str,
    path: impl Into<String>,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Row {
    Row { what: what.into(), who, method, path: path.into(), body, status, code }
}

/// One governance proposal and the error its creation must get.
struct GovRow {
    what: &'static str,
    who: Who,
    actions: Value,
    status: u16,
    code: &'static str,
}

struct Members {
    isv: Member,
    dp: Member,
    cp: Member,
}

impl Members {
    fn get(&self, who: Who) -> Option<&Member> {
        match who {
            Who::Anonymous => None,
            Who::Isv => Some(&self.isv),
            Who::DataProvider => Some(&self.dp),
            Who::CodeProvider => Some(&self.cp),
        }
    }
}

async fn send(
    sb: &Sandbox,
    m: &Members,
    who: Who,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<ApiResponse, ClientError> {
    match m.get(who) {
        Some(member) => member.authed(method, path, body).await,
        None => sb.client.request(method, path, body, &[]).await,
    }
}

fn j(v: Value) -> Option<Vec<u8>> {
    Some(v.to_string().into_bytes())
}

fn raw(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

/// `v` with `key` set to a string that makes the whole document exactly [`OVERSIZE`] bytes: a
/// request that would be valid if it were not too large.
fn padded(mut v: Value, key: &str) -> Vec<u8> {
    v[key] = Value::String(String::new());
    let base = v.to_string().len();
    v[key] = Value::String("x".repeat(OVERSIZE - base));
    let b = v.to_string().into_bytes();
    assert_eq!(b.len(), OVERSIZE);
    b
}

fn body_text(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    if body.len() > 300 { format!("{s}…") } else { s }
}

/// Compare an answer with the expected error; `None` when it matches and carries the envelope.
fn mismatch(request: &str, r: &Result<ApiResponse, ClientError>, status: u16, expected_code: &str) -> Option<String> {
    let r = match r {
        Ok(r) => r,
        Err(e) => return Some(format!("{request}: expected {status} {expected_code}, got a client error: {e}")),
    };
    let got = code(r);
    let body = body_text(&r.body);
    if r.status != status || got != expected_code {
        return Some(format!("{request}: expected {status} {expected_code}, got {} {got}; body: {body}", r.status));
    }
    // The envelope: {"error":{"code","message"}}, JSON, a non-empty message.
    let v: Value = match serde_json::from_slice(&r.body) {
        Ok(v) => v,
        Err(e) => return Some(format!("{request}: the error body is not JSON ({e}): {body}")),
    };
    let message = v["error"]["message"].as_str().unwrap_or_default();
    if v["error"]["code"].as_str() != Some(expected_code) || message.trim().is_empty() {
        return Some(format!("{request}: the error envelope lacks a code or a non-empty message: {body}"));
    }
    if !r.header("content-type").is_some_and(|t| t.starts_with("application/json")) {
        return Some(format!(
            "{request}: the error has content-type {:?}, not application/json",
            r.header("content-type")
        ));
    }
    None
}

async fn run_rows(sb: &Sandbox, m: &Members, rows: Vec<Row>, problems: &mut Vec<String>) -> usize {
    let n = rows.len();
    for r in rows {
        let request = format!(
            "[{}] {} {} as {:?} (body: {})",
            r.what,
            r.method,
            r.path,
            r.who,
            r.body.as_deref().map_or_else(|| "none".to_string(), |b| format!("{} bytes: {}", b.len(), body_text(b)))
        );
        let got = send(sb, m, r.who, r.method, &r.path, r.body).await;
        problems.extend(mismatch(&request, &got, r.status, r.code));
    }
    n
}

async fn run_gov_rows(m: &Members, rows: Vec<GovRow>, problems: &mut Vec<String>) -> usize {
    let n = rows.len();
    for r in rows {
        let request = format!("[{}] proposal by {:?}: {}", r.what, r.who, r.actions);
        let Some(member) = m.get(r.who) else {
            problems.push(format!("{request}: governance rows need a member"));
            continue;
        };
        let got = member.propose(r.actions).await;
        problems.extend(mismatch(&request, &got, r.status, r.code));
    }
    n
}

/// Propose `actions` as `proposer`, then have `voters` approve in order while it is open; returns
/// the proposal id and its last state.
async fn decide(proposer: &Member, actions: Value, voters: &[&Member]) -> (String, String) {
    let p = proposer.propose(actions).await.unwrap().ok_json().unwrap();
    let id = p["proposal_id"].as_str().unwrap().to_string();
    let mut state = p["state"].as_str().unwrap().to_string();
    for m in voters {
        if state != "Open" {
            break;
        }
        state = m.vote(&id, true).await.unwrap().ok_json().unwrap()["state"].as_str().unwrap().to_string();
    }
    (id, state)
}

async fn version(m: &Member, id: &str) -> String {
    let c = m.authed("GET", &format!("/app/contracts/{id}"), None).await.unwrap().ok_json().unwrap();
    c["version"].as_str().unwrap().to_string()
}

/// What the valid request body of a route is.
#[derive(Clone, Copy)]
enum Body {
    /// None.
    Empty,
    /// `{"version", "data"}`.
    Put,
    /// Any JSON document.
    Event,
    /// Optional `{"reason"}`.
    Consent,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_app_route_refuses_bad_input_with_documented_codes() {
    let sb = Sandbox::start(&[]).await.unwrap();
    let m = Members { isv: sb.member("isv"), dp: sb.member("data-provider"), cp: sb.member("code-provider") };
    let (isv_id, dp_id) = (m.isv.id(), m.dp.id());
    use Who::{Anonymous, CodeProvider, DataProvider, Isv};

    // Contract "a" (isv + data-provider) becomes Accepted; contract "b" (isv only) stays Draft,
    // amended once so that its first version is stale.
    let r = m
        .isv
        .authed("PUT", "/app/contracts/a", j(json!({"data": {"x": 1}, "collaborators": [isv_id, dp_id]})))
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", body_text(&r.body));
    let r = m.isv.authed("PUT", "/app/contracts/b", j(json!({"data": {}, "collaborators": [isv_id]}))).await.unwrap();
    assert_eq!(r.status, 201, "{}", body_text(&r.body));
    let vb_stale = version(&m.isv, "b").await;
    let amend = json!({"version": vb_stale, "data": {"rev": 2}, "collaborators": [isv_id]});
    let r = m.isv.authed("PUT", "/app/contracts/b", j(amend)).await.unwrap();
    assert_eq!(r.status, 200, "{}", body_text(&r.body));
    let vb = version(&m.isv, "b").await;
    assert_ne!(vb, vb_stale);

    // All three approve "a", the proposer first. Should the deciding ballot of a member who is no
    // party of "a" fail the apply, that is recorded as a mismatch, and "a" is accepted with a
    // party's deciding ballot so that the matrix still runs.
    let mut problems = Vec::new();
    let va0 = version(&m.isv, "a").await;
    let set_a = json!([{"name": "contracts.set_contract", "args": {"contract_id": "a", "version": va0}}]);
    let (pid, state) = decide(&m.isv, set_a.clone(), &[&m.isv, &m.dp, &m.cp]).await;
    if state != "Accepted" {
        let shown = m.isv.authed("GET", &format!("/gov/proposals/{pid}"), None).await.unwrap();
        problems.push(format!(
            "[setup: accept a] proposal by isv {set_a}, approved by isv, data-provider, code-provider in that order: \
             expected Accepted, got {state}; GET /gov/proposals/{pid}: {}",
            String::from_utf8_lossy(&shown.body)
        ));
        // (The same message from isv again would be a replay: data-provider proposes.)
        let (pid, state) = decide(&m.dp, set_a, &[&m.cp, &m.dp, &m.isv]).await;
        assert_eq!(state, "Accepted", "proposal {pid}: a with a party's deciding ballot");
    }
    let a = m.isv.authed("GET", "/app/contracts/a", None).await.unwrap().ok_json().unwrap();
    assert_eq!(a["state"], "Accepted");
    let va = a["version"].as_str().unwrap().to_string();
    let b = m.isv.authed("GET", "/app/contracts/b", None).await.unwrap().ok_json().unwrap();
    assert_eq!(b["state"], "Draft");

    let ver = |id: &str| match id {
        "a" => va.clone(),
        "b" => vb.clone(),
        _ => "1.1".to_string(),
    };
    let valid_body = |kind: Body, id: &str| match kind {
        Body::Empty | Body::Consent => None,
        Body::Put => j(json!({"version": ver(id), "data": {}})),
        Body::Event => j(json!({"event": "probe"})),
    };
    let oversize_body = |kind: Body| match kind {
        Body::Empty | Body::Event => padded(json!({}), "data"),
        Body::Put => padded(json!({"version": va}), "data"),
        Body::Consent => padded(json!({}), "reason"),
    };

    // ---- Categories every per-contract route shares.
    let id_routes: [(&'static str, &str, Body); 11] = [
        ("GET", "", Body::Empty),
        ("PUT", "", Body::Put),
        ("GET", "/deployment-spec", Body::Empty),
        ("GET", "/cleanroom-policy", Body::Empty),
        ("GET", "/consent/execution", Body::Empty),
        ("GET", "/consent/logging", Body::Empty),
        ("GET", "/consent/telemetry", Body::Empty),
        ("POST", "/consent/execution/enable", Body::Consent),
        ("POST", "/consent/execution/disable", Body::Consent),
        ("POST", "/events", Body::Event),
        ("GET", "/events", Body::Empty),
    ];
    let long_id = "x".repeat(129);
    let mut rows = Vec::new();
    for (method, suffix, kind) in id_routes {
        let path = |id: &str| format!("/app/contracts/{id}{suffix}");
        let route = format!("{method} /app/contracts/{{id}}{suffix}");
        rows.extend([
            row(
                format!("{route}: anonymous"),
                Anonymous,
                method,
                path("a"),
                valid_body(kind, "a"),
                401,
                "Unauthenticated",
            ),
            row(
                format!("{route}: body of 1 MiB + 1"),
                Isv,
                method,
                path("a"),
                Some(oversize_body(kind)),
                413,
                "PayloadTooLarge",
            ),
            row(
                format!("{route}: unknown contract"),
                Isv,
                method,
                path(UNKNOWN),
                valid_body(kind, UNKNOWN),
                404,
                "ContractNotFound",
            ),
            row(
                format!("{route}: id with a space"),
                Isv,
                method,
                path("bad%20id"),
                valid_body(kind, "bad id"),
                400,
                "InvalidContractId",
            ),
            row(
                format!("{route}: id of 129 characters"),
                Isv,
                method,
                path(&long_id),
                valid_body(kind, &long_id),
                400,
                "InvalidContractId",
            ),
            row(
                format!("{route}: code-provider is no party of a"),
                CodeProvider,
                method,
                path("a"),
                valid_body(kind, "a"),
                403,
                "NotAContractParty",
            ),
            row(
                format!("{route}: code-provider is no party of b"),
                CodeProvider,
                method,
                path("b"),
                valid_body(kind, "b"),
                403,
                "NotAContractParty",
            ),
            row(
                format!("{route}: data-provider is no party of b"),
                DataProvider,
                method,
                path("b"),
                valid_body(kind, "b"),
                403,
                "NotAContractParty",
            ),
        ]);
    }

    // ---- GET /app/contracts
    rows.extend([
        row("list: anonymous", Anonymous, "GET", "/app/contracts", None, 401, "Unauthenticated"),
        row(
            "list: body of 1 MiB + 1",
            Isv,
            "GET",
            "/app/contracts",
            Some(padded(json!({}), "data")),
            413,
            "PayloadTooLarge",
        ),
        row("list: unknown state", Isv, "GET", "/app/contracts?state=Bogus", None, 400, "InvalidState"),
        row("list: state in lowercase", Isv, "GET", "/app/contracts?state=draft", None, 400, "InvalidState"),
        row("list: empty state", Isv, "GET", "/app/contracts?state=", None, 400, "InvalidState"),
        row("list: bad percent-encoding", Isv, "GET", "/app/contracts?state=%zz", None, 400, "InvalidQuery"),
    ]);

    // ---- PUT /app/contracts/{id}
    let put = |what: &str, who: Who, id: &str, body: Option<Vec<u8>>, status: u16, code: &'static str| {
        row(format!("PUT: {what}"), who, "PUT", format!("/app/contracts/{id}"), body, status, code)
    };
    rows.extend([
        put("bad JSON", Isv, "new-1", raw("{not json"), 400, "InvalidJson"),
        put("no body", Isv, "new-1", None, 400, "InvalidJson"),
        put("a JSON array", Isv, "new-1", raw("[]"), 400, "InvalidJson"),
        put("JSON null", Isv, "new-1", raw("null"), 400, "InvalidJson"),
        put("trailing garbage", Isv, "new-1", raw(r#"{"data":{}} x"#), 400, "InvalidJson"),
        put("missing data", Isv, "new-1", j(json!({"collaborators": [isv_id]})), 400, "InvalidJson"),
        put("unknown field", Isv, "new-1", j(json!({"data": {}, "colaborators": [isv_id]})), 400, "InvalidJson"),
        put(
            "collaborators not a list",
            Isv,
            "new-1",
            j(json!({"data": {}, "collaborators": "all"})),
            400,
            "InvalidJson",
        ),
        put("version not a string", Isv, "b", j(json!({"version": 3, "data": {}})), 400, "InvalidJson"),
        put(
            "collaborator not a member id",
            Isv,
            "new-1",
            j(json!({"data": {}, "collaborators": ["not-a-member"]})),
            400,
            "InvalidCollaborators",
        ),
        put(
            "user without issuer|subject",
            Isv,
            "new-1",
            j(json!({"data": {}, "users": ["alice"]})),
            400,
            "InvalidUsers",
        ),
        put("exists and no version", Isv, "b", j(json!({"data": {}})), 409, "ContractAlreadyExists"),
        put("malformed version", Isv, "b", j(json!({"version": "x", "data": {}})), 400, "InvalidVersion"),
        put(
            "stale version",
            Isv,
            "b",
            j(json!({"version": vb_stale, "data": {}, "collaborators": [isv_id]})),
            412,
            "PreconditionFailed",
        ),
        put(
            "accepted, with its version",
            Isv,
            "a",
            j(json!({"version": va, "data": {}})),
            405,
            "ContractAlreadyAccepted",
        ),
        put(
            "accepted, by the other party",
            DataProvider,
            "a",
            j(json!({"version": va, "data": {}})),
            405,
            "ContractAlreadyAccepted",
        ),
    ]);

    // ---- GET /app/contracts/{id}/consent/{kind}
    rows.extend([
        row("consent: unknown kind", Isv, "GET", "/app/contracts/a/consent/bogus", None, 404, "UnknownConsentKind"),
        row(
            "consent: kind in capitals",
            Isv,
            "GET",
            "/app/contracts/a/consent/Execution",
            None,
            404,
            "UnknownConsentKind",
        ),
        row(
            "consent: anonymous, unknown kind",
            Anonymous,
            "GET",
            "/app/contracts/a/consent/bogus",
            None,
            401,
            "Unauthenticated",
        ),
    ]);

    // ---- POST /app/contracts/{id}/consent/execution/{enable|disable}
    let switch = |what: &str, who: Who, action: &str, body: Option<Vec<u8>>, status: u16, code: &'static str| {
        let path = format!("/app/contracts/a/consent/execution/{action}");
        row(format!("kill switch: {what}"), who, "POST", path, body, status, code)
    };
    rows.extend([
        switch("bad JSON", Isv, "enable", raw("{not json"), 400, "InvalidJson"),
        switch("bad JSON", Isv, "disable", raw("{not json"), 400, "InvalidJson"),
        switch("unknown field", Isv, "disable", j(json!({"why": "x"})), 400, "InvalidJson"),
        switch("reason not a string", Isv, "disable", j(json!({"reason": 5})), 400, "InvalidJson"),
        switch("a JSON array", Isv, "enable", raw("[]"), 400, "InvalidJson"),
        switch("reason of 513 bytes", Isv, "disable", j(json!({"reason": "r".repeat(513)})), 400, "InvalidReason"),
        switch("unknown action", Isv, "pause", None, 404, "UnknownConsentAction"),
        switch("unknown action, by a non-party", CodeProvider, "pause", None, 404, "UnknownConsentAction"),
        switch("unknown action, anonymous", Anonymous, "pause", None, 401, "Unauthenticated"),
        row(
            "kill switch: for logging",
            Isv,
            "POST",
            "/app/contracts/a/consent/logging/enable",
            None,
            404,
            "RouteNotFound",
        ),
        row("kill switch: GET", Isv, "GET", "/app/contracts/a/consent/execution/enable", None, 405, "MethodNotAllowed"),
    ]);

    // ---- POST /app/contracts/{id}/events
    let post_event = |what: &str,
                      who: Who,
                      id: &str,
                      query: &str,
                      body: Option<Vec<u8>>,
                      status: u16,
                      code: &'static str| {
        row(format!("add event: {what}"), who, "POST", format!("/app/contracts/{id}/events{query}"), body, status, code)
    };
    let event = || j(json!({"event": "probe"}));
    let long_label = "l".repeat(129);
    rows.extend([
        post_event("bad JSON", Isv, "a", "", raw("{not json"), 400, "InvalidJson"),
        post_event("no body", Isv, "a", "", None, 400, "InvalidJson"),
        post_event("two documents", Isv, "a", "", raw("{} {}"), 400, "InvalidJson"),
        post_event("draft contract", Isv, "b", "", event(), 405, "ContractNotAccepted"),
        post_event("empty scope", Isv, "a", "?scope=", event(), 400, "InvalidQuery"),
        post_event("scope of 129 characters", Isv, "a", &format!("?scope={long_label}"), event(), 400, "InvalidQuery"),
        post_event("control character in id", Isv, "a", "?id=%01", event(), 400, "InvalidQuery"),
        post_event("bad percent-encoding", Isv, "a", "?scope=%zz", event(), 400, "InvalidQuery"),
    ]);

    // ---- GET /app/contracts/{id}/events
    let list_events = |what: &str, query: &str, status: u16, code: &'static str| {
        row(format!("list events: {what}"), Isv, "GET", format!("/app/contracts/a/events?{query}"), None, status, code)
    };
    rows.extend([
        list_events("limit=0", "limit=0", 400, "InvalidLimit"),
        list_events("limit=1001", "limit=1001", 400, "InvalidLimit"),
        list_events("limit=-1", "limit=-1", 400, "InvalidQueryParameter"),
        list_events("limit=x", "limit=x", 400, "InvalidQueryParameter"),
        list_events("order=up", "order=up", 400, "InvalidQuery"),
        list_events("order=ASC", "order=ASC", 400, "InvalidQuery"),
        list_events("from=x", "from=x", 400, "InvalidQueryParameter"),
        list_events("from=-1", "from=-1", 400, "InvalidQueryParameter"),
        list_events("from over u64", "from=18446744073709551616", 400, "InvalidQueryParameter"),
        list_events("to=x", "to=x", 400, "InvalidQueryParameter"),
        list_events("to before from", "from=5&to=2", 400, "InvalidQuery"),
        list_events("empty scope", "scope=", 400, "InvalidQuery"),
        list_events("id of 129 characters", &format!("id={long_label}"), 400, "InvalidQuery"),
    ]);

    // ---- Host-level routing under /app.
    rows.extend([
        row("DELETE a contract", Isv, "DELETE", "/app/contracts/a", None, 405, "MethodNotAllowed"),
        row("POST the list", Isv, "POST", "/app/contracts", j(json!({"data": {}})), 405, "MethodNotAllowed"),
        row("PUT events", Isv, "PUT", "/app/contracts/a/events", event(), 405, "MethodNotAllowed"),
        row("unknown sub-resource", Isv, "GET", "/app/contracts/a/nothing", None, 404, "RouteNotFound"),
        row("unknown route, anonymous", Anonymous, "GET", "/app/nothing", None, 404, "RouteNotFound"),
        row("trailing slash", Isv, "GET", "/app/contracts/a/", None, 400, "InvalidPath"),
        row("encoded slash in the id", Isv, "GET", "/app/contracts/bad%2Fid", None, 400, "InvalidPath"),
        row("bad percent-encoding in the id", Isv, "GET", "/app/contracts/%zz", None, 400, "InvalidPath"),
    ]);

    let mut total = run_rows(&sb, &m, rows, &mut problems).await;

    // ---- Governance actions: the proposal itself is refused.
    let set_contract = |id: &str, version: &str| json!({"name": "contracts.set_contract", "args": {"contract_id": id, "version": version}});
    let gov_rows = vec![
        GovRow {
            what: "set_contract: stale version",
            who: Isv,
            actions: json!([set_contract("b", &vb_stale)]),
            status: 412,
            code: "PreconditionFailed",
        },
        GovRow {
            what: "set_contract: malformed version",
            who: Isv,
            actions: json!([set_contract("b", "x")]),
            status: 400,
            code: "InvalidVersion",
        },
        GovRow {
            what: "set_contract: with another action",
            who: Isv,
            actions: json!([set_contract("b", &vb), {"name": "contracts.set_deployment_spec", "args": {"contract_id": "a", "data": {}}}]),
            status: 400,
            code: "SetContractNotAlone",
        },
        GovRow {
            what: "set_contract: unknown contract",
            who: Isv,
            actions: json!([set_contract(UNKNOWN, "1.1")]),
            status: 404,
            code: "ContractNotFound",
        },
        GovRow {
            what: "set_contract: bad contract id",
            who: Isv,
            actions: json!([set_contract("bad id", "1.1")]),
            status: 400,
            code: "InvalidContractId",
        },
        GovRow {
            what: "set_contract: already accepted",
            who: Isv,
            actions: json!([set_contract("a", &va)]),
            status: 405,
            code: "ContractAlreadyAccepted",
        },
        GovRow {
            what: "set_contract: by a non-party",
            who: CodeProvider,
            actions: json!([set_contract("b", &vb)]),
            status: 403,
            code: "NotAContractParty",
        },
        GovRow {
            what: "set_contract: by data-provider on b",
            who: DataProvider,
            actions: json!([set_contract("b", &vb)]),
            status: 403,
            code: "NotAContractParty",
        },
        GovRow {
            what: "set_contract: unknown argument",
            who: Isv,
            actions: json!([{"name": "contracts.set_contract", "args": {"contract_id": "b", "version": vb, "force": true}}]),
            status: 400,
            code: "InvalidActionArgs",
        },
        GovRow {
            what: "set_contract: no contract_id",
            who: Isv,
            actions: json!([{"name": "contracts.set_contract", "args": {"version": vb}}]),
            status: 400,
            code: "InvalidActionArgs",
        },
        GovRow {
            what: "set_cleanroom_policy: draft contract",
            who: Isv,
            actions: json!([{"name": "contracts.set_cleanroom_policy", "args": {"contract_id": "b", "type": "add", "claims": {"x-ms-sevsnpvm-hostdata": ["aa"]}}}]),
            status: 405,
            code: "ContractNotAccepted",
        },
        GovRow {
            what: "set_cleanroom_policy: no claims",
            who: Isv,
            actions: json!([{"name": "contracts.set_cleanroom_policy", "args": {"contract_id": "a", "type": "add", "claims": {}}}]),
            status: 400,
            code: "InvalidActionArgs",
        },
        GovRow {
            what: "set_cleanroom_policy: unknown type",
            who: Isv,
            actions: json!([{"name": "contracts.set_cleanroom_policy", "args": {"contract_id": "a", "type": "replace", "claims": {"h": ["aa"]}}}]),
            status: 400,
            code: "InvalidActionArgs",
        },
        GovRow {
            what: "set_deployment_spec: draft contract",
            who: Isv,
            actions: json!([{"name": "contracts.set_deployment_spec", "args": {"contract_id": "b", "data": {}}}]),
            status: 405,
            code: "ContractNotAccepted",
        },
        GovRow {
            what: "set_deployment_spec: by a non-party",
            who: CodeProvider,
            actions: json!([{"name": "contracts.set_deployment_spec", "args": {"contract_id": "a", "data": {}}}]),
            status: 403,
            code: "NotAContractParty",
        },
        GovRow {
            what: "revoke_contract: draft contract",
            who: Isv,
            actions: json!([{"name": "contracts.revoke_contract", "args": {"contract_id": "b"}}]),
            status: 405,
            code: "ContractNotAccepted",
        },
        GovRow {
            what: "consent.enable_logging: draft contract",
            who: Isv,
            actions: json!([{"name": "consent.enable_logging", "args": {"contract_id": "b"}}]),
            status: 405,
            code: "ContractNotAccepted",
        },
        GovRow {
            what: "consent.enable_logging: by a non-party",
            who: CodeProvider,
            actions: json!([{"name": "consent.enable_logging", "args": {"contract_id": "a"}}]),
            status: 403,
            code: "NotAContractParty",
        },
    ];
    total += run_gov_rows(&m, gov_rows, &mut problems).await;

    // ---- "b" in an open set_contract proposal (left open): a second proposal and amendments are
    // refused.
    let open = m.isv.propose(json!([set_contract("b", &vb)])).await.unwrap().ok_json().unwrap();
    assert_eq!(open["state"], "Open", "{open}");
    let open_id = open["proposal_id"].as_str().unwrap().to_string();
    // Signed messages are deterministic and carry whole seconds: wait so that the same proposal
    // from isv is a new message, not a replay.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let gov_rows = vec![GovRow {
        what: "set_contract: second open proposal",
        who: Isv,
        actions: json!([set_contract("b", &vb)]),
        status: 409,
        code: "ContractAlreadyProposed",
    }];
    total += run_gov_rows(&m, gov_rows, &mut problems).await;
    let rows = vec![
        put(
            "proposed, with its version",
            Isv,
            "b",
            j(json!({"version": vb, "data": {}, "collaborators": [isv_id]})),
            405,
            "ContractAlreadyProposed",
        ),
        put(
            "proposed, stale version",
            Isv,
            "b",
            j(json!({"version": vb_stale, "data": {}, "collaborators": [isv_id]})),
            405,
            "ContractAlreadyProposed",
        ),
        post_event("proposed contract", Isv, "b", "", event(), 405, "ContractNotAccepted"),
        row(
            "proposed: data-provider is still no party of b",
            DataProvider,
            "GET",
            "/app/contracts/b",
            None,
            403,
            "NotAContractParty",
        ),
    ];
    total += run_rows(&sb, &m, rows, &mut problems).await;

    // Nothing above changed the contracts.
    let b = m.isv.authed("GET", "/app/contracts/b", None).await.unwrap().ok_json().unwrap();
    assert_eq!((b["state"].as_str(), b["version"].as_str()), (Some("Proposed"), Some(vb.as_str())), "{b}");
    assert_eq!(b["data"], json!({"rev": 2}));
    let a = m.isv.authed("GET", "/app/contracts/a", None).await.unwrap().ok_json().unwrap();
    assert_eq!((a["state"].as_str(), a["version"].as_str()), (Some("Accepted"), Some(va.as_str())), "{a}");
    let events = m.isv.authed("GET", "/app/contracts/a/events", None).await.unwrap().ok_json().unwrap();
    assert_eq!(events["value"], json!([]), "no refused request recorded an event");
    let listed = m.isv.authed("GET", "/app/contracts", None).await.unwrap().ok_json().unwrap();
    let ids: Vec<&str> = listed["value"].as_array().unwrap().iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, ["a", "b"], "no refused PUT created a contract");
    let p = m.isv.authed("GET", &format!("/gov/proposals/{open_id}"), None).await.unwrap().ok_json().unwrap();
    assert_eq!(p["state"], "Open");

    println!("app matrix: {total} rows, {} mismatches", problems.len());
    assert!(problems.is_empty(), "{} of {total} rows answered otherwise:\n{}", problems.len(), problems.join("\n"));
}
