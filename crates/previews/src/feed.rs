//! One stream's preview pictures as they arrive: the newest JPEG and its number. The ingest's
//! tap publishes into it (never blocking), encoder threads wait on it. A stream nobody watches
//! costs one pointer swap per picture.
//!
//! **Spacing.** A file's media is paced by the read loop taking ffmpeg's output fragment by
//! fragment (200 ms parts), so ffmpeg makes its preview pictures in bursts: two at 10 fps 20 ms
//! apart every 200 ms, and for a 1 fps file 30 at once every few seconds (what fits in the pipe).
//! An MJPEG viewer's browser shows a picture until the next replaces it, so a pair 20 ms apart
//! looks like 5 pictures a second, and an encoder that wakes once for a burst sees only its
//! newest picture. While watched, a picture that comes less than [`SPACING`] of the feed's
//! interval after the one before is held until then ([`State::pending`], at most [`HOLD`] of
//! them; beyond, the oldest is dropped): a burst goes out evenly, and a live source, whose
//! pictures come at their rate, is not held (at most its jitter).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// One preview picture.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The JPEG as the source branch made it.
    pub jpeg: Bytes,
    pub width: u32,
    pub height: u32,
    /// 1, 2, 3, ... in arrival order within this feed.
    pub seq: u64,
    /// When it arrived.
    pub at: Instant,
}

/// Pictures are released no closer together than this part of the feed's interval (90 %: a source
/// a little faster than its nominal rate never builds a queue).
const SPACING: (u32, u32) = (9, 10);

/// How many seconds of pictures may wait to be released (then the oldest is dropped): more than a
/// 1 fps file's burst.
const HOLD: u32 = 4;

/// The newest preview picture of one stream, shared by the tap and the encoders.
#[derive(Debug, Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The rate the source branch delivers (pictures per second).
    fps: u32,
    state: Mutex<State>,
    cv: Condvar,
    /// Encoders reading this feed now.
    watchers: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    latest: Option<Arc<Frame>>,
    seq: u64,
    /// Pictures that came too soon after the one before, with the time each is released.
    pending: VecDeque<(Instant, Bytes, u32, u32, Instant)>,
    /// When the last picture was (or will be) released.
    last_due: Option<Instant>,
}

impl State {
    fn release(&mut self, jpeg: Bytes, width: u32, height: u32, at: Instant) {
        self.seq += 1;
        self.latest = Some(Arc::new(Frame {
            jpeg,
            width,
            height,
            seq: self.seq,
            at,
        }));
    }

    /// Releases the pending pictures due by `now`; whether any was.
    fn promote(&mut self, now: Instant) -> bool {
        let mut any = false;
        while self.pending.front().is_some_and(|p| p.0 <= now) {
            let Some((_, jpeg, w, h, at)) = self.pending.pop_front() else {
                break;
            };
            self.release(jpeg, w, h, at);
            any = true;
        }
        any
    }
}

impl Feed {
    /// A feed whose source delivers about `fps` pictures a second.
    pub fn new(fps: u32) -> Self {
        Self {
            inner: Arc::new(Inner {
                fps: fps.max(1),
                state: Mutex::new(State::default()),
                cv: Condvar::new(),
                watchers: AtomicUsize::new(0),
            }),
        }
    }

    pub fn fps(&self) -> u32 {
        self.inner.fps
    }

    /// The least time between two released pictures.
    fn spacing(&self) -> Duration {
        Duration::from_secs(1) * SPACING.0 / (SPACING.1 * self.inner.fps)
    }

