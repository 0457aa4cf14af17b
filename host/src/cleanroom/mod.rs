//! Clean rooms: attested sessions, secrets released to them, the OIDC issuer that vouches for
//! them — and the standing of a contract they all depend on.
//!
//! Sessions, secrets, ID tokens and receipts are the host's, but who is a party to a contract,
//! whether it is accepted, its clean-room policy and the members' kill switches are kept by the
//! `contracts` and `consent` plugins. The views below name exactly the fields the host relies on
//! (the plugins' records carry more); they are the host side of that contract, and a record that
//! no longer parses is a `503 StoreUnavailable`, never a silent "allowed".

pub mod oidc;
pub mod secrets;
pub mod sessions;

use std::sync::Arc;

use serde::Deserialize;

use crate::auth::{Auth, SessionStanding};
pub(crate) use crate::error::err;
use crate::error::{ErrorKind, ServiceError};
use crate::runtime::{Caller, CallerKind};
use crate::txn::{Core, StateTx};

/// HPKE `info` of secret releases.
pub const SECRET_INFO: &[u8] = b"cgs-secret-release-v1";

/// The clean-room side of the service: nonces, sessions, secrets, ID tokens.
pub struct Cleanroom {
    core: Arc<Core>,
    auth: Arc<Auth>,
    /// Outstanding clean-room nonces.
    nonces: sessions::Nonces,
}

impl Cleanroom {
    /// Clean rooms over `core`, with session tokens signed by `auth`'s key.
    pub fn new(core: Arc<Core>, auth: Arc<Auth>, config: &crate::gov::GovConfig) -> Self {
        Self { core, auth, nonces: sessions::Nonces::with_capacity(config.max_nonces) }
    }

    /// A clean-room session may still act: its contract accepted, no member's kill switch on
    /// (`405 ContractRevoked` / `ContractNotAccepted` / `ContractDisabled`, naming the members),
    /// and the clean-room policy unchanged since the session was admitted (`401
    /// SessionInvalidated`). Checked on every use of a session token.
    pub fn require_standing(&self, s: &SessionStanding) -> Result<(), ServiceError> {
        let mut g = self.core.begin()?;
        require_execution(&mut g, &s.contract_id)?;
        let (_, version) = policy(&mut g, &s.contract_id)?;
        if version != s.policy_version {
            return Err(err(
                ErrorKind::Unauthenticated,
                "SessionInvalidated",
                format!(
                    "the clean-room policy of contract `{}` changed since this session was opened; open a new \
                     session (its evidence is checked against the current policy)",
                    s.contract_id
                ),
            ));
        }
        Ok(())
    }
}

/// Whether this service accepts virtual (insecure) evidence: fixed at creation, in a table no
/// plugin can write.
pub fn accepts_virtual_evidence(g: &mut StateTx) -> Result<bool, ServiceError> {
    let config: Option<serde_json::Value> = g.get(crate::schema::tables::CREATION, "config")?;
    Ok(config.is_some_and(|c| c["insecure_virtual_attestation"] == true))
}

/// `contracts.contracts`: contract id → [`ContractView`].
pub const CONTRACTS: &str = "contracts.contracts";
/// `contracts.policies`: contract id → [`PolicyView`].
pub const POLICIES: &str = "contracts.policies";
/// `consent.kill-switches`: `<contract>/<member>` → [`KillSwitchView`].
pub const KILL_SWITCHES: &str = "consent.kill-switches";

/// A contract's lifecycle state as stored (`Proposed` is derived, never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ContractState {
    /// Being drafted.
    Draft,
    /// (Derived by the plugin; not stored.)
    Proposed,
    /// Accepted by the consortium.
    Accepted,
    /// Revoked after acceptance.
    Revoked,
}

/// The parts of a contract record the host uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ContractView {
    /// State.
    pub state: ContractState,
    /// Member ids that are parties; `None`: every member.
    #[serde(default)]
    pub collaborators: Option<Vec<String>>,
    /// Users (`issuer|subject`) that are parties.
    #[serde(default)]
    pub users: Vec<String>,
    /// The creator (always a party).
    pub created_by: String,
}

