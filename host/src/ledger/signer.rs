//! The node identity key: signs checkpoints (C2SP signed notes) and the COSE receipts' roots.
//!
//! The key is Ed25519, generated at the node's first start and kept in `DIR/node/node-signing.key`
//! (32-byte seed, owner-only). **Development fallback:** on SEV-SNP the key is generated inside the
//! TEE and bound into the attestation report; it must not be readable outside.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use coset::{Label, TaggedCborSerializable};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// This node's signing identity.
pub struct NodeSigner {
    key: SigningKey,
    /// The log origin, also the note key name.
    pub origin: String,
}

impl NodeSigner {
    /// Load the key from `path` (creating it if absent) for the log `origin`.
    pub fn load_or_create(path: &Path, origin: &str) -> std::io::Result<Self> {
        let seed = crate::fsutil::load_or_create_secret(path, "key")?;
        Ok(Self::from_seed(&seed, origin))
    }

    /// A signer from a seed (tests).
    pub fn from_seed(seed: &[u8; 32], origin: &str) -> Self {
        Self { key: SigningKey::from_bytes(seed), origin: origin.to_string() }
    }

    /// The node key itself (it also opens the ledger secret versions sealed to this node).
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The key id used as COSE `kid`: SHA-256 of the public key.
    pub fn kid(&self) -> [u8; 32] {
        Sha256::digest(self.public_key().as_bytes()).into()
    }

    /// The C2SP verifier key string `origin+keyid+base64(0x01 ‖ key)`.
    pub fn verifier_key(&self) -> String {
        verifier_key(&self.origin, &self.public_key().to_bytes())
    }

    /// Sign the checkpoint of `size`/`root` as a C2SP note.
    pub fn sign_checkpoint(&self, size: u64, root: &[u8; 32]) -> String {
        let text = format!("{}\n{}\n{}\n", self.origin, size, B64.encode(root));
        let pk = self.public_key().to_bytes();
        let mut raw = cgs_core::note::key_id(&self.origin, &pk).to_vec();
        raw.extend_from_slice(&self.key.sign(text.as_bytes()).to_bytes());
        format!("{text}\n\u{2014} {} {}\n", self.origin, B64.encode(raw))
    }

    /// Sign the node attestation document `doc` (see `cgs_core::node_attestation`).
    pub fn sign_attestation(&self, doc: &serde_json::Value) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.key.sign(&cgs_core::node_attestation::signed_bytes(doc)).to_bytes()
    }

    /// Sign the COSE Sig_structure of a receipt with detached payload `root`, the root of the
    /// tree of `tree_size` (`cgs_core::receipt::signed_root_bytes`).
    pub fn sign_receipt_root(&self, tree_size: u64, root: &[u8; 32]) -> [u8; 64] {
        self.key.sign(&cgs_core::receipt::signed_root_bytes(&self.kid(), tree_size, root)).to_bytes()
    }
}

/// The C2SP verifier key of the Ed25519 key `pk` for the log `origin`.
pub fn verifier_key(origin: &str, pk: &[u8; 32]) -> String {
    let id = cgs_core::note::key_id(origin, pk);
    let mut raw = vec![0x01];
    raw.extend_from_slice(pk);
    format!("{origin}+{}+{}", hex::encode(id), B64.encode(raw))
}

/// What a receipt is made of.
pub struct ReceiptParts<'a> {
    /// COSE `kid` of the signer.
    pub kid: &'a [u8],
    /// Tree size of the checkpoint.
    pub tree_size: u64,
    /// Leaf index (seqno − 1).
    pub leaf_index: u64,
    /// Inclusion path.
    pub path: &'a [[u8; 32]],
    /// Signature over the root (from the signature entry).
    pub signature: &'a [u8; 64],
    /// The tx id.
    pub tx_id: cgs_core::TxId,
    /// SHA-256 of the entry.
    pub leaf_input: &'a [u8; 32],
    /// The entry bytes, for callers allowed to read what the transaction wrote.
    pub entry: Option<&'a [u8]>,
}

/// Encode a COSE receipt (RFC 9942 layout) from its parts.
pub fn encode_cose_receipt(p: &ReceiptParts<'_>) -> Vec<u8> {
    use ciborium::Value;
    let proof = Value::Array(vec![
        Value::Integer(p.tree_size.into()),
        Value::Integer(p.leaf_index.into()),
        Value::Array(p.path.iter().map(|h| Value::Bytes(h.to_vec())).collect()),
    ]);
    let mut proof_bytes = Vec::new();
    // Writing CBOR into a Vec cannot fail.
    let _ = ciborium::into_writer(&proof, &mut proof_bytes);
    let vdp = Value::Map(vec![(
        Value::Integer(cgs_core::receipt::INCLUSION_PROOFS.into()),
        Value::Array(vec![Value::Bytes(proof_bytes)]),
    )]);
    let mut unprotected = coset::HeaderBuilder::new()
        .value(cgs_core::receipt::VDP, vdp)
        .text_value(cgs_core::receipt::TX_ID_LABEL.into(), Value::Text(p.tx_id.to_string()))
        .text_value(cgs_core::receipt::LEAF_INPUT_LABEL.into(), Value::Bytes(p.leaf_input.to_vec()));
    if let Some(entry) = p.entry {
        unprotected = unprotected.text_value(cgs_core::receipt::ENTRY_LABEL.into(), Value::Bytes(entry.to_vec()));
    }
    let unprotected = unprotected.build();
    let sign1 = coset::CoseSign1Builder::new()
        .protected(cgs_core::receipt::protected_header(p.kid, p.tree_size))
        .unprotected(unprotected)
        .signature(p.signature.to_vec())
        .build();
    debug_assert!(sign1.unprotected.rest.iter().any(|(l, _)| *l == Label::Int(cgs_core::receipt::VDP)));
    sign1.to_tagged_vec().unwrap_or_default()
}
