//! `cgs recovery`: the members' recovery shares (docs/cluster.md "Recovery").

use clap::Subcommand;

use super::common::{block_on, client, member, ok_json, show};
use super::{CliError, Result};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub(crate) enum RecoveryCommand {
    /// The service's recovery shares: epoch, threshold, members holding one, recoveries so far
    /// (a running service; `--key` of a member).
    Show,
    /// Submit this member's share to a recovering node (`cgs-host start --recover`; `--url` is
    /// that node, `--ca` the certificate it printed): check its evidence binds its node key, open
    /// the share with `--key` here, and send it sealed to that node key.
    Submit {
        /// Accept virtual (insecure) evidence: a development service only.
        #[arg(long)]
        allow_virtual: bool,
        /// The launch measurement the node must report (96 hex digits); repeat for several.
        #[arg(long)]
        measurement: Vec<String>,
        /// The host_data the node must report (64 hex digits); repeat for several.
        #[arg(long)]
        host_data: Vec<String>,
        /// Refuse a ledger that ends before this sequence number (the seqno of the latest
        /// transaction id you know of, `TERM.SEQNO`): a stale copy would lose what came after.
        #[arg(long)]
        min_seqno: Option<u64>,
        /// The service certificate you pin for this service (PEM file): the recovering ledger
        /// must be that service's (required unless --allow-virtual).
        #[arg(long)]
        service_cert: Option<std::path::PathBuf>,
        /// Refuse shares older than this epoch (the latest `cgs recovery show` gave you): a
        /// ledger rolled back to older shares.
        #[arg(long)]
        min_epoch: Option<u64>,
        /// A signed checkpoint you kept (`cgs ledger checkpoint --out FILE`): the recovering
        /// ledger must extend it (a consistency proof is checked), so a ledger rewritten from
        /// genesis, another service's, or a copy that ends before it gets no share.
        #[arg(long)]
        checkpoint: Option<std::path::PathBuf>,
        /// Do not check the recovering ledger against the checkpoint the CLI kept of this
        /// service (it is checked by default): only if the members agree that no surviving copy
        /// applied it, and accept losing what came after the copy recovered.
        #[arg(long)]
        no_kept_checkpoint: bool,
    },
}

fn hex_list<const N: usize>(values: &[String], what: &str) -> Result<Option<Vec<[u8; N]>>> {
    if values.is_empty() {
        return Ok(None);
    }
    values
        .iter()
        .map(|v| {
            hex::decode(v.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| CliError::usage(format!("--{what} must be {} hex digits, not {v:?}", N * 2)))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

pub(crate) fn run(cli: &Cli, command: &RecoveryCommand) -> Result {
    match command {
        RecoveryCommand::Show => {
            let m = member(cli)?;
            let v = ok_json(block_on(m.authed("GET", "/gov/recovery", None))?)?;
            show(cli, &v, |v| {
                format!(
                    "epoch {}: {} of {} members' shares open the service's secrets (versions {}); recoveries so far: {}",
                    v["epoch"],
                    v["threshold"],
                    v["members"].as_array().map(Vec::len).unwrap_or(0),
                    v["versions"],
                    v["history"]["recovery_count"]
                )
            });
            Ok(())
        }
        RecoveryCommand::Submit {
            allow_virtual,
            measurement,
            host_data,
            min_seqno,
            service_cert,
            min_epoch,
            checkpoint,
            no_kept_checkpoint,
        } => {
            let service_cert_pem = match service_cert {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .map_err(|e| CliError::usage(format!("--service-cert {}: {e}", p.display())))?,
                ),
                None => None,
            };
            let checkpoint = match checkpoint {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .map_err(|e| CliError::usage(format!("--checkpoint {}: {e}", p.display())))?,
                ),
                None => None,
            };
            let check = cgs_client::recovery::NodeCheck {
                allow_virtual: *allow_virtual,
                measurements: hex_list::<48>(measurement, "measurement")?,
                host_data: hex_list::<32>(host_data, "host-data")?,
                min_seqno: *min_seqno,
                service_cert_pem,
                min_epoch: *min_epoch,
                checkpoint,
                state_dir: if *no_kept_checkpoint { None } else { cgs_client::checkpoints::state_dir() },
            };
            let _ = client(cli)?;
            let m = member(cli)?;
            let (answer, claims) = block_on(m.submit_recovery_share(&check))??;
            show(cli, &answer, |a| {
                format!(
                    "share submitted to node {} (ledger up to {}, verified by the node: {} entries, the first {} \
                     signed by a checkpoint, {} after them and {} received but not applied covered by no signature; \
                     evidence: {}, measurement {}; {}): {} of {} shares{}",
                    a["node_id"],
                    a["last_applied"].as_str().unwrap_or("?"),
                    a["verified"]["entries"],
                    a["verified"]["signed_entries"],
                    a["verified"]["unsigned_tail"],
                    a["verified"]["unapplied_entries"],
                    if claims.insecure { "virtual, insecure" } else { "SEV-SNP" },
                    hex::encode(claims.measurement),
                    match a["checkpoints_checked"].as_array().map(Vec::as_slice).unwrap_or_default() {
                        [] => "no checkpoint of yours to check it against".to_string(),
                        checked => checked
                            .iter()
                            .map(|c| {
                                let n = &c["size"];
                                if c["kept"] == true {
                                    format!("it extends the checkpoint you kept, of {n} entries")
                                } else {
                                    format!("it extends your checkpoint of {n} entries")
                                }
                            })
                            .collect::<Vec<_>>()
                            .join(", "),
                    },
                    a["submitted"],
                    a["threshold"],
                    if a["opened"] == true { "; the service's secrets are open and the node is starting" } else { "" }
                )
            });
            Ok(())
        }
    }
}
