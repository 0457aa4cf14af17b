//! Host integration tests, one binary (as wasmtime does): real plugin components built by the
//! build (`cgs_build`), a real runtime, real TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod http;
mod join;
mod ledger;
mod replicas;
mod runtime;
mod users;
