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

impl Governance {
    /// Re-share if what the recovery shares cover (secret versions, members and their keys,
    /// threshold) differs from what `sys.recovery` records, in `g`. `made` is a version this
    /// transaction made (a re-key), which this node does not hold until it applies.
    pub(crate) fn refresh_recovery_shares(
        &self,
        g: &mut StateTx,
        made: Option<&LedgerSecret>,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let mut members = Vec::new();
        for (id, m) in self.members(g)? {
            let key = m.key().map_err(|e| ServiceError::unavailable(format!("member {id}'s key: {e}")))?;
            members.push((id, key.to_bytes()));
        }
        let threshold = g
            .get::<serde_json::Value>(GOV_RECOVERY, "threshold")?
            .and_then(|v| v["threshold"].as_u64())
            .map(|t| t as usize)
            .unwrap_or(members.len());
        if threshold > members.len() {
            return Err(err(
                ErrorKind::NotAllowedInState,
                "RecoveryThresholdTooHigh",
                format!(
                    "the recovery threshold is {threshold} but only {} members would hold a share: lower it \
                     (set_recovery_threshold) in the same proposal, or keep enough members",
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
        let fingerprint = crate::recovery::fingerprint(&versions, &members, threshold);
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
        let dir = self.core.ledger.dir().to_path_buf();
        for f in crate::cluster::SHARED_FILES {
            let bytes = crate::fsutil::read_private(&dir.join(f))
                .map_err(|e| ServiceError::unavailable(format!("{f}: {e}: cannot make recovery shares")))?;
            bundle.files.insert(f.to_string(), B64.encode(bytes));
        }
        let epoch = previous.map(|p| p.epoch + 1).unwrap_or(1);
        let record = RecoveryShares::make(epoch, threshold, &members, &bundle, reason, g.now_ms)
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
    pub async fn complete_recovery(&self, r: &crate::recovery::Recovered) -> Result<cgs_core::TxId, ServiceError> {
        let written = self
            .core
            .write(Cause { operation: "recovery", envelope: b"" }, |g| {
                for id in &r.previous_nodes {
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
                let made = self.share_ledger_secrets(g, &actions, "recovery").map_err(|(_, e)| e)?;
                self.refresh_recovery_shares(g, made.as_ref(), "recovery")?;
                let mut history: serde_json::Value =
                    g.get(SYS_RECOVERY, HISTORY_KEY)?.unwrap_or_else(|| serde_json::json!({"recovery_count": 0}));
                let count = history["recovery_count"].as_u64().unwrap_or(0) + 1;
                history["recovery_count"] = count.into();
                history["last"] = serde_json::json!({
                    "node_id": r.node_id,
                    "previous_nodes": r.previous_nodes,
                    "shares_epoch": r.epoch,
                    "at_ms": g.now_ms,
                });
                g.put(SYS_RECOVERY, HISTORY_KEY, &history)?;
                Ok((serde_json::json!({"recovery_count": count}), format!("node:{}", r.node_id)))
            })
            .await?;
        Ok(written.tx_id)
    }
}
