//! The ledger secret: AES-256-GCM encryption of private-table values, and the key that blinds
//! confidential parts of keys (`kv.blind`).
//!
//! A private table's value is stored — in the ledger entry and in the state — as
//! `binding (1) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`. Binding `1`: the additional data is
//! `table ‖ 0x00 ‖ key`, so a ciphertext cannot be moved to another key. Binding `2` (appends,
//! whose final key is assigned when the transaction is ordered): `table ‖ 0x01 ‖ prefix`, where the
//! stored key is `prefix ‖ seqno (8) ‖ n (4)` — the value cannot leave its log. Nonces are random
//! (96 bits); rotate the secret before 2^32 private writes.
//!
//! The secret is 32 random bytes generated at service creation. **Development fallback:** it is
//! kept in `DIR/node/ledger-secret` with owner-only permissions. On SEV-SNP it must instead be
//! sealed with a key derived from the VM's sealing key (and shared with joining nodes encrypted to
//! their attested key), so that nothing outside the TEE can read it.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

/// Why a private value could not be decrypted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot decrypt a private value of `{0}`: wrong ledger secret or tampered data")]
pub struct DecryptError(pub String);

/// The ledger secret.
pub struct LedgerSecret {
    cipher: Aes256Gcm,
    blind: [u8; 32],
}

/// Binding byte of a value bound to its key.
const BOUND_TO_KEY: u8 = 1;
/// Binding byte of an appended value, bound to its log prefix.
const BOUND_TO_PREFIX: u8 = 2;
/// Binding byte of a signed governance message recorded in a ledger entry, bound to the
/// entry's request digest (the SHA-256 of the message).
const BOUND_TO_DIGEST: u8 = 3;
/// Length of the suffix (`seqno u64 ‖ n u32`) the ledger adds to an append prefix.
const APPEND_SUFFIX: usize = 12;

fn aad(table: &str, sep: u8, key: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(table.len() + 1 + key.len());
    a.extend_from_slice(table.as_bytes());
    a.push(sep);
    a.extend_from_slice(key);
    a
}

