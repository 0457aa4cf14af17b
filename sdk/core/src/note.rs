//! C2SP signed notes (`c2sp.org/signed-note`) and checkpoints (`c2sp.org/tlog-checkpoint`):
//! parsing and verification with Ed25519 verifier keys.
//!
//! A note is UTF-8 text ending in `\n`, a blank line, then lines
//! `— <key name> <base64(4-byte key id ‖ signature)>`. The Ed25519 key id is
//! `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`. Verification ignores signatures by unknown
//! keys, rejects the note if a known key's signature fails, and requires at least one known key
//! to verify.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// Signature type byte of Ed25519 keys.
const ED25519: u8 = 0x01;
/// At most this many signature lines are read.
const MAX_SIGNATURES: usize = 100;

/// Why a note or checkpoint is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note is not well-formed.
    #[error("malformed signed note: {0}")]
    Malformed(String),
    /// A known key's signature does not verify.
    #[error("the signature of key `{0}` does not verify")]
    BadSignature(String),
    /// No known key signed the note.
    #[error("no signature by a known key")]
    NoKnownSignature,
    /// A verifier key string is malformed.
    #[error("invalid verifier key: {0}")]
    BadKey(String),
    /// The checkpoint body is malformed.
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(String),
}

/// The 4-byte id of an Ed25519 key named `name`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, ED25519]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Whether `name` is a valid key name (non-empty, no spaces, no `+`, no control characters).
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c == ' ' || c == '+' || c.is_control())
}

/// An Ed25519 note verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    /// Key name (for checkpoints: the log origin).
    pub name: String,
    /// Key id.
    pub id: [u8; 4],
    /// The public key.
    pub key: VerifyingKey,
}

impl VerifierKey {
    /// A verifier key for `public_key` under `name`.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, NoteError> {
        if !valid_key_name(name) {
            return Err(NoteError::BadKey(format!("`{name}` is not a valid key name")));
        }
        let key = VerifyingKey::from_bytes(public_key).map_err(|e| NoteError::BadKey(e.to_string()))?;
        Ok(Self { name: name.to_string(), id: key_id(name, public_key), key })
    }

    /// Parse `name+hexid+base64(0x01 ‖ key)`.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("expected name+hexid+base64key".into()));
        };
        let raw = B64.decode(key).map_err(|e| NoteError::BadKey(e.to_string()))?;
        if raw.len() != 33 || raw[0] != ED25519 {
            return Err(NoteError::BadKey("only Ed25519 keys (type 0x01, 32 bytes) are supported".into()));
        }
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&raw[1..]);
        let k = Self::new(name, &pk)?;
        if hex::encode(k.id) != id {
            return Err(NoteError::BadKey(format!("key id {id} does not match the key ({})", hex::encode(k.id))));
        }
        Ok(k)
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{}+{}", self.name, hex::encode(self.id), B64.encode(raw))
    }
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key id.
    pub id: [u8; 4],
    /// The signature bytes (64 for Ed25519).
    pub signature: Vec<u8>,
}

/// A parsed (not yet verified) signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, including its final newline.
    pub text: String,
    /// The signatures.
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Parse a signed note.
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        let bad = |m: &str| NoteError::Malformed(m.to_string());
        if note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(bad("control characters other than newline"));
        }
        let split = note.rfind("\n\n").ok_or_else(|| bad("no blank line before the signatures"))?;
        let text = &note[..split + 1];
        let sigs = &note[split + 2..];
        if !sigs.ends_with('\n') {
            return Err(bad("the note must end with a newline"));
        }
        let mut signatures = Vec::new();
        for line in sigs.lines() {
            if signatures.len() >= MAX_SIGNATURES {
                return Err(bad("too many signatures"));
            }
            let rest =
                line.strip_prefix("\u{2014} ").ok_or_else(|| bad("a signature line does not start with '— '"))?;
            let (name, b64) = rest.split_once(' ').ok_or_else(|| bad("a signature line has no signature"))?;
            if !valid_key_name(name) {
                return Err(bad("invalid key name in a signature line"));
            }
            let raw = B64.decode(b64).map_err(|_| bad("a signature is not base64"))?;
            if raw.len() < 5 {
                return Err(bad("a signature is too short"));
            }
            signatures.push(NoteSignature {
                name: name.to_string(),
                id: [raw[0], raw[1], raw[2], raw[3]],
                signature: raw[4..].to_vec(),
            });
        }
        if signatures.is_empty() {
            return Err(bad("no signatures"));
        }
        Ok(Self { text: text.to_string(), signatures })
    }

    /// Verify against `keys`; returns the names of the keys that verified.
    pub fn verify(&self, keys: &[VerifierKey]) -> Result<Vec<String>, NoteError> {
        let mut ok = Vec::new();
        for s in &self.signatures {
            let Some(k) = keys.iter().find(|k| k.name == s.name && k.id == s.id) else { continue };
            let sig = Signature::from_slice(&s.signature).map_err(|_| NoteError::BadSignature(s.name.clone()))?;
            k.key.verify_strict(self.text.as_bytes(), &sig).map_err(|_| NoteError::BadSignature(s.name.clone()))?;
            ok.push(s.name.clone());
        }
        if ok.is_empty() { Err(NoteError::NoKnownSignature) } else { Ok(ok) }
    }
}

