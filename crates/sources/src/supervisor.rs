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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use hlsmark_clock::{Duration90k, Epoch, GenTime, HlsTime, Segment, UtcTime};
use hlsmark_store::{ErrorKind, Store, StreamName, StreamState};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::StreamConfig;
use crate::encode::VideoMode;
use crate::events::{Event, Releaser};
use crate::ffmpeg::{ffmpeg_args, ffmpeg_args_at};
use crate::pipeline::{self, EndReason, Ffmpeg, Output, PipelineError, Published, RunSpec, Timing};
use crate::publish::{
    JOURNAL_FILE, Op, PublishStats, StatusBoard, replay_journal, run_publisher, save_journal,
};
use crate::pump::{PumpEnd, PumpSpec, pump};
use crate::render::Renderer;
use crate::retention::{NO_END, clear_parts, remove_temps, retention_loop};
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

/// Restart pauses of real sources, and how long a run must stay live to reset them.
const SOURCE_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));
const SOURCE_HEALTHY: Duration = Duration::from_secs(300);
/// The generator's (its failures are ffmpeg crashes, not sources that are down).
const GEN_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));
const GEN_HEALTHY: Duration = Duration::from_secs(5);
/// Longest pause after an attempt that failed writing a file (a full disk): the source is fine.
const DISK_RETRY: Duration = Duration::from_secs(1);

/// Where the stream stands before an attempt starts.
#[derive(Debug, Clone, Default)]
struct Position {
    last_epoch: Option<Epoch>,
    /// The newest segment handed to the store (by this run or, at start, found in the store).
    last_seg: Option<Segment>,
    /// Frames written into the last epoch by this process (0 when it came from the store).
    frames_in_last: i64,
}

impl Position {
    /// The last epoch's newest segment, if the last segment belongs to it.
    fn last_in_last_epoch(&self) -> Option<&Segment> {
        let p = self.last_epoch?;
        self.last_seg.as_ref().filter(|s| s.epoch == p.index)
    }

    /// The previous epoch closed at its last segment, when a new epoch `index` follows it.
    fn close_for(&self, index: u32) -> Option<Epoch> {
        let p = self.last_epoch?;
        let s = self.last_in_last_epoch()?;
        (p.index < index && p.hls_end.is_none()).then(|| Epoch {
            hls_end: Some(s.hls_end()),
            ..p
        })
    }
}

/// The generator's next epoch: continues the sequence after the last published segment, GEN after
/// everything rendered or the wall time that passed (whichever is later), and replaces (same
/// index) a last epoch that never published a segment. Returns (epoch, its first GEN frame, the
/// previous epoch closed).
fn plan_epoch(pos: &Position, cfg: &StreamConfig, now: UtcTime) -> (Epoch, i64, Option<Epoch>) {
    let fps = cfg.fps;
    let segment_frames = cfg.segment_frames();
    let Some(p) = pos.last_epoch else {
        let e = Epoch {
            index: 0,
            first_seq: 0,
            hls_start: HlsTime::ZERO,
            gen_start: GenTime::ZERO,
            utc_start: now,
            fps,
            segment_frames,
            hls_end: None,
            pts_start: None,
        };
        return (e, 0, None);
    };
    let last_in_p = pos.last_in_last_epoch();
    let media = last_in_p.map_or(Duration90k::ZERO, |s| s.hls_end() - p.hls_start);
    let written = p.fps.frame_to_ticks(pos.frames_in_last);
    let wall = (now - p.utc_start).max(Duration90k::ZERO);
    let gen_ticks = p.gen_start + media.max(written).max(wall);
    let g0 = fps.ticks_to_frame_ceil(Duration90k(gen_ticks.ticks()));
    let gen_start = GenTime(fps.frame_to_ticks(g0).ticks());
    // PDT never goes back: not before the last epoch's start nor its last segment's end (an
    // imported epoch is backdated, but a clock set back could put `now` before either).
    let utc_start = now
        .max(p.utc_start)
        .max(last_in_p.map_or(p.utc_start, |s| s.utc_start + s.duration));
    // Sequence-aligned after a generator epoch; after a real source's or an import's (segments
    // of their own lengths, a nominal rate) the aligned start could fall inside its last
    // segment: never before that segment's end.
    let (index, first_seq, hls_start) = match last_in_p {
        Some(s) => (
            p.index + 1,
            s.seq + 1,
            p.segment_start(s.seq + 1).max(s.hls_end()),
        ),
        None => (p.index, p.first_seq, p.hls_start),
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
        pts_start: None,
    };
    (e, g0, pos.close_for(index))
}

