//! The event schedule: a seeded, deterministic sequence of non-overlapping events on the GEN frame
//! grid. The idle time between the end of one event and the start of the next is exponential with
//! the configured mean (at least one frame, so the corner is never mint on the frame before an
//! event starts); every event lasts the configured number of frames.
//!
//! The schedule depends only on the seed, the frame rate and the two durations, so a restarted
//! generator (or the renderer and the marker publisher, which each walk their own copy) agree on
//! every event without sharing state.

use hlsmark_clock::{Duration90k, FrameRate};

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
}
