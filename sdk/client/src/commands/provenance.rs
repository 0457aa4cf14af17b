//! Where a plugin's source is, as a `set_plugin` proposal records it (`args.provenance`), and
//! what a member's rebuild differs in when it does not match.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use sha2::Digest;

fn git(ws: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").current_dir(ws).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

/// The toolchain `rust-toolchain.toml` pins (`channel`).
pub(crate) fn toolchain(ws: &Path) -> Option<String> {
    let text = std::fs::read_to_string(ws.join("rust-toolchain.toml")).ok()?;
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("channel")?.trim_start().strip_prefix('=')?;
        Some(v.trim().trim_matches('"').to_string())
    })
}

/// SHA-256 (hex) of the workspace's `Cargo.lock`.
pub(crate) fn lock_sha256(ws: &Path) -> Option<String> {
    std::fs::read(ws.join("Cargo.lock")).ok().map(|b| hex::encode(sha2::Sha256::digest(b)))
}

/// The provenance of plugin crate `crate_dir` in workspace `ws`: repository (git remote
/// `origin`), commit and whether the tree had uncommitted changes, the crate's path in the
/// repository, the toolchain and the lock file's hash.
pub(crate) fn of(ws: &Path, crate_dir: &Path) -> Value {
    let rel = crate_dir
        .canonicalize()
        .ok()
        .zip(ws.canonicalize().ok())
        .and_then(|(c, w)| c.strip_prefix(&w).ok().map(|p| p.display().to_string()))
        .unwrap_or_default();
    json!({
        "repository": git(ws, &["remote", "get-url", "origin"]),
        "commit": git(ws, &["rev-parse", "HEAD"]),
        "dirty": git(ws, &["status", "--porcelain"]).is_some(),
        "path": if rel.is_empty() { ".".to_string() } else { rel },
        "toolchain": toolchain(ws),
        "lock_sha256": lock_sha256(ws),
    })
}

/// Absolute machine paths a component embeds (a `build.rs` or `include!` that captured one):
/// the first few, for a MISMATCH report.
pub(crate) fn embedded_paths(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut found: Vec<String> = Vec::new();
    for prefix in ["/home/", "/root/", "/Users/", "/tmp/", "/var/folders/", "/work/"] {
        for (i, _) in text.match_indices(prefix).take(3) {
            let path: String =
                text[i..].chars().take_while(|c| c.is_ascii_graphic() && !"\"'`".contains(*c)).take(120).collect();
            if !found.contains(&path) {
                found.push(path);
            }
        }
    }
    found.truncate(5);
    found
}

/// Why a local rebuild may differ from what was proposed, from the proposal's provenance and
/// what this checkout has: a sentence per difference found.
pub(crate) fn differences(proposed: &Value, ws: &Path, local_version: &str, local_bytes: &[u8]) -> Vec<String> {
    let mut why = Vec::new();
    if let Some(v) = proposed["version"].as_str()
        && v != local_version
    {
        why.push(format!("version: the proposal installs {v}, your checkout builds {local_version}"));
    }
    let p = &proposed["provenance"];
    if p.is_object() {
        let here = of(ws, ws);
        if let (Some(a), Some(b)) = (p["commit"].as_str(), here["commit"].as_str())
            && a != b
        {
            why.push(format!("commit: the proposal was built from {a}, your checkout is at {b}"));
        }
        if p["dirty"] == true {
            why.push("the proposer's tree had uncommitted changes: its bytes cannot be rebuilt from a commit".into());
        }
        if here["dirty"] == true {
            why.push("your checkout has uncommitted changes".into());
        }
        for (key, what) in [("toolchain", "toolchain"), ("lock_sha256", "Cargo.lock")] {
            if let (Some(a), Some(b)) = (p[key].as_str(), here[key].as_str())
                && a != b
            {
                why.push(format!("{what}: the proposal's is {a}, yours is {b}"));
            }
        }
    } else {
        why.push(
            "the proposal records no provenance (repository, commit, toolchain, lock file): ask its author".into(),
        );
    }
    let paths = embedded_paths(local_bytes);
    if !paths.is_empty() {
        why.push(format!(
            "your rebuild embeds absolute paths ({}): a build.rs, include! or env!(\"CARGO_MANIFEST_DIR\") captured \
             a machine path, so every machine builds other bytes",
            paths.join(", ")
        ));
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_paths_are_found() {
        let bytes = b"\0\0panicked at /home/alice/notes/src/lib.rs:3\0/cargo/registry/x\0";
        assert_eq!(embedded_paths(bytes), vec!["/home/alice/notes/src/lib.rs:3".to_string()]);
        assert!(embedded_paths(b"/cgs/src/lib.rs /cargo/registry").is_empty());
    }

    #[test]
    fn differences_name_what_differs() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("rust-toolchain.toml"), "[toolchain]\nchannel = \"1.95.0\"\n").unwrap();
        std::fs::write(tmp.path().join("Cargo.lock"), "lock").unwrap();
        let proposed =
            json!({"version": "0.2.0", "provenance": {"toolchain": "1.94.0", "lock_sha256": "00", "dirty": true}});
        let why = differences(&proposed, tmp.path(), "0.1.0", b"");
        let all = why.join("\n");
        assert!(all.contains("version: the proposal installs 0.2.0, your checkout builds 0.1.0"), "{all}");
        assert!(all.contains("toolchain: the proposal's is 1.94.0, yours is 1.95.0"), "{all}");
        assert!(all.contains("Cargo.lock: the proposal's is 00"), "{all}");
        assert!(all.contains("uncommitted changes"), "{all}");
        let none = differences(&json!({"version": "0.1.0"}), tmp.path(), "0.1.0", b"");
        assert!(none[0].contains("records no provenance"), "{none:?}");
    }
}
