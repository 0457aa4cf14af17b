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
    /// The member's private key (PKCS#8 PEM, from `cgs keygen`), e.g. `sandbox/members/isv.key`.
    #[arg(long, global = true, env = "CGS_KEY")]
    key: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a member key pair: PREFIX.key (PKCS#8 PEM, keep it secret) and PREFIX.pub.
    Keygen {
        /// Path prefix of the two files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Log in with `--key`: print a member bearer token.
    Login,
    /// Members of the consortium.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Proposals and ballots.
    #[command(subcommand)]
    Proposal(ProposalCommand),
    /// Build, measure, publish and verify plugins.
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
enum MemberCommand {
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

#[derive(Subcommand, Debug)]
enum ProposalCommand {
    /// Propose actions: `--action NAME --args JSON` (repeatable, in order) or `--file` holding
    /// `{"actions":[{"name","args"}]}`.
    Create {
        /// Action name (`set_member`, `contracts.set_contract`, …).
        #[arg(long = "action")]
        actions: Vec<String>,
        /// JSON arguments of the preceding `--action` (default `{}`).
        #[arg(long = "args")]
        args: Vec<String>,
        /// A file with the proposal body.
        #[arg(long, conflicts_with = "actions")]
        file: Option<PathBuf>,
    },
    /// List proposals.
    List {
        /// Only this state (Open, Accepted, Rejected, Withdrawn, Failed, Dropped).
        #[arg(long)]
        state: Option<String>,
    },
    /// Show a proposal with its ballots and history.
    Show {
        /// Proposal id.
        id: String,
    },
    /// Vote on a proposal.
    Vote {
        /// Proposal id.
        id: String,
        /// `approve` or `reject`.
        vote: String,
    },
    /// Withdraw your proposal.
    Withdraw {
        /// Proposal id.
        id: String,
    },
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
        #[arg(long = "node-key")]
        node_key: String,
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
        #[arg(long = "node-key")]
        node_key: Vec<String>,
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
    /// Build a plugin reproducibly, upload it and propose it (`set_plugin`, or `set_constitution`
    /// for a constitution). Prints the proposal id and the hash members will verify.
    Publish {
        /// The plugin's crate directory (e.g. `plugins/contracts`); or name it with `-p`.
        dir: Option<PathBuf>,
        /// The plugin (plugin or package name) in the workspace.
        #[arg(short = 'p', long = "plugin", conflicts_with = "dir")]
        plugin: Option<String>,
        /// The source checkout (default: the one around DIR or the current directory).
        #[arg(long)]
        workspace: Option<PathBuf>,
    },
    /// Rebuild a plugin locally and compare its hash with the one the service runs (or the one
    /// a proposal would install). Exits non-zero on a mismatch.
    Verify {
        /// The plugin name.
        name: String,
        /// Compare with the `set_plugin`/`set_constitution` of this proposal instead.
        #[arg(long)]
        proposal: Option<String>,
        /// The source checkout (default: the one around the current directory).
        #[arg(long)]
        workspace: Option<PathBuf>,
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

fn write_secret(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A scratch output directory for builds.
fn tempdir_for(ws: &std::path::Path) -> Result<PathBuf, String> {
    let (_, target, _) = cgs_core::build::plugin_packages(ws).map_err(|e| e.to_string())?;
    let dir = target.join(format!("cgs-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
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

fn member(cli: &Cli) -> Result<cgs_client::Member, String> {
    let path = cli.key.as_ref().ok_or("--key (or CGS_KEY) is required: the member's private key file")?;
    let pem = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    cgs_client::Member::new(client(cli)?, &pem).map_err(|e| e.to_string())
}

/// Print a JSON answer: pretty JSON with `--json`, else through `text`.
fn show(cli: &Cli, v: &serde_json::Value, text: impl FnOnce(&serde_json::Value) -> String) {
    if cli.json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        println!("{}", text(v));
    }
}

fn ok_json(r: Result<cgs_client::ApiResponse, cgs_client::ClientError>) -> Result<serde_json::Value, String> {
    r.map_err(|e| e.to_string())?.ok_json().map_err(|e| e.to_string())
}

fn proposal_line(p: &serde_json::Value) -> String {
    let actions: Vec<&str> =
        p["actions"].as_array().map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect()).unwrap_or_default();
    format!(
        "{}  {:<9} by {}…  ballots {}  [{}]",
        p["proposal_id"].as_str().unwrap_or("?"),
        p["state"].as_str().unwrap_or("?"),
        &p["proposer_id"].as_str().unwrap_or("?").chars().take(12).collect::<String>(),
        p["ballots"].as_object().map(|b| b.len()).unwrap_or(0),
        actions.join(", ")
    )
}

/// The hash a plugin has on the service (active, or proposed by `proposal`).
async fn service_hash(m: &cgs_client::Member, name: &str, proposal: Option<&str>) -> Result<String, String> {
    match proposal {
        Some(id) => {
            let p = ok_json(m.authed("GET", &format!("/gov/proposals/{id}"), None).await)?;
            p["actions"]
                .as_array()
                .and_then(|a| {
                    a.iter().find(|x| {
                        matches!(x["name"].as_str(), Some("set_plugin" | "set_constitution"))
                            && x["args"]["name"] == name
                    })
                })
                .and_then(|x| x["args"]["blake3"].as_str().map(str::to_string))
                .ok_or_else(|| format!("proposal {id} does not install plugin `{name}`"))
        }
        None => {
            let plugins = ok_json(m.client.get("/gov/plugins").await)?;
            plugins["value"]
                .as_array()
                .and_then(|a| a.iter().find(|p| p["name"] == name))
                .and_then(|p| p["blake3"].as_str().map(str::to_string))
                .ok_or_else(|| format!("the service runs no plugin `{name}`"))
        }
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    match &cli.command {
        Command::Keygen { out } => {
            let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
            let priv_path = out.with_extension("key");
            let pub_path = out.with_extension("pub");
            write_secret(&priv_path, cgs_core::gov::signing_key_to_pem(&key).as_bytes())?;
            std::fs::write(&pub_path, cgs_core::gov::verifying_key_to_pem(&key.verifying_key()))
                .map_err(|e| format!("cannot write {}: {e}", pub_path.display()))?;
            let id = cgs_core::gov::member_id(&key.verifying_key());
            let v = serde_json::json!({"member_id": id, "private_key": priv_path, "public_key": pub_path});
            show(cli, &v, |_| {
                format!(
                    "member id {id}\n  private key {} (keep it secret)\n  public key  {}",
                    priv_path.display(),
                    pub_path.display()
                )
            });
            Ok(())
        }
        Command::Login => {
            let m = member(cli)?;
            let token = block_on(m.token())?.map_err(|e| e.to_string())?;
            show(cli, &serde_json::json!({"token": token}), |_| token.clone());
            Ok(())
        }
        Command::Member(c) => {
            let m = member(cli)?;
            match c {
                MemberCommand::List => {
                    let v = ok_json(block_on(m.authed("GET", "/gov/members", None))?)?;
                    show(cli, &v, |v| {
                        v["value"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .map(|x| {
                                        format!(
                                            "{}  {:<8} {}",
                                            x["member_id"].as_str().unwrap_or("?"),
                                            x["status"].as_str().unwrap_or("?"),
                                            x["member_data"]
                                        )
                                    })
                                    .collect::<Vec<_>>()
                                    .join("\n")
                            })
                            .unwrap_or_default()
                    });
                }
                MemberCommand::Show { id } => {
                    let v = ok_json(block_on(m.authed("GET", &format!("/gov/members/{id}"), None))?)?;
                    show(cli, &v, |v| serde_json::to_string_pretty(v).unwrap_or_default());
                }
                MemberCommand::Ack => {
                    let v = ok_json(block_on(m.ack())?)?;
                    show(cli, &v, |v| {
                        format!(
                            "member {} is {}",
                            v["member_id"].as_str().unwrap_or("?"),
                            v["status"].as_str().unwrap_or("?")
                        )
                    });
                }
            }
            Ok(())
        }
        Command::Proposal(c) => {
            let m = member(cli)?;
            match c {
                ProposalCommand::Create { actions, args, file } => {
                    let body: serde_json::Value = match file {
                        Some(f) => {
                            let t =
                                std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
                            serde_json::from_str(&t).map_err(|e| format!("{} is not JSON: {e}", f.display()))?
                        }
                        None => {
                            if actions.is_empty() {
                                return Err("give at least one --action NAME [--args JSON], or --file".into());
                            }
                            let mut list = Vec::new();
                            for (i, name) in actions.iter().enumerate() {
                                let a = match args.get(i) {
                                    Some(a) => serde_json::from_str(a)
                                        .map_err(|e| format!("--args of `{name}` is not JSON: {e}"))?,
                                    None => serde_json::json!({}),
                                };
                                list.push(serde_json::json!({"name": name, "args": a}));
                            }
                            serde_json::json!({"actions": list})
                        }
                    };
                    let v = ok_json(block_on(m.propose(body["actions"].clone()))?)?;
                    show(cli, &v, |v| {
                        format!(
                            "proposal {} is {}",
                            v["proposal_id"].as_str().unwrap_or("?"),
                            v["state"].as_str().unwrap_or("?")
                        )
                    });
                }
                ProposalCommand::List { state } => {
                    let path = match state {
                        Some(s) => format!("/gov/proposals?state={s}"),
                        None => "/gov/proposals".into(),
                    };
                    let v = ok_json(block_on(m.authed("GET", &path, None))?)?;
                    show(cli, &v, |v| {
                        v["value"]
                            .as_array()
                            .map(|a| a.iter().map(proposal_line).collect::<Vec<_>>().join("\n"))
                            .unwrap_or_default()
                    });
                }
                ProposalCommand::Show { id } => {
                    let v = ok_json(block_on(m.authed("GET", &format!("/gov/proposals/{id}"), None))?)?;
                    show(cli, &v, |v| serde_json::to_string_pretty(v).unwrap_or_default());
                }
                ProposalCommand::Vote { id, vote } => {
                    let approve = match vote.as_str() {
                        "approve" => true,
                        "reject" => false,
                        other => return Err(format!("vote must be `approve` or `reject`, not `{other}`")),
                    };
                    let v = ok_json(block_on(m.vote(id, approve))?)?;
                    show(cli, &v, |v| format!("proposal {id} is {}", v["state"].as_str().unwrap_or("?")));
                }
                ProposalCommand::Withdraw { id } => {
                    let v = ok_json(block_on(m.withdraw(id))?)?;
                    show(cli, &v, |v| format!("proposal {id} is {}", v["state"].as_str().unwrap_or("?")));
                }
            }
            Ok(())
        }
        Command::Plugin(PluginCommand::Publish { dir, plugin, workspace: ws }) => {
            let m = member(cli)?;
            let (ws, plugin) = match (dir, plugin) {
                (Some(d), _) => {
                    let manifest = std::fs::read_to_string(d.join("Cargo.toml"))
                        .map_err(|e| format!("{} is not a crate directory: {e}", d.display()))?;
                    let name = manifest
                        .lines()
                        .skip_while(|l| l.trim() != "[package]")
                        .find_map(|l| {
                            l.trim()
                                .strip_prefix("name")
                                .and_then(|r| r.trim().strip_prefix('='))
                                .map(|v| v.trim().trim_matches('"').to_string())
                        })
                        .ok_or_else(|| format!("{}/Cargo.toml has no package name", d.display()))?;
                    let abs = d.canonicalize().map_err(|e| e.to_string())?;
                    let ws = match ws {
                        Some(w) => w.clone(),
                        None => cgs_core::build::find_workspace(&abs)
                            .ok_or_else(|| format!("{} is not inside a Cargo workspace", d.display()))?,
                    };
                    (ws, name)
                }
                (None, Some(p)) => (workspace(ws.as_ref())?, p.clone()),
                (None, None) => return Err("name the plugin: `cgs plugin publish DIR` or `-p NAME`".into()),
            };
            let out = tempdir_for(&ws)?;
            let req = BuildRequest {
                workspace: ws,
                selection: Selection::Named(vec![plugin.clone()]),
                out_dir: Some(out.clone()),
                quiet: false,
            };
            let built = cgs_core::build::build(&req).map_err(|e| e.to_string())?;
            let b = built.into_iter().next().ok_or("nothing was built")?;
            let bytes = std::fs::read(&b.path).map_err(|e| e.to_string())?;
            let up = ok_json(block_on(m.authed("PUT", "/gov/blobs", Some(bytes)))?)?;
            let hash = up["blake3"].as_str().unwrap_or_default().to_string();
            let action = match b.measurement.info.world {
                cgs_core::plugin::World::Constitution => "set_constitution",
                cgs_core::plugin::World::AppPlugin => "set_plugin",
            };
            let args = serde_json::json!({"name": b.measurement.info.name, "version": b.measurement.info.version, "blake3": hash});
            let v = ok_json(block_on(m.propose(serde_json::json!([{"name": action, "args": args}])))?)?;
            let _ = std::fs::remove_dir_all(&out);
            let v = serde_json::json!({"proposal_id": v["proposal_id"], "state": v["state"], "action": action, "args": args});
            show(cli, &v, |v| {
                format!(
                    "uploaded {} {} ({hash})\nproposal {} ({}) is {}; members verify with `cgs plugin verify {} --proposal {}`",
                    args["name"].as_str().unwrap_or("?"),
                    args["version"].as_str().unwrap_or("?"),
                    v["proposal_id"].as_str().unwrap_or("?"),
                    action,
                    v["state"].as_str().unwrap_or("?"),
                    args["name"].as_str().unwrap_or("?"),
                    v["proposal_id"].as_str().unwrap_or("?"),
                )
            });
            Ok(())
        }
        Command::Plugin(PluginCommand::Verify { name, proposal, workspace: ws }) => {
            let ws = workspace(ws.as_ref())?;
            let out = tempdir_for(&ws)?;
            let req = BuildRequest {
                workspace: ws,
                selection: Selection::Named(vec![name.clone()]),
                out_dir: Some(out.clone()),
                quiet: true,
            };
            let built = cgs_core::build::build(&req).map_err(|e| e.to_string())?;
            let _ = std::fs::remove_dir_all(&out);
            let local = built.first().map(|b| b.measurement.blake3.to_hex()).ok_or("nothing was built")?;
            let service = match (proposal, cli.key.is_some()) {
                (Some(p), _) => block_on(service_hash(&member(cli)?, name, Some(p)))??,
                (None, true) => block_on(service_hash(&member(cli)?, name, None))??,
                (None, false) => {
                    let c = client(cli)?;
                    let plugins = ok_json(block_on(c.get("/gov/plugins"))?)?;
                    plugins["value"]
                        .as_array()
                        .and_then(|a| a.iter().find(|p| p["name"] == name.as_str()))
                        .and_then(|p| p["blake3"].as_str().map(str::to_string))
                        .ok_or_else(|| format!("the service runs no plugin `{name}`"))?
                }
            };
            let matches = local == service;
            let what = if proposal.is_some() { "proposed" } else { "active" };
            let v = serde_json::json!({"plugin": name, "local": local, what: service, "match": matches});
            show(cli, &v, |_| {
                if matches {
                    format!("MATCH: {name} rebuilt locally = {what} on the service = {local}")
                } else {
                    format!("MISMATCH: {name} rebuilt locally is {local}, the {what} one is {service}")
                }
            });
            if matches { Ok(()) } else { Err(format!("plugin `{name}` does not match a local rebuild")) }
        }
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
        Command::Receipt(ReceiptCommand::Verify { file, node_key }) => {
            let key = read_key(node_key)?;
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
        Command::Ledger(LedgerCommand::Verify { dir, node_key }) => {
            let keys = node_key.iter().map(|k| read_key(k)).collect::<Result<Vec<_>, _>>()?;
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
