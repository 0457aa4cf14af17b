//! Errors a plugin returns; each kind maps to one HTTP status.

use std::fmt;

use crate::sys::KvError;
use crate::sys::bindings::app::cgs::plugin::types as wit;

/// A result whose error is a plugin [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The HTTP-facing category of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 400
    BadRequest,
    /// 401
    Unauthorized,
    /// 403
    Forbidden,
    /// 404
    NotFound,
    /// 405: not allowed in the resource's current state.
    NotAllowedInState,
    /// 409
    Conflict,
    /// 412
    PreconditionFailed,
    /// 413
    TooLarge,
    /// 429
    TooManyRequests,
    /// 503
    Unavailable,
    /// 500
    Internal,
}

impl ErrorKind {
    /// The HTTP status the host answers with.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::NotAllowedInState => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::PreconditionFailed => 412,
            ErrorKind::TooLarge => 413,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }
}

/// An error answer: `{"error":{"code":…,"message":…}}` with the status of its [`ErrorKind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The category (HTTP status).
    pub kind: ErrorKind,
    /// A PascalCase code clients switch on, e.g. `ContractAlreadyAccepted`.
    pub code: String,
    /// A sentence a person can act on.
    pub message: String,
}

macro_rules! ctor {
    ($(#[$doc:meta] $name:ident => $kind:ident;)*) => {
        $(
            #[$doc]
            pub fn $name(code: impl Into<String>, message: impl Into<String>) -> Self {
                Self::new(ErrorKind::$kind, code, message)
            }
        )*
    };
}

impl Error {
    /// An error of any kind.
    pub fn new(kind: ErrorKind, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { kind, code: code.into(), message: message.into() }
    }

    ctor! {
        /// 400: malformed or invalid input.
        bad_request => BadRequest;
        /// 401: missing or invalid credentials.
        unauthorized => Unauthorized;
        /// 403: the caller may not do this.
        forbidden => Forbidden;
        /// 404: no such resource.
        not_found => NotFound;
        /// 405: not allowed in the current state.
        not_allowed_in_state => NotAllowedInState;
        /// 409: conflicts with existing state.
        conflict => Conflict;
        /// 412: the version sent is not the current one.
        precondition_failed => PreconditionFailed;
        /// 413: too large.
        too_large => TooLarge;
        /// 429: rate-limited.
        too_many_requests => TooManyRequests;
        /// 503: not ready.
        unavailable => Unavailable;
        /// 500: a broken invariant.
        internal => Internal;
    }

    /// 400 `UnknownAction`.
    pub fn unknown_action(name: &str) -> Self {
        Self::bad_request("UnknownAction", format!("this plugin has no action named `{name}`"))
    }

    pub(crate) fn into_wit(self) -> wit::Error {
        let kind = match self.kind {
            ErrorKind::BadRequest => wit::ErrorKind::BadRequest,
            ErrorKind::Unauthorized => wit::ErrorKind::Unauthorized,
            ErrorKind::Forbidden => wit::ErrorKind::Forbidden,
            ErrorKind::NotFound => wit::ErrorKind::NotFound,
            ErrorKind::NotAllowedInState => wit::ErrorKind::NotAllowedInState,
            ErrorKind::Conflict => wit::ErrorKind::Conflict,
            ErrorKind::PreconditionFailed => wit::ErrorKind::PreconditionFailed,
            ErrorKind::TooLarge => wit::ErrorKind::TooLarge,
            ErrorKind::TooManyRequests => wit::ErrorKind::TooManyRequests,
            ErrorKind::Unavailable => wit::ErrorKind::Unavailable,
            ErrorKind::Internal => wit::ErrorKind::Internal,
        };
        wit::Error { kind, code: self.code, message: self.message }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.kind.status(), self.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    pub(crate) fn from_kv(e: KvError, table: &str) -> Self {
        match e {
            KvError::InvalidTable => Error::internal(
                "InvalidTable",
                format!(
                    "`{table}` is not a table this plugin may use (names are 1-64 chars of a-z 0-9 _ - .; \
                     app plugins read gov.members, gov.proposals, gov.service, gov.plugins and \
                     gov.constitution only, and no plugin reads gov.private.*)"
                ),
            ),
            KvError::ReadOnly => Error::forbidden(
                "TableReadOnly",
                format!("table `{table}` is read-only here (governance table or read-only route)"),
            ),
            KvError::TooLarge => {
                Error::too_large("ValueTooLarge", format!("a key or value for `{table}` is too large"))
            }
            KvError::Unavailable => Error::unavailable("StoreUnavailable", "the store is unavailable; retry later"),
        }
    }
}
