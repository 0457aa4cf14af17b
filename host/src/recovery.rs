//! Disaster recovery with members' recovery shares (CCF's recovery shares, done inside the TEE).
//!
//! **Shares.** The service's secrets — every version of the ledger secret, the service key and
//! certificate, the first token key (the files of [`crate::cluster::SHARED_FILES`] and the
//! versions of `sys.ledger_secrets`) — are encrypted (AES-256-GCM) with a fresh random wrapping
//! key. The wrapping key is split with Shamir's scheme over GF(2^8) into one share per member, any
//! `threshold` of which rebuild it (`set_recovery_threshold`; every member until it is set). Each
//! share is sealed with HPKE to its member's Ed25519 key in its X25519 form (RFC 9180 base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, info [`SHARE_INFO`], aad
//! `recovery share {epoch} member {id} service {SHA-256 of the service certificate}`; the code is
//! `cgs_ledger_format::seal`). The record ([`RecoveryShares`], `sys.recovery` key
//! `shares`) is public: it holds nothing a member's key or a threshold of them does not protect.
//! The leader writes a new record, the next epoch, in the transaction that changes what it
//! covers: the secret versions, the members and their keys, or the threshold (compared through
//! [`fingerprint`]; a re-key therefore re-shares).
//!
//! **Recovering** (`cgs-host start --recover`): a node starts from one node's ledger — verified
//! first, as `cgs ledger verify` does, and again once the shares opened — with a new node key
//! and collects shares ([`collect`]) before it opens anything: each member opens its
//! share locally and submits it sealed to the recovering node's attested key, in a signed
//! `recovery_share` message. Shares stay in that process's memory. At the threshold the node
//! rebuilds the wrapping key, opens the secrets, and starts as the only node of the service.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use sha2::Digest as _;

/// Host-written, public table: `shares` → [`RecoveryShares`]; `history` → the recoveries so far.
pub const SYS_RECOVERY: &str = "sys.recovery";
/// The key of the current shares in [`SYS_RECOVERY`].
pub const SHARES_KEY: &str = "shares";
/// The key of the recovery history in [`SYS_RECOVERY`].
pub const HISTORY_KEY: &str = "history";
use cgs_ledger_format::recovery::{SHARE_INFO, SUBMIT_INFO, recovery_status_bytes, submission_aad};
use cgs_ledger_format::seal::{open_with_ed25519, seal_to_ed25519};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Shamir's secret sharing over GF(2^8) (the AES field, x^8 + x^4 + x^3 + x + 1), byte by byte.
/// A share is `x (1 byte, ≠ 0) ‖ y (32 bytes)`. Constant-time field arithmetic.
pub mod shamir {
    /// Length of a share.
    pub const SHARE_LEN: usize = 33;

    fn mul(mut a: u8, mut b: u8) -> u8 {
        let mut p = 0u8;
        for _ in 0..8 {
            p ^= a & 0u8.wrapping_sub(b & 1);
            let carry = 0u8.wrapping_sub(a >> 7);
            a = (a << 1) ^ (0x1b & carry);
            b >>= 1;
        }
        p
    }

    /// a^254 = a^-1 (a ≠ 0).
    fn inv(a: u8) -> u8 {
        let mut r = 1u8;
        let mut base = a;
        let mut e = 254u8;
        for _ in 0..8 {
            let m = mul(r, base);
            let take = 0u8.wrapping_sub(e & 1);
            r = (m & take) | (r & !take);
            base = mul(base, base);
            e >>= 1;
        }
        r
    }

    /// Split `secret` into `n` shares, any `threshold` of which rebuild it (1 ≤ threshold ≤ n ≤ 255).
    pub fn split(secret: &[u8; 32], n: usize, threshold: usize) -> Result<Vec<[u8; SHARE_LEN]>, String> {
        if threshold == 0 || threshold > n || n > 255 {
            return Err(format!("cannot split into {n} shares with threshold {threshold} (1 ≤ threshold ≤ n ≤ 255)"));
        }
        let mut shares: Vec<[u8; SHARE_LEN]> = (1..=n)
            .map(|x| {
                let mut s = [0u8; SHARE_LEN];
                s[0] = x as u8;
                s
            })
            .collect();
        for (i, byte) in secret.iter().enumerate() {
            let mut coefficients = vec![*byte];
            coefficients.extend((1..threshold).map(|_| rand::random::<u8>()));
            for s in &mut shares {
                let x = s[0];
                // Horner, highest coefficient first.
                s[1 + i] = coefficients.iter().rev().fold(0u8, |acc, c| mul(acc, x) ^ c);
            }
        }
        Ok(shares)
    }

