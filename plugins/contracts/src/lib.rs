//! Contracts: drafts that collaborators co-author with optimistic versions, accepted, revoked,
//! and given a deployment spec and a clean-room policy by proposal.
//!
//! Routes (under `/app`):
//! * `PUT /contracts/{id}` `{"version"?, "data", "collaborators"?, "users"?}` creates a draft
//!   (409 `ContractAlreadyExists` if it exists and no `version` is sent) or amends it (412
//!   `PreconditionFailed` on a stale `version`, 405 `ContractAlreadyProposed` while a
//!   `set_contract` proposal is open, 405 `ContractAlreadyAccepted` once accepted).
//! * `GET /contracts[?state=]`, `GET /contracts/{id}`, `GET /contracts/{id}/deployment-spec`,
//!   `GET /contracts/{id}/cleanroom-policy`.
//!
//! States: Draft → Proposed (an open `contracts.set_contract` proposal names it; derived) →
//! Accepted → Revoked. A rejected, withdrawn or dropped proposal leaves a Draft. Who may see and
//! do what is per contract: see [`cgs_cleanroom`].
//!
//! (Length: ~500 lines of code and ~100 of unit tests that exercise the routes natively; one
//! plugin is one component, so its routes stay in one crate root.)

use cgs_cleanroom::{
    Contract, OWN_CONTRACTS as CONTRACTS, PROPOSALS, Policy, State, authorize, check_id, contract_arg, not_found,
    open_proposals,
};
use cgs_plugin::{
    Action, ActionInfo, App, Auth, Caller, CallerKind, Error, Request, Response, Result, Router, Table, TxId,
    cleanroom, context,
};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutContract {
    version: Option<String>,
    data: serde_json::Value,
    collaborators: Option<Vec<String>>,
    users: Option<Vec<String>>,
}

/// A deployment spec (`deployment-specs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeploymentSpec {
    data: serde_json::Value,
    proposal_id: String,
    at_ms: u64,
}

/// A clean-room policy with the proposals that shaped it (`policies`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoredPolicy {
    claims: Policy,
    proposal_ids: Vec<String>,
}

static SPECS: Table<str, DeploymentSpec> = Table::new("deployment-specs");
static POLICIES: Table<str, StoredPolicy> = Table::new("policies");

const SET_CONTRACT: &str = "contracts.set_contract";
const SET_SPEC: &str = "contracts.set_deployment_spec";
const SET_POLICY: &str = "contracts.set_cleanroom_policy";
const REVOKE: &str = "contracts.revoke_contract";
const MAX_PARTIES: usize = 256;

fn is_member_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Final votes of an accepted contract: from its proposal's record.
fn final_votes(proposal_id: &str) -> Result<Vec<serde_json::Value>> {
    let Some(p) = PROPOSALS.get(proposal_id)? else { return Ok(Vec::new()) };
    Ok(p.final_votes
        .unwrap_or_default()
        .into_iter()
        .map(|(member_id, vote)| serde_json::json!({"member_id": member_id, "vote": vote}))
        .collect())
}

/// The state to show: a draft named by an open `set_contract` proposal is Proposed.
fn effective_state(c: &Contract, proposed: bool) -> State {
    if c.state == State::Draft && proposed { State::Proposed } else { c.state }
}

fn view(id: &str, c: &Contract, version: TxId, state: State) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "version": version,
        "state": state,
        "data": c.data,
        "collaborators": c.collaborators,
        "users": c.users,
        "created_by": c.created_by,
        "updated_by": c.updated_by,
        "proposal_id": c.proposal_id,
    })
}

fn check_parties(body: &PutContract) -> Result<()> {
    if let Some(c) = &body.collaborators
        && (c.len() > MAX_PARTIES || c.iter().any(|m| !is_member_id(m)))
    {
        return Err(Error::bad_request(
            "InvalidCollaborators",
            format!("`collaborators` lists at most {MAX_PARTIES} member ids (64 lowercase hex digits)"),
        ));
    }
    if let Some(u) = &body.users
        && (u.len() > MAX_PARTIES
            || u.iter().any(|u| u.split_once('|').is_none_or(|(i, s)| i.is_empty() || s.is_empty())))
    {
        return Err(Error::bad_request(
            "InvalidUsers",
            format!("`users` lists at most {MAX_PARTIES} user identities written `issuer|subject`"),
        ));
    }
    Ok(())
}

