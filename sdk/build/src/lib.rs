//! `cgs-build`: reproducible plugin builds, and the measurement of built plugins on disk.
//!
//! A plugin is any workspace package with `[package.metadata.cgs] plugin = "<name>"`. It is built
//! with the pinned toolchain (`rust-toolchain.toml`), `--locked`, `--target wasm32-wasip2` and the
//! `plugin` profile, with every machine-specific path remapped
//! (`--remap-path-prefix $CARGO_HOME=/cargo`, `… <workspace>=/cgs`), so the BLAKE3 of each
//! component is the same on any machine, checkout path and `CARGO_HOME`. `rustc` already writes
//! its own library paths as `/rustc/<commit>/…`. A path dependency *outside* the workspace is
//! remapped too, but that is not enough: cargo hashes its absolute path into every symbol, so
//! [`build`] warns about it (a standalone plugin project vendors the SDK inside itself).
//!
//! The build is `--locked`. The author's tools (`cgs plugin build`, `check`, `publish`) first
//! bring the lock file up to date for the workspace's own packages with [`sync_lock`] (a new
//! plugin crate or a version bump; never a dependency); a member's `cgs plugin verify` does not:
//! it builds exactly what the checkout says, and an out-of-date lock is an error.
//!
//! `cgs plugin build`, `cgs-host sandbox` (from a source checkout) and the test suites all call
//! [`build`], so the bytes they run are the bytes a collaborator can rebuild.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cgs_core::plugin::{self, Measurement, PluginError};
use serde::Deserialize;

/// The target plugins are built for.
pub const TARGET: &str = "wasm32-wasip2";
/// The cargo profile plugins are built with (defined in the workspace `Cargo.toml`).
pub const PROFILE: &str = "plugin";

/// Which plugin packages to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every plugin package whose metadata does not say `default = false`.
    Default,
    /// Every plugin package, including examples and test plugins.
    All,
    /// These plugins, by plugin name or package name.
    Named(Vec<String>),
}

/// A build request.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The workspace (directory with `Cargo.toml`).
    pub workspace: PathBuf,
    /// What to build.
    pub selection: Selection,
    /// Where to copy the components (`<name>.wasm`); default `<target-dir>/plugins`.
    pub out_dir: Option<PathBuf>,
    /// Capture cargo's output (returned in errors) instead of showing it.
    pub quiet: bool,
}

impl BuildRequest {
    /// Build the default plugins of `workspace` into `<target-dir>/plugins`.
    pub fn new(workspace: impl Into<PathBuf>) -> Self {
        Self { workspace: workspace.into(), selection: Selection::Default, out_dir: None, quiet: false }
    }
}

/// One built plugin.
#[derive(Debug, Clone)]
pub struct BuiltPlugin {
    /// The cargo package.
    pub package: String,
    /// The copied component.
    pub path: PathBuf,
    /// Its measurement.
    pub measurement: Measurement,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A tool could not be run.
    #[error("could not run `{tool}`: {source}")]
    Spawn {
        /// The command.
        tool: String,
        /// The error.
        source: std::io::Error,
    },
    /// `cargo metadata` or `cargo build` failed.
    #[error("`{command}` failed{}", if output.is_empty() { String::new() } else { format!(":\n{output}") })]
    Cargo {
        /// The command line.
        command: String,
        /// The tail of its output.
        output: String,
    },
    /// The workspace is not usable.
    #[error("{0}")]
    Workspace(String),
    /// A selected plugin does not exist.
    #[error("no plugin package named `{0}` in the workspace (plugins: {1})")]
    UnknownPlugin(String, String),
    /// A built component is not a valid plugin.
    #[error("{package}: {source}")]
    Invalid {
        /// The package.
        package: String,
        /// Why.
        source: plugin::PluginError,
    },
    /// Copying outputs failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<MetaPackage>,
    workspace_members: Vec<String>,
    target_directory: PathBuf,
    workspace_root: PathBuf,
}

