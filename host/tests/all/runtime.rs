//! The runtime against real components: isolation of faults, transactions, load-time checks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cgs_host::runtime::{
    Caller, DispatchError, FaultKind, LoadError, Method, PluginRequest, PluginResponse, RouteMatch, Runtime,
    RuntimeConfig,
};

use crate::support::{fast_limits, plugin, runtime};

/// Call `method path` on the runtime as the HTTP layer would.
fn call(rt: &Runtime, method: Method, path: &str, body: &str) -> Result<PluginResponse, DispatchError> {
    let registry = rt.registry();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let RouteMatch::Found { plugin, route, params } = registry.find_route(method, &segments) else {
        panic!("no route for {method} {path}");
    };
    let req = PluginRequest {
        plugin: registry.get(&plugin).expect("plugin").clone(),
        route,
        params,
        path: path.to_string(),
        query: vec![],
        headers: vec![],
        body: body.as_bytes().to_vec(),
        caller: Caller { kind: cgs_host::runtime::CallerKind::Member, id: "m".into(), ..Caller::anonymous() },
    };
    cgs_host::store::now(rt.handle(&req)).expect("in-memory commits complete at once")
}

fn fault(r: Result<PluginResponse, DispatchError>) -> (FaultKind, String) {
    match r {
        Err(DispatchError::Fault { kind, detail, .. }) => (kind, detail),
        other => panic!("expected a fault, got {other:?}"),
    }
}

fn chaos(config: RuntimeConfig) -> Arc<Runtime> {
    let rt = runtime(config);
    rt.load(plugin("chaos")).expect("load chaos");
    rt
}

#[test]
fn well_behaved_call_answers_with_tx_time() {
    let rt = chaos(fast_limits());
    let r = call(&rt, Method::Get, "/chaos/ok", "").unwrap();
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["ok"], true);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(v["tx_time_ms"].as_u64().unwrap().abs_diff(now) < 60_000);
    assert_eq!(r.tx_id, None, "a read-only call commits nothing");
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let rt = chaos(fast_limits());
    let (kind, _) = fault(call(&rt, Method::Get, "/chaos/loop", ""));
    assert_eq!(kind, FaultKind::OutOfFuel);
    assert_eq!(kind.code(), "PluginOutOfFuel");
    // The runtime keeps serving.
    assert_eq!(call(&rt, Method::Get, "/chaos/ok", "").unwrap().status, 200);
}

#[test]
fn infinite_loop_hits_the_deadline_when_fuel_is_ample() {
    let rt = chaos(RuntimeConfig { fuel: u64::MAX / 2, deadline: Duration::from_millis(300), ..fast_limits() });
    let t = Instant::now();
    let (kind, _) = fault(call(&rt, Method::Get, "/chaos/loop", ""));
    assert_eq!(kind, FaultKind::Timeout);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(5), "deadline took {took:?}");
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let rt = chaos(fast_limits());
    let (kind, detail) = fault(call(&rt, Method::Get, "/chaos/alloc", ""));
    assert_eq!(kind, FaultKind::MemoryLimit, "{detail}");
    assert_eq!(call(&rt, Method::Get, "/chaos/ok", "").unwrap().status, 200);
}

#[test]
fn panics_and_traps_are_reported() {
    let rt = chaos(fast_limits());
    let (kind, detail) = fault(call(&rt, Method::Get, "/chaos/panic", ""));
    assert_eq!(kind, FaultKind::Panic);
    assert!(detail.contains("chaos panic requested"), "{detail}");
    let (kind, _) = fault(call(&rt, Method::Get, "/chaos/trap", ""));
    assert!(matches!(kind, FaultKind::Panic | FaultKind::Trap), "{kind:?}");
}

