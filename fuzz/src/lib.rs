//! Shared code of the CGS fuzz targets and of the seed generator (`src/bin/seed.rs`).
//!
//! * fixed test keys (governance member, node, JWT issuer), so that seeds signed by the
//!   generator verify inside the targets;
//! * the deterministic SEV-SNP test PKI of `attestation/tests/generated.rs`;
//! * host sources that have no heavy dependencies, compiled here with `#[path]` (the fuzz crate
//!   must not depend on `cgs-host`, which pulls in wasmtime): `host/src/auth/users.rs` (user JWTs),
//!   `host/src/auth/jwt.rs` (member and clean-room tokens) and `host/src/http/request.rs` (path
//!   and query parsing, with a small `ApiError` shim).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod host_http;
pub mod snp_pki;

/// `host/src/auth/users.rs`: JWTs of governance-registered issuers (`parse`, `verify`).
#[path = "../../host/src/auth/users.rs"]
pub mod users;

/// `host/src/auth/jwt.rs`: the service's own EdDSA member / clean-room tokens.
#[path = "../../host/src/auth/jwt.rs"]
pub mod jwt;

/// `host/src/fsutil.rs` (std only): what `jwt.rs` uses to load its key.
#[path = "../../host/src/fsutil.rs"]
pub mod fsutil;

use ed25519_dalek::SigningKey;

/// The governance member key of the seeds (the one `sdk/core/src/gov.rs`'s tests use).
pub fn member_key() -> SigningKey {
    SigningKey::from_bytes(&[5; 32])
}

/// Origin (checkpoint key name) of the test node.
pub const ORIGIN: &str = "cgs/fuzz";

/// The test node's key: signs checkpoints and COSE receipts.
pub fn node_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// The test node's C2SP verifier key.
pub fn node_verifier() -> cgs_core::note::VerifierKey {
    cgs_core::note::VerifierKey::new(ORIGIN, &node_key().verifying_key().to_bytes()).unwrap()
}

/// The key of the test JWT issuer (EdDSA).
pub fn issuer_key() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

/// Issuer of the test user JWTs.
pub const ISSUER: &str = "https://idp.fuzz";
/// Audience the test issuer record requires.
pub const AUDIENCE: &str = "cgs";
/// "Now" of every time-dependent check: 2026-12-02T00:00:00Z (as the attestation tests).
pub const NOW_SECS: u64 = 1_796_169_600;

/// RFC 7515 A.2 RSA key (n, e) and A.3 P-256 key (x, y), base64url.
pub const RFC7515_RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
pub const RFC7515_EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
pub const RFC7515_EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

/// The issuer record the `jwt` target verifies user tokens against: the EdDSA test key
/// (`kid` "k1"), the RFC 7515 RSA and P-256 keys (no `kid`), audience [`AUDIENCE`].
pub fn issuer_record() -> serde_json::Value {
    serde_json::json!({
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks": {"keys": [
            users::ed25519_jwk(&issuer_key().verifying_key(), "k1"),
            {"kty": "RSA", "n": RFC7515_RSA_N, "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "x": RFC7515_EC_X, "y": RFC7515_EC_Y},
        ]}
    })
}

/// Seed of the service token key of the `jwt` target.
pub const TOKEN_SEED: [u8; 32] = [13; 32];

/// The service's token key (as `host/src/auth/jwt.rs` loads it), issuer [`ORIGIN`].
pub fn token_key() -> jwt::TokenKey {
    let dir = std::env::temp_dir().join(format!("cgs-fuzz-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token-signing.key");
    std::fs::write(&path, TOKEN_SEED).unwrap();
    let k = jwt::TokenKey::load_or_create(&path, ORIGIN).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    k
}

/// Cheap deterministic hash of the input, to choose mutation positions reproducibly.
pub fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Up to `n` distinct single-byte mutations of `data` (position and XOR mask chosen from its
/// hash): what "a mutated valid input" means in the properties.
pub fn mutations(data: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if data.is_empty() {
        return out;
    }
    let mut h = fnv(data);
    for _ in 0..n {
        h = h.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let pos = (h >> 33) as usize % data.len();
        let mask = ((h >> 17) as u8) | 1;
        let mut m = data.to_vec();
        m[pos] ^= mask;
        out.push(m);
    }
    out
}

/// Cose receipt as the host encodes it (`host/src/ledger/signer.rs::encode_cose_receipt`).
pub mod receipts {
    use super::*;
    use ciborium::Value;
    use coset::{CborSerializable, TaggedCborSerializable};
    use ed25519_dalek::Signer;
    use sha2::{Digest, Sha256};

    pub fn kid(key: &SigningKey) -> Vec<u8> {
        Sha256::digest(key.verifying_key().as_bytes()).to_vec()
    }

    /// Sign the COSE Sig_structure of a receipt with detached payload `root` of a tree of `size`.
    pub fn sign_root(key: &SigningKey, size: u64, root: &[u8; 32]) -> [u8; 64] {
        key.sign(&cgs_core::receipt::signed_root_bytes(&kid(key), size, root)).to_bytes()
    }

    /// A C2SP checkpoint note of `size`/`root` signed by `key` under [`ORIGIN`].
    pub fn checkpoint(key: &SigningKey, size: u64, root: &[u8; 32]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let text = format!("{ORIGIN}\n{size}\n{}\n", b64.encode(root));
        let pk = key.verifying_key().to_bytes();
        let mut raw = cgs_core::note::key_id(ORIGIN, &pk).to_vec();
        raw.extend_from_slice(&key.sign(text.as_bytes()).to_bytes());
        format!("{text}\n\u{2014} {ORIGIN} {}\n", b64.encode(raw))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn cose(
        key: &SigningKey,
        tree_size: u64,
        leaf_index: u64,
        path: &[[u8; 32]],
        root: &[u8; 32],
        tx_id: Option<&str>,
        leaf_input: &[u8; 32],
        entry: Option<&[u8]>,
        tagged: bool,
    ) -> Vec<u8> {
        let proof = Value::Array(vec![
            Value::Integer(tree_size.into()),
            Value::Integer(leaf_index.into()),
            Value::Array(path.iter().map(|h| Value::Bytes(h.to_vec())).collect()),
        ]);
        let mut proof_bytes = Vec::new();
        ciborium::into_writer(&proof, &mut proof_bytes).unwrap();
        let vdp = Value::Map(vec![(
            Value::Integer(cgs_core::receipt::INCLUSION_PROOFS.into()),
            Value::Array(vec![Value::Bytes(proof_bytes)]),
        )]);
        let mut unprotected = coset::HeaderBuilder::new().value(cgs_core::receipt::VDP, vdp);
        if let Some(t) = tx_id {
            unprotected = unprotected.text_value(cgs_core::receipt::TX_ID_LABEL.into(), Value::Text(t.into()));
        }
        unprotected =
            unprotected.text_value(cgs_core::receipt::LEAF_INPUT_LABEL.into(), Value::Bytes(leaf_input.to_vec()));
        if let Some(e) = entry {
            unprotected = unprotected.text_value(cgs_core::receipt::ENTRY_LABEL.into(), Value::Bytes(e.to_vec()));
        }
        let sign1 = coset::CoseSign1Builder::new()
            .protected(cgs_core::receipt::protected_header(&kid(key), tree_size))
            .unprotected(unprotected.build())
            .signature(sign_root(key, tree_size, root).to_vec())
            .build();
        if tagged { sign1.to_tagged_vec().unwrap() } else { sign1.to_vec().unwrap() }
    }
}
