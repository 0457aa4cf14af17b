//! The principal behind a call (`cgs_core::caller`, shared with plugins), and its WIT form.

pub use cgs_core::caller::{Caller, CallerKind};

use super::bindings::types as wit;

/// The caller as the WIT `caller` record plugins receive.
pub(super) fn to_wit(c: &Caller) -> wit::Caller {
    wit::Caller {
        kind: match c.kind {
            CallerKind::Anonymous => wit::CallerKind::Anonymous,
            CallerKind::Member => wit::CallerKind::Member,
            CallerKind::User => wit::CallerKind::User,
            CallerKind::Cleanroom => wit::CallerKind::Cleanroom,
        },
        id: c.id.clone(),
        roles: c.roles.clone(),
        contract_id: c.contract_id.clone(),
        claims: c.claims.clone(),
    }
}
