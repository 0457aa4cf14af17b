//! Who is calling, and how: one definition for the host (which authenticates callers and routes
//! requests) and the plugins (which see them through WIT). Each side converts to and from the WIT
//! types at its own boundary.

use std::fmt;

/// HTTP methods plugin routes may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// GET
    Get,
    /// PUT
    Put,
    /// POST
    Post,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Method {
    /// From an HTTP method name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "GET" => Method::Get,
            "PUT" => Method::Put,
            "POST" => Method::Post,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }

    /// The HTTP method name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// Roles (e.g. `operator`).
    pub roles: Vec<String>,
    /// For clean-room sessions: the bound contract.
    pub contract_id: Option<String>,
    /// Attested or token claims.
    pub claims: Vec<(String, String)>,
}

impl Caller {
    /// No credentials.
    pub fn anonymous() -> Self {
        Self { kind: CallerKind::Anonymous, id: String::new(), roles: vec![], contract_id: None, claims: vec![] }
    }

    /// A member with the given id (and no roles).
    pub fn member(id: impl Into<String>) -> Self {
        Self { kind: CallerKind::Member, id: id.into(), ..Self::anonymous() }
    }

    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_round_trip() {
        for m in [Method::Get, Method::Put, Method::Post, Method::Patch, Method::Delete] {
            assert_eq!(Method::parse(m.as_str()), Some(m));
        }
        assert_eq!(Method::parse("get"), None);
    }

    #[test]
    fn users_are_recorded_blinded() {
        let user = Caller { kind: CallerKind::User, id: "iss|sub".into(), ..Caller::anonymous() };
        assert_eq!(user.recorded_id(|_| [7; 32]), format!("user:{}", "07".repeat(32)));
        assert_eq!(Caller::member("m1").recorded_id(|_| [7; 32]), "m1");
        assert!(!Caller::member("m1").has_role("operator"));
    }
}
