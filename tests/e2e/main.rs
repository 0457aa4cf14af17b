//! End-to-end tests: real `cgs-host` processes on 127.0.0.1, real TLS, real plugin components
//! built by the build, driven through `cgs-client` and the `cgs` CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod analytics;
mod app_matrix;
mod attacks;
mod attacks_http;
mod attestation;
mod cli;
mod cluster;
mod collaboration;
mod governance;
mod isolation;
mod isv;
mod ledger;
mod recovery;
mod reproducible;
mod sandbox;
