//! `cgs plugin new NAME`: a plugin project of one's own — a standalone crate (its own workspace,
//! lock file, toolchain pin and `plugin` profile) with the CGS SDK vendored inside it
//! (`cgs-sdk/`: `cgs-plugin`, `cgs-core`, the WIT), so it builds reproducibly wherever it is
//! cloned. (A path dependency *outside* the project is not enough: cargo hashes its absolute
//! path into every symbol, so members with the SDK elsewhere would build other bytes.)

use std::path::{Path, PathBuf};

use super::{CliError, Result};

/// The project's files, for plugin `name` against the SDK checkout `sdk`.
fn files(name: &str, profile: &str, toolchain: &str) -> Vec<(&'static str, String)> {
    let ty: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

# What `cgs plugin build` builds: this crate, as the CGS plugin `{name}`.
[package.metadata.cgs]
plugin = "{name}"

[dependencies]
# The CGS plugin SDK, vendored in this repository (cgs-sdk/SOURCE says from where): inside the
# project, so every clone builds the same bytes. A git dependency pinned to a commit works too:
# cgs-plugin = {{ git = "https://…/cgs", rev = "<commit>" }}
cgs-plugin = {{ path = "cgs-sdk/sdk/plugin" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# A workspace of its own: this repository, not the SDK's.
[workspace]

{profile}"#,
    );
    let lib = format!(
        r#"//! `{name}`: a CGS workload plugin. Members write notes; anyone reads them.
//!
//! Routes (under `/app`): `PUT /{name}/{{id}}` `{{"text"}}` (members), `GET /{name}/{{id}}` (anyone).

use cgs_plugin::{{App, Auth, Error, Request, Response, Result, Router, Table, context}};
use serde::{{Deserialize, Serialize}};

#[derive(Serialize, Deserialize)]
struct Note {{
    text: String,
    author: String,
    at_ms: u64,
}}

#[derive(Deserialize)]
struct SetNote {{
    text: String,
}}

static NOTES: Table<str, Note> = Table::new("notes");

struct {ty};

impl App for {ty} {{
    fn router() -> Router {{
        Router::new().get("/{name}/{{id}}", Auth::ANYONE, get_note).put("/{name}/{{id}}", Auth::MEMBER, set_note)
    }}
}}

fn get_note(req: &Request) -> Result<Response> {{
    let id = req.param("id")?;
    match NOTES.get(id)? {{
        Some(n) => Response::ok(&n),
        None => Err(Error::not_found("NoteNotFound", format!("no note `{{id}}`"))),
    }}
}}

fn set_note(req: &Request) -> Result<Response> {{
    let body: SetNote = req.json()?;
    if body.text.is_empty() || body.text.len() > 4096 {{
        return Err(Error::bad_request("InvalidNote", "`text` must be 1 to 4096 bytes"));
    }}
    let note = Note {{ text: body.text, author: req.caller.id.clone(), at_ms: context::tx_time_ms() }};
    NOTES.put(req.param("id")?, &note)?;
    Response::created(&note)
}}

cgs_plugin::app_plugin!({ty}, name = "{name}");
// The routes' request and answer schemas, shown in the service's `GET /openapi.json`.
cgs_plugin::api_schema!("api.json");
"#
    );
    let note = r#"{"type": "object", "required": ["text", "author", "at_ms"],
      "properties": {"text": {"type": "string"}, "author": {"type": "string"}, "at_ms": {"type": "integer"}}}"#;
    let api = format!(
        r#"{{
  "GET /{name}/{{id}}": {{"summary": "A note", "response": {note}}},
  "PUT /{name}/{{id}}": {{
    "summary": "Write a note",
    "status": 201,
    "request": {{"type": "object", "required": ["text"],
      "properties": {{"text": {{"type": "string", "minLength": 1, "description": "1 to 4096 bytes of UTF-8"}}}}}},
    "response": {note}
  }}
}}
"#
    );
    vec![
        ("Cargo.toml", manifest),
        ("rust-toolchain.toml", toolchain.to_string()),
        ("src/lib.rs", lib),
        ("src/api.json", api),
        (".gitignore", "/target\n".to_string()),
    ]
}