#[derive(Deserialize)]
struct MetaPackage {
    id: String,
    name: String,
    /// Declared dependencies (`path` for path dependencies).
    #[serde(default)]
    dependencies: Vec<MetaDep>,
    targets: Vec<MetaTarget>,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct MetaDep {
    name: String,
    #[serde(default)]
    path: Option<PathBuf>,
}

#[derive(Deserialize)]
struct MetaTarget {
    name: String,
    kind: Vec<String>,
}

/// A plugin package found in the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginPackage {
    /// Cargo package name.
    pub package: String,
    /// Plugin name (`[package.metadata.cgs] plugin`).
    pub plugin: String,
    /// Built by default.
    pub default: bool,
    lib_name: String,
}

/// The cargo binary to use: the one running us if we are under cargo.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

fn run_capture(cmd: &mut Command, what: &str) -> Result<Vec<u8>, BuildError> {
    let out = cmd.output().map_err(|source| BuildError::Spawn { tool: what.to_string(), source })?;
    if !out.status.success() {
        return Err(BuildError::Cargo { command: what.to_string(), output: tail(&out.stderr) });
    }
    Ok(out.stdout)
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The plugin packages of a workspace, and its target directory.
pub fn plugin_packages(workspace: &Path) -> Result<(Vec<PluginPackage>, PathBuf, PathBuf), BuildError> {
    let manifest = workspace.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(BuildError::Workspace(format!("{} has no Cargo.toml", workspace.display())));
    }
    let stdout = run_capture(
        Command::new(cargo())
            .current_dir(workspace)
            .args(["metadata", "--no-deps", "--format-version", "1", "--manifest-path"])
            .arg(&manifest),
        "cargo metadata",
    )?;
    let meta: Metadata = serde_json::from_slice(&stdout)
        .map_err(|e| BuildError::Workspace(format!("cannot read cargo metadata: {e}")))?;
    let mut out = Vec::new();
    for p in &meta.packages {
        if !meta.workspace_members.contains(&p.id) {
            continue;
        }
        let Some(cgs) = p.metadata.as_ref().and_then(|m| m.get("cgs")) else { continue };
        let Some(name) = cgs.get("plugin").and_then(|v| v.as_str()) else { continue };
        let default = cgs.get("default").and_then(|v| v.as_bool()).unwrap_or(true);
        let lib = p
            .targets
            .iter()
            .find(|t| t.kind.iter().any(|k| k == "cdylib"))
            .ok_or_else(|| BuildError::Workspace(format!("plugin package {} has no cdylib target", p.name)))?;
        out.push(PluginPackage {
            package: p.name.clone(),
            plugin: name.to_string(),
            default,
            lib_name: lib.name.replace('-', "_"),
        });
    }
    out.sort_by(|a, b| a.plugin.cmp(&b.plugin));
    Ok((out, meta.target_directory, meta.workspace_root))
}

/// Make sure the pinned toolchain has the `wasm32-wasip2` standard library, installing it with
/// rustup if it is missing.
pub fn ensure_target(workspace: &Path) -> Result<(), BuildError> {
    let sysroot = run_capture(
        Command::new("rustc").current_dir(workspace).args(["--print", "sysroot"]),
        "rustc --print sysroot",
    )?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot).trim());
    if sysroot.join("lib/rustlib").join(TARGET).is_dir() {
        return Ok(());
    }
    run_capture(
        Command::new("rustup").current_dir(workspace).args(["target", "add", TARGET]),
        "rustup target add wasm32-wasip2",
    )?;
    Ok(())
}

/// `CARGO_HOME` as cargo resolves it.
fn cargo_home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        return Some(PathBuf::from(h));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo"))
}

/// The workspace around `manifest_dir` (the nearest directory up whose `Cargo.toml` declares
/// `[workspace]`), or `manifest_dir` itself.
fn workspace_of(manifest_dir: &Path) -> PathBuf {
    find_workspace(manifest_dir).unwrap_or_else(|| manifest_dir.to_path_buf())
}

