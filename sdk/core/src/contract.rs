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

/// Longest contract id.
pub const MAX_ID: usize = 128;

/// Whether `id` is a valid contract id: 1–[`MAX_ID`] characters of `A-Z a-z 0-9 - _ .` (so it
/// needs no escaping in a URL or a `<contract>/<member>` key).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
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

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decode `s` (and `+` as space if `plus`: query strings); `None` unless the result
/// is UTF-8 and every `%` starts a pair of hex digits.
pub fn percent_decode(s: &str, plus: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex_val(*bytes.get(i + 1)?)?;
                let lo = hex_val(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The contract a ledger transaction is about, from its recorded operation: a route under
/// `/app/contracts/<id>` (`<METHOD> <path as received>`, so percent-decoded here) or the host's
/// secret writes (`put secret <id>/<name>`, `delete secret <id>/<name>`). `None`: not about
/// one contract.
pub fn operation_contract(operation: &str) -> Option<String> {
    if let Some((_, path)) = operation.split_once(' ')
        && let Some(rest) = path.strip_prefix("/app/")
    {
        // Routing matches decoded segments, so `/app/%63ontracts/c1` is contract `c1`'s too.
        let mut segments = rest.split('?').next().unwrap_or_default().split('/').map(|s| percent_decode(s, false));
        return match (segments.next(), segments.next()) {
            (Some(Some(first)), Some(Some(id))) if first == "contracts" && !id.is_empty() => Some(id),
            _ => None,
        };
    }
    ["put secret ", "delete secret "]
        .iter()
        .find_map(|p| operation.strip_prefix(p))
        .and_then(|rest| rest.split_once('/'))
        .map(|(id, _)| id.to_string())
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
    fn operations_name_their_contract() {
        assert_eq!(operation_contract("PUT /app/contracts/c%201").as_deref(), Some("c 1"));
        assert_eq!(operation_contract("POST /app/contracts/c1/events").as_deref(), Some("c1"));
        assert_eq!(operation_contract("GET /app/contracts/c1?x=1").as_deref(), Some("c1"));
        assert_eq!(operation_contract("PUT /app/notes/n1"), None);
        assert_eq!(operation_contract("PUT /app/contracts"), None);
        assert_eq!(operation_contract("PUT /app/contracts/"), None);
        assert_eq!(operation_contract("PUT /app/contracts/%zz"), None);
        // Encoded the way routing still matches (review finding): the same contract.
        assert_eq!(operation_contract("POST /app/contract%73/c1/events").as_deref(), Some("c1"));
        assert_eq!(operation_contract("POST /app/%63ontracts/c%31").as_deref(), Some("c1"));
        assert_eq!(operation_contract("put secret c1/db-key").as_deref(), Some("c1"));
        assert_eq!(operation_contract("ballot"), None);
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b+c", false).as_deref(), Some("a b+c"));
        assert_eq!(percent_decode("a%20b+c", true).as_deref(), Some("a b c"));
        assert_eq!(percent_decode("%C3%A9", false).as_deref(), Some("é"));
        for bad in ["%", "%2", "%zz", "%FF"] {
            assert_eq!(percent_decode(bad, false), None, "{bad}");
        }
    }

    #[test]
    fn ids() {
        assert!(valid_id("c-1_a.B") && valid_id(&"x".repeat(MAX_ID)));
        for bad in ["", "a/b", "a b", "é", &"x".repeat(MAX_ID + 1)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn encoding_keeps_unreserved_bytes_only() {
        assert_eq!(percent_encode("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(percent_encode("x y/z|é"), "x%20y%2Fz%7C%C3%A9");
    }
}
