//! One call in a fresh store: the host state and limits it runs with, and how a trap, fuel or
//! deadline exhaustion, a memory-cap hit or a plugin's error becomes a [`DispatchError`].

use cgs_core::plugin::World;
use wasmtime::component::ResourceTable;
use wasmtime::{Store as WasmStore, Trap};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::bindings::types as wit;
use super::state::{HostState, Limiter, MemoryLimitExceeded, STDERR_CAPACITY};
use super::{Caller, DispatchError, FaultKind, Plugin, Runtime};
use crate::store::Transaction;

/// Setup of one call.
pub(super) struct Call<'a> {
    pub(super) plugin: &'a Plugin,
    pub(super) caller: &'a Caller,
    pub(super) tx: Transaction,
    pub(super) writable: bool,
    /// Governance tables are writable (the constitution applying a core action).
    pub(super) gov_writable: bool,
    pub(super) tx_time_ms: u64,
    pub(super) proposal_id: Option<String>,
    pub(super) proposal_actions: Vec<wit::Action>,
}

impl Runtime {
    /// Run `f` against a fresh store for `call.plugin`; returns the result and the final host
    /// state (with the transaction).
    pub(super) fn run<R>(
        &self,
        call: Call<'_>,
        f: impl FnOnce(&mut WasmStore<HostState>) -> wasmtime::Result<R>,
    ) -> (Result<R, DispatchError>, HostState) {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtx::builder().stdout(stderr.clone()).stderr(stderr.clone()).build();
        let state = HostState {
            plugin: call.plugin.name.clone(),
            caller: super::caller::to_wit(call.caller),
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
            fuel_used: 0,
        };
        let mut store = WasmStore::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.deadline_ticks);
        let result = match store.set_fuel(self.config.fuel) {
            Ok(()) => f(&mut store),
            Err(e) => Err(e),
        };
        let used = store.get_fuel().map_or(self.config.fuel, |left| self.config.fuel.saturating_sub(left));
        call.plugin.fuel_used.fetch_add(used, std::sync::atomic::Ordering::Relaxed);
        self.totals.0.fetch_add(used, std::sync::atomic::Ordering::Relaxed);
        let mut state = store.into_data();
        state.fuel_used = used;
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

pub(super) fn plugin_error(e: wit::Error) -> DispatchError {
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
