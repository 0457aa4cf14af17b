//! The one place that talks to the host: generated bindings on `wasm32`, the in-process
//! [`crate::testing`] store everywhere else.

pub(crate) mod bindings {
    #![allow(missing_docs, unsafe_code, clippy::all, rust_2018_idioms)]

    pub mod app {
        wit_bindgen::generate!({
            world: "app-plugin",
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: "__export_app_plugin",
            default_bindings_module: "cgs_plugin::__private::app",
        });
    }
}

use crate::TxId;

/// A `kv` failure as the host reports it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KvError {
    InvalidTable,
    ReadOnly,
    TooLarge,
    Unavailable,
}

/// A `cleanroom` failure as the host reports it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CleanroomError {
    NotPermitted,
    Invalid,
    Unavailable,
}

/// One stored entry.
pub(crate) struct RawEntry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub version: TxId,
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::bindings::app::cgs::plugin::{cleanroom, context, kv, log, types};
    use super::{CleanroomError, KvError, RawEntry};
    use crate::{Caller, TxId};

    fn err(e: kv::KvError) -> KvError {
        match e {
            kv::KvError::InvalidTable => KvError::InvalidTable,
            kv::KvError::ReadOnly => KvError::ReadOnly,
            kv::KvError::TooLarge => KvError::TooLarge,
            kv::KvError::Unavailable => KvError::Unavailable,
        }
    }

    fn tx(t: types::TxId) -> TxId {
        TxId { term: t.term, seqno: t.seqno }
    }

    fn entry(e: kv::Entry) -> RawEntry {
        RawEntry { key: e.key, value: e.value, version: tx(e.version) }
    }

    pub fn get(table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        kv::get(table, key).map_err(err)
    }
    pub fn get_versioned(table: &str, key: &[u8]) -> Result<Option<RawEntry>, KvError> {
        kv::get_versioned(table, key).map(|o| o.map(entry)).map_err(err)
    }
    pub fn version(table: &str, key: &[u8]) -> Result<Option<TxId>, KvError> {
        kv::version(table, key).map(|o| o.map(tx)).map_err(err)
    }
    pub fn put(table: &str, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        kv::put(table, key, value).map_err(err)
    }
    pub fn delete(table: &str, key: &[u8]) -> Result<bool, KvError> {
        kv::delete(table, key).map_err(err)
    }
    pub fn range(
        table: &str,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        limit: u32,
        reverse: bool,
    ) -> Result<Vec<RawEntry>, KvError> {
        kv::range(table, start, end, limit, reverse).map(|v| v.into_iter().map(entry).collect()).map_err(err)
    }
    pub fn append(table: &str, prefix: &[u8], value: &[u8]) -> Result<(), KvError> {
        kv::append(table, prefix, value).map_err(err)
    }
    pub fn blind(data: &[u8]) -> [u8; 32] {
        let b = kv::blind(data);
        let mut out = [0u8; 32];
        let n = b.len().min(32);
        out[..n].copy_from_slice(&b[..n]);
        out
    }
    fn cleanroom_err(e: cleanroom::CleanroomError) -> CleanroomError {
        match e {
            cleanroom::CleanroomError::NotPermitted => CleanroomError::NotPermitted,
            cleanroom::CleanroomError::Invalid => CleanroomError::Invalid,
            cleanroom::CleanroomError::Unavailable => CleanroomError::Unavailable,
        }
    }
    pub fn set_contract(id: &str, c: &crate::cleanroom::Contract<'_>) -> Result<(), CleanroomError> {
        use crate::cleanroom::ContractState as S;
        let contract = cleanroom::Contract {
            state: match c.state {
                S::Draft => cleanroom::ContractState::Draft,
                S::Accepted => cleanroom::ContractState::Accepted,
                S::Revoked => cleanroom::ContractState::Revoked,
            },
            created_by: c.parties.created_by.to_string(),
            collaborators: c.parties.collaborators.map(<[String]>::to_vec),
            users: c.parties.users.to_vec(),
        };
        cleanroom::set_contract(id, &contract).map_err(cleanroom_err)
    }
    pub fn set_policy(
        id: &str,
        claims: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<(), CleanroomError> {
        let claims: Vec<(String, Vec<String>)> = claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        cleanroom::set_policy(id, &claims).map_err(cleanroom_err)
    }
    pub fn set_kill_switch(
        contract_id: &str,
        member_id: &str,
        on: bool,
        reason: Option<&str>,
    ) -> Result<(), CleanroomError> {
        cleanroom::set_kill_switch(contract_id, member_id, on, reason).map_err(cleanroom_err)
    }
    pub fn caller() -> Caller {
        crate::http::caller_from_wit(context::current_caller())
    }
    pub fn tx_time() -> u64 {
        context::tx_time()
    }
    pub fn plugin_name() -> String {
        context::plugin_name()
    }
    pub fn proposal_id() -> Option<String> {
        context::proposal_id()
    }
    pub fn proposal_actions() -> Vec<crate::Action> {
        context::proposal_actions().into_iter().map(|a| crate::Action { name: a.name, args: a.args }).collect()
    }
    pub fn log(level: crate::log::Level, message: &str) {
        let level = match level {
            crate::log::Level::Trace => log::Level::Trace,
            crate::log::Level::Debug => log::Level::Debug,
            crate::log::Level::Info => log::Level::Info,
            crate::log::Level::Warn => log::Level::Warn,
            crate::log::Level::Error => log::Level::Error,
        };
        log::log(level, message);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub use crate::testing::native::*;
}

pub(crate) use imp::*;
