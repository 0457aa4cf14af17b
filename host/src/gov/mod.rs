//! The governance engine: signed messages, members, proposals, ballots, the constitution, plugin
//! upgrades by vote, member tokens.
//!
//! Decisions are the constitution's (a plugin): it validates and applies core actions and resolves
//! proposals; plugin actions (`<plugin>.<action>`) are validated and applied by the plugin that owns
//! them. This module verifies who is speaking, keeps proposals and ballots, runs those calls inside
//! one ledger transaction per governance write (with the raw signed envelope recorded in the ledger
//! entry), and swaps plugins in the runtime once a change is committed.

mod lifecycle;
mod reads;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cgs_core::gov::{AckBody, ActionBody, BallotBody, Envelope, MessageType, ProposalBody, Vote};
use cgs_core::plugin::World;
use cgs_core::{Blake3Hash, TxId};

use crate::auth::Auth;
use crate::error::ServiceError;
pub use crate::error::{ErrorKind, ServiceError as GovError};
use crate::runtime::{Caller, CallerKind, DispatchError, GovAction, GovCall, GovMember, GovOutcome, GovReply, Plugin};
pub use crate::schema::{MemberRecord, tables};
use crate::store::{Store as _, Transaction};
pub use crate::txn::Written;
use crate::txn::{Cause, Core, StateTx};
pub use lifecycle::{Changes, HistoryItem, LifecycleError, Next, ProposalRecord, ProposalState, Resolution};

/// Governance settings.
#[derive(Debug, Clone)]
pub struct GovConfig {
    /// Open proposals older than this become `Dropped`.
    pub proposal_ttl: Duration,
    /// Signed messages whose `created_at` is further than this from service time are refused.
    pub max_clock_skew: Duration,
    /// Lifetime of member bearer tokens.
    pub token_ttl: Duration,
    /// URL prefixes (`https://…`) this node fetches issuers' `jwks_url` from.
    pub jwks_url_allow: Vec<String>,
    /// Extra PEM roots trusted when fetching a JWKS (besides the Mozilla roots).
    pub jwks_ca_pem: Option<Vec<u8>>,
    /// How often a JWKS fetched from a `jwks_url` is refreshed.
    pub jwks_refresh: Duration,
    /// Most clean-room nonces outstanding on this node (then `503 ServiceBusy`).
    pub max_nonces: usize,
}

impl Default for GovConfig {
    fn default() -> Self {
        Self {
            proposal_ttl: Duration::from_secs(7 * 24 * 3600),
            max_clock_skew: Duration::from_secs(300),
            token_ttl: Duration::from_secs(3600),
            jwks_url_allow: Vec::new(),
            jwks_ca_pem: None,
            jwks_refresh: crate::auth::jwks::REFRESH,
            max_nonces: crate::cleanroom::sessions::MAX_NONCES,
        }
    }
}

fn err(kind: ErrorKind, code: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::new(kind, code, message)
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::unavailable(e)
}

/// What service creation writes: members, plugins, the constitution.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Initial members (status `Accepted` until they ack).
    pub members: Vec<GenesisMember>,
    /// BLAKE3 of the constitution component.
    pub constitution: String,
    /// BLAKE3s of the app plugins.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// Accept virtual (insecure) attestation evidence from clean rooms (and, later, joining
    /// nodes): fixed at creation, shown in `GET /gov/service`.
    #[serde(default)]
    pub insecure_virtual_attestation: bool,
}

/// An initial member.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisMember {
    /// PEM Ed25519 public key.
    pub public_key: String,
    /// Member data (name, tenant, roles).
    #[serde(default)]
    pub member_data: serde_json::Value,
}

/// The governance engine of a node.
pub struct Governance {
    core: Arc<Core>,
    auth: Arc<Auth>,
    config: GovConfig,
}

impl Governance {
    /// The engine over `core`; member tokens are issued by `auth`.
    pub fn new(core: Arc<Core>, auth: Arc<Auth>, config: GovConfig) -> Self {
        Self { core, auth, config }
    }