/// Path dependencies that live outside `workspace_root` (a standalone plugin project's CGS
/// SDK), as `(their workspace root, /path-deps/<first package name>)`: the prefix each is
/// remapped to names the packages, not where they are on this machine. Read from the members'
/// declared dependencies (`cargo metadata --no-deps`: nothing is resolved or downloaded); the
/// path dependencies of such a dependency are covered when they live in its workspace (as the
/// SDK's do).
pub fn path_dependency_roots(workspace: &Path, workspace_root: &Path) -> Result<Vec<(PathBuf, String)>, BuildError> {
    let stdout = run_capture(
        Command::new(cargo())
            .current_dir(workspace)
            .args(["metadata", "--no-deps", "--format-version", "1", "--manifest-path"])
            .arg(workspace.join("Cargo.toml")),
        "cargo metadata",
    )?;
    let meta: Metadata = serde_json::from_slice(&stdout)
        .map_err(|e| BuildError::Workspace(format!("cannot read cargo metadata: {e}")))?;
    let root = workspace_root.canonicalize().unwrap_or_else(|_| workspace_root.to_path_buf());
    let mut roots: BTreeMap<PathBuf, String> = BTreeMap::new();
    for dep in meta.packages.iter().flat_map(|p| &p.dependencies) {
        let Some(dir) = &dep.path else { continue };
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if dir.starts_with(&root) {
            continue;
        }
        let name = roots.entry(workspace_of(&dir)).or_insert_with(|| dep.name.clone());
        if dep.name < *name {
            *name = dep.name.clone();
        }
    }
    Ok(roots.into_iter().map(|(dir, name)| (dir, format!("/path-deps/{name}"))).collect())
}

/// Bring `Cargo.lock` up to date for the workspace's own packages (a new plugin crate, a version
/// bump) without touching any dependency: `cargo update --workspace --offline`. Whether it
/// changed.
pub fn sync_lock(workspace: &Path) -> Result<bool, BuildError> {
    let lock = workspace.join("Cargo.lock");
    let before = std::fs::read(&lock).ok();
    run_capture(
        Command::new(cargo())
            .current_dir(workspace)
            .args(["update", "--workspace", "--offline", "--manifest-path"])
            .arg(workspace.join("Cargo.toml")),
        "cargo update --workspace --offline",
    )?;
    Ok(std::fs::read(&lock).ok() != before)
}

/// The rustflags that make plugin builds independent of where things are on disk.
pub fn reproducible_rustflags(workspace_root: &Path) -> Vec<String> {
    reproducible_rustflags_with(workspace_root, &[])
}

/// [`reproducible_rustflags`], also remapping the given path-dependency roots
/// ([`path_dependency_roots`]).
pub fn reproducible_rustflags_with(workspace_root: &Path, path_deps: &[(PathBuf, String)]) -> Vec<String> {
    let mut prefixes: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(home) = cargo_home() {
        if let Ok(canon) = home.canonicalize() {
            prefixes.push((canon, "/cargo"));
        }
        prefixes.push((home, "/cargo"));
    }
    if let Ok(canon) = workspace_root.canonicalize() {
        prefixes.push((canon, "/cgs"));
    }
    prefixes.push((workspace_root.to_path_buf(), "/cgs"));
    for (dir, to) in path_deps {
        if let Ok(canon) = dir.canonicalize() {
            prefixes.push((canon, to.as_str()));
        }
        prefixes.push((dir.clone(), to.as_str()));
    }
    prefixes.dedup_by(|a, b| a.0 == b.0);
    prefixes.into_iter().map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display())).collect()
}

