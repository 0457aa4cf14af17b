//! `cgs-host`: run a CGS node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cgs_host::gov::{Genesis, GovConfig};
use cgs_host::http::HttpLimits;
use cgs_host::ledger::LedgerConfig;
use cgs_host::node::{Creation, Node, NodeConfig, PluginSource};
use cgs_host::runtime::RuntimeConfig;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

mod config;

/// mimalloc: glibc malloc and free were ~15% of a profiled request (many small, short-lived
/// allocations per request across hyper, rustls, serde and the wasm call). Built with `no_thp`
/// (Cargo.toml): with transparent huge pages, every reuse of memory mimalloc had returned to the
/// kernel zeroed a 2 MiB page (31% of a cluster node's CPU, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CGS, the Clean Room Governance Service: a node serving the governance API over HTTPS, with
/// all governance logic in measured WebAssembly plugins.
#[derive(Parser, Debug)]
#[command(name = "cgs-host", version, about, long_about = None)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax). The default shows CGS's own lines only (a start,
    /// governance decisions, warnings); dependencies (openraft, wasmtime, hyper) only warn.
    /// `info` shows their chatter too; `cgs_host=debug,cgs::plugin=trace` more of CGS's.
    #[arg(long, global = true, env = "CGS_LOG", default_value = DEFAULT_LOG, value_parser = log_filter)]
    log: String,

    /// Log line format: `text` for people, `json` (one object per line) for log shippers.
    #[arg(long, global = true, env = "CGS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// `--log`: a `tracing` filter (checked here, so a config file's `log` is checked with the file).
fn log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("not a log filter ({e}); e.g. `info` or `{DEFAULT_LOG}`"))
}

/// CGS's own log targets at `info`, everything else at `warn`.
const DEFAULT_LOG: &str = "warn,cgs_host=info,cgs=info";

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a single-node sandbox for development: creates the data directory and service
    /// certificate, loads the plugins (building them from this source checkout unless
    /// `--plugins` is given), prints the URL and next steps. Re-running on the same directory
    /// keeps the service certificate.
    Sandbox(SandboxArgs),
    /// Run a production node: create the service from a genesis document on first start
    /// (`--genesis FILE --plugins DIR`), or restart the service in DIR.
    Start(StartArgs),
    /// Join a service as a new node: present this node's evidence to `--target` (a node of the
    /// service), wait until members trust it (`transition_node_to_trusted`), receive the
    /// service's secrets sealed to it, catch up and serve. Restarting it later: `start --dir DIR`
    /// with the same `--peer-listen`.
    Join(JoinArgs),
    /// Run a development cluster on this machine: a sandbox founding the service and nodes that
    /// join it (separate `cgs-host` processes on 127.0.0.1), trusted by the sandbox's members;
    /// prints every node's URL and the sandbox's next steps. Re-running on the same directory
    /// restarts the same nodes.
    Cluster(ClusterArgs),
    /// Configuration files: `--config FILE` sets any flag of `start` and `sandbox` from TOML.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Check a configuration file as `start` (or `sandbox`) would read it, with the environment
    /// and defaults: every mistake with its line, the files it names, and the settings that would
    /// apply with where each comes from. Exits 1 if anything is wrong.
    Check {
        /// The TOML file.
        file: PathBuf,
        /// The command the file is for.
        #[arg(long = "for", value_parser = ["start", "join", "sandbox"], default_value = "start")]
        command: String,
    },
    /// Print a commented file with every setting of `start` (or `sandbox`) at its default.
    Example {
        /// The command.
        #[arg(value_parser = ["start", "join", "sandbox"], default_value = "start")]
        command: String,
    },
}

