//! Frame rates as exact rationals and frame index <-> media time with integer math only.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time::{Duration90k, TICKS_PER_SECOND};

/// Frames per second as `num / den` (30000/1001 for NTSC 29.97). Both parts are non-zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "FrameRateRepr", into = "FrameRateRepr")]
pub struct FrameRate {
    num: NonZeroU32,
    den: NonZeroU32,
}

#[derive(Serialize, Deserialize)]
struct FrameRateRepr {
    num: u32,
    den: u32,
}

impl TryFrom<FrameRateRepr> for FrameRate {
    type Error = FrameRateError;
    fn try_from(r: FrameRateRepr) -> Result<Self, FrameRateError> {
        FrameRate::new(r.num, r.den)
    }
}
impl From<FrameRate> for FrameRateRepr {
    fn from(r: FrameRate) -> Self {
        Self {
            num: r.num(),
            den: r.den(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameRateError {
    #[error("frame rate {0:?} is not of the form N or N/D with whole numbers")]
    Syntax(String),
    #[error("frame rate {num}/{den} must be between 1 and 240 frames per second")]
    OutOfRange { num: u32, den: u32 },
}

impl FrameRate {
    /// A frame rate of `num / den` fps, between 1 and 240 fps.
    pub fn new(num: u32, den: u32) -> Result<Self, FrameRateError> {
        let (Some(n), Some(d)) = (NonZeroU32::new(num), NonZeroU32::new(den)) else {
            return Err(FrameRateError::OutOfRange { num, den });
        };
        let fps_x = u64::from(num);
        if fps_x < u64::from(den) || fps_x > 240 * u64::from(den) {
            return Err(FrameRateError::OutOfRange { num, den });
        }
        Ok(Self { num: n, den: d })
    }

    /// Whole frames per second (`FrameRate::integer(30)`), panics only on a constant out of range.
    pub fn integer(fps: u32) -> Self {
        Self::new(fps, 1).unwrap_or(Self {
            num: NonZeroU32::MIN.saturating_add(29),
            den: NonZeroU32::MIN,
        })
    }

    pub fn num(self) -> u32 {
        self.num.get()
    }
    pub fn den(self) -> u32 {
        self.den.get()
    }

    /// Ticks per `num` frames: frame `n` starts at `round(n * K / num)` ticks.
    fn k(self) -> i128 {
        i128::from(TICKS_PER_SECOND) * i128::from(self.den())
    }

    /// `round(n * K / num)`, halves away from zero, in `i128` (cannot overflow for any `i64` n).
    fn ticks_i128(self, n: i128) -> i128 {
        let p = n * self.k();
        let q = i128::from(self.num());
        let r = (2 * p.abs() + q) / (2 * q);
        if p < 0 { -r } else { r }
    }

    /// Media time offset of frame `n` from the start of its epoch: `n * 90000 * den / num`
    /// rounded to the nearest tick, halves away from zero. That is ffmpeg's `av_rescale_q`
    /// rounding, so frame `n` sits on exactly the tick ffmpeg gives it in a 90 kHz track, also
    /// at 24000/1001 (3753.75 ticks a frame) and 60000/1001 (1501.5). Exact (no rounding at all)
    /// whenever 90000 * den is a multiple of num, as for 24, 25, 30, 50, 60 and 30000/1001 fps.
    /// Saturates at the `i64` range instead of wrapping.
    pub fn frame_to_ticks(self, n: i64) -> Duration90k {
        let t = self.ticks_i128(i128::from(n));
        Duration90k(i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX }))
    }

    /// [`Self::frame_to_ticks`], or `None` when the time does not fit in an `i64`.
    pub fn checked_frame_to_ticks(self, n: i64) -> Option<Duration90k> {
        i64::try_from(self.ticks_i128(i128::from(n)))
            .ok()
            .map(Duration90k)
    }

    /// The frame shown at offset `d` from the start of the epoch: the largest `n` with
    /// `frame_to_ticks(n) <= d`. Inverse of [`Self::frame_to_ticks`] for every `n`.
    pub fn ticks_to_frame(self, d: Duration90k) -> i64 {
        // Frame starts are at least 375 ticks apart (<= 240 fps) and within half a tick of
        // n * K / num, so n * K / num <= t + 1/2, i.e. n <= ((2t + 1) * num) / 2K, is exact up to
        // the tie rule for negative halves; one step each way settles it.
        let t = i128::from(d.ticks());
        let q = i128::from(self.num());
        let mut n = ((2 * t + 1) * q).div_euclid(2 * self.k());
        while self.ticks_i128(n) > t {
            n -= 1;
        }
        while self.ticks_i128(n + 1) <= t {
            n += 1;
        }
        // |n| <= |t| * 240 / 90000 + 1, far inside i64.
        #[allow(clippy::cast_possible_truncation)]
        let n = n as i64;
        n
    }

    /// The first frame that starts at or after `d` (rounding up to a frame boundary).
    pub fn ticks_to_frame_ceil(self, d: Duration90k) -> i64 {
        let n = self.ticks_to_frame(d);
        if self.frame_to_ticks(n) == d {
            n
        } else {
            n + 1
        }
    }

    /// The whole number of frames nearest to `d` (used to fit a requested segment duration).
    pub fn frames_nearest(self, d: Duration90k) -> i64 {
        let t = i128::from(d.ticks()) * i128::from(self.num());
        let k = self.k();
        #[allow(clippy::cast_possible_truncation)]
        let n = ((2 * t + k).div_euclid(2 * k)) as i64;
        n
    }

    /// True when every frame boundary falls on a whole tick (no rounding in `frame_to_ticks`).
    /// Informational: nothing in this crate requires it.
    pub fn is_tick_exact(self) -> bool {
        self.k() % i128::from(self.num()) == 0
    }

    /// Edge conversion for logs and JSON.
    pub fn as_f64(self) -> f64 {
        f64::from(self.num()) / f64::from(self.den())
    }
}

impl fmt::Debug for FrameRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} fps", self.num, self.den)
    }
}

