//! HLS media playlists rendered from hlsmark's segment index: the live sliding window and
//! time-range VOD, with `EXT-X-PROGRAM-DATE-TIME` on every segment, `EXT-X-DISCONTINUITY` at
//! epoch boundaries and markers as `EXT-X-DATERANGE`.
//!
//! Pure functions: epochs, segments and markers in, m3u8 text out. This crate knows nothing of the
//! store, HTTP or ffmpeg. The text is produced by m3u8-rs's model and writer, with the fix-ups
//! described in [`render`] where its writer cannot say what we need.

mod format;
mod render;

pub use format::{quoted_string_value, secs_decimal};
pub use render::{DateRange, Kind, PlaylistError, render};
