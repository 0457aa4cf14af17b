//! Attested clean-room sessions (`GET /cleanroom/nonce`, `POST /app/contracts/{id}/cleanroom/session`).
//!
//! A clean room asks for a nonce (single use, valid [`NONCE_TTL`]), then presents evidence whose
//! `report_data` is SHA-256(public_key ‖ nonce) zero-padded to 64 bytes, its public key and the
//! nonce. The service verifies the evidence (`cgs-attestation`; virtual evidence only where the
//! service allows it), the binding, and the contract's accepted clean-room policy (AND across
//! claims, OR across values), and answers a session token (EdDSA JWT, audience `cgs:cleanroom`)
//! bound to that contract: the `cleanroom` caller kind the clean-room plugins admit.
//!
//! Nonces are bound to the contract they were asked for (`GET /cleanroom/nonce?contract_id=`),
//! capped ([`MAX_NONCES`], then `503 ServiceBusy`). A session is admitted only while its contract
//! may run (accepted, no kill switch on), and its token remembers the version of the clean-room
//! policy it was admitted under: every later use re-checks all three (`auth.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::Digest;

/// How long a nonce may be used.
pub const NONCE_TTL: Duration = Duration::from_secs(120);
/// How long a session token is valid.
pub const SESSION_TTL_SECS: u64 = 3600;
/// Most outstanding nonces by default (`--max-nonces`); beyond, `GET /cleanroom/nonce` answers
/// 503 until some expire.
pub const MAX_NONCES: usize = 100_000;

/// Outstanding nonces of this node, each bound to the contract it was asked for.
///
/// Issue and take are O(1) (amortized): expired nonces leave from the front of the issue-ordered
/// queue; a nonce taken early leaves the map at once and its queue slot when it reaches the front.
pub struct Nonces {
    inner: Mutex<NonceState>,
    cap: usize,
    /// Sessions admitted with a nonce of this node (`/metrics`).
    admitted: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct NonceState {
    live: HashMap<String, (Instant, String)>,
    order: VecDeque<(Instant, String)>,
}

/// Why no nonce was issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonceRefused {
    /// As many nonces are outstanding as the node keeps.
    Full,
}

impl Default for Nonces {
    fn default() -> Self {
        Self::with_capacity(MAX_NONCES)
    }
}

impl Nonces {
    /// A store holding at most `cap` outstanding nonces.
    pub fn with_capacity(cap: usize) -> Self {
        Self { inner: Mutex::new(NonceState::default()), cap, admitted: Default::default() }
    }

