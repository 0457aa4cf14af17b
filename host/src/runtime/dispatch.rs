//! Executing a request for a plugin route: [`Runtime::handle`] runs it in a fresh instance,
//! commits its write set and re-executes it after a commit conflict; [`Runtime::execute`] is
//! one run, without the commit.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::bindings::types as wit;
use super::instance::{Call, plugin_error};
use super::registry::{INLINE_BUDGET, SLOW_STRIKES, WorldPre};
use super::{Access, Caller, DispatchError, FaultKind, Method, Plugin, Route, Runtime};
use crate::executor::off_executor;
use crate::store::{Transaction, TxId, TxMeta};

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

/// A write's place in its plugin's contended lane: counted in `lane_active` from before it
/// waits (so a request dropped while waiting is uncounted too) until it is done, and holding
/// the lane until its last commit's outcome (see [`Committing`]).
struct InLane {
    plugin: Arc<Plugin>,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// Writes of the plugin running outside the lane when this one joined it: each may commit
    /// once more and make this one's in-lane attempt conflict, so each adds a retry.
    outside_at_entry: u32,
}

/// A write of the plugin running outside the lane (optimistically), counted in `outside` from
/// before it looks at the lane until its commit's outcome or until it joins the lane.
struct Outside(Arc<Plugin>);

