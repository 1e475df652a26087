//! Pictures for `<img>` tags and for the timeline: live previews as an endless animated GIF and
//! as Motion JPEG, one encoder per stream, format, width and rate fanned out to any number of
//! viewers (running only while someone watches), and exact-frame thumbnails of retained segments.
//!
//! Depends only on `clock` of ours. The ingest publishes preview pictures (JPEG) into a [`Feed`]
//! registered in a [`Hub`] (`hlsmark run`: one process) or writes them to
//! `<stream dir>/preview.jpg`, which a [`Hub`] with `files_root` reads while someone watches
//! (`hlsmark generate` + `hlsmark serve`). See `design/previews.md`.

mod feed;
pub mod gif;
mod hub;
pub mod jpeg;
pub mod mjpeg;
pub mod thumbs;
pub mod warm;

use std::path::PathBuf;

pub use feed::{Feed, Frame};
pub use hub::{
    DEFAULT_FPS, DEFAULT_WIDTH, Format, Hub, HubConfig, PREVIEW_FILE, PreviewStats, RATES, Viewer,
    WIDTHS,
};
pub use jpeg::JpegSplitter;
pub use thumbs::{TILE_HEIGHT, TILE_WIDTH, Thumb, ThumbKey, Thumbnails, TileKey};

/// Why a preview or thumbnail could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("width={0}: must be {min} to {max} pixels", min = WIDTHS.start(), max = WIDTHS.end())]
    Width(u32),
    #[error("fps={0}: must be {min} to {max} pictures a second", min = RATES.start(), max = RATES.end())]
    Fps(u32),
    #[error("stream {0} has no preview in this server")]
    NoPreview(String),
    #[error("stream {stream} has {max} preview viewers, the most it takes")]
    TooManyViewers { stream: String, max: usize },
    #[error("a picture of {0}x{1} cannot be encoded")]
    Size(u32, u32),
    #[error("encoding a GIF frame")]
    Gif(#[source] ::gif::EncodingError),
    #[error("decoding or encoding a JPEG")]
    Image(#[source] image::ImageError),
    #[error("starting a preview thread: {0}")]
    Thread(String),
    #[error("starting {path:?}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ffmpeg could not make the thumbnail: {0}")]
    Ffmpeg(String),
    #[error("ffmpeg found no frame {index} in {segment:?}")]
    NoFrame { index: usize, segment: PathBuf },
    #[error("too many thumbnails are being made; retry shortly")]
    Busy,
}
