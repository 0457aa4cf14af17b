//! `cgs-attestation`: attestation evidence as it travels on the wire.
//!
//! Two kinds, per the API contract:
//!
//! * `snp`: an AMD SEV-SNP attestation report (1184 bytes) with its VCEK/VLEK certificate and
//!   optionally the ASK/ARK chain;
//! * `virtual`: development evidence (measurement, host_data, report_data in clear) that proves
//!   nothing and is accepted only where explicitly allowed.
//!
//! [`Evidence::check_shape`] validates encodings only. [`verify`] does the full check: for `snp`,
//! the AMD signature chain from pinned roots ([`roots`]), certificate validity at a given time,
//! the VCEK↔report binding and the [`VerifyPolicy`] (guest policy, VMPL, minimum TCB, allowed
//! measurement / host_data / report_data); `virtual` evidence passes only when the policy allows
//! it and is then marked insecure. See `../shared/reference/sev-snp.md` §7 for the checklist.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

pub mod policy;
pub mod roots;
pub mod snp;
mod verify;

pub use policy::{Tcb, VerifyPolicy};
pub use roots::{Generation, GenerationAnchors, Pin, TrustAnchors};
pub use snp::{SigningKey, SnpClaims};
pub use verify::{VerifiedEvidence, VerifyError, verify, verify_with_anchors};

/// Size of an SEV-SNP attestation report.
pub const SNP_REPORT_LEN: usize = 1184;

/// Evidence as sent by a node or a clean room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Evidence {
    /// AMD SEV-SNP evidence.
    Snp {
        /// Base64 of the 1184-byte report.
        report: String,
        /// Base64 DER of the VCEK (or VLEK).
        vcek: String,
        /// Base64 DER of the ASK (or ASVK), optional.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ask: Option<String>,
        /// Base64 DER of the ARK, optional.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ark: Option<String>,
    },
    /// Development evidence; insecure.
    Virtual {
        /// Hex, 48 bytes.
        measurement: String,
        /// Hex, 32 bytes.
        host_data: String,
        /// Hex, 64 bytes.
        report_data: String,
    },
}

/// Malformed evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// Not the JSON shape of evidence.
    #[error("evidence is not valid JSON of kind snp or virtual: {0}")]
    Json(String),
    /// A field has the wrong encoding or length.
    #[error("evidence field `{field}` {why}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// The fields every kind of evidence exposes once its shape is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceClaims {
    /// Launch measurement (48 bytes).
    pub measurement: [u8; 48],
    /// Host data (32 bytes).
    pub host_data: [u8; 32],
    /// Report data (64 bytes).
    pub report_data: [u8; 64],
    /// Whether this came from virtual (insecure) evidence.
    pub insecure: bool,
}

fn hex_field<const N: usize>(field: &'static str, s: &str) -> Result<[u8; N], EvidenceError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| EvidenceError::Field { field, why: format!("must be {} hex digits ({N} bytes)", 2 * N) })?;
    Ok(out)
}

fn b64_field(field: &'static str, s: &str) -> Result<Vec<u8>, EvidenceError> {
    B64.decode(s).map_err(|e| EvidenceError::Field { field, why: format!("is not base64: {e}") })
}

impl Evidence {
    /// Parse evidence JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EvidenceError> {
        serde_json::from_slice(bytes).map_err(|e| EvidenceError::Json(e.to_string()))
    }

    /// Whether this is virtual (insecure) evidence.
    pub fn is_virtual(&self) -> bool {
        matches!(self, Evidence::Virtual { .. })
    }

    /// Check encodings and lengths; for `virtual` evidence, return its claims. SNP claims come
    /// from the verified report (not from this shape check), so they are `None` here.
    pub fn check_shape(&self) -> Result<Option<EvidenceClaims>, EvidenceError> {
        match self {
            Evidence::Snp { report, vcek, ask, ark } => {
                let r = b64_field("report", report)?;
                if r.len() != SNP_REPORT_LEN {
                    return Err(EvidenceError::Field {
                        field: "report",
                        why: format!("is {} bytes; a report is {SNP_REPORT_LEN}", r.len()),
                    });
                }
                b64_field("vcek", vcek)?;
                if let Some(a) = ask {
                    b64_field("ask", a)?;
                }
                if let Some(a) = ark {
                    b64_field("ark", a)?;
                }
                Ok(None)
            }
            Evidence::Virtual { measurement, host_data, report_data } => Ok(Some(EvidenceClaims {
                measurement: hex_field("measurement", measurement)?,
                host_data: hex_field("host_data", host_data)?,
                report_data: hex_field("report_data", report_data)?,
                insecure: true,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_evidence_round_trips() {
        let json = format!(
            r#"{{"kind":"virtual","measurement":"{}","host_data":"{}","report_data":"{}"}}"#,
            "ab".repeat(48),
            "cd".repeat(32),
            "00".repeat(64)
        );
        let e = Evidence::from_json(json.as_bytes()).unwrap();
        assert!(e.is_virtual());
        let c = e.check_shape().unwrap().unwrap();
        assert_eq!(c.measurement, [0xab; 48]);
        assert!(c.insecure);
        assert_eq!(serde_json::to_string(&e).unwrap(), json);
    }

    #[test]
    fn malformed_evidence_is_refused_with_the_field() {
        let short = format!(
            r#"{{"kind":"virtual","measurement":"ab","host_data":"{}","report_data":"{}"}}"#,
            "cd".repeat(32),
            "00".repeat(64)
        );
        let err = Evidence::from_json(short.as_bytes()).unwrap().check_shape().unwrap_err();
        assert!(matches!(err, EvidenceError::Field { field: "measurement", .. }), "{err}");
        assert!(Evidence::from_json(br#"{"kind":"tpm"}"#).is_err());
        let snp = format!(r#"{{"kind":"snp","report":"{}","vcek":"AAAA"}}"#, B64.encode([0u8; 10]));
        let err = Evidence::from_json(snp.as_bytes()).unwrap().check_shape().unwrap_err();
        assert!(matches!(err, EvidenceError::Field { field: "report", .. }), "{err}");
        let snp = format!(r#"{{"kind":"snp","report":"{}","vcek":"AAAA"}}"#, B64.encode([0u8; SNP_REPORT_LEN]));
        assert_eq!(Evidence::from_json(snp.as_bytes()).unwrap().check_shape().unwrap(), None);
    }
}
