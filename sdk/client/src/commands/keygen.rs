//! `cgs keygen`: a member key pair.

use std::path::{Path, PathBuf};

use clap::Args;

use super::Result;
use super::common::{show, write};
use crate::Cli;

// No doc comment here: the `Keygen` variant's is the help text of `cgs keygen`.
#[derive(Args, Debug)]
pub(crate) struct KeygenArgs {
    /// Path prefix of the two files.
    #[arg(long)]
    out: PathBuf,
}

/// Write PREFIX.key and PREFIX.pub and print the member id.
pub(crate) fn run(cli: &Cli, args: &KeygenArgs) -> Result {
    let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let priv_path = args.out.with_extension("key");
    let pub_path = args.out.with_extension("pub");
    write_secret(&priv_path, cgs_core::gov::signing_key_to_pem(&key).as_bytes())?;
    write(&pub_path, cgs_core::gov::verifying_key_to_pem(&key.verifying_key()))?;
    let id = cgs_core::gov::member_id(&key.verifying_key());
    let v = serde_json::json!({"member_id": id, "private_key": priv_path, "public_key": pub_path});
    show(cli, &v, |_| {
        format!(
            "member id {id}\n  private key {} (keep it secret)\n  public key  {}",
            priv_path.display(),
            pub_path.display()
        )
    });
    Ok(())
}

/// Write a file only its owner may read.
fn write_secret(path: &Path, bytes: &[u8]) -> Result {
    write(path, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
