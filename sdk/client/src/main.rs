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

fn run(cli: &Cli) -> Result<(), String> {
    match &cli.command {
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
