//! The error envelope: `{"error":{"code":"PascalCaseCode","message":"human sentence"}}`.

use serde::{Deserialize, Serialize};

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

/// A machine-readable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// PascalCase code clients switch on.
    pub code: String,
    /// A sentence a person can act on.
    pub message: String,
}

impl ErrorEnvelope {
    /// An envelope.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { error: ErrorBody { code: code.into(), message: message.into() } }
    }

    /// JSON bytes of the envelope.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing two strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
