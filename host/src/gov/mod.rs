//! The governance engine: signed messages, members, proposals, ballots, the constitution, plugin
//! upgrades by vote, member tokens.
//!
//! Decisions are the constitution's (a plugin): it validates and applies core actions and resolves
//! proposals; plugin actions (`<plugin>.<action>`) are validated and applied by the plugin that owns
//! them. This module verifies who is speaking, keeps proposals and ballots, runs those calls inside
//! one ledger transaction per governance write (with the raw signed envelope recorded in the ledger
//! entry), and swaps plugins in the runtime once a change is committed.

mod auth;
mod cleanroom;
pub mod jwks;
mod jwt;
pub mod oidc;
mod records;
mod secrets;
pub mod sessions;
pub mod users;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cgs_core::gov::{AckBody, ActionBody, BallotBody, Envelope, MessageType, ProposalBody, Vote};
use cgs_core::plugin::World;
use cgs_core::{Blake3Hash, TxId};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ledger::Ledger;
use crate::runtime::{
    Caller, CallerKind, DispatchError, GovAction, GovCall, GovMember, GovOutcome, GovReply, Plugin, Runtime,
};
use crate::store::{CommitError, Store, Transaction, TxMeta};
pub use records::{HistoryItem, MemberRecord, ProposalRecord, ProposalState};
pub use secrets::MAX_SECRET_BYTES;

/// Governance tables (internal names).
pub mod tables {
    /// Members: member id → [`super::MemberRecord`].
    pub const MEMBERS: &str = "gov.members";
    /// Active app plugins: name → `{version, blake3, world}`.
    pub const PLUGINS: &str = "gov.plugins";
    /// The constitution: `current` → `{name, version, blake3}`.
    pub const CONSTITUTION: &str = "gov.constitution";
    /// Uploaded blobs: BLAKE3 hex → bytes.
    pub const BLOBS: &str = "gov.blobs";
    /// Proposals: id → [`super::ProposalRecord`].
    pub const PROPOSALS: &str = "gov.proposals";
    /// Seen envelopes: SHA-256 hex → tx time (replay protection).
    pub const ENVELOPES: &str = "gov.envelopes";
    /// Service: `status` → `{status, …}`.
    pub const SERVICE: &str = "gov.service";
    /// Trusted JWT issuers: issuer → `{issuer, jwks | jwks_url, audience?}`.
    pub const JWT_ISSUERS: &str = "gov.jwt_issuers";
    /// User identities: hex of `blind(issuer|subject)` → `{issuer, subject, data?}` (encrypted).
    pub const USER_IDENTITIES: &str = "gov.user_identities";
    /// What genesis fixed for good: `config` → `{"insecure_virtual_attestation"}`. A `sys.` table:
    /// no plugin (not even the constitution) can reach it.
    pub const CREATION: &str = "sys.service";
}

/// A bearer token whose signature was verified (registration is checked on every request).
#[derive(Clone)]
struct VerifiedToken {
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

/// The caller claim holding a clean-room session's public key (base64).
pub const SESSION_KEY_CLAIM: &str = "x-cgs-session-key";
/// HPKE `info` of secret releases.
pub const SECRET_INFO: &[u8] = b"cgs-secret-release-v1";

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
            jwks_refresh: jwks::REFRESH,
            max_nonces: sessions::MAX_NONCES,
        }
    }
}

/// A governance error: status, code, message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} ({status}): {message}")]
pub struct GovError {
    /// HTTP status.
    pub status: u16,
    /// Envelope code.
    pub code: String,
    /// Envelope message.
    pub message: String,
}

fn err(status: u16, code: &str, message: impl Into<String>) -> GovError {
    GovError { status, code: code.into(), message: message.into() }
}

