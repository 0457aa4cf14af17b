//! Consent: per-contract execution, logging and telemetry switches.
//!
//! * Execution is enabled once the contract is accepted, unless a collaborator disabled it with
//!   their own kill switch (`POST /contracts/{id}/consent/execution/disable`, optional body
//!   `{"reason"}`); the status then names who. Each member re-enables only their own switch. A
//!   revoked contract is disabled for good.
//! * Logging and telemetry are disabled until a proposal enables them
//!   (`consent.enable_logging` / `consent.enable_telemetry`); `consent.disable_*` needs no votes
//!   under the default constitution, so any member withdraws that consent alone.
//! * `GET /contracts/{id}/consent/{execution|logging|telemetry}` answers
//!   `{"status":"enabled|disabled","reason"?:{code,message}}` to the contract's parties.

use cgs_cleanroom::{CONTRACTS, State, authorize, contract_arg, not_found, open_proposals};
use cgs_plugin::{
    Action, ActionInfo, App, Auth, Caller, Error, Request, Response, Result, Router, Table, cleanroom, context,
};
use serde::{Deserialize, Serialize};

/// One member's execution kill switch for one contract.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KillSwitch {
    disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    at_ms: u64,
}

/// A logging or telemetry consent set by proposal.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OptionState {
    enabled: bool,
    proposal_id: String,
    at_ms: u64,
}

/// Keys are `<contract>/<member>`.
static KILL_SWITCHES: Table<str, KillSwitch> = Table::new("kill-switches");
/// Keys are `<contract>/<logging|telemetry>`.
static OPTIONS: Table<str, OptionState> = Table::new("options");
/// Member records (for names in reasons).
static MEMBERS: Table<str, serde_json::Value> = Table::new("gov.members");

const MAX_REASON: usize = 512;

fn kind(req: &Request) -> Result<&str> {
    match req.param("kind")? {
        k @ ("execution" | "logging" | "telemetry") => Ok(k),
        other => Err(Error::not_found(
            "UnknownConsentKind",
            format!("`{other}` is not a consent kind: use execution, logging or telemetry"),
        )),
    }
}

fn member_label(id: &str) -> String {
    let name = MEMBERS.get(id).ok().flatten().and_then(|m| m["data"]["name"].as_str().map(str::to_string));
    match name {
        Some(n) => format!("{id} ({n})"),
        None => id.to_string(),
    }
}

fn status(req: &Request) -> Result<Response> {
    let id = req.param("id")?;
    let kind = kind(req)?;
    let c = authorize(&CONTRACTS, id, &req.caller)?.value;
    let disabled = |code: &str, message: String| {
        Response::ok(&serde_json::json!({"status": "disabled", "reason": {"code": code, "message": message}}))
    };
    if c.state == State::Revoked {
        return disabled("ContractRevoked", format!("contract `{id}` was revoked; consent is off for good"));
    }
    if kind != "execution" {
        return match OPTIONS.get(&format!("{id}/{kind}"))? {
            Some(o) if o.enabled => {
                Response::ok(&serde_json::json!({"status": "enabled", "proposal_id": o.proposal_id}))
            }
            Some(o) => disabled(
                &format!("{}Disabled", capitalized(kind)),
                format!("{kind} was disabled by proposal {}", o.proposal_id),
            ),
            None => disabled(
                &format!("{}NotEnabled", capitalized(kind)),
                format!("{kind} is disabled until a consent.enable_{kind} proposal is accepted"),
            ),
        };
    }
    if c.state != State::Accepted {
        return disabled("ContractNotAccepted", format!("contract `{id}` is not accepted"));
    }
    let prefix = format!("{id}/");
    let end = format!("{id}0"); // '0' follows '/'
    let switches = KILL_SWITCHES.range(Some(prefix.as_str()), Some(end.as_str()), 10_000, false)?;
    let off: Vec<(String, KillSwitch)> = switches
        .into_iter()
        .filter(|(_, s)| s.value.disabled)
        .map(|(k, s)| (k.strip_prefix(&prefix).unwrap_or(&k).to_string(), s.value))
        .collect();
    if !off.is_empty() {
        let who: Vec<String> = off
            .iter()
            .map(|(m, s)| match &s.reason {
                Some(r) => format!("{}: {r}", member_label(m)),
                None => member_label(m),
            })
            .collect();
        return Response::ok(&serde_json::json!({
            "status": "disabled",
            "reason": {
                "code": "ContractDisabled",
                "message": format!("execution of contract `{id}` was disabled by member(s) {}", who.join("; ")),
            },
            "disabled_by": off.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(),
        }));
    }
    Response::ok(&serde_json::json!({"status": "enabled"}))
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    reason: Option<String>,
}

