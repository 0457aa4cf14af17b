//! The service as an OIDC issuer for attested clean rooms.
//!
//! Host-owned governance actions (the keys are the node's, never a plugin's):
//! `oidc.enable_issuer {}`, `oidc.set_issuer_url {"url"}`, `oidc.rotate_key {}`. Signing keys
//! (Ed25519) are generated while the accepting transaction runs and kept in the private (encrypted)
//! governance table `gov.private.oidc_keys`; every key stays published in `/oidc/keys`, so a token
//! signed before a rotation verifies until it expires, and new tokens use the newest key.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use ed25519_dalek::Signer as _;

/// Keys: kid → [`KeyRecord`] (private table: encrypted in the ledger).
pub const KEYS: &str = "gov.private.oidc_keys";
/// `config` → `{"enabled", "issuer_url"?}`.
pub const CONFIG: &str = "gov.oidc";
/// Lifetime of ID tokens.
pub const ID_TOKEN_TTL_SECS: u64 = 3600;

/// A signing key.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeyRecord {
    /// Key id (hex of the first 8 bytes of SHA-256 of the public key).
    pub kid: String,
    /// Base64 of the 32-byte Ed25519 seed.
    pub seed: String,
    /// When it was created (tx time, ms).
    pub created_at_ms: u64,
}

impl KeyRecord {
    /// A fresh key created at `now_ms`.
    pub fn generate(now_ms: u64) -> Self {
        use sha2::Digest;
        let seed: [u8; 32] = rand::random();
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let kid = hex::encode(&sha2::Sha256::digest(public.as_bytes())[..8]);
        Self { kid, seed: B64.encode(seed), created_at_ms: now_ms }
    }

    fn key(&self) -> Option<ed25519_dalek::SigningKey> {
        let seed: [u8; 32] = B64.decode(&self.seed).ok()?.try_into().ok()?;
        Some(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The public JWK.
    pub fn jwk(&self) -> Option<serde_json::Value> {
        let k = self.key()?.verifying_key();
        Some(serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid,
            "x": B64URL.encode(k.as_bytes()),
        }))
    }

    /// A compact JWS of `claims` with this key.
    pub fn sign(&self, claims: &serde_json::Value) -> Option<String> {
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let input = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
        let sig = self.key()?.sign(input.as_bytes());
        Some(format!("{input}.{}", B64URL.encode(sig.to_bytes())))
    }
}
