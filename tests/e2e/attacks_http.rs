//! Attacks on the HTTPS layer of a real `cgs-host sandbox` process (real TLS, 127.0.0.1): slow
//! and idle clients, a connection flood past the cap, trickled bodies, and HTTP/2 early answers
//! (an error given before the request body was read must still reach the client as the error
//! envelope). The measured figures are printed (run with `--nocapture`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cgs_e2e::Sandbox;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

type Body = BoxBody<Bytes, Infallible>;

/// Make sure this process may hold `need` descriptors (raise the soft limit toward the hard one).
fn raise_open_files(need: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let cur = getrlimit(Resource::Nofile);
    if cur.current.is_none_or(|c| c >= need) {
        return;
    }
    let target = cur.maximum.map_or(need, |hard| hard.min(need));
    setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: cur.maximum }).expect("raise RLIMIT_NOFILE");
    assert!(target >= need, "this test needs {need} open files; the hard limit is {target}");
}

/// Open file descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Where the sandbox listens and how to reach it with raw TLS.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    authority: String,
    ca: Vec<u8>,
}

impl Target {
    fn new(sb: &Sandbox) -> Target {
        let uri: hyper::Uri = sb.url.parse().unwrap();
        let authority = uri.authority().unwrap().to_string();
        Target { addr: authority.parse().unwrap(), authority, ca: std::fs::read(&sb.ca).unwrap() }
    }

    /// A TLS connector offering the ALPN protocols `alpn` (none: HTTP/1.1).
    fn tls(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut cfg = cgs_client::tls_config(&self.ca).unwrap();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(cfg))
    }

    async fn tls_stream(&self, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        self.tls(alpn).connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await
    }

    /// A new connection speaking HTTP/2 (`h2`) or HTTP/1.1.
    async fn connect(&self, h2: bool) -> anyhow::Result<Http> {
        let tls = self.tls_stream(if h2 { &[b"h2"] } else { &[b"http/1.1"] }).await?;
        let io = TokioIo::new(tls);
        Ok(if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Http::H2(send, self.clone())
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            Http::H1(send, self.clone())
        })
    }
}

/// One client connection.
enum Http {
    H1(hyper::client::conn::http1::SendRequest<Body>, Target),
    H2(hyper::client::conn::http2::SendRequest<Body>, Target),
}

/// An answer and when its last byte arrived.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Bytes,
    at: Instant,
}

impl Answer {
    fn code(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("<no envelope: {}>", String::from_utf8_lossy(&self.body)))
    }
}

impl Http {
    fn name(&self) -> &'static str {
        match self {
            Http::H1(..) => "HTTP/1.1",
            Http::H2(..) => "HTTP/2",
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Http::H1(s, _) => s.is_closed(),
            Http::H2(s, _) => s.is_closed(),
        }
    }

    async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: Body) -> anyhow::Result<Answer> {
        let fut = async {
            let mut b = hyper::Request::builder().method(method);
            b = match self {
                Http::H1(_, t) => b.uri(path).header(hyper::header::HOST, &t.authority),
                Http::H2(_, t) => b.uri(format!("https://{}{path}", t.authority)),
            };
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            let req = b.body(body)?;
            let resp = match self {
                Http::H1(s, _) => {
                    s.ready().await?;
                    s.send_request(req).await?
                }
                Http::H2(s, _) => {
                    s.ready().await?;
                    s.send_request(req).await?
                }
            };
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, anyhow::Error>(Answer { status, retry_after, body, at: Instant::now() })
        };
        tokio::time::timeout(Duration::from_secs(30), fut).await.map_err(|_| anyhow::anyhow!("no answer in 30 s"))?
    }

    async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Answer> {
        self.send("GET", path, headers, empty()).await
    }
}

fn empty() -> Body {
    BoxBody::new(Full::new(Bytes::new()))
}