#[derive(Args, Debug)]
struct SandboxArgs {
    /// Read settings from this TOML file: each key is a flag's long name (`plugin-fuel = 20000000`);
    /// flags and environment variables win over it; relative paths are relative to the file.
    /// `cgs-host config example` prints one with every setting.
    #[arg(long, env = "CGS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, default_value = "./sandbox")]
    dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Load the `*.wasm` plugins in this directory instead of building them from source.
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// The dev loop: at start and whenever a `*.wasm` in `--plugins DIR` changes, propose every
    /// component that differs from what runs and approve it as all the sandbox members (so the
    /// change goes through governance and its upgrade rules); prints a `reload:` line per change.
    #[arg(long, requires = "plugins")]
    watch: bool,
    /// The source checkout to build plugins from (default: the one this binary was built from,
    /// else the current directory's).
    #[arg(long, conflicts_with = "plugins")]
    workspace: Option<PathBuf>,
    /// A peer listener (`ip:port`, fixed port), so that nodes can join this sandbox
    /// (`cgs-host join --target URL`): the founding node of a development cluster.
    #[arg(long)]
    peer_listen: Option<SocketAddr>,
    /// Development clusters (`cgs-host cluster`): the sandbox's members vote
    /// `transition_node_to_trusted` for every node that joins with evidence the join policy
    /// accepts.
    #[arg(long, requires = "peer_listen")]
    auto_trust: bool,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    ledger: LedgerArgs,
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(Args, Debug)]
struct ClusterArgs {
    /// Data directory: one sub-directory per node (`n1` is the sandbox that founded it).
    #[arg(long, default_value = "./cluster")]
    dir: PathBuf,
    /// Nodes to run (1-7).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=7))]
    nodes: u16,
    /// Node i listens for clients on BASE+i-1 and for peers on BASE+100+i-1 (127.0.0.1).
    #[arg(long, default_value_t = 8443)]
    base_port: u16,
    /// Load the `*.wasm` plugins in this directory instead of building them from source.
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// The source checkout to build plugins from.
    #[arg(long, conflicts_with = "plugins")]
    workspace: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct StartArgs {
    /// Read settings from this TOML file: each key is a flag's long name (`plugin-fuel = 20000000`);
    /// flags and environment variables win over it; relative paths are relative to the file.
    /// `cgs-host config example` prints one with every setting.
    #[arg(long, env = "CGS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long)]
    dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long)]
    listen: SocketAddr,
    /// Create the service from this genesis JSON: `{"members":[{"public_key":PEM,
    /// "member_data":{..}}],"constitution":BLAKE3,"plugins":[BLAKE3..]}` (only on first start).
    #[arg(long, requires = "plugins")]
    genesis: Option<PathBuf>,
    /// Directory of `*.wasm` components the genesis refers to by BLAKE3.
    #[arg(long, requires = "genesis")]
    plugins: Option<PathBuf>,
    /// The peer listener (`ip:port`, fixed port): raft and forwarded writes between the nodes of
    /// the service, over mutual TLS with the nodes' attested keys. Without it the node cannot
    /// have peers (nothing can join it).
    #[arg(long)]
    peer_listen: Option<SocketAddr>,
    /// Keep this node's keys and the service's secrets in memory only, never in `DIR/node`
    /// (always so under SEV-SNP): a restart joins the service again as a new node (`join`) and
    /// receives the ledger again (the file left on disk is not trusted).
    #[arg(long)]
    keys_in_memory: bool,
    /// Recover the service from the ledger in DIR after its nodes' secrets are gone (every node
    /// lost, or a majority at once): serve only the recovery routes until members submit enough
    /// recovery shares (`cgs recovery submit`), then run as the service's only node, under a new
    /// node id and key; the nodes of before are retired and the ledger is re-keyed.
    #[arg(long, conflicts_with = "genesis")]
    recover: bool,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    ledger: LedgerArgs,
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(Args, Debug)]
struct JoinArgs {
    /// Read settings from this TOML file: each key is a flag's long name (`peer-listen = ...`);
    /// flags and environment variables win over it; relative paths are relative to the file.
    #[arg(long, env = "CGS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (new: the node's keys and the service's sealed secrets are written here).
    #[arg(long)]
    dir: PathBuf,
    /// Address to listen on for clients; the other nodes and clients reach this node there.
    #[arg(long)]
    listen: SocketAddr,
    /// The peer listener (`ip:port`, fixed port) the other nodes reach this node at.
    #[arg(long)]
    peer_listen: SocketAddr,
    /// `https://host:port` of a node of the service.
    #[arg(long)]
    target: String,
    /// The service certificate (PEM) the target must present (`service-cert.pem` of any node).
    #[arg(long)]
    service_cert: PathBuf,
    /// Keep this node's keys and the service's secrets in memory only, never in `DIR/node`
    /// (always so under SEV-SNP): a restart joins the service again as a new node (`join`) and
    /// receives the ledger again (the file left on disk is not trusted).
    #[arg(long)]
    keys_in_memory: bool,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    ledger: LedgerArgs,
    #[command(flatten)]
    http: HttpArgs,
}

/// Per-call plugin limits.
#[derive(Args, Debug)]
struct LimitArgs {
    /// Fuel (≈ wasm instructions) per plugin call: the deterministic compute budget.
    #[arg(long, default_value_t = RuntimeConfig::default().fuel)]
    plugin_fuel: u64,
    /// Wall-clock deadline per plugin call, in milliseconds.
    #[arg(long, default_value_t = RuntimeConfig::default().deadline.as_millis() as u64)]
    plugin_deadline_ms: u64,
    /// Linear-memory cap per plugin instance, in MiB.
    #[arg(long, default_value_t = RuntimeConfig::default().memory_bytes >> 20)]
    plugin_memory_mib: usize,
    /// Plugin instances that may run at once (size of the instance pool).
    #[arg(long, default_value_t = RuntimeConfig::default().max_instances)]
    plugin_instances: u32,
}

