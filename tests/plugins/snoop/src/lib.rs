//! A malicious workload plugin, for the attack tests: once members approve it, it tries to read
//! (and write) every governance table by name — the host's secrets in `gov.private.*` above all —
//! and answers with whatever it managed to get.
//!
//! * `GET /snoop/gov/{table}` reads `gov.<table>` (a full scan) →
//!   `200 {"table","entries":[…]}` or `403 {"error":{"code":"Refused","message":<kv error>}}`;
//! * `PUT /snoop/gov/{table}` tries to write `gov.<table>`;
//! * `GET /snoop/app/{plugin}/{table}` reads another plugin's table `app.<plugin>.<table>`;
//! * `PUT /snoop/cleanroom/{what}/{id}` tries to tell the host what clean rooms of contract `id`
//!   may do, as only `contracts` and `consent` may: `what` = `contract` (accepted, every member
//!   a party), `policy` (any `x-ms-sevsnpvm-hostdata`), or `kill-switch` (body: the member id
//!   whose switch to turn off).

use cgs_plugin::{App, Auth, Error, Request, Response, Result, Router, Table, cleanroom};

/// A table named at run time (leaked: a plugin instance lives for one request).
fn table(name: String) -> Table<[u8], serde_json::Value> {
    Table::new(Box::leak(name.into_boxed_str()))
}

fn dump(name: String) -> Result<Response> {
    match table(name.clone()).all(1000) {
        Ok(entries) => {
            let entries: Vec<serde_json::Value> = entries
                .into_iter()
                .map(|(k, v)| serde_json::json!({"key": String::from_utf8_lossy(&k), "value": v.value}))
                .collect();
            Response::ok(&serde_json::json!({"table": name, "entries": entries}))
        }
        Err(e) => Err(Error::forbidden("Refused", format!("{name}: {} ({})", e.message, e.code))),
    }
}

struct Snoop;

impl App for Snoop {
    fn router() -> Router {
        Router::new()
            .get("/snoop/gov/{table}", Auth::ANYONE, |req: &Request| dump(format!("gov.{}", req.param("table")?)))
            .put("/snoop/gov/{table}", Auth::ANYONE, |req: &Request| {
                let name = format!("gov.{}", req.param("table")?);
                match table(name.clone()).put(b"snooped", &serde_json::json!("owned")) {
                    Ok(()) => Response::ok(&serde_json::json!({"wrote": name})),
                    Err(e) => Err(Error::forbidden("Refused", format!("{name}: {} ({})", e.message, e.code))),
                }
            })
            .get("/snoop/app/{plugin}/{table}", Auth::ANYONE, |req: &Request| {
                dump(format!("app.{}.{}", req.param("plugin")?, req.param("table")?))
            })
            .put("/snoop/cleanroom/{what}/{id}", Auth::ANYONE, |req: &Request| {
                let id = req.param("id")?;
                let creator = "0".repeat(64);
                match req.param("what")? {
                    "contract" => cleanroom::set_contract(
                        id,
                        &cleanroom::Contract {
                            state: cleanroom::ContractState::Accepted,
                            parties: cleanroom::Parties { created_by: &creator, collaborators: None, users: &[] },
                        },
                    )?,
                    "policy" => cleanroom::set_policy(
                        id,
                        &[("x-ms-sevsnpvm-hostdata".to_string(), vec!["00".repeat(32)])].into(),
                    )?,
                    _ => cleanroom::set_kill_switch(id, &req.json::<String>()?, false, None)?,
                }
                Response::ok(&serde_json::json!({"told": id}))
            })
    }
}

cgs_plugin::app_plugin!(Snoop, name = "snoop");
