//! The reconciler: makes what a node runs follow what its ledger says, on every replica.
//!
//! Governance decides which plugins and which constitution are active and whether the service
//! is open by writing `gov.plugins`, `gov.constitution` and `gov.service` — in an accepted
//! proposal on whichever node led. Every replica applies that entry; the ledger then announces
//! the change ([`Ledger::installed_state_changes`]), and this one task loads the code the
//! applied state names (from `gov.blobs`, compiled or taken from the cache), unloads what it no
//! longer names, and sets the open flag. Nothing on the write path installs anything: a leader
//! and a follower run the same code from the same applied state.
//!
//! A write that changed the installed state waits for [`Reconciler::caught_up`] before it
//! answers, so the caller who just activated a plugin can use it at once.
//!
//! A plugin that cannot be loaded (its code missing, refused by this host, or its routes
//! clashing with a plugin loaded before it) never stops the node: it is skipped, recorded in
//! [`Reconciler::failures`] (shown by `GET /gov/plugins` and logged), and requests that match no
//! loaded route answer `503 PluginUnavailable` naming it. Governance keeps working, so members
//! can vote the fix. Only an unreadable or corrupt governance state stops a node from starting.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cgs_core::Blake3Hash;

use crate::ledger::Ledger;
use crate::runtime::Runtime;
use crate::store::Store as _;

/// Why the installed state could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// The store could not be read.
    #[error("the ledger state could not be read: {0}")]
    Store(String),
    /// A governance record the reconciler reads is not what the host writes.
    #[error("corrupt {table} record: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        detail: String,
    },
}

// What the reconciler reads: the host-owned governance tables.
use crate::schema::tables::{BLOBS, CONSTITUTION, PLUGINS, SERVICE};

