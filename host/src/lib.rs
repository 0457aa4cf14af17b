//! `cgs-host`: the CGS node — an HTTPS API (hyper + rustls) in front of a WebAssembly plugin
//! runtime (wasmtime) and a transactional store.
//!
//! Layout: [`runtime`] runs plugins, [`store`] holds state, [`http`] serves the API, [`tls`]
//! keeps the service identity, [`node`] ties them together for `cgs-host sandbox` / `start`.

#![warn(missing_docs)]

pub mod attest;
pub mod auth;
pub mod cleanroom;
pub mod cluster;
pub mod devloop;
pub mod error;
pub mod executor;
pub mod fsutil;
pub mod gov;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod node;
pub mod panics;
pub mod reconcile;
pub mod recovery;
pub mod runtime;
pub mod schema;
pub mod service;
pub mod store;
pub mod tls;
pub mod txn;
