//! Logging into the host's log stream (tagged with the plugin name by the host).

use crate::sys;

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very verbose.
    Trace,
    /// Verbose.
    Debug,
    /// Normal.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

/// Log `message` at `level`.
pub fn log(level: Level, message: impl AsRef<str>) {
    sys::log(level, message.as_ref());
}

/// Log at debug level.
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message);
}

/// Log at info level.
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message);
}

/// Log at warn level.
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message);
}

/// Log at error level.
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message);
}
