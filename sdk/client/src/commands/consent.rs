//! `cgs consent`: execution kill switches, logging and telemetry of contracts.

use clap::Subcommand;

use super::Result;
use super::common::{authed, contract_path, member, plain, propose_action, show};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub(crate) enum ConsentCommand {
    /// Show a contract's consent status.
    Show {
        /// Contract id.
        id: String,
        /// Which consent.
        #[arg(default_value = "execution", value_parser = ["execution", "logging", "telemetry"])]
        kind: String,
    },
    /// Turn your execution kill switch on: the contract no longer runs.
    Disable {
        /// Contract id.
        id: String,
        /// Why (shown to the contract's parties).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Turn your execution kill switch off again.
    Enable {
        /// Contract id.
        id: String,
    },
    /// Propose enabling or disabling logging or telemetry (`consent.enable_logging`, …).
    Propose {
        /// Contract id.
        id: String,
        /// The change.
        #[arg(value_parser = ["enable-logging", "disable-logging", "enable-telemetry", "disable-telemetry"])]
        change: String,
    },
}

pub(crate) fn run(cli: &Cli, command: &ConsentCommand) -> Result {
    let m = member(cli)?;
    match command {
        ConsentCommand::Show { id, kind } => {
            let v = authed(&m, "GET", &contract_path(id, &format!("/consent/{kind}")), None)?;
            show(cli, &v, |v| match v["status"].as_str() {
                Some("disabled") if v["reason"].is_object() => {
                    format!("{kind}: disabled ({}: {})", plain(&v["reason"]["code"]), plain(&v["reason"]["message"]))
                }
                status => format!("{kind}: {}", status.unwrap_or("?")),
            });
        }
        ConsentCommand::Disable { id, .. } | ConsentCommand::Enable { id } => {
            let (action, body) = match command {
                ConsentCommand::Disable { reason, .. } => {
                    ("disable", reason.as_ref().map(|r| serde_json::json!({"reason": r})))
                }
                _ => ("enable", None),
            };
            let path = contract_path(id, &format!("/consent/execution/{action}"));
            let v = authed(&m, "POST", &path, body.as_ref())?;
            show(cli, &v, |v| {
                format!(
                    "your execution kill switch for contract {id} is {} (tx {})",
                    if action == "disable" { "on" } else { "off" },
                    plain(&v["tx_id"])
                )
            });
        }
        ConsentCommand::Propose { id, change } => {
            let action = format!("consent.{}", change.replace('-', "_"));
            propose_action(cli, &m, &action, serde_json::json!({"contract_id": id}))?;
        }
    }
    Ok(())
}
