//! The node's data file, `DIR/ledger.redb` (format 2): the tables the host writes and offline
//! verification reads. Byte layouts are in `docs/ledger.md`.

use cgs_core::TxId;
use redb::TableDefinition;

/// The file name of the ledger database in the data directory.
pub const FILE_NAME: &str = "ledger.redb";
/// The format version stored under `meta["format"]`.
pub const FORMAT_VERSION: u32 = 2;

/// The replicated (raft) log: raft index → encoded [`cgs_core::entry::RaftRecord`].
pub const RAFT_LOG: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("raft_log");
/// The ledger: seqno → encoded [`cgs_core::entry::Entry`], written as records are applied (the
/// expansion of the raft log).
pub const LEDGER: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("ledger");
/// Small records: `format`, `origin`, `vote`, `committed`, `purged`, `applied` (raft log ids as
/// JSON), `membership` (JSON), `ledger_size`, `last_non_signature`, `last_checkpoint` (u64).
pub const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
/// Applied state: `table ‖ 0x00 ‖ key` → `term u64 ‖ seqno u64 ‖ value`.
pub const STATE: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("state");
/// Table versions: table → `term u64 ‖ seqno u64` of its last write.
pub const TABLE_VERSIONS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("table_versions");
/// Merkle nodes of complete aligned subtrees: `(level, index)` → 32-byte hash. Level 0 holds the
/// leaf hashes.
pub const MERKLE: TableDefinition<'static, (u8, u64), &[u8]> = TableDefinition::new("merkle");
/// Seqnos of transactions that failed their read-set check at apply time.
pub const INVALID: TableDefinition<'static, u64, ()> = TableDefinition::new("invalid");
/// Checkpoints: tree size → seqno of the signature entry holding it.
pub const CHECKPOINTS: TableDefinition<'static, u64, u64> = TableDefinition::new("checkpoints");

/// `table ‖ 0x00 ‖ key`.
pub fn state_key(table: &str, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(table.len() + 1 + key.len());
    k.extend_from_slice(table.as_bytes());
    k.push(0);
    k.extend_from_slice(key);
    k
}

/// Split a state key into table and key.
pub fn split_state_key(k: &[u8]) -> Option<(&str, &[u8])> {
    let i = k.iter().position(|b| *b == 0)?;
    Some((std::str::from_utf8(&k[..i]).ok()?, &k[i + 1..]))
}

/// `term ‖ seqno` (16 bytes, big-endian).
pub fn encode_tx_id(t: TxId) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&t.term.to_be_bytes());
    b[8..].copy_from_slice(&t.seqno.to_be_bytes());
    b
}

/// Inverse of [`encode_tx_id`].
pub fn decode_tx_id(b: &[u8]) -> Option<TxId> {
    if b.len() < 16 {
        return None;
    }
    let mut t = [0u8; 8];
    let mut s = [0u8; 8];
    t.copy_from_slice(&b[..8]);
    s.copy_from_slice(&b[8..16]);
    Some(TxId::new(u64::from_be_bytes(t), u64::from_be_bytes(s)))
}

/// `version ‖ value` as stored in [`STATE`].
pub fn encode_versioned(version: TxId, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + value.len());
    v.extend_from_slice(&encode_tx_id(version));
    v.extend_from_slice(value);
    v
}

/// Inverse of [`encode_versioned`].
pub fn decode_versioned(b: &[u8]) -> Option<(TxId, &[u8])> {
    Some((decode_tx_id(b)?, &b[16..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip() {
        let k = state_key("contracts.contracts", b"c\0d");
        assert_eq!(k, b"contracts.contracts\0c\0d");
        assert_eq!(split_state_key(&k), Some(("contracts.contracts", &b"c\0d"[..])));
        assert_eq!(split_state_key(b"no separator"), None);
        let v = TxId::new(2, 0x0102);
        assert_eq!(encode_tx_id(v), [0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(decode_tx_id(&encode_tx_id(v)), Some(v));
        assert_eq!(decode_tx_id(&[0; 15]), None);
        let stored = encode_versioned(v, b"value");
        assert_eq!(decode_versioned(&stored), Some((v, &b"value"[..])));
    }
}