#[test]
fn writes_of_failed_calls_are_never_visible() {
    let rt = chaos(fast_limits());
    for mode in ["panic", "loop", "alloc", "error"] {
        let key = format!("k-{mode}");
        let r =
            call(&rt, Method::Post, &format!("/chaos/write-then/{mode}"), &format!(r#"{{"key":"{key}","value":"v"}}"#));
        assert!(r.is_err(), "{mode} must fail");
        if mode == "error" {
            match r {
                Err(DispatchError::Plugin { status, code, .. }) => {
                    assert_eq!((status, code.as_str()), (409, "ChaosError"))
                }
                other => panic!("{other:?}"),
            }
        }
        match call(&rt, Method::Get, &format!("/chaos/kv/{key}"), "") {
            Err(DispatchError::Plugin { status: 404, .. }) => {}
            other => panic!("write of a failed `{mode}` call is visible: {other:?}"),
        }
    }
    assert_eq!(rt.store().last_committed().seqno, 0, "nothing committed");
    // A successful write commits and is visible, with its version.
    let r = call(&rt, Method::Put, "/chaos/kv/good", r#"{"key":"good","value":"v1"}"#).unwrap();
    let tx = r.tx_id.expect("a write returns its tx id");
    let got: serde_json::Value =
        serde_json::from_slice(&call(&rt, Method::Get, "/chaos/kv/good", "").unwrap().body).unwrap();
    assert_eq!(got["value"], "v1");
    assert_eq!(got["version"], tx.to_string());
}

#[test]
fn read_only_routes_and_governance_tables_refuse_writes() {
    let rt = chaos(fast_limits());
    match call(&rt, Method::Get, "/chaos/readonly-write", "") {
        Err(DispatchError::Plugin { status: 403, code, .. }) => assert_eq!(code, "TableReadOnly"),
        other => panic!("{other:?}"),
    }
    match call(&rt, Method::Post, "/chaos/gov-write", "") {
        Err(DispatchError::Plugin { status: 403, code, .. }) => assert_eq!(code, "TableReadOnly"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_runaway_call_does_not_block_a_concurrent_one() {
    let rt = chaos(RuntimeConfig { fuel: u64::MAX / 2, deadline: Duration::from_millis(1500), ..fast_limits() });
    let bad = {
        let rt = rt.clone();
        std::thread::spawn(move || fault(call(&rt, Method::Get, "/chaos/loop", "")).0)
    };
    let hog = {
        let rt = rt.clone();
        std::thread::spawn(move || fault(call(&rt, Method::Get, "/chaos/alloc", "")).0)
    };
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    for _ in 0..20 {
        assert_eq!(call(&rt, Method::Get, "/chaos/ok", "").unwrap().status, 200);
    }
    assert!(
        t.elapsed() < Duration::from_millis(1400),
        "well-behaved calls waited for the runaway one: {:?}",
        t.elapsed()
    );
    assert_eq!(bad.join().unwrap(), FaultKind::Timeout);
    assert_eq!(hog.join().unwrap(), FaultKind::MemoryLimit);
}

#[test]
fn load_time_checks() {
    let rt = runtime(fast_limits());
    match rt.prepare(plugin("forbidden")) {
        // Every forbidden import is named, not only the first: files *and* clocks.
        Err(LoadError::ForbiddenImport(names)) => {
            assert!(names.contains("`wasi:filesystem/") && names.contains("`wasi:clocks/"), "{names}")
        }
        other => panic!("a plugin importing files/clocks must be refused, got {:?}", other.map(|p| p.info)),
    }
    assert!(matches!(rt.prepare(b"garbage"), Err(LoadError::NotAPlugin(_))));
    // A route description (`cgs-plugin-api`) of a route the plugin does not serve: refused, so
    // the description cannot outlive the route. One that names a real route loads.
    let described = |docs: &str| {
        let mut bytes = plugin("chaos").to_vec();
        let name = cgs_core::plugin::API_SECTION;
        let mut section = vec![name.len() as u8];
        section.extend_from_slice(name.as_bytes());
        section.extend_from_slice(docs.as_bytes());
        bytes.push(0);
        assert!(section.len() < 128);
        bytes.push(section.len() as u8);
        bytes.extend_from_slice(&section);
        bytes
    };
    match rt.prepare(&described(r#"{"GET /nowhere/{id}":{"summary":"x"}}"#)) {
        Err(e @ LoadError::NotAPlugin(_)) => {
            assert!(e.to_string().contains("`GET /nowhere/{id}`, which the plugin's router does not serve"), "{e}")
        }
        other => panic!("must be refused, got {:?}", other.map(|p| p.info)),
    }
    let chaos = rt.prepare(plugin("chaos")).unwrap();
    let first = chaos.routes.first().map(|r| format!("{} {}", r.method.as_str(), r.template)).unwrap();
    let p = rt.prepare(&described(&format!(r#"{{"{first}":{{"summary":"a route"}}}}"#))).unwrap();
    assert_eq!(p.api[&first].summary.as_deref(), Some("a route"));
    let core_module = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    assert!(matches!(rt.prepare(&core_module), Err(LoadError::NotAPlugin(_))));

    // The four service plugins load, with their routes and actions.
    for name in ["constitution", "contracts", "consent", "audit"] {
        let p = rt.load(plugin(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.info.name, name);
        assert_eq!(p.blake3, cgs_core::Blake3Hash::of(plugin(name)));
    }
    let reg = rt.registry();
    assert!(reg.get("constitution").unwrap().actions.iter().any(|a| a.name == "set_plugin"));
    assert!(reg.get("contracts").unwrap().routes.iter().any(|r| r.template == "/contracts/{id}"));
    // Installing the same plugin again replaces it (same routes are not a conflict with itself).
    rt.load(plugin("contracts")).unwrap();
}

#[test]
fn compiled_artifacts_are_cached_and_authenticated() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let store: Arc<dyn cgs_host::store::Store> = Arc::new(cgs_host::store::MemStore::new());
    let rt = Runtime::new(fast_limits(), store.clone(), Some(&cache)).unwrap();
    let t = Instant::now();
    rt.load(plugin("contracts")).unwrap();
    let cold = t.elapsed();
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "one cached artifact");
    drop(rt);

    let rt = Runtime::new(fast_limits(), store.clone(), Some(&cache)).unwrap();
    let t = Instant::now();
    rt.load(plugin("contracts")).unwrap();
    let warm = t.elapsed();
    assert!(warm < cold, "cached load ({warm:?}) should beat compiling ({cold:?})");
    drop(rt);

    // A tampered artifact is ignored (and recompiled), never executed.
    let path = entries[0].path();
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let rt = Runtime::new(fast_limits(), store, Some(&cache)).unwrap();
    rt.load(plugin("contracts")).unwrap();
    assert_eq!(call(&rt, Method::Get, "/contracts", "").unwrap().status, 200);
    assert_ne!(std::fs::read(&path).unwrap(), bytes, "the bad entry was replaced");
}

#[test]
fn the_isv_example_serves_its_routes() {
    let rt = runtime(fast_limits());
    rt.load(plugin("greetings")).unwrap();
    let r = call(&rt, Method::Put, "/greetings/alice", r#"{"text":"hello"}"#).unwrap();
    assert_eq!(r.status, 201);
    assert!(r.tx_id.is_some());
    let got: serde_json::Value =
        serde_json::from_slice(&call(&rt, Method::Get, "/greetings/alice", "").unwrap().body).unwrap();
    assert_eq!(got["text"], "hello");
    match call(&rt, Method::Put, "/greetings/bob", r#"{"text":""}"#) {
        Err(DispatchError::Plugin { status: 400, code, .. }) => assert_eq!(code, "InvalidGreeting"),
        other => panic!("{other:?}"),
    }
    match call(&rt, Method::Put, "/greetings/bob", "not json") {
        Err(DispatchError::Plugin { status: 400, code, .. }) => assert_eq!(code, "InvalidJson"),
        other => panic!("{other:?}"),
    }
}

/// `POST /chaos/count/hot?spin=200000` (a hot key, with work between its read and its write).
fn count_request(rt: &Runtime) -> PluginRequest {
    let registry = rt.registry();
    let segments = ["chaos", "count", "hot"];
    let RouteMatch::Found { plugin, route, params } = registry.find_route(Method::Post, &segments) else {
        panic!("no count route");
    };
    PluginRequest {
        plugin: registry.get(&plugin).expect("plugin").clone(),
        route,
        params,
        path: "/chaos/count/hot".into(),
        query: vec![("spin".into(), "200000".into())],
        headers: vec![],
        body: vec![],
        caller: Caller::anonymous(),
    }
}

/// A hot key: concurrent writers of one counter, each reading it, working a while and writing
/// it back. Their commits conflict; the conflicted ones re-run one at a time in the plugin's
/// contended lane, so none gives up and no increment is lost. With 1 retry, a write that joined
/// the lane and then lost to a write begun outside it before the lane filled would fail, unless
/// such writes add retries (they do: one each).
#[test]
fn contended_writes_queue_in_the_lane_instead_of_failing() {
    let rt = chaos(RuntimeConfig { conflict_retries: 1, ..fast_limits() });
    let (writers, each) = (8usize, 20usize);
    let request = || count_request(&rt);
    let tokio_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(writers).enable_all().build().unwrap();
    let outcomes: Vec<Result<u16, String>> = tokio_rt.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let (rt, req) = (rt.clone(), request());
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for _ in 0..each {
                        out.push(rt.handle(&req).await.map(|r| r.status).map_err(|e| format!("{e:?}")));
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let failed: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} of {} writes failed: {:?}", failed.len(), outcomes.len(), failed.first());
    // One more write sees every increment.
    let last = tokio_rt.block_on(rt.handle(&request())).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(v["value"], (writers * each + 1) as u64, "no increment lost");
    let chaos = rt.registry().get("chaos").unwrap().clone();
    let lane = chaos.lane_entries();
    assert!(lane > 0, "the writers never conflicted: the test did not contend");
    assert_eq!(chaos.lane_waiting(), 0, "everyone left the lane: writes run side by side again");
    // A write dropped while it waits for the lane (a client gone) leaves it too.
    let held = tokio_rt.block_on(async {
        let slow = request();
        let (a, b) = (rt.clone(), rt.clone());
        // Fill the lane with contended writers, then give up on one of them.
        let mut tasks: Vec<_> = (0..4)
            .map(|_| {
                let (rt, req) = (a.clone(), slow.clone());
                tokio::spawn(async move { rt.handle(&req).await.map(|r| r.status) })
            })
            .collect();
        let dropped = tokio::spawn(async move { b.handle(&count_request(&b)).await.map(|r| r.status) });
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        dropped.abort();
        for t in tasks.drain(..) {
            let _ = t.await;
        }
        // Once its task is gone (cancelled, or done first if it was running: a CI run read the
        // count while the aborted write still ran in the lane).
        let _ = dropped.await;
        chaos.lane_waiting()
    });
    assert_eq!(held, 0, "an abandoned write does not stay counted in the lane");
    eprintln!("{} writes, {lane} re-run in the lane", writers * each + 1);
}

/// A store whose commits are ordered only after `delay`: a write's commit stays in flight.
struct SlowCommits {
    inner: Arc<cgs_host::store::MemStore>,
    delay: Duration,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl cgs_host::store::Store for SlowCommits {
    fn snapshot(&self) -> Result<Arc<dyn cgs_host::store::Snapshot>, cgs_host::store::StoreError> {
        self.inner.snapshot()
    }

    fn commit(
        &self,
        reads: cgs_host::store::ReadSet,
        writes: cgs_host::store::WriteSet,
        meta: cgs_host::store::TxMeta,
    ) -> cgs_host::store::CommitFuture {
        use std::sync::atomic::Ordering;
        let (inner, delay, in_flight) = (self.inner.clone(), self.delay, self.in_flight.clone());
        in_flight.fetch_add(1, Ordering::SeqCst);
        // As the ledger does, the transaction is handed on at once and ordered whether or not
        // anyone awaits the outcome.
        let ordered = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let outcome = inner.commit(reads, writes, meta).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            outcome
        });
        Box::pin(async move { ordered.await.expect("the commit task") })
    }

    fn last_committed(&self) -> cgs_host::store::TxId {
        self.inner.last_committed()
    }
}

/// The chaos plugin on a store whose commits are ordered 1 s after they start, with the count of
/// commits in flight and a two-worker async runtime.
struct SlowChaos {
    rt: Arc<Runtime>,
    chaos: Arc<cgs_host::runtime::Plugin>,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    tokio_rt: tokio::runtime::Runtime,
}

fn slow_chaos() -> SlowChaos {
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let store = SlowCommits {
        inner: Arc::new(cgs_host::store::MemStore::new()),
        delay: Duration::from_millis(1000),
        in_flight: in_flight.clone(),
    };
    let rt = Arc::new(Runtime::new(fast_limits(), Arc::new(store), None).expect("runtime"));
    rt.load(plugin("chaos")).expect("load chaos");
    let chaos = rt.registry().get("chaos").unwrap().clone();
    let tokio_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    SlowChaos { rt, chaos, in_flight, tokio_rt }
}

/// A write whose client goes away while its commit is in flight still commits, so it stays
/// counted among the plugin's writes outside the contended lane until the commit's outcome (a
/// write joining the lane meanwhile gets a retry for it, see the test above); then nothing is
/// left counted, and the write is there.
#[test]
fn an_abandoned_write_stays_counted_until_its_commit_ends() {
    use std::sync::atomic::Ordering;
    let SlowChaos { rt, chaos, in_flight, tokio_rt } = slow_chaos();
    tokio_rt.block_on(async {
        let (r, req) = (rt.clone(), count_request(&rt));
        let abandoned = tokio::spawn(async move { r.handle(&req).await.map(|r| r.status) });
        until("the write reached its commit", || in_flight.load(Ordering::SeqCst) != 0).await;
        abandoned.abort();
        assert!(abandoned.await.unwrap_err().is_cancelled());
        // The task awaiting the commit drops the count right after the outcome.
        kept_until_the_commit_ends(&in_flight, || chaos.writes_outside(), "a write whose client went away is counted")
            .await;
    });
    assert_eq!(value_after_one_more(&rt, &tokio_rt), 2, "the abandoned write committed");
    assert_eq!((chaos.writes_outside(), chaos.lane_waiting()), (0, 0));
}

/// With the abandoned writes gone: their commit is still in flight and `held` still counts the
/// place it keeps; once the commit ends, the place is given back.
async fn kept_until_the_commit_ends(in_flight: &std::sync::atomic::AtomicUsize, held: impl Fn() -> usize, what: &str) {
    use std::sync::atomic::Ordering;
    assert_eq!(in_flight.load(Ordering::SeqCst), 1, "the commit is still in flight");
    assert_eq!(held(), 1, "{what} while its commit is in flight");
    until("the commit ended", || in_flight.load(Ordering::SeqCst) == 0).await;
    until("the place was given back", || held() == 0).await;
}

/// The hot counter's value after one more increment.
fn value_after_one_more(rt: &Runtime, tokio_rt: &tokio::runtime::Runtime) -> serde_json::Value {
    let next = tokio_rt.block_on(rt.handle(&count_request(rt))).unwrap();
    serde_json::from_slice::<serde_json::Value>(&next.body).unwrap()["value"].clone()
}

/// Waits up to 30 s for `done`.
async fn until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(30), "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A write in the contended lane whose client goes away while its commit is in flight keeps the
/// lane until the commit's outcome, so the next write in the lane runs on a snapshot that holds
/// it (instead of conflicting with it).
#[test]
fn an_abandoned_write_in_the_lane_holds_it_until_its_commit_ends() {
    use std::sync::atomic::Ordering;
    let SlowChaos { rt, chaos, in_flight, tokio_rt } = slow_chaos();
    tokio_rt.block_on(async {
        // Two writes of one counter read the same value; the second to commit conflicts and runs
        // again in the lane.
        let writes: Vec<_> = (0..2)
            .map(|_| {
                let (r, req) = (rt.clone(), count_request(&rt));
                tokio::spawn(async move { r.handle(&req).await.map(|r| r.status) })
            })
            .collect();
        until("a write re-ran in the lane and is committing", || {
            chaos.lane_waiting() == 1 && in_flight.load(Ordering::SeqCst) == 1
        })
        .await;
        for w in &writes {
            w.abort();
        }
        for w in writes {
            let _ = w.await;
        }
        kept_until_the_commit_ends(&in_flight, || chaos.lane_waiting(), "the abandoned write holds the lane").await;
    });
    assert_eq!(value_after_one_more(&rt, &tokio_rt), 3, "both writes committed, the abandoned one included");
    assert_eq!((chaos.writes_outside(), chaos.lane_waiting()), (0, 0));
}
