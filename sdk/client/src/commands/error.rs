//! The errors of `cgs`. A message is what `cgs` prints after `error: `; tests and users grep them,
//! so they only change on purpose.

use std::path::PathBuf;

/// Why a `cgs` command failed. Every variant exits with status 1 (see `main`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CliError {
    /// The command line cannot be carried out as given: a missing `--key` or `--ca`, a vote other
    /// than `approve`/`reject`, a malformed `--claim`, no `--action`, no plugin named, …
    #[error("{0}")]
    Usage(String),
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Standard input could not be read (`@-`).
    #[error("cannot read stdin: {0}")]
    Stdin(std::io::Error),
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another I/O failure: the current directory, file permissions, a scratch directory, stdout,
    /// the async runtime.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A `JSON|@FILE` argument is neither JSON nor `@FILE`.
    #[error("{flag} is not JSON (or @FILE): {source}")]
    JsonArg {
        /// The flag (`--data`).
        flag: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// A file, stdin or an argument is not JSON.
    #[error("{what} is not JSON: {source}")]
    NotJson {
        /// What was read: a file, `stdin`, ``--args of `NAME` ``.
        what: String,
        /// Why.
        source: serde_json::Error,
    },
    /// JSON output could not be produced.
    #[error(transparent)]
    Encode(serde_json::Error),
    /// The service could not be reached or refused the request (`CODE (STATUS): MESSAGE` from its
    /// error envelope), or the URL, certificate or member key is not usable.
    #[error(transparent)]
    Client(#[from] cgs_client::ClientError),
    /// The service answered without what the command needs.
    #[error("{0}")]
    Answer(String),
    /// The service runs no plugin of this name.
    #[error("the service runs no plugin `{name}`")]
    NoSuchPlugin {
        /// The plugin name.
        name: String,
    },
    /// A proposal does not install the plugin.
    #[error("proposal {proposal} does not install plugin `{name}`")]
    NotProposed {
        /// The proposal id.
        proposal: String,
        /// The plugin name.
        name: String,
    },
    /// No Cargo workspace around a directory.
    #[error(
        "{} is not inside a Cargo workspace{}",
        path.display(),
        if *suggest_flag { "; pass --workspace DIR" } else { "" }
    )]
    NoWorkspace {
        /// The directory.
        path: PathBuf,
        /// Whether to suggest `--workspace`.
        suggest_flag: bool,
    },
    /// `cgs plugin publish DIR`: DIR has no readable `Cargo.toml`.
    #[error("{} is not a crate directory: {source}", dir.display())]
    NotACrate {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `cgs plugin publish DIR`: DIR's `Cargo.toml` names no package.
    #[error("{}/Cargo.toml has no package name", dir.display())]
    NoPackageName {
        /// The directory.
        dir: PathBuf,
    },
    /// Building plugins failed (cargo, the workspace, an unknown plugin, an invalid component).
    #[error(transparent)]
    Build(Box<dyn std::error::Error + Send + Sync>),
    /// A build succeeded without building anything.
    #[error("nothing was built")]
    NothingBuilt,
    /// A directory of plugin components could not be measured.
    #[error(transparent)]
    Plugin(#[from] cgs_build::MeasureError),
    /// `cgs plugin measure`: no components in the directory.
    #[error("no *.wasm plugins in {}; run `cgs plugin build` first", dir.display())]
    NoPlugins {
        /// The directory.
        dir: PathBuf,
    },
    /// A `--node-key` is not a verifier key (nor a file holding one).
    #[error("{0} (expected origin+keyid+base64, see GET /node/identity)")]
    NodeKey(cgs_core::note::NoteError),
    /// `cgs receipt verify`: the receipt does not verify.
    #[error("receipt does NOT verify: {0}")]
    Receipt(cgs_core::receipt::ReceiptError),
    /// `cgs ledger verify`: the first problem found, naming its seqno.
    #[error("ledger does NOT verify: {0}")]
    Ledger(Box<dyn std::error::Error + Send + Sync>),
    /// `cgs plugin verify`: the local rebuild differs from the service's plugin.
    #[error("plugin `{name}` does not match a local rebuild")]
    Mismatch {
        /// The plugin name.
        name: String,
    },
    /// `cgs plugin verify --from-provenance`: the proposal's source cannot be fetched (no or an
    /// unusable provenance, or git failed).
    #[error("cannot rebuild from the proposal's provenance: {0}")]
    Provenance(String),
    /// `cgs plugin build --twice`: the copy built other bytes.
    #[error("NOT reproducible: {0}")]
    NotReproducible(String),
    /// `cgs plugin check`: the plugin would be refused (each problem is printed).
    #[error("plugin `{name}` would be refused: {problems} problem(s)")]
    CheckFailed {
        /// The plugin name.
        name: String,
        /// How many problems.
        problems: usize,
    },
    /// `cgs verify service`: checks failed (each is printed with its verdict).
    #[error("{0} check(s) failed")]
    ChecksFailed(usize),
}

impl CliError {
    /// The error as `--json` prints it (on stderr): `{"error":{"code","message"}}`, plus the
    /// HTTP `status` when the service refused. `code` is the service's envelope code, else the
    /// kind of failure (`Usage`, `Read`, `Unreachable`, `Mismatch`, …), so scripts branch on it.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use cgs_client::ClientError as C;
        let code = match self {
            Self::Client(C::Api { code, status, message }) => {
                return serde_json::json!({"error": {"code": code, "message": message, "status": status}});
            }
            Self::Client(C::Transport { .. }) => "Unreachable",
            Self::Client(C::Url(..)) => "InvalidUrl",
            Self::Client(C::Certificate(_)) => "InvalidCertificate",
            Self::Client(C::Refused(_)) => "Refused",
            Self::Client(C::Protocol { .. }) | Self::Answer(_) => "UnexpectedAnswer",
            // `ClientError` is `non_exhaustive`: a new kind of client failure.
            Self::Client(_) => "Client",
            Self::Usage(_) | Self::JsonArg { .. } | Self::NotJson { .. } | Self::NodeKey(_) => "Usage",
            Self::Read { .. } | Self::Stdin(_) => "Read",
            Self::Write { .. } | Self::Io(_) | Self::Encode(_) => "Io",
            Self::NoSuchPlugin { .. } => "NoSuchPlugin",
            Self::NotProposed { .. } => "NotProposed",
            Self::NoWorkspace { .. } | Self::NotACrate { .. } | Self::NoPackageName { .. } => "NoWorkspace",
            Self::Build(_) | Self::NothingBuilt | Self::Plugin(_) | Self::NoPlugins { .. } => "Build",
            Self::Receipt(_) => "ReceiptInvalid",
            Self::Ledger(_) => "LedgerInvalid",
            Self::Mismatch { .. } => "Mismatch",
            Self::Provenance(_) => "Provenance",
            Self::NotReproducible(_) => "NotReproducible",
            Self::CheckFailed { .. } => "CheckFailed",
            Self::ChecksFailed(_) => "ChecksFailed",
        };
        serde_json::json!({"error": {"code": code, "message": self.to_string()}})
    }

    /// A [`CliError::Usage`].
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }
}
