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
//! * a clean-room session's contract must still be accepted with no kill switch on
//!   (`405 ContractRevoked` / `ContractDisabled`), under the clean-room policy it was admitted
//!   with (`401 SessionInvalidated` once the policy changed).

use super::{
    Caller, CallerKind, GovError, GovTx, Governance, SESSION_KEY_CLAIM, VerifiedToken, cleanroom, err, internal, jwt,
    tables, users,
};

/// The caller claim holding a clean-room session's expiry (seconds since the epoch): ID tokens
/// never outlive the session.
pub const SESSION_EXP_CLAIM: &str = "x-cgs-session-exp";

/// Most verified tokens remembered (the cache is cleared when full).
const TOKEN_CACHE: usize = 65_536;

impl Governance {
    /// Authenticate a bearer token and check what it still entitles to. `write`: the request may
    /// change state (any method but `GET`).
    pub fn authenticate(&self, token: &str, write: bool) -> Result<Caller, GovError> {
        let now = self.runtime.now_ms() / 1000;
        let digest: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(token.as_bytes()).into()
        };
        let mut g = self.begin()?;
        let cached = self.verified.lock().ok().and_then(|c| c.get(&digest).filter(|v| v.exp > now).cloned());
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
        let invalid = |m: String| err(401, "InvalidCredentials", m);
        match v.kind {
            CallerKind::Member => {
                let member =
                    self.member(&mut g, &v.id)?.ok_or_else(|| invalid("the token's member no longer exists".into()))?;
                if write && member.status != "Active" {
                    return Err(err(
                        403,
                        "MemberNotActive",
                        format!(
                            "member {} was invited but has not acked the service state: until it acks \
                             (POST /gov/members/{}/ack) it may only read",
                            v.id, v.id
                        ),
                    ));
                }
                Ok(Caller {
                    kind: CallerKind::Member,
                    id: v.id,
                    roles: member.roles(),
                    contract_id: None,
                    claims: vec![],
                })
            }
            CallerKind::Cleanroom => {
                let contract_id = v.contract_id.clone().unwrap_or_default();
                cleanroom::require_execution(&mut g, &contract_id)?;
                let (_, version) = cleanroom::policy(&mut g, &contract_id)?;
                if version != v.policy_version {
                    return Err(err(
                        401,
                        "SessionInvalidated",
                        format!(
                            "the clean-room policy of contract `{contract_id}` changed since this session was \
                             opened; open a new session (its evidence is checked against the current policy)"
                        ),
                    ));
                }
                let mut claims = v.claims;
                claims.push((SESSION_EXP_CLAIM.into(), v.exp.to_string()));
                Ok(Caller { kind: CallerKind::Cleanroom, id: v.id, roles: vec![], contract_id: v.contract_id, claims })
            }
            _ => {
                let (iss, version) = v.issuer.clone().unwrap_or_default();
                let current = g.tx.get(tables::JWT_ISSUERS, iss.as_bytes()).map_err(internal)?.map(|r| r.version);
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
                Ok(Caller { kind: CallerKind::User, id: v.id, roles, contract_id: None, claims: v.claims })
            }
        }
    }

    /// Check a token's signature and lifetime: a member or session token of this service, or a
    /// user JWT of a trusted issuer.
    fn verify_token(&self, g: &mut GovTx, token: &str, now: u64) -> Result<VerifiedToken, GovError> {
        let invalid = |m: String| err(401, "InvalidCredentials", m);
        let parsed = users::parse(token).map_err(invalid)?;
        let plain = |kind, id: String, exp| VerifiedToken {
            kind,
            id,
            claims: vec![],
            exp,
            issuer: None,
            jwks: None,
            contract_id: None,
            policy_version: None,
        };
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
            g.tx.get(tables::JWT_ISSUERS, iss.as_bytes()).map_err(internal)?.ok_or_else(|| {
                invalid(format!("issuer `{iss}` is not trusted by this service; propose set_jwt_issuer"))
            })?;
        let mut issuer: serde_json::Value =
            serde_json::from_slice(&record.value).map_err(|e| internal(format!("corrupt issuer record: {e}")))?;
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

/// What a ledger transaction is about, for deciding who may read it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TxScope {
    /// A governance write (proposals, ballots, members, blobs, logins).
    Governance,
    /// A write about one contract: a clean-room route under `/app/contracts/{id}` or its secrets.
    Contract(String),
    /// Another plugin route (no notion of parties): its writer and the members.
    App,
}

fn tx_scope(operation: &str) -> TxScope {
    // `METHOD /app/contracts/<id>[/…]` (the path as received: percent-encoded).
    if let Some((_, path)) = operation.split_once(' ')
        && let Some(rest) = path.strip_prefix("/app")
    {
        return match crate::http::decode_path(rest).ok().as_deref() {
            Some([first, id, ..]) if first == "contracts" => TxScope::Contract(id.clone()),
            _ => TxScope::App,
        };
    }
    // The host's own contract-scoped writes: `put secret <id>/<name>`, `delete secret <id>/<name>`.
    for prefix in ["put secret ", "delete secret "] {
        if let Some(rest) = operation.strip_prefix(prefix)
            && let Some((id, _)) = rest.split_once('/')
        {
            return TxScope::Contract(id.to_string());
        }
    }
    TxScope::Governance
}

