//! The host-owned tables: their names and the records the host reads in them. Governance writes
//! the governance tables (through the constitution and the host's own actions); the plugins that
//! decide contracts and consent write the clean-room tables through the typed
//! `cgs:plugin/cleanroom` import (never as raw key-value); the authentication, clean-room and
//! reconciler code read them. The host never reads a plugin's own tables.

/// Governance tables (internal names).
pub mod tables {
    /// Members: member id → [`super::MemberRecord`].
    pub const MEMBERS: &str = "gov.members";
    /// Active app plugins: name → `{version, blake3, world}`.
    pub const PLUGINS: &str = "gov.plugins";
    /// The constitution: `current` → `{name, version, blake3}`.
    pub const CONSTITUTION: &str = "gov.constitution";
    /// Uploaded blobs: BLAKE3 hex → bytes.
    pub const BLOBS: &str = "gov.blobs";
    /// Proposals: id → [`crate::gov::ProposalRecord`].
    pub const PROPOSALS: &str = "gov.proposals";
    /// Seen envelopes: SHA-256 hex → tx time (replay protection).
    pub const ENVELOPES: &str = "gov.envelopes";
    /// Service: `status` → `{status, …}`.
    pub const SERVICE: &str = "gov.service";
    /// Trusted JWT issuers: issuer → `{issuer, jwks | jwks_url, audience?}`.
    pub const JWT_ISSUERS: &str = "gov.jwt_issuers";
    /// User identities: hex of `blind(issuer|subject)` → `{issuer, subject, data?}` (encrypted).
    pub const USER_IDENTITIES: &str = "gov.user_identities";
    /// What genesis fixed for good: `config` → `{"insecure_virtual_attestation"}`. A `sys.` table:
    /// no plugin (not even the constitution) can reach it.
    pub const CREATION: &str = "sys.service";
    /// Contract standing: contract id → [`super::ContractStanding`]. Set by the `contracts` plugin.
    pub const CLEANROOM_CONTRACTS: &str = "gov.private.cleanroom_contracts";
    /// Clean-room policies: contract id → [`super::CleanroomPolicy`]; the row's version is the
    /// policy version a session remembers. Set by the `contracts` plugin.
    pub const CLEANROOM_POLICIES: &str = "gov.private.cleanroom_policies";
    /// Kill switches that are on: `<contract id>/<member id>` → [`super::KillSwitch`]. Set by the
    /// `consent` plugin.
    pub const KILL_SWITCHES: &str = "gov.private.kill_switches";
}

/// The plugin governance installs as `contracts`: the one that may set contract standing and
/// clean-room policies.
pub const CONTRACTS_PLUGIN: &str = "contracts";
/// The plugin governance installs as `consent`: the one that may set kill switches.
pub const CONSENT_PLUGIN: &str = "consent";

/// A contract's state as far as clean rooms are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ContractState {
    /// Drafted or proposed: its clean rooms may not act.
    Draft,
    /// Accepted: its clean rooms may act unless a kill switch is on.
    Accepted,
    /// Revoked: its clean rooms may no longer act, for good.
    Revoked,
}

/// A contract's standing ([`tables::CLEANROOM_CONTRACTS`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContractStanding {
    /// State.
    pub state: ContractState,
    /// The creator (always a party).
    pub created_by: String,
    /// Member ids that are parties; `None`: every member.
    pub collaborators: Option<Vec<String>>,
    /// Users (`issuer|subject`) that are parties.
    pub users: Vec<String>,
}

impl ContractStanding {
    /// Its parties.
    pub fn parties(&self) -> cgs_core::contract::Parties<'_> {
        cgs_core::contract::Parties {
            created_by: &self.created_by,
            collaborators: self.collaborators.as_deref(),
            users: &self.users,
        }
    }
}

/// A contract's clean-room policy ([`tables::CLEANROOM_POLICIES`]): claim → allowed values.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CleanroomPolicy {
    /// Claim → allowed values (one of them must be attested).
    pub claims: std::collections::BTreeMap<String, Vec<String>>,
}

/// A kill switch that is on ([`tables::KILL_SWITCHES`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KillSwitch {
    /// Why (the member's words).
    pub reason: Option<String>,
}

/// A member (`gov.members`), as the constitution writes it: the type the constitution and the
/// host share.
pub use cgs_core::gov::MemberRecord;
