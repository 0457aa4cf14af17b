//! The node attestation document (`GET /node/attestation`): the node's evidence, its Ed25519 key
//! (which also signs checkpoints and receipts), its TLS service certificate, and the active
//! plugin set — signed by the node key, so a collaborator who checks the evidence also knows which
//! plugins that attested node says it runs.
//!
//! Binding: the evidence's `report_data` is `SHA-256(node public key) ‖ 32 zero bytes`.
//! Signature: Ed25519 over [`DOMAIN`] ‖ the document without `"signature"`, serialized as JSON with
//! keys sorted (serde_json's default map), no whitespace.

use sha2::Digest;

/// Domain separation for the document signature (the node key also signs checkpoints).
pub const DOMAIN: &[u8] = b"cgs-node-attestation-v1\0";

/// What the node key signs for `doc` (its `"signature"` member, if any, left out).
pub fn signed_bytes(doc: &serde_json::Value) -> Vec<u8> {
    let mut d = doc.clone();
    if let Some(o) = d.as_object_mut() {
        o.remove("signature");
    }
    // `Value`'s map is a BTreeMap (no `preserve_order` feature): keys come out sorted.
    let mut out = DOMAIN.to_vec();
    out.extend_from_slice(d.to_string().as_bytes());
    out
}

/// The `report_data` that binds evidence to `node_public_key`.
pub fn report_data_for(node_public_key: &[u8]) -> [u8; 64] {
    let mut rd = [0u8; 64];
    rd[..32].copy_from_slice(&sha2::Sha256::digest(node_public_key));
    rd
}

/// Check the document's signature with the key it names; returns that key.
pub fn verify_signature(doc: &serde_json::Value) -> Result<ed25519_dalek::VerifyingKey, String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let pk = doc["node_public_key"].as_str().ok_or("the document has no `node_public_key`")?;
    let pk: [u8; 32] = b64
        .decode(pk)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("`node_public_key` is not a base64 32-byte Ed25519 key")?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&pk).map_err(|e| format!("bad node key: {e}"))?;
    let sig = doc["signature"].as_str().ok_or("the document has no `signature`")?;
    let sig: [u8; 64] =
        b64.decode(sig).ok().and_then(|b| b.try_into().ok()).ok_or("`signature` is not a base64 64-byte signature")?;
    key.verify_strict(&signed_bytes(doc), &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| "the plugin set is not signed by the node key".to_string())?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use ed25519_dalek::Signer;

    #[test]
    fn sign_and_verify() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let mut doc = serde_json::json!({
            "node_public_key": b64.encode(key.verifying_key().as_bytes()),
            "plugins": [{"name": "audit", "version": "0.1.0", "blake3": "00"}],
        });
        let sig = key.sign(&signed_bytes(&doc));
        doc["signature"] = b64.encode(sig.to_bytes()).into();
        assert_eq!(verify_signature(&doc).unwrap(), key.verifying_key());
        doc["plugins"][0]["blake3"] = "01".into();
        assert!(verify_signature(&doc).is_err());
        assert_eq!(&report_data_for(b"k")[32..], &[0u8; 32]);
    }
}
