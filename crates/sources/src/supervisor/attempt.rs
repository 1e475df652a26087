//! One attempt: plan the epoch (or the source's timing), start ffmpeg (and the generator's frame
//! pump or a page's browser), forward what the pipeline publishes to the store queue until the
//! output ends or shutdown asks it to finish, then hand how it ended to [`super::exit`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use hlsmark_clock::{Epoch, UtcTime};
use hlsmark_store::StreamState;
use tokio::sync::{mpsc, oneshot};

use super::exit::{self, AttemptEnd};
use super::plan::{plan_epoch, plan_source};
use super::{EXIT_GRACE, FINISH_TIMEOUT, PART_HOLD_SEGMENTS, StreamRun};
use crate::GeneratorError;
use crate::config::StreamConfig;
use crate::encode::VideoMode;
use crate::events::Event;
use crate::ffmpeg::{ffmpeg_args, ffmpeg_args_at};
use crate::pipeline::{
    self, EndReason, Ffmpeg, Output, Pace, PipelineError, Published, RunSpec, Timing,
};
use crate::publish::Op;
use crate::pump::{PumpEnd, PumpSpec, pump};
use crate::render::Renderer;
use crate::source::Source;

/// The generator's per-epoch state.
pub(super) struct GenEpoch {
    epoch: Epoch,
    g0: i64,
    reanchor: Option<Event>,
}

impl StreamRun {
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
    pub(super) async fn attempt(
        &mut self,
        remaining: Option<i64>,
    ) -> (AttemptEnd, Option<Duration>, i64) {
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
                return (
                    AttemptEnd::could_not_start(self.cfg.source.redact(&why)),
                    None,
                    0,
                );
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
                return (AttemptEnd::could_not_start(e.to_string()), None, 0);
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
                Err(e) => return (AttemptEnd::could_not_start(e.to_string()), None, 0),
            }
        }
        if let Some(p) = page.as_mut() {
            match p.start_pump(&mut ff, &pump_stop, &written) {
                Ok(rx) => pump_done = Some(rx),
                Err(why) => return (AttemptEnd::could_not_start(why), None, 0),
            }
        }

        let Some(stdout) = ff.take_stdout() else {
            return (
                AttemptEnd::could_not_start("ffmpeg's stdout is missing".into()),
                None,
                0,
            );
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
            pace: if self.cfg.source.paced_by_reader() && self.cfg.pace {
                Pace::Media
            } else if self.cfg.source.is_hls_playlist() {
                Pace::LiveFinished
            } else if self.cfg.source.is_live() {
                Pace::Live
            } else {
                Pace::Off
            },
            stop: self.stop_rx.clone(),
            input: ff.input(),
            // Motion JPEG over HTTP, found in ffmpeg's dump, is read again with arrival times.
            stamp_arrival_next: matches!(self.cfg.source, Source::Http { .. })
                && !self.cfg.stamp_arrival,
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
        let verdict = exit::classify(
            &stream,
            &exit::Ended {
                stopping,
                reason: &run_end.reason,
                segments: run_end.segments,
                opened: run_end.opened,
                published_before: self.report.segments > run_end.segments,
                pump: pump_end.as_ref(),
                clean,
                status: &status_text,
                last_line: &last_line,
                source: &self.cfg.source,
            },
        );
        if verdict.stalled {
            self.report.stalls += 1;
        }
        if verdict.reencode {
            self.cfg.encoding.video = VideoMode::Encode;
        }
        if verdict.stamp_arrival {
            self.cfg.stamp_arrival = true;
        }
        self.disk_failure = verdict.disk_failure;
        let end = verdict.end;
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
