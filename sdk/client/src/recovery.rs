//! A member's part of a recovery: open its recovery share locally and submit it, sealed to the
//! recovering node's attested key (the host's `recovery` module makes and opens the shares; the
//! formats are in docs/cluster.md "Recovery").

use base64::Engine as _;

use crate::{ClientError, Member};

pub use cgs_ledger_format::recovery::{SHARE_INFO, SUBMIT_INFO};
use cgs_ledger_format::recovery::{recovery_status_bytes, share_aad, submission_aad};
use cgs_ledger_format::seal::{SealError, open_with_ed25519, seal_to_ed25519};

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
    /// A signed checkpoint the member holds (C2SP note text, `cgs ledger checkpoint`): the
    /// recovering ledger must extend it — a consistency proof from it to the ledger's signed root
    /// is checked — so a ledger rewritten from genesis, another service's, or a copy that ends
    /// before it is refused.
    pub checkpoint: Option<String>,
    /// Where the CLI keeps the checkpoints it saw ([`crate::checkpoints`]): the one kept for the
    /// service of the recovering ledger, if any, is checked too (`None`: not).
    pub state_dir: Option<std::path::PathBuf>,
}

/// The checkpoint (size, root) in the signed note `note` a member holds.
pub fn held_checkpoint(note: &str) -> Result<cgs_core::note::Checkpoint, String> {
    let n = cgs_core::note::SignedNote::parse(note).map_err(|e| format!("not a signed checkpoint: {e}"))?;
    cgs_core::note::Checkpoint::parse(&n.text).map_err(|e| format!("not a signed checkpoint: {e}"))
}

