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
    #[error("severity must be info, warning or critical, got {0:?}")]
    InvalidSeverity(String),
    #[error("color must be #rrggbb (six hex digits), got {0:?}")]
    InvalidColor(String),
    #[error("tags: {0}")]
    InvalidTags(String),
    #[error("filter {param}: {why}")]
    InvalidFilter { param: &'static str, why: String },
    #[error("a batch holds at most 1000 markers, got {0}")]
    BatchTooLarge(usize),
    #[error("marker of stream {marker:?} in a batch for stream {batch:?}")]
    StreamMismatch { marker: String, batch: String },
    /// One entry of a batch failed, so nothing of the batch was written. The entry's own error
    /// is part of the message (not a `source`: it would be printed twice).
    #[error("markers[{index}] (id {id}): {error}")]
    BatchEntry {
        index: usize,
        id: Uuid,
        error: Box<StoreError>,
    },
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
    #[error("lease: {0}")]
    InvalidLease(String),
    /// A newer ingest lease of the stream was granted: this writer's token is stale and its
    /// index writes are refused (see `lease.rs`).
    #[error(
        "stream {stream:?}: another ingest took over the lease (token {current}, ours {token}); \
         this ingest's writes are refused"
    )]
    Fenced {
        stream: String,
        token: u64,
        current: u64,
    },
}

impl StoreError {
    /// The error itself, or for a batch entry the entry's own error (what decides the code).
    pub fn innermost(&self) -> &StoreError {
        match self {
            StoreError::BatchEntry { error, .. } => error.innermost(),
            e => e,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        use StoreError::*;
        match self {
            InvalidStream(_)
            | LabelLength(_)
            | InvalidKind(_)
            | InvalidSeverity(_)
            | InvalidColor(_)
            | InvalidTags(_)
            | InvalidFilter { .. }
            | BatchTooLarge(_)
            | StreamMismatch { .. }
            | DataTooLarge(_)
            | NegativeDuration(_)
            | TimeOutOfRange(_)
            | InvertedRange { .. }
            | InvalidLimit(_)
            | InvalidCursor(_)
            | InvalidLease(_) => ErrorKind::Invalid,
            UnknownStream(_) => ErrorKind::UnknownStream,
            Conflict(_) | Fenced { .. } => ErrorKind::Conflict,
            Unavailable(_) | Timeout(_) => ErrorKind::Unavailable,
            Corrupt { .. } | Backend(_) => ErrorKind::Internal,
            BatchEntry { error, .. } => error.kind(),
        }
    }
}
