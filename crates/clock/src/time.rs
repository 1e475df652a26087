//! Instants on the four clocks and the one duration type they share, all in 90 kHz ticks.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Ticks per second of every clock: the MPEG/HLS 90 kHz media clock.
pub const TICKS_PER_SECOND: i64 = 90_000;

/// Largest magnitude accepted from the outside world, in seconds: 10,000 years. Far inside `i64`
/// ticks (about 3.2 million years), so sums and differences of two accepted values cannot overflow.
const MAX_ABS_SECS: f64 = 10_000.0 * 366.0 * 86_400.0;
/// The same bound in ticks.
pub const MAX_ABS_TICKS: i64 = 10_000 * 366 * 86_400 * TICKS_PER_SECOND;

/// Why a value from outside could not become a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("time is not a finite number")]
    NotFinite,
    #[error("time {0} s is out of range (at most 10,000 years either way)")]
    OutOfRange(String),
    #[error("arithmetic overflow on {0}")]
    Overflow(&'static str),
}

fn secs_to_ticks(secs: f64) -> Result<i64, TimeError> {
    if !secs.is_finite() {
        return Err(TimeError::NotFinite);
    }
    if secs.abs() > MAX_ABS_SECS {
        // `1e308` printed whole is 309 digits in an error message: large values as 1e308.
        let shown = if secs.abs() >= 1e12 {
            format!("{secs:e}")
        } else {
            format!("{secs}")
        };
        return Err(TimeError::OutOfRange(shown));
    }
    // Round to the nearest tick: a JSON "12.033333" means the frame at 12.0333... s.
    #[allow(clippy::cast_possible_truncation)]
    let ticks = (secs * TICKS_PER_SECOND as f64).round() as i64;
    Ok(ticks)
}

fn fmt_ticks(f: &mut fmt::Formatter<'_>, ticks: i64) -> fmt::Result {
    let sign = if ticks < 0 { "-" } else { "" };
    let abs = ticks.unsigned_abs();
    let tps = TICKS_PER_SECOND.unsigned_abs();
    let secs = abs / tps;
    let rem = abs % tps;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    write!(f, "{ticks} /* {sign}{h}:{m:02}:{s:02}+{rem:05}/90000 */")
}

/// A span of time in 90 kHz ticks; the difference of two instants on the same clock.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Duration90k(pub i64);

impl Duration90k {
    pub const ZERO: Self = Self(0);

    pub const fn from_ticks(ticks: i64) -> Self {
        Self(ticks)
    }
    pub const fn ticks(self) -> i64 {
        self.0
    }
    pub const fn from_secs(secs: i64) -> Self {
        Self(secs * TICKS_PER_SECOND)
    }
    /// Milliseconds, truncated toward zero; use for `Duration` style config, not for media math.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms * 90)
    }
    /// Edge conversion from seconds (JSON, EXTINF); rounds to the nearest tick.
    pub fn from_secs_f64(secs: f64) -> Result<Self, TimeError> {
        secs_to_ticks(secs).map(Self)
    }
    /// Edge conversion to seconds (JSON, EXTINF).
    #[allow(clippy::cast_precision_loss)]
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / TICKS_PER_SECOND as f64
    }
    /// Whole milliseconds, rounded half away from zero.
    pub fn as_millis_rounded(self) -> i64 {
        let t = self.0;
        if t >= 0 {
            (t + 45) / 90
        } else {
            -((-t + 45) / 90)
        }
    }
    pub fn checked_add(self, rhs: Self) -> Option<Self> {
        self.0.checked_add(rhs.0).map(Self)
    }
    pub fn checked_sub(self, rhs: Self) -> Option<Self> {
        self.0.checked_sub(rhs.0).map(Self)
    }
    pub fn checked_mul(self, n: i64) -> Option<Self> {
        self.0.checked_mul(n).map(Self)
    }
}

impl fmt::Debug for Duration90k {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_ticks(f, self.0)
    }
}

impl std::ops::Add for Duration90k {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(self.0 + rhs.0)
    }
}
impl std::ops::Sub for Duration90k {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0 - rhs.0)
    }
}
impl std::ops::Mul<i64> for Duration90k {
    type Output = Self;
    fn mul(self, rhs: i64) -> Self {
        Self(self.0 * rhs)
    }
}

