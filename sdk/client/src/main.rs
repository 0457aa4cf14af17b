//! `cgs`: the CGS command-line tool for members, ISVs and operators.

use std::path::PathBuf;
use std::process::ExitCode;

use cgs_build::{BuildRequest, Selection};
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
    /// Clean-room contracts: drafts, proposals, revocation and deployment specs.
    #[command(subcommand)]
    Contract(ContractCommand),
    /// Clean-room policies of contracts.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Consent of contracts: execution kill switches, logging and telemetry.
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Audit events of contracts.
    #[command(subcommand)]
    Event(EventCommand),
    /// Verify what a service is and runs.
    #[command(subcommand)]
    Verify(VerifyCommand),
}

#[derive(Subcommand, Debug)]
enum VerifyCommand {
    /// Check a service before trusting it: its evidence (measurement, host_data), that the
    /// evidence is bound to the node key, that the node key signs the plugin set, that the TLS
    /// certificate is the one in the attestation, and that every active plugin matches a local
    /// reproducible rebuild. Prints a verdict per check; exits non-zero if any fails.
    Service {
        /// Expected launch measurement (96 hex digits).
        #[arg(long)]
        measurement: String,
        /// Expected host_data (64 hex digits).
        #[arg(long)]
        host_data: String,
        /// Accept virtual (insecure, development) evidence.
        #[arg(long)]
        allow_virtual: bool,
        /// The source checkout to rebuild the plugins from (default: this one).
        #[arg(long)]
        workspace: Option<PathBuf>,
    },
}

