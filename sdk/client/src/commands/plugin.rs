//! `cgs plugin`: build plugins reproducibly, measure, publish and verify them. The reproducible
//! build (`cgs_build`) is reached through this module only (`cgs verify service` rebuilds
//! with [`build_into`]).

use std::path::{Path, PathBuf};

use cgs_build::{self as build, BuildError, BuildRequest, BuiltPlugin, Selection};
use cgs_client::{Client, Member};
use cgs_core::plugin::{Measurement, World};
use clap::{Args, Subcommand};

use super::common::{block_on, client, member, ok_json, propose, show};
use super::{CliError, Result};
use crate::Cli;

#[derive(Subcommand, Debug)]
pub(crate) enum PluginCommand {
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
        #[command(flatten)]
        intent: IntentArgs,
    },
    /// Create a plugin project of one's own: a standalone crate in DIR (default `./NAME`) with
    /// its own workspace, lock file, toolchain pin and the service's `plugin` profile, depending
    /// on the SDK of a CGS checkout vendored inside it. It builds reproducibly wherever it is cloned.
    New {
        /// The plugin name (1-32 chars of a-z 0-9 -, starting with a letter).
        name: String,
        /// Where to create it (must not hold a Cargo.toml yet).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The CGS checkout whose SDK to use (default: the one around the current directory, or
        /// the one this `cgs` was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Check a plugin before uploading it: its name, version, hash and size, every import and
    /// every forbidden one; with `--key`, also what the service would say of a `set_plugin`
    /// (load-time checks, routes, upgrade rules, clashes with what runs). Exits non-zero if it
    /// would be refused.
    Check {
        /// A component (`.wasm`) or a plugin's crate directory (built reproducibly first).
        path: PathBuf,
        /// The source checkout of a crate directory (default: the one around it).
        #[arg(long)]
        workspace: Option<PathBuf>,
        /// What the `set_plugin` would declare (checked as `publish` would propose it).
        #[command(flatten)]
        intent: IntentArgs,
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
        #[arg(long, conflicts_with = "from_provenance")]
        workspace: Option<PathBuf>,
        /// Rebuild from the proposal's provenance: clone its `repository` at its `commit` (into
        /// `--clone-into`, kept) and build the crate at its `path`. This runs the proposer's
        /// build scripts, as any rebuild does.
        #[arg(long, requires = "proposal")]
        from_provenance: bool,
        /// Where `--from-provenance` clones (default: `~/.cache/cgs/verify/<name>-<commit>`,
        /// mode 0700); reused only while it is a clean clone of exactly that commit.
        #[arg(long, requires = "from_provenance")]
        clone_into: Option<PathBuf>,
    },
}

/// What a `set_plugin` declares beyond the plugin (`publish`, `check`).
#[derive(Args, Debug)]
pub(crate) struct IntentArgs {
    /// Propose a version older than the one running (a rollback), saying why; members see the
    /// reason in the proposal. Without it the service refuses a downgrade.
    #[arg(long, value_name = "REASON")]
    rollback: Option<String>,
    /// Replace a core plugin (`contracts`, `consent`, `audit`) by name: required, so that members
    /// see a replacement and not an upgrade by the plugin's authors.
    #[arg(long)]
    replace_core: bool,
}

impl IntentArgs {
    fn intent(&self) -> Intent<'_> {
        Intent { rollback: self.rollback.as_deref(), replace_core: self.replace_core }
    }
}

#[derive(Args, Debug)]
pub(crate) struct BuildArgs {
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
    /// Also build a copy of the sources at another path (with its own target directory unless
    /// `CARGO_TARGET_DIR` is set) and compare: a build is called reproducible only once two
    /// directories gave the same bytes.
    #[arg(long)]
    twice: bool,
}

impl From<BuildError> for CliError {
    fn from(e: BuildError) -> Self {
        CliError::Build(Box::new(e))
    }
}

pub(crate) fn run(cli: &Cli, command: &PluginCommand) -> Result {
    match command {
        PluginCommand::Build(args) => build_plugins(cli, args),
        PluginCommand::Measure { dir } => measure(cli, dir.as_deref()),
        PluginCommand::New { name, dir, sdk } => new(cli, name, dir.as_deref(), sdk.as_deref()),
        PluginCommand::Check { path, workspace: ws, intent } => check(cli, path, ws.as_deref(), intent.intent()),
        PluginCommand::Publish { dir, plugin, workspace: ws, intent } => {
            publish(cli, dir.as_deref(), plugin.as_deref(), ws.as_deref(), intent.intent())
        }
        PluginCommand::Verify { name, proposal, workspace: ws, from_provenance, clone_into } => {
            let from = from_provenance.then(|| clone_into.clone());
            verify(cli, name, proposal.as_deref(), ws.as_deref(), from)
        }
    }
}

