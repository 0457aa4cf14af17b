//! Bearer tokens: user JWTs of registered issuers (`host/src/auth/users.rs`: `parse`, `verify`,
//! `flat_claims`) and the service's own member / clean-room tokens (`host/src/auth/jwt.rs`:
//! `TokenKey::verify_claims`), both compiled into the fuzz crate with `#[path]`.
//!
//! The input is the token text (what follows `Authorization: Bearer `).
//!
//! Properties:
//! * `parse` is deterministic and keeps the signing input: a parsed token has three parts whose
//!   first two are valid base64url JSON;
//! * a user token that verifies against the test issuer (EdDSA `k1`, RFC 7515 RSA and P-256
//!   keys, audience `cgs`, fixed now) has a non-empty `sub`, an unexpired `exp` and the audience,
//!   and no single-byte mutation of it verifies;
//! * a service token that verifies carries the audience and issuer, and `issue_claims` of its
//!   claims verifies; no single-byte mutation of it verifies.
#![no_main]

use cgs_fuzz::jwt::{CLEANROOM_AUDIENCE, MEMBER_AUDIENCE, TokenKey};
use cgs_fuzz::users;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static ISSUER: LazyLock<serde_json::Value> = LazyLock::new(cgs_fuzz::issuer_record);
static TOKENS: LazyLock<TokenKey> = LazyLock::new(cgs_fuzz::token_key);
const NOW: u64 = cgs_fuzz::NOW_SECS;

fn user_ok(token: &str) -> Option<String> {
    let p = users::parse(token).ok()?;
    users::verify(&p, &ISSUER, NOW).ok()
}

fn user(token: &str) {
    let (a, b) = (users::parse(token), users::parse(token));
    assert_eq!(a.is_ok(), b.is_ok());
    let Ok(p) = a else { return };
    assert_eq!(token.matches('.').count(), 2);
    let _ = users::flat_claims(&p.claims);
    let Ok(sub) = users::verify(&p, &ISSUER, NOW) else { return };
    assert!(!sub.is_empty());
    assert_eq!(p.claims["sub"].as_str(), Some(sub.as_str()));
    let exp = p.claims["exp"].as_u64().expect("a verified token has exp");
    assert!(exp + users::LEEWAY_SECS > NOW);
    let aud = &p.claims["aud"];
    assert!(aud == cgs_fuzz::AUDIENCE || aud.as_array().is_some_and(|a| a.iter().any(|x| x == cgs_fuzz::AUDIENCE)));
    for m in cgs_fuzz::mutations(token.as_bytes(), 8) {
        if let Ok(ms) = std::str::from_utf8(&m) {
            assert!(user_ok(ms).is_none(), "a mutated user token verifies");
        }
    }
}

fn service(token: &str) {
    for aud in [MEMBER_AUDIENCE, CLEANROOM_AUDIENCE] {
        let Ok(claims) = TOKENS.verify_claims(token, NOW, aud) else { continue };
        assert_eq!(claims["aud"], aud);
        assert_eq!(claims["iss"], cgs_fuzz::ORIGIN);
        assert!(claims["exp"].as_u64().is_some_and(|e| e > NOW));
        let again = TOKENS.issue_claims(claims.clone());
        assert_eq!(TOKENS.verify_claims(&again, NOW, aud).as_ref(), Ok(&claims));
        for m in cgs_fuzz::mutations(token.as_bytes(), 8) {
            if let Ok(ms) = std::str::from_utf8(&m) {
                assert!(TOKENS.verify_claims(ms, NOW, aud).is_err(), "a mutated service token verifies");
            }
        }
    }
    if let Ok(member) = TOKENS.verify(token, NOW) {
        let claims = TOKENS.verify_claims(token, NOW, MEMBER_AUDIENCE).expect("a member token is a member token");
        assert_eq!(claims["sub"].as_str(), Some(member.as_str()));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    user(token);
    service(token);
});
