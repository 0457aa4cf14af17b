//! Tell the host what it enforces for clean rooms (`cgs:plugin/cleanroom`).
//!
//! Sessions, secret releases and ID tokens are the host's; which contracts exist, who their
//! parties are, whether they are accepted, their clean-room policies and the members' kill
//! switches are decided by plugins. The plugin that decides tells the host here, in the same
//! transaction; the host keeps typed records of its own and never reads a plugin's tables.
//! Only the plugin installed as `contracts` may set contracts and policies, and only `consent`
//! kill switches; anyone else gets `500 CleanroomNotPermitted`.

use std::collections::BTreeMap;

pub use cgs_core::contract::Parties;

use crate::sys::{self, CleanroomError};
use crate::{Error, Result};

/// A contract's state as far as clean rooms are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractState {
    /// Drafted or proposed: its clean rooms may not act.
    Draft,
    /// Accepted: its clean rooms may act unless a kill switch is on.
    Accepted,
    /// Revoked: its clean rooms may no longer act.
    Revoked,
}

/// What the host keeps of a contract.
#[derive(Debug, Clone, Copy)]
pub struct Contract<'a> {
    /// State.
    pub state: ContractState,
    /// Its parties (the host admits members and users by [`Parties`]' rule).
    pub parties: Parties<'a>,
}

fn error(e: CleanroomError, what: &str) -> Error {
    match e {
        CleanroomError::NotPermitted => Error::internal(
            "CleanroomNotPermitted",
            format!(
                "this plugin may not set {what}: only the plugin installed as `contracts` sets contracts and \
                 policies, only `consent` sets kill switches, and only from a route or action that writes"
            ),
        ),
        CleanroomError::Invalid => Error::bad_request(
            "InvalidCleanroomRecord",
            format!(
                "the host refused {what}: contract ids are 1-128 chars of A-Z a-z 0-9 - _ ., member ids 64 hex \
                 digits, at most 1000 parties and 256 claims of 256 values, each at most 4096 bytes, and the \
                 contract must exist"
            ),
        ),
        CleanroomError::Unavailable => Error::unavailable("StoreUnavailable", "the store is unavailable; retry later"),
    }
}

/// Create or replace the standing of contract `id`.
pub fn set_contract(id: &str, contract: &Contract<'_>) -> Result<()> {
    sys::set_contract(id, contract).map_err(|e| error(e, &format!("the standing of contract `{id}`")))
}

/// Replace the clean-room policy of contract `id`: claim → allowed values (a clean room is
/// admitted when its evidence carries, for every claim, one of the claim's values).
pub fn set_policy(id: &str, claims: &BTreeMap<String, Vec<String>>) -> Result<()> {
    sys::set_policy(id, claims).map_err(|e| error(e, &format!("the clean-room policy of contract `{id}`")))
}

/// Turn `member_id`'s execution kill switch for `contract_id` on (with the member's reason) or
/// off.
pub fn set_kill_switch(contract_id: &str, member_id: &str, on: bool, reason: Option<&str>) -> Result<()> {
    sys::set_kill_switch(contract_id, member_id, on, reason)
        .map_err(|e| error(e, &format!("a kill switch of contract `{contract_id}`")))
}
