//! Clean-room contracts as far as more than one component must agree on them: who is a party
//! (the contracts plugin decides its routes with it, the host its sessions, secrets and ledger
//! reads), and how an identifier is put in a URL.

/// The parties a contract record names.
#[derive(Debug, Clone, Copy)]
pub struct Parties<'a> {
    /// The member who created it (always a party).
    pub created_by: &'a str,
    /// Member ids that are parties; `None`: every member (the whole consortium).
    pub collaborators: Option<&'a [String]>,
    /// Users (`issuer|subject`) that are parties.
    pub users: &'a [String],
}

impl Parties<'_> {
    /// Whether member `id` is a collaborator.
    pub fn has_member(&self, id: &str) -> bool {
        self.created_by == id || self.collaborators.is_none_or(|c| c.iter().any(|m| m == id))
    }

    /// Whether user `id` (`issuer|subject`) is a party.
    pub fn has_user(&self, id: &str) -> bool {
        self.users.iter().any(|u| u == id)
    }
}

/// Percent-encode `s` for a URL path segment or query value: unreserved bytes (RFC 3986
/// `A-Z a-z 0-9 - _ . ~`) stay, every other byte is `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parties() {
        let (collab, users) = (vec!["m2".to_string()], vec!["iss|u".to_string()]);
        let p = Parties { created_by: "m1", collaborators: Some(&collab), users: &users };
        assert!(p.has_member("m1") && p.has_member("m2") && !p.has_member("m3"));
        assert!(p.has_user("iss|u") && !p.has_user("iss|v"));
        let all = Parties { created_by: "m1", collaborators: None, users: &[] };
        assert!(all.has_member("anyone"));
    }

    #[test]
    fn encoding_keeps_unreserved_bytes_only() {
        assert_eq!(percent_encode("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(percent_encode("x y/z|é"), "x%20y%2Fz%7C%C3%A9");
    }
}
