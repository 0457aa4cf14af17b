//! The real SEV-SNP fixtures in `../shared/fixtures/snp` (relative to the workspace root), each
//! checked against what its SOURCE.md and `../shared/reference/sev-snp.md` §7.8 say. Every test
//! passes, printing that it skipped, when that folder is absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cgs_attestation::{Evidence, Generation, SigningKey, Tcb, VerifyError, VerifyPolicy, snp::SIG_OFFSET, verify};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_cert::der::{DecodePem, Encode};

/// 2026-12-02T00:00:00Z: "today" for these tests.
fn today() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_169_600)
}

/// 2025-06-01T00:00:00Z: before the AWS VLEK expired (2025-12-10).
fn before_vlek_expiry() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_748_736_000)
}

fn fixtures() -> Option<PathBuf> {
    // The workspace root is CARGO_MANIFEST_DIR/..; the fixtures are ../shared/fixtures/snp from it.
    // CGS_SNP_FIXTURES overrides the folder (e.g. to check the skip path).
    let dir = match std::env::var_os("CGS_SNP_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("../shared/fixtures/snp"),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        // Straight to stderr, past the test harness's output capture, so the skip is visible.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "skipped: SNP fixtures folder {} is absent", dir.display());
        None
    }
}

macro_rules! fixtures_or_skip {
    () => {
        match fixtures() {
            Some(d) => d,
            None => return,
        }
    };
}

fn pem_to_der(path: &PathBuf) -> Vec<u8> {
    let pem = std::fs::read(path).unwrap();
    x509_cert::Certificate::from_pem(&pem).unwrap().to_der().unwrap()
}

struct Set {
    report: Vec<u8>,
    vek: Vec<u8>,
    ask: Option<Vec<u8>>,
    ark: Option<Vec<u8>>,
}

fn load(root: &std::path::Path, name: &str) -> Set {
    let d = root.join(name);
    let vek = std::fs::read(d.join("vcek.der")).or_else(|_| std::fs::read(d.join("vlek.der"))).unwrap();
    let ask = ["ask.pem", "asvk.pem"].iter().map(|f| d.join(f)).find(|p| p.is_file()).map(|p| pem_to_der(&p));
    let ark = Some(pem_to_der(&d.join("ark.pem")));
    Set { report: std::fs::read(d.join("report.bin")).unwrap(), vek, ask, ark }
}

impl Set {
    fn evidence(&self) -> Evidence {
        Evidence::Snp {
            report: B64.encode(&self.report),
            vcek: B64.encode(&self.vek),
            ask: self.ask.as_ref().map(|a| B64.encode(a)),
            ark: self.ark.as_ref().map(|a| B64.encode(a)),
        }
    }
    fn without_chain(mut self) -> Self {
        self.ask = None;
        self.ark = None;
        self
    }
}

fn aws_policy() -> VerifyPolicy {
    VerifyPolicy { vmpl: Some(1), ..VerifyPolicy::default() }
}

#[test]
fn virtee_milan_verifies_with_and_without_the_supplied_chain() {
    let root = fixtures_or_skip!();
    for set in [load(&root, "virtee-sev-milan"), load(&root, "virtee-sev-milan").without_chain()] {
        let v = verify(&set.evidence(), &VerifyPolicy::default(), today()).unwrap();
        assert!(!v.insecure());
        let s = v.snp.as_ref().unwrap();
        assert_eq!((s.generation, s.signing_key, s.version), (Generation::Milan, SigningKey::Vcek, 2));
        assert_eq!(s.reported_tcb, Tcb::new(3, 0, 8, 115));
        assert_eq!(
            hex::encode(v.claims.measurement),
            "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
        );
        assert_eq!(s.report_hash, <[u8; 32]>::from(Sha256::digest(&set.report[..SIG_OFFSET])));
        let flat = v.flat_claims();
        let get = |k: &str| flat.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap();
        assert_eq!(get("x-ms-attestation-type"), "sevsnpvm");
        assert_eq!(get("x-ms-sevsnpvm-is-debuggable"), "false");
        assert_eq!(get("x-ms-sevsnpvm-is-virtual"), "false");
        assert_eq!(get("x-ms-sevsnpvm-hostdata"), "00".repeat(32));
        assert_eq!(get("x-ms-sevsnpvm-launchmeasurement"), hex::encode(v.claims.measurement));
        assert_eq!(get("x-ms-sevsnpvm-vmpl"), "0");
        assert_eq!(get("x-ms-sevsnpvm-snpfw-svn"), "8");
        assert_eq!(get("x-ms-sevsnpvm-microcode-svn"), "115");
        assert_eq!(get("x-ms-sevsnpvm-bootloader-svn"), "3");
        assert_eq!(get("x-ms-sevsnpvm-tee-svn"), "0");
        assert_eq!(get("x-ms-sevsnpvm-familyid"), "00".repeat(16));
    }
}

