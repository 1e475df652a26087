//! The preview tap: the low-resolution JPEG branch of the stream's own ffmpeg (a second output,
//! `image2pipe` of `mjpeg` into a FIFO in the stream directory), read and split into pictures
//! continuously, published to the stream's preview [`Feed`] (in-process viewers) and/or written to
//! `<stream dir>/preview.jpg` (replaced by rename, for a separate `hlsmark serve`).
//!
//! The FIFO is made once per stream run and opened read-write by the tap before any ffmpeg
//! starts, so ffmpeg's open never blocks and the tap never sees an end of file between
//! attempts. The tap reads for as long as the stream runs, whether anyone watches or not: a FIFO
//! nobody drains would fill and stall ffmpeg, and the stream with it. Pictures cut short by an
//! ffmpeg restart are skipped by the splitter. If the tap cannot start, or its reading fails,
//! it says so once and the next ffmpeg attempt runs without the preview output: the stream goes
//! on without previews.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use hlsmark_previews::{Feed, JpegSplitter, PREVIEW_FILE};
use tokio::io::AsyncReadExt as _;

/// The FIFO ffmpeg writes preview pictures to, in the stream directory.
pub const PREVIEW_FIFO: &str = "preview.fifo";
/// A picture bigger than this is not a preview (the splitter resynchronises).
const MAX_PICTURE: usize = 4 << 20;

/// A stream's preview settings (`--preview-width`, `--preview-fps`).
#[derive(Debug, Clone)]
pub struct PreviewSpec {
    /// Width of the pictures ffmpeg makes (height follows the aspect ratio, even).
    pub width: u32,
    /// Pictures a second.
    pub fps: u32,
    /// The in-process feed to publish to (`hlsmark run`).
    pub feed: Option<Feed>,
    /// Also write `<stream dir>/preview.jpg` (for a separate `hlsmark serve`).
    pub write_file: bool,
    /// Set while a tap reads the FIFO: ffmpeg gets the preview output only then.
    pub(crate) up: Arc<AtomicBool>,
}

impl PreviewSpec {
    pub fn new(width: u32, fps: u32, feed: Option<Feed>, write_file: bool) -> Self {
        Self {
            width,
            fps,
            feed,
            write_file,
            up: Arc::default(),
        }
    }

    /// Whether a tap reads the FIFO now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

/// Why the tap could not start.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("making the preview FIFO {path}")]
    Fifo {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("opening the preview FIFO {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A running tap; dropping it stops reading and removes the FIFO.
#[derive(Debug)]
pub struct PreviewTap {
    task: tokio::task::JoinHandle<()>,
    fifo: PathBuf,
    up: Arc<AtomicBool>,
}

impl Drop for PreviewTap {
    fn drop(&mut self) {
        self.up.store(false, Ordering::Relaxed);
        self.task.abort();
        let _ = std::fs::remove_file(&self.fifo);
    }
}

impl PreviewTap {
    /// Starts the tap of `cfg.preview` (if any). On failure, logs once and turns the preview
    /// off in `cfg`, so ffmpeg runs without it.
    pub fn start_for(cfg: &mut crate::StreamConfig) -> Option<Self> {
        let spec = cfg.preview.as_ref()?;
        match Self::start(&cfg.stream_dir(), spec, cfg.stream.as_str()) {
            Ok(tap) => Some(tap),
            Err(e) => {
                tracing::warn!(stream = %cfg.stream, error = %crate::error_chain(&e), "previews off: the preview tap could not start");
                cfg.preview = None;
                None
            }
        }
    }

    /// Makes the FIFO in `dir`, opens it and starts reading.
    pub fn start(dir: &Path, spec: &PreviewSpec, stream: &str) -> Result<Self, TapError> {
        let fifo = dir.join(PREVIEW_FIFO);
        // A FIFO (or anything) left by an earlier run.
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(
            &fifo,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .map_err(|source| TapError::Fifo {
            path: fifo.clone(),
            source,
        })?;
        // Read-write: the open does not wait for a writer, and no end of file is seen when an
        // ffmpeg exits (the next one writes into the same FIFO).
        let rx = tokio::net::unix::pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&fifo)
            .map_err(|source| TapError::Open {
                path: fifo.clone(),
                source,
            })?;
        let up = Arc::new(AtomicBool::new(true));
        spec.up.store(true, Ordering::Relaxed);
        let task = tokio::spawn(read_loop(
            rx,
            spec.clone(),
            dir.to_owned(),
            stream.to_owned(),
            up.clone(),
        ));
        Ok(Self { task, fifo, up })
    }

    pub fn fifo(&self) -> &Path {
        &self.fifo
    }
}

async fn read_loop(
    mut rx: tokio::net::unix::pipe::Receiver,
    spec: PreviewSpec,
    dir: PathBuf,
    stream: String,
    up: Arc<AtomicBool>,
) {
    let mut split = JpegSplitter::new(MAX_PICTURE);
    let mut buf = vec![0u8; 64 * 1024];
    let mut write_failed = false;
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) => continue,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(stream = %stream, error = %e, "previews off: reading the preview FIFO failed");
                break;
            }
        };
        split.push(&buf[..n]);
        while let Some(pic) = split.next_picture() {
            publish(&spec, &dir, pic, &stream, &mut write_failed);
        }
    }
    up.store(false, Ordering::Relaxed);
    spec.up.store(false, Ordering::Relaxed);
}

fn publish(spec: &PreviewSpec, dir: &Path, pic: Bytes, stream: &str, write_failed: &mut bool) {
    if spec.write_file {
        let tmp = dir.join(format!(".{PREVIEW_FILE}.tmp"));
        let r =
            std::fs::write(&tmp, &pic).and_then(|()| std::fs::rename(&tmp, dir.join(PREVIEW_FILE)));
        match r {
            Err(e) if !*write_failed => {
                tracing::warn!(stream = %stream, error = %e, "cannot write {PREVIEW_FILE}; other processes get no previews");
                *write_failed = true;
            }
            Ok(()) => *write_failed = false,
            Err(_) => {}
        }
    }
    if let Some(feed) = &spec.feed {
        feed.publish(pic);
    }
}
