//! JWKS of trusted issuers fetched from their `jwks_url`, for URLs the operator allows.
//!
//! `set_jwt_issuer {"issuer", "jwks_url"}` records only the URL in the ledger; the keys are fetched
//! by each node over HTTPS (TLS 1.2+, the Mozilla roots plus `--jwks-ca`), kept in memory and
//! refreshed every [`REFRESH`] (sooner after a failure). A URL must fall under one of the
//! operator's `--jwks-url-allow` prefixes — same scheme (`https`), host and port, and the
//! prefix's path segments first (not a string prefix: `https://idp.example` does not admit
//! `https://idp.example.evil.net/`, `/tenant` does not admit `/tenant2/keys`) — so governance
//! cannot make a node fetch arbitrary URLs. Each fetch that changes the keys bumps the URL's
//! generation, and tokens verified against an older generation are verified again.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Limited};

/// How often a fetched JWKS is refreshed (by default; `GovConfig::jwks_refresh`).
pub const REFRESH: Duration = Duration::from_secs(600);
/// How soon a failed fetch is retried.
pub const RETRY: Duration = Duration::from_secs(30);
/// Largest JWKS document accepted.
pub const MAX_BYTES: usize = 64 << 10;
/// Connect + TLS + answer, at most.
pub const TIMEOUT: Duration = Duration::from_secs(5);

struct Fetched {
    at: Instant,
    keys: Result<serde_json::Value, String>,
    /// Bumped whenever the keys served for the URL change.
    generation: u64,
}

/// An `https` URL split for allow-list matching.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpsUrl {
    host: String,
    port: u16,
    segments: Vec<String>,
}

impl HttpsUrl {
    /// `https://host[:port]/seg/…` without user info, `.`/`..` or encoded dots and slashes in
    /// the path; a trailing `/` adds no segment.
    fn parse(url: &str) -> Option<Self> {
        let uri: hyper::Uri = url.parse().ok()?;
        if uri.scheme_str() != Some("https") {
            return None;
        }
        let authority = uri.authority()?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return None;
        }
        let mut segments: Vec<String> = uri.path().split('/').skip(1).map(str::to_string).collect();
        if segments.last().is_some_and(String::is_empty) {
            segments.pop();
        }
        let sneaky = |s: &String| {
            let l = s.to_ascii_lowercase();
            s.is_empty() || s == "." || s == ".." || l.contains("%2e") || l.contains("%2f") || l.contains("%5c")
        };
        if segments.iter().any(sneaky) {
            return None;
        }
        Some(Self { host: authority.host().to_ascii_lowercase(), port: authority.port_u16().unwrap_or(443), segments })
    }

    /// Whether `self` (a prefix) admits `url`.
    fn admits(&self, url: &HttpsUrl) -> bool {
        self.host == url.host && self.port == url.port && url.segments.starts_with(&self.segments)
    }
}

/// The operator's JWKS policy and the keys fetched so far.
pub struct JwksFetcher {
    allow: Vec<HttpsUrl>,
    refresh: Duration,
    tls: Arc<rustls::ClientConfig>,
    cache: RwLock<HashMap<String, Fetched>>,
    /// Fetches that succeeded, and that failed (`/metrics`).
    fetched: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

impl JwksFetcher {
    /// JWKS fetches so far: `(succeeded, failed)`.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.fetched.load(Relaxed), self.failed.load(Relaxed))
    }

