//! Who is calling: the bearer tokens of members, users and clean-room sessions.
//!
//! A token's signature is verified once and remembered (an Ed25519 or RSA verification per
//! request would cost more than the request); what it entitles to is re-checked on **every**
//! request against committed state:
//!
//! * a member must still exist, and must have acked (be `Active`) to change anything — an invited
//!   member reads and acks, nothing else (`403 MemberNotActive`);
//! * a user's issuer must still be trusted with the same keys (a JWKS refresh that drops a key
//!   drops the tokens it verified) and the identity still registered;
//! * a clean-room session's standing (its contract accepted, no kill switch on, the clean-room
//!   policy it was admitted under) is what [`Authenticated::session`] names, for
//!   [`crate::cleanroom::Cleanroom::require_standing`] to check.

pub mod jwks;
pub mod jwt;
pub mod users;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cgs_core::TxId;

pub(crate) use crate::error::err;
use crate::error::{ErrorKind, ServiceError};
use crate::runtime::{Caller, CallerKind};
use crate::schema::{MemberRecord, tables};
use crate::txn::{Core, StateTx};

/// The caller claim holding a clean-room session's public key (base64).
pub const SESSION_KEY_CLAIM: &str = "x-cgs-session-key";

/// The caller claim holding a clean-room session's expiry (seconds since the epoch): ID tokens
/// never outlive the session.
pub const SESSION_EXP_CLAIM: &str = "x-cgs-session-exp";

/// Most verified tokens remembered (the cache is cleared when full).
const TOKEN_CACHE: usize = 65_536;

/// A bearer token whose signature was verified (registration is checked on every request).
#[derive(Clone)]
struct VerifiedToken {
    /// The token key version when it was verified: after a re-key it is verified again.
    key_version: u32,
    kind: CallerKind,
    id: String,
    claims: Vec<(String, String)>,
    exp: u64,
    /// For users: the issuer record the token was verified against.
    issuer: Option<(String, TxId)>,
    /// For users of an issuer given by `jwks_url`: the URL and the generation of its keys then.
    jwks: Option<(String, u64)>,
    /// For clean-room sessions: the contract.
    contract_id: Option<String>,
    /// For clean-room sessions: the version of the contract's clean-room policy it was admitted
    /// under (`None`: no policy record then).
    policy_version: Option<String>,
}

/// An authenticated caller, and for a clean-room session what its standing depends on.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The caller.
    pub caller: Caller,
    /// For clean-room sessions: the contract and the policy version it was admitted under.
    pub session: Option<SessionStanding>,
}

/// What a clean-room session's right to act depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStanding {
    /// The contract.
    pub contract_id: String,
    /// The version of the contract's clean-room policy at admission (`None`: no policy then).
    pub policy_version: Option<String>,
}

fn invalid(m: String) -> ServiceError {
    err(ErrorKind::Unauthenticated, "InvalidCredentials", m)
}

/// Authentication: token keys, verified-token cache, fetched issuer keys.
pub struct Auth {
    core: Arc<Core>,
    tokens: jwt::TokenKey,
    /// SHA-256(token) → what its signature proved.
    verified: Mutex<HashMap<[u8; 32], VerifiedToken>>,
    /// Issuers' keys fetched from their `jwks_url`.
    jwks: jwks::JwksFetcher,
}

impl Auth {
    /// Authentication over `core`; service tokens are signed with the key in `token_key_path`.
    pub fn new(
        core: Arc<Core>,
        token_key_path: &std::path::Path,
        config: &crate::gov::GovConfig,
    ) -> std::io::Result<Self> {
        let tokens = jwt::TokenKey::load_or_create(token_key_path, &core.ledger.identity().origin)?;
        let jwks =
            jwks::JwksFetcher::new(config.jwks_url_allow.clone(), config.jwks_ca_pem.as_deref(), config.jwks_refresh)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Ok(Self { core, tokens, verified: Default::default(), jwks })
    }

    /// The service's token key (member and clean-room session tokens), following the ledger
    /// secret version.
    pub fn tokens(&self) -> Result<&jwt::TokenKey, ServiceError> {
        self.follow_rekey()?;
        Ok(&self.tokens)
    }

