//! The supervisor: for each stream, plans epochs from the store, runs one ffmpeg attempt after
//! another through the [`pipeline`](crate::pipeline), forwards its records to the ordered store
//! queue, releases the generator's markers in step with its segments, reports the stream's state,
//! and restarts a failed source with backoff (each attempt a new epoch).
//!
//! States: `Starting` (an attempt opens the source) -> `Live` (its first segment is published) ->
//! `Retrying` (it failed: last error kept; backoff 1 s doubling to 30 s, reset after 5 minutes
//! live; the generator keeps its 100 ms..1 s) -> `Starting` ... `Stopped` at shutdown, at the end
//! of `--stop-after` and when a file played once (`--loop false`) ends; `Failed` only for what can
//! never work: a file whose output has no video track.
//!
//! One module per concern: [`plan`] (where an epoch starts), [`attempt`] (one ffmpeg run),
//! [`exit`] (what its end means), [`restart`] (the pauses between attempts), [`run`] (a
//! stream's whole run under its lease).

mod attempt;
mod exit;
mod plan;
mod restart;
mod run;

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub(crate) use run::run_stream;

use crate::config::StreamConfig;
use crate::events::Releaser;
use crate::publish::{Op, StatusBoard};
use crate::render::Renderer;
use crate::source::Source;
use crate::{GeneratorError, Report};

/// Time allowed to write queued records at exit when the store is slow or down.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// ffmpeg gets this long to finish after its input closed (generator) or SIGINT (sources).
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);
/// After its output ended, ffmpeg gets this long to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);
/// LL-HLS parts are kept for this many complete segments behind the live edge (PART-HOLD-BACK
/// is 3 part targets; players may still fetch them a little after), then dropped with their files.
const PART_HOLD_SEGMENTS: u64 = 4;

/// One stream being supervised.
struct StreamRun {
    cfg: StreamConfig,
    dir: std::path::PathBuf,
    media: crate::media_out::StreamMedia,
    tx: mpsc::UnboundedSender<Op>,
    stop_rx: watch::Receiver<bool>,
    status: StatusBoard,
    pos: plan::Position,
    report: Report,
    latest_end: Arc<AtomicI64>,
    /// The generator's renderer and marker releaser.
    synth: Option<(Arc<Renderer>, Releaser)>,
    /// The last attempt failed writing a file (the disk, not the source).
    disk_failure: bool,
    /// Restream targets (`--restream`), fed by every attempt's pipeline.
    restream: Option<hlsmark_outputs::Restream>,
    /// The stream's ingest lease, confirmed before every attempt.
    lease: crate::lease::Gate,
}

impl StreamRun {
    fn send(&self, op: Op) {
        // The publisher outlives every attempt; a send can only fail after it panicked.
        if self.tx.send(op).is_err() {
            tracing::error!(stream = %self.cfg.stream, "store writer is gone; record lost");
        }
    }

    fn stopping(&self) -> bool {
        *self.stop_rx.borrow()
    }
}

/// Checks what can be checked before anything runs: the configuration, ffmpeg, the directory.
pub(crate) async fn prepare(cfg: &StreamConfig, check_ffmpeg: bool) -> Result<(), GeneratorError> {
    cfg.validate()?;
    if matches!(cfg.source, Source::Page { .. }) {
        crate::page::check_browser(&cfg.chromium).map_err(crate::config::ConfigError::Source)?;
    }
    if check_ffmpeg {
        let version = crate::ffmpeg::check_ffmpeg(&cfg.ffmpeg).await?;
        tracing::debug!(ffmpeg = %version, "ffmpeg found");
    }
    let dir = cfg.stream_dir();
    std::fs::create_dir_all(&dir).map_err(|e| GeneratorError::Io {
        context: format!("creating {}", dir.display()),
        source: e,
    })?;
    Ok(())
}

/// A stop flag that turns true when `shutdown` resolves.
pub(crate) fn stop_signal(
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        // Keep the sender alive so receivers see `true`, not a closed channel.
        std::future::pending::<()>().await;
    });
    (stop_rx, task)
}
