//! hlsmark-generator: the built-in synthetic source and segmenter.
//!
//! Data flow: [`render`] draws frame `g` of a rolling checkerboard (mint corner while an
//! [`events`] event is active) -> [`pump`] paces frames to the wall clock and writes them as
//! rawvideo into one ffmpeg child ([`ffmpeg`]) -> ffmpeg encodes H.264 and cuts fMP4 segments ->
//! [`watch`] reads ffmpeg's private playlist -> the supervisor publishes each finished segment and
//! the events it makes visible to the store ([`publish`]) -> [`retention`] removes old media.
//!
//! Use [`run`] in-process (`hlsmark run`) or through `hlsmark generate`. See
//! `design/generator.md`.

pub mod config;
pub mod events;
pub mod ffmpeg;
mod font;
pub mod publish;
pub mod pump;
pub mod render;
pub mod retention;
mod supervisor;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;

use hlsmark_clock::SeqNo;
use hlsmark_store::{Store, StoreError};

pub use config::{ConfigError, GeneratorConfig};
pub use supervisor::marker_id;

/// Why the generator could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "ffmpeg not found at {path:?}: install it (`apt-get install ffmpeg`) or pass --ffmpeg /path/to/ffmpeg"
    )]
    FfmpegMissing { path: PathBuf },
    #[error("ffmpeg at {path:?} cannot be used: {why}")]
    FfmpegBroken { path: PathBuf, why: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What a run did, for logs, tests and the benchmark script.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Epochs started by this run (ffmpeg starts).
    pub epochs: u32,
    pub ffmpeg_restarts: u32,
    pub frames_written: i64,
    /// Segments handed to the store writer, and how many it stored.
    pub segments: u64,
    pub stored_segments: u64,
    /// Markers handed to the store writer, and how many it stored (a conflict is not stored).
    pub markers: u64,
    pub stored_markers: u64,
    /// Events whose first frame was lost with a dead ffmpeg and that had ended before the restart.
    pub markers_dropped: u64,
    /// Records dropped because the write queue was full.
    pub queue_dropped: u64,
    pub max_queued: u64,
    pub store_outages: u64,
    /// Whether every queued record was written before exit.
    pub flushed: bool,
    pub last_seq: Option<SeqNo>,
    /// Longest time from ffmpeg finishing a segment file to its record entering the store queue.
    pub max_publish_lag_ms: u64,
}

/// Runs the generator until `shutdown` resolves (then closes ffmpeg's input, waits for the last
/// segment, publishes it and returns) or `stop_after` media has been generated. ffmpeg crashes
/// are handled inside (new epoch); an error is returned only for what cannot be retried: bad
/// configuration, a missing ffmpeg, an unusable segment directory, a store refusing to read.
pub async fn run(
    config: GeneratorConfig,
    store: Arc<dyn Store>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Report, GeneratorError> {
    supervisor::run(config, store, shutdown).await
}
