//! The same verifier code paths on data these tests make themselves (no ../shared needed):
//! an RSA-PSS/SHA-384 ARK → ASK (and ASVK) chain like AMD's, a P-384 VCEK (and VLEK) carrying
//! AMD's extensions, and SNP reports signed with that key; verified with injected trust anchors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cgs_attestation::{
    Evidence, Generation, GenerationAnchors, Pin, SigningKey, Tcb, TrustAnchors, VerifyError, VerifyPolicy,
    snp::SIG_OFFSET, verify, verify_with_anchors,
};
use p384::ecdsa::signature::Signer as _;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use rsa::pkcs8::EncodePublicKey as _;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
use sha2::Sha384;
use std::str::FromStr as _;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::der::asn1::{BitString, Ia5String, ObjectIdentifier, OctetString, UtcTime};
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{DynSignatureAlgorithmIdentifier as _, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

/// Test certificates are valid 2024-01-01 .. 2040-01-01.
const NOT_BEFORE: u64 = 1_704_067_200;
const NOT_AFTER: u64 = 2_208_988_800;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_169_600) // 2026-12-02
}

const TCB: Tcb = Tcb::new(4, 0, 24, 219);
const CHIP: [u8; 64] = {
    let mut c = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        c[i] = (i as u8).wrapping_mul(37).wrapping_add(11);
        i += 1;
    }
    c
};

struct Pki {
    ark: Vec<u8>,
    ask: Vec<u8>,
    asvk: Vec<u8>,
    vcek: Vec<u8>,
    vcek_key: p384::ecdsa::SigningKey,
    vlek: Vec<u8>,
    vlek_key: p384::ecdsa::SigningKey,
    /// A second VCEK (same key) whose hwID is another chip.
    vcek_other_chip: Vec<u8>,
    /// A VCEK that expired in 2025.
    vcek_expired: Vec<u8>,
}

type RsaSigner = rsa::pss::SigningKey<Sha384>;

fn time(secs: u64) -> Time {
    Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(secs)).unwrap())
}

fn amd_ext(oid: &str, value_der: Vec<u8>) -> Extension {
    Extension {
        extn_id: ObjectIdentifier::new_unwrap(oid),
        critical: false,
        extn_value: OctetString::new(value_der).unwrap(),
    }
}

/// A certificate signed with RSASSA-PSS/SHA-384 by `issuer_key`, as AMD signs.
#[allow(clippy::too_many_arguments)]
fn cert(
    serial: u8,
    issuer: &str,
    subject: &str,
    spki_der: &[u8],
    issuer_key: &RsaSigner,
    validity: (u64, u64),
    extensions: Option<Vec<Extension>>,
    rng: &mut StdRng,
) -> Vec<u8> {
    let alg = issuer_key.signature_algorithm_identifier().unwrap();
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[serial]).unwrap(),
        signature: alg.clone(),
        issuer: Name::from_str(issuer).unwrap(),
        validity: Validity { not_before: time(validity.0), not_after: time(validity.1) },
        subject: Name::from_str(subject).unwrap(),
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(spki_der).unwrap(),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions,
    };
    let sig = issuer_key.sign_with_rng(rng, &tbs.to_der().unwrap());
    x509_cert::Certificate {
        tbs_certificate: tbs,
        signature_algorithm: alg,
        signature: BitString::from_bytes(&sig.to_bytes()).unwrap(),
    }
    .to_der()
    .unwrap()
}

fn vek_extensions(product: &str, tcb: Tcb, hwid: Option<&[u8]>, csp: Option<&str>) -> Vec<Extension> {
    let mut e = vec![
        amd_ext("1.3.6.1.4.1.3704.1.2", Ia5String::new(product).unwrap().to_der().unwrap()),
        amd_ext("1.3.6.1.4.1.3704.1.3.1", u32::from(tcb.bootloader).to_der().unwrap()),
        amd_ext("1.3.6.1.4.1.3704.1.3.2", u32::from(tcb.tee).to_der().unwrap()),
        amd_ext("1.3.6.1.4.1.3704.1.3.3", u32::from(tcb.snp).to_der().unwrap()),
        amd_ext("1.3.6.1.4.1.3704.1.3.8", u32::from(tcb.microcode).to_der().unwrap()),
    ];
    if let Some(h) = hwid {
        e.push(amd_ext("1.3.6.1.4.1.3704.1.4", OctetString::new(h).unwrap().to_der().unwrap()));
    }
    if let Some(c) = csp {
        e.push(amd_ext("1.3.6.1.4.1.3704.1.5", Ia5String::new(c).unwrap().to_der().unwrap()));
    }
    e
}

