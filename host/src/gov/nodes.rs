//! The nodes of the service: the attested join (`POST /node/join`), the node records in
//! `sys.nodes`, and governance's decisions about them in `gov.nodes`.
//!
//! * `sys.nodes` (host-written, public): a node's identity — raft id, node key (which signs
//!   checkpoints, receipts and its peer TLS), encryption key, addresses, what its evidence said.
//!   The founding node records itself at its first start; every other node through a join.
//! * `gov.nodes` (written by the constitution's `transition_node_to_trusted` and `remove_node`):
//!   `{"status": "Trusted" | "Retired"}` by decimal node id.
//!
//! A node's status is governance's decision if there is one, else `Trusted` for the founding
//! node and `Pending` for a node that joined.

use base64::Engine as _;
use cgs_core::TxId;

use super::{ErrorKind, Governance, err};
use crate::error::ServiceError;
use crate::txn::{Cause, StateTx};

/// Most nodes waiting for trust at once: beyond, a join is refused (503) until members trust or
/// remove some (anyone may ask to join, so the records it costs are bounded).
pub const MAX_PENDING_NODES: usize = 16;

/// Host-owned node records, keyed by the raft id (8 bytes, big-endian).
pub const SYS_NODES: &str = "sys.nodes";
/// Governance's decisions about nodes, keyed by the decimal node id.
pub const GOV_NODES: &str = "gov.nodes";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A node's record in `sys.nodes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeRecord {
    /// Raft id.
    pub node_id: u64,
    /// Base64 of the raw Ed25519 node key.
    pub public_key: String,
    /// C2SP verifier key of its checkpoints.
    #[serde(default)]
    pub verifier_key: String,
    /// Log origin.
    #[serde(default)]
    pub origin: String,
    /// Base64 of its X25519 key: the service's secrets reach it sealed to this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<String>,
    /// `host:port` of its HTTPS listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `host:port` of its peer (raft) listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_address: Option<String>,
    /// `virtual` or `snp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_kind: Option<String>,
    /// Hex launch measurement its evidence reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<String>,
    /// Hex host_data its evidence reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_data: Option<String>,
    /// When it joined (service time, ms); absent for the founding node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined_at_ms: Option<u64>,
}

impl NodeRecord {
    /// The raw node key.
    pub fn key(&self) -> Option<[u8; 32]> {
        B64.decode(&self.public_key).ok().and_then(|k| k.try_into().ok())
    }
}

/// A node's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum NodeStatus {
    /// Joined; waiting for governance to trust it.
    Pending,
    /// Part of the service (learner until caught up, then voter).
    Trusted,
    /// Removed by governance; never part of the service again.
    Retired,
}

/// `POST /node/join`: a node asking to join, signed with its node key.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// Base64 of the raw Ed25519 node key (bound by the evidence's `report_data`).
    pub public_key: String,
    /// Base64 of the X25519 key the service's secrets are sealed to.
    pub encryption_key: String,
    /// `host:port` of its HTTPS listener.
    pub address: String,
    /// `host:port` of its peer listener.
    pub peer_address: String,
    /// Its attestation evidence (`{"kind": "snp" | "virtual", …}`).
    pub evidence: serde_json::Value,
    /// Base64 Ed25519 signature by the node key over [`JoinRequest::signed_bytes`].
    pub signature: String,
}

