//! A published media segment: one row of the segment index the playlists are rendered from.

use serde::{Deserialize, Serialize};

pub use crate::frame_table::FrameTable;
use crate::time::{Duration90k, HlsTime, UtcTime};
use crate::timeline::SeqNo;

/// One finished segment, as the generator publishes it and the API renders it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Media sequence number (continues across epochs).
    pub seq: SeqNo,
    /// Index of the epoch it belongs to (the discontinuity sequence).
    pub epoch: u32,
    /// Media time of its first frame.
    pub hls_start: HlsTime,
    /// Exact duration: frames / fps in ticks (EXTINF is this, printed).
    pub duration: Duration90k,
    /// Wall time of its first frame (its EXT-X-PROGRAM-DATE-TIME).
    pub utc_start: UtcTime,
    /// File name inside the stream's segment directory.
    pub file: String,
    /// Initialization section (fMP4 `init.mp4` of its epoch), if any: EXT-X-MAP.
    pub init_file: Option<String>,
    /// Presentation time of every video frame (empty in records written before frame tables).
    #[serde(default, skip_serializing_if = "FrameTable::is_empty")]
    pub frames: FrameTable,
}

impl Segment {
    pub fn hls_end(&self) -> HlsTime {
        self.hls_start + self.duration
    }

    /// The one spelling of a media segment's file name: `e{epoch}-{seq:08}.m4s` (a part's is
    /// [`crate::Part::file_name`]). The ingest writes it, the API parses it back.
    pub fn file_name(epoch: u32, seq: SeqNo) -> String {
        format!("e{epoch}-{seq:08}.m4s")
    }

    /// The one spelling of an epoch's initialization section: `e{epoch}-init.mp4`.
    pub fn init_file_name(epoch: u32) -> String {
        format!("e{epoch}-init.mp4")
    }

    /// `(epoch, seq)` of a name written by [`Self::file_name`]; `None` for anything else (parts
    /// and init sections included). Strict: only the name the ingest writes for that segment
    /// (no leading zeros in the epoch, the sequence zero-padded to 8 digits and no more).
    pub fn parse_file_name(name: &str) -> Option<(u32, SeqNo)> {
        let rest = name.strip_prefix('e')?.strip_suffix(".m4s")?;
        let (epoch, seq) = rest.split_once('-')?;
        let (epoch, seq) = (digits(epoch)?, digits(seq)?);
        (Self::file_name(epoch, seq) == name).then_some((epoch, seq))
    }

    /// The epoch of a name written by [`Self::init_file_name`]; `None` for anything else.
    pub fn parse_init_file_name(name: &str) -> Option<u32> {
        let epoch = digits(name.strip_prefix('e')?.strip_suffix("-init.mp4")?)?;
        (Self::init_file_name(epoch) == name).then_some(epoch)
    }
}

/// A number written in ASCII digits only (`str::parse` would take a sign too).
fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_only_ours_parse() {
        assert_eq!(Segment::file_name(0, 7), "e0-00000007.m4s");
        assert_eq!(Segment::init_file_name(13), "e13-init.mp4");
        assert_eq!(Segment::parse_file_name("e0-00000007.m4s"), Some((0, 7)));
        assert_eq!(
            Segment::parse_file_name("e12-123456789012.m4s"),
            Some((12, 123_456_789_012))
        );
        assert_eq!(Segment::parse_init_file_name("e13-init.mp4"), Some(13));
        assert_eq!(Segment::parse_init_file_name("e0-init.mp4"), Some(0));
        for bad in [
            "",
            "e0-0000007.m4s",
            "e00-00000007.m4s",
            "e0-000000007.m4s",
            "e0-+0000007.m4s",
            "e+0-00000007.m4s",
            "e0-00000007.p1.m4s",
            "e0-00000007.m4s.tmp",
            ".e0-00000007.m4s.tmp",
            "e-00000007.m4s",
            "e0-00000007.ts",
            "e99999999999-00000007.m4s",
            "E0-00000007.m4s",
            "e0-init.mp4",
        ] {
            assert_eq!(Segment::parse_file_name(bad), None, "{bad}");
        }
        for bad in [
            "e00-init.mp4",
            "e-init.mp4",
            "e0-init.m4s",
            "e0-00000001.m4s",
            "init.mp4",
        ] {
            assert_eq!(Segment::parse_init_file_name(bad), None, "{bad}");
        }
    }
}
