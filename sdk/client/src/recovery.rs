//! A member's part of a recovery: open its recovery share locally and submit it, sealed to the
//! recovering node's attested key (the host's `recovery` module makes and opens the shares; the
//! formats are in docs/cluster.md "Recovery").

use base64::Engine as _;

use crate::{ClientError, Member};

pub use cgs_ledger_format::seal::{SHARE_INFO, SUBMIT_INFO};
use cgs_ledger_format::seal::{
    SealError, open_with_ed25519, recovery_status_bytes, seal_to_ed25519, share_aad, submission_aad,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What the member requires of the recovering node's evidence before its share goes there.
#[derive(Debug, Clone, Default)]
pub struct NodeCheck {
    /// Accept virtual (insecure, development) evidence.
    pub allow_virtual: bool,
    /// Launch measurements accepted (`None`: any; the printed one is for the member to check).
    pub measurements: Option<Vec<[u8; 48]>>,
    /// host_data values accepted (`None`: any).
    pub host_data: Option<Vec<[u8; 32]>>,
    /// The ledger must have applied at least this sequence number: a member who holds a later
    /// transaction id (a receipt, an `x-cgs-tx-id`) refuses a stale copy of the ledger.
    pub min_seqno: Option<u64>,
    /// The service certificate (PEM) the member knows: the ledger must be that service's
    /// (required unless `allow_virtual`).
    pub service_cert_pem: Option<String>,
    /// The shares must be at least this epoch (the latest the member saw, `cgs recovery show`):
    /// a ledger rolled back to older shares is refused.
    pub min_epoch: Option<u64>,
}

fn protocol(detail: impl Into<String>) -> ClientError {
    ClientError::Protocol { status: 200, detail: detail.into() }
}

/// Check the recovering node's signature over its status with its node key `node_key`.
pub fn check_status_signature(status: &serde_json::Value, node_key: &[u8; 32]) -> Result<(), ClientError> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(node_key).map_err(|e| protocol(format!("node_key: {e}")))?;
    let signature = status["signature"]
        .as_str()
        .and_then(|s| B64.decode(s).ok())
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| ed25519_dalek::Signature::from_bytes(&b))
        .ok_or_else(|| protocol("GET /recovery carries no signature of 64 bytes of base64"))?;
    key.verify_strict(&recovery_status_bytes(status), &signature).map_err(|_| {
        ClientError::Certificate(
            "the recovering node's status is not signed by its node key: something between you and the node \
             changed it; the share is not sent"
                .into(),
        )
    })
}

