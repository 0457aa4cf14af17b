//! `host/src/http/request.rs` compiled here, with the one thing it needs of `host/src/http/mod.rs`.

use hyper::StatusCode;

/// The shape of `host/src/http/mod.rs::ApiError` that `request.rs` constructs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into() }
    }
}

/// `decode_path` and `parse_query`.
#[path = "../../host/src/http/request.rs"]
pub mod request;
