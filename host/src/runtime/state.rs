//! Per-request host state (one per `Store`) and the host side of `kv`, `context` and `log`.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{context, kv, log, types};
use crate::store::{KeyRange, Transaction};

/// Largest key a plugin may write.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value a plugin may write.
pub const MAX_VALUE_BYTES: usize = 4 << 20;
/// Most entries one `range` call returns.
pub const MAX_RANGE: u32 = 10_000;
/// Bytes of guest stderr kept per request (panic messages).
pub const STDERR_CAPACITY: usize = 16 << 10;

/// Tracks memory growth against the per-instance cap and remembers whether it was hit.
pub(crate) struct Limiter {
    pub memory_bytes: usize,
    pub table_elements: usize,
    pub memory_limit_hit: bool,
}

/// The reason recorded when a guest exceeds its memory cap.
#[derive(Debug, thiserror::Error)]
#[error("plugin exceeded its memory limit of {limit} bytes (asked for {desired})")]
pub(crate) struct MemoryLimitExceeded {
    pub limit: usize,
    pub desired: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_limit_hit = true;
            // An error traps the guest right at the failed `memory.grow`, so the request fails
            // with a precise cause instead of whatever the guest's allocator does on OOM.
            return Err(MemoryLimitExceeded { limit: self.memory_bytes, desired }.into());
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }
}

/// Everything one plugin call can reach.
pub(crate) struct HostState {
    pub plugin: Arc<str>,
    pub caller: types::Caller,
    pub tx_time_ms: u64,
    pub proposal_id: Option<String>,
    /// During governance calls: every action of the proposal.
    pub proposal_actions: Vec<types::Action>,
    pub tx: Transaction,
    pub writable: bool,
    /// Governance tables are writable (the constitution applying a core action).
    pub gov_writable: bool,
    /// The plugin is the constitution (it reads every governance table but `gov.private.*`).
    pub is_constitution: bool,
    pub limiter: Limiter,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub stderr: MemoryOutputPipe,
    /// A store failure seen by a `kv` call; it aborts the request even if the guest ignores it.
    pub store_failure: Option<String>,
    /// Fuel the call used (set when it ends).
    pub fuel_used: u64,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The governance tables (after `gov.`) an app plugin may read: who the members are, the
/// proposals (a plugin derives states from open proposals), the service status and what runs.
/// Everything else — `private.*` above all, but also user identities, issuers, node policy — is
/// refused as `invalid-table`, as if it did not exist.
pub const APP_READABLE_GOV_TABLES: &[&str] = &["members", "proposals", "service", "plugins", "constitution"];

/// A table name a plugin uses, resolved to the internal name.
enum TableRef {
    Own(String),
    Governance(String),
    /// Another plugin's table (`app.<plugin>.<table>`): read-only.
    Other(String),
}

fn valid_table_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b))
}

impl HostState {
    fn resolve(&self, table: &str) -> Result<TableRef, kv::KvError> {
        if !valid_table_name(table) {
            return Err(kv::KvError::InvalidTable);
        }
        if let Some(rest) = table.strip_prefix("gov.") {
            // `gov.private.*` (contract secrets, OIDC signing keys) is the host's alone; the
            // constitution sees the rest; an app plugin sees what it needs to follow governance.
            let visible = if self.is_constitution {
                !rest.is_empty() && !rest.starts_with("private.")
            } else {
                APP_READABLE_GOV_TABLES.contains(&rest)
            };
            return if visible { Ok(TableRef::Governance(table.into())) } else { Err(kv::KvError::InvalidTable) };
        }
        if let Some(rest) = table.strip_prefix("app.") {
            // `app.<plugin>.<table>`: never another plugin's private tables.
            // `p` must be a plugin: `app.gov.<t>` would otherwise be a back door to `gov.<t>`.
            return match rest.split_once('.') {
                Some((p, t))
                    if !p.is_empty()
                        && !super::load::RESERVED_NAMES.contains(&p)
                        && !t.is_empty()
                        && !t.starts_with("private.") =>
                {
                    Ok(TableRef::Other(rest.to_string()))
                }
                _ => Err(kv::KvError::InvalidTable),
            };
        }
        Ok(TableRef::Own(format!("{}.{}", self.plugin, table)))
    }

    fn readable(&self, table: &str) -> Result<String, kv::KvError> {
        Ok(match self.resolve(table)? {
            TableRef::Own(n) | TableRef::Governance(n) | TableRef::Other(n) => n,
        })
    }