#[test]
fn aci_milan_verifies_and_host_data_is_the_policy_digest() {
    let root = fixtures_or_skip!();
    let set = load(&root, "aci-milan-csc");
    let rego = std::fs::read(root.join("aci-milan-csc/security_policy.rego")).unwrap();
    let digest: [u8; 32] = Sha256::digest(&rego).into();
    let policy = VerifyPolicy { host_data: Some(vec![digest]), ..VerifyPolicy::default() };
    let v = verify(&set.evidence(), &policy, today()).unwrap();
    assert_eq!(v.claims.host_data, digest);
    let s = v.snp.unwrap();
    assert_eq!(s.guest_svn, 2);
    assert_eq!(hex::encode(s.family_id), format!("01{}", "00".repeat(15)));
    let other = VerifyPolicy { host_data: Some(vec![[7; 32]]), ..VerifyPolicy::default() };
    let err = verify(&set.evidence(), &other, today()).unwrap_err();
    assert!(matches!(err, VerifyError::HostDataNotAllowed(_)), "{err}");
    assert!(err.to_string().contains("host_data"));
}

#[test]
fn azure_genoa_verifies_and_report_data_binds_the_runtime_json() {
    let root = fixtures_or_skip!();
    let set = load(&root, "azure-cvm-genoa-trustee");
    let json = std::fs::read(root.join("azure-cvm-genoa-trustee/hcl_runtime_data.json")).unwrap();
    let mut want = [0u8; 64];
    want[..32].copy_from_slice(&Sha256::digest(&json));
    let policy = VerifyPolicy { report_data: Some(vec![want]), ..VerifyPolicy::default() };
    let v = verify(&set.evidence(), &policy, today()).unwrap();
    let s = v.snp.unwrap();
    assert_eq!((s.generation, s.version), (Generation::Genoa, 3));
    assert_eq!(s.reported_tcb, Tcb::new(10, 0, 23, 84));
    verify(&set.without_chain().evidence(), &policy, today()).unwrap();
    let other = VerifyPolicy { report_data: Some(vec![[0; 64]]), ..VerifyPolicy::default() };
    let err = verify(&load(&root, "azure-cvm-genoa-trustee").evidence(), &other, today()).unwrap_err();
    assert!(matches!(err, VerifyError::ReportDataMismatch(_)), "{err}");
}

#[test]
fn aws_vlek_verifies_before_expiry_and_is_expired_today() {
    let root = fixtures_or_skip!();
    let set = load(&root, "aws-milan-vlek-trustee");
    let v = verify(&set.evidence(), &aws_policy(), before_vlek_expiry()).unwrap();
    let s = v.snp.unwrap();
    assert_eq!((s.generation, s.signing_key, s.vmpl), (Generation::Milan, SigningKey::Vlek, 1));
    assert_eq!(s.csp_id.as_deref(), Some("CN=cc-us-east-2.amazonaws.com"));

    let err = verify(&set.evidence(), &aws_policy(), today()).unwrap_err();
    assert!(matches!(err, VerifyError::CertExpired { cert: "VLEK", .. }), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");

    // VMPL 1 under the default policy (VMPL 0).
    let err = verify(&set.evidence(), &VerifyPolicy::default(), before_vlek_expiry()).unwrap_err();
    assert!(matches!(err, VerifyError::Vmpl { expected: 0, reported: 1 }), "{err}");
    // cspID allow-list.
    let p = VerifyPolicy { vlek_csp_ids: Some(vec!["CN=other".into()]), ..aws_policy() };
    let err = verify(&set.evidence(), &p, before_vlek_expiry()).unwrap_err();
    assert!(matches!(err, VerifyError::VlekCspNotAllowed(Some(_))), "{err}");
    let p = VerifyPolicy { vlek_csp_ids: Some(vec!["CN=cc-us-east-2.amazonaws.com".into()]), ..aws_policy() };
    verify(&set.evidence(), &p, before_vlek_expiry()).unwrap();
    // VLEK refused when the policy does not allow it.
    let p = VerifyPolicy { allow_vlek: false, ..aws_policy() };
    let err = verify(&set.evidence(), &p, before_vlek_expiry()).unwrap_err();
    assert!(matches!(err, VerifyError::SigningKeyUnsupported(1)), "{err}");
    // There is no built-in ASVK: the evidence must carry it.
    let err = verify(&set.without_chain().evidence(), &aws_policy(), before_vlek_expiry()).unwrap_err();
    assert!(matches!(err, VerifyError::MissingCertificate { cert: "ASVK" }), "{err}");
}

#[test]
fn go_sev_guest_debug_policy_is_refused_and_its_tcb_is_below_minimum() {
    let root = fixtures_or_skip!();
    let set = load(&root, "go-sev-guest-milan");
    let err = verify(&set.evidence(), &VerifyPolicy::default(), today()).unwrap_err();
    assert!(matches!(err, VerifyError::DebugAllowed), "{err}");
    assert!(err.to_string().contains("DEBUG"));
    // Everything else about it is fine: with DEBUG tolerated it verifies...
    let lax = VerifyPolicy { allow_debug: true, ..VerifyPolicy::default() };
    let v = verify(&set.evidence(), &lax, today()).unwrap();
    assert!(v.snp.as_ref().unwrap().debuggable);
    assert!(v.flat_claims().contains(&("x-ms-sevsnpvm-is-debuggable".into(), "true".into())));
    // ...and a Milan minimum TCB (bl3/tee0/snp8/uc115) rejects its old TCB bl2/snp5/uc68.
    let mut min = lax.clone();
    min.min_tcb.insert(Generation::Milan, Tcb::new(3, 0, 8, 115));
    let err = verify(&set.evidence(), &min, today()).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::TcbBelowMinimum {
                generation: Generation::Milan,
                component: "bootloader",
                reported: 2,
                minimum: 3
            }
        ),
        "{err}"
    );
    // The default policy refuses it for DEBUG first, even with a minimum set.
    let mut strict = VerifyPolicy::default();
    strict.min_tcb.insert(Generation::Milan, Tcb::new(3, 0, 8, 115));
    assert!(matches!(verify(&set.evidence(), &strict, today()), Err(VerifyError::DebugAllowed)));
    // A minimum for another generation does not apply.
    let mut genoa = lax;
    genoa.min_tcb.insert(Generation::Genoa, Tcb::new(99, 99, 99, 99));
    verify(&set.evidence(), &genoa, today()).unwrap();
}

