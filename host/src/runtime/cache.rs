//! On-disk cache of compiled plugins, keyed by (component BLAKE3, engine fingerprint).
//!
//! Compiling a component takes 35–100 ms (release) or ~0.1–0.6 s (debug); loading a cached
//! artifact takes well under a millisecond. A cached artifact is native code, and the data
//! directory lies outside the trust boundary, so every entry is authenticated: the file holds
//! `keyed-BLAKE3(key, fingerprint ‖ component hash ‖ artifact) ‖ artifact`, and a entry whose
//! tag does not verify is ignored and recompiled. The key is 32 random bytes created with the
//! cache (`cache.key`): a key file beside the cache only protects against accidental corruption,
//! so a node whose keys live in memory (`--keys-in-memory`, always under SEV-SNP) runs without
//! a cache; see `docs/runtime.md`.

use std::hash::Hasher;
use std::path::{Path, PathBuf};

use cgs_core::Blake3Hash;
use wasmtime::Engine;
use wasmtime::component::Component;

const TAG_LEN: usize = 32;

/// The artifact cache of one node.
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    key: [u8; 32],
    fingerprint: String,
}

/// Feeds `Hash` input into BLAKE3, to turn wasmtime's engine compatibility hash into a stable
/// fingerprint.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0.finalize().as_bytes()[..8]);
        u64::from_le_bytes(b)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// A stable identifier of the engine's compilation settings and wasmtime version.
pub(crate) fn engine_fingerprint(engine: &Engine) -> String {
    let mut h = Blake3Hasher(blake3::Hasher::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut h);
    hex::encode(&h.0.finalize().as_bytes()[..16])
}

impl ArtifactCache {
    /// Open (or create) the cache in `dir`.
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let key_path = dir.join("cache.key");
        let key = match std::fs::read(&key_path) {
            Ok(k) if k.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&k);
                key
            }
            _ => {
                let key: [u8; 32] = rand::random();
                crate::fsutil::write_private(&key_path, &key)?;
                key
            }
        };
        Ok(Self { dir: dir.to_path_buf(), key, fingerprint: engine_fingerprint(engine) })
    }

    fn path(&self, hash: &Blake3Hash) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.fingerprint))
    }

    fn tag(&self, hash: &Blake3Hash, artifact: &[u8]) -> [u8; TAG_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(self.fingerprint.as_bytes());
        h.update(&hash.0);
        h.update(artifact);
        *h.finalize().as_bytes()
    }

    /// The cached compilation of the component with `hash`, if present and authentic.
    pub fn load(&self, engine: &Engine, hash: &Blake3Hash) -> Option<Component> {
        let bytes = std::fs::read(self.path(hash)).ok()?;
        if bytes.len() < TAG_LEN {
            return None;
        }
        let (tag, artifact) = bytes.split_at(TAG_LEN);
        let expected = self.tag(hash, artifact);
        // Constant-time comparison is not needed (the tag is not secret-dependent to an
        // attacker who cannot read the key), but it costs nothing.
        if !constant_time_eq(tag, &expected) {
            tracing::warn!(%hash, "ignoring a compiled-plugin cache entry whose tag does not verify");
            return None;
        }
        // SAFETY: `Component::deserialize` requires bytes produced by `serialize` of a
        // compatible engine and not tampered with. The artifact was written by `store` below
        // from `Component::serialize`, for this engine fingerprint, and its keyed tag verified
        // just above, so it is exactly those bytes; wasmtime additionally checks the engine
        // compatibility header and refuses a mismatch with an error.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, artifact) };
        match component {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(%hash, error = %e, "ignoring an incompatible compiled-plugin cache entry");
                None
            }
        }
    }

    /// Remember the compilation of the component with `hash`.
    pub fn store(&self, hash: &Blake3Hash, artifact: &[u8]) {
        let mut bytes = Vec::with_capacity(TAG_LEN + artifact.len());
        bytes.extend_from_slice(&self.tag(hash, artifact));
        bytes.extend_from_slice(artifact);
        let path = self.path(hash);
        if let Err(e) = crate::fsutil::write_atomic(&path, &bytes) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the compiled-plugin cache");
        }
    }
}

/// Equal bytes, compared in time that depends only on the lengths (MACs, tokens).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