/// Where a real source's next epoch starts: right after the last published segment (no gap in
/// HLS time), PDT not before that segment's end. A last epoch that never published a segment is
/// replaced (same index).
fn plan_source(pos: &Position, import: Option<UtcTime>) -> Timing {
    let next_seq = pos.last_seg.as_ref().map_or(0, |s| s.seq + 1);
    let hls_start = pos
        .last_seg
        .as_ref()
        .map_or(HlsTime::ZERO, Segment::hls_end);
    let floor = pos
        .last_seg
        .as_ref()
        .map_or(UtcTime(0), |s| s.utc_start + s.duration);
    let index = match pos.last_epoch {
        None => 0,
        Some(p) if pos.last_in_last_epoch().is_some() => p.index + 1,
        Some(p) => p.index,
    };
    match import {
        // An import's start was checked against the last segment's end (`import::resolve`).
        Some(utc_start) => Timing::Import {
            index,
            first_seq: next_seq,
            hls_start,
            utc_start: utc_start.max(floor),
        },
        None => Timing::Source {
            index,
            first_seq: next_seq,
            hls_start,
            floor,
        },
    }
}

/// How an attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum AttemptEnd {
    Shutdown,
    /// `--stop-after` reached, or a file played once ended.
    Finished,
    /// Retried after a pause, unless `fatal`.
    Failed {
        what: &'static str,
        why: String,
        fatal: bool,
    },
}

/// The generator's per-epoch state.
struct GenEpoch {
    epoch: Epoch,
    g0: i64,
    reanchor: Option<Event>,
}

/// One stream being supervised.
struct StreamRun {
    cfg: StreamConfig,
    dir: std::path::PathBuf,
    media: crate::media_out::StreamMedia,
    tx: mpsc::UnboundedSender<Op>,
    stop_rx: watch::Receiver<bool>,
    status: StatusBoard,
    pos: Position,
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

    fn on_output(&mut self, out: Output, ge: Option<&mut GenEpoch>, live: &mut bool) {
        match out {
            Output::Part(p) => self.send(Op::Part(p)),
            Output::Epoch(e) => {
                if let Some(prev) = self.pos.close_for(e.index) {
                    self.send(Op::Epoch(prev));
                }
                tracing::info!(
                    stream = %self.cfg.stream,
                    epoch = e.index,
                    first_seq = e.first_seq,
                    hls_start = ?e.hls_start,
                    utc_start = %e.utc_start,
                    fps = %e.fps,
                    pts_start = ?e.pts_start,
                    "epoch begins"
                );
                self.send(Op::Epoch(e));
                self.pos.last_epoch = Some(e);
                self.report.epochs += 1;
                self.status.set_epoch(e.index);
            }
            Output::Segment(p) => self.on_segment(p, ge, live),
        }
    }