    /// Rebuild the secret from shares (Lagrange interpolation at 0). With fewer shares than the
    /// threshold the result is a wrong value, not an error: callers check it (an AEAD tag).
    pub fn combine(shares: &[[u8; SHARE_LEN]]) -> Result<[u8; 32], String> {
        let xs: Vec<u8> = shares.iter().map(|s| s[0]).collect();
        if xs.is_empty() || xs.contains(&0) {
            return Err("no shares, or a share with x = 0".into());
        }
        if xs.iter().collect::<std::collections::BTreeSet<_>>().len() != xs.len() {
            return Err("two shares have the same x".into());
        }
        let mut out = [0u8; 32];
        for (j, s) in shares.iter().enumerate() {
            // L_j(0) = Π_{m≠j} x_m / (x_m - x_j); subtraction is XOR.
            let mut l = 1u8;
            for (m, xm) in xs.iter().enumerate() {
                if m != j {
                    l = mul(l, mul(*xm, inv(xm ^ xs[j])));
                }
            }
            for (i, o) in out.iter_mut().enumerate() {
                *o ^= mul(l, s[1 + i]);
            }
        }
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn field_inverse() {
            for a in 1..=255u8 {
                assert_eq!(mul(a, inv(a)), 1, "{a}");
            }
        }

        #[test]
        fn any_threshold_of_shares_rebuild_and_fewer_do_not() {
            let secret: [u8; 32] = rand::random();
            let shares = split(&secret, 5, 3).unwrap();
            for a in 0..5 {
                for b in a + 1..5 {
                    for c in b + 1..5 {
                        assert_eq!(combine(&[shares[a], shares[b], shares[c]]).unwrap(), secret);
                    }
                    assert_ne!(combine(&[shares[a], shares[b]]).unwrap(), secret, "two of threshold three");
                }
            }
            assert_eq!(combine(&shares).unwrap(), secret, "more than the threshold");
            let one = split(&secret, 3, 1).unwrap();
            assert!(one.iter().all(|s| s[1..] == secret), "threshold 1: every share is the secret");
            assert!(split(&secret, 2, 3).is_err() && split(&secret, 2, 0).is_err() && split(&secret, 256, 2).is_err());
            assert!(combine(&[shares[0], shares[0]]).is_err(), "same x twice");
        }
    }
}

/// The aad of a share sealed to member `member` at `epoch` for the service whose certificate
/// (PEM) is `service_cert`: a share opens for that service only (a member using one key in
/// several services is not an oracle for the others' shares).
pub fn share_aad(epoch: u64, member: &str, service_cert: &[u8]) -> String {
    cgs_ledger_format::recovery::share_aad(epoch, member, &hex::encode(sha2::Sha256::digest(service_cert)))
}

/// What `sys.recovery` records of a share so that a wrong one is refused when submitted.
pub fn share_hash(epoch: u64, member: &str, share: &[u8]) -> String {
    let mut h = sha2::Sha256::new();
    h.update(b"cgs-recovery-share-hash-v1\0");
    h.update(epoch.to_be_bytes());
    h.update(member.as_bytes());
    h.update([0]);
    h.update(share);
    hex::encode(h.finalize())
}

/// A share sealed to its member.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealedShare {
    /// Base64 HPKE encapsulated key.
    pub enc: String,
    /// Base64 ciphertext of the share.
    pub ciphertext: String,
    /// [`share_hash`] of the share.
    pub share_hash: String,
}

/// The current recovery shares (`sys.recovery` key `shares`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecoveryShares {
    /// Counts the re-sharings; shares of one epoch never combine with another's.
    pub epoch: u64,
    /// Shares needed.
    pub threshold: u32,
    /// [`fingerprint`] of what the shares cover.
    pub fingerprint: String,
    /// The digest of the governance tables the shares were made for (in the fingerprint).
    #[serde(default)]
    pub governance: String,
    /// The ledger secret versions in the bundle.
    pub versions: Vec<u32>,
    /// Member id → its sealed share.
    pub shares: BTreeMap<String, SealedShare>,
    /// Base64 AES-GCM nonce of the bundle.
    pub nonce: String,
    /// Base64 AES-256-GCM ciphertext of the [`Bundle`] under the wrapping key.
    pub bundle: String,
    /// What made this epoch: `genesis`, a proposal id, `recovery`.
    pub reason: String,
    /// Service time (ms).
    pub created_ms: u64,
}

/// What the wrapping key protects: the files every node shares, and the re-keyed versions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bundle {
    /// Path relative to the data directory ([`crate::cluster::SHARED_FILES`]) → base64 bytes.
    pub files: BTreeMap<String, String>,
    /// Ledger secret version (≥ 1) → base64 of its 32 bytes.
    pub versions: BTreeMap<u32, String>,
}

fn bundle_aad(epoch: u64, fingerprint: &str) -> String {
    format!("cgs recovery bundle v1 epoch {epoch} {fingerprint}")
}

/// The digest of what shares cover and are bound to: the secret versions, each share holder's id
/// and key, the threshold, and `governance`, a digest of the governance tables (members with
/// their status and roles, constitution, plugins, thresholds, issuers, join policy, nodes…). A
/// transaction that changes it re-shares; a recovery refuses a state that does not match it.
pub fn fingerprint(
    versions: &BTreeSet<u32>,
    members: &[(String, [u8; 32])],
    threshold: usize,
    governance: &str,
) -> String {
    let doc = serde_json::json!({
        "format": 2,
        "versions": versions,
        "members": members.iter().map(|(id, k)| (id.clone(), B64.encode(k))).collect::<BTreeMap<_, _>>(),
        "threshold": threshold,
        "governance": governance,
    });
    hex::encode(sha2::Sha256::digest(doc.to_string()))
}

impl RecoveryShares {
    /// New shares of `bundle` at `epoch` for `members` (id, Ed25519 key), `threshold` of them
    /// needed.
    pub fn make(
        epoch: u64,
        threshold: usize,
        members: &[(String, [u8; 32])],
        bundle: &Bundle,
        governance: &str,
        reason: &str,
        created_ms: u64,
    ) -> Result<Self, String> {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let versions: BTreeSet<u32> = std::iter::once(0).chain(bundle.versions.keys().copied()).collect();
        let fingerprint = fingerprint(&versions, members, threshold, governance);
        let wrapping: [u8; 32] = rand::random();
        let nonce: [u8; 12] = rand::random();
        let plain = serde_json::to_vec(bundle).map_err(|e| e.to_string())?;
        let aad = bundle_aad(epoch, &fingerprint);
        let ct = aes_gcm::Aes256Gcm::new((&wrapping).into())
            .encrypt((&nonce).into(), Payload { msg: &plain, aad: aad.as_bytes() })
            .map_err(|_| "cannot encrypt the recovery bundle".to_string())?;
        let parts = shamir::split(&wrapping, members.len(), threshold)?;
        let service_cert = bundle
            .files
            .get("service-cert.pem")
            .and_then(|c| B64.decode(c).ok())
            .ok_or("the bundle holds no service certificate")?;
        let mut shares = BTreeMap::new();
        for ((id, key), share) in members.iter().zip(parts) {
            let (enc, ciphertext) = seal_to_ed25519(key, SHARE_INFO, &share_aad(epoch, id, &service_cert), &share)
                .map_err(|e| format!("member {id}'s key: {e}"))?;
            shares.insert(id.clone(), SealedShare { enc, ciphertext, share_hash: share_hash(epoch, id, &share) });
        }
        Ok(Self {
            epoch,
            threshold: threshold as u32,
            fingerprint,
            governance: governance.to_string(),
            versions: versions.into_iter().collect(),
            shares,
            nonce: B64.encode(nonce),
            bundle: B64.encode(ct),
            reason: reason.to_string(),
            created_ms,
        })
    }

