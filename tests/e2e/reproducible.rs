//! Two clean builds in two different directories, with different CARGO_HOMEs, print identical
//! plugin hashes.

use std::path::Path;
use std::process::Command;

use cgs_e2e::{binaries, copy_tree, workspace};

fn cargo_home() -> std::path::PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(Into::into)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap()).join(".cargo"))
}

#[test]
fn clean_builds_in_other_paths_and_cargo_homes_match() {
    let bins = binaries();
    // Build 1: this checkout, its target dir.
    let out1 = tempfile::tempdir().unwrap();
    let first = Command::new(&bins.cli)
        .current_dir(workspace())
        .args(["plugin", "build", "--out"])
        .arg(out1.path())
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));

    // Build 2: a copy of the sources at another path, a clean target dir, and a fresh CARGO_HOME
    // (sharing only the downloaded crate archives and index, so sources are unpacked at a new
    // path).
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("elsewhere").join("cgs-checkout");
    copy_tree(&workspace(), &copy);
    let home = tmp.path().join("other-cargo-home");
    std::fs::create_dir_all(home.join("registry")).unwrap();
    let real = cargo_home();
    for sub in ["index", "cache"] {
        let src = real.join("registry").join(sub);
        if src.exists() {
            std::os::unix::fs::symlink(&src, home.join("registry").join(sub)).unwrap();
        }
    }
    if real.join("config.toml").exists() {
        std::fs::copy(real.join("config.toml"), home.join("config.toml")).unwrap();
    }
    let out2 = tmp.path().join("out");
    let second = Command::new(&bins.cli)
        .current_dir(&copy)
        .args(["plugin", "build", "--out"])
        .arg(&out2)
        .env("CARGO_HOME", &home)
        .env("CARGO_TARGET_DIR", tmp.path().join("target"))
        .env("CARGO_NET_OFFLINE", "true")
        .output()
        .unwrap();
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(home.join("registry").join("src").exists(), "sources were unpacked under the new CARGO_HOME");

    let a = String::from_utf8_lossy(&first.stdout);
    let b = String::from_utf8_lossy(&second.stdout);
    assert_eq!(a.lines().count(), 4, "{a}");
    assert_eq!(a, b, "plugin hashes differ between checkouts / CARGO_HOMEs");

    // And no machine path leaked into the components.
    for entry in std::fs::read_dir(&out2).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for leak in [tmp.path().to_string_lossy().into_owned(), real.to_string_lossy().into_owned()] {
            assert!(!text.contains(&leak), "component contains the path {leak}");
        }
    }
}
