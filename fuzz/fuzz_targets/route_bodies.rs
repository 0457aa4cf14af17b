//! Every app route's path, query and JSON body, and every plugin action's JSON arguments, run
//! natively through the contracts, consent and audit plugins' routers (and the constitution's
//! actions) with the SDK's in-memory store (`cgs_plugin::testing`); plus the bodies the host
//! parses itself (clean-room session, secret, ID-token requests; mirrored structs).
//!
//! The input is a sequence of records separated by NUL bytes, so that seeds are readable and a
//! sequence can build state (create a contract, accept it, then record events):
//!
//! * `R <plugin> <caller> <METHOD> <path>[?<query>]\n<body>` — a request; `<plugin>` is
//!   `contracts|consent|audit`, `<caller>` is `m1|m2|user|room|anon`. The path is decoded with
//!   the host's own `decode_path`, matched against the plugin's routes as the host matches them,
//!   and the query parsed with the host's `parse_query`; inputs the host would refuse are skipped.
//! * `A <plugin> <caller> <action> apply|validate\n<args JSON>` — a governance action, validated
//!   and (if `apply` and valid) applied, as the only action of proposal `p1`.
//! * `H session|secret|token\n<body>` — a body the host parses itself.
//!
//! Properties: nothing panics; no request or action yields a 5xx; a read-only (`GET`) route
//! never tries to write; a JSON response body is JSON; an action that applies had validated.
#![no_main]

use cgs_fuzz::host_http::request::{decode_path, parse_query};
use cgs_plugin::{Action, Caller, CallerKind, Method, NativeApp, Request, Response, testing};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

const M1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const M2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// The routes each plugin's `router()` declares (kept in step with plugins/*/src/lib.rs).
const ROUTES: &[(&str, Method, &str)] = &[
    ("contracts", Method::Get, "/contracts"),
    ("contracts", Method::Get, "/contracts/{id}"),
    ("contracts", Method::Put, "/contracts/{id}"),
    ("contracts", Method::Get, "/contracts/{id}/deployment-spec"),
    ("contracts", Method::Get, "/contracts/{id}/cleanroom-policy"),
    ("consent", Method::Get, "/contracts/{id}/consent/{kind}"),
    ("consent", Method::Post, "/contracts/{id}/consent/execution/{action}"),
    ("consent", Method::Get, "/contracts/{id}/consent-proposals"),
    ("audit", Method::Post, "/contracts/{id}/events"),
    ("audit", Method::Get, "/contracts/{id}/events"),
];

fn app(plugin: &str) -> Option<NativeApp> {
    Some(match plugin {
        "contracts" => cgs_plugin_contracts::__cgs_native_plugin(),
        "consent" => cgs_plugin_consent::__cgs_native_plugin(),
        "audit" => cgs_plugin_audit::__cgs_native_plugin(),
        _ => return None,
    })
}

fn caller(name: &str) -> Caller {
    match name {
        "m1" => Caller::member(M1),
        "m2" => Caller::member(M2),
        "user" => Caller {
            kind: CallerKind::User,
            id: "https://idp.fuzz|alice".into(),
            roles: vec![],
            contract_id: None,
            claims: vec![("sub".into(), "alice".into())],
        },
        "room" => Caller {
            kind: CallerKind::Cleanroom,
            id: "0123456789abcdef0123456789abcdef".into(),
            roles: vec![],
            contract_id: Some("c1".into()),
            claims: vec![("x-ms-sevsnpvm-is-virtual".into(), "true".into())],
        },
        _ => Caller::anonymous(),
    }
}

fn method(m: &str) -> Option<Method> {
    Method::parse(m)
}

/// Match decoded segments against a route template, as the host does.
fn matches(template: &str, segments: &[String]) -> Option<Vec<(String, String)>> {
    let parts: Vec<&str> = template.trim_start_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (p, s) in parts.iter().zip(segments) {
        if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            params.push((name.to_string(), s.clone()));
        } else if p != s {
            return None;
        }
    }
    Some(params)
}

fn check_response(what: &str, r: &cgs_plugin::Result<Response>) {
    match r {
        Ok(resp) => {
            assert!((200..500).contains(&resp.status), "{what}: status {}", resp.status);
            if resp.headers.iter().any(|(k, v)| k == "content-type" && v.contains("json")) {
                serde_json::from_slice::<serde_json::Value>(&resp.body).expect("a JSON response body is JSON");
            }
        }
        Err(e) => {
            assert!(e.kind.status() < 500, "{what}: {e}");
        }
    }
}

