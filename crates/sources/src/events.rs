//! The event schedule: a seeded, deterministic sequence of non-overlapping events on the GEN frame
//! grid. The idle time between the end of one event and the start of the next is exponential with
//! the configured mean (at least one frame, so the corner is never mint on the frame before an
//! event starts); every event lasts the configured number of frames.
//!
//! The schedule depends only on the seed, the frame rate and the two durations, so a restarted
//! generator (or the renderer and the marker publisher, which each walk their own copy) agree on
//! every event without sharing state.
//!
//! Markers follow segments ([`Releaser`]): an event becomes a marker only once the segment holding
//! its first mint frame has been published, so a marker never points at media that was lost. An
//! event whose first frame was lost (ffmpeg died first) is re-anchored to the first frame of the
//! next epoch if it is still active there, else dropped and counted.

use hlsmark_clock::{Duration90k, Epoch, FrameRate, UtcTime};
use hlsmark_store::{Marker, StreamName};

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for test scenes.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 bits.
    #[allow(clippy::cast_precision_loss)]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One event: visible on GEN frames `start .. start + frames`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// 1-based number of the event in the stream (its label is `event #index`).
    pub index: u64,
    pub start: i64,
    pub frames: i64,
}

impl Event {
    pub fn end(&self) -> i64 {
        self.start + self.frames
    }
    pub fn active_at(&self, g: i64) -> bool {
        self.start <= g && g < self.end()
    }
}

/// The parameters of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleSpec {
    pub seed: u64,
    pub fps: FrameRate,
    pub mean_gap: Duration90k,
    pub duration: Duration90k,
}

impl ScheduleSpec {
    /// Event length in whole frames (at least one).
    pub fn event_frames(&self) -> i64 {
        self.fps.frames_nearest(self.duration).max(1)
    }
}

/// An endless iterator over the events of a schedule, in time order.
#[derive(Debug, Clone)]
pub struct EventSchedule {
    rng: SplitMix64,
    mean_gap_frames: f64,
    frames: i64,
    last: Option<Event>,
}

impl EventSchedule {
    pub fn new(spec: ScheduleSpec) -> Self {
        // Mean gap in frames; a float only here, to draw the exponential sample.
        #[allow(clippy::cast_precision_loss)]
        let mean_gap_frames = spec.mean_gap.ticks() as f64 * spec.fps.as_f64() / 90_000.0;
        Self {
            rng: SplitMix64::new(spec.seed),
            mean_gap_frames,
            frames: spec.event_frames(),
            last: None,
        }
    }

    /// Advances past every event that ends at or before GEN frame `g` and returns the first event
    /// that does not (it may be active at `g` or start later).
    pub fn first_ending_after(&mut self, g: i64) -> Event {
        loop {
            let e = self.peek();
            if e.end() > g {
                return e;
            }
            self.next();
        }
    }

    /// The next event without consuming it.
    pub fn peek(&mut self) -> Event {
        self.clone().draw()
    }

    fn draw(&mut self) -> Event {
        let u = self.rng.next_f64();
        let gap = (-(1.0 - u).ln() * self.mean_gap_frames).round();
        // Clamp to a sane range before converting (a gap of more than ~30 years is not useful).
        #[allow(clippy::cast_possible_truncation)]
        let gap = gap.clamp(1.0, 1e12) as i64;
        let (index, from) = match self.last {
            Some(e) => (e.index + 1, e.end()),
            None => (1, 0),
        };
        let e = Event {
            index,
            start: from + gap,
            frames: self.frames,
        };
        self.last = Some(e);
        e
    }
}

impl Iterator for EventSchedule {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        Some(self.draw())
    }
}

/// Answers "is an event active on frame g" for increasing `g`, in O(1) amortized.
#[derive(Debug, Clone)]
pub struct ActiveEvents {
    schedule: EventSchedule,
    current: Event,
}

impl ActiveEvents {
    pub fn new(spec: ScheduleSpec) -> Self {
        let mut schedule = EventSchedule::new(spec);
        let current = schedule.draw();
        Self { schedule, current }
    }

    /// Whether an event is active on frame `g`; `g` must not decrease between calls.
    pub fn active_at(&mut self, g: i64) -> bool {
        while self.current.end() <= g {
            self.current = self.schedule.draw();
        }
        self.current.active_at(g)
    }
}

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

/// Turns events into markers in step with published segments.
#[derive(Debug)]
pub(crate) struct Releaser {
    pub(crate) schedule: EventSchedule,
    pub(crate) seed: u64,
    pub(crate) stream: StreamName,
}

impl Releaser {
    pub(crate) fn new(spec: ScheduleSpec, stream: StreamName) -> Self {
        Self {
            schedule: EventSchedule::new(spec),
            seed: spec.seed,
            stream,
        }
    }

