//! The supervisor: plans epochs, runs one ffmpeg per epoch with a frame pump feeding it, watches
//! ffmpeg's playlist for finished segments, publishes segments and the markers they make visible,
//! and restarts ffmpeg as a new epoch when it dies.
//!
//! Markers follow segments: an event becomes a marker only once the segment holding its first mint
//! frame has been published, so a marker never points at media that was lost. An event whose first
//! frame was lost (ffmpeg died first) is re-anchored to the first frame of the next epoch if it is
//! still active there, else dropped and counted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use hlsmark_clock::{Duration90k, Epoch, GenTime, HlsTime, Segment, SeqNo, UtcTime};
use hlsmark_store::{ErrorKind, Marker, Store, StreamName};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::GeneratorConfig;
use crate::events::{Event, EventSchedule, SplitMix64};
use crate::ffmpeg::{self, FfmpegJob, segment_name};
use crate::publish::{Op, PublishStats, run_publisher};
use crate::pump::{PumpEnd, PumpSpec, pump};
use crate::render::Renderer;
use crate::retention::{NO_END, retention_loop};
use crate::{GeneratorError, Report};

/// How often ffmpeg's playlist is read: a finished segment is published within this (+ parsing).
const POLL: Duration = Duration::from_millis(25);
/// Time allowed to write queued records at exit when the store is slow or down.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// ffmpeg gets this long to finish after its stdin closed before it is killed.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The deterministic marker id of event `index` of this stream and seed, so a re-sent or
/// re-anchored event is recognised by the store (idempotent insert, or a conflict that keeps the
/// first version).
pub fn marker_id(seed: u64, stream: &StreamName, index: u64) -> uuid::Uuid {
    let mut h = SplitMix64::new(seed ^ 0x686c_736d_6172_6b00);
    let mut acc = h.next_u64();
    for b in stream.as_str().bytes() {
        acc = SplitMix64::new(acc ^ u64::from(b)).next_u64();
    }
    let mut r = SplitMix64::new(acc ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&r.next_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&r.next_u64().to_le_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Where the stream stands before an epoch starts.
#[derive(Debug, Clone, Default)]
struct StreamState {
    last_epoch: Option<Epoch>,
    /// The newest segment handed to the store (by this run or, at start, found in the store).
    last_seg: Option<Segment>,
    /// Frames written into the last epoch by this process (0 when it came from the store).
    frames_in_last: i64,
}

/// The next epoch: continues the sequence after the last published segment, GEN after everything
/// rendered or the wall time that passed (whichever is later), and replaces (same index) a last
/// epoch that never published a segment.
fn plan_epoch(
    state: &StreamState,
    cfg: &GeneratorConfig,
    now: UtcTime,
) -> (Epoch, i64, Option<Epoch>) {
    let fps = cfg.fps;
    let segment_frames = cfg.segment_frames();
    let Some(p) = state.last_epoch else {
        let e = Epoch {
            index: 0,
            first_seq: 0,
            hls_start: HlsTime::ZERO,
            gen_start: GenTime::ZERO,
            utc_start: now,
            fps,
            segment_frames,
            hls_end: None,
        };
        return (e, 0, None);
    };
    let last_in_p = state.last_seg.as_ref().filter(|s| s.epoch == p.index);
    let media = last_in_p.map_or(Duration90k::ZERO, |s| s.hls_end() - p.hls_start);
    let written = p.fps.frame_to_ticks(state.frames_in_last);
    let wall = (now - p.utc_start).max(Duration90k::ZERO);
    let gen_ticks = p.gen_start + media.max(written).max(wall);
    let g0 = fps.ticks_to_frame_ceil(Duration90k(gen_ticks.ticks()));
    let gen_start = GenTime(fps.frame_to_ticks(g0).ticks());
    let utc_start = now.max(p.utc_start);
    let (index, first_seq, hls_start, close) = match last_in_p {
        Some(s) => {
            let first_seq = s.seq + 1;
            let close = p.hls_end.is_none().then(|| Epoch {
                hls_end: Some(s.hls_end()),
                ..p
            });
            (p.index + 1, first_seq, p.segment_start(first_seq), close)
        }
        None => (p.index, p.first_seq, p.hls_start, None),
    };
    let e = Epoch {
        index,
        first_seq,
        hls_start,
        gen_start,
        utc_start,
        fps,
        segment_frames,
        hls_end: None,
    };
    (e, g0, close)
}

/// Turns events into markers in step with published segments.
#[derive(Debug)]
struct Releaser {
    schedule: EventSchedule,
    seed: u64,
    stream: StreamName,
}

impl Releaser {
    /// Consumes the events that start before `g0` (the new epoch's first frame): one still active
    /// at `g0` is returned for re-anchoring; the others lost their first frame and are dropped
    /// (counted, unless `quiet`: at process start they belong to earlier runs).
    fn start_epoch(&mut self, g0: i64, quiet: bool, dropped: &mut u64) -> Option<Event> {
        let mut reanchor = None;
        loop {
            let e = self.schedule.peek();
            if e.start >= g0 {
                return reanchor;
            }
            self.schedule.next();
            if e.end() > g0 {
                reanchor = Some(e);
            } else if !quiet {
                *dropped += 1;
                tracing::warn!(
                    event = e.index,
                    "event's first frame was never encoded; dropped"
                );
            }
        }
    }

    fn marker(&self, e: &Event, epoch: &Epoch, n: i64, frames: i64) -> Marker {
        let hls = epoch.frame_time(n);
        Marker {
            id: marker_id(self.seed, &self.stream, e.index),
            stream: self.stream.clone(),
            label: format!("event #{}", e.index),
            kind: "event".into(),
            gen_time: epoch.gen_at(hls),
            hls,
            utc: epoch.utc_at(hls),
            duration: epoch.fps.frame_to_ticks(frames),
            data: None,
            created_at: UtcTime::now(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum EpochEnd {
    Shutdown,
    StopAfter,
    Crashed(String),
}

struct Ctx {
    cfg: GeneratorConfig,
    dir: PathBuf,
    tx: mpsc::UnboundedSender<Op>,
    stop_rx: watch::Receiver<bool>,
    renderer: Arc<Renderer>,
    latest_end: Arc<AtomicI64>,
    releaser: Releaser,
    state: StreamState,
    report: Report,
}

/// One epoch's publishing state.
struct EpochRun {
    epoch: Epoch,
    g0: i64,
    next_seq: SeqNo,
    reanchor: Option<Event>,
}

impl Ctx {
    fn send(&self, op: Op) {
        // The publisher outlives every epoch; a send can only fail after it panicked.
        if self.tx.send(op).is_err() {
            tracing::error!("store writer is gone; record lost");
        }
    }

    fn publish_segment(&mut self, run: &mut EpochRun, seq: SeqNo, frames: i64, file: String) {
        let e = &run.epoch;
        let s = i64::from(e.segment_frames);
        let k = i64::try_from(seq - e.first_seq).unwrap_or(0);
        let a = k * s;
        let b = a + frames;
        let hls_start = e.frame_time(a);
        let seg = Segment {
            seq,
            epoch: e.index,
            hls_start,
            duration: e.frame_time(b) - hls_start,
            utc_start: e.utc_at(hls_start),
            file,
            init_file: Some(ffmpeg::init_name(e.index)),
        };
        // How long after ffmpeg finished the file it reached the store queue.
        let lag_ms = std::fs::metadata(self.dir.join(&seg.file))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.report.max_publish_lag_ms = self.report.max_publish_lag_ms.max(lag_ms);
        tracing::debug!(seq, frames, lag_ms, hls_start = ?seg.hls_start, "segment finished");
        self.latest_end
            .store(seg.hls_end().ticks(), Ordering::Release);
        self.send(Op::Segment(seg.clone()));
        self.state.last_seg = Some(seg);
        self.report.segments += 1;
        self.report.last_seq = Some(seq);
        if a == 0
            && let Some(ev) = run.reanchor.take()
        {
            let m = self.releaser.marker(&ev, e, 0, ev.end() - run.g0);
            tracing::info!(
                event = ev.index,
                "event re-anchored to the first frame of the new epoch"
            );
            self.send(Op::Marker(m));
            self.report.markers += 1;
        }
        loop {
            let ev = self.releaser.schedule.peek();
            if ev.start >= run.g0 + b {
                break;
            }
            self.releaser.schedule.next();
            let m = self.releaser.marker(&ev, e, ev.start - run.g0, ev.frames);
            tracing::debug!(event = ev.index, hls = ?m.hls, "event published");
            self.send(Op::Marker(m));
            self.report.markers += 1;
        }
        run.next_seq = seq + 1;
    }

    fn publish_listing(&mut self, run: &mut EpochRun, path: &Path) {
        let Some(listing) = crate::watch::read(path) else {
            return;
        };
        let s = i64::from(run.epoch.segment_frames);
        let fps = run.epoch.fps.as_f64();
        for l in listing.segments {
            if l.seq < run.next_seq {
                continue;
            }
            // Entries that scrolled out of ffmpeg's window before we saw them: full segments.
            while run.next_seq < l.seq {
                let name = segment_name(run.epoch.index, run.next_seq);
                if self.dir.join(&name).is_file() {
                    tracing::warn!(
                        seq = run.next_seq,
                        "segment missed in ffmpeg's playlist; publishing from disk"
                    );
                    self.publish_segment(run, run.next_seq, s, name);
                } else {
                    tracing::error!(seq = run.next_seq, "segment missing; skipped");
                    run.next_seq += 1;
                }
            }
            // EXTINF has six decimals: rounding to whole frames is exact.
            #[allow(clippy::cast_possible_truncation)]
            let frames = ((f64::from(l.extinf) * fps).round() as i64).clamp(1, s);
            if !self.dir.join(&l.uri).is_file() {
                tracing::error!(uri = %l.uri, "ffmpeg listed a segment that is not on disk; skipped");
                run.next_seq = l.seq + 1;
                continue;
            }
            self.publish_segment(run, l.seq, frames, l.uri);
        }
    }

    async fn run_epoch(
        &mut self,
        epoch: Epoch,
        g0: i64,
        start: Instant,
        max_frames: Option<i64>,
    ) -> Result<(EpochEnd, i64), GeneratorError> {
        let job = FfmpegJob {
            width: self.cfg.width,
            height: self.cfg.height,
            fps: epoch.fps,
            segment_frames: epoch.segment_frames,
            epoch_index: epoch.index,
            first_seq: epoch.first_seq,
            hls_start: epoch.hls_start,
            dir: self.dir.clone(),
        };
        let playlist = ffmpeg::private_playlist(&self.dir, epoch.index);
        // A replaced epoch (no segment published) may have left its playlist behind.
        let _ = std::fs::remove_file(&playlist);
        let mut child = ffmpeg::spawn(&self.cfg.ffmpeg, &job)?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| GeneratorError::Io {
                context: "ffmpeg stdin".into(),
                source: std::io::ErrorKind::BrokenPipe.into(),
            })?
            .into_owned_fd()
            .map_err(|e| GeneratorError::Io {
                context: "ffmpeg stdin".into(),
                source: e,
            })?;
        let spec = PumpSpec {
            renderer: self.renderer.clone(),
            events: self.cfg.schedule(),
            g0,
            fps: epoch.fps,
            realtime: self.cfg.realtime,
            start,
            max_frames,
        };
        let pump_stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicI64::new(0));
        let (done_tx, done_rx) = oneshot::channel();
        {
            let (stop, written) = (pump_stop.clone(), written.clone());
            std::thread::Builder::new()
                .name(format!("pump-e{}", epoch.index))
                .spawn(move || {
                    let mut out = std::fs::File::from(stdin);
                    grow_pipe(&out);
                    let end = pump(&spec, &mut out, &stop, &written);
                    drop(out); // EOF: ffmpeg finishes the last segment and exits
                    let _ = done_tx.send(end);
                })
                .map_err(|e| GeneratorError::Io {
                    context: "starting the frame pump thread".into(),
                    source: e,
                })?;
        }
        tracing::info!(
            epoch = epoch.index,
            first_seq = epoch.first_seq,
            hls_start = ?epoch.hls_start,
            gen_start = ?epoch.gen_start,
            utc_start = %epoch.utc_start,
            pid = child.id(),
            "ffmpeg started"
        );
        let mut run = EpochRun {
            epoch,
            g0,
            next_seq: epoch.first_seq,
            reanchor: None,
        };
        let quiet = self.report.epochs == 0;
        let mut dropped = 0;
        run.reanchor = self.releaser.start_epoch(g0, quiet, &mut dropped);
        self.report.markers_dropped += dropped;
        self.report.epochs += 1;

        let mut stopping = *self.stop_rx.borrow();
        let mut kill_at = None;
        if stopping {
            pump_stop.store(true, Ordering::Relaxed);
            kill_at = Some(Instant::now() + FINISH_TIMEOUT);
        }
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let status = loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.publish_listing(&mut run, &playlist);
                    if kill_at.is_some_and(|t| Instant::now() > t) {
                        tracing::warn!("ffmpeg did not finish after its input closed; killing it");
                        let _ = child.start_kill();
                        kill_at = None;
                    }
                }
                st = child.wait() => break st,
                _ = self.stop_rx.changed(), if !stopping => {
                    stopping = true;
                    pump_stop.store(true, Ordering::Relaxed);
                    kill_at = Some(Instant::now() + FINISH_TIMEOUT);
                    tracing::info!("shutting down: closing ffmpeg's input, waiting for the last segment");
                }
            }
        };
        pump_stop.store(true, Ordering::Relaxed);
        let pump_end = done_rx.await.unwrap_or(PumpEnd::Stopped);
        self.publish_listing(&mut run, &playlist);
        remove_temp_files(&self.dir, epoch.index);
        let frames = written.load(Ordering::Acquire);
        self.report.frames_written += frames;
        let status_text = match &status {
            Ok(s) => s.to_string(),
            Err(e) => format!("wait failed: {e}"),
        };
        let clean = status.as_ref().is_ok_and(std::process::ExitStatus::success);
        let end = if stopping {
            EpochEnd::Shutdown
        } else if clean && matches!(pump_end, PumpEnd::Done) {
            EpochEnd::StopAfter
        } else {
            EpochEnd::Crashed(format!("{status_text}; pump: {pump_end:?}"))
        };
        tracing::info!(epoch = epoch.index, frames, status = %status_text, ?end, "ffmpeg exited");
        Ok((end, frames))
    }
}

/// A 1 MiB pipe (Linux's default `pipe-max-size`) instead of 64 KiB: a 720p frame then crosses in
/// a few wake-ups instead of ~40, which is most of the generator's CPU while live.
fn grow_pipe(f: &std::fs::File) {
    const WANT: i32 = 1 << 20;
    if let Err(e) = nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_SETPIPE_SZ(WANT)) {
        tracing::debug!(error = %e, "could not enlarge ffmpeg's stdin pipe; using the default size");
    }
}