    fn on_segment(&mut self, p: Published, ge: Option<&mut GenEpoch>, live: &mut bool) {
        let seg = p.segment;
        let lag_ms = u64::try_from(p.lag.as_millis()).unwrap_or(u64::MAX);
        self.report.max_publish_lag_ms = self.report.max_publish_lag_ms.max(lag_ms);
        self.report.frames_published += u64::try_from(seg.frames.len()).unwrap_or(0);
        self.report.bytes_published += u64::try_from(p.bytes).unwrap_or(u64::MAX);
        tracing::debug!(
            stream = %self.cfg.stream,
            seq = seg.seq,
            frames = seg.frames.len(),
            bytes = p.bytes,
            lag_ms,
            hls_start = ?seg.hls_start,
            duration = ?seg.duration,
            "segment published"
        );
        self.latest_end
            .store(seg.hls_end().ticks(), Ordering::Release);
        self.report.segments += 1;
        self.report.last_seq = Some(seg.seq);
        let first_of_epoch = ge
            .as_ref()
            .is_some_and(|g| seg.hls_start == g.epoch.hls_start);
        if !self.cfg.part_duration.is_zero() && self.cfg.pace {
            // (An unpaced import publishes no parts: nothing to drop.)
            // Keep the parts of the newest PART_HOLD_SEGMENTS segments, this one included:
            // dropped just before it is published, so never more than that are listed.
            self.send(Op::DropParts(
                seg.seq.saturating_sub(PART_HOLD_SEGMENTS - 1),
            ));
        }
        self.send(Op::Segment(seg.clone()));
        self.pos.last_seg = Some(seg);
        if !*live {
            *live = true;
            self.status.set(StreamState::Live, None);
        }
        // The generator's events become markers once the segment holding their first frame is
        // published; their time is the frame's epoch time, which the pipeline checked against
        // the frame table.
        let mut markers = Vec::new();
        if let (Some(g), Some(end_frame), Some((_, releaser))) =
            (ge, p.end_frame, self.synth.as_mut())
        {
            if first_of_epoch && let Some(ev) = g.reanchor.take() {
                tracing::info!(
                    event = ev.index,
                    "event re-anchored to the first frame of the new epoch"
                );
                markers.push(releaser.marker(&ev, &g.epoch, 0, ev.end() - g.g0));
            }
            markers.extend(releaser.release(&g.epoch, g.g0, end_frame));
        }
        for m in markers {
            tracing::debug!(label = %m.label, hls = ?m.hls, "event published");
            self.report.markers += 1;
            self.send(Op::Marker(m));
        }
    }