impl JoinRequest {
    /// What the node key signs: a domain tag and the request without its signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = b"cgs-join-request-v1\0".to_vec();
        let body =
            serde_json::json!([self.public_key, self.encryption_key, self.address, self.peer_address, self.evidence]);
        out.extend_from_slice(body.to_string().as_bytes());
        out
    }

    /// A request signed with `key`.
    pub fn signed(
        key: &ed25519_dalek::SigningKey,
        encryption_key: &[u8],
        address: String,
        peer_address: String,
        evidence: serde_json::Value,
    ) -> Self {
        use ed25519_dalek::Signer as _;
        let mut r = JoinRequest {
            public_key: B64.encode(key.verifying_key().as_bytes()),
            encryption_key: B64.encode(encryption_key),
            address,
            peer_address,
            evidence,
            signature: String::new(),
        };
        r.signature = B64.encode(key.sign(&r.signed_bytes()).to_bytes());
        r
    }

    /// The node key, after checking the signature.
    fn verified_key(&self) -> Result<[u8; 32], ServiceError> {
        let bad = |m: String| err(ErrorKind::Invalid, "InvalidJoinRequest", m);
        let key: [u8; 32] = B64
            .decode(&self.public_key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| bad("`public_key` must be the base64 of a 32-byte Ed25519 key".into()))?;
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&key)
            .map_err(|e| bad(format!("`public_key` is not an Ed25519 key: {e}")))?;
        let sig: [u8; 64] = B64
            .decode(&self.signature)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| bad("`signature` must be the base64 of a 64-byte Ed25519 signature".into()))?;
        vk.verify_strict(&self.signed_bytes(), &ed25519_dalek::Signature::from_bytes(&sig)).map_err(|_| {
            err(ErrorKind::Unauthenticated, "InvalidSignature", "the join request is not signed by its node key")
        })?;
        let enc = B64.decode(&self.encryption_key).unwrap_or_default();
        if enc.len() != 32 {
            return Err(bad("`encryption_key` must be the base64 of a 32-byte X25519 key".into()));
        }
        for (name, a) in [("address", &self.address), ("peer_address", &self.peer_address)] {
            match a.parse::<std::net::SocketAddr>() {
                Ok(s) if s.port() != 0 && !s.ip().is_unspecified() => {}
                _ => {
                    return Err(bad(format!(
                        "`{name}` must be a reachable `ip:port` (not port 0, not 0.0.0.0): {a:?}"
                    )));
                }
            }
        }
        Ok(key)
    }
}

/// Every node record, with its status: governance's decision if there is one, else `Trusted`
/// for the founding node and `Pending` for a node that joined.
pub(super) fn records(g: &mut StateTx) -> Result<Vec<(NodeRecord, NodeStatus)>, ServiceError> {
    let decided: std::collections::BTreeMap<String, serde_json::Value> = g.scan(GOV_NODES)?.into_iter().collect();
    let entries =
        g.tx.range(SYS_NODES, &crate::store::KeyRange::default(), usize::MAX, false)
            .map_err(ServiceError::unavailable)?;
    let mut out = Vec::new();
    for e in entries {
        let r: NodeRecord = serde_json::from_slice(&e.value)
            .map_err(|e| ServiceError::unavailable(format!("corrupt sys.nodes record: {e}")))?;
        let status = match decided.get(&r.node_id.to_string()).and_then(|d| d["status"].as_str()) {
            Some("Trusted") => NodeStatus::Trusted,
            Some("Retired") => NodeStatus::Retired,
            _ if r.joined_at_ms.is_none() => NodeStatus::Trusted,
            _ => NodeStatus::Pending,
        };
        out.push((r, status));
    }
    Ok(out)
}

/// The keys of the trusted nodes in `ledger`'s applied state (read before governance runs: a
/// restarted node needs them to reach its peers).
pub fn trusted_keys(ledger: &crate::ledger::Ledger) -> Vec<(u64, [u8; 32])> {
    use crate::store::Store as _;
    let Ok(snapshot) = ledger.snapshot() else { return Vec::new() };
    let mut g = StateTx { tx: crate::store::Transaction::new(snapshot), now_ms: 0 };
    records(&mut g)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, s)| *s == NodeStatus::Trusted)
        .filter_map(|(r, _)| r.key().map(|k| (r.node_id, k)))
        .collect()
}

/// The status of node `id` in `ledger`'s applied state (`None`: no record).
pub fn node_status(ledger: &crate::ledger::Ledger, id: u64) -> Option<NodeStatus> {
    use crate::store::Store as _;
    let snapshot = ledger.snapshot().ok()?;
    let mut g = StateTx { tx: crate::store::Transaction::new(snapshot), now_ms: 0 };
    records(&mut g).ok()?.into_iter().find(|(r, _)| r.node_id == id).map(|(_, s)| s)
}