macro_rules! instant {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            pub const ZERO: Self = Self(0);

            pub const fn from_ticks(ticks: i64) -> Self {
                Self(ticks)
            }
            pub const fn ticks(self) -> i64 {
                self.0
            }
            /// Edge conversion from seconds; rounds to the nearest tick, rejects NaN, infinities
            /// and anything beyond 10,000 years.
            pub fn from_secs_f64(secs: f64) -> Result<Self, TimeError> {
                secs_to_ticks(secs).map(Self)
            }
            /// Edge conversion to seconds.
            #[allow(clippy::cast_precision_loss)]
            pub fn as_secs_f64(self) -> f64 {
                self.0 as f64 / TICKS_PER_SECOND as f64
            }
            pub fn checked_add(self, d: Duration90k) -> Option<Self> {
                self.0.checked_add(d.0).map(Self)
            }
            pub fn checked_sub(self, d: Duration90k) -> Option<Self> {
                self.0.checked_sub(d.0).map(Self)
            }
            /// `self - earlier`, or `None` on overflow.
            pub fn checked_since(self, earlier: Self) -> Option<Duration90k> {
                self.0.checked_sub(earlier.0).map(Duration90k)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!($label, "("))?;
                fmt_ticks(f, self.0)?;
                f.write_str(")")
            }
        }

        impl std::ops::Add<Duration90k> for $name {
            type Output = Self;
            fn add(self, d: Duration90k) -> Self {
                Self(self.0 + d.0)
            }
        }
        impl std::ops::Sub<Duration90k> for $name {
            type Output = Self;
            fn sub(self, d: Duration90k) -> Self {
                Self(self.0 - d.0)
            }
        }
        impl std::ops::Sub for $name {
            type Output = Duration90k;
            fn sub(self, rhs: Self) -> Duration90k {
                Duration90k(self.0 - rhs.0)
            }
        }
    };
}

instant!(
    /// GEN: the generator's monotonic clock, the time of rendered frames since the stream began.
    /// It keeps counting across ffmpeg and generator restarts (see `design/time.md`).
    GenTime,
    "GEN"
);
instant!(
    /// HLS: media time inside the segments (the `tfdt` of fMP4, the PTS of TS). Sequence-aligned:
    /// the segment with media sequence `s` in an epoch starts at `epoch.hls_start + (s - first_seq) * D`.
    HlsTime,
    "HLS"
);
instant!(
    /// CLIENT: a player's `currentTime`, zero at the start of the segment it joined at.
    ClientTime,
    "CLIENT"
);
instant!(
    /// UTC: wall time in 90 kHz ticks since 1970-01-01T00:00:00Z, so that `utc - anchor` equals a
    /// media duration exactly and PDT never rounds until it is printed.
    UtcTime,
    "UTC"
);

impl UtcTime {
    /// The wall clock now, rounded to the nearest tick.
    pub fn now() -> Self {
        Self::from_chrono(chrono::Utc::now())
    }

    /// From a chrono time, rounded to the nearest tick (sub-tick nanoseconds are below 6 µs).
    pub fn from_chrono(t: chrono::DateTime<chrono::Utc>) -> Self {
        let secs = i128::from(t.timestamp());
        let nanos = i128::from(t.timestamp_subsec_nanos());
        // ticks = nanos * 90_000 / 1e9 = nanos * 9 / 100_000, rounded half up.
        let sub = (nanos * 9 + 50_000) / 100_000;
        let ticks = secs * i128::from(TICKS_PER_SECOND) + sub;
        #[allow(clippy::cast_possible_truncation)]
        Self(ticks as i64)
    }

    /// To chrono, exact to the nanosecond that a tick can be expressed in (ticks are 11111.1 ns,
    /// so this rounds to the nearest nanosecond).
    pub fn to_chrono(self) -> Option<chrono::DateTime<chrono::Utc>> {
        let secs = self.0.div_euclid(TICKS_PER_SECOND);
        let rem = self.0.rem_euclid(TICKS_PER_SECOND);
        let nanos = (rem * 1_000_000_000 + TICKS_PER_SECOND / 2) / TICKS_PER_SECOND;
        let (secs, nanos) = if nanos >= 1_000_000_000 {
            (secs + 1, 0)
        } else {
            (secs, nanos)
        };
        chrono::DateTime::from_timestamp(secs, u32::try_from(nanos).ok()?)
    }

