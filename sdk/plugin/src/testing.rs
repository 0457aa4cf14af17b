//! Run plugin logic natively in unit tests.
//!
//! Compiled for the host (not `wasm32`), [`Table`](crate::Table), [`context`](crate::context)
//! and [`log`](crate::log) use a thread-local, in-memory store with transactions of one write
//! each: no durability, no isolation between plugins. It exists so that pure plugin logic can be
//! unit-tested with `cargo test`; the behaviour of the real component against the real host is
//! tested by the host's integration tests.
//!
//! ```
//! use cgs_plugin::{Table, testing};
//! testing::reset();
//! let t: Table<str, u32> = Table::new("counts");
//! t.put("a", &1).unwrap();
//! assert_eq!(t.get("a").unwrap(), Some(1));
//! ```

use crate::Caller;

/// Clear the native store and context of this thread.
pub fn reset() {
    #[cfg(not(target_arch = "wasm32"))]
    native::STATE.with(|s| *s.borrow_mut() = native::State::default());
}

/// Set the caller that [`context::caller`](crate::context::caller) returns on this thread.
pub fn set_caller(caller: Caller) {
    #[cfg(not(target_arch = "wasm32"))]
    native::STATE.with(|s| s.borrow_mut().caller = Some(caller));
    #[cfg(target_arch = "wasm32")]
    let _ = caller;
}

/// Set the transaction time (ms) that [`context::tx_time_ms`](crate::context::tx_time_ms) returns.
pub fn set_tx_time_ms(ms: u64) {
    #[cfg(not(target_arch = "wasm32"))]
    native::STATE.with(|s| s.borrow_mut().tx_time = ms);
    #[cfg(target_arch = "wasm32")]
    let _ = ms;
}

/// Mark tables read-only (as the host does for governance tables and read-only routes).
pub fn set_read_only(read_only: bool) {
    #[cfg(not(target_arch = "wasm32"))]
    native::STATE.with(|s| s.borrow_mut().read_only = read_only);
    #[cfg(target_arch = "wasm32")]
    let _ = read_only;
}

/// Let `gov.*` tables be written (as the host does for the constitution applying a core action).
pub fn set_gov_writable(writable: bool) {
    #[cfg(not(target_arch = "wasm32"))]
    native::STATE.with(|s| s.borrow_mut().gov_writable = writable);
    #[cfg(target_arch = "wasm32")]
    let _ = writable;
}

/// Set the proposal that [`context::proposal_id`](crate::context::proposal_id) and
/// [`context::proposal_actions`](crate::context::proposal_actions) report (`None`: no proposal).
pub fn set_proposal(proposal: Option<(&str, Vec<crate::Action>)>) {
    #[cfg(not(target_arch = "wasm32"))]
    native::STATE.with(|s| s.borrow_mut().proposal = proposal.map(|(id, a)| (id.to_string(), a)));
    #[cfg(target_arch = "wasm32")]
    let _ = proposal;
}

/// What the plugin told the host of clean rooms (`cleanroom::set_*`), as the host's records
/// would read: `contracts` (id → `{state, created_by, collaborators, users}`), `policies` (id →
/// `{claim: [values]}`) and `kill_switches` (`<contract>/<member>` → reason).
pub fn cleanroom_record(kind: &str, key: &str) -> Option<serde_json::Value> {
    #[cfg(not(target_arch = "wasm32"))]
    return native::STATE.with(|s| s.borrow().cleanroom.get(&(kind.to_string(), key.to_string())).cloned());
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (kind, key);
        None
    }
}