const ARK_NAME: &str = "CN=ARK-Milan,O=CGS Test";
const ASK_NAME: &str = "CN=SEV-Milan,O=CGS Test";
const ASVK_NAME: &str = "CN=SEV-VLEK-Milan,O=CGS Test";

static PKI: LazyLock<Pki> = LazyLock::new(|| {
    let started = std::time::Instant::now();
    let mut rng = StdRng::seed_from_u64(0x5e5_0a11);
    // AMD uses RSA-4096; 2048 keeps key generation quick in debug builds and exercises the same
    // RSASSA-PSS/SHA-384 verification in `sev`.
    let rsa_key = |rng: &mut StdRng| rsa::RsaPrivateKey::new(rng, 2048).unwrap();
    let (ark_key, ask_key, asvk_key) = (rsa_key(&mut rng), rsa_key(&mut rng), rsa_key(&mut rng));
    let spki = |k: &rsa::RsaPrivateKey| k.to_public_key().to_public_key_der().unwrap().as_bytes().to_vec();
    let (ark_spki, ask_spki, asvk_spki) = (spki(&ark_key), spki(&ask_key), spki(&asvk_key));
    let ark_signer = RsaSigner::new(ark_key);
    let ask_signer = RsaSigner::new(ask_key);
    let asvk_signer = RsaSigner::new(asvk_key);
    let v = (NOT_BEFORE, NOT_AFTER);
    let ark = cert(1, ARK_NAME, ARK_NAME, &ark_spki, &ark_signer, v, None, &mut rng);
    let ask = cert(2, ARK_NAME, ASK_NAME, &ask_spki, &ark_signer, v, None, &mut rng);
    let asvk = cert(3, ARK_NAME, ASVK_NAME, &asvk_spki, &ark_signer, v, None, &mut rng);

    let vcek_key = p384::ecdsa::SigningKey::random(&mut rng);
    let vcek_spki = vcek_key.verifying_key().to_public_key_der().unwrap().as_bytes().to_vec();
    let vcek_ext = |chip: &[u8]| Some(vek_extensions("Milan-B0", TCB, Some(chip), None));
    let vcek = cert(4, ASK_NAME, "CN=SEV-VCEK", &vcek_spki, &ask_signer, v, vcek_ext(&CHIP), &mut rng);
    let vcek_other_chip = cert(5, ASK_NAME, "CN=SEV-VCEK", &vcek_spki, &ask_signer, v, vcek_ext(&[9; 64]), &mut rng);
    let expired = (NOT_BEFORE, 1_765_324_800); // 2025-12-10
    let vcek_expired = cert(6, ASK_NAME, "CN=SEV-VCEK", &vcek_spki, &ask_signer, expired, vcek_ext(&CHIP), &mut rng);

    let vlek_key = p384::ecdsa::SigningKey::random(&mut rng);
    let vlek_spki = vlek_key.verifying_key().to_public_key_der().unwrap().as_bytes().to_vec();
    let vlek_ext = Some(vek_extensions("Milan", TCB, None, Some("CN=csp.example")));
    let vlek = cert(7, ASVK_NAME, "CN=SEV-VLEK", &vlek_spki, &asvk_signer, v, vlek_ext, &mut rng);
    eprintln!("generated the test PKI in {:?}", started.elapsed());
    Pki { ark, ask, asvk, vcek, vcek_key, vlek, vlek_key, vcek_other_chip, vcek_expired }
});

fn anchors() -> TrustAnchors {
    let p = &*PKI;
    TrustAnchors {
        generations: vec![GenerationAnchors {
            generation: Generation::Milan,
            ark: Pin::of_cert_der(&p.ark).unwrap(),
            ask: Pin::of_cert_der(&p.ask).unwrap(),
            asvk: Some(Pin::of_cert_der(&p.asvk).unwrap()),
            ark_der: Some(p.ark.clone()),
            ask_der: Some(p.ask.clone()),
            asvk_der: None,
        }],
    }
}

