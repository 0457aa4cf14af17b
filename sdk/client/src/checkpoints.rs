//! The checkpoints a member's CLI keeps, one per service: the latest signed checkpoint it saw,
//! in `STATE/checkpoints/<SHA-256 of the service certificate>.txt` (`STATE`: `$CGS_STATE_DIR`,
//! else `$XDG_STATE_HOME/cgs`, else `~/.local/state/cgs`).
//!
//! Each time the CLI keeps a newer one (before a vote, `cgs ledger checkpoint`), it first checks
//! that the service's ledger extends the one it kept — an RFC 9162 consistency proof from it
//! (`GET /node/consistency`) — and refuses to go on otherwise: the history the member saw was
//! rewritten or forked. At a recovery, `cgs recovery submit` checks the recovering ledger
//! against the kept one (docs/cluster.md "Recovery").

use std::path::{Path, PathBuf};

use cgs_core::note::Checkpoint;

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
            let cp = crate::recovery::held_checkpoint(&note)
                .map_err(|e| ClientError::Refused(format!("the checkpoint kept in {}: {e}", path.display())))?;
            Ok(Some((note, cp)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::Refused(format!("the checkpoint kept in {}: {e}", path.display()))),
    }
}

/// Keep `note` in `path` (written whole: a temporary file renamed over it).
fn save(path: &Path, note: &str) -> Result<(), ClientError> {
    let io = |e: std::io::Error| ClientError::Refused(format!("keeping the checkpoint in {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, note).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// What [`observe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The service has signed no checkpoint yet: nothing kept.
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
    /// The node answering is behind the kept checkpoint (a lagging node): nothing to check.
    Behind {
        /// The kept size.
        kept: u64,
        /// The node's size.
        seen: u64,
    },
}

fn rewritten(path: &Path, kept: &Checkpoint, why: impl std::fmt::Display) -> ClientError {
    ClientError::Refused(format!(
        "the service's ledger does not extend the checkpoint you kept ({} entries, {}): {why}. Its history was \
         rewritten or forked since you saw it: do not vote or send anything to it; tell the other members",
        kept.size,
        path.display()
    ))
}

/// Fetch the service's latest checkpoint, check that its ledger extends the one kept in `path`
/// (a consistency proof from it), and keep the newer one.
pub async fn observe(client: &Client, path: &Path) -> Result<(Observed, Option<String>), ClientError> {
    let r = client.get("/node/checkpoint").await?;
    if r.status == 503 {
        return Ok((Observed::NoneYet, None));
    }
    r.ok()?;
    let note = String::from_utf8(r.body.to_vec())
        .map_err(|_| ClientError::Protocol { status: r.status, detail: "the checkpoint is not text".into() })?;
    let seen = crate::recovery::held_checkpoint(&note)
        .map_err(|e| ClientError::Protocol { status: r.status, detail: format!("the service's checkpoint: {e}") })?;
    let Some((_, kept)) = load(path)? else {
        save(path, &note)?;
        return Ok((Observed::First { size: seen.size }, Some(note)));
    };
    if seen.origin != kept.origin {
        return Err(rewritten(path, &kept, format!("the log is another one (origin {:?})", seen.origin)));
    }
    if seen.size < kept.size {
        return Ok((Observed::Behind { kept: kept.size, seen: seen.size }, Some(note)));
    }
    let proof = if seen.size == kept.size {
        Vec::new()
    } else {
        let p = client.get(&format!("/node/consistency?from={}&to={}", kept.size, seen.size)).await?.ok_json()?;
        if p["from"].as_u64() != Some(kept.size) || p["to"].as_u64() != Some(seen.size) {
            return Err(ClientError::Protocol {
                status: 200,
                detail: format!("a consistency proof for other sizes: {p}"),
            });
        }
        p["proof"]
            .as_array()
            .map(|a| a.iter().map(|h| h.as_str().and_then(|h| hex::decode(h).ok())).collect::<Option<Vec<_>>>())
            .unwrap_or_default()
            .ok_or_else(|| ClientError::Protocol { status: 200, detail: "a proof hash is not hex".into() })?
    };
    cgs_core::merkle::verify_consistency(kept.size, seen.size, &proof, &kept.root, &seen.root)
        .map_err(|e| rewritten(path, &kept, e))?;
    if seen.size > kept.size {
        save(path, &note)?;
    }
    Ok((Observed::Extended { from: kept.size, to: seen.size }, Some(note)))
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
        let (text, cp) = load(&a).unwrap().unwrap();
        assert_eq!((text.as_str(), cp.size), (note, 2));
        std::fs::write(&a, "garbage").unwrap();
        assert!(load(&a).is_err());
    }
}