impl fmt::Display for FrameRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den() == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

impl FromStr for FrameRate {
    type Err = FrameRateError;
    /// `30`, `25`, `30000/1001`.
    fn from_str(s: &str) -> Result<Self, FrameRateError> {
        let syntax = || FrameRateError::Syntax(s.to_owned());
        let (n, d) = match s.trim().split_once('/') {
            Some((n, d)) => (
                n.trim().parse().map_err(|_| syntax())?,
                d.trim().parse().map_err(|_| syntax())?,
            ),
            None => (s.trim().parse().map_err(|_| syntax())?, 1),
        };
        Self::new(n, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn common_rates_are_exact() {
        let ntsc = FrameRate::new(30_000, 1_001).unwrap();
        assert_eq!(ntsc.frame_to_ticks(1), Duration90k(3_003));
        assert_eq!(ntsc.frame_to_ticks(30_000), Duration90k(90_090_000));
        assert!(ntsc.is_tick_exact());
        for fps in [24, 25, 30, 50, 60] {
            assert!(FrameRate::integer(fps).is_tick_exact(), "{fps}");
        }
        assert!(!FrameRate::integer(7).is_tick_exact());
    }

    #[test]
    fn fractional_rates_round_to_the_nearest_tick_like_ffmpeg() {
        // av_rescale_q(n, 1001/24000, 1/90000) with AV_ROUND_NEAR_INF: 3753.75 ticks a frame.
        let film = FrameRate::new(24_000, 1_001).unwrap();
        assert!(!film.is_tick_exact());
        let ticks: Vec<i64> = (0..6).map(|n| film.frame_to_ticks(n).ticks()).collect();
        assert_eq!(ticks, [0, 3_754, 7_508, 11_261, 15_015, 18_769]);
        assert_eq!(film.frame_to_ticks(-1), Duration90k(-3_754));
        assert_eq!(film.frame_to_ticks(-2), Duration90k(-7_508));
        assert_eq!(film.frame_to_ticks(24_000), Duration90k(90_090_000));
        // 1501.5 ticks a frame: every odd frame is a half, rounded up (away from zero).
        let ntsc60 = FrameRate::new(60_000, 1_001).unwrap();
        let ticks: Vec<i64> = (0..5).map(|n| ntsc60.frame_to_ticks(n).ticks()).collect();
        assert_eq!(ticks, [0, 1_502, 3_003, 4_505, 6_006]);
        assert_eq!(ntsc60.frame_to_ticks(-1), Duration90k(-1_502));
        assert_eq!(ntsc60.ticks_to_frame(Duration90k(1_501)), 0);
        assert_eq!(ntsc60.ticks_to_frame(Duration90k(1_502)), 1);
        assert_eq!(ntsc60.ticks_to_frame(Duration90k(-1)), -1);
        assert_eq!(ntsc60.ticks_to_frame(Duration90k(-1_502)), -1);
        assert_eq!(ntsc60.ticks_to_frame(Duration90k(-1_503)), -2);
        assert_eq!(ntsc60.ticks_to_frame_ceil(Duration90k(1)), 1);
        assert_eq!(ntsc60.ticks_to_frame_ceil(Duration90k(1_502)), 1);
        assert_eq!(
            FrameRate::new(120_000, 1_001)
                .unwrap()
                .frame_to_ticks(1)
                .ticks(),
            751
        );
        // 1 s at 23.976 fps is 24 frames (1.001 s), a segment of 90090 ticks.
        assert_eq!(film.frames_nearest(Duration90k::from_secs(1)), 24);
        assert_eq!(film.frame_to_ticks(24), Duration90k(90_090));
    }

    #[test]
    fn extreme_frames_saturate_or_report() {
        let r = FrameRate::integer(1);
        assert_eq!(r.frame_to_ticks(i64::MAX), Duration90k(i64::MAX));
        assert_eq!(r.frame_to_ticks(i64::MIN), Duration90k(i64::MIN));
        assert_eq!(r.checked_frame_to_ticks(i64::MAX), None);
        assert_eq!(r.checked_frame_to_ticks(7), Some(Duration90k(630_000)));
        let max = FrameRate::integer(240);
        assert_eq!(max.ticks_to_frame(Duration90k(i64::MAX)), i64::MAX / 375);
        assert_eq!(
            max.ticks_to_frame(Duration90k(i64::MIN)),
            i64::MIN.div_euclid(375)
        );
    }

    #[test]
    fn parse_and_reject() {
        assert_eq!(
            "30000/1001".parse::<FrameRate>().unwrap(),
            FrameRate::new(30_000, 1_001).unwrap()
        );
        assert_eq!("25".parse::<FrameRate>().unwrap(), FrameRate::integer(25));
        for bad in ["", "0", "30/0", "abc", "-1", "1000", "1/2", "30/1/1", "nan"] {
            assert!(
                bad.parse::<FrameRate>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn segment_duration_fits_whole_frames() {
        let ntsc = FrameRate::new(30_000, 1_001).unwrap();
        assert_eq!(ntsc.frames_nearest(Duration90k::from_secs(1)), 30);
        assert_eq!(
            FrameRate::integer(25).frames_nearest(Duration90k::from_secs(2)),
            50
        );
    }

    fn any_rate() -> impl Strategy<Value = FrameRate> {
        (1u32..=240_000, 1u32..=1_001)
            .prop_filter_map("in range", |(n, d)| FrameRate::new(n, d).ok())
    }

    /// Every rate a camera, a film or a broadcast uses.
    const COMMON: [(u32, u32); 12] = [
        (24_000, 1_001),
        (24, 1),
        (25, 1),
        (30_000, 1_001),
        (30, 1),
        (48, 1),
        (50, 1),
        (60_000, 1_001),
        (60, 1),
        (100, 1),
        (120_000, 1_001),
        (120, 1),
    ];

    fn common_rate() -> impl Strategy<Value = FrameRate> {
        proptest::sample::select(COMMON.to_vec()).prop_map(|(n, d)| FrameRate::new(n, d).unwrap())
    }

    /// The nearest tick to n * 90000 * den / num, halves away from zero, by a route of its own:
    /// the exact remainder decides.
    fn reference_ticks(rate: FrameRate, n: i64) -> i128 {
        let p = i128::from(n) * 90_000 * i128::from(rate.den());
        let q = i128::from(rate.num());
        let (fl, rem) = (p.div_euclid(q), p.rem_euclid(q));
        match (2 * rem).cmp(&q) {
            std::cmp::Ordering::Less => fl,
            std::cmp::Ordering::Greater => fl + 1,
            std::cmp::Ordering::Equal if p >= 0 => fl + 1,
            std::cmp::Ordering::Equal => fl,
        }
    }

    proptest! {
        #[test]
        fn common_rates_roundtrip(rate in common_rate(), n in -1_000_000_000i64..=1_000_000_000_000) {
            let t = rate.frame_to_ticks(n);
            prop_assert_eq!(i128::from(t.ticks()), reference_ticks(rate, n));
            prop_assert_eq!(rate.checked_frame_to_ticks(n), Some(t));
            prop_assert_eq!(rate.ticks_to_frame(t), n);
            prop_assert_eq!(rate.ticks_to_frame_ceil(t), n);
            prop_assert!(t < rate.frame_to_ticks(n + 1));
            // Every tick inside the frame maps back to it.
            let next = rate.frame_to_ticks(n + 1);
            prop_assert_eq!(rate.ticks_to_frame(next - Duration90k(1)), n);
            prop_assert_eq!(rate.ticks_to_frame_ceil(t + Duration90k(1)), n + 1);
        }

        #[test]
        fn any_rate_matches_the_reference(rate in any_rate(), n in -1_000_000_000_000i64..=1_000_000_000_000) {
            prop_assert_eq!(i128::from(rate.frame_to_ticks(n).ticks()), reference_ticks(rate, n));
        }

        #[test]
        fn frame_roundtrip_any_rate(rate in any_rate(), n in -1_000_000_000i64..=1_000_000_000_000) {
            let t = rate.frame_to_ticks(n);
            prop_assert_eq!(rate.ticks_to_frame(t), n);
            prop_assert_eq!(rate.ticks_to_frame_ceil(t), n);
        }

        #[test]
        fn ticks_fall_in_their_frame(rate in any_rate(), t in -(1i64 << 50)..(1i64 << 50)) {
            let n = rate.ticks_to_frame(Duration90k(t));
            prop_assert!(rate.frame_to_ticks(n).ticks() <= t);
            prop_assert!(rate.frame_to_ticks(n + 1).ticks() > t);
        }

        #[test]
        fn frame_times_are_monotonic(rate in any_rate(), n in 0i64..1_000_000_000_000) {
            prop_assert!(rate.frame_to_ticks(n) < rate.frame_to_ticks(n + 1));
        }

        #[test]
        fn ten_years_of_frames_do_not_overflow(rate in any_rate()) {
            let ten_years = Duration90k::from_secs(10 * 366 * 86_400);
            let n = rate.ticks_to_frame(ten_years);
            prop_assert!(rate.frame_to_ticks(n) <= ten_years);
            prop_assert_eq!(rate.ticks_to_frame(rate.frame_to_ticks(n)), n);
        }
    }
}
