//! Audit events per contract.
//!
//! `POST /contracts/{id}/events[?scope=&id=]` records any JSON document as its own ledger entry
//! (so every event has a receipt) and answers, after commit,
//! `201 {"seqno","tx_id","timestamp"}`: `seqno` is the event's ledger position, `timestamp` the
//! leader's transaction time (ms) — never a time the client sent.
//!
//! `GET /contracts/{id}/events[?scope=&id=&from=&to=&limit=&order=asc|desc]` lists events with
//! `from <= seqno <= to`, oldest first (or newest first with `order=desc`), at most `limit`
//! (default 100, at most 1000) per page; `next_link` is the URL of the next page, or `null`.
//!
//! Storage: the `events` table is an append log per contract (`<contract>\0 ‖ seqno ‖ n`, keys
//! assigned by the ledger at commit, so they sort in ledger order and concurrent writers never
//! conflict); the `index` table holds empty entries under `<contract>\0s\0<B(scope)>`,
//! `<contract>\0i\0<B(id)>` and `<contract>\0b\0<B(scope ‖ 0 ‖ id)>` with the same seqno (the
//! event is its transaction's first append, so its key is `<contract>\0 ‖ seqno ‖ 0`). Both tables
//! are encrypted in the ledger (plugin tables are private by default); keys are not, so the
//! scope and id in index keys are blinded (`B` = `cgs_plugin::blind`, 32 bytes): the ledger files
//! reveal neither.

use cgs_cleanroom::{CONTRACTS, State, authorize};
use cgs_plugin::{App, Auth, Error, Request, Response, Result, Router, Table, TxId, context};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Event {
    scope: String,
    id: String,
    timestamp_ms: u64,
    data: serde_json::Value,
}

static EVENTS: Table<[u8], Event> = Table::new("events");
static INDEX: Table<[u8], ()> = Table::new("index");

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
const MAX_LABEL: usize = 128;

fn label<'a>(req: &'a Request, name: &str) -> Result<Option<&'a str>> {
    match req.query(name) {
        None => Ok(None),
        Some(v) if v.is_empty() || v.len() > MAX_LABEL || v.chars().any(char::is_control) => Err(Error::bad_request(
            "InvalidQuery",
            format!("`{name}` is 1-{MAX_LABEL} characters without control characters"),
        )),
        Some(v) => Ok(Some(v)),
    }
}

fn log_prefix(contract: &str) -> Vec<u8> {
    let mut k = contract.as_bytes().to_vec();
    k.push(0);
    k
}

fn index_prefix(contract: &str, scope: Option<&str>, id: Option<&str>) -> Option<Vec<u8>> {
    let mut k = log_prefix(contract);
    let (tag, label): (&[u8], Vec<u8>) = match (scope, id) {
        (None, None) => return None,
        (Some(s), None) => (b"s\0", s.as_bytes().to_vec()),
        (None, Some(i)) => (b"i\0", i.as_bytes().to_vec()),
        (Some(s), Some(i)) => (b"b\0", [s.as_bytes(), b"\0", i.as_bytes()].concat()),
    };
    k.extend_from_slice(tag);
    // Scope and id are the clean room's words: blinded, since keys are visible in the ledger.
    k.extend_from_slice(&cgs_plugin::blind(&[tag, &label].concat()));
    Some(k)
}

fn add(req: &Request) -> Result<Response> {
    let contract = req.param("id")?;
    let (scope, id) = (label(req, "scope")?, label(req, "id")?);
    let c = authorize(&CONTRACTS, contract, &req.caller)?.value;
    if !matches!(c.state, State::Accepted | State::Revoked) {
        return Err(Error::not_allowed_in_state(
            "ContractNotAccepted",
            format!("contract `{contract}` is not accepted; events are recorded for accepted contracts"),
        ));
    }
    let data: serde_json::Value = req.json()?;
    let timestamp = context::tx_time_ms();
    let event = Event {
        scope: scope.unwrap_or_default().into(),
        id: id.unwrap_or_default().into(),
        timestamp_ms: timestamp,
        data,
    };
    EVENTS.append(&log_prefix(contract), &event)?;
    let both = scope.and(id).map(|_| (scope, id));
    for (s, i) in [scope.map(|_| (scope, None)), id.map(|_| (None, id)), both].into_iter().flatten() {
        if let Some(p) = index_prefix(contract, s, i) {
            INDEX.append(&p, &())?;
        }
    }
    Ok(Response::json(201, &serde_json::json!({"timestamp": timestamp}))?.with_header("cgs-fill-tx", "1"))
}