fn hex_list<const N: usize>(g: &mut StateTx, table: &str) -> Result<Vec<[u8; N]>, ServiceError> {
    Ok(g.scan::<serde_json::Value>(table)?
        .into_iter()
        .filter_map(|(k, _)| hex::decode(k).ok().and_then(|b| b.try_into().ok()))
        .collect())
}

/// The join policy governance set: virtual evidence (fixed at creation), measurements,
/// host_data, minimum TCB per generation.
fn join_policy(g: &mut StateTx, key: &[u8; 32]) -> Result<cgs_attestation::VerifyPolicy, ServiceError> {
    let allow_virtual = crate::cleanroom::accepts_virtual_evidence(g)?;
    let measurements: Vec<[u8; 48]> = hex_list(g, "gov.node_measurements")?;
    let host_data: Vec<[u8; 32]> = hex_list(g, "gov.node_host_data")?;
    let mut min_tcb = std::collections::BTreeMap::new();
    for (generation, t) in g.scan::<serde_json::Value>("gov.node_min_tcb")? {
        let Some(generation) = cgs_attestation::Generation::from_product_name(&generation) else { continue };
        let n = |f: &str| t[f].as_u64().unwrap_or(0).min(255) as u8;
        let mut tcb = cgs_attestation::Tcb::new(n("bootloader"), n("tee"), n("snp"), n("microcode"));
        tcb.fmc = t["fmc"].as_u64().map(|v| v.min(255) as u8);
        min_tcb.insert(generation, tcb);
    }
    Ok(cgs_attestation::VerifyPolicy {
        allow_virtual,
        // No allow-list: any measurement only where virtual (insecure) evidence is accepted.
        measurements: if measurements.is_empty() && allow_virtual { None } else { Some(measurements) },
        host_data: if host_data.is_empty() { None } else { Some(host_data) },
        report_data: Some(vec![cgs_core::node_attestation::report_data_for(key)]),
        min_tcb,
        ..Default::default()
    })
}

/// What a join request was answered.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The node's record.
    pub record: NodeRecord,
    /// Its status.
    pub status: NodeStatus,
    /// The transaction that recorded it (a first request only).
    pub tx_id: Option<TxId>,
}

impl Governance {
    /// Whether a trusted voter other than `id` remains in raft's configuration.
    fn voter_remains_without(&self, nodes: &[(NodeRecord, NodeStatus)], id: u64) -> bool {
        let (raft, _) = self.core.ledger.nodes();
        raft.iter().any(|(n, _, voter, _)| {
            *voter && *n != id && nodes.iter().any(|(r, s)| r.node_id == *n && *s == NodeStatus::Trusted)
        })
    }

    /// Every node record with its status.
    pub fn nodes(&self) -> Result<Vec<(NodeRecord, NodeStatus)>, ServiceError> {
        let mut g = self.core.begin()?;
        records(&mut g)
    }

