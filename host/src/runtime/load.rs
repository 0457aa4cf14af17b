//! Loading a component: measure it, refuse reserved names and forbidden imports, compile it
//! (or load its authenticated cached artifact) and probe its routes and actions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};

use cgs_core::Blake3Hash;
use cgs_core::plugin::World;
use wasmtime::Store as WasmStore;
use wasmtime::component::Component;

use super::bindings::types as wit;
use super::instance::Call;
use super::registry::{Pre, WorldPre};
use super::state::HostState;
use super::wasi::import_allowed;
use super::{
    Access, ActionInfo, Caller, CallerKinds, DispatchError, LoadError, Method, Plugin, Route, RouteTable, Runtime,
    bindings, routes,
};
use crate::store::Transaction;

/// Names a plugin may not take.
pub(super) const RESERVED_NAMES: &[&str] =
    &["gov", "sys", "node", "app", "cleanroom", "oidc", "private", "public", "cgs", routes::HOST];

impl Runtime {
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
        // Every forbidden import at once: a plugin using files and sockets hears about both.
        let component_type = component.component_type();
        let named: Vec<String> = component_type
            .imports(&self.engine)
            .map(|(name, _)| name)
            .filter(|n| !import_allowed(n))
            .map(|n| format!("`{n}`"))
            .collect();
        if !named.is_empty() {
            return Err(LoadError::ForbiddenImport(named.join(", ")));
        }
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::WrongWorld { declared: info.world.to_string(), detail: format!("{e:#}") })?;
        let wrong_world =
            |e: wasmtime::Error| LoadError::WrongWorld { declared: info.world.to_string(), detail: format!("{e:#}") };
        let actions = bindings::ActionsIndices::new(&instance_pre).map_err(wrong_world)?;
        let world = match info.world {
            World::AppPlugin => WorldPre::App(bindings::app::AppPluginPre::new(instance_pre).map_err(wrong_world)?),
            World::Constitution => {
                WorldPre::Constitution(bindings::gov::ConstitutionPre::new(instance_pre).map_err(wrong_world)?)
            }
        };
        let pre = Pre { world, actions };
        let mut plugin = Plugin {
            name: Arc::from(info.name.as_str()),
            info,
            blake3: measurement.blake3,
            routes: Vec::new(),
            actions: Vec::new(),
            api: cgs_core::plugin::read_api(bytes)?,
            pre,
            slow: AtomicU32::new(0),
            fuel_used: AtomicU64::new(0),
            slow_moves: AtomicU64::new(0),
            lane: Default::default(),
            lane_active: std::sync::atomic::AtomicUsize::new(0),
            lane_entries: AtomicU64::new(0),
            outside: std::sync::atomic::AtomicUsize::new(0),
        };
        let (routes, actions) = self.probe(&plugin)?;
        // A description of a route the plugin does not serve is a mistake that would drift.
        let undescribed: Vec<&String> = plugin
            .api
            .keys()
            .filter(|k| !routes.iter().any(|r| format!("{} {}", r.method.as_str(), r.template) == **k))
            .collect();
        if !undescribed.is_empty() {
            return Err(LoadError::NotAPlugin(cgs_core::plugin::PluginError::InvalidApi(format!(
                "it describes {}, which the plugin's router does not serve",
                undescribed.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ))));
        }
        plugin.routes = routes;
        plugin.actions = actions;
        Ok(plugin)
    }

    /// Call `routes()` / `list-actions()` once and validate what they return.
    fn probe(&self, plugin: &Plugin) -> Result<(Vec<Route>, Vec<ActionInfo>), LoadError> {
        let probe_err = |e: DispatchError| LoadError::Probe(e.message());
        let snapshot = self.store.snapshot().map_err(|e| LoadError::Probe(e.to_string()))?;
        let call = |store: &mut WasmStore<HostState>| -> wasmtime::Result<(Vec<wit::Route>, Vec<wit::ActionInfo>)> {
            match &plugin.pre.world {
                WorldPre::App(pre) => {
                    let inst = pre.instantiate(&mut *store)?;
                    let routes = inst.cgs_plugin_http_handler().call_routes(&mut *store)?;
                    Ok((routes, inst.cgs_plugin_actions().call_list_actions(&mut *store)?))
                }
                WorldPre::Constitution(_) => {
                    Ok((Vec::new(), plugin.pre.instantiate_actions(store)?.call_list_actions(&mut *store)?))
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

    /// Prepare and install.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        let plugin = self.prepare(bytes)?;
        self.install(plugin)
    }
}
