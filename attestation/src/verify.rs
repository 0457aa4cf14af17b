//! Top-level verification of [`Evidence`] of either kind.

use crate::policy::VerifyPolicy;
use crate::roots::{Generation, TrustAnchors};
use crate::snp::{self, SnpClaims};
use crate::{B64, Evidence, EvidenceClaims, EvidenceError};
use base64::Engine as _;
use std::sync::LazyLock;
use std::time::SystemTime;

/// Why evidence was refused. Each check has its own variant and says which check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Malformed evidence (JSON shape, encodings, lengths).
    #[error(transparent)]
    Shape(#[from] EvidenceError),
    /// `virtual` evidence while the policy does not allow it.
    #[error("virtual (insecure) evidence is not allowed by this verifier's policy")]
    VirtualNotAllowed,
    /// The report does not parse.
    #[error("SNP report does not parse: {0}")]
    ReportParse(String),
    /// Report version outside 2..=5.
    #[error("SNP report version {0} is not supported (2..=5)")]
    ReportVersion(u32),
    /// Signature algorithm other than 1 (ECDSA P-384 with SHA-384).
    #[error("SNP report signature algorithm {0} is not supported (1 = ECDSA P-384/SHA-384)")]
    SignatureAlgorithm(u32),
    /// Non-zero bytes in the unsigned part of the signature block.
    #[error("SNP report signature block is not canonical (non-zero padding or reserved bytes)")]
    NonCanonicalSignature,
    /// `key_info.signing_key` is not a VCEK (0) or an accepted VLEK (1).
    #[error("SNP report signing key {0} is not accepted (0 = VCEK, 1 = VLEK if allowed)")]
    SigningKeyUnsupported(u32),
    /// The processor generation cannot be determined or is not supported.
    #[error("SNP processor generation unknown or unsupported: {0}")]
    UnknownGeneration(String),
    /// The VEK's productName and the report's CPUID disagree.
    #[error("SNP generation mismatch: certificate says {cert}, report CPUID says {report}")]
    GenerationMismatch {
        /// From the VEK productName.
        cert: Generation,
        /// From the report CPUID.
        report: Generation,
    },
    /// No pinned root for this generation / certificate.
    #[error("no pinned {cert} for {generation}")]
    NoTrustAnchor {
        /// The generation.
        generation: Generation,
        /// Which certificate.
        cert: &'static str,
    },
    /// A supplied ARK / ASK / ASVK is not one of the pinned AMD certificates.
    #[error("root not pinned: the supplied {cert} is not AMD's pinned {generation} {cert}")]
    RootNotPinned {
        /// Which certificate ("ARK", "ASK", "ASVK").
        cert: &'static str,
        /// The generation.
        generation: Generation,
    },
    /// A chain certificate is neither supplied nor built in.
    #[error("certificate {cert} is missing from the evidence and not built in")]
    MissingCertificate {
        /// Which certificate.
        cert: &'static str,
    },
    /// A certificate does not parse.
    #[error("certificate {cert} does not parse: {why}")]
    CertParse {
        /// Which certificate.
        cert: &'static str,
        /// Why.
        why: String,
    },
    /// ARK → ASK/ASVK → VEK signatures do not verify.
    #[error("certificate chain does not verify: {0}")]
    CertChain(String),
    /// A certificate is past its notAfter.
    #[error("certificate {cert} expired: notAfter {not_after}, now {now}")]
    CertExpired {
        /// Which certificate.
        cert: &'static str,
        /// Its notAfter.
        not_after: String,
        /// The verification time.
        now: String,
    },
    /// A certificate is before its notBefore.
    #[error("certificate {cert} is not yet valid: notBefore {not_before}, now {now}")]
    CertNotYetValid {
        /// Which certificate.
        cert: &'static str,
        /// Its notBefore.
        not_before: String,
        /// The verification time.
        now: String,
    },
    /// The VEK does not sign the report.
    #[error("SNP report signature does not verify: {0}")]
    ReportSignature(String),
    /// The VCEK hwID is not the report's chip_id.
    #[error("VCEK is not for this chip: {0}")]
    ChipIdMismatch(String),
    /// A VEK TCB extension differs from the report's reported_tcb.
    #[error("VEK TCB {component} SPL {cert:?} != report reported_tcb {report:?}")]
    TcbMismatch {
        /// Component.
        component: &'static str,
        /// From the certificate (None = missing extension).
        cert: Option<u8>,
        /// From the report.
        report: Option<u8>,
    },
    /// The VLEK cspID is missing or not allowed.
    #[error("VLEK cspID {0:?} is missing or not allowed")]
    VlekCspNotAllowed(Option<String>),
    /// Guest policy allows DEBUG.
    #[error("guest policy allows DEBUG; refused")]
    DebugAllowed,
    /// Guest policy allows a migration agent.
    #[error("guest policy allows a migration agent (MIGRATE_MA); refused")]
    MigrationAgentAllowed,
    /// VMPL is not the expected one.
    #[error("report VMPL {reported} != expected {expected}")]
    Vmpl {
        /// Expected.
        expected: u32,
        /// In the report.
        reported: u32,
    },
    /// Guest policy ABI below the minimum.
    #[error("guest policy ABI {reported:?} below minimum {minimum:?}")]
    AbiTooOld {
        /// Minimum (major, minor).
        minimum: (u8, u8),
        /// Reported (major, minor).
        reported: (u8, u8),
    },
    /// reported_tcb below the generation's minimum.
    #[error("TCB below minimum for {generation}: {component} SPL {reported} < {minimum}")]
    TcbBelowMinimum {
        /// Generation.
        generation: Generation,
        /// The first component below.
        component: &'static str,
        /// Reported.
        reported: u8,
        /// Minimum.
        minimum: u8,
    },
    /// Guest SVN below the minimum.
    #[error("guest SVN {reported} below minimum {minimum}")]
    GuestSvnTooLow {
        /// Minimum.
        minimum: u32,
        /// Reported.
        reported: u32,
    },
    /// id_key_digest not in the allow-list.
    #[error("ID key digest {0} is not allowed")]
    IdKeyDigestNotAllowed(String),
    /// Measurement not in the allow-list.
    #[error("launch measurement {0} is not allowed")]
    MeasurementNotAllowed(String),
    /// host_data not in the allow-list.
    #[error("host_data {0} is not allowed")]
    HostDataNotAllowed(String),
    /// report_data not in the allow-list.
    #[error("report_data {0} is not the expected value")]
    ReportDataMismatch(String),
}