fn request(header: &str, body: &[u8]) {
    let mut it = header.splitn(4, ' ');
    let (Some(plugin), Some(who), Some(m), Some(target)) = (it.next(), it.next(), it.next(), it.next()) else { return };
    let (Some(app), Some(method)) = (app(plugin), method(m)) else { return };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (Ok(segments), Ok(query)) = (decode_path(path), parse_query(query)) else { return };
    let Some((route, params)) = ROUTES
        .iter()
        .filter(|(p, rm, _)| *p == plugin && *rm == method)
        .find_map(|(_, _, t)| matches(t, &segments).map(|params| (*t, params)))
    else {
        return;
    };
    let c = caller(who);
    let req = Request {
        method,
        path: path.to_string(),
        route: route.to_string(),
        params,
        query,
        headers: vec![],
        body: body.to_vec(),
        caller: c.clone(),
    };
    testing::set_caller(c);
    testing::set_proposal(None);
    testing::set_gov_writable(false);
    let read_only = method == Method::Get;
    testing::set_read_only(read_only);
    let r = (app.router)().dispatch(&req);
    testing::set_read_only(false);
    if read_only && let Err(e) = &r {
        assert_ne!(e.code, "TableReadOnly", "a GET route tried to write: {e}");
    }
    if *DEBUG {
        eprintln!("{who} {m} {route} -> {}", r.as_ref().map_or_else(|e| e.to_string(), |x| x.status.to_string()));
    }
    check_response(&format!("{m} {route}"), &r);
}

/// `CGS_FUZZ_DEBUG=1`: print each request's and action's outcome.
static DEBUG: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| std::env::var_os("CGS_FUZZ_DEBUG").is_some());

fn action(header: &str, args: &[u8]) {
    let mut it = header.splitn(4, ' ');
    let (Some(plugin), Some(who), Some(name), Some(mode)) = (it.next(), it.next(), it.next(), it.next()) else {
        return;
    };
    let Ok(args) = std::str::from_utf8(args) else { return };
    let (validate, apply): (fn(&Action) -> cgs_plugin::Result<()>, fn(&Action) -> cgs_plugin::Result<()>) = match plugin
    {
        "constitution" => {
            let c = cgs_plugin_constitution::__cgs_native_constitution();
            (c.validate_action, c.apply_action)
        }
        p => match app(p) {
            Some(a) => (a.validate_action, a.apply_action),
            None => return,
        },
    };
    let a = Action { name: name.to_string(), args: args.to_string() };
    testing::set_caller(caller(who));
    testing::set_proposal(Some(("p1", vec![a.clone()])));
    testing::set_read_only(false);
    let v = validate(&a);
    if let Err(e) = &v {
        assert!(e.kind.status() < 500, "validate {name}: {e}");
    }
    if *DEBUG {
        eprintln!("{who} validate {name} -> {v:?}");
    }
    if mode == "apply" && v.is_ok() {
        testing::set_gov_writable(plugin == "constitution");
        let r = apply(&a);
        testing::set_gov_writable(false);
        if *DEBUG {
            eprintln!("{who} apply {name} -> {r:?}");
        }
        if let Err(e) = &r {
            assert!(e.kind.status() < 500, "apply {name}: {e}");
        }
    }
    testing::set_proposal(None);
}

/// The host lets the other plugins read the contracts plugin's `contracts` table as
/// `app.contracts.contracts`; the native store has one namespace, so copy it over.
fn share_contracts() {
    testing::set_read_only(false);
    testing::set_gov_writable(false);
    let Ok(all) = cgs_cleanroom::OWN_CONTRACTS.all(10_000) else { return };
    for (id, v) in all {
        let json = |c: &cgs_cleanroom::Contract| serde_json::to_value(c).ok();
        if cgs_cleanroom::CONTRACTS.get(&id).ok().flatten().as_ref().and_then(json) != json(&v.value) {
            cgs_cleanroom::CONTRACTS.put(&id, &v.value).expect("copying a contract");
        }
    }
}

/// The bodies `host/src/gov/{sessions,secrets,oidc}.rs` parse (mirrored: the structs are local
/// to the host's handlers).
fn host_body(kind: &str, body: &[u8]) {
    use base64::Engine as _;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct SessionRequest {
        evidence: serde_json::Value,
        public_key: String,
        nonce: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct PutSecret {
        value: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct TokenRequest {
        aud: String,
        #[serde(default)]
        sub: Option<String>,
    }
    match kind {
        "session" => {
            if let Ok(r) = serde_json::from_slice::<SessionRequest>(body) {
                let _ = base64::engine::general_purpose::STANDARD.decode(&r.public_key);
                if let Ok(e) = cgs_attestation::Evidence::from_json(r.evidence.to_string().as_bytes()) {
                    let _ = e.check_shape();
                }
            }
        }
        "secret" => {
            let _ = serde_json::from_slice::<PutSecret>(body);
        }
        "token" => {
            let _ = serde_json::from_slice::<TokenRequest>(body);
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    testing::reset();
    testing::set_tx_time_ms(1_796_169_600_000);
    for record in data.split(|b| *b == 0).take(16) {
        let (head, body) = match record.iter().position(|b| *b == b'\n') {
            Some(i) => (&record[..i], &record[i + 1..]),
            None => (record, &[][..]),
        };
        let Ok(head) = std::str::from_utf8(head) else { continue };
        match head.split_once(' ') {
            Some(("R", rest)) => request(rest, body),
            Some(("A", rest)) => action(rest, body),
            Some(("H", rest)) => host_body(rest, body),
            _ => continue,
        }
        share_contracts();
    }
});
