//! The proposal lifecycle, as a pure state machine: ballots, withdrawal, expiry, supersession,
//! the constitution's resolution and the outcome of applying the actions. No IO and no wasm: the
//! engine (`gov/actions.rs`) asks the constitution and runs the actions, and feeds what came back
//! into these transitions, which decide the next state and refuse what the state does not allow.
//!
//! ```text
//!            cast ──► (resolve) ── Open ───────────────► Open
//!   Open ──┤                   ├─ Rejected ────────────► Rejected
//!          │                   └─ Accepted ─► (apply) ─┬► Accepted   (final votes kept)
//!          │                                            └► Failed     (nothing applied)
//!          ├─ withdraw (the proposer) ─────────────────► Withdrawn
//!          ├─ expire (older than the TTL) ─────────────► Dropped
//!          └─ supersede (its plugin or the constitution changed) ► Dropped
//! ```
//! Every state but `Open` is final. Each transition is recorded in `history`.

use std::collections::BTreeMap;

use cgs_core::gov::{ActionBody, Vote};
use serde::{Deserialize, Serialize};

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

/// The action of an accepted proposal that failed to apply (nothing of the proposal applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedAction {
    /// Its position in the proposal (0-based).
    pub index: usize,
    /// Its name.
    pub name: String,
    /// The error code its owner (a plugin or the host) gave.
    pub code: String,
    /// The error message.
    pub message: String,
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
    /// Why applying failed (`CODE: message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Which action failed to apply, and the error its owner gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_action: Option<FailedAction>,
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
            failed_action: None,
            history: vec![HistoryItem { state: ProposalState::Open, at_ms: now_ms, reason: None }],
        }
    }

    /// Move to `state` (recorded in the history).
    fn transition(&mut self, state: ProposalState, at_ms: u64, reason: Option<String>) {
        self.state = state;
        self.history.push(HistoryItem { state, at_ms, reason });
    }
}

/// Why a lifecycle step is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// The proposal is no longer open.
    #[error("proposal {id} is {state:?}")]
    NotOpen {
        /// The proposal.
        id: String,
        /// Its state.
        state: ProposalState,
    },
    /// The proposal is open but older than the proposal lifetime.
    #[error("proposal {id} expired; it will be dropped")]
    Expired {
        /// The proposal.
        id: String,
    },
    /// The member already voted.
    #[error("member {member} already voted on {id}")]
    AlreadyVoted {
        /// The proposal.
        id: String,
        /// The member.
        member: String,
    },
    /// Only the proposer may withdraw.
    #[error("only the proposer may withdraw a proposal")]
    NotTheProposer,
}

/// What the constitution decided about an open proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Not decided yet.
    Open,
    /// Rejected, and why.
    Rejected(String),
    /// Accepted, and why: its actions are to be applied.
    Accepted(String),
}

/// What the engine must do after [`ProposalRecord::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Nothing: save the record.
    Save,
    /// Apply the actions (all or nothing), then report with [`ProposalRecord::applied`].
    Apply {
        /// The constitution's reason, recorded on success.
        reason: String,
    },
}

/// What an accepted proposal changed that other open proposals may depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Plugins set or removed.
    pub plugins: Vec<String>,
    /// Whether the constitution was replaced.
    pub constitution: bool,
}

impl Changes {
    /// Nothing another proposal depends on changed.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty() && !self.constitution
    }
}

impl ProposalRecord {
    /// Open and not expired (`ttl_ms` after creation), else why not.
    pub fn check_open(&self, now_ms: u64, ttl_ms: u64) -> Result<(), LifecycleError> {
        if self.state != ProposalState::Open {
            return Err(LifecycleError::NotOpen { id: self.proposal_id.clone(), state: self.state });
        }
        if now_ms.saturating_sub(self.created_at_ms) > ttl_ms {
            return Err(LifecycleError::Expired { id: self.proposal_id.clone() });
        }
        Ok(())
    }

    /// Record `member`'s ballot; the constitution is to resolve next.
    pub fn cast(&mut self, member: &str, vote: Vote, now_ms: u64, ttl_ms: u64) -> Result<(), LifecycleError> {
        self.check_open(now_ms, ttl_ms)?;
        if self.ballots.contains_key(member) {
            return Err(LifecycleError::AlreadyVoted { id: self.proposal_id.clone(), member: member.to_string() });
        }
        self.ballots.insert(member.to_string(), vote);
        Ok(())
    }

    /// Withdrawn by `member`, who must be the proposer.
    pub fn withdraw(&mut self, member: &str, now_ms: u64, ttl_ms: u64) -> Result<(), LifecycleError> {
        self.check_open(now_ms, ttl_ms)?;
        if self.proposer_id != member {
            return Err(LifecycleError::NotTheProposer);
        }
        self.transition(ProposalState::Withdrawn, now_ms, Some(format!("withdrawn by {member}")));
        Ok(())
    }

