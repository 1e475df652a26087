//! How a stream is encoded: copy or libx264, the one quality knob (0..1 -> picture size and CRF
//! together, the livestream server's table), overrides, audio, and the generator's tone.
//!
//! Pure values; `ffmpeg.rs` turns them into arguments.

use std::fmt;
use std::str::FromStr;

/// `--video copy|encode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoMode {
    /// Keep the source's H.264 (no decode, no encode); segments are cut at its own keyframes.
    Copy,
    /// libx264 with keyframes forced at every segment target: frame-exact segment lengths.
    #[default]
    Encode,
}

/// `--audio auto|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AudioMode {
    /// AAC 48 kHz stereo when the source has audio (the generator: when `--tone` is on).
    #[default]
    Auto,
    Off,
}

/// A value of `--video`/`--audio` that is not one of the names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?}: expected one of {expected}")]
pub struct ModeError {
    pub value: String,
    pub expected: &'static str,
}

impl FromStr for VideoMode {
    type Err = ModeError;
    fn from_str(s: &str) -> Result<Self, ModeError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "copy" => Ok(VideoMode::Copy),
            "encode" => Ok(VideoMode::Encode),
            _ => Err(ModeError {
                value: s.into(),
                expected: "copy, encode",
            }),
        }
    }
}

impl fmt::Display for VideoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VideoMode::Copy => "copy",
            VideoMode::Encode => "encode",
        })
    }
}

impl FromStr for AudioMode {
    type Err = ModeError;
    fn from_str(s: &str) -> Result<Self, ModeError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(AudioMode::Auto),
            "off" => Ok(AudioMode::Off),
            _ => Err(ModeError {
                value: s.into(),
                expected: "auto, off",
            }),
        }
    }
}

impl fmt::Display for AudioMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AudioMode::Auto => "auto",
            AudioMode::Off => "off",
        })
    }
}

/// The picture size of the encoded stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleSpec {
    /// A share of the source's size in per mille (1000 = full size), rounded down to even.
    PerMille(u32),
    /// Exactly this size (`--resolution WxH`; both even).
    Fixed { width: u32, height: u32 },
}

impl ScaleSpec {
    /// The size for an input of `width` x `height` (even, at least 2x2).
    pub fn apply(self, width: u32, height: u32) -> (u32, u32) {
        match self {
            ScaleSpec::Fixed { width, height } => (width, height),
            ScaleSpec::PerMille(p) => {
                let f = |x: u32| {
                    let v = u64::from(x) * u64::from(p) / 2000 * 2;
                    u32::try_from(v).unwrap_or(u32::MAX).max(2)
                };
                (f(width), f(height))
            }
        }
    }

    /// The `scale` filter for an input whose size is only known to ffmpeg (integer arithmetic in
    /// ffmpeg's expressions, so the result is even: yuv420p needs it).
    pub fn filter(self) -> String {
        match self {
            ScaleSpec::Fixed { width, height } => format!("scale={width}:{height}"),
            ScaleSpec::PerMille(1000) => "scale=trunc(iw/2)*2:trunc(ih/2)*2".into(),
            ScaleSpec::PerMille(p) => {
                format!("scale=trunc(iw*{p}/2000)*2:trunc(ih*{p}/2000)*2")
            }
        }
    }
}

/// Everything about encoding a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    pub video: VideoMode,
    /// 0..=1: picture size and CRF together ([`Encoding::scale_and_crf`]).
    pub quality: f64,
    /// `--resolution WxH`: overrides the size from `quality`.
    pub resolution: Option<(u32, u32)>,
    /// `--crf N` (0..=51): overrides the CRF from `quality`.
    pub crf: Option<u8>,
    pub audio: AudioMode,
    /// Generator only: a quiet continuous tone with a short 1 kHz beep at each event start.
    pub tone: bool,
}

impl Default for Encoding {
    /// Encode at quality 1.0 (full size, CRF 18), audio when there is some, no tone.
    fn default() -> Self {
        Self {
            video: VideoMode::Encode,
            quality: 1.0,
            resolution: None,
            crf: None,
            audio: AudioMode::Auto,
            tone: false,
        }
    }
}

