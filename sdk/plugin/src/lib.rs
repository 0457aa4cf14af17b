//! `cgs-plugin`: the guest SDK for CGS plugins.
//!
//! A CGS plugin is a WebAssembly component built from Rust for `wasm32-wasip2`. The host calls it
//! through the WIT worlds in `wit/cgs-plugin.wit`; this crate hides the generated bindings behind
//! a small, typed API:
//!
//! * [`Router`] maps routes (relative to `/app`) to handler functions;
//! * [`Request`] / [`Response`] with JSON helpers, [`Error`] with one constructor per HTTP error;
//! * [`Table`] — typed, transactional tables over the host's `kv` (JSON values, ordered keys);
//! * [`context`] (caller, transaction time set by the leader) and [`log`];
//! * [`app_plugin!`] (and `cgs_plugin_gov::constitution_plugin!`) export a type as a component of the
//!   `app-plugin` or `constitution` world and embed the plugin's name and version in it.
//!
//! # An ISV plugin in under 50 lines
//!
//! This is `sdk/plugin/example/src/lib.rs`, built into a real component and served over HTTPS by
//! the end-to-end tests:
//!
//! ```ignore
#![doc = include_str!("../example/src/lib.rs")]
//! ```
//!
//! Build it (and every plugin in the workspace) reproducibly with `cgs plugin build`; the printed
//! BLAKE3 is the plugin's measurement that members vote on.
//!
//! # Testing plugin logic natively
//!
//! Compiled for the host (plain `cargo test`), the same code runs against an in-process,
//! non-persistent table store and a settable [`context`]: see [`testing`]. Integration tests of
//! the real component run in the host's test suite.

#![warn(missing_docs)]

pub mod cleanroom;
pub mod context;
mod error;
mod http;
pub mod log;
mod resolver;
mod router;
mod sys;
mod table;
pub mod testing;

pub use error::{Error, ErrorKind, Result};
pub use http::{Access, Auth, Caller, CallerKind, Method, Request, Response};
pub use resolver::{Ballot, Member, MemberStatus, Outcome, Proposal, Resolution, Vote};
pub use router::{Handler, Router};
pub use table::{Key, Table, TxId, Versioned, blind, parse_version};

/// A governance action as proposed: `name` and JSON `args`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// `<plugin>.<action>` or a core action name.
    pub name: String,
    /// The arguments, as JSON text.
    pub args: String,
}

impl Action {
    /// Parse the arguments as `T`; a mismatch is a `400 InvalidActionArgs` naming the action.
    pub fn args<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.args).map_err(|e| {
            Error::bad_request("InvalidActionArgs", format!("arguments of action `{}` are invalid: {e}", self.name))
        })
    }
}

/// A governance action a plugin owns, for `GET /gov/plugins` and validation routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionInfo {
    /// The full action name, `<plugin>.<action>`.
    pub name: String,
    /// What it does and its arguments, for people.
    pub description: String,
}

impl ActionInfo {
    /// An action description.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self { name: name.into(), description: description.into() }
    }
}

/// An application plugin: routes under `/app`, and optionally governance actions it owns.
pub trait App {
    /// The routes and their handlers. Built for every request, so keep it cheap (no I/O).
    fn router() -> Router;

    /// The governance actions this plugin owns (`<plugin>.<action>`).
    fn actions() -> Vec<ActionInfo> {
        Vec::new()
    }

    /// Check an action at proposal time and again before it is applied.
    fn validate_action(action: &Action) -> Result<()> {
        Err(Error::unknown_action(&action.name))
    }

    /// Apply an accepted action inside the deciding transaction.
    fn apply_action(action: &Action) -> Result<()> {
        Err(Error::unknown_action(&action.name))
    }
}

/// The constitution: voting rules plus the core governance actions.
pub trait Constitution {
    /// Decide a proposal from its ballots and the current members.
    fn resolve(proposal: &Proposal, ballots: &[Ballot], members: &[Member]) -> Resolution;