/// The version (tx id) the last native write got; appended keys end with its seqno.
pub fn last_seqno() -> u64 {
    #[cfg(not(target_arch = "wasm32"))]
    return native::STATE.with(|s| s.borrow().seqno);
    #[cfg(target_arch = "wasm32")]
    0
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use crate::sys::{CleanroomError, KvError, RawEntry};
    use crate::{Caller, TxId};

    type Table = BTreeMap<Vec<u8>, (Vec<u8>, TxId)>;

    #[derive(Default)]
    pub(crate) struct State {
        pub tables: BTreeMap<String, Table>,
        pub seqno: u64,
        pub caller: Option<Caller>,
        pub tx_time: u64,
        pub read_only: bool,
        pub gov_writable: bool,
        pub proposal: Option<(String, Vec<crate::Action>)>,
        /// The seqno and count of appends of the current native transaction (one
        /// `Router::dispatch`): its appends share the seqno, as in one real transaction.
        pub append_tx: Option<(u64, u32)>,
        /// What `cleanroom::set_*` told the host: (kind, key) → record.
        pub cleanroom: BTreeMap<(String, String), serde_json::Value>,
    }

    thread_local! {
        pub(crate) static STATE: RefCell<State> = RefCell::new(State::default());
    }

    fn check_table(table: &str) -> Result<(), KvError> {
        let ok = !table.is_empty()
            && table.len() <= 64
            && table.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
        if ok { Ok(()) } else { Err(KvError::InvalidTable) }
    }

    fn check_write(s: &State, table: &str) -> Result<(), KvError> {
        check_table(table)?;
        if s.read_only || (table.starts_with("gov.") && !s.gov_writable) { Err(KvError::ReadOnly) } else { Ok(()) }
    }

    pub fn get(table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(get_versioned(table, key)?.map(|e| e.value))
    }

    pub fn get_versioned(table: &str, key: &[u8]) -> Result<Option<RawEntry>, KvError> {
        check_table(table)?;
        Ok(STATE.with(|s| {
            s.borrow().tables.get(table).and_then(|t| t.get(key)).map(|(v, ver)| RawEntry {
                key: key.to_vec(),
                value: v.clone(),
                version: *ver,
            })
        }))
    }

    pub fn version(table: &str, key: &[u8]) -> Result<Option<TxId>, KvError> {
        Ok(get_versioned(table, key)?.map(|e| e.version))
    }

    pub fn put(table: &str, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            check_write(&s, table)?;
            s.seqno += 1;
            let v = TxId { term: 1, seqno: s.seqno };
            s.tables.entry(table.to_string()).or_default().insert(key.to_vec(), (value.to_vec(), v));
            Ok(())
        })
    }

    pub fn append(table: &str, prefix: &[u8], value: &[u8]) -> Result<(), KvError> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            check_write(&s, table)?;
            let (seqno, n) = match s.append_tx {
                Some((seqno, n)) => (seqno, n + 1),
                None => {
                    s.seqno += 1;
                    (s.seqno, 0)
                }
            };
            s.append_tx = Some((seqno, n));
            let v = TxId { term: 1, seqno };
            let mut key = prefix.to_vec();
            key.extend_from_slice(&seqno.to_be_bytes());
            key.extend_from_slice(&n.to_be_bytes());
            s.tables.entry(table.to_string()).or_default().insert(key, (value.to_vec(), v));
            Ok(())
        })
    }

    pub fn delete(table: &str, key: &[u8]) -> Result<bool, KvError> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            check_write(&s, table)?;
            Ok(s.tables.get_mut(table).and_then(|t| t.remove(key)).is_some())
        })
    }

    pub fn range(
        table: &str,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        limit: u32,
        reverse: bool,
    ) -> Result<Vec<RawEntry>, KvError> {
        check_table(table)?;
        Ok(STATE.with(|s| {
            let s = s.borrow();
            let Some(t) = s.tables.get(table) else { return Vec::new() };
            let in_range =
                |k: &Vec<u8>| start.is_none_or(|st| k.as_slice() >= st) && end.is_none_or(|en| k.as_slice() < en);
            let entries = t.iter().filter(|(k, _)| in_range(k));
            let to_entry = |(k, (v, ver)): (&Vec<u8>, &(Vec<u8>, TxId))| RawEntry {
                key: k.clone(),
                value: v.clone(),
                version: *ver,
            };
            if reverse {
                entries.rev().take(limit as usize).map(to_entry).collect()
            } else {
                entries.take(limit as usize).map(to_entry).collect()
            }
        }))
    }

    /// Deterministic stand-in for the host's keyed hash (not cryptographic: tests only).
    pub fn blind(data: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (i as u64);
            for b in data {
                h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
            chunk.copy_from_slice(&h.to_be_bytes());
        }
        out
    }

    fn record(kind: &str, key: String, value: Option<serde_json::Value>) -> Result<(), CleanroomError> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            if s.read_only {
                return Err(CleanroomError::NotPermitted);
            }
            match value {
                Some(v) => s.cleanroom.insert((kind.to_string(), key), v),
                None => s.cleanroom.remove(&(kind.to_string(), key)),
            };
            Ok(())
        })
    }

    pub fn set_contract(id: &str, c: &crate::cleanroom::Contract<'_>) -> Result<(), CleanroomError> {
        let v = serde_json::json!({
            "state": format!("{:?}", c.state), "created_by": c.parties.created_by,
            "collaborators": c.parties.collaborators, "users": c.parties.users,
        });
        record("contracts", id.to_string(), Some(v))
    }

    pub fn set_policy(id: &str, claims: &BTreeMap<String, Vec<String>>) -> Result<(), CleanroomError> {
        record("policies", id.to_string(), Some(serde_json::json!(claims)))
    }

    pub fn set_kill_switch(
        contract_id: &str,
        member_id: &str,
        on: bool,
        reason: Option<&str>,
    ) -> Result<(), CleanroomError> {
        record("kill_switches", format!("{contract_id}/{member_id}"), on.then(|| serde_json::json!(reason)))
    }

    pub fn caller() -> Caller {
        STATE.with(|s| s.borrow().caller.clone().unwrap_or_else(Caller::anonymous))
    }

    pub fn tx_time() -> u64 {
        STATE.with(|s| s.borrow().tx_time)
    }

    pub fn plugin_name() -> String {
        "native-test".to_string()
    }

    pub fn proposal_id() -> Option<String> {
        STATE.with(|s| s.borrow().proposal.as_ref().map(|p| p.0.clone()))
    }

    pub fn proposal_actions() -> Vec<crate::Action> {
        STATE.with(|s| s.borrow().proposal.as_ref().map(|p| p.1.clone()).unwrap_or_default())
    }

    pub fn log(level: crate::log::Level, message: &str) {
        eprintln!("[plugin {level:?}] {message}");
    }
}
