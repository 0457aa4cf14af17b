//! The service as an OIDC issuer for attested clean rooms.
//!
//! Host-owned governance actions (the keys are the node's, never a plugin's):
//! `oidc.enable_issuer {}`, `oidc.set_issuer_url {"url"}`, `oidc.rotate_key {}`,
//! `oidc.retire_key {"kid"}` and `oidc.set_audiences {"contract_id", "audiences"}`. Signing keys
//! (Ed25519) are generated while the accepting transaction runs and kept in the private (encrypted)
//! governance table `gov.private.oidc_keys`; every key stays published in `/oidc/keys` until it is
//! retired by proposal, so a token signed before a rotation verifies until it expires, and new
//! tokens use the newest key.
//!
//! What a token says is governance's, not the caller's: `iss` is the issuer URL set by proposal
//! (no token, and no discovery document, before one is set — never the request's `Host`), `sub`
//! is the contract id (a clean room of contract B cannot speak for contract A), `aud` must be one
//! of the contract's audiences set by proposal, `exp` never exceeds the session's, and each token
//! has a `jti`. Tokens of sessions admitted on virtual evidence carry `x-cgs-insecure-attestation`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use ed25519_dalek::Signer as _;

/// Keys: kid → [`KeyRecord`] (private table: encrypted in the ledger).
pub const KEYS: &str = "gov.private.oidc_keys";
/// `config` → `{"enabled", "issuer_url"?}`.
pub const CONFIG: &str = "gov.oidc";
/// Contract id → `{"audiences": [..]}`: the `aud` values its clean rooms may ask for.
pub const AUDIENCES: &str = "gov.oidc_audiences";
/// Most audiences per contract.
pub const MAX_AUDIENCES: usize = 16;
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

use cgs_core::gov::ActionBody;

use super::{Cleanroom, err, sessions::require_session};
use crate::auth::SESSION_EXP_CLAIM;
use crate::cleanroom;
use crate::error::{ErrorKind, ServiceError};
use crate::runtime::Caller;
use crate::txn::StateTx;

/// Check (and with `apply`, perform) a host-owned `oidc.*` action proposed by `proposer`, in
/// the transaction of the governance write that carries it.
pub fn action(g: &mut StateTx, a: &ActionBody, apply: bool, proposer: &Caller) -> Result<(), ServiceError> {
    let mut config: serde_json::Value =
        g.get(CONFIG, "config")?.unwrap_or_else(|| serde_json::json!({"enabled": false}));
    let no_args = |a: &ActionBody| {
        if a.args.as_object().is_none_or(|o| o.is_empty()) {
            Ok(())
        } else {
            Err(err(ErrorKind::Invalid, "InvalidActionArgs", format!("{} takes no arguments", a.name)))
        }
    };
    let new_key = |g: &mut StateTx| -> Result<(), ServiceError> {
        let k = KeyRecord::generate(g.now_ms);
        g.put(KEYS, &k.kid.clone(), &k)
    };
    let require_enabled = |config: &serde_json::Value| {
        if config["enabled"] == true {
            Ok(())
        } else {
            Err(err(ErrorKind::NotAllowedInState, "IssuerNotEnabled", "propose oidc.enable_issuer first"))
        }
    };
    match a.name.as_str() {
        "oidc.enable_issuer" => {
            no_args(a)?;
            if apply {
                config["enabled"] = true.into();
                g.put(CONFIG, "config", &config)?;
                if g.scan::<KeyRecord>(KEYS)?.is_empty() {
                    new_key(g)?;
                }
            }
        }
        "oidc.set_issuer_url" => {
            let url =
                a.args["url"].as_str().filter(|u| u.starts_with("https://") && u.len() <= 2048).ok_or_else(|| {
                    err(ErrorKind::Invalid, "InvalidActionArgs", "oidc.set_issuer_url takes {\"url\": \"https://…\"}")
                })?;
            if apply {
                config["issuer_url"] = url.trim_end_matches('/').into();
                g.put(CONFIG, "config", &config)?;
            }
        }
        "oidc.rotate_key" => {
            no_args(a)?;
            require_enabled(&config)?;
            if apply {
                new_key(g)?;
            }
        }
        "oidc.retire_key" => {
            let kid = a.args["kid"]
                .as_str()
                .ok_or_else(|| err(ErrorKind::Invalid, "InvalidActionArgs", "oidc.retire_key takes {\"kid\"}"))?;
            let mut keys: Vec<KeyRecord> = g.scan(KEYS)?.into_iter().map(|(_, k)| k).collect();
            keys.sort_by_key(|k| k.created_at_ms);
            if !keys.iter().any(|k| k.kid == kid) {
                return Err(err(ErrorKind::NotFound, "KeyNotFound", format!("the issuer has no key `{kid}`")));
            }
            if keys.last().is_some_and(|k| k.kid == kid) {
                return Err(err(
                    ErrorKind::NotAllowedInState,
                    "SigningKeyInUse",
                    format!("`{kid}` is the key new tokens are signed with: propose oidc.rotate_key first"),
                ));
            }
            if apply {
                g.tx.delete(KEYS, kid.as_bytes()).map_err(ServiceError::unavailable)?;
            }
        }
        "oidc.set_audiences" => {
            let id = a.args["contract_id"]
                .as_str()
                .ok_or_else(|| err(ErrorKind::Invalid, "InvalidActionArgs", "`contract_id` (a string) is required"))?;
            let audiences: Vec<String> = a.args["audiences"]
                .as_array()
                .map(|v| v.iter().filter_map(|a| a.as_str().map(str::to_string)).collect())
                .filter(|v: &Vec<String>| {
                    (1..=MAX_AUDIENCES).contains(&v.len())
                        && a.args["audiences"].as_array().is_some_and(|all| all.len() == v.len())
                        && v.iter().all(|a| (1..=256).contains(&a.len()))
                })
                .ok_or_else(|| {
                    err(
                        ErrorKind::Invalid,
                        "InvalidActionArgs",
                        format!("`audiences` is a list of 1-{MAX_AUDIENCES} strings of 1-256 characters"),
                    )
                })?;
            cleanroom::collaborator_of(g, id, proposer)?;
            if apply {
                g.put(AUDIENCES, id, &serde_json::json!({"audiences": audiences}))?;
            }
        }
        other => return Err(err(ErrorKind::Invalid, "UnknownAction", format!("`{other}` is not an oidc action"))),
    }
    Ok(())
}

