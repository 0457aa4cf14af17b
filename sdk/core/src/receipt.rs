//! Receipts: proof that a transaction is in the ledger, verifiable offline with the node key.
//!
//! Two encodings of the same facts:
//!
//! * **COSE** (RFC 9942 layout): a tagged COSE_Sign1 whose protected header holds `alg` = EdDSA
//!   (-8), `kid`, `vds` (395) = 1 (`RFC9162_SHA256`) and, under the private text label
//!   `cgs.tree_size`, the size of the tree whose root is signed (RFC 9162 paths of some
//!   (index, size) pairs give the same root, so an unsigned size could be changed); the
//!   unprotected header holds `vdp` (396)
//!   = `{-1: [bstr .cbor [tree-size, leaf-index, [+ bstr]]]}` and, under the private text labels
//!   `cgs.tx_id`, `cgs.leaf_input` and `cgs.entry`, the transaction id, the leaf input and the
//!   entry bytes. The payload is detached: it is the Merkle root, which the verifier recomputes.
//! * **JSON**: `{"tx_id","leaf_index","leaf_input","entry","tree_size","inclusion_proof",
//!   "checkpoint"}` where `checkpoint` is the C2SP signed note for `tree_size`.
//!
//! Verification recomputes the leaf from the entry (if given), the root from the inclusion proof,
//! and checks the signature over that root with the node key. A receipt without the entry proves
//! a leaf, not a transaction: the tx id's term is in the entry, so [`VerifiedReceipt::tx_id`] is
//! `None` then (the seqno is still checked against the leaf index).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use coset::{CborSerializable, Label, TaggedCborSerializable};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::TxId;
use crate::entry::{Entry, leaf_input};
use crate::merkle;
use crate::note::{self, VerifierKey};

/// COSE header label `vds` (verifiable data structure).
pub const VDS: i64 = 395;
/// COSE header label `vdp` (verifiable data structure proofs).
pub const VDP: i64 = 396;
/// `vds` value for RFC 9162 over SHA-256.
pub const RFC9162_SHA256: i64 = 1;
/// Proof type of inclusion proofs in `vdp`.
pub const INCLUSION_PROOFS: i64 = -1;
/// Private protected header: the tree size the signed root is of (unsigned integer).
pub const TREE_SIZE_LABEL: &str = "cgs.tree_size";
/// Private unprotected header: the tx id (text).
pub const TX_ID_LABEL: &str = "cgs.tx_id";
/// Private unprotected header: the leaf input (32 bytes).
pub const LEAF_INPUT_LABEL: &str = "cgs.leaf_input";
/// Private unprotected header: the entry bytes.
pub const ENTRY_LABEL: &str = "cgs.entry";

/// The protected header of a node's receipts for the tree of `tree_size`: `{1: -8, 4: kid,
/// 395: 1, "cgs.tree_size": tree_size}`. The node signs it with the root when it signs a
/// checkpoint; every receipt against that checkpoint carries that signature.
pub fn protected_header(kid: &[u8], tree_size: u64) -> coset::Header {
    coset::HeaderBuilder::new()
        .algorithm(coset::iana::Algorithm::EdDSA)
        .key_id(kid.to_vec())
        .value(VDS, ciborium::Value::Integer(RFC9162_SHA256.into()))
        .text_value(TREE_SIZE_LABEL.into(), ciborium::Value::Integer(tree_size.into()))
        .build()
}

/// The bytes a node signs for the root of the tree of `tree_size` (the COSE `Sig_structure` with
/// [`protected_header`] and the root as detached payload).
pub fn signed_root_bytes(kid: &[u8], tree_size: u64, root: &[u8; 32]) -> Vec<u8> {
    coset::CoseSign1Builder::new().protected(protected_header(kid, tree_size)).build().tbs_detached_data(root, b"")
}

/// The JSON form of a receipt (`GET /node/receipt/{tx_id}?format=json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonReceipt {
    /// `<term>.<seqno>`.
    pub tx_id: String,
    /// `seqno - 1`.
    pub leaf_index: u64,
    /// Hex of the bytes hashed as `H(0x00 ‖ leaf_input)`: SHA-256 of the entry.
    pub leaf_input: String,
    /// Base64 of the entry bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// The size of the tree the proof is for.
    pub tree_size: u64,
    /// Hex hashes, leaf to root.
    pub inclusion_proof: Vec<String>,
    /// The signed checkpoint (C2SP note) of `tree_size`.
    pub checkpoint: String,
}