/// HTTPS connection limits.
#[derive(Args, Debug)]
struct HttpArgs {
    /// Connections served at once; one more gets `503 ServiceBusy` (`retry-after: 1`) and is
    /// closed. The open-file soft limit is raised to fit (up to the hard limit), else this is
    /// lowered.
    #[arg(long, default_value_t = HttpLimits::default().max_connections)]
    max_connections: usize,
    /// A new connection must send a complete request header within this many milliseconds of
    /// its TLS handshake.
    #[arg(long, default_value_t = HttpLimits::default().header_read_timeout.as_millis() as u64)]
    header_read_timeout_ms: u64,
    /// A connection with no request in flight is closed after this many milliseconds without a
    /// new request.
    #[arg(long, default_value_t = HttpLimits::default().idle_timeout.as_millis() as u64)]
    idle_timeout_ms: u64,
    /// A request body must arrive within this many milliseconds (`408 RequestTimeout`).
    #[arg(long, default_value_t = HttpLimits::default().body_timeout.as_millis() as u64)]
    body_timeout_ms: u64,
    /// HTTP/2 streams one connection may have open at once.
    #[arg(long, default_value_t = HttpLimits::default().h2_max_concurrent_streams)]
    h2_max_streams: u32,
    /// A file holding a bearer token (one line, at least 32 characters) that may read
    /// `GET /metrics` — give it to the metrics scraper (Prometheus `authorization.credentials_file`).
    /// Members may always read `/metrics`.
    #[arg(long, env = "CGS_METRICS_TOKEN_FILE")]
    metrics_token_file: Option<PathBuf>,
}

impl HttpArgs {
    fn metrics_token(&self) -> Result<Option<cgs_host::metrics::Secret>, String> {
        let Some(f) = &self.metrics_token_file else { return Ok(None) };
        #[cfg(unix)]
        if let Ok(m) = std::fs::metadata(f) {
            use std::os::unix::fs::PermissionsExt;
            if m.permissions().mode() & 0o077 != 0 {
                eprintln!("warning: --metrics-token-file {} is readable by other users (chmod 600 it)", f.display());
            }
        }
        let text = std::fs::read_to_string(f).map_err(|e| format!("--metrics-token-file {}: {e}", f.display()))?;
        let token = text.trim().to_string();
        if token.len() < 32 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "--metrics-token-file {}: the token must be one line of at least 32 characters without spaces \
                 (e.g. `openssl rand -hex 32 > {}`)",
                f.display(),
                f.display()
            ));
        }
        Ok(Some(cgs_host::metrics::Secret::new(token)))
    }

    fn limits(&self) -> HttpLimits {
        HttpLimits {
            max_connections: self.max_connections.max(1),
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(1)),
            body_timeout: Duration::from_millis(self.body_timeout_ms.max(1)),
            h2_max_concurrent_streams: self.h2_max_streams.max(1),
            ..HttpLimits::default()
        }
    }
}

/// Ledger and governance settings.
#[derive(Args, Debug)]
struct LedgerArgs {
    /// Open proposals older than this many seconds are dropped (default: 7 days).
    #[arg(long, default_value_t = GovConfig::default().proposal_ttl.as_secs())]
    proposal_ttl_secs: u64,
    /// Sign a checkpoint after this many ledger entries…
    #[arg(long, default_value_t = LedgerConfig::default().signature_interval_txs)]
    signature_interval_txs: u64,
    /// …or this many milliseconds after the first unsigned entry.
    #[arg(long, default_value_t = LedgerConfig::default().signature_interval.as_millis() as u64)]
    signature_interval_ms: u64,
    /// Fetch JWT issuers' `jwks_url` when it starts with this prefix (repeatable), e.g.
    /// `https://login.example.com/`. Without it, only issuers with inline JWKS are usable.
    #[arg(long = "jwks-url-allow", value_name = "PREFIX")]
    jwks_url_allow: Vec<String>,
    /// PEM certificates trusted (besides the Mozilla roots) when fetching a JWKS.
    #[arg(long = "jwks-ca", value_name = "FILE")]
    jwks_ca: Option<PathBuf>,
    /// How often issuers' keys fetched from a `jwks_url` are refreshed (seconds). Tokens of keys
    /// that vanish are refused from the next refresh on.
    #[arg(long = "jwks-refresh-secs", default_value_t = cgs_host::auth::jwks::REFRESH.as_secs())]
    jwks_refresh_secs: u64,
    /// Most clean-room nonces outstanding on this node (each lives 120 s); beyond, nonce
    /// requests answer 503 ServiceBusy.
    #[arg(long = "max-nonces", default_value_t = cgs_host::cleanroom::sessions::MAX_NONCES)]
    max_nonces: usize,
}

