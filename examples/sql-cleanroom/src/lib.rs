//! A SQL clean room for CGS analytics collaborations, on Apache DataFusion (docs/analytics.md).
//!
//! It runs one approved query per run ticket:
//! * [`room::Session`] opens an attested session and receives the dataset keys sealed (HPKE) to
//!   its key;
//! * [`sealed`] opens the owners' encrypted inputs and seals the output for its owner;
//! * [`engine`] runs the ticket's canonical SQL in memory and drops groups below the minimum size;
//! * [`room::run`] does it all over HTTPS to CGS. Along the way it records RecordAccess and
//!   RecordExecution audit events and the run's completion.

pub mod engine;
pub mod room;
pub mod sealed;