    /// One ffmpeg run. Returns how it ended and whether it went live (for how long).
    async fn attempt(&mut self, remaining: Option<i64>) -> (AttemptEnd, Option<Duration>, i64) {
        let generator = self.cfg.source.is_generator();
        let stream = self.cfg.stream.to_string();
        self.status.set(StreamState::Starting, None);
        // The generator's epoch is planned and written before ffmpeg starts (markers and the tone
        // depend on it); the UTC anchor and the pacing origin are read together: frame n is due at
        // `start + n / fps` and its PDT is `utc_start + n / fps`.
        let (timing, mut gen_epoch, start) = if generator {
            let (now, start) = (UtcTime::now(), Instant::now());
            let (epoch, g0, close) = plan_epoch(&self.pos, &self.cfg, now);
            if let Some(prev) = close {
                self.send(Op::Epoch(prev));
            }
            self.send(Op::Epoch(epoch));
            self.pos.last_epoch = Some(epoch);
            self.pos.frames_in_last = 0;
            self.report.epochs += 1;
            self.status.set_epoch(epoch.index);
            let quiet = self.report.epochs == 1;
            let mut dropped = 0;
            let reanchor = self
                .synth
                .as_mut()
                .and_then(|(_, r)| r.start_epoch(g0, quiet, &mut dropped));
            self.report.markers_dropped += dropped;
            (
                Timing::Generator { epoch },
                Some(GenEpoch {
                    epoch,
                    g0,
                    reanchor,
                }),
                start,
            )
        } else {
            let import = self.cfg.start_utc.filter(|_| self.cfg.is_import());
            (plan_source(&self.pos, import), None, Instant::now())
        };
        // A page source: its browser runs for this attempt and shows a first picture before
        // ffmpeg starts (`page/`); dropped at the end of the attempt (browser killed).
        let mut page = match crate::page::open_for(&self.cfg, &mut self.stop_rx.clone()).await {
            crate::page::PageOpen::NotAPage => None,
            crate::page::PageOpen::Open(p) => Some(p),
            crate::page::PageOpen::Stopped => return (AttemptEnd::Shutdown, None, 0),
            crate::page::PageOpen::Failed(why) => {
                let end = AttemptEnd::Failed {
                    what: "could not start",
                    why: self.cfg.source.redact(&why),
                    fatal: false,
                };
                return (end, None, 0);
            }
        };
        let args = match &gen_epoch {
            Some(g) => ffmpeg_args_at(&self.cfg, g.g0),
            None => ffmpeg_args(&self.cfg),
        };
        let mut ff = match Ffmpeg::spawn_redacted(
            &self.cfg.ffmpeg,
            &args,
            self.cfg.source.frames_on_stdin(),
            &stream,
            &self.cfg.source,
        ) {
            Ok(f) => f,
            Err(e) => {
                let end = AttemptEnd::Failed {
                    what: "could not start",
                    why: e.to_string(),
                    fatal: false,
                };
                return (end, None, 0);
            }
        };
        ff.record_pid(self.dir.join(pipeline::PID_FILE));
        tracing::info!(
            stream = %stream,
            source = %self.cfg.source.masked(),
            pid = ff.id(),
            timing = ?timing,
            "ffmpeg started"
        );

        // The generator's frame pump (a plain thread writing rawvideo into ffmpeg's stdin).
        let pump_stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicI64::new(0));
        let mut pump_done = None;
        if let (Some(g), Some((renderer, _))) = (&gen_epoch, &self.synth) {
            match start_pump(
                &mut ff,
                &self.cfg,
                renderer.clone(),
                g,
                start,
                remaining,
                &pump_stop,
                &written,
            ) {
                Ok(rx) => pump_done = Some(rx),
                Err(e) => {
                    let end = AttemptEnd::Failed {
                        what: "could not start",
                        why: e.to_string(),
                        fatal: false,
                    };
                    return (end, None, 0);
                }
            }
        }
        if let Some(p) = page.as_mut() {
            match p.start_pump(&mut ff, &pump_stop, &written) {
                Ok(rx) => pump_done = Some(rx),
                Err(why) => {
                    let end = AttemptEnd::Failed {
                        what: "could not start",
                        why,
                        fatal: false,
                    };
                    return (end, None, 0);
                }
            }
        }

        let Some(stdout) = ff.take_stdout() else {
            let end = AttemptEnd::Failed {
                what: "could not start",
                why: "ffmpeg's stdout is missing".into(),
                fatal: false,
            };
            return (end, None, 0);
        };
        let (otx, mut orx) = mpsc::unbounded_channel();
        let spec = RunSpec {
            dir: self.dir.clone(),
            media: self.media.clone(),
            target: self.cfg.segment_target(),
            stall_timeout: self.cfg.stall_timeout,
            timing,
            // An unpaced import has no live edge: its parts would only load the store.
            parts: !self.cfg.part_duration.is_zero() && self.cfg.pace,
            copy: matches!(self.cfg.encoding.video, VideoMode::Copy),
            restream: self.restream.clone(),
            pace: self.cfg.source.paced_by_reader() && self.cfg.pace,
        };
        let reader = tokio::spawn(pipeline::read_loop(stdout, spec, otx));

