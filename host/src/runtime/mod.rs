//! The plugin runtime: wasmtime with a trimmed feature set, a pooling allocator, one `Store` per
//! call from a pre-instantiated component, and fuel, epoch-deadline and memory limits.
//!
//! * [`Runtime::prepare`] checks a component (is it a plugin, which world, which imports),
//!   compiles it (or loads the authenticated on-disk artifact) and probes its routes and actions;
//!   [`Runtime::install`] swaps it into the registry atomically.
//! * [`Runtime::handle`] runs one request in a fresh instance inside a store transaction and
//!   commits the write set only if the plugin succeeded on a read-write route. A trap, fuel
//!   exhaustion, deadline or memory-cap hit fails that request alone; the instance is dropped.

mod bindings;
mod cache;
mod error;
mod routes;
mod state;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cgs_core::Blake3Hash;
use cgs_core::plugin::{PluginInfo, World};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store as WasmStore, Trap};
use wasmtime_wasi::WasiCtx;

use crate::executor::off_executor;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

pub use error::{DispatchError, FaultKind, LoadError};
pub use routes::{Access, CallerKinds, HOST as HOST_ROUTES, Method, Route, RouteMatch, RouteTable, host_routes};

use crate::store::{Store, Transaction, TxId, TxMeta};
use bindings::types as wit;
use state::{HostState, Limiter, MemoryLimitExceeded, STDERR_CAPACITY};

/// Limits and sizes of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Fuel per call (≈ one unit per wasm instruction): the deterministic compute budget.
    pub fuel: u64,
    /// Wall-clock deadline per call.
    pub deadline: Duration,
    /// Epoch tick: the deadline's granularity.
    pub epoch_tick: Duration,
    /// Linear memory cap per instance, in bytes.
    pub memory_bytes: usize,
    /// Table element cap per instance.
    pub table_elements: usize,
    /// Component instances that may be live at once (the pooling allocator's size).
    pub max_instances: u32,
    /// How often a request is re-executed after a commit conflict before giving up with 503.
    pub conflict_retries: u32,
    /// Bytes of each pooled linear memory kept resident between calls and reset with `memset`
    /// instead of `madvise` + page faults. `None` chooses: 2 MiB where Linux's `PAGEMAP_SCAN`
    /// lets wasmtime reset only the pages a call dirtied (kernel ≥ 6.7), else 0 — a plain
    /// `memset` of the low addresses costs more than the faults it saves.
    pub memory_keep_resident: Option<usize>,
    /// Use `PAGEMAP_SCAN` to reset only dirtied pages where the kernel supports it.
    pub pagemap_scan: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            fuel: 1_000_000_000,
            deadline: Duration::from_secs(2),
            epoch_tick: Duration::from_millis(10),
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            max_instances: 128,
            conflict_retries: 8,
            memory_keep_resident: None,
            pagemap_scan: true,
        }
    }
}

/// The kind of principal behind a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallerKind {
    /// No credentials.
    Anonymous,
    /// A consortium member.
    Member,
    /// A user with a JWT of a registered issuer.
    User,
    /// An attested clean-room session.
    Cleanroom,
}

/// The authenticated principal behind a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Kind.
    pub kind: CallerKind,
    /// Member id, `issuer|subject`, or session id; empty if anonymous.
    pub id: String,
    /// Roles.
    pub roles: Vec<String>,
    /// For clean-room sessions: the bound contract.
    pub contract_id: Option<String>,
    /// Claims.
    pub claims: Vec<(String, String)>,
}

impl Caller {
    /// No credentials.
    pub fn anonymous() -> Self {
        Self { kind: CallerKind::Anonymous, id: String::new(), roles: vec![], contract_id: None, claims: vec![] }
    }

    /// The caller as ledger entries record it: member ids and session ids as they are, a user
    /// (`issuer|subject`, a person's identity) as `user:` + hex of its blinded form, so the
    /// ledger files do not name users.
    pub fn recorded_id(&self, blind: impl FnOnce(&[u8]) -> [u8; 32]) -> String {
        match self.kind {
            CallerKind::User => format!("user:{}", hex::encode(blind(self.id.as_bytes()))),
            _ => self.id.clone(),
        }
    }

    fn to_wit(&self) -> wit::Caller {
        wit::Caller {
            kind: match self.kind {
                CallerKind::Anonymous => wit::CallerKind::Anonymous,
                CallerKind::Member => wit::CallerKind::Member,
                CallerKind::User => wit::CallerKind::User,
                CallerKind::Cleanroom => wit::CallerKind::Cleanroom,
            },
            id: self.id.clone(),
            roles: self.roles.clone(),
            contract_id: self.contract_id.clone(),
            claims: self.claims.clone(),
        }
    }
}

/// A governance action a plugin owns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActionInfo {
    /// `<plugin>.<action>` or a core action name.
    pub name: String,
    /// Description.
    pub description: String,
}

enum Pre {
    App(bindings::app::AppPluginPre<HostState>),
    Constitution(bindings::gov::ConstitutionPre<HostState>),
}

