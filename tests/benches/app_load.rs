//! HTTPS load generator for the `/app` plugin routes of a real `cgs-host sandbox`.
//!
//! Scenario "consent": `GET /app/contracts/bench/consent/execution`; scenario "events":
//! `POST /app/contracts/bench/events?scope=bench`. Each connection is one tokio task holding one
//! persistent HTTP/1.1 keep-alive connection over TLS 1.3 (service certificate pinned) and sending
//! requests back to back. After a warm-up, per-request latencies are recorded and summarised in a
//! markdown table.
//!
//! ```text
//! cargo bench -p cgs-e2e --bench app_load -- [--duration SECS] [--warmup SECS]
//!     [--conns-consent N] [--conns-events N] [--only consent|events]
//! ```
//! The same settings can come from the environment: `APP_LOAD_DURATION`, `APP_LOAD_WARMUP`,
//! `APP_LOAD_CONNS_CONSENT`, `APP_LOAD_CONNS_EVENTS`, `APP_LOAD_ONLY` (arguments win).

// A bench: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const CONTRACT: &str = "bench";
const MEMBERS: [&str; 3] = ["isv", "data-provider", "code-provider"];
/// No single request may take longer than this (a hung service must not hang the bench).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct Settings {
    duration: Duration,
    warmup: Duration,
    conns_consent: usize,
    conns_events: usize,
    only: Option<String>,
    /// Offered load (req/s over all connections) of the paced consent run; 0 skips it.
    consent_rate: f64,
}

fn secs(s: &str, what: &str) -> Result<Duration> {
    let v: f64 = s.trim().parse().with_context(|| format!("{what}: `{s}` is not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 {
        bail!("{what}: `{s}` is not a non-negative number of seconds");
    }
    Ok(Duration::from_secs_f64(v))
}

fn count(s: &str, what: &str) -> Result<usize> {
    let v: usize = s.trim().parse().with_context(|| format!("{what}: `{s}` is not a count"))?;
    if v == 0 {
        bail!("{what}: needs at least one connection");
    }
    Ok(v)
}

impl Settings {
    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "duration" => self.duration = secs(value, "--duration")?,
            "warmup" => self.warmup = secs(value, "--warmup")?,
            "conns-consent" => self.conns_consent = count(value, "--conns-consent")?,
            "conns-events" => self.conns_events = count(value, "--conns-events")?,
            "only" => match value {
                "consent" | "consent-paced" | "events" => self.only = Some(value.to_string()),
                _ => bail!("--only: expected `consent`, `consent-paced` or `events`, got `{value}`"),
            },
            "consent-rate" => {
                self.consent_rate = value.trim().parse().with_context(|| format!("--consent-rate: `{value}`"))?
            }
            _ => bail!("unknown option --{key}"),
        }
        Ok(())
    }

    fn from_env_and_args() -> Result<Settings> {
        let mut s = Settings {
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            conns_consent: 64,
            conns_events: 256,
            only: None,
            consent_rate: 15_000.0,
        };
        for key in ["duration", "warmup", "conns-consent", "conns-events", "only", "consent-rate"] {
            let var = format!("APP_LOAD_{}", key.replace('-', "_").to_uppercase());
            if let Ok(v) = std::env::var(&var) {
                s.set(key, &v).with_context(|| format!("environment variable {var}"))?;
            }
        }
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            // `cargo bench` passes `--bench` (and a filter when given one) to harness-less benches.
            if arg == "--bench" || !arg.starts_with("--") {
                continue;
            }
            let opt = &arg[2..];
            if opt == "help" {
                println!(
                    "app_load [--duration SECS] [--warmup SECS] [--conns-consent N] [--conns-events N] \
                     [--only consent|consent-paced|events] [--consent-rate REQ_PER_S]"
                );
                std::process::exit(0);
            }
            match opt.split_once('=') {
                Some((k, v)) => s.set(k, v)?,
                None => {
                    let v = args.next().ok_or_else(|| anyhow!("--{opt} needs a value"))?;
                    s.set(opt, &v)?;
                }
            }
        }
        Ok(s)
    }
}

/// Where and how to connect: address, TLS name, pinned TLS configuration, `Host` header value.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    name: ServerName<'static>,
    tls: TlsConnector,
    authority: String,
}