    /// Whether the service is open (app routes served), as the applied state says.
    pub fn is_open(&self) -> bool {
        self.core.reconciler.is_open()
    }

    fn begin(&self) -> Result<StateTx, ServiceError> {
        self.core.begin()
    }

    /// Whether the ledger holds a service (genesis done).
    pub fn created(&self) -> Result<bool, ServiceError> {
        let mut g = self.begin()?;
        Ok(g.get::<serde_json::Value>(tables::SERVICE, "status")?.is_some())
    }

    /// Create the service: record members, plugins and the constitution (from `blobs`), status
    /// `Opening`. Fails if the service exists.
    pub async fn create_service(
        &self,
        genesis: &Genesis,
        blobs: &BTreeMap<Blake3Hash, Vec<u8>>,
    ) -> Result<TxId, ServiceError> {
        let mut g = self.begin()?;
        if g.get::<serde_json::Value>(tables::SERVICE, "status")?.is_some() {
            return Err(err(ErrorKind::Conflict, "ServiceExists", "this ledger already holds a service"));
        }
        if genesis.members.is_empty() {
            return Err(err(ErrorKind::Invalid, "InvalidGenesis", "a service needs at least one member"));
        }
        for m in &genesis.members {
            let key = cgs_core::gov::verifying_key_from_pem(&m.public_key)
                .map_err(|e| err(ErrorKind::Invalid, "InvalidGenesis", e.0))?;
            let id = cgs_core::gov::member_id(&key);
            use base64::Engine as _;
            let rec = MemberRecord {
                public_key: base64::engine::general_purpose::STANDARD.encode(key.as_bytes()),
                status: "Accepted".into(),
                data: if m.member_data.is_null() { serde_json::json!({}) } else { m.member_data.clone() },
            };
            g.put(tables::MEMBERS, &id, &rec)?;
        }
        let blob = |hex: &str| -> Result<(Blake3Hash, &Vec<u8>), ServiceError> {
            let h: Blake3Hash = hex
                .parse()
                .map_err(|e: cgs_core::ParseIdError| err(ErrorKind::Invalid, "InvalidGenesis", e.to_string()))?;
            let b = blobs
                .get(&h)
                .ok_or_else(|| err(ErrorKind::Invalid, "InvalidGenesis", format!("no plugin file has BLAKE3 {hex}")))?;
            Ok((h, b))
        };
        let (ch, cbytes) = blob(&genesis.constitution)?;
        let info = cgs_core::plugin::read_info(cbytes)
            .map_err(|e| err(ErrorKind::Invalid, "InvalidGenesis", e.to_string()))?;
        if info.world != World::Constitution {
            return Err(err(
                ErrorKind::Invalid,
                "InvalidGenesis",
                format!("{} is not a constitution component", genesis.constitution),
            ));
        }
        g.tx.put(tables::BLOBS, ch.to_hex().as_bytes(), cbytes.clone());
        g.put(
            tables::CONSTITUTION,
            "current",
            &serde_json::json!({"name": info.name, "version": info.version, "blake3": ch}),
        )?;
        for p in &genesis.plugins {
            let (h, bytes) = blob(p)?;
            let info = cgs_core::plugin::read_info(bytes)
                .map_err(|e| err(ErrorKind::Invalid, "InvalidGenesis", e.to_string()))?;
            if info.world != World::AppPlugin {
                return Err(err(ErrorKind::Invalid, "InvalidGenesis", format!("plugin {p} is not an app plugin")));
            }
            g.tx.put(tables::BLOBS, h.to_hex().as_bytes(), bytes.clone());
            g.put(
                tables::PLUGINS,
                &info.name,
                &serde_json::json!({"version": info.version, "blake3": h, "world": "app-plugin"}),
            )?;
        }
        g.put(tables::SERVICE, "status", &serde_json::json!({"status": "Opening", "created_at_ms": g.now_ms}))?;
        g.put(
            tables::CREATION,
            "config",
            &serde_json::json!({"insecure_virtual_attestation": genesis.insecure_virtual_attestation}),
        )?;
        self.core.commit(g, &Cause { operation: "create service", envelope: b"" }, "genesis").await
    }