/// A request body fed chunk by chunk from a channel.
struct Trickle(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// A body of `total` bytes sent in `chunk`-sized pieces `gap` apart. The task yields when the
/// last piece was handed to the client (or an error if the client dropped the body, i.e. the
/// server reset the stream or closed the connection before reading it all).
fn trickle(total: usize, chunk: usize, gap: Duration) -> (Body, tokio::task::JoinHandle<Result<Instant, String>>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let task = tokio::spawn(async move {
        let mut sent = 0;
        while sent < total {
            let n = chunk.min(total - sent);
            tx.send(Bytes::from(vec![b'x'; n])).await.map_err(|_| format!("body dropped after {sent} bytes"))?;
            sent += n;
            if sent < total {
                tokio::time::sleep(gap).await;
            }
        }
        drop(tx);
        Ok(Instant::now())
    });
    (BoxBody::new(Trickle(rx)), task)
}

/// Latency figures of `n` sequential calls of `f` (each must answer 200).
async fn latencies<F, Fut>(what: &str, n: usize, mut f: F) -> String
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let status = f().await;
        all.push(t.elapsed());
        assert_eq!(status, 200, "{what} answered {status}");
    }
    all.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    assert!(all[all.len() - 1] < Duration::from_secs(5), "{what}: a request took {:?}", all[all.len() - 1]);
    format!(
        "{what:<34} n={n:<4} p50={:>7.2} ms  p95={:>7.2} ms  max={:>7.2} ms",
        ms(p(0.5)),
        ms(p(0.95)),
        ms(all[all.len() - 1])
    )
}

/// Create contract `id` as `isv` and have the three sandbox members accept it.
async fn accepted_contract(sb: &Sandbox, id: &str) -> cgs_client::Member {
    let isv = sb.member("isv");
    let path = format!("/app/contracts/{id}");
    let body = json!({"data": {"purpose": "attack tests"}}).to_string().into_bytes();
    let r = isv.authed("PUT", &path, Some(body)).await.unwrap();
    assert!(r.status < 300, "PUT {path}: {} {}", r.status, String::from_utf8_lossy(&r.body));
    let version =
        isv.authed("GET", &path, None).await.unwrap().ok_json().unwrap()["version"].as_str().unwrap().to_string();
    let actions = json!([{"name": "contracts.set_contract", "args": {"contract_id": id, "version": version}}]);
    let p = isv.propose(actions).await.unwrap().ok_json().unwrap();
    let proposal = p["proposal_id"].as_str().unwrap().to_string();
    let mut state = p["state"].as_str().unwrap().to_string();
    for name in ["isv", "data-provider", "code-provider"] {
        if state != "Open" {
            break;
        }
        let v = sb.member(name).vote(&proposal, true).await.unwrap().ok_json().unwrap();
        state = v["state"].as_str().unwrap().to_string();
    }
    assert_eq!(state, "Accepted");
    let r = isv.authed("GET", &format!("{path}/consent/execution"), None).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    isv
}

