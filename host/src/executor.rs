//! Running synchronous work from async code.

/// Run synchronous work (plugin calls, signature checks, applying entries) off the async
/// executor when on a multi-threaded tokio runtime, so that a slow call does not stall other
/// tasks; on a current-thread runtime (tests) it runs in place.
pub fn off_executor<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
