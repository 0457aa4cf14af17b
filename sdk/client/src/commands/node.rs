//! `cgs node`: the service's nodes.

use clap::Subcommand;

use super::Result;
use super::common::{block_on, client, ok_json, show};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub(crate) enum NodeCommand {
    /// List the nodes: id, status (Trusted, Learner), primary, address (anyone may ask).
    List,
}

pub(crate) fn run(cli: &Cli, command: &NodeCommand) -> Result {
    match command {
        NodeCommand::List => {
            let c = client(cli)?;
            let v = ok_json(block_on(c.get("/node/network/nodes"))?)?;
            show(cli, &v, |v| {
                v["nodes"]
                    .as_array()
                    .map(|nodes| {
                        nodes
                            .iter()
                            .map(|n| {
                                format!(
                                    "{:<4} {:<8} {:<8} {}",
                                    n["node_id"].to_string(),
                                    n["status"].as_str().unwrap_or("?"),
                                    if n["primary"] == true { "primary" } else { "backup" },
                                    n["address"].as_str().unwrap_or("-")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
            Ok(())
        }
    }
}