impl Member {
    /// Submit this member's recovery share to the recovering node `self.client` talks to:
    /// check its evidence binds its node key (and `check`), fetch the sealed share, open it with
    /// the member key, seal it to the node key and send it in a signed `recovery_share`
    /// message. Returns the node's answer (`submitted`, `threshold`, `opened`) and the evidence's
    /// claims.
    pub async fn submit_recovery_share(
        &self,
        check: &NodeCheck,
    ) -> Result<(serde_json::Value, cgs_attestation::EvidenceClaims), ClientError> {
        let status = self.client.get("/recovery").await?.ok_json()?;
        let node_key_b64 = status["node_key"].as_str().ok_or_else(|| protocol("GET /recovery names no node_key"))?;
        let node_key: [u8; 32] = B64
            .decode(node_key_b64)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| protocol("node_key is not 32 bytes of base64"))?;
        // Every figure below comes from this status: it must be signed by the node key, which
        // the evidence checked below must bind (the listener's certificate is bound to nothing).
        check_status_signature(&status, &node_key)?;
        let epoch = status["epoch"].as_u64().ok_or_else(|| protocol("GET /recovery names no epoch"))?;
        if let Some(min) = check.min_epoch
            && epoch < min
        {
            return Err(ClientError::Certificate(format!(
                "the recovering node's ledger holds recovery shares of epoch {epoch}, older than {min}: a stale or \
                 rolled-back copy; the share is not sent"
            )));
        }
        let applied = status["last_applied_seqno"].as_u64().unwrap_or(0);
        if let Some(min) = check.min_seqno
            && applied < min
        {
            return Err(ClientError::Certificate(format!(
                "the recovering node's ledger ends at sequence number {applied} ({}), before {min}: it is a stale copy \
                 (recover from the node with the longest ledger); the share is not sent",
                status["last_applied"].as_str().unwrap_or("?")
            )));
        }
        if !check.allow_virtual && check.measurements.as_ref().is_none_or(Vec::is_empty) {
            return Err(ClientError::Certificate(
                "name the launch measurement the recovering node must run (--measurement): without it any SEV-SNP \
                 VM, whatever code it runs, could ask for your share"
                    .into(),
            ));
        }
        let evidence = cgs_attestation::Evidence::from_json(status["evidence"].to_string().as_bytes())
            .map_err(|e| protocol(format!("the node's evidence: {e}")))?;
        let policy = cgs_attestation::VerifyPolicy {
            allow_virtual: check.allow_virtual,
            measurements: check.measurements.clone(),
            host_data: check.host_data.clone(),
            report_data: Some(vec![cgs_core::node_attestation::report_data_for(&node_key)]),
            ..Default::default()
        };
        let verified = cgs_attestation::verify(&evidence, &policy, std::time::SystemTime::now()).map_err(|e| {
            ClientError::Certificate(format!(
                "the recovering node's evidence was refused, so the share is not sent: {e}{}",
                if evidence.is_virtual() && !check.allow_virtual {
                    " (virtual evidence: only a development service accepts it, --allow-virtual)"
                } else {
                    ""
                }
            ))
        })?;
        // The service the share is for: the one the member pins (a development service may skip).
        let cert = status["service_cert"].as_str().unwrap_or_default();
        if check.service_cert_pem.is_none() && !check.allow_virtual {
            return Err(ClientError::Certificate(
                "name the service certificate you pin for this service (--service-cert): the ledger must be that \
                 service's"
                    .into(),
            ));
        }
        if let Some(pinned) = &check.service_cert_pem
            && pinned.trim() != cert.trim()
        {
            return Err(ClientError::Certificate(
                "the recovering node's ledger is another service's (its service certificate is not the one given)"
                    .into(),
            ));
        }
        let service = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(cert.as_bytes()))
        };
        let id = self.id();
        let sealed = self.client.get(&format!("/recovery/shares/{id}")).await?.ok_json()?;
        let share = &sealed["share"];
        let field = |f: &str| share[f].as_str().unwrap_or_default();
        let plain = open_with_ed25519(
            &self.key,
            SHARE_INFO,
            &share_aad(epoch, &id, &service),
            field("enc"),
            field("ciphertext"),
        )
        .map_err(|e| match e {
            SealError::DoesNotOpen => {
                ClientError::Certificate("the recovery share does not open with this member's key".into())
            }
            e => protocol(format!("the sealed recovery share: {e}")),
        })?;
        let (enc, ct) = seal_to_ed25519(&node_key, SUBMIT_INFO, &submission_aad(epoch, &id, node_key_b64), &plain)
            .map_err(|e| protocol(format!("the recovering node's key: {e}")))?;
        let payload = serde_json::json!({
            "epoch": epoch,
            "node_key": node_key_b64,
            "enc": enc,
            "ciphertext": ct,
        });
        let msg = self.sign(cgs_core::gov::MessageType::RecoveryShare, None, &payload);
        let answer = self.post_signed(&format!("/recovery/members/{id}:recover"), msg).await?.ok_json()?;
        Ok((answer, verified.claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status signed by the node key checks; any figure changed by someone in between, a
    /// signature by another key, or none, is refused.
    #[test]
    fn only_a_status_signed_by_the_node_key_is_trusted() {
        use ed25519_dalek::Signer as _;
        let node = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let node_key = node.verifying_key().to_bytes();
        let mut status = serde_json::json!({
            "epoch": 3,
            "last_applied_seqno": 120,
            "verified": {"entries": 120, "signed_entries": 118},
            "node_key": B64.encode(node_key),
        });
        let sign = |s: &serde_json::Value, k: &ed25519_dalek::SigningKey| {
            B64.encode(k.sign(&recovery_status_bytes(s)).to_bytes())
        };
        status["signature"] = sign(&status, &node).into();
        check_status_signature(&status, &node_key).unwrap();
        // Through JSON text and back, as the client receives it.
        let received: serde_json::Value = serde_json::from_str(&status.to_string()).unwrap();
        check_status_signature(&received, &node_key).unwrap();

        let mut shown_later = status.clone();
        shown_later["last_applied_seqno"] = 9_999.into();
        assert!(matches!(check_status_signature(&shown_later, &node_key), Err(ClientError::Certificate(_))));
        let mut nested = status.clone();
        nested["verified"]["signed_entries"] = 120.into();
        assert!(check_status_signature(&nested, &node_key).is_err());
        let mut other = status.clone();
        other["signature"] = sign(&status, &ed25519_dalek::SigningKey::from_bytes(&[6; 32])).into();
        assert!(check_status_signature(&other, &node_key).is_err());
        let mut unsigned = status.clone();
        unsigned.as_object_mut().unwrap().remove("signature");
        assert!(matches!(check_status_signature(&unsigned, &node_key), Err(ClientError::Protocol { .. })));
    }
}