impl LedgerArgs {
    fn gov_config(&self) -> Result<GovConfig, String> {
        let jwks_ca_pem = match &self.jwks_ca {
            Some(p) => Some(std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?),
            None => None,
        };
        Ok(GovConfig {
            proposal_ttl: Duration::from_secs(self.proposal_ttl_secs.max(1)),
            jwks_url_allow: self.jwks_url_allow.clone(),
            jwks_ca_pem,
            jwks_refresh: Duration::from_secs(self.jwks_refresh_secs.max(1)),
            max_nonces: self.max_nonces.max(1),
            ..GovConfig::default()
        })
    }

    fn ledger_config(&self) -> LedgerConfig {
        LedgerConfig {
            signature_interval_txs: self.signature_interval_txs.max(1),
            signature_interval: Duration::from_millis(self.signature_interval_ms.max(1)),
            ..LedgerConfig::default()
        }
    }
}

impl LimitArgs {
    fn runtime_config(&self) -> RuntimeConfig {
        RuntimeConfig {
            fuel: self.plugin_fuel,
            deadline: Duration::from_millis(self.plugin_deadline_ms.max(1)),
            memory_bytes: self.plugin_memory_mib.max(1) << 20,
            max_instances: self.plugin_instances.max(1),
            ..RuntimeConfig::default()
        }
    }
}

/// Why the command line (with its config file) cannot be used.
enum ParseError {
    /// clap's: printed as clap prints it (help and version too).
    Clap(clap::Error),
    /// The config file's.
    File(String),
}

/// A command line parsed with its config file.
struct Parsed {
    cli: Cli,
    /// For `config check`: where each value came from.
    matches: clap::ArgMatches,
    settings: Option<config::FileSettings>,
    /// Settings of the file left out, and why.
    notes: Vec<String>,
}

/// Parse `argv`, with the settings of the `--config` file of `start` or `sandbox` added (flags
/// and environment variables win over the file).
fn parse_args(argv: Vec<std::ffi::OsString>) -> Result<Parsed, ParseError> {
    let mut root = Cli::command();
    // A lenient first look finds the file and what the command line and environment set; a
    // flag the file provides (`--dir` of `start`) is not missing yet.
    let lenient = root.clone().ignore_errors(true).try_get_matches_from(&argv).ok();
    let file = lenient.as_ref().and_then(|m| {
        let (sub, sm) = m.subcommand()?;
        let path = sm.try_get_one::<PathBuf>("config").ok().flatten()?;
        config::COMMANDS.contains(&sub).then(|| (sub.to_string(), path.clone(), m))
    });
    let (argv, settings, mut notes) = match file {
        Some((sub, path, m)) => {
            root.build();
            let settings = config::load(&path, &root, &sub).map_err(ParseError::File)?;
            // A site's file keeps `genesis` for the first start; every later start of the same
            // service leaves it (and its plugin directory) out, saying so.
            let mut drop = Vec::new();
            let mut notes = Vec::new();
            if sub == "start" && (settings.value("genesis").is_some() || settings.value("plugins").is_some()) {
                let sm = m.subcommand().map(|(_, sm)| sm);
                let dir = sm
                    .and_then(|sm| sm.try_get_one::<PathBuf>("dir").ok().flatten().cloned())
                    .or_else(|| settings.value("dir").map(PathBuf::from));
                if let Some(dir) = dir.filter(|d| d.join(cgs_ledger_format::store_format::FILE_NAME).exists()) {
                    drop.extend(["genesis", "plugins"]);
                    notes.push(format!(
                        "{} already holds a service: the config file's `genesis` and `plugins` (for a first start) are \
                         not used",
                        dir.display()
                    ));
                }
            }
            let (argv, more) = settings.apply(argv, m, &drop);
            notes.extend(more);
            (argv, Some(settings), notes)
        }
        None => (argv, None, Vec::new()),
    };
    let matches = Cli::command().try_get_matches_from(argv).map_err(ParseError::Clap)?;
    let cli = Cli::from_arg_matches(&matches).map_err(ParseError::Clap)?;
    notes.dedup();
    Ok(Parsed { cli, matches, settings, notes })
}

