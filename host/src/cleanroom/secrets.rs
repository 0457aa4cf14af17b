//! Per-contract secrets: put by a member collaborator, released only to attested clean-room
//! sessions of the contract, sealed with HPKE (RFC 9180) to the session's key.
//!
//! A secret belongs to the member who put it: only that member replaces or deletes it (`403
//! NotSecretOwner` for anyone else); once the contract is revoked nothing new is accepted (`405
//! ContractRevoked`), but an owner may still delete theirs. A release names the owner (`set_by`):
//! names are first come, first served among collaborators, so a clean room checks who put the
//! secret it is about to use (review finding M9). Values live in the private governance table `gov.private.secrets`
//! (encrypted in the ledger, never readable by a plugin, never logged or returned in clear).

use super::{Cleanroom, SECRET_INFO, err, sessions::require_session};
use crate::auth::SESSION_KEY_CLAIM;
use crate::cleanroom;
use crate::error::{ErrorKind, ServiceError};
use crate::runtime::{Caller, CallerKind};
use crate::txn::{Cause, StateTx, Written};

/// Secrets: `<contract>/<name>` → [`SecretRecord`] (private: encrypted in the ledger).
pub(super) const SECRETS: &str = "gov.private.secrets";
/// Largest secret value.
pub const MAX_SECRET_BYTES: usize = 25 << 10;

/// A stored secret.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SecretRecord {
    value: String,
    /// The member who put it: its owner.
    set_by: String,
    at_ms: u64,
}

fn check_name(name: &str) -> Result<(), ServiceError> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(err(ErrorKind::Invalid, "InvalidSecretName", "secret names are 1-64 chars of A-Z a-z 0-9 - _ ."))
    }
}

impl Cleanroom {
    /// `PUT /app/contracts/{id}/secrets/{name}` `{"value"}` (≤ 25 KiB) by a member collaborator;
    /// a secret that exists may be replaced by its owner only.
    pub async fn put_secret(
        &self,
        caller: &Caller,
        contract_id: &str,
        name: &str,
        body: &[u8],
    ) -> Result<Written, ServiceError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct PutSecret {
            value: String,
        }
        if caller.kind != CallerKind::Member {
            return Err(err(ErrorKind::Forbidden, "CallerKindNotAllowed", "secrets are put by members"));
        }
        check_name(name)?;
        let req: PutSecret = serde_json::from_slice(body)
            .map_err(|e| err(ErrorKind::Invalid, "InvalidJson", format!("expected {{\"value\"}}: {e}")))?;
        if req.value.len() > MAX_SECRET_BYTES {
            return Err(err(
                ErrorKind::TooLarge,
                "SecretTooLarge",
                format!("a secret is at most {MAX_SECRET_BYTES} bytes"),
            ));
        }
        let key = format!("{contract_id}/{name}");
        let operation = format!("put secret {key}");
        self.core
            .write(Cause { operation: &operation, envelope: b"" }, |g| {
                self.secret_owner_check(g, caller, contract_id, name, false)?;
                g.put(
                    SECRETS,
                    &key,
                    &SecretRecord { value: req.value.clone(), set_by: caller.id.clone(), at_ms: g.now_ms },
                )?;
                Ok((serde_json::json!({"contract_id": contract_id, "name": name}), caller.id.clone()))
            })
            .await
    }

    /// `DELETE /app/contracts/{id}/secrets/{name}` by the secret's owner.
    pub async fn delete_secret(&self, caller: &Caller, contract_id: &str, name: &str) -> Result<Written, ServiceError> {
        if caller.kind != CallerKind::Member {
            return Err(err(
                ErrorKind::Forbidden,
                "CallerKindNotAllowed",
                "secrets are deleted by the member who put them",
            ));
        }
        check_name(name)?;
        let key = format!("{contract_id}/{name}");
        let operation = format!("delete secret {key}");
        self.core
            .write(Cause { operation: &operation, envelope: b"" }, |g| {
                if !self.secret_owner_check(g, caller, contract_id, name, true)? {
                    return Err(err(
                        ErrorKind::NotFound,
                        "SecretNotFound",
                        format!("contract `{contract_id}` has no secret `{name}`"),
                    ));
                }
                g.tx.delete(SECRETS, key.as_bytes()).map_err(ServiceError::unavailable)?;
                Ok((serde_json::json!({"contract_id": contract_id, "name": name, "deleted": true}), caller.id.clone()))
            })
            .await
    }

    /// The caller may change secret `name` of the contract: a collaborator, the contract not
    /// revoked (unless `deleting`: an owner may always withdraw a secret), and the secret absent
    /// or the caller's. Returns whether it exists.
    fn secret_owner_check(
        &self,
        g: &mut StateTx,
        caller: &Caller,
        contract_id: &str,
        name: &str,
        deleting: bool,
    ) -> Result<bool, ServiceError> {
        let contract = cleanroom::collaborator_of(g, contract_id, caller)?;
        if contract.state == cleanroom::ContractState::Revoked && !deleting {
            return Err(err(
                ErrorKind::NotAllowedInState,
                "ContractRevoked",
                format!("contract `{contract_id}` was revoked: its secrets can no longer be changed"),
            ));
        }
        match g.get::<SecretRecord>(SECRETS, &format!("{contract_id}/{name}"))? {
            Some(s) if s.set_by != caller.id => Err(err(
                ErrorKind::Forbidden,
                "NotSecretOwner",
                format!(
                    "secret `{name}` of contract `{contract_id}` belongs to member {}; only it may change it",
                    s.set_by
                ),
            )),
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    /// `POST /app/contracts/{id}/secrets/{name}/release` by a clean-room session of that contract
    /// (whose standing `authenticate` checked): the value sealed with HPKE (RFC 9180, base mode,
    /// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305) to the session's public key;
    /// `info` = `cgs-secret-release-v1`, `aad` = `<contract>/<name>`.
    pub fn release_secret(
        &self,
        caller: &Caller,
        contract_id: &str,
        name: &str,
    ) -> Result<serde_json::Value, ServiceError> {
        use base64::Engine as _;
        require_session(caller, contract_id, "secrets are released")?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = caller
            .claims
            .iter()
            .find(|(k, _)| k == SESSION_KEY_CLAIM)
            .and_then(|(_, v)| b64.decode(v).ok())
            .filter(|k| k.len() == 32)
            .ok_or_else(|| {
                err(
                    ErrorKind::Invalid,
                    "SessionKeyNotX25519",
                    "the session's public key is not a 32-byte X25519 key; open a session with one",
                )
            })?;
        let mut g = self.core.begin()?;
        let aad = format!("{contract_id}/{name}");
        let secret: SecretRecord = g.get(SECRETS, &aad)?.ok_or_else(|| {
            err(ErrorKind::NotFound, "SecretNotFound", format!("contract `{contract_id}` has no secret `{name}`"))
        })?;
        let (enc, ciphertext) = cgs_ledger_format::seal::seal_x25519(&key, SECRET_INFO, &aad, secret.value.as_bytes())
            .map_err(|e| ServiceError::unavailable(format!("sealing the secret to the session's key: {e}")))?;
        Ok(serde_json::json!({
            "suite": "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305",
            "info": String::from_utf8_lossy(SECRET_INFO),
            "aad": aad,
            "set_by": secret.set_by,
            "set_at_ms": secret.at_ms,
            "enc": enc,
            "ciphertext": ciphertext,
        }))
    }
}
