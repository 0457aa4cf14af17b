//! Consent: per-contract execution, logging and telemetry switches.
//!
//! Execution is enabled once a contract is accepted, unless a member disabled it with their own
//! kill switch; logging and telemetry are disabled until a proposal enables them. Until
//! governance accepts contracts on this node, every contract reports execution
//! `ContractNotAccepted`.

use cgs_plugin::{App, Auth, Error, Request, Response, Result, Router, Table, context};
use serde::{Deserialize, Serialize};

/// One member's execution kill switch for one contract.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KillSwitch {
    disabled: bool,
    at_ms: u64,
}

/// Keys are `<contract>/<member>`.
static KILL_SWITCHES: Table<str, KillSwitch> = Table::new("kill-switches");
/// Keys are contract ids: set when governance accepts the contract.
static ACCEPTED: Table<str, bool> = Table::new("accepted");
/// Keys are `<contract>/<logging|telemetry>`.
static ENABLED: Table<str, bool> = Table::new("enabled");

fn kind(req: &Request) -> Result<&str> {
    match req.param("kind")? {
        k @ ("execution" | "logging" | "telemetry") => Ok(k),
        other => {
            Err(Error::not_found("UnknownConsentKind", format!("`{other}` is not execution, logging or telemetry")))
        }
    }
}

fn status(req: &Request) -> Result<Response> {
    let contract = req.param("id")?;
    let kind = kind(req)?;
    let disabled = |code: &str, message: String| {
        Response::ok(&serde_json::json!({"status": "disabled", "reason": {"code": code, "message": message}}))
    };
    if kind != "execution" {
        return if ENABLED.get(&format!("{contract}/{kind}"))?.unwrap_or(false) {
            Response::ok(&serde_json::json!({"status": "enabled"}))
        } else {
            disabled("NotEnabled", format!("{kind} is disabled until a proposal enables it"))
        };
    }
    if !ACCEPTED.get(contract)?.unwrap_or(false) {
        return disabled("ContractNotAccepted", format!("contract `{contract}` is not accepted"));
    }
    let prefix = format!("{contract}/");
    let end = format!("{contract}0");
    let switches = KILL_SWITCHES.range(Some(prefix.as_str()), Some(end.as_str()), 1000, false)?;
    if let Some((key, _)) = switches.iter().find(|(_, s)| s.value.disabled) {
        let member = key.strip_prefix(&prefix).unwrap_or(key);
        return disabled("ExecutionDisabledByMember", format!("member {member} disabled execution of `{contract}`"));
    }
    Response::ok(&serde_json::json!({"status": "enabled"}))
}

fn switch(req: &Request) -> Result<Response> {
    let contract = req.param("id")?;
    let disabled = match req.param("action")? {
        "enable" => false,
        "disable" => true,
        other => return Err(Error::not_found("UnknownConsentAction", format!("`{other}` is not enable or disable"))),
    };
    let member = &req.caller.id;
    KILL_SWITCHES.put(&format!("{contract}/{member}"), &KillSwitch { disabled, at_ms: context::tx_time_ms() })?;
    Ok(Response::no_content())
}

struct Consent;

impl App for Consent {
    fn router() -> Router {
        Router::new().get("/contracts/{id}/consent/{kind}", Auth::ANYONE, status).post(
            "/contracts/{id}/consent/execution/{action}",
            Auth::MEMBER,
            switch,
        )
    }
}

cgs_plugin::app_plugin!(Consent, name = "consent");
