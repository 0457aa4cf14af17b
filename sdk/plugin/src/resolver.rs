//! Types of the constitution's `resolve`.

use crate::Action;

/// A member's vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vote {
    /// For.
    Approve,
    /// Against.
    Reject,
}

/// A member's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    /// Invited, has not acknowledged the service state yet; does not vote.
    Accepted,
    /// Acknowledged; votes.
    Active,
}

/// A consortium member as the constitution sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Hex SHA-256 of the public key.
    pub id: String,
    /// Status.
    pub status: MemberStatus,
    /// Roles from the member data (e.g. `operator`).
    pub roles: Vec<String>,
    /// Member data as JSON text.
    pub data: String,
}

/// A ballot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ballot {
    /// Who voted.
    pub member_id: String,
    /// How.
    pub vote: Vote,
}

/// A proposal under resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Its id.
    pub id: String,
    /// Who proposed it.
    pub proposer_id: String,
    /// What it does.
    pub actions: Vec<Action>,
    /// When (ms since the Unix epoch).
    pub created_at_ms: u64,
}

/// The constitution's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Not decided yet.
    Open,
    /// Accepted: its actions are applied now.
    Accepted,
    /// Rejected.
    Rejected,
}

/// A decision with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The decision.
    pub outcome: Outcome,
    /// Why, in a sentence.
    pub reason: String,
}
