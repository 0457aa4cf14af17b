//! `POST /gov/proposals/simulate`: what a proposal would meet, against the current state,
//! writing nothing — each action's validation, the constitution's verdict with the ballots given
//! and the approvals it would still need, and (if it would pass) each action's apply. Every step
//! runs the code a real proposal runs, in a transaction that is dropped, never committed.

use std::collections::BTreeMap;

use cgs_core::gov::{ActionBody, Vote};
use serde::Deserialize;

use super::{ErrorKind, Governance, ProposalRecord, Resolution, check_action_count, err, member_caller};
use crate::error::ServiceError;
use crate::runtime::{Caller, GovAction};
use crate::txn::StateTx;

/// The body: the actions, and ballots to assume (`{member_id: "approve"|"reject"}`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Simulate {
    actions: Vec<ActionBody>,
    #[serde(default)]
    ballots: BTreeMap<String, Vote>,
}

/// One action's step of the trace (validate or apply), adding its fuel to `fuel`.
fn step(i: usize, a: &ActionBody, r: &Result<u64, ServiceError>, fuel: &mut u64) -> serde_json::Value {
    match r {
        Ok(f) => {
            *fuel += f;
            serde_json::json!({"index": i, "name": a.name, "ok": true, "fuel": f})
        }
        Err(e) => serde_json::json!({"index": i, "name": a.name, "ok": false, "code": e.code, "message": e.message}),
    }
}

fn verdict(r: &Resolution) -> serde_json::Value {
    match r {
        Resolution::Open => serde_json::json!({"outcome": "Open"}),
        Resolution::Accepted(why) => serde_json::json!({"outcome": "Accepted", "reason": why}),
        Resolution::Rejected(why) => serde_json::json!({"outcome": "Rejected", "reason": why}),
    }
}

impl Governance {
    /// Simulate the proposal in `body` as made by member `caller` now.
    pub fn simulate(&self, caller: &Caller, body: &[u8]) -> Result<serde_json::Value, ServiceError> {
        let s: Simulate = serde_json::from_slice(body).map_err(|e| {
            err(ErrorKind::Invalid, "InvalidProposal", format!("expected {{\"actions\":[…],\"ballots\":{{…}}}}: {e}"))
        })?;
        check_action_count(&s.actions)?;
        // One simulation at a time per node: each may run up to (members + 2) × actions plugin
        // calls, so a member cannot tie up every worker with them.
        let _one = self.simulating.try_lock().map_err(|_| {
            err(ErrorKind::Busy, "ServiceBusy", "another proposal is being simulated on this node; retry in a moment")
        })?;
        tracing::info!(member = %caller.id, actions = s.actions.len(), "simulating a proposal");
        // Never committed: dropped at the end of this function.
        let mut g: StateTx = self.begin()?;
        let members = self.members(&mut g)?;
        let active: Vec<String> =
            members.iter().filter(|(_, m)| m.status == "Active").map(|(id, _)| id.clone()).collect();
        if !active.contains(&caller.id) {
            return Err(err(ErrorKind::Forbidden, "MemberNotActive", "only an active member may simulate a proposal"));
        }
        if let Some(unknown) = s.ballots.keys().find(|m| !active.contains(m)) {
            return Err(err(ErrorKind::Invalid, "InvalidBallot", format!("{unknown} is not an active member")));
        }
        let id = "simulation";
        let proposer = member_caller(&caller.id);
        let all: Vec<GovAction> = s.actions.iter().map(Self::gov_action).collect();
        let mut fuel = 0u64;

        let mut validation = Vec::new();
        for (i, a) in s.actions.iter().enumerate() {
            let r = self.run_one(&mut g, a, &all, false, &proposer, id);
            validation.push(step(i, a, &r, &mut fuel));
        }
        let valid = validation.iter().all(|v| v["ok"] == true);
        let mut out = serde_json::json!({"validation": validation, "valid": valid, "written": false});
        if !valid {
            out["fuel_used"] = fuel.into();
            return Ok(out);
        }

        // The verdict with the ballots given, then with more approvals (active members who have
        // not voted, in id order) until it is decided: the ballots it would need.
        let mut p = ProposalRecord::new(id.into(), caller.id.clone(), s.actions.clone(), g.now_ms);
        p.ballots = s.ballots.clone();
        let (now, f) = self.resolve(&mut g, &p, &proposer)?;
        fuel += f;
        out["resolution"] = verdict(&now);
        let mut needed = Vec::new();
        let mut last = now;
        for m in active.iter().filter(|m| !s.ballots.contains_key(*m)) {
            if !matches!(last, Resolution::Open) {
                break;
            }
            p.ballots.insert(m.clone(), Vote::Approve);
            needed.push(m.clone());
            let (r, f) = self.resolve(&mut g, &p, &proposer)?;
            fuel += f;
            last = r;
        }
        out["with_more_approvals"] = serde_json::json!({"approvals_needed": needed, "resolution": verdict(&last)});

        // Would it apply? Run every action's apply in the throwaway transaction.
        if matches!(last, Resolution::Accepted(_)) {
            let mut applied = Vec::new();
            let mut failed = false;
            for (i, a) in s.actions.iter().enumerate() {
                let r = self.run_one(&mut g, a, &all, true, &proposer, id);
                failed = r.is_err();
                applied.push(step(i, a, &r, &mut fuel));
                if failed {
                    break;
                }
            }
            // The recovery shares the apply would make again (a threshold above the members
            // fails the proposal): reported as the last action's, as the apply does.
            if !failed
                && let (Some(last), Err(e)) =
                    (s.actions.last(), self.refresh_recovery_shares(&mut g, None, "simulation"))
            {
                let i = s.actions.len() - 1;
                if let Some(step_of_last) = applied.last_mut() {
                    *step_of_last = step(i, last, &Err(e), &mut fuel);
                }
            }
            out["apply"] = applied.into();
        }
        out["fuel_used"] = fuel.into();
        drop(g);
        Ok(out)
    }
}