/// A transparency-log checkpoint: origin, tree size, root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin (unique name).
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// The RFC 9162 root at that size.
    pub root: [u8; 32],
    /// Extension lines (none are written by CGS).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// Parse a checkpoint body (the note text).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = |m: &str| NoteError::BadCheckpoint(m.to_string());
        let body = text.strip_suffix('\n').ok_or_else(|| bad("must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| bad("missing origin"))?;
        let size = lines.next().ok_or_else(|| bad("missing tree size"))?;
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(bad("the tree size must be a decimal number without leading zeros"));
        }
        let size: u64 = size.parse().map_err(|_| bad("tree size out of range"))?;
        let root =
            B64.decode(lines.next().ok_or_else(|| bad("missing root hash"))?).map_err(|_| bad("root is not base64"))?;
        let root: [u8; 32] = root.try_into().map_err(|_| bad("root is not 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("empty extension line"));
        }
        Ok(Self { origin: origin.to_string(), size, root, extensions })
    }

    /// The note text of this checkpoint.
    pub fn to_text(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root));
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }
}

/// Parse a signed checkpoint, verify it with `keys`, and return the checkpoint.
pub fn verify_checkpoint(note: &str, keys: &[VerifierKey]) -> Result<Checkpoint, NoteError> {
    let n = SignedNote::parse(note)?;
    n.verify(keys)?;
    Checkpoint::parse(&n.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> Option<std::path::PathBuf> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/vectors/c2sp");
        if p.exists() { Some(p) } else { None }
    }

    #[test]
    fn c2sp_vectors() {
        let Some(dir) = fixtures() else {
            eprintln!("skipped: ../shared/fixtures/vectors/c2sp not found");
            return;
        };
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("signed-note-vectors.json")).unwrap()).unwrap();
        for vec in v["vectors"].as_array().unwrap() {
            let key = VerifierKey::parse(vec["verifierKey"].as_str().unwrap()).unwrap();
            assert_eq!(key.to_string(), vec["verifierKey"].as_str().unwrap(), "key round-trips");
            let note = SignedNote::parse(vec["note"].as_str().unwrap()).unwrap();
            let valid = vec["expect"].as_str().unwrap().starts_with("valid");
            assert_eq!(note.verify(std::slice::from_ref(&key)).is_ok(), valid, "{}", vec["name"]);
            if let Some(t) = vec["noteText"].as_str() {
                assert_eq!(note.text, t);
            }
        }
        let cp = std::fs::read_to_string(dir.join("tlog-checkpoint-example.txt")).unwrap();
        let n = SignedNote::parse(&cp).unwrap();
        let c = Checkpoint::parse(&n.text).unwrap();
        assert_eq!((c.origin.as_str(), c.size), ("example.com/behind-the-sofa", 20852163));
        assert_eq!(c.to_text(), n.text);
        assert_eq!(n.verify(&[]), Err(NoteError::NoKnownSignature));
    }

    #[test]
    fn own_notes_and_malformed_input() {
        use ed25519_dalek::{Signer, SigningKey};
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let pk = sk.verifying_key().to_bytes();
        let key = VerifierKey::new("cgs/test", &pk).unwrap();
        let cp = Checkpoint { origin: "cgs/test".into(), size: 5, root: [9u8; 32], extensions: vec![] };
        let text = cp.to_text();
        let mut raw = key.id.to_vec();
        raw.extend_from_slice(&sk.sign(text.as_bytes()).to_bytes());
        let note = format!("{text}\n\u{2014} cgs/test {}\n", B64.encode(&raw));
        assert_eq!(verify_checkpoint(&note, std::slice::from_ref(&key)).unwrap(), cp);
        // An unknown second signature is ignored; a bad known one fails.
        let other = format!("{note}\u{2014} someone-else {}\n", B64.encode([1u8; 68]));
        assert!(verify_checkpoint(&other, std::slice::from_ref(&key)).is_ok());
        let tampered = note.replace("\n5\n", "\n6\n");
        assert_eq!(
            verify_checkpoint(&tampered, std::slice::from_ref(&key)),
            Err(NoteError::BadSignature("cgs/test".into()))
        );
        for bad in [
            "",
            "text\n",
            "text\n\n",
            "a\n\n\u{2014} k AAAA\n",
            "a\n\n- k AAAAAAAA\n",
            "a\u{1}\n\n\u{2014} k AAAAAAAA\n",
        ] {
            assert!(SignedNote::parse(bad).is_err(), "{bad:?}");
        }
        for bad in ["o\n01\nAAAA\n", "o\n1\nAAAA\n", "\n1\n", "o\nx\n"] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
