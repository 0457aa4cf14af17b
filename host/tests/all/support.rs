//! Builds the plugins the tests use, once per test binary, with the same reproducible build as
//! `cgs plugin build` — so a test never runs against a stale or checked-in component.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use cgs_build::{BuildRequest, Selection};
use cgs_host::runtime::{Runtime, RuntimeConfig};
use cgs_host::store::MemStore;

pub const TEST_PLUGINS: &[&str] = &["constitution", "contracts", "consent", "audit", "chaos", "greetings", "forbidden"];

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_path_buf()
}

struct Built {
    _dir: tempfile::TempDir,
    bytes: BTreeMap<String, Vec<u8>>,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let req = BuildRequest {
            workspace: workspace(),
            selection: Selection::Named(TEST_PLUGINS.iter().map(|s| s.to_string()).collect()),
            out_dir: Some(dir.path().to_path_buf()),
            quiet: true,
        };
        let built = cgs_build::build(&req).unwrap_or_else(|e| panic!("building test plugins failed: {e}"));
        let bytes = built
            .into_iter()
            .map(|b| (b.measurement.info.name.clone(), std::fs::read(&b.path).expect("read plugin")))
            .collect();
        Built { _dir: dir, bytes }
    })
}

/// The component bytes of a test plugin.
pub fn plugin(name: &str) -> &'static [u8] {
    built().bytes.get(name).unwrap_or_else(|| panic!("no test plugin `{name}`"))
}

/// A runtime with small, fast limits over a fresh in-memory store.
pub fn runtime(config: RuntimeConfig) -> Arc<Runtime> {
    Arc::new(Runtime::new(config, Arc::new(MemStore::new()), None).expect("runtime"))
}

pub fn fast_limits() -> RuntimeConfig {
    RuntimeConfig {
        fuel: 200_000_000,
        deadline: std::time::Duration::from_secs(5),
        memory_bytes: 16 << 20,
        max_instances: 16,
        ..RuntimeConfig::default()
    }
}
