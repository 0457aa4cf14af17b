//! What the load benches share: connections (HTTPS with the service certificate pinned, or plain
//! HTTP for a peer such as etcd), one request sent back to back per connection, the tally of
//! latencies and the markdown table.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// No single request may take longer than this (a hung service must not hang the bench).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The timing of a run.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Not measured, first.
    pub warmup: Duration,
    /// Measured.
    pub duration: Duration,
}

/// Where and how to connect: address, TLS name, pinned TLS configuration, `Host` header value.
#[derive(Clone)]
pub struct Target {
    addr: SocketAddr,
    /// TLS name and connector; `None` for plain HTTP.
    tls: Option<(ServerName<'static>, TlsConnector)>,
    authority: String,
}

impl Target {
    /// `https://ip:port`, with `ca_pem` pinned; or `http://ip:port` when `ca_pem` is `None`.
    pub fn new(url: &str, ca_pem: Option<&[u8]>) -> Result<Target> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("service URL {url}"))?;
        let authority = uri.authority().ok_or_else(|| anyhow!("no host:port in {url}"))?.clone();
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let port = authority.port_u16().ok_or_else(|| anyhow!("no port in {url}"))?;
        let ip: std::net::IpAddr = host.parse().with_context(|| format!("host of {url} is not an IP address"))?;
        let tls = match ca_pem {
            Some(ca) => Some((
                ServerName::try_from(host).map_err(|e| anyhow!("TLS server name: {e}"))?,
                TlsConnector::from(Arc::new(cgs_client::tls_config(ca)?)),
            )),
            None => None,
        };
        Ok(Target { addr: SocketAddr::new(ip, port), tls, authority: authority.to_string() })
    }

    /// One TLS connection with an HTTP/1.1 handshake on it; the connection driver runs in its own
    /// task.
    pub async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let tcp = TcpStream::connect(self.addr).await.with_context(|| format!("connect {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let Some((name, tls)) = &self.tls else {
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.context("HTTP/1.1 handshake")?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            return Ok(sender);
        };
        let tls = tls.connect(name.clone(), tcp).await.context("TLS handshake")?;
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
pub struct Workload {
    /// The scenario's name in the table.
    pub name: String,
    /// Method.
    pub method: hyper::Method,
    /// Path and query.
    pub path: String,
    /// JSON body.
    pub body: Option<Bytes>,
    /// `authorization` header value, if any.
    pub authorization: Option<String>,
}

/// Numbers the requests whose body holds `{n}` (unique ids, e.g. idempotent run ids).
static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Workload {
    fn request(&self, authority: &str) -> Result<hyper::Request<Full<Bytes>>> {
        let body = match &self.body {
            Some(b) if b.windows(3).any(|w| w == b"{n}") => {
                let n = SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(Bytes::from(String::from_utf8_lossy(b).replace("{n}", &n.to_string())))
            }
            other => other.clone(),
        };
        let mut b = hyper::Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .header(hyper::header::HOST, authority);
        if let Some(a) = &self.authorization {
            b = b.header(hyper::header::AUTHORIZATION, a);
        }
        if self.body.is_some() {
            b = b.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        Ok(b.body(Full::new(body.unwrap_or_default()))?)
    }
}

/// What one connection task saw during the measured window.
#[derive(Default)]
pub struct Tally {
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

/// One scenario's result.
pub struct Outcome {
    /// Its name.
    pub scenario: String,
    /// Connections.
    pub conns: usize,
    connected: usize,
    window: Duration,
    tally: Tally,
}

/// Run `work` over `conns` connections spread round-robin over `targets`, back to back (or paced
/// at `rate` req/s in all).
pub async fn run_scenario(targets: &[Target], work: Workload, conns: usize, s: &Window, rate: Option<f64>) -> Outcome {
    eprintln!("== {}: {} {} over {conns} connections to {} node(s)", work.name, work.method, work.path, targets.len());
    // Open every connection first, so that connection setup is not part of the measurement.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..conns {
        let target = targets[i % targets.len()].clone();
        set.spawn(async move { (i, target.connect().await) });
    }
    let mut senders: Vec<Option<SendRequest<Full<Bytes>>>> = (0..conns).map(|_| None).collect();
    let mut connect_errors = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((i, Ok(sender))) => senders[i] = Some(sender),
            Ok((_, Err(e))) => connect_errors.push(format!("{e:#}")),
            Err(e) => connect_errors.push(format!("task: {e}")),
        }
    }
    let connected = senders.iter().filter(|s| s.is_some()).count();
    if let Some(first) = connect_errors.first() {
        eprintln!("   WARNING: {} of {conns} connections failed to open (first: {first})", connect_errors.len());
    }
    // Connections that failed to open are retried by their task.

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
        set.spawn(drive(sender, targets[i % targets.len()].clone(), work.clone(), measure_from, end, pace));
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
    Outcome { scenario: work.name.clone(), conns, connected, window: s.duration, tally }
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
pub fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

/// Print the table of `outcomes`, then what went wrong in each.
pub fn report(outcomes: &mut [Outcome]) {
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