    /// Open the bundle with `shares` (at least the threshold of them).
    pub fn open(&self, shares: &[[u8; shamir::SHARE_LEN]]) -> Result<Bundle, String> {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        if shares.len() < self.threshold as usize {
            return Err(format!("{} of {} shares", shares.len(), self.threshold));
        }
        let wrapping = shamir::combine(shares)?;
        let nonce: [u8; 12] = B64
            .decode(&self.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or("the record's nonce is not 12 bytes of base64")?;
        let ct = B64.decode(&self.bundle).map_err(|e| format!("bundle: {e}"))?;
        let aad = bundle_aad(self.epoch, &self.fingerprint);
        let plain = aes_gcm::Aes256Gcm::new((&wrapping).into())
            .decrypt((&nonce).into(), Payload { msg: &ct, aad: aad.as_bytes() })
            .map_err(|_| "the shares do not open the recovery bundle (wrong shares, or the record was altered)")?;
        serde_json::from_slice(&plain).map_err(|e| format!("the recovery bundle: {e}"))
    }
}

/// A member's share submission (the payload of a signed `recovery_share` message).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// The epoch of the share.
    pub epoch: u64,
    /// Base64 of the recovering node's key the share is sealed to.
    pub node_key: String,
    /// Base64 HPKE encapsulated key.
    pub enc: String,
    /// Base64 ciphertext of the share.
    pub ciphertext: String,
}

/// What a recovery opened: the node that recovers, the secrets, the nodes it replaces.
#[derive(Debug)]
pub struct Recovered {
    /// The recovering node's new id.
    pub node_id: u64,
    /// Ledger secret versions ≥ 1 (version 0 is written with the files).
    pub versions: Vec<crate::ledger::crypto::LedgerSecret>,
    /// The nodes of the service before: retired by the recovery.
    pub previous_nodes: Vec<u64>,
    /// The epoch of the shares used.
    pub epoch: u64,
    /// Their fingerprint (authenticated by the bundle's opening): the state after the log is
    /// replayed must match it.
    pub fingerprint: String,
}

/// `DIR/node/recovery-pending`: written before a recovery writes the opened secrets, removed once
/// its transaction committed. While it is there, `start` refuses and `start --recover` starts
/// the recovery again (discarding what the unfinished one wrote).
pub fn pending_marker(dir: &Path) -> PathBuf {
    dir.join("node").join("recovery-pending")
}

/// Why a recovery cannot start.
fn config_err(m: impl Into<String>) -> crate::node::NodeError {
    crate::node::NodeError::Config(m.into())
}

/// Check the ledger in `dir` as `cgs ledger verify` does (`cgs_ledger_format::verify`) before
/// anything is served: contiguous entries, every Merkle node and checkpoint root recomputed, every
/// checkpoint's signature by the key the ledger recorded for its node, the state, the refused
/// transactions, table versions, checkpoint index and counters equal to the replay of the log,
/// the ledger equal to the expansion of the replicated log. A state row or an entry a checkpoint
/// covers, edited or removed since its node wrote it, is refused here, before members are asked
/// for their shares (the unsigned tail is not: docs/cluster.md).
async fn verify_ledger(dir: &Path) -> Result<cgs_ledger_format::verify::Report, crate::node::NodeError> {
    eprintln!("recovery: verifying the ledger in {} (every entry, checkpoint and state row)", dir.display());
    // Repaired first (what `cgs ledger verify --repair` does): a file its node did not close
    // (killed, or its machine lost) needs redb's repair, which the read-only verifier does not do.
    cgs_ledger_format::verify::repair(dir)
        .map_err(|f| config_err(format!("the ledger in {}: {}", dir.display(), f.reason)))?;
    let d = dir.to_path_buf();
    let report = tokio::task::spawn_blocking(move || cgs_ledger_format::verify::verify_data_dir(&d, &[]))
        .await
        .map_err(|e| config_err(format!("the ledger verification stopped: {e}")))?;
    let report = report.map_err(|f| {
        config_err(format!(
            "the ledger in {} does not verify (seqno {}: {}): it was altered or damaged after its node wrote it. \
             Recover from another node's copy of the ledger; `cgs ledger verify {}` shows the same",
            dir.display(),
            f.seqno,
            f.reason,
            dir.display()
        ))
    })?;
    eprintln!(
        "recovery: the ledger verifies: {} entries, {} checkpoints, the last signed checkpoint covers {} entries; {} \
         entries after it and {} entries of the replicated log not applied yet are covered by no signature",
        report.entries,
        report.checkpoints,
        report.last_checkpoint.map(|(size, _)| size).unwrap_or(0),
        report.unsigned_tail,
        report.unapplied_entries
    );
    Ok(report)
}

