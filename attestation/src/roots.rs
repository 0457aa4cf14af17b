//! Pinned AMD roots of trust for SEV-SNP: the ARK, ASK and ASVK of each supported processor
//! generation, identified by SHA-256 fingerprints compiled into this crate.
//!
//! The verifier never trusts a root that the attester sends: a supplied ARK/ASK/ASVK is accepted
//! only when its DER certificate or its SubjectPublicKeyInfo hashes to a pin below. When the
//! evidence omits them, the ARK and ASK come from the certificates built into the `sev` crate
//! (checked against the same pins); there is no built-in ASVK, so VLEK evidence must carry its
//! ASVK in the `ask` field.
//!
//! Fingerprints (from AMD's public KDS certificates; see `../shared/reference/sev-snp.md` §4):
//! Milan/Genoa/Turin ARK and ASK are the `sev` 8.0.0 built-ins; the ASVKs are AMD's
//! `SEV-VLEK-{Milan,Genoa,Turin}` certificates (each checked to be signed by its ARK).

use sha2::{Digest, Sha256};
use std::fmt;
use x509_cert::der::{Decode, Encode};

/// An AMD EPYC processor generation with SEV-SNP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Generation {
    /// 3rd gen EPYC (family 0x19, models 0x00-0x0F).
    Milan,
    /// 4th gen EPYC (family 0x19, models 0x10-0x1F, 0xA0-0xAF).
    Genoa,
    /// 5th gen EPYC (family 0x1A, models 0x00-0x11).
    Turin,
}

impl Generation {
    /// All generations this crate has pins for.
    pub const ALL: [Generation; 3] = [Generation::Milan, Generation::Genoa, Generation::Turin];

    /// The generation from the report's CPUID family and model (report version 3 and later).
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Generation::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Generation::Genoa),
            (0x1A, 0x00..=0x11) => Some(Generation::Turin),
            _ => None,
        }
    }

    /// The generation from a VCEK/VLEK `productName` extension ("Milan-B0", "Genoa", "Turin"...).
    pub fn from_product_name(name: &str) -> Option<Self> {
        let base = name.split('-').next().unwrap_or(name);
        match base {
            "Milan" => Some(Generation::Milan),
            "Genoa" => Some(Generation::Genoa),
            "Turin" => Some(Generation::Turin),
            _ => None,
        }
    }

    /// Lowercase name ("milan", "genoa", "turin").
    pub fn as_str(self) -> &'static str {
        match self {
            Generation::Milan => "milan",
            Generation::Genoa => "genoa",
            Generation::Turin => "turin",
        }
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A certificate pin: SHA-256 of the DER certificate and of its SubjectPublicKeyInfo DER.
/// A certificate matches when either hash matches (the key pin survives a re-issue by AMD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// SHA-256 of the whole DER certificate.
    pub der_sha256: [u8; 32],
    /// SHA-256 of the DER SubjectPublicKeyInfo.
    pub spki_sha256: [u8; 32],
}

impl Pin {
    /// The pin of a DER certificate.
    pub fn of_cert_der(der: &[u8]) -> Result<Pin, String> {
        let cert = x509_cert::Certificate::from_der(der).map_err(|e| format!("not a DER certificate: {e}"))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| format!("cannot encode the public key: {e}"))?;
        Ok(Pin { der_sha256: Sha256::digest(der).into(), spki_sha256: Sha256::digest(&spki).into() })
    }

    /// Whether a DER certificate matches this pin.
    pub fn matches(&self, der: &[u8]) -> bool {
        match Pin::of_cert_der(der) {
            Ok(p) => p.der_sha256 == self.der_sha256 || p.spki_sha256 == self.spki_sha256,
            Err(_) => false,
        }
    }
}

const fn h(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    assert!(b.len() == 64, "a SHA-256 pin is 64 hex digits");
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nib(b[2 * i]) << 4) | nib(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nib(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("pins are lowercase hex"),
    }
}

const fn pin(der: &str, spki: &str) -> Pin {
    Pin { der_sha256: h(der), spki_sha256: h(spki) }
}

/// Milan ARK (`ARK-Milan`, serial 0x10000, 2020-10-22 → 2045-10-22).
pub const MILAN_ARK: Pin = pin(
    "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    "9f056bee44377e29308cb5ffa895bdfb62d18881fa6bed8d6f075b0204089cb9",
);
/// Milan ASK (`SEV-Milan`, serial 0x10001, 2020-10-22 → 2045-10-22).
pub const MILAN_ASK: Pin = pin(
    "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
    "42491669ccb851d627ea9846cd24eccbeb7de7c2a62740120fff88001d38ebb6",
);
/// Milan ASVK (`SEV-VLEK-Milan`, serial 0x10101, 2022-11-16 → 2047-11-16).
pub const MILAN_ASVK: Pin = pin(
    "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
    "66450a123ea5876206df67f2514a4fea224c0f63b18313423078b0edc4535e33",
);
/// Genoa ARK (`ARK-Genoa`, serial 0x20000, 2022-01-26 → 2047-01-26).
pub const GENOA_ARK: Pin = pin(
    "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    "429a69c9422aa258ee4d8db5fcda9c6470ef15f8cd5a9cebd6cbc7d90b863831",
);
/// Genoa ASK (`SEV-Genoa`, serial 0x20002, 2022-10-31 → 2047-10-31).
pub const GENOA_ASK: Pin = pin(
    "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
    "0324d55bcd48ba877a8fd87c0e1b4934dec8448e3807a24384a34dc6a6c9ebb8",
);
/// Genoa ASVK (`SEV-VLEK-Genoa`, serial 0x20101, 2022-11-18 → 2047-11-18).
pub const GENOA_ASVK: Pin = pin(
    "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
    "7d1633252ebbadaa75f96e9b4e6f7d43a90ceb3f843937482630f8da2459264e",
);
/// Turin ARK (`ARK-Turin`, serial 0x30000, 2023-05-15 → 2048-05-15).
pub const TURIN_ARK: Pin = pin(
    "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    "4f125410563a2ab9a50356f9243f6fe0b6f73de98603f53f90339c70e9d7ad08",
);
/// Turin ASK (`SEV-Turin`, serial 0x30001, 2023-05-15 → 2048-05-15).
pub const TURIN_ASK: Pin = pin(
    "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
    "0000ead352025f208bf55297c4192c34cd1b878002107366d8f2065a9ae7d3a9",
);
/// Turin ASVK (`SEV-VLEK-Turin`, serial 0x30101, 2023-05-15 → 2048-05-15).
pub const TURIN_ASVK: Pin = pin(
    "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c",
    "bfc441408b2f806c5dbf180bd8920e6e60dd404d82141780d85dbf962954d386",
);

