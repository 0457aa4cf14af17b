//! What the clean-room plugins share: the contract record the `contracts` plugin keeps, and the
//! per-contract authorization every clean-room route applies.
//!
//! **Who may use a contract.** A contract names its `collaborators` (member ids) and `users`
//! (`issuer|subject`). Members: the creator always, and every collaborator; a contract without a
//! `collaborators` list is the whole consortium's (as in the Azure service). Users: only those
//! named. Clean rooms: only sessions bound to that contract. Anyone else gets `403
//! NotAContractParty` — being a party to contract A says nothing about contract B.

use cgs_plugin::{Caller, CallerKind, Error, Result, Table, Versioned};
use serde::{Deserialize, Serialize};

/// A contract's stored lifecycle state (`Proposed` is derived from open proposals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Being drafted.
    Draft,
    /// In an open `contracts.set_contract` proposal.
    Proposed,
    /// Accepted by the consortium.
    Accepted,
    /// Revoked after acceptance: execution consent is off for good.
    Revoked,
}

impl State {
    /// From its name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Draft" => State::Draft,
            "Proposed" => State::Proposed,
            "Accepted" => State::Accepted,
            "Revoked" => State::Revoked,
            _ => return None,
        })
    }
}

/// A contract as the `contracts` plugin stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Contract {
    /// Draft, Accepted or Revoked.
    pub state: State,
    /// The contract document (opaque to the service).
    pub data: serde_json::Value,
    /// Member ids that may read and amend it, vote on its policies and hold a kill switch;
    /// `None`: every member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collaborators: Option<Vec<String>>,
    /// Users (`issuer|subject`) that may read it, its consent and its events.
    #[serde(default)]
    pub users: Vec<String>,
    /// The member who created the draft.
    pub created_by: String,
    /// Who last changed the draft.
    pub updated_by: String,
    /// When (tx time, ms).
    pub updated_at_ms: u64,
    /// The proposal that accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_id: Option<String>,
    /// When it was accepted (tx time, ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at_ms: Option<u64>,
    /// The proposal that revoked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

impl Contract {
    /// Its parties (the rule the host applies too: `cgs_core::contract::Parties`).
    pub fn parties(&self) -> cgs_core::contract::Parties<'_> {
        cgs_core::contract::Parties {
            created_by: &self.created_by,
            collaborators: self.collaborators.as_deref(),
            users: &self.users,
        }
    }

    /// Whether `member_id` is a collaborator.
    pub fn is_collaborator(&self, member_id: &str) -> bool {
        self.parties().has_member(member_id)
    }

    /// Whether `caller` is a party to contract `id` (see the module docs).
    pub fn admits(&self, id: &str, caller: &Caller) -> bool {
        match caller.kind {
            CallerKind::Member => self.is_collaborator(&caller.id),
            CallerKind::User => self.parties().has_user(&caller.id),
            CallerKind::Cleanroom => caller.contract_id.as_deref() == Some(id),
            CallerKind::Anonymous => false,
        }
    }
}

/// The contracts table, as the `contracts` plugin names it.
pub static OWN_CONTRACTS: Table<str, Contract> = Table::new("contracts");
/// The contracts table, as other plugins read it.
pub static CONTRACTS: Table<str, Contract> = Table::new("app.contracts.contracts");

pub use cgs_core::contract::MAX_ID;

/// A contract id is 1–128 characters of `A-Z a-z 0-9 - _ .` (`cgs_core::contract::valid_id`,
/// which the host checks too).
pub fn check_id(id: &str) -> Result<()> {
    if !cgs_core::contract::valid_id(id) {
        return Err(Error::bad_request(
            "InvalidContractId",
            format!("contract ids are 1-{MAX_ID} chars of A-Z a-z 0-9 - _ ."),
        ));
    }
    Ok(())
}

/// `404 ContractNotFound`.
pub fn not_found(id: &str) -> Error {
    Error::not_found("ContractNotFound", format!("contract `{id}` does not exist"))
}