    /// Nonces outstanding (expired ones leave at the next issue), and sessions admitted so far.
    pub fn counts(&self) -> (usize, u64) {
        let live = self.inner.lock().map(|s| s.live.len()).unwrap_or(0);
        (live, self.admitted.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// A fresh nonce (hex of 32 random bytes) for `contract_id`.
    pub fn issue(&self, contract_id: &str) -> Result<String, NonceRefused> {
        let mut guard = self.inner.lock().map_err(|_| NonceRefused::Full)?;
        let NonceState { live, order } = &mut *guard;
        let now = Instant::now();
        while let Some((at, _)) = order.front() {
            if now.duration_since(*at) < NONCE_TTL {
                break;
            }
            if let Some((at, n)) = order.pop_front()
                && live.get(&n).is_some_and(|(t, _)| *t == at)
            {
                live.remove(&n);
            }
        }
        // Slots of nonces taken early are dropped now and then: amortized O(1) per issue.
        if order.len() >= 2 * self.cap.max(1) {
            order.retain(|(at, n)| live.get(n).is_some_and(|(t, _)| t == at));
        }
        let s = &mut *guard;
        if s.live.len() >= self.cap {
            return Err(NonceRefused::Full);
        }
        let nonce = hex::encode(rand::random::<[u8; 32]>());
        s.live.insert(nonce.clone(), (now, contract_id.to_string()));
        s.order.push_back((now, nonce.clone()));
        Ok(nonce)
    }

    /// Use `nonce` for `contract_id`: true once, if it was issued here for that contract less
    /// than [`NONCE_TTL`] ago. A nonce presented for another contract is used up all the same.
    pub fn take(&self, nonce: &str, contract_id: &str) -> bool {
        self.inner
            .lock()
            .ok()
            .and_then(|mut s| s.live.remove(nonce))
            .is_some_and(|(at, c)| at.elapsed() < NONCE_TTL && c == contract_id)
    }
}

use super::{Cleanroom, accepts_virtual_evidence, err};
use crate::auth::jwt;
use crate::cleanroom;
use crate::error::{ErrorKind, ServiceError};
use crate::runtime::{Caller, CallerKind};

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// The caller must be an attested clean-room session of `contract_id`; `what` says what is refused.
pub fn require_session(caller: &Caller, contract_id: &str, what: &str) -> Result<(), ServiceError> {
    if caller.kind == CallerKind::Cleanroom && caller.contract_id.as_deref() == Some(contract_id) {
        return Ok(());
    }
    Err(err(
        ErrorKind::Forbidden,
        "CallerKindNotAllowed",
        format!("{what} to attested clean-room sessions of contract `{contract_id}` only"),
    ))
}

impl Cleanroom {
    /// `GET /cleanroom/nonce?contract_id=…`.
    pub fn cleanroom_nonce(&self, contract_id: &str) -> Result<serde_json::Value, ServiceError> {
        let valid = (1..=128).contains(&contract_id.len())
            && contract_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            return Err(err(
                ErrorKind::Invalid,
                "InvalidContractId",
                "`contract_id` (the contract the session is for) is 1-128 chars of A-Z a-z 0-9 - _ .",
            ));
        }
        let nonce = self.nonces.issue(contract_id).map_err(|NonceRefused::Full| {
            err(
                ErrorKind::Busy,
                "ServiceBusy",
                format!("{} nonces are outstanding on this node; retry when some have expired", self.nonces.cap),
            )
        })?;
        Ok(serde_json::json!({"nonce": nonce, "contract_id": contract_id, "expires_in": NONCE_TTL.as_secs()}))
    }

    /// `POST /app/contracts/{id}/cleanroom/session`: verify the evidence, its binding to the
    /// presented key and nonce, that the contract may run and its clean-room policy; answer a
    /// session token.
    pub fn cleanroom_session(&self, contract_id: &str, body: &[u8]) -> Result<serde_json::Value, ServiceError> {
        use base64::Engine as _;
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct SessionRequest {
            evidence: serde_json::Value,
            public_key: String,
            nonce: String,
        }
        let req: SessionRequest = serde_json::from_slice(body).map_err(|e| {
            err(ErrorKind::Invalid, "InvalidJson", format!("expected {{\"evidence\",\"public_key\",\"nonce\"}}: {e}"))
        })?;
        let public_key = base64::engine::general_purpose::STANDARD
            .decode(&req.public_key)
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 4096)
            .ok_or_else(|| {
                err(ErrorKind::Invalid, "InvalidPublicKey", "`public_key` must be base64 of 1-4096 bytes")
            })?;
        let evidence = cgs_attestation::Evidence::from_json(req.evidence.to_string().as_bytes())
            .map_err(|e| err(ErrorKind::Invalid, "InvalidEvidence", e.to_string()))?;
        // Until the evidence, its binding and the policy are checked, the caller is anonymous:
        // nothing about the contract's state is said before that, and after it (an admitted
        // clean room of the contract) not who pulled a kill switch or why (review finding M1).
        let mut g = self.core.begin()?;
        // The nonce is used up by this attempt, whatever its outcome.
        if !self.nonces.take(&req.nonce, contract_id) {
            return Err(err(
                ErrorKind::Invalid,
                "InvalidNonce",
                format!(
                    "the nonce is unknown, already used, expired or was asked for another contract; \
                     GET /cleanroom/nonce?contract_id={contract_id} for a fresh one"
                ),
            ));
        }
        let allow_virtual = accepts_virtual_evidence(&mut g)?;
        let policy = cgs_attestation::VerifyPolicy { allow_virtual, ..Default::default() };
        let verified = cgs_attestation::verify(&evidence, &policy, std::time::SystemTime::now()).map_err(|e| {
            if evidence.is_virtual() && !allow_virtual {
                err(
                    ErrorKind::Forbidden,
                    "VirtualEvidenceRefused",
                    format!("virtual (insecure) evidence is not accepted by this service: {e}"),
                )
            } else {
                err(ErrorKind::Forbidden, "EvidenceRejected", e.to_string())
            }
        })?;
        if verified.claims.report_data != expected_report_data(&public_key, &req.nonce) {
            return Err(err(
                ErrorKind::Invalid,
                "ReportDataMismatch",
                "the evidence's report_data is not SHA-256(public_key ‖ nonce) zero-padded to 64 bytes",
            ));
        }
        let claims = verified.flat_claims();
        // An unknown contract is named (`404 ContractNotFound`) to a caller with good evidence.
        cleanroom::contract(&mut g, contract_id)?;
        let (policy, policy_version) = cleanroom::policy(&mut g, contract_id)?;
        if let Some(why) = policy_mismatch(&policy.claims, &claims) {
            return Err(err(ErrorKind::Forbidden, "PolicyMismatch", format!("contract `{contract_id}`: {why}")));
        }
        cleanroom::require_execution(&mut g, contract_id).map_err(|e| match e.code.as_str() {
            "ContractDisabled" => err(
                ErrorKind::NotAllowedInState,
                "ContractDisabled",
                format!("execution of contract `{contract_id}` is disabled by a collaborator's kill switch"),
            ),
            _ => e,
        })?;
        let now = self.core.runtime.now_ms() / 1000;
        let exp = now + SESSION_TTL_SECS;
        let key_digest = sha256_hex(&public_key);
        // Unique per admission (the nonce is single-use), never derived from the key alone: a
        // clean room of another contract may present the same public key (its report_data is its
        // own to choose), and ledger entries name their writer by session id.
        let session_id = sha256_hex(
            &[b"cgs-session\0", contract_id.as_bytes(), b"\0", req.nonce.as_bytes(), b"\0", &public_key].concat(),
        )[..32]
            .to_string();
        let claims_obj: serde_json::Map<String, serde_json::Value> =
            claims.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        let token = self.auth.tokens()?.issue_claims(serde_json::json!({
            "aud": jwt::CLEANROOM_AUDIENCE, "sub": session_id, "contract_id": contract_id,
            "iat": now, "exp": exp, "claims": claims_obj,
            "key_digest": key_digest,
            "session_key": base64::engine::general_purpose::STANDARD.encode(&public_key),
            "policy_version": policy_version,
        }));
        self.nonces.admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(serde_json::json!({
            "token": token, "expires_at": exp, "session_id": session_id,
            "contract_id": contract_id, "insecure": verified.insecure(),
        }))
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
    policy: &std::collections::BTreeMap<String, Vec<String>>,
    claims: &[(String, String)],
) -> Option<String> {
    if policy.is_empty() {
        return Some("the contract has no clean-room policy; propose contracts.set_cleanroom_policy".into());
    }
    for (claim, allowed) in policy {
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
    fn nonces_are_single_use_and_bound_to_their_contract() {
        let n = Nonces::default();
        let a = n.issue("c1").unwrap();
        assert!(n.take(&a, "c1"));
        assert!(!n.take(&a, "c1"));
        assert!(!n.take("never-issued", "c1"));
        let b = n.issue("c1").unwrap();
        assert!(!n.take(&b, "c2"), "asked for c1");
        assert!(!n.take(&b, "c1"), "used up by the attempt");
    }

    #[test]
    fn nonces_are_capped() {
        let n = Nonces::with_capacity(3);
        let taken = n.issue("c").unwrap();
        n.issue("c").unwrap();
        n.issue("c").unwrap();
        assert_eq!(n.issue("c"), Err(NonceRefused::Full));
        assert!(n.take(&taken, "c"));
        n.issue("c").unwrap();
        assert_eq!(n.issue("c"), Err(NonceRefused::Full));
    }

    #[test]
    fn policy_and_or() {
        let p: std::collections::BTreeMap<String, Vec<String>> =
            [("h".into(), vec!["a".into(), "b".into()]), ("d".into(), vec!["false".into()])].into();
        let p = &p;
        let c = |h: &str, d: &str| vec![("h".to_string(), h.to_string()), ("d".to_string(), d.to_string())];
        assert_eq!(policy_mismatch(p, &c("b", "false")), None);
        assert!(policy_mismatch(p, &c("z", "false")).unwrap().contains("`h`"));
        assert!(policy_mismatch(p, &c("a", "true")).unwrap().contains("`d`"));
        assert!(policy_mismatch(&Default::default(), &c("a", "false")).is_some());
    }
}
