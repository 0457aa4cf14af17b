//! The ledger secrets: AES-256-GCM encryption of private-table values, and the key that blinds
//! confidential parts of keys (`kv.blind`).
//!
//! A private table's value is stored — in the ledger entry and in the state — as
//! `binding (1) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`. Binding `1`: the additional data is
//! `table ‖ 0x00 ‖ key`, so a ciphertext cannot be moved to another key. Binding `2` (appends,
//! whose final key is assigned when the transaction is ordered): `table ‖ 0x01 ‖ prefix`, where the
//! stored key is `prefix ‖ seqno (8) ‖ n (4)` — the value cannot leave its log. Nonces are random
//! (96 bits); rotate the secret before 2^32 private writes.
//!
//! **Versions (re-keying).** The secret made at service creation is version 0 and is written in
//! the format above. Governance re-keys the ledger (`remove_node`, `trigger_ledger_rekey`): a new
//! random secret, version n, is wrapped with HPKE to every trusted node's key and recorded in
//! `sys.ledger_secrets` ([`SYS_LEDGER_SECRETS`]); each node opens its own copy when it applies
//! that entry. From then on values are written with version n, as
//! `binding | 0x10 (1) ‖ version (4, big-endian) ‖ nonce (12) ‖ ciphertext ‖ tag`, the version
//! prefixed to the additional data. Older values keep their version and stay readable by the
//! nodes holding it; a node removed before version n never receives it. The blinding key stays
//! version 0's (blinded keys must not move).
//!
//! Version 0 is 32 random bytes generated at service creation. **Development fallback:** it is
//! kept in `DIR/node/ledger-secret` with owner-only permissions; versions ≥ 1 are never written to
//! disk in clear (each node opens them from the ledger with its node key at start). On SEV-SNP
//! version 0 must instead be sealed with a key derived from the VM's sealing key.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

/// Why a private value could not be decrypted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot decrypt a private value of `{0}`: wrong ledger secret or tampered data")]
pub struct DecryptError(pub String);

/// One version of the ledger secret.
pub struct LedgerSecret {
    version: u32,
    bytes: [u8; 32],
    cipher: Aes256Gcm,
    blind: [u8; 32],
}

impl std::fmt::Debug for LedgerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerSecret").field("version", &self.version).finish_non_exhaustive()
    }
}

