//! `cgs contract`: clean-room contracts (drafts, proposals, revocation) and their deployment specs.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::common::{authed, block_on, contract_path, encode, json_arg, lines, member, ok_json, plain, plain_list};
use super::common::{pretty, propose_action, show, show_proposal, vote_on, with_query};
use super::{CliError, Result};
use crate::Cli;

/// Who may use a contract (omitted from the request when not given).
#[derive(Args, Debug)]
pub(crate) struct PartyArgs {
    /// A member id that may read and amend the contract (repeatable; default: every member).
    #[arg(long = "collaborator", value_name = "MEMBER_ID")]
    collaborators: Vec<String>,
    /// A user identity that may read the contract (repeatable).
    #[arg(long = "user", value_name = "ISSUER|SUBJECT")]
    users: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ContractCommand {
    /// Create a draft contract.
    Create {
        /// Contract id (A-Z a-z 0-9 - _ .).
        id: String,
        /// The contract document: JSON, or @FILE (@- for stdin).
        #[arg(long, value_name = "JSON|@FILE")]
        data: String,
        #[command(flatten)]
        parties: PartyArgs,
    },
    /// Amend a draft contract at its current version.
    Update {
        /// Contract id.
        id: String,
        /// The version you read (`cgs contract show`).
        #[arg(long)]
        version: String,
        /// The new contract document: JSON, or @FILE (@- for stdin).
        #[arg(long, value_name = "JSON|@FILE")]
        data: String,
        #[command(flatten)]
        parties: PartyArgs,
    },
    /// Show a contract.
    Show {
        /// Contract id.
        id: String,
    },
    /// List contracts: `ID STATE VERSION`.
    List {
        /// Only this state (Draft, Proposed, Accepted, Revoked).
        #[arg(long)]
        state: Option<String>,
    },
    /// Propose accepting a contract (`contracts.set_contract`).
    Propose {
        /// Contract id.
        id: String,
        /// The version to accept (default: the current one).
        #[arg(long)]
        version: Option<String>,
    },
    /// Vote on a proposal (as `cgs proposal vote`).
    Vote {
        /// Proposal id.
        proposal_id: String,
        /// `approve` or `reject`.
        vote: String,
    },
    /// Propose revoking an accepted contract (`contracts.revoke_contract`).
    Revoke {
        /// Contract id.
        id: String,
    },
    /// Deployment specs.
    #[command(subcommand)]
    Spec(SpecCommand),
}

#[derive(Subcommand, Debug)]
pub(crate) enum SpecCommand {
    /// Propose a contract's deployment spec (`contracts.set_deployment_spec`).
    Propose {
        /// Contract id.
        id: String,
        /// The deployment spec: JSON, or @FILE (@- for stdin).
        #[arg(long, value_name = "JSON|@FILE")]
        data: String,
    },
    /// Show a contract's deployment spec.
    Show {
        /// Contract id.
        id: String,
    },
}

pub(crate) fn run(cli: &Cli, command: &ContractCommand) -> Result {
    let m = member(cli)?;
    match command {
        ContractCommand::Create { id, data, parties } | ContractCommand::Update { id, data, parties, .. } => {
            let version = match command {
                ContractCommand::Update { version, .. } => Some(version.as_str()),
                _ => None,
            };
            let body = contract_body(version, data, parties)?;
            let v = authed(&m, "PUT", &contract_path(id, ""), Some(&body))?;
            let what = if version.is_some() { "updated" } else { "created" };
            show(cli, &v, |v| format!("contract {id} {what} (version {})", plain(&v["tx_id"])));
        }
        ContractCommand::Show { id } => {
            let v = authed(&m, "GET", &contract_path(id, ""), None)?;
            show(cli, &v, contract_text);
        }
        ContractCommand::List { state } => {
            let query: Vec<String> = state.iter().map(|s| format!("state={}", encode(s))).collect();
            let v = authed(&m, "GET", &with_query("/app/contracts".into(), &query), None)?;
            show(cli, &v, |v| {
                lines(v, |x| format!("{}  {:<8} {}", plain(&x["id"]), plain(&x["state"]), plain(&x["version"])))
                    .join("\n")
            });
        }
        ContractCommand::Propose { id, version } => {
            // One runtime for both requests: read the current version, then propose it.
            let v = block_on(async {
                let version = match version {
                    Some(v) => v.clone(),
                    None => {
                        let c = ok_json(m.authed("GET", &contract_path(id, ""), None).await)?;
                        c["version"]
                            .as_str()
                            .map(str::to_string)
                            .ok_or_else(|| CliError::Answer("the contract has no `version`".into()))?
                    }
                };
                let args = serde_json::json!({"contract_id": id, "version": version});
                ok_json(m.propose(serde_json::json!([{"name": "contracts.set_contract", "args": args}])).await)
            })??;
            show_proposal(cli, &v);
        }
        ContractCommand::Vote { proposal_id, vote } => vote_on(cli, &m, proposal_id, vote)?,
        ContractCommand::Revoke { id } => {
            propose_action(cli, &m, "contracts.revoke_contract", serde_json::json!({"contract_id": id}))?;
        }
        ContractCommand::Spec(SpecCommand::Propose { id, data }) => {
            let args = serde_json::json!({"contract_id": id, "data": json_arg("--data", data)?});
            propose_action(cli, &m, "contracts.set_deployment_spec", args)?;
        }
        ContractCommand::Spec(SpecCommand::Show { id }) => {
            let v = authed(&m, "GET", &contract_path(id, "/deployment-spec"), None)?;
            show(cli, &v, |v| {
                format!(
                    "accepted by proposal: {}\nopen proposals:       {}\ndata:\n{}",
                    plain(&v["accepted_proposal_id"]),
                    plain_list(&v["proposal_ids"]),
                    pretty(&v["data"])
                )
            });
        }
    }
    Ok(())
}

/// The body of `PUT /app/contracts/{id}`.
fn contract_body(version: Option<&str>, data: &str, parties: &PartyArgs) -> Result<Value> {
    let mut body = serde_json::json!({"data": json_arg("--data", data)?});
    if let Some(v) = version {
        body["version"] = v.into();
    }
    if !parties.collaborators.is_empty() {
        body["collaborators"] = parties.collaborators.clone().into();
    }
    if !parties.users.is_empty() {
        body["users"] = parties.users.clone().into();
    }
    Ok(body)
}

/// `cgs contract show`: one `label: value` line per field, then the document.
fn contract_text(v: &Value) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let label = if label.is_empty() { String::new() } else { format!("{label}:") };
        out.push_str(&format!("{label:<15}{value}\n"));
    };
    line("id", plain(&v["id"]));
    line("state", plain(&v["state"]));
    line("version", plain(&v["version"]));
    line("proposal_id", plain(&v["proposal_id"]));
    match v["final_votes"].as_array().filter(|a| !a.is_empty()) {
        Some(votes) => {
            for (i, b) in votes.iter().enumerate() {
                let label = if i == 0 { "final_votes" } else { "" };
                line(label, format!("{} {}", plain(&b["member_id"]), plain(&b["vote"])));
            }
        }
        None => line("final_votes", "-".into()),
    }
    if v["collaborators"].is_array() {
        line("collaborators", plain_list(&v["collaborators"]));
    }
    if v["users"].as_array().is_some_and(|u| !u.is_empty()) {
        line("users", plain_list(&v["users"]));
    }
    out.push_str("data:\n");
    out.push_str(&pretty(&v["data"]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_only_the_given_parts() {
        let none = PartyArgs { collaborators: vec![], users: vec![] };
        assert_eq!(contract_body(None, "{}", &none).unwrap(), serde_json::json!({"data": {}}));
        let some = PartyArgs { collaborators: vec!["m1".into()], users: vec!["iss|sub".into()] };
        assert_eq!(
            contract_body(Some("2.3"), r#"{"a":1}"#, &some).unwrap(),
            serde_json::json!({"data": {"a": 1}, "version": "2.3", "collaborators": ["m1"], "users": ["iss|sub"]})
        );
    }

    #[test]
    fn text_of_a_contract() {
        let v = serde_json::json!({"id": "c", "state": "Accepted", "version": "2.5", "proposal_id": null,
            "final_votes": [{"member_id": "m1", "vote": true}, {"member_id": "m2", "vote": true}],
            "collaborators": [], "data": {"a": 1}});
        assert_eq!(
            contract_text(&v),
            "id:            c\nstate:         Accepted\nversion:       2.5\nproposal_id:   -\n\
             final_votes:   m1 true\n               m2 true\ncollaborators: -\ndata:\n{\n  \"a\": 1\n}"
        );
    }
}
