//! `cgs-client`: a Rust client for the CGS HTTPS API, and the `cgs` command-line tool.
//!
//! The client speaks TLS 1.3 only and trusts exactly one certificate: the service certificate
//! (`--ca`, e.g. `sandbox/service-cert.pem`), never the system roots.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cgs_client::ClientError> {
//! let client = cgs_client::Client::new("https://127.0.0.1:8443", &std::fs::read("sandbox/service-cert.pem").unwrap())?;
//! let health = client.get("/node/health").await?.ok_json()?;
//! println!("{}", health["status"]);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod analytics;
pub mod checkpoints;
pub mod recovery;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cgs_core::ErrorEnvelope;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A client failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not usable.
    #[error("invalid service URL `{0}`: {1}")]
    Url(String, String),
    /// The service certificate is not usable.
    #[error("invalid service certificate: {0}")]
    Certificate(String),
    /// A check the member asked for failed, so nothing was sent: a recovering node's evidence,
    /// figures or ledger, or a service whose ledger no longer extends the checkpoint kept of it.
    #[error("{0}")]
    Refused(String),
    /// Connecting or talking to the service failed.
    #[error("cannot reach the service at {url}: {detail}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The service answered with an error envelope.
    #[error("{code} ({status}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Envelope code.
        code: String,
        /// Envelope message.
        message: String,
    },
    /// The answer is not what the API promises.
    #[error("unexpected response ({status}): {detail}")]
    Protocol {
        /// HTTP status.
        status: u16,
        /// What is wrong.
        detail: String,
    },
}

/// A response: status, headers, body.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers (lowercase names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl ApiResponse {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON, whatever the status.
    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ClientError::Protocol { status: self.status, detail: format!("body is not JSON: {e}") })
    }

    /// The error envelope, if this is an error with one.
    pub fn error(&self) -> Option<ErrorEnvelope> {
        if self.status < 400 {
            return None;
        }
        serde_json::from_slice(&self.body).ok()
    }

    /// Succeed with the JSON body on 2xx; turn an error envelope into [`ClientError::Api`].
    pub fn ok_json(self) -> Result<serde_json::Value, ClientError> {
        self.ok()?;
        if self.body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        self.json()
    }

    /// Succeed on 2xx; turn an error envelope into [`ClientError::Api`].
    pub fn ok(&self) -> Result<(), ClientError> {
        if (200..300).contains(&self.status) {
            return Ok(());
        }
        match self.error() {
            Some(e) => Err(ClientError::Api { status: self.status, code: e.error.code, message: e.error.message }),
            None => Err(ClientError::Protocol {
                status: self.status,
                detail: format!(
                    "no error envelope: {}",
                    String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
                ),
            }),
        }
    }
}

/// A client of one CGS service.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

