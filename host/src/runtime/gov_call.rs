//! Governance calls on a plugin: validate or apply an action and, on the constitution,
//! resolve a proposal.

use cgs_core::plugin::World;

use super::bindings::types as wit;
use super::instance::{Call, plugin_error};
use super::registry::WorldPre;
use super::{Caller, DispatchError, Plugin, Runtime, bindings};
use crate::store::Transaction;

/// A governance action as the runtime passes it to plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovAction {
    /// `<plugin>.<action>` or a core action name.
    pub name: String,
    /// Arguments as JSON text.
    pub args: String,
}

/// A member as the constitution sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovMember {
    /// Member id.
    pub id: String,
    /// Whether the member acked (Active) or not (Accepted).
    pub active: bool,
    /// Roles.
    pub roles: Vec<String>,
    /// Member data, JSON text.
    pub data: String,
}

/// The constitution's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GovOutcome {
    /// Not decided.
    Open,
    /// Accepted.
    Accepted,
    /// Rejected.
    Rejected,
}

/// A governance operation on a plugin.
pub enum GovCall<'a> {
    /// Check an action.
    Validate(&'a GovAction),
    /// Apply an accepted action.
    Apply(&'a GovAction),
    /// Decide a proposal (constitution only).
    Resolve {
        /// Proposal id.
        id: &'a str,
        /// Proposer.
        proposer_id: &'a str,
        /// Its actions.
        actions: &'a [GovAction],
        /// Creation time (ms).
        created_at_ms: u64,
        /// `(member id, approve?)`, one per member.
        ballots: &'a [(String, bool)],
        /// Current members.
        members: &'a [GovMember],
    },
}

/// The reply of a governance operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GovReply {
    /// Validate / apply succeeded.
    Done,
    /// The plugin refused (its error, mapped to an HTTP status).
    Refused {
        /// HTTP status.
        status: u16,
        /// Code.
        code: String,
        /// Message.
        message: String,
    },
    /// A resolution.
    Resolution {
        /// Outcome.
        outcome: GovOutcome,
        /// Why.
        reason: String,
    },
}

impl Runtime {
    /// Run a governance operation on `plugin` inside the transaction `tx` (shared by every
    /// action of a proposal), returning the reply, the transaction and the fuel used. `Apply` may write; only
    /// the constitution may write governance tables.
    #[allow(clippy::too_many_arguments)]
    pub fn gov_call(
        &self,
        plugin: &Plugin,
        call: GovCall<'_>,
        tx: Transaction,
        caller: &Caller,
        proposal_id: Option<String>,
        proposal_actions: &[GovAction],
        tx_time_ms: u64,
    ) -> (Result<GovReply, DispatchError>, Transaction, u64) {
        let writable = matches!(call, GovCall::Apply(_));
        let gov_writable = writable && plugin.info.world == World::Constitution;
        let to_wit = |a: &GovAction| wit::Action { name: a.name.clone(), args: a.args.clone() };
        let proposal_actions = proposal_actions.iter().map(to_wit).collect();
        let setup = Call { plugin, caller, tx, writable, gov_writable, tx_time_ms, proposal_id, proposal_actions };
        let refused = |e: wit::Error| {
            let d = plugin_error(e);
            GovReply::Refused { status: d.status(), code: d.code().to_string(), message: d.message() }
        };
        let (result, state) = match (&plugin.pre.world, call) {
            // Both worlds export `actions`: the constitution's core actions and a plugin's own
            // are validated and applied the same way.
            (_, GovCall::Validate(a)) => self.run(setup, |store| {
                let actions = plugin.pre.instantiate_actions(store)?;
                Ok(actions.call_validate_action(&mut *store, &to_wit(a))?.map_or_else(refused, |()| GovReply::Done))
            }),
            (_, GovCall::Apply(a)) => self.run(setup, |store| {
                let actions = plugin.pre.instantiate_actions(store)?;
                Ok(actions.call_apply_action(&mut *store, &to_wit(a))?.map_or_else(refused, |()| GovReply::Done))
            }),
            (
                WorldPre::Constitution(pre),
                GovCall::Resolve { id, proposer_id, actions, created_at_ms, ballots, members },
            ) => {
                use bindings::gov::exports::cgs::plugin::governance as g;
                let proposal = g::Proposal {
                    id: id.to_string(),
                    proposer_id: proposer_id.to_string(),
                    actions: actions.iter().map(to_wit).collect(),
                    created_at: created_at_ms,
                };
                let ballots: Vec<g::Ballot> = ballots
                    .iter()
                    .map(|(m, approve)| g::Ballot {
                        member_id: m.clone(),
                        vote: if *approve { g::Vote::Approve } else { g::Vote::Reject },
                    })
                    .collect();
                let members: Vec<g::Member> = members
                    .iter()
                    .map(|m| g::Member {
                        id: m.id.clone(),
                        status: if m.active { g::MemberStatus::Active } else { g::MemberStatus::Accepted },
                        roles: m.roles.clone(),
                        data: m.data.clone(),
                    })
                    .collect();
                self.run(setup, |store| {
                    let inst = pre.instantiate(&mut *store)?;
                    let r = inst.cgs_plugin_governance().call_resolve(&mut *store, &proposal, &ballots, &members)?;
                    let outcome = match r.outcome {
                        g::Outcome::Open => GovOutcome::Open,
                        g::Outcome::Accepted => GovOutcome::Accepted,
                        g::Outcome::Rejected => GovOutcome::Rejected,
                    };
                    Ok(GovReply::Resolution { outcome, reason: r.reason })
                })
            }
            (WorldPre::App(_), GovCall::Resolve { .. }) => {
                let msg = format!("plugin `{}` is not the constitution", plugin.info.name);
                return (
                    Err(DispatchError::Plugin { status: 500, code: "NotTheConstitution".into(), message: msg }),
                    setup.tx,
                    0,
                );
            }
        };
        (result, state.tx, state.fuel_used)
    }
}