fn main() -> ExitCode {
    let cli = match parse_args(std::env::args_os().collect()) {
        Ok(parsed) => {
            for note in &parsed.notes {
                eprintln!("note: {note}");
            }
            parsed.cli
        }
        Err(ParseError::Clap(e)) => e.exit(),
        Err(ParseError::File(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: --log {:?} is not a log filter ({e}); e.g. `info` or `{DEFAULT_LOG}`", cli.log);
            return ExitCode::FAILURE;
        }
    };
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
    }
    cgs_host::panics::install_hook();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("cgs-worker").build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What a start needs, read from the command line (and files it names) before anything starts.
struct Prepared {
    config: NodeConfig,
    sandbox: bool,
    /// The data directory, when this start makes it.
    made_dir: Option<PathBuf>,
    /// The `--watch` directory.
    watch: Option<PathBuf>,
}

/// Check a command line for `start` or `sandbox` and read the files it names (genesis, metrics
/// token, JWKS CAs). Writes nothing.
fn prepare(command: Command) -> Result<Prepared, Box<dyn std::error::Error>> {
    let mut made_dir: Option<PathBuf> = None;
    let mut watch: Option<PathBuf> = None;
    let (config, sandbox) = match command {
        Command::Sandbox(a) => {
            if a.watch {
                watch = a.plugins.clone();
            }
            let plugins = match (a.plugins, a.workspace) {
                (Some(dir), _) => PluginSource::Dir(dir),
                (None, Some(ws)) => PluginSource::Build { workspace: ws },
                (None, None) => PluginSource::Build { workspace: default_workspace()? },
            };
            let fresh = !a.dir.join(cgs_ledger_format::store_format::FILE_NAME).exists();
            if fresh && !a.dir.exists() {
                made_dir = Some(a.dir.clone());
            }
            (
                NodeConfig {
                    dir: a.dir,
                    listen: a.listen,
                    peer_listen: a.peer_listen,
                    creation: Creation::Sandbox { plugins },
                    runtime: a.limits.runtime_config(),
                    ledger: a.ledger.ledger_config(),
                    http: a.http.limits(),
                    metrics_token: a.http.metrics_token()?,
                    gov: a.ledger.gov_config()?,
                    auto_trust: a.auto_trust,
                    keys_in_memory: false,
                },
                true,
            )
        }
        Command::Start(a) => {
            let creation = match (a.genesis, a.plugins) {
                (Some(g), Some(p)) => {
                    let text = std::fs::read_to_string(&g).map_err(|e| format!("cannot read {}: {e}", g.display()))?;
                    let genesis: Genesis = serde_json::from_str(&text)
                        .map_err(|e| format!("{} is not a valid genesis: {e}", g.display()))?;
                    Creation::Genesis { genesis, plugins: PluginSource::Dir(p) }
                }
                _ if a.recover => Creation::Recover,
                _ => Creation::Existing,
            };
            (
                NodeConfig {
                    dir: a.dir,
                    listen: a.listen,
                    peer_listen: a.peer_listen,
                    creation,
                    runtime: a.limits.runtime_config(),
                    ledger: a.ledger.ledger_config(),
                    http: a.http.limits(),
                    metrics_token: a.http.metrics_token()?,
                    gov: a.ledger.gov_config()?,
                    auto_trust: false,
                    keys_in_memory: a.keys_in_memory,
                },
                false,
            )
        }
        Command::Join(a) => {
            let service_cert_pem = std::fs::read_to_string(&a.service_cert)
                .map_err(|e| format!("cannot read --service-cert {}: {e}", a.service_cert.display()))?;
            (
                NodeConfig {
                    dir: a.dir,
                    listen: a.listen,
                    peer_listen: Some(a.peer_listen),
                    creation: Creation::Join { target: a.target, service_cert_pem },
                    runtime: a.limits.runtime_config(),
                    ledger: a.ledger.ledger_config(),
                    http: a.http.limits(),
                    metrics_token: a.http.metrics_token()?,
                    gov: a.ledger.gov_config()?,
                    auto_trust: false,
                    keys_in_memory: a.keys_in_memory,
                },
                false,
            )
        }
        Command::Config(_) | Command::Cluster(_) => return Err("not a start".into()),
    };
    Ok(Prepared { config, sandbox, made_dir, watch })
}

async fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    let command = match command {
        Command::Config(c) => return config_command(c),
        Command::Cluster(c) => return run_cluster(c).await,
        other => other,
    };
    let Prepared { config, sandbox, made_dir, watch } = prepare(command)?;
    check_paths(&config)?;
    if let (Creation::Sandbox { plugins: PluginSource::Build { workspace } }, false) =
        (&config.creation, config.dir.join(cgs_ledger_format::store_format::FILE_NAME).exists())
    {
        eprintln!("building plugins reproducibly from {} ...", workspace.display());
    }
    // A first sandbox start that fails (a port in use, a plugin that does not build) must not
    // leave a half-made service behind that the next start trips over. When it made the data
    // directory, it moves it aside (never deletes: nothing is lost, even if something else
    // wrote there meanwhile).
    let node = match Node::open(config).await {
        Ok(node) => node,
        Err(e) => {
            if let Some(dir) = made_dir {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                let mut aside = dir.as_os_str().to_owned();
                aside.push(format!(".failed-{stamp}"));
                let aside = PathBuf::from(aside);
                if dir.exists() && std::fs::rename(&dir, &aside).is_ok() {
                    return Err(format!(
                        "{e}\n(the sandbox was not created; what this attempt made was moved to {} — delete it when \
                         you no longer need it — so {} is free: fix the cause and run the same command again)",
                        aside.display(),
                        dir.display()
                    )
                    .into());
                }
            }
            return Err(e.into());
        }
    };
    // Before anyone learns the URL: a stop from then on is a clean one.
    let signal = shutdown_signal();
    print_banner(&node, sandbox);
    tracing::info!(url = %node.url(), dir = %node.dir.display(), "serving");
    let _reloader = match watch {
        Some(dir) => {
            let members = node.sandbox_members.clone();
            println!("watching {} for changed plugins (reload: lines below)", dir.display());
            Some(cgs_host::devloop::spawn(node.gov.clone(), node.runtime.clone(), members, dir))
        }
        None => None,
    };

    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = tx.send(true);
    });
    node.serve(rx).await?;
    tracing::info!("stopped");
    Ok(())
}