/// Report fields the tests vary.
#[derive(Clone)]
struct R {
    version: u32,
    policy: u64,
    vmpl: u32,
    sig_algo: u32,
    key_info: u32,
    cpuid: (u8, u8, u8),
    tcb: Tcb,
    chip: [u8; 64],
    measurement: [u8; 48],
    host_data: [u8; 32],
    report_data: [u8; 64],
}

impl Default for R {
    fn default() -> Self {
        R {
            version: 3,
            policy: 0x30000,
            vmpl: 0,
            sig_algo: 1,
            key_info: 0,
            cpuid: (0x19, 0x01, 0x01),
            tcb: TCB,
            chip: CHIP,
            measurement: [0x4d; 48],
            host_data: [0x48; 32],
            report_data: [0x52; 64],
        }
    }
}

fn tcb_bytes(t: Tcb) -> [u8; 8] {
    [t.bootloader, t.tee, 0, 0, 0, 0, t.snp, t.microcode]
}

/// A raw 1184-byte report (Milan layout) signed by `key`: ECDSA P-384/SHA-384 over [0, 0x2A0),
/// r and s little-endian in 72-byte fields.
fn report(r: &R, key: &p384::ecdsa::SigningKey) -> Vec<u8> {
    let mut b = vec![0u8; 1184];
    b[0..4].copy_from_slice(&r.version.to_le_bytes());
    b[8..16].copy_from_slice(&r.policy.to_le_bytes());
    b[0x30..0x34].copy_from_slice(&r.vmpl.to_le_bytes());
    b[0x34..0x38].copy_from_slice(&r.sig_algo.to_le_bytes());
    for off in [0x38, 0x180, 0x1E0, 0x1F0] {
        b[off..off + 8].copy_from_slice(&tcb_bytes(r.tcb));
    }
    b[0x40] = 1; // platform_info: SMT enabled
    b[0x48..0x4C].copy_from_slice(&r.key_info.to_le_bytes());
    b[0x50..0x90].copy_from_slice(&r.report_data);
    b[0x90..0xC0].copy_from_slice(&r.measurement);
    b[0xC0..0xE0].copy_from_slice(&r.host_data);
    if r.version >= 3 {
        b[0x188] = r.cpuid.0;
        b[0x189] = r.cpuid.1;
        b[0x18A] = r.cpuid.2;
    }
    b[0x1A0..0x1E0].copy_from_slice(&r.chip);
    b[0x1E8..0x1EB].copy_from_slice(&[4, 55, 1]); // current build/minor/major
    b[0x1EC..0x1EF].copy_from_slice(&[4, 55, 1]); // committed
    let sig: p384::ecdsa::Signature = key.sign(&b[..SIG_OFFSET]);
    let (rr, ss) = sig.split_bytes();
    for (i, v) in rr.iter().rev().enumerate() {
        b[SIG_OFFSET + i] = *v;
    }
    for (i, v) in ss.iter().rev().enumerate() {
        b[SIG_OFFSET + 72 + i] = *v;
    }
    b
}

fn evidence(report: &[u8], vek: &[u8], ask: Option<&[u8]>, ark: Option<&[u8]>) -> Evidence {
    Evidence::Snp {
        report: B64.encode(report),
        vcek: B64.encode(vek),
        ask: ask.map(|a| B64.encode(a)),
        ark: ark.map(|a| B64.encode(a)),
    }
}

fn good(r: &R) -> Evidence {
    evidence(&report(r, &PKI.vcek_key), &PKI.vcek, Some(&PKI.ask), Some(&PKI.ark))
}

fn check(e: &Evidence) -> Result<cgs_attestation::VerifiedEvidence, VerifyError> {
    verify_with_anchors(e, &VerifyPolicy::default(), &anchors(), now())
}

