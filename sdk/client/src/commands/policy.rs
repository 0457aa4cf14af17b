//! `cgs policy`: clean-room policies of contracts.

use clap::Subcommand;
use serde_json::Value;

use super::common::{authed, contract_path, member, plain_list, pretty, propose_action, show};
use super::{CliError, Result};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub(crate) enum PolicyCommand {
    /// Propose adding or removing claims of a contract's clean-room policy
    /// (`contracts.set_cleanroom_policy`).
    #[command(group = clap::ArgGroup::new("op").required(true).args(["add", "remove"]))]
    Propose {
        /// Contract id.
        id: String,
        /// Add the claims.
        #[arg(long)]
        add: bool,
        /// Remove the claims.
        #[arg(long)]
        remove: bool,
        /// A claim (repeatable; values of one NAME make a list; `true`/`false` are booleans).
        #[arg(long = "claim", value_name = "NAME=VALUE", required = true)]
        claims: Vec<String>,
    },
    /// Show a contract's clean-room policy.
    Show {
        /// Contract id.
        id: String,
    },
}

pub(crate) fn run(cli: &Cli, command: &PolicyCommand) -> Result {
    let m = member(cli)?;
    match command {
        PolicyCommand::Propose { id, add: _, remove, claims } => {
            let args = serde_json::json!({
                "contract_id": id,
                "type": if *remove { "remove" } else { "add" },
                "claims": claims_arg(claims)?,
            });
            propose_action(cli, &m, "contracts.set_cleanroom_policy", args)?;
        }
        PolicyCommand::Show { id } => {
            let v = authed(&m, "GET", &contract_path(id, "/cleanroom-policy"), None)?;
            show(cli, &v, |v| {
                format!(
                    "accepted by proposals: {}\nopen proposals:        {}\npolicy:\n{}",
                    plain_list(&v["accepted_proposal_ids"]),
                    plain_list(&v["proposal_ids"]),
                    pretty(&v["policy"])
                )
            });
        }
    }
    Ok(())
}

/// `{NAME:[values]}` from `NAME=VALUE` flags; `true`/`false` are booleans.
fn claims_arg(claims: &[String]) -> Result<Value> {
    let mut map = serde_json::Map::new();
    for c in claims {
        let (name, value) = c
            .split_once('=')
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| CliError::usage(format!("--claim `{c}` is not NAME=VALUE")))?;
        let value = match value {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            v => Value::String(v.into()),
        };
        if let Value::Array(values) = map.entry(name.to_string()).or_insert_with(|| Value::Array(Vec::new())) {
            values.push(value);
        }
    }
    Ok(Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_group_by_name() {
        let c = claims_arg(&["a=1".into(), "b=true".into(), "a=x=y".into(), "c=false".into()]).unwrap();
        assert_eq!(c, serde_json::json!({"a": ["1", "x=y"], "b": [true], "c": [false]}));
        assert_eq!(claims_arg(&["=1".into()]).unwrap_err().to_string(), "--claim `=1` is not NAME=VALUE");
        assert_eq!(claims_arg(&["a".into()]).unwrap_err().to_string(), "--claim `a` is not NAME=VALUE");
    }
}
