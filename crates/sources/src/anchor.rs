//! UTC anchoring of a real source's segments: which wall time each segment's first frame gets
//! (its EXT-X-PROGRAM-DATE-TIME).
//!
//! A frame cannot have been shown before it reached us, so for every fragment
//! `arrival wall time - media end` is an upper bound of the stream's UTC offset (`utc - hls`); the
//! least-delayed fragment gives the tightest bound (Moonfire NVR's rule). The first segment of an
//! epoch is anchored by the minimum over its fragments, so a start-up burst cannot pull PDT late.
//! Later segments follow media time (`previous utc + media elapsed`), slewed by at most 500 ppm of
//! that media towards the minimum of a sliding window, so PDT tracks the wall clock without ever
//! jumping. When the newest segment shows PDT more than 3 s behind the wall clock (the source
//! stalled, or its clock is slow), [`Anchor::place`] re-anchors: the caller starts a new epoch
//! (DISCONTINUITY) and PDT jumps forward. PDT never goes backwards: a source whose clock runs fast
//! is only ever slewed, and every anchor is at least `floor` (the end of what was published
//! before).
//!
//! Pure: wall times are arguments (the caller's clock), so tests simulate hours without sleeping.

use std::collections::VecDeque;

use hlsmark_clock::{Duration90k, HlsTime, UtcTime};

/// Largest slew, in parts per million of the media elapsed.
pub const MAX_SLEW_PPM: i64 = 500;
/// PDT further behind the wall clock than this re-anchors as a new epoch.
pub const REANCHOR_LAG: Duration90k = Duration90k::from_secs(3);
/// Media over which the least-delayed estimate is taken after the first segment.
pub const WINDOW: Duration90k = Duration90k::from_secs(10);

/// Where a segment sits on the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub utc_start: UtcTime,
    /// True for the first segment of an epoch: the first one placed, or a re-anchor (the caller
    /// starts a new epoch at this segment).
    pub new_epoch: bool,
}

/// The UTC anchor of one ffmpeg run (across the epochs it re-anchors into).
#[derive(Debug, Clone)]
pub struct Anchor {
    floor: UtcTime,
    /// Least `arrival - media end` (ticks) of the fragments observed since the last placement.
    open_min: Option<i64>,
    /// (segment end, its least offset), oldest first, covering about [`WINDOW`] of media.
    window: VecDeque<(HlsTime, i64)>,
    /// The last placed segment: (start, utc_start).
    last: Option<(HlsTime, UtcTime)>,
}

fn offset(utc: UtcTime, hls: HlsTime) -> i64 {
    utc.ticks().saturating_sub(hls.ticks())
}

impl Anchor {
    /// `floor`: no segment will be placed before this wall time (the end of the stream's last
    /// published segment, so PDT never goes back across epochs).
    pub fn new(floor: UtcTime) -> Self {
        Self {
            floor,
            open_min: None,
            window: VecDeque::new(),
            last: None,
        }
    }

    /// A fragment whose media ends at `media_end` arrived at `arrival`.
    pub fn observe(&mut self, arrival: UtcTime, media_end: HlsTime) {
        let o = offset(arrival, media_end);
        self.open_min = Some(self.open_min.map_or(o, |m| m.min(o)));
    }

    /// The wall time of media time `t` as the last placed segment has it (its PDT plus the media
    /// since), before any slew of later segments; `None` before the first placement.
    pub fn utc_at(&self, t: HlsTime) -> Option<UtcTime> {
        self.last.map(|(start, utc)| utc + (t - start))
    }