fn internal(e: impl std::fmt::Display) -> GovError {
    err(503, "StoreUnavailable", e.to_string())
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

/// A transaction of the governance engine: typed JSON access to governance tables.
struct GovTx {
    tx: Transaction,
    now_ms: u64,
}

impl GovTx {
    fn get<T: DeserializeOwned>(&mut self, table: &str, key: &str) -> Result<Option<T>, GovError> {
        match self.tx.get(table, key.as_bytes()).map_err(internal)? {
            Some(v) => {
                serde_json::from_slice(&v.value).map(Some).map_err(|e| internal(format!("corrupt {table} record: {e}")))
            }
            None => Ok(None),
        }
    }

    fn put<T: Serialize>(&mut self, table: &str, key: &str, value: &T) -> Result<(), GovError> {
        self.tx.put(table, key.as_bytes(), serde_json::to_vec(value).map_err(internal)?);
        Ok(())
    }

    fn scan<T: DeserializeOwned>(&mut self, table: &str) -> Result<Vec<(String, T)>, GovError> {
        let entries = self.tx.range(table, &crate::store::KeyRange::default(), usize::MAX, false).map_err(internal)?;
        entries
            .into_iter()
            .map(|e| {
                let k = String::from_utf8_lossy(&e.key).into_owned();
                serde_json::from_slice(&e.value)
                    .map(|v| (k, v))
                    .map_err(|e| internal(format!("corrupt {table} record: {e}")))
            })
            .collect()
    }
}

/// The result of a governance write: a JSON answer and the transaction that committed it.
pub struct Written {
    /// HTTP status.
    pub status: u16,
    /// The answer.
    pub body: serde_json::Value,
    /// The committed transaction.
    pub tx_id: TxId,
}

/// The governance engine of a node.
pub struct Governance {
    runtime: Arc<Runtime>,
    ledger: Arc<Ledger>,
    tokens: jwt::TokenKey,
    config: GovConfig,
    /// Loads what the applied state makes active; writes that change it wait for it.
    reconciler: Arc<crate::reconcile::Reconciler>,
    /// SHA-256(token) → what its signature proved: an Ed25519 or RSA verification per request
    /// would cost more than the request.
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], VerifiedToken>>,
    /// Issuers' keys fetched from their `jwks_url`.
    jwks: jwks::JwksFetcher,
    /// Outstanding clean-room nonces.
    nonces: sessions::Nonces,
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// Run `f` off the async executor when on a multi-threaded runtime (plugin calls block).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Governance {
    /// The engine over `runtime` and `ledger`; tokens are signed with the key in `token_key_path`.
    pub fn new(
        runtime: Arc<Runtime>,
        ledger: Arc<Ledger>,
        reconciler: Arc<crate::reconcile::Reconciler>,
        token_key_path: &std::path::Path,
        config: GovConfig,
    ) -> std::io::Result<Self> {
        let tokens = jwt::TokenKey::load_or_create(token_key_path, &ledger.identity().origin)?;
        let max_nonces = config.max_nonces;
        let jwks =
            jwks::JwksFetcher::new(config.jwks_url_allow.clone(), config.jwks_ca_pem.as_deref(), config.jwks_refresh)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Ok(Self {
            runtime,
            ledger,
            tokens,
            config,
            reconciler,
            verified: Default::default(),
            jwks,
            nonces: sessions::Nonces::with_capacity(max_nonces),
        })
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Whether the service is open (app routes served).
    pub fn is_open(&self) -> bool {
        self.reconciler.is_open()
    }

    fn begin(&self) -> Result<GovTx, GovError> {
        Ok(GovTx { tx: Transaction::new(self.ledger.snapshot().map_err(internal)?), now_ms: self.runtime.now_ms() })
    }

    /// Whether the ledger holds a service (genesis done).
    pub fn created(&self) -> Result<bool, GovError> {
        let mut g = self.begin()?;
        Ok(g.get::<serde_json::Value>(tables::SERVICE, "status")?.is_some())
    }

    /// Create the service: record members, plugins and the constitution (from `blobs`), status
    /// `Opening`. Fails if the service exists.
    pub async fn create_service(
        &self,
        genesis: &Genesis,
        blobs: &BTreeMap<Blake3Hash, Vec<u8>>,
    ) -> Result<TxId, GovError> {
        let mut g = self.begin()?;
        if g.get::<serde_json::Value>(tables::SERVICE, "status")?.is_some() {
            return Err(err(409, "ServiceExists", "this ledger already holds a service"));
        }
        if genesis.members.is_empty() {
            return Err(err(400, "InvalidGenesis", "a service needs at least one member"));
        }
        for m in &genesis.members {
            let key =
                cgs_core::gov::verifying_key_from_pem(&m.public_key).map_err(|e| err(400, "InvalidGenesis", e.0))?;
            let id = cgs_core::gov::member_id(&key);
            use base64::Engine as _;
            let rec = MemberRecord {
                public_key: base64::engine::general_purpose::STANDARD.encode(key.as_bytes()),
                status: "Accepted".into(),
                data: if m.member_data.is_null() { serde_json::json!({}) } else { m.member_data.clone() },
            };
            g.put(tables::MEMBERS, &id, &rec)?;
        }
        let blob = |hex: &str| -> Result<(Blake3Hash, &Vec<u8>), GovError> {
            let h: Blake3Hash =
                hex.parse().map_err(|e: cgs_core::ParseIdError| err(400, "InvalidGenesis", e.to_string()))?;
            let b =
                blobs.get(&h).ok_or_else(|| err(400, "InvalidGenesis", format!("no plugin file has BLAKE3 {hex}")))?;
            Ok((h, b))
        };
        let (ch, cbytes) = blob(&genesis.constitution)?;
        let info = cgs_core::plugin::read_info(cbytes).map_err(|e| err(400, "InvalidGenesis", e.to_string()))?;
        if info.world != World::Constitution {
            return Err(err(
                400,
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
            let info = cgs_core::plugin::read_info(bytes).map_err(|e| err(400, "InvalidGenesis", e.to_string()))?;
            if info.world != World::AppPlugin {
                return Err(err(400, "InvalidGenesis", format!("plugin {p} is not an app plugin")));
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
        let id = self.commit(g, "create service", "genesis", Vec::new()).await?;
        self.installed(id).await?;
        Ok(id)
    }

    async fn commit(&self, g: GovTx, operation: &str, caller: &str, envelope: Vec<u8>) -> Result<TxId, GovError> {
        let (reads, writes) = g.tx.into_sets();
        let meta = TxMeta {
            caller: caller.to_string(),
            plugin: String::new(),
            operation: operation.to_string(),
            request_digest: {
                use sha2::Digest;
                sha2::Sha256::digest(&envelope).into()
            },
            envelope,
            tx_time_ms: g.now_ms,
        };
        self.ledger.commit(reads, writes, meta).await.map_err(|e| match e {
            CommitError::Conflict(_) => {
                err(503, "TransactionConflict", "a concurrent governance change conflicted; retry")
            }
            CommitError::Store(s) => err(503, "StoreUnavailable", s.0),
        })
    }

    /// Wait until the reconciler has loaded what transaction `id` made active (plugins, the
    /// constitution, the service status), so that the answer to the write that changed them
    /// is followed by requests that see the change.
    async fn installed(&self, id: TxId) -> Result<(), GovError> {
        if self.reconciler.caught_up(id.seqno, std::time::Duration::from_secs(120)).await {
            Ok(())
        } else {
            Err(err(
                503,
                "NotReady",
                format!("transaction {id} committed, but the node has not loaded what it made active yet; retry"),
            ))
        }
    }

    fn member(&self, g: &mut GovTx, id: &str) -> Result<Option<MemberRecord>, GovError> {
        g.get(tables::MEMBERS, id)
    }

    /// Check a signed message: known signer of an allowed status, valid signature, the expected
    /// type, fresh, not seen before (and remember it in `g`).
    fn check_envelope(
        &self,
        g: &mut GovTx,
        bytes: &[u8],
        expected: MessageType,
        url_proposal: Option<&str>,
    ) -> Result<(Envelope, MemberRecord), GovError> {
        let env = Envelope::parse(bytes).map_err(|e| err(400, "InvalidSignedMessage", e.to_string()))?;
        let member = self
            .member(g, &env.member_id)?
            .ok_or_else(|| err(401, "UnknownMember", format!("{} is not a member of this service", env.member_id)))?;
        let key = member.key().map_err(internal)?;
        env.verify(&key).map_err(|_| {
            err(401, "InvalidSignature", "the signature does not verify with the member's registered key")
        })?;
        let needs_active = !matches!(expected, MessageType::Ack | MessageType::Login);
        if needs_active && member.status != "Active" {
            return Err(err(
                403,
                "MemberNotActive",
                format!("member {} must ack the service state before it can {}", env.member_id, expected.as_str()),
            ));
        }
        if env.msg_type != expected {
            return Err(err(
                400,
                "WrongMessageType",
                format!("this route takes a signed `{}` message, not `{}`", expected.as_str(), env.msg_type.as_str()),
            ));
        }
        let now = (g.now_ms / 1000) as i64;
        let skew = self.config.max_clock_skew.as_secs() as i64;
        if (env.created_at - now).abs() > skew {
            return Err(err(
                400,
                "StaleMessage",
                format!("created_at is {} s from service time; at most {skew} s is accepted", env.created_at - now),
            ));
        }
        if let Some(url) = url_proposal
            && env.proposal_id.as_deref() != Some(url)
        {
            return Err(err(400, "ProposalIdMismatch", "cgs.msg.proposal_id must be the proposal id of the URL"));
        }
        // Keyed on what was signed, not on the bytes: `Envelope::parse` admits one encoding only,
        // and the identity would not change even if it admitted more.
        let digest = env.digest();
        if g.get::<serde_json::Value>(tables::ENVELOPES, &digest)?.is_some() {
            return Err(err(409, "Replay", "this signed message was already submitted"));
        }
        g.put(tables::ENVELOPES, &digest, &serde_json::json!({"at_ms": g.now_ms, "member_id": env.member_id}))?;
        Ok((env, member))
    }

    /// The plugin that owns an action, and the host's own check of it.
    fn owner(&self, g: &mut GovTx, action: &ActionBody) -> Result<Arc<Plugin>, GovError> {
        let registry = self.runtime.registry();
        let plugin = match action.name.split_once('.') {
            Some((p, _)) => registry
                .get(p)
                .cloned()
                .ok_or_else(|| err(400, "UnknownAction", format!("no plugin `{p}` owns `{}`", action.name)))?,
            None => registry
                .plugins()
                .find(|p| p.info.world == World::Constitution)
                .cloned()
                .ok_or_else(|| internal("no constitution is installed"))?,
        };
        if !plugin.actions.iter().any(|a| a.name == action.name) {
            return Err(err(
                400,
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
    fn check_plugin_blob(&self, g: &mut GovTx, action: &ActionBody) -> Result<(), GovError> {
        let get = |k: &str| action.args.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let (name, version, hash) = (get("name"), get("version"), get("blake3"));
        let h: Blake3Hash =
            hash.parse().map_err(|e: cgs_core::ParseIdError| err(400, "InvalidActionArgs", e.to_string()))?;
        let blob =
            g.tx.get(tables::BLOBS, h.to_hex().as_bytes()).map_err(internal)?.ok_or_else(|| {
                err(400, "BlobNotFound", format!("no blob {hash}; upload it with PUT /gov/blobs first"))
            })?;
        let plugin =
            self.runtime.prepare(&blob.value).map_err(|e| err(400, "InvalidPlugin", format!("blob {hash}: {e}")))?;
        let want_world = if action.name == "set_constitution" { World::Constitution } else { World::AppPlugin };
        if plugin.info.world != want_world {
            return Err(err(
                400,
                "InvalidPlugin",
                format!("blob {hash} implements `{}`, `{}` needs `{want_world}`", plugin.info.world, action.name),
            ));
        }
        if plugin.info.name != name || plugin.info.version != version {
            return Err(err(
                400,
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
        g: &mut GovTx,
        actions: &[ActionBody],
        apply: bool,
        caller: &Caller,
        proposal_id: &str,
    ) -> Result<(), GovError> {
        let all: Vec<GovAction> = actions.iter().map(Self::gov_action).collect();
        for a in actions {
            if a.name.starts_with("oidc.") {
                self.oidc_action(g, a, apply, caller)?;
                continue;
            }
            let plugin = self.owner(g, a)?;
            let ga = Self::gov_action(a);
            let call = if apply { GovCall::Apply(&ga) } else { GovCall::Validate(&ga) };
            let tx = std::mem::replace(&mut g.tx, Transaction::new(self.ledger.snapshot().map_err(internal)?));
            let (reply, tx) =
                self.runtime.gov_call(&plugin, call, tx, caller, Some(proposal_id.to_string()), &all, g.now_ms);
            g.tx = tx;
            match reply {
                Ok(GovReply::Done) => {}
                Ok(GovReply::Refused { status, code, message }) => {
                    return Err(GovError { status, code, message: format!("{}: {message}", a.name) });
                }
                Ok(GovReply::Resolution { .. }) => return Err(internal("unexpected resolution")),
                Err(e) => return Err(dispatch(e)),
            }
        }
        Ok(())
    }

    fn members(&self, g: &mut GovTx) -> Result<Vec<(String, MemberRecord)>, GovError> {
        g.scan(tables::MEMBERS)
    }

    /// Ask the constitution; on acceptance apply every action in this transaction, and record
    /// the new state (`Accepted`, `Rejected`, or `Failed` with nothing of the actions written).
    fn resolve_and_apply(
        &self,
        g: &mut GovTx,
        p: &mut ProposalRecord,
        caller: &Caller,
    ) -> Result<Vec<String>, GovError> {
        let constitution = self
            .runtime
            .registry()
            .plugins()
            .find(|p| p.info.world == World::Constitution)
            .cloned()
            .ok_or_else(|| internal("no constitution is installed"))?;
        let members: Vec<GovMember> = self
            .members(g)?
            .into_iter()
            .map(|(id, m)| GovMember { id, active: m.status == "Active", roles: m.roles(), data: m.data.to_string() })
            .collect();
        let ballots: Vec<(String, bool)> = p.ballots.iter().map(|(m, v)| (m.clone(), *v == Vote::Approve)).collect();
        let actions: Vec<GovAction> = p.actions.iter().map(Self::gov_action).collect();
        let tx = std::mem::replace(&mut g.tx, Transaction::new(self.ledger.snapshot().map_err(internal)?));
        let call = GovCall::Resolve {
            id: &p.proposal_id,
            proposer_id: &p.proposer_id,
            actions: &actions,
            created_at_ms: p.created_at_ms,
            ballots: &ballots,
            members: &members,
        };
        let (reply, tx) =
            self.runtime.gov_call(&constitution, call, tx, caller, Some(p.proposal_id.clone()), &actions, g.now_ms);
        g.tx = tx;
        let (outcome, reason) = match reply.map_err(dispatch)? {
            GovReply::Resolution { outcome, reason } => (outcome, reason),
            other => return Err(internal(format!("the constitution answered {other:?} to resolve"))),
        };
        let mut changed_plugins = Vec::new();
        match outcome {
            GovOutcome::Open => {}
            GovOutcome::Rejected => p.transition(ProposalState::Rejected, g.now_ms, Some(reason)),
            GovOutcome::Accepted => {
                let before = g.tx.clone();
                // Actions apply on behalf of their proposer, whoever cast the deciding ballot.
                let proposer = member_caller(&p.proposer_id);
                match self.run_actions(g, &p.actions.clone(), true, &proposer, &p.proposal_id.clone()) {
                    Ok(()) => {
                        p.final_votes = Some(p.ballots.clone());
                        p.transition(ProposalState::Accepted, g.now_ms, Some(reason));
                        changed_plugins = self.drop_superseded(g, p)?;
                    }
                    Err(e) => {
                        g.tx = before;
                        p.final_votes = Some(p.ballots.clone());
                        p.failure = Some(format!("{}: {}", e.code, e.message));
                        p.transition(ProposalState::Failed, g.now_ms, Some(format!("apply failed: {}", e.message)));
                    }
                }
            }
        }
        Ok(changed_plugins)
    }

    /// After a plugin or the constitution changed, drop open proposals whose actions it owns (the
    /// meaning of what members voted on changed). Returns the changed plugin names.
    fn drop_superseded(&self, g: &mut GovTx, accepted: &ProposalRecord) -> Result<Vec<String>, GovError> {
        let mut changed: Vec<String> = Vec::new();
        let mut constitution_changed = false;
        for a in &accepted.actions {
            match a.name.as_str() {
                "set_plugin" | "remove_plugin" => changed.push(a.args["name"].as_str().unwrap_or_default().to_string()),
                "set_constitution" => constitution_changed = true,
                _ => {}
            }
        }
        if changed.is_empty() && !constitution_changed {
            return Ok(changed);
        }
        for (id, mut other) in g.scan::<ProposalRecord>(tables::PROPOSALS)? {
            if id == accepted.proposal_id || other.state != ProposalState::Open {
                continue;
            }
            let hit = constitution_changed
                || other
                    .actions
                    .iter()
                    .any(|a| a.name.split_once('.').is_some_and(|(p, _)| changed.iter().any(|c| c == p)));
            if hit {
                let why = format!("proposal {} changed the plugin its actions belong to", accepted.proposal_id);
                other.transition(ProposalState::Dropped, g.now_ms, Some(why));
                g.put(tables::PROPOSALS, &id, &other)?;
            }
        }
        if constitution_changed {
            changed.push("constitution".into());
        }
        Ok(changed)
    }

    async fn write<F>(&self, envelope: &[u8], operation: &str, f: F) -> Result<Written, GovError>
    where
        F: Fn(&Self, &mut GovTx) -> Result<(u16, serde_json::Value, String, bool), GovError>,
    {
        let mut attempts = 0;
        loop {
            let mut g = self.begin()?;
            let (status, body, caller, _) = blocking(|| f(self, &mut g))?;
            // What the reconciler acts on (plugins, constitution, service status): the answer
            // waits until this node has loaded it.
            let resync = g.tx.writes_any(crate::ledger::INSTALLED_STATE);
            match self.commit(g, operation, &caller, envelope.to_vec()).await {
                Ok(tx_id) => {
                    // Committed: a failure to load what was committed is the node's problem
                    // (the reconciler logs it and retries at the next change or restart).
                    if resync && let Err(e) = self.installed(tx_id).await {
                        tracing::error!(error = %e.message, "installed state not reconciled in time");
                    }
                    return Ok(Written { status, body, tx_id });
                }
                Err(e) if e.code == "TransactionConflict" && attempts < 8 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// `POST /gov/proposals`.
    pub async fn propose(&self, envelope: &[u8]) -> Result<Written, GovError> {
        self.write(envelope, "proposal", |this, g| {
            let (env, _) = this.check_envelope(g, envelope, MessageType::Proposal, None)?;
            let body: ProposalBody = env.json().map_err(|e| err(400, "InvalidProposal", e.to_string()))?;
            if body.actions.is_empty() {
                return Err(err(400, "InvalidProposal", "a proposal needs at least one action"));
            }
            let caller = member_caller(&env.member_id);
            let id = env.digest();
            this.run_actions(g, &body.actions, false, &caller, &id)?;
            let mut p = ProposalRecord::new(id.clone(), env.member_id.clone(), body.actions, g.now_ms);
            let changed = this.resolve_and_apply(g, &mut p, &caller)?;
            g.put(tables::PROPOSALS, &id, &p)?;
            let body = serde_json::json!({"proposal_id": id, "state": p.state, "proposer_id": p.proposer_id});
            Ok((200, body, env.member_id, !changed.is_empty() || p.state == ProposalState::Accepted))
        })
        .await
    }

    /// `POST /gov/proposals/{id}/ballots`.
    pub async fn ballot(&self, proposal_id: &str, envelope: &[u8]) -> Result<Written, GovError> {
        self.write(envelope, "ballot", |this, g| {
            let (env, _) = this.check_envelope(g, envelope, MessageType::Ballot, Some(proposal_id))?;
            let body: BallotBody = env.json().map_err(|e| err(400, "InvalidBallot", e.to_string()))?;
            let mut p = this.open_proposal(g, proposal_id)?;
            if p.ballots.contains_key(&env.member_id) {
                return Err(err(
                    409,
                    "VoteAlreadyCast",
                    format!("member {} already voted on {proposal_id}", env.member_id),
                ));
            }
            p.ballots.insert(env.member_id.clone(), body.vote);
            let caller = member_caller(&env.member_id);
            let changed = this.resolve_and_apply(g, &mut p, &caller)?;
            g.put(tables::PROPOSALS, proposal_id, &p)?;
            Ok((
                200,
                serde_json::json!({"proposal_id": proposal_id, "state": p.state}),
                env.member_id,
                !changed.is_empty() || p.state == ProposalState::Accepted,
            ))
        })
        .await
    }

    /// `POST /gov/proposals/{id}/withdraw`.
    pub async fn withdraw(&self, proposal_id: &str, envelope: &[u8]) -> Result<Written, GovError> {
        self.write(envelope, "withdrawal", |this, g| {
            let (env, _) = this.check_envelope(g, envelope, MessageType::Withdrawal, Some(proposal_id))?;
            let mut p = this.open_proposal(g, proposal_id)?;
            if p.proposer_id != env.member_id {
                return Err(err(403, "NotTheProposer", "only the proposer may withdraw a proposal"));
            }
            p.transition(ProposalState::Withdrawn, g.now_ms, Some(format!("withdrawn by {}", env.member_id)));
            g.put(tables::PROPOSALS, proposal_id, &p)?;
            Ok((200, serde_json::json!({"proposal_id": proposal_id, "state": p.state}), env.member_id, false))
        })
        .await
    }

    fn open_proposal(&self, g: &mut GovTx, id: &str) -> Result<ProposalRecord, GovError> {
        let p: ProposalRecord =
            g.get(tables::PROPOSALS, id)?.ok_or_else(|| err(404, "ProposalNotFound", format!("no proposal {id}")))?;
        if p.state != ProposalState::Open {
            return Err(err(405, "ProposalNotOpen", format!("proposal {id} is {:?}", p.state)));
        }
        if g.now_ms.saturating_sub(p.created_at_ms) > self.config.proposal_ttl.as_millis() as u64 {
            return Err(err(405, "ProposalNotOpen", format!("proposal {id} expired; it will be dropped")));
        }
        Ok(p)
    }

    /// Mark expired open proposals `Dropped`. Returns how many.
    pub async fn drop_expired(&self) -> Result<usize, GovError> {
        let ttl = self.config.proposal_ttl.as_millis() as u64;
        let w = self
            .write(b"", "expire proposals", |_, g| {
                let mut n = 0;
                for (id, mut p) in g.scan::<ProposalRecord>(tables::PROPOSALS)? {
                    if p.state == ProposalState::Open && g.now_ms.saturating_sub(p.created_at_ms) > ttl {
                        p.transition(ProposalState::Dropped, g.now_ms, Some("expired".into()));
                        g.put(tables::PROPOSALS, &id, &p)?;
                        n += 1;
                    }
                }
                if n == 0 {
                    return Err(err(204, "NothingToDo", ""));
                }
                Ok((200, serde_json::json!({"dropped": n}), "service".into(), false))
            })
            .await;
        match w {
            Ok(w) => Ok(w.body["dropped"].as_u64().unwrap_or(0) as usize),
            Err(e) if e.status == 204 => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The state digest a member must ack: the root of the latest signed checkpoint.
    pub fn state_digest(&self) -> Result<String, GovError> {
        match self.ledger.latest_checkpoint().map_err(internal)? {
            Some((_, note)) => {
                let cp = cgs_core::note::SignedNote::parse(&note)
                    .and_then(|n| cgs_core::note::Checkpoint::parse(&n.text))
                    .map_err(internal)?;
                Ok(hex::encode(cp.root))
            }
            None => Err(err(503, "NotReady", "no checkpoint has been signed yet; retry shortly")),
        }
    }

    /// `POST /gov/members/{id}/ack`.
    pub async fn ack(&self, member_id: &str, envelope: &[u8]) -> Result<Written, GovError> {
        let recent = self.ledger.recent_checkpoint_roots(1000).map_err(internal)?;
        self.write(envelope, "ack", |this, g| {
            let (env, mut member) = this.check_envelope(g, envelope, MessageType::Ack, None)?;
            if env.member_id != member_id {
                return Err(err(403, "NotThisMember", "a member can only ack for itself"));
            }
            let body: AckBody = env.json().map_err(|e| err(400, "InvalidAck", e.to_string()))?;
            if !recent.iter().any(|r| hex::encode(r) == body.state_digest) {
                return Err(err(
                    400,
                    "StateDigestMismatch",
                    "state_digest is not the root of a recent checkpoint; fetch it again",
                ));
            }
            member.status = "Active".into();
            g.put(tables::MEMBERS, member_id, &member)?;
            Ok((200, serde_json::json!({"member_id": member_id, "status": "Active"}), env.member_id, false))
        })
        .await
    }

    /// `POST /gov/login`: a bearer token for the signer.
    pub async fn login(&self, envelope: &[u8]) -> Result<Written, GovError> {
        let ttl = self.config.token_ttl;
        self.write(envelope, "login", |this, g| {
            let (env, _) = this.check_envelope(g, envelope, MessageType::Login, None)?;
            let (token, expires_at) = this.tokens.issue(&env.member_id, g.now_ms / 1000, ttl.as_secs());
            Ok((200, serde_json::json!({"token": token, "expires_at": expires_at}), env.member_id, false))
        })
        .await
    }

    /// Fetch the JWKS of trusted issuers given by URL that are due (see [`jwks`]).
    pub async fn refresh_jwks(&self) {
        let urls: Vec<String> = match self.begin().and_then(|mut g| g.scan::<serde_json::Value>(tables::JWT_ISSUERS)) {
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

    /// `PUT /gov/blobs` (member): store content-addressed bytes.
    pub async fn put_blob(&self, caller: &Caller, bytes: Vec<u8>) -> Result<Written, GovError> {
        let hash = Blake3Hash::of(&bytes);
        let mut attempts = 0;
        loop {
            let mut g = self.begin()?;
            if g.tx.get(tables::BLOBS, hash.to_hex().as_bytes()).map_err(internal)?.is_none() {
                g.tx.put(tables::BLOBS, hash.to_hex().as_bytes(), bytes.clone());
            }
            match self.commit(g, &format!("upload blob {hash}"), &caller.id, Vec::new()).await {
                Ok(tx_id) => return Ok(Written { status: 200, body: serde_json::json!({"blake3": hash}), tx_id }),
                Err(e) if e.code == "TransactionConflict" && attempts < 8 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    // ---- reads -------------------------------------------------------------------------------

    /// `GET /gov/service`.
    pub fn service(&self) -> Result<serde_json::Value, GovError> {
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
            "insecure_virtual_attestation": self.accepts_virtual_evidence(&mut g)?,
        }))
    }

    /// `GET /gov/members[/{id}]`.
    pub fn list_members(&self, id: Option<&str>) -> Result<serde_json::Value, GovError> {
        let mut g = self.begin()?;
        let view = |(id, m): (String, MemberRecord)| serde_json::json!({"member_id": id, "status": m.status, "member_data": m.data, "public_key": m.public_key});
        match id {
            Some(id) => {
                let m =
                    self.member(&mut g, id)?.ok_or_else(|| err(404, "MemberNotFound", format!("no member {id}")))?;
                Ok(view((id.to_string(), m)))
            }
            None => Ok(
                serde_json::json!({"value": self.members(&mut g)?.into_iter().map(view).collect::<Vec<_>>(), "next_link": null}),
            ),
        }
    }

    /// `GET /gov/proposals[?state=]` / `GET /gov/proposals/{id}`.
    pub fn list_proposals(&self, id: Option<&str>, state: Option<&str>) -> Result<serde_json::Value, GovError> {
        let mut g = self.begin()?;
        match id {
            Some(id) => {
                let p: ProposalRecord = g
                    .get(tables::PROPOSALS, id)?
                    .ok_or_else(|| err(404, "ProposalNotFound", format!("no proposal {id}")))?;
                Ok(serde_json::to_value(p).map_err(internal)?)
            }
            None => {
                let want = match state {
                    Some(s) => Some(ProposalState::parse(s).ok_or_else(|| {
                        err(
                            400,
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
    pub fn constitution(&self) -> Result<serde_json::Value, GovError> {
        let mut g = self.begin()?;
        let current: serde_json::Value =
            g.get(tables::CONSTITUTION, "current")?.ok_or_else(|| err(503, "NotReady", "no constitution"))?;
        let actions = self
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

fn dispatch(e: DispatchError) -> GovError {
    GovError { status: e.status(), code: e.code().to_string(), message: e.message() }
}
