//! The WASI surface a plugin gets: the interfaces it may import (checked when it is loaded)
//! and their deny-by-default linking.

use wasmtime::component::{Linker, ResourceTable};

use super::state::HostState;

/// Interfaces a plugin may import. Versions of WASI 0.2.x are accepted.
pub(super) fn import_allowed(name: &str) -> bool {
    const CGS: &[&str] = &[
        "cgs:plugin/types@0.1.0",
        "cgs:plugin/kv@0.1.0",
        "cgs:plugin/context@0.1.0",
        "cgs:plugin/log@0.1.0",
        "cgs:plugin/cleanroom@0.1.0",
    ];
    const WASI: &[&str] = &[
        "wasi:cli/environment",
        "wasi:cli/exit",
        "wasi:cli/stdin",
        "wasi:cli/stdout",
        "wasi:cli/stderr",
        "wasi:cli/terminal-input",
        "wasi:cli/terminal-output",
        "wasi:cli/terminal-stdin",
        "wasi:cli/terminal-stdout",
        "wasi:cli/terminal-stderr",
        "wasi:io/error",
        "wasi:io/poll",
        "wasi:io/streams",
        "wasi:random/insecure-seed",
    ];
    if CGS.contains(&name) {
        return true;
    }
    match name.split_once("@0.2.") {
        Some((iface, patch)) => WASI.contains(&iface) && !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Link only the WASI interfaces in the allow-list, configured deny-by-default per call (no
/// environment, arguments, files, sockets or clocks; stdin empty; stdout/stderr to a bounded
/// buffer that goes to the log).
pub(super) fn add_wasi(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::WasiView;
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::p2::bindings::sync as wasi;
    use wasmtime_wasi::random::WasiRandom;

    struct HasIo;
    impl wasmtime::component::HasData for HasIo {
        type Data<'a> = &'a mut ResourceTable;
    }

    wasmtime_wasi::p2::bindings::io::error::add_to_linker::<HostState, HasIo>(linker, |t| t.ctx().table)?;
    wasi::io::poll::add_to_linker::<HostState, HasIo>(linker, |t| t.ctx().table)?;
    wasi::io::streams::add_to_linker::<HostState, HasIo>(linker, |t| t.ctx().table)?;
    wasmtime_wasi::p2::bindings::cli::exit::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::environment::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::stdin::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::stdout::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::stderr::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::terminal_input::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::terminal_output::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasmtime_wasi::p2::bindings::random::insecure_seed::add_to_linker::<HostState, WasiRandom>(linker, |t| {
        t.ctx().ctx.random()
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_allow_list() {
        for ok in
            ["cgs:plugin/kv@0.1.0", "wasi:cli/stderr@0.2.6", "wasi:io/streams@0.2.0", "wasi:random/insecure-seed@0.2.3"]
        {
            assert!(import_allowed(ok), "{ok}");
        }
        for bad in [
            "cgs:plugin/kv@0.2.0",
            "wasi:filesystem/types@0.2.6",
            "wasi:sockets/tcp@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
            "wasi:random/random@0.2.6",
            "wasi:clocks/wall-clock@0.2.6",
            "wasi:cli/stderr@0.3.0",
            "wasi:cli/stderr@0.2.x",
            "wasi:cli/stderr",
        ] {
            assert!(!import_allowed(bad), "{bad}");
        }
    }
}
