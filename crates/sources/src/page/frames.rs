//! From the browser's pictures to a steady frame rate: the newest picture waits in a
//! [`FrameSlot`]; the page pump (a plain thread, like the generator's) wakes at every frame time
//! of the stream (`start + n / fps`, from the index, never accumulated), decodes the picture if a
//! new one came, and writes the frame as rawvideo RGB24 into ffmpeg's stdin. When the page did not
//! repaint it writes the last frame again, so the stream's rate never depends on the page's.
//!
//! A frame's time is its index (rawvideo at the exact rate), so the frame table is evenly spaced
//! whatever the browser does; pictures that arrive between two frame times replace each other
//! (the newest wins) and are counted as skipped.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use hlsmark_clock::FrameRate;

use crate::pump::PumpEnd;

/// The newest picture from the browser, and why the browser ended (if it did).
#[derive(Debug, Default)]
pub struct FrameSlot {
    inner: Mutex<SlotInner>,
}

#[derive(Debug, Default)]
struct SlotInner {
    /// A JPEG not yet taken by the pump.
    jpeg: Option<Vec<u8>>,
    /// Pictures received, and pictures replaced before the pump took them.
    received: u64,
    replaced: u64,
    ended: Option<String>,
}

impl FrameSlot {
    /// A new picture (the previous one, if not taken yet, is dropped).
    pub fn put(&self, jpeg: Vec<u8>) {
        if let Ok(mut s) = self.inner.lock() {
            if s.jpeg.replace(jpeg).is_some() {
                s.replaced += 1;
            }
            s.received += 1;
        }
    }

    /// The browser is gone (or hung); the pump ends with this reason at its next frame.
    pub fn end(&self, why: String) {
        if let Ok(mut s) = self.inner.lock()
            && s.ended.is_none()
        {
            s.ended = Some(why);
        }
    }

    fn take(&self) -> (Option<Vec<u8>>, Option<String>) {
        match self.inner.lock() {
            Ok(mut s) => (s.jpeg.take(), s.ended.clone()),
            Err(_) => (None, Some("frame slot poisoned".into())),
        }
    }

    /// Why the browser ended, if it did.
    pub fn take_end(&self) -> Option<String> {
        self.inner.lock().ok().and_then(|s| s.ended.clone())
    }

    /// (pictures received, pictures replaced before use).
    pub fn counts(&self) -> (u64, u64) {
        self.inner
            .lock()
            .map(|s| (s.received, s.replaced))
            .unwrap_or_default()
    }
}

/// What the page pump did besides writing frames, for the attempt's log line and the benchmark.
#[derive(Debug, Default)]
pub struct PumpCounts {
    /// Frames written that showed a new picture (the others repeat the previous frame).
    pub fresh: AtomicI64,
    /// Pictures that could not be decoded (skipped; the last frame is repeated).
    pub bad: AtomicI64,
}

/// What one page pump run needs.
#[derive(Debug, Clone)]
pub struct PagePumpSpec {
    pub width: u32,
    pub height: u32,
    pub fps: FrameRate,
    /// Frame 0 is due at this instant.
    pub start: Instant,
}

/// Offset of frame `n` from the start (exact to the nanosecond floor).
fn frame_offset(fps: FrameRate, n: i64) -> Duration {
    let ticks = fps.frame_to_ticks(n).ticks().max(0).unsigned_abs();
    Duration::from_nanos(ticks.saturating_mul(100_000) / 9)
}

/// A JPEG as RGB24 at exactly `width` x `height` (scaled when the browser sent another size:
/// a page that changed its zoom, a screencast limited by the screen).
pub fn decode_rgb(jpeg: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let img = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .map_err(|e| e.to_string())?
        .into_rgb8();
    let img = if img.dimensions() == (width, height) {
        img
    } else {
        image::imageops::resize(&img, width, height, image::imageops::FilterType::Triangle)
    };
    Ok(img.into_raw())
}

