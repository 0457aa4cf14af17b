//! The sandbox's dev loop: `cgs-host sandbox --plugins DIR --watch`.
//!
//! At start and whenever a `*.wasm` in DIR changes, every component there that differs from
//! what runs under its name is uploaded, proposed (`set_plugin`, or `set_constitution`) by the
//! sandbox's first member and approved by all of them — the sandbox holds every member key. A
//! reload therefore goes through governance like any change: the ledger records it, the upgrade
//! rules apply (a changed plugin needs a higher version), and what runs is what was voted. A
//! refusal or a load failure is printed with the reason; the service keeps running.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cgs_core::Blake3Hash;
use cgs_core::plugin::World;

use crate::gov::Governance;
use crate::node::{SandboxKey, sandbox_vote};
use crate::runtime::{Caller, Runtime};

/// How often DIR is looked at.
const POLL: Duration = Duration::from_millis(500);

/// What DIR holds: `(file name, length, modification time)` of each `*.wasm`, sorted.
type Fingerprint = Vec<(String, u64, Option<SystemTime>)>;

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut v: Fingerprint = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), m.len(), m.modified().ok()))
        })
        .collect();
    v.sort();
    v
}

/// Bring what runs in line with DIR, by vote: one line per change made, refused or failed.
pub async fn sync(gov: &Governance, runtime: &Runtime, members: &[SandboxKey], dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let caller = Caller::member(members[0].0.id.clone());
    // In name order (the fingerprint is sorted).
    let files: Vec<PathBuf> = fingerprint(dir).into_iter().map(|(n, _, _)| dir.join(n)).collect();
    let running: Vec<(String, String, Blake3Hash)> =
        runtime.registry().plugins().map(|p| (p.info.name.clone(), p.info.version.clone(), p.blake3)).collect();
    for f in files {
        let shown = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = match std::fs::read(&f) {
            Ok(b) => b,
            Err(e) => {
                lines.push(format!("{shown}: cannot read it: {e}"));
                continue;
            }
        };
        let info = match cgs_core::plugin::read_info(&bytes) {
            Ok(i) => i,
            Err(e) => {
                lines.push(format!("{shown}: not a CGS plugin component ({e}); nothing changed"));
                continue;
            }
        };
        let hash = Blake3Hash::of(&bytes);
        let now = running.iter().find(|(n, _, _)| *n == info.name);
        if now.is_some_and(|(_, _, h)| *h == hash) {
            continue;
        }
        let from = now.map(|(_, v, _)| format!("{v} → ")).unwrap_or_default();
        let what = format!("{} {from}{}", info.name, info.version);
        if let Err(e) = gov.put_blob(&caller, bytes).await {
            lines.push(format!("{what}: upload failed: {}: {}", e.code, e.message));
            continue;
        }
        let action = match info.world {
            World::Constitution => "set_constitution",
            World::AppPlugin => "set_plugin",
        };
        let args = serde_json::json!({"name": info.name, "version": info.version, "blake3": hash.to_hex()});
        let body = cgs_core::gov::ActionBody { name: action.into(), args };
        match sandbox_vote(gov, members, vec![body]).await {
            Ok((id, state)) if state == "Accepted" => {
                lines.push(installed(gov, runtime, &info.name, hash, &what, &id).await);
            }
            Ok((id, state)) => lines.push(format!("{what}: proposal {id} is {state}, not Accepted; nothing changed")),
            Err(e) => {
                let hint = match e.code.as_str() {
                    "VersionReused" | "PluginDowngrade" => {
                        " (raise `version` in the plugin's Cargo.toml, e.g. to a pre-release like 0.2.0-dev.1, and rebuild)"
                    }
                    _ => "",
                };
                lines.push(format!("{what}: refused: {}: {}{hint}; nothing changed", e.code, e.message));
            }
        }
    }
    lines
}

/// Wait (a little) for the reconciler to load what was voted: a line saying it runs, or why not.
async fn installed(gov: &Governance, runtime: &Runtime, name: &str, hash: Blake3Hash, what: &str, id: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if runtime.registry().plugins().any(|p| p.blake3 == hash) {
            return format!("{what}: installed by a vote of the sandbox members (proposal {id})");
        }
        if let Some(why) = gov.plugin_failures().get(name) {
            return format!("{what}: voted (proposal {id}) but it did not load: {why}");
        }
        if std::time::Instant::now() > deadline {
            return format!("{what}: voted (proposal {id}), not loaded yet");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sync now, then whenever DIR's `*.wasm` change (once they stopped changing for one poll), until
/// the task is dropped. Lines go to stdout, prefixed `reload:`.
pub fn spawn(
    gov: Arc<Governance>,
    runtime: Arc<Runtime>,
    members: Vec<SandboxKey>,
    dir: PathBuf,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let report = |lines: Vec<String>| {
            for l in lines {
                println!("reload: {l}");
            }
        };
        // What DIR held *before* the first sync: a file written while it runs is a change.
        let mut seen = fingerprint(&dir);
        report(sync(&gov, &runtime, &members, &dir).await);
        loop {
            tokio::time::sleep(POLL).await;
            let now = fingerprint(&dir);
            if now == seen {
                continue;
            }
            // Wait until a build finished writing.
            let mut settled = now;
            loop {
                tokio::time::sleep(POLL).await;
                let again = fingerprint(&dir);
                if again == settled {
                    break;
                }
                settled = again;
            }
            seen = settled;
            report(sync(&gov, &runtime, &members, &dir).await);
        }
    })
}
