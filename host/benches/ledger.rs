//! Durable appends to the ledger: committed transactions per second and commit latency for 1 and
//! 256 concurrent writers of 256-byte events, next to an fsync baseline of the same disk taken in
//! the same run.
//!
//! Run: `cargo bench -p cgs-host --bench ledger` (`-- --seconds N` per scenario, default 5).
//! A "committed" transaction is replicated (one-node cluster), durable (its log batch fsynced)
//! and applied, with its tx id returned — what `x-cgs-tx-id` means to a client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cgs_host::ledger::{Ledger, LedgerConfig, Router};
use cgs_host::store::{Store, Transaction, TxMeta};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// fdatasync latency of 4 KiB appends to a file in `dir`, one at a time.
fn fsync_baseline(dir: &std::path::Path, seconds: f64) -> (f64, f64, f64, usize) {
    let path = dir.join("fsync-baseline");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
    let block = vec![0xabu8; 4096];
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        f.write_all(&block).unwrap();
        f.sync_data().unwrap();
        lat.push(t.elapsed());
    }
    let n = lat.len();
    let rate = n as f64 / start.elapsed().as_secs_f64();
    lat.sort();
    let _ = std::fs::remove_file(&path);
    (rate, percentile(&lat, 0.5), percentile(&lat, 0.99), n)
}

async fn run_writers(ledger: Arc<Ledger>, writers: usize, seconds: f64) -> (f64, f64, f64, usize) {
    let value = vec![0x42u8; 256];
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (ledger, value) = (ledger.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let mut tx = Transaction::new(ledger.snapshot().unwrap());
                tx.put("bench.events", format!("{w:04}-{i:010}").as_bytes(), value.clone());
                let (r, wr) = tx.into_sets();
                let t = Instant::now();
                ledger
                    .commit(r, wr, TxMeta { caller: "bench".into(), operation: "append".into(), ..TxMeta::default() })
                    .await
                    .unwrap();
                lat.push(t.elapsed());
                i += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = all.len();
    all.sort();
    (n as f64 / elapsed, percentile(&all, 0.5), percentile(&all, 0.99), n)
}

fn main() {
    let mut seconds: f64 = 5.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--seconds" {
            seconds = args.next().and_then(|n| n.parse().ok()).unwrap_or(seconds);
        }
    }
    let base = std::env::var_os("CGS_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    println!("durable ledger appends: 256-byte values, blind writes, one-node cluster; {seconds} s per row");
    println!("| scenario | committed tx/s | p50 ms | p99 ms | samples |");
    println!("|---|---:|---:|---:|---:|");
    let dir = tempfile::tempdir_in(&base).unwrap();
    let (rate, p50, p99, n) = fsync_baseline(dir.path(), seconds.min(3.0));
    println!(
        "| baseline: 4 KiB append + fdatasync, 1 at a time (same disk, same run) | {rate:.0} | {p50:.3} | {p99:.3} | {n} |"
    );
    let mut verified = None;
    for writers in [1usize, 256] {
        let dir = tempfile::tempdir_in(&base).unwrap();
        let (rate, p50, p99, n) = rt.block_on(async {
            let ledger =
                Ledger::open(dir.path(), LedgerConfig::default(), "cgs/bench", Router::default()).await.unwrap();
            ledger.initialize_single("bench").await.unwrap();
            ledger.wait_for_leader(Duration::from_secs(10)).await.unwrap();
            // Warm up.
            run_writers(ledger.clone(), writers, 0.5).await;
            let r = run_writers(ledger.clone(), writers, seconds).await;
            ledger.shutdown().await;
            r
        });
        println!("| ledger: {writers} concurrent writer(s) | {rate:.0} | {p50:.3} | {p99:.3} | {n} |");
        if writers > 1 {
            // What `cgs ledger verify` does, and a recovery twice (`start --recover`): the whole
            // file, checkpoints and replay included, on the ledger just written.
            let started = std::time::Instant::now();
            let report = cgs_ledger_format::verify::verify_data_dir(dir.path(), &[]).unwrap();
            let secs = started.elapsed().as_secs_f64();
            verified = Some((report.entries, report.checkpoints, secs));
        }
    }
    let dir = tempfile::tempdir_in(&base).unwrap();
    let (rate, p50, p99, n) = fsync_baseline(dir.path(), seconds.min(3.0));
    println!("| baseline again after the ledger rows | {rate:.0} | {p50:.3} | {p99:.3} | {n} |");
    if let Some((entries, checkpoints, secs)) = verified {
        println!();
        println!("offline verification of the 256-writer ledger (`cgs ledger verify`; a recovery does it twice):");
        println!("| entries | checkpoints | seconds | entries/s |");
        println!("|---:|---:|---:|---:|");
        println!("| {entries} | {checkpoints} | {secs:.2} | {:.0} |", entries as f64 / secs);
    }
}