    /// Parses RFC 3339 (`2026-11-24T07:00:00.033Z`, any offset).
    pub fn parse_rfc3339(s: &str) -> Result<Self, chrono::ParseError> {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Self::from_chrono(t.with_timezone(&chrono::Utc)))
    }

    /// RFC 3339 with milliseconds and `Z`, the form of `EXT-X-PROGRAM-DATE-TIME`.
    /// The nearest whole millisecond (half up): what every printed UTC shows.
    pub fn round_to_millis(self) -> Self {
        Self((self.0.div_euclid(45) + 1).div_euclid(2) * 90)
    }

    /// Rounded to the nearest millisecond, so the printed time is within 0.5 ms of the exact one.
    pub fn to_rfc3339_millis(self) -> String {
        match self.round_to_millis().to_chrono() {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            None => format!("invalid-utc({})", self.0),
        }
    }
}

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secs_edges_reject_non_finite_and_huge() {
        assert_eq!(HlsTime::from_secs_f64(f64::NAN), Err(TimeError::NotFinite));
        assert_eq!(
            HlsTime::from_secs_f64(f64::INFINITY),
            Err(TimeError::NotFinite)
        );
        assert!(matches!(
            HlsTime::from_secs_f64(1e300),
            Err(TimeError::OutOfRange(_))
        ));
        // Shown short in the error (found by QA: `{"hls": 1e308}` answered 309 digits).
        assert_eq!(
            HlsTime::from_secs_f64(-1e300).unwrap_err().to_string(),
            "time -1e300 s is out of range (at most 10,000 years either way)"
        );
        assert_eq!(
            HlsTime::from_secs_f64(1e12).unwrap_err(),
            TimeError::OutOfRange("1e12".into())
        );
        assert_eq!(HlsTime::from_secs_f64(1.5).unwrap(), HlsTime(135_000));
        assert_eq!(HlsTime::from_secs_f64(-0.5).unwrap(), HlsTime(-45_000));
    }

    #[test]
    fn debug_shows_ticks_and_readable_form() {
        let s = format!("{:?}", HlsTime(3_723 * 90_000 + 3_003));
        assert_eq!(s, "HLS(335073003 /* 1:02:03+03003/90000 */)");
        assert_eq!(
            format!("{:?}", Duration90k(-90_001)),
            "-90001 /* -0:00:01+00001/90000 */"
        );
    }

    #[test]
    fn utc_roundtrips_through_chrono_and_rfc3339() {
        let t = UtcTime::parse_rfc3339("2026-11-24T07:00:00.033Z").unwrap();
        assert_eq!(t.to_rfc3339_millis(), "2026-11-24T07:00:00.033Z");
        let ticks = UtcTime(1_795_000_000 * 90_000 + 3_003);
        assert_eq!(UtcTime::from_chrono(ticks.to_chrono().unwrap()), ticks);
        let offset = UtcTime::parse_rfc3339("2026-11-24T08:00:00+01:00").unwrap();
        assert_eq!(
            offset,
            UtcTime::parse_rfc3339("2026-11-24T07:00:00Z").unwrap()
        );
    }

    #[test]
    fn printed_utc_rounds_to_the_nearest_millisecond() {
        let base = UtcTime::parse_rfc3339("2026-11-24T07:52:05Z").unwrap();
        // Frame 1006 at 30 fps after a whole second: .4843333 s prints as .484, .4846 as .485.
        assert_eq!(
            (base + Duration90k(43_590)).to_rfc3339_millis(),
            "2026-11-24T07:52:05.484Z"
        );
        assert_eq!(
            (base + Duration90k(43_614)).to_rfc3339_millis(),
            "2026-11-24T07:52:05.485Z"
        );
        assert_eq!(
            (base + Duration90k(89_990)).to_rfc3339_millis(),
            "2026-11-24T07:52:06.000Z"
        );
    }

    #[test]
    fn millis_round_half_away_from_zero() {
        assert_eq!(Duration90k(45).as_millis_rounded(), 1);
        assert_eq!(Duration90k(44).as_millis_rounded(), 0);
        assert_eq!(Duration90k(-45).as_millis_rounded(), -1);
        assert_eq!(Duration90k(3_003).as_millis_rounded(), 33);
    }
}
