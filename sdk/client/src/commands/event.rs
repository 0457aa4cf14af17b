//! `cgs event`: audit events of contracts.

use clap::Subcommand;
use serde_json::Value;

use super::common::with_query;
use super::common::{authed, block_on, contract_path, encode, json_arg, lines, member, ok_json, plain, show};
use super::{CliError, Result};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub(crate) enum EventCommand {
    /// Record an audit event of an accepted contract.
    Add {
        /// Contract id.
        id: String,
        /// The event: JSON, or @FILE (@- for stdin).
        #[arg(long, value_name = "JSON|@FILE")]
        data: String,
        /// Scope label of the event.
        #[arg(long)]
        scope: Option<String>,
        /// Id label of the event.
        #[arg(long = "event-id")]
        event_id: Option<String>,
    },
    /// List a contract's events: `SEQNO TX_ID TIMESTAMP SCOPE ID DATA`.
    List {
        /// Contract id.
        id: String,
        /// Only events with this scope.
        #[arg(long)]
        scope: Option<String>,
        /// Only events with this id.
        #[arg(long = "event-id")]
        event_id: Option<String>,
        /// From this seqno (inclusive).
        #[arg(long)]
        from: Option<u64>,
        /// Up to this seqno (inclusive).
        #[arg(long)]
        to: Option<u64>,
        /// At most this many events per page (service default 100, at most 1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Newest first.
        #[arg(long)]
        newest_first: bool,
        /// Follow `next_link` through every page.
        #[arg(long)]
        all: bool,
    },
}

pub(crate) fn run(cli: &Cli, command: &EventCommand) -> Result {
    let m = member(cli)?;
    match command {
        EventCommand::Add { id, data, scope, event_id } => {
            let body = json_arg("--data", data)?;
            let path = with_query(contract_path(id, "/events"), &labels(scope.as_deref(), event_id.as_deref()));
            let v = authed(&m, "POST", &path, Some(&body))?;
            show(cli, &v, |v| {
                format!(
                    "event recorded: seqno {}, tx {}, timestamp {}",
                    plain(&v["seqno"]),
                    plain(&v["tx_id"]),
                    plain(&v["timestamp"])
                )
            });
        }
        EventCommand::List { id, scope, event_id, from, to, limit, newest_first, all } => {
            let mut query = labels(scope.as_deref(), event_id.as_deref());
            query.extend(from.map(|n| format!("from={n}")));
            query.extend(to.map(|n| format!("to={n}")));
            query.extend(limit.map(|n| format!("limit={n}")));
            if *newest_first {
                query.push("order=desc".into());
            }
            let path = with_query(contract_path(id, "/events"), &query);
            // One runtime for every page.
            let v = block_on(async {
                let first = ok_json(m.authed("GET", &path, None).await)?;
                if !*all {
                    return Ok(first);
                }
                let mut value = first["value"].as_array().cloned().unwrap_or_default();
                let mut next = first["next_link"].as_str().map(str::to_string);
                while let Some(link) = next.take() {
                    if !link.starts_with("/app/") {
                        return Err(CliError::Answer(format!("unexpected next_link `{link}`")));
                    }
                    let page = ok_json(m.authed("GET", &link, None).await)?;
                    value.extend(page["value"].as_array().cloned().unwrap_or_default());
                    next = page["next_link"].as_str().map(str::to_string);
                }
                Ok(serde_json::json!({"value": value, "next_link": null}))
            })??;
            show(cli, &v, |v| {
                let mut lines = lines(v, event_line);
                if let Some(next) = v["next_link"].as_str() {
                    lines.push(format!("(more: --all, or GET {next})"));
                }
                lines.join("\n")
            });
        }
    }
    Ok(())
}

/// The `scope` and `id` query parameters.
fn labels(scope: Option<&str>, event_id: Option<&str>) -> Vec<String> {
    let mut query = Vec::new();
    if let Some(s) = scope {
        query.push(format!("scope={}", encode(s)));
    }
    if let Some(i) = event_id {
        query.push(format!("id={}", encode(i)));
    }
    query
}

/// `SEQNO TX_ID TIMESTAMP SCOPE ID DATA`.
fn event_line(e: &Value) -> String {
    format!(
        "{} {} {} {} {} {}",
        plain(&e["seqno"]),
        plain(&e["tx_id"]),
        plain(&e["timestamp"]),
        plain(&e["scope"]),
        plain(&e["id"]),
        e["data"]
    )
}
