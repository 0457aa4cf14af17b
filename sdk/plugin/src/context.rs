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