    /// Allow URLs starting with one of `allow`; trust the Mozilla roots and the PEM certificates
    /// in `extra_roots`.
    pub fn new(allow: Vec<String>, extra_roots: Option<&[u8]>, refresh: Duration) -> Result<Self, String> {
        let allow = allow
            .iter()
            .map(|p| {
                HttpsUrl::parse(p).ok_or_else(|| {
                    format!("--jwks-url-allow `{p}` is not an https://host[:port][/path] prefix without user info")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = extra_roots {
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                let cert = cert.map_err(|e| format!("--jwks-ca: {e}"))?;
                roots.add(cert).map_err(|e| format!("--jwks-ca: {e}"))?;
                n += 1;
            }
            if n == 0 {
                return Err("--jwks-ca holds no PEM certificate".into());
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            allow,
            refresh,
            tls: Arc::new(tls),
            cache: RwLock::new(HashMap::new()),
            fetched: Default::default(),
            failed: Default::default(),
        })
    }

    /// Whether the operator allows fetching `url`.
    pub fn allowed(&self, url: &str) -> bool {
        HttpsUrl::parse(url).is_some_and(|u| self.allow.iter().any(|p| p.admits(&u)))
    }

    /// The generation of the keys served for `url` (0 before any): it changes whenever a
    /// refresh changes them.
    pub fn generation(&self, url: &str) -> u64 {
        self.cache.read().ok().and_then(|c| c.get(url).map(|f| f.generation)).unwrap_or(0)
    }

    /// The JWKS last fetched from `url`, or why there is none.
    pub fn keys(&self, url: &str) -> Result<serde_json::Value, String> {
        if !self.allowed(url) {
            return Err(format!(
                "this node does not fetch JWKS from `{url}`: the operator must allow it (--jwks-url-allow)"
            ));
        }
        match self.cache.read().ok().and_then(|c| c.get(url).map(|f| f.keys.clone())) {
            Some(Ok(k)) => Ok(k),
            Some(Err(e)) => Err(format!("the JWKS at `{url}` could not be fetched: {e}")),
            None => Err(format!("the JWKS at `{url}` has not been fetched yet; retry in a few seconds")),
        }
    }

    /// Fetch the allowed URLs among `urls` that are due (never fetched, older than the refresh
    /// interval, or failed more than [`RETRY`] ago).
    pub async fn refresh(&self, urls: &[String]) {
        for url in urls.iter().filter(|u| self.allowed(u)) {
            let due = match self.cache.read().ok().and_then(|c| c.get(url).map(|f| (f.at, f.keys.is_ok()))) {
                None => true,
                Some((at, true)) => at.elapsed() >= self.refresh,
                Some((at, false)) => at.elapsed() >= RETRY,
            };
            if !due {
                continue;
            }
            let keys = match tokio::time::timeout(TIMEOUT, self.fetch(url)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
            };
            let counter = if keys.is_ok() { &self.fetched } else { &self.failed };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match &keys {
                Ok(k) => tracing::info!(%url, keys = k["keys"].as_array().map_or(0, Vec::len), "fetched JWKS"),
                Err(e) => tracing::warn!(%url, error = %e, "could not fetch JWKS"),
            }
            if let Ok(mut c) = self.cache.write() {
                // Keep serving the previous keys if a refresh fails.
                let keep = keys.is_err() && c.get(url).is_some_and(|f| f.keys.is_ok());
                if !keep {
                    let previous = c.get(url);
                    let same = previous.is_some_and(|f| f.keys == keys);
                    let generation = previous.map_or(0, |f| f.generation) + u64::from(!same);
                    c.insert(url.clone(), Fetched { at: Instant::now(), keys, generation });
                } else if let Some(f) = c.get_mut(url) {
                    f.at = Instant::now().checked_sub(self.refresh.saturating_sub(RETRY)).unwrap_or_else(Instant::now);
                }
            }
        }
    }

    /// GET `url` and check it is a JWKS (`{"keys":[…]}`).
    async fn fetch(&self, url: &str) -> Result<serde_json::Value, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
        let host = uri.host().ok_or("the URL names no host")?.trim_matches(|c| c == '[' || c == ']').to_string();
        let port = uri.port_u16().unwrap_or(443);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| format!("connect: {e}"))?;
        let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("server name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let conn = tokio::spawn(conn);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| format!("HTTP: {e}"))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BYTES)
            .collect()
            .await
            .map_err(|e| format!("body (at most {MAX_BYTES} bytes): {e}"))?
            .to_bytes();
        conn.abort();
        if !status.is_success() {
            return Err(format!("HTTP status {status}"));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        if !v["keys"].is_array() {
            return Err("not a JWKS (no `keys` array)".into());
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_scheme_host_port_and_path_segments() {
        let f = JwksFetcher::new(
            vec!["https://login.example.com/tenant".into(), "https://keys.example.net/".into()],
            None,
            REFRESH,
        )
        .unwrap();
        for ok in [
            "https://login.example.com/tenant/keys",
            "https://LOGIN.example.com:443/tenant/discovery/keys?x=1",
            "https://keys.example.net/jwks.json",
        ] {
            assert!(f.allowed(ok), "{ok}");
        }
        for bad in [
            "http://login.example.com/tenant/keys",
            "https://login.example.com.evil.net/tenant/keys",
            "https://login.example.com/tenant2/keys",
            "https://login.example.com/other/keys",
            "https://login.example.com:8443/tenant/keys",
            "https://login.example.com@evil.net/tenant/keys",
            "https://evil.net@login.example.com/tenant/keys",
            "https://login.example.com/tenant/../other/keys",
            "https://login.example.com/tenant/%2e%2e/other/keys",
            "https://login.example.com/tenant%2fx/keys",
            "https://keys.example.net.evil/jwks.json",
            "not a url",
        ] {
            assert!(!f.allowed(bad), "{bad}");
        }
        assert!(JwksFetcher::new(vec!["login.example.com".into()], None, REFRESH).is_err());
        assert!(JwksFetcher::new(vec!["http://login.example.com/".into()], None, REFRESH).is_err());
    }
}