    fn member(&self, g: &mut StateTx, id: &str) -> Result<Option<MemberRecord>, ServiceError> {
        g.get(tables::MEMBERS, id)
    }

    /// Check a signed message: known signer of an allowed status, valid signature, the expected
    /// type, fresh, not seen before (and remember it in `g`).
    fn check_envelope(
        &self,
        g: &mut StateTx,
        bytes: &[u8],
        expected: MessageType,
        url_proposal: Option<&str>,
    ) -> Result<(Envelope, MemberRecord), ServiceError> {
        let env = Envelope::parse(bytes).map_err(|e| err(ErrorKind::Invalid, "InvalidSignedMessage", e.to_string()))?;
        let member = self.member(g, &env.member_id)?.ok_or_else(|| {
            err(
                ErrorKind::Unauthenticated,
                "UnknownMember",
                format!("{} is not a member of this service", env.member_id),
            )
        })?;
        let key = member.key().map_err(ServiceError::unavailable)?;
        env.verify(&key).map_err(|_| {
            err(
                ErrorKind::Unauthenticated,
                "InvalidSignature",
                "the signature does not verify with the member's registered key",
            )
        })?;
        let needs_active = !matches!(expected, MessageType::Ack | MessageType::Login);
        if needs_active && member.status != "Active" {
            return Err(err(
                ErrorKind::Forbidden,
                "MemberNotActive",
                format!("member {} must ack the service state before it can {}", env.member_id, expected.as_str()),
            ));
        }
        if env.msg_type != expected {
            return Err(err(
                ErrorKind::Invalid,
                "WrongMessageType",
                format!("this route takes a signed `{}` message, not `{}`", expected.as_str(), env.msg_type.as_str()),
            ));
        }
        let now = (g.now_ms / 1000) as i64;
        let skew = self.config.max_clock_skew.as_secs() as i64;
        if (env.created_at - now).abs() > skew {
            return Err(err(
                ErrorKind::Invalid,
                "StaleMessage",
                format!("created_at is {} s from service time; at most {skew} s is accepted", env.created_at - now),
            ));
        }
        if let Some(url) = url_proposal
            && env.proposal_id.as_deref() != Some(url)
        {
            return Err(err(
                ErrorKind::Invalid,
                "ProposalIdMismatch",
                "cgs.msg.proposal_id must be the proposal id of the URL",
            ));
        }
        // Keyed on what was signed, not on the bytes: `Envelope::parse` admits one encoding only,
        // and the identity would not change even if it admitted more.
        let digest = env.digest();
        if g.get::<serde_json::Value>(tables::ENVELOPES, &digest)?.is_some() {
            return Err(err(ErrorKind::Conflict, "Replay", "this signed message was already submitted"));
        }
        g.put(tables::ENVELOPES, &digest, &serde_json::json!({"at_ms": g.now_ms, "member_id": env.member_id}))?;
        Ok((env, member))
    }

    /// The plugin that owns an action, and the host's own check of it.
    fn owner(&self, g: &mut StateTx, action: &ActionBody) -> Result<Arc<Plugin>, ServiceError> {
        let registry = self.core.runtime.registry();
        let plugin = match action.name.split_once('.') {
            Some((p, _)) => registry.get(p).cloned().ok_or_else(|| {
                err(ErrorKind::Invalid, "UnknownAction", format!("no plugin `{p}` owns `{}`", action.name))
            })?,
            None => registry
                .plugins()
                .find(|p| p.info.world == World::Constitution)
                .cloned()
                .ok_or_else(|| ServiceError::unavailable("no constitution is installed"))?,
        };
        if !plugin.actions.iter().any(|a| a.name == action.name) {
            return Err(err(
                ErrorKind::Invalid,
                "UnknownAction",
                format!("`{}` is not an action of plugin `{}`", action.name, plugin.info.name),
            ));
        }
        if matches!(action.name.as_str(), "set_plugin" | "set_constitution") {
            self.check_plugin_blob(g, action)?;
        }
        Ok(plugin)
    }