/// Runs until `stop`, the browser's end (in the slot), or a failed write. `first` is the
/// picture the session waited for before ffmpeg started.
pub fn page_pump(
    spec: &PagePumpSpec,
    slot: &FrameSlot,
    first: &[u8],
    out: &mut impl Write,
    stop: &AtomicBool,
    written: &AtomicI64,
    counts: &PumpCounts,
) -> PumpEnd {
    let len = usize::try_from(u64::from(spec.width) * u64::from(spec.height) * 3).unwrap_or(0);
    let mut frame = decode_rgb(first, spec.width, spec.height).unwrap_or_else(|_| vec![0; len]);
    let mut fresh = true;
    let mut n: i64 = 0;
    let mut warned_late = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            return PumpEnd::Stopped;
        }
        let due = spec.start + frame_offset(spec.fps, n);
        let now = Instant::now();
        if let Some(wait) = due.checked_duration_since(now) {
            std::thread::sleep(wait);
        }
        // ffmpeg takes frames slower than the rate (the machine cannot encode it): the frames
        // queue and media time falls behind the wall clock (PDT re-anchors past 3 s). Said once
        // per episode, like the generator.
        let late = now.saturating_duration_since(due);
        if !warned_late && late > Duration::from_secs(1) {
            warned_late = true;
            tracing::warn!(
                frame = n,
                late_ms = late.as_millis(),
                "page frames are behind the wall clock: ffmpeg cannot encode this size and rate here"
            );
        } else if warned_late && late < Duration::from_millis(100) {
            warned_late = false;
            tracing::info!(frame = n, "page frames caught up with the wall clock");
        }
        let (jpeg, ended) = slot.take();
        if let Some(why) = ended {
            return PumpEnd::SourceEnded(why);
        }
        if let Some(j) = jpeg {
            match decode_rgb(&j, spec.width, spec.height) {
                Ok(f) => {
                    frame = f;
                    fresh = true;
                }
                Err(e) => {
                    if counts.bad.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!(error = %e, "a page picture could not be decoded; repeating the last frame");
                    }
                }
            }
        }
        if let Err(e) = out.write_all(&frame) {
            return PumpEnd::WriteFailed(e);
        }
        if std::mem::take(&mut fresh) {
            counts.fresh.fetch_add(1, Ordering::Relaxed);
        }
        n += 1;
        written.store(n, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    fn jpeg(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn pictures_are_decoded_and_fitted_to_the_stream_size() {
        let f = decode_rgb(&jpeg(32, 16, [200, 10, 10]), 32, 16).unwrap();
        assert_eq!(f.len(), 32 * 16 * 3);
        assert!(f[0] > 150 && f[1] < 60, "{:?}", &f[..3]);
        let f = decode_rgb(&jpeg(64, 32, [10, 10, 200]), 32, 16).unwrap();
        assert_eq!(f.len(), 32 * 16 * 3);
        assert!(decode_rgb(b"not a jpeg", 32, 16).is_err());
    }

    /// Frames go out at the stream rate whatever the page does: the last picture is repeated
    /// until a new one comes, and the browser's end ends the pump with its reason.
    #[test]
    fn the_last_frame_repeats_until_a_new_picture_comes() {
        let slot = Arc::new(FrameSlot::default());
        let spec = PagePumpSpec {
            width: 16,
            height: 16,
            fps: FrameRate::integer(50),
            start: Instant::now(),
        };
        let (stop, counts) = (AtomicBool::new(false), PumpCounts::default());
        let written = AtomicI64::new(0);
        let feeder = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                slot.put(jpeg(16, 16, [250, 250, 250]));
                std::thread::sleep(Duration::from_millis(150));
                slot.end("browser exited".into());
            })
        };
        let mut out = Vec::new();
        let end = page_pump(
            &spec,
            &slot,
            &jpeg(16, 16, [0, 0, 0]),
            &mut out,
            &stop,
            &written,
            &counts,
        );
        feeder.join().unwrap();
        assert!(
            matches!(end, PumpEnd::SourceEnded(ref w) if w == "browser exited"),
            "{end:?}"
        );
        let frames: Vec<&[u8]> = out.chunks_exact(16 * 16 * 3).collect();
        let n = written.load(Ordering::Acquire);
        assert_eq!(i64::try_from(frames.len()).unwrap(), n);
        // At least ~300 ms at 50 fps (more on a busy machine); two pictures, the rest repeats.
        assert!(n >= 10, "{n}");
        assert_eq!(counts.fresh.load(Ordering::Relaxed), 2);
        let white = frames.iter().position(|f| f[0] > 128).unwrap();
        assert!(frames[..white].iter().all(|f| f[0] < 128));
        assert!(frames[white..].iter().all(|f| f[0] > 128));
    }

    #[test]
    fn frame_offsets_are_exact() {
        let ntsc = FrameRate::new(30_000, 1_001).unwrap();
        assert_eq!(frame_offset(ntsc, 30_000), Duration::from_secs(1_001));
    }
}