    /// `POST /node/join`: check the request's signature and evidence against the join policy
    /// and record the node as `Pending` (a repeated request by a recorded node answers its
    /// status). `origin` and `verifier_key` name the log its checkpoints will sign.
    pub async fn join(
        &self,
        req: &JoinRequest,
        verifier_key: impl Fn(&[u8; 32]) -> (String, String),
    ) -> Result<Joined, ServiceError> {
        let key = req.verified_key()?;
        {
            let mut g = self.core.begin()?;
            if let Some((record, status)) = records(&mut g)?.into_iter().find(|(r, _)| r.key() == Some(key)) {
                return Ok(Joined { record, status, tx_id: None });
            }
        }
        let evidence: cgs_attestation::Evidence = serde_json::from_value(req.evidence.clone()).map_err(|e| {
            err(ErrorKind::Invalid, "InvalidEvidence", format!("`evidence` is not SNP or virtual evidence: {e}"))
        })?;
        let (origin, verifier) = verifier_key(&key);
        let written = self
            .core
            .write(Cause { operation: "node join", envelope: b"" }, |g| {
                let nodes = records(g)?;
                if let Some((record, status)) = nodes.iter().find(|(r, _)| r.key() == Some(key)) {
                    let body = serde_json::json!({"node_id": record.node_id, "status": status});
                    return Ok((body, format!("node:{}", record.node_id)));
                }
                if nodes.iter().filter(|(_, s)| *s == NodeStatus::Pending).count() >= MAX_PENDING_NODES {
                    return Err(err(
                        ErrorKind::Busy,
                        "TooManyPendingNodes",
                        format!(
                            "{MAX_PENDING_NODES} nodes already wait for trust: members trust (transition_node_to_trusted) \
                             or retire (remove_node) some first"
                        ),
                    ));
                }
                let policy = join_policy(g, &key)?;
                if !policy.allow_virtual && evidence.is_virtual() {
                    return Err(err(
                        ErrorKind::Forbidden,
                        "JoinRefused",
                        "this service accepts SEV-SNP evidence only (its genesis did not allow virtual attestation)",
                    ));
                }
                if !policy.allow_virtual && policy.host_data.is_none() {
                    return Err(err(
                        ErrorKind::Forbidden,
                        "JoinRefused",
                        "no node host_data is allowed yet: members propose add_node_host_data with the new node's \
                         host_data (its security policy digest) first",
                    ));
                }
                if policy.measurements.as_ref().is_some_and(Vec::is_empty) {
                    return Err(err(
                        ErrorKind::Forbidden,
                        "JoinRefused",
                        "no node measurement is allowed yet: members propose add_node_measurement with the new \
                         node's launch measurement first",
                    ));
                }
                let verified =
                    cgs_attestation::verify(&evidence, &policy, std::time::SystemTime::now()).map_err(|e| {
                        err(ErrorKind::Forbidden, "JoinRefused", format!("the node's evidence was refused: {e}"))
                    })?;
                // Above every id recorded or decided on: a decision written ahead for an id no
                // node has yet never applies to the next joiner.
                let decided = g
                    .scan::<serde_json::Value>(GOV_NODES)?
                    .into_iter()
                    .filter_map(|(k, _)| k.parse::<u64>().ok())
                    .max()
                    .unwrap_or(0);
                let node_id = nodes.iter().map(|(r, _)| r.node_id).max().unwrap_or(0).max(decided) + 1;
                let record = NodeRecord {
                    node_id,
                    public_key: req.public_key.clone(),
                    verifier_key: verifier.clone(),
                    origin: origin.clone(),
                    encryption_key: Some(req.encryption_key.clone()),
                    address: Some(req.address.clone()),
                    peer_address: Some(req.peer_address.clone()),
                    evidence_kind: Some(if verified.insecure() { "virtual" } else { "snp" }.into()),
                    measurement: Some(hex::encode(verified.claims.measurement)),
                    host_data: Some(hex::encode(verified.claims.host_data)),
                    joined_at_ms: Some(g.now_ms),
                };
                g.tx.put(
                    SYS_NODES,
                    &node_id.to_be_bytes(),
                    serde_json::to_vec(&record).map_err(ServiceError::unavailable)?,
                );
                let body = serde_json::json!({"node_id": node_id, "status": NodeStatus::Pending});
                Ok((body, format!("node:{node_id}")))
            })
            .await?;
        let node_id = written.body["node_id"].as_u64().unwrap_or_default();
        let mut g = self.core.begin()?;
        let (record, status) = records(&mut g)?
            .into_iter()
            .find(|(r, _)| r.node_id == node_id)
            .ok_or_else(|| ServiceError::unavailable("the joined node's record is not applied yet"))?;
        Ok(Joined { record, status, tx_id: Some(written.tx_id) })
    }

