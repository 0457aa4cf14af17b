//! `cgs-core`: what both sides of the CGS wire share.
//!
//! * typed identifiers parsed at the edge ([`TxId`], [`Blake3Hash`]);
//! * the error envelope every route answers with ([`ErrorEnvelope`]);
//! * plugin measurement: the BLAKE3 of a component and the name, version and world it declares
//!   ([`plugin`]);
//! * the ledger entry format ([`entry`]) and the **verifiers** of RFC 9162 proofs ([`merkle`]),
//!   C2SP signed checkpoints ([`note`]) and COSE receipts ([`receipt`]) — independent of the
//!   host's prover code;
//! * the governance wire format and the `gov.members` record ([`gov`]).
//!
//! It does no IO (no files, processes, sockets or clocks: times are arguments) and builds for
//! `wasm32-wasip2`, so plugins share its types. The ledger's data file (`redb` tables and the
//! offline verifier) is in `cgs-ledger-format`; reproducible plugin builds, which run cargo, are
//! in `cgs-build`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod caller;
pub mod contract;
pub mod entry;
mod error;
pub mod gov;
mod ids;
pub mod merkle;
pub mod node_attestation;
pub mod note;
pub mod plugin;
pub mod receipt;

pub use error::{ErrorBody, ErrorEnvelope};
pub use ids::{Blake3Hash, ParseIdError, TxId};
