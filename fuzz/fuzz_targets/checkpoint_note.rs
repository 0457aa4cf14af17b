//! `cgs_core::note`: C2SP signed notes and tlog checkpoints (what receipts carry and signature
//! entries hold), and verifier key strings (`--node-key`).
//!
//! Properties:
//! * `SignedNote::parse` is the inverse of the obvious serialization: a parsed note re-serializes
//!   to exactly the input (text, blank line, `— name base64(id‖sig)` lines);
//! * `Checkpoint::parse(t)` ⇒ `to_text() == t`; `VerifierKey::parse(s)` ⇒ `to_string() == s`;
//! * `verify_checkpoint` succeeds exactly when parse, verify and checkpoint parse all do;
//! * no single-byte mutation of a note that verifies with the test key verifies with a
//!   different text.
#![no_main]

use base64::Engine as _;
use cgs_core::note::{Checkpoint, SignedNote, VerifierKey, verify_checkpoint};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static KEYS: LazyLock<Vec<VerifierKey>> = LazyLock::new(|| vec![cgs_fuzz::node_verifier()]);

fn serialize(n: &SignedNote) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut s = format!("{}\n", n.text);
    for sig in &n.signatures {
        let mut raw = sig.id.to_vec();
        raw.extend_from_slice(&sig.signature);
        s.push_str(&format!("\u{2014} {} {}\n", sig.name, b64.encode(raw)));
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };

    if let Ok(k) = VerifierKey::parse(s) {
        assert_eq!(k.to_string(), s, "a verifier key does not round-trip");
    }
    if let Ok(c) = Checkpoint::parse(s) {
        assert_eq!(c.to_text(), s, "a checkpoint does not round-trip");
    }

    let parsed = SignedNote::parse(s);
    let full = verify_checkpoint(s, &KEYS);
    let Ok(note) = parsed else {
        assert!(full.is_err());
        return;
    };
    assert_eq!(serialize(&note), s, "a signed note does not round-trip");
    assert!(note.text.ends_with('\n'));
    let verified = note.verify(&KEYS);
    let body = Checkpoint::parse(&note.text);
    match (&verified, &body) {
        (Ok(_), Ok(c)) => assert_eq!(full.as_ref().ok(), Some(c)),
        _ => assert!(full.is_err()),
    }
    if verified.is_ok() {
        for m in cgs_fuzz::mutations(data, 8) {
            let Ok(ms) = std::str::from_utf8(&m) else { continue };
            if let Ok(n2) = SignedNote::parse(ms)
                && n2.verify(&KEYS).is_ok()
            {
                assert_eq!(n2.text, note.text, "a mutated note verifies with another text");
            }
        }
    }
});