/// A child `cgs-host` of a development cluster, and the lines it printed.
struct ClusterNode {
    child: tokio::process::Child,
    url: String,
    printed: Vec<String>,
}

/// Start `cgs-host ARGS` and wait (up to 10 min: a first sandbox builds its plugins) until it
/// prints its URL.
async fn cluster_node(args: Vec<std::ffi::OsString>, name: &str) -> Result<ClusterNode, Box<dyn std::error::Error>> {
    use tokio::io::AsyncBufReadExt as _;
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut printed = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(600), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let url = line.trim().strip_prefix("URL:").map(|u| u.trim().to_string());
            printed.push(line);
            if let Some(url) = url {
                return Some(url);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(url)) => {
            // The rest of its banner (what to do next), then keep draining its output (a full
            // pipe would stall it).
            let _ = tokio::time::timeout(Duration::from_secs(30), async {
                while let Ok(Some(line)) = lines.next_line().await {
                    let last = line.contains("Stop with Ctrl-C");
                    printed.push(line);
                    if last {
                        break;
                    }
                }
            })
            .await;
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Ok(ClusterNode { child, url, printed })
        }
        _ => {
            let status = child.try_wait().ok().flatten();
            Err(format!(
                "{name} did not start ({}): see its messages above",
                status.map(|s| s.to_string()).unwrap_or("no URL within 10 min".into())
            )
            .into())
        }
    }
}

