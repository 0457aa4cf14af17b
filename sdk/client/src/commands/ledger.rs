//! `cgs ledger`: verify a ledger offline.

use std::path::{Path, PathBuf};

use cgs_ledger_format::verify::verify_data_dir_with_progress;
use clap::Subcommand;

use super::common::read_key;
use super::{CliError, Result};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub(crate) enum LedgerCommand {
    /// Verify a stopped node's data directory: every entry, leaf, root, checkpoint signature,
    /// and that the state is the replay of the ledger. Exits non-zero at the first problem,
    /// naming its seqno.
    Verify {
        /// The node's data directory (holding `ledger.redb`).
        dir: PathBuf,
        /// Accept checkpoints only from this verifier key (repeatable); default: the keys the
        /// ledger records, which are printed.
        #[arg(long = "node-key")]
        node_key: Vec<String>,
        /// Open the file for writing once first, so that a file its node did not close (killed)
        /// is repaired; nothing of the ledger is written. Use it on a copy.
        #[arg(long)]
        repair: bool,
    },
}

pub(crate) fn run(cli: &Cli, command: &LedgerCommand) -> Result {
    match command {
        LedgerCommand::Verify { dir, node_key, repair } => {
            if *repair {
                cgs_ledger_format::verify::repair(dir).map_err(|f| CliError::Ledger(Box::new(f)))?;
            }
            verify(cli, dir, node_key)
        }
    }
}

/// `cgs ledger verify`.
fn verify(cli: &Cli, dir: &Path, node_key: &[String]) -> Result {
    let keys = node_key.iter().map(|k| read_key(k)).collect::<Result<Vec<_>>>()?;
    if keys.is_empty() {
        // Whoever wrote the files could also have written the keys they are checked with.
        eprintln!(
            "WARNING: no --node-key given: checkpoints are checked against the node keys recorded in this \
             ledger itself, so this proves the files are consistent, NOT that a node you trust signed \
             them. Pin the key from `cgs verify service` or GET /node/identity with --node-key."
        );
    }
    let progress = super::progress::Progress::start(format!("verifying {}", dir.display()), "entries");
    let r = verify_data_dir_with_progress(dir, &keys, &mut |done, total| progress.set(done, total))
        .map_err(|f| CliError::Ledger(Box::new(f)))?;
    progress.finish("verified");
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&r).map_err(CliError::Encode)?);
        return Ok(());
    }
    println!("ledger verifies: {}", dir.display());
    println!("  origin:          {}", r.origin);
    println!(
        "  entries:         {} ({} transactions, {} refused by their read set, {} checkpoints)",
        r.entries, r.transactions, r.invalid_transactions, r.checkpoints
    );
    match r.last_checkpoint {
        Some((size, seqno)) => println!(
            "  last checkpoint: size {size} (entry {seqno}); {} later entries await the next checkpoint",
            r.unsigned_tail
        ),
        None => println!("  last checkpoint: none"),
    }
    println!(
        "  not applied:     {} entries of the replicated log (received, not applied yet: no checkpoint covers them)",
        r.unapplied_entries
    );
    println!("  root:            {}", r.root);
    println!("  applied state:   {} keys, equal to the replay of the first {} entries", r.state_keys, r.applied);
    for k in &r.node_keys {
        println!("  node key:        {k}");
    }
    if keys.is_empty() {
        println!("  trust:           UNPINNED: checked against the keys recorded in the ledger itself");
    } else {
        println!("  trust:           checkpoints signed by the pinned --node-key");
    }
    Ok(())
}