#[test]
fn generated_report_verifies_with_the_injected_root() {
    let r = R::default();
    let v = check(&good(&r)).unwrap();
    assert!(!v.insecure());
    let s = v.snp.as_ref().unwrap();
    assert_eq!((s.generation, s.signing_key, s.version, s.vmpl), (Generation::Milan, SigningKey::Vcek, 3, 0));
    assert_eq!(s.reported_tcb, TCB);
    assert_eq!(s.chip_id, CHIP);
    assert_eq!(
        (v.claims.measurement, v.claims.host_data, v.claims.report_data),
        (r.measurement, r.host_data, r.report_data)
    );
    let flat = v.flat_claims();
    for (k, want) in [
        ("x-ms-attestation-type", "sevsnpvm".to_string()),
        ("x-ms-sevsnpvm-hostdata", "48".repeat(32)),
        ("x-ms-sevsnpvm-launchmeasurement", "4d".repeat(48)),
        ("x-ms-sevsnpvm-reportdata", "52".repeat(64)),
        ("x-ms-sevsnpvm-is-debuggable", "false".into()),
        ("x-ms-sevsnpvm-vmpl", "0".into()),
        ("x-ms-sevsnpvm-guestsvn", "0".into()),
        ("x-ms-sevsnpvm-bootloader-svn", "4".into()),
        ("x-ms-sevsnpvm-tee-svn", "0".into()),
        ("x-ms-sevsnpvm-snpfw-svn", "24".into()),
        ("x-ms-sevsnpvm-microcode-svn", "219".into()),
        ("x-ms-sevsnpvm-idkeydigest", "00".repeat(48)),
        ("x-ms-sevsnpvm-familyid", "00".repeat(16)),
        ("x-ms-sevsnpvm-imageid", "00".repeat(16)),
        ("x-ms-sevsnpvm-is-virtual", "false".into()),
    ] {
        assert!(flat.contains(&(k.to_string(), want.clone())), "{k}={want} not in {flat:?}");
    }
    // The chain from the anchors when the evidence carries none.
    let e = evidence(&report(&r, &PKI.vcek_key), &PKI.vcek, None, None);
    check(&e).unwrap();
    // A v2 report (no CPUID): the generation comes from the VCEK productName.
    check(&good(&R { version: 2, ..R::default() })).unwrap();
    // Allow-lists that contain the values pass.
    let p = VerifyPolicy {
        measurements: Some(vec![[1; 48], r.measurement]),
        host_data: Some(vec![r.host_data]),
        report_data: Some(vec![r.report_data]),
        ..VerifyPolicy::default()
    };
    verify_with_anchors(&good(&r), &p, &anchors(), now()).unwrap();
}

#[test]
fn generated_chain_is_not_amds() {
    let err = verify(&good(&R::default()), &VerifyPolicy::default(), now()).unwrap_err();
    assert!(matches!(err, VerifyError::RootNotPinned { cert: "ARK", generation: Generation::Milan }), "{err}");
    let e = evidence(&report(&R::default(), &PKI.vcek_key), &PKI.vcek, None, None);
    let err = verify(&e, &VerifyPolicy::default(), now()).unwrap_err();
    assert!(matches!(err, VerifyError::CertChain(_)), "{err}");
    // A foreign root presented to the test anchors.
    let e = evidence(&report(&R::default(), &PKI.vcek_key), &PKI.vcek, Some(&PKI.ask), Some(&PKI.asvk));
    let err = check(&e).unwrap_err();
    assert!(matches!(err, VerifyError::RootNotPinned { cert: "ARK", .. }), "{err}");
}

#[test]
fn generated_flipped_bytes_fail() {
    let raw = report(&R::default(), &PKI.vcek_key);
    for off in [0x90, 0xC0, 0x50, 0x186, SIG_OFFSET, SIG_OFFSET + 72] {
        let mut b = raw.clone();
        b[off] ^= 0x80;
        let err = check(&evidence(&b, &PKI.vcek, None, None)).unwrap_err();
        assert!(matches!(err, VerifyError::ReportSignature(_)), "offset {off:#x}: {err}");
    }
    let mut b = raw.clone();
    b[SIG_OFFSET + 0x3C] = 1;
    assert!(matches!(check(&evidence(&b, &PKI.vcek, None, None)), Err(VerifyError::NonCanonicalSignature)));
    // Signed by another key.
    let other = p384::ecdsa::SigningKey::random(&mut StdRng::seed_from_u64(7));
    let err = check(&evidence(&report(&R::default(), &other), &PKI.vcek, None, None)).unwrap_err();
    assert!(matches!(err, VerifyError::ReportSignature(_)), "{err}");
}

