//! `cgs plugin build` and `cgs plugin measure`.

use std::process::Command;

use cgs_e2e::{binaries, workspace};

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(&binaries().cli).current_dir(workspace()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn build_and_measure_print_name_version_blake3() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let (ok, stdout, stderr) = run(&["plugin", "build", "-p", "greetings", "-p", "contracts", "--out", dir]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (line, name) in lines.iter().zip(["contracts", "greetings"]) {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 3, "{line}");
        assert_eq!(parts[0], name);
        assert_eq!(parts[1], "0.1.0");
        let bytes = std::fs::read(out.path().join(format!("{name}.wasm"))).unwrap();
        assert_eq!(parts[2], cgs_core::Blake3Hash::of(&bytes).to_hex(), "the printed hash is the BLAKE3 of the file");
    }

    let (ok, measured, stderr) = run(&["plugin", "measure", dir]);
    assert!(ok, "{stderr}");
    assert_eq!(measured, stdout, "measure prints exactly what build printed");

    let (ok, json, _) = run(&["--json", "plugin", "measure", dir]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["name"], "contracts");
    assert_eq!(v[0]["world"], "app-plugin");

    let (ok, _, stderr) = run(&["plugin", "measure", "/nonexistent-plugin-dir"]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent-plugin-dir"), "the error names the directory: {stderr}");
    let (ok, _, stderr) = run(&["plugin", "build", "-p", "no-such-plugin", "--out", dir]);
    assert!(!ok);
    assert!(stderr.contains("no-such-plugin") && stderr.contains("contracts"), "lists the known plugins: {stderr}");
}
