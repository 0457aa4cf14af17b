//! The `constitution` world for [`cgs_plugin`]: [`constitution_plugin!`] exports a type that
//! implements [`cgs_plugin::Constitution`] as a constitution component (voting rules plus the
//! core governance actions).
//!
//! It is a crate of its own because both worlds export the one `cgs:plugin/actions` interface
//! and wit-bindgen names an export's glue macro by its interface, once per crate: the app world
//! lives in `cgs-plugin`, this world here, and both implement `actions` with the same helpers
//! (`cgs_plugin::__export_actions!`).

#![allow(unsafe_code)]

pub use cgs_plugin;

#[doc(hidden)]
pub mod bindings {
    #![allow(missing_docs, unsafe_code, clippy::all, rust_2018_idioms)]
    wit_bindgen::generate!({
        world: "constitution",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_constitution",
        default_bindings_module: "cgs_plugin_gov::bindings",
        with: {
            "cgs:plugin/types@0.1.0": cgs_plugin::__private::app::cgs::plugin::types,
            "cgs:plugin/kv@0.1.0": cgs_plugin::__private::app::cgs::plugin::kv,
            "cgs:plugin/context@0.1.0": cgs_plugin::__private::app::cgs::plugin::context,
            "cgs:plugin/log@0.1.0": cgs_plugin::__private::app::cgs::plugin::log,
            "cgs:plugin/cleanroom@0.1.0": cgs_plugin::__private::app::cgs::plugin::cleanroom,
        },
    });
}

/// Export `$ty` (which implements [`cgs_plugin::Constitution`]) as a `constitution` component
/// named `$name`.
#[macro_export]
macro_rules! constitution_plugin {
    ($ty:ty, name = $name:literal) => {
        const _: () = {
            #[allow(dead_code)]
            struct __CgsConstitutionExport;
            impl $crate::bindings::exports::cgs::plugin::governance::Guest for __CgsConstitutionExport {
                fn resolve(
                    proposal: $crate::bindings::exports::cgs::plugin::governance::Proposal,
                    ballots: ::std::vec::Vec<$crate::bindings::exports::cgs::plugin::governance::Ballot>,
                    members: ::std::vec::Vec<$crate::bindings::exports::cgs::plugin::governance::Member>,
                ) -> $crate::bindings::exports::cgs::plugin::governance::Resolution {
                    $crate::resolve::<$ty>(proposal, ballots, members)
                }
            }
            $crate::cgs_plugin::__export_actions!(
                __CgsConstitutionExport,
                [$crate::bindings],
                $ty as $crate::cgs_plugin::Constitution
            );
            #[cfg(target_arch = "wasm32")]
    $crate::bindings::__export_constitution!(__CgsConstitutionExport with_types_in $crate::bindings);
            $crate::cgs_plugin::__plugin_info!($name, "constitution");
        };
        /// The constitution's entry points, for native unit tests.
        #[doc(hidden)]
        #[cfg(not(target_arch = "wasm32"))]
        pub fn __cgs_native_constitution() -> $crate::cgs_plugin::NativeConstitution {
            $crate::cgs_plugin::NativeConstitution {
                resolve: <$ty as $crate::cgs_plugin::Constitution>::resolve,
                actions: <$ty as $crate::cgs_plugin::Constitution>::actions,
                validate_action: <$ty as $crate::cgs_plugin::Constitution>::validate_action,
                apply_action: <$ty as $crate::cgs_plugin::Constitution>::apply_action,
            }
        }
    };
}

use bindings::exports::cgs::plugin::governance as wit;

#[doc(hidden)]
pub fn resolve<T: cgs_plugin::Constitution>(
    proposal: wit::Proposal,
    ballots: Vec<wit::Ballot>,
    members: Vec<wit::Member>,
) -> wit::Resolution {
    let ballots: Vec<_> = ballots.into_iter().map(ballot_from_wit).collect();
    let members: Vec<_> = members.into_iter().map(member_from_wit).collect();
    resolution_into_wit(T::resolve(&proposal_from_wit(proposal), &ballots, &members))
}

fn proposal_from_wit(p: wit::Proposal) -> cgs_plugin::Proposal {
    cgs_plugin::Proposal {
        id: p.id,
        proposer_id: p.proposer_id,
        actions: p.actions.into_iter().map(|a| cgs_plugin::Action { name: a.name, args: a.args }).collect(),
        created_at_ms: p.created_at,
    }
}

fn ballot_from_wit(b: wit::Ballot) -> cgs_plugin::Ballot {
    cgs_plugin::Ballot {
        member_id: b.member_id,
        vote: match b.vote {
            wit::Vote::Approve => cgs_plugin::Vote::Approve,
            wit::Vote::Reject => cgs_plugin::Vote::Reject,
        },
    }
}

fn member_from_wit(m: wit::Member) -> cgs_plugin::Member {
    cgs_plugin::Member {
        id: m.id,
        status: match m.status {
            wit::MemberStatus::Accepted => cgs_plugin::MemberStatus::Accepted,
            wit::MemberStatus::Active => cgs_plugin::MemberStatus::Active,
        },
        roles: m.roles,
        data: m.data,
    }
}

fn resolution_into_wit(r: cgs_plugin::Resolution) -> wit::Resolution {
    wit::Resolution {
        outcome: match r.outcome {
            cgs_plugin::Outcome::Open => wit::Outcome::Open,
            cgs_plugin::Outcome::Accepted => wit::Outcome::Accepted,
            cgs_plugin::Outcome::Rejected => wit::Outcome::Rejected,
        },
        reason: r.reason,
    }
}
