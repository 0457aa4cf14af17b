//! The host side of `cgs:plugin/cleanroom`: the plugins that decide contracts and consent tell
//! the host what it enforces for clean rooms, as typed records it keeps in tables of its own
//! ([`crate::schema`]). Only the plugin governance installed as `contracts` sets contracts and
//! policies, only `consent` sets kill switches, and only from a call that may write.

use super::bindings::cleanroom::{self as wit, CleanroomError};
use super::state::HostState;
use crate::schema::{
    CONSENT_PLUGIN, CONTRACTS_PLUGIN, CleanroomPolicy, ContractStanding, ContractState, KillSwitch, tables,
};

/// Most members or users a contract names.
pub const MAX_PARTIES: usize = 1_000;
/// Most claims a policy names, and values a claim allows.
pub const MAX_CLAIMS: usize = 256;
/// Longest party id, claim name, claim value or reason (bytes).
pub const MAX_TEXT: usize = 4_096;

/// Whether plugin `plugin` may set what `owner` decides, in a call that may (`writable`) write.
pub(crate) fn permitted(plugin: &str, owner: &str, writable: bool) -> Result<(), CleanroomError> {
    if writable && plugin == owner { Ok(()) } else { Err(CleanroomError::NotPermitted) }
}

/// A member id: 64 lowercase hex digits (SHA-256 of the member's public key).
fn valid_member_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn short_text(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TEXT
}

/// Check what a `contracts` plugin sends before the host keeps it.
pub(crate) fn standing_from_wit(id: &str, c: wit::Contract) -> Result<ContractStanding, CleanroomError> {
    let parties_ok = |v: &[String]| v.len() <= MAX_PARTIES && v.iter().all(|p| short_text(p));
    if !cgs_core::contract::valid_id(id)
        || !valid_member_id(&c.created_by)
        || !c.collaborators.as_deref().is_none_or(parties_ok)
        || !parties_ok(&c.users)
    {
        return Err(CleanroomError::Invalid);
    }
    let state = match c.state {
        wit::ContractState::Draft => ContractState::Draft,
        wit::ContractState::Accepted => ContractState::Accepted,
        wit::ContractState::Revoked => ContractState::Revoked,
    };
    Ok(ContractStanding { state, created_by: c.created_by, collaborators: c.collaborators, users: c.users })
}

/// Check a policy before the host keeps it: 1–[`MAX_CLAIMS`] claims, each with 1–[`MAX_CLAIMS`]
/// values, no duplicate claim.
pub(crate) fn policy_from_wit(claims: Vec<(String, Vec<String>)>) -> Result<CleanroomPolicy, CleanroomError> {
    if claims.is_empty() || claims.len() > MAX_CLAIMS {
        return Err(CleanroomError::Invalid);
    }
    let mut out = std::collections::BTreeMap::new();
    for (claim, values) in claims {
        if !short_text(&claim)
            || values.is_empty()
            || values.len() > MAX_CLAIMS
            || !values.iter().all(|v| v.len() <= MAX_TEXT)
            || out.insert(claim, values).is_some()
        {
            return Err(CleanroomError::Invalid);
        }
    }
    Ok(CleanroomPolicy { claims: out })
}

impl HostState {
    fn contract_exists(&mut self, id: &str) -> Result<bool, CleanroomError> {
        match self.tx.get(tables::CLEANROOM_CONTRACTS, id.as_bytes()) {
            Ok(v) => Ok(v.is_some()),
            Err(e) => {
                self.store_failure = Some(e.to_string());
                Err(CleanroomError::Unavailable)
            }
        }
    }

    fn put_json(&mut self, table: &str, key: &str, value: &impl serde::Serialize) -> Result<(), CleanroomError> {
        let bytes = serde_json::to_vec(value).map_err(|_| CleanroomError::Invalid)?;
        if bytes.len() > super::state::MAX_VALUE_BYTES {
            return Err(CleanroomError::Invalid);
        }
        self.tx.put(table, key.as_bytes(), bytes);
        Ok(())
    }
}

impl wit::Host for HostState {
    fn set_contract(&mut self, id: String, contract: wit::Contract) -> Result<(), CleanroomError> {
        permitted(&self.plugin, CONTRACTS_PLUGIN, self.writable)?;
        let standing = standing_from_wit(&id, contract)?;
        self.put_json(tables::CLEANROOM_CONTRACTS, &id, &standing)
    }

