//! The HTTPS API: hyper 1 (HTTP/1.1 and HTTP/2) over rustls (TLS 1.3 only).
//!
//! Routes served by the host itself (`/node/*`) come first; everything under `/app` is matched
//! against the plugins' routes and run in the plugin runtime. Every error is the envelope
//! `{"error":{"code":…,"message":…}}` with a fitting status.

mod conn;
mod console;
mod gov;
mod node;
pub mod openapi;
mod request;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cgs_core::{ErrorEnvelope, TxId};
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use conn::HttpLimits;
// Request bodies as routes see them: read with `read_body`; one left unread is discarded (up to
// a bound) before the answer, so early answers end cleanly over HTTP/1.1 and HTTP/2.
use conn::Incoming;

use crate::runtime::{Caller, CallerKind, Method, PluginRequest, RouteMatch, Runtime};
pub use request::{decode_path, parse_query};

/// Largest request body accepted (1 MiB), per the API contract.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// How long a node waits for the leader's answer to a forwarded request.
const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Headers that belong to one connection, never passed on by forwarding.
const HOP_BY_HOP: &[&str] =
    &["host", "content-length", "connection", "transfer-encoding", "te", "upgrade", "keep-alive", "trailer"];

/// The headers forwarding passes on: those of the request (or answer) itself, with text values.
fn passed_on(headers: &hyper::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()))
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.to_string(), v.to_string())))
        .collect()
}

/// Largest plugin upload (`PUT /gov/blobs`).
pub const MAX_BLOB_BYTES: usize = 32 << 20;

/// What the HTTP layer serves.
pub struct Service {
    /// The plugin runtime.
    pub runtime: Arc<Runtime>,
    /// The ledger.
    pub ledger: Arc<crate::ledger::Ledger>,
    /// Governance.
    pub gov: Arc<crate::gov::Governance>,
    /// Callers and their credentials.
    pub auth: Arc<crate::auth::Auth>,
    /// Clean-room sessions, secrets, ID tokens.
    pub cleanroom: Arc<crate::cleanroom::Cleanroom>,
    /// This node's evidence, for `GET /node/attestation`.
    pub evidence: Arc<crate::attest::NodeEvidence>,
    /// Request and plugin-call counters (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The operator's scrape token for `GET /metrics`, if configured.
    pub metrics_token: Option<crate::metrics::Secret>,
    /// This node's part in the cluster (join, node records, forwarding).
    pub cluster: Arc<crate::cluster::Cluster>,
    /// `/openapi.json` as last built, and the plugin registry it was built from: it is rebuilt
    /// only when governance changed what runs (anyone may ask for it, often).
    pub openapi_cache: Mutex<Option<(std::sync::Weak<crate::runtime::Registry>, Bytes)>>,
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Envelope code.
    pub code: String,
    /// Envelope message.
    pub message: String,
    /// Extra headers (`allow`, `retry-after`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// An error.
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into(), headers: Vec::new() }
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let body = ErrorEnvelope::new(self.code, self.message).to_json();
        let mut resp = json_response(self.status, body);
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert(k, v);
            }
        }
        resp
    }
}

/// The header naming a request in the logs: a random id the node makes, echoed in every answer.
pub const REQUEST_ID: &str = "x-request-id";

/// A client's own `x-request-id`, if usable (1-64 of `A-Z a-z 0-9 . _ -`): logged beside the
/// node's as `client_request_id`, never instead of it.
fn client_request_id(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        .map(str::to_string)
}

/// The bearer token of `req` (trimmed), `None` without an `Authorization` header; another
/// scheme is `401 InvalidCredentials`.
fn bearer(req: &Request<Incoming>) -> Result<Option<&str>, ApiError> {
    let Some(h) = req.headers().get(hyper::header::AUTHORIZATION) else { return Ok(None) };
    let token = h.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "InvalidCredentials", "use `Authorization: Bearer <token>`")
    })?;
    Ok(Some(token.trim()))
}

fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub(crate) fn json_ok(value: &serde_json::Value) -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, serde_json::to_vec(value).unwrap_or_default())
}

impl Service {
    /// Answer one request. A body the route did not read is discarded (within the body
    /// policy) before the answer goes out: answering while the client still uploads makes HTTP/2
    /// reset the stream after the answer, which clients such as curl take as a failed exchange.
    pub(crate) async fn handle(
        &self,
        req: Request<hyper::body::Incoming>,
        policy: conn::BodyPolicy,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let mut resp = if self.forwards(&parts.method, parts.uri.path()) {
            self.forward(parts, body, policy).await
        } else {
            let (body, unread) = Incoming::new(body, policy, parts.headers.contains_key(hyper::header::EXPECT));
            self.serve_request(Request::from_parts(parts, body), unread, policy).await
        };
        harden(&mut resp);
        resp
    }

    /// Whether this node passes the request to the leader: it has peers and does not lead, and
    /// the request writes (any method but GET and HEAD, except the two POSTs that only check:
    /// `/gov/proposals/simulate`, `/gov/plugins/check`) or takes a clean-room nonce (nonces are
    /// kept by the node that gives them, the leader, which admits the session).
    fn forwards(&self, method: &hyper::Method, path: &str) -> bool {
        self.cluster.network.is_some()
            && !self.ledger.is_leader()
            && match *method {
                hyper::Method::GET | hyper::Method::HEAD => path == "/cleanroom/nonce",
                hyper::Method::POST => !matches!(path, "/gov/proposals/simulate" | "/gov/plugins/check"),
                _ => true,
            }
    }

