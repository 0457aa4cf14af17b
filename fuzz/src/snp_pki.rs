//! The SEV-SNP test PKI of `attestation/tests/generated.rs`, made deterministic from a fixed
//! seed: an RSA-PSS/SHA-384 ARK → ASK (and ASVK) chain like AMD's, a P-384 VCEK (and VLEK) with
//! AMD's extensions, and reports signed with those keys. Verified with injected trust anchors.

use std::str::FromStr as _;
use std::sync::LazyLock;
use std::time::Duration;

use cgs_attestation::{Generation, GenerationAnchors, Pin, Tcb, TrustAnchors, snp::SIG_OFFSET};
use p384::ecdsa::signature::Signer as _;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use rsa::pkcs8::EncodePublicKey as _;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
use sha2::Sha384;
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

/// The TCB of the test VCEK / VLEK.
pub const TCB: Tcb = Tcb::new(4, 0, 24, 219);
/// The chip id of the test VCEK.
pub const CHIP: [u8; 64] = {
    let mut c = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        c[i] = (i as u8).wrapping_mul(37).wrapping_add(11);
        i += 1;
    }
    c
};

pub struct Pki {
    pub ark: Vec<u8>,
    pub ask: Vec<u8>,
    pub asvk: Vec<u8>,
    pub vcek: Vec<u8>,
    pub vcek_key: p384::ecdsa::SigningKey,
    pub vlek: Vec<u8>,
    pub vlek_key: p384::ecdsa::SigningKey,
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

#[allow(clippy::too_many_arguments)]
fn cert(
    serial: u8,
    issuer: &str,
    subject: &str,
    spki_der: &[u8],
    issuer_key: &RsaSigner,
    extensions: Option<Vec<Extension>>,
    rng: &mut StdRng,
) -> Vec<u8> {
    let alg = issuer_key.signature_algorithm_identifier().unwrap();
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[serial]).unwrap(),
        signature: alg.clone(),
        issuer: Name::from_str(issuer).unwrap(),
        validity: Validity { not_before: time(NOT_BEFORE), not_after: time(NOT_AFTER) },
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

fn vek_extensions(product: &str, hwid: Option<&[u8]>, csp: Option<&str>) -> Vec<Extension> {
    let mut e = vec![
        amd_ext("1.3.6.1.4.1.3704.1.2", Ia5String::new(product).unwrap().to_der().unwrap()),
        amd_ext("1.3.6.1.4.1.3704.1.3.1", u32::from(TCB.bootloader).to_der().unwrap()),
        amd_ext("1.3.6.1.4.1.3704.1.3.2", u32::from(TCB.tee).to_der().unwrap()),
        amd_ext("1.3.6.1.4.1.3704.1.3.3", u32::from(TCB.snp).to_der().unwrap()),
        amd_ext("1.3.6.1.4.1.3704.1.3.8", u32::from(TCB.microcode).to_der().unwrap()),
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

/// The PKI. Generating it costs seconds in an instrumented build (three RSA keys), so the
/// targets load the copy in `snp_pki.bin`, which `seed --write-pki src/snp_pki.bin` writes from
/// [`generate`] (the same bytes every time); they fall back to generating it if that file does
/// not decode.
pub static PKI: LazyLock<Pki> =
    LazyLock::new(|| Pki::from_bytes(include_bytes!("snp_pki.bin")).unwrap_or_else(generate));

impl Pki {
    /// Length-prefixed (u32 BE) DER certificates and P-384 scalars.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let vcek_key = self.vcek_key.to_bytes().to_vec();
        let vlek_key = self.vlek_key.to_bytes().to_vec();
        for part in [&self.ark, &self.ask, &self.asvk, &self.vcek, &vcek_key, &self.vlek, &vlek_key] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    pub fn from_bytes(mut b: &[u8]) -> Option<Self> {
        let mut parts = Vec::new();
        while b.len() >= 4 {
            let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let part = b.get(4..4 + n)?;
            parts.push(part.to_vec());
            b = &b[4 + n..];
        }
        let [ark, ask, asvk, vcek, vcek_key, vlek, vlek_key]: [Vec<u8>; 7] = parts.try_into().ok()?;
        Some(Pki {
            ark,
            ask,
            asvk,
            vcek,
            vcek_key: p384::ecdsa::SigningKey::from_slice(&vcek_key).ok()?,
            vlek,
            vlek_key: p384::ecdsa::SigningKey::from_slice(&vlek_key).ok()?,
        })
    }
}

/// Generate the PKI from a fixed seed (as `attestation/tests/generated.rs`, deterministically).
pub fn generate() -> Pki {
    let mut rng = StdRng::seed_from_u64(0x5e5_0a11);
    let rsa_key = |rng: &mut StdRng| rsa::RsaPrivateKey::new(rng, 2048).unwrap();
    let (ark_key, ask_key, asvk_key) = (rsa_key(&mut rng), rsa_key(&mut rng), rsa_key(&mut rng));
    let spki = |k: &rsa::RsaPrivateKey| k.to_public_key().to_public_key_der().unwrap().as_bytes().to_vec();
    let (ark_spki, ask_spki, asvk_spki) = (spki(&ark_key), spki(&ask_key), spki(&asvk_key));
    let ark_signer = RsaSigner::new(ark_key);
    let ask_signer = RsaSigner::new(ask_key);
    let asvk_signer = RsaSigner::new(asvk_key);
    let ark = cert(1, ARK_NAME, ARK_NAME, &ark_spki, &ark_signer, None, &mut rng);
    let ask = cert(2, ARK_NAME, ASK_NAME, &ask_spki, &ark_signer, None, &mut rng);
    let asvk = cert(3, ARK_NAME, ASVK_NAME, &asvk_spki, &ark_signer, None, &mut rng);
    let vcek_key = p384::ecdsa::SigningKey::random(&mut rng);
    let vcek_spki = vcek_key.verifying_key().to_public_key_der().unwrap().as_bytes().to_vec();
    let vcek = cert(
        4,
        ASK_NAME,
        "CN=SEV-VCEK",
        &vcek_spki,
        &ask_signer,
        Some(vek_extensions("Milan-B0", Some(&CHIP), None)),
        &mut rng,
    );
    let vlek_key = p384::ecdsa::SigningKey::random(&mut rng);
    let vlek_spki = vlek_key.verifying_key().to_public_key_der().unwrap().as_bytes().to_vec();
    let vlek = cert(
        7,
        ASVK_NAME,
        "CN=SEV-VLEK",
        &vlek_spki,
        &asvk_signer,
        Some(vek_extensions("Milan", None, Some("CN=csp.example"))),
        &mut rng,
    );
    Pki { ark, ask, asvk, vcek, vcek_key, vlek, vlek_key }
}

/// Trust anchors that pin the test ARK / ASK / ASVK for Milan.
pub fn anchors() -> TrustAnchors {
    let p = &*PKI;
    TrustAnchors {
        generations: vec![GenerationAnchors {
            generation: Generation::Milan,
            ark: Pin::of_cert_der(&p.ark).unwrap(),
            ask: Pin::of_cert_der(&p.ask).unwrap(),
            asvk: Some(Pin::of_cert_der(&p.asvk).unwrap()),
            ark_der: Some(p.ark.clone()),
            ask_der: Some(p.ask.clone()),
            asvk_der: Some(p.asvk.clone()),
        }],
    }
}

/// (Re-)sign `raw[..0x2A0]` in place: ECDSA P-384/SHA-384, r and s little-endian in 72-byte
/// fields, the rest of the signature block zero.
pub fn sign_report(raw: &mut [u8], key: &p384::ecdsa::SigningKey) {
    let sig: p384::ecdsa::Signature = key.sign(&raw[..SIG_OFFSET]);
    let (rr, ss) = sig.split_bytes();
    raw[SIG_OFFSET..].fill(0);
    for (i, v) in rr.iter().rev().enumerate() {
        raw[SIG_OFFSET + i] = *v;
    }
    for (i, v) in ss.iter().rev().enumerate() {
        raw[SIG_OFFSET + 72 + i] = *v;
    }
}

/// A valid Milan report (version 3, VMPL 0, no DEBUG) for the test VCEK (`vlek`: for the VLEK).
pub fn report(vlek: bool, report_data: [u8; 64]) -> Vec<u8> {
    let tcb = [TCB.bootloader, TCB.tee, 0, 0, 0, 0, TCB.snp, TCB.microcode];
    let mut b = vec![0u8; 1184];
    b[0..4].copy_from_slice(&3u32.to_le_bytes());
    b[8..16].copy_from_slice(&0x30000u64.to_le_bytes());
    b[0x34..0x38].copy_from_slice(&1u32.to_le_bytes());
    for off in [0x38, 0x180, 0x1E0, 0x1F0] {
        b[off..off + 8].copy_from_slice(&tcb);
    }
    b[0x40] = 1;
    b[0x48..0x4C].copy_from_slice(&(if vlek { 4u32 } else { 0 }).to_le_bytes());
    b[0x50..0x90].copy_from_slice(&report_data);
    b[0x90..0xC0].copy_from_slice(&[0x4d; 48]);
    b[0xC0..0xE0].copy_from_slice(&[0x48; 32]);
    b[0x188] = 0x19;
    b[0x189] = 0x01;
    b[0x18A] = 0x01;
    if !vlek {
        b[0x1A0..0x1E0].copy_from_slice(&CHIP);
    }
    b[0x1E8..0x1EB].copy_from_slice(&[4, 55, 1]);
    b[0x1EC..0x1EF].copy_from_slice(&[4, 55, 1]);
    let key = if vlek { &PKI.vlek_key } else { &PKI.vcek_key };
    sign_report(&mut b, key);
    b
}