    /// `set_plugin` / `set_constitution`: the blob exists and is a component of the named world,
    /// name and version, that compiles and probes.
    fn check_plugin_blob(&self, g: &mut StateTx, action: &ActionBody) -> Result<(), ServiceError> {
        let get = |k: &str| action.args.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let (name, version, hash) = (get("name"), get("version"), get("blake3"));
        let h: Blake3Hash = hash
            .parse()
            .map_err(|e: cgs_core::ParseIdError| err(ErrorKind::Invalid, "InvalidActionArgs", e.to_string()))?;
        let blob =
            g.tx.get(tables::BLOBS, h.to_hex().as_bytes()).map_err(ServiceError::unavailable)?.ok_or_else(|| {
                err(ErrorKind::Invalid, "BlobNotFound", format!("no blob {hash}; upload it with PUT /gov/blobs first"))
            })?;
        let plugin = self
            .core
            .runtime
            .prepare(&blob.value)
            .map_err(|e| err(ErrorKind::Invalid, "InvalidPlugin", format!("blob {hash}: {e}")))?;
        let want_world = if action.name == "set_constitution" { World::Constitution } else { World::AppPlugin };
        if plugin.info.world != want_world {
            return Err(err(
                ErrorKind::Invalid,
                "InvalidPlugin",
                format!("blob {hash} implements `{}`, `{}` needs `{want_world}`", plugin.info.world, action.name),
            ));
        }
        if plugin.info.name != name || plugin.info.version != version {
            return Err(err(
                ErrorKind::Invalid,
                "InvalidPlugin",
                format!("blob {hash} is {} {}, not {name} {version}", plugin.info.name, plugin.info.version),
            ));
        }
        Ok(())
    }

    fn gov_action(a: &ActionBody) -> GovAction {
        GovAction { name: a.name.clone(), args: a.args.to_string() }
    }

    /// Run validate (or apply) of every action; the first refusal is returned.
    fn run_actions(
        &self,
        g: &mut StateTx,
        actions: &[ActionBody],
        apply: bool,
        caller: &Caller,
        proposal_id: &str,
    ) -> Result<(), ServiceError> {
        let all: Vec<GovAction> = actions.iter().map(Self::gov_action).collect();
        for a in actions {
            if a.name.starts_with("oidc.") {
                crate::cleanroom::oidc::action(g, a, apply, caller)?;
                continue;
            }
            let plugin = self.owner(g, a)?;
            let ga = Self::gov_action(a);
            let call = if apply { GovCall::Apply(&ga) } else { GovCall::Validate(&ga) };
            let tx = std::mem::replace(
                &mut g.tx,
                Transaction::new(self.core.ledger.snapshot().map_err(ServiceError::unavailable)?),
            );
            let (reply, tx) =
                self.core.runtime.gov_call(&plugin, call, tx, caller, Some(proposal_id.to_string()), &all, g.now_ms);
            g.tx = tx;
            match reply {
                Ok(GovReply::Done) => {}
                Ok(GovReply::Refused { status, code, message }) => {
                    return Err(ServiceError {
                        kind: ErrorKind::Plugin(status),
                        code,
                        message: format!("{}: {message}", a.name),
                    });
                }
                Ok(GovReply::Resolution { .. }) => return Err(ServiceError::unavailable("unexpected resolution")),
                Err(e) => return Err(dispatch(e)),
            }
        }
        Ok(())
    }

    fn members(&self, g: &mut StateTx) -> Result<Vec<(String, MemberRecord)>, ServiceError> {
        g.scan(tables::MEMBERS)
    }

