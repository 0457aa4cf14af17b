//! The WASI surface a plugin gets: the interfaces it may import (checked when it is loaded)
//! and their deny-by-default linking.

use wasmtime::component::{Linker, ResourceTable};

use super::state::HostState;

/// Interfaces a plugin may import (one rule, shared with `cgs plugin check`).
pub(super) use cgs_core::plugin::import_allowed;

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
