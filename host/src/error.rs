//! The error of the service layer (governance, authentication, clean rooms): a typed kind that
//! code decides on, the stable code clients match (`"NotAContractParty"`), and a message a person
//! can act on. Only `http/` turns a kind into a status.

/// What went wrong, as far as a caller's next step is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed or names something invalid (400).
    Invalid,
    /// No or bad credentials (401).
    Unauthenticated,
    /// The caller may not do this (403).
    Forbidden,
    /// What the request names does not exist (404).
    NotFound,
    /// Not allowed in the current state of what it names (405).
    NotAllowedInState,
    /// It conflicts with what exists: a replay, a second vote (409).
    Conflict,
    /// The request is too large (413).
    TooLarge,
    /// A concurrent change conflicted; the same request may simply be retried (503).
    Contended,
    /// Not ready yet (nothing committed, nothing loaded); retry shortly (503).
    NotReady,
    /// The node is at a limit (nonces, connections); retry later (503).
    Busy,
    /// The store or ledger failed (503).
    Unavailable,
    /// Refused by a plugin with the status it chose.
    Plugin(u16),
}

/// A refusal or failure of the service layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The stable code of the JSON error envelope.
    pub code: String,
    /// The message.
    pub message: String,
}

impl ServiceError {
    /// A refusal of `kind` with `code` and `message`.
    pub fn new(kind: ErrorKind, code: &str, message: impl Into<String>) -> Self {
        Self { kind, code: code.into(), message: message.into() }
    }

    /// The store or ledger failed.
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Unavailable, "StoreUnavailable", e.to_string())
    }
}

/// A refusal of `kind` with `code` and `message` (shorthand for [`ServiceError::new`]).
pub fn err(kind: ErrorKind, code: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::new(kind, code, message)
}
