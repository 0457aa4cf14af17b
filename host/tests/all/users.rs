//! Users whose issuer publishes its keys at a URL: the node fetches the JWKS over HTTPS only from
//! URL prefixes the operator allows, and a registered user's JWT is then accepted for the
//! contracts that name them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cgs_client::Member;
use cgs_host::auth::users::{ed25519_jwk, sign_eddsa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTPS server answering every request with the current `body`; counts requests.
async fn jwks_server(dir: &std::path::Path, body: Arc<Mutex<String>>) -> (String, String, Arc<AtomicUsize>) {
    let id = cgs_host::tls::ServiceIdentity::load_or_create(dir, &[]).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(id.server_config().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}/", listener.local_addr().unwrap().port());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, body, counter) = (acceptor.clone(), body.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let body = body.lock().unwrap().clone();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(body.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, id.service_cert_pem.clone(), hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_fetched_from_an_allowed_url() {
    let dir = tempfile::tempdir().unwrap();
    let idp = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let jwks = serde_json::json!({"keys": [ed25519_jwk(&idp.verifying_key(), "k1")]}).to_string();
    let served = Arc::new(Mutex::new(jwks));
    let (jwks_url, jwks_ca, hits) = jwks_server(&dir.path().join("idp"), served.clone()).await;

    let gov = cgs_host::gov::GovConfig {
        jwks_url_allow: vec![jwks_url.clone()],
        jwks_ca_pem: Some(jwks_ca.into_bytes()),
        jwks_refresh: Duration::from_secs(1),
        ..Default::default()
    };
    let node = crate::http::start_with(&["constitution", "contracts", "consent", "audit"], gov).await;
    let client = node.client.clone();
    let members: Vec<Member> = ["isv", "data-provider", "code-provider"].iter().map(|m| node.member(m)).collect();

    // Two issuers by URL: one the operator allows, one it does not.
    let other_url = "https://idp.elsewhere.example/keys";
    let actions = serde_json::json!([
        {"name": "set_jwt_issuer", "args": {"issuer": "https://idp.test", "jwks_url": jwks_url, "audience": "cgs"}},
        {"name": "set_jwt_issuer", "args": {"issuer": "https://idp.other", "jwks_url": other_url, "audience": "cgs"}},
        {"name": "set_user_identity", "args": {"issuer": "https://idp.test", "subject": "alice"}},
        {"name": "set_user_identity", "args": {"issuer": "https://idp.other", "subject": "bob"}},
    ]);
    let p = members[0].propose(actions).await.unwrap().ok_json().unwrap();
    let id = p["proposal_id"].as_str().unwrap().to_string();
    let mut state = String::new();
    for m in &members {
        state = m.vote(&id, true).await.unwrap().ok_json().unwrap()["state"].as_str().unwrap().to_string();
    }
    assert_eq!(state, "Accepted");
    let body = serde_json::json!({"data": {}, "users": ["https://idp.test|alice", "https://idp.other|bob"]});
    let r = members[0].authed("PUT", "/app/contracts/c", Some(body.to_string().into_bytes())).await.unwrap();
    assert_eq!(r.status, 201);

    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let token = |iss: &str, sub: &str| {
        sign_eddsa(&idp, "k1", &serde_json::json!({"iss": iss, "sub": sub, "aud": "cgs", "exp": exp}))
    };
    let get = |tok: String| {
        let client = client.clone();
        async move {
            let auth = format!("Bearer {tok}");
            client.request("GET", "/app/contracts/c", None, &[("authorization", auth.as_str())]).await.unwrap()
        }
    };
    // The node fetches the allowed URL in the background; the user is accepted once it has.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = get(token("https://idp.test", "alice")).await;
        if r.status == 200 {
            break;
        }
        let msg = r.error().map(|e| e.error.message).unwrap_or_default();
        assert!(msg.contains("not been fetched yet") && Instant::now() < deadline, "{}: {msg}", r.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(hits.load(Ordering::SeqCst) >= 1);
    // The fetch is counted in the metrics (JWKS refresh failures are not silent: microsoft/CCF#3770).
    let metrics = members[0].authed("GET", "/metrics", None).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let ok = text.lines().find_map(|l| l.strip_prefix("cgs_jwks_fetches_total{result=\"ok\"} ")).unwrap();
    assert!(ok.parse::<u64>().unwrap() >= 1, "{text}");
    // A user is no member: the metrics and proposal simulations are refused to it.
    let auth = format!("Bearer {}", token("https://idp.test", "alice"));
    for (m, path, body) in
        [("GET", "/metrics", None), ("POST", "/gov/proposals/simulate", Some(br#"{"actions":[]}"#.to_vec()))]
    {
        let r = client.request(m, path, body, &[("authorization", auth.as_str())]).await.unwrap();
        assert_eq!((r.status, r.error().unwrap().error.code.as_str()), (403, "CallerKindNotAllowed"), "{m} {path}");
    }
    // A token the published key did not sign is refused.
    let forged = sign_eddsa(
        &ed25519_dalek::SigningKey::from_bytes(&[10; 32]),
        "k1",
        &serde_json::json!({"iss": "https://idp.test", "sub": "alice", "aud": "cgs", "exp": exp}),
    );
    let r = get(forged).await;
    assert_eq!(r.status, 401);
    // A token minted by the issuer for another application (another audience) is refused.
    let other_app = sign_eddsa(
        &idp,
        "k1",
        &serde_json::json!({"iss": "https://idp.test", "sub": "alice", "aud": "another-app", "exp": exp}),
    );
    let r = get(other_app).await;
    assert_eq!(r.status, 401, "{:?}", r.error());
    assert!(r.error().unwrap().error.message.contains("audience"));
    // An issuer whose URL the operator did not allow: refused, naming the flag; never fetched.
    let r = get(token("https://idp.other", "bob")).await;
    assert_eq!(r.status, 401);
    let msg = r.error().unwrap().error.message;
    assert!(msg.contains("--jwks-url-allow"), "{msg}");

    // The issuer rotates: k1 vanishes from its JWKS. Alice's k1 token was verified (and cached)
    // before; once the node refreshes the keys, it is refused — a cached verification never
    // outlives the key that made it. A token of the new key is accepted.
    let alice = token("https://idp.test", "alice");
    assert_eq!(get(alice.clone()).await.status, 200);
    let idp2 = ed25519_dalek::SigningKey::from_bytes(&[11; 32]);
    *served.lock().unwrap() = serde_json::json!({"keys": [ed25519_jwk(&idp2.verifying_key(), "k2")]}).to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = get(alice.clone()).await;
        if r.status == 401 {
            assert!(r.error().unwrap().error.message.contains("kid"), "{:?}", r.error());
            break;
        }
        assert!(Instant::now() < deadline, "a token of a vanished key is still accepted after the refresh");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let new = sign_eddsa(
        &idp2,
        "k2",
        &serde_json::json!({"iss": "https://idp.test", "sub": "alice", "aud": "cgs", "exp": exp}),
    );
    assert_eq!(get(new).await.status, 200);
}
