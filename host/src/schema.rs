//! The host-owned governance tables: their names and the records the host reads in them.
//! Governance writes them (through the constitution and the host's own actions); the
//! authentication, clean-room and reconciler code read them. (What the host reads of the
//! clean-room plugins' tables is in `cleanroom/mod.rs`, as typed views.)

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
}

/// A member (`gov.members`), as the constitution writes it: the type the constitution and the
/// host share.
pub use cgs_core::gov::MemberRecord;
