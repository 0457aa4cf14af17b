//! The host's routes, described once: the router refuses what this table does not name (`404`,
//! or `405` with `allow` when only the method differs), `/metrics` labels requests by its
//! templates, and `GET /openapi.json` is generated from it plus every installed plugin's routes —
//! so the description cannot drift from what is served. A test walks the table against a node.

use serde_json::{Value, json};

/// Who may call a host route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Anyone, no credentials.
    Anyone,
    /// A member's bearer token.
    Member,
    /// A member's or a user's bearer token.
    MemberOrUser,
    /// Any credentials (member, user or clean-room session).
    Credentialed,
    /// A member's token or the operator's scrape token.
    MetricsReader,
    /// A signed governance message (COSE_Sign1) is the body; no token.
    Signed,
}

/// One host operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// HTTP method.
    pub method: &'static str,
    /// Path template (`{name}` is one segment).
    pub path: &'static str,
    /// Who may call it.
    pub who: Who,
    /// What it does.
    pub summary: &'static str,
    /// Request body schema (a component name), if any.
    pub request: Option<&'static str>,
    /// Response body schema (a component name) of a success.
    pub response: &'static str,
    /// Error codes it may answer, by status, beyond the ones every route of its kind has.
    pub errors: &'static [(u16, &'static str)],
}

const fn op(
    method: &'static str,
    path: &'static str,
    who: Who,
    summary: &'static str,
    request: Option<&'static str>,
    response: &'static str,
    errors: &'static [(u16, &'static str)],
) -> Op {
    Op { method, path, who, summary, request, response, errors }
}

const SIGNED: &[(u16, &str)] = &[
    (400, "InvalidSignedMessage"),
    (400, "WrongMessageType"),
    (400, "StaleMessage"),
    (401, "UnknownMember"),
    (401, "InvalidSignature"),
    (403, "MemberNotActive"),
    (409, "Replay"),
];