    /// Ask the constitution; on acceptance apply every action in this transaction, and record
    /// the new state (`Accepted`, `Rejected`, or `Failed` with nothing of the actions written).
    fn resolve_and_apply(&self, g: &mut StateTx, p: &mut ProposalRecord, caller: &Caller) -> Result<(), ServiceError> {
        let constitution = self
            .core
            .runtime
            .registry()
            .plugins()
            .find(|p| p.info.world == World::Constitution)
            .cloned()
            .ok_or_else(|| ServiceError::unavailable("no constitution is installed"))?;
        let members: Vec<GovMember> = self
            .members(g)?
            .into_iter()
            .map(|(id, m)| GovMember { id, active: m.status == "Active", roles: m.roles(), data: m.data.to_string() })
            .collect();
        let ballots: Vec<(String, bool)> = p.ballots.iter().map(|(m, v)| (m.clone(), *v == Vote::Approve)).collect();
        let actions: Vec<GovAction> = p.actions.iter().map(Self::gov_action).collect();
        let tx = std::mem::replace(
            &mut g.tx,
            Transaction::new(self.core.ledger.snapshot().map_err(ServiceError::unavailable)?),
        );
        let call = GovCall::Resolve {
            id: &p.proposal_id,
            proposer_id: &p.proposer_id,
            actions: &actions,
            created_at_ms: p.created_at_ms,
            ballots: &ballots,
            members: &members,
        };
        let (reply, tx) = self.core.runtime.gov_call(
            &constitution,
            call,
            tx,
            caller,
            Some(p.proposal_id.clone()),
            &actions,
            g.now_ms,
        );
        g.tx = tx;
        let resolution = match reply.map_err(dispatch)? {
            GovReply::Resolution { outcome: GovOutcome::Open, .. } => Resolution::Open,
            GovReply::Resolution { outcome: GovOutcome::Rejected, reason } => Resolution::Rejected(reason),
            GovReply::Resolution { outcome: GovOutcome::Accepted, reason } => Resolution::Accepted(reason),
            other => return Err(ServiceError::unavailable(format!("the constitution answered {other:?} to resolve"))),
        };
        if let Next::Apply { reason } = p.resolve(resolution, g.now_ms) {
            let before = g.tx.clone();
            // Actions apply on behalf of their proposer, whoever cast the deciding ballot.
            let proposer = member_caller(&p.proposer_id);
            let outcome = self.run_actions(g, &p.actions.clone(), true, &proposer, &p.proposal_id.clone());
            if outcome.is_err() {
                g.tx = before; // all or nothing
            }
            let changes = p.applied(outcome.map_err(|e| format!("{}: {}", e.code, e.message)), reason, g.now_ms);
            self.drop_superseded(g, p, &changes)?;
        }
        Ok(())
    }

    /// After a plugin or the constitution changed, drop open proposals whose actions depend on it
    /// (the meaning of what members voted on changed).
    fn drop_superseded(
        &self,
        g: &mut StateTx,
        accepted: &ProposalRecord,
        changes: &Changes,
    ) -> Result<(), ServiceError> {
        if changes.is_empty() {
            return Ok(());
        }
        for (id, mut other) in g.scan::<ProposalRecord>(tables::PROPOSALS)? {
            if other.supersede(&accepted.proposal_id, changes, g.now_ms) {
                g.put(tables::PROPOSALS, &id, &other)?;
            }
        }
        Ok(())
    }

    /// `POST /gov/proposals`.
    pub async fn propose(&self, envelope: &[u8]) -> Result<Written, ServiceError> {
        self.core
            .write(Cause { operation: "proposal", envelope }, |g| {
                let (env, _) = self.check_envelope(g, envelope, MessageType::Proposal, None)?;
                let body: ProposalBody =
                    env.json().map_err(|e| err(ErrorKind::Invalid, "InvalidProposal", e.to_string()))?;
                if body.actions.is_empty() {
                    return Err(err(ErrorKind::Invalid, "InvalidProposal", "a proposal needs at least one action"));
                }
                let caller = member_caller(&env.member_id);
                let id = env.digest();
                self.run_actions(g, &body.actions, false, &caller, &id)?;
                let mut p = ProposalRecord::new(id.clone(), env.member_id.clone(), body.actions, g.now_ms);
                self.resolve_and_apply(g, &mut p, &caller)?;
                g.put(tables::PROPOSALS, &id, &p)?;
                let body = serde_json::json!({"proposal_id": id, "state": p.state, "proposer_id": p.proposer_id});
                Ok((body, env.member_id))
            })
            .await
    }

