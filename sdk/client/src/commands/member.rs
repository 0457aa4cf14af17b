//! `cgs login` and `cgs member`: members of the consortium.

use clap::Subcommand;

use super::Result;
use super::common::{authed, block_on, lines, member, ok_json, pretty, show};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub(crate) enum MemberCommand {
    /// List members.
    List,
    /// Show one member.
    Show {
        /// Member id.
        id: String,
    },
    /// Acknowledge the service state with `--key` (Accepted → Active).
    Ack,
}

/// `cgs login`: print a member bearer token.
pub(crate) fn login(cli: &Cli) -> Result {
    let m = member(cli)?;
    let token = block_on(m.token())??;
    show(cli, &serde_json::json!({"token": token}), |_| token.clone());
    Ok(())
}

pub(crate) fn run(cli: &Cli, command: &MemberCommand) -> Result {
    let m = member(cli)?;
    match command {
        MemberCommand::List => {
            let v = authed(&m, "GET", "/gov/members", None)?;
            show(cli, &v, |v| {
                lines(v, |x| {
                    format!(
                        "{}  {:<8} {}",
                        x["member_id"].as_str().unwrap_or("?"),
                        x["status"].as_str().unwrap_or("?"),
                        x["member_data"]
                    )
                })
                .join("\n")
            });
        }
        MemberCommand::Show { id } => {
            let v = authed(&m, "GET", &format!("/gov/members/{id}"), None)?;
            show(cli, &v, pretty);
        }
        MemberCommand::Ack => {
            let v = ok_json(block_on(m.ack())?)?;
            show(cli, &v, |v| {
                format!("member {} is {}", v["member_id"].as_str().unwrap_or("?"), v["status"].as_str().unwrap_or("?"))
            });
        }
    }
    Ok(())
}
