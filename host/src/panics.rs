//! Panics as log lines: `cgs-host` installs a hook that reports a panic through `tracing` (so
//! `--log-format json` stays one JSON object per line), and panics the runtime expects and
//! recovers from (wasmtime-wasi's blocking stdio entering tokio from an async worker, see
//! `runtime::dispatch`) are logged at `debug` only.

use std::cell::Cell;

/// What wasmtime-wasi's blocking stdio says when it enters tokio from an async worker.
const EXPECTED_MESSAGE: &str = "Cannot start a runtime from within a runtime";

thread_local! {
    static EXPECTED: Cell<bool> = const { Cell::new(false) };
}

/// Report panics through `tracing`: `ERROR` with the message, location and (with
/// `RUST_BACKTRACE`) a backtrace; `debug` for the one panic [`catch_expected`] expects.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        if EXPECTED.with(Cell::get) && message.contains(EXPECTED_MESSAGE) {
            tracing::debug!(target: "cgs_host::runtime", panic = %info, "expected panic, recovered");
            return;
        }
        let backtrace = std::backtrace::Backtrace::capture();
        match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => {
                tracing::error!(panic = %info, backtrace = %backtrace, "panic")
            }
            _ => tracing::error!(panic = %info, "panic"),
        }
    }));
}

/// Run `f`, catching a panic (the caller re-runs the call off the async worker). Only
/// wasmtime-wasi's "runtime within a runtime" panic is logged at `debug`; any other is an
/// `ERROR` line.
pub fn catch_expected<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    EXPECTED.with(|e| e.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    EXPECTED.with(|e| e.set(false));
    r
}
