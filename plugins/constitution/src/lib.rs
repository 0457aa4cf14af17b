//! The default constitution: who decides, and the core governance actions.
//!
//! Voting rule: a proposal is accepted once every active member who is not an operator approved
//! it, and rejected as soon as a single such member rejects it (unanimity). Members with the
//! `operator` role run machines but do not vote.

use cgs_plugin::{
    Action, ActionInfo, Ballot, Constitution, Error, Member, MemberStatus, Outcome, Proposal, Resolution, Result, Vote,
};

/// The core actions and what their arguments are.
const CORE_ACTIONS: &[(&str, &str)] = &[
    ("set_member", "add a member: {\"public_key\": PEM Ed25519, \"member_data\": {..}}"),
    ("remove_member", "remove a member: {\"member_id\"}"),
    ("set_member_data", "replace a member's data: {\"member_id\", \"member_data\": {..}}"),
    ("set_plugin", "install or upgrade a plugin: {\"name\", \"version\", \"blake3\"}"),
    ("remove_plugin", "remove a plugin: {\"name\"}"),
    ("set_constitution", "replace the constitution: {\"name\", \"version\", \"blake3\"}"),
    ("set_jwt_issuer", "trust a JWT issuer: {\"issuer\", \"jwks\" | \"jwks_url\"}"),
    ("remove_jwt_issuer", "stop trusting a JWT issuer: {\"issuer\"}"),
    ("set_user_identity", "register a user: {\"issuer\", \"subject\", \"data\"}"),
    ("remove_user_identity", "unregister a user: {\"issuer\", \"subject\"}"),
    ("add_node_measurement", "allow a host measurement: {\"measurement\"}"),
    ("remove_node_measurement", "disallow a host measurement: {\"measurement\"}"),
    ("add_node_host_data", "allow a host_data value: {\"host_data\"}"),
    ("remove_node_host_data", "disallow a host_data value: {\"host_data\"}"),
    ("set_node_min_tcb", "minimum TCB per processor generation: {\"generation\", \"tcb\"}"),
    ("transition_service_to_open", "open the service: {}"),
    ("set_recovery_threshold", "recovery shares needed: {\"threshold\"}"),
];

/// Whether a member votes under this constitution.
pub fn is_voter(m: &Member) -> bool {
    m.status == MemberStatus::Active && !m.roles.iter().any(|r| r == "operator")
}

/// Unanimity of voters; one reject rejects.
pub fn unanimity(ballots: &[Ballot], members: &[Member]) -> Resolution {
    let voters: Vec<&Member> = members.iter().filter(|m| is_voter(m)).collect();
    let vote_of = |id: &str| ballots.iter().rev().find(|b| b.member_id == id).map(|b| b.vote);
    let approvals = voters.iter().filter(|m| vote_of(&m.id) == Some(Vote::Approve)).count();
    if let Some(m) = voters.iter().find(|m| vote_of(&m.id) == Some(Vote::Reject)) {
        return Resolution {
            outcome: Outcome::Rejected,
            reason: format!("member {} rejected; unanimity is required", m.id),
        };
    }
    if voters.is_empty() {
        return Resolution { outcome: Outcome::Open, reason: "there are no active voting members".into() };
    }
    if approvals == voters.len() {
        return Resolution {
            outcome: Outcome::Accepted,
            reason: format!("all {} active members approved", voters.len()),
        };
    }
    Resolution {
        outcome: Outcome::Open,
        reason: format!("{approvals} of {} active members approved; all are required", voters.len()),
    }
}

struct Default;

impl Constitution for Default {
    fn resolve(_proposal: &Proposal, ballots: &[Ballot], members: &[Member]) -> Resolution {
        unanimity(ballots, members)
    }

    fn actions() -> Vec<ActionInfo> {
        CORE_ACTIONS.iter().map(|(n, d)| ActionInfo::new(*n, *d)).collect()
    }

    fn validate_action(action: &Action) -> Result<()> {
        known(action)?;
        Err(Error::unavailable(
            "GovernanceNotEnabled",
            format!("core action `{}` needs the governance engine, which this node does not run yet", action.name),
        ))
    }

    fn apply_action(action: &Action) -> Result<()> {
        Self::validate_action(action)
    }
}

fn known(action: &Action) -> Result<()> {
    if CORE_ACTIONS.iter().any(|(n, _)| *n == action.name) { Ok(()) } else { Err(Error::unknown_action(&action.name)) }
}

cgs_plugin::constitution_plugin!(Default, name = "constitution");

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, active: bool, operator: bool) -> Member {
        Member {
            id: id.into(),
            status: if active { MemberStatus::Active } else { MemberStatus::Accepted },
            roles: if operator { vec!["operator".into()] } else { vec![] },
            data: "{}".into(),
        }
    }

    fn ballot(id: &str, vote: Vote) -> Ballot {
        Ballot { member_id: id.into(), vote }
    }

    #[test]
    fn unanimity_of_active_non_operators() {
        let members = vec![
            member("a", true, false),
            member("b", true, false),
            member("c", false, false),
            member("op", true, true),
        ];
        assert_eq!(unanimity(&[], &members).outcome, Outcome::Open);
        assert_eq!(unanimity(&[ballot("a", Vote::Approve)], &members).outcome, Outcome::Open);
        let r = unanimity(&[ballot("a", Vote::Approve), ballot("b", Vote::Approve)], &members);
        assert_eq!(r.outcome, Outcome::Accepted, "inactive and operator members do not count");
        assert_eq!(
            unanimity(&[ballot("a", Vote::Approve), ballot("b", Vote::Reject)], &members).outcome,
            Outcome::Rejected
        );
        assert_eq!(
            unanimity(&[ballot("op", Vote::Reject), ballot("c", Vote::Reject)], &members).outcome,
            Outcome::Open
        );
        // A later ballot of the same member replaces the earlier one.
        let r =
            unanimity(&[ballot("a", Vote::Reject), ballot("a", Vote::Approve), ballot("b", Vote::Approve)], &members);
        assert_eq!(r.outcome, Outcome::Accepted);
        assert_eq!(unanimity(&[], &[]).outcome, Outcome::Open);
    }

    #[test]
    fn core_actions_are_listed_and_unknown_ones_refused() {
        assert!(Default::actions().iter().any(|a| a.name == "set_plugin"));
        let e = Default::validate_action(&Action { name: "nope".into(), args: "{}".into() }).unwrap_err();
        assert_eq!(e.code, "UnknownAction");
    }
}