impl Cleanroom {
    /// The issuer's configuration and keys (newest last), or 404 `IssuerNotEnabled`.
    fn oidc_state(&self, g: &mut StateTx) -> Result<(serde_json::Value, Vec<KeyRecord>), ServiceError> {
        let config: serde_json::Value = g.get(CONFIG, "config")?.unwrap_or_default();
        if config["enabled"] != true {
            return Err(err(
                ErrorKind::NotFound,
                "IssuerNotEnabled",
                "the OIDC issuer is not enabled; propose oidc.enable_issuer",
            ));
        }
        let mut keys: Vec<KeyRecord> = g.scan(KEYS)?.into_iter().map(|(_, k)| k).collect();
        keys.sort_by_key(|k| k.created_at_ms);
        Ok((config, keys))
    }

    /// The issuer URL governance set, or 405 `IssuerUrlNotSet`.
    fn issuer_url(config: &serde_json::Value) -> Result<String, ServiceError> {
        config["issuer_url"].as_str().map(str::to_string).ok_or_else(|| {
            err(
                ErrorKind::NotAllowedInState,
                "IssuerUrlNotSet",
                "no issuer URL is set: propose oidc.set_issuer_url with the URL where the discovery \
                 document and keys are published (the issuer is never taken from a request)",
            )
        })
    }

    /// `GET /.well-known/openid-configuration`.
    pub fn oidc_discovery(&self) -> Result<serde_json::Value, ServiceError> {
        let mut g = self.core.begin()?;
        let (config, _) = self.oidc_state(&mut g)?;
        let issuer = Self::issuer_url(&config)?;
        Ok(serde_json::json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/oidc/keys"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
        }))
    }

    /// `GET /oidc/keys`: every key not retired.
    pub fn oidc_keys(&self) -> Result<serde_json::Value, ServiceError> {
        let mut g = self.core.begin()?;
        let (_, keys) = self.oidc_state(&mut g)?;
        Ok(serde_json::json!({"keys": keys.iter().filter_map(KeyRecord::jwk).collect::<Vec<_>>()}))
    }

    /// `POST /app/contracts/{id}/oauth/token` `{"aud", "sub"?}` by a clean-room session of that
    /// contract (whose standing `authenticate` checked).
    pub fn oidc_token(
        &self,
        caller: &Caller,
        contract_id: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, ServiceError> {
        require_session(caller, contract_id, "ID tokens are issued")?;
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct TokenRequest {
            aud: String,
            #[serde(default)]
            sub: Option<String>,
        }
        let req: TokenRequest = serde_json::from_slice(body)
            .map_err(|e| err(ErrorKind::Invalid, "InvalidJson", format!("expected {{\"aud\", \"sub\"?}}: {e}")))?;
        if req.sub.as_deref().is_some_and(|s| s != contract_id) {
            return Err(err(
                ErrorKind::Forbidden,
                "SubjectNotAllowed",
                format!("the subject of this contract's tokens is `{contract_id}`; it cannot be chosen"),
            ));
        }
        let mut g = self.core.begin()?;
        let (config, keys) =
            self.oidc_state(&mut g).map_err(|e| ServiceError { kind: ErrorKind::NotAllowedInState, ..e })?;
        let issuer = Self::issuer_url(&config)?;
        let allowed: Vec<String> = g
            .get::<serde_json::Value>(AUDIENCES, contract_id)?
            .and_then(|v| serde_json::from_value(v["audiences"].clone()).ok())
            .unwrap_or_default();
        if !allowed.contains(&req.aud) {
            return Err(err(
                ErrorKind::Forbidden,
                "AudienceNotAllowed",
                if allowed.is_empty() {
                    format!("contract `{contract_id}` has no token audiences; propose oidc.set_audiences")
                } else {
                    format!("`{}` is not an audience of contract `{contract_id}` ({})", req.aud, allowed.join(", "))
                },
            ));
        }
        let key = keys.last().ok_or_else(|| ServiceError::unavailable("the issuer has no key"))?;
        let now = self.core.runtime.now_ms() / 1000;
        let session_exp = caller
            .claims
            .iter()
            .find(|(k, _)| k == SESSION_EXP_CLAIM)
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(now);
        let exp = (now + ID_TOKEN_TTL_SECS).min(session_exp);
        let mut claims = serde_json::json!({
            "iss": issuer, "sub": contract_id, "aud": req.aud, "iat": now, "nbf": now, "exp": exp,
            "jti": hex::encode(rand::random::<[u8; 16]>()),
            "contract_id": contract_id, "session_id": caller.id,
        });
        if caller.claims.iter().any(|(k, v)| k == "x-ms-sevsnpvm-is-virtual" && v == "true") {
            claims["x-cgs-insecure-attestation"] = true.into();
        }
        let token = key.sign(&claims).ok_or_else(|| ServiceError::unavailable("a corrupt OIDC key"))?;
        Ok(serde_json::json!({
            "id_token": token, "token_type": "Bearer", "expires_in": exp.saturating_sub(now), "kid": key.kid,
            "jti": claims["jti"],
        }))
    }
}
