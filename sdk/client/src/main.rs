//! `cgs`: the CGS command-line tool for members, ISVs and operators.

use std::path::PathBuf;
use std::process::ExitCode;

use cgs_core::build::{BuildRequest, Selection};
use clap::{Args, Parser, Subcommand};

/// CGS command-line tool: measure and build plugins, and (with a running service) govern it.
#[derive(Parser, Debug)]
#[command(name = "cgs", version, about, long_about = None)]
struct Cli {
    /// Service URL.
    #[arg(long, global = true, env = "CGS_URL", default_value = "https://127.0.0.1:8443")]
    url: String,
    /// Service certificate to trust (PEM), e.g. `sandbox/service-cert.pem`.
    #[arg(long, global = true, env = "CGS_CA")]
    ca: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build, measure and verify plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Fetch and verify receipts.
    #[command(subcommand)]
    Receipt(ReceiptCommand),
    /// Verify a ledger offline.
    #[command(subcommand)]
    Ledger(LedgerCommand),
}

#[derive(Subcommand, Debug)]
enum ReceiptCommand {
    /// Fetch the receipt of a committed transaction (`<term>.<seqno>`) from the service.
    Get {
        /// The transaction id.
        tx_id: String,
        /// `cose` (RFC 9942 COSE_Sign1, default) or `json`.
        #[arg(long, default_value = "cose")]
        format: String,
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
        #[arg(long)]
        key: String,
    },
}

#[derive(Subcommand, Debug)]
enum LedgerCommand {
    /// Verify a stopped node's data directory: every entry, leaf, root, checkpoint signature,
    /// and that the state is the replay of the ledger. Exits non-zero at the first problem,
    /// naming its seqno.
    Verify {
        /// The node's data directory (holding `ledger.redb`).
        dir: PathBuf,
        /// Accept checkpoints only from this verifier key (repeatable); default: the keys the
        /// ledger records, which are printed.
        #[arg(long)]
        key: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// Build plugins reproducibly (pinned toolchain, --locked, `plugin` profile, remapped paths)
    /// and print `name version blake3` for each.
    Build(BuildArgs),
    /// Print `name version blake3` for every `*.wasm` in DIR (default: the build output,
    /// `target/plugins`).
    Measure {
        /// Directory of plugin components.
        dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct BuildArgs {
    /// Plugins to build, by plugin or package name (default: the service's plugins).
    #[arg(short = 'p', long = "plugin")]
    plugins: Vec<String>,
    /// Build every plugin package, including examples and test plugins.
    #[arg(long, conflicts_with = "plugins")]
    all: bool,
    /// Where to put the components (default: `<target-dir>/plugins`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The source checkout (default: the one around the current directory).
    #[arg(long)]
    workspace: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace(explicit: Option<&PathBuf>) -> Result<PathBuf, String> {
    if let Some(w) = explicit {
        return Ok(w.clone());
    }
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    cgs_core::build::find_workspace(&cwd)
        .ok_or_else(|| format!("{} is not inside a Cargo workspace; pass --workspace DIR", cwd.display()))
}

fn hex_str(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn print_measurements(json: bool, items: &[cgs_core::plugin::Measurement]) -> Result<(), String> {
    if json {
        println!("{}", serde_json::to_string_pretty(items).map_err(|e| e.to_string())?);
    } else {
        for m in items {
            println!("{m}");
        }
    }
    Ok(())
}

fn read_key(k: &str) -> Result<cgs_core::note::VerifierKey, String> {
    let text = match std::fs::read_to_string(k) {
        Ok(t) => t.trim().to_string(),
        Err(_) => k.trim().to_string(),
    };
    cgs_core::note::VerifierKey::parse(&text)
        .map_err(|e| format!("{e} (expected origin+keyid+base64, see GET /node/identity)"))
}

fn client(cli: &Cli) -> Result<cgs_client::Client, String> {
    let ca = cli
        .ca
        .as_ref()
        .ok_or("--ca (or CGS_CA) is required: the service certificate to trust, e.g. sandbox/service-cert.pem")?;
    let pem = std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
    cgs_client::Client::new(&cli.url, &pem).map_err(|e| e.to_string())
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    Ok(rt.block_on(f))
}

fn run(cli: &Cli) -> Result<(), String> {
    match &cli.command {
        Command::Receipt(ReceiptCommand::Get { tx_id, format, out }) => {
            let c = client(cli)?;
            let path = format!("/node/receipt/{tx_id}{}", if format == "json" { "?format=json" } else { "" });
            // A checkpoint covers a new transaction within ~100 ms: wait for it briefly.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let r = loop {
                let r = block_on(c.get(&path))?.map_err(|e| e.to_string())?;
                let not_ready = r.error().is_some_and(|e| e.error.code == "NotReady");
                if !not_ready || std::time::Instant::now() > deadline {
                    break r;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            };
            r.ok().map_err(|e| e.to_string())?;
            match out {
                Some(p) => std::fs::write(p, &r.body).map_err(|e| format!("cannot write {}: {e}", p.display()))?,
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&r.body).map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        }
        Command::Receipt(ReceiptCommand::Verify { file, key }) => {
            let key = read_key(key)?;
            let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let v = cgs_core::receipt::verify(&bytes, &key).map_err(|e| format!("receipt does NOT verify: {e}"))?;
            let tx = v.tx_id.map(|t| t.to_string()).unwrap_or_else(|| "?".into());
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"valid": true, "tx_id": tx, "leaf_index": v.leaf_index, "tree_size": v.tree_size, "root": hex_str(&v.root)})
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
        Command::Ledger(LedgerCommand::Verify { dir, key }) => {
            let keys = key.iter().map(|k| read_key(k)).collect::<Result<Vec<_>, _>>()?;
            let r = cgs_core::ledger_verify::verify_data_dir(dir, &keys)
                .map_err(|f| format!("ledger does NOT verify: {f}"))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?);
            } else {
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
                println!("  root:            {}", r.root);
                println!(
                    "  applied state:   {} keys, equal to the replay of the first {} entries",
                    r.state_keys, r.applied
                );
                for k in &r.node_keys {
                    println!("  node key:        {k}");
                }
            }
            Ok(())
        }
        Command::Plugin(PluginCommand::Build(args)) => {
            let ws = workspace(args.workspace.as_ref())?;
            let selection = if args.all {
                Selection::All
            } else if args.plugins.is_empty() {
                Selection::Default
            } else {
                Selection::Named(args.plugins.clone())
            };
            let req = BuildRequest { workspace: ws, selection, out_dir: args.out.clone(), quiet: false };
            let built = cgs_core::build::build(&req).map_err(|e| e.to_string())?;
            if let Some(dir) = built.first().and_then(|b| b.path.parent()) {
                eprintln!("built {} plugin(s) into {}", built.len(), dir.display());
            }
            let items: Vec<_> = built.into_iter().map(|b| b.measurement).collect();
            print_measurements(cli.json, &items)
        }
        Command::Plugin(PluginCommand::Measure { dir }) => {
            let dir = match dir {
                Some(d) => d.clone(),
                None => {
                    let ws = workspace(None)?;
                    let (_, target, _) = cgs_core::build::plugin_packages(&ws).map_err(|e| e.to_string())?;
                    target.join("plugins")
                }
            };
            let found = cgs_core::plugin::measure_dir(&dir).map_err(|e| e.to_string())?;
            if found.is_empty() {
                return Err(format!("no *.wasm plugins in {}; run `cgs plugin build` first", dir.display()));
            }
            let items: Vec<_> = found.into_iter().map(|(_, m)| m).collect();
            print_measurements(cli.json, &items)
        }
    }
}