/// The roots of one generation: pins, plus certificates to use when the evidence omits them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationAnchors {
    /// The generation.
    pub generation: Generation,
    /// Pin of the ARK (root, self-signed).
    pub ark: Pin,
    /// Pin of the ASK (signs VCEKs).
    pub ask: Pin,
    /// Pin of the ASVK (signs VLEKs), if VLEKs are accepted for this generation.
    pub asvk: Option<Pin>,
    /// DER ARK used when the evidence has none (must match `ark`).
    pub ark_der: Option<Vec<u8>>,
    /// DER ASK used when VCEK evidence has none (must match `ask`).
    pub ask_der: Option<Vec<u8>>,
    /// DER ASVK used when VLEK evidence has none (must match `asvk`).
    pub asvk_der: Option<Vec<u8>>,
}

/// The set of trusted roots. [`TrustAnchors::amd`] is the production set; tests inject their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustAnchors {
    /// One entry per accepted generation.
    pub generations: Vec<GenerationAnchors>,
}

fn builtin_der(pem: &[u8], pin: &Pin) -> Option<Vec<u8>> {
    let der = sev::certs::snp::Certificate::from_pem(pem).ok()?.to_der().ok()?;
    // Only use a built-in certificate that matches our own pin.
    pin.matches(&der).then_some(der)
}

impl TrustAnchors {
    /// AMD's production roots for Milan, Genoa and Turin (ARK/ASK from `sev`'s built-ins,
    /// checked against the pins; ASVK by pin only).
    pub fn amd() -> Self {
        use sev::certs::snp::builtin::{genoa, milan, turin};
        let g = |generation, ark: Pin, ask: Pin, asvk: Pin, ark_pem: &[u8], ask_pem: &[u8]| GenerationAnchors {
            generation,
            ark,
            ask,
            asvk: Some(asvk),
            ark_der: builtin_der(ark_pem, &ark),
            ask_der: builtin_der(ask_pem, &ask),
            asvk_der: None,
        };
        TrustAnchors {
            generations: vec![
                g(Generation::Milan, MILAN_ARK, MILAN_ASK, MILAN_ASVK, milan::ARK, milan::ASK),
                g(Generation::Genoa, GENOA_ARK, GENOA_ASK, GENOA_ASVK, genoa::ARK, genoa::ASK),
                g(Generation::Turin, TURIN_ARK, TURIN_ASK, TURIN_ASVK, turin::ARK, turin::ASK),
            ],
        }
    }

    /// The anchors of a generation.
    pub fn get(&self, generation: Generation) -> Option<&GenerationAnchors> {
        self.generations.iter().find(|g| g.generation == generation)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn sev_builtins_match_the_pins() {
        let amd = TrustAnchors::amd();
        for g in Generation::ALL {
            let a = amd.get(g).unwrap();
            assert!(a.ark_der.is_some(), "{g} ARK built-in does not match its pin");
            assert!(a.ask_der.is_some(), "{g} ASK built-in does not match its pin");
            let ark = Pin::of_cert_der(a.ark_der.as_ref().unwrap()).unwrap();
            assert_eq!(ark, a.ark, "{g} ARK: both DER and SPKI hashes");
            let ask = Pin::of_cert_der(a.ask_der.as_ref().unwrap()).unwrap();
            assert_eq!(ask, a.ask, "{g} ASK: both DER and SPKI hashes");
            assert_ne!(a.ark, a.ask);
        }
    }

    #[test]
    fn generation_from_cpuid_and_product_name() {
        assert_eq!(Generation::from_cpuid(0x19, 0x01), Some(Generation::Milan));
        assert_eq!(Generation::from_cpuid(0x19, 0x11), Some(Generation::Genoa));
        assert_eq!(Generation::from_cpuid(0x1A, 0x02), Some(Generation::Turin));
        assert_eq!(Generation::from_cpuid(0x17, 0x31), None);
        assert_eq!(Generation::from_product_name("Milan-B0"), Some(Generation::Milan));
        assert_eq!(Generation::from_product_name("Genoa"), Some(Generation::Genoa));
        assert_eq!(Generation::from_product_name("Rome"), None);
    }
}
