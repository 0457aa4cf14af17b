//! `cgs ledger`: verify a ledger offline; keep the service's latest signed checkpoint.

use std::path::{Path, PathBuf};

use cgs_ledger_format::verify::verify_data_dir_with_progress;
use clap::Subcommand;

use super::common::{block_on, client, observe_checkpoint, read_key};
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
    /// Fetch the service's latest signed checkpoint (`GET /node/checkpoint`, over the pinned
    /// `--ca`) and print it, or write it to `--out`. The CLI keeps the latest it saw of each
    /// service (`$CGS_STATE_DIR`, else `$XDG_STATE_HOME/cgs`, else `~/.local/state/cgs`), after checking that the service's
    /// ledger extends the one it kept before (refused otherwise: its history was rewritten); at
    /// a recovery, `cgs recovery submit` requires the recovered ledger to extend it.
    Checkpoint {
        /// Write the checkpoint to this file instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Keep the service's current checkpoint without checking it against the kept one: only
        /// once the members agree the service's history changed (a recovery from a shorter
        /// copy), or to replace a damaged kept file.
        #[arg(long)]
        reset: bool,
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
        LedgerCommand::Checkpoint { out, reset } => {
            let c = client(cli)?;
            let note = match observe_checkpoint(cli, &c, *reset)? {
                Some(note) => note,
                // Nothing kept to compare with: the signature is still checked.
                None if let Some((note, _)) = block_on(cgs_client::checkpoints::latest(&c))?? => note,
                None => {
                    // None signed yet: the service's own answer says so (503 NotReady).
                    block_on(c.get("/node/checkpoint"))??.ok()?;
                    return Err(CliError::usage(
                        "the service's checkpoint covers no entries yet: retry in a moment".to_string(),
                    ));
                }
            };
            let held = cgs_client::recovery::held_checkpoint(&note)
                .map_err(|e| CliError::usage(format!("the service's checkpoint: {e}")))?;
            match out {
                Some(path) => {
                    std::fs::write(path, &note)
                        .map_err(|e| CliError::usage(format!("--out {}: {e}", path.display())))?;
                    eprintln!("checkpoint of {} entries written to {}", held.size, path.display());
                }
                None => print!("{note}"),
            }
            Ok(())
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