/// Every host route outside `/app` (the host's `/app` routes are in the runtime's route table).
pub const HOST_OPS: &[Op] = &[
    op("GET", "/node/health", Who::Anyone, "Liveness, raft role and the last applied transaction", None, "Health", &[]),
    op(
        "GET",
        "/node/checkpoint",
        Who::Anyone,
        "The latest signed checkpoint (C2SP signed note)",
        None,
        "Text",
        &[(503, "NotReady")],
    ),
    op(
        "GET",
        "/node/consistency",
        Who::Anyone,
        "A consistency proof between two tree sizes (?from=N&to=M)",
        None,
        "Consistency",
        &[(400, "InvalidQuery"), (400, "InvalidRange")],
    ),
    op("GET", "/node/identity", Who::Anyone, "The node's checkpoint-signing key", None, "Object", &[]),
    op(
        "GET",
        "/node/network",
        Who::Anyone,
        "The service's status, current view (raft term), primary and number of nodes",
        None,
        "Object",
        &[],
    ),
    op(
        "GET",
        "/node/network/nodes",
        Who::Anyone,
        "Every node: id, status (Pending, Trusted, Retired), raft role (Voter, Learner), primary, addresses, \
         what its evidence reported",
        None,
        "Object",
        &[],
    ),
    op("GET", "/console", Who::Anyone, "The web console: a redirect to /console/", None, "Redirect", &[]),
    op(
        "GET",
        "/console/",
        Who::Anyone,
        "The web console (embedded; it signs and verifies in the browser, through this public API only)",
        None,
        "Html",
        &[],
    ),
    op(
        "GET",
        "/console/{asset}",
        Who::Anyone,
        "The console's script and style sheet",
        None,
        "Asset",
        &[(404, "AssetNotFound")],
    ),
    op(
        "POST",
        "/node/join",
        Who::Anyone,
        "A new node asks to join (its evidence, signed with its node key); answered Pending, then with the \
         service's secrets sealed to it once members trust it",
        Some("Object"),
        "Object",
        &[(400, "InvalidJoinRequest"), (400, "InvalidEvidence"), (401, "InvalidSignature"), (403, "JoinRefused")],
    ),
    op(
        "GET",
        "/node/attestation",
        Who::Anyone,
        "The node's attestation evidence, binding its keys",
        None,
        "Object",
        &[(503, "NotReady")],
    ),
    op(
        "GET",
        "/node/tx/{tx_id}",
        Who::Anyone,
        "Status of a transaction (Committed or Invalid)",
        None,
        "TxStatus",
        &[(400, "InvalidTxId"), (404, "TransactionNotFound")],
    ),
    op(
        "GET",
        "/node/receipt/{tx_id}",
        Who::Credentialed,
        "COSE receipt of a transaction (?format=json, ?entry=true)",
        None,
        "Cose",
        &[
            (400, "InvalidTxId"),
            (403, "Forbidden"),
            (404, "TransactionNotFound"),
            (409, "TransactionInvalid"),
            (503, "NotReady"),
        ],
    ),
    op(
        "GET",
        "/node/entry/{tx_id}",
        Who::Credentialed,
        "A ledger entry, with what the caller may read of it",
        None,
        "Object",
        &[(400, "InvalidTxId"), (403, "Forbidden"), (404, "TransactionNotFound")],
    ),
    op(
        "GET",
        "/metrics",
        Who::MetricsReader,
        "Prometheus metrics (text format 0.0.4)",
        None,
        "Text",
        &[(403, "Forbidden")],
    ),
    op(
        "GET",
        "/openapi.json",
        Who::Anyone,
        "This document: host routes and every installed plugin's",
        None,
        "Object",
        &[],
    ),
    op(
        "GET",
        "/.well-known/openid-configuration",
        Who::Anyone,
        "OIDC discovery of the service's token issuer",
        None,
        "Object",
        &[(503, "NotReady")],
    ),
    op("GET", "/oidc/keys", Who::Anyone, "The issuer's JWKS", None, "Object", &[(503, "NotReady")]),
    op(
        "GET",
        "/cleanroom/nonce",
        Who::Anyone,
        "A nonce for a clean-room session (?contract_id=ID)",
        None,
        "Object",
        &[(400, "MissingParameter"), (400, "InvalidContractId"), (503, "ServiceBusy")],
    ),
    op("GET", "/gov/service", Who::Anyone, "Service status, constitution and plugins", None, "Object", &[]),
    op("GET", "/gov/constitution", Who::Anyone, "The constitution's measurement", None, "Object", &[]),
    op(
        "GET",
        "/gov/recovery",
        Who::MemberOrUser,
        "Recovery shares: epoch, threshold, members holding one; the recoveries so far",
        None,
        "Object",
        &[(401, "Unauthenticated")],
    ),
    op(
        "GET",
        "/gov/recovery/shares/{member_id}",
        Who::MemberOrUser,
        "A member's recovery share, sealed to its key",
        None,
        "Object",
        &[(401, "Unauthenticated"), (404, "NoShare")],
    ),
    op(
        "GET",
        "/gov/plugins",
        Who::Anyone,
        "What runs: plugins, versions, hashes, routes, actions; failures",
        None,
        "Plugins",
        &[],
    ),
    op(
        "POST",
        "/gov/plugins/check",
        Who::Member,
        "What a set_plugin of the posted component would meet (stores nothing)",
        Some("Wasm"),
        "Object",
        &[(400, "NotAPlugin"), (413, "PayloadTooLarge")],
    ),
    op("GET", "/gov/members", Who::MemberOrUser, "Members", None, "List", &[]),
    op("GET", "/gov/members/{member_id}", Who::MemberOrUser, "A member", None, "Object", &[(404, "MemberNotFound")]),
    op(
        "GET",
        "/gov/members/{member_id}/state-digest",
        Who::Anyone,
        "The state digest a member acks",
        None,
        "Object",
        &[(503, "NotReady")],
    ),
    op(
        "POST",
        "/gov/members/{member_id}/ack",
        Who::Signed,
        "Ack the service state (signed `ack`)",
        Some("Signed"),
        "Written",
        SIGNED,
    ),
    op("POST", "/gov/login", Who::Signed, "A member bearer token (signed `login`)", Some("Signed"), "Token", SIGNED),
    op("POST", "/gov/proposals", Who::Signed, "Propose actions (signed `proposal`)", Some("Signed"), "Written", SIGNED),
    op(
        "GET",
        "/gov/proposals",
        Who::Member,
        "Proposals (?state=Open|Accepted|…)",
        None,
        "List",
        &[(400, "InvalidState")],
    ),
    op(
        "POST",
        "/gov/proposals/simulate",
        Who::Member,
        "Dry-run a proposal: validation, verdict, approvals needed, apply; writes nothing",
        Some("Object"),
        "Object",
        &[(400, "InvalidProposal"), (400, "InvalidBallot"), (403, "MemberNotActive"), (503, "ServiceBusy")],
    ),
    op(
        "GET",
        "/gov/proposals/{proposal_id}",
        Who::Member,
        "A proposal: actions, ballots, history, failure",
        None,
        "Object",
        &[(404, "ProposalNotFound")],
    ),
    op(
        "POST",
        "/gov/proposals/{proposal_id}/ballots",
        Who::Signed,
        "Vote (signed `ballot`)",
        Some("Signed"),
        "Written",
        SIGNED,
    ),
    op(
        "POST",
        "/gov/proposals/{proposal_id}/withdraw",
        Who::Signed,
        "Withdraw one's proposal (signed `withdrawal`)",
        Some("Signed"),
        "Written",
        SIGNED,
    ),
    op(
        "PUT",
        "/gov/blobs",
        Who::Member,
        "Upload a content-addressed blob (a plugin component)",
        Some("Wasm"),
        "Object",
        &[(400, "EmptyBlob"), (413, "PayloadTooLarge")],
    ),
];

