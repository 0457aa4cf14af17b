//! The ledger secret: AES-256-GCM encryption of private-table values.
//!
//! A private table's value is stored — in the ledger entry and in the state — as
//! `nonce (12) ‖ ciphertext ‖ tag (16)`, with the additional data `table ‖ 0x00 ‖ key`, so a
//! ciphertext cannot be moved to another key. Nonces are random (96 bits); rotate the secret
//! before 2^32 private writes.
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
}

fn aad(table: &str, key: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(table.len() + 1 + key.len());
    a.extend_from_slice(table.as_bytes());
    a.push(0);
    a.extend_from_slice(key);
    a
}

impl LedgerSecret {
    /// A secret from 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self { cipher: Aes256Gcm::new(bytes.into()) }
    }

    /// Load the secret from `path`, creating it if absent.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(b) => {
                let bytes: [u8; 32] = b.try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a 32-byte secret", path.display()),
                    )
                })?;
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes: [u8; 32] = rand::random();
                crate::fsutil::write_private(path, &bytes)?;
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) => Err(e),
        }
    }

    /// Encrypt `value` for `table`/`key`.
    pub fn encrypt(&self, table: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
        let nonce: [u8; 12] = rand::random();
        let aad = aad(table, key);
        // Encryption with a valid key and nonce cannot fail for inputs below 64 GiB.
        let ct = self.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: value, aad: &aad }).unwrap_or_default();
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypt a stored value of `table`/`key`.
    pub fn decrypt(&self, table: &str, key: &[u8], stored: &[u8]) -> Result<Vec<u8>, DecryptError> {
        if stored.len() < 12 + 16 {
            return Err(DecryptError(table.to_string()));
        }
        let (nonce, ct) = stored.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad(table, key) })
            .map_err(|_| DecryptError(table.to_string()))
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
    }
}