/// What the recovering node reads of the ledger before raft runs.
struct LedgerView {
    record: RecoveryShares,
    /// Member id → Ed25519 key.
    members: BTreeMap<String, ed25519_dalek::VerifyingKey>,
    previous_nodes: Vec<u64>,
    next_node_id: u64,
    history: serde_json::Value,
    /// The last ledger entry applied (`term.seqno`): what members compare with the transaction
    /// ids they know of before they submit a share.
    last_applied: cgs_core::TxId,
    /// The raft log's last index (entries not applied yet are committed by the recovery).
    raft_last_index: u64,
}

fn read_view(dir: &Path) -> Result<LedgerView, crate::node::NodeError> {
    let db = crate::ledger::open_file(dir)?;
    let rows = |table: &str| {
        crate::ledger::read_state_table(&db, table).map_err(|e| config_err(format!("{}: {e}", dir.display())))
    };
    let get =
        |rows: &[(Vec<u8>, Vec<u8>)], key: &str| rows.iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v.clone());
    let recovery = rows(SYS_RECOVERY)?;
    let record: RecoveryShares = match get(&recovery, SHARES_KEY) {
        Some(v) => serde_json::from_slice(&v).map_err(|e| config_err(format!("sys.recovery is corrupt: {e}")))?,
        None => {
            return Err(config_err(format!(
                "{} holds no recovery shares (sys.recovery): it is not a CGS ledger of a service made by this version, \
                 or it is empty",
                dir.display()
            )));
        }
    };
    let history = get(&recovery, HISTORY_KEY)
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_else(|| serde_json::json!({"recovery_count": 0}));
    let mut members = BTreeMap::new();
    for (k, v) in rows(crate::schema::tables::MEMBERS)? {
        let id = String::from_utf8_lossy(&k).into_owned();
        if let Ok(rec) = serde_json::from_slice::<crate::schema::MemberRecord>(&v)
            && let Ok(key) = rec.key()
        {
            members.insert(id, key);
        }
    }
    let mut ids = BTreeSet::new();
    for (_, v) in rows(crate::gov::nodes::SYS_NODES)? {
        if let Ok(r) = serde_json::from_slice::<crate::gov::nodes::NodeRecord>(&v) {
            ids.insert(r.node_id);
        }
    }
    let mut retired = BTreeSet::new();
    let mut decided_max = 0;
    for (k, v) in rows(crate::gov::nodes::GOV_NODES)? {
        if let Ok(id) = String::from_utf8_lossy(&k).parse::<u64>() {
            decided_max = decided_max.max(id);
            if serde_json::from_slice::<serde_json::Value>(&v).is_ok_and(|d| d["status"] == "Retired") {
                retired.insert(id);
            }
        }
    }
    let next_node_id = ids.iter().copied().max().unwrap_or(0).max(decided_max) + 1;
    let previous_nodes = ids.difference(&retired).copied().collect();
    let (last_applied, raft_last_index) = crate::ledger::read_positions(&db)?;
    Ok(LedgerView { record, members, previous_nodes, next_node_id, history, last_applied, raft_last_index })
}

/// What the recovery listener shares with its connections.
struct Collecting {
    /// The data directory (its ledger file, for consistency proofs).
    dir: PathBuf,
    view: LedgerView,
    /// What the verification of the ledger found.
    verified: cgs_ledger_format::verify::Report,
    node_key: ed25519_dalek::SigningKey,
    node_key_b64: String,
    node_id: u64,
    evidence: serde_json::Value,
    service_cert_pem: String,
    max_skew_s: i64,
    /// Member id → its share (memory only).
    shares: Mutex<BTreeMap<String, [u8; shamir::SHARE_LEN]>>,
    opened: tokio::sync::Notify,
    bundle: Mutex<Option<Bundle>>,
    /// Consistency answers given, by `from` (the file must not change anyway): each is read
    /// from the file once, one at a time, so a flood of queries opens it once per size at most.
    proofs: tokio::sync::Mutex<BTreeMap<u64, serde_json::Value>>,
}

fn reply(status: u16, body: serde_json::Value) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap_or_default()
}

fn refuse(status: u16, code: &str, message: impl Into<String>) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    reply(status, serde_json::json!({"error": {"code": code, "message": message.into()}}))
}

impl Collecting {
    /// `status` with its `signature` by this node's key (the key its evidence binds): members'
    /// clients check it before they trust a figure in it, whatever certificate served it.
    fn signed(&self, mut status: serde_json::Value) -> serde_json::Value {
        use ed25519_dalek::Signer as _;
        let signature = self.node_key.sign(&recovery_status_bytes(&status));
        status["signature"] = B64.encode(signature.to_bytes()).into();
        status
    }

    fn status(&self) -> serde_json::Value {
        let submitted = self.shares.lock().map(|s| s.len()).unwrap_or_default();
        serde_json::json!({
            "status": "WaitingForRecoveryShares",
            "node_id": self.node_id,
            "node_key": self.node_key_b64,
            "evidence": self.evidence,
            "service_cert": self.service_cert_pem,
            "epoch": self.view.record.epoch,
            "threshold": self.view.record.threshold,
            "members": self.view.record.shares.len(),
            "submitted": submitted,
            "previous_nodes": self.view.previous_nodes,
            "last_applied": self.view.last_applied.to_string(),
            "last_applied_seqno": self.view.last_applied.seqno,
            "raft_last_index": self.view.raft_last_index,
            "verified": {
                "entries": self.verified.entries,
                "checkpoints": self.verified.checkpoints,
                "signed_entries": self.verified.last_checkpoint.map(|(size, _)| size).unwrap_or(0),
                "unsigned_tail": self.verified.unsigned_tail,
                "unapplied_entries": self.verified.unapplied_entries,
                "unapplied_digest": self.verified.unapplied_digest,
                "root": self.verified.root,
            },
            "recovery_count": self.view.history["recovery_count"],
        })
    }