    /// The actions the constitution owns.
    fn actions() -> Vec<ActionInfo>;

    /// Check an action at proposal time and again before it is applied.
    fn validate_action(action: &Action) -> Result<()>;

    /// Apply an accepted action inside the deciding transaction.
    fn apply_action(action: &Action) -> Result<()>;
}

/// An application plugin's entry points as plain functions (native builds only).
#[doc(hidden)]
pub struct NativeApp {
    /// [`App::router`].
    pub router: fn() -> Router,
    /// [`App::actions`].
    pub actions: fn() -> Vec<ActionInfo>,
    /// [`App::validate_action`].
    pub validate_action: fn(&Action) -> Result<()>,
    /// [`App::apply_action`].
    pub apply_action: fn(&Action) -> Result<()>,
}

/// A constitution's entry points as plain functions (native builds only).
#[doc(hidden)]
pub struct NativeConstitution {
    /// [`Constitution::resolve`].
    pub resolve: fn(&Proposal, &[Ballot], &[Member]) -> Resolution,
    /// [`Constitution::actions`].
    pub actions: fn() -> Vec<ActionInfo>,
    /// [`Constitution::validate_action`].
    pub validate_action: fn(&Action) -> Result<()>,
    /// [`Constitution::apply_action`].
    pub apply_action: fn(&Action) -> Result<()>,
}

/// Export `$ty` (which implements [`App`]) as an `app-plugin` component named `$name`; the
/// crate's version (`CARGO_PKG_VERSION`) becomes the plugin version.
///
/// ```ignore
/// cgs_plugin::app_plugin!(Greetings, name = "greetings");
/// ```
#[macro_export]
macro_rules! app_plugin {
    ($ty:ty, name = $name:literal) => {
        const _: () = {
            #[allow(dead_code)]
            struct __CgsAppExport;
            impl $crate::__private::app::exports::cgs::plugin::http_handler::Guest for __CgsAppExport {
                fn routes() -> ::std::vec::Vec<$crate::__private::app::cgs::plugin::types::Route> {
                    $crate::__private::app_routes::<$ty>()
                }
                fn handle(
                    req: $crate::__private::app::cgs::plugin::types::Request,
                ) -> ::std::result::Result<
                    $crate::__private::app::cgs::plugin::types::Response,
                    $crate::__private::app::cgs::plugin::types::Error,
                > {
                    $crate::__private::app_handle::<$ty>(req)
                }
            }
            $crate::__export_actions!(__CgsAppExport, [$crate::__private::app], $ty as $crate::App);
            // Exports only exist in the component; a native build (unit tests) has no
            // `cgs:plugin/...` symbols to clash with the platform linker.
            #[cfg(target_arch = "wasm32")]
    $crate::__private::app::__export_app_plugin!(__CgsAppExport with_types_in $crate::__private::app);
            $crate::__plugin_info!($name, "app-plugin");
        };
        /// The plugin's entry points, for native unit tests (the component exports them on
        /// `wasm32`).
        #[doc(hidden)]
        #[cfg(not(target_arch = "wasm32"))]
        pub fn __cgs_native_plugin() -> $crate::NativeApp {
            $crate::NativeApp {
                router: <$ty as $crate::App>::router,
                actions: <$ty as $crate::App>::actions,
                validate_action: <$ty as $crate::App>::validate_action,
                apply_action: <$ty as $crate::App>::apply_action,
            }
        }
    };
}