/// An installed plugin.
pub struct Plugin {
    /// Name, version and world, as declared in the component.
    pub info: PluginInfo,
    /// The measurement: BLAKE3 of the component bytes.
    pub blake3: Blake3Hash,
    /// Its routes (app plugins).
    pub routes: Vec<Route>,
    /// The governance actions it owns.
    pub actions: Vec<ActionInfo>,
    name: Arc<str>,
    pre: Pre,
    /// Calls in a row that took longer than [`INLINE_BUDGET`]; at [`SLOW_STRIKES`] the plugin's
    /// calls leave the async worker (`block_in_place`) for good.
    slow: AtomicU32,
}

/// Calls up to this long run on the async worker that received the request: handing a 20 µs
/// call to another thread costs more than the call (context switches dominated a profile of
/// the consent check). A plugin whose calls exceed it [`SLOW_STRIKES`] times in a row (a first
/// call may be slow: cold pages) is moved off the worker for good.
const INLINE_BUDGET: Duration = Duration::from_millis(2);
/// See [`INLINE_BUDGET`].
const SLOW_STRIKES: u32 = 3;

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("info", &self.info).field("blake3", &self.blake3).finish_non_exhaustive()
    }
}

/// The installed plugins and their routes: replaced as a whole, so every call sees one
/// consistent version.
#[derive(Default)]
pub struct Registry {
    plugins: BTreeMap<String, Arc<Plugin>>,
    routes: RouteTable,
}

impl Registry {
    /// A plugin by name.
    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins.get(name)
    }

    /// All plugins, by name.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.plugins.values()
    }

    /// Match a request path below `/app` (segments already percent-decoded).
    pub fn find_route(&self, method: Method, segments: &[&str]) -> RouteMatch {
        self.routes.find(method, segments)
    }
}

/// One request for a plugin route.
#[derive(Debug, Clone)]
pub struct PluginRequest {
    /// The plugin (from the registry snapshot that matched the route).
    pub plugin: Arc<Plugin>,
    /// The matched route.
    pub route: Route,
    /// Path parameters.
    pub params: Vec<(String, String)>,
    /// Path below `/app`.
    pub path: String,
    /// Decoded query parameters.
    pub query: Vec<(String, String)>,
    /// Headers (lowercase names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// The caller.
    pub caller: Caller,
}

/// A plugin's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers the plugin set (filtered by the host).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// The transaction that committed its writes, if it wrote.
    pub tx_id: Option<TxId>,
}

/// A request executed but not yet committed.
pub struct Executed {
    /// The plugin's response (`tx_id` is set once committed).
    pub response: PluginResponse,
    /// What to commit, if the request wrote on a read-write route.
    pub commit: Option<PendingCommit>,
    /// The plugin asked (`cgs-fill-tx: 1`) for the committed tx id in its JSON object body.
    pub fill_tx: bool,
}

/// Header by which a plugin asks for `"tx_id"` and `"seqno"` in its JSON response body.
pub const FILL_TX_HEADER: &str = "cgs-fill-tx";

/// Add `"tx_id"` and `"seqno"` of `id` to a JSON object body (other bodies are left as they are).
fn fill_tx(body: &mut Vec<u8>, id: TxId) {
    if let Ok(serde_json::Value::Object(mut o)) = serde_json::from_slice::<serde_json::Value>(body) {
        o.insert("tx_id".into(), serde_json::Value::String(id.to_string()));
        o.insert("seqno".into(), serde_json::Value::from(id.seqno));
        if let Ok(b) = serde_json::to_vec(&o) {
            *body = b;
        }
    }
}

/// Read and write sets of an executed request.
pub struct PendingCommit {
    /// What it read.
    pub reads: crate::store::ReadSet,
    /// What it wrote.
    pub writes: crate::store::WriteSet,
    /// Who and what.
    pub meta: TxMeta,
}

