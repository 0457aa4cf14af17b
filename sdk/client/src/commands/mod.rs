//! The verb groups of `cgs`, one module each with its clap subcommand enum and its `run`;
//! [`common`] holds what several groups share and [`CliError`] every failure.

pub(crate) mod analytics;
pub(crate) mod call;
pub(crate) mod common;
pub(crate) mod consent;
pub(crate) mod contract;
mod error;
pub(crate) mod event;
pub(crate) mod keygen;
pub(crate) mod ledger;
pub(crate) mod member;
pub(crate) mod node;
pub(crate) mod plugin;
pub(crate) mod policy;
pub(crate) mod progress;
pub(crate) mod proposal;
pub(crate) mod provenance;
pub(crate) mod receipt;
pub(crate) mod recovery;
pub(crate) mod scaffold;
pub(crate) mod verify;

pub(crate) use error::CliError;

/// The result of a command (or of a step of one).
pub(crate) type Result<T = (), E = CliError> = std::result::Result<T, E>;
