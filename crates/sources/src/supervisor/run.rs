//! A stream's whole run: wait for its ingest lease, set up what lives across attempts (the
//! status board, the store writer, retention, restream targets, the preview tap), resume from
//! the store, supervise attempts, and at the end flush the queue (or journal what the store did
//! not take), clear the parts and report.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use hlsmark_store::{Store, StreamName, StreamState};
use tokio::sync::{mpsc, watch};

use super::plan::resume;
use super::{FLUSH_TIMEOUT, StreamRun};
use crate::config::StreamConfig;
use crate::events::Releaser;
use crate::publish::{
    JOURNAL_FILE, Op, PublishStats, StatusBoard, replay_journal, run_publisher, save_journal,
};
use crate::render::Renderer;
use crate::retention::{NO_END, clear_parts, remove_temps, retention_loop};
use crate::{GeneratorError, Report};

/// Runs one (prepared) stream until `stop_rx` turns true, its media ends, or it fails for good
/// (`Report::failed`), while holding the stream's ingest lease ([`crate::lease`]): waits for it
/// first (standby) or ends with [`GeneratorError::LeaseHeld`]; a fenced run goes back to
/// standby (with `--standby`) or ends with `Report::failed`.
pub(crate) async fn run_stream(
    cfg: StreamConfig,
    store: Arc<dyn Store>,
    mut stop_rx: watch::Receiver<bool>,
) -> Result<Report, GeneratorError> {
    loop {
        let lease = crate::lease::acquire(&store, &cfg.stream, &cfg.lease, &mut stop_rx).await?;
        let Some(lease) = lease else {
            return Ok(Report {
                stream: cfg.stream.to_string(),
                flushed: true,
                ..Report::default()
            });
        };
        let (stop, stop_task) = crate::lease::stop_or_fenced(stop_rx.clone(), lease.fenced());
        let r = run_leased(cfg.clone(), store.clone(), stop, lease.gate()).await;
        stop_task.abort();
        let fenced = lease.is_fenced();
        lease.release().await;
        if !fenced {
            return r;
        }
        if !cfg.lease.standby || *stop_rx.borrow() {
            let mut report = r?;
            report.failed = Some("fenced: another ingest took over the stream's lease".into());
            return Ok(report);
        }
        tracing::info!(stream = %cfg.stream, "fenced: back to standby");
    }
}