/// The quality table: (quality, size in per mille, CRF), linear between the rows.
const QUALITY_TABLE: [(f64, f64, f64); 5] = [
    (0.0, 250.0, 40.0),
    (0.25, 350.0, 34.0),
    (0.5, 500.0, 28.0),
    (0.75, 750.0, 23.0),
    (1.0, 1000.0, 18.0),
];

/// A quality (clamped to 0..=1) as (size per mille, CRF), interpolated in the table.
fn quality_row(q: f64) -> (u32, u8) {
    let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
    let mut row = (1000.0, 18.0);
    for w in QUALITY_TABLE.windows(2) {
        let ((q0, s0, c0), (q1, s1, c1)) = (w[0], w[1]);
        if q <= q1 {
            let t = (q - q0) / (q1 - q0);
            row = (s0 + t * (s1 - s0), c0 + t * (c1 - c0));
            break;
        }
    }
    // Both are within 250..=1000 and 18..=40 after clamping: the casts cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let out = (row.0.round() as u32, row.1.round() as u8);
    out
}

impl Encoding {
    /// The picture size and CRF: from the quality table, with `resolution` and `crf` overriding.
    pub fn scale_and_crf(&self) -> (ScaleSpec, u8) {
        let (per_mille, crf) = quality_row(self.quality);
        let scale = match self.resolution {
            Some((width, height)) => ScaleSpec::Fixed { width, height },
            None => ScaleSpec::PerMille(per_mille),
        };
        (scale, self.crf.unwrap_or(crf))
    }
}

/// Parses `WxH` (`1280x720`).
pub fn parse_resolution(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?}: expected WIDTHxHEIGHT, e.g. 1280x720");
    let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    Ok((
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(q: f64) -> (ScaleSpec, u8) {
        Encoding {
            quality: q,
            ..Encoding::default()
        }
        .scale_and_crf()
    }

    #[test]
    fn quality_table_rows_and_between() {
        assert_eq!(at(1.0), (ScaleSpec::PerMille(1000), 18));
        assert_eq!(at(0.75), (ScaleSpec::PerMille(750), 23));
        assert_eq!(at(0.5), (ScaleSpec::PerMille(500), 28));
        assert_eq!(at(0.25), (ScaleSpec::PerMille(350), 34));
        assert_eq!(at(0.0), (ScaleSpec::PerMille(250), 40));
        // Linear between rows.
        assert_eq!(at(0.875), (ScaleSpec::PerMille(875), 21));
        assert_eq!(at(0.125), (ScaleSpec::PerMille(300), 37));
        assert_eq!(at(0.6), (ScaleSpec::PerMille(600), 26));
    }

    #[test]
    fn overrides_win_and_sizes_are_even() {
        let e = Encoding {
            quality: 0.5,
            resolution: Some((640, 360)),
            crf: Some(30),
            ..Encoding::default()
        };
        assert_eq!(
            e.scale_and_crf(),
            (
                ScaleSpec::Fixed {
                    width: 640,
                    height: 360
                },
                30
            )
        );
        assert_eq!(ScaleSpec::PerMille(750).apply(1920, 1080), (1440, 810));
        assert_eq!(ScaleSpec::PerMille(350).apply(1280, 720), (448, 252));
        assert_eq!(ScaleSpec::PerMille(350).apply(1921, 1081), (672, 378));
        assert_eq!(ScaleSpec::PerMille(1000).apply(1921, 1081), (1920, 1080));
        assert_eq!(
            ScaleSpec::PerMille(750).filter(),
            "scale=trunc(iw*750/2000)*2:trunc(ih*750/2000)*2"
        );
    }

    #[test]
    fn modes_and_resolutions_parse() {
        assert_eq!("copy".parse(), Ok(VideoMode::Copy));
        assert_eq!("Encode".parse(), Ok(VideoMode::Encode));
        assert!("x264".parse::<VideoMode>().is_err());
        assert_eq!("off".parse(), Ok(AudioMode::Off));
        assert!("on".parse::<AudioMode>().is_err());
        assert_eq!(parse_resolution("1280x720"), Ok((1280, 720)));
        assert!(parse_resolution("1280").is_err());
        assert!(parse_resolution("ax7").is_err());
    }
}
