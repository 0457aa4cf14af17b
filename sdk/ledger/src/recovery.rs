//! The recovery's formats, shared by the recovering node (the host's `recovery` module) and a
//! member's client (`cgs recovery submit`): the HPKE `info` and aad of a recovery share sealed
//! to its member and of the share a member submits sealed to the recovering node (the seal
//! itself is [`crate::seal`]), and the bytes the recovering node signs of its status. The
//! formats are described in docs/cluster.md, "Recovery".

/// HPKE `info` of a recovery share sealed to its member.
pub const SHARE_INFO: &[u8] = b"cgs-recovery-share-v1";
/// HPKE `info` of a recovery share a member submits, sealed to the recovering node.
pub const SUBMIT_INFO: &[u8] = b"cgs-recovery-submission-v1";

/// The aad of a recovery share sealed to member `member` at `epoch` for the service whose
/// certificate's SHA-256 is `service_cert_sha256` (hex): a share opens for that service only (a
/// member using one key in several services is not an oracle for the others' shares).
pub fn share_aad(epoch: u64, member: &str, service_cert_sha256: &str) -> String {
    format!("recovery share {epoch} member {member} service {service_cert_sha256}")
}

/// The aad of a recovery share `member` submits, sealed to the recovering node whose key is
/// `node_key` (base64): bound to that node, so it opens nowhere else.
pub fn submission_aad(epoch: u64, member: &str, node_key: &str) -> String {
    format!("recovery share {epoch} member {member} node {node_key}")
}

/// What the recovering node signs of its status (`GET /recovery`) with its attested node key,
/// and a member's client checks before it trusts any figure in it (last transaction, what the
/// verification found, epoch, service certificate): this context, then the status as compact
/// JSON with sorted keys, without its `signature` member.
pub const RECOVERY_STATUS_CONTEXT: &[u8] = b"cgs-recovery-status-v1\n";

/// The bytes the recovering node signs of `status` ([`RECOVERY_STATUS_CONTEXT`]).
pub fn recovery_status_bytes(status: &serde_json::Value) -> Vec<u8> {
    let mut unsigned = status.clone();
    if let Some(o) = unsigned.as_object_mut() {
        o.remove("signature");
    }
    let mut out = RECOVERY_STATUS_CONTEXT.to_vec();
    out.extend_from_slice(unsigned.to_string().as_bytes());
    out
}