impl ContractView {
    /// Whether `caller` is a party to contract `id` (the same rule as `cgs_cleanroom::authorize`).
    pub fn admits(&self, id: &str, caller: &Caller) -> bool {
        let parties = cgs_core::contract::Parties {
            created_by: &self.created_by,
            collaborators: self.collaborators.as_deref(),
            users: &self.users,
        };
        match caller.kind {
            CallerKind::Member => parties.has_member(&caller.id),
            CallerKind::User => parties.has_user(&caller.id),
            CallerKind::Cleanroom => caller.contract_id.as_deref() == Some(id),
            CallerKind::Anonymous => false,
        }
    }
}

/// The accepted clean-room policy of a contract.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PolicyView {
    /// Claim → allowed values.
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// One member's execution kill switch.
#[derive(Debug, Clone, Deserialize)]
pub struct KillSwitchView {
    /// On.
    pub disabled: bool,
    /// Why (the member's words).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Contract `id` if `member` is one of its collaborators: 404 `ContractNotFound`, 403
/// `NotAContractParty`.
pub fn collaborator_of(g: &mut StateTx, id: &str, member: &Caller) -> Result<ContractView, ServiceError> {
    let contract = contract(g, id)?;
    if !contract.admits(id, member) {
        return Err(err(
            ErrorKind::Forbidden,
            "NotAContractParty",
            format!("member {} is not a collaborator of contract `{id}`", member.id),
        ));
    }
    Ok(contract)
}

/// Contract `id`, or 404 `ContractNotFound`.
pub fn contract(g: &mut StateTx, id: &str) -> Result<ContractView, ServiceError> {
    g.get(CONTRACTS, id)?
        .ok_or_else(|| err(ErrorKind::NotFound, "ContractNotFound", format!("contract `{id}` does not exist")))
}

/// The contract's policy and the version (tx id) it is at: sessions remember the version they
/// were admitted under.
pub fn policy(g: &mut StateTx, id: &str) -> Result<(PolicyView, Option<String>), ServiceError> {
    match g.tx.get(POLICIES, id.as_bytes()).map_err(ServiceError::unavailable)? {
        Some(v) => {
            let p: PolicyView = serde_json::from_slice(&v.value)
                .map_err(|e| ServiceError::unavailable(format!("corrupt {POLICIES} record of `{id}`: {e}")))?;
            Ok((p, Some(v.version.to_string())))
        }
        None => Ok((PolicyView::default(), None)),
    }
}

/// The members whose execution kill switch for contract `id` is on, with their reasons.
pub fn kill_switches_on(g: &mut StateTx, id: &str) -> Result<Vec<(String, Option<String>)>, ServiceError> {
    let prefix = format!("{id}/");
    let range = crate::store::KeyRange {
        start: Some(prefix.clone().into_bytes()),
        end: Some(format!("{id}0").into_bytes()), // '0' follows '/'
    };
    let entries = g.tx.range(KILL_SWITCHES, &range, 10_000, false).map_err(ServiceError::unavailable)?;
    let mut on = Vec::new();
    for e in entries {
        let s: KillSwitchView = serde_json::from_slice(&e.value)
            .map_err(|er| ServiceError::unavailable(format!("corrupt {KILL_SWITCHES} record: {er}")))?;
        if s.disabled {
            let member = String::from_utf8_lossy(&e.key[prefix.len()..]).into_owned();
            on.push((member, s.reason));
        }
    }
    Ok(on)
}

/// Whether contract `id` may run now: accepted, and no collaborator's kill switch is on.
/// `405 ContractRevoked`, `405 ContractNotAccepted`, `405 ContractDisabled` (naming who): the
/// contract's state does not allow it.
pub fn require_execution(g: &mut StateTx, id: &str) -> Result<ContractView, ServiceError> {
    let c = contract(g, id)?;
    match c.state {
        ContractState::Accepted => {}
        ContractState::Revoked => {
            return Err(err(
                ErrorKind::NotAllowedInState,
                "ContractRevoked",
                format!("contract `{id}` was revoked: its clean rooms may no longer act"),
            ));
        }
        _ => {
            return Err(err(
                ErrorKind::NotAllowedInState,
                "ContractNotAccepted",
                format!("contract `{id}` is not accepted"),
            ));
        }
    }
    let on = kill_switches_on(g, id)?;
    if !on.is_empty() {
        let who: Vec<String> = on
            .iter()
            .map(|(m, r)| match r {
                Some(r) => format!("{m}: {r}"),
                None => m.clone(),
            })
            .collect();
        return Err(err(
            ErrorKind::NotAllowedInState,
            "ContractDisabled",
            format!("execution of contract `{id}` is disabled by member(s) {}", who.join("; ")),
        ));
    }
    Ok(c)
}
