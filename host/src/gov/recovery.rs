//! Governance's part of recovery: keeping the members' recovery shares current
//! ([`crate::recovery`]), and the transaction that completes a recovery.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine as _;

use super::{ErrorKind, Governance, err};
use crate::error::ServiceError;
use crate::ledger::crypto::{LedgerSecret, SYS_LEDGER_SECRETS};
use crate::recovery::{Bundle, HISTORY_KEY, RecoveryShares, SHARES_KEY, SYS_RECOVERY};
use crate::txn::{Cause, StateTx};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The constitution's table of the recovery threshold (`set_recovery_threshold`).
const GOV_RECOVERY: &str = "gov.recovery";

/// The governance tables the recovery shares are bound to (their digest is in the fingerprint):
/// a recovery refuses a ledger whose replayed state differs in any of them from what the opened
/// shares were made for. Every write to them is a proposal's apply, an ack, genesis or a recovery,
/// each of which re-shares in its transaction.
pub(crate) const BOUND_TABLES: &[&str] = &[
    "gov.members",
    "gov.constitution",
    "gov.plugins",
    "gov.thresholds",
    "gov.jwt_issuers",
    "gov.user_identities",
    "gov.node_measurements",
    "gov.node_host_data",
    "gov.node_min_tcb",
    "gov.service",
    "gov.recovery",
    "gov.nodes",
    "gov.oidc",
    "gov.oidc_audiences",
    "sys.service",
];

