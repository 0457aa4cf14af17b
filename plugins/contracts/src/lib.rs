//! Contracts: drafts that collaborators co-author with optimistic versions.
//!
//! `PUT /contracts/{id}` creates a draft (409 `ContractAlreadyExists` if it exists and no
//! `version` is sent) or updates it (412 `PreconditionFailed` on a stale `version`, 405
//! `ContractAlreadyAccepted` once accepted). `GET /contracts[?state=]` lists,
//! `GET /contracts/{id}` reads. Proposing and accepting contracts arrives with governance.

use cgs_plugin::{App, Auth, Error, Request, Response, Result, Router, Table, TxId, context};
use serde::{Deserialize, Serialize};

/// A contract's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Being drafted.
    Draft,
    /// In an open proposal.
    Proposed,
    /// Accepted by the consortium.
    Accepted,
    /// Revoked after acceptance.
    Revoked,
}

/// A stored contract.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Contract {
    /// Lifecycle state.
    pub state: State,
    /// The contract document.
    pub data: serde_json::Value,
    /// Who last changed it.
    pub updated_by: String,
    /// When (tx time, ms).
    pub updated_at_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutContract {
    version: Option<String>,
    data: serde_json::Value,
}

static CONTRACTS: Table<str, Contract> = Table::new("contracts");

const MAX_ID: usize = 128;

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(Error::bad_request(
            "InvalidContractId",
            format!("contract ids are 1-{MAX_ID} chars of A-Z a-z 0-9 - _ ."),
        ));
    }
    Ok(())
}

fn view(id: &str, c: &Contract, version: TxId) -> serde_json::Value {
    serde_json::json!({"id": id, "version": version, "state": c.state, "data": c.data})
}

fn put_contract(req: &Request) -> Result<Response> {
    let id = req.param("id")?;
    check_id(id)?;
    let body: PutContract = req.json()?;
    let existing = CONTRACTS.get_versioned(id)?;
    match (&existing, &body.version) {
        (Some(_), None) => {
            return Err(Error::conflict(
                "ContractAlreadyExists",
                format!("contract `{id}` exists; send its current `version` to update it"),
            ));
        }
        (None, Some(_)) => return Err(Error::not_found("ContractNotFound", format!("contract `{id}` does not exist"))),
        (Some(cur), Some(v)) => {
            if cur.value.state != State::Draft {
                return Err(Error::not_allowed_in_state(
                    "ContractAlreadyAccepted",
                    format!("contract `{id}` is {:?} and can no longer change", cur.value.state),
                ));
            }
            let sent: TxId = v.parse()?;
            if sent != cur.version {
                return Err(Error::precondition_failed(
                    "PreconditionFailed",
                    format!(
                        "contract `{id}` is at version {}, not {sent}; read it again and reapply your change",
                        cur.version
                    ),
                ));
            }
        }
        (None, None) => {}
    }
    let c = Contract {
        state: State::Draft,
        data: body.data,
        updated_by: req.caller.id.clone(),
        updated_at_ms: context::tx_time_ms(),
    };
    CONTRACTS.put(id, &c)?;
    Response::json(if existing.is_some() { 200 } else { 201 }, &serde_json::json!({"id": id, "state": c.state}))
}

fn get_contract(req: &Request) -> Result<Response> {
    let id = req.param("id")?;
    check_id(id)?;
    let c = CONTRACTS
        .get_versioned(id)?
        .ok_or_else(|| Error::not_found("ContractNotFound", format!("contract `{id}` does not exist")))?;
    Response::ok(&view(id, &c.value, c.version))
}

fn list_contracts(req: &Request) -> Result<Response> {
    let state = match req.query("state") {
        None => None,
        Some(s) => Some(serde_json::from_value::<State>(serde_json::Value::String(s.into())).map_err(|_| {
            Error::bad_request(
                "InvalidState",
                format!("`{s}` is not a contract state (Draft, Proposed, Accepted, Revoked)"),
            )
        })?),
    };
    let all = CONTRACTS.all(10_000)?;
    let value: Vec<_> = all
        .iter()
        .filter(|(_, c)| state.is_none_or(|s| c.value.state == s))
        .map(|(id, c)| view(id, &c.value, c.version))
        .collect();
    Response::ok(&serde_json::json!({"value": value, "next_link": null}))
}

struct Contracts;

impl App for Contracts {
    fn router() -> Router {
        Router::new()
            .get("/contracts", Auth::ANYONE, list_contracts)
            .get("/contracts/{id}", Auth::ANYONE, get_contract)
            .put("/contracts/{id}", Auth::MEMBER | Auth::ANONYMOUS, put_contract)
    }
}

cgs_plugin::app_plugin!(Contracts, name = "contracts");

#[cfg(test)]
mod tests {
    use super::*;
    use cgs_plugin::{Method, testing};

    fn put(id: &str, body: serde_json::Value) -> Result<Response> {
        Contracts::router().dispatch(&Request::new(Method::Put, "/contracts/{id}", &[("id", id)]).with_json(&body))
    }

    #[test]
    fn drafts_with_optimistic_versions() {
        testing::reset();
        assert_eq!(put("c1", serde_json::json!({"data": {"v": 1}})).unwrap().status, 201);
        assert_eq!(put("c1", serde_json::json!({"data": {"v": 2}})).unwrap_err().code, "ContractAlreadyExists");
        let got = Contracts::router().dispatch(&Request::new(Method::Get, "/contracts/{id}", &[("id", "c1")])).unwrap();
        let version = got.body_json::<serde_json::Value>().unwrap()["version"].as_str().unwrap().to_string();
        assert_eq!(put("c1", serde_json::json!({"version": version, "data": {"v": 2}})).unwrap().status, 200);
        let stale = put("c1", serde_json::json!({"version": version, "data": {"v": 3}})).unwrap_err();
        assert_eq!((stale.code.as_str(), stale.kind.status()), ("PreconditionFailed", 412));
        assert_eq!(put("bad id", serde_json::json!({"data": 1})).unwrap_err().code, "InvalidContractId");
        assert_eq!(put("c2", serde_json::json!({"nope": 1})).unwrap_err().code, "InvalidJson");
    }
}