    /// After a re-key, sign and verify with the key of the new ledger secret version, and forget
    /// tokens verified with the old one. A node that does not hold the version the ledger was
    /// re-keyed to neither issues nor accepts the service's tokens (503): its key is the old one.
    fn follow_rekey(&self) -> Result<(), ServiceError> {
        let current = self.core.ledger.secrets().current().map_err(|e| {
            err(ErrorKind::Unavailable, "LedgerSecretUnavailable", format!("{e}; send the request to another node"))
        })?;
        if current.version() > self.tokens.version() && self.tokens.rotate(current.version(), &current.token_seed()) {
            tracing::info!(
                version = current.version(),
                "the ledger was re-keyed: tokens are now signed with a new key"
            );
            if let Ok(mut c) = self.verified.lock() {
                c.clear();
            }
        }
        Ok(())
    }

    /// JWKS fetches so far by this node: `(succeeded, failed)`.
    pub fn jwks_counts(&self) -> (u64, u64) {
        self.jwks.counts()
    }

    /// Fetch the JWKS of trusted issuers given by URL that are due (see [`jwks`]).
    pub async fn refresh_jwks(&self) {
        let urls: Vec<String> =
            match self.core.begin().and_then(|mut g| g.scan::<serde_json::Value>(tables::JWT_ISSUERS)) {
                Ok(issuers) => issuers
                    .into_iter()
                    .filter(|(_, i)| !i["jwks"]["keys"].is_array())
                    .filter_map(|(_, i)| i["jwks_url"].as_str().map(str::to_string))
                    .collect(),
                Err(e) => {
                    tracing::debug!(error = %e.message, "reading JWT issuers failed");
                    return;
                }
            };
        if !urls.is_empty() {
            self.jwks.refresh(&urls).await;
        }
    }

    /// Authenticate a bearer token and check what it still entitles to. `write`: the request may
    /// change state (any method but `GET`).
    pub fn authenticate(&self, token: &str, write: bool) -> Result<Authenticated, ServiceError> {
        let now = self.core.runtime.now_ms() / 1000;
        let digest: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(token.as_bytes()).into()
        };
        let mut g = self.core.begin()?;
        // The service's own tokens only while this node holds the current ledger secret.
        let own_tokens_ok = self.follow_rekey().is_ok();
        let cached = self.verified.lock().ok().and_then(|c| {
            c.get(&digest)
                .filter(|v| v.exp > now && v.key_version == self.tokens.version())
                .filter(|v| own_tokens_ok || v.kind == CallerKind::User)
                .cloned()
        });
        let v = match cached {
            Some(v) => v,
            None => {
                let v = self.verify_token(&mut g, token, now)?;
                if let Ok(mut c) = self.verified.lock() {
                    if c.len() >= TOKEN_CACHE {
                        c.clear();
                    }
                    c.insert(digest, v.clone());
                }
                v
            }
        };
        match v.kind {
            CallerKind::Member => {
                let member: MemberRecord = g
                    .get(tables::MEMBERS, &v.id)?
                    .ok_or_else(|| invalid("the token's member no longer exists".into()))?;
                if write && member.status != "Active" {
                    return Err(err(
                        ErrorKind::Forbidden,
                        "MemberNotActive",
                        format!(
                            "member {} was invited but has not acked the service state: until it acks \
                             (POST /gov/members/{}/ack) it may only read",
                            v.id, v.id
                        ),
                    ));
                }
                let caller = Caller {
                    kind: CallerKind::Member,
                    id: v.id,
                    roles: member.roles(),
                    contract_id: None,
                    claims: vec![],
                };
                Ok(Authenticated { caller, session: None })
            }
            CallerKind::Cleanroom => {
                let session = SessionStanding {
                    contract_id: v.contract_id.clone().unwrap_or_default(),
                    policy_version: v.policy_version.clone(),
                };
                let mut claims = v.claims;
                claims.push((SESSION_EXP_CLAIM.into(), v.exp.to_string()));
                let caller =
                    Caller { kind: CallerKind::Cleanroom, id: v.id, roles: vec![], contract_id: v.contract_id, claims };
                Ok(Authenticated { caller, session: Some(session) })
            }
            _ => {
                let (iss, version) = v.issuer.clone().unwrap_or_default();
                let current =
                    g.tx.get(tables::JWT_ISSUERS, iss.as_bytes())
                        .map_err(ServiceError::unavailable)?
                        .map(|r| r.version);
                let keys_changed =
                    v.jwks.as_ref().is_some_and(|(url, generation)| self.jwks.generation(url) != *generation);
                if current != Some(version) || keys_changed {
                    // The issuer was removed, its record changed, or its fetched keys changed
                    // since: verify again (a token of a key that vanished fails).
                    if let Ok(mut c) = self.verified.lock() {
                        c.remove(&digest);
                    }
                    if current.is_none() {
                        return Err(invalid(format!("issuer `{iss}` is no longer trusted")));
                    }
                    return self.authenticate(token, write);
                }
                let key = users::identity_key(&v.id, |d| g.tx.blind(d));
                let identity: serde_json::Value = g.get(tables::USER_IDENTITIES, &key)?.ok_or_else(|| {
                    invalid(format!("user `{}` is not a registered identity; propose set_user_identity", v.id))
                })?;
                let roles = identity["data"]["roles"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                let caller = Caller { kind: CallerKind::User, id: v.id, roles, contract_id: None, claims: v.claims };
                Ok(Authenticated { caller, session: None })
            }
        }
    }

