//! The checkpoints a member's CLI keeps, one per service: the latest signed checkpoint it saw,
//! in `STATE/checkpoints/<SHA-256 of the service certificate>.txt` (`STATE`: `$CGS_STATE_DIR`,
//! else `$XDG_STATE_HOME/cgs`, else `~/.local/state/cgs`).
//!
//! Each time the CLI keeps a newer one (before a vote, `cgs ledger checkpoint`), it first checks
//! its signature against the keys of the service's trusted or retired nodes, as the service
//! lists them, and that the service's ledger extends the one it kept — an RFC 9162 consistency
//! proof from it (`GET /node/consistency`) — and refuses to go on otherwise: the history the
//! member saw was rewritten or forked. At a recovery, `cgs recovery submit` checks the recovering ledger
//! against the kept one (docs/cluster.md "Recovery").

use std::path::{Path, PathBuf};

use cgs_core::note::{Checkpoint, VerifierKey};

use crate::{Client, ClientError};

/// Where the CLI keeps its state, if it has a home.
pub fn state_dir() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("CGS_STATE_DIR")
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("cgs")))
        .or_else(|| var("HOME").map(|h| h.join(".local/state/cgs")))
}

/// The file of the checkpoint kept for the service whose certificate is `service_cert_pem`
/// (named by the SHA-256 of its first certificate's DER, so the PEM's layout does not matter).
pub fn kept_path(state: &Path, service_cert_pem: &str) -> Result<PathBuf, ClientError> {
    use sha2::Digest as _;
    let der = rustls_pemfile::certs(&mut service_cert_pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| ClientError::Certificate("the service certificate is not a PEM certificate".into()))?;
    Ok(state.join("checkpoints").join(format!("{}.txt", hex::encode(sha2::Sha256::digest(der.as_ref())))))
}

/// The checkpoint kept in `path` (note text and checkpoint), if any.
pub fn load(path: &Path) -> Result<Option<(String, Checkpoint)>, ClientError> {
    match std::fs::read_to_string(path) {
        Ok(note) => {
            let cp = crate::recovery::held_checkpoint(&note).map_err(|e| {
                ClientError::Refused(format!(
                    "the checkpoint kept in {} is damaged ({e}): `cgs ledger checkpoint --reset` replaces it \
                     with the service's current one",
                    path.display()
                ))
            })?;
            Ok(Some((note, cp)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::Refused(format!("the checkpoint kept in {} cannot be read: {e}", path.display()))),
    }
}

/// How long a CLI run waits for another one checking the same service's checkpoint.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The lock a CLI run holds while it checks and keeps the checkpoint in `path` (an exclusive
/// advisory lock on `path` + `.lock`, released when the file is dropped or the process ends):
/// concurrent runs take turns, so each checks from the newest one kept and none writes an older
/// one over a newer. `Ok(None)` (no lock; it goes on as before locks) when the lock file can be
/// neither created nor opened (a state directory that cannot be written: nothing will be kept
/// either); a file system without locks also goes on unlocked.
pub async fn lock(path: &Path, wait: std::time::Duration) -> Result<Option<std::fs::File>, ClientError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let created = path
        .parent()
        .map(std::fs::create_dir_all)
        .transpose()
        .and_then(|_| std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&name));
    // A lock file of another user's (a run under sudo) can still be locked read-only.
    let Ok(file) = created.or_else(|_| std::fs::File::open(&name)) else { return Ok(None) };
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ClientError::Refused(format!(
                    "another cgs run (a vote or `cgs ledger checkpoint` of this service) has been checking the \
                     checkpoint kept in {} for {} s: retry when it ends",
                    path.display(),
                    wait.as_secs()
                )));
            }
            Err(std::fs::TryLockError::Error(_)) => return Ok(None),
        }
    }
}

/// Keep `note` in `path`: written whole and synced to a temporary file of its own (random name,
/// created exclusively), then renamed over the kept one. [`observe`] calls it holding [`lock`].
pub fn save(path: &Path, note: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".checkpoint.").suffix(".tmp").tempfile_in(dir)?;
    tmp.write_all(note.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// What [`observe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The service has signed no checkpoint yet (`503 NotReady`) and none was kept: nothing to
    /// check, nothing kept.
    NoneYet,
    /// No checkpoint was kept for this service: this one (`size` entries) is now.
    First {
        /// Its size.
        size: u64,
    },
    /// The service's ledger extends the kept checkpoint (`from` entries) to `to`, now kept.
    Extended {
        /// The kept size.
        from: u64,
        /// The new size.
        to: u64,
    },
    /// Kept without any check (`reset`): members agreed the service's history changed (a
    /// recovery from a shorter copy).
    Reset {
        /// The size kept before, if any.
        from: Option<u64>,
        /// The new size.
        to: u64,
    },
}

