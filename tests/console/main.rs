//! The web console (`console/`) in a real browser: Debian's Chromium driven by playwright-core
//! (`console/tests/console.mjs`) against a real sandbox, three members in three browser
//! sessions; and the console's own cryptography (`console/tests/unit.mjs`) in Node.js.
//!
//! They need Node.js, `npm ci` in `console/` and Chromium (`.ci/run` installs them): elsewhere
//! they say they are skipped — but not under CI (`CGS_CI`), where a skip is a failure.
//!
//! Their own test binary: test binaries run one after another, so the browser does not share
//! the machine's ~1.1 cores with the other end-to-end tests' nodes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cgs_e2e::{Sandbox, binaries, plugins_dir, workspace};

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// What is missing to run the browser tests, if anything.
fn missing(browser: bool) -> Option<String> {
    // One `npm ci` at a time: both tests may find the packages missing.
    static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = SETUP.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let console = workspace().join("console");
    if Command::new("node").arg("--version").output().map_or(true, |o| !o.status.success()) {
        return Some("Node.js (node) is not installed".into());
    }
    if !console.join("node_modules/playwright-core").exists() {
        // `cargo test` does the set-up a fresh machine needs: the pinned packages (package-lock.json).
        let installed = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&console)
            .status()
            .is_ok_and(|s| s.success());
        if !installed || !console.join("node_modules/playwright-core").exists() {
            return Some("console/node_modules is missing and `npm ci` in console/ failed".into());
        }
    }
    if browser && !chromium().exists() {
        return Some(format!("no browser at {} (apt-get install chromium, or set CHROMIUM)", chromium().display()));
    }
    None
}

/// Skip (saying why) unless CI, where everything the tests need is installed.
fn skip(browser: bool) -> bool {
    let Some(why) = missing(browser) else { return false };
    assert!(std::env::var_os("CGS_CI").is_none(), "CGS_CI is set but the console tests cannot run: {why}");
    eprintln!("SKIPPED: {why}");
    true
}

async fn node(script: &str, env: Vec<(String, String)>) -> std::process::Output {
    let console = workspace().join("console");
    let script = script.to_string();
    tokio::task::spawn_blocking(move || {
        Command::new("node").arg(&script).current_dir(&console).envs(env).output().expect("node runs")
    })
    .await
    .unwrap()
}

fn report(what: &str, out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "{what} failed ({}):\n{stdout}\n{stderr}", out.status);
}

/// The console's CBOR, Merkle, signed-note and receipt code on trees it makes itself and on the
/// published vectors (`../shared/fixtures`, skipped where absent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consoles_cryptography_passes_its_unit_tests() {
    if skip(false) {
        return;
    }
    let out = node("tests/unit.mjs", Vec::new()).await;
    report("console/tests/unit.mjs", &out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("checks passed"));
}

/// A member signs in with a key file; the service page checks the node's signature and
/// report_data in the browser and compares the plugin hashes with our own build; a draft is
/// edited in two sessions (412 shown); it is proposed, and the three members approve in their own
/// sessions; a kill switch is pulled and the others see it; an event's receipt verifies in the
/// page and a tampered receipt is shown as failing; the navigation works from the keyboard.
/// `CGS_CONSOLE_SCREENSHOTS=DIR` keeps a screenshot of each page (docs/console/ holds them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collaboration_runs_in_the_console_in_a_real_browser() {
    if skip(true) {
        return;
    }
    // The core plugins only: greetings is what the ISV publishes from the browser.
    let tmp = tempfile::tempdir().unwrap();
    let core = tmp.path().join("plugins");
    std::fs::create_dir(&core).unwrap();
    for p in ["constitution", "contracts", "consent", "audit"] {
        std::fs::copy(plugins_dir().join(format!("{p}.wasm")), core.join(format!("{p}.wasm"))).unwrap();
    }
    let sb = Sandbox::start_with_plugins(&tmp.path().join("data"), &core, &[]).await.unwrap();
    // The hashes a member measures from their own rebuild (`cgs plugin measure`).
    let out = Command::new(&binaries().cli).args(["plugin", "measure"]).arg(plugins_dir()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // What the sandbox runs (greetings is published in the test).
            (f.len() == 3 && f[0] != "greetings").then(|| format!("{} {}\n", f[0], f[2]))
        })
        .collect();
    assert!(expected.contains("contracts "), "{expected}");
    // The plugin the ISV publishes from the browser: one the sandbox does not run.
    let measured = String::from_utf8_lossy(&out.stdout).to_string();
    let greetings = measured.lines().find(|l| l.starts_with("greetings ")).expect("greetings is built").to_string();
    let shots = std::env::var_os("CGS_CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .map(|p| if p.is_relative() { workspace().join(p) } else { p });
    let shots = shots.unwrap_or_else(|| tmp.path().join("shots"));
    let env = vec![
        ("CGS_URL".to_string(), sb.url.clone()),
        ("CGS_MEMBERS".to_string(), sb.data.join("members").display().to_string()),
        ("CGS_EXPECTED".to_string(), expected),
        ("CGS_SCREENSHOTS".to_string(), shots.display().to_string()),
        ("CHROMIUM".to_string(), chromium().display().to_string()),
        ("CGS_PLUGIN".to_string(), plugins_dir().join("greetings.wasm").display().to_string()),
        ("CGS_PLUGIN_MEASURED".to_string(), greetings),
    ];
    let out = node("tests/console.mjs", env).await;
    report("console/tests/console.mjs", &out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("console test: PASSED"));
    for page in [
        "signin",
        "service",
        "members",
        "proposals",
        "proposal",
        "proposal-plugin",
        "proposal-policy",
        "contract",
        "contract-conflict",
        "events-tampered",
        "user-contract",
    ] {
        assert!(Path::new(&shots).join(format!("{page}.png")).exists(), "a screenshot of {page}");
    }
}