/// Interfaces a plugin may import. Versions of WASI 0.2.x are accepted.
fn import_allowed(name: &str) -> bool {
    const CGS: &[&str] =
        &["cgs:plugin/types@0.1.0", "cgs:plugin/kv@0.1.0", "cgs:plugin/context@0.1.0", "cgs:plugin/log@0.1.0"];
    const WASI: &[&str] = &[
        "wasi:cli/environment",
        "wasi:cli/exit",
        "wasi:cli/stdin",
        "wasi:cli/stdout",
        "wasi:cli/stderr",
        "wasi:cli/terminal-input",
        "wasi:cli/terminal-output",
        "wasi:cli/terminal-stdin",
        "wasi:cli/terminal-stdout",
        "wasi:cli/terminal-stderr",
        "wasi:io/error",
        "wasi:io/poll",
        "wasi:io/streams",
        "wasi:random/insecure-seed",
    ];
    if CGS.contains(&name) {
        return true;
    }
    match name.split_once("@0.2.") {
        Some((iface, patch)) => WASI.contains(&iface) && !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Names a plugin may not take.
const RESERVED_NAMES: &[&str] = &["gov", "sys", "node", "app", "cleanroom", "oidc", "private", "public", routes::HOST];

/// Link only the WASI interfaces in the allow-list, configured deny-by-default per call (no
/// environment, arguments, files, sockets or clocks; stdin empty; stdout/stderr to a bounded
/// buffer that goes to the log).
fn add_wasi(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::WasiView;
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::p2::bindings::sync as wasi;
    use wasmtime_wasi::random::WasiRandom;

    struct HasIo;
    impl wasmtime::component::HasData for HasIo {
        type Data<'a> = &'a mut ResourceTable;
    }

    wasmtime_wasi::p2::bindings::io::error::add_to_linker::<HostState, HasIo>(linker, |t| t.ctx().table)?;
    wasi::io::poll::add_to_linker::<HostState, HasIo>(linker, |t| t.ctx().table)?;
    wasi::io::streams::add_to_linker::<HostState, HasIo>(linker, |t| t.ctx().table)?;
    wasmtime_wasi::p2::bindings::cli::exit::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::environment::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::stdin::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::stdout::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::stderr::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::terminal_input::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::terminal_output::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::random::insecure_seed::add_to_linker::<HostState, WasiRandom>(linker, |t| {
        t.ctx().ctx.random()
    })?;
    Ok(())
}

/// Increments the engine epoch every tick until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("cgs-epoch".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Transaction time: wall-clock milliseconds, never going backwards.
struct TxClock(AtomicU64);

impl TxClock {
    fn now_ms(&self) -> u64 {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let prev = self.0.fetch_max(wall, Ordering::Relaxed);
        prev.max(wall)
    }
}

/// Setup of one call.
struct Call<'a> {
    plugin: &'a Plugin,
    caller: &'a Caller,
    tx: Transaction,
    writable: bool,
    /// Governance tables are writable (the constitution applying a core action).
    gov_writable: bool,
    tx_time_ms: u64,
    proposal_id: Option<String>,
    proposal_actions: Vec<wit::Action>,
}

/// A governance action as the runtime passes it to plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovAction {
    /// `<plugin>.<action>` or a core action name.
    pub name: String,
    /// Arguments as JSON text.
    pub args: String,
}

/// A member as the constitution sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovMember {
    /// Member id.
    pub id: String,
    /// Whether the member acked (Active) or not (Accepted).
    pub active: bool,
    /// Roles.
    pub roles: Vec<String>,
    /// Member data, JSON text.
    pub data: String,
}

/// The constitution's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GovOutcome {
    /// Not decided.
    Open,
    /// Accepted.
    Accepted,
    /// Rejected.
    Rejected,
}

/// A governance operation on a plugin.
pub enum GovCall<'a> {
    /// Check an action.
    Validate(&'a GovAction),
    /// Apply an accepted action.
    Apply(&'a GovAction),
    /// Decide a proposal (constitution only).
    Resolve {
        /// Proposal id.
        id: &'a str,
        /// Proposer.
        proposer_id: &'a str,
        /// Its actions.
        actions: &'a [GovAction],
        /// Creation time (ms).
        created_at_ms: u64,
        /// `(member id, approve?)`, one per member.
        ballots: &'a [(String, bool)],
        /// Current members.
        members: &'a [GovMember],
    },
}

/// The reply of a governance operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GovReply {
    /// Validate / apply succeeded.
    Done,
    /// The plugin refused (its error, mapped to an HTTP status).
    Refused {
        /// HTTP status.
        status: u16,
        /// Code.
        code: String,
        /// Message.
        message: String,
    },
    /// A resolution.
    Resolution {
        /// Outcome.
        outcome: GovOutcome,
        /// Why.
        reason: String,
    },
}

/// The plugin runtime.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    registry: RwLock<Arc<Registry>>,
    config: RuntimeConfig,
    cache: Option<cache::ArtifactCache>,
    store: Arc<dyn Store>,
    clock: TxClock,
    deadline_ticks: u64,
    _ticker: EpochTicker,
}

impl Runtime {
    /// A runtime over `store`; compiled artifacts are cached in `cache_dir` if given.
    pub fn new(config: RuntimeConfig, store: Arc<dyn Store>, cache_dir: Option<&Path>) -> Result<Self, LoadError> {
        let setup = |e: &dyn std::fmt::Display| LoadError::Setup(e.to_string());
        let mut pool = PoolingAllocationConfig::default();
        let n = config.max_instances.max(1);
        // Resetting a memory for reuse is the largest per-call cost (measured: 36 µs per call
        // with a 1 MiB memset, 22 µs with madvise, 12.4 µs with PAGEMAP_SCAN; BENCHMARKS.md).
        let pagemap = config.pagemap_scan && PoolingAllocationConfig::is_pagemap_scan_available();
        let keep_resident = config.memory_keep_resident.unwrap_or(if pagemap { 2 << 20 } else { 0 });
        tracing::debug!(pagemap, keep_resident, "pooled memory reset strategy");
        // A std wasm32-wasip2 component instantiates three core modules (the program and two
        // adapter shims) with one memory and a few tables.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(4))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .max_memory_size(config.memory_bytes)
            .table_elements(config.table_elements)
            // Reset the first MiB of a reused memory with memset instead of madvise: small
            // plugins then reuse warm pages instead of faulting them in on every request.
            .linear_memory_keep_resident(keep_resident)
            .table_keep_resident(64 << 10)
            .pagemap_scan(if pagemap { wasmtime::Enabled::Yes } else { wasmtime::Enabled::No });
        let mut cfg = wasmtime::Config::new();
        cfg.consume_fuel(true)
            .epoch_interruption(true)
            .wasm_component_model(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg).map_err(|e| setup(&e))?;

        let mut linker: Linker<HostState> = Linker::new(&engine);
        bindings::app::AppPlugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| setup(&e))?;
        add_wasi(&mut linker).map_err(|e| setup(&e))?;

