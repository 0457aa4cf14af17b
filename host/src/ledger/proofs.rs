//! Reading the ledger back: entries (and their encrypted parts, opened), receipts, checkpoints,
//! consistency proofs and the state digest.

use std::sync::atomic::Ordering;

use base64::Engine as _;
use cgs_core::TxId;
use cgs_core::entry::{self, Payload, SignatureEntry};
use cgs_ledger_format::store_format as fmt;
use redb::{ReadableDatabase, ReadableTable};

use super::state_machine::read_node;
use super::{Ledger, LedgerError, ReceiptData, TxStatus, db_err, merkle, signer};
use crate::store::Store as _;

impl Ledger {
    /// The entry at `tx` as stored (private values and signed messages encrypted) and decoded;
    /// `NotFound` unless `tx` is an applied entry of that term.
    pub fn entry(&self, tx: TxId) -> Result<(Vec<u8>, entry::Entry), LedgerError> {
        if self.status(tx)?.is_none() {
            return Err(LedgerError::NotFound(format!("no transaction {tx}")));
        }
        let rtx = self.shared.db.begin_read().map_err(db_err)?;
        let bytes = self.entry_bytes(&rtx, tx.seqno)?;
        let e = entry::Entry::decode(&bytes).map_err(db_err)?;
        if e.tx_id() != tx {
            return Err(LedgerError::NotFound(format!("no transaction {tx} (seqno {} is {})", tx.seqno, e.tx_id())));
        }
        Ok((bytes, e))
    }

    /// The signed governance message an entry records (decrypted), if any.
    pub fn open_envelope(&self, t: &entry::Transaction) -> Result<Option<Vec<u8>>, LedgerError> {
        if t.envelope.is_empty() {
            return Ok(None);
        }
        self.secret.decrypt_envelope(&t.request_digest, &t.envelope).map(Some).map_err(db_err)
    }

    /// The plaintext of a value written at `key` of `table` (decrypted if the table is private).
    pub fn open_value(&self, table: &str, key: &[u8], stored: &[u8]) -> Result<Vec<u8>, LedgerError> {
        if entry::is_private_table(table) {
            self.secret.decrypt(table, key, stored).map_err(db_err)
        } else {
            Ok(stored.to_vec())
        }
    }

    fn entry_bytes(&self, rtx: &redb::ReadTransaction, seqno: u64) -> Result<Vec<u8>, LedgerError> {
        let log = rtx.open_table(fmt::LEDGER).map_err(db_err)?;
        let v = log.get(seqno).map_err(db_err)?.ok_or_else(|| LedgerError::NotFound(format!("no entry {seqno}")))?;
        Ok(v.value().to_vec())
    }

    /// The signature entry of the first checkpoint whose tree contains `seqno`.
    fn covering_checkpoint(
        &self,
        rtx: &redb::ReadTransaction,
        seqno: u64,
    ) -> Result<Option<SignatureEntry>, LedgerError> {
        let cps = rtx.open_table(fmt::CHECKPOINTS).map_err(db_err)?;
        let Some(found) = cps.range(seqno..).map_err(db_err)?.next() else { return Ok(None) };
        let (_, sig_seqno) = found.map_err(db_err)?;
        let bytes = self.entry_bytes(rtx, sig_seqno.value())?;
        match entry::Entry::decode(&bytes).map_err(db_err)?.payload {
            Payload::Signature(s) => Ok(Some(s)),
            _ => Err(LedgerError::Db(format!(
                "checkpoint index points at entry {} which is not a signature",
                sig_seqno.value()
            ))),
        }
    }

