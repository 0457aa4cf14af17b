//! Connections: accepting, the connection cap, TLS, HTTP/1.1 or HTTP/2 by ALPN, the timeouts
//! that bound how long a client may hold a connection, and the request-body policy.
//!
//! Every connection lives under these rules (defaults in [`HttpLimits`]):
//!
//! 1. At most `max_connections` are served at once (including those still in their TLS
//!    handshake). One over the cap still gets its TLS handshake and `503 ServiceBusy` (with
//!    `retry-after`) to its first request, then is closed; a small extra budget bounds those
//!    refusals, and past it a connection is closed at once.
//! 2. The TLS handshake must finish within `tls_handshake_timeout`.
//! 3. The first request's header must be complete within `header_read_timeout` of the handshake
//!    (HTTP/1.1 and HTTP/2 alike), else the connection is closed.
//! 4. With no request in flight, the next request's header must be complete within
//!    `idle_timeout` of the previous answer, else the connection is closed (HTTP/2 first says
//!    GOAWAY). Bytes that are not a complete request header (HTTP/2 PINGs, a trickled header) do
//!    not count as activity.
//! 5. A request body must arrive within `body_timeout` (`408 RequestTimeout`), see [`Incoming`].
//!
//! Rules 3 and 4 are enforced by one watchdog future per connection, polled in the connection's
//! own task: it reads two atomics that the request path updates (requests in flight, when the
//! last one finished), so the request path pays two atomic updates and one clock read.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio_rustls::TlsAcceptor;

use super::{ApiError, Service};

