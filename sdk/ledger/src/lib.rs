//! `cgs-ledger-format`: the node's data file, `DIR/ledger.redb`.
//!
//! * its tables and byte layouts ([`store_format`]), written by the host and read back by
//! * the offline verifier of a stopped node's data directory ([`verify`], `cgs ledger verify
//!   DIR`), independent of the host's code;
//! * the HPKE construction of what is sealed to one key — ledger secrets to nodes, recovery
//!   shares to members and to a recovering node, the service's secrets to a joining node, a
//!   clean-room secret to a session ([`seal`]), for the host and the client alike;
//! * the recovery's formats both sides must agree on: the shares' HPKE info and aad, the bytes of
//!   the recovering node's signed status ([`recovery`]).
//!
//! The entry format, the Merkle tree and the checkpoint and receipt verifiers it relies on are
//! IO-free and live in `cgs-core`; this crate adds the storage engine (`redb`) and the files.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod recovery;
pub mod seal;
pub mod store_format;
pub mod verify;