impl Target {
    fn new(url: &str, ca_pem: &[u8]) -> Result<Target> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("service URL {url}"))?;
        let authority = uri.authority().ok_or_else(|| anyhow!("no host:port in {url}"))?.clone();
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = authority.port_u16().ok_or_else(|| anyhow!("no port in {url}"))?;
        let ip: std::net::IpAddr = host.parse().with_context(|| format!("host of {url} is not an IP address"))?;
        let name = ServerName::try_from(host).map_err(|e| anyhow!("TLS server name: {e}"))?;
        let tls = TlsConnector::from(Arc::new(cgs_client::tls_config(ca_pem)?));
        Ok(Target { addr: SocketAddr::new(ip, port), name, tls, authority: authority.to_string() })
    }

    /// One TLS connection with an HTTP/1.1 handshake on it; the connection driver runs in its own
    /// task.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let tcp = TcpStream::connect(self.addr).await.with_context(|| format!("connect {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let tls = self.tls.connect(self.name.clone(), tcp).await.context("TLS handshake")?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

/// The request one scenario sends over and over.
#[derive(Clone)]
struct Workload {
    name: &'static str,
    method: hyper::Method,
    path: String,
    body: Option<Bytes>,
    authorization: String,
}

impl Workload {
    fn request(&self, authority: &str) -> Result<hyper::Request<Full<Bytes>>> {
        let mut b = hyper::Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::AUTHORIZATION, &self.authorization);
        if self.body.is_some() {
            b = b.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        Ok(b.body(Full::new(self.body.clone().unwrap_or_default()))?)
    }
}