/// Evidence that passed [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEvidence {
    /// measurement / host_data / report_data, and whether the evidence is insecure (virtual).
    pub claims: EvidenceClaims,
    /// The full SNP claims; `None` for virtual evidence.
    pub snp: Option<SnpClaims>,
}

impl VerifiedEvidence {
    /// Whether this came from virtual (insecure) evidence.
    pub fn insecure(&self) -> bool {
        self.claims.insecure
    }

    /// Claims as `(name, value)` pairs with the names clean-room policies use (Azure MAA's
    /// `x-ms-sevsnpvm-*`; `x-cgs-*` for the few MAA has no name for). Byte values are lowercase hex, numbers decimal, booleans "true"/"false".
    pub fn flat_claims(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: String| out.push((k.to_string(), v));
        put("x-ms-attestation-type", "sevsnpvm".into());
        put("x-ms-sevsnpvm-is-virtual", self.insecure().to_string());
        put("x-ms-sevsnpvm-hostdata", hex::encode(self.claims.host_data));
        put("x-ms-sevsnpvm-launchmeasurement", hex::encode(self.claims.measurement));
        put("x-ms-sevsnpvm-reportdata", hex::encode(self.claims.report_data));
        if let Some(s) = &self.snp {
            put("x-ms-sevsnpvm-is-debuggable", s.debuggable.to_string());
            put("x-ms-sevsnpvm-vmpl", s.vmpl.to_string());
            put("x-ms-sevsnpvm-guestsvn", s.guest_svn.to_string());
            put("x-ms-sevsnpvm-tee-svn", s.reported_tcb.tee.to_string());
            put("x-ms-sevsnpvm-bootloader-svn", s.reported_tcb.bootloader.to_string());
            put("x-ms-sevsnpvm-snpfw-svn", s.reported_tcb.snp.to_string());
            put("x-ms-sevsnpvm-microcode-svn", s.reported_tcb.microcode.to_string());
            put("x-ms-sevsnpvm-idkeydigest", hex::encode(s.id_key_digest));
            put("x-ms-sevsnpvm-authorkeydigest", hex::encode(s.author_key_digest));
            put("x-ms-sevsnpvm-familyid", hex::encode(s.family_id));
            put("x-ms-sevsnpvm-imageid", hex::encode(s.image_id));
            put("x-cgs-sevsnpvm-guestpolicy", s.policy.to_string());
            put("x-cgs-sevsnpvm-signingkey", s.signing_key.as_str().into());
            put("x-cgs-sevsnpvm-generation", s.generation.as_str().into());
        }
        out
    }
}