fn put_contract(req: &Request) -> Result<Response> {
    let id = req.param("id")?;
    check_id(id)?;
    let body: PutContract = req.json()?;
    check_parties(&body)?;
    let caller = &req.caller;
    let existing = CONTRACTS.get_versioned(id)?;
    let created_by = match (&existing, &body.version) {
        (Some(_), None) => {
            return Err(Error::conflict(
                "ContractAlreadyExists",
                format!("contract `{id}` exists; send its current `version` to amend it"),
            ));
        }
        (None, Some(_)) => return Err(not_found(id)),
        (Some(cur), Some(v)) => {
            if !cur.value.is_collaborator(&caller.id) {
                return Err(Error::forbidden(
                    "NotAContractParty",
                    format!("member {} is not a collaborator of contract `{id}`", caller.id),
                ));
            }
            if cur.value.state != State::Draft {
                return Err(Error::not_allowed_in_state(
                    "ContractAlreadyAccepted",
                    format!("contract `{id}` is {:?} and can no longer change", cur.value.state),
                ));
            }
            let open = open_proposals(SET_CONTRACT, id, None)?;
            if let Some(p) = open.first() {
                return Err(Error::not_allowed_in_state(
                    "ContractAlreadyProposed",
                    format!("contract `{id}` is in open proposal {p}; withdraw it to amend the draft"),
                ));
            }
            let sent = cgs_plugin::parse_version(v)?;
            if sent != cur.version {
                return Err(Error::precondition_failed(
                    "PreconditionFailed",
                    format!(
                        "contract `{id}` is at version {}, not {sent}; read it again and reapply your change",
                        cur.version
                    ),
                ));
            }
            cur.value.created_by.clone()
        }
        (None, None) => caller.id.clone(),
    };
    let mut collaborators = body.collaborators;
    if let Some(c) = &mut collaborators {
        if !c.contains(&created_by) {
            c.insert(0, created_by.clone());
        }
        c.dedup();
    }
    let c = Contract {
        state: State::Draft,
        data: body.data,
        collaborators,
        users: body.users.unwrap_or_default(),
        created_by,
        updated_by: caller.id.clone(),
        updated_at_ms: context::tx_time_ms(),
        proposal_id: None,
        accepted_at_ms: None,
        revoked_by: None,
    };
    save(id, &c)?;
    Response::json(if existing.is_some() { 200 } else { 201 }, &serde_json::json!({"id": id, "state": c.state}))
        .map(|r| r.with_header("cgs-fill-tx", "1"))
}

fn get_contract(req: &Request) -> Result<Response> {
    let id = req.param("id")?;
    let c = authorize(&CONTRACTS, id, &req.caller)?;
    let open = open_proposals(SET_CONTRACT, id, None)?;
    let state = effective_state(&c.value, !open.is_empty());
    let mut v = view(id, &c.value, c.version, state);
    v["final_votes"] = match &c.value.proposal_id {
        Some(p) => final_votes(p)?.into(),
        None => serde_json::Value::Array(Vec::new()),
    };
    if let Some(r) = &c.value.revoked_by {
        v["revoked_by_proposal_id"] = r.clone().into();
    }
    if state == State::Proposed {
        v["open_proposal_ids"] = open.into();
    }
    Response::ok(&v)
}