/// True once the peer closed `s` (EOF or error within `wait`).
async fn closed_by_peer<S: tokio::io::AsyncRead + Unpin>(s: &mut S, wait: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_clients_are_cut_off_and_service_keeps_answering() {
    const HALF_HEADERS: usize = 500;
    const SILENT_TCP: usize = 500;
    raise_open_files(4096);
    // Default limits: header read 10 s, TLS handshake 10 s.
    let sb = Sandbox::start(&[]).await.unwrap();
    let pid = sb.pid();
    let target = Target::new(&sb);
    let isv = accepted_contract(&sb, "slow").await;
    let consent = || async { isv.authed("GET", "/app/contracts/slow/consent/execution", None).await.unwrap().status };
    let health = || async { sb.client.get("/node/health").await.unwrap().status };
    let fresh_health = || {
        let t = target.clone();
        async move { t.connect(false).await.unwrap().get("/node/health", &[]).await.unwrap().status }
    };

    let mut report =
        vec![format!("== {HALF_HEADERS} TLS clients with half a request header + {SILENT_TCP} silent TCP clients")];
    report.push(latencies("idle: GET /node/health", 200, health).await);
    report.push(latencies("idle: consent check", 200, consent).await);
    report.push(latencies("idle: health on a new connection", 20, fresh_health).await);
    let fds_before = open_fds(pid);

    // The attack: TLS + half a header, and TCP connections that never start TLS.
    let opened = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    for _ in 0..HALF_HEADERS {
        let (t, gate) = (target.clone(), gate.clone());
        tasks.spawn(async move {
            let _g = gate.acquire().await.unwrap();
            let mut s = t.tls_stream(&[b"http/1.1"]).await.unwrap();
            s.write_all(b"GET /node/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.unwrap();
            s.flush().await.unwrap();
            (Some(s), None)
        });
    }
    for _ in 0..SILENT_TCP {
        let (t, gate) = (target.clone(), gate.clone());
        tasks.spawn(async move {
            let _g = gate.acquire().await.unwrap();
            (None, Some(TcpStream::connect(t.addr).await.unwrap()))
        });
    }
    let mut half = Vec::new();
    let mut silent = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            (Some(s), _) => half.push(s),
            (_, Some(s)) => silent.push(s),
            _ => unreachable!(),
        }
    }
    let open_time = opened.elapsed();
    // Let the server accept what is still in its backlog.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fds_during = open_fds(pid);
    report.push(format!(
        "opened {} + {} connections in {:.2} s; server fds before={fds_before} during={fds_during}",
        half.len(),
        silent.len(),
        open_time.as_secs_f64()
    ));
    assert!(
        fds_during >= fds_before + (HALF_HEADERS + SILENT_TCP) * 9 / 10,
        "the server should hold the slow connections: fds {fds_before} -> {fds_during}"
    );

    // The service keeps answering while they are connected.
    report.push(latencies("under attack: GET /node/health", 200, health).await);
    report.push(latencies("under attack: consent check", 200, consent).await);
    report.push(latencies("under attack: health on a new conn", 20, fresh_health).await);
    let fds_still = open_fds(pid);

    // After the header-read (10 s) and TLS handshake (10 s) timeouts the server has closed them.
    let mut timeline = Vec::new();
    let fds_after = loop {
        let n = open_fds(pid);
        timeline.push(format!("{:.1}s:{n}", opened.elapsed().as_secs_f64()));
        if n <= fds_before + 4 || opened.elapsed() > Duration::from_secs(40) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    };
    let cut_at = opened.elapsed();
    report.push(format!("server fds over time (since the first slow client): {}", timeline.join(" ")));
    report.push(format!(
        "server fds: before={fds_before} during={fds_during} (after measuring: {fds_still}) after={fds_after} \
         ({:.1} s after the first slow client)",
        cut_at.as_secs_f64()
    ));
    // The loop above stops with up to 4 fds still open: the last connections the server took from
    // its backlog reach their timeout a moment later. Each check waits until a common deadline
    // 5 s from now (then 200 ms), so a straggler is seen closed and a server that never closes
    // them still fails.
    let deadline = Instant::now() + Duration::from_secs(5);
    let wait = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(200));
    let mut half_closed = 0;
    for s in &mut half {
        half_closed += usize::from(closed_by_peer(s, wait()).await);
    }
    let mut silent_closed = 0;
    for s in &mut silent {
        silent_closed += usize::from(closed_by_peer(s, wait()).await);
    }
    report.push(format!(
        "closed by the server: {half_closed}/{} half-header clients, {silent_closed}/{} silent TCP clients",
        half.len(),
        silent.len()
    ));
    report.push(latencies("after: consent check", 50, consent).await);
    println!("{}", report.join("\n"));
    assert!(fds_after <= fds_before + 4, "slow connections still open: fds {fds_before} -> {fds_after}");
    assert_eq!(half_closed, half.len(), "every half-header client is cut off");
    assert_eq!(silent_closed, silent.len(), "every silent TCP client is cut off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_stalled_connections_are_closed_on_time() {
    let sb = Sandbox::start(&["--header-read-timeout-ms", "2000", "--idle-timeout-ms", "4000"]).await.unwrap();
    let target = Target::new(&sb);
    let mut report = vec!["== idle and stalled connections (header read 2 s, idle 4 s)".to_string()];

    // HTTP/2 that never completes its preface: cut at the header-read timeout.
    let t0 = Instant::now();
    let mut preface = target.tls_stream(&[b"h2"]).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert!(closed_by_peer(&mut preface, Duration::from_secs(10)).await);
    let preface_cut = t0.elapsed();
    report.push(format!("HTTP/2 half preface closed after {:.2} s", preface_cut.as_secs_f64()));
    assert!(preface_cut >= Duration::from_millis(1800) && preface_cut < Duration::from_secs(4), "{preface_cut:?}");

    // Keep-alive connections, one request each, then idle: closed at the idle timeout (not at
    // the header-read timeout), HTTP/2 with a GOAWAY.
    for h2 in [false, true] {
        let mut c = target.connect(h2).await.unwrap();
        assert_eq!(c.get("/node/health", &[]).await.unwrap().status, 200);
        let idle_from = Instant::now();
        tokio::time::sleep(Duration::from_millis(3000)).await;
        assert!(!c.is_closed(), "{} closed before the idle timeout", c.name());
        assert_eq!(c.get("/node/health", &[]).await.unwrap().status, 200, "still usable before the idle timeout");
        let idle_from_2 = Instant::now();
        while !c.is_closed() && idle_from.elapsed() < Duration::from_secs(15) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let idle = idle_from_2.elapsed();
        report.push(format!(
            "{} keep-alive connection closed {:.2} s after its last answer",
            c.name(),
            idle.as_secs_f64()
        ));
        assert!(c.is_closed(), "{} connection still open after {idle:?}", c.name());
        assert!(idle >= Duration::from_millis(3800) && idle < Duration::from_secs(7), "{}: {idle:?}", c.name());
    }
    println!("{}", report.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_over_the_cap_gets_503_service_busy_and_slots_free_up() {
    const CAP: usize = 20;
    let sb = Sandbox::start(&["--max-connections", &CAP.to_string()]).await.unwrap();
    let target = Target::new(&sb);
    let mut report = vec![format!("== connection flood with --max-connections {CAP}")];

    // Fill the cap with keep-alive connections (the sandbox client may hold one already).
    let mut held = Vec::new();
    let refusal = loop {
        assert!(held.len() <= CAP, "more than {CAP} connections were served");
        let mut c = target.connect(held.len() % 2 == 1).await.unwrap();
        let a = c.get("/node/health", &[]).await.unwrap();
        if a.status == 200 {
            held.push(c);
            continue;
        }
        break (c, a);
    };
    let (refused, a) = refusal;
    report.push(format!(
        "served {} connections, then: {} {} retry-after={:?}",
        held.len(),
        a.status,
        a.code(),
        a.retry_after
    ));
    assert!(held.len() >= CAP - 1, "only {} connections were served", held.len());
    assert_eq!((a.status, a.code().as_str(), a.retry_after.as_deref()), (503, "ServiceBusy", Some("1")));
    // The refused connection is closed after its answer.
    let t = Instant::now();
    while !refused.is_closed() && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused.is_closed(), "the refused connection stays open");
    // The same over the other protocol.
    let mut other = target.connect(refused.name() == "HTTP/1.1").await.unwrap();
    let b = other.get("/node/health", &[]).await.unwrap();
    report.push(format!("over {}: {} {}", other.name(), b.status, b.code()));
    assert_eq!((b.status, b.code().as_str()), (503, "ServiceBusy"));
    // The held connections still work.
    for c in &mut held {
        assert_eq!(c.get("/node/health", &[]).await.unwrap().status, 200);
    }

    // Closing one connection frees its slot.
    let closed_at = Instant::now();
    drop(held.remove(0));
    let freed = loop {
        let mut c = target.connect(false).await.unwrap();
        if c.get("/node/health", &[]).await.unwrap().status == 200 {
            break closed_at.elapsed();
        }
        assert!(closed_at.elapsed() < Duration::from_secs(5), "no slot freed 5 s after a connection closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    report.push(format!(
        "a slot was free again {:.0} ms after a client closed its connection",
        freed.as_secs_f64() * 1e3
    ));
    println!("{}", report.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_request_body_gets_408_request_timeout() {
    let sb = Sandbox::start(&["--body-timeout-ms", "2000"]).await.unwrap();
    let target = Target::new(&sb);
    let token = format!("Bearer {}", sb.member("isv").token().await.unwrap());
    for h2 in [false, true] {
        let mut c = target.connect(h2).await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        tx.send(Bytes::from_static(b"{\"data\":")).await.unwrap();
        let t = Instant::now();
        let headers =
            [("authorization", token.as_str()), ("content-length", "1000"), ("content-type", "application/json")];
        let a = c.send("PUT", "/app/contracts/slow-body", &headers, BoxBody::new(Trickle(rx))).await.unwrap();
        let took = t.elapsed();
        println!("{}: trickled body answered {} {} after {:.2} s", c.name(), a.status, a.code(), took.as_secs_f64());
        assert_eq!((a.status, a.code().as_str()), (408, "RequestTimeout"), "{}", c.name());
        assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(6), "{took:?}");
        drop(tx);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_errors_reach_http2_and_http1_clients_as_envelopes() {
    let sb = Sandbox::start(&[]).await.unwrap();
    let target = Target::new(&sb);
    let token = format!("Bearer {}", sb.member("isv").token().await.unwrap());
    // (what, method, path, bearer, body bytes, status, code)
    let cases: [(&str, &str, &str, &str, usize, u16, &str); 3] = [
        ("unknown route, 100 KiB body", "POST", "/nothing/here", "", 100 << 10, 404, "RouteNotFound"),
        ("2 MiB body to a 1 MiB route", "PUT", "/app/contracts/early", &token, 2 << 20, 413, "PayloadTooLarge"),
        (
            "invalid bearer, 100 KiB body",
            "PUT",
            "/app/contracts/early",
            "Bearer nope",
            100 << 10,
            401,
            "InvalidCredentials",
        ),
    ];

    // hyper clients; the body is trickled so that an answer given before the server read it
    // arrives while the client is still sending (which the server must not do).
    for h2 in [true, false] {
        for (what, method, path, bearer, size, status, code) in cases {
            let mut c = target.connect(h2).await.unwrap();
            let chunk = if size > (1 << 20) { 64 << 10 } else { 10 << 10 };
            let (body, upload) = trickle(size, chunk, Duration::from_millis(30));
            let len = size.to_string();
            let mut headers = vec![("content-length", len.as_str())];
            if !bearer.is_empty() {
                headers.push(("authorization", bearer));
            }
            let a = c.send(method, path, &headers, body).await.unwrap();
            let uploaded = upload.await.unwrap();
            println!(
                "{} {what}: {} {} (upload: {:?})",
                c.name(),
                a.status,
                a.code(),
                uploaded.as_ref().map(|_| "complete")
            );
            assert_eq!((a.status, a.code().as_str()), (status, code), "{} {what}", c.name());
            let done = uploaded.unwrap_or_else(|e| panic!("{} {what}: the upload did not complete: {e}", c.name()));
            assert!(done <= a.at, "{} {what}: answered before the body was read", c.name());
            // The connection is still good for the next request.
            assert_eq!(c.get("/node/health", &[]).await.unwrap().status, 200, "{} {what}", c.name());
        }
    }

    // curl, the client of the original report (HTTP/2 by ALPN).
    let version = std::process::Command::new("curl").arg("--version").output();
    let Ok(version) = version else {
        println!("SKIPPED the curl part: no curl binary");
        return;
    };
    let features = String::from_utf8_lossy(&version.stdout).to_string();
    if !features.contains("HTTP2") {
        println!("SKIPPED the curl part: this curl has no HTTP/2 support");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (what, method, path, bearer, size, status, code) in cases {
        let file = dir.path().join(format!("{size}.bin"));
        std::fs::write(&file, vec![b'x'; size]).unwrap();
        for proto in ["--http2", "--http1.1"] {
            // Several times: without the fix, the failure depends on timing.
            for _ in 0..3 {
                let mut cmd = std::process::Command::new("curl");
                cmd.args(["-sS", proto, "--cacert"])
                    .arg(&sb.ca)
                    .args(["-X", method, "-o", "-", "-w", "\n%{http_code} %{http_version}", "--data-binary"])
                    .arg(format!("@{}", file.display()));
                if !bearer.is_empty() {
                    cmd.args(["-H", &format!("authorization: {bearer}")]);
                }
                let out = cmd.arg(format!("{}{path}", sb.url)).output().unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout).to_string();
                let (body, last) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
                let env: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                assert!(
                    out.status.success(),
                    "curl {proto} {what}: exit {:?}: {}{stdout}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert_eq!(
                    last,
                    format!("{status} {}", if proto == "--http2" { "2" } else { "1.1" }),
                    "curl {proto} {what}"
                );
                assert_eq!(env["error"]["code"], code, "curl {proto} {what}: {body}");
            }
            println!("curl {proto} {what}: {status} {code}");
        }
    }
}
