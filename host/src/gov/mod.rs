//! The governance engine: signed messages, members, proposals, ballots, the constitution, plugin
//! upgrades by vote, member tokens.
//!
//! Decisions are the constitution's (a plugin): it validates and applies core actions and resolves
//! proposals; plugin actions (`<plugin>.<action>`) are validated and applied by the plugin that owns
//! them. This module verifies who is speaking, keeps proposals and ballots, runs those calls inside
//! one ledger transaction per governance write (with the raw signed envelope recorded in the ledger
//! entry), and swaps plugins in the runtime once a change is committed.
//!
//! Layout: this file holds the engine and its write endpoints; `envelope.rs` checks signed
//! messages (signer, signature, freshness, replay), `actions.rs` runs actions and resolutions on
//! their plugins, `views.rs` serves the read endpoints, `lifecycle.rs` is the proposal state
//! machine and `reads.rs` decides who may read a ledger transaction.

mod actions;
mod envelope;
mod lifecycle;
pub mod nodes;
mod plugin_rules;
mod reads;
mod recovery;
mod simulate;
mod views;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cgs_core::gov::{AckBody, BallotBody, MessageType, ProposalBody};
use cgs_core::plugin::World;
use cgs_core::{Blake3Hash, TxId};

use crate::auth::Auth;
use crate::error::ServiceError;
pub use crate::error::{ErrorKind, ServiceError as GovError};
use crate::runtime::{Caller, DispatchError};
pub use crate::schema::{MemberRecord, tables};
pub use crate::txn::Written;
use crate::txn::{Cause, Core, StateTx};
pub use lifecycle::{
    Changes, FailedAction, HistoryItem, LifecycleError, Next, ProposalRecord, ProposalState, Resolution,
};

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

use crate::error::err;

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
    /// Held while a proposal is simulated: one at a time per node.
    simulating: std::sync::Mutex<()>,
}

/// Most actions in one proposal.
pub const MAX_ACTIONS: usize = 100;

impl Governance {
    /// The engine over `core`; member tokens are issued by `auth`.
    pub fn new(core: Arc<Core>, auth: Arc<Auth>, config: GovConfig) -> Self {
        Self { core, auth, config, simulating: std::sync::Mutex::new(()) }
    }

    /// Whether the service is open (app routes served), as the applied state says.
    pub fn is_open(&self) -> bool {
        self.core.reconciler.is_open()
    }

    /// The plugins governance made active that this node could not load, with why.
    pub fn plugin_failures(&self) -> std::collections::BTreeMap<String, String> {
        self.core.reconciler.failures()
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
                // `core`: one of the service's own plugins, there from creation; replacing it by
                // name takes intent (`replace_core`).
                &serde_json::json!({
                    "version": info.version, "blake3": h, "world": "app-plugin",
                    "core": plugin_rules::CORE_PLUGINS.contains(&info.name.as_str()),
                }),
            )?;
        }
        g.put(tables::SERVICE, "status", &serde_json::json!({"status": "Opening", "created_at_ms": g.now_ms}))?;
        g.put(
            tables::CREATION,
            "config",
            &serde_json::json!({"insecure_virtual_attestation": genesis.insecure_virtual_attestation}),
        )?;
        // The members' recovery shares of the service's secrets (epoch 1).
        self.refresh_recovery_shares(&mut g, None, "genesis")?;
        self.core.commit(g, &Cause { operation: "create service", envelope: b"" }, "genesis").await
    }

    fn member(&self, g: &mut StateTx, id: &str) -> Result<Option<MemberRecord>, ServiceError> {
        g.get(tables::MEMBERS, id)
    }

    fn members(&self, g: &mut StateTx) -> Result<Vec<(String, MemberRecord)>, ServiceError> {
        g.scan(tables::MEMBERS)
    }

    /// `POST /gov/proposals`.
    pub async fn propose(&self, envelope: &[u8]) -> Result<Written, ServiceError> {
        self.core
            .write(Cause { operation: "proposal", envelope }, |g| {
                let (env, _) = self.check_envelope(g, envelope, MessageType::Proposal, None)?;
                let body: ProposalBody =
                    env.json().map_err(|e| err(ErrorKind::Invalid, "InvalidProposal", e.to_string()))?;
                check_action_count(&body.actions)?;
                let caller = member_caller(&env.member_id);
                let id = env.digest();
                self.run_actions(g, &body.actions, false, &caller, &id).map_err(|f| Self::named(&body.actions, f))?;
                let mut p = ProposalRecord::new(id.clone(), env.member_id.clone(), body.actions, g.now_ms);
                self.resolve_and_apply(g, &mut p, &caller)?;
                g.put(tables::PROPOSALS, &id, &p)?;
                let body = serde_json::json!({"proposal_id": id, "state": p.state, "proposer_id": p.proposer_id});
                Ok((body, env.member_id))
            })
            .await
            .inspect(decided)
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
            .inspect(decided)
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
                // The shares are bound to the members' records, status included.
                self.refresh_recovery_shares(g, None, "ack")?;
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
                let (token, expires_at) = self.auth.tokens()?.issue(&env.member_id, g.now_ms / 1000, ttl.as_secs());
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
}

/// One log line per governance decision (a proposal leaving `Open` by a vote or at creation).
fn decided(w: &Written) {
    let state = w.body["state"].as_str().unwrap_or_default();
    if state != "Open" {
        tracing::info!(proposal = w.body["proposal_id"].as_str().unwrap_or_default(), state, tx = %w.tx_id, "proposal decided");
    }
}

fn member_caller(id: &str) -> Caller {
    Caller::member(id)
}

/// A proposal has 1 to [`MAX_ACTIONS`] actions (`400 InvalidProposal`).
fn check_action_count(actions: &[cgs_core::gov::ActionBody]) -> Result<(), ServiceError> {
    if actions.is_empty() || actions.len() > MAX_ACTIONS {
        return Err(err(ErrorKind::Invalid, "InvalidProposal", format!("a proposal needs 1 to {MAX_ACTIONS} actions")));
    }
    Ok(())
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
