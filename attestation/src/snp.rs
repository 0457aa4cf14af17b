//! SEV-SNP report verification: the `sev` crate checks the signatures (ARK → ASK/ASVK →
//! VCEK/VLEK → report); everything it does not check is done here (`../shared/reference/sev-snp.md`
//! §3 and the §7 checklist): root pinning, certificate validity, VCEK↔report binding, report
//! version / signature algorithm / canonical signature, guest policy, minimum TCB, identity values.

use crate::policy::{Tcb, VerifyPolicy};
use crate::roots::{Generation, GenerationAnchors, Pin, TrustAnchors};
use crate::verify::VerifyError;
use crate::{EvidenceClaims, SNP_REPORT_LEN};
use sev::certs::snp::{Certificate, Chain, Verifiable, ca};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use sha2::{Digest, Sha256};
use std::time::SystemTime;
use x509_cert::der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use x509_cert::der::{DateTime, Decode};

/// Start of the signature block; the signed range is `[0, SIG_OFFSET)`.
pub const SIG_OFFSET: usize = 0x2A0;

const OID_PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
const OID_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
const OID_TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
const OID_SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
const OID_UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
const OID_FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
const OID_HWID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
const OID_CSP_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.5");

/// Which key signed the report (`key_info.signing_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key (per chip and TCB; chain ARK → ASK → VCEK).
    Vcek,
    /// Versioned Loaded Endorsement Key (per cloud provider; chain ARK → ASVK → VLEK).
    Vlek,
}

impl SigningKey {
    /// "vcek" / "vlek".
    pub fn as_str(self) -> &'static str {
        match self {
            SigningKey::Vcek => "vcek",
            SigningKey::Vlek => "vlek",
        }
    }
}

/// The verified content of an SEV-SNP report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpClaims {
    /// Processor generation (from the VEK's productName and/or CPUID).
    pub generation: Generation,
    /// VCEK or VLEK.
    pub signing_key: SigningKey,
    /// VLEK cspID (e.g. `CN=cc-us-east-2.amazonaws.com`), for VLEK reports.
    pub csp_id: Option<String>,
    /// Report format version (2..=5).
    pub version: u32,
    /// Guest SVN.
    pub guest_svn: u32,
    /// Raw guest policy.
    pub policy: u64,
    /// Whether the guest policy allows debugging.
    pub debuggable: bool,
    /// Whether the guest policy allows a migration agent.
    pub migrate_ma: bool,
    /// VMPL that requested the report.
    pub vmpl: u32,
    /// Launch measurement.
    pub measurement: [u8; 48],
    /// Host data.
    pub host_data: [u8; 32],
    /// Report data.
    pub report_data: [u8; 64],
    /// ID key digest (ID block signer).
    pub id_key_digest: [u8; 48],
    /// Author key digest.
    pub author_key_digest: [u8; 48],
    /// Family ID (from the ID block).
    pub family_id: [u8; 16],
    /// Image ID (from the ID block).
    pub image_id: [u8; 16],
    /// Reported TCB (equal to the VEK's TCB extensions).
    pub reported_tcb: Tcb,
    /// Chip ID (all-zero for VLEK reports).
    pub chip_id: [u8; 64],
    /// SHA-256 of the signed part `[0, 0x2A0)` of the report: use this (not a hash of the raw
    /// blob, whose signature block is malleable) as a report identity or replay key.
    pub report_hash: [u8; 32],
}

impl SnpClaims {
    pub(crate) fn evidence_claims(&self) -> EvidenceClaims {
        EvidenceClaims {
            measurement: self.measurement,
            host_data: self.host_data,
            report_data: self.report_data,
            insecure: false,
        }
    }
}

fn fmt_time(t: SystemTime) -> String {
    DateTime::from_system_time(t).map_or_else(|_| format!("{t:?}"), |d| d.to_string())
}

fn ext(cert: &x509_cert::Certificate, oid: ObjectIdentifier) -> Option<&[u8]> {
    cert.tbs_certificate.extensions.as_ref()?.iter().find(|e| e.extn_id == oid).map(|e| e.extn_value.as_bytes())
}

