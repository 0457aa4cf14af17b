//! `cgs dataset`, `cgs query`, `cgs run`: the analytics plugin (docs/analytics.md), through
//! `cgs_client::analytics`.

use std::path::PathBuf;

use cgs_client::analytics::{self, Analytics, DatasetDescriptor, QueryDescriptor};
use clap::Subcommand;

use super::common::{block_on, client, member, plain, plain_list, read, show};
use super::{CliError, Result};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub(crate) enum DatasetCommand {
    /// Register a dataset (you own it), or change yours with `--version`: the descriptor is a JSON
    /// file `{"schema":[{"name","type","output","aggregate","join"}], "aggregate_only",
    /// "min_group_size", "location", "format", "key_secret", "budget":{"epsilon","period_hours"}}`.
    Put {
        /// Contract id.
        contract: String,
        /// Dataset name.
        name: String,
        /// The descriptor (JSON).
        #[arg(long)]
        file: PathBuf,
        /// The version you read (to change it).
        #[arg(long)]
        version: Option<String>,
    },
    /// Show a dataset with its rules.
    Show {
        /// Contract id.
        contract: String,
        /// Dataset name.
        name: String,
    },
    /// List a contract's datasets.
    List {
        /// Contract id.
        contract: String,
    },
    /// Your consent, as its owner, to runs over a dataset.
    Consent {
        /// Contract id.
        contract: String,
        /// Dataset name.
        name: String,
        /// enable or disable.
        #[arg(value_parser = ["enable", "disable"])]
        switch: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum QueryCommand {
    /// Submit a query (checked against its inputs' rules; prints the derived approvers), or edit
    /// yours with `--version` (which resets the approvals).
    Submit {
        /// Contract id.
        contract: String,
        /// Query id.
        id: String,
        /// The SQL.
        #[arg(long)]
        sql: String,
        /// Epsilon each run costs every input.
        #[arg(long)]
        epsilon: f64,
        /// The member the output is for (default: you).
        #[arg(long)]
        output_owner: Option<String>,
        /// The version you read (to edit it).
        #[arg(long)]
        version: Option<String>,
    },
    /// Show a query: its checked SQL, approvers, ballots and state.
    Show {
        /// Contract id.
        contract: String,
        /// Query id.
        id: String,
    },
    /// List a contract's queries.
    List {
        /// Contract id.
        contract: String,
    },
    /// Approve a query's revision (you must be one of its approvers).
    Approve {
        /// Contract id.
        contract: String,
        /// Query id.
        id: String,
        /// The revision you read (`cgs query show`).
        #[arg(long)]
        revision: u64,
    },
    /// Reject a query's revision.
    Reject {
        /// Contract id.
        contract: String,
        /// Query id.
        id: String,
        /// The revision you read.
        #[arg(long)]
        revision: u64,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum RunCommand {
    /// Runs, denials and completions (newest first), each with the tx id of its receipt.
    List {
        /// Contract id.
        contract: String,
        /// Only those touching this dataset.
        #[arg(long)]
        dataset: Option<String>,
        /// Only those of this query.
        #[arg(long)]
        query: Option<String>,
    },
    /// Ask for a run ticket as a clean-room session (its token).
    Request {
        /// Contract id.
        contract: String,
        /// Query id.
        query: String,
        /// The idempotent run id.
        run_id: String,
        /// The clean-room session token.
        #[arg(long, env = "CGS_TOKEN")]
        token: String,
    },
}

pub(crate) fn dataset(cli: &Cli, command: &DatasetCommand) -> Result {
    let m = member(cli)?;
    let a = Analytics::new(&m);
    match command {
        DatasetCommand::Put { contract, name, file, version } => {
            let d: DatasetDescriptor = serde_json::from_slice(&read(file)?)
                .map_err(|e| CliError::usage(format!("{}: not a dataset descriptor: {e}", file.display())))?;
            let v = block_on(a.put_dataset(contract, name, &d, version.as_deref()))??;
            show(cli, &v, |v| {
                format!(
                    "dataset {name} of contract {contract}: owner {} (tx {})",
                    plain(&v["owner"]),
                    plain(&v["tx_id"])
                )
            });
        }
        DatasetCommand::Show { contract, name } => {
            let d = block_on(a.dataset(contract, name))??;
            let v = serde_json::to_value(&d).unwrap_or_default();
            show(cli, &v, |_| {
                let mut out = format!(
                    "dataset {} (version {}), owner {}, consent {}\n  location {} ({}), key in secret `{}`\n  budget {} epsilon per {} h{}\n  columns:",
                    d.name,
                    d.version,
                    d.owner,
                    if d.consent { "enabled" } else { "DISABLED" },
                    d.descriptor.location,
                    d.descriptor.format,
                    d.descriptor.key_secret,
                    d.descriptor.budget.epsilon,
                    d.descriptor.budget.period_hours,
                    if d.descriptor.aggregate_only {
                        format!(", aggregate-only (groups of at least {})", d.descriptor.min_group_size.unwrap_or(1))
                    } else {
                        String::new()
                    }
                );
                for c in &d.descriptor.schema {
                    let rules: Vec<&str> = [(c.output, "output"), (c.aggregate, "aggregate"), (c.join, "join")]
                        .iter()
                        .filter(|(on, _)| *on)
                        .map(|(_, r)| *r)
                        .collect();
                    out.push_str(&format!(
                        "\n    {:<20} {:<6} {}",
                        c.name,
                        c.kind,
                        if rules.is_empty() { "-".into() } else { rules.join(", ") }
                    ));
                }
                out
            });
        }
        DatasetCommand::List { contract } => {
            let list = block_on(a.datasets(contract))??;
            let v = serde_json::to_value(&list).unwrap_or_default();
            show(cli, &v, |_| {
                list.iter()
                    .map(|d| format!("{:<20} owner {} {} columns", d.name, d.owner, d.descriptor.schema.len()))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        DatasetCommand::Consent { contract, name, switch } => {
            let v = block_on(a.set_consent(contract, name, switch == "enable"))??;
            show(cli, &v, |v| format!("dataset {name}: consent {} (tx {})", plain(&v["consent"]), plain(&v["tx_id"])));
        }
    }
    Ok(())
}

pub(crate) fn query(cli: &Cli, command: &QueryCommand) -> Result {
    let m = member(cli)?;
    let a = Analytics::new(&m);
    match command {
        QueryCommand::Submit { contract, id, sql, epsilon, output_owner, version } => {
            let q = QueryDescriptor { sql: sql.clone(), epsilon: *epsilon, output_owner: output_owner.clone() };
            let s = block_on(a.put_query(contract, id, &q, version.as_deref()))??;
            let v = serde_json::to_value(&s).unwrap_or_default();
            show(cli, &v, |_| {
                format!(
                    "query {id} revision {} is {}; its approvers (the owners of its data and output): {}",
                    s.revision,
                    s.state,
                    s.approvers.join(", ")
                )
            });
        }
        QueryCommand::Show { contract, id } => {
            let q = block_on(a.query(contract, id))??;
            let v = serde_json::to_value(&q).unwrap_or_default();
            show(cli, &v, |_| {
                format!(
                    "query {} revision {} (version {}): {}\n  sql (as checked): {}\n  inputs: {}; output for {}; {} epsilon per run\n  approvers: {}\n  ballots: {}",
                    q.id,
                    q.revision,
                    q.version,
                    q.state,
                    plain(&q.analysis["canonical_sql"]),
                    plain_list(&q.analysis["inputs"]),
                    q.output_owner,
                    q.epsilon,
                    q.approvers.join(", "),
                    if q.ballots.is_empty() {
                        "-".into()
                    } else {
                        q.ballots.iter().map(|(m, b)| format!("{m}: {b}")).collect::<Vec<_>>().join(", ")
                    }
                )
            });
        }
        QueryCommand::List { contract } => {
            let list = block_on(a.queries(contract))??;
            let v = serde_json::to_value(&list).unwrap_or_default();
            show(cli, &v, |_| {
                list.iter()
                    .map(|q| format!("{:<20} {:<9} rev {} {}", q.id, q.state, q.revision, q.sql))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        QueryCommand::Approve { contract, id, revision } | QueryCommand::Reject { contract, id, revision } => {
            let approve = matches!(command, QueryCommand::Approve { .. });
            let v = block_on(a.vote(contract, id, *revision, approve))??;
            show(cli, &v, |v| format!("query {id} is {} (tx {})", plain(&v["state"]), plain(&v["tx_id"])));
        }
    }
    Ok(())
}

pub(crate) fn run(cli: &Cli, command: &RunCommand) -> Result {
    match command {
        RunCommand::List { contract, dataset, query } => {
            let m = member(cli)?;
            let list = block_on(Analytics::new(&m).runs(contract, dataset.as_deref(), query.as_deref()))??;
            let v = serde_json::Value::Array(list.clone());
            show(cli, &v, |_| {
                list.iter()
                    .map(|r| {
                        let what = match r["kind"].as_str() {
                            Some("denial") => format!("DENIED {}: {}", plain(&r["code"]), plain(&r["message"])),
                            Some("completion") => format!("completed {}", r["rows"]),
                            _ => format!("ticket issued, {} epsilon", plain(&r["epsilon"])),
                        };
                        format!(
                            "{} run {} of {} — {what} (tx {})",
                            plain(&r["at_ms"]),
                            plain(&r["run_id"]),
                            plain(&r["query_id"]),
                            plain(&r["tx_id"])
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        RunCommand::Request { contract, query, run_id, token } => {
            let c = client(cli)?;
            let t = block_on(analytics::request_run(&c, token, contract, query, run_id))??;
            let v = serde_json::to_value(&t).unwrap_or_default();
            show(cli, &v, |_| {
                format!(
                    "ticket for run {} (tx {}), valid until {}: {}\n  drop groups under {} ({})",
                    t.run_id,
                    t.tx_id.clone().unwrap_or_default(),
                    t.expires_at_ms,
                    t.sql,
                    t.min_group_size,
                    t.group_size_column.clone().unwrap_or_else(|| "-".into())
                )
            });
        }
    }
    Ok(())
}
