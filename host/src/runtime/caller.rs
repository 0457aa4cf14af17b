//! The principal behind a call, as authentication produced it and as plugins see it.

use super::bindings::types as wit;

/// The kind of principal behind a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallerKind {
    /// No credentials.
    Anonymous,
    /// A consortium member.
    Member,
    /// A user with a JWT of a registered issuer.
    User,
    /// An attested clean-room session.
    Cleanroom,
}

/// The authenticated principal behind a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Kind.
    pub kind: CallerKind,
    /// Member id, `issuer|subject`, or session id; empty if anonymous.
    pub id: String,
    /// Roles.
    pub roles: Vec<String>,
    /// For clean-room sessions: the bound contract.
    pub contract_id: Option<String>,
    /// Claims.
    pub claims: Vec<(String, String)>,
}

impl Caller {
    /// No credentials.
    pub fn anonymous() -> Self {
        Self { kind: CallerKind::Anonymous, id: String::new(), roles: vec![], contract_id: None, claims: vec![] }
    }

    /// The caller as ledger entries record it: member ids and session ids as they are, a user
    /// (`issuer|subject`, a person's identity) as `user:` + hex of its blinded form, so the
    /// ledger files do not name users.
    pub fn recorded_id(&self, blind: impl FnOnce(&[u8]) -> [u8; 32]) -> String {
        match self.kind {
            CallerKind::User => format!("user:{}", hex::encode(blind(self.id.as_bytes()))),
            _ => self.id.clone(),
        }
    }

    pub(super) fn to_wit(&self) -> wit::Caller {
        wit::Caller {
            kind: match self.kind {
                CallerKind::Anonymous => wit::CallerKind::Anonymous,
                CallerKind::Member => wit::CallerKind::Member,
                CallerKind::User => wit::CallerKind::User,
                CallerKind::Cleanroom => wit::CallerKind::Cleanroom,
            },
            id: self.id.clone(),
            roles: self.roles.clone(),
            contract_id: self.contract_id.clone(),
            claims: self.claims.clone(),
        }
    }
}
