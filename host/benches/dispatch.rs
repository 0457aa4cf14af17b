//! Per-request plugin dispatch cost: `Runtime::handle` = new `Store` + instantiate from the
//! `InstancePre` (pooling allocator) + the guest call + commit (if it wrote) + drop.
//!
//! Run: `cargo bench -p cgs-host --bench dispatch` (add `-- --iterations N` to change N;
//! `CGS_KEEP_RESIDENT=<bytes>` overrides how much of each pooled memory stays resident,
//! `CGS_PAGEMAP=0` disables the PAGEMAP_SCAN reset).
//! Prints one table row per scenario with median / p90 / p99 / mean in microseconds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cgs_build::{BuildRequest, Selection};
use cgs_host::runtime::{Caller, CallerKind, Method, PluginRequest, RouteMatch, Runtime, RuntimeConfig};
use cgs_host::store::{MemStore, now};

fn request(rt: &Runtime, method: Method, path: &str, body: &str) -> PluginRequest {
    let registry = rt.registry();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let RouteMatch::Found { plugin, route, params } = registry.find_route(method, &segments) else {
        panic!("no route {method} {path}");
    };
    PluginRequest {
        plugin: registry.get(&plugin).unwrap().clone(),
        route,
        params,
        path: path.into(),
        query: vec![],
        headers: vec![],
        body: body.as_bytes().to_vec(),
        // The contracts plugin serves members only; the others accept anyone.
        caller: Caller { kind: CallerKind::Member, id: "ab".repeat(32), ..Caller::anonymous() },
    }
}

fn wasmtime_pagemap_available() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").is_ok_and(|r| {
        let mut it = r.trim().split(['.', '-']).filter_map(|p| p.parse::<u32>().ok());
        matches!((it.next(), it.next()), (Some(maj), Some(min)) if (maj, min) >= (6, 7))
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn main() {
    let mut iterations = 20_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--iterations" {
            iterations = args.next().and_then(|n| n.parse().ok()).unwrap_or(iterations);
        }
    }
    let ws = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let out = tempfile::tempdir().unwrap();
    let built = cgs_build::build(&BuildRequest {
        workspace: ws,
        selection: Selection::Named(vec!["chaos".into(), "greetings".into(), "contracts".into()]),
        out_dir: Some(out.path().to_path_buf()),
        quiet: true,
    })
    .expect("build plugins");

    let mut config = RuntimeConfig::default();
    if let Some(k) = std::env::var("CGS_KEEP_RESIDENT").ok().and_then(|v| v.parse().ok()) {
        config.memory_keep_resident = Some(k);
    }
    if std::env::var("CGS_PAGEMAP").is_ok_and(|v| v == "0") {
        config.pagemap_scan = false;
    }
    let config_keep = config.memory_keep_resident;
    let rt = Runtime::new(config.clone(), Arc::new(MemStore::new()), None).unwrap();
    for b in &built {
        rt.load(&std::fs::read(&b.path).unwrap()).unwrap();
    }
    // Seed a greeting and a contract to read.
    now(rt.handle(&request(&rt, Method::Put, "/greetings/alice", r#"{"text":"hello"}"#))).unwrap().unwrap();
    now(rt.handle(&request(&rt, Method::Put, "/contracts/c1", r#"{"data":{"terms":"x"}}"#))).unwrap().unwrap();

    let scenarios: Vec<(&str, PluginRequest)> = vec![
        ("GET /chaos/ok (no kv, JSON reply)", request(&rt, Method::Get, "/chaos/ok", "")),
        ("GET /greetings/alice (1 kv get)", request(&rt, Method::Get, "/greetings/alice", "")),
        ("GET /contracts/c1 (1 kv get, versioned)", request(&rt, Method::Get, "/contracts/c1", "")),
        ("PUT /chaos/kv/k (1 put + commit)", request(&rt, Method::Put, "/chaos/kv/k", r#"{"key":"k","value":"v"}"#)),
    ];

    println!(
        "PAGEMAP_SCAN available: {}, used: {}; memory_keep_resident: {:?} (None = auto)",
        wasmtime_pagemap_available(),
        config.pagemap_scan,
        config_keep
    );
    println!(
        "plugin dispatch: Runtime::handle per request (new Store + instantiate + call + commit + drop), {iterations} iterations"
    );
    println!("| scenario | median µs | p90 µs | p99 µs | mean µs |");
    println!("|---|---:|---:|---:|---:|");
    for (name, req) in &scenarios {
        for _ in 0..iterations / 10 {
            now(rt.handle(req)).unwrap().unwrap();
        }
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            let r = now(rt.handle(req)).unwrap().unwrap();
            samples.push(t.elapsed());
            std::hint::black_box(r);
        }
        let mean = samples.iter().map(|d| d.as_secs_f64()).sum::<f64>() / samples.len() as f64 * 1e6;
        samples.sort();
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
            percentile(&samples, 0.5),
            percentile(&samples, 0.9),
            percentile(&samples, 0.99),
            mean
        );
    }
}
