//! A published partial segment (LL-HLS `EXT-X-PART`): one ffmpeg fragment of the open segment.

use serde::{Deserialize, Serialize};

use crate::time::{Duration90k, HlsTime};
use crate::timeline::SeqNo;

/// One partial segment, published as soon as its fragment is written (one fragment late: its
/// duration is known when the next fragment arrives). The concatenation of a segment's parts, in
/// index order, is the segment file byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The parent segment's media sequence number.
    pub seq: SeqNo,
    /// 0, 1, 2 ... within the parent segment.
    pub index: u32,
    /// Index of the epoch it belongs to.
    pub epoch: u32,
    /// Earliest video PTS of the part (the parent's start for index 0).
    pub hls_start: HlsTime,
    /// Next part's start - start (the last part of a segment: to the segment's end).
    pub duration: Duration90k,
    /// Starts with a video keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
    /// File name inside the stream's directory: [`Part::file_name`].
    pub file: String,
}

impl Part {
    pub fn hls_end(&self) -> HlsTime {
        self.hls_start + self.duration
    }

    /// The one spelling of a part's file name: `e{epoch}-{seq:08}.p{index}.m4s`.
    pub fn file_name(epoch: u32, seq: SeqNo, index: u32) -> String {
        format!("e{epoch}-{seq:08}.p{index}.m4s")
    }

    /// `(epoch, seq, index)` of a name written by [`Part::file_name`]; `None` for anything else
    /// (segment and init names included). Strict: no signs, no leading `+`, seq at least 8 digits,
    /// no leading zeros in epoch and index (except `0` itself), so one part has one name.
    pub fn parse_file_name(name: &str) -> Option<(u32, SeqNo, u32)> {
        let rest = name.strip_prefix('e')?.strip_suffix(".m4s")?;
        let (epoch, rest) = rest.split_once('-')?;
        let (seq, index) = rest.split_once(".p")?;
        let canonical = |s: &str| {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'))
        };
        if !canonical(epoch) || !canonical(index) {
            return None;
        }
        if seq.len() < 8 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (epoch, seq, index) = (epoch.parse().ok()?, seq.parse().ok()?, index.parse().ok()?);
        (Self::file_name(epoch, seq, index) == name).then_some((epoch, seq, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        assert_eq!(Part::file_name(0, 7, 3), "e0-00000007.p3.m4s");
        assert_eq!(Part::parse_file_name("e0-00000007.p3.m4s"), Some((0, 7, 3)));
        assert_eq!(
            Part::parse_file_name("e12-123456789012.p10.m4s"),
            Some((12, 123_456_789_012, 10))
        );
        for bad in [
            "e0-00000007.m4s",
            "e0-init.mp4",
            "e0-0000007.p3.m4s",
            "e00-00000007.p3.m4s",
            "e0-00000007.p03.m4s",
            "e0-00000007.p.m4s",
            "e0-00000007.p-1.m4s",
            "e0-00000007.p+1.m4s",
            "e0-00000007.p1.m4s.tmp",
            ".e0-00000007.p1.m4s.tmp",
            "e0-000000x7.p1.m4s",
            "e-00000007.p1.m4s",
            "e0-00000007.p99999999999.m4s",
        ] {
            assert_eq!(Part::parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let p = Part {
            seq: 5,
            index: 2,
            epoch: 1,
            hls_start: HlsTime(450_000 + 36_000),
            duration: Duration90k(18_000),
            independent: false,
            file: Part::file_name(1, 5, 2),
        };
        let json = serde_json::to_string(&p).expect("encode");
        assert_eq!(serde_json::from_str::<Part>(&json).expect("decode"), p);
        assert_eq!(p.hls_end(), HlsTime(504_000));
    }
}
