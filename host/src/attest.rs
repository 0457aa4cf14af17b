//! This node's attestation evidence and the signed attestation document (`GET /node/attestation`).
//!
//! Built with `--features sev-guest` and running where `/dev/sev-guest` exists, the node asks the
//! AMD Secure Processor for an extended report (VMPL 0) with `report_data` = SHA-256(node public
//! key) ‖ 0³², and presents it with the VCEK (or VLEK) and ASK/ARK from the host's certificate
//! table as `snp` evidence. Otherwise (or if that fails, which is logged) it presents **virtual**
//! evidence, marked insecure: `measurement` = SHA-384 of the running `cgs-host` executable (so a
//! collaborator can at least tell builds apart), `host_data` = 32 zero bytes, `report_data` bound
//! to the node key. Verifiers refuse virtual evidence unless explicitly allowed.

use std::sync::OnceLock;

use base64::Engine as _;
use sha2::Digest;

/// Evidence of this node, computed on first use (hashing the executable takes a moment).
pub struct NodeEvidence {
    node_public_key: [u8; 32],
    service_cert_pem: String,
    evidence: OnceLock<serde_json::Value>,
}

/// Whether this node presents SEV-SNP evidence (built with `sev-guest`, `/dev/sev-guest`
/// present): its keys then live in memory only.
pub fn snp_available() -> bool {
    cfg!(feature = "sev-guest") && std::path::Path::new("/dev/sev-guest").exists()
}

impl NodeEvidence {
    /// Evidence for a node with `node_public_key` serving `service_cert_pem`.
    pub fn new(node_public_key: [u8; 32], service_cert_pem: String) -> Self {
        Self { node_public_key, service_cert_pem, evidence: OnceLock::new() }
    }

    /// The evidence (`{"kind":"virtual",…}` per API.md).
    pub fn evidence(&self) -> &serde_json::Value {
        self.evidence.get_or_init(|| {
            #[cfg(feature = "sev-guest")]
            if std::path::Path::new("/dev/sev-guest").exists() {
                match snp_evidence(&self.node_public_key) {
                    Ok(e) => return e,
                    Err(e) => tracing::error!(error = %e, "no SEV-SNP report: presenting virtual (insecure) evidence"),
                }
            }
            let measurement: Vec<u8> = std::env::current_exe()
                .and_then(std::fs::read)
                .map(|b| sha2::Sha384::digest(&b).to_vec())
                .unwrap_or_else(|_| vec![0; 48]);
            serde_json::json!({
                "kind": "virtual",
                "measurement": hex::encode(measurement),
                "host_data": hex::encode([0u8; 32]),
                "report_data": hex::encode(cgs_core::node_attestation::report_data_for(&self.node_public_key)),
            })
        })
    }

    /// The attestation document for the active `plugins` and `constitution`, signed with `sign`.
    pub fn document(
        &self,
        plugins: Vec<serde_json::Value>,
        constitution: serde_json::Value,
        sign: impl FnOnce(&serde_json::Value) -> [u8; 64],
    ) -> serde_json::Value {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut doc = serde_json::json!({
            "evidence": self.evidence(),
            "insecure": self.evidence()["kind"] != "snp",
            "node_public_key": b64.encode(self.node_public_key),
            "service_cert": self.service_cert_pem,
            "plugins": plugins,
            "constitution": constitution,
        });
        let sig = sign(&doc);
        doc["signature"] = b64.encode(sig).into();
        doc
    }
}

/// This node's SEV-SNP extended report and certificates, bound to `node_public_key`.
#[cfg(feature = "sev-guest")]
fn snp_evidence(node_public_key: &[u8; 32]) -> Result<serde_json::Value, String> {
    use sev::firmware::guest::Firmware;
    use sev::firmware::host::CertType;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut fw = Firmware::open().map_err(|e| format!("/dev/sev-guest: {e}"))?;
    let report_data = cgs_core::node_attestation::report_data_for(node_public_key);
    let (report, certs) =
        fw.get_ext_report(None, Some(report_data), Some(0)).map_err(|e| format!("SNP_GET_EXT_REPORT: {e}"))?;
    let certs = certs.ok_or("the host supplied no certificate table (VCEK) with the report")?;
    let find = |t: CertType| certs.iter().find(|c| c.cert_type == t).map(|c| b64.encode(&c.data));
    let vcek =
        find(CertType::VCEK).or_else(|| find(CertType::VLEK)).ok_or("no VCEK or VLEK in the certificate table")?;
    Ok(serde_json::json!({
        "kind": "snp",
        "report": b64.encode(&report),
        "vcek": vcek,
        "ask": find(CertType::ASK),
        "ark": find(CertType::ARK),
    }))
}