    /// Consumes the events that start before `g0` (the new epoch's first frame): one still active
    /// at `g0` is returned for re-anchoring; the others lost their first frame and are dropped
    /// (counted, unless `quiet`: at process start they belong to earlier runs).
    pub(crate) fn start_epoch(&mut self, g0: i64, quiet: bool, dropped: &mut u64) -> Option<Event> {
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

    /// The markers of the events whose first frame lies before epoch frame `end_frame` (exclusive),
    /// `g0` being the epoch's first GEN frame. Their HLS time is `epoch.frame_time(n)`.
    pub(crate) fn release(&mut self, epoch: &Epoch, g0: i64, end_frame: i64) -> Vec<Marker> {
        let mut out = Vec::new();
        loop {
            let ev = self.schedule.peek();
            if ev.start >= g0 + end_frame {
                return out;
            }
            self.schedule.next();
            out.push(self.marker(&ev, epoch, ev.start - g0, ev.frames));
        }
    }

    /// The marker of event `e` starting on frame `n` of `epoch` and lasting `frames` frames.
    pub(crate) fn marker(&self, e: &Event, epoch: &Epoch, n: i64, frames: i64) -> Marker {
        let hls = epoch.frame_time(n);
        Marker {
            id: marker_id(self.seed, &self.stream, e.index),
            stream: self.stream.clone(),
            label: format!("event #{}", e.index),
            kind: "event".into(),
            gen_time: epoch.gen_at(hls),
            hls,
            utc: epoch.utc_at(hls),
            // From its first frame's time to the time of the frame after its last: frame times
            // are rounded to the tick, so this is not always `frames x one frame`.
            duration: epoch.frame_time(n + frames) - hls,
            severity: Default::default(),
            color: None,
            tags: Vec::new(),
            data: None,
            created_at: UtcTime::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64) -> ScheduleSpec {
        ScheduleSpec {
            seed,
            fps: FrameRate::integer(30),
            mean_gap: Duration90k::from_secs(10),
            duration: Duration90k::from_secs(2),
        }
    }

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        let a: Vec<_> = EventSchedule::new(spec(7)).take(50).collect();
        let b: Vec<_> = EventSchedule::new(spec(7)).take(50).collect();
        let c: Vec<_> = EventSchedule::new(spec(8)).take(50).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn events_never_overlap_or_touch_and_mean_is_close() {
        let ev: Vec<_> = EventSchedule::new(spec(1)).take(2_000).collect();
        for w in ev.windows(2) {
            assert!(w[1].start > w[0].end(), "{:?}", w);
            assert_eq!(w[1].index, w[0].index + 1);
        }
        assert!(ev.iter().all(|e| e.frames == 60));
        let gaps: i64 = ev.windows(2).map(|w| w[1].start - w[0].end()).sum();
        let mean_s = gaps / 1_999 / 30;
        assert!((8..=12).contains(&mean_s), "mean gap {mean_s} s");
    }

    #[test]
    fn active_events_agree_with_schedule_and_skip_ahead() {
        let ev: Vec<_> = EventSchedule::new(spec(3)).take(20).collect();
        let mut act = ActiveEvents::new(spec(3));
        let last = ev[19].end();
        for g in 0..last {
            let want = ev.iter().any(|e| e.active_at(g));
            assert_eq!(act.active_at(g), want, "frame {g}");
        }
        let mut s = EventSchedule::new(spec(3));
        assert_eq!(s.first_ending_after(ev[5].start), ev[5]);
        assert_eq!(s.first_ending_after(ev[5].end()), ev[6]);
        assert_eq!(s.next(), Some(ev[6]));
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

    #[test]
    fn lost_events_are_reanchored_when_still_active_else_dropped() {
        let spec = spec(1);
        let ev: Vec<_> = EventSchedule::new(spec).take(10).collect();
        let mut r = Releaser::new(spec, StreamName::live());
        // A new epoch starts in the middle of event 5: events 1-4 lost their first frame and ended.
        let g0 = ev[4].start + 3;
        let mut dropped = 0;
        assert_eq!(r.start_epoch(g0, false, &mut dropped), Some(ev[4]));
        assert_eq!(dropped, 4);
        assert_eq!(r.schedule.peek(), ev[5]);
        // Between events nothing is re-anchored; at process start old events are not counted.
        let mut r = Releaser::new(spec, StreamName::live());
        let mut dropped = 0;
        assert_eq!(r.start_epoch(ev[2].end(), true, &mut dropped), None);
        assert_eq!(dropped, 0);
        // The re-anchored marker starts on the epoch's first frame and lasts the rest of the event.
        let e0 = Epoch {
            index: 0,
            first_seq: 0,
            hls_start: hlsmark_clock::HlsTime(0),
            gen_start: hlsmark_clock::GenTime(0),
            utc_start: UtcTime(0),
            fps: FrameRate::integer(30),
            segment_frames: 30,
            hls_end: None,
            pts_start: None,
        };
        let m = r.marker(&ev[4], &e0, 0, ev[4].end() - g0);
        assert_eq!(m.hls, e0.hls_start);
        assert_eq!(m.duration, Duration90k((ev[4].frames - 3) * 3_000));
        assert_eq!(m.label, "event #5");
        // Released in step with segments: only events starting before the segment's end.
        let mut r = Releaser::new(spec, StreamName::live());
        let first = r.release(&e0, 0, ev[1].start);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].hls, e0.frame_time(ev[0].start));
        assert_eq!(r.release(&e0, 0, ev[1].start + 1).len(), 1);
    }
}
