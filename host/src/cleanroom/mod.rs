//! Clean rooms: attested sessions, secrets released to them, the OIDC issuer that vouches for
//! them — and the standing of a contract they all depend on.
//!
//! Sessions, secrets, ID tokens and receipts are the host's, but who is a party to a contract,
//! whether it is accepted, its clean-room policy and the members' kill switches are decided by
//! the `contracts` and `consent` plugins. They tell the host through the typed
//! `cgs:plugin/cleanroom` import (`runtime/cleanroom.rs`), which keeps the records of
//! [`crate::schema`] in host tables; the functions below read only those, never a plugin's own
//! tables. A record that does not parse is a `503 StoreUnavailable`, never a silent "allowed".

pub mod oidc;
pub mod secrets;
pub mod sessions;

use std::sync::Arc;

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

    /// Nonces outstanding on this node, and sessions it admitted (`/metrics`).
    pub fn session_counts(&self) -> (usize, u64) {
        self.nonces.counts()
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

pub use crate::schema::{CleanroomPolicy, ContractStanding, ContractState};
use crate::schema::{KillSwitch, tables};

impl ContractStanding {
    /// Whether `caller` is a party to contract `id` (the same rule as `cgs_cleanroom::authorize`).
    pub fn admits(&self, id: &str, caller: &Caller) -> bool {
        match caller.kind {
            CallerKind::Member => self.parties().has_member(&caller.id),
            CallerKind::User => self.parties().has_user(&caller.id),
            CallerKind::Cleanroom => caller.contract_id.as_deref() == Some(id),
            CallerKind::Anonymous => false,
        }
    }
}

/// Contract `id` if `member` is one of its collaborators: 404 `ContractNotFound`, 403
/// `NotAContractParty`.
pub fn collaborator_of(g: &mut StateTx, id: &str, member: &Caller) -> Result<ContractStanding, ServiceError> {
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
pub fn contract(g: &mut StateTx, id: &str) -> Result<ContractStanding, ServiceError> {
    g.get(tables::CLEANROOM_CONTRACTS, id)?
        .ok_or_else(|| err(ErrorKind::NotFound, "ContractNotFound", format!("contract `{id}` does not exist")))
}

/// The contract's policy and the version (tx id) it is at: sessions remember the version they
/// were admitted under.
pub fn policy(g: &mut StateTx, id: &str) -> Result<(CleanroomPolicy, Option<String>), ServiceError> {
    let table = tables::CLEANROOM_POLICIES;
    match g.tx.get(table, id.as_bytes()).map_err(ServiceError::unavailable)? {
        Some(v) => {
            let p: CleanroomPolicy = serde_json::from_slice(&v.value)
                .map_err(|e| ServiceError::unavailable(format!("corrupt {table} record of `{id}`: {e}")))?;
            Ok((p, Some(v.version.to_string())))
        }
        None => Ok((CleanroomPolicy::default(), None)),
    }
}

/// The members whose execution kill switch for contract `id` is on, with their reasons.
pub fn kill_switches_on(g: &mut StateTx, id: &str) -> Result<Vec<(String, Option<String>)>, ServiceError> {
    let prefix = format!("{id}/");
    let range = crate::store::KeyRange {
        start: Some(prefix.clone().into_bytes()),
        end: Some(format!("{id}0").into_bytes()), // '0' follows '/'
    };
    let table = tables::KILL_SWITCHES;
    let entries = g.tx.range(table, &range, 10_000, false).map_err(ServiceError::unavailable)?;
    let mut on = Vec::new();
    for e in entries {
        let s: KillSwitch = serde_json::from_slice(&e.value)
            .map_err(|er| ServiceError::unavailable(format!("corrupt {table} record: {er}")))?;
        let member = String::from_utf8_lossy(&e.key[prefix.len()..]).into_owned();
        on.push((member, s.reason));
    }
    Ok(on)
}

/// Whether contract `id` may run now: accepted, and no collaborator's kill switch is on.
/// `405 ContractRevoked`, `405 ContractNotAccepted`, `405 ContractDisabled` (naming who): the
/// contract's state does not allow it.
pub fn require_execution(g: &mut StateTx, id: &str) -> Result<ContractStanding, ServiceError> {
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
        ContractState::Draft => {
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