/// Loads what the applied state names into the runtime; see the module documentation.
pub struct Reconciler {
    runtime: Arc<Runtime>,
    ledger: Arc<Ledger>,
    open: AtomicBool,
    /// Plugins the applied state names that could not be loaded: name → why.
    failures: std::sync::RwLock<BTreeMap<String, String>>,
    /// The installed-state change (seqno) last reconciled.
    done: tokio::sync::watch::Sender<u64>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Reconciler {
    /// Reconcile once now (an error here is the caller's: a node that cannot load its active
    /// plugins must not start), then follow every later change in a task.
    pub fn start(runtime: Arc<Runtime>, ledger: Arc<Ledger>) -> Result<Arc<Self>, ReconcileError> {
        let mut changes = ledger.installed_state_changes();
        let first = *changes.borrow_and_update();
        let (done, _) = tokio::sync::watch::channel(0);
        let this = Arc::new(Self {
            runtime,
            ledger,
            open: AtomicBool::new(false),
            failures: Default::default(),
            done,
            task: Default::default(),
        });
        this.reconcile()?;
        this.done.send_replace(first);
        let weak = Arc::downgrade(&this);
        let task = tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let target = *changes.borrow_and_update();
                let Some(this) = weak.upgrade() else { return };
                let worker = this.clone();
                // Compiling a plugin takes CPU for a while: off the async executor.
                match tokio::task::spawn_blocking(move || worker.reconcile()).await {
                    Ok(Ok(())) => {}
                    // Logged and retried at the next change or restart; the node keeps serving
                    // what it had.
                    Ok(Err(e)) => tracing::error!(error = %e, "could not load what governance made active"),
                    Err(e) => tracing::error!(error = %e, "the reconciler panicked"),
                }
                this.done.send_replace(target);
            }
        });
        *this.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(this)
    }

    /// The plugins the applied state names that this node could not load, with why.
    pub fn failures(&self) -> BTreeMap<String, String> {
        self.failures.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the service is open (app routes served), as the applied state says.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Wait until the installed-state change at `seqno` (or a later one) has been reconciled;
    /// false on timeout.
    pub async fn caught_up(&self, seqno: u64, timeout: Duration) -> bool {
        let mut rx = self.done.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|done| *done >= seqno)).await.is_ok_and(|r| r.is_ok())
    }

    /// Load the plugins and constitution the applied state names, unload the others, and set
    /// the open flag.
    pub fn reconcile(&self) -> Result<(), ReconcileError> {
        let snap = self.ledger.snapshot().map_err(|e| ReconcileError::Store(e.to_string()))?;
        let json = |table: &'static str, key: &[u8]| -> Result<Option<serde_json::Value>, ReconcileError> {
            match snap.get(table, key).map_err(|e| ReconcileError::Store(e.to_string()))? {
                Some(v) => serde_json::from_slice(&v.value)
                    .map(Some)
                    .map_err(|e| ReconcileError::Corrupt { table, detail: e.to_string() }),
                None => Ok(None),
            }
        };
        let hash = |table: &'static str, v: &serde_json::Value| -> Result<Blake3Hash, ReconcileError> {
            v["blake3"]
                .as_str()
                .unwrap_or_default()
                .parse()
                .map_err(|e: cgs_core::ParseIdError| ReconcileError::Corrupt { table, detail: e.to_string() })
        };
        let mut wanted: BTreeMap<String, Blake3Hash> = BTreeMap::new();
        let rows = snap
            .range(PLUGINS, &crate::store::KeyRange::default(), usize::MAX, false)
            .map_err(|e| ReconcileError::Store(e.to_string()))?;
        for row in rows {
            let v: serde_json::Value = serde_json::from_slice(&row.value)
                .map_err(|e| ReconcileError::Corrupt { table: PLUGINS, detail: e.to_string() })?;
            wanted.insert(String::from_utf8_lossy(&row.key).into_owned(), hash(PLUGINS, &v)?);
        }
        let constitution = match json(CONSTITUTION, b"current")? {
            Some(c) => Some((c["name"].as_str().unwrap_or_default().to_string(), hash(CONSTITUTION, &c)?)),
            None => None,
        };
        let registry = self.runtime.registry();
        // The constitution first (it may be replaced under another name).
        let mut install: Vec<(String, Blake3Hash)> = Vec::new();
        if let Some((name, h)) = &constitution
            && registry.get(name).is_none_or(|p| p.blake3 != *h)
        {
            install.push((name.clone(), *h));
        }
        for (name, h) in &wanted {
            if registry.get(name).is_none_or(|p| p.blake3 != *h) {
                install.push((name.clone(), *h));
            }
        }
        // Unload what governance no longer names first: its routes must not block what replaced it.
        // (Not a constitution: a new one replaces it only once it has loaded, so a node never
        // loses governance to a constitution that does not load here.)
        for p in registry.plugins().filter(|p| p.info.world != cgs_core::plugin::World::Constitution) {
            let keep =
                wanted.contains_key(&p.info.name) || constitution.as_ref().is_some_and(|(n, _)| n == &p.info.name);
            if !keep {
                self.runtime.uninstall(&p.info.name);
            }
        }
        let mut failures = BTreeMap::new();
        for (name, hash) in install {
            if let Err(why) = self.load(snap.as_ref(), &name, hash) {
                tracing::error!(plugin = %name, %hash, error = %why, "an active plugin could not be loaded; its routes answer 503");
                // Whatever version of it ran before is not what governance says now.
                if registry.get(&name).is_some_and(|p| p.info.world != cgs_core::plugin::World::Constitution) {
                    self.runtime.uninstall(&name);
                }
                failures.insert(name, why);
            }
        }
        *self.failures.write().unwrap_or_else(|e| e.into_inner()) = failures;
        let status = json(SERVICE, b"status")?;
        self.open.store(status.is_some_and(|s| s["status"] == "Open"), Ordering::Release);
        Ok(())
    }
}

impl Reconciler {
    /// Load plugin `name` at `hash` from `gov.blobs` and install it; why not, in words.
    fn load(&self, snap: &dyn crate::store::Snapshot, name: &str, hash: Blake3Hash) -> Result<(), String> {
        let bytes = snap
            .get(BLOBS, hash.to_hex().as_bytes())
            .map_err(|e| format!("the ledger state could not be read: {e}"))?
            .ok_or_else(|| format!("its code ({hash}) is not in gov.blobs"))?;
        let plugin = self.runtime.prepare(&bytes.value).map_err(|e| format!("does not load: {e}"))?;
        if plugin.info.name != name {
            return Err(format!("the component at {hash} is named `{}`, not `{name}`", plugin.info.name));
        }
        self.runtime.replace(plugin).map(|_| ()).map_err(|e| format!("does not install: {e}"))
    }
}

impl Drop for Reconciler {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }
}
