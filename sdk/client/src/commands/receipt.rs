//! `cgs receipt`: fetch receipts from the service and verify them offline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgs_client::ApiResponse;
use clap::Subcommand;

use super::common::{block_on, client, encode, member, read, read_key, with_query, write};
use super::{CliError, Result};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub(crate) enum ReceiptCommand {
    /// Fetch the receipt of a committed transaction (`<term>.<seqno>`) from the service. Receipts
    /// are for the transaction's writer, its contract's parties and (governance) members: sign in
    /// with `--key` (a member) or `--token`.
    Get {
        /// The transaction id.
        tx_id: String,
        /// `cose` (RFC 9942 COSE_Sign1, default) or `json`.
        #[arg(long, default_value = "cose")]
        format: String,
        /// Include the ledger entry (what the transaction wrote; private values stay encrypted):
        /// without it the receipt proves inclusion of the entry's hash and discloses nothing else.
        #[arg(long)]
        with_entry: bool,
        /// A bearer token to use instead of `--key` (a user's JWT or a clean-room session token).
        #[arg(long, env = "CGS_TOKEN")]
        token: Option<String>,
        /// Write it to this file (default: stdout; COSE is binary).
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
    /// Verify a receipt file offline (COSE or JSON) against the node's checkpoint key.
    Verify {
        /// The receipt file.
        file: PathBuf,
        /// The node's verifier key (`origin+keyid+base64`, from `GET /node/identity` or the
        /// sandbox banner), or a file containing it.
        #[arg(long = "node-key")]
        node_key: String,
    },
}

pub(crate) fn run(cli: &Cli, command: &ReceiptCommand) -> Result {
    match command {
        ReceiptCommand::Get { tx_id, format, with_entry, token, out } => {
            get(cli, tx_id, format, *with_entry, token.as_deref(), out.as_deref())
        }
        ReceiptCommand::Verify { file, node_key } => {
            let key = read_key(node_key)?;
            let bytes = read(file)?;
            let v = cgs_core::receipt::verify(&bytes, &key).map_err(CliError::Receipt)?;
            // Without the entry a receipt proves a leaf: the seqno is leaf + 1, the term unproven.
            // Without the entry a receipt proves a leaf: the seqno is leaf + 1, the term claimed.
            let tx = match (v.tx_id, v.claimed_tx_id) {
                (Some(t), _) => t.to_string(),
                (None, Some(t)) => format!("{t} (term as claimed: only the entry, --with-entry, proves it)"),
                (None, None) => format!("?.{}", v.leaf_index + 1),
            };
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"valid": true, "tx_id": v.claimed_tx_id.map(|t| t.to_string()), "tx_id_proven": v.tx_id.is_some(), "leaf_index": v.leaf_index, "tree_size": v.tree_size, "root": hex_str(&v.root)})
                );
            } else {
                println!(
                    "receipt verifies: transaction {tx} is leaf {} of the tree of size {} (root {}), signed by {}",
                    v.leaf_index,
                    v.tree_size,
                    hex_str(&v.root),
                    key.name
                );
            }
            Ok(())
        }
    }
}

/// `cgs receipt get`: the receipt's bytes, to `out` or stdout.
fn get(cli: &Cli, tx_id: &str, format: &str, with_entry: bool, token: Option<&str>, out: Option<&Path>) -> Result {
    let mut query = Vec::new();
    if format == "json" {
        query.push("format=json".to_string());
    }
    if with_entry {
        query.push("entry=true".to_string());
    }
    let path = with_query(format!("/node/receipt/{}", encode(tx_id)), &query);
    let get = |path: &str| -> Result<ApiResponse> {
        Ok(match token {
            Some(t) => {
                let auth = format!("Bearer {t}");
                block_on(client(cli)?.request("GET", path, None, &[("authorization", auth.as_str())]))??
            }
            None => block_on(member(cli)?.authed("GET", path, None))??,
        })
    };
    // A checkpoint covers a new transaction within ~100 ms: wait for it briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = loop {
        let r = get(&path)?;
        let not_ready = r.error().is_some_and(|e| e.error.code == "NotReady");
        if !not_ready || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    r.ok()?;
    match out {
        Some(p) => write(p, &r.body)?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&r.body)?;
        }
    }
    Ok(())
}

fn hex_str(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
