//! HLS media playlists rendered from hlsmark's segment index: the live sliding window and
//! time-range VOD, with `EXT-X-PROGRAM-DATE-TIME` on every segment, `EXT-X-DISCONTINUITY` at
//! epoch boundaries and markers as `EXT-X-DATERANGE`; the live one optionally in Low-Latency HLS
//! (parts, preload hint, server control, delta updates) with the blocking-reload rules in [`ll`].
//!
//! Pure functions: epochs, segments and markers in, m3u8 text out. This crate knows nothing of the
//! store, HTTP or ffmpeg. The text is produced by m3u8-rs's model and writer, with the fix-ups
//! described in [`render`] where its writer cannot say what we need.

mod format;
pub mod ll;
mod render;

pub use format::{quoted_string_value, secs_decimal};
pub use ll::{Blocking, LiveEdge, LowLatency, Skip};
pub use render::{
    DateRange, DateRangeStyle, Kind, PlaylistError, listed_segments, render, render_live_ll,
};