    /// Makes `jpeg` the newest picture and wakes the encoders, or, while watched and it came too
    /// soon after the one before, holds it until its turn (module doc). `false` (and nothing
    /// changes) when it is not a JPEG with a frame header.
    pub fn publish(&self, jpeg: Bytes) -> bool {
        let Some((width, height)) = crate::jpeg::dimensions(&jpeg) else {
            return false;
        };
        let spacing = self.spacing();
        let watched = self.watched();
        let Ok(mut st) = self.inner.state.lock() else {
            return false;
        };
        let now = Instant::now();
        st.promote(now);
        let due = match st.last_due {
            Some(d) if watched && d + spacing > now => d + spacing,
            _ => now,
        };
        // Unwatched pictures set no turn: a viewer's first picture is never held.
        st.last_due = watched.then_some(due);
        if due <= now {
            // Nothing can be pending: each is due after the one before, and this one is due now.
            st.pending.clear();
            st.release(jpeg, width, height, now);
        } else {
            st.pending.push_back((due, jpeg, width, height, now));
            let hold = (HOLD * self.inner.fps) as usize;
            while st.pending.len() > hold {
                st.pending.pop_front();
            }
        }
        drop(st);
        self.inner.cv.notify_all();
        true
    }

    /// The newest picture released, if any.
    pub fn latest(&self) -> Option<Arc<Frame>> {
        let mut st = self.inner.state.lock().ok()?;
        st.promote(Instant::now());
        st.latest.clone()
    }

    /// Waits up to `timeout` for a picture newer than number `after` (releasing held pictures as
    /// they fall due).
    pub fn wait_after(&self, after: u64, timeout: Duration) -> Option<Arc<Frame>> {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.state.lock().ok()?;
        loop {
            let now = Instant::now();
            if st.promote(now) {
                self.inner.cv.notify_all();
            }
            if st.seq > after {
                return st.latest.clone().filter(|f| f.seq > after);
            }
            if now >= deadline {
                return None;
            }
            let until = st.pending.front().map_or(deadline, |p| p.0.min(deadline));
            st = self
                .inner
                .cv
                .wait_timeout(st, until.saturating_duration_since(now))
                .ok()?
                .0;
        }
    }

    /// Whether an encoder reads this feed now (the tap may skip optional work otherwise).
    pub fn watched(&self) -> bool {
        self.inner.watchers.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn watch(&self) {
        self.inner.watchers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn unwatch(&self) {
        self.inner.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg() -> Bytes {
        let img = image::RgbImage::from_pixel(16, 16, image::Rgb([10, 200, 90]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&img)
            .unwrap();
        Bytes::from(out)
    }

    /// A burst (a paced file's pictures come so) goes out evenly and whole to a watching encoder;
    /// a feed nobody watches releases every picture at once.
    #[test]
    fn a_burst_is_released_evenly_while_watched_and_at_once_otherwise() {
        let feed = Feed::new(10);
        for _ in 0..3 {
            assert!(feed.publish(jpeg()));
        }
        assert_eq!(feed.latest().map(|f| f.seq), Some(3), "nobody watches");

        feed.watch();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(feed.publish(jpeg()));
        }
        assert!(!feed.publish(Bytes::from_static(b"not a jpeg")));
        let mut seen = Vec::new();
        let mut last = 3;
        while let Some(f) = feed.wait_after(last, Duration::from_secs(2)) {
            seen.push((f.seq, t0.elapsed()));
            last = f.seq;
            if last == 8 {
                break;
            }
        }
        let seqs: Vec<u64> = seen.iter().map(|s| s.0).collect();
        assert_eq!(seqs, [4, 5, 6, 7, 8], "every picture, in order");
        assert!(seen[0].1 < Duration::from_millis(50), "the first at once");
        // 90 % of 100 ms between each.
        assert!(seen[4].1 >= Duration::from_millis(360), "{seen:?}");
        assert!(seen[4].1 < Duration::from_millis(1_000), "{seen:?}");

        // One that comes after its interval is not held.
        std::thread::sleep(Duration::from_millis(150));
        assert!(feed.publish(jpeg()));
        assert_eq!(feed.latest().map(|f| f.seq), Some(9));
        feed.unwatch();
    }

    /// A watched feed holds at most `HOLD` seconds of pictures; beyond, the oldest go.
    #[test]
    fn held_pictures_are_bounded() {
        let feed = Feed::new(2);
        feed.watch();
        for _ in 0..50 {
            assert!(feed.publish(jpeg()));
        }
        let st = feed.inner.state.lock().unwrap();
        assert_eq!(st.seq, 1, "the first released");
        assert_eq!(st.pending.len(), (HOLD * 2) as usize);
    }
}
