//! `cgs_core::node_attestation::verify_signature`: the node attestation document
//! (`GET /node/attestation`) that `cgs` checks before trusting a node — evidence, node key, TLS
//! certificate and plugin set, signed by the node key over a canonical re-serialization.
//!
//! The input is the document as received (JSON). The CLI also reads the embedded evidence
//! (`Evidence::from_json(doc["evidence"].to_string())`), done here too.
//!
//! Properties:
//! * verification is deterministic and returns the key the document names;
//! * the signature covers the document, not its encoding: a verified document re-serialized
//!   (keys sorted, no whitespace) verifies too, with the same signed bytes;
//! * a single-byte mutation of a verified document that still verifies has the same signed
//!   bytes (only whitespace or encoding changed, never content).
#![no_main]

use base64::Engine as _;
use cgs_core::node_attestation::{signed_bytes, verify_signature};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(e) = cgs_attestation::Evidence::from_json(doc["evidence"].to_string().as_bytes()) {
        let _ = e.check_shape();
    }
    let a = verify_signature(&doc);
    assert_eq!(a, verify_signature(&doc), "verification is not deterministic");
    let Ok(key) = a else { return };
    let named = base64::engine::general_purpose::STANDARD.decode(doc["node_public_key"].as_str().unwrap()).unwrap();
    assert_eq!(key.as_bytes()[..], named[..]);
    let signed = signed_bytes(&doc);
    let again: serde_json::Value = serde_json::from_str(&doc.to_string()).unwrap();
    assert_eq!(verify_signature(&again).ok(), Some(key), "the re-serialized document does not verify");
    assert_eq!(signed_bytes(&again), signed);
    for m in cgs_fuzz::mutations(data, 8) {
        let Ok(d) = serde_json::from_slice::<serde_json::Value>(&m) else { continue };
        if verify_signature(&d).is_ok() {
            assert_eq!(signed_bytes(&d), signed, "a mutated document verifies with other content");
        }
    }
});