fn ext_string(cert: &x509_cert::Certificate, oid: ObjectIdentifier) -> Option<String> {
    let v = ext(cert, oid)?;
    match AnyRef::from_der(v) {
        Ok(any) => Some(String::from_utf8_lossy(any.value()).into_owned()),
        Err(_) => Some(String::from_utf8_lossy(v).into_owned()),
    }
}

fn ext_spl(cert: &x509_cert::Certificate, oid: ObjectIdentifier) -> Option<u8> {
    let v = ext(cert, oid)?;
    u32::from_der(v).ok().and_then(|n| u8::try_from(n).ok())
}

fn ext_hwid(cert: &x509_cert::Certificate) -> Option<Vec<u8>> {
    let v = ext(cert, OID_HWID)?;
    Some(OctetStringRef::from_der(v).map_or_else(|_| v.to_vec(), |o| o.as_bytes().to_vec()))
}

fn check_validity(which: &'static str, cert: &x509_cert::Certificate, now: SystemTime) -> Result<(), VerifyError> {
    let v = &cert.tbs_certificate.validity;
    if now < v.not_before.to_system_time() {
        return Err(VerifyError::CertNotYetValid {
            cert: which,
            not_before: v.not_before.to_string(),
            now: fmt_time(now),
        });
    }
    if now > v.not_after.to_system_time() {
        return Err(VerifyError::CertExpired { cert: which, not_after: v.not_after.to_string(), now: fmt_time(now) });
    }
    Ok(())
}

/// The supplied certificate if it matches the pin, else the anchor's built-in one.
fn pinned_cert(
    which: &'static str,
    generation: Generation,
    supplied: Option<&[u8]>,
    pin: Option<&Pin>,
    builtin: Option<&Vec<u8>>,
) -> Result<Vec<u8>, VerifyError> {
    let Some(pin) = pin else {
        return Err(VerifyError::NoTrustAnchor { generation, cert: which });
    };
    match supplied {
        Some(der) if pin.matches(der) => Ok(der.to_vec()),
        Some(_) => Err(VerifyError::RootNotPinned { cert: which, generation }),
        None => builtin.cloned().ok_or(VerifyError::MissingCertificate { cert: which }),
    }
}

fn parse_cert(which: &'static str, der: &[u8]) -> Result<x509_cert::Certificate, VerifyError> {
    x509_cert::Certificate::from_der(der).map_err(|e| VerifyError::CertParse { cert: which, why: e.to_string() })
}

/// Require the unsigned signature block to be canonical: only the low 48 bytes of r and s may be
/// non-zero and the reserved tail is zero (the `crypto_nossl` path ignores the rest).
fn check_canonical_signature(raw: &[u8]) -> Result<(), VerifyError> {
    let sig = &raw[SIG_OFFSET..];
    let bad = sig[48..72].iter().chain(&sig[72 + 48..144]).chain(&sig[144..]).any(|b| *b != 0);
    if bad { Err(VerifyError::NonCanonicalSignature) } else { Ok(()) }
}

