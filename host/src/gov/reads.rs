//! Who may read a ledger transaction (its receipt and entry), and which of the values it wrote.

use crate::cleanroom::ContractStanding;
use crate::error::{ErrorKind, ServiceError};
use crate::runtime::{Caller, CallerKind};
use crate::schema::tables;

use super::{Governance, err};

/// What a ledger transaction is about, for deciding who may read it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TxScope {
    /// A governance write (proposals, ballots, members, blobs, logins).
    Governance,
    /// A write about one contract: a clean-room route under `/app/contracts/{id}` or its secrets.
    Contract(String),
    /// Another plugin route (no notion of parties): its writer and the members.
    App,
}

fn tx_scope(operation: &str) -> TxScope {
    match cgs_core::contract::operation_contract(operation) {
        Some(id) => TxScope::Contract(id),
        None if operation.split_once(' ').is_some_and(|(_, p)| p == "/app" || p.starts_with("/app/")) => TxScope::App,
        None => TxScope::Governance,
    }
}

impl Governance {
    /// Whether `caller` may read ledger transaction `t` (its receipt and entry): its writer; for
    /// a contract's transactions, the contract's parties; for governance transactions and other
    /// plugins' (which know no parties), members. Anyone else gets `403 NotAllowedToRead`.
    pub fn authorize_tx_read(&self, caller: &Caller, t: &cgs_core::entry::Transaction) -> Result<(), ServiceError> {
        if !t.caller.is_empty() && t.caller == caller.recorded_id(|d| self.core.ledger.blind(d)) {
            return Ok(());
        }
        let allowed = match tx_scope(&t.operation) {
            TxScope::Governance => caller.kind == CallerKind::Member,
            TxScope::Contract(id) => {
                let mut g = self.core.begin()?;
                g.get::<ContractStanding>(tables::CLEANROOM_CONTRACTS, &id)?.is_some_and(|c| c.admits(&id, caller))
            }
            TxScope::App => caller.kind == CallerKind::Member,
        };
        if allowed {
            return Ok(());
        }
        Err(err(
            ErrorKind::Forbidden,
            "NotAllowedToRead",
            "this transaction's receipt and entry are for its writer, the parties of its contract, or members \
             (governance)",
        ))
    }
}

impl Governance {
    /// Whether `caller`, already allowed to read transaction `t` ([`Self::authorize_tx_read`]), may
    /// see the value it wrote at `table`/`key` decrypted (`GET /node/entry`). Reading a
    /// transaction is not reading everything it wrote: a governance transaction (an accepted
    /// proposal) rewrites contracts, and a member who may read the ballot need not be a party to
    /// them.
    ///
    /// * `gov.private.*` (contract secrets, signing keys): never.
    /// * Public tables (`sys.*`, `gov.*` but the confidential ones, `<plugin>.public.*`): yes.
    /// * Confidential governance tables (proposals, user identities): members.
    /// * A plugin's private tables, in a transaction of contract `id` (a route under
    ///   `/app/contracts/{id}`): its writer and the parties of `id` (those already let in).
    /// * A plugin's private tables, in another plugin route's transaction: its writer only.
    /// * A plugin's private tables, in a governance transaction: the parties of the contract the
    ///   key names (`<id>` or `<id>/…`, the convention of the contracts and consent plugins);
    ///   nobody when the key names no contract.
    pub fn value_readable(
        &self,
        caller: &Caller,
        t: &cgs_core::entry::Transaction,
        table: &str,
        key: &[u8],
    ) -> Result<bool, ServiceError> {
        if table.starts_with("gov.private.") {
            return Ok(false);
        }
        if !cgs_core::entry::is_private_table(table) {
            return Ok(true);
        }
        if table.starts_with("gov.") {
            return Ok(caller.kind == CallerKind::Member);
        }
        let writer = !t.caller.is_empty() && t.caller == caller.recorded_id(|d| self.core.ledger.blind(d));
        Ok(match tx_scope(&t.operation) {
            TxScope::Contract(_) => true,
            TxScope::App => writer,
            TxScope::Governance => {
                let Ok(key) = std::str::from_utf8(key) else { return Ok(false) };
                let id = key.split_once('/').map_or(key, |(id, _)| id);
                let mut g = self.core.begin()?;
                g.get::<ContractStanding>(tables::CLEANROOM_CONTRACTS, id)?.is_some_and(|c| c.admits(id, caller))
            }
        })
    }

    /// Whether `caller` may see the signed governance message recorded with `t`: members, for
    /// proposals, ballots, withdrawals and acks. Never a login (a member's signed login is theirs
    /// alone; handing it to others only helps replay it elsewhere).
    pub fn envelope_readable(caller: &Caller, t: &cgs_core::entry::Transaction) -> bool {
        caller.kind == CallerKind::Member
            && matches!(t.operation.as_str(), "proposal" | "ballot" | "withdrawal" | "ack")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(tx_scope("PUT /app/contracts/c%201"), TxScope::Contract("c 1".into()));
        assert_eq!(tx_scope("POST /app/contracts/c1/events"), TxScope::Contract("c1".into()));
        // Routed like `/app/contracts/c1/events`, so scoped like it (review finding).
        assert_eq!(tx_scope("POST /app/contract%73/c1/events"), TxScope::Contract("c1".into()));
        assert_eq!(tx_scope("PUT /app/notes/n1"), TxScope::App);
        assert_eq!(tx_scope("PUT /app/contracts"), TxScope::App);
        assert_eq!(tx_scope("put secret c1/db-key"), TxScope::Contract("c1".into()));
        assert_eq!(tx_scope("ballot"), TxScope::Governance);
        assert_eq!(tx_scope("upload blob ab12"), TxScope::Governance);
    }
}
