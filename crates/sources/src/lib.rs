//! hlsmark-sources: every source of a stream, one ingest pipeline, supervision.
//!
//! Data flow: a [`source::Source`] (a file, a camera, a URL, or the built-in generator, whose
//! frames [`render`] draws and [`pump`] paces into ffmpeg's stdin) -> ffmpeg (one per attempt,
//! [`ffmpeg::ffmpeg_args`]) writes fragmented MP4 on a pipe -> [`pipeline`] reads it box by box
//! (`hlsmark-media`), rebases it to HLS time, cuts segments in-process and writes them ->
//! the supervisor turns epochs, segments and the generator's [`events`] into store records
//! ([`publish`], one ordered queue per stream), anchors real sources to UTC ([`anchor`]), reports
//! each stream's state and restarts failed sources -> [`retention`] removes old media.
//!
//! Use [`run`] for one stream or [`run_many`] for several in one process (`hlsmark run`,
//! `hlsmark generate`). See `design/generator.md` (the ingest note) and `design/sources.md`.

pub mod anchor;
pub mod config;
pub mod encode;
pub mod events;
pub mod ffmpeg;
mod font;
pub mod import;
pub mod lease;
pub mod media_out;
pub mod page;
pub mod pipeline;
pub mod preview_tap;
pub mod publish;
pub mod pump;
pub mod render;
mod restream;
pub mod retention;
pub mod source;
mod supervisor;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use hlsmark_clock::SeqNo;
use hlsmark_store::{Store, StoreError};

pub use config::{ConfigError, GeneratorConfig, StreamConfig};
pub use events::marker_id;
pub use preview_tap::PreviewSpec;
pub use source::Source;

/// Why a stream could not start or go on.
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
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Import(#[from] import::ImportError),
    #[error("two streams are named {0:?}; stream names must be unique")]
    DuplicateStream(String),
    #[error("stream {stream}: {why}; this source cannot work, it is not retried")]
    Failed { stream: String, why: String },
    #[error(
        "stream {stream} is being ingested by {holder} (lease token {token}, {ttl_left_ms} ms \
         left unless renewed); start this one with --standby (HLSMARK_STANDBY=true) to take over \
         when that one stops"
    )]
    LeaseHeld {
        stream: String,
        holder: String,
        token: u64,
        ttl_left_ms: u128,
    },
}

/// What a stream's run did, for logs, tests and the benchmark scripts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The stream's name.
    pub stream: String,
    /// Epochs started by this run (generator: ffmpeg starts; real sources: epochs written,
    /// re-anchors included).
    pub epochs: u32,
    /// Restarts after a failure (exit, failure to open, stall).
    pub ffmpeg_restarts: u32,
    /// Restarts because no fragment came for the stall timeout.
    pub stalls: u32,
    /// Generator frames written into ffmpeg.
    pub frames_written: i64,
    /// Video frames and bytes in the published segments.
    pub frames_published: u64,
    pub bytes_published: u64,
    /// Segments handed to the store writer, and how many it stored.
    pub segments: u64,
    pub stored_segments: u64,
    /// Markers handed to the store writer, and how many it stored (a conflict is not stored).
    pub markers: u64,
    pub stored_markers: u64,
    /// Events whose first frame was lost with a dead ffmpeg and that had ended before the restart.
    pub markers_dropped: u64,
    /// Fragments before an attempt's first keyframe (not publishable).
    pub dropped_fragments: u64,
    /// Generator frames whose PTS in the segment was not their epoch time (must be 0).
    pub frame_mismatches: u64,
    /// Records dropped because the write queue was full.
    pub queue_dropped: u64,
    pub max_queued: u64,
    pub store_outages: u64,
    /// Whether every queued record was written before exit.
    pub flushed: bool,
    pub last_seq: Option<SeqNo>,
    /// Longest time from the fragment that completed a segment arriving to its record entering
    /// the store queue (the file written in between).
    pub max_publish_lag_ms: u64,
    /// Set when the stream stopped because its source can never work (state `failed`).
    pub failed: Option<String>,
}

/// Runs one stream until `shutdown` resolves (then finishes ffmpeg's output, publishes the last
/// segment and returns), its media ends (`stop_after`, a file played once) or its source proves
/// unusable for good (`GeneratorError::Failed`). Source and ffmpeg failures are retried inside
/// (each retry a new epoch); an error is returned only for what cannot be retried: bad
/// configuration, a missing ffmpeg, an unusable segment directory, a store refusing to read.
pub async fn run(
    mut config: StreamConfig,
    store: Arc<dyn Store>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Report, GeneratorError> {
    supervisor::prepare(&config, true).await?;
    import::resolve(&mut config, store.as_ref(), hlsmark_clock::UtcTime::now()).await?;
    let (stop_rx, stop_task) = supervisor::stop_signal(shutdown);
    let r = supervisor::run_stream(config, store, stop_rx).await;
    stop_task.abort();
    let report = r?;
    match &report.failed {
        Some(why) => Err(GeneratorError::Failed {
            stream: report.stream.clone(),
            why: why.clone(),
        }),
        None => Ok(report),
    }
}

/// Runs every stream in one process until `shutdown` resolves. Every configuration is checked
/// before any stream starts (names unique, values valid, ffmpeg usable); after that a stream that
/// fails never stops the others: its report carries the failure (`Report::failed`), and a stream
/// whose run hit a non-retryable error gets `failed` set to it.
pub async fn run_many(
    mut configs: Vec<StreamConfig>,
    store: Arc<dyn Store>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Vec<Report>, GeneratorError> {
    let mut names = HashSet::new();
    let mut checked = HashSet::new();
    for c in &configs {
        if !names.insert(c.stream.clone()) {
            return Err(GeneratorError::DuplicateStream(c.stream.to_string()));
        }
        let first = checked.insert(c.ffmpeg.clone());
        supervisor::prepare(c, first).await?;
    }
    // Imports are placed in UTC (and checked against what their streams hold) before any runs.
    let now = hlsmark_clock::UtcTime::now();
    for c in &mut configs {
        import::resolve(c, store.as_ref(), now).await?;
    }
    let (stop_rx, stop_task) = supervisor::stop_signal(shutdown);
    let tasks: Vec<_> = configs
        .into_iter()
        .map(|c| {
            let name = c.stream.to_string();
            let h = tokio::spawn(supervisor::run_stream(c, store.clone(), stop_rx.clone()));
            (name, h)
        })
        .collect();
    let mut reports = Vec::with_capacity(tasks.len());
    for (name, h) in tasks {
        let r = match h.await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(stream = %name, error = %error_chain(&e), "stream stopped");
                Report {
                    stream: name,
                    failed: Some(error_chain(&e)),
                    ..Report::default()
                }
            }
            Err(e) => Report {
                stream: name,
                failed: Some(format!("stream task failed: {e}")),
                ..Report::default()
            },
        };
        reports.push(r);
    }
    stop_task.abort();
    Ok(reports)
}

/// `error: cause: cause`, for one log line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