/// `cgs-host cluster`: a sandbox founding the service, and nodes joining it.
async fn run_cluster(a: ClusterArgs) -> Result<(), Box<dyn std::error::Error>> {
    let port = |offset: u16| -> Result<u16, String> {
        a.base_port.checked_add(offset).ok_or_else(|| format!("--base-port {} is too high", a.base_port))
    };
    std::fs::create_dir_all(&a.dir)?;
    let n1_dir = a.dir.join("n1");
    let mut args: Vec<std::ffi::OsString> = vec!["sandbox".into(), "--dir".into(), n1_dir.clone().into()];
    args.extend(
        [format!("--listen=127.0.0.1:{}", port(0)?), format!("--peer-listen=127.0.0.1:{}", port(100)?)].map(Into::into),
    );
    args.push("--auto-trust".into());
    match (&a.plugins, &a.workspace) {
        (Some(p), _) => args.extend(["--plugins".into(), p.clone().into()]),
        (None, Some(w)) => args.extend(["--workspace".into(), w.clone().into()]),
        (None, None) => {}
    }
    eprintln!("starting node 1 (the sandbox founding the service) in {} ...", n1_dir.display());
    let mut nodes = vec![cluster_node(args, "node 1").await?];
    let cert = n1_dir.join("service-cert.pem");
    for i in 2..=a.nodes {
        let dir = a.dir.join(format!("n{i}"));
        eprintln!("starting node {i} (joining {}) in {} ...", nodes[0].url, dir.display());
        let mut args: Vec<std::ffi::OsString> = vec!["join".into(), "--dir".into(), dir.into()];
        args.extend(
            [
                format!("--listen=127.0.0.1:{}", port(i - 1)?),
                format!("--peer-listen=127.0.0.1:{}", port(100 + i - 1)?),
                format!("--target={}", nodes[0].url),
            ]
            .map(Into::into),
        );
        args.extend(["--service-cert".into(), cert.clone().into()]);
        nodes.push(cluster_node(args, &format!("node {i}")).await?);
    }
    // The sandbox's banner (members, next steps), then every node.
    let mut out = String::new();
    for line in nodes[0].printed.iter().filter(|l| !l.contains("Stop with Ctrl-C")) {
        out.push_str(line);
        out.push('\n');
    }
    println!("{out}");
    println!("CGS cluster: {} nodes (separate processes), one service certificate {}", nodes.len(), cert.display());
    for (i, n) in nodes.iter().enumerate() {
        println!("  node {}: {}   (data: {})", i + 1, n.url, a.dir.join(format!("n{}", i + 1)).display());
    }
    println!(
        "  curl --cacert {} {}/node/network/nodes   # status, role, primary of every node",
        cert.display(),
        nodes[0].url
    );
    let signal = shutdown_signal();
    println!("Any node answers; writes sent to a follower are forwarded to the leader. Stop with Ctrl-C.");
    signal.await;
    for n in &nodes {
        if let Some(pid) = n.child.id().and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    for mut n in nodes {
        let _ = tokio::time::timeout(Duration::from_secs(20), n.child.wait()).await;
    }
    Ok(())
}

/// `cgs-host config check|example`.
fn config_command(c: ConfigCommand) -> Result<(), Box<dyn std::error::Error>> {
    let mut root = Cli::command();
    root.build();
    match c {
        ConfigCommand::Example { command } => {
            print!("{}", config::example(&root, &command));
            Ok(())
        }
        ConfigCommand::Check { file, command } => {
            let argv: Vec<std::ffi::OsString> =
                vec!["cgs-host".into(), command.clone().into(), "--config".into(), file.clone().into()];
            let Parsed { cli, matches, settings, notes } = match parse_args(argv) {
                Ok(parsed) => parsed,
                Err(ParseError::File(e)) => return Err(e.into()),
                Err(ParseError::Clap(e)) => {
                    let text = e.render().to_string();
                    let text = text.trim().trim_start_matches("error: ");
                    let text = text.split("\n\nUsage:").next().unwrap_or(text);
                    return Err(format!(
                        "with the config file {}: {text}\n(set it in the file as `name = value`, by its environment \
                         variable, or as a flag)",
                        file.display()
                    )
                    .into());
                }
            };
            let settings = settings.ok_or("no config file was read")?;
            let prepared = prepare(cli.command).map_err(|e| format!("with the config file {}: {e}", file.display()))?;
            check_paths(&prepared.config).map_err(|e| format!("with the config file {}: {e}", file.display()))?;
            println!("{}: valid for `cgs-host {command}`; the settings that would apply:", file.display());
            for note in &notes {
                println!("  note: {note}");
            }
            let rows = config::effective(&root, &command, &matches, &settings);
            let width = rows.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
            for (key, value, source) in rows {
                println!("  {key:<width$} = {value}   ({source})");
            }
            Ok(())
        }
    }
}

/// What a start would trip over in the directories it names, found before it starts.
fn check_paths(c: &NodeConfig) -> Result<(), String> {
    let has_ledger = c.dir.join(cgs_ledger_format::store_format::FILE_NAME).exists();
    if c.dir.exists() && !c.dir.is_dir() {
        return Err(format!("dir {} is not a directory", c.dir.display()));
    }
    match &c.creation {
        Creation::Existing if !has_ledger => Err(format!(
            "dir {} holds no service: a first start needs `genesis` and `plugins` (the members, constitution and \
             plugins it starts with)",
            c.dir.display()
        )),
        // A sandbox's plugins are read at its first start only.
        Creation::Genesis { plugins: PluginSource::Dir(p), .. }
        | Creation::Sandbox { plugins: PluginSource::Dir(p) }
            if !p.is_dir() && !has_ledger =>
        {
            Err(format!("plugins {} is not a directory of `*.wasm` components", p.display()))
        }
        Creation::Genesis { .. } if has_ledger => Err(format!(
            "dir {} already holds a service: `genesis` is only for a first start (remove it to restart this one)",
            c.dir.display()
        )),
        _ => Ok(()),
    }
}

/// The source checkout this binary was built from, if it still exists; else the one around the
/// current directory.
fn default_workspace() -> Result<PathBuf, String> {
    let built_from = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if let Some(ws) = built_from.parent().and_then(cgs_build::find_workspace) {
        return Ok(ws);
    }
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    cgs_build::find_workspace(&cwd).ok_or_else(|| {
        "no CGS source checkout found to build plugins from; pass --plugins DIR (built with `cgs plugin build`) or --workspace DIR"
            .to_string()
    })
}

/// Print what is running and what to do next. Output errors (a closed stdout) are ignored: the
/// service keeps running.
fn print_banner(node: &Node, sandbox: bool) {
    let mut out = String::new();
    let _ = banner(&mut out, node, sandbox);
    let mut stdout = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut stdout, out.as_bytes());
    let _ = std::io::Write::flush(&mut stdout);
}