/// Verify a raw SEV-SNP report with its VEK (DER) and optional ASK/ASVK and ARK (DER).
pub fn verify_report(
    raw: &[u8],
    vek_der: &[u8],
    ask_der: Option<&[u8]>,
    ark_der: Option<&[u8]>,
    policy: &VerifyPolicy,
    anchors: &TrustAnchors,
    now: SystemTime,
) -> Result<SnpClaims, VerifyError> {
    // 1. Report format.
    if raw.len() != SNP_REPORT_LEN {
        return Err(VerifyError::ReportParse(format!("report is {} bytes; a report is {SNP_REPORT_LEN}", raw.len())));
    }
    let report = AttestationReport::from_bytes(raw).map_err(|e| VerifyError::ReportParse(e.to_string()))?;
    if !(2..=5).contains(&report.version) {
        return Err(VerifyError::ReportVersion(report.version));
    }
    if report.sig_algo != 1 {
        return Err(VerifyError::SignatureAlgorithm(report.sig_algo));
    }
    let reencoded = report.to_bytes().map_err(|e| VerifyError::ReportParse(e.to_string()))?;
    if reencoded.get(..SIG_OFFSET) != raw.get(..SIG_OFFSET) {
        return Err(VerifyError::ReportParse("the signed part does not re-encode to the same bytes".into()));
    }
    check_canonical_signature(raw)?;

    // 2. Which key, which generation.
    let vek = parse_cert("VEK", vek_der)?;
    let signing_key = match report.key_info.signing_key() {
        0 => SigningKey::Vcek,
        1 => SigningKey::Vlek,
        other => return Err(VerifyError::SigningKeyUnsupported(other)),
    };
    if signing_key == SigningKey::Vlek && !policy.allow_vlek {
        return Err(VerifyError::SigningKeyUnsupported(1));
    }
    let vek_name: &'static str = match signing_key {
        SigningKey::Vcek => "VCEK",
        SigningKey::Vlek => "VLEK",
    };
    let from_name = ext_string(&vek, OID_PRODUCT_NAME);
    let by_name = from_name.as_deref().map(|n| Generation::from_product_name(n).ok_or_else(|| n.to_string()));
    let by_cpuid = match (report.cpuid_fam_id, report.cpuid_mod_id) {
        (Some(f), Some(m)) => {
            Some(Generation::from_cpuid(f, m).ok_or_else(|| format!("CPUID family {f:#x} model {m:#x}")))
        }
        _ => None,
    };
    let generation = match (by_name, by_cpuid) {
        (Some(Err(n)), _) => return Err(VerifyError::UnknownGeneration(format!("{vek_name} productName {n:?}"))),
        (_, Some(Err(c))) => return Err(VerifyError::UnknownGeneration(c)),
        (Some(Ok(a)), Some(Ok(b))) if a != b => return Err(VerifyError::GenerationMismatch { cert: a, report: b }),
        (Some(Ok(g)), _) | (None, Some(Ok(g))) => g,
        (None, None) => {
            return Err(VerifyError::UnknownGeneration(format!(
                "no {vek_name} productName and no CPUID in a version {} report",
                report.version
            )));
        }
    };

    // 3. Pinned chain: ARK → ASK (VCEK) or ASVK (VLEK) → VEK → report.
    let anchor: &GenerationAnchors =
        anchors.get(generation).ok_or(VerifyError::NoTrustAnchor { generation, cert: "ARK" })?;
    let ark = pinned_cert("ARK", generation, ark_der, Some(&anchor.ark), anchor.ark_der.as_ref())?;
    let (mid_name, mid) = match signing_key {
        SigningKey::Vcek => {
            ("ASK", pinned_cert("ASK", generation, ask_der, Some(&anchor.ask), anchor.ask_der.as_ref())?)
        }
        SigningKey::Vlek => {
            ("ASVK", pinned_cert("ASVK", generation, ask_der, anchor.asvk.as_ref(), anchor.asvk_der.as_ref())?)
        }
    };
    let sev_cert = |which: &'static str, der: &[u8]| {
        Certificate::from_der(der).map_err(|e| VerifyError::CertParse { cert: which, why: e.to_string() })
    };
    let chain = Chain {
        ca: ca::Chain { ark: sev_cert("ARK", &ark)?, ask: sev_cert(mid_name, &mid)? },
        vek: sev_cert(vek_name, vek_der)?,
    };
    (&chain).verify().map_err(|e| VerifyError::CertChain(e.to_string()))?;
    (&chain.vek, &report).verify().map_err(|e| VerifyError::ReportSignature(e.to_string()))?;

    // 4. Validity dates at `now`.
    check_validity("ARK", &parse_cert("ARK", &ark)?, now)?;
    check_validity(mid_name, &parse_cert(mid_name, &mid)?, now)?;
    check_validity(vek_name, &vek, now)?;

    // 5. VEK ↔ report binding.
    let reported_tcb = Tcb::from(report.reported_tcb);
    let mut csp_id = None;
    match signing_key {
        SigningKey::Vcek => {
            let hwid = ext_hwid(&vek).ok_or(VerifyError::ChipIdMismatch("the VCEK has no hwID extension".into()))?;
            // Milan/Genoa hwID is the 64-byte chip_id; Turin's is the first 8 bytes of it.
            let ok = match hwid.len() {
                64 => hwid[..] == report.chip_id[..],
                8 => hwid[..] == report.chip_id[..8] && report.chip_id[8..].iter().all(|b| *b == 0),
                _ => false,
            };
            if !ok {
                return Err(VerifyError::ChipIdMismatch(format!(
                    "VCEK hwID {} != report chip_id {}",
                    hex::encode(&hwid),
                    hex::encode(report.chip_id)
                )));
            }
        }
        SigningKey::Vlek => {
            let csp = ext_string(&vek, OID_CSP_ID).ok_or(VerifyError::VlekCspNotAllowed(None))?;
            if let Some(allowed) = &policy.vlek_csp_ids
                && !allowed.contains(&csp)
            {
                return Err(VerifyError::VlekCspNotAllowed(Some(csp)));
            }
            csp_id = Some(csp);
        }
    }
    let spls = [
        ("bootloader", OID_BL_SPL, Some(reported_tcb.bootloader)),
        ("tee", OID_TEE_SPL, Some(reported_tcb.tee)),
        ("snp", OID_SNP_SPL, Some(reported_tcb.snp)),
        ("microcode", OID_UCODE_SPL, Some(reported_tcb.microcode)),
    ];
    for (component, oid, reported) in spls {
        let cert = ext_spl(&vek, oid);
        if cert.is_none() || cert != reported {
            return Err(VerifyError::TcbMismatch { component, cert, report: reported });
        }
    }
    let cert_fmc = ext_spl(&vek, OID_FMC_SPL);
    if (generation == Generation::Turin || cert_fmc.is_some()) && cert_fmc != reported_tcb.fmc {
        return Err(VerifyError::TcbMismatch { component: "fmc", cert: cert_fmc, report: reported_tcb.fmc });
    }

    // 6. Guest policy, VMPL, ABI, TCB, SVN.
    if report.policy.debug_allowed() && !policy.allow_debug {
        return Err(VerifyError::DebugAllowed);
    }
    if report.policy.migrate_ma_allowed() && !policy.allow_migration_agent {
        return Err(VerifyError::MigrationAgentAllowed);
    }
    if let Some(want) = policy.vmpl
        && report.vmpl != want
    {
        return Err(VerifyError::Vmpl { expected: want, reported: report.vmpl });
    }
    if let Some(min) = policy.min_abi {
        let got = (report.policy.abi_major() as u8, report.policy.abi_minor() as u8);
        if got < min {
            return Err(VerifyError::AbiTooOld { minimum: min, reported: got });
        }
    }
    if let Some(min) = policy.min_tcb.get(&generation)
        && let Some((component, reported, minimum)) = reported_tcb.first_below(min)
    {
        return Err(VerifyError::TcbBelowMinimum { generation, component, reported, minimum });
    }
    if let Some(min) = policy.min_guest_svn
        && report.guest_svn < min
    {
        return Err(VerifyError::GuestSvnTooLow { minimum: min, reported: report.guest_svn });
    }

    let claims = SnpClaims {
        generation,
        signing_key,
        csp_id,
        version: report.version,
        guest_svn: report.guest_svn,
        policy: u64::from_le_bytes([raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15]]),
        debuggable: report.policy.debug_allowed(),
        migrate_ma: report.policy.migrate_ma_allowed(),
        vmpl: report.vmpl,
        measurement: report.measurement,
        host_data: report.host_data,
        report_data: report.report_data,
        id_key_digest: report.id_key_digest,
        author_key_digest: report.author_key_digest,
        family_id: report.family_id,
        image_id: report.image_id,
        reported_tcb,
        chip_id: report.chip_id,
        report_hash: Sha256::digest(&raw[..SIG_OFFSET]).into(),
    };
    if let Some(allowed) = &policy.id_key_digests
        && !allowed.contains(&claims.id_key_digest)
    {
        return Err(VerifyError::IdKeyDigestNotAllowed(hex::encode(claims.id_key_digest)));
    }
    crate::verify::check_identity(&claims.evidence_claims(), policy)?;
    Ok(claims)
}