/// The `[profile.plugin]` section of the SDK checkout's workspace manifest (the service's own
/// plugins are built with it; a plugin project uses the same).
fn plugin_profile(sdk: &Path) -> Result<String> {
    let manifest = super::common::read_to_string(&sdk.join("Cargo.toml"))?;
    let start = manifest
        .find("[profile.plugin]")
        .ok_or_else(|| CliError::usage(format!("{} has no [profile.plugin]: is it a CGS checkout?", sdk.display())))?;
    let rest = &manifest[start..];
    let end = rest[1..].find("\n[").map_or(rest.len(), |i| i + 2);
    Ok(format!(
        "# How plugins are built (the service's own profile): changing it changes the hash.\n{}",
        rest[..end].trim_end()
    ))
}

/// Create plugin project `name` in `dir` against the CGS checkout `sdk`; the files written.
pub(crate) fn new_project(name: &str, dir: &Path, sdk: &Path) -> Result<Vec<PathBuf>> {
    if !cgs_core::plugin::is_valid_name(name) {
        return Err(CliError::usage(format!(
            "`{name}` is not a plugin name: 1-32 chars of a-z 0-9 -, starting with a letter"
        )));
    }
    if !sdk.join("sdk/plugin/Cargo.toml").is_file() {
        return Err(CliError::usage(format!(
            "{} is not a CGS checkout (no sdk/plugin/Cargo.toml); give --sdk PATH",
            sdk.display()
        )));
    }
    if dir.join("Cargo.toml").exists() {
        return Err(CliError::usage(format!("{} already has a Cargo.toml; choose an empty directory", dir.display())));
    }
    let sdk = sdk.canonicalize()?;
    let toolchain = super::common::read_to_string(&sdk.join("rust-toolchain.toml"))?;
    let mut written = Vec::new();
    for (file, text) in files(name, &plugin_profile(&sdk)?, &toolchain) {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
        written.push(path);
    }
    vendor_sdk(&sdk, &dir.join("cgs-sdk"))?;
    written.push(dir.join("cgs-sdk"));
    // The SDK's lock file pins every dependency to what the service's plugins use; resolving
    // this workspace against it keeps those versions and drops the rest (offline).
    std::fs::copy(sdk.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    cgs_build::sync_lock(dir)?;
    written.push(dir.join("Cargo.lock"));
    Ok(written)
}

/// The SDK crates a plugin needs, by package name and path in a CGS checkout.
const SDK_CRATES: &[(&str, &str)] = &[("cgs-plugin", "sdk/plugin"), ("cgs-core", "sdk/core")];

/// Copy `cgs-plugin`, `cgs-core` and the WIT from the CGS checkout `sdk` to `dest`, with
/// standalone manifests (workspace inheritance resolved from `cargo metadata`), and record the
/// source in `dest/SOURCE`.
fn vendor_sdk(sdk: &Path, dest: &Path) -> Result {
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(sdk)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()?;
    if !out.status.success() {
        return Err(CliError::usage(format!(
            "cargo metadata failed in {}: {}",
            sdk.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|source| CliError::NotJson { what: "cargo metadata".into(), source })?;
    for (name, rel) in SDK_CRATES {
        let pkg = meta["packages"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == *name))
            .ok_or_else(|| CliError::usage(format!("{} has no package {name}", sdk.display())))?;
        copy_dir(&sdk.join(rel), &dest.join(rel))?;
        std::fs::write(dest.join(rel).join("Cargo.toml"), manifest(pkg, rel))?;
    }
    copy_dir(&sdk.join("wit"), &dest.join("wit"))?;
    let commit = std::process::Command::new("git")
        .current_dir(sdk)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    std::fs::write(
        dest.join("SOURCE"),
        format!(
            "The CGS plugin SDK (cgs-plugin, cgs-core, wit/), vendored by `cgs plugin new` from a CGS checkout at\ncommit {}.\nRe-vendor with a newer `cgs plugin new` to upgrade; the plugin's hash changes.\n",
            commit.as_deref().unwrap_or("(unknown: not a git checkout)")
        ),
    )?;
    Ok(())
}

/// A standalone manifest for an SDK package from its `cargo metadata` entry: inherited fields
/// resolved, path dependencies pointing at the other vendored crates.
fn manifest(pkg: &serde_json::Value, rel: &str) -> String {
    use std::fmt::Write as _;
    let mut m = String::new();
    let _ = writeln!(m, "# Vendored from the CGS repository ({rel}) by `cgs plugin new`; do not edit.");
    let _ = writeln!(m, "[package]\nname = {}\nversion = {}", pkg["name"], pkg["version"]);
    let _ = writeln!(m, "edition = {}\npublish = false\n", pkg["edition"]);
    let _ = writeln!(m, "[dependencies]");
    for d in pkg["dependencies"].as_array().into_iter().flatten() {
        if !d["kind"].is_null() || !d["target"].is_null() {
            continue; // dev and build dependencies, platform-specific ones: none the SDK needs
        }
        let name = d["name"].as_str().unwrap_or_default();
        let mut spec = Vec::new();
        match SDK_CRATES.iter().find(|(n, _)| *n == name) {
            Some((_, dep_rel)) => {
                let up = "../".repeat(rel.matches('/').count() + 1);
                spec.push(format!("path = \"{up}{dep_rel}\""));
            }
            None => spec.push(format!("version = {}", d["req"])),
        }
        if d["uses_default_features"] == false {
            spec.push("default-features = false".into());
        }
        if let Some(f) = d["features"].as_array().filter(|f| !f.is_empty()) {
            spec.push(format!("features = {}", serde_json::Value::Array(f.clone())));
        }
        if d["optional"] == true {
            spec.push("optional = true".into());
        }
        let key = d["rename"].as_str().unwrap_or(name);
        let package = if d["rename"].is_string() { format!(", package = \"{name}\"") } else { String::new() };
        let _ = writeln!(m, "{key} = {{ {}{package} }}", spec.join(", "));
    }
    if let Some(features) = pkg["features"].as_object().filter(|f| !f.is_empty()) {
        let _ = writeln!(m, "\n[features]");
        for (k, v) in features {
            let _ = writeln!(m, "{k} = {v}");
        }
    }
    m
}

/// Copy a directory tree (without build outputs).
fn copy_dir(from: &Path, to: &Path) -> Result {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_name() == "target" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_is_the_service_s() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let p = plugin_profile(&sdk).unwrap();
        assert!(p.contains("[profile.plugin]") && p.contains("panic = \"abort\""), "{p}");
        assert!(!p.contains("[profile.release]"), "{p}");
    }

    #[test]
    fn vendored_manifests_stand_alone() {
        let pkg = serde_json::json!({"name": "cgs-plugin", "version": "0.1.0", "edition": "2024", "features": {},
            "dependencies": [
                {"name": "cgs-core", "req": "*", "kind": null, "target": null, "uses_default_features": true, "features": [], "optional": false},
                {"name": "wit-bindgen", "req": "^0.63", "kind": null, "target": null, "uses_default_features": false, "features": ["macros"], "optional": false},
                {"name": "tempfile", "req": "^3", "kind": "dev", "target": null}]});
        let m = manifest(&pkg, "sdk/plugin");
        assert!(m.contains("name = \"cgs-plugin\"\nversion = \"0.1.0\""), "{m}");
        assert!(m.contains("cgs-core = { path = \"../../sdk/core\" }"), "{m}");
        assert!(
            m.contains("wit-bindgen = { version = \"^0.63\", default-features = false, features = [\"macros\"] }"),
            "{m}"
        );
        assert!(!m.contains("tempfile") && !m.contains("workspace"), "{m}");
    }

    #[test]
    fn names_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let e = new_project("Bad_Name", tmp.path(), &sdk).unwrap_err().to_string();
        assert!(e.contains("not a plugin name"), "{e}");
        let e = new_project("notes", tmp.path(), tmp.path()).unwrap_err().to_string();
        assert!(e.contains("not a CGS checkout"), "{e}");
    }
}