/// What [`observe`] found, the note the service showed, and why it could not be kept (the check
/// passed; the member's state directory is not writable).
#[derive(Debug, Clone)]
pub struct Observation {
    /// What was found.
    pub observed: Observed,
    /// The service's checkpoint (note text).
    pub note: Option<String>,
    /// Why the newer checkpoint could not be kept, if so.
    pub not_kept: Option<String>,
}

/// The hashes of a consistency answer (`{"from","to","proof":[hex]}`, `GET /node/consistency`
/// or `/recovery/consistency`), which must be for `from` → `to`.
pub fn proof_hashes(answer: &serde_json::Value, from: u64, to: u64) -> Result<Vec<Vec<u8>>, ClientError> {
    let protocol = |detail: String| ClientError::Protocol { status: 200, detail };
    if answer["from"].as_u64() != Some(from) || answer["to"].as_u64() != Some(to) {
        return Err(protocol(format!("the consistency answer is for other sizes than {from} → {to}: {answer}")));
    }
    answer["proof"]
        .as_array()
        .ok_or_else(|| protocol("the consistency answer has no proof".into()))?
        .iter()
        .map(|h| h.as_str().and_then(|h| hex::decode(h).ok()).ok_or_else(|| protocol("a proof hash is not hex".into())))
        .collect()
}

fn rewritten(path: &Path, kept: &Checkpoint, why: impl std::fmt::Display) -> ClientError {
    ClientError::Refused(format!(
        "the service's ledger does not extend the checkpoint you kept ({} entries, {}): {why}. Its history was \
         rewritten or forked since you saw it: do not vote or send anything to it; tell the other members (if \
         you all agree it changed, e.g. a recovery from a shorter copy, `cgs ledger checkpoint --reset` keeps \
         its current one)",
        kept.size,
        path.display()
    ))
}

/// How long a node answering with an older checkpoint than the kept one may take to catch up
/// (a follower a little behind the leader) before it is refused.
const BEHIND_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The keys that may sign the checkpoints of the log `origin`: those of the service's nodes that
/// governance trusts or retired (`GET /node/network/nodes`; only a trusted node leads, and a
/// retired one may have led). The keys come from the service over the same pinned connection as
/// the checkpoint: the check refuses an unsigned, damaged or stray note, it is no trust root of
/// its own.
pub fn signing_keys(nodes: &serde_json::Value, origin: &str) -> Result<Vec<VerifierKey>, ClientError> {
    use base64::Engine as _;
    let protocol = |detail: String| ClientError::Protocol { status: 200, detail };
    let list = nodes["nodes"].as_array().ok_or_else(|| protocol("GET /node/network/nodes lists no nodes".into()))?;
    let mut keys = Vec::new();
    for n in list.iter().filter(|n| n["status"] == "Trusted" || n["status"] == "Retired") {
        let raw = n["public_key"]
            .as_str()
            .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok())
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or_else(|| protocol(format!("node {} has no Ed25519 public_key", n["node_id"])))?;
        keys.push(VerifierKey::new(origin, &raw).map_err(|e| protocol(format!("node {}: {e}", n["node_id"])))?);
    }
    Ok(keys)
}

/// The service's latest checkpoint, unchecked: `None` for `503 NotReady` (none signed yet).
async fn fetch(client: &Client) -> Result<Option<(String, Checkpoint)>, ClientError> {
    let r = client.get("/node/checkpoint").await?;
    if r.status == 503 && r.error().is_some_and(|e| e.error.code == "NotReady") {
        return Ok(None);
    }
    r.ok()?;
    let note = String::from_utf8(r.body.to_vec())
        .map_err(|_| ClientError::Protocol { status: r.status, detail: "the checkpoint is not text".into() })?;
    let seen = crate::recovery::held_checkpoint(&note)
        .map_err(|e| ClientError::Protocol { status: r.status, detail: format!("the service's checkpoint: {e}") })?;
    if seen.size == 0 {
        return Ok(None);
    }
    Ok(Some((note, seen)))
}

/// Check that one of the nodes in `nodes` (`GET /node/network/nodes`; [`signing_keys`]) signed
/// `note`, whose checkpoint is `seen`.
pub fn verify_signed(note: &str, seen: &Checkpoint, nodes: &serde_json::Value) -> Result<(), ClientError> {
    cgs_core::note::verify_checkpoint(note, &signing_keys(nodes, &seen.origin)?).map(|_| ()).map_err(|e| {
        ClientError::Refused(format!(
            "the service's checkpoint of {} entries is not signed by any of its nodes' keys ({e}): do not vote or \
             send anything to it; tell the other members",
            seen.size
        ))
    })
}

