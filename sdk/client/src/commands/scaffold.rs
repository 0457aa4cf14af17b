//! `cgs plugin new NAME`: a plugin project of one's own — a standalone crate (its own workspace,
//! lock file, toolchain pin and `plugin` profile) that depends on the CGS SDK by path and builds
//! reproducibly wherever it and the SDK live (`cgs plugin build` remaps both).

use std::path::{Path, PathBuf};

use super::{CliError, Result};

/// The project's files, for plugin `name` against the SDK checkout `sdk`.
fn files(name: &str, sdk: &Path, profile: &str, toolchain: &str) -> Vec<(&'static str, String)> {
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
# The CGS plugin SDK, from a CGS checkout (its path is remapped out of the plugin's bytes, so
# every member may keep theirs elsewhere). A git dependency works the same way:
# cgs-plugin = {{ git = "https://…/cgs", rev = "<commit>" }}
cgs-plugin = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# A workspace of its own: this repository, not the SDK's.
[workspace]

{profile}"#,
        sdk = sdk.join("sdk/plugin").display()
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
"#
    );
    vec![
        ("Cargo.toml", manifest),
        ("rust-toolchain.toml", toolchain.to_string()),
        ("src/lib.rs", lib),
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
    for (file, text) in files(name, &sdk, &plugin_profile(&sdk)?, &toolchain) {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
        written.push(path);
    }
    // The SDK's lock file pins every dependency to what the service's plugins use; resolving
    // this workspace against it keeps those versions and drops the rest (offline).
    std::fs::copy(sdk.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    cgs_build::sync_lock(dir)?;
    written.push(dir.join("Cargo.lock"));
    Ok(written)
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
    fn names_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let e = new_project("Bad_Name", tmp.path(), &sdk).unwrap_err().to_string();
        assert!(e.contains("not a plugin name"), "{e}");
        let e = new_project("notes", tmp.path(), tmp.path()).unwrap_err().to_string();
        assert!(e.contains("not a CGS checkout"), "{e}");
    }
}