    /// `POST /gov/proposals/{id}/ballots`.
    pub async fn ballot(&self, proposal_id: &str, envelope: &[u8]) -> Result<Written, ServiceError> {
        self.core
            .write(Cause { operation: "ballot", envelope }, |g| {
                let (env, _) = self.check_envelope(g, envelope, MessageType::Ballot, Some(proposal_id))?;
                let body: BallotBody =
                    env.json().map_err(|e| err(ErrorKind::Invalid, "InvalidBallot", e.to_string()))?;
                let mut p = self.proposal(g, proposal_id)?;
                p.cast(&env.member_id, body.vote, g.now_ms, self.ttl_ms()).map_err(lifecycle)?;
                let caller = member_caller(&env.member_id);
                self.resolve_and_apply(g, &mut p, &caller)?;
                g.put(tables::PROPOSALS, proposal_id, &p)?;
                Ok((serde_json::json!({"proposal_id": proposal_id, "state": p.state}), env.member_id))
            })
            .await
    }

    /// `POST /gov/proposals/{id}/withdraw`.
    pub async fn withdraw(&self, proposal_id: &str, envelope: &[u8]) -> Result<Written, ServiceError> {
        self.core
            .write(Cause { operation: "withdrawal", envelope }, |g| {
                let (env, _) = self.check_envelope(g, envelope, MessageType::Withdrawal, Some(proposal_id))?;
                let mut p = self.proposal(g, proposal_id)?;
                p.withdraw(&env.member_id, g.now_ms, self.ttl_ms()).map_err(lifecycle)?;
                g.put(tables::PROPOSALS, proposal_id, &p)?;
                Ok((serde_json::json!({"proposal_id": proposal_id, "state": p.state}), env.member_id))
            })
            .await
    }

    fn proposal(&self, g: &mut StateTx, id: &str) -> Result<ProposalRecord, ServiceError> {
        g.get(tables::PROPOSALS, id)?
            .ok_or_else(|| err(ErrorKind::NotFound, "ProposalNotFound", format!("no proposal {id}")))
    }

    fn ttl_ms(&self) -> u64 {
        self.config.proposal_ttl.as_millis() as u64
    }

    /// Mark expired open proposals `Dropped`. Returns how many (nothing is written when none).
    pub async fn drop_expired(&self) -> Result<usize, ServiceError> {
        let ttl = self.ttl_ms();
        let expired = |g: &mut StateTx| -> Result<Vec<(String, ProposalRecord)>, ServiceError> {
            let now = g.now_ms;
            let mut due = g.scan::<ProposalRecord>(tables::PROPOSALS)?;
            due.retain_mut(|(_, p)| p.expire(now, ttl));
            Ok(due)
        };
        if expired(&mut self.begin()?)?.is_empty() {
            return Ok(0);
        }
        let w = self
            .core
            .write(Cause { operation: "expire proposals", envelope: b"" }, |g| {
                let due = expired(g)?;
                for (id, p) in &due {
                    g.put(tables::PROPOSALS, id, p)?;
                }
                Ok((serde_json::json!({"dropped": due.len()}), "service".into()))
            })
            .await?;
        Ok(w.body["dropped"].as_u64().unwrap_or(0) as usize)
    }