/// `seqno` from the end of an appended key (`… ‖ seqno u64 ‖ n u32`).
fn key_seqno(key: &[u8]) -> u64 {
    key.len()
        .checked_sub(12)
        .and_then(|at| key.get(at..at + 8))
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

fn bound(prefix: &[u8], seqno: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&seqno.to_be_bytes());
    k.extend_from_slice(&0u32.to_be_bytes());
    k
}

/// An event read with its version.
type Loaded = (Event, TxId);

fn list(req: &Request) -> Result<Response> {
    let contract = req.param("id")?;
    let (scope, id) = (label(req, "scope")?, label(req, "id")?);
    let from = req.query_parse::<u64>("from")?.unwrap_or(0);
    let to = req.query_parse::<u64>("to")?;
    let limit = req.query_parse::<u32>("limit")?.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Error::bad_request("InvalidLimit", format!("`limit` must be 1 to {MAX_LIMIT}")));
    }
    let desc = match req.query("order") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(o) => return Err(Error::bad_request("InvalidQuery", format!("`order` is asc or desc, not `{o}`"))),
    };
    if to.is_some_and(|t| t < from) {
        return Err(Error::bad_request("InvalidQuery", "`to` is before `from`"));
    }
    authorize(&CONTRACTS, contract, &req.caller)?;
    let log = log_prefix(contract);
    let prefix = index_prefix(contract, scope, id);
    let table_prefix = prefix.as_deref().unwrap_or(&log);
    let start = bound(table_prefix, from);
    let end = match to.and_then(|t| t.checked_add(1)) {
        Some(t) => bound(table_prefix, t),
        None => {
            let mut e = table_prefix.to_vec();
            e.extend_from_slice(&[0xff; 13]);
            e
        }
    };
    // One more than a page tells whether there is a next page, and where it starts.
    let keys: Vec<(Vec<u8>, Option<Loaded>)> = match &prefix {
        None => EVENTS
            .range(Some(&start), Some(&end), limit + 1, desc)?
            .into_iter()
            .map(|(k, e)| (k, Some((e.value, e.version))))
            .collect(),
        Some(p) => INDEX
            .range(Some(&start), Some(&end), limit + 1, desc)?
            .into_iter()
            // The event is the first append of its transaction (n = 0); index entries follow.
            .map(|(k, _)| (bound(&log, key_seqno(&k[p.len()..])), None))
            .collect(),
    };
    let more = keys.len() > limit as usize;
    let mut value = Vec::new();
    let mut next = None;
    for (i, (k, e)) in keys.into_iter().enumerate() {
        let seqno = key_seqno(&k);
        if i == limit as usize {
            next = Some(seqno);
            break;
        }
        let (e, version) = match e {
            Some(e) => e,
            None => match EVENTS.get_versioned(&k)? {
                Some(v) => (v.value, v.version),
                None => continue,
            },
        };
        value.push(serde_json::json!({
            "scope": e.scope, "id": e.id, "seqno": seqno, "tx_id": version,
            "timestamp": e.timestamp_ms, "data": e.data,
        }));
    }
    let next_link = next.filter(|_| more).map(|n| {
        let mut q = Vec::new();
        if let Some(s) = scope {
            q.push(format!("scope={}", encode(s)));
        }
        if let Some(i) = id {
            q.push(format!("id={}", encode(i)));
        }
        if desc {
            if from > 0 {
                q.push(format!("from={from}"));
            }
            q.push(format!("to={n}"));
            q.push("order=desc".into());
        } else {
            q.push(format!("from={n}"));
            if let Some(t) = to {
                q.push(format!("to={t}"));
            }
        }
        q.push(format!("limit={limit}"));
        format!("/app/contracts/{}/events?{}", encode(contract), q.join("&"))
    });
    Response::ok(&serde_json::json!({"value": value, "next_link": next_link}))
}