fn switch(req: &Request) -> Result<Response> {
    let id = req.param("id")?;
    let disabled = match req.param("action")? {
        "enable" => false,
        "disable" => true,
        other => {
            return Err(Error::not_found("UnknownConsentAction", format!("`{other}` is not enable or disable")));
        }
    };
    let body: SwitchBody = if req.body.is_empty() { SwitchBody::default() } else { req.json()? };
    if body.reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
        return Err(Error::bad_request("InvalidReason", format!("`reason` is at most {MAX_REASON} bytes")));
    }
    let c = authorize(&CONTRACTS, id, &req.caller)?.value;
    if c.state == State::Revoked {
        return Err(Error::not_allowed_in_state(
            "ContractRevoked",
            format!("contract `{id}` was revoked; execution stays disabled"),
        ));
    }
    let member = &req.caller.id;
    let key = format!("{id}/{member}");
    // The host enforces the switch on clean rooms from its own record, told here.
    cleanroom::set_kill_switch(id, member, disabled, body.reason.as_deref())?;
    if disabled {
        KILL_SWITCHES.put(&key, &KillSwitch { disabled, reason: body.reason, at_ms: context::tx_time_ms() })?;
    } else {
        KILL_SWITCHES.delete(&key)?;
    }
    Response::ok(&serde_json::json!({"contract_id": id, "member_id": member, "execution": if disabled { "disabled" } else { "enabled" }}))
        .map(|r| r.with_header("cgs-fill-tx", "1"))
}

const OPTION_ACTIONS: &[(&str, &str, bool, &str)] = &[
    ("consent.enable_logging", "logging", true, "enable logging for a contract (needs votes): {\"contract_id\"}"),
    (
        "consent.disable_logging",
        "logging",
        false,
        "disable logging for a contract (any member, no votes): {\"contract_id\"}",
    ),
    ("consent.enable_telemetry", "telemetry", true, "enable telemetry for a contract (needs votes): {\"contract_id\"}"),
    (
        "consent.disable_telemetry",
        "telemetry",
        false,
        "disable telemetry for a contract (any member, no votes): {\"contract_id\"}",
    ),
];

fn act(action: &Action, apply: bool) -> Result<()> {
    let Some(&(_, kind, enabled, _)) = OPTION_ACTIONS.iter().find(|(n, ..)| *n == action.name) else {
        return Err(Error::unknown_action(&action.name));
    };
    let args: serde_json::Value = action.args()?;
    let id = contract_arg(&args)?;
    let c = CONTRACTS.get(id)?.ok_or_else(|| not_found(id))?;
    let proposer: Caller = context::caller();
    if !c.admits(id, &proposer) {
        return Err(Error::forbidden(
            "NotAContractParty",
            format!("member {} is not a collaborator of contract `{id}`", proposer.id),
        ));
    }
    if enabled && c.state != State::Accepted {
        return Err(Error::not_allowed_in_state(
            "ContractNotAccepted",
            format!("contract `{id}` is {:?}; only an accepted contract can enable {kind}", c.state),
        ));
    }
    if apply {
        let proposal_id = context::proposal_id().unwrap_or_default();
        OPTIONS.put(&format!("{id}/{kind}"), &OptionState { enabled, proposal_id, at_ms: context::tx_time_ms() })?;
    }
    Ok(())
}

fn proposals(req: &Request) -> Result<Response> {
    let id = req.param("id")?;
    authorize(&CONTRACTS, id, &req.caller)?;
    let mut value = serde_json::Map::new();
    for (name, ..) in OPTION_ACTIONS {
        value.insert(name.to_string(), open_proposals(name, id, None)?.into());
    }
    Response::ok(&value)
}

struct Consent;

impl App for Consent {
    fn router() -> Router {
        Router::new()
            .get("/contracts/{id}/consent/{kind}", Auth::MEMBER | Auth::USER | Auth::CLEANROOM, status)
            .post("/contracts/{id}/consent/execution/{action}", Auth::MEMBER, switch)
            .get("/contracts/{id}/consent-proposals", Auth::MEMBER | Auth::USER, proposals)
    }

