//! The installed plugins: [`Plugin`], the [`Registry`] snapshot every call reads, and
//! installing, replacing and removing plugins atomically.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use cgs_core::Blake3Hash;
use cgs_core::plugin::{PluginInfo, World};

use super::state::HostState;
use super::{LoadError, Method, Route, RouteMatch, RouteTable, Runtime, bindings};

/// A governance action a plugin owns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActionInfo {
    /// `<plugin>.<action>` or a core action name.
    pub name: String,
    /// Description.
    pub description: String,
}

/// A plugin ready to instantiate: its world's bindings, and where its `actions` export is
/// (every plugin has one).
pub(super) struct Pre {
    pub world: WorldPre,
    pub actions: bindings::ActionsIndices,
}

pub(super) enum WorldPre {
    App(bindings::app::AppPluginPre<HostState>),
    Constitution(bindings::gov::ConstitutionPre<HostState>),
}

impl Pre {
    /// A fresh instance in `store`, and its `actions` export.
    pub fn instantiate_actions(&self, store: &mut wasmtime::Store<HostState>) -> wasmtime::Result<bindings::Actions> {
        let pre = match &self.world {
            WorldPre::App(p) => p.instance_pre(),
            WorldPre::Constitution(p) => p.instance_pre(),
        };
        let instance = pre.instantiate(&mut *store)?;
        self.actions.load(&mut *store, &instance)
    }
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
    /// Its routes' descriptions for `/openapi.json` (`cgs-plugin-api` section), by
    /// `"METHOD /template"`; each names one of `routes`.
    pub api: std::collections::BTreeMap<String, cgs_core::plugin::RouteDoc>,
    pub(super) name: Arc<str>,
    pub(super) pre: Pre,
    /// Calls in a row that took longer than [`INLINE_BUDGET`]; at [`SLOW_STRIKES`] the plugin's
    /// calls leave the async worker (`block_in_place`) for good.
    pub(super) slow: AtomicU32,
    /// Fuel its calls used, in total (for `/metrics`).
    pub(super) fuel_used: AtomicU64,
    /// Times its calls were moved off the async worker (for `/metrics`).
    pub(super) slow_moves: AtomicU64,
    /// The contended lane: a write whose commit conflicted is re-run holding it, and while any
    /// write holds or awaits it, new writes of the plugin queue for it too. Contended writes (a
    /// hot key: a budget counter) then run one after another instead of conflicting with each
    /// other until they give up (see `Runtime::handle`).
    pub(super) lane: Arc<tokio::sync::Mutex<()>>,
    /// Writes holding or awaiting the lane.
    pub(super) lane_active: std::sync::atomic::AtomicUsize,
    /// Writes that entered the lane (for `/metrics`; not those that gave up waiting).
    pub(super) lane_entries: AtomicU64,
    /// Writes running outside the lane, from before they look at it until their commit's
    /// outcome (also when their caller went away meanwhile).
    pub(super) outside: std::sync::atomic::AtomicUsize,
}

impl Plugin {
    /// Fuel this version's calls used so far, and the times its calls were moved off the async
    /// worker: `/metrics` counters (they restart at an upgrade, as Prometheus counters may).
    pub fn counters(&self) -> (u64, u64) {
        (self.fuel_used.load(Ordering::Relaxed), self.slow_moves.load(Ordering::Relaxed))
    }

    /// Writes of this version that ran in the contended lane (after a conflict, or while others
    /// were in it).
    pub fn lane_entries(&self) -> u64 {
        self.lane_entries.load(Ordering::Relaxed)
    }

    /// Writes holding or awaiting the contended lane now.
    pub fn lane_waiting(&self) -> usize {
        self.lane_active.load(Ordering::Relaxed)
    }

    /// Writes running outside the lane now, until their commit's outcome.
    pub fn writes_outside(&self) -> usize {
        self.outside.load(Ordering::Relaxed)
    }
}

/// Calls up to this long run on the async worker that received the request: handing a 20 µs
/// call to another thread costs more than the call (context switches dominated a profile of
/// the consent check). A plugin whose calls exceed it [`SLOW_STRIKES`] times in a row (a first
/// call may be slow: cold pages) is moved off the worker for good.
pub(super) const INLINE_BUDGET: Duration = Duration::from_millis(2);
/// See [`INLINE_BUDGET`].
pub(super) const SLOW_STRIKES: u32 = 3;

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

    /// The installed constitution.
    pub fn constitution(&self) -> Option<&Arc<Plugin>> {
        self.plugins.values().find(|p| p.info.world == World::Constitution)
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

impl Runtime {
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
}
