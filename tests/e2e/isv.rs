//! The ISV story, outside this repository: `cgs plugin new` makes a plugin project of its own;
//! the ISV builds, checks and publishes it; three members rebuild it in their own directories
//! (other paths; the SDK is vendored in the project) and get MATCH; they vote; the routes answer
//! through `cgs call`. Then two competing upgrades: accepting 0.2.0 drops the open 0.1.1, and
//! 0.1.1 proposed again is refused as a downgrade.

use std::path::{Path, PathBuf};
use std::process::Command;

use cgs_e2e::{Sandbox, binaries, copy_tree, workspace};
use serde_json::{Value, json};

struct Env<'a> {
    sb: &'a Sandbox,
    /// One target directory for every build of the test: dependencies compile once (the bytes
    /// do not depend on it).
    target: PathBuf,
}

impl Env<'_> {
    /// `cgs ARGS` in `dir` as the member of `key`.
    fn cgs(&self, dir: &Path, key: Option<&str>, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new(&binaries().cli);
        cmd.current_dir(dir)
            .env("CGS_URL", &self.sb.url)
            .env("CGS_CA", &self.sb.ca)
            .env_remove("CGS_KEY")
            .env("CARGO_TARGET_DIR", &self.target)
            .env("CARGO_NET_OFFLINE", "true")
            .args(args);
        if let Some(k) = key {
            cmd.env("CGS_KEY", self.sb.data.join("members").join(format!("{k}.key")));
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok_json(&self, dir: &Path, key: Option<&str>, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (ok, out, err) = self.cgs(dir, key, &all);
        assert!(ok, "cgs {args:?}: {out}{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("cgs {args:?}: {e}: {out}"))
    }
}

/// `git ARGS` in `dir`, as a throwaway identity.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=ISV", "-c", "user.email=isv@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn set_version(project: &Path, version: &str, text: &str) {
    let manifest = project.join("Cargo.toml");
    let m = std::fs::read_to_string(&manifest).unwrap();
    let m = m.replacen(&format!("version = \"{}\"", current_version(&m)), &format!("version = \"{version}\""), 1);
    std::fs::write(&manifest, m).unwrap();
    let lib = project.join("src/lib.rs");
    let code = std::fs::read_to_string(&lib).unwrap().replace("no note `", &format!("{text}: no note `"));
    std::fs::write(&lib, code).unwrap();
}

fn current_version(manifest: &str) -> String {
    let line = manifest.lines().find(|l| l.starts_with("version = ")).unwrap();
    line.trim_start_matches("version = ").trim_matches('"').to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isv_plugin_project_of_its_own() {
    let sb = Sandbox::start(&[]).await.unwrap();
    let (isv, dp, cp) = (sb.member("isv"), sb.member("data-provider"), sb.member("code-provider"));
    let tmp = tempfile::tempdir().unwrap();
    let env = Env { sb: &sb, target: tmp.path().join("target") };
    let home = tmp.path().join("isv-home");
    std::fs::create_dir_all(&home).unwrap();

    // The ISV's own repository, outside this checkout.
    let project = home.join("notes");
    let sdk = workspace();
    let (ok, out, err) = env.cgs(
        &home,
        None,
        &["plugin", "new", "notes", "--dir", project.to_str().unwrap(), "--sdk", sdk.to_str().unwrap()],
    );
    assert!(ok, "{out}{err}");
    for f in [
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        "src/lib.rs",
        "cgs-sdk/SOURCE",
        "cgs-sdk/wit/cgs-plugin.wit",
    ] {
        assert!(project.join(f).is_file(), "{f}");
    }
    assert!(!project.starts_with(&sdk));

    // Reproducible: a copy of the project at another path builds the same bytes.
    let (ok, out, err) = env.cgs(&project, None, &["plugin", "build", "--twice"]);
    assert!(ok && err.contains("reproducible: a copy at"), "{out}{err}");

    // The ISV's repository: committed and pushed to its "origin" (a bare repository here).
    let origin = home.join("notes.git");
    git(&home, &["init", "--quiet", "--bare", origin.to_str().unwrap()]);
    git(&project, &["init", "--quiet"]);
    git(&project, &["add", "-A"]);
    git(&project, &["commit", "--quiet", "-m", "notes 0.1.0"]);
    git(&project, &["remote", "add", "origin", origin.to_str().unwrap()]);
    git(&project, &["push", "--quiet", "origin", "HEAD"]);
    let commit = git(&project, &["rev-parse", "HEAD"]);

    // Check before anything is uploaded (the service's view too), then publish.
    let checked = env.ok_json(&project, Some("isv"), &["plugin", "check", "."]);
    assert_eq!(checked["problems"], json!([]), "{checked}");
    assert_eq!(checked["service"]["ok"], true, "{checked}");
    assert_eq!(checked["service"]["routes"][0]["path"], "/app/notes/{id}", "{checked}");
    let published = env.ok_json(&project, Some("isv"), &["plugin", "publish", "."]);
    let proposal = published["proposal_id"].as_str().unwrap().to_string();
    let hash = published["args"]["blake3"].as_str().unwrap().to_string();
    assert_eq!(checked["blake3"], hash.as_str(), "check and publish build the same bytes");
    let provenance = &published["args"]["provenance"];
    assert_eq!(
        (provenance["repository"].as_str(), provenance["commit"].as_str(), &provenance["dirty"], &provenance["path"]),
        (origin.to_str(), Some(commit.as_str()), &json!(false), &json!(".")),
        "{provenance}"
    );

    // Each member rebuilds at other paths (the SDK is vendored in the project, so it travels
    // with it): the ISV and data-provider from their own checkouts, code-provider from the
    // proposal's provenance alone (a clone of the repository at the commit). Everyone gets MATCH.
    let dp_copy = tmp.path().join("data-provider").join("src").join("notes");
    copy_tree(&project, &dp_copy);
    for (member, dir) in [("isv", &project), ("data-provider", &dp_copy)] {
        let (ok, out, err) =
            env.cgs(dir, Some(member), &["plugin", "verify", "notes", "--proposal", &proposal, "--workspace", "."]);
        assert!(ok && out.starts_with("MATCH"), "{member}: {out}{err}");
    }
    let cp_home = tmp.path().join("code-provider");
    let cp_clone = cp_home.join("work").join("notes-plugin");
    std::fs::create_dir_all(&cp_home).unwrap();
    let (ok, out, err) = env.cgs(
        &cp_home,
        Some("code-provider"),
        &[
            "plugin",
            "verify",
            "notes",
            "--proposal",
            &proposal,
            "--from-provenance",
            "--clone-into",
            cp_clone.to_str().unwrap(),
        ],
    );
    assert!(
        ok && out.starts_with(&format!(
            "MATCH: notes rebuilt locally = proposed on the service = {hash} (proposed from commit {commit})"
        )),
        "code-provider: {out}{err}"
    );
    assert_eq!(git(&cp_clone, &["rev-parse", "HEAD"]), commit, "the clone is kept at the commit");
    // Before the vote the document has no `notes` routes; it is rebuilt when what runs changes.
    let before = sb.client.get("/openapi.json").await.unwrap().ok_json().unwrap();
    assert!(before["paths"].get("/app/notes/{id}").is_none());
    for m in [&isv, &dp, &cp] {
        m.vote(&proposal, true).await.unwrap().ok().unwrap();
    }

    // The routes answer: a member writes, anyone reads.
    let put = env.ok_json(&project, Some("isv"), &["call", "PUT", "/app/notes/n1", "--data", r#"{"text":"hello"}"#]);
    assert_eq!(put["text"], "hello");
    let got = env.ok_json(&project, None, &["call", "GET", "/app/notes/n1"]);
    assert_eq!((got["text"].as_str(), got["author"].as_str()), (Some("hello"), Some(isv.id().as_str())));
    // The scaffold's route schemas (src/api.json, a measured section) are in the service's
    // OpenAPI document.
    let doc = sb.client.get("/openapi.json").await.unwrap().ok_json().unwrap();
    let put_doc = &doc["paths"]["/app/notes/{id}"]["put"];
    assert_eq!(put_doc["summary"], "notes: Write a note (callers: member)", "{put_doc}");
    assert_eq!(put_doc["requestBody"]["content"]["application/json"]["schema"]["required"][0], "text");

    // README "Verify the ledger": a write through a route the default sandbox serves, its
    // receipt fetched by a member.
    let draft = env.ok_json(
        &project,
        Some("isv"),
        &["call", "PUT", "/app/contracts/receipt-demo", "--data", r#"{"data":{"terms":"demo"}}"#],
    );
    let tx = draft["tx_id"].as_str().unwrap().to_string();
    let receipt = tmp.path().join("receipt.cose");
    let (ok, out, err) = env.cgs(&project, Some("isv"), &["receipt", "get", &tx, "-o", receipt.to_str().unwrap()]);
    assert!(ok && receipt.is_file(), "{out}{err}");

    // Two competing upgrades: 0.1.1 and 0.2.0, both open; accepting 0.2.0 drops 0.1.1.
    set_version(&project, "0.1.1", "v0.1.1");
    let p011 = env.ok_json(&project, Some("isv"), &["plugin", "publish", "."]);
    set_version(&project, "0.2.0", "v0.2.0");
    let p020 = env.ok_json(&project, Some("isv"), &["plugin", "publish", "."]);
    let lines = env.cgs(&project, Some("isv"), &["proposal", "list", "--state", "Open"]).1;
    assert!(lines.contains("set_plugin notes 0.1.1") && lines.contains("set_plugin notes 0.2.0"), "{lines}");
    let id020 = p020["proposal_id"].as_str().unwrap().to_string();
    for m in [&isv, &dp, &cp] {
        m.vote(&id020, true).await.unwrap().ok().unwrap();
    }
    let id011 = p011["proposal_id"].as_str().unwrap();
    let dropped = isv.authed("GET", &format!("/gov/proposals/{id011}"), None).await.unwrap().ok_json().unwrap();
    assert_eq!(dropped["state"], "Dropped", "{dropped}");
    let missing = sb.client.get("/app/notes/none").await.unwrap();
    assert!(String::from_utf8_lossy(&missing.body).contains("v0.2.0: no note"), "0.2.0 runs");
    // A member whose checkout is still at 0.1.0 verifies the accepted 0.2.0: MISMATCH, and why.
    let (ok, out, _) = env.cgs(
        &dp_copy,
        Some("data-provider"),
        &["plugin", "verify", "notes", "--proposal", &id020, "--workspace", "."],
    );
    assert!(!ok && out.starts_with("MISMATCH"), "{out}");
    assert!(out.contains("differs: version: the proposal installs 0.2.0, your checkout builds 0.1.0"), "{out}");
    assert!(out.contains("your rebuild: ") && out.contains("cgs-verify"), "the rebuilt file is kept: {out}");
    // 0.1.1 again is a downgrade now.
    let again = isv.propose(json!([{"name": "set_plugin", "args": p011["args"].clone()}])).await.unwrap();
    assert_eq!((again.status, cgs_e2e::code(&again).as_str()), (400, "PluginDowngrade"));
}