    fn actions() -> Vec<ActionInfo> {
        OPTION_ACTIONS
            .iter()
            .map(|(n, _, _, d)| ActionInfo { name: n.to_string(), description: d.to_string() })
            .collect()
    }

    fn validate_action(action: &Action) -> Result<()> {
        act(action, false)
    }

    fn apply_action(action: &Action) -> Result<()> {
        act(action, true)
    }
}

cgs_plugin::app_plugin!(Consent, name = "consent");
// The routes' request and answer schemas, shown in the service's `GET /openapi.json`.
cgs_plugin::api_schema!("api.json");

#[cfg(test)]
mod tests {
    use super::*;
    use cgs_cleanroom::Contract;
    use cgs_plugin::{Method, testing};

    fn contract(state: State) -> Contract {
        Contract {
            state,
            data: serde_json::json!({}),
            collaborators: Some(vec!["m1".into(), "m2".into()]),
            users: vec![],
            created_by: "m1".into(),
            updated_by: "m1".into(),
            updated_at_ms: 0,
            proposal_id: Some("p0".into()),
            accepted_at_ms: Some(0),
            revoked_by: None,
        }
    }

    fn call(m: &str, method: Method, route: &str, params: &[(&str, &str)]) -> Result<serde_json::Value> {
        testing::set_caller(Caller::member(m));
        Consent::router().dispatch(&Request::new(method, route, params).with_caller(Caller::member(m)))?.body_json()
    }

    fn check(m: &str, kind: &str) -> serde_json::Value {
        call(m, Method::Get, "/contracts/{id}/consent/{kind}", &[("id", "c"), ("kind", kind)]).unwrap()
    }

    #[test]
    fn kill_switches_and_options() {
        testing::reset();
        testing::set_gov_writable(true);
        CONTRACTS.put("c", &contract(State::Accepted)).unwrap();
        assert_eq!(check("m1", "execution")["status"], "enabled");
        assert_eq!(check("m1", "logging")["reason"]["code"], "LoggingNotEnabled");
        assert_eq!(
            call("m3", Method::Get, "/contracts/{id}/consent/{kind}", &[("id", "c"), ("kind", "execution")])
                .unwrap_err()
                .code,
            "NotAContractParty"
        );
        call("m2", Method::Post, "/contracts/{id}/consent/execution/{action}", &[("id", "c"), ("action", "disable")])
            .unwrap();
        let s = check("m1", "execution");
        assert_eq!((s["status"].as_str(), s["reason"]["code"].as_str()), (Some("disabled"), Some("ContractDisabled")));
        assert!(s["reason"]["message"].as_str().unwrap().contains("m2"));
        // m1 cannot lift m2's switch.
        call("m1", Method::Post, "/contracts/{id}/consent/execution/{action}", &[("id", "c"), ("action", "enable")])
            .unwrap();
        assert_eq!(check("m1", "execution")["status"], "disabled");
        call("m2", Method::Post, "/contracts/{id}/consent/execution/{action}", &[("id", "c"), ("action", "enable")])
            .unwrap();
        assert_eq!(check("m1", "execution")["status"], "enabled");

        let enable = Action { name: "consent.enable_logging".into(), args: r#"{"contract_id":"c"}"#.into() };
        testing::set_caller(Caller::member("m1"));
        testing::set_proposal(Some(("p9", vec![enable.clone()])));
        act(&enable, true).unwrap();
        assert_eq!(check("m1", "logging")["status"], "enabled");
        let disable = Action { name: "consent.disable_logging".into(), args: r#"{"contract_id":"c"}"#.into() };
        act(&disable, true).unwrap();
        assert_eq!(check("m1", "logging")["reason"]["code"], "LoggingDisabled");

        CONTRACTS.put("c", &contract(State::Revoked)).unwrap();
        assert_eq!(check("m1", "execution")["reason"]["code"], "ContractRevoked");
        CONTRACTS.put("d", &contract(State::Draft)).unwrap();
        let s =
            call("m1", Method::Get, "/contracts/{id}/consent/{kind}", &[("id", "d"), ("kind", "execution")]).unwrap();
        assert_eq!(s["reason"]["code"], "ContractNotAccepted");
    }
}
