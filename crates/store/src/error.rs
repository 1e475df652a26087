//! Typed store errors: each variant says what went wrong and with which value.

use uuid::Uuid;

/// The coarse class of a [`StoreError`], for mapping to HTTP status in one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something invalid (400/422).
    Invalid,
    /// The named stream has no epochs or markers (404).
    UnknownStream,
    /// The id exists with different content (409).
    Conflict,
    /// The backend cannot be reached now; retry later (503).
    Unavailable,
    /// A bug or corrupt data in the backend (500).
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid stream name {0:?}: use 1-64 of a-z, A-Z, 0-9, '_' and '-'")]
    InvalidStream(String),
    #[error("label must be 1 to 256 characters, got {0}")]
    LabelLength(usize),
    #[error("kind must be 1 to 64 characters of a-z, 0-9, '_', '-' and '.', got {0:?}")]
    InvalidKind(String),
    #[error("data is {0} bytes as JSON; at most 16384 are allowed")]
    DataTooLarge(usize),
    #[error("duration must not be negative, got {0} ticks")]
    NegativeDuration(i64),
    #[error("time out of range: {0}")]
    TimeOutOfRange(String),
    #[error("range start {from} is after its end {to} (90 kHz ticks)")]
    InvertedRange { from: i64, to: i64 },
    #[error("limit must be between 1 and 1000, got {0}")]
    InvalidLimit(u64),
    #[error("cursor {0:?} is not one this server issued")]
    InvalidCursor(String),
    #[error("stream {0:?} is not known: it has no epochs or markers")]
    UnknownStream(String),
    #[error("marker {0} already exists with different content")]
    Conflict(Uuid),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store timed out after {0} ms")]
    Timeout(u64),
    #[error("corrupt record {key}: {why}")]
    Corrupt { key: String, why: String },
    #[error("store backend error: {0}")]
    Backend(String),
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        use StoreError::*;
        match self {
            InvalidStream(_)
            | LabelLength(_)
            | InvalidKind(_)
            | DataTooLarge(_)
            | NegativeDuration(_)
            | TimeOutOfRange(_)
            | InvertedRange { .. }
            | InvalidLimit(_)
            | InvalidCursor(_) => ErrorKind::Invalid,
            UnknownStream(_) => ErrorKind::UnknownStream,
            Conflict(_) => ErrorKind::Conflict,
            Unavailable(_) | Timeout(_) => ErrorKind::Unavailable,
            Corrupt { .. } | Backend(_) => ErrorKind::Internal,
        }
    }
}
