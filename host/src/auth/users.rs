//! User JWTs from governance-registered issuers (`gov.jwt_issuers`) for registered identities
//! (`gov.user_identities`, encrypted in the ledger, keyed by [`identity_key`]: the ledger files
//! do not name users).
//!
//! Algorithms: RS256 (RSA ≥ 2048 bits), ES256 (P-256) and EdDSA (Ed25519), with the key taken from
//! the issuer's JWKS (`kid` must match when the token names one). Claims: `iss` and `sub`
//! (required), `exp` (required, in the future), `nbf` (if present, not in the future beyond
//! [`LEEWAY_SECS`]), and `aud` (must include the issuer record's `audience`, which every issuer has).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;

/// A token split and decoded, signature not yet checked.
pub struct Parsed {
    /// The header.
    pub header: serde_json::Value,
    /// The claims.
    pub claims: serde_json::Value,
    signing_input: String,
    signature: Vec<u8>,
}

fn b64json(part: &str, what: &str) -> Result<serde_json::Value, String> {
    let bytes = B64URL.decode(part).map_err(|_| format!("the token {what} is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| format!("the token {what} is not JSON"))
}

/// The `gov.user_identities` key of user `issuer|subject`: hex of its blinded form (the
/// constitution writes it the same way, with `kv.blind`).
pub fn identity_key(user: &str, blind: impl FnOnce(&[u8]) -> [u8; 32]) -> String {
    hex::encode(blind(user.as_bytes()))
}

/// Split a compact JWS into header, claims and signature (no verification).
pub fn parse(token: &str) -> Result<Parsed, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("the bearer token is not a JWT (three base64url parts)".into());
    };
    Ok(Parsed {
        header: b64json(h, "header")?,
        claims: b64json(c, "claims")?,
        signing_input: format!("{h}.{c}"),
        signature: B64URL.decode(s).map_err(|_| "the token signature is not base64url".to_string())?,
    })
}

fn field(jwk: &serde_json::Value, name: &str) -> Result<Vec<u8>, String> {
    let s = jwk[name].as_str().ok_or_else(|| format!("a JWKS key lacks `{name}`"))?;
    B64URL.decode(s.trim_end_matches('=')).map_err(|_| format!("a JWKS key's `{name}` is not base64url"))
}

/// Verify the signature of `p` with one JWK (`alg` from the token header).
pub fn verify_with(p: &Parsed, jwk: &serde_json::Value) -> Result<(), String> {
    use ring::signature;
    let alg = p.header["alg"].as_str().unwrap_or_default();
    let msg = p.signing_input.as_bytes();
    let bad = || "the token signature does not verify with the issuer's key".to_string();
    match (alg, jwk["kty"].as_str()) {
        ("RS256", Some("RSA")) => {
            let (n, e) = (field(jwk, "n")?, field(jwk, "e")?);
            signature::RsaPublicKeyComponents { n: &n, e: &e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, &p.signature)
                .map_err(|_| bad())
        }
        ("ES256", Some("EC")) => {
            if jwk["crv"] != "P-256" {
                return Err("ES256 needs a P-256 key".into());
            }
            let (x, y) = (field(jwk, "x")?, field(jwk, "y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err("a P-256 key's coordinates are 32 bytes".into());
            }
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, &p.signature)
                .map_err(|_| bad())
        }
        ("EdDSA", Some("OKP")) => {
            if jwk["crv"] != "Ed25519" {
                return Err("EdDSA tokens need an Ed25519 key".into());
            }
            let x: [u8; 32] = field(jwk, "x")?.try_into().map_err(|_| "an Ed25519 key is 32 bytes".to_string())?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| "a bad Ed25519 key".to_string())?;
            let sig = ed25519_dalek::Signature::from_slice(&p.signature).map_err(|_| bad())?;
            key.verify_strict(msg, &sig).map_err(|_| bad())
        }
        ("RS256" | "ES256" | "EdDSA", _) => Err(format!("no key of the right type for {alg}")),
        (other, _) => Err(format!("token algorithm `{other}` is not accepted (RS256, ES256, EdDSA)")),
    }
}

/// Verify `p` against an issuer record (`{"issuer", "jwks": {"keys": [..]}, "audience"}`) at
/// `now` (seconds): signature, expiry, not-before and audience. Returns the subject.
pub fn verify(p: &Parsed, issuer: &serde_json::Value, now: u64) -> Result<String, String> {
    let iss = p.claims["iss"].as_str().unwrap_or_default();
    let keys = issuer["jwks"]["keys"].as_array().ok_or_else(|| format!("issuer `{iss}` has no JWKS"))?;
    let kid = p.header["kid"].as_str();
    let candidates: Vec<&serde_json::Value> =
        keys.iter().filter(|k| kid.is_none_or(|kid| k["kid"].as_str() == Some(kid))).collect();
    if candidates.is_empty() {
        return Err(format!("issuer `{iss}` has no key with kid `{}`", kid.unwrap_or_default()));
    }
    let mut last = String::new();
    if !candidates.iter().any(|k| match verify_with(p, k) {
        Ok(()) => true,
        Err(e) => {
            last = e;
            false
        }
    }) {
        return Err(last);
    }
    let exp = p.claims["exp"].as_u64().ok_or_else(|| "the token has no `exp`".to_string())?;
    if exp + LEEWAY_SECS <= now {
        return Err("the token has expired".into());
    }
    if p.claims["nbf"].as_u64().is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
        return Err("the token is not valid yet (`nbf`)".into());
    }
    // Every issuer names the audience of this service's tokens (`set_jwt_issuer` requires it):
    // a token the issuer minted for another application is not a credential here.
    let want = issuer["audience"].as_str().filter(|a| !a.is_empty()).ok_or_else(|| {
        format!("issuer `{iss}` was registered without an `audience`; propose set_jwt_issuer again with one")
    })?;
    let ok = match &p.claims["aud"] {
        serde_json::Value::String(a) => a == want,
        serde_json::Value::Array(a) => a.iter().any(|a| a == want),
        _ => false,
    };
    if !ok {
        return Err(format!("the token's audience is not `{want}`"));
    }
    p.claims["sub"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| "the token has no `sub`".into())
}