/// Limits of the HTTPS server: how many connections, how long a client may take, and what one
/// HTTP/2 connection may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once (in TLS handshake or after). One more is refused with
    /// `503 ServiceBusy`.
    pub max_connections: usize,
    /// Time allowed for the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time from the end of the TLS handshake until the first request's header is complete.
    pub header_read_timeout: Duration,
    /// Time a connection with no request in flight may wait for the next request's header.
    pub idle_timeout: Duration,
    /// Time allowed to receive a request body (from when the route starts reading it).
    pub body_timeout: Duration,
    /// Bytes of a request body the server reads and discards when it answers without needing
    /// the rest (an error, or a body over the route's limit), so that the client's upload ends
    /// and the answer reaches it on a cleanly closed stream. A larger body is not read: HTTP/2
    /// resets the stream with `NO_ERROR` after the answer, HTTP/1.1 closes the connection.
    pub discard_bytes: usize,
    /// Request header size limit (HTTP/1.1 head incl. request line; HTTP/2
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`).
    pub max_header_bytes: u32,
    /// HTTP/2: streams a client may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: flow-control window of one stream (request body bytes buffered per stream).
    pub h2_stream_window: u32,
    /// HTTP/2: flow-control window of the connection (request body bytes buffered in total).
    pub h2_connection_window: u32,
    /// HTTP/2: response bytes buffered per stream before the server waits for the client.
    pub h2_max_send_buffer: usize,
    /// HTTP/2: streams reset by the client before the server accepted them (the "rapid reset"
    /// bound); past it the connection is closed with `ENHANCE_YOUR_CALM`.
    pub h2_max_pending_reset_streams: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            discard_bytes: 4 << 20,
            max_header_bytes: 16 << 10,
            h2_max_concurrent_streams: 128,
            h2_stream_window: 1 << 20,
            h2_connection_window: 1 << 20,
            h2_max_send_buffer: 400 << 10,
            h2_max_pending_reset_streams: 20,
        }
    }
}

impl HttpLimits {
    /// Connections past the cap that may be in their refusal (handshake + 503) at once.
    fn refusal_slots(&self) -> usize {
        (self.max_connections / 16).clamp(4, 256)
    }

    /// The body policy of requests.
    pub(crate) fn body_policy(&self) -> BodyPolicy {
        BodyPolicy { timeout: self.body_timeout, discard: self.discard_bytes }
    }
}

/// File descriptors kept for everything but connections (ledger, cache, logs, runtime).
const FD_RESERVE: u64 = 128;

/// Make room for the connections in the process's open-file limit: raise the soft limit to the
/// hard limit if it is too low, else lower `max_connections` to what fits.
#[cfg(unix)]
fn fit_open_files(limits: &mut HttpLimits) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let need = (limits.max_connections + limits.refusal_slots()) as u64 + FD_RESERVE;
    let current = getrlimit(Resource::Nofile);
    let mut soft = current.current.unwrap_or(u64::MAX);
    if soft >= need {
        return;
    }
    // An unlimited hard limit cannot be a soft limit for open files: ask for what is needed.
    let target = current.maximum.unwrap_or(need);
    if target > soft {
        match setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: current.maximum }) {
            Ok(()) => {
                tracing::info!(from = soft, to = target, "raised the open-file soft limit for connections");
                soft = target;
            }
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file soft limit"),
        }
    }
    if soft < need {
        let fit = usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
        // Connections plus their refusal budget (1/16) must fit.
        let max = (fit * 16 / 17).saturating_sub(4).max(1);
        tracing::warn!(
            requested = limits.max_connections,
            max_connections = max,
            open_file_limit = soft,
            "the open-file limit is too low for --max-connections: serving fewer connections"
        );
        limits.max_connections = max;
    }
}

#[cfg(not(unix))]
fn fit_open_files(_limits: &mut HttpLimits) {}

// ===== request bodies =====

/// How request bodies are read: a deadline, and how much of an unwanted body is discarded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyPolicy {
    timeout: Duration,
    discard: usize,
}

/// Why a body could not be read.
pub(crate) enum BodyError {
    /// Over the route's limit (what fit the discard budget was read and dropped).
    TooLarge,
    /// Not complete within the body timeout.
    TimedOut(Duration),
    /// The connection failed or the framing was invalid.
    Read(hyper::Error),
}

/// A request body as the routes see it: hyper's body with the server's body policy. Read it with
/// [`Incoming::read`]. If a route answers without reading it, the body goes back to
/// [`Service::handle`], which discards it (up to [`HttpLimits::discard_bytes`]) before the answer
/// is sent: the client's upload then ends normally, and the answer reaches HTTP/1.1 and HTTP/2
/// clients on a cleanly ended exchange.
pub(crate) struct Incoming {
    body: Option<hyper::body::Incoming>,
    /// A body already read: a request another node forwarded.
    preread: Option<Vec<u8>>,
    policy: BodyPolicy,
    unread: Option<oneshot::Sender<hyper::body::Incoming>>,
}

/// Where an unread body comes back.
pub(crate) type Unread = oneshot::Receiver<hyper::body::Incoming>;

impl Incoming {
    /// Wrap `body`. When it may still carry data (and the client did not ask
    /// `expect: 100-continue`, which an early answer declines), an unread body comes back
    /// through the returned receiver; bodies already complete (a GET) cost nothing more.
    pub(crate) fn new(
        body: hyper::body::Incoming,
        policy: BodyPolicy,
        expects_continue: bool,
    ) -> (Self, Option<Unread>) {
        if body.is_end_stream() || expects_continue {
            return (Self { body: Some(body), preread: None, policy, unread: None }, None);
        }
        let (tx, rx) = oneshot::channel();
        (Self { body: Some(body), preread: None, policy, unread: Some(tx) }, Some(rx))
    }

    /// A body read already (a request forwarded by another node of the service).
    pub(crate) fn from_bytes(bytes: Vec<u8>, policy: BodyPolicy) -> Self {
        Self { body: None, preread: Some(bytes), policy, unread: None }
    }

    /// The whole body, at most `limit` bytes, within the body timeout. Over the limit, the rest
    /// is discarded (within the discard budget and the same deadline) before answering.
    pub(crate) async fn read(mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        if let Some(bytes) = self.preread.take() {
            return if bytes.len() > limit { Err(BodyError::TooLarge) } else { Ok(bytes) };
        }
        let Some(mut body) = self.body.take() else { return Ok(Vec::new()) };
        let policy = self.policy;
        let deadline = tokio::time::Instant::now() + policy.timeout;
        let declared_too_large = body.size_hint().exact().is_some_and(|n| n > limit as u64);
        if !declared_too_large {
            match tokio::time::timeout_at(deadline, read_up_to(&mut body, limit)).await {
                Err(_) => return Err(BodyError::TimedOut(policy.timeout)),
                Ok(Err(e)) => return Err(BodyError::Read(e)),
                Ok(Ok(Some(bytes))) => return Ok(bytes),
                Ok(Ok(None)) => {}
            }
        }
        // Over the limit: let the upload finish (within budget and deadline), then answer.
        let _ = tokio::time::timeout_at(deadline, discard(&mut body, policy.discard)).await;
        Err(BodyError::TooLarge)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let (Some(body), Some(tx)) = (self.body.take(), self.unread.take()) {
            let _ = tx.send(body);
        }
    }
}

/// Read until the end of the body; `None` as soon as it passes `limit` bytes.
async fn read_up_to(body: &mut hyper::body::Incoming, limit: usize) -> Result<Option<Vec<u8>>, hyper::Error> {
    let hint = usize::try_from(body.size_hint().lower()).unwrap_or(limit);
    let mut buf = Vec::with_capacity(hint.min(limit));
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buf.len() + data.len() > limit {
                return Ok(None);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Some(buf))
}

/// Read and drop the rest of `body`, at most `budget` bytes; true if it ended. A body declared
/// (content-length) larger than the budget is left alone.
async fn discard(body: &mut hyper::body::Incoming, budget: usize) -> bool {
    if body.size_hint().lower() > budget as u64 {
        return false;
    }
    let mut read = 0usize;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    read += data.len();
                    if read > budget {
                        return false;
                    }
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// Discard a body a route answered without reading (see [`Incoming`]), within the body timeout.
pub(crate) async fn discard_unread(unread: Option<Unread>, policy: BodyPolicy) {
    let Some(mut rx) = unread else { return };
    // The route has returned, so its request (and body) is dropped: the body is here or read.
    if let Ok(mut body) = rx.try_recv() {
        let _ = tokio::time::timeout(policy.timeout, discard(&mut body, policy.discard)).await;
    }
}

// ===== connections =====

/// One connection's request bookkeeping, shared by its requests and its watchdog.
struct ConnState {
    /// When the TLS handshake finished.
    start: Instant,
    /// Requests whose handler is running.
    in_flight: AtomicU32,
    /// When the last request finished, in ms since `start`; `u64::MAX` before the first.
    last_done_ms: AtomicU64,
    /// Refused connections: the 503 is on its way.
    answered: Notify,
}

impl ConnState {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicU32::new(0),
            last_done_ms: AtomicU64::new(u64::MAX),
            answered: Notify::new(),
        }
    }
}

/// A request in flight on its connection.
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn new(state: &Arc<ConnState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.0.last_done_ms.store(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why the watchdog ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// No request header within the header-read timeout of the handshake: nothing is owed to
    /// the client, the connection is dropped.
    NoRequest,
    /// No request within the idle timeout of the last answer: closed gracefully.
    Idle,
    /// A refused connection got its 503: closed gracefully.
    Refused,
}

/// Resolves when the connection must end (rules 3 and 4 of the module docs).
async fn watchdog(state: &ConnState, limits: &HttpLimits, refused: bool) -> Cut {
    let mut deadline = state.start + limits.header_read_timeout;
    loop {
        if refused {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = state.answered.notified() => return Cut::Refused,
            }
        } else {
            tokio::time::sleep_until(deadline.into()).await;
        }
        let now = Instant::now();
        if state.in_flight.load(Ordering::Acquire) > 0 {
            // Handlers are bounded by their own deadlines; look again an idle period later.
            deadline = now + limits.idle_timeout;
            continue;
        }
        match state.last_done_ms.load(Ordering::Acquire) {
            u64::MAX => return Cut::NoRequest,
            ms => {
                let idle_until = state.start + Duration::from_millis(ms) + limits.idle_timeout;
                if now >= idle_until {
                    return Cut::Idle;
                }
                deadline = idle_until;
            }
        }
    }
}

/// The HTTPS server: listener loop and per-connection tasks.
pub(crate) struct Server {
    acceptor: TlsAcceptor,
    service: Arc<Service>,
    limits: HttpLimits,
    h1: hyper::server::conn::http1::Builder,
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
    slots: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
}

/// What a connection holds of the cap: a slot, or one of the refusal budget.
struct Slot {
    refused: bool,
    _permit: OwnedSemaphorePermit,
}

impl Server {
    pub(crate) fn new(tls: Arc<rustls::ServerConfig>, service: Arc<Service>, mut limits: HttpLimits) -> Self {
        limits.max_connections = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
        fit_open_files(&mut limits);
        let mut h1 = hyper::server::conn::http1::Builder::new();
        // Rules 3 and 4 (the watchdog) bound header reads for both protocols; hyper's own
        // header timer would also cut idle keep-alive connections at the header timeout.
        h1.header_read_timeout(None).max_header_size(limits.max_header_bytes as usize).keep_alive(true);
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        h2.max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_header_list_size(limits.max_header_bytes)
            .initial_stream_window_size(limits.h2_stream_window)
            .initial_connection_window_size(limits.h2_connection_window)
            .max_send_buf_size(limits.h2_max_send_buffer)
            .max_pending_accept_reset_streams(limits.h2_max_pending_reset_streams)
            // PINGs would count as activity for nobody; the watchdog handles idle peers.
            .keep_alive_interval(None);
        Self {
            acceptor: TlsAcceptor::from(tls),
            service,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            refusals: Arc::new(Semaphore::new(limits.refusal_slots())),
            limits,
            h1,
            h2,
        }
    }

    /// Accept until `shutdown` turns true (or its sender is gone), then tell open connections to
    /// finish and give them up to five seconds.
    pub(crate) async fn run(self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
        let server = Arc::new(self);
        tracing::debug!(limits = ?server.limits, "serving HTTPS");
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors, most likely: the pending connection waits in
                        // the backlog until a connection closes.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => break,
            };
            let slot = match server.slots.clone().try_acquire_owned() {
                Ok(p) => Slot { refused: false, _permit: p },
                Err(_) => match server.refusals.clone().try_acquire_owned() {
                    Ok(p) => Slot { refused: true, _permit: p },
                    Err(_) => {
                        tracing::debug!(%peer, "connection limit and refusal budget exhausted: closing");
                        drop(tcp);
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(server.clone().connection(tcp, peer, slot, shutdown.clone()));
        }
        drop(listener);
        let drained = async {
            let all = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            let _ = server.slots.acquire_many(all(server.limits.max_connections)).await;
            let _ = server.refusals.acquire_many(all(server.limits.refusal_slots())).await;
        };
        if tokio::time::timeout(Duration::from_secs(5), drained).await.is_err() {
            tracing::warn!("closing connections that did not finish in 5 s");
        }
        Ok(())
    }

    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: std::net::SocketAddr,
        slot: Slot,
        shutdown: watch::Receiver<bool>,
    ) {
        let refused = slot.refused;
        let handshake = if refused {
            self.limits.tls_handshake_timeout.min(self.limits.header_read_timeout)
        } else {
            self.limits.tls_handshake_timeout
        };
        let tls = match tokio::time::timeout(handshake, self.acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        // HTTP/2 when the client chose it by ALPN (RFC 9113 §3.2), else HTTP/1.1: no guessing
        // from the first bytes, which would wait on a silent client.
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        let state = Arc::new(ConnState::new());
        if refused {
            let max = self.limits.max_connections;
            let s = state.clone();
            let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                s.answered.notify_one();
                std::future::ready(Ok::<_, Infallible>(busy(max)))
            });
            self.drive_either(h2, io, svc, &state, true, shutdown, peer).await;
        } else {
            let service = self.service.clone();
            let policy = self.limits.body_policy();
            let s = state.clone();
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let in_flight = InFlight::new(&s);
                let service = service.clone();
                async move {
                    let resp = service.handle(req, policy).await;
                    drop(in_flight);
                    Ok::<_, Infallible>(resp)
                }
            });
            self.drive_either(h2, io, svc, &state, false, shutdown, peer).await;
        }
        drop(slot);
    }

    #[allow(clippy::too_many_arguments)]
    async fn drive_either<S>(
        &self,
        h2: bool,
        io: TokioIo<tokio_rustls::server::TlsStream<TcpStream>>,
        svc: S,
        state: &ConnState,
        refused: bool,
        shutdown: watch::Receiver<bool>,
        peer: std::net::SocketAddr,
    ) where
        S: hyper::service::Service<
                Request<hyper::body::Incoming>,
                Response = Response<Full<Bytes>>,
                Error = Infallible,
            > + Send
            + 'static,
        S::Future: Send + 'static,
    {
        if h2 {
            let conn = self.h2.serve_connection(io, svc);
            self.drive(conn, |c| c.graceful_shutdown(), state, refused, shutdown, peer).await
        } else {
            let conn = self.h1.serve_connection(io, svc);
            self.drive(conn, |c| c.graceful_shutdown(), state, refused, shutdown, peer).await
        }
    }

    /// Run `conn` until it ends, the watchdog cuts it, or the server shuts down.
    async fn drive<C, G>(
        &self,
        conn: C,
        graceful: G,
        state: &ConnState,
        refused: bool,
        mut shutdown: watch::Receiver<bool>,
        peer: std::net::SocketAddr,
    ) where
        C: Future<Output = hyper::Result<()>>,
        G: Fn(Pin<&mut C>),
    {
        let mut conn = std::pin::pin!(conn);
        let cut = tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            cut = watchdog(state, &self.limits, refused) => Some(cut),
            _ = shutdown.changed() => None,
        };
        tracing::debug!(%peer, ?cut, "closing connection");
        if cut == Some(Cut::NoRequest) {
            return;
        }
        graceful(conn.as_mut());
        let grace = self.limits.header_read_timeout.min(Duration::from_secs(5));
        match tokio::time::timeout(grace, conn).await {
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
            Ok(Ok(())) => {}
            Err(_) => tracing::debug!(%peer, "connection did not close gracefully in time: dropped"),
        }
    }
}

/// The answer on a connection over the cap.
fn busy(max: usize) -> Response<Full<Bytes>> {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceBusy",
        format!("the service is serving its maximum of {max} connections; retry shortly"),
    )
    .with_header("retry-after", "1".into())
    .into_response()
}