fn remove_temp_files(dir: &Path, epoch: u32) {
    let prefix = format!("e{epoch}-");
    if let Ok(rd) = std::fs::read_dir(dir) {
        for f in rd.flatten() {
            let name = f.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(f.path());
            }
        }
    }
}

/// Reads the stream's epochs and newest segment, retrying while the store is unreachable.
/// `None` when shutdown was requested first.
async fn resume(
    store: &dyn Store,
    stream: &StreamName,
    stop_rx: &mut watch::Receiver<bool>,
) -> Result<Option<StreamState>, GeneratorError> {
    let mut warned = false;
    loop {
        let r = async {
            let epochs = match store.epochs(stream).await {
                Err(e) if e.kind() == ErrorKind::UnknownStream => Vec::new(),
                r => r?,
            };
            let last = match store.last_segments(stream, 1).await {
                Err(e) if e.kind() == ErrorKind::UnknownStream => Vec::new(),
                r => r?,
            };
            Ok::<_, hlsmark_store::StoreError>((epochs, last))
        }
        .await;
        match r {
            Ok((epochs, last)) => {
                let last_epoch = epochs.into_iter().max_by_key(|e| e.index);
                return Ok(Some(StreamState {
                    last_epoch,
                    last_seg: last.into_iter().last(),
                    frames_in_last: 0,
                }));
            }
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                if !warned {
                    warned = true;
                    tracing::warn!(error = %e, "store unreachable at start; waiting for it");
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop_rx.changed() => {}
                }
                if *stop_rx.borrow() {
                    return Ok(None);
                }
            }
            Err(e) => return Err(GeneratorError::Store(e)),
        }
    }
}