static AMD: LazyLock<TrustAnchors> = LazyLock::new(TrustAnchors::amd);

/// Verify evidence against AMD's pinned roots at time `now`.
pub fn verify(evidence: &Evidence, policy: &VerifyPolicy, now: SystemTime) -> Result<VerifiedEvidence, VerifyError> {
    verify_with_anchors(evidence, policy, &AMD, now)
}

/// Verify evidence against the given roots (tests inject their own) at time `now`.
pub fn verify_with_anchors(
    evidence: &Evidence,
    policy: &VerifyPolicy,
    anchors: &TrustAnchors,
    now: SystemTime,
) -> Result<VerifiedEvidence, VerifyError> {
    match evidence {
        Evidence::Virtual { .. } => {
            if !policy.allow_virtual {
                return Err(VerifyError::VirtualNotAllowed);
            }
            let claims = evidence.check_shape()?.ok_or(VerifyError::VirtualNotAllowed)?;
            check_identity(&claims, policy)?;
            Ok(VerifiedEvidence { claims, snp: None })
        }
        Evidence::Snp { report, vcek, ask, ark } => {
            evidence.check_shape()?;
            let dec = |field: &'static str, s: &str| {
                B64.decode(s).map_err(|e| EvidenceError::Field { field, why: format!("is not base64: {e}") })
            };
            let report = dec("report", report)?;
            let vcek = dec("vcek", vcek)?;
            let ask = ask.as_deref().map(|a| dec("ask", a)).transpose()?;
            let ark = ark.as_deref().map(|a| dec("ark", a)).transpose()?;
            let snp = snp::verify_report(&report, &vcek, ask.as_deref(), ark.as_deref(), policy, anchors, now)?;
            Ok(VerifiedEvidence { claims: snp.evidence_claims(), snp: Some(snp) })
        }
    }
}

/// The identity allow-lists shared by both kinds.
pub(crate) fn check_identity(c: &EvidenceClaims, policy: &VerifyPolicy) -> Result<(), VerifyError> {
    if let Some(list) = &policy.measurements
        && !list.contains(&c.measurement)
    {
        return Err(VerifyError::MeasurementNotAllowed(hex::encode(c.measurement)));
    }
    if let Some(list) = &policy.host_data
        && !list.contains(&c.host_data)
    {
        return Err(VerifyError::HostDataNotAllowed(hex::encode(c.host_data)));
    }
    if let Some(list) = &policy.report_data
        && !list.contains(&c.report_data)
    {
        return Err(VerifyError::ReportDataMismatch(hex::encode(c.report_data)));
    }
    Ok(())
}
