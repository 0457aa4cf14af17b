//! `cgs-core`: what both sides of the CGS wire share.
//!
//! * typed identifiers parsed at the edge ([`TxId`], [`Blake3Hash`]);
//! * the error envelope every route answers with ([`ErrorEnvelope`]);
//! * plugin measurement: the BLAKE3 of a component and the name, version and world it declares
//!   ([`plugin`]);
//! * the ledger entry format ([`entry`]) and the **verifiers** of RFC 9162 proofs ([`merkle`]),
//!   C2SP signed checkpoints ([`note`]) and COSE receipts ([`receipt`]) — independent of the
//!   host's prover code;
//! * reproducible plugin builds from a source tree ([`build`]), shared by `cgs plugin build`,
//!   the sandbox and the tests so that all of them produce the same bytes.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod build;
pub mod entry;
mod error;
pub mod gov;
mod ids;
pub mod ledger_verify;
pub mod merkle;
pub mod node_attestation;
pub mod note;
pub mod plugin;
pub mod receipt;
pub mod store_format;

pub use error::{ErrorBody, ErrorEnvelope};
pub use ids::{Blake3Hash, ParseIdError, TxId};
