//! The read endpoints of governance: the service, members, proposals, the constitution, and
//! the state digest members ack.

use super::{ErrorKind, Governance, MemberRecord, ProposalRecord, ProposalState, err, tables};
use crate::error::ServiceError;

impl Governance {
    /// The state digest a member must ack: the root of the latest signed checkpoint.
    pub fn state_digest(&self) -> Result<String, ServiceError> {
        match self.core.ledger.latest_checkpoint().map_err(ServiceError::unavailable)? {
            Some((_, note)) => {
                let cp = cgs_core::note::SignedNote::parse(&note)
                    .and_then(|n| cgs_core::note::Checkpoint::parse(&n.text))
                    .map_err(ServiceError::unavailable)?;
                Ok(hex::encode(cp.root))
            }
            None => Err(err(ErrorKind::NotReady, "NotReady", "no checkpoint has been signed yet; retry shortly")),
        }
    }

    /// `GET /gov/service`.
    pub fn service(&self) -> Result<serde_json::Value, ServiceError> {
        let mut g = self.begin()?;
        let status: serde_json::Value =
            g.get(tables::SERVICE, "status")?.unwrap_or(serde_json::json!({"status": "Opening"}));
        let constitution: Option<serde_json::Value> = g.get(tables::CONSTITUTION, "current")?;
        let plugins: Vec<serde_json::Value> = g
            .scan::<serde_json::Value>(tables::PLUGINS)?
            .into_iter()
            .map(|(name, v)| serde_json::json!({"name": name, "version": v["version"], "blake3": v["blake3"]}))
            .collect();
        let members = self.members(&mut g)?;
        Ok(serde_json::json!({
            "status": status["status"],
            "constitution": constitution,
            "plugins": plugins,
            "member_count": members.len(),
            "active_member_count": members.iter().filter(|(_, m)| m.status == "Active").count(),
            // Decided at creation and recorded in the ledger; never how this node was started.
            "insecure_virtual_attestation": crate::cleanroom::accepts_virtual_evidence(&mut g)?,
        }))
    }

    /// `GET /gov/members[/{id}]`.
    pub fn list_members(&self, id: Option<&str>) -> Result<serde_json::Value, ServiceError> {
        let mut g = self.begin()?;
        let view = |(id, m): (String, MemberRecord)| serde_json::json!({"member_id": id, "status": m.status, "member_data": m.data, "public_key": m.public_key});
        match id {
            Some(id) => {
                let m = self
                    .member(&mut g, id)?
                    .ok_or_else(|| err(ErrorKind::NotFound, "MemberNotFound", format!("no member {id}")))?;
                Ok(view((id.to_string(), m)))
            }
            None => Ok(
                serde_json::json!({"value": self.members(&mut g)?.into_iter().map(view).collect::<Vec<_>>(), "next_link": null}),
            ),
        }
    }

    /// `GET /gov/proposals[?state=]` / `GET /gov/proposals/{id}`.
    pub fn list_proposals(&self, id: Option<&str>, state: Option<&str>) -> Result<serde_json::Value, ServiceError> {
        let mut g = self.begin()?;
        match id {
            Some(id) => {
                let p: ProposalRecord = g
                    .get(tables::PROPOSALS, id)?
                    .ok_or_else(|| err(ErrorKind::NotFound, "ProposalNotFound", format!("no proposal {id}")))?;
                Ok(serde_json::to_value(p).map_err(ServiceError::unavailable)?)
            }
            None => {
                let want = match state {
                    Some(s) => Some(ProposalState::parse(s).ok_or_else(|| {
                        err(
                            ErrorKind::Invalid,
                            "InvalidState",
                            format!(
                                "`{s}` is not a proposal state (Open, Accepted, Rejected, Withdrawn, Failed, Dropped)"
                            ),
                        )
                    })?),
                    None => None,
                };
                let value: Vec<ProposalRecord> = g
                    .scan::<ProposalRecord>(tables::PROPOSALS)?
                    .into_iter()
                    .map(|(_, p)| p)
                    .filter(|p| want.is_none_or(|w| p.state == w))
                    .collect();
                Ok(serde_json::json!({"value": value, "next_link": null}))
            }
        }
    }

    /// `GET /gov/constitution`.
    pub fn constitution(&self) -> Result<serde_json::Value, ServiceError> {
        let mut g = self.begin()?;
        let current: serde_json::Value = g
            .get(tables::CONSTITUTION, "current")?
            .ok_or_else(|| err(ErrorKind::NotReady, "NotReady", "no constitution"))?;
        let actions = self.core.runtime.registry().constitution().map(|p| p.actions.clone()).unwrap_or_default();
        Ok(
            serde_json::json!({"name": current["name"], "version": current["version"], "blake3": current["blake3"], "actions": actions}),
        )
    }
}