    /// Check a token's signature and lifetime: a member or session token of this service, or a
    /// user JWT of a trusted issuer.
    fn verify_token(&self, g: &mut StateTx, token: &str, now: u64) -> Result<VerifiedToken, ServiceError> {
        let parsed = users::parse(token).map_err(invalid)?;
        let key_version = self.tokens.version();
        let plain = |kind, id: String, exp| VerifiedToken {
            key_version,
            kind,
            id,
            claims: vec![],
            exp,
            issuer: None,
            jwks: None,
            contract_id: None,
            policy_version: None,
        };
        if parsed.claims["aud"] == jwt::MEMBER_AUDIENCE || parsed.claims["aud"] == jwt::CLEANROOM_AUDIENCE {
            self.follow_rekey()?;
        }
        if parsed.claims["aud"] == jwt::MEMBER_AUDIENCE {
            let sub = self.tokens.verify(token, now).map_err(invalid)?;
            let exp = parsed.claims["exp"].as_u64().unwrap_or(now);
            return Ok(plain(CallerKind::Member, sub, exp));
        }
        if parsed.claims["aud"] == jwt::CLEANROOM_AUDIENCE {
            let c = self.tokens.verify_claims(token, now, jwt::CLEANROOM_AUDIENCE).map_err(invalid)?;
            let mut claims: Vec<(String, String)> = c["claims"]
                .as_object()
                .map(|o| o.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
                .unwrap_or_default();
            if let Some(k) = c["session_key"].as_str() {
                claims.push((SESSION_KEY_CLAIM.into(), k.to_string()));
            }
            let mut v = plain(
                CallerKind::Cleanroom,
                c["sub"].as_str().unwrap_or_default().to_string(),
                c["exp"].as_u64().unwrap_or(now),
            );
            v.claims = claims;
            v.contract_id = c["contract_id"].as_str().map(str::to_string);
            v.policy_version = c["policy_version"].as_str().map(str::to_string);
            return Ok(v);
        }
        let iss = parsed.claims["iss"].as_str().ok_or_else(|| invalid("the token has no `iss`".into()))?.to_string();
        let record =
            g.tx.get(tables::JWT_ISSUERS, iss.as_bytes()).map_err(ServiceError::unavailable)?.ok_or_else(|| {
                invalid(format!("issuer `{iss}` is not trusted by this service; propose set_jwt_issuer"))
            })?;
        let mut issuer: serde_json::Value = serde_json::from_slice(&record.value)
            .map_err(|e| ServiceError::unavailable(format!("corrupt issuer record: {e}")))?;
        let mut jwks = None;
        if !issuer["jwks"]["keys"].is_array()
            && let Some(url) = issuer["jwks_url"].as_str().map(str::to_string)
        {
            let generation = self.jwks.generation(&url);
            issuer["jwks"] = self.jwks.keys(&url).map_err(invalid)?;
            jwks = Some((url, generation));
        }
        let sub = users::verify(&parsed, &issuer, now).map_err(invalid)?;
        let exp = parsed.claims["exp"].as_u64().unwrap_or(now);
        let mut v = plain(CallerKind::User, format!("{iss}|{sub}"), exp);
        v.claims = users::flat_claims(&parsed.claims);
        v.issuer = Some((iss, record.version));
        v.jwks = jwks;
        Ok(v)
    }
}