#[test]
fn generated_debug_and_migration_policies_fail() {
    let err = check(&good(&R { policy: 0x30000 | 1 << 19, ..R::default() })).unwrap_err();
    assert!(matches!(err, VerifyError::DebugAllowed), "{err}");
    let err = check(&good(&R { policy: 0x30000 | 1 << 18, ..R::default() })).unwrap_err();
    assert!(matches!(err, VerifyError::MigrationAgentAllowed), "{err}");
    let err = check(&good(&R { vmpl: 2, ..R::default() })).unwrap_err();
    assert!(matches!(err, VerifyError::Vmpl { expected: 0, reported: 2 }), "{err}");
}

#[test]
fn generated_wrong_chip_id_and_tcb_binding_fail() {
    // The VCEK key signs a report for another chip than its certificate names.
    let e = evidence(&report(&R::default(), &PKI.vcek_key), &PKI.vcek_other_chip, None, None);
    let err = check(&e).unwrap_err();
    assert!(matches!(err, VerifyError::ChipIdMismatch(_)), "{err}");
    let err = check(&good(&R { chip: [3; 64], ..R::default() })).unwrap_err();
    assert!(matches!(err, VerifyError::ChipIdMismatch(_)), "{err}");
    // reported_tcb differs from the VCEK's TCB extensions.
    let err = check(&good(&R { tcb: Tcb::new(4, 0, 25, 219), ..R::default() })).unwrap_err();
    assert!(matches!(err, VerifyError::TcbMismatch { component: "snp", cert: Some(24), report: Some(25) }), "{err}");
}

#[test]
fn generated_minimum_tcb_is_component_wise() {
    let e = good(&R::default()); // bl4 tee0 snp24 uc219
    let with_min = |min: Tcb| {
        let mut p = VerifyPolicy::default();
        p.min_tcb.insert(Generation::Milan, min);
        verify_with_anchors(&e, &p, &anchors(), now())
    };
    with_min(TCB).unwrap();
    with_min(Tcb::new(1, 0, 1, 1)).unwrap();
    // As a u64 (bl in the low byte) 5/0/0/0 < 4/0/24/219, but bootloader 4 < 5.
    let err = with_min(Tcb::new(5, 0, 0, 0)).unwrap_err();
    assert!(matches!(err, VerifyError::TcbBelowMinimum { component: "bootloader", reported: 4, minimum: 5, .. }));
    let err = with_min(Tcb::new(0, 0, 0, 220)).unwrap_err();
    assert!(matches!(err, VerifyError::TcbBelowMinimum { component: "microcode", .. }), "{err}");
}

#[test]
fn generated_report_format_checks() {
    let err = check(&good(&R { version: 6, ..R::default() })).unwrap_err();
    assert!(matches!(err, VerifyError::ReportVersion(6)), "{err}");
    let err = check(&good(&R { sig_algo: 2, ..R::default() })).unwrap_err();
    assert!(matches!(err, VerifyError::SignatureAlgorithm(2)), "{err}");
    let err = check(&good(&R { key_info: 7 << 2, ..R::default() })).unwrap_err();
    assert!(matches!(err, VerifyError::SigningKeyUnsupported(7)), "{err}");
    // CPUID says Genoa, the VCEK says Milan.
    let err = check(&good(&R { cpuid: (0x19, 0x11, 0x01), ..R::default() })).unwrap_err();
    assert!(matches!(err, VerifyError::GenerationMismatch { cert: Generation::Milan, report: Generation::Genoa }));
    // CPUID of no SNP generation.
    let err = check(&good(&R { cpuid: (0x17, 0x31, 0x00), ..R::default() })).unwrap_err();
    assert!(matches!(err, VerifyError::ReportParse(_) | VerifyError::UnknownGeneration(_)), "{err}");
    // No anchors for the generation.
    let empty = TrustAnchors { generations: vec![] };
    let err = verify_with_anchors(&good(&R::default()), &VerifyPolicy::default(), &empty, now()).unwrap_err();
    assert!(matches!(err, VerifyError::NoTrustAnchor { generation: Generation::Milan, .. }), "{err}");
}

