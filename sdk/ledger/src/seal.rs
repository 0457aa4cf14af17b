//! The construction every seal to one key uses, in one place: RFC 9180 HPKE base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, single-shot. Used by the host
//! (ledger secret versions sealed to node keys in `sys.ledger_secrets`, recovery shares sealed to
//! members in `sys.recovery`, the service's secrets sealed to a joining node, a clean-room secret
//! released to a session's key) and by the client (a member opens its recovery share and seals it
//! to the recovering node). Each use keeps its own `info` beside its record (the recovery ones are
//! in [`crate::recovery`], shared by both sides).
//!
//! An Ed25519 key is used in its X25519 form (RFC 7748 birational map): the key a node's
//! evidence binds, or a member's signing key, is the only one that opens what is sealed to it
//! (the same key pair for Ed25519 signatures and an X25519 KEM is analysed in eprint 2021/509).
//! `enc` and the ciphertext travel as standard base64.

use base64::Engine as _;
use hpke::{Deserializable as _, Serializable as _};

type Kem = hpke::kem::X25519HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;
type Kdf = hpke::kdf::HkdfSha256;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why something could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// A key, `enc` or the ciphertext is not what it must be (length, base64, a point): the
    /// message says which.
    #[error("{0}")]
    Malformed(String),
    /// Well-formed, but it does not open with this key and info/aad.
    #[error("it does not open with this key (sealed to another key, or altered)")]
    DoesNotOpen,
}

fn malformed(what: impl std::fmt::Display) -> SealError {
    SealError::Malformed(what.to_string())
}

/// Seal `plain` to the X25519 public key `public`: `(enc, ciphertext)` in base64.
pub fn seal_x25519(public: &[u8], info: &[u8], aad: &str, plain: &[u8]) -> Result<(String, String), SealError> {
    let pk =
        <Kem as hpke::Kem>::PublicKey::from_bytes(public).map_err(|e| malformed(format!("not an X25519 key: {e}")))?;
    let (enc, ct) = hpke::single_shot_seal::<Aead, Kdf, Kem, _>(
        &hpke::OpModeS::Base,
        &pk,
        info,
        plain,
        aad.as_bytes(),
        &mut rand::rngs::OsRng,
    )
    .map_err(|e| malformed(format!("HPKE: {e}")))?;
    Ok((B64.encode(enc.to_bytes()), B64.encode(ct)))
}

/// Open what [`seal_x25519`] sealed, with the X25519 private key `secret`.
pub fn open_x25519(secret: &[u8], info: &[u8], aad: &str, enc: &str, ciphertext: &str) -> Result<Vec<u8>, SealError> {
    let sk =
        <Kem as hpke::Kem>::PrivateKey::from_bytes(secret).map_err(|e| malformed(format!("not an X25519 key: {e}")))?;
    let enc = B64.decode(enc).map_err(|e| malformed(format!("enc is not base64: {e}")))?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc).map_err(|e| malformed(format!("enc: {e}")))?;
    let ct = B64.decode(ciphertext).map_err(|e| malformed(format!("the ciphertext is not base64: {e}")))?;
    hpke::single_shot_open::<Aead, Kdf, Kem>(&hpke::OpModeR::Base, &sk, &enc, info, &ct, aad.as_bytes())
        .map_err(|_| SealError::DoesNotOpen)
}

/// Seal `plain` to the Ed25519 public key `key` in its X25519 form: `(enc, ciphertext)` in
/// base64.
pub fn seal_to_ed25519(key: &[u8; 32], info: &[u8], aad: &str, plain: &[u8]) -> Result<(String, String), SealError> {
    let ed = ed25519_dalek::VerifyingKey::from_bytes(key).map_err(|e| malformed(format!("not an Ed25519 key: {e}")))?;
    seal_x25519(ed.to_montgomery().as_bytes(), info, aad, plain)
}

/// Open what [`seal_to_ed25519`] sealed, with the Ed25519 signing key.
pub fn open_with_ed25519(
    key: &ed25519_dalek::SigningKey,
    info: &[u8],
    aad: &str,
    enc: &str,
    ciphertext: &str,
) -> Result<Vec<u8>, SealError> {
    open_x25519(&key.to_scalar_bytes(), info, aad, enc, ciphertext)
}

/// The X25519 key pair derived from a 32-byte seed (HPKE's `DeriveKeyPair`): `(private,
/// public)`.
pub fn x25519_keypair(seed: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    use hpke::Kem as _;
    let (sk, pk) = Kem::derive_keypair(seed);
    (sk.to_bytes().into(), pk.to_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_to_an_ed25519_key_opens_only_with_it_and_its_aad() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let (enc, ct) = seal_to_ed25519(&key.verifying_key().to_bytes(), b"info", "aad", b"secret").unwrap();
        assert_eq!(open_with_ed25519(&key, b"info", "aad", &enc, &ct).unwrap(), b"secret");
        assert_eq!(open_with_ed25519(&other, b"info", "aad", &enc, &ct), Err(SealError::DoesNotOpen), "another key");
        assert!(open_with_ed25519(&key, b"info", "other aad", &enc, &ct).is_err(), "another aad");
        assert!(open_with_ed25519(&key, b"other info", "aad", &enc, &ct).is_err(), "another info");
        let mut altered = B64.decode(&ct).unwrap();
        altered[0] ^= 1;
        assert!(open_with_ed25519(&key, b"info", "aad", &enc, &B64.encode(altered)).is_err(), "altered");
        assert!(matches!(open_with_ed25519(&key, b"info", "aad", "not base64!", &ct), Err(SealError::Malformed(_))));
    }

    #[test]
    fn sealed_to_an_x25519_key_opens_with_its_private_half() {
        let (sk, pk) = x25519_keypair(&[3; 32]);
        assert_eq!(x25519_keypair(&[3; 32]), (sk, pk), "derived, not random");
        let (enc, ct) = seal_x25519(&pk, b"info", "node 4", b"files").unwrap();
        assert_eq!(open_x25519(&sk, b"info", "node 4", &enc, &ct).unwrap(), b"files");
        assert!(open_x25519(&sk, b"info", "node 5", &enc, &ct).is_err());
        assert!(open_x25519(&x25519_keypair(&[4; 32]).0, b"info", "node 4", &enc, &ct).is_err());
    }

    /// The RFC 9180 vector would need a deterministic ephemeral key, which single-shot sealing
    /// does not take; this pins instead that the Ed25519 → X25519 map is the one the seal uses:
    /// sealing to the Montgomery form of a key opens with that key's scalar.
    #[test]
    fn the_ed25519_map_is_the_x25519_key_of_the_signing_scalar() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let (enc, ct) = seal_x25519(key.verifying_key().to_montgomery().as_bytes(), b"i", "a", b"p").unwrap();
        assert_eq!(open_x25519(&key.to_scalar_bytes(), b"i", "a", &enc, &ct).unwrap(), b"p");
    }
}
