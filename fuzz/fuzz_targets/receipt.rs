//! `cgs_core::receipt::verify`: what `cgs receipt verify FILE --node-key K` reads, a COSE
//! receipt or a JSON receipt (with its C2SP checkpoint), verified with the test node key.
//!
//! Properties:
//! * verification is deterministic;
//! * a verified receipt is consistent: `leaf_index < tree_size`; a named tx id is the entry at
//!   leaf `leaf_index` (`seqno == leaf_index + 1`); an included entry re-encodes to bytes whose
//!   SHA-256 is the leaf input and has that tx id;
//! * no single-byte mutation of a verified receipt verifies to *different* facts (tx id, leaf
//!   index, tree size, root, leaf input, entry): unsigned headers may be re-encoded or dropped,
//!   but what the receipt proves may not change (findings F3 and F4 of RELIABILITY.md, both
//!   fixed: an entry-less receipt reports no tx id, a COSE receipt's tree size is signed);
//! * a receipt without the entry never reports a tx id (its term would be unbound);
//! * a JSON receipt that deserializes re-serializes to an equal value.
#![no_main]

use cgs_core::receipt::{JsonReceipt, VerifiedReceipt, verify};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

static KEY: LazyLock<cgs_core::note::VerifierKey> = LazyLock::new(cgs_fuzz::node_verifier);

fn check_consistent(v: &VerifiedReceipt) {
    assert!(v.leaf_index < v.tree_size, "leaf {} outside a tree of {}", v.leaf_index, v.tree_size);
    if let Some(t) = v.tx_id {
        assert_eq!(t.seqno, v.leaf_index + 1, "the receipt names tx {t} but proves leaf {}", v.leaf_index);
        assert_eq!(v.claimed_tx_id, Some(t));
    }
    if let Some(t) = v.claimed_tx_id {
        assert_eq!(t.seqno, v.leaf_index + 1, "the receipt claims tx {t} but proves leaf {}", v.leaf_index);
    }
    if let Some(e) = &v.entry {
        let bytes = e.encode();
        assert_eq!(<[u8; 32]>::from(Sha256::digest(&bytes)), v.leaf_input);
        assert_eq!(e.seqno, v.leaf_index + 1);
        if let Some(t) = v.tx_id {
            assert_eq!(e.tx_id(), t);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(j) = serde_json::from_slice::<JsonReceipt>(data) {
        let again: JsonReceipt = serde_json::from_slice(&serde_json::to_vec(&j).unwrap()).unwrap();
        assert_eq!(again, j);
    }
    let a = verify(data, &KEY);
    let b = verify(data, &KEY);
    assert_eq!(a, b, "verification is not deterministic");
    let Ok(v) = a else { return };
    check_consistent(&v);
    assert!(v.entry.is_some() || v.tx_id.is_none(), "an entry-less receipt named a transaction");
    for m in cgs_fuzz::mutations(data, 8) {
        if let Ok(w) = verify(&m, &KEY) {
            check_consistent(&w);
            // Unsigned headers may be dropped (the tx id, the entry), never changed.
            let same = w.leaf_index == v.leaf_index
                && w.tree_size == v.tree_size
                && w.root == v.root
                && w.leaf_input == v.leaf_input
                && (w.tx_id.is_none() || v.tx_id.is_none() || w.tx_id == v.tx_id)
                && (w.entry.is_none() || v.entry.is_none() || w.entry == v.entry);
            assert!(same, "a mutated receipt verifies to different facts:\n{v:?}\n{w:?}");
        }
    }
});