impl Outside {
    /// Count a write outside the lane, unless the lane is in use: then `None`, and it must queue.
    /// The two counters are written and read in opposite orders here and in [`InLane::enter`]
    /// (`SeqCst`), so a write joining the lane sees every write that may still commit outside it.
    fn start(plugin: &Arc<Plugin>) -> Option<Outside> {
        plugin.outside.fetch_add(1, Ordering::SeqCst);
        let me = Outside(plugin.clone());
        (plugin.lane_active.load(Ordering::SeqCst) == 0).then_some(me)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        self.0.outside.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The longest a write waits for its plugin's contended lane before it is answered `503
/// TransactionConflict` (retryable): the queue is bounded in time, whoever keeps it busy.
const LANE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl InLane {
    /// Queue for the lane; `None` after [`LANE_WAIT`].
    async fn enter(plugin: &Arc<Plugin>) -> Option<InLane> {
        plugin.lane_active.fetch_add(1, Ordering::SeqCst);
        let outside = plugin.outside.load(Ordering::SeqCst);
        let mut me =
            InLane { plugin: plugin.clone(), _guard: None, outside_at_entry: outside.try_into().unwrap_or(u32::MAX) };
        me._guard = Some(tokio::time::timeout(LANE_WAIT, plugin.lane.clone().lock_owned()).await.ok()?);
        plugin.lane_entries.fetch_add(1, Ordering::Relaxed);
        Some(me)
    }
}

impl Drop for InLane {
    fn drop(&mut self) {
        self.plugin.lane_active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A write's commit in flight, with the write's place (outside the lane, or in it). A commit
/// handed to the store goes on when its request is dropped (the client went away), so then the
/// place is kept until the commit's outcome, by a task that awaits it: a write joining the lane
/// meanwhile still counts it among the writes that may beat it, and the next write in the lane
/// still runs after it.
struct Committing<'g> {
    commit: Option<crate::store::CommitFuture>,
    outside: &'g mut Option<Outside>,
    lane: &'g mut Option<InLane>,
    /// The runtime the request runs on (taken when the commit starts: a drop may happen where
    /// there is none).
    runtime: Option<tokio::runtime::Handle>,
}

impl<'g> Committing<'g> {
    fn new(commit: crate::store::CommitFuture, outside: &'g mut Option<Outside>, lane: &'g mut Option<InLane>) -> Self {
        Committing { commit: Some(commit), outside, lane, runtime: tokio::runtime::Handle::try_current().ok() }
    }
}

impl std::future::Future for Committing<'_> {
    type Output = Result<TxId, crate::store::CommitError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let Some(commit) = self.commit.as_mut() else {
            return std::task::Poll::Ready(Err(crate::store::CommitError::Store(crate::store::StoreError(
                "a commit was awaited after its outcome".into(),
            ))));
        };
        let outcome = std::task::ready!(commit.as_mut().poll(cx));
        self.commit = None;
        std::task::Poll::Ready(outcome)
    }
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        // A commit that panicked is not polled again; its places go as it unwinds.
        let Some(commit) = self.commit.take().filter(|_| !std::thread::panicking()) else { return };
        let held = (self.outside.take(), self.lane.take());
        if held.0.is_none() && held.1.is_none() {
            return;
        }
        match &self.runtime {
            Some(rt) => {
                rt.spawn(async move {
                    let _ = commit.await;
                    drop(held);
                });
            }
            None => tracing::warn!(
                "a write was dropped during its commit outside any async runtime: its place in the contended lane is released early"
            ),
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

impl Runtime {
    /// Run one request: execute it in a fresh instance and, if it wrote, commit its write set;
    /// a commit conflict re-executes it. Writes commit only if the plugin returns a response on a
    /// read-write route.
    ///
    /// Writes run optimistically, side by side. A write whose commit conflicted is re-run in the
    /// plugin's *contended lane*, one at a time, and while the lane is in use, the plugin's new
    /// writes queue for it from their first attempt. Each write in the lane executes on a
    /// snapshot that holds the previous one's commit, so contended writes (a counter every
    /// request updates) queue instead of failing with `503 TransactionConflict`. Once nobody
    /// waits for the lane, writes run side by side again. In the lane, a write may still lose
    /// to the plugin's writes that started outside it before it filled (at most once to each,
    /// since those that conflict queue behind it) and to writes of other callers (governance,
    /// other plugins): it is retried `conflict_retries` times plus once for each of the
    /// former, then fails; one that waits for the lane longer than [`LANE_WAIT`] fails at once
    /// (both `503 TransactionConflict`, retryable).
    pub async fn handle(&self, req: &PluginRequest) -> Result<PluginResponse, DispatchError> {
        let mut attempt = 0;
        let mut lane: Option<InLane> = None;
        let mut outside = None;
        if req.route.access == Access::ReadWrite {
            outside = Outside::start(&req.plugin);
            if outside.is_none() {
                lane = Some(InLane::enter(&req.plugin).await.ok_or(DispatchError::Conflict(0))?);
            }
        }
        loop {
            let executed = if req.plugin.slow.load(Ordering::Relaxed) >= SLOW_STRIKES {
                off_executor(|| self.execute(req))?
            } else {
                let started = Instant::now();
                // wasmtime-wasi's synchronous stdio shims (a guest printing, or panicking) enter
                // tokio with `block_on`, which panics on an async worker. Such a call is
                // re-executed off the worker (nothing was committed), and the plugin's calls
                // stay there.
                let executed = match crate::panics::catch_expected(|| self.execute(req)) {
                    Ok(executed) => executed,
                    Err(_) => {
                        tracing::debug!(plugin = %req.plugin.info.name, "a call needed blocking WASI I/O: calls run off the async worker from now on");
                        req.plugin.slow.store(SLOW_STRIKES, Ordering::Relaxed);
                        self.count_slow_move(&req.plugin);
                        off_executor(|| self.execute(req))
                    }
                };
                if started.elapsed() > INLINE_BUDGET {
                    if req.plugin.slow.fetch_add(1, Ordering::Relaxed) + 1 == SLOW_STRIKES {
                        self.count_slow_move(&req.plugin);
                        tracing::info!(plugin = %req.plugin.info.name, "slow calls: they run off the async worker from now on");
                    }
                } else if req.plugin.slow.load(Ordering::Relaxed) != 0 {
                    // Only write the shared counter when it changes: every request passes here.
                    req.plugin.slow.store(0, Ordering::Relaxed);
                }
                executed?
            };
            let Some(tx) = executed.commit else { return Ok(executed.response) };
            let commit = self.store.commit(tx.reads, tx.writes, tx.meta);
            match Committing::new(commit, &mut outside, &mut lane).await {
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
                    let allowed =
                        self.config.conflict_retries.saturating_add(lane.as_ref().map_or(0, |l| l.outside_at_entry));
                    if attempt > allowed {
                        return Err(DispatchError::Conflict(attempt));
                    }
                    tracing::debug!(plugin = %req.plugin.info.name, attempt, %why, "re-executing after a conflict");
                    if lane.is_none() {
                        // It leaves the writes outside the lane before it counts them.
                        drop(outside.take());
                        lane = Some(InLane::enter(&req.plugin).await.ok_or(DispatchError::Conflict(attempt))?);
                    }
                }
                Err(crate::store::CommitError::Store(e)) => return Err(DispatchError::Store(e.0)),
            }
        }
    }

    /// Execute one request in a fresh instance against a snapshot, without committing: the
    /// response, and the read and write sets to commit if the request wrote.
    pub fn execute(&self, req: &PluginRequest) -> Result<Executed, DispatchError> {
        let WorldPre::App(pre) = &req.plugin.pre.world else {
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
            caller: super::caller::to_wit(&req.caller),
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
            // The host decides what a browser may do with an answer (http::harden).
            | "content-security-policy"
            | "content-security-policy-report-only"
            | "x-content-type-options"
            | "set-cookie"
    ) || name.starts_with("x-cgs-")
        || name.starts_with("proxy-");
    token && !reserved && value.len() <= 4096 && !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_headers_are_filtered() {
        assert!(header_allowed("content-type", "application/json"));
        assert!(header_allowed("location", "/app/x"));
        assert!(!header_allowed("x-cgs-tx-id", "1.1"));
        assert!(!header_allowed("content-length", "3"));
        assert!(!header_allowed("Content-Type", "x"));
        assert!(!header_allowed("x-a", "a\r\nb: c"));
        // What a browser may do with an answer is the host's call, not a plugin's.
        for h in
            ["content-security-policy", "content-security-policy-report-only", "x-content-type-options", "set-cookie"]
        {
            assert!(!header_allowed(h, "x"), "{h}");
        }
    }
}