/// Binding bit of a value written with a secret of version ≥ 1 (followed by the version).
const VERSIONED: u8 = 0x10;

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
    /// A secret (version 0) from 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self::versioned(0, bytes)
    }

    /// Version `version` of the secret, from 32 bytes.
    pub fn versioned(version: u32, bytes: &[u8; 32]) -> Self {
        Self {
            version,
            bytes: *bytes,
            cipher: Aes256Gcm::new(bytes.into()),
            blind: blake3::derive_key("cgs 2026 kv.blind v1", bytes),
        }
    }

    /// Its 32 bytes (for the recovery shares).
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Its version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The seed of the service's token key while this version is current (versions ≥ 1; version
    /// 0's token key is the one made at creation, `DIR/node/token-signing.key`).
    pub fn token_seed(&self) -> [u8; 32] {
        blake3::derive_key("cgs 2026 token key v1", &self.bytes)
    }

    /// The additional data of a value: version 0 as it always was; later versions prefixed with
    /// `"v" ‖ version ‖ binding`, so a value of one kind (a put, an append, a signed message)
    /// never opens as another whatever its table and key.
    fn versioned_aad(&self, binding: u8, aad: Vec<u8>) -> Vec<u8> {
        if self.version == 0 {
            return aad;
        }
        let mut a = Vec::with_capacity(6 + aad.len());
        a.push(b'v');
        a.extend_from_slice(&self.version.to_be_bytes());
        a.push(binding);
        a.extend_from_slice(&aad);
        a
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
        self.seal(BOUND_TO_KEY, aad(table, 0, key), value)
    }

    /// Encrypt a `value` appended under `prefix` of `table` (its key is completed when ordered).
    pub fn encrypt_append(&self, table: &str, prefix: &[u8], value: &[u8]) -> Vec<u8> {
        self.seal(BOUND_TO_PREFIX, aad(table, 1, prefix), value)
    }

    /// Encrypt the signed message of a governance write, bound to its SHA-256 (recorded in
    /// clear as the entry's request digest).
    pub fn encrypt_envelope(&self, envelope: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(envelope);
        self.seal(BOUND_TO_DIGEST, aad("cgs.envelope", 0, &digest), envelope)
    }

    /// Decrypt an entry's signed message given its request digest.
    pub fn decrypt_envelope(&self, digest: &[u8; 32], stored: &[u8]) -> Result<Vec<u8>, DecryptError> {
        let fail = || DecryptError("the entry's signed message".into());
        let (binding, nonce, ct) = self.split(stored).ok_or_else(fail)?;
        if binding != BOUND_TO_DIGEST {
            return Err(fail());
        }
        let aad = self.versioned_aad(BOUND_TO_DIGEST, aad("cgs.envelope", 0, digest));
        let plain =
            self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad }).map_err(|_| fail())?;
        use sha2::Digest;
        if sha2::Sha256::digest(&plain).as_slice() != digest {
            return Err(fail());
        }
        Ok(plain)
    }

    /// `(binding, nonce, ciphertext)` of a value written with this version, `None` if it is not
    /// one (too short, another version).
    fn split<'a>(&self, stored: &'a [u8]) -> Option<(u8, &'a [u8], &'a [u8])> {
        let version = stored_version(stored)?;
        if version != self.version {
            return None;
        }
        let (binding, rest) =
            if version == 0 { (stored[0], &stored[1..]) } else { (stored[0] & !VERSIONED, &stored[5..]) };
        if rest.len() < 12 + 16 {
            return None;
        }
        let (nonce, ct) = rest.split_at(12);
        Some((binding, nonce, ct))
    }

    fn seal(&self, binding: u8, aad: Vec<u8>, value: &[u8]) -> Vec<u8> {
        let aad = self.versioned_aad(binding, aad);
        let nonce: [u8; 12] = rand::random();
        // Encryption with a valid key and nonce cannot fail for inputs below 64 GiB.
        let ct = self.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: value, aad: &aad }).unwrap_or_default();
        let mut out = Vec::with_capacity(17 + ct.len());
        if self.version == 0 {
            out.push(binding);
        } else {
            out.push(binding | VERSIONED);
            out.extend_from_slice(&self.version.to_be_bytes());
        }
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypt a stored value of `table`/`key` (written by a put or an append).
    pub fn decrypt(&self, table: &str, key: &[u8], stored: &[u8]) -> Result<Vec<u8>, DecryptError> {
        let fail = || DecryptError(table.to_string());
        let (binding, nonce, ct) = self.split(stored).ok_or_else(fail)?;
        let aad = match binding {
            BOUND_TO_KEY => aad(table, 0, key),
            BOUND_TO_PREFIX if key.len() >= APPEND_SUFFIX => aad(table, 1, &key[..key.len() - APPEND_SUFFIX]),
            _ => return Err(fail()),
        };
        let aad = self.versioned_aad(binding, aad);
        self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad }).map_err(|_| fail())
    }
}

/// The secret version a stored value was written with (`None`: too short to be one).
pub fn stored_version(stored: &[u8]) -> Option<u32> {
    let first = *stored.first()?;
    if first & VERSIONED == 0 {
        return Some(0);
    }
    Some(u32::from_be_bytes(stored.get(1..5)?.try_into().ok()?)).filter(|v| *v != 0)
}

/// Host-written table of the wrapped ledger secrets: key `{version:010}/{node_id:020}`, value a
/// [`WrappedSecret`] (HPKE to that node's key); key `{version:010}`, the version's public record
/// (why and when it was made). Public: it holds nothing a node's key does not protect.
pub const SYS_LEDGER_SECRETS: &str = "sys.ledger_secrets";

/// HPKE `info` of a wrapped ledger secret.
pub const WRAP_INFO: &[u8] = b"cgs-ledger-secret-v1";

/// A ledger secret version sealed to one node: RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256),
/// HKDF-SHA256, ChaCha20-Poly1305, info [`WRAP_INFO`], aad `ledger secret {version} node {id}`.
/// The recipient key is the node's Ed25519 node key in its X25519 form (RFC 7748 birational map;
/// the same key pair for Ed25519 signatures and an X25519 KEM is analysed in eprint 2021/509), so
/// the key that the node's evidence binds is the only one that opens it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrappedSecret {
    /// The secret's version.
    pub version: u32,
    /// The node it is sealed to.
    pub node_id: u64,
    /// Base64 HPKE encapsulated key.
    pub enc: String,
    /// Base64 ciphertext.
    pub ciphertext: String,
}