    fn set_policy(&mut self, id: String, claims: Vec<(String, Vec<String>)>) -> Result<(), CleanroomError> {
        permitted(&self.plugin, CONTRACTS_PLUGIN, self.writable)?;
        let policy = policy_from_wit(claims)?;
        if !cgs_core::contract::valid_id(&id) || !self.contract_exists(&id)? {
            return Err(CleanroomError::Invalid);
        }
        self.put_json(tables::CLEANROOM_POLICIES, &id, &policy)
    }

    fn set_kill_switch(
        &mut self,
        contract_id: String,
        member_id: String,
        on: bool,
        reason: Option<String>,
    ) -> Result<(), CleanroomError> {
        permitted(&self.plugin, CONSENT_PLUGIN, self.writable)?;
        if !cgs_core::contract::valid_id(&contract_id)
            || !valid_member_id(&member_id)
            || reason.as_ref().is_some_and(|r| r.len() > MAX_TEXT)
            || !self.contract_exists(&contract_id)?
        {
            return Err(CleanroomError::Invalid);
        }
        let key = format!("{contract_id}/{member_id}");
        if on {
            self.put_json(tables::KILL_SWITCHES, &key, &KillSwitch { reason })
        } else {
            match self.tx.delete(tables::KILL_SWITCHES, key.as_bytes()) {
                Ok(_) => Ok(()),
                Err(e) => {
                    self.store_failure = Some(e.to_string());
                    Err(CleanroomError::Unavailable)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "aa00000000000000000000000000000000000000000000000000000000000000";

    fn contract() -> wit::Contract {
        wit::Contract {
            state: wit::ContractState::Accepted,
            created_by: M.into(),
            collaborators: Some(vec![M.into()]),
            users: vec!["https://issuer|alice".into()],
        }
    }

    #[test]
    fn only_the_owning_plugin_may_set_and_only_when_writing() {
        assert_eq!(permitted("contracts", CONTRACTS_PLUGIN, true), Ok(()));
        assert_eq!(permitted("consent", CONSENT_PLUGIN, true), Ok(()));
        assert_eq!(permitted("snoop", CONTRACTS_PLUGIN, true), Err(CleanroomError::NotPermitted));
        assert_eq!(permitted("consent", CONTRACTS_PLUGIN, true), Err(CleanroomError::NotPermitted));
        assert_eq!(permitted("contracts", CONSENT_PLUGIN, true), Err(CleanroomError::NotPermitted));
        assert_eq!(permitted("contracts", CONTRACTS_PLUGIN, false), Err(CleanroomError::NotPermitted));
    }

    #[test]
    fn standing_is_checked() {
        let s = standing_from_wit("c1", contract()).unwrap();
        assert_eq!(s.state, ContractState::Accepted);
        assert!(s.parties().has_member(M) && s.parties().has_user("https://issuer|alice"));
        assert_eq!(standing_from_wit("a/b", contract()), Err(CleanroomError::Invalid));
        let mut bad = contract();
        bad.created_by = "not-a-member-id".into();
        assert_eq!(standing_from_wit("c1", bad), Err(CleanroomError::Invalid));
        let mut bad = contract();
        bad.users = vec![String::new()];
        assert_eq!(standing_from_wit("c1", bad), Err(CleanroomError::Invalid));
        let mut bad = contract();
        bad.collaborators = Some(vec![M.into(); MAX_PARTIES + 1]);
        assert_eq!(standing_from_wit("c1", bad), Err(CleanroomError::Invalid));
    }

    #[test]
    fn policies_are_checked() {
        let p = policy_from_wit(vec![("h".into(), vec!["a".into(), "b".into()])]).unwrap();
        assert_eq!(p.claims["h"], ["a", "b"]);
        assert_eq!(policy_from_wit(vec![]), Err(CleanroomError::Invalid), "no claim would admit anyone");
        assert_eq!(policy_from_wit(vec![("h".into(), vec![])]), Err(CleanroomError::Invalid));
        assert_eq!(
            policy_from_wit(vec![("h".into(), vec!["a".into()]), ("h".into(), vec!["b".into()])]),
            Err(CleanroomError::Invalid)
        );
    }
}
