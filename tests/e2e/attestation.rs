//! `GET /node/attestation` and `cgs verify service`: a collaborator checks the node's evidence,
//! its binding to the node key, the signed plugin set, the TLS certificate and a local rebuild of
//! every plugin — and learns which check failed when one does.

use cgs_e2e::{Sandbox, binaries, plugins_dir};
use sha2::Digest;

fn expected_measurement() -> String {
    hex::encode(sha2::Sha384::digest(std::fs::read(&binaries().host).unwrap()))
}

const ZERO_HOST_DATA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_service_checks_evidence_binding_and_plugins() {
    let sb = Sandbox::start(&[]).await.unwrap();
    let doc = sb.client.get("/node/attestation").await.unwrap().ok_json().unwrap();
    assert_eq!(doc["evidence"]["kind"], "virtual");
    assert_eq!(doc["insecure"], true, "virtual evidence is marked insecure");
    cgs_core::node_attestation::verify_signature(&doc).unwrap();
    let names: Vec<&str> = doc["plugins"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"contracts") && doc["constitution"]["name"] == "constitution", "{doc}");

    let m = expected_measurement();
    let (ok, out, err) =
        sb.cli(None, &["verify", "service", "--measurement", &m, "--host-data", ZERO_HOST_DATA, "--allow-virtual"]);
    assert!(ok, "{out}{err}");
    for check in [
        "evidence",
        "measurement",
        "host_data",
        "node key binding",
        "plugin set signature",
        "TLS certificate",
        "plugin contracts",
        "plugin constitution",
    ] {
        assert!(out.contains(&format!("PASS {check}")), "{check}: {out}");
    }
    assert!(out.contains("INSECURE"), "{out}");

    // Virtual evidence is refused unless allowed; a wrong measurement is named.
    let (ok, out, _) = sb.cli(None, &["verify", "service", "--measurement", &m, "--host-data", ZERO_HOST_DATA]);
    assert!(!ok);
    assert!(out.contains("FAIL evidence") && out.contains("--allow-virtual"), "{out}");
    let other = "ab".repeat(48);
    let (ok, out, _) =
        sb.cli(None, &["verify", "service", "--measurement", &other, "--host-data", ZERO_HOST_DATA, "--allow-virtual"]);
    assert!(!ok);
    assert!(out.contains("FAIL measurement") && out.contains("PASS host_data"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_service_names_a_plugin_that_differs_from_the_local_rebuild() {
    // The service runs an `audit` component whose bytes differ from what this checkout builds
    // (same name and version, one extra custom section).
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(plugins_dir()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let audit = dir.join("audit.wasm");
    let mut bytes = std::fs::read(&audit).unwrap();
    let name = b"not-what-you-built";
    bytes.extend_from_slice(&[0, (1 + name.len() + 1) as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.push(0x2a);
    std::fs::write(&audit, &bytes).unwrap();

    let sb = Sandbox::start_with_plugins(&tmp.path().join("data"), &dir, &[]).await.unwrap();
    let (ok, out, err) = sb.cli(
        None,
        &[
            "verify",
            "service",
            "--measurement",
            &expected_measurement(),
            "--host-data",
            ZERO_HOST_DATA,
            "--allow-virtual",
        ],
    );
    assert!(!ok, "{out}{err}");
    assert!(out.contains("FAIL plugin audit: MISMATCH"), "{out}");
    assert!(out.contains("PASS plugin contracts") && out.contains("1 check(s) failed"), "{out}");
}

/// A clean room with virtual evidence that satisfies the contract's policy gets a session bound
/// to that contract, checks consent and writes an event with it; a reused nonce, evidence with
/// another host_data and a report_data not bound to the key are refused with specific codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attested_cleanroom_sessions() {
    use base64::Engine as _;
    use serde_json::json;
    let sb = Sandbox::start(&[]).await.unwrap();
    let members = [sb.member("isv"), sb.member("data-provider"), sb.member("code-provider")];
    let host_data = "11".repeat(32);
    let decide = |actions: serde_json::Value| {
        let members = &members;
        async move {
            let p = members[0].propose(actions).await.unwrap().ok_json().unwrap();
            let id = p["proposal_id"].as_str().unwrap().to_string();
            let mut state = p["state"].as_str().unwrap().to_string();
            for m in members {
                if state == "Open" {
                    state = m.vote(&id, true).await.unwrap().ok_json().unwrap()["state"].as_str().unwrap().to_string();
                }
            }
            state
        }
    };
    for id in ["room", "other"] {
        let r =
            members[0].authed("PUT", &format!("/app/contracts/{id}"), Some(b"{\"data\":{}}".to_vec())).await.unwrap();
        assert_eq!(r.status, 201);
        let v = members[0].authed("GET", &format!("/app/contracts/{id}"), None).await.unwrap().ok_json().unwrap();
        let set = json!([{"name": "contracts.set_contract", "args": {"contract_id": id, "version": v["version"]}}]);
        assert_eq!(decide(set).await, "Accepted");
    }
    let policy = json!([{"name": "contracts.set_cleanroom_policy", "args": {"contract_id": "room", "type": "add", "claims": {"x-ms-sevsnpvm-hostdata": [host_data]}}}]);
    assert_eq!(decide(policy).await, "Accepted");

    let public_key: [u8; 32] = [7; 32];
    let pk_b64 = base64::engine::general_purpose::STANDARD.encode(public_key);
    let session = |contract: &'static str, host_data: String, bind: bool| {
        let client = sb.client.clone();
        let pk_b64 = pk_b64.clone();
        async move {
            let nonce = client
                .get(&format!("/cleanroom/nonce?contract_id={contract}"))
                .await
                .unwrap()
                .ok_json()
                .unwrap()["nonce"]
                .as_str()
                .unwrap()
                .to_string();
            let mut h = sha2::Sha256::new();
            h.update(public_key);
            h.update(if bind { nonce.as_bytes() } else { b"another nonce".as_slice() });
            let report_data = format!("{}{}", hex::encode(h.finalize()), "00".repeat(32));
            let evidence = json!({"kind": "virtual", "measurement": "22".repeat(48), "host_data": host_data, "report_data": report_data});
            let body = json!({"evidence": evidence, "public_key": pk_b64, "nonce": nonce});
            let r = client.post_json(&format!("/app/contracts/{contract}/cleanroom/session"), &body).await.unwrap();
            (r, body)
        }
    };
    let (r, body) = session("room", host_data.clone(), true).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let s = r.json().unwrap();
    assert_eq!((s["contract_id"].as_str(), s["insecure"].as_bool()), (Some("room"), Some(true)));
    let auth = format!("Bearer {}", s["token"].as_str().unwrap());
    let h = [("authorization", auth.as_str())];
    let consent = sb.client.request("GET", "/app/contracts/room/consent/execution", None, &h).await.unwrap();
    assert_eq!(consent.json().unwrap()["status"], "enabled");
    let ev = sb
        .client
        .request("POST", "/app/contracts/room/events?scope=run", Some(b"{\"rows\":3}".to_vec()), &h)
        .await
        .unwrap();
    assert_eq!(ev.status, 201, "{}", String::from_utf8_lossy(&ev.body));
    let r = sb.client.request("GET", "/app/contracts/other/consent/execution", None, &h).await.unwrap();
    assert_eq!(
        (r.status, cgs_e2e::code(&r).as_str()),
        (403, "NotAContractParty"),
        "a session is bound to one contract"
    );
    let events = members[1].authed("GET", "/app/contracts/room/events", None).await.unwrap().ok_json().unwrap();
    assert_eq!(events["value"][0]["data"]["rows"], 3);

    // ID tokens: refused until governance enables the issuer; then signed with a published key;
    // after a rotation old tokens still verify and new ones use the new key.
    let token_req = json!({"aud": "api://storage"}).to_string().into_bytes();
    let r = sb.client.request("POST", "/app/contracts/room/oauth/token", Some(token_req.clone()), &h).await.unwrap();
    assert_eq!((r.status, cgs_e2e::code(&r).as_str()), (405, "IssuerNotEnabled"));
    let enable = json!([
        {"name": "oidc.enable_issuer", "args": {}},
        {"name": "oidc.set_issuer_url", "args": {"url": "https://issuer.example/cgs"}},
        {"name": "oidc.set_audiences", "args": {"contract_id": "room", "audiences": ["api://storage"]}},
    ]);
    assert_eq!(decide(enable).await, "Accepted");
    let disco = sb.client.get("/.well-known/openid-configuration").await.unwrap().ok_json().unwrap();
    assert_eq!(disco["issuer"], "https://issuer.example/cgs");
    assert_eq!(disco["id_token_signing_alg_values_supported"], json!(["EdDSA"]));
    let id_token = |client: cgs_client::Client, auth: String| async move {
        let h = [("authorization", auth.as_str())];
        let r = client.request("POST", "/app/contracts/room/oauth/token", Some(token_req_bytes()), &h).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json().unwrap()["id_token"].as_str().unwrap().to_string()
    };
    let first = id_token(sb.client.clone(), auth.clone()).await;
    let keys = sb.client.get("/oidc/keys").await.unwrap().ok_json().unwrap();
    let claims = verify_jwt(&first, &keys);
    assert_eq!(
        (claims["iss"].as_str(), claims["sub"].as_str(), claims["aud"].as_str()),
        (Some("https://issuer.example/cgs"), Some("room"), Some("api://storage")),
        "the subject is the contract's, never the caller's choice"
    );
    assert_eq!(claims["contract_id"], "room");
    assert_eq!(claims["x-cgs-insecure-attestation"], true, "a virtual session's token says so");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() == 32));
    assert!(claims["exp"].as_u64().unwrap() <= s["expires_at"].as_u64().unwrap(), "never outlives the session");
    assert_eq!(decide(json!([{"name": "oidc.rotate_key", "args": {}}])).await, "Accepted");
    let keys = sb.client.get("/oidc/keys").await.unwrap().ok_json().unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    verify_jwt(&first, &keys);
    let second = id_token(sb.client.clone(), auth.clone()).await;
    verify_jwt(&second, &keys);
    assert_ne!(jwt_kid(&first), jwt_kid(&second), "new tokens use the new key");
    let r = members[0].authed("POST", "/app/contracts/room/oauth/token", Some(token_req)).await.unwrap();
    assert_eq!((r.status, cgs_e2e::code(&r).as_str()), (403, "CallerKindNotAllowed"), "only attested sessions");

    // Secrets: a member puts one (stored encrypted); a session holding an X25519 key gets it
    // sealed with HPKE and opens it; members cannot release it.
    {
        use hpke::{Deserializable as _, Kem as _, Serializable as _};
        type Kem = hpke::kem::X25519HkdfSha256;
        let (sk, pk) = Kem::gen_keypair(&mut rand::rngs::OsRng);
        let pk_bytes = pk.to_bytes().to_vec();
        let nonce = sb.client.get("/cleanroom/nonce?contract_id=room").await.unwrap().ok_json().unwrap()["nonce"]
            .as_str()
            .unwrap()
            .to_string();
        let mut hsh = sha2::Sha256::new();
        hsh.update(&pk_bytes);
        hsh.update(nonce.as_bytes());
        let evidence = json!({"kind": "virtual", "measurement": "22".repeat(48), "host_data": host_data,
            "report_data": format!("{}{}", hex::encode(hsh.finalize()), "00".repeat(32))});
        let body = json!({"evidence": evidence, "public_key": base64::engine::general_purpose::STANDARD.encode(&pk_bytes), "nonce": nonce});
        let s2 = sb.client.post_json("/app/contracts/room/cleanroom/session", &body).await.unwrap().ok_json().unwrap();
        let auth2 = format!("Bearer {}", s2["token"].as_str().unwrap());
        let r = members[1]
            .authed("PUT", "/app/contracts/room/secrets/storage-key", Some(br#"{"value":"s3cr3t-value"}"#.to_vec()))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let r = sb
            .client
            .request(
                "POST",
                "/app/contracts/room/secrets/storage-key/release",
                None,
                &[("authorization", auth2.as_str())],
            )
            .await
            .unwrap();
        let sealed = r.ok_json().unwrap();
        assert!(!sealed.to_string().contains("s3cr3t"), "the answer holds no plaintext");
        let b64 = base64::engine::general_purpose::STANDARD;
        let enc =
            <Kem as hpke::Kem>::EncappedKey::from_bytes(&b64.decode(sealed["enc"].as_str().unwrap()).unwrap()).unwrap();
        let plain = hpke::single_shot_open::<hpke::aead::ChaCha20Poly1305, hpke::kdf::HkdfSha256, Kem>(
            &hpke::OpModeR::Base,
            &sk,
            &enc,
            b"cgs-secret-release-v1",
            &b64.decode(sealed["ciphertext"].as_str().unwrap()).unwrap(),
            b"room/storage-key",
        )
        .unwrap();
        assert_eq!(plain, b"s3cr3t-value");
        assert_eq!(sealed["set_by"], members[1].id(), "a release names who put the secret");
        let r = members[0].authed("POST", "/app/contracts/room/secrets/storage-key/release", None).await.unwrap();
        assert_eq!((r.status, cgs_e2e::code(&r).as_str()), (403, "CallerKindNotAllowed"));
        let r = sb
            .client
            .request("POST", "/app/contracts/room/secrets/nope/release", None, &[("authorization", auth2.as_str())])
            .await
            .unwrap();
        assert_eq!((r.status, cgs_e2e::code(&r).as_str()), (404, "SecretNotFound"));
        let big = format!("{{\"value\":\"{}\"}}", "x".repeat(26 << 10));
        let r = members[0].authed("PUT", "/app/contracts/room/secrets/big", Some(big.into_bytes())).await.unwrap();
        assert_eq!((r.status, cgs_e2e::code(&r).as_str()), (413, "SecretTooLarge"));
        // Secrets are encrypted in the ledger: the value is not in the ledger file.
        let ledger = std::fs::read(sb.data.join("ledger.redb")).unwrap();
        assert!(!ledger.windows(12).any(|w| w == b"s3cr3t-value"), "the secret is stored encrypted");
    }

    // The same request again: its nonce is used up.
    let r = sb.client.post_json("/app/contracts/room/cleanroom/session", &body).await.unwrap();
    assert_eq!((r.status, cgs_e2e::code(&r).as_str()), (400, "InvalidNonce"));
    // Another host_data: the contract's policy does not admit it.
    let (r, _) = session("room", "33".repeat(32), true).await;
    assert_eq!((r.status, cgs_e2e::code(&r).as_str()), (403, "PolicyMismatch"));
    // report_data not bound to the key and nonce.
    let (r, _) = session("room", host_data.clone(), false).await;
    assert_eq!((r.status, cgs_e2e::code(&r).as_str()), (400, "ReportDataMismatch"));
    // A contract without a policy admits no clean room; an unknown contract is named.
    let (r, _) = session("other", host_data.clone(), true).await;
    assert_eq!((r.status, cgs_e2e::code(&r).as_str()), (403, "PolicyMismatch"));
    let (r, _) = session("nope", host_data, true).await;
    assert_eq!((r.status, cgs_e2e::code(&r).as_str()), (404, "ContractNotFound"));
}

fn token_req_bytes() -> Vec<u8> {
    serde_json::json!({"aud": "api://storage"}).to_string().into_bytes()
}

fn jwt_kid(token: &str) -> String {
    use base64::Engine as _;
    let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap();
    serde_json::from_slice::<serde_json::Value>(&h).unwrap()["kid"].as_str().unwrap().to_string()
}

/// Verify an EdDSA JWT against a JWKS; returns its claims.
fn verify_jwt(token: &str, jwks: &serde_json::Value) -> serde_json::Value {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let kid = jwt_kid(token);
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the token's key is published");
    assert_eq!(jwk["alg"], "EdDSA");
    let x: [u8; 32] = b64.decode(jwk["x"].as_str().unwrap()).unwrap().try_into().unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap();
    let sig: [u8; 64] = b64.decode(parts[2]).unwrap().try_into().unwrap();
    key.verify_strict(format!("{}.{}", parts[0], parts[1]).as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig))
        .expect("the ID token verifies with the published key");
    serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap()
}