/// Build plugins and copy them to the output directory.
pub fn build(req: &BuildRequest) -> Result<Vec<BuiltPlugin>, BuildError> {
    let (packages, target_dir, root) = plugin_packages(&req.workspace)?;
    let names = || packages.iter().map(|p| p.plugin.as_str()).collect::<Vec<_>>().join(", ");
    let selected: Vec<&PluginPackage> = match &req.selection {
        Selection::Default => packages.iter().filter(|p| p.default).collect(),
        Selection::All => packages.iter().collect(),
        Selection::Named(wanted) => wanted
            .iter()
            .map(|w| {
                packages
                    .iter()
                    .find(|p| &p.plugin == w || &p.package == w)
                    .ok_or_else(|| BuildError::UnknownPlugin(w.clone(), names()))
            })
            .collect::<Result<_, _>>()?,
    };
    if selected.is_empty() {
        return Err(BuildError::Workspace(format!("no plugins selected in {}", req.workspace.display())));
    }
    ensure_target(&req.workspace)?;
    let path_deps = path_dependency_roots(&req.workspace, &root)?;
    for (dir, _) in &path_deps {
        eprintln!(
            "warning: a path dependency lives outside the workspace ({}): cargo hashes its absolute path into \
             the plugin, so a build where it lives elsewhere gives other bytes; vendor it inside the workspace \
             (as `cgs plugin new` does) or use a git dependency pinned to a commit",
            dir.display()
        );
    }
    let flags = reproducible_rustflags_with(&root, &path_deps);
    let mut cmd = Command::new(cargo());
    cmd.current_dir(&req.workspace)
        .args([
            "build",
            "--locked",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(req.workspace.join("Cargo.toml"));
    for p in &selected {
        cmd.args(["-p", &p.package]);
    }
    // CARGO_ENCODED_RUSTFLAGS wins over RUSTFLAGS and every config-file rustflags, so nothing
    // from the caller's environment leaks into the plugin bytes.
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS")
        .stdout(Stdio::piped())
        .stderr(if req.quiet { Stdio::piped() } else { Stdio::inherit() });
    let command = format!(
        "cargo build --locked --target {TARGET} --profile {PROFILE} -p {}",
        selected.iter().map(|p| p.package.as_str()).collect::<Vec<_>>().join(" -p ")
    );
    let mut child = cmd.spawn().map_err(|source| BuildError::Spawn { tool: command.clone(), source })?;

    let stderr_reader = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = e.read_to_end(&mut b);
            b
        })
    });
    let mut artifacts: BTreeMap<String, PathBuf> = BTreeMap::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if msg.get("reason").and_then(|r| r.as_str()) != Some("compiler-artifact") {
                continue;
            }
            let Some(target_name) = msg.pointer("/target/name").and_then(|n| n.as_str()) else { continue };
            let lib = target_name.replace('-', "_");
            if let Some(files) = msg.get("filenames").and_then(|f| f.as_array()) {
                for f in files.iter().filter_map(|f| f.as_str()) {
                    if f.ends_with(".wasm") {
                        artifacts.insert(lib.clone(), PathBuf::from(f));
                    }
                }
            }
        }
    }
    let status = child.wait().map_err(|source| BuildError::Spawn { tool: command.clone(), source })?;
    let stderr_buf = stderr_reader.map(|h| h.join().unwrap_or_default()).unwrap_or_default();
    if !status.success() {
        return Err(BuildError::Cargo { command, output: tail(&stderr_buf) });
    }

    let out_dir = req.out_dir.clone().unwrap_or_else(|| target_dir.join("plugins"));
    std::fs::create_dir_all(&out_dir)
        .map_err(|source| BuildError::Io { path: out_dir.display().to_string(), source })?;
    let mut built = Vec::new();
    for p in selected {
        let src = artifacts
            .get(&p.lib_name)
            .cloned()
            .unwrap_or_else(|| target_dir.join(TARGET).join(PROFILE).join(format!("{}.wasm", p.lib_name)));
        let bytes = std::fs::read(&src).map_err(|source| BuildError::Io { path: src.display().to_string(), source })?;
        let measurement =
            plugin::measure(&bytes).map_err(|source| BuildError::Invalid { package: p.package.clone(), source })?;
        if measurement.info.name != p.plugin {
            return Err(BuildError::Workspace(format!(
                "package {} declares plugin `{}` in Cargo.toml but `{}` in its export macro",
                p.package, p.plugin, measurement.info.name
            )));
        }
        let dest = write_atomically(&out_dir, &format!("{}.wasm", p.plugin), &bytes)?;
        built.push(BuiltPlugin { package: p.package.clone(), path: dest, measurement });
    }
    built.sort_by(|a, b| a.measurement.info.name.cmp(&b.measurement.info.name));
    Ok(built)
}