        let mut stopping = self.stopping();
        let mut kill_at: Option<tokio::time::Instant> = None;
        let mut exit: Option<std::io::Result<std::process::ExitStatus>> = None;
        let mut live = false;
        let mut live_since: Option<Instant> = None;
        if stopping {
            self.finish_input(&ff, &pump_stop);
            kill_at = Some(tokio::time::Instant::now() + FINISH_TIMEOUT);
        }
        let mut stop_rx = self.stop_rx.clone();
        loop {
            let kill_sleep = async {
                match kill_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                out = orx.recv() => match out {
                    Some(o) => {
                        let was_live = live;
                        self.on_output(o, gen_epoch.as_mut(), &mut live);
                        if live && !was_live {
                            live_since = Some(Instant::now());
                        }
                    }
                    None => break,
                },
                st = ff.wait(), if exit.is_none() => exit = Some(st),
                _ = stop_rx.changed(), if !stopping => {
                    stopping = true;
                    tracing::info!(stream = %stream, "shutting down: finishing ffmpeg's output, publishing the last segment");
                    self.finish_input(&ff, &pump_stop);
                    kill_at = Some(tokio::time::Instant::now() + FINISH_TIMEOUT);
                }
                () = kill_sleep => {
                    tracing::warn!(stream = %stream, "ffmpeg did not finish in time; killing it");
                    ff.kill();
                    kill_at = None;
                }
            }
        }
        let run_end = match reader.await {
            Ok(r) => r,
            Err(e) => pipeline::RunEnd {
                reason: EndReason::Failed(PipelineError::Join(e.to_string())),
                segments: 0,
                parts: 0,
                dropped_fragments: 0,
                frame_mismatches: 0,
                opened: false,
            },
        };
        // The output ended: ffmpeg exits by itself after a clean end; otherwise (stall, bad
        // output) it is killed now.
        let status = match exit {
            Some(st) => st,
            None => {
                if !matches!(run_end.reason, EndReason::Eof) {
                    ff.kill();
                }
                match tokio::time::timeout(EXIT_GRACE, ff.wait()).await {
                    Ok(st) => st,
                    Err(_) => {
                        ff.kill();
                        ff.wait().await
                    }
                }
            }
        };
        pump_stop.store(true, Ordering::Relaxed);
        let pump_end = match pump_done {
            Some(rx) => Some(rx.await.unwrap_or(PumpEnd::Stopped)),
            None => None,
        };
        let frames = written.load(Ordering::Acquire);
        self.report.frames_written += frames;
        self.report.dropped_fragments += run_end.dropped_fragments;
        self.report.frame_mismatches += run_end.frame_mismatches;
        let last_line = ff.last_line();
        drop(ff);
        let status_text = match &status {
            Ok(s) => s.to_string(),
            Err(e) => format!("wait failed: {e}"),
        };
        let clean = status.as_ref().is_ok_and(std::process::ExitStatus::success);
        let reason_text = |fallback: String| {
            if last_line.is_empty() {
                fallback
            } else {
                last_line.clone()
            }
        };
        let end = if stopping {
            AttemptEnd::Shutdown
        } else {
            match run_end.reason {
                // A followed recording that stops growing has ended: restarting would read it
                // from the start again and publish it once more as a new epoch.
                EndReason::Stalled(d)
                    if matches!(self.cfg.source, Source::Follow { .. }) && run_end.segments > 0 =>
                {
                    self.report.stalls += 1;
                    tracing::info!(
                        stream = %stream,
                        "the followed file has not grown for {} s: the recording has ended",
                        d.as_secs_f64()
                    );
                    AttemptEnd::Finished
                }
                EndReason::Stalled(d) => {
                    self.report.stalls += 1;
                    AttemptEnd::Failed {
                        what: "stalled",
                        why: format!("no media for {} s", d.as_secs_f64()),
                        fatal: false,
                    }
                }
                EndReason::Failed(PipelineError::CopyNotH264(codec)) => {
                    // Browsers play H.264: the next attempt re-encodes.
                    tracing::warn!(
                        stream = %stream,
                        codec = %codec,
                        "--video copy keeps H.264 only; re-encoding this source with libx264"
                    );
                    self.cfg.encoding.video = VideoMode::Encode;
                    AttemptEnd::Failed {
                        what: "failed",
                        why: format!(
                            "--video copy keeps H.264 only; the source's video is {codec}: re-encoding"
                        ),
                        fatal: false,
                    }
                }
                EndReason::Failed(e) => {
                    let fatal = matches!(e, PipelineError::NoVideo)
                        && matches!(self.cfg.source, Source::File { .. });
                    // A write error is the disk's, not the source's: retried soon.
                    self.disk_failure = matches!(e, PipelineError::Write { .. });
                    let e = crate::error_chain(&e);
                    let why = if last_line.is_empty() {
                        e
                    } else {
                        format!("{e} (ffmpeg: {last_line})")
                    };
                    AttemptEnd::Failed {
                        what: "failed",
                        why,
                        fatal,
                    }
                }
                EndReason::Eof => {
                    let finished = match (&pump_end, &self.cfg.source) {
                        (Some(p), _) => clean && matches!(p, PumpEnd::Done),
                        (None, Source::File { looped: false, .. }) => clean,
                        _ => false,
                    };
                    if finished {
                        AttemptEnd::Finished
                    } else if !run_end.opened && no_video_stream(&last_line) {
                        // A file of sound only cannot become video: say so, and stop retrying.
                        AttemptEnd::Failed {
                            what: "failed",
                            why: format!("the source has no video stream (ffmpeg: {last_line})"),
                            fatal: matches!(self.cfg.source, Source::File { .. }),
                        }
                    } else {
                        let why = match &pump_end {
                            Some(PumpEnd::SourceEnded(why)) => self.cfg.source.redact(why),
                            Some(p) if last_line.is_empty() => {
                                format!("{status_text}; pump: {p:?}")
                            }
                            _ => reason_text(status_text.clone()),
                        };
                        AttemptEnd::Failed {
                            what: "exited",
                            why,
                            fatal: false,
                        }
                    }
                }
            }
        };
        tracing::info!(
            stream = %stream,
            frames,
            segments = run_end.segments,
            parts = run_end.parts,
            opened = run_end.opened,
            status = %status_text,
            ?end,
            "ffmpeg exited"
        );
        (end, live_since.map(|t| t.elapsed()), frames)
    }

    /// Asks the attempt to end cleanly: the generator closes ffmpeg's input, a source's ffmpeg
    /// gets SIGINT; either way ffmpeg writes its last fragment and exits.
    fn finish_input(&self, ff: &Ffmpeg, pump_stop: &AtomicBool) {
        if self.synth.is_some() {
            pump_stop.store(true, Ordering::Relaxed);
        } else {
            ff.interrupt();
        }
    }

    /// Attempts until shutdown, the end of the media, or a fatal failure.
    async fn supervise(&mut self) -> Option<String> {
        let generator = self.cfg.source.is_generator();
        let (min, max) = if generator {
            GEN_BACKOFF
        } else {
            SOURCE_BACKOFF
        };
        let healthy = if generator {
            GEN_HEALTHY
        } else {
            SOURCE_HEALTHY
        };
        let mut remaining = if generator {
            self.cfg.stop_after_frames()
        } else {
            None
        };
        let mut backoff = min;
        loop {
            if self.stopping() || !self.lease.confirm().await {
                return None;
            }
            let started = Instant::now();
            let (end, live_for, frames) = self.attempt(remaining).await;
            self.pos.frames_in_last = frames;
            if let Some(r) = remaining.as_mut() {
                *r -= frames;
            }
            match end {
                AttemptEnd::Shutdown | AttemptEnd::Finished => return None,
                AttemptEnd::Failed { what, why, fatal } => {
                    if remaining.is_some_and(|r| r <= 0) || self.stopping() {
                        return None;
                    }
                    // A retried import would read the file from its start again, as a new
                    // epoch over UTC it has already published: what it published stays, the
                    // rest is not imported.
                    let (fatal, why) = if self.cfg.is_import() && self.report.segments > 0 {
                        let why = format!(
                            "{why}; the import stopped after {} segments (they stay; the rest of the file is not imported)",
                            self.report.segments
                        );
                        (true, why)
                    } else {
                        (fatal, why)
                    };
                    let source = self.cfg.source.masked();
                    let stream = &self.cfg.stream;
                    if fatal {
                        tracing::error!(
                            "stream={stream} source={source} {what}: {why}; it cannot work, not retrying"
                        );
                        self.status.set(StreamState::Failed, Some(why.clone()));
                        return Some(why);
                    }
                    // A run that stayed up resets the pause.
                    let ran = if generator {
                        Some(started.elapsed())
                    } else {
                        live_for
                    };
                    if ran.is_some_and(|d| d >= healthy) {
                        backoff = min;
                    }
                    self.report.ffmpeg_restarts += 1;
                    self.status.restarted();
                    self.status.set(StreamState::Retrying, Some(why.clone()));
                    // The disk (full, failing) is not the source: its retries stay short, so
                    // the stream is back within a second of space returning.
                    let pause = if std::mem::take(&mut self.disk_failure) {
                        backoff.min(DISK_RETRY)
                    } else {
                        let b = backoff;
                        backoff = (backoff * 2).min(max);
                        b
                    };
                    tracing::warn!(
                        "stream={stream} source={source} {what}: {why}; retrying in {}",
                        human(pause)
                    );
                    let mut stop_rx = self.stop_rx.clone();
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = stop_rx.changed() => {}
                    }
                }
            }
        }
    }
}