fn wrap_aad(version: u32, node_id: u64) -> String {
    format!("ledger secret {version} node {node_id}")
}

/// The key of a version's public record in [`SYS_LEDGER_SECRETS`].
pub fn version_record_key(version: u32) -> String {
    format!("{version:010}")
}

/// `(version, node)` of a key of [`SYS_LEDGER_SECRETS`]: a sealed copy names its node, a version's
/// record does not. `None`: not a key of that table.
pub fn parse_table_key(key: &[u8]) -> Option<(u32, Option<u64>)> {
    let key = std::str::from_utf8(key).ok()?;
    match key.split_once('/') {
        Some((v, n)) => Some((v.parse().ok()?, Some(n.parse().ok()?))),
        None => Some((key.parse().ok()?, None)),
    }
}

impl WrappedSecret {
    /// The key of this record in [`SYS_LEDGER_SECRETS`].
    pub fn table_key(version: u32, node_id: u64) -> String {
        format!("{version:010}/{node_id:020}")
    }

    /// Seal `secret` to the node `node_id` whose Ed25519 node key is `node_key`
    /// ([`cgs_ledger_format::seal`]).
    pub fn seal(secret: &LedgerSecret, node_id: u64, node_key: &[u8; 32]) -> Result<Self, String> {
        let aad = wrap_aad(secret.version, node_id);
        let (enc, ciphertext) = cgs_ledger_format::seal::seal_to_ed25519(node_key, WRAP_INFO, &aad, &secret.bytes)
            .map_err(|e| format!("node {node_id}'s key: {e}"))?;
        Ok(Self { version: secret.version, node_id, enc, ciphertext })
    }

    /// Open it with the node key (the Ed25519 signing key) of node `node_id`.
    pub fn open(&self, node_id: u64, node_key: &ed25519_dalek::SigningKey) -> Result<LedgerSecret, String> {
        if self.node_id != node_id {
            return Err(format!("version {} is sealed to node {}, not {node_id}", self.version, self.node_id));
        }
        let aad = wrap_aad(self.version, node_id);
        let plain = cgs_ledger_format::seal::open_with_ed25519(node_key, WRAP_INFO, &aad, &self.enc, &self.ciphertext)
            .map_err(|e| format!("version {} does not open with this node's key: {e}", self.version))?;
        let bytes: [u8; 32] = plain.try_into().map_err(|_| "a ledger secret is 32 bytes".to_string())?;
        Ok(LedgerSecret::versioned(self.version, &bytes))
    }
}

/// Every version of the ledger secret this node holds, and the current one.
pub struct LedgerSecrets {
    first: Arc<LedgerSecret>,
    versions: RwLock<BTreeMap<u32, Arc<LedgerSecret>>>,
    /// The highest version the applied state names (for any node). Above what this node holds,
    /// it writes nothing private: it would write with a secret a removed node knows.
    named: AtomicU32,
    /// The version of `sys.ledger_secrets` (its last write) when the versions were last opened:
    /// a transaction writing private values reads the table at this version, so one ordered
    /// after a re-key it did not know conflicts instead of applying with the old secret.
    table_version: RwLock<Option<cgs_core::TxId>>,
}

impl LedgerSecrets {
    /// Version 0 alone.
    pub fn new(first: LedgerSecret) -> Self {
        let first = Arc::new(first);
        Self {
            versions: RwLock::new(BTreeMap::from([(first.version, first.clone())])),
            first,
            named: AtomicU32::new(0),
            table_version: RwLock::new(None),
        }
    }

