//! Attested clean-room sessions (`GET /cleanroom/nonce`, `POST /app/contracts/{id}/cleanroom/session`).
//!
//! A clean room asks for a nonce (single use, valid [`NONCE_TTL`]), then presents evidence whose
//! `report_data` is SHA-256(public_key ‖ nonce) zero-padded to 64 bytes, its public key and the
//! nonce. The service verifies the evidence (`cgs-attestation`; virtual evidence only where the
//! service allows it), the binding, and the contract's accepted clean-room policy (AND across
//! claims, OR across values), and answers a session token (EdDSA JWT, audience `cgs:cleanroom`)
//! bound to that contract: the `cleanroom` caller kind the clean-room plugins admit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::Digest;

/// How long a nonce may be used.
pub const NONCE_TTL: Duration = Duration::from_secs(120);
/// How long a session token is valid.
pub const SESSION_TTL_SECS: u64 = 3600;
/// Most outstanding nonces (oldest dropped beyond).
const MAX_NONCES: usize = 100_000;

/// Outstanding nonces of this node.
#[derive(Default)]
pub struct Nonces(Mutex<HashMap<String, Instant>>);

impl Nonces {
    /// A fresh nonce (hex of 32 random bytes).
    pub fn issue(&self) -> String {
        let nonce = hex::encode(rand::random::<[u8; 32]>());
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= MAX_NONCES {
                m.retain(|_, at| at.elapsed() < NONCE_TTL);
            }
            m.insert(nonce.clone(), Instant::now());
        }
        nonce
    }

    /// Use `nonce`: true once, if it was issued here less than [`NONCE_TTL`] ago.
    pub fn take(&self, nonce: &str) -> bool {
        self.0.lock().ok().and_then(|mut m| m.remove(nonce)).is_some_and(|at| at.elapsed() < NONCE_TTL)
    }
}

/// The `report_data` a clean room's evidence must carry.
pub fn expected_report_data(public_key: &[u8], nonce: &str) -> [u8; 64] {
    let mut h = sha2::Sha256::new();
    h.update(public_key);
    h.update(nonce.as_bytes());
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&h.finalize());
    rd
}

/// Why `claims` do not satisfy the clean-room `policy` (`{claim: [values]}`), if they do not.
pub fn policy_mismatch(
    policy: &serde_json::Map<String, serde_json::Value>,
    claims: &[(String, String)],
) -> Option<String> {
    if policy.is_empty() {
        return Some("the contract has no clean-room policy; propose contracts.set_cleanroom_policy".into());
    }
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (claim, allowed) in policy {
        let allowed: Vec<String> = allowed.as_array().map(|a| a.iter().map(text).collect()).unwrap_or_default();
        let got: Vec<&str> = claims.iter().filter(|(k, _)| k == claim).map(|(_, v)| v.as_str()).collect();
        if got.is_empty() {
            return Some(format!("the evidence has no claim `{claim}`"));
        }
        if !got.iter().any(|g| allowed.iter().any(|a| a == g)) {
            return Some(format!("claim `{claim}` is `{}`, which the contract's policy does not allow", got[0]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_single_use() {
        let n = Nonces::default();
        let a = n.issue();
        assert!(n.take(&a));
        assert!(!n.take(&a));
        assert!(!n.take("never-issued"));
    }

    #[test]
    fn policy_and_or() {
        let p = serde_json::json!({"h": ["a", "b"], "d": [false]});
        let p = p.as_object().unwrap();
        let c = |h: &str, d: &str| vec![("h".to_string(), h.to_string()), ("d".to_string(), d.to_string())];
        assert_eq!(policy_mismatch(p, &c("b", "false")), None);
        assert!(policy_mismatch(p, &c("z", "false")).unwrap().contains("`h`"));
        assert!(policy_mismatch(p, &c("a", "true")).unwrap().contains("`d`"));
        assert!(policy_mismatch(&serde_json::Map::new(), &c("a", "false")).is_some());
    }
}