/// What a verified receipt proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    /// The transaction, if the receipt names it and carries its entry (which binds its term).
    pub tx_id: Option<TxId>,
    /// The transaction the receipt names, proven or not: its seqno is checked against the leaf
    /// index; without the entry its term is only claimed.
    pub claimed_tx_id: Option<TxId>,
    /// Leaf index.
    pub leaf_index: u64,
    /// Tree size.
    pub tree_size: u64,
    /// The root the signature covers.
    pub root: [u8; 32],
    /// The leaf input.
    pub leaf_input: [u8; 32],
    /// The decoded entry, if included.
    pub entry: Option<Entry>,
}

/// Why a receipt does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Not a receipt of a known format.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// The entry does not match the leaf or the tx id.
    #[error("the entry does not match the receipt: {0}")]
    EntryMismatch(String),
    /// The inclusion proof is invalid.
    #[error("invalid inclusion proof: {0}")]
    Proof(#[from] merkle::ProofError),
    /// The signature over the root does not verify.
    #[error("the signature over the root does not verify with the given key")]
    BadSignature,
    /// The checkpoint is invalid.
    #[error(transparent)]
    Checkpoint(#[from] note::NoteError),
}

fn malformed(m: impl Into<String>) -> ReceiptError {
    ReceiptError::Malformed(m.into())
}

fn check_entry(entry_bytes: &[u8], leaf: &[u8; 32], index: u64, tx: Option<TxId>) -> Result<Entry, ReceiptError> {
    if &leaf_input(entry_bytes) != leaf {
        return Err(ReceiptError::EntryMismatch("SHA-256 of the entry is not the leaf input".into()));
    }
    let entry = Entry::decode(entry_bytes).map_err(|e| ReceiptError::EntryMismatch(e.to_string()))?;
    if entry.seqno != index + 1 {
        return Err(ReceiptError::EntryMismatch(format!(
            "entry seqno {} is not leaf index {} + 1",
            entry.seqno, index
        )));
    }
    if let Some(t) = tx
        && t != entry.tx_id()
    {
        return Err(ReceiptError::EntryMismatch(format!("entry is {}, receipt says {t}", entry.tx_id())));
    }
    Ok(entry)
}

/// Verify a COSE receipt with the node's Ed25519 key.
pub fn verify_cose(bytes: &[u8], key: &VerifyingKey) -> Result<VerifiedReceipt, ReceiptError> {
    let sign1 = coset::CoseSign1::from_tagged_slice(bytes)
        .or_else(|_| coset::CoseSign1::from_slice(bytes))
        .map_err(|e| malformed(format!("not a COSE_Sign1: {e}")))?;
    if sign1.payload.is_some() {
        return Err(malformed("the payload must be detached (nil): it is the root the verifier recomputes"));
    }
    let p = &sign1.protected.header;
    if p.alg != Some(coset::RegisteredLabelWithPrivate::Assigned(coset::iana::Algorithm::EdDSA)) {
        return Err(malformed("alg is not EdDSA"));
    }
    let vds = p.rest.iter().find(|(l, _)| *l == Label::Int(VDS)).map(|(_, v)| v);
    if vds.and_then(|v| v.as_integer()).map(i128::from) != Some(i128::from(RFC9162_SHA256)) {
        return Err(malformed("vds is not RFC9162_SHA256 (1)"));
    }
    let header = |label: Label| sign1.unprotected.rest.iter().find(|(l, _)| *l == label).map(|(_, v)| v.clone());
    let vdp = header(Label::Int(VDP)).ok_or_else(|| malformed("no vdp header"))?;
    let proofs = vdp
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_integer().map(i128::from) == Some(i128::from(INCLUSION_PROOFS))))
        .and_then(|(_, v)| v.as_array())
        .ok_or_else(|| malformed("vdp has no inclusion proofs"))?;
    let proof_bytes =
        proofs.first().and_then(|p| p.as_bytes()).ok_or_else(|| malformed("inclusion proof is not a bstr"))?;
    let proof: ciborium::Value = ciborium::from_reader(proof_bytes.as_slice())
        .map_err(|e| malformed(format!("inclusion proof is not CBOR: {e}")))?;
    let arr = proof
        .as_array()
        .filter(|a| a.len() == 3)
        .ok_or_else(|| malformed("inclusion proof is not [size, index, path]"))?;
    let num = |v: &ciborium::Value, what: &str| -> Result<u64, ReceiptError> {
        v.as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| malformed(format!("{what} is not an unsigned integer")))
    };
    let tree_size = num(&arr[0], "tree size")?;
    let signed_size = p
        .rest
        .iter()
        .find(|(l, _)| *l == Label::Text(TREE_SIZE_LABEL.into()))
        .and_then(|(_, v)| v.as_integer())
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| malformed("the protected header has no cgs.tree_size: the tree size is not signed"))?;
    if signed_size != tree_size {
        return Err(malformed(format!(
            "the proof is for a tree of {tree_size}, the signature for one of {signed_size}"
        )));
    }
    let leaf_index = num(&arr[1], "leaf index")?;
    let path: Vec<Vec<u8>> = arr[2]
        .as_array()
        .ok_or_else(|| malformed("inclusion path is not an array"))?
        .iter()
        .map(|h| h.as_bytes().cloned().ok_or_else(|| malformed("a path element is not a bstr")))
        .collect::<Result<_, _>>()?;
    let leaf: [u8; 32] = header(Label::Text(LEAF_INPUT_LABEL.into()))
        .and_then(|v| v.as_bytes().cloned())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| malformed("no 32-byte cgs.leaf_input header"))?;
    let tx_id = match header(Label::Text(TX_ID_LABEL.into())) {
        Some(v) => Some(
            v.as_text().and_then(|t| t.parse::<TxId>().ok()).ok_or_else(|| malformed("cgs.tx_id is not a tx id"))?,
        ),
        None => None,
    };
    let entry = match header(Label::Text(ENTRY_LABEL.into())) {
        Some(v) => {
            let b = v.as_bytes().ok_or_else(|| malformed("cgs.entry is not a bstr"))?;
            Some(check_entry(b, &leaf, leaf_index, tx_id)?)
        }
        None => None,
    };
    if tx_id.is_some_and(|t| t.seqno != leaf_index.wrapping_add(1)) {
        return Err(malformed("cgs.tx_id is not the transaction at the leaf index (seqno = leaf index + 1)"));
    }
    let root = merkle::root_from_inclusion_proof(&merkle::leaf_hash(&leaf), leaf_index, tree_size, &path)?;
    sign1.verify_detached_signature(&root, b"", |sig, data| {
        let sig = Signature::from_slice(sig).map_err(|_| ReceiptError::BadSignature)?;
        key.verify_strict(data, &sig).map_err(|_| ReceiptError::BadSignature)
    })?;
    // Without the entry the tx id's term is not bound to anything signed (finding F3).
    let claimed_tx_id = tx_id;
    let tx_id = if entry.is_some() { tx_id } else { None };
    Ok(VerifiedReceipt { tx_id, claimed_tx_id, leaf_index, tree_size, root, leaf_input: leaf, entry })
}

