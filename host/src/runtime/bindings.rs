//! Generated bindings of the two plugin worlds. Nothing outside `runtime` sees these types; they
//! are mapped to the crate's own types at this boundary.

#![allow(missing_docs, clippy::all)]

pub mod app {
    wasmtime::component::bindgen!({
        world: "app-plugin",
        path: "../wit",
    });
}

pub mod gov {
    wasmtime::component::bindgen!({
        world: "constitution",
        path: "../wit",
        with: {
            "cgs:plugin/types": super::app::cgs::plugin::types,
            "cgs:plugin/kv": super::app::cgs::plugin::kv,
            "cgs:plugin/context": super::app::cgs::plugin::context,
            "cgs:plugin/log": super::app::cgs::plugin::log,
            "cgs:plugin/cleanroom": super::app::cgs::plugin::cleanroom,
        },
    });
}

pub use app::cgs::plugin::{cleanroom, context, kv, log, types};

/// The `actions` export, which both worlds have: looked up by name in either kind of component
/// (the types are the shared `types` interface's), so one code path serves both.
pub use app::exports::cgs::plugin::actions::{Guest as Actions, GuestIndices as ActionsIndices};