#[test]
fn generated_validity_dates() {
    let e = evidence(&report(&R::default(), &PKI.vcek_key), &PKI.vcek_expired, None, None);
    let err = check(&e).unwrap_err();
    assert!(matches!(err, VerifyError::CertExpired { cert: "VCEK", .. }), "{err}");
    let before = UNIX_EPOCH + Duration::from_secs(1_748_736_000); // 2025-06-01
    verify_with_anchors(&e, &VerifyPolicy::default(), &anchors(), before).unwrap();
    let early = UNIX_EPOCH + Duration::from_secs(1_640_995_200); // 2022-01-01
    let err = verify_with_anchors(&good(&R::default()), &VerifyPolicy::default(), &anchors(), early).unwrap_err();
    assert!(matches!(err, VerifyError::CertNotYetValid { cert: "ARK", .. }), "{err}");
}

#[test]
fn generated_vlek_chain() {
    let r = R { key_info: 1 << 2, chip: [0; 64], ..R::default() };
    let raw = report(&r, &PKI.vlek_key);
    let v = check(&evidence(&raw, &PKI.vlek, Some(&PKI.asvk), None)).unwrap();
    let s = v.snp.unwrap();
    assert_eq!((s.signing_key, s.csp_id.as_deref()), (SigningKey::Vlek, Some("CN=csp.example")));
    // The ASK is not the ASVK.
    let err = check(&evidence(&raw, &PKI.vlek, Some(&PKI.ask), None)).unwrap_err();
    assert!(matches!(err, VerifyError::RootNotPinned { cert: "ASVK", .. }), "{err}");
    // No ASVK supplied and none built in.
    let err = check(&evidence(&raw, &PKI.vlek, None, None)).unwrap_err();
    assert!(matches!(err, VerifyError::MissingCertificate { cert: "ASVK" }), "{err}");
    // A VLEK-signed report presented with the VCEK: the ASK does not sign... the VCEK is fine,
    // but key_info says VLEK, so the chain goes through the ASVK and fails.
    let err = check(&evidence(&raw, &PKI.vcek, Some(&PKI.asvk), None)).unwrap_err();
    assert!(matches!(err, VerifyError::CertChain(_)), "{err}");
    // cspID allow-list.
    let p = VerifyPolicy { vlek_csp_ids: Some(vec!["CN=other".into()]), ..VerifyPolicy::default() };
    let err =
        verify_with_anchors(&evidence(&raw, &PKI.vlek, Some(&PKI.asvk), None), &p, &anchors(), now()).unwrap_err();
    assert!(matches!(err, VerifyError::VlekCspNotAllowed(Some(_))), "{err}");
}

#[test]
fn virtual_evidence_is_refused_unless_allowed_and_then_insecure() {
    let e =
        Evidence::Virtual { measurement: "ab".repeat(48), host_data: "cd".repeat(32), report_data: "00".repeat(64) };
    let err = verify(&e, &VerifyPolicy::default(), now()).unwrap_err();
    assert!(matches!(err, VerifyError::VirtualNotAllowed), "{err}");
    assert!(err.to_string().contains("virtual"));
    let allow = VerifyPolicy { allow_virtual: true, ..VerifyPolicy::default() };
    let v = verify(&e, &allow, now()).unwrap();
    assert!(v.insecure());
    assert!(v.snp.is_none());
    let flat = v.flat_claims();
    for (k, want) in [
        ("x-ms-attestation-type", "sevsnpvm".to_string()),
        ("x-ms-sevsnpvm-is-virtual", "true".into()),
        ("x-ms-sevsnpvm-launchmeasurement", "ab".repeat(48)),
        ("x-ms-sevsnpvm-hostdata", "cd".repeat(32)),
        ("x-ms-sevsnpvm-reportdata", "00".repeat(64)),
    ] {
        assert!(flat.contains(&(k.to_string(), want.clone())), "{k}={want} not in {flat:?}");
    }
    // Identity allow-lists apply to virtual evidence too.
    let p = VerifyPolicy { host_data: Some(vec![[0; 32]]), ..allow.clone() };
    assert!(matches!(verify(&e, &p, now()), Err(VerifyError::HostDataNotAllowed(_))));
    // Malformed virtual evidence is a shape error.
    let bad = Evidence::Virtual { measurement: "ab".into(), host_data: "cd".repeat(32), report_data: "00".repeat(64) };
    assert!(matches!(verify(&bad, &allow, now()), Err(VerifyError::Shape(_))));
}