    /// A receipt for a committed transaction.
    pub fn receipt(&self, tx: TxId, with_entry: bool) -> Result<ReceiptData, LedgerError> {
        match self.status(tx)? {
            Some(TxStatus::Committed) => {}
            Some(TxStatus::Pending) => {
                return Err(LedgerError::NotReady(format!("transaction {tx} is not committed yet")));
            }
            Some(TxStatus::Invalid) => {
                return Err(LedgerError::Invalid(format!(
                    "transaction {tx} is invalid: it was not committed at this id"
                )));
            }
            None => return Err(LedgerError::NotFound(format!("no transaction {tx}"))),
        }
        let rtx = self.shared.db.begin_read().map_err(db_err)?;
        let sig = self
            .covering_checkpoint(&rtx, tx.seqno)?
            .ok_or_else(|| LedgerError::NotReady(format!("no signed checkpoint covers {tx} yet; retry shortly")))?;
        let nodes = ReadNodes(rtx.open_table(fmt::MERKLE).map_err(db_err)?);
        let path = merkle::inclusion_proof(&nodes, tx.seqno - 1, sig.tree_size).map_err(LedgerError::Db)?;
        let bytes = self.entry_bytes(&rtx, tx.seqno)?;
        let leaf_input = entry::leaf_input(&bytes);
        let kid = self.node_kid(sig.node_id)?;
        let cose = signer::encode_cose_receipt(&signer::ReceiptParts {
            kid: &kid,
            tree_size: sig.tree_size,
            leaf_index: tx.seqno - 1,
            path: &path,
            signature: &sig.cose_signature,
            tx_id: tx,
            leaf_input: &leaf_input,
            entry: with_entry.then_some(bytes.as_slice()),
        });
        let json = cgs_core::receipt::JsonReceipt {
            tx_id: tx.to_string(),
            leaf_index: tx.seqno - 1,
            leaf_input: hex::encode(leaf_input),
            entry: with_entry.then(|| base64::engine::general_purpose::STANDARD.encode(&bytes)),
            tree_size: sig.tree_size,
            inclusion_proof: path.iter().map(hex::encode).collect(),
            checkpoint: sig.note,
        };
        Ok(ReceiptData { cose, json })
    }

    /// The COSE `kid` of a node: SHA-256 of its public key (this node's, or one recorded).
    fn node_kid(&self, node_id: u64) -> Result<Vec<u8>, LedgerError> {
        if node_id == self.node_id {
            return Ok(self.signer.kid().to_vec());
        }
        let snap = self.snapshot().map_err(db_err)?;
        let rec = snap
            .get("sys.nodes", &node_id.to_be_bytes())
            .map_err(db_err)?
            .ok_or_else(|| LedgerError::Db(format!("node {node_id} has no recorded key")))?;
        let id: serde_json::Value = serde_json::from_slice(&rec.value).map_err(db_err)?;
        let pk = base64::engine::general_purpose::STANDARD
            .decode(id["public_key"].as_str().unwrap_or_default())
            .map_err(db_err)?;
        use sha2::Digest;
        Ok(sha2::Sha256::digest(pk).to_vec())
    }

    /// Roots of the latest `n` checkpoints, newest first.
    pub fn recent_checkpoint_roots(&self, n: usize) -> Result<Vec<[u8; 32]>, LedgerError> {
        let rtx = self.shared.db.begin_read().map_err(db_err)?;
        let cps = rtx.open_table(fmt::CHECKPOINTS).map_err(db_err)?;
        let mut out = Vec::new();
        for r in cps.iter().map_err(db_err)?.rev().take(n) {
            let (_, seqno) = r.map_err(db_err)?;
            if let Payload::Signature(s) =
                entry::Entry::decode(&self.entry_bytes(&rtx, seqno.value())?).map_err(db_err)?.payload
            {
                out.push(s.root);
            }
        }
        Ok(out)
    }

    /// The latest signed checkpoint (C2SP note text).
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, LedgerError> {
        let size = self.shared.last_checkpoint.load(Ordering::Acquire);
        if size == 0 {
            return Ok(None);
        }
        let rtx = self.shared.db.begin_read().map_err(db_err)?;
        Ok(self.covering_checkpoint(&rtx, size)?.map(|s| (s.tree_size, s.note)))
    }

