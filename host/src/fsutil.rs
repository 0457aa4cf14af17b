//! Small file helpers: atomic writes, owner-only files, the node's secret key files.
//!
//! **Secrets in memory.** A directory given to [`keep_secrets_in_memory`] (a node's `DIR/node`
//! when its keys live only in memory: SEV-SNP, or `--keys-in-memory`) is never written: the
//! owner-only "files" under it (node key, join encryption key, the service's sealed secrets)
//! live in this process's memory and die with it. [`write_private`], [`read_private`],
//! [`load_or_create_secret`] and [`private_exists`] serve them from there.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Directories whose private files live in memory, and those files.
type Vault = (Vec<PathBuf>, HashMap<PathBuf, Vec<u8>>);
static IN_MEMORY: Mutex<Option<Vault>> = Mutex::new(None);

/// Keep every private file under `dir` in this process's memory from now on.
pub fn keep_secrets_in_memory(dir: &Path) {
    let mut m = IN_MEMORY.lock().unwrap_or_else(|p| p.into_inner());
    let (dirs, _) = m.get_or_insert_with(Default::default);
    if !dirs.iter().any(|d| d == dir) {
        dirs.push(dir.to_path_buf());
    }
}

/// Whether private files under `path` live in memory.
pub fn secrets_in_memory(path: &Path) -> bool {
    let m = IN_MEMORY.lock().unwrap_or_else(|p| p.into_inner());
    m.as_ref().is_some_and(|(dirs, _)| dirs.iter().any(|d| path.starts_with(d)))
}

/// Run `f` on the in-memory files if `path` is kept in memory.
fn in_memory<T>(path: &Path, f: impl FnOnce(&mut HashMap<PathBuf, Vec<u8>>) -> T) -> Option<T> {
    let mut m = IN_MEMORY.lock().unwrap_or_else(|p| p.into_inner());
    match m.as_mut() {
        Some((dirs, files)) if dirs.iter().any(|d| path.starts_with(d)) => Some(f(files)),
        _ => None,
    }
}

/// Read a private file (from memory when it is kept there).
pub fn read_private(path: &Path) -> std::io::Result<Vec<u8>> {
    match in_memory(path, |files| files.get(path).cloned()) {
        Some(Some(b)) => Ok(b),
        Some(None) => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} (kept in memory) does not exist", path.display()),
        )),
        None => std::fs::read(path),
    }
}

/// Remove a private file (from memory when it is kept there); absent is not an error.
pub fn remove_private(path: &Path) {
    if in_memory(path, |files| files.remove(path)).is_none() {
        let _ = std::fs::remove_file(path);
    }
}

/// Whether a private file exists (in memory when it is kept there).
pub fn private_exists(path: &Path) -> bool {
    in_memory(path, |files| files.contains_key(path)).unwrap_or_else(|| path.exists())
}

/// Write `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Write a secret to `path`, readable by the owner only (to memory when it is kept there).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if in_memory(path, |files| files.insert(path.to_path_buf(), bytes.to_vec())).is_some() {
        return Ok(());
    }
    write_atomic(path, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// The 32-byte secret in `path` (a node key, the ledger secret, the token key), created with
/// fresh random bytes, owner-only, if absent. `what` names it in errors.
pub fn load_or_create_secret(path: &Path, what: &str) -> std::io::Result<[u8; 32]> {
    match read_private(path) {
        Ok(b) => b.try_into().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} is not a 32-byte {what}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes: [u8; 32] = rand::random();
            write_private(path, &bytes)?;
            Ok(bytes)
        }
        Err(e) => Err(e),
    }
}