/// `cgs plugin build`.
fn build_plugins(cli: &Cli, args: &BuildArgs) -> Result {
    let ws = workspace(args.workspace.as_deref())?;
    let selection = if args.all {
        Selection::All
    } else if args.plugins.is_empty() {
        Selection::Default
    } else {
        Selection::Named(args.plugins.clone())
    };
    sync_lock(&ws)?;
    let req =
        BuildRequest { workspace: ws.clone(), selection: selection.clone(), out_dir: args.out.clone(), quiet: false };
    let built = build::build(&req)?;
    if let Some(dir) = built.first().and_then(|b| b.path.parent()) {
        eprintln!("built {} plugin(s) into {}", built.len(), dir.display());
    }
    if args.twice {
        let other = tempfile::Builder::new().prefix("cgs-rebuild-").tempdir()?;
        let copy = other.path().join("elsewhere").join(ws.file_name().unwrap_or_default());
        copy_sources(&ws, &copy)?;
        let req =
            BuildRequest { workspace: copy.clone(), selection, out_dir: Some(other.path().join("out")), quiet: true };
        let progress = super::progress::Progress::start(format!("rebuilding in {} to compare", copy.display()), "");
        let again = build::build(&req)?;
        progress.finish("rebuilt");
        let mut differ = Vec::new();
        for (a, b) in built.iter().zip(&again) {
            if a.measurement.blake3 != b.measurement.blake3 {
                let bytes = std::fs::read(&b.path)?;
                let paths = super::provenance::embedded_paths(&bytes);
                differ.push(format!(
                    "{}: {} here, {} in {}{}",
                    a.measurement.info.name,
                    a.measurement.blake3,
                    b.measurement.blake3,
                    copy.display(),
                    if paths.is_empty() { String::new() } else { format!(" (embeds {})", paths.join(", ")) }
                ));
            }
        }
        if !differ.is_empty() {
            return Err(CliError::NotReproducible(differ.join("; ")));
        }
        eprintln!("reproducible: a copy at {} built the same bytes", copy.display());
    }
    let items: Vec<_> = built.into_iter().map(|b| b.measurement).collect();
    print_measurements(cli.json, &items)
}

/// The author's tools keep `Cargo.lock` current for the workspace's own packages (a new crate, a
/// version bump) and say so; `verify` never touches it.
fn sync_lock(ws: &Path) -> Result {
    if build::sync_lock(ws)? {
        eprintln!("note: Cargo.lock updated for the workspace's own packages (a new crate or version): commit it");
    }
    Ok(())
}

/// Copy a source tree without build outputs, VCS data or sandboxes.
fn copy_sources(from: &Path, to: &Path) -> Result {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if matches!(name.to_str(), Some("target" | ".git" | "sandbox")) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let ty = entry.file_type()?;
        if ty.is_dir() {
            copy_sources(&src, &dst)?;
        } else if ty.is_file() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// `cgs plugin measure`.
fn measure(cli: &Cli, dir: Option<&Path>) -> Result {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let ws = workspace(None)?;
            let (_, target, _) = build::plugin_packages(&ws)?;
            target.join("plugins")
        }
    };
    let found = cgs_build::measure_dir(&dir)?;
    if found.is_empty() {
        return Err(CliError::NoPlugins { dir });
    }
    let items: Vec<_> = found.into_iter().map(|(_, m)| m).collect();
    print_measurements(cli.json, &items)
}

/// What a `set_plugin` says beyond the plugin: a rollback's reason, a core replacement.
#[derive(Debug, Clone, Copy)]
struct Intent<'a> {
    rollback: Option<&'a str>,
    replace_core: bool,
}