/// What one connection task saw during the measured window.
#[derive(Default)]
struct Tally {
    /// Latency of every response (any status) in microseconds.
    latencies_us: Vec<u32>,
    non_2xx: u64,
    /// Transport failures (connect, TLS, HTTP, timeouts).
    errors: u64,
    statuses: std::collections::BTreeMap<u16, u64>,
    first_non_2xx: Option<String>,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.non_2xx += other.non_2xx;
        self.errors += other.errors;
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        if self.first_non_2xx.is_none() {
            self.first_non_2xx = other.first_non_2xx;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Send one request and read the whole answer: (status, body).
async fn exchange(sender: &mut SendRequest<Full<Bytes>>, target: &Target, work: &Workload) -> Result<(u16, Bytes)> {
    let fut = async {
        sender.ready().await.context("connection not ready")?;
        let resp = sender.send_request(work.request(&target.authority)?).await.context("send request")?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.context("read body")?.to_bytes();
        Ok::<_, anyhow::Error>((status, body))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))?
}

/// Drive one connection until `end`; record what started at or after `measure_from` and finished
/// by `end`.
async fn drive(
    mut sender: Option<SendRequest<Full<Bytes>>>,
    target: Target,
    work: Workload,
    measure_from: Instant,
    end: Instant,
    pace: Option<(Instant, Duration)>,
) -> Tally {
    let mut t = Tally { latencies_us: Vec::with_capacity(4096), ..Tally::default() };
    let mut sent: u32 = 0;
    loop {
        // Paced: request k is due at first + k * interval; latency counts from when it was due,
        // so a late server is not hidden by the client waiting for it (coordinated omission).
        let start = match pace {
            Some((first, interval)) => {
                let due = first + interval * sent;
                sent += 1;
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        if start >= end {
            break;
        }
        let counted = start >= measure_from;
        let conn = match sender.as_mut() {
            Some(s) if !s.is_closed() => s,
            _ => match target.connect().await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    if counted {
                        t.errors += 1;
                        t.first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let result = exchange(conn, &target, &work).await;
        let done = Instant::now();
        if !counted || done > end {
            if result.is_err() {
                sender = None;
            }
            continue;
        }
        match result {
            Ok((status, body)) => {
                let us = done.duration_since(start).as_micros();
                t.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                *t.statuses.entry(status).or_default() += 1;
                if !(200..300).contains(&status) {
                    t.non_2xx += 1;
                    t.first_non_2xx.get_or_insert_with(|| {
                        format!("{status}: {}", String::from_utf8_lossy(&body[..body.len().min(500)]))
                    });
                }
            }
            Err(e) => {
                t.errors += 1;
                t.first_error.get_or_insert_with(|| format!("{e:#}"));
                sender = None;
            }
        }
    }
    t
}

struct Outcome {
    scenario: &'static str,
    conns: usize,
    connected: usize,
    window: Duration,
    tally: Tally,
}

async fn run_scenario(target: &Target, work: Workload, conns: usize, s: &Settings, rate: Option<f64>) -> Outcome {
    eprintln!("== {}: {} {} over {conns} connections", work.name, work.method, work.path);
    // Open every connection first, so that connection setup is not part of the measurement.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let target = target.clone();
        set.spawn(async move { target.connect().await });
    }
    let mut senders = Vec::with_capacity(conns);
    let mut connect_errors = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(sender)) => senders.push(Some(sender)),
            Ok(Err(e)) => connect_errors.push(format!("{e:#}")),
            Err(e) => connect_errors.push(format!("task: {e}")),
        }
    }
    let connected = senders.len();
    if let Some(first) = connect_errors.first() {
        eprintln!("   WARNING: {} of {conns} connections failed to open (first: {first})", connect_errors.len());
    }
    // Connections that failed to open are retried by their task.
    senders.resize_with(conns, || None);

    let start = Instant::now();
    let measure_from = start + s.warmup;
    let end = measure_from + s.duration;
    eprintln!("   warm-up {:.1} s, measuring {:.1} s", s.warmup.as_secs_f64(), s.duration.as_secs_f64());
    if let Some(r) = rate {
        eprintln!("   offered load: {r} req/s, paced per connection (latency counted from when a request was due)");
    }
    let mut set = tokio::task::JoinSet::new();
    // Paced: each connection offers rate / conns req/s, the connections staggered evenly.
    let interval = rate.map(|r| Duration::from_secs_f64(conns as f64 / r));
    for (i, sender) in senders.into_iter().enumerate() {
        let pace = interval.map(|iv| (start + iv.mul_f64(i as f64 / conns as f64), iv));
        set.spawn(drive(sender, target.clone(), work.clone(), measure_from, end, pace));
    }
    let mut tally = Tally::default();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(t) => tally.merge(t),
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| format!("task: {e}"));
            }
        }
    }
    Outcome { scenario: work.name, conns, connected, window: s.duration, tally }
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn report(outcomes: &mut [Outcome]) {
    println!();
    println!("| scenario | conns | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for o in outcomes.iter_mut() {
        let lat = &mut o.tally.latencies_us;
        lat.sort_unstable();
        let n = lat.len();
        let rps = n as f64 / o.window.as_secs_f64().max(1e-9);
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            o.scenario,
            o.conns,
            n,
            o.tally.non_2xx + o.tally.errors,
            rps,
            percentile_ms(lat, 50.0),
            percentile_ms(lat, 90.0),
            percentile_ms(lat, 99.0),
            lat.last().map(|&m| f64::from(m) / 1000.0).unwrap_or(f64::NAN),
        );
    }
    println!();
    for o in outcomes.iter() {
        let statuses: Vec<String> = o.tally.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        println!(
            "{}: {}/{} connections opened up front; statuses [{}]; non-2xx {}; transport errors {}",
            o.scenario,
            o.connected,
            o.conns,
            statuses.join(", "),
            o.tally.non_2xx,
            o.tally.errors
        );
        if let Some(b) = &o.tally.first_non_2xx {
            println!("  first non-2xx: {b}");
        }
        if let Some(e) = &o.tally.first_error {
            println!("  first transport error: {e}");
        }
    }
    println!("(errors = non-2xx responses + transport errors; latency percentiles cover every response)");
}

