//! `cgs node`: the service's nodes.

use clap::Subcommand;

use super::Result;
use super::common::{block_on, client, member, ok_json, propose_action, show};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub(crate) enum NodeCommand {
    /// List the nodes: id, status (Pending, Trusted, Retired), raft role, primary, address
    /// (anyone may ask).
    List,
    /// Propose `transition_node_to_trusted` for a node that joined (members vote on it): it
    /// becomes a learner, then a voter once caught up.
    Trust {
        /// The node id (`cgs node list`).
        node_id: u64,
    },
    /// Propose `remove_node`: the node leaves the quorum and its key is refused from then on.
    Remove {
        /// The node id.
        node_id: u64,
    },
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
                                    "{:<4} {:<8} {:<8} {:<8} {}",
                                    n["node_id"]
                                        .as_str()
                                        .map(str::to_string)
                                        .unwrap_or_else(|| n["node_id"].to_string()),
                                    n["status"].as_str().unwrap_or("?"),
                                    n["role"].as_str().unwrap_or("-"),
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
        NodeCommand::Trust { node_id } => {
            let m = member(cli)?;
            propose_action(cli, &m, "transition_node_to_trusted", serde_json::json!({"node_id": node_id}))
        }
        NodeCommand::Remove { node_id } => {
            let m = member(cli)?;
            propose_action(cli, &m, "remove_node", serde_json::json!({"node_id": node_id}))
        }
    }
}