fn matches(template: &str, path: &str) -> Option<usize> {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    if t.len() != p.len() {
        return None;
    }
    let mut literals = 0;
    for (a, b) in t.iter().zip(&p) {
        if a.starts_with('{') {
            if b.is_empty() {
                return None;
            }
        } else if a != b {
            return None;
        } else {
            literals += 1;
        }
    }
    Some(literals)
}

/// The template `path` falls under (the most literal one), if any.
pub fn template_of(path: &str) -> Option<&'static str> {
    HOST_OPS.iter().filter_map(|o| matches(o.path, path).map(|n| (n, o.path))).max_by_key(|(n, _)| *n).map(|(_, t)| t)
}

/// What the table says of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Described.
    Found(&'static Op),
    /// The path is described for other methods only.
    MethodNotAllowed(Vec<&'static str>),
    /// The path is not a host route.
    NotFound,
}

/// Look up `method path` (outside `/app`).
pub fn lookup(method: &str, path: &str) -> Lookup {
    let Some(template) = template_of(path) else { return Lookup::NotFound };
    let ops: Vec<&'static Op> = HOST_OPS.iter().filter(|o| o.path == template).collect();
    match ops.iter().find(|o| o.method == method) {
        Some(o) => Lookup::Found(o),
        None => Lookup::MethodNotAllowed(ops.iter().map(|o| o.method).collect()),
    }
}

fn error_response(errors: &[(u16, &str)]) -> Value {
    let mut by_status = std::collections::BTreeMap::<u16, Vec<&str>>::new();
    for (s, c) in errors {
        by_status.entry(*s).or_default().push(c);
    }
    let mut out = serde_json::Map::new();
    for (s, codes) in by_status {
        out.insert(
            s.to_string(),
            json!({
                "description": format!("error codes: {}", codes.join(", ")),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"},
                    "example": {"error": {"code": codes[0], "message": "…"}}}},
            }),
        );
    }
    Value::Object(out)
}

fn params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

fn body(component: &str) -> Value {
    let (media, schema) = match component {
        "Signed" => ("application/cose", json!({"type": "string", "contentMediaType": "application/cose"})),
        "Wasm" => ("application/octet-stream", json!({"type": "string", "contentMediaType": "application/wasm"})),
        "Text" => ("text/plain", json!({"type": "string"})),
        "Html" => ("text/html", json!({"type": "string"})),
        "Asset" => ("*/*", json!({"type": "string"})),
        "Cose" => ("application/cose", json!({"type": "string", "contentMediaType": "application/cose"})),
        c => ("application/json", json!({"$ref": format!("#/components/schemas/{c}")})),
    };
    json!({"content": {media: {"schema": schema}}})
}