    /// Pass a request to the leader over the peer connection and answer with its answer, once
    /// this node has applied the transaction it names (so that a read here sees the write).
    async fn forward(
        &self,
        parts: hyper::http::request::Parts,
        body: hyper::body::Incoming,
        policy: conn::BodyPolicy,
    ) -> Response<Full<Bytes>> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let started = std::time::Instant::now();
        let result: Result<Response<Full<Bytes>>, ApiError> = async {
            // Bounded: a node holds at most MAX_FORWARDS requests' bodies for the leader.
            let _slot = self.cluster.forward_slots.try_acquire().map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceBusy",
                    "this node is passing as many writes to the leader as it may; retry shortly",
                )
            })?;
            // A blob upload is up to 32 MiB: only a member's is read (checked here first, as the
            // leader would check it).
            let limit = if parts.uri.path() == "/gov/blobs" {
                let mut probe = Request::new(Incoming::from_bytes(Vec::new(), policy));
                *probe.headers_mut() = parts.headers.clone();
                self.member_only(&probe)?;
                MAX_BLOB_BYTES
            } else {
                MAX_BODY_BYTES
            };
            let (incoming, _) = Incoming::new(body, policy, false);
            let body = read_body(incoming, limit).await?;
            let Some(network) = &self.cluster.network else {
                return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NoLeader", "no peer network"));
            };
            let Some((leader, addr)) = self.cluster.leader_elsewhere() else {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "NoLeader",
                    "no node leads the service at the moment (an election is under way); retry shortly",
                ));
            };
            let fwd = crate::ledger::peer::Forwarded {
                method: parts.method.to_string(),
                uri: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_else(|| "/".into()),
                headers: passed_on(&parts.headers),
                body: b64.encode(&body),
            };
            let unreachable = |e: String| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "LeaderUnreachable",
                    format!("the leader (node {leader}) did not answer: {e}; retry shortly"),
                )
            };
            let answer = tokio::time::timeout(FORWARD_TIMEOUT, network.forward(leader, &addr, &fwd))
                .await
                .map_err(|_| unreachable(format!("no answer within {} s", FORWARD_TIMEOUT.as_secs())))?
                .map_err(unreachable)?;
            let mut resp = Response::new(Full::new(Bytes::from(b64.decode(&answer.body).unwrap_or_default())));
            *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
            for (k, v) in &answer.headers {
                if let (Ok(k), Ok(v)) = (hyper::header::HeaderName::try_from(k.as_str()), HeaderValue::from_str(v))
                    && !HOP_BY_HOP.contains(&k.as_str())
                {
                    resp.headers_mut().append(k, v);
                }
            }
            let tx =
                resp.headers().get("x-cgs-tx-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<TxId>().ok());
            if let Some(tx) = tx
                && !self.ledger.wait_applied(tx.seqno, std::time::Duration::from_secs(10)).await
            {
                tracing::warn!(%tx, "a forwarded write is not applied on this node after 10 s");
            }
            Ok(resp)
        }
        .await;
        let resp = result.unwrap_or_else(|e| e.into_response());
        self.metrics.request(parts.method.as_str(), "forwarded".into(), resp.status().as_u16(), started.elapsed());
        resp
    }

    /// The leader's side of [`Service::forward`]: serve a request node `from` forwarded.
    pub(crate) async fn answer_forwarded(
        &self,
        from: u64,
        fwd: crate::ledger::peer::Forwarded,
        policy: conn::BodyPolicy,
    ) -> crate::ledger::peer::ForwardedAnswer {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let fail = |status: u16, msg: String| crate::ledger::peer::ForwardedAnswer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: b64
                .encode(serde_json::json!({"error": {"code": "InvalidForwardedRequest", "message": msg}}).to_string()),
        };
        let Ok(body) = b64.decode(&fwd.body) else { return fail(400, "the body is not base64".into()) };
        let mut builder = Request::builder().method(fwd.method.as_str()).uri(fwd.uri.as_str());
        for (k, v) in &fwd.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let req = match builder.body(Incoming::from_bytes(body, policy)) {
            Ok(r) => r,
            Err(e) => return fail(400, e.to_string()),
        };
        tracing::debug!(from, method = %fwd.method, uri = %fwd.uri, "serving a forwarded request");
        let resp = self.serve_request(req, None, policy).await;
        let (parts, body) = resp.into_parts();
        let bytes = http_body_util::BodyExt::collect(body).await.map(|c| c.to_bytes()).unwrap_or_default();
        crate::ledger::peer::ForwardedAnswer {
            status: parts.status.as_u16(),
            headers: passed_on(&parts.headers),
            body: b64.encode(&bytes),
        }
    }

    /// Serve a request on this node.
    async fn serve_request(
        &self,
        req: Request<Incoming>,
        unread: Option<conn::Unread>,
        policy: conn::BodyPolicy,
    ) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let started = std::time::Instant::now();
        // The node names every request; a client's own id is kept beside it, never instead of it.
        let request_id = format!("{:016x}", rand::random::<u64>());
        let span = match client_request_id(req.headers()) {
            Some(c) => tracing::info_span!("request", request_id = %request_id, client_request_id = %c),
            None => tracing::info_span!("request", request_id = %request_id),
        };
        // The route template that served it, as the router found it (for the metrics' labels).
        let mut served: Option<String> = None;
        let result = tracing::Instrument::instrument(self.route(req, &mut served), span.clone()).await;
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert(REQUEST_ID, v);
        }
        conn::discard_unread(unread, policy).await;
        let status = resp.status().as_u16();
        let route = served.unwrap_or_else(|| "unmatched".into());
        self.metrics.request(method.as_str(), route, status, started.elapsed());
        span.in_scope(|| tracing::debug!(%method, %path, status, "request"));
        resp
    }

    /// `GET /metrics`: members, or the operator's scrape token.
    fn metrics_page(&self, req: &Request<Incoming>) -> Result<Response<Full<Bytes>>, ApiError> {
        let scraper = match (bearer(req).ok().flatten(), &self.metrics_token) {
            (Some(b), Some(t)) => crate::runtime::constant_time_eq(b.as_bytes(), t.expose().as_bytes()),
            _ => false,
        };
        if !scraper {
            self.member_only(req).map_err(|mut e| {
                e.message.push_str("; or the operator's scrape token (cgs-host --metrics-token-file)");
                e
            })?;
        }
        let view = if scraper { crate::metrics::View::Operator } else { crate::metrics::View::Member };
        let registry = self.runtime.registry();
        let snapshot = crate::metrics::Snapshot {
            running: registry.plugins().map(|p| (p.info.name.clone(), p.info.version.clone())).collect(),
            failed: self.gov.plugin_failures().into_keys().collect(),
            // Members only (it reads every proposal record).
            open_proposals: (view == crate::metrics::View::Member)
                .then(|| self.gov.list_proposals(None, Some("Open")).ok())
                .flatten()
                .and_then(|v| v["value"].as_array().map(Vec::len)),
            applied_seqno: self.ledger.last_applied().seqno,
            applied_term: self.ledger.last_applied().term,
            leader: self.ledger.is_leader(),
            jwks: self.auth.jwks_counts(),
            plugin_counters: registry
                .plugins()
                .map(|p| {
                    let (fuel, moves) = p.counters();
                    (p.info.name.clone(), fuel, moves)
                })
                .collect(),
            plugin_lanes: registry.plugins().map(|p| (p.info.name.clone(), p.lane_entries())).collect(),
            plugin_totals: self.runtime.totals(),
            ledger: self.ledger.stats(),
            sessions: self.cleanroom.session_counts(),
        };
        drop(registry);
        let mut resp = Response::new(Full::new(Bytes::from(self.metrics.render(&snapshot, view))));
        resp.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
        Ok(resp)
    }

    /// Route `req`; `served` gets the template of the route that matched (never a path).
    async fn route(
        &self,
        req: Request<Incoming>,
        served: &mut Option<String>,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().map(str::to_string);
        // Outside `/app`, only what the route table describes is served (see `openapi`): past
        // this point the method is one the table names for the path (GET for `/node/*` …).
        if !(path == "/app" || path.starts_with("/app/")) {
            match openapi::lookup(req.method().as_str(), &path) {
                openapi::Lookup::Found(op) => *served = Some(op.path.to_string()),
                openapi::Lookup::MethodNotAllowed(allowed) => return Err(method_not_allowed(&allowed)),
                openapi::Lookup::NotFound => return Err(not_found(&req)),
            }
        }
        if path == "/openapi.json" {
            return Ok(self.openapi());
        }
        if path == "/console" || path.starts_with("/console/") {
            return console::serve(&path).ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "AssetNotFound",
                    format!("the console has no file {path}: open /console/"),
                )
            });
        }
        if let Some(rest) = path.strip_prefix("/node/") {
            return match rest.split_once('/') {
                None => match rest {
                    "health" => Ok(self.health()),
                    "checkpoint" => self.checkpoint(),
                    "consistency" => self.consistency(query.as_deref()),
                    "identity" => Ok(self.identity()),
                    "attestation" => self.attestation(),
                    "network" => Ok(self.network()),
                    "join" => self.join(req).await,
                    _ => Err(not_found(&req)),
                },
                Some(("network", "nodes")) => self.network_nodes(),
                Some(("tx", id)) => self.tx_status(id),
                Some(("receipt", id)) => self.receipt(&req, id, query.as_deref()),
                Some(("entry", id)) => self.entry(&req, id),
                Some(_) => Err(not_found(&req)),
            };
        }
        if path == "/metrics" {
            return self.metrics_page(&req);
        }
        if path == "/.well-known/openid-configuration" || path == "/oidc/keys" {
            return Ok(json_ok(&if path == "/oidc/keys" {
                self.cleanroom.oidc_keys()?
            } else {
                self.cleanroom.oidc_discovery()?
            }));
        }
        if path == "/cleanroom/nonce" {
            let contract = parse_query(query.as_deref().unwrap_or(""))?.into_iter().find(|(k, _)| k == "contract_id");
            let Some((_, contract)) = contract else {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "MissingParameter",
                    "name the contract the session is for: GET /cleanroom/nonce?contract_id=<id>",
                ));
            };
            return Ok(json_ok(&self.cleanroom.cleanroom_nonce(&contract)?));
        }
        if let Some(rest) = path.strip_prefix("/gov")
            && rest.starts_with('/')
        {
            let rest = rest.to_string();
            return self.gov(req, &rest).await;
        }
        if let Some(rest) = path.strip_prefix("/app")
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return self.app(req, rest.to_string(), served).await;
        }
        Err(not_found(&req))
    }

    /// `GET /openapi.json`: the host's route table and every installed plugin's routes.
    pub(crate) fn openapi(&self) -> Response<Full<Bytes>> {
        let registry = self.runtime.registry();
        // The registry is replaced as a whole when what runs changes: the cached document is
        // current while it was built from this very registry (a dropped one never upgrades).
        let mut cache = self.openapi_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((built_from, body)) = cache.as_ref()
            && built_from.upgrade().is_some_and(|r| Arc::ptr_eq(&r, &registry))
        {
            return json_response(StatusCode::OK, body.clone());
        }
        let routes: Vec<(String, serde_json::Value)> = registry
            .plugins()
            .flat_map(|p| {
                p.routes.iter().map(|r| {
                    let mut d = r.describe();
                    if let Some(doc) = p.api.get(&format!("{} {}", r.method.as_str(), r.template)) {
                        d["api"] = serde_json::to_value(doc).unwrap_or_default();
                    }
                    (p.info.name.clone(), d)
                })
            })
            .chain(
                crate::runtime::host_routes().iter().map(|r| (crate::runtime::HOST_ROUTES.to_string(), r.describe())),
            )
            .collect();
        let body = Bytes::from(serde_json::to_vec(&openapi::document(&routes)).unwrap_or_default());
        *cache = Some((Arc::downgrade(&registry), body.clone()));
        json_response(StatusCode::OK, body)
    }

    /// The active plugins with their measurements, routes and actions.
    pub(crate) fn plugins(&self) -> Response<Full<Bytes>> {
        let registry = self.runtime.registry();
        let value: Vec<serde_json::Value> = registry
            .plugins()
            .map(|p| {
                serde_json::json!({
                    "name": p.info.name,
                    "version": p.info.version,
                    "world": p.info.world,
                    "blake3": p.blake3,
                    "routes": p.routes.iter().map(|r| r.describe()).collect::<Vec<_>>(),
                    "actions": p.actions,
                    "state": "Running",
                })
            })
            .chain(self.gov.plugin_failures().into_iter().map(|(name, error)| {
                serde_json::json!({"name": name, "state": "Failed", "error": error, "routes": [], "actions": []})
            }))
            .collect();
        json_ok(&serde_json::json!({ "value": value }))
    }

    /// Authenticate the caller: no `Authorization` header is anonymous; a bearer token is a
    /// member's, a registered user's or a clean-room session's, and what it entitles to is
    /// checked for this request (a request other than `GET` may change state).
    fn authenticate(&self, req: &Request<Incoming>) -> Result<Caller, ApiError> {
        let Some(token) = bearer(req)? else { return Ok(Caller::anonymous()) };
        let a = self.auth.authenticate(token, req.method() != hyper::Method::GET)?;
        // A clean-room session acts only while its contract may run, under the policy it was
        // admitted with: checked on every use.
        if let Some(session) = &a.session {
            self.cleanroom.require_standing(session)?;
        }
        Ok(a.caller)
    }

    /// The caller, who must have presented credentials (`hint` says which, for a 401).
    fn credentialed(&self, req: &Request<Incoming>, hint: &str) -> Result<Caller, ApiError> {
        let caller = self.authenticate(req)?;
        if caller.kind == CallerKind::Anonymous {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "Unauthenticated", hint));
        }
        Ok(caller)
    }

    /// The host's own routes below `/app` (in the route table under `runtime::HOST_ROUTES`):
    /// clean-room sessions, secrets and ID tokens.
    async fn host_route(
        &self,
        req: Request<Incoming>,
        route: &crate::runtime::Route,
        params: &[(String, String)],
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        let id = param("id");
        match (route.method, route.template.as_str()) {
            // Attested clean-room sessions: evidence checks need the attestation crate.
            (Method::Post, "/contracts/{id}/cleanroom/session") => {
                if !self.gov.is_open() {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "ServiceNotOpen",
                        "the service is Opening",
                    )
                    .with_header("retry-after", "5".into()));
                }
                let body = read_body(req.into_body(), MAX_BODY_BYTES).await?;
                Ok(json_ok(&self.cleanroom.cleanroom_session(&id, &body)?))
            }
            // ID tokens for attested sessions are signed with the service's OIDC keys.
            (Method::Post, "/contracts/{id}/oauth/token") => {
                let caller =
                    self.credentialed(&req, "POST /app/contracts/{id}/oauth/token needs a clean-room session token")?;
                let body = read_body(req.into_body(), MAX_BODY_BYTES).await?;
                Ok(json_ok(&self.cleanroom.oidc_token(&caller, &id, &body)?))
            }
            // Secrets live in a private governance table and are released sealed to a session key.
            (method, template) => {
                let caller = self.credentialed(
                    &req,
                    "secrets need a member token (put, delete) or a clean-room session token (release)",
                )?;
                let name = param("name");
                if template.ends_with("/release") {
                    return Ok(json_ok(&self.cleanroom.release_secret(&caller, &id, &name)?));
                }
                let w = if method == Method::Delete {
                    self.cleanroom.delete_secret(&caller, &id, &name).await?
                } else {
                    let body = read_body(req.into_body(), MAX_BODY_BYTES).await?;
                    self.cleanroom.put_secret(&caller, &id, &name, &body).await?
                };
                Ok(gov::written(w))
            }
        }
    }

    async fn app(
        &self,
        req: Request<Incoming>,
        rest: String,
        served: &mut Option<String>,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let method = Method::parse(req.method().as_str()).ok_or_else(|| {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("method {} is not supported", req.method()),
            )
        })?;
        let segments = decode_path(&rest)?;
        let seg_refs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let registry = self.runtime.registry();
        let found = registry.find_route(method, &seg_refs);
        if let RouteMatch::Found { route, .. } = &found {
            *served = Some(format!("/app{}", route.template));
        }
        let (plugin, route, params) = match found {
            RouteMatch::Found { plugin, route, params } if plugin == crate::runtime::HOST_ROUTES => {
                drop(registry);
                return self.host_route(req, &route, &params).await;
            }
            RouteMatch::Found { plugin, route, params } => (plugin, route, params),
            RouteMatch::MethodNotAllowed(allowed) => {
                let names: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
                return Err(method_not_allowed(&names));
            }
            RouteMatch::NotFound => {
                // The route may be one of a plugin governance made active that this node could
                // not load: say so rather than that it does not exist.
                let failed = self.gov.plugin_failures();
                if !failed.is_empty() {
                    let names: Vec<&str> = failed.keys().map(String::as_str).collect();
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "PluginUnavailable",
                        format!(
                            "no loaded plugin serves {method} /app{rest}; active plugin(s) {} could not be loaded on \
                             this node (GET /gov/plugins says why; members can vote a fix)",
                            names.join(", ")
                        ),
                    ));
                }
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "RouteNotFound",
                    format!("no route for {method} /app{rest}"),
                ));
            }
        };
        let plugin = registry.get(&plugin).cloned().ok_or_else(|| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "PluginUnavailable", "the plugin was just removed")
        })?;
        if !self.gov.is_open() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceNotOpen",
                "the service is Opening: members must ack and accept transition_service_to_open first",
            )
            .with_header("retry-after", "5".into()));
        }
        let caller = self.authenticate(&req)?;
        if !route.auth.admits(caller.kind) {
            let allowed = route.auth.names().join(", ");
            return Err(if caller.kind == CallerKind::Anonymous {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "Unauthenticated",
                    format!("{method} /app{rest} needs credentials of a {allowed}"),
                )
            } else {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "CallerKindNotAllowed",
                    format!("{method} /app{rest} is open to: {allowed}"),
                )
            });
        }
        let query = parse_query(req.uri().query().unwrap_or(""))?;
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "authorization" | "cookie" | "proxy-authorization"))
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string())))
            .collect();
        let body = read_body(req.into_body(), MAX_BODY_BYTES).await?;
        let preq = PluginRequest { plugin, route, params, path: rest, query, headers, body, caller };
        let result = self.runtime.handle(&preq).await;
        self.metrics.plugin_call(&preq.plugin.info.name, result.as_ref().map_or_else(|e| e.outcome(), |_| "ok"));
        match result {
            Ok(r) => {
                let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut resp = Response::new(Full::new(Bytes::from(r.body)));
                *resp.status_mut() = status;
                for (k, v) in r.headers {
                    if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                        resp.headers_mut().append(k, v);
                    }
                }
                if let Some(tx) = r.tx_id {
                    gov::with_tx_id(&mut resp, tx);
                }
                Ok(resp)
            }
            Err(e) => {
                if matches!(e, crate::runtime::DispatchError::Fault { .. }) {
                    tracing::warn!(plugin = %preq.plugin.info.name, route = %preq.route.template, error = %e, "plugin call failed");
                }
                let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut err = ApiError::new(status, e.code(), e.message());
                if e.retryable() {
                    err = err.with_header("retry-after", "1".into());
                }
                Err(err)
            }
        }
    }
}

