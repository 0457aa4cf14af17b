//! `cgs proposal`: proposals and ballots.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::Value;

use super::common::{authed, block_on, lines, member, ok_json, pretty, propose, read_to_string, show, show_proposal};
use super::common::{show_state, vote_on};
use super::{CliError, Result};
use crate::Cli;

/// The actions of a proposal: `--action NAME --args JSON` (repeatable, in order) or `--file`.
#[derive(clap::Args, Debug)]
pub(crate) struct BodyArgs {
    /// Action name (`set_member`, `contracts.set_contract`, …).
    #[arg(long = "action")]
    actions: Vec<String>,
    /// JSON arguments of the preceding `--action` (default `{}`).
    #[arg(long = "args")]
    args: Vec<String>,
    /// A file with the proposal body.
    #[arg(long, conflicts_with = "actions")]
    file: Option<PathBuf>,
}

impl BodyArgs {
    /// `{"actions":[…]}`.
    fn body(&self) -> Result<Value> {
        match &self.file {
            Some(f) => serde_json::from_str(&read_to_string(f)?)
                .map_err(|source| CliError::NotJson { what: f.display().to_string(), source }),
            None => actions_body(&self.actions, &self.args),
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum ProposalCommand {
    /// Propose actions: `--action NAME --args JSON` (repeatable, in order) or `--file` holding
    /// `{"actions":[{"name","args"}]}`.
    Create {
        #[command(flatten)]
        body: BodyArgs,
    },
    /// Dry-run a proposal against the current state, writing nothing: each action's
    /// validation, the constitution's verdict (with `--approve MEMBER` ballots assumed) and the
    /// approvals it would still need, and whether its actions would apply. Exits non-zero if it
    /// would not pass.
    Simulate {
        #[command(flatten)]
        body: BodyArgs,
        /// Assume this member approves (repeatable).
        #[arg(long = "approve", value_name = "MEMBER_ID")]
        approve: Vec<String>,
        /// Assume this member rejects (repeatable).
        #[arg(long = "reject", value_name = "MEMBER_ID")]
        reject: Vec<String>,
    },
    /// List proposals.
    List {
        /// Only this state (Open, Accepted, Rejected, Withdrawn, Failed, Dropped).
        #[arg(long)]
        state: Option<String>,
    },
    /// Show a proposal with its ballots and history.
    Show {
        /// Proposal id.
        id: String,
    },
    /// Vote on a proposal.
    Vote {
        /// Proposal id.
        id: String,
        /// `approve` or `reject`.
        vote: String,
    },
    /// Withdraw your proposal.
    Withdraw {
        /// Proposal id.
        id: String,
    },
}

pub(crate) fn run(cli: &Cli, command: &ProposalCommand) -> Result {
    let m = member(cli)?;
    match command {
        ProposalCommand::Create { body } => {
            let body = body.body()?;
            let v = propose(&m, body["actions"].clone())?;
            show_proposal(cli, &v);
        }
        ProposalCommand::Simulate { body, approve, reject } => {
            let mut body = body.body()?;
            let mut ballots = serde_json::Map::new();
            for (ids, vote) in [(approve, "approve"), (reject, "reject")] {
                for id in ids {
                    ballots.insert(id.clone(), vote.into());
                }
            }
            body["ballots"] = ballots.into();
            let v = authed(&m, "POST", "/gov/proposals/simulate", Some(&body))?;
            show(cli, &v, simulation_text);
            let passes = v["valid"] == true
                && v["with_more_approvals"]["resolution"]["outcome"] == "Accepted"
                && v["apply"].as_array().is_some_and(|a| a.iter().all(|x| x["ok"] == true));
            if !passes {
                return Err(CliError::usage("the proposal would not pass as it stands (see above)"));
            }
        }
        ProposalCommand::List { state } => {
            let path = match state {
                Some(s) => format!("/gov/proposals?state={s}"),
                None => "/gov/proposals".into(),
            };
            let v = authed(&m, "GET", &path, None)?;
            show(cli, &v, |v| lines(v, proposal_line).join("\n"));
        }
        ProposalCommand::Show { id } => {
            let v = authed(&m, "GET", &format!("/gov/proposals/{id}"), None)?;
            show(cli, &v, pretty);
        }
        ProposalCommand::Vote { id, vote } => vote_on(cli, &m, id, vote)?,
        ProposalCommand::Withdraw { id } => {
            let v = ok_json(block_on(m.withdraw(id))?)?;
            show_state(cli, id, &v);
        }
    }
    Ok(())
}

/// `{"actions":[{"name","args"}]}` from `--action NAME [--args JSON]` pairs.
fn actions_body(actions: &[String], args: &[String]) -> Result<Value> {
    if actions.is_empty() {
        return Err(CliError::usage("give at least one --action NAME [--args JSON], or --file"));
    }
    let mut list = Vec::new();
    for (i, name) in actions.iter().enumerate() {
        let a = match args.get(i) {
            Some(a) => serde_json::from_str(a)
                .map_err(|source| CliError::NotJson { what: format!("--args of `{name}`"), source })?,
            None => serde_json::json!({}),
        };
        list.push(serde_json::json!({"name": name, "args": a}));
    }
    Ok(serde_json::json!({"actions": list}))
}

/// An action as a list shows it: its name; for a plugin change also what it installs
/// (`set_plugin notes 0.2.0 ab12…`) and the intent it declares (`ROLLBACK: why`, `REPLACES CORE`).
fn action_label(a: &Value) -> String {
    let name = a["name"].as_str().unwrap_or("?");
    let args = &a["args"];
    match name {
        "set_plugin" | "set_constitution" => {
            let hash: String = args["blake3"].as_str().unwrap_or("?").chars().take(12).collect();
            let mut label = format!(
                "{name} {} {} {hash}…",
                args["name"].as_str().unwrap_or("?"),
                args["version"].as_str().unwrap_or("?")
            );
            if let Some(why) = args["rollback"].as_str() {
                label.push_str(&format!(" ROLLBACK: {why}"));
            }
            if args["replace_core"] == true {
                label.push_str(" REPLACES CORE");
            }
            if let Some(commit) = args["provenance"]["commit"].as_str() {
                let repo = args["provenance"]["repository"].as_str().unwrap_or("local");
                label.push_str(&format!(" from {repo}@{}", &commit[..commit.len().min(12)]));
            }
            label
        }
        "remove_plugin" => format!("{name} {}", args["name"].as_str().unwrap_or("?")),
        _ => name.to_string(),
    }
}

/// `ID  STATE     by PROPOSER…  ballots N  [ACTIONS]`.
fn proposal_line(p: &Value) -> String {
    let actions: Vec<String> =
        p["actions"].as_array().map(|a| a.iter().map(action_label).collect()).unwrap_or_default();
    format!(
        "{}  {:<9} by {}…  ballots {}  [{}]",
        p["proposal_id"].as_str().unwrap_or("?"),
        p["state"].as_str().unwrap_or("?"),
        &p["proposer_id"].as_str().unwrap_or("?").chars().take(12).collect::<String>(),
        p["ballots"].as_object().map(|b| b.len()).unwrap_or(0),
        actions.join(", ")
    )
}

/// `cgs proposal simulate` for people: a line per step.
fn simulation_text(v: &Value) -> String {
    let mut out = Vec::new();
    let step = |what: &str, x: &Value| {
        if x["ok"] == true {
            format!("{what} {} `{}`: ok (fuel {})", x["index"], x["name"].as_str().unwrap_or("?"), x["fuel"])
        } else {
            format!(
                "{what} {} `{}`: REFUSED {}: {}",
                x["index"],
                x["name"].as_str().unwrap_or("?"),
                x["code"].as_str().unwrap_or("?"),
                x["message"].as_str().unwrap_or("")
            )
        }
    };
    for x in v["validation"].as_array().into_iter().flatten() {
        out.push(step("validate", x));
    }
    if let Some(r) = v["resolution"].as_object() {
        out.push(format!(
            "constitution now: {} {}",
            r.get("outcome").and_then(Value::as_str).unwrap_or("?"),
            r.get("reason").and_then(Value::as_str).unwrap_or("")
        ));
        let more = &v["with_more_approvals"];
        let needed: Vec<&str> =
            more["approvals_needed"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        out.push(format!(
            "with {} more approval(s) ({}): {}",
            needed.len(),
            needed.join(", "),
            more["resolution"]["outcome"].as_str().unwrap_or("?")
        ));
    }
    for x in v["apply"].as_array().into_iter().flatten() {
        out.push(step("apply", x));
    }
    out.push(format!("fuel used: {}; nothing was written", v["fuel_used"]));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_pair_with_their_args() {
        let b = actions_body(&["a".into(), "b".into()], &[r#"{"x":1}"#.into()]).unwrap();
        assert_eq!(b, serde_json::json!({"actions": [{"name": "a", "args": {"x": 1}}, {"name": "b", "args": {}}]}));
        let e = actions_body(&[], &[]).unwrap_err().to_string();
        assert_eq!(e, "give at least one --action NAME [--args JSON], or --file");
        let e = actions_body(&["a".into()], &["{".into()]).unwrap_err().to_string();
        assert!(e.starts_with("--args of `a` is not JSON: EOF"), "{e}");
    }

    #[test]
    fn proposal_lines() {
        let p = serde_json::json!({"proposal_id": "p1", "state": "Open", "proposer_id": "0123456789abcdef",
            "ballots": {"m1": "approve"}, "actions": [{"name": "set_member"}, {"name": "set_plugin"}]});
        assert_eq!(proposal_line(&p), "p1  Open      by 0123456789ab…  ballots 1  [set_member, set_plugin ? ? ?…]");
        let p = serde_json::json!({"proposal_id": "p2", "state": "Open", "proposer_id": "ab", "actions": [
            {"name": "set_plugin", "args": {"name": "notes", "version": "0.1.1", "blake3": "0123456789abcdef0123",
             "rollback": "0.2.0 loses events"}},
            {"name": "set_plugin", "args": {"name": "audit", "version": "0.2.0", "blake3": "ff", "replace_core": true}},
            {"name": "remove_plugin", "args": {"name": "old"}}]});
        assert_eq!(
            proposal_line(&p),
            "p2  Open      by ab…  ballots 0  [set_plugin notes 0.1.1 0123456789ab… ROLLBACK: 0.2.0 loses events, \
             set_plugin audit 0.2.0 ff… REPLACES CORE, remove_plugin old]"
        );
    }
}