/// Check that the ledger of `status` (its signed `verified.entries` and `verified.root`)
/// extends the checkpoint `held`, with `proof` (`GET /recovery/consistency?from=SIZE`'s answer).
pub fn check_extends(
    held: &cgs_core::note::Checkpoint,
    status: &serde_json::Value,
    proof: &serde_json::Value,
) -> Result<(), ClientError> {
    let entries = status["verified"]["entries"].as_u64().ok_or_else(|| protocol("the status names no entries"))?;
    let root = status["verified"]["root"]
        .as_str()
        .and_then(|r| hex::decode(r).ok())
        .ok_or_else(|| protocol("the status names no root of 64 hex digits"))?;
    if held.size == 0 {
        return Err(ClientError::Refused(
            "the checkpoint you hold is of an empty ledger: there is nothing to check against; hold a later one".into(),
        ));
    }
    if held.size > entries {
        return Err(ClientError::Refused(format!(
            "the recovering node's ledger applied {entries} entries, fewer than the checkpoint you hold ({} entries; \
             it received {} more it has not applied, which cannot be checked against it): a stale copy, or another \
             ledger; the share is not sent. Recover from a node's copy that applied your checkpoint",
            held.size,
            status["verified"]["unapplied_entries"].as_u64().unwrap_or(0)
        )));
    }
    let hashes = crate::checkpoints::proof_hashes(proof, held.size, entries)?;
    cgs_core::merkle::verify_consistency(held.size, entries, &hashes, &held.root, &root).map_err(|e| {
        ClientError::Refused(format!(
            "the recovering node's ledger does not extend the checkpoint you hold ({} entries): {e}. It is another \
             ledger (rewritten from genesis, or another service's); the share is not sent",
            held.size
        ))
    })
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
        ClientError::Refused(
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
            return Err(ClientError::Refused(format!(
                "the recovering node's ledger holds recovery shares of epoch {epoch}, older than {min}: a stale or \
                 rolled-back copy; the share is not sent"
            )));
        }
        let applied = status["last_applied_seqno"].as_u64().unwrap_or(0);
        if let Some(min) = check.min_seqno
            && applied < min
        {
            return Err(ClientError::Refused(format!(
                "the recovering node's ledger ends at sequence number {applied} ({}), before {min}: it is a stale copy \
                 (recover from the node with the longest ledger); the share is not sent",
                status["last_applied"].as_str().unwrap_or("?")
            )));
        }
        if !check.allow_virtual && check.measurements.as_ref().is_none_or(Vec::is_empty) {
            return Err(ClientError::Refused(
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
            ClientError::Refused(format!(
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
            return Err(ClientError::Refused(
                "name the service certificate you pin for this service (--service-cert): the ledger must be that \
                 service's"
                    .into(),
            ));
        }
        if let Some(pinned) = &check.service_cert_pem
            && pinned.trim() != cert.trim()
        {
            return Err(ClientError::Refused(
                "the recovering node's ledger is another service's (its service certificate is not the one given)"
                    .into(),
            ));
        }
        let kept = match &check.state_dir {
            Some(dir) => {
                let cert = status["service_cert"].as_str().unwrap_or_default();
                match crate::checkpoints::kept_path(dir, cert) {
                    Ok(path) => crate::checkpoints::load(&path)?.map(|(note, _)| (note, path)),
                    Err(_) => None,
                }
            }
            None => None,
        };
        // Both, when both are held: an old `--checkpoint` does not weaken the kept one.
        let mut checked = Vec::new();
        let given = check.checkpoint.as_ref().map(|n| (n, "--checkpoint".to_string(), false));
        let kept = kept.as_ref().map(|(n, p)| {
            let what = format!(
                "the checkpoint you kept ({}; --no-kept-checkpoint skips it, if the members agree no surviving copy \
                 applied it)",
                p.display()
            );
            (n, what, true)
        });
        for (note, what, is_kept) in given.into_iter().chain(kept) {
            let held = held_checkpoint(note).map_err(|e| ClientError::Refused(format!("{what}: {e}")))?;
            let entries = status["verified"]["entries"].as_u64().unwrap_or(0);
            let proof = if held.size == 0 || held.size > entries {
                serde_json::Value::Null // refused by the check, without asking
            } else {
                self.client.get(&format!("/recovery/consistency?from={}", held.size)).await?.ok_json()?
            };
            check_extends(&held, &status, &proof).map_err(|e| match e {
                ClientError::Refused(m) => ClientError::Refused(format!("{what}: {m}")),
                e => e,
            })?;
            checked.push(serde_json::json!({"size": held.size, "kept": is_kept}));
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
                ClientError::Refused("the recovery share does not open with this member's key".into())
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
        let mut answer = self.post_signed(&format!("/recovery/members/{id}:recover"), msg).await?.ok_json()?;
        answer["checkpoints_checked"] = checked.into();
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
        assert!(matches!(check_status_signature(&shown_later, &node_key), Err(ClientError::Refused(_))));
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

    /// A ledger extends a checkpoint a member holds only with a consistency proof from it to the
    /// ledger's signed root: another ledger of the same size and later entries (rewritten from
    /// genesis), a copy that ends before it, an answer for other sizes are refused.
    #[test]
    fn only_a_ledger_that_extends_the_held_checkpoint_is_trusted() {
        use cgs_core::merkle::{leaf_hash, node_hash};
        let leaf = |b: u8| leaf_hash(&[b; 32]);
        let (a, b, c) = (leaf(1), leaf(2), leaf(3));
        let ab = node_hash(&a, &b);
        let real = node_hash(&ab, &c);
        let held = cgs_core::note::Checkpoint { origin: "cgs/test".into(), size: 2, root: ab, extensions: vec![] };
        let status = |entries: u64, root: &[u8; 32]| serde_json::json!({"verified": {"entries": entries, "root": hex::encode(root)}});
        let proof = |from: u64, to: u64, hashes: &[[u8; 32]]| serde_json::json!({"from": from, "to": to, "proof": hashes.iter().map(hex::encode).collect::<Vec<_>>()});
        check_extends(&held, &status(3, &real), &proof(2, 3, &[c])).unwrap();
        // Rewritten: the same size, another first entry.
        let forged = node_hash(&node_hash(&leaf(9), &b), &c);
        let e = check_extends(&held, &status(3, &forged), &proof(2, 3, &[c])).unwrap_err();
        assert!(matches!(&e, ClientError::Refused(m) if m.contains("does not extend")), "{e}");
        // A proof altered to fit is refused too.
        assert!(check_extends(&held, &status(3, &forged), &proof(2, 3, &[leaf(4)])).is_err());
        // A copy that ends before the checkpoint.
        let later = cgs_core::note::Checkpoint { size: 4, ..held.clone() };
        let e = check_extends(&later, &status(3, &real), &serde_json::Value::Null).unwrap_err();
        assert!(matches!(&e, ClientError::Refused(m) if m.contains("fewer")), "{e}");
        // An answer for other sizes.
        assert!(matches!(
            check_extends(&held, &status(3, &real), &proof(1, 3, &[c])),
            Err(ClientError::Protocol { .. })
        ));
        // The same size: the roots must be equal.
        let whole = cgs_core::note::Checkpoint { size: 3, root: real, ..held.clone() };
        check_extends(&whole, &status(3, &real), &proof(3, 3, &[])).unwrap();
        assert!(check_extends(&whole, &status(3, &forged), &proof(3, 3, &[])).is_err());
        // Not a signed note.
        assert!(held_checkpoint("cgs/test\n2\nAAAA\n").is_err());
    }
}