/// A TLS 1.3 client configuration trusting only `ca_pem`.
pub fn tls_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        let cert = cert.map_err(|e| ClientError::Certificate(e.to_string()))?;
        roots.add(cert).map_err(|e| ClientError::Certificate(e.to_string()))?;
        n += 1;
    }
    if n == 0 {
        return Err(ClientError::Certificate("no PEM certificate found".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Certificate(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}

impl Client {
    /// A client for the service at `url` (e.g. `https://127.0.0.1:8443`) pinning `ca_pem`.
    pub fn new(url: &str, ca_pem: &[u8]) -> Result<Self, ClientError> {
        let base = url.trim_end_matches('/').to_string();
        let uri: hyper::Uri =
            base.parse().map_err(|e: hyper::http::uri::InvalidUri| ClientError::Url(url.into(), e.to_string()))?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(ClientError::Url(url.into(), "expected https://HOST:PORT".into()));
        }
        // Without TCP_NODELAY a request written after small frames still unacknowledged (HTTP/2
        // settings and window updates) waits for the service's delayed ACK: ~40 ms on Linux for
        // each later request on a connection (measured: the vote's checkpoint check took 48 ms
        // instead of 5).
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(ca_pem)?)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let http =
            HyperClient::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Ok(Self { base, http, timeout: Duration::from_secs(60) })
    }

    /// The service URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Send a request; `path` starts with `/`.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<ApiResponse, ClientError> {
        let url = format!("{}{path}", self.base);
        let transport = |detail: String| ClientError::Transport { url: url.clone(), detail };
        let mut builder = Request::builder().method(method).uri(&url);
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req =
            builder.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| transport(e.to_string()))?;
        let resp = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| transport(format!("no answer within {} s", self.timeout.as_secs())))?
            .map_err(|e| transport(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_string(), v.to_string())))
            .collect();
        let body = resp.into_body().collect().await.map_err(|e| transport(e.to_string()))?.to_bytes();
        Ok(ApiResponse { status, headers, body })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<ApiResponse, ClientError> {
        self.request("GET", path, None, &[]).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json(&self, path: &str, body: &serde_json::Value) -> Result<ApiResponse, ClientError> {
        self.request("PUT", path, Some(body.to_string().into_bytes()), &[]).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<ApiResponse, ClientError> {
        self.request("POST", path, Some(body.to_string().into_bytes()), &[]).await
    }
}

/// A member acting on a service: signs governance messages with its key and logs in for bearer
/// tokens when a route needs one.
pub struct Member {
    /// The client.
    pub client: Client,
    key: ed25519_dalek::SigningKey,
    token: tokio::sync::Mutex<Option<(String, u64)>>,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Member {
    /// A member with `key` (PKCS#8 PEM) on `client`.
    pub fn new(client: Client, key_pem: &str) -> Result<Self, ClientError> {
        let key = cgs_core::gov::signing_key_from_pem(key_pem)
            .map_err(|e| ClientError::Certificate(format!("member key: {e}")))?;
        Ok(Self { client, key, token: tokio::sync::Mutex::new(None) })
    }

    /// A member from a raw key (tests).
    pub fn from_key(client: Client, key: ed25519_dalek::SigningKey) -> Self {
        Self { client, key, token: tokio::sync::Mutex::new(None) }
    }

    /// This member's id.
    pub fn id(&self) -> String {
        cgs_core::gov::member_id(&self.key.verifying_key())
    }

    /// Sign a governance message now, with a fresh random `cgs.msg.nonce`: the same content
    /// signed twice gives two distinct messages (two proposals), never a replay of one another.
    pub fn sign(
        &self,
        msg_type: cgs_core::gov::MessageType,
        proposal_id: Option<&str>,
        payload: &serde_json::Value,
    ) -> Vec<u8> {
        let nonce: [u8; 16] = rand::random();
        cgs_core::gov::sign_nonced(
            &self.key,
            msg_type,
            now_secs(),
            proposal_id,
            Some(&nonce),
            payload.to_string().as_bytes(),
        )
    }

    /// POST a signed message.
    pub async fn post_signed(&self, path: &str, envelope: Vec<u8>) -> Result<ApiResponse, ClientError> {
        self.client.request("POST", path, Some(envelope), &[("content-type", cgs_core::gov::CONTENT_TYPE)]).await
    }

    /// A bearer token (cached until a minute before expiry).
    pub async fn token(&self) -> Result<String, ClientError> {
        let mut t = self.token.lock().await;
        if let Some((tok, exp)) = t.as_ref()
            && (*exp as i64) > now_secs() + 60
        {
            return Ok(tok.clone());
        }
        let msg = self.sign(cgs_core::gov::MessageType::Login, None, &serde_json::json!({}));
        let r = self.post_signed("/gov/login", msg).await?.ok_json()?;
        let tok = r["token"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol { status: 200, detail: "no token".into() })?
            .to_string();
        *t = Some((tok.clone(), r["expires_at"].as_u64().unwrap_or(0)));
        Ok(tok)
    }

    /// A request with the member's bearer token.
    /// A token refused as invalid (the service re-keyed its ledger, which changes its token key)
    /// is dropped and the request sent once more after a new login.
    pub async fn authed(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<ApiResponse, ClientError> {
        let send = |token: String, body: Option<Vec<u8>>| async move {
            let auth = format!("Bearer {token}");
            let mut headers = vec![("authorization", auth.as_str())];
            if body.is_some() && method == "PUT" && path == "/gov/blobs" {
                headers.push(("content-type", "application/octet-stream"));
            }
            self.client.request(method, path, body, &headers).await
        };
        let token = self.token().await?;
        let r = send(token.clone(), body.clone()).await?;
        if r.status != 401 {
            return Ok(r);
        }
        {
            let mut t = self.token.lock().await;
            if t.as_ref().is_some_and(|(cached, _)| *cached == token) {
                *t = None;
            }
        }
        send(self.token().await?, body).await
    }

    /// Create a proposal of `actions` (`[{"name","args"}]`); the answer has `proposal_id`, `state`.
    pub async fn propose(&self, actions: serde_json::Value) -> Result<ApiResponse, ClientError> {
        let msg = self.sign(cgs_core::gov::MessageType::Proposal, None, &serde_json::json!({"actions": actions}));
        self.post_signed("/gov/proposals", msg).await
    }

    /// Vote on a proposal.
    pub async fn vote(&self, proposal_id: &str, approve: bool) -> Result<ApiResponse, ClientError> {
        let vote = if approve { "approve" } else { "reject" };
        let msg = self.sign(cgs_core::gov::MessageType::Ballot, Some(proposal_id), &serde_json::json!({"vote": vote}));
        self.post_signed(&format!("/gov/proposals/{proposal_id}/ballots"), msg).await
    }

    /// Withdraw one's proposal.
    pub async fn withdraw(&self, proposal_id: &str) -> Result<ApiResponse, ClientError> {
        let msg = self.sign(cgs_core::gov::MessageType::Withdrawal, Some(proposal_id), &serde_json::json!({}));
        self.post_signed(&format!("/gov/proposals/{proposal_id}/withdraw"), msg).await
    }

    /// Acknowledge the current state digest (Accepted → Active).
    pub async fn ack(&self) -> Result<ApiResponse, ClientError> {
        let id = self.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let digest = loop {
            let r = self.client.get(&format!("/gov/members/{id}/state-digest")).await?;
            if r.status == 503 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            break r.ok_json()?["state_digest"].as_str().unwrap_or_default().to_string();
        };
        let msg = self.sign(cgs_core::gov::MessageType::Ack, None, &serde_json::json!({"state_digest": digest}));
        self.post_signed(&format!("/gov/members/{id}/ack"), msg).await
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