fn security(who: Who) -> (Value, Vec<(u16, &'static str)>) {
    let auth = vec![(401, "Unauthenticated"), (401, "InvalidCredentials")];
    match who {
        Who::Anyone | Who::Signed => (json!([]), Vec::new()),
        Who::MetricsReader => (json!([{"bearer": []}]), auth),
        Who::Member | Who::MemberOrUser | Who::Credentialed => {
            let mut e = auth;
            e.push((403, "CallerKindNotAllowed"));
            (json!([{"bearer": []}]), e)
        }
    }
}

/// The OpenAPI 3.1 document: the host's routes and, from `plugin_routes` (`Route::describe()`
/// of every installed route under `/app`, with the plugin's name), every plugin's.
pub fn document(plugin_routes: &[(String, Value)]) -> Value {
    let mut paths = serde_json::Map::new();
    let common: &[(u16, &str)] =
        &[(400, "InvalidPath"), (404, "RouteNotFound"), (405, "MethodNotAllowed"), (503, "NotReady")];
    for o in HOST_OPS {
        let (sec, mut errors) = security(o.who);
        errors.extend_from_slice(o.errors);
        errors.extend_from_slice(common);
        let mut responses = error_response(&errors);
        if o.response == "Redirect" {
            responses["308"] =
                json!({"description": "permanent redirect", "headers": {"location": {"schema": {"type": "string"}}}});
        } else {
            responses["200"] = {
                let mut r = body(o.response);
                r["description"] = "success".into();
                r
            };
        }
        let mut operation = json!({
            "summary": o.summary,
            "operationId": format!("{} {}", o.method, o.path),
            "tags": [o.path.split('/').nth(1).unwrap_or("node")],
            "security": sec,
            "parameters": params(o.path),
            "responses": responses,
        });
        if let Some(r) = o.request {
            let mut b = body(r);
            b["required"] = true.into();
            operation["requestBody"] = b;
        }
        let item = paths.entry(o.path.to_string()).or_insert_with(|| json!({}));
        item[o.method.to_lowercase()] = operation;
    }
    let plugin_errors: &[(u16, &str)] = &[
        (400, "InvalidJson"),
        (401, "Unauthenticated"),
        (403, "CallerKindNotAllowed"),
        (404, "RouteNotFound"),
        (405, "MethodNotAllowed"),
        (413, "PayloadTooLarge"),
        (500, "PluginPanicked"),
        (500, "PluginTrapped"),
        (503, "PluginUnavailable"),
    ];
    for (plugin, r) in plugin_routes {
        let (Some(method), Some(path)) = (r["method"].as_str(), r["path"].as_str()) else { continue };
        let kinds: Vec<String> =
            r["auth"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect();
        let sec =
            if kinds.iter().any(|k| k == "anonymous") { json!([{}, {"bearer": []}]) } else { json!([{"bearer": []}]) };
        // The plugin's own description (its `cgs-plugin-api` section), if it has one.
        let api = &r["api"];
        let schema = |s: &Value| if s.is_null() { json!({}) } else { s.clone() };
        let mut responses = error_response(plugin_errors);
        let statuses: Vec<u64> = match &api["status"] {
            Value::Number(n) => n.as_u64().into_iter().collect(),
            Value::Array(list) => list.iter().filter_map(Value::as_u64).collect(),
            _ => vec![200],
        };
        for status in statuses {
            responses[status.to_string().as_str()] = json!({"description": "success (the plugin's JSON)",
                "content": {"application/json": {"schema": schema(&api["response"])}}});
        }
        let summary = match api["summary"].as_str() {
            Some(s) => format!("{plugin}: {s} (callers: {})", kinds.join(", ")),
            None => format!("{plugin}: {method} {path} (callers: {})", kinds.join(", ")),
        };
        let mut operation = json!({
            "summary": summary,
            "operationId": format!("{method} {path}"),
            "tags": [plugin],
            "security": sec,
            "parameters": params(path),
            "responses": responses,
            "x-cgs-read-only": r["read_only"],
        });
        if method != "GET" {
            let required = !api["request"].is_null() && api["request_optional"] != json!(true);
            operation["requestBody"] = json!({"required": required,
                "content": {"application/json": {"schema": schema(&api["request"])}}});
        }
        let item = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        item[method.to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "CGS — Clean Room Governance Service",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Generated from the host's route table and the installed plugins' routes.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "a member token (POST /gov/login), a user's JWT or a clean-room session token"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Object": {"type": "object"},
                "List": {"type": "object", "required": ["value"], "properties": {
                    "value": {"type": "array", "items": {"type": "object"}},
                    "next_link": {"type": ["string", "null"]}}},
                "Health": {"type": "object", "properties": {"status": {"type": "string"},
                    "role": {"type": "string"}, "last_tx": {"type": "string"}, "commit": {"type": "string"}}},
                "Consistency": {"type": "object", "required": ["from", "to", "proof"], "properties": {
                    "from": {"type": "integer"}, "to": {"type": "integer"},
                    "proof": {"type": "array", "items": {"type": "string"}}}},
                "TxStatus": {"type": "object", "required": ["status"], "properties": {
                    "status": {"enum": ["Committed", "Invalid"]}}},
                "Plugins": {"type": "object", "required": ["value"], "properties": {"value": {"type": "array",
                    "items": {"type": "object", "required": ["name", "state"], "properties": {
                        "name": {"type": "string"}, "version": {"type": "string"},
                        "blake3": {"type": "string"}, "state": {"enum": ["Running", "Failed"]},
                        "error": {"type": "string"}}}}}},
                "Written": {"type": "object", "properties": {"proposal_id": {"type": "string"},
                    "state": {"type": "string"}}},
                "Token": {"type": "object", "required": ["token", "expires_at"], "properties": {
                    "token": {"type": "string"}, "expires_at": {"type": "integer"}}},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_follow_the_table() {
        assert!(
            matches!(lookup("GET", "/gov/proposals/abc"), Lookup::Found(o) if o.path == "/gov/proposals/{proposal_id}")
        );
        assert!(
            matches!(lookup("POST", "/gov/proposals/simulate"), Lookup::Found(o) if o.path == "/gov/proposals/simulate")
        );
        assert_eq!(lookup("GET", "/gov/proposals/simulate"), Lookup::MethodNotAllowed(vec!["POST"]));
        assert_eq!(lookup("DELETE", "/gov/proposals"), Lookup::MethodNotAllowed(vec!["POST", "GET"]));
        assert_eq!(lookup("GET", "/gov/nothing"), Lookup::NotFound);
        assert_eq!(lookup("GET", "/node/tx/"), Lookup::NotFound);
        assert_eq!(template_of("/node/tx/1.2"), Some("/node/tx/{tx_id}"));
        assert_eq!(template_of("/gov/proposals/abc/ballots"), Some("/gov/proposals/{proposal_id}/ballots"));
        assert_eq!(template_of("/gov/members/m1"), Some("/gov/members/{member_id}"));
        assert_eq!(template_of("/gov/proposals/simulate"), Some("/gov/proposals/simulate"));
        assert_eq!(template_of("/gov/secret-thing"), None);
    }

    #[test]
    fn every_operation_is_unique_and_documented() {
        let mut seen = std::collections::BTreeSet::new();
        for o in HOST_OPS {
            assert!(seen.insert((o.method, o.path)), "{} {} twice", o.method, o.path);
            assert!(o.path.starts_with('/') && !o.summary.is_empty());
        }
        let doc = document(&[]);
        let operations: usize = doc["paths"].as_object().unwrap().values().map(|i| i.as_object().unwrap().len()).sum();
        assert_eq!(operations, HOST_OPS.len(), "every operation is in the document");
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                // A success (200, or the console's 308 redirect) and at least one error.
                let success = op["responses"]["200"].is_object() || op["responses"]["308"].is_object();
                assert!(success && op["responses"].as_object().unwrap().len() > 1, "{op}");
            }
        }
    }
}