/// `cgs plugin publish`.
fn publish(cli: &Cli, dir: Option<&Path>, plugin: Option<&str>, ws: Option<&Path>, intent: Intent<'_>) -> Result {
    let m = member(cli)?;
    let (ws, plugin, crate_dir) = match (dir, plugin) {
        (Some(d), _) => {
            let name = package_name(d)?;
            let abs = d.canonicalize()?;
            let ws = match ws {
                Some(w) => w.to_path_buf(),
                None => build::find_workspace(&abs)
                    .ok_or_else(|| CliError::NoWorkspace { path: d.to_path_buf(), suggest_flag: false })?,
            };
            (ws, name, Some(abs))
        }
        (None, Some(p)) => (workspace(ws)?, p.to_string(), None),
        (None, None) => return Err(CliError::usage("name the plugin: `cgs plugin publish DIR` or `-p NAME`")),
    };
    sync_lock(&ws)?;
    let out = scratch_dir(&ws)?;
    let built = build_into(ws.clone(), vec![plugin], &out, false)?;
    let b = built.into_iter().next().ok_or(CliError::NothingBuilt)?;
    let bytes = std::fs::read(&b.path)?;
    let up = ok_json(block_on(m.authed("PUT", "/gov/blobs", Some(bytes)))?)?;
    let hash = up["blake3"].as_str().unwrap_or_default().to_string();
    let action = match b.measurement.info.world {
        World::Constitution => "set_constitution",
        World::AppPlugin => "set_plugin",
    };
    let mut args =
        serde_json::json!({"name": b.measurement.info.name, "version": b.measurement.info.version, "blake3": hash});
    if let Some(why) = intent.rollback {
        args["rollback"] = why.into();
    }
    if intent.replace_core {
        args["replace_core"] = true.into();
    }
    // Where the source is, so members can rebuild it and learn why not when they cannot.
    let crate_dir = crate_dir.or_else(|| b.path.parent().map(Path::to_path_buf)).unwrap_or_else(|| ws.clone());
    args["provenance"] = super::provenance::of(&ws, &crate_dir);
    if args["provenance"]["dirty"] == true {
        eprintln!("warning: the checkout has uncommitted changes: members cannot rebuild these bytes from a commit");
    }
    let v = propose(&m, serde_json::json!([{"name": action, "args": args}]))?;
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

/// `cgs plugin new`.
fn new(cli: &Cli, name: &str, dir: Option<&Path>, sdk: Option<&Path>) -> Result {
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    let is_cgs = |p: &Path| p.join("sdk/plugin/Cargo.toml").is_file();
    let sdk = match sdk {
        Some(s) => s.to_path_buf(),
        None => {
            let around = std::env::current_dir().ok().and_then(|d| build::find_workspace(&d)).filter(|w| is_cgs(w));
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            around.or_else(|| is_cgs(&built_from).then_some(built_from)).ok_or_else(|| {
                CliError::usage("no CGS checkout found for the SDK: give --sdk PATH (a clone of the CGS repository)")
            })?
        }
    };
    let written = super::scaffold::new_project(name, &dir, &sdk)?;
    let v = serde_json::json!({
        "plugin": name, "dir": dir, "sdk": sdk, "files": written,
    });
    show(cli, &v, |_| {
        format!(
            "created plugin project `{name}` in {} (SDK: {})\nnext:\n  cd {}\n  git init && git add -A && git commit -m \"{name} 0.1.0\"   # members rebuild from a commit\n  cgs plugin build                 # reproducible: target/plugins/{name}.wasm\n  cgs plugin check .               # imports, routes, upgrade rules (with --key: against the service)\n  cgs plugin publish .             # upload and propose set_plugin",
            dir.display(),
            sdk.display(),
            dir.display()
        )
    });
    Ok(())
}

/// `cgs plugin check`.
fn check(cli: &Cli, path: &Path, ws: Option<&Path>, intent: Intent<'_>) -> Result {
    let bytes = if path.is_dir() {
        let name = package_name(path)?;
        let ws = match ws {
            Some(w) => w.to_path_buf(),
            None => build::find_workspace(&path.canonicalize()?)
                .ok_or_else(|| CliError::NoWorkspace { path: path.to_path_buf(), suggest_flag: false })?,
        };
        sync_lock(&ws)?;
        let out = scratch_dir(&ws)?;
        let built = build_into(ws, vec![name], &out, true)?;
        let b = built.into_iter().next().ok_or(CliError::NothingBuilt)?;
        let bytes = std::fs::read(&b.path)?;
        let _ = std::fs::remove_dir_all(&out);
        bytes
    } else {
        super::common::read(path)?
    };
    let m = cgs_core::plugin::measure(&bytes).map_err(|e| CliError::Build(Box::new(e)))?;
    let imports = cgs_core::plugin::imports(&bytes).map_err(|e| CliError::Build(Box::new(e)))?;
    let forbidden: Vec<&String> = imports.iter().filter(|i| !cgs_core::plugin::import_allowed(i)).collect();
    let mut v = serde_json::json!({
        "name": m.info.name, "version": m.info.version, "world": m.info.world, "blake3": m.blake3.to_hex(),
        "size": bytes.len(), "imports": imports, "forbidden_imports": forbidden,
    });
    let mut problems: Vec<(String, String)> = forbidden
        .iter()
        .map(|i| ("ForbiddenImport".to_string(), format!("imports `{i}`, which plugins may not use")))
        .collect();
    if cli.key.is_some() {
        let mut query = Vec::new();
        if let Some(why) = intent.rollback {
            query.push(format!("rollback={}", cgs_core::contract::percent_encode(why)));
        }
        if intent.replace_core {
            query.push("replace_core=true".to_string());
        }
        let path = super::common::with_query("/gov/plugins/check".into(), &query);
        let service = ok_json(block_on(member(cli)?.authed("POST", &path, Some(bytes)))?)?;
        for p in service["problems"].as_array().into_iter().flatten() {
            let code = p["code"].as_str().unwrap_or("?").to_string();
            // The service names forbidden imports too; say each once.
            if code != "InvalidPlugin" || forbidden.is_empty() {
                problems.push((code, p["message"].as_str().unwrap_or_default().to_string()));
            }
        }
        v["service"] = service;
    }
    v["problems"] = problems.iter().map(|(c, m)| serde_json::json!({"code": c, "message": m})).collect();
    show(cli, &v, |v| {
        let mut out = format!(
            "{} {} ({}) {} — {} bytes\nimports:",
            m.info.name,
            m.info.version,
            m.info.world,
            m.blake3,
            bytes_len(v)
        );
        for i in &imports {
            let mark = if cgs_core::plugin::import_allowed(i) { "ok" } else { "FORBIDDEN" };
            out.push_str(&format!("\n  {mark:<9} {i}"));
        }
        if let Some(routes) = v["service"]["routes"].as_array() {
            out.push_str("\nroutes:");
            for r in routes {
                out.push_str(&format!(
                    "\n  {} {}",
                    r["method"].as_str().unwrap_or("?"),
                    r["path"].as_str().unwrap_or("?")
                ));
            }
        } else {
            out.push_str("\n(give --key to have the service check routes, upgrade rules and clashes too)");
        }
        if problems.is_empty() {
            out.push_str("\nOK: no problem found");
        }
        for (code, message) in &problems {
            out.push_str(&format!("\nPROBLEM {code}: {message}"));
        }
        out
    });
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::CheckFailed { name: m.info.name.clone(), problems: problems.len() })
    }
}

