//! Audit events per contract, timestamped with the leader's transaction time.
//!
//! `POST /contracts/{id}/events[?scope=&id=]` records any JSON document and answers
//! `201 {"seqno","timestamp"}`; `GET /contracts/{id}/events[?scope=&id=&from=&limit=]` lists
//! them in order.

use cgs_plugin::{App, Auth, Error, Request, Response, Result, Router, Table, context};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Event {
    contract: String,
    scope: String,
    id: String,
    timestamp_ms: u64,
    data: serde_json::Value,
}

/// Events by per-contract sequence number: key `<contract>\0<seqno big-endian>`.
static EVENTS: Table<[u8], Event> = Table::new("events");
/// Next sequence number per contract.
static NEXT: Table<str, u64> = Table::new("next-seqno");

fn key(contract: &str, seqno: u64) -> Vec<u8> {
    let mut k = contract.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&seqno.to_be_bytes());
    k
}

fn add(req: &Request) -> Result<Response> {
    let contract = req.param("id")?;
    let data: serde_json::Value = req.json()?;
    let seqno = NEXT.get(contract)?.unwrap_or(1);
    let event = Event {
        contract: contract.to_string(),
        scope: req.query("scope").unwrap_or_default().to_string(),
        id: req.query("id").unwrap_or_default().to_string(),
        timestamp_ms: context::tx_time_ms(),
        data,
    };
    EVENTS.put(&key(contract, seqno), &event)?;
    NEXT.put(contract, &(seqno + 1))?;
    Response::created(&serde_json::json!({"seqno": seqno, "timestamp": event.timestamp_ms}))
}

fn list(req: &Request) -> Result<Response> {
    let contract = req.param("id")?;
    let from = req.query_parse::<u64>("from")?.unwrap_or(1);
    let limit = req.query_parse::<u32>("limit")?.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(Error::bad_request("InvalidLimit", "`limit` must be 1 to 1000"));
    }
    let scope = req.query("scope");
    let id = req.query("id");
    let entries =
        EVENTS.range(Some(key(contract, from).as_slice()), Some(key(contract, u64::MAX).as_slice()), limit, false)?;
    let value: Vec<_> = entries
        .into_iter()
        .filter(|(_, e)| scope.is_none_or(|s| e.value.scope == s) && id.is_none_or(|i| e.value.id == i))
        .map(|(k, e)| {
            let seqno = k.get(k.len().saturating_sub(8)..).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
            serde_json::json!({"scope": e.value.scope, "id": e.value.id, "seqno": seqno, "timestamp": e.value.timestamp_ms, "data": e.value.data})
        })
        .collect();
    Response::ok(&serde_json::json!({"value": value, "next_link": null}))
}

struct Audit;

impl App for Audit {
    fn router() -> Router {
        Router::new().post("/contracts/{id}/events", Auth::ANYONE, add).get(
            "/contracts/{id}/events",
            Auth::ANYONE,
            list,
        )
    }
}

cgs_plugin::app_plugin!(Audit, name = "audit");