    /// Load version 0 from `path`, creating it if absent.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        Ok(Self::new(LedgerSecret::load_or_create(path)?))
    }

    /// Add an opened version.
    pub fn insert(&self, secret: LedgerSecret) {
        if let Ok(mut v) = self.versions.write() {
            v.entry(secret.version).or_insert_with(|| Arc::new(secret));
        }
    }

    /// Note the highest version the state names.
    pub fn set_named(&self, version: u32) {
        self.named.fetch_max(version, Ordering::AcqRel);
    }

    /// Note the version of `sys.ledger_secrets` the held versions reflect (after opening them).
    pub fn set_table_version(&self, version: Option<cgs_core::TxId>) {
        if let Ok(mut v) = self.table_version.write() {
            *v = version;
        }
    }

    /// The current version and the version of `sys.ledger_secrets` it was opened at: a
    /// transaction encrypting with it must read the table at that version.
    pub fn current_at(&self) -> Result<(Arc<LedgerSecret>, Option<cgs_core::TxId>), String> {
        // The table version first: it is set after the versions it reflects were inserted, so
        // a newer table version is never paired with an older secret (the reverse conflicts).
        let at = self.table_version.read().map(|v| *v).unwrap_or(None);
        Ok((self.current()?, at))
    }

    /// Whether this node holds `version`.
    pub fn holds(&self, version: u32) -> bool {
        self.versions.read().is_ok_and(|v| v.contains_key(&version))
    }

    /// The highest version held.
    pub fn latest(&self) -> Arc<LedgerSecret> {
        self.versions.read().ok().and_then(|v| v.values().next_back().cloned()).unwrap_or_else(|| self.first.clone())
    }

    /// Version `version`, if held.
    pub fn get(&self, version: u32) -> Option<Arc<LedgerSecret>> {
        self.versions.read().ok().and_then(|v| v.get(&version).cloned())
    }

    /// The version values are written with: the highest the state names, which this node must
    /// hold.
    pub fn current(&self) -> Result<Arc<LedgerSecret>, String> {
        let latest = self.latest();
        let named = self.named.load(Ordering::Acquire);
        if latest.version < named {
            return Err(format!(
                "the ledger was re-keyed to secret version {named}, which this node does not hold (it was not \
                 trusted when it was made, or its key changed): it cannot write private data"
            ));
        }
        Ok(latest)
    }

    /// The version of a stored value.
    fn of(&self, stored: &[u8], what: &str) -> Result<Arc<LedgerSecret>, DecryptError> {
        let version = stored_version(stored).ok_or_else(|| DecryptError(what.to_string()))?;
        self.versions.read().ok().and_then(|v| v.get(&version).cloned()).ok_or_else(|| {
            DecryptError(format!(
                "{what} (written with ledger secret version {version}, which this node does not hold)"
            ))
        })
    }

    /// Blind `data`: always with version 0's key (blinded keys must not move when re-keyed).
    pub fn blind(&self, data: &[u8]) -> [u8; 32] {
        self.first.blind(data)
    }

    /// Encrypt `value` for `table`/`key` with the current version.
    pub fn encrypt(&self, table: &str, key: &[u8], value: &[u8]) -> Result<Vec<u8>, String> {
        Ok(self.current()?.encrypt(table, key, value))
    }

    /// Encrypt an appended value with the current version.
    pub fn encrypt_append(&self, table: &str, prefix: &[u8], value: &[u8]) -> Result<Vec<u8>, String> {
        Ok(self.current()?.encrypt_append(table, prefix, value))
    }

    /// Encrypt a signed message with the current version.
    pub fn encrypt_envelope(&self, envelope: &[u8]) -> Result<Vec<u8>, String> {
        Ok(self.current()?.encrypt_envelope(envelope))
    }

    /// Decrypt a stored value with the version it was written with.
    pub fn decrypt(&self, table: &str, key: &[u8], stored: &[u8]) -> Result<Vec<u8>, DecryptError> {
        self.of(stored, table)?.decrypt(table, key, stored)
    }

    /// Decrypt a signed message with the version it was written with.
    pub fn decrypt_envelope(&self, digest: &[u8; 32], stored: &[u8]) -> Result<Vec<u8>, DecryptError> {
        self.of(stored, "the entry's signed message")?.decrypt_envelope(digest, stored)
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

    #[test]
    fn versions_are_bound_and_chosen_by_what_was_written() {
        let set = LedgerSecrets::new(LedgerSecret::from_bytes(&[3; 32]));
        let old = set.encrypt("p.private.t", b"k", b"before").unwrap();
        assert_eq!(old[0], BOUND_TO_KEY, "version 0 keeps the original format");
        let v1 = LedgerSecret::versioned(1, &[5; 32]);
        set.insert(LedgerSecret::versioned(1, &[5; 32]));
        set.set_named(1);
        let new = set.encrypt("p.private.t", b"k", b"after").unwrap();
        assert_eq!((new[0], stored_version(&new)), (BOUND_TO_KEY | VERSIONED, Some(1)));
        assert_eq!(set.decrypt("p.private.t", b"k", &old).unwrap(), b"before");
        assert_eq!(set.decrypt("p.private.t", b"k", &new).unwrap(), b"after");
        // The removed node's view: version 0 only.
        let removed = LedgerSecrets::new(LedgerSecret::from_bytes(&[3; 32]));
        let e = removed.decrypt("p.private.t", b"k", &new).unwrap_err();
        assert!(e.to_string().contains("version 1, which this node does not hold"), "{e}");
        removed.set_named(1);
        assert!(removed.encrypt("p.private.t", b"k", b"x").unwrap_err().contains("re-keyed to secret version 1"));
        // A version-1 ciphertext relabelled as version 0 (or 2) opens with nothing.
        let mut as_v0 = new.clone();
        as_v0[0] = BOUND_TO_KEY;
        as_v0.drain(1..5);
        assert!(set.decrypt("p.private.t", b"k", &as_v0).is_err());
        let mut as_v2 = new.clone();
        as_v2[4] = 2;
        assert!(set.decrypt("p.private.t", b"k", &as_v2).is_err());
        assert!(v1.decrypt("p.private.t", b"other", &new).is_err(), "still bound to the key");
        let env = set.encrypt_envelope(b"ballot").unwrap();
        use sha2::Digest;
        let d: [u8; 32] = sha2::Sha256::digest(b"ballot").into();
        assert_eq!(set.decrypt_envelope(&d, &env).unwrap(), b"ballot");
        assert!(removed.decrypt_envelope(&d, &env).is_err());
        // Blinding never moves.
        assert_eq!(set.blind(b"iss|sub"), removed.blind(b"iss|sub"));
        assert_ne!(v1.token_seed(), LedgerSecret::versioned(1, &[6; 32]).token_seed());
        assert_ne!(v1.token_seed(), [5; 32], "derived, not the secret itself");
    }

    #[test]
    fn a_wrapped_version_opens_only_with_its_nodes_key() {
        let node = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let secret = LedgerSecret::versioned(4, &[9; 32]);
        let w = WrappedSecret::seal(&secret, 2, &node.verifying_key().to_bytes()).unwrap();
        assert!(!w.ciphertext.is_empty() && w.version == 4);
        let opened = w.open(2, &node).unwrap();
        assert_eq!((opened.version(), opened.bytes), (4, [9; 32]));
        assert!(w.open(2, &other).unwrap_err().contains("does not open"), "another node's key");
        assert!(w.open(3, &node).is_err(), "sealed to node 2");
        let mut moved = w.clone();
        moved.node_id = 3;
        assert!(moved.open(3, &node).is_err(), "the node id is bound");
        let mut relabelled = w.clone();
        relabelled.version = 5;
        assert!(relabelled.open(2, &node).is_err(), "the version is bound");
    }

    #[test]
    fn a_later_version_binds_the_kind_of_value() {
        use sha2::Digest;
        let v1 = LedgerSecret::versioned(1, &[5; 32]);
        let digest: [u8; 32] = sha2::Sha256::digest(b"signed ballot").into();
        // A signed message relabelled as a put of table `cgs.envelope` at key = its digest: the
        // additional data would otherwise be the same.
        let mut env = v1.encrypt_envelope(b"signed ballot");
        assert_eq!(v1.decrypt_envelope(&digest, &env).unwrap(), b"signed ballot");
        env[0] = BOUND_TO_KEY | VERSIONED;
        assert!(v1.decrypt("cgs.envelope", &digest, &env).is_err());
        // A put relabelled as an append of the same log prefix, and back.
        let mut put = v1.encrypt("t.x", b"p", b"value");
        put[0] = BOUND_TO_PREFIX | VERSIONED;
        assert!(v1.decrypt("t.x", &cgs_core::entry::append_key(b"p", 1, 0), &put).is_err());
    }
}
