//! Member bearer tokens: compact JWTs signed with EdDSA (Ed25519) by a service key.
//!
//! Claims: `iss` (log origin), `sub` (member id), `aud` = `cgs:member`, `iat`, `exp`. The key is
//! kept in `DIR/node/token-signing.key` (development fallback: a plain owner-only file; on
//! SEV-SNP it is generated in and sealed to the TEE like the other node keys). When the ledger is
//! re-keyed, the token key becomes one derived from the new ledger secret version
//! ([`TokenKey::rotate`]): tokens signed before no longer verify, and a removed node, which never
//! holds the new version, cannot mint tokens the service accepts.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::{Signer, SigningKey};

/// Audience of member tokens.
pub const MEMBER_AUDIENCE: &str = "cgs:member";
/// Audience of clean-room session tokens.
pub const CLEANROOM_AUDIENCE: &str = "cgs:cleanroom";

/// The token signing key.
pub struct TokenKey {
    /// The ledger secret version it follows (0: the key made at creation) and the key.
    key: std::sync::RwLock<(u32, SigningKey)>,
    issuer: String,
}

impl TokenKey {
    /// Load (or create) the key at `path`; tokens name `issuer`.
    pub fn load_or_create(path: &Path, issuer: &str) -> std::io::Result<Self> {
        let seed = crate::fsutil::load_or_create_secret(path, "key")?;
        Ok(Self { key: std::sync::RwLock::new((0, SigningKey::from_bytes(&seed))), issuer: issuer.to_string() })
    }

    /// The ledger secret version the key follows.
    pub fn version(&self) -> u32 {
        self.key.read().map(|k| k.0).unwrap_or(0)
    }

    /// Move to the key of ledger secret `version` (seeded by `seed`), if it is newer than the
    /// current one; returns whether it moved. Tokens signed with the previous key stop verifying.
    pub fn rotate(&self, version: u32, seed: &[u8; 32]) -> bool {
        match self.key.write() {
            Ok(mut k) if version > k.0 => {
                *k = (version, SigningKey::from_bytes(seed));
                true
            }
            _ => false,
        }
    }

    fn signing_key(&self) -> SigningKey {
        match self.key.read() {
            Ok(k) => k.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        }
    }

    /// A token for `member_id`, valid `ttl` seconds from `now`; returns it and its expiry.
    pub fn issue(&self, member_id: &str, now: u64, ttl: u64) -> (String, u64) {
        let exp = now + ttl;
        let token =
            self.issue_claims(serde_json::json!({"sub": member_id, "aud": MEMBER_AUDIENCE, "iat": now, "exp": exp}));
        (token, exp)
    }

    /// A token with these `claims` (`iss` is added): member and clean-room session tokens.
    pub fn issue_claims(&self, mut claims: serde_json::Value) -> String {
        claims["iss"] = self.issuer.clone().into();
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT"});
        let signing_input = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
        let sig = self.signing_key().sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64URL.encode(sig.to_bytes()))
    }

    /// Verify a token of this service for `audience` (signature, algorithm, issuer, audience,
    /// expiry); returns its claims.
    pub fn verify_claims(&self, token: &str, now: u64, audience: &str) -> Result<serde_json::Value, String> {
        let (h, rest) = token.split_once('.').ok_or("the bearer token is not a JWT")?;
        let (c, s) = rest.split_once('.').filter(|(_, s)| !s.contains('.')).ok_or("the bearer token is not a JWT")?;
        let sig = B64URL.decode(s).map_err(|_| "the token signature is not base64url".to_string())?;
        let sig =
            ed25519_dalek::Signature::from_slice(&sig).map_err(|_| "the token signature is malformed".to_string())?;
        self.signing_key()
            .verifying_key()
            .verify_strict(format!("{h}.{c}").as_bytes(), &sig)
            .map_err(|_| "the token was not issued by this service".to_string())?;
        let json = |part: &str, what: &str| -> Result<serde_json::Value, String> {
            serde_json::from_slice(&B64URL.decode(part).map_err(|_| format!("bad token {what}"))?)
                .map_err(|_| format!("bad token {what}"))
        };
        if json(h, "header")?["alg"] != "EdDSA" {
            return Err("the token algorithm must be EdDSA".into());
        }
        let claims = json(c, "claims")?;
        if claims["aud"] != audience || claims["iss"] != self.issuer.as_str() {
            return Err(format!("the token is not a `{audience}` token of this service"));
        }
        if claims["exp"].as_u64().is_none_or(|exp| exp <= now) {
            return Err("the token has expired; get a new one (members: log in again)".into());
        }
        Ok(claims)
    }

    /// Verify a member token; returns the member id.
    pub fn verify(&self, token: &str, now: u64) -> Result<String, String> {
        let claims = self.verify_claims(token, now, MEMBER_AUDIENCE)?;
        claims["sub"].as_str().map(str::to_string).ok_or_else(|| "the token names no member".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let k = TokenKey::load_or_create(&dir.path().join("k"), "cgs/x").unwrap();
        let (t, exp) = k.issue("m1", 1000, 60);
        assert_eq!(exp, 1060);
        assert_eq!(k.verify(&t, 1001).unwrap(), "m1");
        assert!(k.verify(&t, 1060).unwrap_err().contains("expired"));
        let other = TokenKey::load_or_create(&dir.path().join("k2"), "cgs/x").unwrap();
        assert!(other.verify(&t, 1001).is_err());
        let mut bad = t.clone();
        bad.push('A');
        assert!(k.verify(&bad, 1001).is_err());
        // Re-keyed: the old token no longer verifies; a new one does; no going back.
        assert!(k.rotate(1, &[9; 32]));
        assert!(k.verify(&t, 1001).unwrap_err().contains("not issued by this service"));
        let (t1, _) = k.issue("m1", 1000, 60);
        assert_eq!(k.verify(&t1, 1001).unwrap(), "m1");
        assert!(!k.rotate(1, &[10; 32]) && !k.rotate(0, &[10; 32]));
        assert_eq!((k.version(), k.verify(&t1, 1001).unwrap()), (1, "m1".to_string()));
        assert!(k.verify("a.b", 1001).is_err());
    }
}