/// Top-level scalar claims as strings (for plugins' policies).
pub fn flat_claims(claims: &serde_json::Value) -> Vec<(String, String)> {
    claims
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| match v {
                    serde_json::Value::String(s) => Some((k.clone(), s.clone())),
                    serde_json::Value::Bool(_) | serde_json::Value::Number(_) => Some((k.clone(), v.to_string())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Sign `claims` as an EdDSA JWT with `key` and `kid` (tests and the sandbox's demo issuer).
pub fn sign_eddsa(key: &ed25519_dalek::SigningKey, kid: &str, claims: &serde_json::Value) -> String {
    use ed25519_dalek::Signer;
    let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let input = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", B64URL.encode(sig.to_bytes()))
}

/// The JWK of an Ed25519 public key.
pub fn ed25519_jwk(key: &ed25519_dalek::VerifyingKey, kid: &str) -> serde_json::Value {
    serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": B64URL.encode(key.as_bytes())})
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7515 appendix A.2 (RS256) and A.3 (ES256): public keys and signed example tokens.
    const PAYLOAD: &str =
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
    const RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    const RS_SIG: &str = "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
    const ES_SIG: &str = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

    #[test]
    fn rfc7515_vectors() {
        let rsa = serde_json::json!({"kty": "RSA", "n": RSA_N, "e": "AQAB"});
        let ec = serde_json::json!({"kty": "EC", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let rs = parse(&format!("eyJhbGciOiJSUzI1NiJ9.{PAYLOAD}.{RS_SIG}")).unwrap();
        verify_with(&rs, &rsa).unwrap();
        assert!(verify_with(&rs, &ec).is_err(), "an RS256 token against an EC key");
        let es = parse(&format!("eyJhbGciOiJFUzI1NiJ9.{PAYLOAD}.{ES_SIG}")).unwrap();
        verify_with(&es, &ec).unwrap();
        // A changed signature byte breaks both.
        let rs_bad = format!("d{}", &RS_SIG[1..]);
        let es_bad = format!("E{}", &ES_SIG[1..]);
        assert!(verify_with(&parse(&format!("eyJhbGciOiJSUzI1NiJ9.{PAYLOAD}.{rs_bad}")).unwrap(), &rsa).is_err());
        assert!(verify_with(&parse(&format!("eyJhbGciOiJFUzI1NiJ9.{PAYLOAD}.{es_bad}")).unwrap(), &ec).is_err());
        // The RFC tokens carry `exp` 1300819380 and neither `aud` nor `sub`.
        let issuer = serde_json::json!({"issuer": "joe", "audience": "cgs", "jwks": {"keys": [rsa.clone()]}});
        assert_eq!(verify(&rs, &issuer, 1_300_819_000).unwrap_err(), "the token's audience is not `cgs`");
        assert_eq!(verify(&rs, &issuer, 1_400_000_000).unwrap_err(), "the token has expired");
        // An issuer record without an audience admits no token at all.
        let no_aud = serde_json::json!({"issuer": "joe", "jwks": {"keys": [rsa]}});
        assert!(verify(&rs, &no_aud, 1_300_819_000).unwrap_err().contains("without an `audience`"));
    }

    #[test]
    fn eddsa_issuer_kid_and_audience() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let issuer = serde_json::json!({"issuer": "https://idp", "audience": "cgs",
            "jwks": {"keys": [ed25519_jwk(&key.verifying_key(), "k1")]}});
        let claims = serde_json::json!({"iss": "https://idp", "sub": "alice", "aud": "cgs", "exp": 2000, "tid": "t1"});
        let t = parse(&sign_eddsa(&key, "k1", &claims)).unwrap();
        assert_eq!(verify(&t, &issuer, 1000).unwrap(), "alice");
        assert!(flat_claims(&t.claims).contains(&("tid".into(), "t1".into())));
        let other_kid = parse(&sign_eddsa(&key, "k2", &claims)).unwrap();
        assert!(verify(&other_kid, &issuer, 1000).unwrap_err().contains("kid"));
        let wrong_aud =
            parse(&sign_eddsa(&key, "k1", &serde_json::json!({"sub": "a", "aud": "x", "exp": 2000}))).unwrap();
        assert!(verify(&wrong_aud, &issuer, 1000).unwrap_err().contains("audience"));
        let other_key = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        assert!(verify(&parse(&sign_eddsa(&other_key, "k1", &claims)).unwrap(), &issuer, 1000).is_err());
        let url_only = serde_json::json!({"issuer": "https://idp", "jwks_url": "https://idp/keys"});
        assert!(verify(&t, &url_only, 1000).unwrap_err().contains("no JWKS"));
    }
}
