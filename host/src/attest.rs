//! This node's attestation evidence and the signed attestation document (`GET /node/attestation`).
//!
//! On SEV-SNP hardware the report would come from `/dev/sev-guest` with `report_data` =
//! SHA-256(node public key) ‖ 0³²; that path is not built yet, so every node presents **virtual**
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

impl NodeEvidence {
    /// Evidence for a node with `node_public_key` serving `service_cert_pem`.
    pub fn new(node_public_key: [u8; 32], service_cert_pem: String) -> Self {
        Self { node_public_key, service_cert_pem, evidence: OnceLock::new() }
    }

    /// The evidence (`{"kind":"virtual",…}` per API.md).
    pub fn evidence(&self) -> &serde_json::Value {
        self.evidence.get_or_init(|| {
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
            "insecure": true,
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