    /// The constitution's resolution of this (open) proposal.
    pub fn resolve(&mut self, resolution: Resolution, now_ms: u64) -> Next {
        match resolution {
            Resolution::Open => Next::Save,
            Resolution::Rejected(reason) => {
                self.transition(ProposalState::Rejected, now_ms, Some(reason));
                Next::Save
            }
            Resolution::Accepted(reason) => Next::Apply { reason },
        }
    }

    /// The outcome of applying the actions of an accepted proposal: `Accepted` (and what it
    /// changed that other proposals may depend on) or `Failed` with nothing applied.
    pub fn applied(&mut self, outcome: Result<(), FailedAction>, reason: String, now_ms: u64) -> Changes {
        self.final_votes = Some(self.ballots.clone());
        match outcome {
            Ok(()) => {
                self.transition(ProposalState::Accepted, now_ms, Some(reason));
                let mut changes = Changes::default();
                for a in &self.actions {
                    match a.name.as_str() {
                        "set_plugin" | "remove_plugin" => {
                            changes.plugins.push(a.args["name"].as_str().unwrap_or_default().to_string())
                        }
                        "set_constitution" => changes.constitution = true,
                        _ => {}
                    }
                }
                changes
            }
            Err(failed) => {
                let why = format!("{}: action {} `{}`: {}", failed.code, failed.index, failed.name, failed.message);
                self.transition(ProposalState::Failed, now_ms, Some(format!("apply failed: {why}")));
                self.failure = Some(why);
                self.failed_action = Some(failed);
                Changes::default()
            }
        }
    }

    /// Drop this proposal if it is open and older than `ttl_ms`; whether it was.
    pub fn expire(&mut self, now_ms: u64, ttl_ms: u64) -> bool {
        let due = self.state == ProposalState::Open && now_ms.saturating_sub(self.created_at_ms) > ttl_ms;
        if due {
            self.transition(ProposalState::Dropped, now_ms, Some("expired".into()));
        }
        due
    }