        let cache = match cache_dir {
            Some(dir) => Some(cache::ArtifactCache::open(dir, &engine).map_err(|e| setup(&e))?),
            None => None,
        };
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick).map_err(|e| setup(&e))?;
        let tick = config.epoch_tick.as_micros().max(1);
        let deadline_ticks = (config.deadline.as_micros().div_ceil(tick) as u64).max(1) + 1;
        Ok(Self {
            engine,
            linker,
            registry: RwLock::new(Arc::new(Registry::default())),
            config,
            cache,
            store,
            clock: TxClock(AtomicU64::new(0)),
            deadline_ticks,
            _ticker: ticker,
        })
    }

    /// The runtime's limits.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The store the runtime runs transactions against.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The current registry (a consistent snapshot).
    pub fn registry(&self) -> Arc<Registry> {
        match self.registry.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn compile(&self, bytes: &[u8], hash: &Blake3Hash) -> Result<Component, LoadError> {
        if let Some(c) = self.cache.as_ref().and_then(|c| c.load(&self.engine, hash)) {
            return Ok(c);
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        if let Some(cache) = &self.cache {
            match component.serialize() {
                Ok(artifact) => cache.store(hash, &artifact),
                Err(e) => tracing::warn!(%hash, error = %e, "could not serialize a compiled plugin"),
            }
        }
        Ok(component)
    }

    /// Check, compile and probe a component; the result can then be [`install`](Self::install)ed.
    pub fn prepare(&self, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let measurement = cgs_core::plugin::measure(bytes)?;
        let info = measurement.info;
        if RESERVED_NAMES.contains(&info.name.as_str()) {
            return Err(LoadError::ReservedName(info.name));
        }
        let component = self.compile(bytes, &measurement.blake3)?;
        for (name, _) in component.component_type().imports(&self.engine) {
            if !import_allowed(name) {
                return Err(LoadError::ForbiddenImport(name.to_string()));
            }
        }
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::WrongWorld { declared: info.world.to_string(), detail: format!("{e:#}") })?;
        let wrong_world =
            |e: wasmtime::Error| LoadError::WrongWorld { declared: info.world.to_string(), detail: format!("{e:#}") };
        let pre = match info.world {
            World::AppPlugin => Pre::App(bindings::app::AppPluginPre::new(instance_pre).map_err(wrong_world)?),
            World::Constitution => {
                Pre::Constitution(bindings::gov::ConstitutionPre::new(instance_pre).map_err(wrong_world)?)
            }
        };
        let mut plugin = Plugin {
            name: Arc::from(info.name.as_str()),
            info,
            blake3: measurement.blake3,
            routes: Vec::new(),
            actions: Vec::new(),
            pre,
            slow: AtomicU32::new(0),
        };
        let (routes, actions) = self.probe(&plugin)?;
        plugin.routes = routes;
        plugin.actions = actions;
        Ok(plugin)
    }

    /// Call `routes()` / `list-actions()` once and validate what they return.
    fn probe(&self, plugin: &Plugin) -> Result<(Vec<Route>, Vec<ActionInfo>), LoadError> {
        let probe_err = |e: DispatchError| LoadError::Probe(e.message());
        let snapshot = self.store.snapshot().map_err(|e| LoadError::Probe(e.to_string()))?;
        let call = |store: &mut WasmStore<HostState>| -> wasmtime::Result<(Vec<wit::Route>, Vec<wit::ActionInfo>)> {
            match &plugin.pre {
                Pre::App(pre) => {
                    let inst = pre.instantiate(&mut *store)?;
                    let routes = inst.cgs_plugin_http_handler().call_routes(&mut *store)?;
                    let actions = inst.cgs_plugin_actions().call_list_actions(&mut *store)?;
                    Ok((routes, actions))
                }
                Pre::Constitution(pre) => {
                    let inst = pre.instantiate(&mut *store)?;
                    let actions = inst.cgs_plugin_governance().call_list_actions(&mut *store)?;
                    Ok((Vec::new(), actions))
                }
            }
        };
        let anonymous = Caller::anonymous();
        let setup = Call {
            plugin,
            caller: &anonymous,
            tx: Transaction::new(snapshot),
            writable: false,
            gov_writable: false,
            tx_time_ms: self.clock.now_ms(),
            proposal_id: None,
            proposal_actions: Vec::new(),
        };
        let (wit_routes, wit_actions) = self.run(setup, call).0.map_err(probe_err)?;

        let mut routes = Vec::new();
        for r in wit_routes {
            let method = match r.method {
                wit::Method::Get => Method::Get,
                wit::Method::Put => Method::Put,
                wit::Method::Post => Method::Post,
                wit::Method::Patch => Method::Patch,
                wit::Method::Delete => Method::Delete,
            };
            let mut kinds = 0u8;
            if r.auth.contains(wit::CallerKinds::ANONYMOUS) {
                kinds |= CallerKinds::ANONYMOUS;
            }
            if r.auth.contains(wit::CallerKinds::MEMBER) {
                kinds |= CallerKinds::MEMBER;
            }
            if r.auth.contains(wit::CallerKinds::USER) {
                kinds |= CallerKinds::USER;
            }
            if r.auth.contains(wit::CallerKinds::CLEANROOM) {
                kinds |= CallerKinds::CLEANROOM;
            }
            let access = match r.access {
                wit::Access::ReadOnly => Access::ReadOnly,
                wit::Access::ReadWrite => Access::ReadWrite,
            };
            routes.push(Route::new(method, &r.path, CallerKinds(kinds), access)?);
        }
        RouteTable::default().check(&plugin.info.name, &routes)?;

        let mut actions = Vec::new();
        for a in wit_actions {
            let ok = match plugin.info.world {
                World::AppPlugin => a.name.strip_prefix(&format!("{}.", plugin.info.name)).is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                }),
                World::Constitution => {
                    !a.name.is_empty()
                        && a.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                }
            };
            if !ok {
                let why = match plugin.info.world {
                    World::AppPlugin => format!("plugin actions are named `{}.<snake_case>`", plugin.info.name),
                    World::Constitution => "core actions are snake_case names without a plugin prefix".to_string(),
                };
                return Err(LoadError::InvalidAction(a.name, why));
            }
            if actions.iter().any(|x: &ActionInfo| x.name == a.name) {
                return Err(LoadError::InvalidAction(a.name, "declared twice".into()));
            }
            actions.push(ActionInfo { name: a.name, description: a.description });
        }
        Ok((routes, actions))
    }

    /// Install a prepared plugin, replacing any plugin of the same name, atomically: calls that
    /// already started keep the version they matched; later calls see the new one.
    pub fn install(&self, plugin: Plugin) -> Result<Arc<Plugin>, LoadError> {
        let mut guard = match self.registry.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let current = guard.clone();
        current.routes.check(&plugin.info.name, &plugin.routes)?;
        if plugin.info.world == World::Constitution
            && let Some(other) = current
                .plugins
                .values()
                .find(|p| p.info.world == World::Constitution && p.info.name != plugin.info.name)
        {
            return Err(LoadError::WrongWorld {
                declared: "constitution".into(),
                detail: format!("plugin `{}` is already the constitution; replace it instead", other.info.name),
            });
        }
        let plugin = Arc::new(plugin);
        let mut next = Registry { plugins: current.plugins.clone(), routes: current.routes.clone() };
        next.routes.replace(&plugin.info.name, plugin.routes.clone());
        next.plugins.insert(plugin.info.name.clone(), plugin.clone());
        *guard = Arc::new(next);
        tracing::info!(plugin = %plugin.info.name, version = %plugin.info.version, blake3 = %plugin.blake3, "plugin installed");
        Ok(plugin)
    }

    /// Whether `plugin` could be installed now (its routes conflict with no other plugin's).
    pub fn check_install(&self, plugin: &Plugin) -> Result<(), LoadError> {
        self.registry().routes.check(&plugin.info.name, &plugin.routes)
    }

    /// Install `plugin`, replacing the constitution if it is one (under any name).
    pub fn replace(&self, plugin: Plugin) -> Result<Arc<Plugin>, LoadError> {
        if plugin.info.world == World::Constitution {
            let old: Vec<String> = self
                .registry()
                .plugins()
                .filter(|p| p.info.world == World::Constitution && p.info.name != plugin.info.name)
                .map(|p| p.info.name.clone())
                .collect();
            for name in old {
                self.uninstall(&name);
            }
        }
        self.install(plugin)
    }

    /// Remove the plugin `name` (its routes stop being served; calls in flight finish).
    pub fn uninstall(&self, name: &str) {
        let mut guard = match self.registry.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let current = guard.clone();
        if current.plugins.contains_key(name) {
            let mut next = Registry { plugins: current.plugins.clone(), routes: current.routes.clone() };
            next.plugins.remove(name);
            next.routes.replace(name, Vec::new());
            *guard = Arc::new(next);
            tracing::info!(plugin = %name, "plugin removed");
        }
    }

    /// Transaction time now (ms since the epoch, never going backwards).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Prepare and install.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        let plugin = self.prepare(bytes)?;
        self.install(plugin)
    }

    /// Run one request: execute it in a fresh instance and, if it wrote, commit its write set;
    /// a commit conflict re-executes it. Writes commit only if the plugin returns a response on a
    /// read-write route.
    pub async fn handle(&self, req: &PluginRequest) -> Result<PluginResponse, DispatchError> {
        let mut attempt = 0;
        loop {
            let executed = if req.plugin.slow.load(Ordering::Relaxed) >= SLOW_STRIKES {
                off_executor(|| self.execute(req))?
            } else {
                let started = Instant::now();
                // wasmtime-wasi's synchronous stdio shims (a guest printing, or panicking) enter
                // tokio with `block_on`, which panics on an async worker. Such a call is
                // re-executed off the worker (nothing was committed), and the plugin's calls
                // stay there.
                let executed = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.execute(req))) {
                    Ok(executed) => executed,
                    Err(_) => {
                        tracing::debug!(plugin = %req.plugin.info.name, "a call needed blocking WASI I/O: calls run off the async worker from now on");
                        req.plugin.slow.store(SLOW_STRIKES, Ordering::Relaxed);
                        off_executor(|| self.execute(req))
                    }
                };
                if started.elapsed() > INLINE_BUDGET {
                    if req.plugin.slow.fetch_add(1, Ordering::Relaxed) + 1 == SLOW_STRIKES {
                        tracing::info!(plugin = %req.plugin.info.name, "slow calls: they run off the async worker from now on");
                    }
                } else if req.plugin.slow.load(Ordering::Relaxed) != 0 {
                    // Only write the shared counter when it changes: every request passes here.
                    req.plugin.slow.store(0, Ordering::Relaxed);
                }
                executed?
            };
            let Some(tx) = executed.commit else { return Ok(executed.response) };
            match self.store.commit(tx.reads, tx.writes, tx.meta).await {
                Ok(id) => {
                    let mut response = executed.response;
                    if executed.fill_tx {
                        fill_tx(&mut response.body, id);
                    }
                    response.tx_id = Some(id);
                    return Ok(response);
                }
                Err(crate::store::CommitError::Conflict(why)) => {
                    attempt += 1;
                    if attempt > self.config.conflict_retries {
                        return Err(DispatchError::Conflict(attempt));
                    }
                    tracing::debug!(plugin = %req.plugin.info.name, attempt, %why, "re-executing after a conflict");
                }
                Err(crate::store::CommitError::Store(e)) => return Err(DispatchError::Store(e.0)),
            }
        }
    }

    /// Execute one request in a fresh instance against a snapshot, without committing: the
    /// response, and the read and write sets to commit if the request wrote.
    pub fn execute(&self, req: &PluginRequest) -> Result<Executed, DispatchError> {
        let Pre::App(pre) = &req.plugin.pre else {
            return Err(DispatchError::Plugin {
                status: 404,
                code: "RouteNotFound".into(),
                message: "the constitution serves no routes".into(),
            });
        };
        let writable = req.route.access == Access::ReadWrite;
        let wit_req = wit::Request {
            method: match req.route.method {
                Method::Get => wit::Method::Get,
                Method::Put => wit::Method::Put,
                Method::Post => wit::Method::Post,
                Method::Patch => wit::Method::Patch,
                Method::Delete => wit::Method::Delete,
            },
            path: req.path.clone(),
            route: req.route.template.clone(),
            params: req.params.clone(),
            query: req.query.clone(),
            headers: req.headers.clone(),
            body: req.body.clone(),
            caller: req.caller.to_wit(),
        };
        let snapshot = self.store.snapshot().map_err(|e| DispatchError::Store(e.to_string()))?;
        let tx_time_ms = self.clock.now_ms();
        let setup = Call {
            plugin: &req.plugin,
            caller: &req.caller,
            tx: Transaction::new(snapshot),
            writable,
            gov_writable: false,
            tx_time_ms,
            proposal_id: None,
            proposal_actions: Vec::new(),
        };
        let (result, state) = self.run(setup, |store| {
            let inst = pre.instantiate(&mut *store)?;
            inst.cgs_plugin_http_handler().call_handle(&mut *store, &wit_req)
        });
        let response = match result? {
            Ok(r) => r,
            Err(e) => return Err(plugin_error(e)),
        };
        if !(200..=599).contains(&response.status) {
            return Err(DispatchError::Fault {
                plugin: req.plugin.info.name.clone(),
                kind: FaultKind::Trap,
                detail: format!("returned the invalid HTTP status {}", response.status),
            });
        }
        let fill_tx = response.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case(FILL_TX_HEADER) && v == "1");
        let headers = response
            .headers
            .into_iter()
            .filter(|(k, v)| header_allowed(k, v) && !k.eq_ignore_ascii_case(FILL_TX_HEADER))
            .collect();
        let commit = if writable && state.tx.has_writes() {
            let operation = format!("{} /app{}", req.route.method, req.path);
            // Keyed, so that the ledger files do not confirm guesses of a small request body
            // (a kill-switch reason, a short event).
            let request_digest = state.tx.blind(&[operation.as_bytes(), b"\n", &req.body].concat());
            let caller = req.caller.recorded_id(|d| state.tx.blind(d));
            let (reads, writes) = state.tx.into_sets();
            let meta = TxMeta {
                caller,
                plugin: req.plugin.info.name.clone(),
                operation,
                request_digest,
                envelope: Vec::new(),
                tx_time_ms,
            };
            Some(PendingCommit { reads, writes, meta })
        } else {
            None
        };
        Ok(Executed {
            response: PluginResponse { status: response.status, headers, body: response.body, tx_id: None },
            commit,
            fill_tx,
        })
    }

    /// Run a governance operation on `plugin` inside the transaction `tx` (shared by every
    /// action of a proposal), returning the reply and the transaction. `Apply` may write; only
    /// the constitution may write governance tables.
    #[allow(clippy::too_many_arguments)]
    pub fn gov_call(
        &self,
        plugin: &Plugin,
        call: GovCall<'_>,
        tx: Transaction,
        caller: &Caller,
        proposal_id: Option<String>,
        proposal_actions: &[GovAction],
        tx_time_ms: u64,
    ) -> (Result<GovReply, DispatchError>, Transaction) {
        let writable = matches!(call, GovCall::Apply(_));
        let gov_writable = writable && plugin.info.world == World::Constitution;
        let to_wit = |a: &GovAction| wit::Action { name: a.name.clone(), args: a.args.clone() };
        let proposal_actions = proposal_actions.iter().map(to_wit).collect();
        let setup = Call { plugin, caller, tx, writable, gov_writable, tx_time_ms, proposal_id, proposal_actions };
        let refused = |e: wit::Error| {
            let d = plugin_error(e);
            GovReply::Refused { status: d.status(), code: d.code().to_string(), message: d.message() }
        };
        let (result, state) = match (&plugin.pre, call) {
            (Pre::App(pre), GovCall::Validate(a)) => self.run(setup, |store| {
                let inst = pre.instantiate(&mut *store)?;
                Ok(inst
                    .cgs_plugin_actions()
                    .call_validate_action(&mut *store, &to_wit(a))?
                    .map_or_else(refused, |()| GovReply::Done))
            }),
            (Pre::App(pre), GovCall::Apply(a)) => self.run(setup, |store| {
                let inst = pre.instantiate(&mut *store)?;
                Ok(inst
                    .cgs_plugin_actions()
                    .call_apply_action(&mut *store, &to_wit(a))?
                    .map_or_else(refused, |()| GovReply::Done))
            }),
            (Pre::Constitution(pre), GovCall::Validate(a)) => self.run(setup, |store| {
                let inst = pre.instantiate(&mut *store)?;
                Ok(inst
                    .cgs_plugin_governance()
                    .call_validate_action(&mut *store, &to_wit(a))?
                    .map_or_else(refused, |()| GovReply::Done))
            }),
            (Pre::Constitution(pre), GovCall::Apply(a)) => self.run(setup, |store| {
                let inst = pre.instantiate(&mut *store)?;
                Ok(inst
                    .cgs_plugin_governance()
                    .call_apply_action(&mut *store, &to_wit(a))?
                    .map_or_else(refused, |()| GovReply::Done))
            }),
            (
                Pre::Constitution(pre),
                GovCall::Resolve { id, proposer_id, actions, created_at_ms, ballots, members },
            ) => {
                use bindings::gov::exports::cgs::plugin::governance as g;
                let proposal = g::Proposal {
                    id: id.to_string(),
                    proposer_id: proposer_id.to_string(),
                    actions: actions.iter().map(to_wit).collect(),
                    created_at: created_at_ms,
                };
                let ballots: Vec<g::Ballot> = ballots
                    .iter()
                    .map(|(m, approve)| g::Ballot {
                        member_id: m.clone(),
                        vote: if *approve { g::Vote::Approve } else { g::Vote::Reject },
                    })
                    .collect();
                let members: Vec<g::Member> = members
                    .iter()
                    .map(|m| g::Member {
                        id: m.id.clone(),
                        status: if m.active { g::MemberStatus::Active } else { g::MemberStatus::Accepted },
                        roles: m.roles.clone(),
                        data: m.data.clone(),
                    })
                    .collect();
                self.run(setup, |store| {
                    let inst = pre.instantiate(&mut *store)?;
                    let r = inst.cgs_plugin_governance().call_resolve(&mut *store, &proposal, &ballots, &members)?;
                    let outcome = match r.outcome {
                        g::Outcome::Open => GovOutcome::Open,
                        g::Outcome::Accepted => GovOutcome::Accepted,
                        g::Outcome::Rejected => GovOutcome::Rejected,
                    };
                    Ok(GovReply::Resolution { outcome, reason: r.reason })
                })
            }
            (Pre::App(_), GovCall::Resolve { .. }) => {
                let msg = format!("plugin `{}` is not the constitution", plugin.info.name);
                return (
                    Err(DispatchError::Plugin { status: 500, code: "NotTheConstitution".into(), message: msg }),
                    setup.tx,
                );
            }
        };
        (result, state.tx)
    }

    /// Run `f` against a fresh store for `call.plugin`; returns the result and the final host
    /// state (with the transaction).
    fn run<R>(
        &self,
        call: Call<'_>,
        f: impl FnOnce(&mut WasmStore<HostState>) -> wasmtime::Result<R>,
    ) -> (Result<R, DispatchError>, HostState) {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtx::builder().stdout(stderr.clone()).stderr(stderr.clone()).build();
        let state = HostState {
            plugin: call.plugin.name.clone(),
            caller: call.caller.to_wit(),
            tx_time_ms: call.tx_time_ms,
            proposal_id: call.proposal_id,
            proposal_actions: call.proposal_actions,
            tx: call.tx,
            writable: call.writable,
            gov_writable: call.gov_writable,
            is_constitution: call.plugin.info.world == World::Constitution,
            limiter: Limiter {
                memory_bytes: self.config.memory_bytes,
                table_elements: self.config.table_elements,
                memory_limit_hit: false,
            },
            wasi,
            table: ResourceTable::new(),
            stderr,
            store_failure: None,
        };
        let mut store = WasmStore::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.deadline_ticks);
        let result = match store.set_fuel(self.config.fuel) {
            Ok(()) => f(&mut store),
            Err(e) => Err(e),
        };
        let state = store.into_data();
        let output = state.stderr.contents();
        if !output.is_empty() {
            tracing::warn!(target: "cgs::plugin", plugin = %state.plugin, output = %String::from_utf8_lossy(&output).trim_end(), "plugin wrote to stdout/stderr");
        }
        let result = match result {
            Ok(r) => match &state.store_failure {
                Some(why) => Err(DispatchError::Store(why.clone())),
                None => Ok(r),
            },
            Err(e) => Err(self.classify(&call.plugin.info.name, e, &state, &output)),
        };
        (result, state)
    }

    fn classify(&self, plugin: &str, e: wasmtime::Error, state: &HostState, output: &[u8]) -> DispatchError {
        let fault = |kind, detail: String| DispatchError::Fault { plugin: plugin.to_string(), kind, detail };
        if state.limiter.memory_limit_hit || e.downcast_ref::<MemoryLimitExceeded>().is_some() {
            return fault(FaultKind::MemoryLimit, format!("limit {} MiB", self.config.memory_bytes >> 20));
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => fault(FaultKind::OutOfFuel, format!("{} fuel", self.config.fuel)),
            Some(Trap::Interrupt) => fault(FaultKind::Timeout, format!("{} ms", self.config.deadline.as_millis())),
            Some(trap) => {
                let text = String::from_utf8_lossy(output);
                match text.lines().find(|l| l.contains("panicked at")) {
                    Some(_) => {
                        // std prints "thread '<unnamed>' panicked at src/lib.rs:9:5:\n<message>".
                        let msg = text.split_once("panicked at").map(|(_, rest)| rest).unwrap_or_default();
                        let msg: String = msg
                            .lines()
                            .skip(1)
                            .take_while(|l| !l.starts_with("note: run with"))
                            .take(3)
                            .collect::<Vec<_>>()
                            .join(" ");
                        let msg = if msg.trim().is_empty() { trap.to_string() } else { truncate(msg.trim(), 300) };
                        fault(FaultKind::Panic, msg)
                    }
                    None => fault(FaultKind::Trap, trap.to_string()),
                }
            }
            None => {
                let text = format!("{e:#}");
                if text.contains("concurrent") && text.contains("limit") {
                    DispatchError::Busy(text)
                } else {
                    fault(FaultKind::Trap, truncate(&text, 300))
                }
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn plugin_error(e: wit::Error) -> DispatchError {
    let status = match e.kind {
        wit::ErrorKind::BadRequest => 400,
        wit::ErrorKind::Unauthorized => 401,
        wit::ErrorKind::Forbidden => 403,
        wit::ErrorKind::NotFound => 404,
        wit::ErrorKind::NotAllowedInState => 405,
        wit::ErrorKind::Conflict => 409,
        wit::ErrorKind::PreconditionFailed => 412,
        wit::ErrorKind::TooLarge => 413,
        wit::ErrorKind::TooManyRequests => 429,
        wit::ErrorKind::Unavailable => 503,
        wit::ErrorKind::Internal => 500,
    };
    let code = if !e.code.is_empty() && e.code.len() <= 64 && e.code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        e.code
    } else {
        "PluginError".to_string()
    };
    DispatchError::Plugin { status, code, message: truncate(&e.message, 1000) }
}

/// Headers a plugin may set on its response.
fn header_allowed(name: &str, value: &str) -> bool {
    let token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let reserved = matches!(
        name,
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
            | "date"
            | "server"
    ) || name.starts_with("x-cgs-")
        || name.starts_with("proxy-");
    token && !reserved && value.len() <= 4096 && !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_allow_list() {
        for ok in
            ["cgs:plugin/kv@0.1.0", "wasi:cli/stderr@0.2.6", "wasi:io/streams@0.2.0", "wasi:random/insecure-seed@0.2.3"]
        {
            assert!(import_allowed(ok), "{ok}");
        }
        for bad in [
            "cgs:plugin/kv@0.2.0",
            "wasi:filesystem/types@0.2.6",
            "wasi:sockets/tcp@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:random/random@0.2.6",
            "wasi:clocks/wall-clock@0.2.6",
            "wasi:cli/stderr@0.3.0",
            "wasi:cli/stderr@0.2.x",
            "wasi:cli/stderr",
        ] {
            assert!(!import_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn response_headers_are_filtered() {
        assert!(header_allowed("content-type", "application/json"));
        assert!(header_allowed("location", "/app/x"));
        assert!(!header_allowed("x-cgs-tx-id", "1.1"));
        assert!(!header_allowed("content-length", "3"));
        assert!(!header_allowed("Content-Type", "x"));
        assert!(!header_allowed("x-a", "a\r\nb: c"));
    }
}