/// Implements the `actions` export that both worlds have, in the bindings at `$bindings`, for
/// `$export` with `$ty`'s implementation of `$tr` ([`App`] or [`Constitution`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_actions {
    ($export:ident, [$($bindings:tt)+], $ty:ty as $tr:path) => {
        impl $($bindings)+::exports::cgs::plugin::actions::Guest for $export {
            fn list_actions() -> ::std::vec::Vec<$crate::__private::app::cgs::plugin::types::ActionInfo> {
                $crate::__private::list_actions(<$ty as $tr>::actions())
            }
            fn validate_action(
                action: $crate::__private::app::cgs::plugin::types::Action,
            ) -> ::std::result::Result<(), $crate::__private::app::cgs::plugin::types::Error> {
                $crate::__private::run_action(<$ty as $tr>::validate_action, action)
            }
            fn apply_action(
                action: $crate::__private::app::cgs::plugin::types::Action,
            ) -> ::std::result::Result<(), $crate::__private::app::cgs::plugin::types::Error> {
                $crate::__private::run_action(<$ty as $tr>::apply_action, action)
            }
        }
    };
}

/// Describe the plugin's routes in `GET /openapi.json`: embeds the JSON file `$path` (relative
/// to the invoking source file, as `include_bytes!`) as the `cgs-plugin-api` custom section, part
/// of the measured bytes.
///
/// Keys are `"METHOD /template"` exactly as the [`Router`](crate::Router) declares them; values are
/// `{"summary", "request", "response", "status"}`, all optional, the schemas JSON Schema 2020-12
/// and `status` the success status (default 200):
///
/// ```json
/// {"PUT /greetings/{name}": {"summary": "Set a greeting", "status": 201,
///   "request": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}}}
/// ```
///
/// The host refuses to load a plugin that describes a route its router does not serve, so the
/// description cannot outlive the route.
#[macro_export]
macro_rules! api_schema {
    ($path:literal) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        #[used]
        #[unsafe(link_section = "cgs-plugin-api")]
        static __CGS_PLUGIN_API: [u8; include_bytes!($path).len()] = *include_bytes!($path);
    };
}

/// Embeds `{"name","version","world"}` as the `cgs-plugin-info` custom section, which
/// `cgs plugin measure` and the host read without running the component.
#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_info {
    ($name:literal, $world:literal) => {
        const __CGS_PLUGIN_INFO_JSON: &str = concat!(
            "{\"name\":\"",
            $name,
            "\",\"version\":\"",
            env!("CARGO_PKG_VERSION"),
            "\",\"world\":\"",
            $world,
            "\"}"
        );
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        #[used]
        #[unsafe(link_section = "cgs-plugin-info")]
        static __CGS_PLUGIN_INFO: [u8; __CGS_PLUGIN_INFO_JSON.len()] =
            $crate::__private::to_array(__CGS_PLUGIN_INFO_JSON);
    };
}

#[doc(hidden)]
pub mod __private {
    //! Glue used by the export macros; not a stable API.
    pub use crate::sys::bindings::app;
    use crate::sys::bindings::app::cgs::plugin::types as wit;
    use crate::{Action, App, Request};

    /// Copy a string into a fixed-size array (for the info custom section).
    pub const fn to_array<const N: usize>(s: &str) -> [u8; N] {
        let bytes = s.as_bytes();
        let mut out = [0u8; N];
        let mut i = 0;
        while i < N {
            out[i] = bytes[i];
            i += 1;
        }
        out
    }

    pub fn app_routes<T: App>() -> Vec<wit::Route> {
        T::router().wit_routes()
    }

    pub fn app_handle<T: App>(req: wit::Request) -> Result<wit::Response, wit::Error> {
        let req = Request::from_wit(req);
        T::router().dispatch(&req).map(|r| r.into_wit()).map_err(|e| e.into_wit())
    }

    pub fn list_actions(actions: Vec<crate::ActionInfo>) -> Vec<wit::ActionInfo> {
        actions.into_iter().map(|a| wit::ActionInfo { name: a.name, description: a.description }).collect()
    }

    /// Validate or apply `action` with `f` (an [`App`] or [`Constitution`] method).
    pub fn run_action(f: fn(&Action) -> crate::Result<()>, action: wit::Action) -> Result<(), wit::Error> {
        f(&Action { name: action.name, args: action.args }).map_err(|e| e.into_wit())
    }
}