/// Who may use a contract (omitted from the request when not given).
#[derive(Args, Debug)]
struct PartyArgs {
    /// A member id that may read and amend the contract (repeatable; default: every member).
    #[arg(long = "collaborator", value_name = "MEMBER_ID")]
    collaborators: Vec<String>,
    /// A user identity that may read the contract (repeatable).
    #[arg(long = "user", value_name = "ISSUER|SUBJECT")]
    users: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum ContractCommand {
    /// Create a draft contract.
    Create {
        /// Contract id (A-Z a-z 0-9 - _ .).
        id: String,
        /// The contract document: JSON, or @FILE (@- for stdin).
        #[arg(long, value_name = "JSON|@FILE")]
        data: String,
        #[command(flatten)]
        parties: PartyArgs,
    },
    /// Amend a draft contract at its current version.
    Update {
        /// Contract id.
        id: String,
        /// The version you read (`cgs contract show`).
        #[arg(long)]
        version: String,
        /// The new contract document: JSON, or @FILE (@- for stdin).
        #[arg(long, value_name = "JSON|@FILE")]
        data: String,
        #[command(flatten)]
        parties: PartyArgs,
    },
    /// Show a contract.
    Show {
        /// Contract id.
        id: String,
    },
    /// List contracts: `ID STATE VERSION`.
    List {
        /// Only this state (Draft, Proposed, Accepted, Revoked).
        #[arg(long)]
        state: Option<String>,
    },
    /// Propose accepting a contract (`contracts.set_contract`).
    Propose {
        /// Contract id.
        id: String,
        /// The version to accept (default: the current one).
        #[arg(long)]
        version: Option<String>,
    },
    /// Vote on a proposal (as `cgs proposal vote`).
    Vote {
        /// Proposal id.
        proposal_id: String,
        /// `approve` or `reject`.
        vote: String,
    },
    /// Propose revoking an accepted contract (`contracts.revoke_contract`).
    Revoke {
        /// Contract id.
        id: String,
    },
    /// Deployment specs.
    #[command(subcommand)]
    Spec(SpecCommand),
}

#[derive(Subcommand, Debug)]
enum SpecCommand {
    /// Propose a contract's deployment spec (`contracts.set_deployment_spec`).
    Propose {
        /// Contract id.
        id: String,
        /// The deployment spec: JSON, or @FILE (@- for stdin).
        #[arg(long, value_name = "JSON|@FILE")]
        data: String,
    },
    /// Show a contract's deployment spec.
    Show {
        /// Contract id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Propose adding or removing claims of a contract's clean-room policy
    /// (`contracts.set_cleanroom_policy`).
    #[command(group = clap::ArgGroup::new("op").required(true).args(["add", "remove"]))]
    Propose {
        /// Contract id.
        id: String,
        /// Add the claims.
        #[arg(long)]
        add: bool,
        /// Remove the claims.
        #[arg(long)]
        remove: bool,
        /// A claim (repeatable; values of one NAME make a list; `true`/`false` are booleans).
        #[arg(long = "claim", value_name = "NAME=VALUE", required = true)]
        claims: Vec<String>,
    },
    /// Show a contract's clean-room policy.
    Show {
        /// Contract id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum ConsentCommand {
    /// Show a contract's consent status.
    Show {
        /// Contract id.
        id: String,
        /// Which consent.
        #[arg(default_value = "execution", value_parser = ["execution", "logging", "telemetry"])]
        kind: String,
    },
    /// Turn your execution kill switch on: the contract no longer runs.
    Disable {
        /// Contract id.
        id: String,
        /// Why (shown to the contract's parties).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Turn your execution kill switch off again.
    Enable {
        /// Contract id.
        id: String,
    },
    /// Propose enabling or disabling logging or telemetry (`consent.enable_logging`, …).
    Propose {
        /// Contract id.
        id: String,
        /// The change.
        #[arg(value_parser = ["enable-logging", "disable-logging", "enable-telemetry", "disable-telemetry"])]
        change: String,
    },
}

#[derive(Subcommand, Debug)]
enum EventCommand {
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
    cgs_build::find_workspace(&cwd)
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
    let (_, target, _) = cgs_build::plugin_packages(ws).map_err(|e| e.to_string())?;
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

/// Percent-encode a path segment or a query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/app/contracts/{id}{rest}`.
fn contract_path(id: &str, rest: &str) -> String {
    format!("/app/contracts/{}{rest}", encode(id))
}

/// `path?query` (just `path` without a query).
fn with_query(path: String, query: &[String]) -> String {
    if query.is_empty() { path } else { format!("{path}?{}", query.join("&")) }
}

/// A `JSON|@FILE` argument (`@-`: stdin).
fn json_arg(flag: &str, arg: &str) -> Result<serde_json::Value, String> {
    let (text, from) = match arg.strip_prefix('@') {
        Some("-") => {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            (t, "stdin".to_string())
        }
        Some(path) => {
            (std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?, path.to_string())
        }
        None => return serde_json::from_str(arg).map_err(|e| format!("{flag} is not JSON (or @FILE): {e}")),
    };
    serde_json::from_str(&text).map_err(|e| format!("{from} is not JSON: {e}"))
}

/// A JSON value as text: strings bare, `null` and `""` as `-`.
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) if s.is_empty() => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A JSON array as `a, b, c` (`-` when empty or absent).
fn plain_list(v: &serde_json::Value) -> String {
    match v.as_array().filter(|a| !a.is_empty()) {
        Some(a) => a.iter().map(plain).collect::<Vec<_>>().join(", "),
        None => "-".into(),
    }
}

/// `{"claims":{NAME:[values]}}` from `NAME=VALUE` flags; `true`/`false` are booleans.
fn claims_arg(claims: &[String]) -> Result<serde_json::Value, String> {
    let mut map = serde_json::Map::new();
    for c in claims {
        let (name, value) = c
            .split_once('=')
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| format!("--claim `{c}` is not NAME=VALUE"))?;
        let value = match value {
            "true" => serde_json::Value::Bool(true),
            "false" => serde_json::Value::Bool(false),
            v => serde_json::Value::String(v.into()),
        };
        if let serde_json::Value::Array(values) =
            map.entry(name.to_string()).or_insert_with(|| serde_json::Value::Array(Vec::new()))
        {
            values.push(value);
        }
    }
    Ok(serde_json::Value::Object(map))
}

/// The body of `PUT /app/contracts/{id}`.
fn contract_body(version: Option<&str>, data: &str, parties: &PartyArgs) -> Result<serde_json::Value, String> {
    let mut body = serde_json::json!({"data": json_arg("--data", data)?});
    if let Some(v) = version {
        body["version"] = v.into();
    }
    if !parties.collaborators.is_empty() {
        body["collaborators"] = parties.collaborators.clone().into();
    }
    if !parties.users.is_empty() {
        body["users"] = parties.users.clone().into();
    }
    Ok(body)
}

/// Print a new proposal's id and state (as `cgs proposal create`).
fn show_proposal(cli: &Cli, v: &serde_json::Value) {
    show(cli, v, |v| {
        format!("proposal {} is {}", v["proposal_id"].as_str().unwrap_or("?"), v["state"].as_str().unwrap_or("?"))
    });
}

/// Propose one action and print the proposal id and state.
fn propose_action(cli: &Cli, m: &cgs_client::Member, name: &str, args: serde_json::Value) -> Result<(), String> {
    let v = ok_json(block_on(m.propose(serde_json::json!([{"name": name, "args": args}])))?)?;
    show_proposal(cli, &v);
    Ok(())
}

/// Vote on a proposal and print its state.
fn vote_on(cli: &Cli, m: &cgs_client::Member, id: &str, vote: &str) -> Result<(), String> {
    let approve = match vote {
        "approve" => true,
        "reject" => false,
        other => return Err(format!("vote must be `approve` or `reject`, not `{other}`")),
    };
    let v = ok_json(block_on(m.vote(id, approve))?)?;
    show(cli, &v, |v| format!("proposal {id} is {}", v["state"].as_str().unwrap_or("?")));
    Ok(())
}

fn contract_text(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let label = if label.is_empty() { String::new() } else { format!("{label}:") };
        out.push_str(&format!("{label:<15}{value}\n"));
    };
    line("id", plain(&v["id"]));
    line("state", plain(&v["state"]));
    line("version", plain(&v["version"]));
    line("proposal_id", plain(&v["proposal_id"]));
    match v["final_votes"].as_array().filter(|a| !a.is_empty()) {
        Some(votes) => {
            for (i, b) in votes.iter().enumerate() {
                let label = if i == 0 { "final_votes" } else { "" };
                line(label, format!("{} {}", plain(&b["member_id"]), plain(&b["vote"])));
            }
        }
        None => line("final_votes", "-".into()),
    }
    if v["collaborators"].is_array() {
        line("collaborators", plain_list(&v["collaborators"]));
    }
    if v["users"].as_array().is_some_and(|u| !u.is_empty()) {
        line("users", plain_list(&v["users"]));
    }
    out.push_str("data:\n");
    out.push_str(&serde_json::to_string_pretty(&v["data"]).unwrap_or_default());
    out
}

fn run_contract(cli: &Cli, c: &ContractCommand) -> Result<(), String> {
    let m = member(cli)?;
    match c {
        ContractCommand::Create { id, data, parties } | ContractCommand::Update { id, data, parties, .. } => {
            let version = match c {
                ContractCommand::Update { version, .. } => Some(version.as_str()),
                _ => None,
            };
            let body = contract_body(version, data, parties)?;
            let v = ok_json(block_on(m.authed("PUT", &contract_path(id, ""), Some(body.to_string().into_bytes())))?)?;
            let what = if version.is_some() { "updated" } else { "created" };
            show(cli, &v, |v| format!("contract {id} {what} (version {})", plain(&v["tx_id"])));
        }
        ContractCommand::Show { id } => {
            let v = ok_json(block_on(m.authed("GET", &contract_path(id, ""), None))?)?;
            show(cli, &v, contract_text);
        }
        ContractCommand::List { state } => {
            let query: Vec<String> = state.iter().map(|s| format!("state={}", encode(s))).collect();
            let v = ok_json(block_on(m.authed("GET", &with_query("/app/contracts".into(), &query), None))?)?;
            show(cli, &v, |v| {
                v["value"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| format!("{}  {:<8} {}", plain(&x["id"]), plain(&x["state"]), plain(&x["version"])))
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
        }
        ContractCommand::Propose { id, version } => {
            let v = block_on(async {
                let version = match version {
                    Some(v) => v.clone(),
                    None => {
                        let c = ok_json(m.authed("GET", &contract_path(id, ""), None).await)?;
                        c["version"].as_str().map(str::to_string).ok_or("the contract has no `version`")?
                    }
                };
                let args = serde_json::json!({"contract_id": id, "version": version});
                ok_json(m.propose(serde_json::json!([{"name": "contracts.set_contract", "args": args}])).await)
            })??;
            show_proposal(cli, &v);
        }
        ContractCommand::Vote { proposal_id, vote } => vote_on(cli, &m, proposal_id, vote)?,
        ContractCommand::Revoke { id } => {
            propose_action(cli, &m, "contracts.revoke_contract", serde_json::json!({"contract_id": id}))?;
        }
        ContractCommand::Spec(SpecCommand::Propose { id, data }) => {
            let args = serde_json::json!({"contract_id": id, "data": json_arg("--data", data)?});
            propose_action(cli, &m, "contracts.set_deployment_spec", args)?;
        }
        ContractCommand::Spec(SpecCommand::Show { id }) => {
            let v = ok_json(block_on(m.authed("GET", &contract_path(id, "/deployment-spec"), None))?)?;
            show(cli, &v, |v| {
                format!(
                    "accepted by proposal: {}\nopen proposals:       {}\ndata:\n{}",
                    plain(&v["accepted_proposal_id"]),
                    plain_list(&v["proposal_ids"]),
                    serde_json::to_string_pretty(&v["data"]).unwrap_or_default()
                )
            });
        }
    }
    Ok(())
}

fn run_policy(cli: &Cli, c: &PolicyCommand) -> Result<(), String> {
    let m = member(cli)?;
    match c {
        PolicyCommand::Propose { id, add: _, remove, claims } => {
            let args = serde_json::json!({
                "contract_id": id,
                "type": if *remove { "remove" } else { "add" },
                "claims": claims_arg(claims)?,
            });
            propose_action(cli, &m, "contracts.set_cleanroom_policy", args)?;
        }
        PolicyCommand::Show { id } => {
            let v = ok_json(block_on(m.authed("GET", &contract_path(id, "/cleanroom-policy"), None))?)?;
            show(cli, &v, |v| {
                format!(
                    "accepted by proposals: {}\nopen proposals:        {}\npolicy:\n{}",
                    plain_list(&v["accepted_proposal_ids"]),
                    plain_list(&v["proposal_ids"]),
                    serde_json::to_string_pretty(&v["policy"]).unwrap_or_default()
                )
            });
        }
    }
    Ok(())
}

fn run_consent(cli: &Cli, c: &ConsentCommand) -> Result<(), String> {
    let m = member(cli)?;
    match c {
        ConsentCommand::Show { id, kind } => {
            let v = ok_json(block_on(m.authed("GET", &contract_path(id, &format!("/consent/{kind}")), None))?)?;
            show(cli, &v, |v| match v["status"].as_str() {
                Some("disabled") if v["reason"].is_object() => {
                    format!("{kind}: disabled ({}: {})", plain(&v["reason"]["code"]), plain(&v["reason"]["message"]))
                }
                status => format!("{kind}: {}", status.unwrap_or("?")),
            });
        }
        ConsentCommand::Disable { id, .. } | ConsentCommand::Enable { id } => {
            let (action, body) = match c {
                ConsentCommand::Disable { reason, .. } => {
                    ("disable", reason.as_ref().map(|r| serde_json::json!({"reason": r}).to_string().into_bytes()))
                }
                _ => ("enable", None),
            };
            let path = contract_path(id, &format!("/consent/execution/{action}"));
            let v = ok_json(block_on(m.authed("POST", &path, body))?)?;
            show(cli, &v, |v| {
                format!(
                    "your execution kill switch for contract {id} is {} (tx {})",
                    if action == "disable" { "on" } else { "off" },
                    plain(&v["tx_id"])
                )
            });
        }
        ConsentCommand::Propose { id, change } => {
            let action = format!("consent.{}", change.replace('-', "_"));
            propose_action(cli, &m, &action, serde_json::json!({"contract_id": id}))?;
        }
    }
    Ok(())
}

fn event_line(e: &serde_json::Value) -> String {
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

fn run_event(cli: &Cli, c: &EventCommand) -> Result<(), String> {
    let m = member(cli)?;
    match c {
        EventCommand::Add { id, data, scope, event_id } => {
            let body = json_arg("--data", data)?;
            let mut query = Vec::new();
            if let Some(s) = scope {
                query.push(format!("scope={}", encode(s)));
            }
            if let Some(i) = event_id {
                query.push(format!("id={}", encode(i)));
            }
            let path = with_query(contract_path(id, "/events"), &query);
            let v = ok_json(block_on(m.authed("POST", &path, Some(body.to_string().into_bytes())))?)?;
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
            let mut query = Vec::new();
            if let Some(s) = scope {
                query.push(format!("scope={}", encode(s)));
            }
            if let Some(i) = event_id {
                query.push(format!("id={}", encode(i)));
            }
            query.extend(from.map(|n| format!("from={n}")));
            query.extend(to.map(|n| format!("to={n}")));
            query.extend(limit.map(|n| format!("limit={n}")));
            if *newest_first {
                query.push("order=desc".into());
            }
            let path = with_query(contract_path(id, "/events"), &query);
            let v = block_on(async {
                let first = ok_json(m.authed("GET", &path, None).await)?;
                if !*all {
                    return Ok(first);
                }
                let mut value = first["value"].as_array().cloned().unwrap_or_default();
                let mut next = first["next_link"].as_str().map(str::to_string);
                while let Some(link) = next.take() {
                    if !link.starts_with("/app/") {
                        return Err(format!("unexpected next_link `{link}`"));
                    }
                    let page = ok_json(m.authed("GET", &link, None).await)?;
                    value.extend(page["value"].as_array().cloned().unwrap_or_default());
                    next = page["next_link"].as_str().map(str::to_string);
                }
                Ok(serde_json::json!({"value": value, "next_link": null}))
            })??;
            show(cli, &v, |v| {
                let mut lines: Vec<String> =
                    v["value"].as_array().map(|a| a.iter().map(event_line).collect()).unwrap_or_default();
                if let Some(next) = v["next_link"].as_str() {
                    lines.push(format!("(more: --all, or GET {next})"));
                }
                lines.join("\n")
            });
        }
    }
    Ok(())
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
                ProposalCommand::Vote { id, vote } => vote_on(cli, &m, id, vote)?,
                ProposalCommand::Withdraw { id } => {
                    let v = ok_json(block_on(m.withdraw(id))?)?;
                    show(cli, &v, |v| format!("proposal {id} is {}", v["state"].as_str().unwrap_or("?")));
                }
            }
            Ok(())
        }
        Command::Contract(c) => run_contract(cli, c),
        Command::Policy(c) => run_policy(cli, c),
        Command::Consent(c) => run_consent(cli, c),
        Command::Event(c) => run_event(cli, c),
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
                        None => cgs_build::find_workspace(&abs)
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
            let built = cgs_build::build(&req).map_err(|e| e.to_string())?;
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
            let built = cgs_build::build(&req).map_err(|e| e.to_string())?;
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
        Command::Verify(VerifyCommand::Service { measurement, host_data, allow_virtual, workspace: ws }) => {
            verify_service(cli, measurement, host_data, *allow_virtual, ws.as_ref())
        }
        Command::Receipt(ReceiptCommand::Get { tx_id, format, with_entry, token, out }) => {
            let mut query = Vec::new();
            if format == "json" {
                query.push("format=json".to_string());
            }
            if *with_entry {
                query.push("entry=true".to_string());
            }
            let path = with_query(format!("/node/receipt/{}", encode(tx_id)), &query);
            let get = |path: &str| -> Result<cgs_client::ApiResponse, String> {
                match token {
                    Some(t) => {
                        let auth = format!("Bearer {t}");
                        block_on(client(cli)?.request("GET", path, None, &[("authorization", auth.as_str())]))?
                            .map_err(|e| e.to_string())
                    }
                    None => block_on(member(cli)?.authed("GET", path, None))?.map_err(|e| e.to_string()),
                }
            };
            // A checkpoint covers a new transaction within ~100 ms: wait for it briefly.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let r = loop {
                let r = get(&path)?;
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
            // Without the entry a receipt proves a leaf: the seqno is leaf + 1, the term unproven.
            let tx = v.tx_id.map(|t| t.to_string()).unwrap_or_else(|| format!("?.{}", v.leaf_index + 1));
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
            if keys.is_empty() {
                // Whoever wrote the files could also have written the keys they are checked with.
                eprintln!(
                    "WARNING: no --node-key given: checkpoints are checked against the node keys recorded in this \
                     ledger itself, so this proves the files are consistent, NOT that a node you trust signed \
                     them. Pin the key from `cgs verify service` or GET /node/identity with --node-key."
                );
            }
            let r = cgs_ledger_format::verify::verify_data_dir(dir, &keys)
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
                if keys.is_empty() {
                    println!("  trust:           UNPINNED: checked against the keys recorded in the ledger itself");
                } else {
                    println!("  trust:           checkpoints signed by the pinned --node-key");
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
            let built = cgs_build::build(&req).map_err(|e| e.to_string())?;
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
                    let (_, target, _) = cgs_build::plugin_packages(&ws).map_err(|e| e.to_string())?;
                    target.join("plugins")
                }
            };
            let found = cgs_build::measure_dir(&dir).map_err(|e| e.to_string())?;
            if found.is_empty() {
                return Err(format!("no *.wasm plugins in {}; run `cgs plugin build` first", dir.display()));
            }
            let items: Vec<_> = found.into_iter().map(|(_, m)| m).collect();
            print_measurements(cli.json, &items)
        }
    }
}

/// `cgs verify service`: every check with its verdict.
fn verify_service(
    cli: &Cli,
    measurement: &str,
    host_data: &str,
    allow_virtual: bool,
    ws: Option<&PathBuf>,
) -> Result<(), String> {
    let c = client(cli)?;
    let doc = ok_json(block_on(c.get("/node/attestation"))?)?;
    let mut checks: Vec<(String, bool, String)> = Vec::new();
    let mut check = |name: &str, ok: bool, detail: String| checks.push((name.to_string(), ok, detail));

    // 1. Evidence: verified by cgs-attestation (SEV-SNP: AMD chain from pinned roots, policy).
    let ev = &doc["evidence"];
    let kind = ev["kind"].as_str().unwrap_or("?").to_string();
    let policy = cgs_attestation::VerifyPolicy { allow_virtual, ..Default::default() };
    let verified = cgs_attestation::Evidence::from_json(ev.to_string().as_bytes())
        .map_err(|e| e.to_string())
        .and_then(|e| cgs_attestation::verify(&e, &policy, std::time::SystemTime::now()).map_err(|e| e.to_string()));
    let claims = match &verified {
        Ok(v) if v.insecure() => {
            check("evidence", true, "virtual evidence: INSECURE, accepted because of --allow-virtual".into());
            Some(v.claims.clone())
        }
        Ok(v) => {
            check("evidence", true, "SEV-SNP report verified from the pinned AMD roots".into());
            Some(v.claims.clone())
        }
        Err(e) if kind == "virtual" && !allow_virtual => {
            check("evidence", false, format!("{e}; pass --allow-virtual to accept virtual (INSECURE) evidence"));
            cgs_attestation::Evidence::from_json(ev.to_string().as_bytes())
                .ok()
                .and_then(|e| e.check_shape().ok().flatten())
        }
        Err(e) => {
            check("evidence", false, e.clone());
            None
        }
    };
    let got_m = claims.as_ref().map(|c| hex::encode(c.measurement)).unwrap_or_default();
    let want_m = measurement.to_ascii_lowercase();
    check(
        "measurement",
        got_m == want_m,
        if got_m == want_m { got_m.clone() } else { format!("the service reports {got_m}, expected {want_m}") },
    );
    let got_h = claims.as_ref().map(|c| hex::encode(c.host_data)).unwrap_or_default();
    let want_h = host_data.to_ascii_lowercase();
    check(
        "host_data",
        got_h == want_h,
        if got_h == want_h { got_h.clone() } else { format!("the service reports {got_h}, expected {want_h}") },
    );

    // 2. The node key signs the document, and the evidence is bound to that key.
    match cgs_core::node_attestation::verify_signature(&doc) {
        Ok(key) => {
            check("plugin set signature", true, "signed by the node key".into());
            let want = hex::encode(cgs_core::node_attestation::report_data_for(key.as_bytes()));
            let got = claims.as_ref().map(|c| hex::encode(c.report_data)).unwrap_or_default();
            check(
                "node key binding",
                got == want,
                if got == want {
                    "report_data = SHA-256(node public key)".into()
                } else {
                    "report_data does not bind the node key".into()
                },
            );
        }
        Err(e) => {
            check("plugin set signature", false, e);
            check("node key binding", false, "no valid node key".into());
        }
    }

    // 3. TLS: the certificate pinned for this connection is the one the node attests.
    let pinned = cli.ca.as_ref().map(std::fs::read_to_string).transpose().map_err(|e| e.to_string())?;
    let norm = |s: &str| s.split_whitespace().collect::<String>();
    let tls_ok = pinned.as_deref().map(norm) == doc["service_cert"].as_str().map(norm);
    check(
        "TLS certificate",
        tls_ok,
        if tls_ok {
            "the pinned service certificate is the attested one".into()
        } else {
            "the pinned certificate differs from the attested one".into()
        },
    );

    // 4. Plugins: rebuild every active plugin and the constitution locally.
    let mut attested: Vec<(String, String)> = Vec::new();
    for p in doc["plugins"].as_array().into_iter().flatten().chain(std::iter::once(&doc["constitution"])) {
        if let (Some(n), Some(h)) = (p["name"].as_str(), p["blake3"].as_str()) {
            attested.push((n.to_string(), h.to_string()));
        }
    }
    let ws = workspace(ws)?;
    let out = tempdir_for(&ws)?;
    let req = BuildRequest {
        workspace: ws,
        selection: Selection::Named(attested.iter().map(|(n, _)| n.clone()).collect()),
        out_dir: Some(out.clone()),
        quiet: true,
    };
    let built = cgs_build::build(&req);
    let _ = std::fs::remove_dir_all(&out);
    match built {
        Ok(built) => {
            for (name, hash) in &attested {
                let local =
                    built.iter().find(|b| b.measurement.info.name == *name).map(|b| b.measurement.blake3.to_hex());
                match local {
                    Some(l) if l == *hash => check(&format!("plugin {name}"), true, format!("MATCH {hash}")),
                    Some(l) => check(
                        &format!("plugin {name}"),
                        false,
                        format!("MISMATCH: the service runs {hash}, the local rebuild is {l}"),
                    ),
                    None => check(&format!("plugin {name}"), false, "not in this checkout".into()),
                }
            }
        }
        Err(e) => check("plugins", false, format!("could not rebuild the plugins: {e}")),
    }

    let failed = checks.iter().filter(|(_, ok, _)| !ok).count();
    let v = serde_json::json!({
        "ok": failed == 0,
        "insecure": kind == "virtual",
        "checks": checks.iter().map(|(n, ok, d)| serde_json::json!({"check": n, "ok": ok, "detail": d})).collect::<Vec<_>>(),
    });
    show(cli, &v, |_| {
        let mut s: Vec<String> =
            checks.iter().map(|(n, ok, d)| format!("{} {n}: {d}", if *ok { "PASS" } else { "FAIL" })).collect();
        s.push(if failed == 0 {
            format!(
                "verdict: the service is what you expect{}",
                if kind == "virtual" { " (INSECURE: virtual evidence)" } else { "" }
            )
        } else {
            format!("verdict: {failed} check(s) failed")
        });
        s.join("\n")
    });
    if failed == 0 { Ok(()) } else { Err(format!("{failed} check(s) failed")) }
}