/// Load contract `id` from `table` and check that `caller` is a party to it.
pub fn authorize(table: &Table<str, Contract>, id: &str, caller: &Caller) -> Result<Versioned<Contract>> {
    check_id(id)?;
    let c = table.get_versioned(id)?.ok_or_else(|| not_found(id))?;
    if !c.value.admits(id, caller) {
        let who = match caller.kind {
            CallerKind::Member => "member",
            CallerKind::User => "user",
            CallerKind::Cleanroom => "clean-room session",
            CallerKind::Anonymous => "anonymous caller",
        };
        let hint = match caller.kind {
            CallerKind::Cleanroom => "; a clean-room session is bound to one contract".to_string(),
            _ => " (see its `collaborators` and `users`)".to_string(),
        };
        return Err(Error::forbidden(
            "NotAContractParty",
            format!("{who} {} is not a party to contract `{id}`{hint}", caller.id),
        ));
    }
    Ok(c)
}

/// A proposal as the governance engine stores it in `gov.proposals` (the parts plugins use).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProposalView {
    /// Its id.
    pub proposal_id: String,
    /// Its actions.
    pub actions: Vec<ActionView>,
    /// `Open`, `Accepted`, …
    pub state: String,
    /// The ballots that decided it, by member id (`approve`/`reject`).
    #[serde(default)]
    pub final_votes: Option<std::collections::BTreeMap<String, String>>,
}

/// One action of a stored proposal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionView {
    /// Action name.
    pub name: String,
    /// Arguments.
    #[serde(default)]
    pub args: serde_json::Value,
}

/// Governance's proposals.
pub static PROPOSALS: Table<str, ProposalView> = Table::new("gov.proposals");

/// Ids of open proposals (other than `except`) with an action `name` for contract `id`.
pub fn open_proposals(name: &str, id: &str, except: Option<&str>) -> Result<Vec<String>> {
    Ok(PROPOSALS
        .all(100_000)?
        .into_iter()
        .filter(|(pid, p)| {
            p.value.state == "Open"
                && except != Some(pid.as_str())
                && p.value.actions.iter().any(|a| a.name == name && a.args["contract_id"].as_str() == Some(id))
        })
        .map(|(pid, _)| pid)
        .collect())
}

/// The argument `contract_id` of an action, checked.
pub fn contract_arg(args: &serde_json::Value) -> Result<&str> {
    let id = args["contract_id"]
        .as_str()
        .ok_or_else(|| Error::bad_request("InvalidActionArgs", "`contract_id` (a string) is required"))?;
    check_id(id)?;
    Ok(id)
}

/// A clean-room policy: claim name → the values it may take. A set of claims satisfies it when
/// every claim of the policy (AND) has one of its values (OR); the host evaluates it when a clean
/// room opens a session (`host/src/cleanroom/sessions.rs`).
pub type Policy = std::collections::BTreeMap<String, Vec<serde_json::Value>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(collaborators: Option<Vec<&str>>, users: Vec<&str>) -> Contract {
        Contract {
            state: State::Draft,
            data: serde_json::json!({}),
            collaborators: collaborators.map(|c| c.into_iter().map(String::from).collect()),
            users: users.into_iter().map(String::from).collect(),
            created_by: "m0".into(),
            updated_by: "m0".into(),
            updated_at_ms: 0,
            proposal_id: None,
            accepted_at_ms: None,
            revoked_by: None,
        }
    }

    #[test]
    fn parties() {
        let c = contract(Some(vec!["m1"]), vec!["https://idp|alice"]);
        assert!(c.admits("c", &Caller::member("m0")), "the creator");
        assert!(c.admits("c", &Caller::member("m1")));
        assert!(!c.admits("c", &Caller::member("m2")));
        let mut user = Caller::anonymous();
        user.kind = CallerKind::User;
        user.id = "https://idp|alice".into();
        assert!(c.admits("c", &user));
        user.id = "https://idp|bob".into();
        assert!(!c.admits("c", &user));
        let mut room = Caller::anonymous();
        room.kind = CallerKind::Cleanroom;
        room.contract_id = Some("c".into());
        assert!(c.admits("c", &room));
        assert!(!c.admits("other", &room));
        assert!(!c.admits("c", &Caller::anonymous()));
        assert!(contract(None, vec![]).admits("c", &Caller::member("anyone")));
    }
}
