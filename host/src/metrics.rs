//! Prometheus metrics (`GET /metrics`, text format 0.0.4).
//!
//! Counted as requests pass: requests per method, route *template* and status, with a latency
//! histogram per method and route; plugin calls per plugin and outcome. Read when scraped: the
//! plugins governance made active (running or failed to load), open proposals, the ledger's
//! applied position, raft term and role. Labels are route templates, plugin names and codes —
//! never a path, id or caller — so nothing private shows and the number of series is bounded by
//! what governance installed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A secret string (the scrape token) that never shows in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap `s`.
    pub fn new(s: String) -> Self {
        Self(s)
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 13] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default, Clone)]
struct Histogram {
    /// Per bucket (not cumulative).
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Bounds of durable-write latency buckets, in seconds: an fsync takes from ~0.1 ms to a few ms.
pub const IO_BUCKETS: [f64; 12] = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.25, 1.0];

/// A latency histogram written from any thread without a lock (the ledger's writers).
#[derive(Debug, Default)]
pub struct IoHistogram {
    counts: [AtomicU64; IO_BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

/// What an [`IoHistogram`] held when read.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct IoSnapshot {
    /// Per bucket of [`IO_BUCKETS`] (not cumulative).
    pub counts: [u64; IO_BUCKETS.len()],
    /// Observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

impl IoHistogram {
    /// One durable write that took `d`.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = IO_BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(d.as_nanos().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
    }

    /// The counts now (read without a lock: `count` is raised to the buckets' sum if an
    /// observation landed in between, so `+Inf` is never below a bucket).
    pub fn snapshot(&self) -> IoSnapshot {
        let counts: [u64; IO_BUCKETS.len()] = std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed));
        let in_buckets = counts.iter().sum::<u64>();
        IoSnapshot {
            counts,
            count: self.count.load(Ordering::Relaxed).max(in_buckets),
            sum: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// The ledger's figures, read when scraped.
#[derive(Debug, Default, Clone)]
pub struct LedgerStats {
    /// Durable commits of the raft log (each an fsync): their latency.
    pub log_commits: IoSnapshot,
    /// Commits of applied state (not synced): their latency.
    pub apply_commits: IoSnapshot,
    /// Raft log entries written.
    pub log_entries: u64,
    /// Size of the ledger file, in bytes.
    pub file_bytes: u64,
    /// The tree size of the last checkpoint.
    pub last_checkpoint: u64,
    /// Entries applied since the last checkpoint (not yet covered by a signed root).
    pub checkpoint_lag: u64,
    /// Raft: the last log index.
    pub raft_last_log: u64,
    /// Raft: the applied index.
    pub raft_applied: u64,
    /// Raft, on a leader: each peer's node id and how many entries it is behind.
    pub replication_lag: Vec<(u64, u64)>,
    /// Raft, on a leader: early appends sent to followers while the leader flushed, those the
    /// followers confirmed, the entries replication requests then no longer carried, and the
    /// replication requests answered by a confirmation without a round trip.
    pub early_appends: [u64; 4],
}

/// The requests of one method and route.
#[derive(Default, Clone)]
struct Series {
    by_status: BTreeMap<u16, u64>,
    latency: Histogram,
}

impl Series {
    fn add(&mut self, other: &Series) {
        for (st, n) in &other.by_status {
            *self.by_status.entry(*st).or_default() += n;
        }
        for (a, b) in self.latency.counts.iter_mut().zip(other.latency.counts) {
            *a += b;
        }
        self.latency.count += other.latency.count;
        self.latency.sum += other.latency.sum;
    }
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// A node's counters.
pub struct Metrics {
    /// Per (method, route template): answers by status, and their latency.
    requests: Mutex<BTreeMap<(&'static str, String), Series>>,
    plugin_calls: Mutex<BTreeMap<(String, &'static str), u64>>,
    started: Instant,
}

/// Who scrapes: a member sees every series; the operator's scraper (`--metrics-token-file`) sees
/// the node's health but not the tenants' activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// A member.
    Member,
    /// The operator's scraper.
    Operator,
}

/// What is read at scrape time (from the node's state).
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Plugins that run: name, version.
    pub running: Vec<(String, String)>,
    /// Plugins governance made active that did not load: names.
    pub failed: Vec<String>,
    /// Open proposals (None: could not be read).
    pub open_proposals: Option<usize>,
    /// Last applied seqno.
    pub applied_seqno: u64,
    /// Raft term of the last applied entry.
    pub applied_term: u64,
    /// This node leads.
    pub leader: bool,
    /// JWKS fetches that succeeded and that failed.
    pub jwks: (u64, u64),
    /// Per running plugin (name): fuel used and moves off the async worker, by its running
    /// version.
    pub plugin_counters: Vec<(String, u64, u64)>,
    /// Per running plugin: writes re-run in its contended lane (members only).
    pub plugin_lanes: Vec<(String, u64)>,
    /// The same for all calls since the node started (never decreasing).
    pub plugin_totals: (u64, u64),
    /// The ledger.
    pub ledger: LedgerStats,
    /// Clean-room nonces outstanding, and sessions admitted.
    pub sessions: (usize, u64),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A label value, escaped per the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Default for Metrics {
    /// Empty counters; uptime counts from now.
    fn default() -> Self {
        Self { requests: Mutex::default(), plugin_calls: Mutex::default(), started: Instant::now() }
    }
}

impl Metrics {
    /// Empty counters; uptime counts from now.
    pub fn new() -> Self {
        Self::default()
    }

    /// One request answered. A method outside the standard ones counts as `other`: no caller
    /// can add series.
    pub fn request(&self, method: &str, route: String, status: u16, took: Duration) {
        let method = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
            .into_iter()
            .find(|m| *m == method)
            .unwrap_or("other");
        let mut requests = lock(&self.requests);
        let series = requests.entry((method, route)).or_default();
        *series.by_status.entry(status).or_default() += 1;
        series.latency.observe(took.as_secs_f64());
    }

    /// One plugin call ended with `outcome` (`ok`, `refused`, a fault code, `busy`, `conflict`,
    /// `store`).
    pub fn plugin_call(&self, plugin: &str, outcome: &'static str) {
        *lock(&self.plugin_calls).entry((plugin.to_string(), outcome)).or_default() += 1;
    }

    /// The text exposition of the counters and `s`, as `view` may see it.
    pub fn render(&self, s: &Snapshot, view: View) -> String {
        let mut o = String::new();
        let _ = self.render_into(&mut o, s, view);
        o
    }

    fn render_into(&self, o: &mut String, s: &Snapshot, view: View) -> std::fmt::Result {
        // The operator's scraper sees the node, not the tenants' activity: routes under `/app`
        // and `/gov` collapse to their prefix, plugin calls to their outcome, no proposal count.
        let full = view == View::Member;
        let route = |r: &str| -> String {
            match r.split('/').nth(1) {
                Some(p @ ("app" | "gov")) if !full => format!("/{p}/*"),
                _ => r.to_string(),
            }
        };
        let mut requests = BTreeMap::<(&'static str, String), Series>::new();
        for ((m, r), series) in lock(&self.requests).iter() {
            requests.entry((m, route(r))).or_default().add(series);
        }
        let mut calls = BTreeMap::<(String, &'static str), u64>::new();
        for ((p, outcome), n) in lock(&self.plugin_calls).iter() {
            *calls.entry((if full { p.clone() } else { "*".into() }, outcome)).or_default() += n;
        }
        writeln!(o, "# HELP cgs_build_info The running CGS version.\n# TYPE cgs_build_info gauge")?;
        writeln!(o, "cgs_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))?;
        writeln!(o, "# HELP cgs_uptime_seconds Seconds since the node started.\n# TYPE cgs_uptime_seconds gauge")?;
        writeln!(o, "cgs_uptime_seconds {:.3}", self.started.elapsed().as_secs_f64())?;

        writeln!(o, "# HELP cgs_http_requests_total Requests answered, by method, route template and status.")?;
        writeln!(o, "# TYPE cgs_http_requests_total counter")?;
        for ((m, r), series) in &requests {
            for (st, n) in &series.by_status {
                writeln!(o, "cgs_http_requests_total{{method=\"{m}\",route=\"{}\",status=\"{st}\"}} {n}", esc(r))?;
            }
        }
        writeln!(o, "# HELP cgs_http_request_duration_seconds Time to answer, by method and route template.")?;
        writeln!(o, "# TYPE cgs_http_request_duration_seconds histogram")?;
        for ((m, r), series) in &requests {
            let h = &series.latency;
            let labels = format!("method=\"{m}\",route=\"{}\"", esc(r));
            histogram(o, "cgs_http_request_duration_seconds", &labels, &BUCKETS, &h.counts, h.count, h.sum)?;
        }

        writeln!(
            o,
            "# HELP cgs_plugin_calls_total Plugin calls by plugin and outcome (ok, refused, a fault code, busy, conflict, store)."
        )?;
        writeln!(o, "# TYPE cgs_plugin_calls_total counter")?;
        for ((p, outcome), n) in &calls {
            writeln!(o, "cgs_plugin_calls_total{{plugin=\"{}\",outcome=\"{outcome}\"}} {n}", esc(p))?;
        }
        writeln!(
            o,
            "# HELP cgs_plugin_up Plugins governance made active: 1 runs, 0 failed to load (see /gov/plugins)."
        )?;
        writeln!(o, "# TYPE cgs_plugin_up gauge")?;
        for (name, version) in &s.running {
            writeln!(o, "cgs_plugin_up{{plugin=\"{}\",version=\"{}\"}} 1", esc(name), esc(version))?;
        }
        for name in &s.failed {
            writeln!(o, "cgs_plugin_up{{plugin=\"{}\",version=\"\"}} 0", esc(name))?;
        }
        writeln!(o, "# HELP cgs_plugins_failed Plugins governance made active that this node could not load.")?;
        writeln!(o, "# TYPE cgs_plugins_failed gauge\ncgs_plugins_failed {}", s.failed.len())?;
        // Per plugin for members; summed for the operator (how busy the node is, not who).
        let counters: Vec<(String, u64, u64)> = if full {
            s.plugin_counters.clone()
        } else {
            // Node-wide totals: a sum over the running versions would go down at an upgrade.
            vec![("*".into(), s.plugin_totals.0, s.plugin_totals.1)]
        };
        writeln!(
            o,
            "# HELP cgs_plugin_fuel_consumed_total Fuel (about one unit per wasm instruction) the running version's calls used."
        )?;
        writeln!(o, "# TYPE cgs_plugin_fuel_consumed_total counter")?;
        for (p, fuel, _) in &counters {
            writeln!(o, "cgs_plugin_fuel_consumed_total{{plugin=\"{}\"}} {fuel}", esc(p))?;
        }
        writeln!(
            o,
            "# HELP cgs_plugin_slow_path_moves_total Times the running version's calls were moved off the async worker (slow or blocking calls)."
        )?;
        writeln!(o, "# TYPE cgs_plugin_slow_path_moves_total counter")?;
        for (p, _, moves) in &counters {
            writeln!(o, "cgs_plugin_slow_path_moves_total{{plugin=\"{}\"}} {moves}", esc(p))?;
        }
        if full {
            writeln!(
                o,
                "# HELP cgs_plugin_contended_writes_total Writes of the running version run one at a time in its contended lane (after a conflict, or while others were: a hot key)."
            )?;
            writeln!(o, "# TYPE cgs_plugin_contended_writes_total counter")?;
            for (p, n) in &s.plugin_lanes {
                writeln!(o, "cgs_plugin_contended_writes_total{{plugin=\"{}\"}} {n}", esc(p))?;
            }
        }
        if let Some(n) = s.open_proposals.filter(|_| full) {
            writeln!(o, "# HELP cgs_proposals_open Proposals open for votes.\n# TYPE cgs_proposals_open gauge")?;
            writeln!(o, "cgs_proposals_open {n}")?;
        }
        writeln!(
            o,
            "# HELP cgs_ledger_applied_seqno The last applied ledger entry.\n# TYPE cgs_ledger_applied_seqno gauge"
        )?;
        writeln!(o, "cgs_ledger_applied_seqno {}", s.applied_seqno)?;
        writeln!(o, "# HELP cgs_jwks_fetches_total JWKS fetches of user-token issuers, by result.")?;
        writeln!(o, "# TYPE cgs_jwks_fetches_total counter")?;
        writeln!(o, "cgs_jwks_fetches_total{{result=\"ok\"}} {}", s.jwks.0)?;
        writeln!(o, "cgs_jwks_fetches_total{{result=\"failed\"}} {}", s.jwks.1)?;
        let l = &s.ledger;
        writeln!(o, "# HELP cgs_ledger_file_bytes Size of the ledger file.\n# TYPE cgs_ledger_file_bytes gauge")?;
        writeln!(o, "cgs_ledger_file_bytes {}", l.file_bytes)?;
        writeln!(o, "# HELP cgs_ledger_log_entries_written_total Raft log entries written durably.")?;
        writeln!(o, "# TYPE cgs_ledger_log_entries_written_total counter")?;
        writeln!(o, "cgs_ledger_log_entries_written_total {}", l.log_entries)?;
        writeln!(
            o,
            "# HELP cgs_ledger_checkpoint_size The tree size the last signed checkpoint covers.\n# TYPE cgs_ledger_checkpoint_size gauge"
        )?;
        writeln!(o, "cgs_ledger_checkpoint_size {}", l.last_checkpoint)?;
        writeln!(
            o,
            "# HELP cgs_ledger_checkpoint_lag_entries Applied entries no signed checkpoint covers yet.\n# TYPE cgs_ledger_checkpoint_lag_entries gauge"
        )?;
        writeln!(o, "cgs_ledger_checkpoint_lag_entries {}", l.checkpoint_lag)?;
        writeln!(
            o,
            "# HELP cgs_ledger_commit_seconds Ledger commits: `log` is the raft log's (durable: each ends with an fsync), `apply` the applied state's (not synced: replayed from the log after a crash)."
        )?;
        writeln!(o, "# TYPE cgs_ledger_commit_seconds histogram")?;
        for (kind, h) in [("log", &l.log_commits), ("apply", &l.apply_commits)] {
            let labels = format!("kind=\"{kind}\"");
            histogram(o, "cgs_ledger_commit_seconds", &labels, &IO_BUCKETS, &h.counts, h.count, h.sum)?;
        }
        writeln!(o, "# HELP cgs_raft_log_index Raft log indexes: the last written, the last applied.")?;
        writeln!(o, "# TYPE cgs_raft_log_index gauge")?;
        writeln!(o, "cgs_raft_log_index{{kind=\"last\"}} {}", l.raft_last_log)?;
        writeln!(o, "cgs_raft_log_index{{kind=\"applied\"}} {}", l.raft_applied)?;
        writeln!(
            o,
            "# HELP cgs_raft_replication_lag_entries On the leader: entries each peer has yet to match.\n# TYPE cgs_raft_replication_lag_entries gauge"
        )?;
        for (peer, lag) in &l.replication_lag {
            writeln!(o, "cgs_raft_replication_lag_entries{{peer=\"{peer}\"}} {lag}")?;
        }
        writeln!(
            o,
            "# HELP cgs_raft_early_appends_total On a leader: appends sent to the followers while the leader flushed them (`sent`), those the followers confirmed (`confirmed`), the entries replication requests then left out (`entries_trimmed`), and the replication requests a confirmation answered without a round trip (`answered`).\n# TYPE cgs_raft_early_appends_total counter"
        )?;
        for (kind, n) in ["sent", "confirmed", "entries_trimmed", "answered"].iter().zip(l.early_appends) {
            writeln!(o, "cgs_raft_early_appends_total{{kind=\"{kind}\"}} {n}")?;
        }
        writeln!(
            o,
            "# HELP cgs_cleanroom_sessions_admitted_total Attested clean-room sessions this node admitted (a session is a token: none is kept open).\n# TYPE cgs_cleanroom_sessions_admitted_total counter"
        )?;
        writeln!(o, "cgs_cleanroom_sessions_admitted_total {}", s.sessions.1)?;
        writeln!(
            o,
            "# HELP cgs_cleanroom_nonces Clean-room attestation nonces outstanding on this node.\n# TYPE cgs_cleanroom_nonces gauge"
        )?;
        writeln!(o, "cgs_cleanroom_nonces {}", s.sessions.0)?;
        writeln!(o, "# HELP cgs_raft_term The raft term of the last applied entry.\n# TYPE cgs_raft_term gauge")?;
        writeln!(o, "cgs_raft_term {}", s.applied_term)?;
        writeln!(o, "# HELP cgs_raft_leader 1 while this node leads.\n# TYPE cgs_raft_leader gauge")?;
        writeln!(o, "cgs_raft_leader {}", u8::from(s.leader))?;
        Ok(())
    }
}

/// One histogram series: cumulative buckets (`counts` per bucket of `bounds`), `+Inf`, sum, count.
fn histogram(
    o: &mut String,
    name: &str,
    labels: &str,
    bounds: &[f64],
    counts: &[u64],
    count: u64,
    sum: f64,
) -> std::fmt::Result {
    let mut cumulative = 0;
    for (b, c) in bounds.iter().zip(counts) {
        cumulative += c;
        writeln!(o, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}")?;
    }
    writeln!(o, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}")?;
    writeln!(o, "{name}_sum{{{labels}}} {sum}")?;
    writeln!(o, "{name}_count{{{labels}}} {count}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_is_cumulative_and_escaped() {
        let m = Metrics::new();
        m.request("GET", "/node/health".into(), 200, Duration::from_micros(300));
        m.request("GET", "/node/health".into(), 200, Duration::from_millis(30));
        m.plugin_call("no\"tes", "ok");
        m.request("BREW", "/app/notes/{id}".into(), 200, Duration::from_millis(1));
        m.request("GET", "/app/notes/{id}".into(), 200, Duration::from_millis(1));
        let text = m.render(
            &Snapshot { failed: vec!["broken".into()], open_proposals: Some(2), ..Snapshot::default() },
            View::Member,
        );
        assert!(text.contains("method=\"other\",route=\"/app/notes/{id}\""), "{text}");
        assert!(text.contains("cgs_proposals_open 2"), "{text}");
        let operator = m.render(&Snapshot { open_proposals: Some(2), ..Snapshot::default() }, View::Operator);
        assert!(
            !operator.contains("/app/notes")
                && !operator.contains("no\\\"tes")
                && !operator.contains("cgs_proposals_open"),
            "{operator}"
        );
        assert!(
            operator.contains("cgs_http_requests_total{method=\"GET\",route=\"/app/*\",status=\"200\"} 1"),
            "{operator}"
        );
        assert!(operator.contains("cgs_plugin_calls_total{plugin=\"*\",outcome=\"ok\"} 1"), "{operator}");
        assert!(
            text.contains("cgs_http_requests_total{method=\"GET\",route=\"/node/health\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("le=\"0.0005\"} 1"), "{text}");
        assert!(text.contains("le=\"0.05\"} 2"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("cgs_plugin_calls_total{plugin=\"no\\\"tes\",outcome=\"ok\"} 1"), "{text}");
        assert!(text.contains("cgs_plugin_up{plugin=\"broken\",version=\"\"} 0"), "{text}");
        assert!(text.contains("cgs_plugins_failed 1"), "{text}");
    }
}
