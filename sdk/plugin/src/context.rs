//! Facts about the current call, set by the host.

use crate::Caller;
use crate::sys;

/// Who is calling (for governance actions: the proposer).
pub fn caller() -> Caller {
    sys::caller()
}

/// The transaction time in milliseconds since the Unix epoch, set by the leader. Record this,
/// never a time the client sent.
pub fn tx_time_ms() -> u64 {
    sys::tx_time()
}

/// This plugin's registered name.
pub fn plugin_name() -> String {
    sys::plugin_name()
}

/// While validating or applying a governance action: the proposal's id.
pub fn proposal_id() -> Option<String> {
    sys::proposal_id()
}

/// While validating or applying a governance action: every action of the proposal, in order
/// (empty otherwise). Lets an action insist on standing alone, or on its companions.
pub fn proposal_actions() -> Vec<crate::Action> {
    sys::proposal_actions()
}
