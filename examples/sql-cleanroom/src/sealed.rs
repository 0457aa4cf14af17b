//! The encrypted files a collaboration exchanges: the owners' inputs and the clean room's output.
//!
//! A file is `CGSDATA1` ‖ a 12-byte random nonce ‖ AES-256-GCM(contents) with its 16-byte tag. The
//! additional data is the file's **label**, which names what the file is for:
//! `cgs-dataset-v1/<contract>/<dataset>` or `cgs-output-v1/<contract>/<run id>`. A file
//! therefore opens only as what it was sealed as. Another contract's dataset, or one dataset in
//! place of another under the same key, is refused.
//!
//! The key is 32 random bytes, written as standard base64. That is the text `keygen` prints, and
//! the value the owner puts as the dataset's `key_secret` in CGS.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// The first bytes of every sealed file.
pub const MAGIC: &[u8; 8] = b"CGSDATA1";
const NONCE: usize = 12;
const TAG: usize = 16;

/// A file key.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    /// A fresh random key.
    pub fn generate() -> Self {
        let k = Aes256Gcm::generate_key(OsRng);
        Self(k.into())
    }

    /// A key from its text (base64 of 32 bytes; surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Self> {
        let bytes = B64
            .decode(text.trim())
            .context("a file key is the base64 of 32 bytes (as `cgs-sql-cleanroom keygen` prints)")?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| anyhow::anyhow!("a file key is 32 bytes, this one is {}", b.len()))?;
        Ok(Self(key))
    }

    /// Its text: what `keygen` prints and what the owner stores in CGS.
    pub fn to_text(&self) -> String {
        B64.encode(self.0)
    }
}

/// The label of an input dataset's file.
pub fn dataset_label(contract: &str, dataset: &str) -> String {
    format!("cgs-dataset-v1/{contract}/{dataset}")
}

/// The label of a run's output file.
pub fn output_label(contract: &str, run_id: &str) -> String {
    format!("cgs-output-v1/{contract}/{run_id}")
}

/// Seal `plain` under `key` as `label`.
pub fn seal(key: &Key, label: &str, plain: &[u8]) -> Result<Vec<u8>> {
    let cipher = Aes256Gcm::new(&key.0.into());
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ct = cipher
        .encrypt(&nonce, Payload { msg: plain, aad: label.as_bytes() })
        .map_err(|_| anyhow::anyhow!("encryption failed (the file is too large for one AES-GCM message)"))?;
    let mut out = Vec::with_capacity(MAGIC.len() + NONCE + ct.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Open a sealed file as `label`.
pub fn open(key: &Key, label: &str, sealed: &[u8]) -> Result<Vec<u8>> {
    let Some(rest) = sealed.strip_prefix(MAGIC.as_slice()) else {
        bail!("not a sealed CGS data file (it does not start with `CGSDATA1`)");
    };
    if rest.len() < NONCE + TAG {
        bail!("the sealed file is truncated ({} bytes)", sealed.len());
    }
    let (nonce, ct) = rest.split_at(NONCE);
    Aes256Gcm::new(&key.0.into()).decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: label.as_bytes() }).map_err(
        |_| {
            anyhow::anyhow!(
                "the file does not open as `{label}`: wrong key, a file sealed for another dataset or contract, or altered bytes"
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_opens_only_with_its_key_and_as_its_label() -> Result<()> {
        let key = Key::generate();
        let label = dataset_label("c", "sales");
        let sealed = seal(&key, &label, b"region,amount\nnorth,1\n")?;
        assert!(sealed.starts_with(MAGIC));
        assert_eq!(open(&key, &label, &sealed)?, b"region,amount\nnorth,1\n");
        assert!(!sealed.windows(5).any(|w| w == b"north"), "the contents are encrypted");
        // Another dataset's label, another contract, another key, a flipped bit: refused.
        let e = open(&key, &dataset_label("c", "customers"), &sealed).unwrap_err().to_string();
        assert!(e.contains("does not open as `cgs-dataset-v1/c/customers`"), "{e}");
        assert!(open(&key, &dataset_label("other", "sales"), &sealed).is_err());
        assert!(open(&Key::generate(), &label, &sealed).is_err());
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(open(&key, &label, &bad).is_err());
        assert!(open(&key, &label, &sealed[..20]).unwrap_err().to_string().contains("truncated"));
        assert!(open(&key, &label, b"region,amount\n").unwrap_err().to_string().contains("CGSDATA1"));
        // Two seals of the same file differ (fresh nonce).
        assert_ne!(seal(&key, &label, b"x")?, seal(&key, &label, b"x")?);
        Ok(())
    }

    #[test]
    fn keys_round_trip_as_text_and_bad_text_is_explained() -> Result<()> {
        let k = Key::generate();
        assert_eq!(Key::parse(&format!(" {}\n", k.to_text()))?.0, k.0);
        assert!(Key::parse("AAAA").unwrap_err().to_string().contains("32 bytes, this one is 3"));
        assert!(Key::parse("not base64!").unwrap_err().to_string().contains("base64 of 32 bytes"));
        assert_eq!(format!("{k:?}"), "Key(…)", "a key is never printed");
        Ok(())
    }
}