pub(crate) async fn run(
    cfg: GeneratorConfig,
    store: Arc<dyn Store>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Report, GeneratorError> {
    cfg.validate()?;
    let version = ffmpeg::check_ffmpeg(&cfg.ffmpeg).await?;
    let dir = cfg.stream_dir();
    std::fs::create_dir_all(&dir).map_err(|e| GeneratorError::Io {
        context: format!("creating {}", dir.display()),
        source: e,
    })?;
    tracing::info!(
        stream = %cfg.stream,
        dir = %dir.display(),
        size = %format!("{}x{}", cfg.width, cfg.height),
        fps = %cfg.fps,
        segment_frames = cfg.segment_frames(),
        realtime = cfg.realtime,
        ffmpeg = %version,
        "generator starting"
    );

    let (stop_tx, mut stop_rx) = watch::channel(false);
    let shutdown_task = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stats = Arc::new(PublishStats::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let publisher = tokio::spawn(run_publisher(
        store.clone(),
        cfg.stream.clone(),
        rx,
        cfg.queue_limit,
        stats.clone(),
    ));

    let result = async {
        let Some(state) = resume(store.as_ref(), &cfg.stream, &mut stop_rx).await? else {
            return Ok(Report::default());
        };
        let latest_end = Arc::new(AtomicI64::new(
            state
                .last_seg
                .as_ref()
                .map_or(NO_END, |s| s.hls_end().ticks()),
        ));
        let retention = tokio::spawn(retention_loop(
            store.clone(),
            cfg.stream.clone(),
            dir.clone(),
            cfg.effective_retention(),
            cfg.marker_retention.map(crate::config::ticks),
            latest_end.clone(),
            Duration::from_secs(1),
        ));
        let mut ctx = Ctx {
            renderer: Arc::new(Renderer::new(cfg.scene())),
            releaser: Releaser {
                schedule: EventSchedule::new(cfg.schedule()),
                seed: cfg.seed,
                stream: cfg.stream.clone(),
            },
            dir,
            tx,
            stop_rx: stop_rx.clone(),
            latest_end,
            state,
            report: Report::default(),
            cfg,
        };
        let r = supervise(&mut ctx).await;
        retention.abort();
        r.map(|()| ctx.report)
    }
    .await;
    // `tx` moved into the context and is dropped with it: the publisher drains and returns.
    let flushed = tokio::time::timeout(FLUSH_TIMEOUT, publisher).await.is_ok();
    shutdown_task.abort();
    let mut report = result?;
    report.store_outages = stats.outages.load(Ordering::Relaxed);
    report.queue_dropped = stats.dropped.load(Ordering::Relaxed);
    report.max_queued = stats.max_queued.load(Ordering::Relaxed);
    report.stored_segments = stats.segments.load(Ordering::Relaxed);
    report.stored_markers = stats.markers.load(Ordering::Relaxed);
    report.flushed = flushed;
    if !flushed {
        tracing::error!("store still unreachable at exit; queued records were not written");
    }
    tracing::info!(?report, "generator stopped");
    Ok(report)
}

async fn supervise(ctx: &mut Ctx) -> Result<(), GeneratorError> {
    let mut remaining = ctx.cfg.stop_after_frames();
    let mut backoff = Duration::from_millis(100);
    loop {
        if *ctx.stop_rx.borrow() {
            return Ok(());
        }
        // The UTC anchor and the pacing origin are read together: frame n is due at
        // `start + n / fps` and its PDT is `utc_start + n / fps`.
        let (now, start) = (UtcTime::now(), Instant::now());
        let (epoch, g0, close) = plan_epoch(&ctx.state, &ctx.cfg, now);
        if let Some(prev) = close {
            ctx.send(Op::Epoch(prev));
        }
        ctx.send(Op::Epoch(epoch));
        ctx.state.last_epoch = Some(epoch);
        ctx.state.frames_in_last = 0;
        let started = Instant::now();
        let (end, frames) = ctx.run_epoch(epoch, g0, start, remaining).await?;
        ctx.state.frames_in_last = frames;
        if let Some(r) = remaining.as_mut() {
            *r -= frames;
        }
        match end {
            EpochEnd::Shutdown | EpochEnd::StopAfter => return Ok(()),
            EpochEnd::Crashed(why) => {
                if remaining.is_some_and(|r| r <= 0) {
                    return Ok(());
                }
                ctx.report.ffmpeg_restarts += 1;
                // Quick crash loops back off (up to 1 s); a run that lasted resets the pause.
                if started.elapsed() > Duration::from_secs(5) {
                    backoff = Duration::from_millis(100);
                }
                tracing::warn!(%why, restart_in_ms = backoff.as_millis(), "ffmpeg died; restarting as a new epoch");
                let mut stop_rx = ctx.stop_rx.clone();
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop_rx.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hlsmark_clock::FrameRate;

    fn cfg() -> GeneratorConfig {
        GeneratorConfig::new(StreamName::live(), PathBuf::from("/tmp/x"))
    }

    const T0: i64 = 1_795_000_000 * 90_000;

    #[test]
    fn first_epoch_of_a_new_stream_starts_at_zero() {
        let (e, g0, close) = plan_epoch(&StreamState::default(), &cfg(), UtcTime(T0));
        assert_eq!(
            (e.index, e.first_seq, e.hls_start, e.gen_start, g0),
            (0, 0, HlsTime(0), GenTime(0), 0)
        );
        assert_eq!(e.utc_start, UtcTime(T0));
        assert!(close.is_none());
    }

    #[test]
    fn restart_continues_sequence_and_gen_and_closes_previous() {
        let (e0, _, _) = plan_epoch(&StreamState::default(), &cfg(), UtcTime(T0));
        // Epoch 0 published seq 0..=9 (10 s); 12.5 s of wall time later a new epoch starts.
        let seg = Segment {
            seq: 9,
            epoch: 0,
            hls_start: HlsTime(9 * 90_000),
            duration: Duration90k(90_000),
            utc_start: UtcTime(T0 + 9 * 90_000),
            file: "e0-00000009.m4s".into(),
            init_file: None,
        };
        let st = StreamState {
            last_epoch: Some(e0),
            last_seg: Some(seg),
            frames_in_last: 315,
        };
        let (e1, g0, close) = plan_epoch(&st, &cfg(), UtcTime(T0 + 12 * 90_000 + 45_000));
        assert_eq!(
            (e1.index, e1.first_seq, e1.hls_start),
            (1, 10, HlsTime(10 * 90_000))
        );
        // GEN follows the wall clock (12.5 s = frame 375).
        assert_eq!(g0, 375);
        assert_eq!(e1.gen_start, GenTime(375 * 3_000));
        assert_eq!(close.unwrap().hls_end, Some(HlsTime(10 * 90_000)));
        let mut t = hlsmark_clock::Timeline::new(vec![e0]).unwrap();
        t.push(e1).unwrap();
        // Unpaced: frames written run ahead of the wall clock, GEN follows them.
        let st = StreamState {
            frames_in_last: 3_000,
            ..st
        };
        let (_, g0, _) = plan_epoch(&st, &cfg(), UtcTime(T0 + 90_000));
        assert_eq!(g0, 3_000);
    }

    #[test]
    fn an_epoch_without_segments_is_replaced() {
        let (e0, _, _) = plan_epoch(&StreamState::default(), &cfg(), UtcTime(T0));
        let st = StreamState {
            last_epoch: Some(e0),
            last_seg: None,
            frames_in_last: 3,
        };
        let (e, g0, close) = plan_epoch(&st, &cfg(), UtcTime(T0 + 90_000));
        assert_eq!((e.index, e.first_seq, e.hls_start), (0, 0, HlsTime(0)));
        assert_eq!(g0, 30);
        assert!(close.is_none());
    }

    #[test]
    fn gen_snaps_to_the_new_frame_grid() {
        let (e0, _, _) = plan_epoch(&StreamState::default(), &cfg(), UtcTime(T0));
        let mut c = cfg();
        c.fps = FrameRate::integer(25);
        let st = StreamState {
            last_epoch: Some(e0),
            last_seg: None,
            frames_in_last: 0,
        };
        let (e, g0, _) = plan_epoch(&st, &c, UtcTime(T0 + 3_001));
        assert_eq!(g0, 1);
        assert_eq!(e.gen_start, GenTime(3_600));
    }

    #[test]
    fn lost_events_are_reanchored_when_still_active_else_dropped() {
        let spec = cfg().schedule();
        let ev: Vec<_> = EventSchedule::new(spec).take(10).collect();
        let mut r = Releaser {
            schedule: EventSchedule::new(spec),
            seed: 1,
            stream: StreamName::live(),
        };
        // A new epoch starts in the middle of event 5: events 1-4 lost their first frame and ended.
        let g0 = ev[4].start + 3;
        let mut dropped = 0;
        assert_eq!(r.start_epoch(g0, false, &mut dropped), Some(ev[4]));
        assert_eq!(dropped, 4);
        assert_eq!(r.schedule.peek(), ev[5]);
        // Between events nothing is re-anchored; at process start old events are not counted.
        let mut r = Releaser {
            schedule: EventSchedule::new(spec),
            seed: 1,
            stream: StreamName::live(),
        };
        let mut dropped = 0;
        assert_eq!(r.start_epoch(ev[2].end(), true, &mut dropped), None);
        assert_eq!(dropped, 0);
        // The re-anchored marker starts on the epoch's first frame and lasts the rest of the event.
        let (e0, _, _) = plan_epoch(&StreamState::default(), &cfg(), UtcTime(T0));
        let m = r.marker(&ev[4], &e0, 0, ev[4].end() - g0);
        assert_eq!(m.hls, e0.hls_start);
        assert_eq!(m.duration, Duration90k((ev[4].frames - 3) * 3_000));
        assert_eq!(m.label, "event #5");
    }

    #[test]
    fn marker_ids_are_deterministic_per_stream_and_event() {
        let live = StreamName::live();
        let other = StreamName::new("cam2").unwrap();
        assert_eq!(marker_id(1, &live, 5), marker_id(1, &live, 5));
        assert_ne!(marker_id(1, &live, 5), marker_id(1, &live, 6));
        assert_ne!(marker_id(1, &live, 5), marker_id(1, &other, 5));
        assert_ne!(marker_id(1, &live, 5), marker_id(2, &live, 5));
        assert_eq!(marker_id(1, &live, 5).get_version_num(), 4);
    }
}
