//! Records the governance engine keeps in `gov.*` tables (JSON).

use std::collections::BTreeMap;

use cgs_core::gov::{ActionBody, Vote};
use serde::{Deserialize, Serialize};

/// A member (`gov.members`), as the constitution writes it: the type both share, from cgs-core.
pub use cgs_core::gov::MemberRecord;

/// Proposal states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProposalState {
    /// Collecting ballots.
    Open,
    /// Accepted and applied.
    Accepted,
    /// Rejected by the constitution.
    Rejected,
    /// Withdrawn by its proposer.
    Withdrawn,
    /// Accepted, but an action failed to apply; nothing of its actions was written.
    Failed,
    /// Expired, or superseded by a change of the plugin or constitution it depends on.
    Dropped,
}

impl ProposalState {
    /// From its name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Open" => ProposalState::Open,
            "Accepted" => ProposalState::Accepted,
            "Rejected" => ProposalState::Rejected,
            "Withdrawn" => ProposalState::Withdrawn,
            "Failed" => ProposalState::Failed,
            "Dropped" => ProposalState::Dropped,
            _ => return None,
        })
    }
}

/// One state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItem {
    /// The new state.
    pub state: ProposalState,
    /// When (tx time, ms).
    pub at_ms: u64,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A proposal (`gov.proposals`). The signed envelopes of the proposal and of every ballot are in
/// the ledger entries that recorded them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalRecord {
    /// SHA-256 of the signed proposal envelope (hex).
    pub proposal_id: String,
    /// The proposer's member id.
    pub proposer_id: String,
    /// What it does.
    pub actions: Vec<ActionBody>,
    /// Current state.
    pub state: ProposalState,
    /// Creation time (tx time, ms).
    pub created_at_ms: u64,
    /// Ballots so far, by member id.
    pub ballots: BTreeMap<String, Vote>,
    /// The ballots that decided it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_votes: Option<BTreeMap<String, Vote>>,
    /// Why applying failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Every state it went through.
    pub history: Vec<HistoryItem>,
}

impl ProposalRecord {
    /// A new open proposal.
    pub fn new(id: String, proposer_id: String, actions: Vec<ActionBody>, now_ms: u64) -> Self {
        Self {
            proposal_id: id,
            proposer_id,
            actions,
            state: ProposalState::Open,
            created_at_ms: now_ms,
            ballots: BTreeMap::new(),
            final_votes: None,
            failure: None,
            history: vec![HistoryItem { state: ProposalState::Open, at_ms: now_ms, reason: None }],
        }
    }

    /// Move to `state`.
    pub fn transition(&mut self, state: ProposalState, at_ms: u64, reason: Option<String>) {
        self.state = state;
        self.history.push(HistoryItem { state, at_ms, reason });
    }
}