#[test]
fn forged_root_is_refused_as_not_pinned() {
    let root = fixtures_or_skip!();
    let set = load(&root, "negative-forged-root");
    let err = verify(&set.evidence(), &VerifyPolicy::default(), today()).unwrap_err();
    assert!(matches!(err, VerifyError::RootNotPinned { cert: "ARK", generation: Generation::Milan }), "{err}");
    assert!(err.to_string().contains("root not pinned"), "{err}");
    // With AMD's ARK but the forged ASK, the ASK pin refuses it.
    let mut s = load(&root, "negative-forged-root");
    s.ark = None;
    let err = verify(&s.evidence(), &VerifyPolicy::default(), today()).unwrap_err();
    assert!(matches!(err, VerifyError::RootNotPinned { cert: "ASK", .. }), "{err}");
    // Without a supplied chain, AMD's pinned ASK does not sign the forged VCEK.
    let err = verify(&set.without_chain().evidence(), &VerifyPolicy::default(), today()).unwrap_err();
    assert!(matches!(err, VerifyError::CertChain(_)), "{err}");
}

#[test]
fn a_vcek_swapped_between_fixtures_fails() {
    let root = fixtures_or_skip!();
    let base = load(&root, "virtee-sev-milan");
    // Another Milan chip's real AMD VCEK: the chain is fine, the report signature is not.
    let mut s = load(&root, "virtee-sev-milan");
    s.vek = load(&root, "aci-milan-csc").vek;
    let err = verify(&s.evidence(), &VerifyPolicy::default(), today()).unwrap_err();
    assert!(matches!(err, VerifyError::ReportSignature(_)), "{err}");
    // A Genoa VCEK for a Milan report: Genoa chain, then the signature fails.
    let mut s = load(&root, "virtee-sev-milan").without_chain();
    s.vek = load(&root, "azure-cvm-genoa-trustee").vek;
    assert!(verify(&s.evidence(), &VerifyPolicy::default(), today()).is_err());
    // A Milan VCEK for the Genoa (v3, CPUID) report: the generations disagree.
    let mut s = load(&root, "azure-cvm-genoa-trustee").without_chain();
    s.vek = base.vek.clone();
    let err = verify(&s.evidence(), &VerifyPolicy::default(), today()).unwrap_err();
    assert!(
        matches!(err, VerifyError::GenerationMismatch { cert: Generation::Milan, report: Generation::Genoa }),
        "{err}"
    );
    // The Milan ASK supplied with a Genoa report: not the pinned Genoa ASK.
    let mut s = load(&root, "azure-cvm-genoa-trustee");
    s.ask = base.ask.clone();
    s.ark = None;
    let err = verify(&s.evidence(), &VerifyPolicy::default(), today()).unwrap_err();
    assert!(matches!(err, VerifyError::RootNotPinned { cert: "ASK", generation: Generation::Genoa }), "{err}");
}