impl LedgerSecret {
    /// A secret from 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self { cipher: Aes256Gcm::new(bytes.into()), blind: blake3::derive_key("cgs 2026 kv.blind v1", bytes) }
    }

    /// Blind `data` (keyed BLAKE3 with a key derived from the secret): the same on every node of
    /// the service, meaningless without the secret. For confidential parts of keys.
    pub fn blind(&self, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.blind, data).as_bytes()
    }

    /// Load the secret from `path`, creating it if absent.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        Ok(Self::from_bytes(&crate::fsutil::load_or_create_secret(path, "secret")?))
    }

    /// Encrypt `value` for `table`/`key`.
    pub fn encrypt(&self, table: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
        self.seal(BOUND_TO_KEY, &aad(table, 0, key), value)
    }

    /// Encrypt a `value` appended under `prefix` of `table` (its key is completed when ordered).
    pub fn encrypt_append(&self, table: &str, prefix: &[u8], value: &[u8]) -> Vec<u8> {
        self.seal(BOUND_TO_PREFIX, &aad(table, 1, prefix), value)
    }

    /// Encrypt the signed message of a governance write, bound to its SHA-256 (recorded in
    /// clear as the entry's request digest).
    pub fn encrypt_envelope(&self, envelope: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(envelope);
        self.seal(BOUND_TO_DIGEST, &aad("cgs.envelope", 0, &digest), envelope)
    }

    /// Decrypt an entry's signed message given its request digest.
    pub fn decrypt_envelope(&self, digest: &[u8; 32], stored: &[u8]) -> Result<Vec<u8>, DecryptError> {
        let fail = || DecryptError("the entry's signed message".into());
        if stored.len() < 1 + 12 + 16 || stored[0] != BOUND_TO_DIGEST {
            return Err(fail());
        }
        let (nonce, ct) = stored[1..].split_at(12);
        let aad = aad("cgs.envelope", 0, digest);
        let plain =
            self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad }).map_err(|_| fail())?;
        use sha2::Digest;
        if sha2::Sha256::digest(&plain).as_slice() != digest {
            return Err(fail());
        }
        Ok(plain)
    }

    fn seal(&self, binding: u8, aad: &[u8], value: &[u8]) -> Vec<u8> {
        let nonce: [u8; 12] = rand::random();
        // Encryption with a valid key and nonce cannot fail for inputs below 64 GiB.
        let ct = self.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: value, aad }).unwrap_or_default();
        let mut out = Vec::with_capacity(13 + ct.len());
        out.push(binding);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypt a stored value of `table`/`key` (written by a put or an append).
    pub fn decrypt(&self, table: &str, key: &[u8], stored: &[u8]) -> Result<Vec<u8>, DecryptError> {
        let fail = || DecryptError(table.to_string());
        if stored.len() < 1 + 12 + 16 {
            return Err(fail());
        }
        let aad = match stored[0] {
            BOUND_TO_KEY => aad(table, 0, key),
            BOUND_TO_PREFIX if key.len() >= APPEND_SUFFIX => aad(table, 1, &key[..key.len() - APPEND_SUFFIX]),
            _ => return Err(fail()),
        };
        let (nonce, ct) = stored[1..].split_at(12);
        self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad }).map_err(|_| fail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_bound_to_location() {
        let s = LedgerSecret::from_bytes(&[3; 32]);
        let c = s.encrypt("p.private.t", b"k", b"secret value");
        assert!(!c.windows(6).any(|w| w == b"secret"), "ciphertext does not contain the plaintext");
        assert_eq!(s.decrypt("p.private.t", b"k", &c).unwrap(), b"secret value");
        assert!(s.decrypt("p.private.t", b"other", &c).is_err(), "bound to the key");
        assert!(s.decrypt("p.private.u", b"k", &c).is_err(), "bound to the table");
        assert!(LedgerSecret::from_bytes(&[4; 32]).decrypt("p.private.t", b"k", &c).is_err());
        let mut t = c.clone();
        t[20] ^= 1;
        assert!(s.decrypt("p.private.t", b"k", &t).is_err());
        // A put's ciphertext cannot pose as an append's, nor the reverse.
        let mut as_append = c.clone();
        as_append[0] = 2;
        assert!(s.decrypt("p.private.t", b"k", &as_append).is_err());
    }

    #[test]
    fn appends_are_bound_to_their_log() {
        let s = LedgerSecret::from_bytes(&[3; 32]);
        let c = s.encrypt_append("audit.events", b"c1\0", b"event");
        let key = cgs_core::entry::append_key(b"c1\0", 42, 0);
        assert_eq!(s.decrypt("audit.events", &key, &c).unwrap(), b"event");
        assert_eq!(s.decrypt("audit.events", &cgs_core::entry::append_key(b"c1\0", 7, 3), &c).unwrap(), b"event");
        assert!(s.decrypt("audit.events", &cgs_core::entry::append_key(b"c2\0", 42, 0), &c).is_err(), "another log");
        assert!(s.decrypt("audit.other", &key, &c).is_err(), "another table");
        assert!(s.decrypt("audit.events", b"short", &c).is_err());
    }

    #[test]
    fn envelopes_are_bound_to_their_digest() {
        use sha2::Digest;
        let s = LedgerSecret::from_bytes(&[3; 32]);
        let c = s.encrypt_envelope(b"signed ballot");
        let d: [u8; 32] = sha2::Sha256::digest(b"signed ballot").into();
        assert!(!c.windows(6).any(|w| w == b"ballot"));
        assert_eq!(s.decrypt_envelope(&d, &c).unwrap(), b"signed ballot");
        assert!(s.decrypt_envelope(&[0; 32], &c).is_err());
    }

    #[test]
    fn blinding_is_keyed_and_deterministic() {
        let a = LedgerSecret::from_bytes(&[3; 32]);
        assert_eq!(a.blind(b"iss|sub"), a.blind(b"iss|sub"));
        assert_ne!(a.blind(b"iss|sub"), a.blind(b"iss|sub2"));
        assert_ne!(a.blind(b"iss|sub"), LedgerSecret::from_bytes(&[4; 32]).blind(b"iss|sub"));
    }
}