    /// The state digest a member must ack: the root of the latest signed checkpoint.
    pub fn state_digest(&self) -> Result<String, ServiceError> {
        match self.core.ledger.latest_checkpoint().map_err(ServiceError::unavailable)? {
            Some((_, note)) => {
                let cp = cgs_core::note::SignedNote::parse(&note)
                    .and_then(|n| cgs_core::note::Checkpoint::parse(&n.text))
                    .map_err(ServiceError::unavailable)?;
                Ok(hex::encode(cp.root))
            }
            None => Err(err(ErrorKind::NotReady, "NotReady", "no checkpoint has been signed yet; retry shortly")),
        }
    }

    /// `POST /gov/members/{id}/ack`.
    pub async fn ack(&self, member_id: &str, envelope: &[u8]) -> Result<Written, ServiceError> {
        let recent = self.core.ledger.recent_checkpoint_roots(1000).map_err(ServiceError::unavailable)?;
        self.core
            .write(Cause { operation: "ack", envelope }, |g| {
                let (env, mut member) = self.check_envelope(g, envelope, MessageType::Ack, None)?;
                if env.member_id != member_id {
                    return Err(err(ErrorKind::Forbidden, "NotThisMember", "a member can only ack for itself"));
                }
                let body: AckBody = env.json().map_err(|e| err(ErrorKind::Invalid, "InvalidAck", e.to_string()))?;
                if !recent.iter().any(|r| hex::encode(r) == body.state_digest) {
                    return Err(err(
                        ErrorKind::Invalid,
                        "StateDigestMismatch",
                        "state_digest is not the root of a recent checkpoint; fetch it again",
                    ));
                }
                member.status = "Active".into();
                g.put(tables::MEMBERS, member_id, &member)?;
                Ok((serde_json::json!({"member_id": member_id, "status": "Active"}), env.member_id))
            })
            .await
    }

    /// `POST /gov/login`: a bearer token for the signer.
    pub async fn login(&self, envelope: &[u8]) -> Result<Written, ServiceError> {
        let ttl = self.config.token_ttl;
        self.core
            .write(Cause { operation: "login", envelope }, |g| {
                let (env, _) = self.check_envelope(g, envelope, MessageType::Login, None)?;
                let (token, expires_at) = self.auth.tokens().issue(&env.member_id, g.now_ms / 1000, ttl.as_secs());
                Ok((serde_json::json!({"token": token, "expires_at": expires_at}), env.member_id))
            })
            .await
    }

    /// `PUT /gov/blobs` (member): store content-addressed bytes.
    pub async fn put_blob(&self, caller: &Caller, bytes: Vec<u8>) -> Result<Written, ServiceError> {
        let hash = Blake3Hash::of(&bytes);
        let operation = format!("upload blob {hash}");
        self.core
            .write(Cause { operation: &operation, envelope: b"" }, |g| {
                if g.tx.get(tables::BLOBS, hash.to_hex().as_bytes()).map_err(internal)?.is_none() {
                    g.tx.put(tables::BLOBS, hash.to_hex().as_bytes(), bytes.clone());
                }
                Ok((serde_json::json!({"blake3": hash}), caller.id.clone()))
            })
            .await
    }

    // ---- reads -------------------------------------------------------------------------------

    /// `GET /gov/service`.
    pub fn service(&self) -> Result<serde_json::Value, ServiceError> {
        let mut g = self.begin()?;
        let status: serde_json::Value =
            g.get(tables::SERVICE, "status")?.unwrap_or(serde_json::json!({"status": "Opening"}));
        let constitution: Option<serde_json::Value> = g.get(tables::CONSTITUTION, "current")?;
        let plugins: Vec<serde_json::Value> = g
            .scan::<serde_json::Value>(tables::PLUGINS)?
            .into_iter()
            .map(|(name, v)| serde_json::json!({"name": name, "version": v["version"], "blake3": v["blake3"]}))
            .collect();
        let members = self.members(&mut g)?;
        Ok(serde_json::json!({
            "status": status["status"],
            "constitution": constitution,
            "plugins": plugins,
            "member_count": members.len(),
            "active_member_count": members.iter().filter(|(_, m)| m.status == "Active").count(),
            // Decided at creation and recorded in the ledger; never how this node was started.
            "insecure_virtual_attestation": crate::cleanroom::accepts_virtual_evidence(&mut g)?,
        }))
    }