#[test]
fn flipped_bytes_fail() {
    let root = fixtures_or_skip!();
    let sig = SIG_OFFSET;
    // measurement, host_data, report_data, reported_tcb.snp, signature r[0], r[47], s[0]
    for off in [0x90, 0xC0, 0x50, 0x186, sig, sig + 47, sig + 72] {
        let mut s = load(&root, "virtee-sev-milan");
        s.report[off] ^= 0x01;
        let err = verify(&s.evidence(), &VerifyPolicy::default(), today()).unwrap_err();
        assert!(matches!(err, VerifyError::ReportSignature(_)), "offset {off:#x}: {err}");
    }
    // The unsigned parts of the signature block (r padding, reserved): not canonical.
    for off in [sig + 0x3C, 0x33A, SIG_OFFSET + 511] {
        let mut s = load(&root, "virtee-sev-milan");
        s.report[off] ^= 0x01;
        let err = verify(&s.evidence(), &VerifyPolicy::default(), today()).unwrap_err();
        assert!(matches!(err, VerifyError::NonCanonicalSignature), "offset {off:#x}: {err}");
    }
    // A non-zero reserved byte in the signed region does not parse.
    let mut s = load(&root, "virtee-sev-milan");
    s.report[0x4C] = 1;
    let err = verify(&s.evidence(), &VerifyPolicy::default(), today()).unwrap_err();
    assert!(matches!(err, VerifyError::ReportParse(_)), "{err}");
    // The DEBUG bit: signature, not policy (the signature is checked first).
    let mut s = load(&root, "virtee-sev-milan");
    s.report[0x0A] |= 0x08;
    let err = verify(&s.evidence(), &VerifyPolicy::default(), today()).unwrap_err();
    assert!(matches!(err, VerifyError::ReportSignature(_)), "{err}");
}

#[test]
fn truncated_or_oversized_reports_fail() {
    let root = fixtures_or_skip!();
    for len in [1183usize, 1185, 0x2A0] {
        let mut s = load(&root, "virtee-sev-milan");
        s.report.resize(len, 0);
        let err = verify(&s.evidence(), &VerifyPolicy::default(), today()).unwrap_err();
        assert!(matches!(err, VerifyError::Shape(_)), "len {len}: {err}");
    }
    let mut s = load(&root, "virtee-sev-milan");
    s.vek.truncate(100);
    let err = verify(&s.evidence(), &VerifyPolicy::default(), today()).unwrap_err();
    assert!(matches!(err, VerifyError::CertParse { .. }), "{err}");
}

#[test]
fn identity_allow_lists_apply_to_real_reports() {
    let root = fixtures_or_skip!();
    let set = load(&root, "virtee-sev-milan");
    let p = VerifyPolicy { measurements: Some(vec![[0xba; 48]]), ..VerifyPolicy::default() };
    let err = verify(&set.evidence(), &p, today()).unwrap_err();
    assert!(matches!(err, VerifyError::MeasurementNotAllowed(_)), "{err}");
    let p = VerifyPolicy { vmpl: Some(2), ..VerifyPolicy::default() };
    assert!(matches!(verify(&set.evidence(), &p, today()), Err(VerifyError::Vmpl { expected: 2, reported: 0 })));
    let p = VerifyPolicy { min_abi: Some((1, 0)), ..VerifyPolicy::default() };
    assert!(matches!(verify(&set.evidence(), &p, today()), Err(VerifyError::AbiTooOld { .. })));
    let p = VerifyPolicy { min_guest_svn: Some(1), ..VerifyPolicy::default() };
    assert!(matches!(verify(&set.evidence(), &p, today()), Err(VerifyError::GuestSvnTooLow { .. })));
    let p = VerifyPolicy { id_key_digests: Some(vec![[1; 48]]), ..VerifyPolicy::default() };
    assert!(matches!(verify(&set.evidence(), &p, today()), Err(VerifyError::IdKeyDigestNotAllowed(_))));
    // 2022-01-01: after the Milan ARK/ASK notBefore (2020-10-22), before the VCEK's (2023-04-03).
    let early = UNIX_EPOCH + Duration::from_secs(1_640_995_200);
    let err = verify(&set.evidence(), &VerifyPolicy::default(), early).unwrap_err();
    assert!(matches!(err, VerifyError::CertNotYetValid { cert: "VCEK", .. }), "{err}");
}