    /// The host's part of node actions, once a proposal's actions applied (in its transaction;
    /// `before`: the nodes and their status before the actions):
    /// * a node made trusted gets every ledger secret version above 0 sealed to its node key
    ///   (version 0 reaches it with the join answer);
    /// * `trigger_ledger_rekey`, `remove_member`, and a node holding the current version
    ///   retired after the actions (`remove_node`) re-key: a new random secret, the next version,
    ///   sealed to every node trusted after the actions, and its public record (proposal, time).
    ///   Once applied, every node writes with it; a retired node never holds it.
    ///
    /// A refusal is reported as the first action that asked for it. Returns the version a
    /// re-key made (this node holds it once it applies the transaction).
    pub(crate) fn share_ledger_secrets(
        &self,
        g: &mut StateTx,
        actions: &[cgs_core::gov::ActionBody],
        proposal_id: &str,
        before: &[(NodeRecord, NodeStatus)],
    ) -> Result<Option<crate::ledger::crypto::LedgerSecret>, (usize, ServiceError)> {
        use crate::ledger::crypto::{LedgerSecret, SYS_LEDGER_SECRETS, WrappedSecret};
        use std::sync::Arc;
        // Re-keyed on request (`trigger_ledger_rekey`), when a member is removed (its recovery
        // share of the shares made before, with others, could open the secrets up to now, never
        // what is written after: as CCF), and — keyed on the state, not on action names — when a
        // node holding the current version is retired after the actions (`remove_node`, or a
        // constitution retiring it another way).
        let explicit = actions.iter().position(|a| matches!(a.name.as_str(), "trigger_ledger_rekey" | "remove_member"));
        // The versions as this transaction sees them (read: a re-key committed meanwhile makes
        // it conflict and run again).
        let rows: Vec<(u32, Option<u64>)> =
            g.tx.range(SYS_LEDGER_SECRETS, &crate::store::KeyRange::default(), usize::MAX, false)
                .map_err(|e| (0, ServiceError::unavailable(e)))?
                .iter()
                .filter_map(|e| crate::ledger::crypto::parse_table_key(&e.key))
                .collect();
        let nodes = records(g).map_err(|e| (0, e))?;
        let latest = rows.iter().map(|(v, _)| *v).max().unwrap_or(0);
        let holders: std::collections::BTreeSet<u64> = if latest == 0 {
            // Version 0 reached every node that was trusted (in its join answer) before the
            // actions: a Pending node retired by them never held it.
            before.iter().filter(|(_, s)| *s != NodeStatus::Pending).map(|(r, _)| r.node_id).collect()
        } else {
            rows.iter().filter(|(v, _)| *v == latest).filter_map(|(_, n)| *n).collect()
        };
        let stale = holders.iter().any(|id| nodes.iter().any(|(r, s)| r.node_id == *id && *s == NodeStatus::Retired));
        let rekey = explicit.or_else(|| {
            stale.then(|| {
                actions.iter().position(|a| a.name == "remove_node").unwrap_or(actions.len().saturating_sub(1))
            })
        });
        let trusted: Vec<(usize, u64)> = actions
            .iter()
            .enumerate()
            .filter(|(_, a)| a.name == "transition_node_to_trusted")
            .filter_map(|(i, a)| a.args.get("node_id").and_then(serde_json::Value::as_u64).map(|id| (i, id)))
            .collect();
        let Some(first) = rekey.into_iter().chain(trusted.iter().map(|(i, _)| *i)).min() else { return Ok(None) };
        let fail = |i: usize| move |e: ServiceError| (i, e);
        let secrets = self.core.ledger.secrets().clone();
        // The node writing this must hold every version, or it would hand out (and write with)
        // an old one.
        let named: std::collections::BTreeSet<u32> = rows.iter().map(|(v, _)| *v).collect();
        let held: Vec<Arc<LedgerSecret>> = named
            .iter()
            .map(|v| {
                secrets.get(*v).ok_or_else(|| {
                    ServiceError::unavailable(format!(
                        "this node does not hold ledger secret version {v}: it cannot share it; retry on another node"
                    ))
                })
            })
            .collect::<Result<_, _>>()
            .map_err(fail(first))?;
        let key_of = |id: u64| {
            nodes.iter().find(|(r, s)| r.node_id == id && *s == NodeStatus::Trusted).and_then(|(r, _)| r.key())
        };
        let put = |g: &mut StateTx, w: WrappedSecret| -> Result<(), ServiceError> {
            let value = serde_json::to_vec(&w).map_err(ServiceError::unavailable)?;
            g.tx.put(SYS_LEDGER_SECRETS, WrappedSecret::table_key(w.version, w.node_id).as_bytes(), value);
            Ok(())
        };
        for (i, id) in &trusted {
            let key = key_of(*id).ok_or_else(|| {
                ServiceError::unavailable(format!("node {id} is not trusted with a usable key after the actions"))
            });
            let key = key.map_err(fail(*i))?;
            for s in &held {
                let w = WrappedSecret::seal(s, *id, &key).map_err(ServiceError::unavailable).map_err(fail(*i))?;
                put(g, w).map_err(fail(*i))?;
            }
        }
        if let Some(i) = rekey {
            let version = named.last().copied().unwrap_or(0).max(secrets.latest().version()) + 1;
            let secret = LedgerSecret::versioned(version, &rand::random());
            let mut sealed_to = Vec::new();
            for (r, status) in &nodes {
                let Some(key) = r.key().filter(|_| *status == NodeStatus::Trusted) else { continue };
                let w = WrappedSecret::seal(&secret, r.node_id, &key).map_err(ServiceError::unavailable);
                put(g, w.map_err(fail(i))?).map_err(fail(i))?;
                sealed_to.push(r.node_id);
            }
            if sealed_to.is_empty() {
                return Err((
                    i,
                    ServiceError::unavailable("no trusted node with a usable key would hold the new secret"),
                ));
            }
            let record = serde_json::json!({
                "version": version,
                "proposal_id": proposal_id,
                "reason": actions[i].name,
                "sealed_to": sealed_to,
                "created_ms": g.now_ms,
            });
            let key = crate::ledger::crypto::version_record_key(version);
            g.tx.put(SYS_LEDGER_SECRETS, key.as_bytes(), record.to_string().into_bytes());
            return Ok(Some(secret));
        }
        Ok(None)
    }