impl Governance {
    /// Whether `caller` may read ledger transaction `t` (its receipt and entry): its writer; for
    /// a contract's transactions, the contract's parties; for governance transactions and other
    /// plugins' (which know no parties), members. Anyone else gets `403 NotAllowedToRead`.
    pub fn authorize_tx_read(&self, caller: &Caller, t: &cgs_core::entry::Transaction) -> Result<(), GovError> {
        if !t.caller.is_empty() && t.caller == caller.recorded_id(|d| self.ledger.blind(d)) {
            return Ok(());
        }
        let allowed = match tx_scope(&t.operation) {
            TxScope::Governance => caller.kind == CallerKind::Member,
            TxScope::Contract(id) => {
                let mut g = self.begin()?;
                g.get::<cleanroom::ContractView>(cleanroom::CONTRACTS, &id)?.is_some_and(|c| c.admits(&id, caller))
            }
            TxScope::App => caller.kind == CallerKind::Member,
        };
        if allowed {
            return Ok(());
        }
        Err(err(
            403,
            "NotAllowedToRead",
            "this transaction's receipt and entry are for its writer, the parties of its contract, or members \
             (governance)",
        ))
    }
}

impl Governance {
    /// Whether `caller`, already allowed to read transaction `t` ([`Self::authorize_tx_read`]), may
    /// see the value it wrote at `table`/`key` decrypted (`GET /node/entry`). Reading a
    /// transaction is not reading everything it wrote: a governance transaction (an accepted
    /// proposal) rewrites contracts, and a member who may read the ballot need not be a party to
    /// them.
    ///
    /// * `gov.private.*` (contract secrets, signing keys): never.
    /// * Public tables (`sys.*`, `gov.*` but the confidential ones, `<plugin>.public.*`): yes.
    /// * Confidential governance tables (proposals, user identities): members.
    /// * A plugin's private tables, in a transaction of contract `id` (a route under
    ///   `/app/contracts/{id}`): its writer and the parties of `id` (those already let in).
    /// * A plugin's private tables, in another plugin route's transaction: its writer only.
    /// * A plugin's private tables, in a governance transaction: the parties of the contract the
    ///   key names (`<id>` or `<id>/…`, the convention of the contracts and consent plugins);
    ///   nobody when the key names no contract.
    pub fn value_readable(
        &self,
        caller: &Caller,
        t: &cgs_core::entry::Transaction,
        table: &str,
        key: &[u8],
    ) -> Result<bool, GovError> {
        if table.starts_with("gov.private.") {
            return Ok(false);
        }
        if !cgs_core::entry::is_private_table(table) {
            return Ok(true);
        }
        if table.starts_with("gov.") {
            return Ok(caller.kind == CallerKind::Member);
        }
        let writer = !t.caller.is_empty() && t.caller == caller.recorded_id(|d| self.ledger.blind(d));
        Ok(match tx_scope(&t.operation) {
            TxScope::Contract(_) => true,
            TxScope::App => writer,
            TxScope::Governance => {
                let Ok(key) = std::str::from_utf8(key) else { return Ok(false) };
                let id = key.split_once('/').map_or(key, |(id, _)| id);
                let mut g = self.begin()?;
                g.get::<cleanroom::ContractView>(cleanroom::CONTRACTS, id)?.is_some_and(|c| c.admits(id, caller))
            }
        })
    }

    /// Whether `caller` may see the signed governance message recorded with `t`: members, for
    /// proposals, ballots, withdrawals and acks. Never a login (a member's signed login is theirs
    /// alone; handing it to others only helps replay it elsewhere).
    pub fn envelope_readable(caller: &Caller, t: &cgs_core::entry::Transaction) -> bool {
        caller.kind == CallerKind::Member
            && matches!(t.operation.as_str(), "proposal" | "ballot" | "withdrawal" | "ack")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(tx_scope("PUT /app/contracts/c%201"), TxScope::Contract("c 1".into()));
        assert_eq!(tx_scope("POST /app/contracts/c1/events"), TxScope::Contract("c1".into()));
        assert_eq!(tx_scope("PUT /app/notes/n1"), TxScope::App);
        assert_eq!(tx_scope("PUT /app/contracts"), TxScope::App);
        assert_eq!(tx_scope("put secret c1/db-key"), TxScope::Contract("c1".into()));
        assert_eq!(tx_scope("ballot"), TxScope::Governance);
        assert_eq!(tx_scope("upload blob ab12"), TxScope::Governance);
    }
}