fn list_contracts(req: &Request) -> Result<Response> {
    let want = match req.query("state") {
        None => None,
        Some(s) => Some(State::parse(s).ok_or_else(|| {
            Error::bad_request(
                "InvalidState",
                format!("`{s}` is not a contract state (Draft, Proposed, Accepted, Revoked)"),
            )
        })?),
    };
    // One pass over open proposals rather than one per contract.
    let proposed: std::collections::BTreeSet<String> = PROPOSALS
        .all(100_000)?
        .into_iter()
        .filter(|(_, p)| p.value.state == "Open")
        .flat_map(|(_, p)| {
            p.value
                .actions
                .into_iter()
                .filter(|a| a.name == SET_CONTRACT)
                .filter_map(|a| a.args["contract_id"].as_str().map(str::to_string))
        })
        .collect();
    let mut value = Vec::new();
    for (id, c) in CONTRACTS.all(100_000)? {
        if !c.value.admits(&id, &req.caller) {
            continue;
        }
        let state = effective_state(&c.value, proposed.contains(&id));
        if want.is_none_or(|w| w == state) {
            value.push(view(&id, &c.value, c.version, state));
        }
    }
    Response::ok(&serde_json::json!({"value": value, "next_link": null}))
}

fn get_spec(req: &Request) -> Result<Response> {
    let id = req.param("id")?;
    authorize(&CONTRACTS, id, &req.caller)?;
    let spec = SPECS.get(id)?;
    Response::ok(&serde_json::json!({
        "proposal_ids": open_proposals(SET_SPEC, id, None)?,
        "accepted_proposal_id": spec.as_ref().map(|s| s.proposal_id.clone()),
        "data": spec.map_or_else(|| serde_json::json!({}), |s| s.data),
    }))
}