/// Create the `bench` contract and get it accepted. Best effort: the plugin may be mid-rewrite.
async fn setup(sb: &cgs_e2e::Sandbox, isv: &cgs_client::Member) {
    let path = format!("/app/contracts/{CONTRACT}");
    let body = json!({"data": {"purpose": "load test", "created_by": "app_load bench"}});
    match isv.authed("PUT", &path, Some(body.to_string().into_bytes())).await {
        Ok(r) if (200..300).contains(&r.status) => eprintln!("setup: PUT {path} → {}", r.status),
        Ok(r) => eprintln!("WARNING setup: PUT {path} → {}: {}", r.status, String::from_utf8_lossy(&r.body)),
        Err(e) => eprintln!("WARNING setup: PUT {path} failed: {e}"),
    }
    let version = match isv.authed("GET", &path, None).await.map(|r| r.ok_json()) {
        Ok(Ok(v)) => v["version"].as_str().map(str::to_string),
        Ok(Err(e)) | Err(e) => {
            eprintln!("WARNING setup: GET {path} failed: {e}");
            None
        }
    };
    let proposal = match &version {
        None => {
            eprintln!("WARNING setup: no contract version; not proposing it");
            None
        }
        Some(version) => {
            let actions =
                json!([{"name": "contracts.set_contract", "args": {"contract_id": CONTRACT, "version": version}}]);
            match isv.propose(actions).await.map(|r| r.ok_json()) {
                Ok(Ok(p)) => {
                    let id = p["proposal_id"].as_str().map(str::to_string);
                    let state = p["state"].as_str().unwrap_or("?").to_string();
                    eprintln!("setup: proposal {} for version {version}: {state}", id.as_deref().unwrap_or("?"));
                    id.map(|id| (id, state))
                }
                Ok(Err(e)) | Err(e) => {
                    eprintln!("WARNING setup: proposing contracts.set_contract failed: {e}");
                    None
                }
            }
        }
    };
    if let Some((id, mut state)) = proposal {
        for name in MEMBERS {
            if state != "Open" {
                break;
            }
            match sb.member(name).vote(&id, true).await.map(|r| r.ok_json()) {
                Ok(Ok(v)) => {
                    state = v["state"].as_str().unwrap_or("?").to_string();
                    eprintln!("setup: {name} approved → {state}");
                }
                Ok(Err(e)) | Err(e) => eprintln!("WARNING setup: {name}'s ballot failed: {e}"),
            }
        }
        if state != "Accepted" {
            eprintln!("WARNING setup: proposal {id} ended {state}, not Accepted");
        }
    }
    match isv.authed("GET", &format!("{path}/consent/execution"), None).await {
        Ok(r) => eprintln!("setup: consent/execution → {} {}", r.status, String::from_utf8_lossy(&r.body)),
        Err(e) => eprintln!("WARNING setup: reading consent/execution failed: {e}"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let settings = Settings::from_env_and_args()?;
    eprintln!("app_load: {settings:?}");
    eprintln!("starting the sandbox (builds cgs-host and the plugins first; may take minutes)...");
    let sb = cgs_e2e::Sandbox::start(&[]).await?;
    eprintln!("sandbox at {}", sb.url);
    let isv = sb.member("isv");
    let token = isv.token().await.context("member login")?;
    setup(&sb, &isv).await;

    let target = Target::new(&sb.url, &std::fs::read(&sb.ca)?)?;
    let authorization = format!("Bearer {token}");
    let want = |name: &str| settings.only.as_deref().is_none_or(|o| o == name);
    let mut outcomes = Vec::new();
    if want("consent") {
        let work = Workload {
            name: "consent",
            method: hyper::Method::GET,
            path: format!("/app/contracts/{CONTRACT}/consent/execution"),
            body: None,
            authorization: authorization.clone(),
        };
        outcomes.push(run_scenario(&target, work, settings.conns_consent, &settings, None).await);
    }
    if want("consent-paced") && settings.consent_rate > 0.0 {
        let work = Workload {
            name: "consent-paced",
            method: hyper::Method::GET,
            path: format!("/app/contracts/{CONTRACT}/consent/execution"),
            body: None,
            authorization: authorization.clone(),
        };
        outcomes
            .push(run_scenario(&target, work, settings.conns_consent, &settings, Some(settings.consent_rate)).await);
    }
    if want("events") {
        let body = json!({"step": "bench", "rows": 42, "ok": true}).to_string();
        let work = Workload {
            name: "events",
            method: hyper::Method::POST,
            path: format!("/app/contracts/{CONTRACT}/events?scope=bench"),
            body: Some(Bytes::from(body)),
            authorization,
        };
        outcomes.push(run_scenario(&target, work, settings.conns_events, &settings, None).await);
    }
    report(&mut outcomes);
    drop(sb);
    Ok(())
}
