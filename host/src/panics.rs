//! Panics as log lines: `cgs-host` installs a hook that reports a panic through `tracing` (so
//! `--log-format json` stays one JSON object per line), and panics the runtime expects and
//! recovers from (wasmtime-wasi's blocking stdio entering tokio from an async worker, see
//! `runtime::dispatch`) are logged at `debug` only.

use std::cell::Cell;

thread_local! {
    static EXPECTED: Cell<bool> = const { Cell::new(false) };
}

/// Report panics through `tracing`: `ERROR` with the message, location and (with
/// `RUST_BACKTRACE`) a backtrace; `debug` inside [`catch_expected`].
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        if EXPECTED.with(Cell::get) {
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

/// Run `f`, catching a panic the caller knows how to recover from (logged at `debug` only).
pub fn catch_expected<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    EXPECTED.with(|e| e.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    EXPECTED.with(|e| e.set(false));
    r
}