/// Every answer but the console's pages is inert in a browser: a sandboxing Content-Security-Policy
/// (no script, no same-origin access, no framing) and no MIME sniffing. A plugin may answer with
/// any content type, but never with a page that runs on this origin, where it could reach the
/// console's session (`/console/` sets its own, stricter-than-default policy; plugins may not set
/// either header: `runtime::dispatch::header_allowed`).
pub(crate) fn harden(resp: &mut Response<Full<Bytes>>) {
    let h = resp.headers_mut();
    if !h.contains_key(hyper::header::CONTENT_SECURITY_POLICY) {
        h.insert(
            hyper::header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox; default-src 'none'; frame-ancestors 'none'"),
        );
    }
    h.insert(hyper::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

pub(crate) fn not_found(req: &Request<Incoming>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "RouteNotFound", format!("no route for {} {}", req.method(), req.uri().path()))
}

pub(crate) fn method_not_allowed(allowed: &[&str]) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("this path supports {}", allowed.join(", ")),
    )
    .with_header("allow", allowed.join(", "))
}

/// The request body, at most `limit` bytes, within the body timeout (`408 RequestTimeout`).
async fn read_body(body: Incoming, limit: usize) -> Result<Vec<u8>, ApiError> {
    match body.read(limit).await {
        Ok(bytes) => Ok(bytes),
        Err(conn::BodyError::TooLarge) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("request bodies are limited to {limit} bytes"),
        )),
        Err(conn::BodyError::TimedOut(t)) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            format!("the request body did not arrive within {} ms", t.as_millis()),
        )),
        Err(conn::BodyError::Read(e)) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, "InvalidBody", format!("could not read the request body: {e}")))
        }
    }
}

/// Serve HTTPS on `listener` until `shutdown` turns true, within `limits` (connection cap,
/// timeouts, HTTP/2 limits: see `conn`), then stop accepting and give open connections up to
/// five seconds to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: Arc<Service>,
    limits: HttpLimits,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    conn::Server::new(tls, service, limits).run(listener, shutdown).await
}