fn bytes_len(v: &serde_json::Value) -> u64 {
    v["size"].as_u64().unwrap_or_default()
}

/// `cgs plugin verify`: exits non-zero on a mismatch. `from`: rebuild from the proposal's
/// provenance (cloned into the given directory, or a default one).
fn verify(cli: &Cli, name: &str, proposal: Option<&str>, ws: Option<&Path>, from: Option<Option<PathBuf>>) -> Result {
    let mut proposed_args = serde_json::Value::Null;
    let service = match proposal {
        Some(p) => {
            let (hash, args) = block_on(proposed_hash(&member(cli)?, name, p))??;
            proposed_args = args;
            hash
        }
        // The plugin list needs no login; a `--key` given must still be usable.
        None => {
            let c = if cli.key.is_some() { member(cli)?.client } else { client(cli)? };
            block_on(active_hash(&c, name))??
        }
    };
    let ws = match from {
        Some(into) => {
            let src = super::provenance::Source::from_proposal(&proposed_args["provenance"])?;
            let into = match into {
                Some(i) => i,
                None => src.default_dir(name)?,
            };
            let crate_dir = src.clone_into(&into)?;
            eprintln!("cloned {}@{} into {}", src.repository, src.commit, into.display());
            super::provenance::Source::workspace_in(&into, &crate_dir)?
        }
        None => workspace(ws)?,
    };
    let (_, target, _) = build::plugin_packages(&ws)?;
    // The rebuilt component is kept (for a closer look on a mismatch).
    let keep = target.join("cgs-verify");
    let built = build_into(ws.clone(), vec![name.to_string()], &keep, true)?;
    let b = built.first().ok_or(CliError::NothingBuilt)?;
    let local = b.measurement.blake3.to_hex();
    let local_bytes = std::fs::read(&b.path)?;
    let matches = local == service;
    let what = if proposal.is_some() { "proposed" } else { "active" };
    let why = if matches || proposal.is_none() {
        Vec::new()
    } else {
        super::provenance::differences(&proposed_args, &ws, &b.measurement.info.version, &local_bytes)
    };
    let v = serde_json::json!({
        "plugin": name, "local": local, what: service, "match": matches, "rebuilt": b.path,
        "provenance": proposed_args["provenance"], "differences": why,
    });
    show(cli, &v, |_| {
        let from = match proposed_args["provenance"]["commit"].as_str() {
            Some(c) => format!(" (proposed from commit {c})"),
            None => String::new(),
        };
        if matches {
            format!("MATCH: {name} rebuilt locally = {what} on the service = {local}{from}")
        } else {
            let mut text = format!(
                "MISMATCH: {name} rebuilt locally is {local}, the {what} one is {service}{from}\nyour rebuild: {}",
                b.path.display()
            );
            for w in &why {
                text.push_str(&format!("\n  differs: {w}"));
            }
            text
        }
    });
    if matches { Ok(()) } else { Err(CliError::Mismatch { name: name.to_string() }) }
}