/// [`run_stream`] once the lease is held; `fenced` turns true when it was taken over (then the
/// records left in the queue are not saved and the parts are not cleared: they are the other
/// ingest's now).
async fn run_leased(
    mut cfg: StreamConfig,
    store: Arc<dyn Store>,
    mut stop_rx: watch::Receiver<bool>,
    gate: crate::lease::Gate,
) -> Result<Report, GeneratorError> {
    let dir = cfg.stream_dir();
    let cfg_dir = dir.clone();
    let media = match &cfg.media {
        Some(m) => crate::media_out::StreamMedia::in_store(m.clone(), cfg.stream.as_str()),
        None => crate::media_out::StreamMedia::dir(&dir),
    };
    // An unpaced import runs many times faster than real time: no live preview of it.
    if !cfg.pace {
        cfg.preview = None;
    }
    // Read for the whole run (every attempt's ffmpeg writes into its FIFO); off if it fails.
    let _preview_tap = crate::preview_tap::PreviewTap::start_for(&mut cfg);
    tracing::info!(
        stream = %cfg.stream,
        source = %cfg.source.masked(),
        kind = cfg.source.kind(),
        dir = %dir.display(),
        segment = ?cfg.segment_target(),
        "stream starting"
    );
    // A predecessor killed with -9 may have left its ffmpeg and half-written files.
    let leftover = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let r = (crate::pipeline::kill_leftover(&dir), remove_temps(&dir));
            crate::publish::reserve_space(&dir);
            r
        })
        .await
        .unwrap_or_default()
    };
    if leftover.1 > 0 {
        tracing::info!(stream = %cfg.stream, files = leftover.1, "removed temporary files of an earlier run");
    }
    let status = StatusBoard::start(
        store.clone(),
        cfg.stream.clone(),
        cfg.source.masked(),
        cfg.source.kind().to_owned(),
    );
    // Restream targets live as long as the stream (across attempts); their states go into the
    // status from their own task.
    let restream = crate::restream::start(&cfg);
    let restream_sync = restream
        .as_ref()
        .map(|r| tokio::spawn(crate::restream::follow(r.clone(), status.restream_setter())));
    let stats = Arc::new(PublishStats::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let (give_up, give_up_rx) = watch::channel(false);
    let mut publisher = tokio::spawn(run_publisher(
        store.clone(),
        cfg.stream.clone(),
        media.clone(),
        rx,
        cfg.queue_limit,
        stats.clone(),
        give_up_rx,
    ));
    let stream = cfg.stream.clone();
    let result = async {
        // What the last run could not store comes first: it is older than anything of this one.
        replay_journal(store.as_ref(), &cfg.stream, &dir, &mut stop_rx).await;
        let Some(pos) = resume(store.as_ref(), &cfg.stream, &mut stop_rx).await? else {
            return Ok((Report::default(), status, None));
        };
        // Parts of an earlier run (a crash, a lost write) are stale: a new run starts without.
        clear_parts_logged(store.as_ref(), &cfg.stream, &media).await;
        let latest_end = Arc::new(AtomicI64::new(
            pos.last_seg
                .as_ref()
                .map_or(NO_END, |s| s.hls_end().ticks()),
        ));
        let retention = tokio::spawn(retention_loop(
            store.clone(),
            cfg.stream.clone(),
            media.clone(),
            crate::config::ticks(cfg.retention),
            cfg.marker_retention.map(crate::config::ticks),
            cfg.segment_ticks() * i64::from(cfg.live_window),
            latest_end.clone(),
            Duration::from_secs(1),
        ));
        let synth = cfg.source.is_generator().then(|| {
            (
                Arc::new(Renderer::new(cfg.scene())),
                Releaser::new(cfg.schedule(), cfg.stream.clone()),
            )
        });
        let mut run = StreamRun {
            dir,
            media: media.clone(),
            tx,
            stop_rx: stop_rx.clone(),
            status,
            pos,
            report: Report::default(),
            latest_end,
            synth,
            disk_failure: false,
            restream: restream.clone(),
            lease: gate.clone(),
            cfg,
        };
        let failed = run.supervise().await;
        retention.abort();
        Ok::<_, GeneratorError>((run.report, run.status, failed))
    }
    .await;
    if let Some(r) = &restream {
        r.close().await;
    }
    if let Some(t) = restream_sync {
        t.abort();
    }
    // `tx` moved into the run and is dropped with it: the publisher drains and returns. What it
    // could not write in time goes to the journal (the next start writes it first).
    let left = match tokio::time::timeout(FLUSH_TIMEOUT, &mut publisher).await {
        Ok(r) => r.unwrap_or_default(),
        Err(_) => {
            let _ = give_up.send(true);
            publisher.await.unwrap_or_default()
        }
    };
    let flushed = left.is_empty();
    if !flushed && !gate.is_fenced() {
        let kept = left
            .iter()
            .filter(|o| !matches!(o, Op::Part(_) | Op::DropParts(_)))
            .count();
        match save_journal(&cfg_dir, &left) {
            Ok(n) => tracing::warn!(
                stream = %stream,
                records = n,
                file = %cfg_dir.join(JOURNAL_FILE).display(),
                "store did not take every record before exit; saved them for the next start"
            ),
            Err(e) => tracing::error!(
                stream = %stream,
                lost = kept,
                error = %e,
                "store did not take every record before exit and the journal could not be written; those records are lost"
            ),
        }
    }
    // A stopped stream has no live edge: its parts go (the segments hold the same media).
    if !gate.is_fenced() {
        clear_parts_logged(store.as_ref(), &stream, &media).await;
    }
    let (mut report, status, failed) = result?;
    let final_state = if failed.is_some() {
        StreamState::Failed
    } else {
        StreamState::Stopped
    };
    if let Some(r) = &restream {
        status.restream_setter()(crate::restream::statuses(r));
    }
    status.close(final_state).await;
    report.stream = stream.to_string();
    report.failed = failed;
    report.store_outages = stats.outages.load(Ordering::Relaxed);
    report.queue_dropped = stats.dropped.load(Ordering::Relaxed);
    report.max_queued = stats.max_queued.load(Ordering::Relaxed);
    report.stored_segments = stats.segments.load(Ordering::Relaxed);
    report.stored_markers = stats.markers.load(Ordering::Relaxed);
    report.flushed = flushed;
    tracing::info!(stream = %stream, ?report, "stream stopped");
    Ok(report)
}

/// [`clear_parts`], bounded and logged (a store that is down leaves records for the next start;
/// the files go either way).
pub(super) async fn clear_parts_logged(
    store: &dyn Store,
    stream: &StreamName,
    media: &crate::media_out::StreamMedia,
) {
    match tokio::time::timeout(Duration::from_secs(3), clear_parts(store, stream, media)).await {
        Ok(Ok(n)) if n > 0 => tracing::debug!(stream = %stream, files = n, "LL-HLS parts cleared"),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(stream = %stream, error = %e, "could not clear the stream's parts in the store");
        }
        Err(_) => tracing::warn!(stream = %stream, "clearing the stream's parts timed out"),
    }
}
