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
}