    /// A consistency proof between two tree sizes (both ≤ the applied size), with the signed
    /// checkpoints of those sizes when they exist.
    pub fn consistency(&self, from: u64, to: u64) -> Result<serde_json::Value, LedgerError> {
        let applied = self.shared.applied.load(Ordering::Acquire);
        if from == 0 || from > to {
            return Err(LedgerError::Invalid(format!("a consistency proof needs 0 < from ≤ to (got {from}, {to})")));
        }
        if to > applied {
            return Err(LedgerError::Invalid(format!("the tree has {applied} entries; `to` must not exceed that")));
        }
        let rtx = self.shared.db.begin_read().map_err(db_err)?;
        let (proof, root_from, root_to) = proof_between(&rtx, from, to)?;
        let cps = rtx.open_table(fmt::CHECKPOINTS).map_err(db_err)?;
        let note_of = |size: u64| -> Result<Option<String>, LedgerError> {
            match cps.get(size).map_err(db_err)? {
                Some(s) => match entry::Entry::decode(&self.entry_bytes(&rtx, s.value())?).map_err(db_err)?.payload {
                    Payload::Signature(sig) => Ok(Some(sig.note)),
                    _ => Ok(None),
                },
                None => Ok(None),
            }
        };
        Ok(serde_json::json!({
            "from": from,
            "to": to,
            "root_from": hex::encode(root_from),
            "root_to": hex::encode(root_to),
            "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
            "checkpoint_from": note_of(from)?,
            "checkpoint_to": note_of(to)?,
        }))
    }

    /// A digest of everything applied: `(applied, Merkle root, SHA-256 over the raw state and
    /// table versions)`. Equal on replicas that applied the same log.
    pub fn state_digest(&self) -> Result<(u64, String, String), LedgerError> {
        use sha2::Digest;
        let rtx = self.shared.db.begin_read().map_err(db_err)?;
        let applied = self.shared.applied.load(Ordering::Acquire);
        let nodes = ReadNodes(rtx.open_table(fmt::MERKLE).map_err(db_err)?);
        let root = merkle::root(&nodes, applied).map_err(LedgerError::Db)?;
        let mut h = sha2::Sha256::new();
        for table in [fmt::STATE] {
            let t = rtx.open_table(table).map_err(db_err)?;
            for r in t.iter().map_err(db_err)? {
                let (k, v) = r.map_err(db_err)?;
                h.update((k.value().len() as u64).to_be_bytes());
                h.update(k.value());
                h.update((v.value().len() as u64).to_be_bytes());
                h.update(v.value());
            }
        }
        let versions = rtx.open_table(fmt::TABLE_VERSIONS).map_err(db_err)?;
        for r in versions.iter().map_err(db_err)? {
            let (k, v) = r.map_err(db_err)?;
            h.update(k.value().as_bytes());
            h.update(v.value());
        }
        Ok((applied, hex::encode(root), hex::encode(h.finalize())))
    }
}

/// Merkle nodes from a read transaction.
pub(super) struct ReadNodes(pub(super) redb::ReadOnlyTable<(u8, u64), &'static [u8]>);

impl merkle::Nodes for ReadNodes {
    fn node(&self, level: u8, index: u64) -> Result<merkle::Hash, String> {
        read_node(&self.0, level, index)
    }
}

/// The consistency proof from `from` to `to` entries, and the root at `to`, read from the
/// ledger file in `dir` (opened read-only, without raft): what a recovering node shows members
/// who hold a checkpoint of their own (docs/cluster.md "Recovery").
pub fn consistency_in_file(
    dir: &std::path::Path,
    from: u64,
    to: u64,
) -> Result<(Vec<merkle::Hash>, merkle::Hash), LedgerError> {
    if from == 0 || from > to {
        return Err(LedgerError::Invalid(format!("a consistency proof needs 0 < from ≤ to (got {from}, {to})")));
    }
    let db = redb::ReadOnlyDatabase::open(dir.join(fmt::FILE_NAME)).map_err(db_err)?;
    let (proof, _, root) = proof_between(&db.begin_read().map_err(db_err)?, from, to)?;
    Ok((proof, root))
}

/// The consistency proof from `from` to `to` entries and the roots at both sizes, from the
/// Merkle nodes `rtx` sees.
fn proof_between(
    rtx: &redb::ReadTransaction,
    from: u64,
    to: u64,
) -> Result<(Vec<merkle::Hash>, merkle::Hash, merkle::Hash), LedgerError> {
    let nodes = ReadNodes(rtx.open_table(fmt::MERKLE).map_err(db_err)?);
    let proof = merkle::consistency_proof(&nodes, from, to).map_err(LedgerError::Db)?;
    let root_from = merkle::root(&nodes, from).map_err(LedgerError::Db)?;
    let root_to = merkle::root(&nodes, to).map_err(LedgerError::Db)?;
    Ok((proof, root_from, root_to))
}