/// Verify a JSON receipt with the node's note verifier key.
pub fn verify_json(r: &JsonReceipt, key: &VerifierKey) -> Result<VerifiedReceipt, ReceiptError> {
    let tx_id: TxId = r.tx_id.parse().map_err(|_| malformed("tx_id is not a tx id"))?;
    let leaf: [u8; 32] = hex::decode(&r.leaf_input)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| malformed("leaf_input is not 32 bytes of hex"))?;
    if tx_id.seqno != r.leaf_index.wrapping_add(1) {
        return Err(malformed("tx_id is not the transaction at leaf_index (seqno = leaf_index + 1)"));
    }
    let entry = match &r.entry {
        Some(e) => Some(check_entry(
            &B64.decode(e).map_err(|_| malformed("entry is not base64"))?,
            &leaf,
            r.leaf_index,
            Some(tx_id),
        )?),
        None => None,
    };
    let path: Vec<Vec<u8>> = r
        .inclusion_proof
        .iter()
        .map(|h| hex::decode(h).map_err(|_| malformed("a proof hash is not hex")))
        .collect::<Result<_, _>>()?;
    let cp = note::verify_checkpoint(&r.checkpoint, std::slice::from_ref(key))?;
    if cp.size != r.tree_size {
        return Err(malformed(format!("checkpoint is for size {}, receipt for {}", cp.size, r.tree_size)));
    }
    merkle::verify_inclusion(&merkle::leaf_hash(&leaf), r.leaf_index, r.tree_size, &path, &cp.root)?;
    Ok(VerifiedReceipt {
        // Without the entry the tx id's term is not bound to anything signed (finding F3).
        tx_id: entry.is_some().then_some(tx_id),
        claimed_tx_id: Some(tx_id),
        leaf_index: r.leaf_index,
        tree_size: r.tree_size,
        root: cp.root,
        leaf_input: leaf,
        entry,
    })
}

/// Verify a receipt in either encoding (JSON if it parses as JSON, else COSE).
pub fn verify(bytes: &[u8], key: &VerifierKey) -> Result<VerifiedReceipt, ReceiptError> {
    match serde_json::from_slice::<JsonReceipt>(bytes) {
        Ok(r) => verify_json(&r, key),
        Err(_) => verify_cose(bytes, &key.key),
    }
}
