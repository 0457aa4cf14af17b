//! Where a plugin's source is, as a `set_plugin` proposal records it (`args.provenance`), and
//! what a member's rebuild differs in when it does not match.

use std::path::{Path, PathBuf};
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
    // The path in the repository (its top level), else in the workspace.
    let root = git(ws, &["rev-parse", "--show-toplevel"]).map(PathBuf::from).unwrap_or_else(|| ws.to_path_buf());
    let rel = crate_dir
        .canonicalize()
        .ok()
        .zip(root.canonicalize().ok())
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

/// Where a proposal's source is, checked enough to hand to git: `cgs plugin verify
/// --from-provenance`.
#[derive(Debug)]
pub(crate) struct Source {
    /// Repository URL or path (git remote `origin` of the proposer).
    pub repository: String,
    /// Full commit id.
    pub commit: String,
    /// The crate's path in the repository.
    pub path: PathBuf,
}

fn refuse(why: impl Into<String>) -> crate::commands::error::CliError {
    crate::commands::error::CliError::Provenance(why.into())
}

impl Source {
    /// The source a proposal's `provenance` names. The proposer wrote it: nothing in it reaches
    /// git as an option, and the path stays inside the clone.
    pub(crate) fn from_proposal(p: &Value) -> Result<Source, crate::commands::error::CliError> {
        if !p.is_object() {
            return Err(refuse("the proposal records no provenance: rebuild from a checkout with --workspace"));
        }
        let repository = p["repository"].as_str().ok_or_else(|| {
            refuse("the provenance names no repository (the proposer's checkout had no git remote `origin`)")
        })?;
        // An allow-list: https, ssh (`ssh://…` or `user@host:path`), file, or an absolute path.
        let scp_like = repository.split_once(':').is_some_and(|(h, _)| h.contains('@') && !h.contains('/'));
        let allowed = ["https://", "ssh://", "file://", "/"].iter().any(|p| repository.starts_with(p)) || scp_like;
        if !allowed
            || repository.len() > 2048
            || repository.starts_with('-')
            || repository.chars().any(char::is_control)
            || repository.contains("::")
        {
            return Err(refuse(format!(
                "the provenance's repository {repository:?} is not an https://, ssh://, file:// URL or an absolute path"
            )));
        }
        let commit = p["commit"].as_str().ok_or_else(|| refuse("the provenance names no commit"))?;
        if !(commit.len() == 40 || commit.len() == 64) || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(refuse(format!("the provenance's commit {commit:?} is not a full commit id")));
        }
        let raw = p["path"].as_str().unwrap_or(".");
        let path = PathBuf::from(raw);
        if raw.chars().any(char::is_control)
            || path.components().any(|c| !matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir))
        {
            return Err(refuse(format!("the provenance's path {} leaves the repository", path.display())));
        }
        if p["dirty"] == true {
            eprintln!(
                "warning: the proposer's tree had uncommitted changes: commit {commit} may not hold what was proposed"
            );
        }
        Ok(Source { repository: repository.to_string(), commit: commit.to_lowercase(), path })
    }

    /// `<user cache>/cgs/verify/<name>-<commit prefix>`: a directory of the member's own (mode
    /// 0700), never a shared one such as `/tmp`, where another user's `.cargo/config.toml` or
    /// `Cargo.toml` in a parent directory would take part in the build.
    pub(crate) fn default_dir(&self, name: &str) -> Result<PathBuf, crate::commands::error::CliError> {
        let name: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || "-_".contains(*c)).collect();
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .ok_or_else(|| refuse("no $HOME or $XDG_CACHE_HOME to clone into: pass --clone-into DIR"))?;
        let base = cache.join("cgs").join("verify");
        std::fs::create_dir_all(&base)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(base.join(format!("{name}-{}", &self.commit[..12])))
    }

    /// Clone the repository into `into` at the commit (or reuse a clone of exactly that commit
    /// with nothing else in it); returns the crate's directory, checked to be inside the clone.
    pub(crate) fn clone_into(&self, into: &Path) -> Result<PathBuf, crate::commands::error::CliError> {
        if !self.is_clean_clone(into) {
            if into.exists() && std::fs::read_dir(into)?.next().is_some() {
                return Err(refuse(format!(
                    "{} exists and is not a clean clone at {}: remove it or pass --clone-into DIR",
                    into.display(),
                    self.commit
                )));
            }
            let made = !into.exists();
            let cloned = self.clone_fresh(into);
            if cloned.is_err() && made {
                let _ = std::fs::remove_dir_all(into);
            }
            cloned?;
        }
        let root = into.canonicalize()?;
        let no_crate = || refuse(format!("commit {} has no crate at {}", self.commit, self.path.display()));
        let dir = into.join(&self.path).canonicalize().map_err(|_| no_crate())?;
        if !dir.starts_with(&root) {
            return Err(refuse(format!("{} leaves the clone (a symbolic link?)", self.path.display())));
        }
        if !dir.join("Cargo.toml").is_file() {
            return Err(no_crate());
        }
        Ok(dir)
    }

    /// The workspace of `crate_dir`, which must be inside the clone `into` (cargo would otherwise
    /// take a `Cargo.toml` above it into the build).
    pub(crate) fn workspace_in(into: &Path, crate_dir: &Path) -> Result<PathBuf, crate::commands::error::CliError> {
        let root = into.canonicalize()?;
        let ws = cgs_build::find_workspace(crate_dir)
            .and_then(|w| w.canonicalize().ok())
            .filter(|w| w.starts_with(&root))
            .ok_or_else(|| {
                refuse(format!(
                    "the crate at {} has no cargo workspace inside the clone {}",
                    crate_dir.display(),
                    root.display()
                ))
            })?;
        Ok(ws)
    }

    /// `into` is the top of a git checkout at exactly the commit, with nothing changed, added or
    /// ignored in it but build outputs (`target/`).
    fn is_clean_clone(&self, into: &Path) -> bool {
        let top = git(into, &["rev-parse", "--show-toplevel"]).map(PathBuf::from).and_then(|t| t.canonicalize().ok());
        if top.is_none() || top != into.canonicalize().ok() {
            return false;
        }
        let at_commit = git(into, &["rev-parse", "HEAD"]).is_some_and(|h| h == self.commit);
        let status = Command::new("git")
            .current_dir(into)
            .args(["status", "--porcelain", "--ignored", "--untracked-files=all"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        at_commit && status.is_some_and(|s| s.lines().all(|l| l.starts_with("!! target/")))
    }

    fn clone_fresh(&self, into: &Path) -> Result<(), crate::commands::error::CliError> {
        let run = |dir: Option<&Path>, args: &[&std::ffi::OsStr]| -> Result<(), crate::commands::error::CliError> {
            let mut cmd = Command::new("git");
            if let Some(d) = dir {
                cmd.current_dir(d);
            }
            // Only https, ssh and local repositories, whatever the user's configuration says; never
            // a credential prompt.
            let out = cmd
                .env("GIT_TERMINAL_PROMPT", "0")
                .args(["-c", "protocol.allow=never", "-c", "protocol.https.allow=always"])
                .args(["-c", "protocol.ssh.allow=always", "-c", "protocol.file.allow=always"])
                .args(["-c", "advice.detachedHead=false"])
                .args(args)
                .output()
                .map_err(|e| refuse(format!("cannot run git: {e}")))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(refuse(format!("git {:?}: {}", args, String::from_utf8_lossy(&out.stderr).trim())))
            }
        };
        let clone: [&std::ffi::OsStr; 6] = [
            "clone".as_ref(),
            "--quiet".as_ref(),
            "--no-checkout".as_ref(),
            "--".as_ref(),
            self.repository.as_ref(),
            into.as_os_str(),
        ];
        run(None, &clone)?;
        run(Some(into), &["checkout".as_ref(), "--quiet".as_ref(), self.commit.as_ref()])
    }
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
    fn a_proposers_provenance_never_reaches_git_as_an_option() {
        let c = "a".repeat(40);
        let ok = json!({"repository": "https://example.com/notes.git", "commit": c, "path": "plugins/notes"});
        assert_eq!(Source::from_proposal(&ok).unwrap().path, PathBuf::from("plugins/notes"));
        for good in ["ssh://git@example.com/n.git", "git@example.com:isv/notes.git", "file:///srv/n.git", "/srv/n.git"]
        {
            Source::from_proposal(&json!({"repository": good, "commit": c})).unwrap();
        }
        for bad in [
            json!({"repository": "--upload-pack=touch /tmp/x", "commit": c}),
            json!({"repository": "ext::sh -c touch% /tmp/x", "commit": c}),
            json!({"repository": "a\nb", "commit": c}),
            json!({"repository": "r", "commit": "HEAD"}),
            json!({"repository": "r", "commit": "--orphan"}),
            json!({"repository": "r", "commit": c, "path": "../../etc"}),
            json!({"repository": "r", "commit": c, "path": "/etc"}),
            json!({"repository": "/srv/n.git", "commit": c, "path": "a\u{1b}[2Jb"}),
            json!({"repository": "http://example.com/n.git", "commit": c}),
            json!({"repository": "fd::17", "commit": c}),
            json!({"repository": "relative/path", "commit": c}),
            json!({"commit": c}),
            json!(null),
        ] {
            let e = Source::from_proposal(&bad).unwrap_err().to_string();
            assert!(e.starts_with("cannot rebuild from the proposal's provenance"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_clone_is_made_at_the_commit_and_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(repo.join("p")).unwrap();
        let g = |args: &[&str]| {
            let ok = Command::new("git")
                .current_dir(&repo)
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .status()
                .unwrap()
                .success();
            assert!(ok, "git {args:?}");
        };
        g(&["init", "--quiet"]);
        std::fs::write(repo.join("p/Cargo.toml"), "[package]\nname = \"p\"\n").unwrap();
        g(&["add", "-A"]);
        g(&["commit", "--quiet", "-m", "one"]);
        let first = git(&repo, &["rev-parse", "HEAD"]).unwrap();
        std::fs::write(repo.join("p/Cargo.toml"), "[package]\nname = \"p2\"\n").unwrap();
        g(&["commit", "--quiet", "-am", "two"]);
        let p = json!({"repository": repo.to_str().unwrap(), "commit": first, "path": "p"});
        let src = Source::from_proposal(&p).unwrap();
        let into = tmp.path().join("clone");
        let dir = src.clone_into(&into).unwrap();
        assert!(std::fs::read_to_string(dir.join("Cargo.toml")).unwrap().contains("\"p\""), "the first commit");
        assert_eq!(src.clone_into(&into).unwrap(), dir, "reused");
        std::fs::write(dir.join("Cargo.toml"), "changed").unwrap();
        assert!(src.clone_into(&into).unwrap_err().to_string().contains("not a clean clone"));
        // An untracked or ignored file (a `.cargo/config.toml` patching sources) is not reused.
        g(&["checkout", "--quiet", "--", "."]);
        let into2 = tmp.path().join("clone2");
        let dir2 = src.clone_into(&into2).unwrap();
        std::fs::create_dir_all(into2.join(".cargo")).unwrap();
        std::fs::write(into2.join(".cargo/config.toml"), "[patch]").unwrap();
        assert!(src.clone_into(&into2).unwrap_err().to_string().contains("not a clean clone"), "{}", dir2.display());
        // A directory inside another checkout at that commit is not a clone of its own.
        let nested = repo.join("nested");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(nested.join("x"), "x").unwrap();
        assert!(src.clone_into(&nested).is_err());
        // A path that leaves the clone through a symbolic link is refused.
        #[cfg(unix)]
        {
            let into3 = tmp.path().join("clone3");
            src.clone_into(&into3).unwrap();
            let link =
                Source::from_proposal(&json!({"repository": repo.to_str().unwrap(), "commit": first, "path": "out"}))
                    .unwrap();
            std::os::unix::fs::symlink(tmp.path(), into3.join("out")).unwrap();
            let e = link.clone_into(&into3).unwrap_err().to_string();
            assert!(e.contains("not a clean clone") || e.contains("leaves the clone"), "{e}");
        }
        let none = Source::from_proposal(&json!({"repository": repo.to_str().unwrap(), "commit": first, "path": "q"}));
        assert!(none.unwrap().clone_into(&tmp.path().join("c2")).unwrap_err().to_string().contains("no crate at q"));
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