    /// The host's check of `transition_node_to_trusted` / `remove_node`: the node exists and is
    /// in a state the action changes; the last trusted node is never removed.
    pub(crate) fn check_node_action(
        &self,
        g: &mut StateTx,
        name: &str,
        args: &serde_json::Value,
    ) -> Result<(), ServiceError> {
        let Some(id) = args.get("node_id").and_then(serde_json::Value::as_u64) else {
            return Err(err(ErrorKind::Invalid, "InvalidActionArgs", "`node_id` (a number) is required"));
        };
        let nodes = records(g)?;
        let Some((_, status)) = nodes.iter().find(|(r, _)| r.node_id == id) else {
            return Err(err(ErrorKind::NotFound, "NodeNotFound", format!("no node {id} has joined this service")));
        };
        match (name, status) {
            ("transition_node_to_trusted", NodeStatus::Pending) => Ok(()),
            ("transition_node_to_trusted", s) => {
                Err(err(ErrorKind::NotAllowedInState, "NodeNotPending", format!("node {id} is {s:?}, not Pending")))
            }
            ("remove_node", NodeStatus::Retired) => {
                Err(err(ErrorKind::NotAllowedInState, "NodeRetired", format!("node {id} is already retired")))
            }
            ("remove_node", _) if !self.voter_remains_without(&nodes, id) => Err(err(
                ErrorKind::NotAllowedInState,
                "LastNode",
                format!(
                    "without node {id} no trusted voter would remain (learners cannot form a quorum); trust and let \
                     another node catch up first"
                ),
            )),
            _ => Ok(()),
        }
    }
}