fn get_policy(req: &Request) -> Result<Response> {
    let id = req.param("id")?;
    authorize(&CONTRACTS, id, &req.caller)?;
    let p = POLICIES.get(id)?.unwrap_or_default();
    Response::ok(&serde_json::json!({
        "proposal_ids": open_proposals(SET_POLICY, id, None)?,
        "accepted_proposal_ids": p.proposal_ids,
        "policy": p.claims,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetContractArgs {
    contract_id: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetSpecArgs {
    #[allow(dead_code)]
    contract_id: String,
    data: serde_json::Value,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum PolicyOp {
    Add,
    Remove,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPolicyArgs {
    #[allow(dead_code)]
    contract_id: String,
    #[serde(rename = "type")]
    op: PolicyOp,
    claims: std::collections::BTreeMap<String, serde_json::Value>,
}

/// The contract an action names, which the proposer must be a collaborator of.
fn action_contract(action: &Action, proposer: &Caller) -> Result<(String, cgs_plugin::Versioned<Contract>)> {
    let args: serde_json::Value = action.args()?;
    let id = contract_arg(&args)?.to_string();
    let c = CONTRACTS.get_versioned(&id)?.ok_or_else(|| not_found(&id))?;
    if proposer.kind == CallerKind::Member && !c.value.is_collaborator(&proposer.id) {
        return Err(Error::forbidden(
            "NotAContractParty",
            format!("member {} is not a collaborator of contract `{id}`", proposer.id),
        ));
    }
    Ok((id, c))
}

fn require_accepted(id: &str, c: &Contract) -> Result<()> {
    match c.state {
        State::Accepted => Ok(()),
        State::Revoked => Err(Error::not_allowed_in_state("ContractRevoked", format!("contract `{id}` was revoked"))),
        _ => Err(Error::not_allowed_in_state(
            "ContractNotAccepted",
            format!("contract `{id}` is not accepted; propose contracts.set_contract first"),
        )),
    }
}

/// Store contract `id` and tell the host its standing: whether its clean rooms may act, and who
/// its parties are (the host authorizes sessions, secrets and ID tokens with it).
fn save(id: &str, c: &Contract) -> Result<()> {
    CONTRACTS.put(id, c)?;
    let state = match c.state {
        State::Accepted => cleanroom::ContractState::Accepted,
        State::Revoked => cleanroom::ContractState::Revoked,
        State::Draft | State::Proposed => cleanroom::ContractState::Draft,
    };
    cleanroom::set_contract(id, &cleanroom::Contract { state, parties: c.parties() })
}

/// A policy as the host matches it against attested claims: every value as text (a JSON
/// string as itself, anything else as its JSON: `false`, `3`).
fn policy_text(p: &Policy) -> std::collections::BTreeMap<String, Vec<String>> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    p.iter().map(|(claim, values)| (claim.clone(), values.iter().map(text).collect())).collect()
}

fn policy_values(claim: &str, v: &serde_json::Value) -> Result<Vec<serde_json::Value>> {
    let values = match v {
        serde_json::Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    if claim.is_empty() || claim.len() > 256 {
        return Err(Error::bad_request("InvalidActionArgs", "claim names are 1-256 characters"));
    }
    if values.is_empty() || values.iter().any(|v| !(v.is_string() || v.is_boolean() || v.is_number())) {
        return Err(Error::bad_request(
            "InvalidActionArgs",
            format!("claim `{claim}` needs one or more string, number or boolean values"),
        ));
    }
    Ok(values)
}

/// Check (and with `apply`, perform) a contracts action.
fn act(action: &Action, apply: bool) -> Result<()> {
    let proposer = context::caller();
    let proposal_id = context::proposal_id().unwrap_or_default();
    match action.name.as_str() {
        SET_CONTRACT => {
            let args: SetContractArgs = action.args()?;
            let (id, c) = action_contract(action, &proposer)?;
            if context::proposal_actions().len() != 1 {
                return Err(Error::bad_request(
                    "SetContractNotAlone",
                    "contracts.set_contract must be the only action of its proposal",
                ));
            }
            if c.value.state != State::Draft {
                return Err(Error::not_allowed_in_state(
                    "ContractAlreadyAccepted",
                    format!("contract `{id}` is {:?}", c.value.state),
                ));
            }
            let sent = cgs_plugin::parse_version(&args.version)?;
            if sent != c.version {
                return Err(Error::precondition_failed(
                    "PreconditionFailed",
                    format!("contract `{id}` is at version {}, not {sent}", c.version),
                ));
            }
            if let Some(other) = open_proposals(SET_CONTRACT, &id, Some(&proposal_id))?.first() {
                return Err(Error::conflict(
                    "ContractAlreadyProposed",
                    format!("contract `{id}` is already in open proposal {other}"),
                ));
            }
            debug_assert_eq!(args.contract_id, id);
            if apply {
                let mut c = c.value;
                c.state = State::Accepted;
                c.proposal_id = Some(proposal_id);
                c.accepted_at_ms = Some(context::tx_time_ms());
                save(&id, &c)?;
            }
        }
        REVOKE => {
            let (id, c) = action_contract(action, &proposer)?;
            require_accepted(&id, &c.value)?;
            if apply {
                let mut c = c.value;
                c.state = State::Revoked;
                c.revoked_by = Some(proposal_id);
                save(&id, &c)?;
            }
        }
        SET_SPEC => {
            let args: SetSpecArgs = action.args()?;
            let (id, c) = action_contract(action, &proposer)?;
            require_accepted(&id, &c.value)?;
            if apply {
                SPECS.put(&id, &DeploymentSpec { data: args.data, proposal_id, at_ms: context::tx_time_ms() })?;
            }
        }
        SET_POLICY => {
            let args: SetPolicyArgs = action.args()?;
            let (id, c) = action_contract(action, &proposer)?;
            require_accepted(&id, &c.value)?;
            if args.claims.is_empty() {
                return Err(Error::bad_request("InvalidActionArgs", "`claims` names no claim"));
            }
            let mut p = POLICIES.get(&id)?.unwrap_or_default();
            for (claim, v) in &args.claims {
                let values = policy_values(claim, v)?;
                match args.op {
                    PolicyOp::Add => {
                        let have = p.claims.entry(claim.clone()).or_default();
                        for v in values {
                            if !have.contains(&v) {
                                have.push(v);
                            }
                        }
                    }
                    PolicyOp::Remove => {
                        // Removing what is not there is a no-op. Removing a claim's last values
                        // would drop the constraint and admit *more* clean rooms: refused.
                        if let Some(have) = p.claims.get_mut(claim) {
                            have.retain(|h| !values.contains(h));
                            if have.is_empty() {
                                return Err(Error::bad_request(
                                    "PolicyWouldLoosen",
                                    format!(
                                        "removing these values empties claim `{claim}`, which would drop the \
                                         constraint and admit clean rooms with any `{claim}`; add the values that \
                                         should be allowed instead, or leave at least one"
                                    ),
                                ));
                            }
                        }
                    }
                }
            }
            if apply {
                p.proposal_ids.push(proposal_id);
                POLICIES.put(&id, &p)?;
                // (A `remove` on a contract without a policy leaves none: nothing to tell.)
                if !p.claims.is_empty() {
                    cleanroom::set_policy(&id, &policy_text(&p.claims))?;
                }
            }
        }
        other => return Err(Error::unknown_action(other)),
    }
    Ok(())
}

struct Contracts;

impl App for Contracts {
    fn router() -> Router {
        let readers = Auth::MEMBER | Auth::USER | Auth::CLEANROOM;
        Router::new()
            .get("/contracts", Auth::MEMBER | Auth::USER, list_contracts)
            .get("/contracts/{id}", readers, get_contract)
            .put("/contracts/{id}", Auth::MEMBER, put_contract)
            .get("/contracts/{id}/deployment-spec", readers, get_spec)
            .get("/contracts/{id}/cleanroom-policy", readers, get_policy)
    }

    fn actions() -> Vec<ActionInfo> {
        [
            (SET_CONTRACT, "accept a draft at a version, alone in its proposal: {\"contract_id\", \"version\"}"),
            (REVOKE, "revoke an accepted contract; execution consent is off for good: {\"contract_id\"}"),
            (SET_SPEC, "set the deployment spec of an accepted contract: {\"contract_id\", \"data\"}"),
            (
                SET_POLICY,
                "add or remove clean-room policy claims: {\"contract_id\", \"type\": \"add|remove\", \"claims\": {\"<claim>\": [values]}}",
            ),
        ]
        .into_iter()
        .map(|(name, description)| ActionInfo { name: name.into(), description: description.into() })
        .collect()
    }

    fn validate_action(action: &Action) -> Result<()> {
        act(action, false)
    }

    fn apply_action(action: &Action) -> Result<()> {
        act(action, true)
    }
}

cgs_plugin::app_plugin!(Contracts, name = "contracts");
// The routes' request and answer schemas, shown in the service's `GET /openapi.json`.
cgs_plugin::api_schema!("api.json");

#[cfg(test)]
mod tests {
    use super::*;
    use cgs_plugin::{Method, testing};

    const M1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const M2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn as_member(m: &str, req: Request) -> Result<Response> {
        testing::set_caller(Caller::member(m));
        Contracts::router().dispatch(&req.with_caller(Caller::member(m)))
    }

    fn put(id: &str, body: serde_json::Value) -> Result<Response> {
        as_member(M1, Request::new(Method::Put, "/contracts/{id}", &[("id", id)]).with_json(&body))
    }

    fn get(m: &str, id: &str) -> Result<serde_json::Value> {
        as_member(m, Request::new(Method::Get, "/contracts/{id}", &[("id", id)]))?.body_json()
    }

    fn action(name: &str, args: serde_json::Value) -> Action {
        Action { name: name.into(), args: args.to_string() }
    }

    fn run(m: &str, a: &Action, apply: bool) -> Result<()> {
        testing::set_caller(Caller::member(m));
        testing::set_proposal(Some(("p1", vec![a.clone()])));
        act(a, apply)
    }

    #[test]
    fn drafts_with_optimistic_versions() {
        testing::reset();
        assert_eq!(put("c1", serde_json::json!({"data": {"v": 1}})).unwrap().status, 201);
        assert_eq!(put("c1", serde_json::json!({"data": {"v": 2}})).unwrap_err().code, "ContractAlreadyExists");
        let version = get(M1, "c1").unwrap()["version"].as_str().unwrap().to_string();
        assert_eq!(put("c1", serde_json::json!({"version": version, "data": {"v": 2}})).unwrap().status, 200);
        let stale = put("c1", serde_json::json!({"version": version, "data": {"v": 3}})).unwrap_err();
        assert_eq!((stale.code.as_str(), stale.kind.status()), ("PreconditionFailed", 412));
        assert_eq!(put("bad id", serde_json::json!({"data": 1})).unwrap_err().code, "InvalidContractId");
        assert_eq!(put("c2", serde_json::json!({"nope": 1})).unwrap_err().code, "InvalidJson");
        assert_eq!(
            put("c2", serde_json::json!({"data": 1, "collaborators": ["x"]})).unwrap_err().code,
            "InvalidCollaborators"
        );
    }

    #[test]
    fn per_contract_parties() {
        testing::reset();
        put("a", serde_json::json!({"data": {}, "collaborators": [M1]})).unwrap();
        assert_eq!(get(M1, "a").unwrap()["collaborators"], serde_json::json!([M1]));
        assert_eq!(get(M2, "a").unwrap_err().code, "NotAContractParty");
        let listed = as_member(M2, Request::new(Method::Get, "/contracts", &[])).unwrap();
        assert_eq!(listed.body_json::<serde_json::Value>().unwrap()["value"], serde_json::json!([]));
        let a = action(SET_CONTRACT, serde_json::json!({"contract_id": "a", "version": "1.1"}));
        assert_eq!(run(M2, &a, false).unwrap_err().code, "NotAContractParty");
    }

    #[test]
    fn accept_revoke_and_policy() {
        testing::reset();
        put("c", serde_json::json!({"data": {}})).unwrap();
        let version = get(M1, "c").unwrap()["version"].as_str().unwrap().to_string();
        let stale = action(SET_CONTRACT, serde_json::json!({"contract_id": "c", "version": "9.9"}));
        assert_eq!(run(M1, &stale, false).unwrap_err().code, "PreconditionFailed");
        let set = action(SET_CONTRACT, serde_json::json!({"contract_id": "c", "version": version}));
        testing::set_proposal(Some(("p1", vec![set.clone(), set.clone()])));
        assert_eq!(act(&set, false).unwrap_err().code, "SetContractNotAlone");
        let pol = action(SET_POLICY, serde_json::json!({"contract_id": "c", "type": "add", "claims": {"h": ["a"]}}));
        assert_eq!(run(M1, &pol, false).unwrap_err().code, "ContractNotAccepted");
        run(M1, &set, true).unwrap();
        assert_eq!(get(M1, "c").unwrap()["state"], "Accepted");
        assert_eq!(
            put("c", serde_json::json!({"version": version, "data": {}})).unwrap_err().code,
            "ContractAlreadyAccepted"
        );
        run(M1, &pol, true).unwrap();
        let more = action(
            SET_POLICY,
            serde_json::json!({"contract_id": "c", "type": "add", "claims": {"h": ["b", "a"], "d": false}}),
        );
        run(M1, &more, true).unwrap();
        let rm = action(
            SET_POLICY,
            serde_json::json!({"contract_id": "c", "type": "remove", "claims": {"h": ["a", "zz"], "absent": ["x"]}}),
        );
        run(M1, &rm, true).unwrap();
        // Emptying a claim would loosen the policy: refused when proposed and when applied.
        let empty =
            action(SET_POLICY, serde_json::json!({"contract_id": "c", "type": "remove", "claims": {"d": false}}));
        assert_eq!(run(M1, &empty, false).unwrap_err().code, "PolicyWouldLoosen");
        assert_eq!(run(M1, &empty, true).unwrap_err().code, "PolicyWouldLoosen");
        let p = as_member(M1, Request::new(Method::Get, "/contracts/{id}/cleanroom-policy", &[("id", "c")])).unwrap();
        let p: serde_json::Value = p.body_json().unwrap();
        assert_eq!(p["policy"], serde_json::json!({"d": [false], "h": ["b"]}));
        assert_eq!(p["accepted_proposal_ids"].as_array().unwrap().len(), 3);
        let revoke = action(REVOKE, serde_json::json!({"contract_id": "c"}));
        run(M1, &revoke, true).unwrap();
        assert_eq!(get(M1, "c").unwrap()["state"], "Revoked");
        assert_eq!(run(M1, &revoke, false).unwrap_err().code, "ContractRevoked");
    }
}