    fn writable_table(&self, table: &str) -> Result<String, kv::KvError> {
        match self.resolve(table)? {
            TableRef::Governance(n) if self.writable && self.gov_writable => Ok(n),
            TableRef::Governance(_) | TableRef::Other(_) => Err(kv::KvError::ReadOnly),
            TableRef::Own(_) if !self.writable => Err(kv::KvError::ReadOnly),
            TableRef::Own(n) => Ok(n),
        }
    }

    fn store_failed(&mut self, e: impl std::fmt::Display) -> kv::KvError {
        self.store_failure = Some(e.to_string());
        kv::KvError::Unavailable
    }
}

fn tx_id(t: crate::store::TxId) -> types::TxId {
    types::TxId { term: t.term, seqno: t.seqno }
}

impl types::Host for HostState {}

impl kv::Host for HostState {
    fn get(&mut self, table: String, key: Vec<u8>) -> Result<Option<Vec<u8>>, kv::KvError> {
        let name = self.readable(&table)?;
        match self.tx.get(&name, &key) {
            Ok(v) => Ok(v.map(|v| v.value)),
            Err(e) => Err(self.store_failed(e)),
        }
    }

    fn get_versioned(&mut self, table: String, key: Vec<u8>) -> Result<Option<kv::Entry>, kv::KvError> {
        let name = self.readable(&table)?;
        match self.tx.get(&name, &key) {
            Ok(v) => Ok(v.map(|v| kv::Entry { key, value: v.value, version: tx_id(v.version) })),
            Err(e) => Err(self.store_failed(e)),
        }
    }

    fn version(&mut self, table: String, key: Vec<u8>) -> Result<Option<types::TxId>, kv::KvError> {
        let name = self.readable(&table)?;
        match self.tx.get(&name, &key) {
            Ok(v) => Ok(v.map(|v| tx_id(v.version))),
            Err(e) => Err(self.store_failed(e)),
        }
    }

    fn put(&mut self, table: String, key: Vec<u8>, value: Vec<u8>) -> Result<(), kv::KvError> {
        let name = self.writable_table(&table)?;
        if key.len() > MAX_KEY_BYTES || value.len() > MAX_VALUE_BYTES {
            return Err(kv::KvError::TooLarge);
        }
        self.tx.put(&name, &key, value);
        Ok(())
    }

    fn delete(&mut self, table: String, key: Vec<u8>) -> Result<bool, kv::KvError> {
        let name = self.writable_table(&table)?;
        match self.tx.delete(&name, &key) {
            Ok(existed) => Ok(existed),
            Err(e) => Err(self.store_failed(e)),
        }
    }

    fn range(
        &mut self,
        table: String,
        start: Option<Vec<u8>>,
        end: Option<Vec<u8>>,
        limit: u32,
        reverse: bool,
    ) -> Result<Vec<kv::Entry>, kv::KvError> {
        let name = self.readable(&table)?;
        let range = KeyRange { start, end };
        match self.tx.range(&name, &range, limit.min(MAX_RANGE) as usize, reverse) {
            Ok(entries) => Ok(entries
                .into_iter()
                .map(|e| kv::Entry { key: e.key, value: e.value, version: tx_id(e.version) })
                .collect()),
            Err(e) => Err(self.store_failed(e)),
        }
    }

    fn append(&mut self, table: String, prefix: Vec<u8>, value: Vec<u8>) -> Result<(), kv::KvError> {
        let name = self.writable_table(&table)?;
        if prefix.len() + 12 > MAX_KEY_BYTES || value.len() > MAX_VALUE_BYTES {
            return Err(kv::KvError::TooLarge);
        }
        self.tx.append(&name, &prefix, value);
        Ok(())
    }

    fn blind(&mut self, data: Vec<u8>) -> Vec<u8> {
        self.tx.blind(&data).to_vec()
    }
}

impl context::Host for HostState {
    fn current_caller(&mut self) -> types::Caller {
        self.caller.clone()
    }

    fn tx_time(&mut self) -> u64 {
        self.tx_time_ms
    }

    fn plugin_name(&mut self) -> String {
        self.plugin.to_string()
    }

    fn proposal_id(&mut self) -> Option<String> {
        self.proposal_id.clone()
    }

    fn proposal_actions(&mut self) -> Vec<types::Action> {
        self.proposal_actions.clone()
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let plugin = &*self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(target: "cgs::plugin", plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "cgs::plugin", plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "cgs::plugin", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "cgs::plugin", plugin, "{message}"),
            log::Level::Error => tracing::error!(target: "cgs::plugin", plugin, "{message}"),
        }
    }
}
