//! The frame pump: a plain OS thread that renders frames and writes them into ffmpeg's stdin.
//!
//! Pacing sleeps until each frame is due (`start + n / fps`, computed from the frame index, never
//! accumulated), so it costs no CPU while waiting. When it is late (a slow disk, a stalled ffmpeg)
//! it does not sleep and writes the missed frames back to back: a frame's timestamp is its index,
//! so catching up never shifts time. The blocking pipe write is the back-pressure of the unpaced
//! mode.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use hlsmark_clock::FrameRate;

use crate::events::{ActiveEvents, ScheduleSpec};
use crate::render::Renderer;

/// What one pump run renders.
#[derive(Debug, Clone)]
pub struct PumpSpec {
    pub renderer: Arc<Renderer>,
    pub events: ScheduleSpec,
    /// GEN frame index of the epoch's first frame.
    pub g0: i64,
    pub fps: FrameRate,
    pub realtime: bool,
    /// Frame 0 is due at this instant (the epoch's `utc_start` was read at the same moment).
    pub start: Instant,
    /// Stop (and close stdin) after this many frames.
    pub max_frames: Option<i64>,
}

/// Why the pump stopped.
#[derive(Debug)]
pub enum PumpEnd {
    /// The stop flag was raised (shutdown, or ffmpeg already gone).
    Stopped,
    /// `max_frames` were written.
    Done,
    /// ffmpeg's stdin failed (ffmpeg exited or was killed).
    WriteFailed(std::io::Error),
    /// The frames' source ended (a page source's browser exited or hung): the reason.
    SourceEnded(String),
}

/// Offset of frame `n` from the start as a `std` duration (exact to the nanosecond floor).
fn frame_offset(fps: FrameRate, n: i64) -> Duration {
    let ticks = fps.frame_to_ticks(n).ticks().max(0).unsigned_abs();
    Duration::from_nanos(ticks.saturating_mul(100_000) / 9)
}

/// Runs until stopped, done or the pipe fails. `written` counts frames fully written.
pub fn pump(
    spec: &PumpSpec,
    out: &mut impl Write,
    stop: &AtomicBool,
    written: &AtomicI64,
) -> PumpEnd {
    let mut buf = vec![0u8; spec.renderer.frame_len()];
    let mut active = ActiveEvents::new(spec.events);
    let mut n: i64 = 0;
    let mut warned_late = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            return PumpEnd::Stopped;
        }
        if spec.max_frames.is_some_and(|m| n >= m) {
            return PumpEnd::Done;
        }
        if spec.realtime {
            let due = spec.start + frame_offset(spec.fps, n);
            let now = Instant::now();
            if let Some(wait) = due.checked_duration_since(now) {
                std::thread::sleep(wait);
            } else if !warned_late && now.duration_since(due) > Duration::from_secs(1) {
                warned_late = true;
                tracing::warn!(
                    frame = n,
                    late_ms = now.duration_since(due).as_millis(),
                    "generator is behind the wall clock; catching up"
                );
            } else if warned_late && now.duration_since(due) < Duration::from_millis(100) {
                warned_late = false;
                tracing::info!(frame = n, "generator caught up with the wall clock");
            }
        }
        let g = spec.g0 + n;
        spec.renderer.render(g, active.active_at(g), &mut buf);
        if let Err(e) = out.write_all(&buf) {
            return PumpEnd::WriteFailed(e);
        }
        n += 1;
        written.store(n, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventSchedule;
    use crate::render::{Scene, corner_is_mint};
    use hlsmark_clock::Duration90k;

    fn spec(g0: i64, max: i64) -> PumpSpec {
        PumpSpec {
            renderer: Arc::new(Renderer::new(Scene {
                width: 32,
                height: 32,
                block: 8,
                fps: FrameRate::integer(30),
                roll_px_per_sec: 10,
            })),
            events: ScheduleSpec {
                seed: 9,
                fps: FrameRate::integer(30),
                mean_gap: Duration90k::from_secs(1),
                duration: Duration90k::from_millis(200),
            },
            g0,
            fps: FrameRate::integer(30),
            realtime: false,
            start: Instant::now(),
            max_frames: Some(max),
        }
    }

    #[test]
    fn unpaced_pump_writes_exact_frames_with_events_at_gen_indices() {
        let s = spec(1_000, 300);
        let mut out = Vec::new();
        let (stop, written) = (AtomicBool::new(false), AtomicI64::new(0));
        assert!(matches!(pump(&s, &mut out, &stop, &written), PumpEnd::Done));
        assert_eq!(written.load(Ordering::Acquire), 300);
        let len = s.renderer.frame_len();
        assert_eq!(out.len(), 300 * len);
        let events: Vec<_> = EventSchedule::new(s.events).take(100).collect();
        for (n, frame) in out.chunks_exact(len).enumerate() {
            let g = 1_000 + n as i64;
            let want = events.iter().any(|e| e.active_at(g));
            assert_eq!(corner_is_mint(frame, 32, 8), want, "frame {g}");
        }
    }

    #[test]
    fn a_closed_pipe_ends_the_pump() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (stop, written) = (AtomicBool::new(false), AtomicI64::new(0));
        let end = pump(&spec(0, 10), &mut Broken, &stop, &written);
        assert!(matches!(end, PumpEnd::WriteFailed(_)));
        assert_eq!(written.load(Ordering::Acquire), 0);
        stop.store(true, Ordering::Relaxed);
        assert!(matches!(
            pump(&spec(0, 10), &mut Vec::new(), &stop, &written),
            PumpEnd::Stopped
        ));
    }

    #[test]
    fn frame_offsets_are_exact() {
        let ntsc = FrameRate::new(30_000, 1_001).unwrap();
        assert_eq!(frame_offset(ntsc, 30_000), Duration::from_secs(1_001));
        assert_eq!(
            frame_offset(FrameRate::integer(30), 1),
            Duration::from_nanos(33_333_333)
        );
    }
}