/// ffmpeg's line when the input has no video stream to map (`-map 0:v:0`).
fn no_video_stream(last_line: &str) -> bool {
    last_line.contains("Stream map '0:v:0' matches no streams")
}

/// `4 s`, `500 ms`.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Starts the generator's frame pump on ffmpeg's stdin; the receiver says how it ended.
#[allow(clippy::too_many_arguments)]
fn start_pump(
    ff: &mut Ffmpeg,
    cfg: &StreamConfig,
    renderer: Arc<Renderer>,
    g: &GenEpoch,
    start: Instant,
    max_frames: Option<i64>,
    stop: &Arc<AtomicBool>,
    written: &Arc<AtomicI64>,
) -> Result<oneshot::Receiver<PumpEnd>, GeneratorError> {
    let stdin = ff
        .take_stdin()
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
        renderer,
        events: cfg.schedule(),
        g0: g.g0,
        fps: g.epoch.fps,
        realtime: cfg.realtime,
        start,
        max_frames,
    };
    let (done_tx, done_rx) = oneshot::channel();
    let (stop, written) = (stop.clone(), written.clone());
    std::thread::Builder::new()
        .name(format!("pump-{}-e{}", cfg.stream, g.epoch.index))
        .spawn(move || {
            let mut out = std::fs::File::from(stdin);
            grow_pipe(&out);
            let end = pump(&spec, &mut out, &stop, &written);
            drop(out); // EOF: ffmpeg finishes the last fragment and exits
            let _ = done_tx.send(end);
        })
        .map_err(|e| GeneratorError::Io {
            context: "starting the frame pump thread".into(),
            source: e,
        })?;
    Ok(done_rx)
}