    /// Places the segment `[start, start + duration)` made of the fragments observed since the
    /// previous call. `now` is used only when no fragment was observed (it cannot happen in the
    /// pipeline, which observes every fragment).
    pub fn place(&mut self, start: HlsTime, duration: Duration90k, now: UtcTime) -> Placed {
        let end = start + duration;
        let seg_min = self.open_min.take().unwrap_or_else(|| offset(now, end));
        let placed = match self.last {
            None => Placed {
                utc_start: UtcTime(start.ticks() + seg_min).max(self.floor),
                new_epoch: true,
            },
            Some((prev_start, prev_utc)) => {
                let elapsed = (start - prev_start).max(Duration90k::ZERO);
                let nominal = prev_utc + elapsed;
                let newest = UtcTime(start.ticks() + seg_min);
                if newest - nominal > REANCHOR_LAG {
                    self.window.clear();
                    Placed {
                        utc_start: newest.max(nominal),
                        new_epoch: true,
                    }
                } else {
                    let est = self
                        .window
                        .iter()
                        .map(|&(_, o)| o)
                        .chain([seg_min])
                        .min()
                        .unwrap_or(seg_min);
                    let want = UtcTime(start.ticks() + est) - nominal;
                    let bound = elapsed.ticks().saturating_mul(MAX_SLEW_PPM) / 1_000_000;
                    let slew = want.ticks().clamp(-bound, bound);
                    Placed {
                        utc_start: nominal + Duration90k(slew),
                        new_epoch: false,
                    }
                }
            }
        };
        self.window.push_back((end, seg_min));
        while self.window.front().is_some_and(|&(e, _)| end - e > WINDOW) {
            self.window.pop_front();
        }
        self.last = Some((start, placed.utc_start));
        placed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_000_000 * 90_000;
    const SEC: i64 = 90_000;

    /// A source delivering 1 s segments in 5 fragments each; `delay(k)` is the network delay of
    /// fragment k (ticks), `rate_ppm` how fast the source clock runs against the wall clock.
    fn run(
        a: &mut Anchor,
        segments: i64,
        rate_ppm: i64,
        delay: impl Fn(i64) -> i64,
    ) -> Vec<Placed> {
        let mut out = Vec::new();
        for s in 0..segments {
            for f in 0..5 {
                let k = s * 5 + f;
                let media_end = HlsTime((k + 1) * SEC / 5);
                // The wall time at which that media was captured, then the delay.
                let captured = T0 + media_end.ticks() * 1_000_000 / (1_000_000 + rate_ppm);
                a.observe(UtcTime(captured + delay(k)), media_end);
            }
            out.push(a.place(HlsTime(s * SEC), Duration90k(SEC), UtcTime(0)));
        }
        out
    }

    #[test]
    fn first_segment_is_anchored_by_the_least_delayed_fragment() {
        let mut a = Anchor::new(UtcTime(0));
        // A start-up burst: the first fragments arrive 2 s late, the last one only 30 ms.
        let p = run(&mut a, 1, 0, |k| if k < 4 { 2 * SEC } else { 2_700 });
        assert_eq!(
            p[0],
            Placed {
                utc_start: UtcTime(T0 + 2_700),
                new_epoch: true
            }
        );
    }

    #[test]
    fn later_segments_follow_media_time_and_slew_at_most_500_ppm() {
        let mut a = Anchor::new(UtcTime(0));
        // First segment delayed 400 ms (a burst), then 10 ms: PDT creeps towards the truth by at
        // most 45 ticks (500 ppm of 1 s) a segment, never jumps.
        let p = run(&mut a, 100, 0, |k| if k < 5 { 36_000 } else { 900 });
        assert_eq!(p[0].utc_start, UtcTime(T0 + 36_000));
        for w in p.windows(2) {
            let step = (w[1].utc_start - w[0].utc_start).ticks();
            assert!((SEC - 45..=SEC).contains(&step), "{step}");
            assert!(!w[1].new_epoch);
        }
        assert_eq!(p[99].utc_start, UtcTime(T0 + 99 * SEC + 36_000 - 99 * 45));
    }

    #[test]
    fn jitter_does_not_move_pdt_beyond_the_slew() {
        let mut a = Anchor::new(UtcTime(0));
        // Delay jumps between 5 ms and 900 ms pseudo-randomly: the least-delayed fragment keeps
        // PDT at the 5 ms one.
        let p = run(&mut a, 600, 0, |k| {
            if (k * 7_919) % 13 == 0 {
                450
            } else {
                450 + (k * 7_919 % 81_000)
            }
        });
        for (s, x) in p.iter().enumerate() {
            assert_eq!(
                x.utc_start,
                UtcTime(T0 + s as i64 * SEC + 450),
                "segment {s}"
            );
        }
    }

    #[test]
    fn a_slow_source_clock_is_followed_by_slewing() {
        let mut a = Anchor::new(UtcTime(0));
        // The source clock runs 200 ppm slow: after an hour PDT would be 0.72 s behind; the slew
        // keeps it within the drift over the window (11 s x 200 ppm = 2.2 ms) of the wall clock.
        let p = run(&mut a, 3_600, -200, |_| 450);
        let last = p[3_599];
        let wall = T0 + 3_599 * SEC * 1_000_000 / (1_000_000 - 200) + 450;
        assert!(
            (last.utc_start.ticks() - wall).abs() < 3 * SEC / 1000,
            "{last:?}"
        );
        assert!(p.iter().skip(1).all(|x| !x.new_epoch));
    }

    #[test]
    fn a_fast_source_clock_is_only_slewed_never_stepped_back() {
        let mut a = Anchor::new(UtcTime(0));
        let p = run(&mut a, 3_600, 2_000, |_| 450);
        for w in p.windows(2) {
            let step = (w[1].utc_start - w[0].utc_start).ticks();
            assert!(step >= SEC - 45, "{step}");
            assert!(!w[1].new_epoch);
        }
    }

    #[test]
    fn more_than_3_s_behind_reanchors_forward() {
        let mut a = Anchor::new(UtcTime(0));
        // The source stalls for 5 s after segment 10 (every later fragment arrives 5 s late
        // relative to its media time).
        let p = run(&mut a, 20, 0, |k| if k < 55 { 450 } else { 5 * SEC + 450 });
        assert!(p[..11].iter().skip(1).all(|x| !x.new_epoch));
        assert!(p[11].new_epoch, "{:?}", p[11]);
        assert_eq!(p[11].utc_start, UtcTime(T0 + 11 * SEC + 5 * SEC + 450));
        assert!(p[12..].iter().all(|x| !x.new_epoch));
        assert_eq!(p[19].utc_start, UtcTime(T0 + 19 * SEC + 5 * SEC + 450));
        // A lag of 2.9 s is slewed, not re-anchored.
        let mut a = Anchor::new(UtcTime(0));
        let p = run(&mut a, 20, 0, |k| if k < 55 { 450 } else { 261_000 + 450 });
        assert!(p.iter().skip(1).all(|x| !x.new_epoch));
    }

    #[test]
    fn the_floor_keeps_pdt_from_going_back_across_epochs() {
        let floor = UtcTime(T0 + 10 * SEC);
        let mut a = Anchor::new(floor);
        let p = run(&mut a, 2, 0, |_| 450);
        assert_eq!(p[0].utc_start, floor);
        assert!(p[1].utc_start > p[0].utc_start);
    }
}
