//! The plugin runtime: wasmtime with a trimmed feature set, a pooling allocator, one `Store` per
//! call from a pre-instantiated component, and fuel, epoch-deadline and memory limits.
//!
//! * [`Runtime::prepare`] checks a component (is it a plugin, which world, which imports),
//!   compiles it (or loads the authenticated on-disk artifact) and probes its routes and actions;
//!   [`Runtime::install`] swaps it into the registry atomically.
//! * [`Runtime::handle`] runs one request in a fresh instance inside a store transaction and
//!   commits the write set only if the plugin succeeded on a read-write route. A trap, fuel
//!   exhaustion, deadline or memory-cap hit fails that request alone; the instance is dropped.
//!
//! Layout, top-down: `load.rs` (measure, check and compile a component, probe it),
//! `registry.rs` (the installed plugins; install, replace, uninstall), `dispatch.rs` (a request:
//! execute, commit, retry on conflict), `gov_call.rs` (validate, apply, resolve), `instance.rs`
//! (one fresh store per call, and how its failures map to errors), `caller.rs`, `wasi.rs` (the
//! import allow-list and its linking), `clock.rs`, `state.rs` (the host side of the WIT
//! interfaces), `routes.rs`, `cache.rs` (compiled artifacts), `error.rs`.

mod bindings;
mod cache;
pub(crate) use cache::constant_time_eq;
mod caller;
mod cleanroom;
mod clock;
mod dispatch;
mod error;
mod gov_call;
mod instance;
mod load;
mod registry;
mod routes;
mod state;
mod wasi;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use caller::{Caller, CallerKind};
pub use dispatch::{Executed, FILL_TX_HEADER, PendingCommit, PluginRequest, PluginResponse};
pub use error::{DispatchError, FaultKind, LoadError};
pub use gov_call::{GovAction, GovCall, GovMember, GovOutcome, GovReply};
pub use registry::{ActionInfo, Plugin, Registry};
pub use routes::{Access, CallerKinds, HOST as HOST_ROUTES, Method, Route, RouteMatch, RouteTable, host_routes};

use crate::store::Store;
use clock::{EpochTicker, TxClock};
use state::HostState;
use wasi::add_wasi;

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
    /// Fuel all calls used, and moves off the async worker, since the node started: node-wide
    /// counters that never go down (a plugin's own restart at an upgrade).
    totals: (AtomicU64, AtomicU64),
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
            totals: Default::default(),
        })
    }

    /// Fuel all plugin calls used since the node started, and the times calls were moved off
    /// the async worker (`/metrics`; never decreasing, unlike [`Plugin::counters`]).
    pub fn totals(&self) -> (u64, u64) {
        (
            self.totals.0.load(std::sync::atomic::Ordering::Relaxed),
            self.totals.1.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    pub(super) fn count_slow_move(&self, plugin: &Plugin) {
        plugin.slow_moves.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.totals.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

    /// Transaction time now (ms since the epoch, never going backwards).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}