    /// `GET /recovery/consistency?from=N`: the consistency proof from the tree of the first `N`
    /// entries to the whole verified ledger (the `root` of the signed status), for a member who
    /// holds a checkpoint of `N` entries: its client checks that this ledger extends it (not one
    /// rewritten from genesis, nor another service's) before it sends a share. The proof is
    /// checked against the signed root by the member, so it needs no signature; it is read from
    /// the file and compared with the verified root first (the file is the operator's).
    async fn consistency(&self, query: Option<&str>) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
        let to = self.verified.entries;
        let from = query
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("from="))
            .map(|v| v.parse::<u64>().map_err(|_| format!("`from` must be a number of entries, not {v:?}")))
            .unwrap_or_else(|| Err("name the size of the checkpoint you hold: ?from=N".into()));
        let from = match from {
            Ok(n) if n >= 1 && n <= to => n,
            Ok(0) => return refuse(400, "InvalidParameter", "a checkpoint holds at least one entry: from ≥ 1"),
            Ok(n) => {
                return refuse(
                    400,
                    "InvalidParameter",
                    format!(
                        "this ledger applied {to} entries: no proof from a tree of {n} (1 ≤ from ≤ {to}); a \
                         checkpoint larger than that means this copy applied less than what you hold"
                    ),
                );
            }
            Err(m) => return refuse(400, "InvalidParameter", m),
        };
        let mut answers = self.proofs.lock().await;
        if let Some(answer) = answers.get(&from) {
            return reply(200, answer.clone());
        }
        // Read inline (a few Merkle nodes), one query at a time, so that no read of the file
        // outlives the listener's connections once they are aborted.
        match crate::ledger::consistency_in_file(&self.dir, from, to) {
            Ok((proof, root)) if hex::encode(root) == self.verified.root => {
                let answer = serde_json::json!({
                    "from": from,
                    "to": to,
                    "root": self.verified.root,
                    "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
                });
                if answers.len() < 4096 {
                    answers.insert(from, answer.clone());
                }
                reply(200, answer)
            }
            Ok(_) => refuse(
                409,
                "LedgerChanged",
                "the ledger file no longer has the root that was verified: someone writes to it; the recovery stops \
                 at its second verification if it stays so. Start it again on a copy nobody writes to",
            ),
            Err(e) => {
                eprintln!("recovery: a consistency proof could not be read from the ledger file: {e}");
                refuse(500, "InternalError", "the ledger file could not be read (the node's log says why)")
            }
        }
    }

    /// `POST /recovery/members/{id}:recover`.
    fn submit(&self, member: &str, body: &[u8]) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
        use cgs_core::gov::{Envelope, MessageType};
        let env = match Envelope::parse(body) {
            Ok(e) => e,
            Err(e) => return refuse(400, "InvalidSignedMessage", e.to_string()),
        };
        let Some(key) = self.view.members.get(&env.member_id) else {
            return refuse(401, "UnknownMember", format!("{} is not a member of this service", env.member_id));
        };
        if env.verify(key).is_err() {
            return refuse(401, "InvalidSignature", "the signature does not verify with the member's registered key");
        }
        if env.msg_type != MessageType::RecoveryShare {
            return refuse(
                400,
                "WrongMessageType",
                format!("this route takes a signed `recovery_share` message, not `{}`", env.msg_type.as_str()),
            );
        }
        if env.member_id != member {
            return refuse(400, "MemberIdMismatch", "the URL's member id is not the message's signer");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        if (env.created_at - now).abs() > self.max_skew_s {
            return refuse(
                400,
                "StaleMessage",
                format!(
                    "created_at is {} s from this node's time; at most {} s is accepted",
                    env.created_at - now,
                    self.max_skew_s
                ),
            );
        }
        let sub: Submission = match env.json() {
            Ok(s) => s,
            Err(e) => {
                return refuse(400, "InvalidShare", format!("{e}: expected {{epoch, node_key, enc, ciphertext}}"));
            }
        };
        let record = &self.view.record;
        if sub.epoch != record.epoch {
            return refuse(
                409,
                "WrongEpoch",
                format!("the share is of epoch {}; this ledger's latest shares are epoch {}", sub.epoch, record.epoch),
            );
        }
        if sub.node_key != self.node_key_b64 {
            return refuse(400, "WrongNode", "the share is sealed to another node's key, not this recovering node's");
        }
        let Some(expected) = record.shares.get(member) else {
            return refuse(403, "NoShare", format!("member {member} holds no share of epoch {}", record.epoch));
        };
        let aad = submission_aad(sub.epoch, member, &sub.node_key);
        let share = match open_with_ed25519(&self.node_key, SUBMIT_INFO, &aad, &sub.enc, &sub.ciphertext) {
            Ok(s) => s,
            Err(e) => return refuse(400, "InvalidShare", format!("the sealed share: {e}")),
        };
        let share: Result<[u8; shamir::SHARE_LEN], _> = share.try_into();
        let share = match share {
            Ok(s) if share_hash(record.epoch, member, &s) == expected.share_hash => s,
            _ => {
                return refuse(
                    400,
                    "WrongShare",
                    format!("this is not member {member}'s share of epoch {}", record.epoch),
                );
            }
        };
        let collected: Vec<[u8; shamir::SHARE_LEN]> = {
            let Ok(mut s) = self.shares.lock() else { return refuse(503, "Unavailable", "poisoned") };
            s.insert(member.to_string(), share);
            s.values().copied().collect()
        };
        tracing::info!(member, submitted = collected.len(), threshold = record.threshold, "recovery share submitted");
        eprintln!("recovery: member {member} submitted its share ({} of {})", collected.len(), record.threshold);
        if collected.len() >= record.threshold as usize {
            match record.open(&collected) {
                Ok(bundle) => {
                    if let Ok(mut b) = self.bundle.lock() {
                        *b = Some(bundle);
                    }
                    self.opened.notify_one();
                }
                Err(e) => {
                    tracing::error!(error = %e, "the submitted shares do not open the recovery bundle");
                    return refuse(500, "RecoveryFailed", format!("the submitted shares do not open the secrets: {e}"));
                }
            }
        }
        let mut v = self.status();
        v["opened"] = (collected.len() >= record.threshold as usize).into();
        reply(200, self.signed(v))
    }

    async fn handle(
        self: Arc<Self>,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
        use http_body_util::BodyExt as _;
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        if method == hyper::Method::GET && path == "/recovery" {
            return Ok(reply(200, self.signed(self.status())));
        }
        if method == hyper::Method::GET && path == "/recovery/consistency" {
            return Ok(self.consistency(req.uri().query()).await);
        }
        if method == hyper::Method::GET
            && let Some(member) = path.strip_prefix("/recovery/shares/")
        {
            return Ok(match self.view.record.shares.get(member) {
                Some(s) => {
                    reply(200, serde_json::json!({"epoch": self.view.record.epoch, "member_id": member, "share": s}))
                }
                None => refuse(404, "NoShare", format!("member {member} holds no share of this ledger's latest epoch")),
            });
        }
        if method == hyper::Method::POST
            && let Some(member) = path.strip_prefix("/recovery/members/").and_then(|p| p.strip_suffix(":recover"))
        {
            let member = member.to_string();
            let body = match http_body_util::Limited::new(req.into_body(), 64 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return Ok(refuse(413, "BodyTooLarge", "a share submission is at most 64 KiB")),
            };
            return Ok(self.submit(&member, &body));
        }
        Ok(refuse(
            503,
            "ServiceRecovering",
            "this node is recovering the service: members submit their recovery shares (`cgs recovery submit`); \
             GET /recovery shows what is needed",
        ))
    }
}