/// Write `bytes` to `dir/name` through a temporary file of this write's own (a new random name,
/// created exclusively, removed if anything fails), renamed over it: a reader sees the old file
/// or the new one, and two builds of one plugin into one directory (two `cgs plugin verify` at
/// once) do not rename each other's temporary file away.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, BuildError> {
    use std::io::Write as _;
    let dest = dir.join(name);
    let io = |source| BuildError::Io { path: dest.display().to_string(), source };
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    // A component is no secret: readable as a plain write would leave it (the temporary file
    // is created owner-only).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(io)?;
    }
    tmp.persist(&dest).map_err(|e| io(e.error))?;
    Ok(dest)
}

/// Walk up from `start` to the directory whose `Cargo.toml` declares a `[workspace]` with plugin
/// packages (a CGS source checkout).
pub fn find_workspace(start: &Path) -> Option<PathBuf> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let manifest = d.join("Cargo.toml");
        if std::fs::read_to_string(&manifest).is_ok_and(|text| text.contains("[workspace]")) {
            return Some(d.to_path_buf());
        }
        dir = d.parent();
    }
    None
}

/// Why measuring a directory of components failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeasureError {
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A file is not a usable plugin.
    #[error(transparent)]
    Invalid(#[from] PluginError),
}

/// Measure every `*.wasm` file in `dir`, sorted by plugin name.
pub fn measure_dir(dir: &Path) -> Result<Vec<(PathBuf, Measurement)>, MeasureError> {
    let io = |source| MeasureError::Io { path: dir.display().to_string(), source };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let bytes =
                std::fs::read(&path).map_err(|source| MeasureError::Io { path: path.display().to_string(), source })?;
            out.push((path, plugin::measure(&bytes)?));
        }
    }
    out.sort_by(|a, b| a.1.info.name.cmp(&b.1.info.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty component with a `cgs-plugin-info` section.
    fn component(name: &str) -> Vec<u8> {
        let payload = format!(r#"{{"name":"{name}","version":"0.1.0","world":"app-plugin"}}"#);
        let mut section = vec![plugin::INFO_SECTION.len() as u8];
        section.extend_from_slice(plugin::INFO_SECTION.as_bytes());
        section.extend_from_slice(payload.as_bytes());
        let mut c = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00, 0, section.len() as u8];
        c.extend_from_slice(&section);
        c
    }

    /// Builds of one plugin into one directory at once (two `cgs plugin verify`, a CI run's
    /// tests): every write succeeds and the file is always one of the writes, whole.
    #[test]
    fn concurrent_writes_of_one_plugin_do_not_rename_each_other_away() {
        let dir = tempfile::tempdir().unwrap();
        let writers: Vec<_> = (0..8u8)
            .map(|w| {
                let dir = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        write_atomically(&dir, "analytics.wasm", &[w; 4096]).unwrap();
                        let now = std::fs::read(dir.join("analytics.wasm")).unwrap();
                        assert!(now.len() == 4096 && now.iter().all(|b| *b == now[0]), "a torn file");
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["analytics.wasm"], "no temporary file is left behind");
    }

    #[test]
    fn measures_the_wasm_files_of_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.wasm"), component("beta")).unwrap();
        std::fs::write(dir.path().join("a.wasm"), component("alpha")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a plugin").unwrap();
        let found = measure_dir(dir.path()).unwrap();
        let names: Vec<&str> = found.iter().map(|(_, m)| m.info.name.as_str()).collect();
        assert_eq!(names, ["alpha", "beta"]);
        assert_eq!(found[0].0, dir.path().join("a.wasm"));

        std::fs::write(dir.path().join("c.wasm"), b"junk").unwrap();
        assert!(matches!(measure_dir(dir.path()), Err(MeasureError::Invalid(PluginError::NotAComponent(_)))));
        let missing = dir.path().join("missing");
        let e = measure_dir(&missing).unwrap_err();
        assert!(e.to_string().starts_with(&format!("cannot read {}: ", missing.display())), "{e}");
    }
}