use cgs_core::contract::percent_encode as encode;

struct Audit;

impl App for Audit {
    fn router() -> Router {
        Router::new().post("/contracts/{id}/events", Auth::MEMBER | Auth::CLEANROOM, add).get(
            "/contracts/{id}/events",
            Auth::MEMBER | Auth::USER,
            list,
        )
    }
}

cgs_plugin::app_plugin!(Audit, name = "audit");
// The routes' request and answer schemas, shown in the service's `GET /openapi.json`.
cgs_plugin::api_schema!("api.json");

#[cfg(test)]
mod tests {
    use super::*;
    use cgs_cleanroom::Contract;
    use cgs_plugin::{Caller, Method, testing};

    fn post(query: &[(&str, &str)], data: serde_json::Value) -> Result<Response> {
        let mut req = Request::new(Method::Post, "/contracts/{id}/events", &[("id", "c")]).with_json(&data);
        req.query = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Audit::router().dispatch(&req.with_caller(Caller::member("m1")))
    }

    fn get(query: &[(&str, &str)]) -> serde_json::Value {
        let mut req = Request::new(Method::Get, "/contracts/{id}/events", &[("id", "c")]);
        req.query = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Audit::router().dispatch(&req.with_caller(Caller::member("m1"))).unwrap().body_json().unwrap()
    }

    fn seqnos(v: &serde_json::Value) -> Vec<u64> {
        v["value"].as_array().unwrap().iter().map(|e| e["seqno"].as_u64().unwrap()).collect()
    }

    #[test]
    fn log_indexes_and_pages() {
        testing::reset();
        let c = Contract {
            state: State::Accepted,
            data: serde_json::json!({}),
            collaborators: None,
            users: vec![],
            created_by: "m1".into(),
            updated_by: "m1".into(),
            updated_at_ms: 0,
            proposal_id: None,
            accepted_at_ms: None,
            revoked_by: None,
        };
        CONTRACTS.put("c", &c).unwrap();
        testing::set_tx_time_ms(42);
        let r = post(&[("scope", "a"), ("id", "x")], serde_json::json!({"n": 1})).unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.body_json::<serde_json::Value>().unwrap()["timestamp"], 42);
        post(&[("scope", "a")], serde_json::json!({"n": 2})).unwrap();
        post(&[("scope", "b"), ("id", "x")], serde_json::json!({"n": 3})).unwrap();
        post(&[], serde_json::json!({"n": 4})).unwrap();
        let all = get(&[]);
        assert_eq!(all["value"].as_array().unwrap().len(), 4);
        let all_seq = seqnos(&all);
        assert!(all_seq.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(all["value"][0]["data"]["n"], 1);
        assert_eq!(get(&[("scope", "a")])["value"].as_array().unwrap().len(), 2);
        assert_eq!(get(&[("id", "x")])["value"].as_array().unwrap().len(), 2);
        let both = get(&[("scope", "a"), ("id", "x")]);
        assert_eq!(both["value"].as_array().unwrap().len(), 1);
        assert_eq!(both["value"][0]["data"]["n"], 1);
        let page = get(&[("limit", "3")]);
        assert_eq!(seqnos(&page), all_seq[..3]);
        let next = page["next_link"].as_str().unwrap();
        assert!(next.contains(&format!("from={}", all_seq[3])), "{next}");
        let desc = get(&[("order", "desc"), ("limit", "2")]);
        assert_eq!(seqnos(&desc), vec![all_seq[3], all_seq[2]]);
        assert!(desc["next_link"].as_str().unwrap().contains(&format!("to={}", all_seq[1])));
        let window = get(&[("from", &all_seq[1].to_string()), ("to", &all_seq[2].to_string())]);
        assert_eq!(seqnos(&window), all_seq[1..3]);
        assert!(window["next_link"].is_null());
        let mut bad = Request::new(Method::Get, "/contracts/{id}/events", &[("id", "c")]);
        bad.query = vec![("limit".into(), "0".into())];
        assert_eq!(Audit::router().dispatch(&bad.with_caller(Caller::member("m1"))).unwrap_err().code, "InvalidLimit");
    }
}