    /// Drop this proposal if it is open and `changes` (made by proposal `by`) touch what its
    /// actions belong to — a plugin it calls, or the constitution, which owns the core actions
    /// and decides every proposal; whether it was. The meaning of what members voted on changed.
    pub fn supersede(&mut self, by: &str, changes: &Changes, now_ms: u64) -> bool {
        if self.state != ProposalState::Open || self.proposal_id == by || changes.is_empty() {
            return false;
        }
        let changed = |p: &str| changes.plugins.iter().any(|c| c == p);
        // A `set_plugin` / `remove_plugin` of a plugin that just changed was voted on against the
        // version it would have replaced: accepting it later would silently undo the change
        // (a downgrade, or a removal of what members just approved).
        let replaced = self.actions.iter().find_map(|a| match a.name.as_str() {
            "set_plugin" | "remove_plugin" => a.args["name"].as_str().filter(|n| changed(n)),
            _ => None,
        });
        let why = if changes.constitution {
            Some(format!("proposal {by} replaced the constitution"))
        } else if let Some(name) = replaced {
            Some(format!(
                "proposal {by} changed plugin `{name}` first; this proposal was made against the version that \
                 ran before (propose again against the current one)"
            ))
        } else if self.actions.iter().any(|a| a.name.split_once('.').is_some_and(|(p, _)| changed(p))) {
            Some(format!("proposal {by} changed the plugin its actions belong to"))
        } else {
            None
        };
        match why {
            Some(why) => {
                self.transition(ProposalState::Dropped, now_ms, Some(why));
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: u64 = 1_000;

    fn action(name: &str, args: serde_json::Value) -> ActionBody {
        ActionBody { name: name.into(), args }
    }

    fn proposal(actions: Vec<ActionBody>) -> ProposalRecord {
        ProposalRecord::new("p1".into(), "alice".into(), actions, 100)
    }

    #[test]
    fn ballots_then_rejection() {
        let mut p = proposal(vec![action("contracts.set_contract", serde_json::json!({}))]);
        p.cast("alice", Vote::Approve, 200, TTL).unwrap();
        assert_eq!(p.resolve(Resolution::Open, 200), Next::Save);
        assert_eq!(p.state, ProposalState::Open);
        assert_eq!(
            p.cast("alice", Vote::Reject, 300, TTL),
            Err(LifecycleError::AlreadyVoted { id: "p1".into(), member: "alice".into() })
        );
        p.cast("bob", Vote::Reject, 300, TTL).unwrap();
        assert_eq!(p.resolve(Resolution::Rejected("majority against".into()), 300), Next::Save);
        assert_eq!(p.state, ProposalState::Rejected);
        assert_eq!(p.history.last().unwrap().reason.as_deref(), Some("majority against"));
        // Final: nothing else is accepted.
        assert!(matches!(p.cast("carol", Vote::Approve, 400, TTL), Err(LifecycleError::NotOpen { .. })));
        assert!(matches!(p.withdraw("alice", 400, TTL), Err(LifecycleError::NotOpen { .. })));
        assert!(!p.expire(10_000, TTL));
    }

    #[test]
    fn acceptance_applies_or_fails_as_a_whole() {
        let mut p = proposal(vec![action("set_plugin", serde_json::json!({"name": "greetings"}))]);
        p.cast("alice", Vote::Approve, 200, TTL).unwrap();
        let Next::Apply { reason } = p.resolve(Resolution::Accepted("unanimous".into()), 200) else { panic!() };
        assert_eq!(p.state, ProposalState::Open, "accepted only once applied");
        let changes = p.applied(Ok(()), reason, 200);
        assert_eq!(p.state, ProposalState::Accepted);
        assert_eq!(changes, Changes { plugins: vec!["greetings".into()], constitution: false });
        assert_eq!(p.final_votes.as_ref().unwrap().len(), 1);

        let mut q = proposal(vec![action("set_constitution", serde_json::json!({}))]);
        q.cast("alice", Vote::Approve, 200, TTL).unwrap();
        let Next::Apply { reason } = q.resolve(Resolution::Accepted("ok".into()), 200) else { panic!() };
        let failed =
            FailedAction { index: 0, name: "set_plugin".into(), code: "InvalidPlugin".into(), message: "no".into() };
        assert!(q.applied(Err(failed.clone()), reason, 200).is_empty());
        assert_eq!(q.failed_action.as_ref(), Some(&failed));
        assert_eq!(q.state, ProposalState::Failed);
        assert_eq!(q.failure.as_deref(), Some("InvalidPlugin: action 0 `set_plugin`: no"));
        assert!(q.history.last().unwrap().reason.as_deref().unwrap().starts_with("apply failed"));
    }

    #[test]
    fn withdrawal_is_the_proposers() {
        let mut p = proposal(vec![]);
        assert_eq!(p.withdraw("bob", 200, TTL), Err(LifecycleError::NotTheProposer));
        p.withdraw("alice", 200, TTL).unwrap();
        assert_eq!(p.state, ProposalState::Withdrawn);
    }

    #[test]
    fn expiry() {
        let mut p = proposal(vec![]);
        assert_eq!(
            p.cast("alice", Vote::Approve, 100 + TTL + 1, TTL),
            Err(LifecycleError::Expired { id: "p1".into() })
        );
        assert!(!p.expire(100 + TTL, TTL), "not yet");
        assert!(p.expire(100 + TTL + 1, TTL));
        assert_eq!(p.state, ProposalState::Dropped);
        assert!(!p.expire(100 + 2 * TTL, TTL), "once");
    }

    #[test]
    fn supersession_by_the_plugin_or_constitution_it_depends_on() {
        let plugin = Changes { plugins: vec!["contracts".into()], constitution: false };
        let mut mine = proposal(vec![action("contracts.set_contract", serde_json::json!({}))]);
        let mut other = proposal(vec![action("consent.set_option", serde_json::json!({}))]);
        let mut core = proposal(vec![action("set_member", serde_json::json!({}))]);
        assert!(mine.supersede("p2", &plugin, 200));
        assert_eq!(mine.state, ProposalState::Dropped);
        assert!(!other.supersede("p2", &plugin, 200));
        assert!(!core.supersede("p2", &plugin, 200));
        let constitution = Changes { plugins: vec![], constitution: true };
        assert!(other.supersede("p2", &constitution, 200) && core.supersede("p2", &constitution, 200));
        let mut itself = proposal(vec![action("contracts.x", serde_json::json!({}))]);
        assert!(!itself.supersede("p1", &plugin, 200), "never the accepted proposal itself");
        assert!(!proposal(vec![]).supersede("p2", &Changes::default(), 200));
    }

    #[test]
    fn accepting_a_plugin_version_drops_other_open_changes_of_that_plugin() {
        let changes = Changes { plugins: vec!["notes".into()], constitution: false };
        let mut older = proposal(vec![action("set_plugin", serde_json::json!({"name": "notes", "version": "0.1.1"}))]);
        assert!(older.supersede("p9", &changes, 500));
        assert_eq!(older.state, ProposalState::Dropped);
        let why = older.history.last().unwrap().reason.clone().unwrap();
        assert!(why.contains("changed plugin `notes` first"), "{why}");
        let mut removal = proposal(vec![action("remove_plugin", serde_json::json!({"name": "notes"}))]);
        assert!(removal.supersede("p9", &changes, 500));
        let mut other = proposal(vec![action("set_plugin", serde_json::json!({"name": "audit", "version": "9.0.0"}))]);
        assert!(!other.supersede("p9", &changes, 500), "another plugin's change stays open");
        assert_eq!(other.state, ProposalState::Open);
        let mut uses = proposal(vec![action("notes.pin", serde_json::json!({}))]);
        assert!(uses.supersede("p9", &changes, 500));
    }
}