/// SHA-256 over every row of [`BOUND_TABLES`] as `g` sees them.
fn governance_digest(g: &mut StateTx) -> Result<String, ServiceError> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for table in BOUND_TABLES {
        h.update((table.len() as u64).to_be_bytes());
        h.update(table.as_bytes());
        let rows =
            g.tx.range(table, &crate::store::KeyRange::default(), usize::MAX, false)
                .map_err(ServiceError::unavailable)?;
        h.update((rows.len() as u64).to_be_bytes());
        for r in rows {
            h.update((r.key.len() as u64).to_be_bytes());
            h.update(&r.key);
            h.update((r.value.len() as u64).to_be_bytes());
            h.update(&r.value);
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Members who hold a recovery share: every member but those with the `operator` role (who run
/// the machines the shares protect the service from). A share is about the member's key, so it
/// is given whatever the member's status.
fn share_holders(members: Vec<(String, cgs_core::gov::MemberRecord)>) -> Result<Vec<(String, [u8; 32])>, ServiceError> {
    let mut out = Vec::new();
    for (id, m) in members {
        if m.roles().iter().any(|r| r == "operator") {
            continue;
        }
        let key = m.key().map_err(|e| ServiceError::unavailable(format!("member {id}'s key: {e}")))?;
        out.push((id, key.to_bytes()));
    }
    Ok(out)
}

impl Governance {
    /// What the recovery shares cover, as `g` sees it: the holders (id, key), the threshold
    /// (governed; a majority of the holders until set) and the ledger secret versions (with
    /// `made`, a version this transaction made).
    #[allow(clippy::type_complexity)]
    fn recovery_inputs(
        &self,
        g: &mut StateTx,
        made: Option<&LedgerSecret>,
    ) -> Result<(Vec<(String, [u8; 32])>, usize, BTreeSet<u32>, String), ServiceError> {
        let members = share_holders(self.members(g)?)?;
        let threshold = g
            .get::<serde_json::Value>(GOV_RECOVERY, "threshold")?
            .and_then(|v| v["threshold"].as_u64())
            .map(|t| t as usize)
            .unwrap_or(members.len() / 2 + 1);
        if members.is_empty() || members.len() > 255 {
            return Err(err(
                ErrorKind::NotAllowedInState,
                "RecoveryMembers",
                format!(
                    "{} members (without the operator role) would hold a recovery share: there must be 1 to 255",
                    members.len()
                ),
            ));
        }
        if threshold > members.len() {
            return Err(err(
                ErrorKind::NotAllowedInState,
                "RecoveryThresholdTooHigh",
                format!(
                    "the recovery threshold is {threshold} but only {} members (without the operator role) would hold \
                     a share: lower it (set_recovery_threshold) in the same proposal, or keep enough members",
                    members.len()
                ),
            ));
        }
        let mut versions: BTreeSet<u32> =
            g.tx.range(SYS_LEDGER_SECRETS, &crate::store::KeyRange::default(), usize::MAX, false)
                .map_err(ServiceError::unavailable)?
                .iter()
                .filter_map(|e| crate::ledger::crypto::parse_table_key(&e.key).map(|(v, _)| v))
                .collect();
        versions.insert(0);
        if let Some(m) = made {
            versions.insert(m.version());
        }
        let governance = governance_digest(g)?;
        Ok((members, threshold, versions, governance))
    }

    /// Re-share if what the recovery shares cover (secret versions, members and their keys,
    /// threshold) differs from what `sys.recovery` records, in `g`. `made` is a version this
    /// transaction made (a re-key), which this node does not hold until it applies.
    pub(crate) fn refresh_recovery_shares(
        &self,
        g: &mut StateTx,
        made: Option<&LedgerSecret>,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let (members, threshold, versions, governance) = self.recovery_inputs(g, made)?;
        let fingerprint = crate::recovery::fingerprint(&versions, &members, threshold, &governance);
        let previous: Option<RecoveryShares> = g.get(SYS_RECOVERY, SHARES_KEY)?;
        if previous.as_ref().is_some_and(|p| p.fingerprint == fingerprint) {
            return Ok(());
        }
        let secrets = self.core.ledger.secrets().clone();
        let mut bundle = Bundle { files: Default::default(), versions: Default::default() };
        for v in versions.iter().filter(|v| **v > 0) {
            let s: Arc<LedgerSecret> = match made.filter(|m| m.version() == *v) {
                Some(m) => Arc::new(LedgerSecret::versioned(m.version(), m.bytes())),
                None => secrets.get(*v).ok_or_else(|| {
                    ServiceError::unavailable(format!(
                        "this node does not hold ledger secret version {v}: it cannot make recovery shares; retry on \
                         another node"
                    ))
                })?,
            };
            bundle.versions.insert(*v, B64.encode(s.bytes()));
        }
        bundle.files = crate::cluster::read_shared_files(self.core.ledger.dir())
            .map_err(|e| ServiceError::unavailable(format!("{e}: cannot make recovery shares")))?;
        let epoch = previous.map(|p| p.epoch + 1).unwrap_or(1);
        let record = RecoveryShares::make(epoch, threshold, &members, &bundle, &governance, reason, g.now_ms)
            .map_err(|e| ServiceError::unavailable(format!("recovery shares: {e}")))?;
        g.put(SYS_RECOVERY, SHARES_KEY, &record)
    }

    /// `GET /gov/recovery`: the current shares' epoch, threshold and members, and the
    /// recoveries so far (public).
    pub fn recovery(&self) -> Result<serde_json::Value, ServiceError> {
        let mut g = self.begin()?;
        let shares: Option<RecoveryShares> = g.get(SYS_RECOVERY, SHARES_KEY)?;
        let history: serde_json::Value =
            g.get(SYS_RECOVERY, HISTORY_KEY)?.unwrap_or_else(|| serde_json::json!({"recovery_count": 0}));
        Ok(match shares {
            Some(s) => serde_json::json!({
                "epoch": s.epoch,
                "threshold": s.threshold,
                "members": s.shares.keys().collect::<Vec<_>>(),
                "versions": s.versions,
                "reason": s.reason,
                "created_ms": s.created_ms,
                "history": history,
            }),
            None => serde_json::json!({"epoch": null, "history": history}),
        })
    }

    /// `GET /gov/recovery/shares/{member_id}`: the member's sealed share (public: sealed to the
    /// member's key).
    pub fn recovery_share(&self, member: &str) -> Result<serde_json::Value, ServiceError> {
        let mut g = self.begin()?;
        let shares: Option<RecoveryShares> = g.get(SYS_RECOVERY, SHARES_KEY)?;
        let s = shares.as_ref().and_then(|s| s.shares.get(member).map(|share| (s.epoch, share))).ok_or_else(|| {
            err(ErrorKind::NotFound, "NoShare", format!("member {member} holds no recovery share of this service"))
        })?;
        Ok(serde_json::json!({"epoch": s.0, "member_id": member, "share": s.1}))
    }

    /// The transaction that completes a recovery, on the recovered node (the only voter): the
    /// nodes of the service before are retired, this node is given every version sealed to its
    /// key, the ledger is re-keyed and the shares are made again.
    pub async fn complete_recovery(
        &self,
        r: &crate::recovery::Recovered,
    ) -> Result<(cgs_core::TxId, serde_json::Value), ServiceError> {
        let written = self
            .core
            .write(Cause { operation: "recovery", envelope: b"" }, |g| {
                // The state after the whole log applied must be the one the opened shares were
                // made for: members, their keys, the threshold, the secret versions are bound to
                // the bundle (its additional data). A later re-sharing in the log's tail, or an
                // altered ledger file, stops the recovery here.
                let (members, threshold, versions, governance) = self.recovery_inputs(g, None)?;
                if crate::recovery::fingerprint(&versions, &members, threshold, &governance) != r.fingerprint {
                    return Err(err(
                        ErrorKind::NotAllowedInState,
                        "RecoveryStateMismatch",
                        format!(
                            "after this node replayed its log, the governance state (members, thresholds, constitution, \
                             plugins, issuers, join policy, nodes) or the secret versions are not those the opened \
                             recovery shares (epoch {}) were made for: the log held a later re-sharing \
                             (run `cgs-host start --recover` on this directory again; members submit the newer \
                             shares), or the ledger file was altered (recover from another node's copy)",
                            r.epoch
                        ),
                    ));
                }
                // This node's record must carry its own key (an id taken meanwhile would not).
                let me = self.core.ledger.node_id();
                let nodes = super::nodes::records(g)?;
                let mine = nodes.iter().find(|(n, _)| n.node_id == me).and_then(|(n, _)| n.key());
                if mine != Some(self.core.ledger.public_key()) {
                    return Err(err(
                        ErrorKind::NotAllowedInState,
                        "RecoveryNodeIdTaken",
                        format!(
                            "node id {me} is recorded with another key in this ledger: run `cgs-host start --recover` on \
                             this directory again (it takes the next free id)"
                        ),
                    ));
                }
                // Every node of before (also one its log's tail added) is retired.
                let previous: Vec<u64> = nodes
                    .iter()
                    .filter(|(n, s)| n.node_id != me && *s != super::nodes::NodeStatus::Retired)
                    .map(|(n, _)| n.node_id)
                    .collect();
                for id in &previous {
                    g.put(
                        crate::gov::nodes::GOV_NODES,
                        &id.to_string(),
                        &serde_json::json!({"status": "Retired", "at_ms": g.now_ms, "by": "recovery"}),
                    )?;
                }
                let mut actions = vec![cgs_core::gov::ActionBody {
                    name: "transition_node_to_trusted".into(),
                    args: serde_json::json!({"node_id": r.node_id}),
                }];
                actions.push(cgs_core::gov::ActionBody {
                    name: "trigger_ledger_rekey".into(),
                    args: serde_json::json!({}),
                });
                let made = self.share_ledger_secrets(g, &actions, "recovery", &nodes).map_err(|(_, e)| e)?;
                self.refresh_recovery_shares(g, made.as_ref(), "recovery")?;
                let mut history: serde_json::Value =
                    g.get(SYS_RECOVERY, HISTORY_KEY)?.unwrap_or_else(|| serde_json::json!({"recovery_count": 0}));
                let count = history["recovery_count"].as_u64().unwrap_or(0) + 1;
                history["recovery_count"] = count.into();
                history["last"] = serde_json::json!({
                    "node_id": r.node_id,
                    "previous_nodes": previous,
                    "shares_epoch": r.epoch,
                    "at_ms": g.now_ms,
                });
                g.put(SYS_RECOVERY, HISTORY_KEY, &history)?;
                Ok((serde_json::json!({"recovery_count": count, "retired": previous}), format!("node:{}", r.node_id)))
            })
            .await?;
        Ok((written.tx_id, written.body))
    }
}
