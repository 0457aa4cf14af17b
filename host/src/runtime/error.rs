//! Errors at the runtime's two boundaries: loading a plugin and dispatching a call.

use cgs_core::plugin::PluginError;

/// Why a component cannot be installed as a plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Not a component, or no valid `cgs-plugin-info`.
    #[error(transparent)]
    NotAPlugin(#[from] PluginError),
    /// The plugin name is reserved by the host.
    #[error("plugin name `{0}` is reserved")]
    ReservedName(String),
    /// It imports something outside the allowed interfaces.
    #[error(
        "plugin imports {0}, which plugins may not use (allowed: cgs:plugin/{{types,kv,context,log,cleanroom}}@0.1.0 and a deny-by-default WASI: wasi:cli stdio/environment/exit, wasi:io, wasi:random/insecure-seed)"
    )]
    ForbiddenImport(String),
    /// Its exports do not match the world it declares.
    #[error("plugin declares world `{declared}` but does not export it: {detail}")]
    WrongWorld {
        /// The declared world.
        declared: String,
        /// What is missing or wrong.
        detail: String,
    },
    /// Compilation failed.
    #[error("plugin does not compile: {0}")]
    Compile(String),
    /// Calling `routes()` or `list-actions()` failed.
    #[error("plugin failed its load-time probe: {0}")]
    Probe(String),
    /// A route is malformed.
    #[error("invalid route `{0}`: {1}")]
    InvalidRoute(String, String),
    /// Two routes (of this or another plugin) would match the same requests.
    #[error("route {0} conflicts with a route of plugin `{1}`")]
    RouteConflict(String, String),
    /// An action name does not belong to the plugin.
    #[error("invalid action `{0}`: {1}")]
    InvalidAction(String, String),
    /// Setting up the engine failed.
    #[error("runtime setup failed: {0}")]
    Setup(String),
}

/// How a plugin call failed on the guest side (not an error the plugin chose to return).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The guest panicked.
    Panic,
    /// The guest trapped (unreachable, out-of-bounds access, …).
    Trap,
    /// The call used up its fuel (deterministic compute limit).
    OutOfFuel,
    /// The call ran past its wall-clock deadline.
    Timeout,
    /// The guest tried to grow its memory beyond the cap.
    MemoryLimit,
}

impl FaultKind {
    /// The error code in the envelope.
    pub fn code(self) -> &'static str {
        match self {
            FaultKind::Panic => "PluginPanicked",
            FaultKind::Trap => "PluginTrapped",
            FaultKind::OutOfFuel => "PluginOutOfFuel",
            FaultKind::Timeout => "PluginTimedOut",
            FaultKind::MemoryLimit => "PluginMemoryLimitExceeded",
        }
    }
}

/// Why a dispatched call produced no response from the plugin.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The plugin returned an error (its choice, mapped from its `error-kind`).
    #[error("{code}: {message}")]
    Plugin {
        /// HTTP status.
        status: u16,
        /// Its code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The guest faulted; nothing it wrote is kept.
    #[error("plugin `{plugin}` failed: {detail}")]
    Fault {
        /// Which plugin.
        plugin: String,
        /// How.
        kind: FaultKind,
        /// Details for the log and the message.
        detail: String,
    },
    /// No instance slot is free; retry.
    #[error("the plugin runtime is at capacity: {0}")]
    Busy(String),
    /// Concurrent transactions kept conflicting; retry.
    #[error("the transaction conflicted with concurrent writes {0} times")]
    Conflict(u32),
    /// The store failed.
    #[error("the store is unavailable: {0}")]
    Store(String),
}

impl DispatchError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            DispatchError::Plugin { status, .. } => *status,
            DispatchError::Fault { .. } => 500,
            DispatchError::Busy(_) | DispatchError::Conflict(_) | DispatchError::Store(_) => 503,
        }
    }

    /// The envelope code.
    pub fn code(&self) -> &str {
        match self {
            DispatchError::Plugin { code, .. } => code,
            DispatchError::Fault { kind, .. } => kind.code(),
            DispatchError::Busy(_) => "ServiceBusy",
            DispatchError::Conflict(_) => "TransactionConflict",
            DispatchError::Store(_) => "StoreUnavailable",
        }
    }

    /// The outcome label of `/metrics` (`cgs_plugin_calls_total`): `refused` (the plugin's own
    /// error), the fault code, `busy`, `conflict` or `store`.
    pub fn outcome(&self) -> &'static str {
        match self {
            DispatchError::Plugin { .. } => "refused",
            DispatchError::Fault { kind, .. } => kind.code(),
            DispatchError::Busy(_) => "busy",
            DispatchError::Conflict(_) => "conflict",
            DispatchError::Store(_) => "store",
        }
    }

    /// The envelope message.
    pub fn message(&self) -> String {
        match self {
            DispatchError::Plugin { message, .. } => message.clone(),
            DispatchError::Fault { plugin, kind, detail } => match kind {
                FaultKind::Panic => format!("plugin `{plugin}` panicked: {detail}"),
                FaultKind::Trap => format!("plugin `{plugin}` trapped: {detail}"),
                FaultKind::OutOfFuel => {
                    format!("plugin `{plugin}` exceeded its compute budget ({detail}); nothing was written")
                }
                FaultKind::Timeout => {
                    format!("plugin `{plugin}` exceeded its time limit ({detail}); nothing was written")
                }
                FaultKind::MemoryLimit => {
                    format!("plugin `{plugin}` exceeded its memory limit ({detail}); nothing was written")
                }
            },
            other => other.to_string(),
        }
    }

    /// Whether a client may simply retry.
    pub fn retryable(&self) -> bool {
        matches!(self, DispatchError::Busy(_) | DispatchError::Conflict(_) | DispatchError::Store(_))
    }
}
