//! One stream's preview pictures as they arrive: the newest JPEG and its number. The ingest's
//! tap publishes into it (never blocking: it only replaces the newest picture), encoder threads
//! wait on it. Nothing is queued here, so a stream nobody watches costs one pointer swap per
//! picture.

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

    /// Makes `jpeg` the newest picture and wakes the encoders. `false` (and nothing changes)
    /// when it is not a JPEG with a frame header.
    pub fn publish(&self, jpeg: Bytes) -> bool {
        let Some((width, height)) = crate::jpeg::dimensions(&jpeg) else {
            return false;
        };
        let Ok(mut st) = self.inner.state.lock() else {
            return false;
        };
        st.seq += 1;
        st.latest = Some(Arc::new(Frame {
            jpeg,
            width,
            height,
            seq: st.seq,
            at: Instant::now(),
        }));
        drop(st);
        self.inner.cv.notify_all();
        true
    }

    /// The newest picture, if any arrived.
    pub fn latest(&self) -> Option<Arc<Frame>> {
        self.inner.state.lock().ok()?.latest.clone()
    }

    /// Waits up to `timeout` for a picture newer than number `after`.
    pub fn wait_after(&self, after: u64, timeout: Duration) -> Option<Arc<Frame>> {
        let st = self.inner.state.lock().ok()?;
        let (st, _) = self
            .inner
            .cv
            .wait_timeout_while(st, timeout, |s| s.seq <= after)
            .ok()?;
        st.latest.clone().filter(|f| f.seq > after)
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