/// A 1 MiB pipe (Linux's default `pipe-max-size`) instead of 64 KiB: a 720p frame then crosses in
/// a few wake-ups instead of ~40, which is most of the generator's CPU while live.
fn grow_pipe(f: &std::fs::File) {
    const WANT: i32 = 1 << 20;
    if let Err(e) = nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_SETPIPE_SZ(WANT)) {
        tracing::debug!(error = %e, "could not enlarge ffmpeg's stdin pipe; using the default size");
    }
}

/// Reads the stream's epochs and newest segment, retrying while the store is unreachable.
/// `None` when shutdown was requested first.
async fn resume(
    store: &dyn Store,
    stream: &StreamName,
    stop_rx: &mut watch::Receiver<bool>,
) -> Result<Option<Position>, GeneratorError> {
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
                return Ok(Some(Position {
                    last_epoch,
                    last_seg: last.into_iter().last(),
                    frames_in_last: 0,
                }));
            }
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                if !warned {
                    warned = true;
                    tracing::warn!(stream = %stream, error = %e, "store unreachable at start; waiting for it");
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
async fn clear_parts_logged(
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

#[cfg(test)]
mod tests {
    use super::*;
    use hlsmark_clock::FrameRate;
    use hlsmark_clock::SeqNo;
    use std::path::PathBuf;

    fn cfg() -> StreamConfig {
        StreamConfig::new(StreamName::live(), PathBuf::from("/tmp/x"))
    }

    const T0: i64 = 1_795_000_000 * 90_000;

    fn seg(seq: SeqNo, epoch: u32, start: i64, dur: i64) -> Segment {
        Segment {
            seq,
            epoch,
            hls_start: HlsTime(start),
            duration: Duration90k(dur),
            utc_start: UtcTime(T0 + start),
            file: Segment::file_name(epoch, seq),
            init_file: None,
            frames: Default::default(),
        }
    }

    #[test]
    fn first_epoch_of_a_new_stream_starts_at_zero() {
        let (e, g0, close) = plan_epoch(&Position::default(), &cfg(), UtcTime(T0));
        assert_eq!(
            (e.index, e.first_seq, e.hls_start, e.gen_start, g0),
            (0, 0, HlsTime(0), GenTime(0), 0)
        );
        assert_eq!(e.utc_start, UtcTime(T0));
        assert!(close.is_none());
    }

    #[test]
    fn restart_continues_sequence_and_gen_and_closes_previous() {
        let (e0, _, _) = plan_epoch(&Position::default(), &cfg(), UtcTime(T0));
        // Epoch 0 published seq 0..=9 (10 s); 12.5 s of wall time later a new epoch starts.
        let st = Position {
            last_epoch: Some(e0),
            last_seg: Some(seg(9, 0, 9 * 90_000, 90_000)),
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
        // Unpaced: frames written run ahead of the wall clock, GEN follows them.
        let st = Position {
            frames_in_last: 3_000,
            ..st
        };
        let (_, g0, _) = plan_epoch(&st, &cfg(), UtcTime(T0 + 90_000));
        assert_eq!(g0, 3_000);
    }

    #[test]
    fn an_epoch_without_segments_is_replaced() {
        let (e0, _, _) = plan_epoch(&Position::default(), &cfg(), UtcTime(T0));
        let st = Position {
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
        let (e0, _, _) = plan_epoch(&Position::default(), &cfg(), UtcTime(T0));
        let mut c = cfg();
        c.fps = FrameRate::integer(25);
        let st = Position {
            last_epoch: Some(e0),
            last_seg: None,
            frames_in_last: 0,
        };
        let (e, g0, _) = plan_epoch(&st, &c, UtcTime(T0 + 3_001));
        assert_eq!(g0, 1);
        assert_eq!(e.gen_start, GenTime(3_600));
    }

    #[test]
    fn a_source_epoch_starts_where_the_last_segment_ended() {
        assert!(matches!(
            plan_source(&Position::default(), None),
            Timing::Source {
                index: 0,
                first_seq: 0,
                hls_start: HlsTime(0),
                ..
            }
        ));
        let (e0, _, _) = plan_epoch(&Position::default(), &cfg(), UtcTime(T0));
        // Epoch 0 ended with a short segment: the next starts at its end, not sequence-aligned.
        let st = Position {
            last_epoch: Some(e0),
            last_seg: Some(seg(4, 0, 4 * 90_000, 40_000)),
            frames_in_last: 0,
        };
        let Timing::Source {
            index,
            first_seq,
            hls_start,
            floor,
        } = plan_source(&st, None)
        else {
            panic!()
        };
        assert_eq!((index, first_seq, hls_start), (1, 5, HlsTime(400_000)));
        assert_eq!(floor, UtcTime(T0 + 400_000));
        assert_eq!(st.close_for(1).unwrap().hls_end, Some(HlsTime(400_000)));
        // An epoch that never published is replaced.
        let e1 = Epoch {
            index: 1,
            first_seq: 5,
            ..e0
        };
        let st = Position {
            last_epoch: Some(e1),
            ..st
        };
        assert!(matches!(
            plan_source(&st, None),
            Timing::Source {
                index: 1,
                first_seq: 5,
                ..
            }
        ));
        assert!(st.close_for(1).is_none());
    }

    #[test]
    fn pauses_read_well() {
        assert_eq!(human(Duration::from_secs(4)), "4 s");
        assert_eq!(human(Duration::from_millis(400)), "400 ms");
        assert_eq!(human(Duration::from_millis(1_600)), "1.6 s");
    }
}