/// The source checkout: `explicit`, else the workspace around the current directory.
pub(super) fn workspace(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(w) = explicit {
        return Ok(w.to_path_buf());
    }
    let cwd = std::env::current_dir()?;
    build::find_workspace(&cwd).ok_or(CliError::NoWorkspace { path: cwd, suggest_flag: true })
}

/// A scratch output directory for builds, under the workspace's target directory; the caller
/// removes it.
pub(super) fn scratch_dir(ws: &Path) -> Result<PathBuf> {
    let (_, target, _) = build::plugin_packages(ws)?;
    let dir = target.join(format!("cgs-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Build the plugins `names` of `ws` reproducibly into `out`.
pub(super) fn build_into(ws: PathBuf, names: Vec<String>, out: &Path, quiet: bool) -> Result<Vec<BuiltPlugin>> {
    // A quiet build hides cargo's own progress: say what runs instead.
    let progress =
        quiet.then(|| super::progress::Progress::start(format!("building {} reproducibly", names.join(", ")), ""));
    let req =
        BuildRequest { workspace: ws, selection: Selection::Named(names), out_dir: Some(out.to_path_buf()), quiet };
    let built = build::build(&req)?;
    if let Some(p) = progress {
        p.finish("built");
    }
    Ok(built)
}

/// The package name in `dir/Cargo.toml`.
fn package_name(dir: &Path) -> Result<String> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
        .map_err(|source| CliError::NotACrate { dir: dir.to_path_buf(), source })?;
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[package]")
        .find_map(|l| {
            l.trim()
                .strip_prefix("name")
                .and_then(|r| r.trim().strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
        })
        .ok_or_else(|| CliError::NoPackageName { dir: dir.to_path_buf() })
}

/// The hash of plugin `name` in the `set_plugin`/`set_constitution` of proposal `id`.
/// The hash proposal `id` installs for plugin `name`, with the action's arguments (version,
/// provenance).
async fn proposed_hash(m: &Member, name: &str, id: &str) -> Result<(String, serde_json::Value)> {
    let p = ok_json(m.authed("GET", &format!("/gov/proposals/{id}"), None).await)?;
    p["actions"]
        .as_array()
        .and_then(|a| {
            a.iter().find(|x| {
                matches!(x["name"].as_str(), Some("set_plugin" | "set_constitution")) && x["args"]["name"] == name
            })
        })
        .and_then(|x| x["args"]["blake3"].as_str().map(|h| (h.to_string(), x["args"].clone())))
        .ok_or_else(|| CliError::NotProposed { proposal: id.to_string(), name: name.to_string() })
}

/// The hash of the active plugin `name`.
async fn active_hash(c: &Client, name: &str) -> Result<String> {
    let plugins = ok_json(c.get("/gov/plugins").await)?;
    plugins["value"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .and_then(|p| p["blake3"].as_str().map(str::to_string))
        .ok_or_else(|| CliError::NoSuchPlugin { name: name.to_string() })
}

/// `name version blake3` lines, or a JSON array with `--json`.
fn print_measurements(json: bool, items: &[Measurement]) -> Result {
    if json {
        println!("{}", serde_json::to_string_pretty(items).map_err(CliError::Encode)?);
    } else {
        for m in items {
            println!("{m}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_name_from_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let e = package_name(dir.path()).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{} is not a crate directory: ", dir.path().display())), "{e}");
        std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\nname = \"no\"\n").unwrap();
        let e = package_name(dir.path()).unwrap_err().to_string();
        assert_eq!(e, format!("{}/Cargo.toml has no package name", dir.path().display()));
        std::fs::write(dir.path().join("Cargo.toml"), "[package]\nversion = \"1\"\nname = \"chaos\"\n").unwrap();
        assert_eq!(package_name(dir.path()).unwrap(), "chaos");
    }
}