/// A connection's place in the per-address count of the recovery listener (released on drop).
struct PerAddress {
    counts: Arc<Mutex<BTreeMap<std::net::IpAddr, usize>>>,
    ip: std::net::IpAddr,
}

impl PerAddress {
    /// Connections one address may hold while recovering.
    const MAX: usize = 32;

    fn take(counts: &Arc<Mutex<BTreeMap<std::net::IpAddr, usize>>>, ip: std::net::IpAddr) -> Option<Self> {
        let mut c = counts.lock().ok()?;
        let n = c.entry(ip).or_default();
        if *n >= Self::MAX {
            return None;
        }
        *n += 1;
        Some(Self { counts: counts.clone(), ip })
    }
}

impl Drop for PerAddress {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counts.lock()
            && let Some(n) = c.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
}

/// Phase one of `cgs-host start --recover`: read the ledger in `dir` (no raft), make this node's
/// key, serve the recovery routes on `listener` until a threshold of members submitted their
/// shares, then write the recovered files (in memory with `keys_in_memory`), record the new node
/// id and make raft's configuration this node alone. The caller then opens the node as usual.
pub async fn collect(
    dir: &Path,
    listener: &tokio::net::TcpListener,
    raft_addr: &str,
    max_skew: std::time::Duration,
) -> Result<Recovered, crate::node::NodeError> {
    let io =
        |p: PathBuf| move |e: std::io::Error| crate::node::NodeError::Dir { path: p.display().to_string(), source: e };
    let unfinished = pending_marker(dir).exists();
    for f in crate::cluster::SHARED_FILES.iter().filter(|f| f.starts_with("node/")) {
        if unfinished {
            // What an unfinished recovery wrote: opened again from the shares.
            crate::fsutil::remove_private(&dir.join(f));
        } else if crate::fsutil::read_private(&dir.join(f)).is_ok() {
            return Err(config_err(format!(
                "{} still holds the service's secrets ({f}): restart it with `cgs-host start` instead; --recover is for \
                 a ledger whose secrets are gone",
                dir.display()
            )));
        }
    }
    let verified = verify_ledger(dir).await?;
    let view = read_view(dir)?;
    if view.last_applied.seqno != verified.applied {
        return Err(config_err(format!(
            "the ledger in {} changed while it was read (verified up to {}, then read up to {}): start the recovery \
             again on a copy nobody writes to",
            dir.display(),
            verified.applied,
            view.last_applied.seqno
        )));
    }
    // A new node key: the old one (if any) is not trusted, nor reused.
    let node_key_path = crate::ledger::node_key_path(dir);
    crate::fsutil::remove_private(&node_key_path);
    std::fs::create_dir_all(dir.join("node")).map_err(io(dir.join("node")))?;
    let seed = crate::fsutil::load_or_create_secret(&node_key_path, "key").map_err(io(node_key_path.clone()))?;
    let node_key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let node_key_b64 = B64.encode(node_key.verifying_key().as_bytes());
    let cert_path = dir.join("service-cert.pem");
    let service_cert_pem = std::fs::read_to_string(&cert_path).map_err(io(cert_path))?;
    let evidence = crate::attest::NodeEvidence::new(node_key.verifying_key().to_bytes(), service_cert_pem.clone())
        .evidence()
        .clone();
    // The listener's certificate: made for this phase only. Shares are sealed to the node key
    // the evidence binds, so they do not depend on it.
    let tls_dir = dir.join("recovery");
    let _ = std::fs::remove_dir_all(&tls_dir);
    // Its key stays in this process (only the certificate is written, for members to pin).
    crate::fsutil::keep_secrets_in_memory(&tls_dir.join("node"));
    let local = listener.local_addr().map_err(io(dir.to_path_buf()))?;
    let tls_identity = crate::tls::ServiceIdentity::load_or_create(&tls_dir, &[local.ip().to_string()])?;
    let mut tls = (*tls_identity.server_config()?).clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()]; // served with HTTP/1.1 only
    let tls = Arc::new(tls);
    let state = Arc::new(Collecting {
        dir: dir.to_path_buf(),
        node_id: view.next_node_id,
        view,
        verified,
        node_key,
        node_key_b64,
        evidence,
        service_cert_pem,
        max_skew_s: max_skew.as_secs().max(60) as i64,
        shares: Mutex::new(BTreeMap::new()),
        opened: tokio::sync::Notify::new(),
        bundle: Mutex::new(None),
        proofs: tokio::sync::Mutex::new(BTreeMap::new()),
    });
    let r = &state.view.record;
    println!(
        "RECOVERING: the ledger verifies ({} entries, the first {} signed by a checkpoint, {} more received but \
         not applied); its last applied transaction is {} (raft log index {}). Node {} waits for {} of the {} \
         members' recovery shares (epoch {}) on https://{local}/recovery; the listener's certificate is {}. \
         Each member checks the node's evidence and the ledger's last transaction, then runs: cgs recovery \
         submit --url https://{local} --ca {} --key MEMBER.key --measurement EXPECTED_MEASUREMENT \
         [--min-seqno LATEST_SEQNO_KNOWN] (--allow-virtual instead of --measurement for a development service)",
        state.verified.entries,
        state.verified.last_checkpoint.map(|(size, _)| size).unwrap_or(0),
        state.verified.unapplied_entries,
        state.view.last_applied,
        state.view.raft_last_index,
        state.node_id,
        r.threshold,
        r.shares.len(),
        r.epoch,
        tls_dir.join("service-cert.pem").display(),
        tls_dir.join("service-cert.pem").display(),
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut conns = tokio::task::JoinSet::new();
    let per_address = Arc::new(Mutex::new(BTreeMap::new()));
    let bundle = loop {
        if let Some(b) = state.bundle.lock().ok().and_then(|mut b| b.take()) {
            break b;
        }
        tokio::select! {
            _ = state.opened.notified() => continue,
            accepted = listener.accept() => {
                let Ok((tcp, peer)) = accepted else {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                };
                let (acceptor, state) = (acceptor.clone(), state.clone());
                // At most 256 connections while recovering, 32 from one address: one client
                // cannot take every slot from the members.
                let Some(slot) = PerAddress::take(&per_address, peer.ip()) else { continue };
                if conns.len() >= 256 {
                    continue;
                }
                conns.spawn(async move {
                    let _slot = slot;
                    let Ok(Ok(tls)) = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| state.clone().handle(req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(std::time::Duration::from_secs(10))
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                    // A connection lives 30 s at most (a slow body cannot hold a slot longer).
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), conn).await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    };
    // Let the answer to the last submission go out, then close every recovery connection.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    conns.abort_all();
    while conns.join_next().await.is_some() {}
    let _ = std::fs::remove_dir_all(&tls_dir);
    // Members looked at the figures of the file as it was at start; it may have changed while
    // they submitted (the disk is the operator's): verified again, it must be the same ledger.
    let again = verify_ledger(dir).await?;
    if (again.entries, again.unapplied_entries, &again.root, &again.unapplied_digest)
        != (
            state.verified.entries,
            state.verified.unapplied_entries,
            &state.verified.root,
            &state.verified.unapplied_digest,
        )
    {
        return Err(config_err(format!(
            "the ledger in {} changed while members submitted their shares ({} entries and {} not applied, root {}, \
             where members were shown {} and {}, root {}; or the records not applied changed): nothing was \
             written. Start the recovery again on a copy nobody writes to",
            dir.display(),
            again.entries,
            again.unapplied_entries,
            again.root,
            state.verified.entries,
            state.verified.unapplied_entries,
            state.verified.root
        )));
    }
    apply_bundle(dir, &state, bundle, raft_addr)
}

/// Check the opened bundle, write its files, record the node id, make raft's configuration this
/// node alone.
fn apply_bundle(
    dir: &Path,
    state: &Collecting,
    bundle: Bundle,
    raft_addr: &str,
) -> Result<Recovered, crate::node::NodeError> {
    let files = crate::cluster::decode_shared_files(
        bundle.files.iter().map(|(n, v)| (n, v.as_str())),
        dir,
        &state.service_cert_pem,
        "the recovery bundle",
    )
    .map_err(config_err)?;
    let mut versions = Vec::new();
    for (v, b) in &bundle.versions {
        let bytes: [u8; 32] = B64
            .decode(b)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| config_err(format!("recovery bundle: version {v} is not 32 bytes of base64")))?;
        versions.push(crate::ledger::crypto::LedgerSecret::versioned(*v, &bytes));
    }
    crate::fsutil::write_atomic(&pending_marker(dir), state.node_id.to_string().as_bytes())
        .map_err(|source| crate::node::NodeError::Dir { path: pending_marker(dir).display().to_string(), source })?;
    for (path, bytes) in files {
        if path.file_name().is_some_and(|n| n == "service-cert.pem") {
            continue; // already there, and checked equal
        }
        crate::fsutil::write_private(&path, &bytes)
            .map_err(|source| crate::node::NodeError::Dir { path: path.display().to_string(), source })?;
    }
    crate::ledger::record_node_id(dir, state.node_id)?;
    crate::ledger::make_sole_voter(dir, state.node_id, raft_addr)?;
    eprintln!(
        "recovery: the shares opened the service's secrets; node {} is now the service's only node (nodes {:?} are \
         retired)",
        state.node_id, state.view.previous_nodes
    );
    Ok(Recovered {
        node_id: state.node_id,
        versions,
        previous_nodes: state.view.previous_nodes.clone(),
        epoch: state.view.record.epoch,
        fingerprint: state.view.record.fingerprint.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u8) -> (Vec<ed25519_dalek::SigningKey>, Vec<(String, [u8; 32])>) {
        let keys: Vec<_> = (1..=n).map(|i| ed25519_dalek::SigningKey::from_bytes(&[i; 32])).collect();
        let ids = keys.iter().enumerate().map(|(i, k)| (format!("m{i}"), k.verifying_key().to_bytes())).collect();
        (keys, ids)
    }

    const CERT: &[u8] = b"-----BEGIN CERTIFICATE-----";

    fn bundle() -> Bundle {
        Bundle {
            files: BTreeMap::from([
                ("node/ledger-secret".to_string(), B64.encode([5u8; 32])),
                ("service-cert.pem".to_string(), B64.encode(CERT)),
            ]),
            versions: BTreeMap::from([(1, B64.encode([6u8; 32]))]),
        }
    }

    fn open_share(r: &RecoveryShares, id: &str, key: &ed25519_dalek::SigningKey) -> [u8; shamir::SHARE_LEN] {
        let s = &r.shares[id];
        let plain = open_with_ed25519(key, SHARE_INFO, &share_aad(r.epoch, id, CERT), &s.enc, &s.ciphertext).unwrap();
        let share: [u8; shamir::SHARE_LEN] = plain.try_into().unwrap();
        assert_eq!(share_hash(r.epoch, id, &share), s.share_hash);
        share
    }

    #[test]
    fn a_threshold_of_members_opens_the_bundle_and_nothing_less_or_altered_does() {
        let (keys, ids) = members(3);
        let r = RecoveryShares::make(7, 2, &ids, &bundle(), "g", "test", 1).unwrap();
        assert_eq!((r.epoch, r.threshold, r.versions.clone(), r.shares.len()), (7, 2, vec![0, 1], 3));
        let plain = serde_json::to_string(&r).unwrap();
        assert!(
            !plain.contains(&B64.encode([5u8; 32])) && !plain.contains(&B64.encode([6u8; 32])),
            "no secret in clear"
        );
        let s0 = open_share(&r, "m0", &keys[0]);
        let s2 = open_share(&r, "m2", &keys[2]);
        assert_eq!(r.open(&[s0, s2]).unwrap(), bundle());
        assert!(r.open(&[s0]).unwrap_err().contains("1 of 2"), "below the threshold");
        // A member's key opens its own share only.
        let s = &r.shares["m1"];
        assert!(open_with_ed25519(&keys[0], SHARE_INFO, &share_aad(7, "m1", CERT), &s.enc, &s.ciphertext).is_err());
        // Relabelled to another epoch or member: the aad differs.
        assert!(open_with_ed25519(&keys[1], SHARE_INFO, &share_aad(6, "m1", CERT), &s.enc, &s.ciphertext).is_err());
        assert!(
            open_with_ed25519(&keys[1], SHARE_INFO, &share_aad(7, "m1", b"another service"), &s.enc, &s.ciphertext)
                .is_err(),
            "bound to the service"
        );
        assert!(open_with_ed25519(&keys[1], SHARE_INFO, &share_aad(7, "m1", CERT), &s.enc, &s.ciphertext).is_ok());
        // A forged share (same x, other y) does not open the bundle.
        let mut forged = s2;
        forged[5] ^= 1;
        assert!(r.open(&[s0, forged]).unwrap_err().contains("do not open"));
        // The record's epoch or fingerprint altered: the bundle's aad no longer matches.
        let mut moved = r.clone();
        moved.epoch = 8;
        assert!(moved.open(&[s0, s2]).is_err());
        let mut refp = r.clone();
        refp.fingerprint = "00".repeat(32);
        assert!(refp.open(&[s0, s2]).is_err());
    }

    #[test]
    fn the_fingerprint_covers_versions_members_keys_and_threshold() {
        let (_, ids) = members(3);
        let v: BTreeSet<u32> = [0, 1].into();
        let base = fingerprint(&v, &ids, 2, "g");
        assert_eq!(base, fingerprint(&v, &ids, 2, "g"));
        assert_ne!(base, fingerprint(&[0, 1, 2].into(), &ids, 2, "g"), "a re-key");
        assert_ne!(base, fingerprint(&v, &ids[..2], 2, "g"), "a member removed");
        assert_ne!(base, fingerprint(&v, &ids, 3, "g"), "the threshold");
        assert_ne!(base, fingerprint(&v, &ids, 2, "h"), "the governance tables");
        let mut rekeyed = ids.clone();
        rekeyed[0].1 = [9; 32];
        assert_ne!(base, fingerprint(&v, &rekeyed, 2, "g"), "a member's key");
    }

    #[test]
    fn a_submission_opens_only_on_the_node_it_was_sealed_to() {
        let node = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let nk = B64.encode(node.verifying_key().as_bytes());
        let aad = submission_aad(3, "m0", &nk);
        let (enc, ct) = seal_to_ed25519(&node.verifying_key().to_bytes(), SUBMIT_INFO, &aad, b"share").unwrap();
        assert_eq!(open_with_ed25519(&node, SUBMIT_INFO, &aad, &enc, &ct).unwrap(), b"share");
        assert!(open_with_ed25519(&other, SUBMIT_INFO, &aad, &enc, &ct).is_err());
        assert!(open_with_ed25519(&node, SHARE_INFO, &aad, &enc, &ct).is_err(), "another purpose");
        assert!(open_with_ed25519(&node, SUBMIT_INFO, &submission_aad(3, "m1", &nk), &enc, &ct).is_err());
    }
}
