//! A test plugin that misbehaves on request, to show that the host isolates each call.
//!
//! * `GET /chaos/ok` answers; `GET /chaos/{loop,alloc,panic,trap}` loops forever, allocates
//!   without bound, panics, or traps;
//! * `POST /chaos/write-then/{mode}` writes `{"key","value"}` and then misbehaves per `mode`
//!   (`loop`, `alloc`, `panic`, `error`) — the write must never become visible;
//! * `PUT|GET /chaos/kv/{key}` store and read values; `GET /chaos/readonly-write` tries to write on
//!   a read-only route and `POST /chaos/gov-write` tries to write a governance table;
//! * `POST /chaos/count/{key}[?spin=N]` adds one to a counter (read, spin N rounds, write): a hot
//!   key for concurrent writers;
//! * governance actions `chaos.set_flag {"value"}` (writes the flag) and `chaos.fail_on_apply`
//!   (validates, then fails after writing), and `GET /chaos/flag`.

use std::hint::black_box;

use cgs_plugin::{Action, ActionInfo, App, Auth, Error, Request, Response, Result, Router, Table, context, log};
use serde::{Deserialize, Serialize};

static KV: Table<str, String> = Table::new("kv");
static GOV: Table<str, String> = Table::new("gov.members");
static FLAGS: Table<str, serde_json::Value> = Table::new("flags");
static COUNTERS: Table<str, u64> = Table::new("counters");

#[derive(Serialize, Deserialize)]
struct Write {
    key: String,
    value: String,
}

struct Chaos;

impl App for Chaos {
    fn router() -> Router {
        Router::new()
            .get("/chaos/ok", Auth::ANYONE, |_| {
                Response::ok(&serde_json::json!({"ok": true, "tx_time_ms": context::tx_time_ms()}))
            })
            .get("/chaos/loop", Auth::ANYONE, spin)
            .get("/chaos/alloc", Auth::ANYONE, hog)
            .get("/chaos/panic", Auth::ANYONE, |_| panic!("chaos panic requested"))
            .get("/chaos/trap", Auth::ANYONE, |_| {
                let v: Vec<u32> = black_box(Vec::new());
                #[allow(clippy::indexing_slicing)]
                Response::ok(&v[black_box(7)])
            })
            .post("/chaos/write-then/{mode}", Auth::ANYONE, write_then)
            .put("/chaos/kv/{key}", Auth::ANYONE, put)
            .post("/chaos/count/{key}", Auth::ANYONE, count)
            .get("/chaos/kv/{key}", Auth::ANYONE, get)
            .get("/chaos/readonly-write", Auth::ANYONE, |_| {
                KV.put("x", &"y".to_string())?;
                Response::ok(&"wrote")
            })
            .post("/chaos/gov-write", Auth::ANYONE, |_| {
                GOV.put("x", &"y".to_string())?;
                Response::ok(&"wrote")
            })
            .get("/chaos/member-only", Auth::MEMBER, |_| Response::ok(&"member"))
            .get("/chaos/flag", Auth::ANYONE, |_| Response::ok(&FLAGS.get("flag")?))
    }

    fn actions() -> Vec<ActionInfo> {
        vec![
            ActionInfo::new("chaos.set_flag", "set the flag: {\"value\": any}"),
            ActionInfo::new("chaos.fail_on_apply", "validates, then fails when applied (after writing)"),
        ]
    }

    fn validate_action(action: &Action) -> Result<()> {
        match action.name.as_str() {
            "chaos.set_flag" | "chaos.fail_on_apply" => Ok(()),
            other => Err(Error::unknown_action(other)),
        }
    }

    fn apply_action(action: &Action) -> Result<()> {
        match action.name.as_str() {
            "chaos.set_flag" => {
                let args: serde_json::Value = action.args()?;
                FLAGS.put("flag", &args["value"])
            }
            "chaos.fail_on_apply" => {
                FLAGS.put("partial", &serde_json::json!("written before failing"))?;
                Err(Error::conflict("ApplyFailed", "chaos.fail_on_apply fails on purpose"))
            }
            other => Err(Error::unknown_action(other)),
        }
    }
}

fn spin(_: &Request) -> Result<Response> {
    let mut x: u64 = 0;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

fn hog(_: &Request) -> Result<Response> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let chunk = vec![1u8; 1 << 20];
        chunks.push(black_box(chunk));
        black_box(&chunks);
    }
}

fn write_then(req: &Request) -> Result<Response> {
    let w: Write = req.json()?;
    KV.put(&w.key, &w.value)?;
    log::info(format!("wrote {} before misbehaving", w.key));
    match req.param("mode")? {
        "loop" => spin(req),
        "alloc" => hog(req),
        "panic" => panic!("panic after writing {}", w.key),
        "error" => Err(Error::conflict("ChaosError", "failing on purpose after a write")),
        other => Err(Error::bad_request("UnknownMode", format!("unknown mode `{other}`"))),
    }
}

fn put(req: &Request) -> Result<Response> {
    let w: Write = req.json()?;
    KV.put(req.param("key")?, &w.value)?;
    Response::ok(&w)
}

fn count(req: &Request) -> Result<Response> {
    let key = req.param("key")?;
    let n = COUNTERS.get(key)?.unwrap_or(0);
    let rounds: u64 = req.query("spin").and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut x = 0u64;
    for i in 0..rounds {
        x = black_box(x.wrapping_add(i));
    }
    black_box(x);
    COUNTERS.put(key, &(n + 1))?;
    Response::ok(&serde_json::json!({"key": key, "value": n + 1}))
}

fn get(req: &Request) -> Result<Response> {
    let key = req.param("key")?;
    match KV.get_versioned(key)? {
        Some(v) => Response::ok(&serde_json::json!({"key": key, "value": v.value, "version": v.version})),
        None => Err(Error::not_found("KeyNotFound", format!("no value at `{key}`"))),
    }
}

cgs_plugin::app_plugin!(Chaos, name = "chaos");