    /// `GET /gov/members[/{id}]`.
    pub fn list_members(&self, id: Option<&str>) -> Result<serde_json::Value, ServiceError> {
        let mut g = self.begin()?;
        let view = |(id, m): (String, MemberRecord)| serde_json::json!({"member_id": id, "status": m.status, "member_data": m.data, "public_key": m.public_key});
        match id {
            Some(id) => {
                let m = self
                    .member(&mut g, id)?
                    .ok_or_else(|| err(ErrorKind::NotFound, "MemberNotFound", format!("no member {id}")))?;
                Ok(view((id.to_string(), m)))
            }
            None => Ok(
                serde_json::json!({"value": self.members(&mut g)?.into_iter().map(view).collect::<Vec<_>>(), "next_link": null}),
            ),
        }
    }

    /// `GET /gov/proposals[?state=]` / `GET /gov/proposals/{id}`.
    pub fn list_proposals(&self, id: Option<&str>, state: Option<&str>) -> Result<serde_json::Value, ServiceError> {
        let mut g = self.begin()?;
        match id {
            Some(id) => {
                let p: ProposalRecord = g
                    .get(tables::PROPOSALS, id)?
                    .ok_or_else(|| err(ErrorKind::NotFound, "ProposalNotFound", format!("no proposal {id}")))?;
                Ok(serde_json::to_value(p).map_err(ServiceError::unavailable)?)
            }
            None => {
                let want = match state {
                    Some(s) => Some(ProposalState::parse(s).ok_or_else(|| {
                        err(
                            ErrorKind::Invalid,
                            "InvalidState",
                            format!(
                                "`{s}` is not a proposal state (Open, Accepted, Rejected, Withdrawn, Failed, Dropped)"
                            ),
                        )
                    })?),
                    None => None,
                };
                let value: Vec<ProposalRecord> = g
                    .scan::<ProposalRecord>(tables::PROPOSALS)?
                    .into_iter()
                    .map(|(_, p)| p)
                    .filter(|p| want.is_none_or(|w| p.state == w))
                    .collect();
                Ok(serde_json::json!({"value": value, "next_link": null}))
            }
        }
    }

    /// `GET /gov/constitution`.
    pub fn constitution(&self) -> Result<serde_json::Value, ServiceError> {
        let mut g = self.begin()?;
        let current: serde_json::Value = g
            .get(tables::CONSTITUTION, "current")?
            .ok_or_else(|| err(ErrorKind::NotReady, "NotReady", "no constitution"))?;
        let actions = self
            .core
            .runtime
            .registry()
            .plugins()
            .find(|p| p.info.world == World::Constitution)
            .map(|p| p.actions.clone())
            .unwrap_or_default();
        Ok(
            serde_json::json!({"name": current["name"], "version": current["version"], "blake3": current["blake3"], "actions": actions}),
        )
    }
}

fn member_caller(id: &str) -> Caller {
    Caller { kind: CallerKind::Member, id: id.to_string(), roles: vec![], contract_id: None, claims: vec![] }
}

/// A refused lifecycle step, as the API reports it.
fn lifecycle(e: LifecycleError) -> ServiceError {
    let (kind, code) = match &e {
        LifecycleError::NotOpen { .. } | LifecycleError::Expired { .. } => {
            (ErrorKind::NotAllowedInState, "ProposalNotOpen")
        }
        LifecycleError::AlreadyVoted { .. } => (ErrorKind::Conflict, "VoteAlreadyCast"),
        LifecycleError::NotTheProposer => (ErrorKind::Forbidden, "NotTheProposer"),
    };
    err(kind, code, e.to_string())
}

fn dispatch(e: DispatchError) -> ServiceError {
    ServiceError { kind: ErrorKind::Plugin(e.status()), code: e.code().to_string(), message: e.message() }
}
