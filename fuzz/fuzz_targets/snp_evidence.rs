//! `cgs_attestation`: evidence JSON as clean rooms and joining nodes send it, and the SEV-SNP
//! report parser / verifier, with a fixed "now" (2026-12-02).
//!
//! Inputs, by shape:
//! * JSON (first byte `{`): `Evidence::from_json`, `check_shape`, then `verify` against AMD's
//!   pinned roots (default policy) and `verify_with_anchors` against the test PKI (virtual
//!   evidence allowed). Properties: evidence that parses re-serializes to an equal value; verified
//!   claims equal the report's bytes; no single-byte mutation of a verified report verifies.
//! * anything else: a raw report (padded / cut to 1184 bytes) through the `sev` parser, then
//!   re-signed with the test VCEK or VLEK (so that every check after the signature is reached)
//!   and verified with the test PKI. Properties: the verdict is deterministic; a verified report
//!   satisfies the default policy (version 2..=5, VMPL 0, no DEBUG, no migration agent) and its
//!   claims are its bytes; a byte changed in the signed part after signing never verifies.
#![no_main]

use base64::Engine as _;
use cgs_attestation::snp::SIG_OFFSET;
use cgs_attestation::{
    Evidence, SNP_REPORT_LEN, TrustAnchors, VerifiedEvidence, VerifyPolicy, verify, verify_with_anchors,
};
use cgs_fuzz::snp_pki::{PKI, anchors, sign_report};
use libfuzzer_sys::fuzz_target;
use sev::parser::ByteParser;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

static ANCHORS: LazyLock<TrustAnchors> = LazyLock::new(anchors);

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(cgs_fuzz::NOW_SECS)
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// What a verified SNP report must satisfy under the default policy.
fn check_verified(raw: &[u8], v: &VerifiedEvidence) {
    let s = v.snp.as_ref().expect("snp evidence has snp claims");
    assert!(!v.insecure());
    assert!((2..=5).contains(&s.version));
    assert_eq!(s.vmpl, 0);
    assert!(!s.debuggable && !s.migrate_ma);
    assert_eq!(s.measurement[..], raw[0x90..0xC0]);
    assert_eq!(s.host_data[..], raw[0xC0..0xE0]);
    assert_eq!(s.report_data[..], raw[0x50..0x90]);
    assert_eq!(v.claims.report_data, s.report_data);
    assert_eq!(s.report_hash, <[u8; 32]>::from(Sha256::digest(&raw[..SIG_OFFSET])));
    let flat = v.flat_claims();
    assert!(flat.iter().any(|(k, val)| k == "x-ms-sevsnpvm-is-virtual" && val == "false"));
}

fn with_report(e: &Evidence, report: &[u8]) -> Evidence {
    match e {
        Evidence::Snp { vcek, ask, ark, .. } => {
            Evidence::Snp { report: b64().encode(report), vcek: vcek.clone(), ask: ask.clone(), ark: ark.clone() }
        }
        v => v.clone(),
    }
}

fn json(data: &[u8]) {
    let Ok(e) = Evidence::from_json(data) else { return };
    let again = Evidence::from_json(&serde_json::to_vec(&e).unwrap()).expect("evidence re-parses");
    assert_eq!(again, e);
    let shape = e.check_shape();
    let strict = VerifyPolicy::default();
    let lax = VerifyPolicy { allow_virtual: true, ..VerifyPolicy::default() };
    let results = [verify(&e, &strict, now()), verify_with_anchors(&e, &lax, &ANCHORS, now())];
    for (i, r) in results.iter().enumerate() {
        let Ok(v) = r else { continue };
        assert!(shape.is_ok());
        match &e {
            Evidence::Virtual { .. } => {
                assert_eq!(i, 1, "virtual evidence passed the strict policy");
                assert!(v.insecure() && v.snp.is_none());
                assert_eq!(shape.as_ref().unwrap().as_ref(), Some(&v.claims));
            }
            Evidence::Snp { report, .. } => {
                let raw = b64().decode(report).unwrap();
                check_verified(&raw, v);
                for m in cgs_fuzz::mutations(&raw[..SIG_OFFSET], 4) {
                    let mut bad = raw.clone();
                    bad[..SIG_OFFSET].copy_from_slice(&m);
                    let e2 = with_report(&e, &bad);
                    let r2 = if i == 0 {
                        verify(&e2, &strict, now())
                    } else {
                        verify_with_anchors(&e2, &lax, &ANCHORS, now())
                    };
                    assert!(r2.is_err(), "a report with a changed signed byte verifies");
                }
            }
        }
    }
}

fn raw_report(data: &[u8]) {
    let (&flags, rest) = data.split_first().unwrap_or((&0, &[]));
    let mut raw = rest.to_vec();
    raw.resize(SNP_REPORT_LEN, 0);
    if let Ok(r) = sev::firmware::guest::AttestationReport::from_bytes(&raw) {
        let _ = r.to_bytes();
    }
    let vlek = flags & 1 == 1;
    let (vek, key, mid) =
        if vlek { (&PKI.vlek, &PKI.vlek_key, &PKI.asvk) } else { (&PKI.vcek, &PKI.vcek_key, &PKI.ask) };
    sign_report(&mut raw, key);
    let e = Evidence::Snp {
        report: b64().encode(&raw),
        vcek: b64().encode(vek),
        ask: (flags & 2 == 0).then(|| b64().encode(mid)),
        ark: (flags & 4 == 0).then(|| b64().encode(&PKI.ark)),
    };
    let policy = VerifyPolicy::default();
    let a = verify_with_anchors(&e, &policy, &ANCHORS, now());
    let b = verify_with_anchors(&e, &policy, &ANCHORS, now());
    assert_eq!(a, b, "verification is not deterministic");
    if let Ok(v) = &a {
        check_verified(&raw, v);
        // The same report under AMD's roots: the test chain is not pinned there.
        assert!(verify(&e, &policy, now()).is_err(), "the test PKI verifies under AMD's roots");
        let pos = usize::from(flags) * 7 % SIG_OFFSET;
        let mut bad = raw.clone();
        bad[pos] ^= 0x80;
        assert!(verify_with_anchors(&with_report(&e, &bad), &policy, &ANCHORS, now()).is_err());
    }
}

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'{') {
        json(data);
    } else {
        raw_report(data);
    }
});