/// [`verify_signed`] with the service's node list.
async fn check_signed(client: &Client, note: &str, seen: &Checkpoint) -> Result<(), ClientError> {
    verify_signed(note, seen, &client.get("/node/network/nodes").await?.ok_json()?)
}

/// The service's latest checkpoint, its signature checked ([`signing_keys`]), with nothing kept
/// or compared: `None` for `503 NotReady` (none signed yet).
pub async fn latest(client: &Client) -> Result<Option<(String, Checkpoint)>, ClientError> {
    let Some((note, seen)) = fetch(client).await? else { return Ok(None) };
    check_signed(client, &note, &seen).await?;
    Ok(Some((note, seen)))
}

/// Fetch the service's latest checkpoint, check its signature ([`signing_keys`]) and that its
/// ledger extends the one kept in `path` (a consistency proof from it; the same origin; the same
/// root at the same size), and keep the newer one. With `reset`, keep the service's current one
/// (signed) without comparing it with the kept one.
///
/// Refused ([`ClientError::Refused`]): a ledger that does not extend the kept checkpoint; a
/// service that shows no checkpoint though one was kept; a node still behind the kept one after
/// [`BEHIND_GRACE`] (a service rolled back would look so).
pub async fn observe(client: &Client, path: &Path, reset: bool) -> Result<Observation, ClientError> {
    let _turn = lock(path, LOCK_WAIT).await?;
    // A damaged kept file is what `reset` is for.
    let kept = if reset { load(path).ok().flatten() } else { load(path)? };
    let deadline = std::time::Instant::now() + BEHIND_GRACE;
    let (note, seen) = loop {
        let Some((note, seen)) = fetch(client).await? else {
            if let Some((_, kept)) = &kept
                && !reset
            {
                return Err(ClientError::Refused(format!(
                    "the service shows no signed checkpoint, though you kept one of {} entries ({}): retry; if it \
                     persists, its history was rolled back or rewritten",
                    kept.size,
                    path.display()
                )));
            }
            return Ok(Observation { observed: Observed::NoneYet, note: None, not_kept: None });
        };
        match &kept {
            Some((_, k)) if !reset && seen.size < k.size && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            _ => break (note, seen),
        }
    };
    check_signed(client, &note, &seen).await?;
    let keep = |observed: Observed| {
        let not_kept =
            save(path, &note).err().map(|e| format!("the checkpoint could not be kept in {}: {e}", path.display()));
        Observation { observed, note: Some(note.clone()), not_kept }
    };
    let kept = match kept {
        Some((_, kept)) if !reset => kept,
        other => {
            let observed = match other {
                Some((_, k)) => Observed::Reset { from: Some(k.size), to: seen.size },
                None if reset => Observed::Reset { from: None, to: seen.size },
                None => Observed::First { size: seen.size },
            };
            return Ok(keep(observed));
        }
    };
    if seen.origin != kept.origin {
        return Err(rewritten(path, &kept, format!("the log is another one (origin {:?})", seen.origin)));
    }
    if seen.size < kept.size {
        return Err(ClientError::Refused(format!(
            "the node answering shows a checkpoint of {} entries, older than the one you kept ({} entries, {}), and \
             did not catch up in {} s: a node far behind, or a service rolled back; ask another node (--url), or \
             tell the other members",
            seen.size,
            kept.size,
            path.display(),
            BEHIND_GRACE.as_secs()
        )));
    }
    let proof = if seen.size == kept.size {
        Vec::new()
    } else {
        let p = client.get(&format!("/node/consistency?from={}&to={}", kept.size, seen.size)).await?.ok_json()?;
        proof_hashes(&p, kept.size, seen.size)?
    };
    cgs_core::merkle::verify_consistency(kept.size, seen.size, &proof, &kept.root, &seen.root)
        .map_err(|e| rewritten(path, &kept, e))?;
    let observed = Observed::Extended { from: kept.size, to: seen.size };
    if seen.size == kept.size {
        return Ok(Observation { observed, note: Some(note), not_kept: None });
    }
    Ok(keep(observed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";

    /// The file is named by the certificate, whatever its PEM layout; a kept note loads back,
    /// a damaged one is an error (not silently replaced), none is `None`.
    #[test]
    fn kept_checkpoints_are_per_service_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let a = kept_path(dir.path(), CERT).unwrap();
        assert_eq!(a, kept_path(dir.path(), &CERT.replace('\n', "\r\n")).unwrap());
        assert!(kept_path(dir.path(), "not a certificate").is_err());
        assert_eq!(load(&a).unwrap(), None);
        let note = "cgs/test\n2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} cgs/test AQIDBAU=\n";
        save(&a, note).unwrap();
        save(&a, note).unwrap();
        let names: Vec<_> = std::fs::read_dir(a.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        let (text, cp) = load(&a).unwrap().unwrap();
        assert_eq!((text.as_str(), cp.size), (note, 2));
        std::fs::write(&a, "garbage").unwrap();
        assert!(load(&a).is_err());
    }

    /// A checkpoint is accepted when a trusted or retired node's key signed it, never a pending
    /// node's or a stranger's; a nodes answer without keys is an error.
    #[test]
    fn only_checkpoints_signed_by_the_services_nodes_are_kept() {
        use base64::Engine as _;
        use ed25519_dalek::Signer as _;
        let b64 = |k: &ed25519_dalek::SigningKey| {
            base64::engine::general_purpose::STANDARD.encode(k.verifying_key().to_bytes())
        };
        let [trusted, retired, pending, stranger] =
            [1u8, 2, 3, 4].map(|i| ed25519_dalek::SigningKey::from_bytes(&[i; 32]));
        let nodes = serde_json::json!({"nodes": [
            {"node_id": 1, "status": "Trusted", "public_key": b64(&trusted)},
            {"node_id": 2, "status": "Retired", "public_key": b64(&retired)},
            {"node_id": 3, "status": "Pending", "public_key": b64(&pending)},
        ]});
        let keys = signing_keys(&nodes, "cgs/test").unwrap();
        let cp = Checkpoint { origin: "cgs/test".into(), size: 5, root: [9u8; 32], extensions: vec![] };
        let signed_by = |k: &ed25519_dalek::SigningKey| {
            let text = cp.to_text();
            let mut raw = cgs_core::note::key_id("cgs/test", &k.verifying_key().to_bytes()).to_vec();
            raw.extend_from_slice(&k.sign(text.as_bytes()).to_bytes());
            format!("{text}\n\u{2014} cgs/test {}\n", base64::engine::general_purpose::STANDARD.encode(&raw))
        };
        for k in [&trusted, &retired] {
            assert_eq!(cgs_core::note::verify_checkpoint(&signed_by(k), &keys).unwrap(), cp);
            verify_signed(&signed_by(k), &cp, &nodes).unwrap();
        }
        for k in [&pending, &stranger] {
            assert!(cgs_core::note::verify_checkpoint(&signed_by(k), &keys).is_err());
            let refused = verify_signed(&signed_by(k), &cp, &nodes);
            assert!(matches!(&refused, Err(ClientError::Refused(m)) if m.contains("not signed by any")), "{refused:?}");
        }
        // Keys named for another log do not verify this one's checkpoints.
        let other = signing_keys(&nodes, "cgs/other").unwrap();
        assert!(cgs_core::note::verify_checkpoint(&signed_by(&trusted), &other).is_err());
        assert!(
            signing_keys(&serde_json::json!({"nodes": [{"node_id": 1, "status": "Trusted"}]}), "cgs/test").is_err()
        );
        assert!(signing_keys(&serde_json::json!({}), "cgs/test").is_err());
        let unknown = serde_json::json!({"nodes": [{"node_id": 1, "status": "Unknown", "public_key": b64(&trusted)}]});
        assert!(signing_keys(&unknown, "cgs/test").unwrap().is_empty(), "only Trusted and Retired nodes' keys");
    }

    /// Two runs checking one service's checkpoint take turns: the second waits until the first
    /// is done, and gives up, saying why, when it waits too long.
    #[tokio::test]
    async fn runs_checking_one_service_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let a = kept_path(dir.path(), CERT).unwrap();
        let first = lock(&a, LOCK_WAIT).await.unwrap().expect("a writable state directory is locked");
        let refused = lock(&a, std::time::Duration::from_millis(200)).await;
        assert!(matches!(&refused, Err(ClientError::Refused(m)) if m.contains("another cgs run")), "{refused:?}");
        let released = std::time::Instant::now();
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { lock(&a, LOCK_WAIT).await.map(|l| (l.is_some(), std::time::Instant::now())) }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        drop(first);
        let (locked, at) = waiter.await.unwrap().unwrap();
        assert!(
            locked && at.duration_since(released) >= std::time::Duration::from_millis(300),
            "it waited for the first"
        );
        // Another service's checkpoint is not held up.
        let other = dir.path().join("checkpoints/other.txt");
        assert!(lock(&other, std::time::Duration::ZERO).await.unwrap().is_some());
    }
}