fn banner(out: &mut String, node: &Node, sandbox: bool) -> std::fmt::Result {
    use std::fmt::Write as _;
    let url = node.url();
    let cert = node.service_cert_path.display();
    writeln!(out)?;
    writeln!(out, "CGS {} is running", if sandbox { "sandbox" } else { "node" })?;
    writeln!(out, "  URL:                 {url}")?;
    writeln!(out, "  service certificate: {cert}")?;
    writeln!(out, "  console:             {url}/console/")?;
    writeln!(out, "  data directory:      {}", node.dir.display())?;
    writeln!(
        out,
        "  ledger:              {} ({} entries)",
        node.dir.join(cgs_ledger_format::store_format::FILE_NAME).display(),
        node.ledger.applied()
    )?;
    writeln!(out, "  checkpoint key:      {}", node.ledger.identity().verifier_key)?;
    let service = node.gov.service().unwrap_or_default();
    writeln!(out, "  service:             {}", service["status"].as_str().unwrap_or("?"))?;
    writeln!(out, "  plugins (name version blake3):")?;
    for p in node.plugins() {
        writeln!(out, "    {:<14} {:<8} {}", p.info.name, p.info.version, p.blake3)?;
    }
    if !node.sandbox_members.is_empty() {
        writeln!(out, "  members (keys under {}):", node.dir.join("members").display())?;
        for (m, _, _) in &node.sandbox_members {
            writeln!(out, "    {:<14} {}", m.name, m.id)?;
        }
    }
    if let Some(opened) = &node.opened {
        writeln!(out, "  the sandbox opened the service itself: {opened}")?;
    }
    writeln!(out)?;
    writeln!(out, "Next steps:")?;
    writeln!(out, "  curl --cacert {cert} {url}/gov/service")?;
    writeln!(out, "  curl --cacert {cert} {url}/gov/plugins          # what runs: name, version, blake3")?;
    writeln!(
        out,
        "  cargo run -q -p cgs-client -- plugin verify contracts --url {url} --ca {cert}   # rebuild locally and compare"
    )?;
    if let Some((m, _, _)) = node.sandbox_members.first() {
        writeln!(
            out,
            "  open {url}/console/ in a browser that trusts {cert} (import it as an authority); sign in with {}",
            m.key_path.display()
        )?;
        writeln!(out, "  export CGS_URL={url} CGS_CA={cert} CGS_KEY={}", m.key_path.display())?;
        writeln!(out, "  cargo run -q -p cgs-client -- proposal list")?;
        writeln!(
            out,
            "  cargo run -q -p cgs-client -- contract create demo --data '{{\"purpose\":\"demo\"}}'   # then propose, vote: README, \"A clean-room collaboration\""
        )?;
    }
    // The command to check this service; its evidence (virtual here) is computed once and kept.
    let ev = node.evidence.evidence();
    if let (Some(m), Some(h)) = (ev["measurement"].as_str(), ev["host_data"].as_str()) {
        let insecure = if ev["kind"] == "virtual" { " --allow-virtual" } else { "" };
        writeln!(
            out,
            "  cargo run -q -p cgs-client -- verify service --url {url} --ca {cert} --measurement {m} --host-data {h}{insecure}"
        )?;
    }
    writeln!(out, "Stop with Ctrl-C.")?;
    writeln!(out)
}

/// SIGTERM or SIGINT (Ctrl-C). The handlers are registered when this is called, not when the
/// future is first polled: a signal arriving in between (a test stopping a node that just
/// answered its first request, on a loaded machine) would otherwise end the process with the
/// default action instead of a clean stop (found by CI: a sandbox exited "signal 15").
fn shutdown_signal() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // Installed now, not when first polled (see above). A signal that cannot be installed
        // is a future that never ends: the other still stops the node.
        let (term, int) = (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok());
        if term.is_none() && int.is_none() {
            return Box::pin(async {
                let _ = tokio::signal::ctrl_c().await;
            });
        }
        async fn received(s: Option<tokio::signal::unix::Signal>) {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        Box::pin(async move {
            tokio::select! {
                _ = received(term) => {},
                _ = received(int) => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Box::pin(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
