//! The registry of preview feeds and their encoders: one encoder per stream, format, width and
//! rate, however many viewers watch, running only while someone does.
//!
//! ```text
//! tap (ingest) ─publish─▶ Feed ─wait_after─▶ encoder thread (GIF: decode, scale, quantize, LZW;
//!   or <data>/hls/S/preview.jpg        │       MJPEG: the JPEG as it came, or re-encoded)
//!   read by a poller (`hlsmark serve`)  │ try_send of one shared Bytes per picture
//!                                       ▼
//!                       viewer queues (bounded; full = the picture is dropped for that viewer)
//! ```
//!
//! Each encoder is a thread of its own: GIF encoding takes milliseconds of CPU per picture and
//! must not run on an HTTP worker's event loop. A viewer whose queue is full loses that picture
//! (counted per stream and format); the encoder never waits for anyone, so a slow viewer never
//! slows the others and never grows memory beyond its queue. A new viewer starts at the next
//! picture (a GIF viewer gets the header with it). The encoder stops when its last viewer leaves.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::feed::{Feed, Frame};
use crate::gif::GifWriter;
use crate::{PreviewError, mjpeg};

/// Widths a request may ask for (pixels): up to 720p (an MJPEG of a 720p stream passed through).
pub const WIDTHS: std::ops::RangeInclusive<u32> = 64..=1280;
/// Rates a request may ask for (pictures a second).
pub const RATES: std::ops::RangeInclusive<u32> = 1..=15;
/// Default preview width and rate of a stream.
pub const DEFAULT_WIDTH: u32 = 480;
pub const DEFAULT_FPS: u32 = 10;
/// The preview picture the ingest writes into a stream's directory for other processes.
pub const PREVIEW_FILE: &str = "preview.jpg";
/// How long a file poller lingers without watchers before it stops.
const POLLER_LINGER: Duration = Duration::from_secs(2);
/// How often an encoder without pictures looks for viewers that left.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// A moving picture format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Gif,
    Mjpeg,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Gif => "gif",
            Format::Mjpeg => "mjpeg",
        }
    }

    fn slot(self) -> usize {
        match self {
            Format::Gif => 0,
            Format::Mjpeg => 1,
        }
    }
}

/// Settings of a [`Hub`].
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Viewers of one stream (all formats together) beyond which `subscribe` refuses.
    pub max_viewers_per_stream: usize,
    /// Pictures queued per viewer (at least 2: a GIF viewer's header and first picture).
    pub queue: usize,
    /// `<data-dir>/hls`: a stream with no in-process feed is read from
    /// `<files_root>/<stream>/preview.jpg` (written by a separate ingest process). `None`: only
    /// in-process feeds.
    pub files_root: Option<PathBuf>,
    /// How often that file is looked at while someone watches.
    pub file_poll: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            max_viewers_per_stream: 200,
            queue: 4,
            files_root: None,
            file_poll: Duration::from_millis(50),
        }
    }
}

/// Counters of one stream and format (for `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewStats {
    pub stream: String,
    pub format: Format,
    /// Viewers now.
    pub viewers: usize,
    /// Encoders running now.
    pub encoders: usize,
    /// Pictures handed to viewers so far.
    pub sent: u64,
    /// Pictures a viewer lost because its queue was full.
    pub dropped: u64,
}

/// Preview feeds and encoders of every stream. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: HubConfig,
    streams: Mutex<HashMap<String, StreamEntry>>,
    /// Streams whose ingest runs in this process without a preview branch.
    off: Mutex<std::collections::HashSet<String>>,
}

#[derive(Debug)]
struct StreamEntry {
    feed: Feed,
    /// Fed by an ingest in this process (else by the file poller).
    in_process: bool,
    /// The stream's preview width and rate (request defaults).
    width: u32,
    fps: u32,
    poller: bool,
    viewers: usize,
    encoders: HashMap<Key, Arc<Encoder>>,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    sent: [AtomicU64; 2],
    dropped: [AtomicU64; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    format: Format,
    width: u32,
    fps: u32,
}

#[derive(Debug, Default)]
struct Encoder {
    /// Viewers by the thread whose runtime writes their answers.
    groups: Mutex<Vec<Group>>,
    /// A viewer needs the next picture whole (GIF): it is new, or lost the picture before and
    /// has room for the next.
    wants_whole: Arc<AtomicBool>,
    /// GIF pictures made whole (as well as, or instead of, their change).
    made_whole: AtomicU64,
}

impl Encoder {
    fn viewers(&self) -> usize {
        lock(&self.groups)
            .iter()
            .map(|g| lock(&g.viewers).len())
            .sum()
    }
}

/// The viewers of one encoder whose answers one thread writes (an HTTP worker's runtime).
///
/// A picture reaches them through one relay task on that runtime: waking a task of another
/// thread costs a system call and often a context switch (tokio's `unpark`), so the encoder
/// wakes one relay per worker, and the relay hands the picture to each of its viewers on
/// their own thread, where a wake is a queue push. Viewers outside any runtime (tests) get
/// it from the encoder directly.
#[derive(Debug)]
struct Group {
    thread: Option<std::thread::ThreadId>,
    /// `None`: delivered by the encoder itself.
    relay: Option<mpsc::Sender<Piece>>,
    viewers: Arc<Mutex<Vec<Slot>>>,
}

/// One picture as the encoder made it (and a GIF's header, for viewers that start with it).
#[derive(Debug, Clone)]
struct Piece {
    header: Option<Bytes>,
    /// The picture whole (`None`: a GIF picture only its change was made of, as nobody needed
    /// it whole when it was encoded).
    body: Option<Bytes>,
    /// The encoder's count of pictures sent out, this one's.
    seq: u64,
    /// The picture as a change from the one before it (GIF), for viewers that got that one.
    delta: Option<Bytes>,
}

/// Pictures a relay may hold: its thread is busy for that long before its viewers lose one.
const RELAY_QUEUE: usize = 2;

#[derive(Debug)]
struct Slot {
    tx: mpsc::Sender<Bytes>,
    /// The GIF header went out.
    started: bool,
    /// The last picture this viewer was given ([`Piece::seq`]): a delta is only for the next.
    last: Option<u64>,
    /// It lost a picture while its queue was full ([`Viewer::lost`]).
    lost: Arc<AtomicBool>,
}

/// One viewer's pictures, in order. Dropping it leaves.
#[derive(Debug)]
pub struct Viewer {
    rx: mpsc::Receiver<Bytes>,
    /// Set when a picture could not be queued for this viewer (its queue was full). The viewer
    /// asks for the next picture whole once it has taken one out: a viewer that reads nothing
    /// does not make the encoder write every picture whole as well as its change.
    lost: Arc<AtomicBool>,
    /// The encoder's [`Encoder::wants_whole`].
    wants_whole: Arc<AtomicBool>,
    pub format: Format,
    pub width: u32,
    pub fps: u32,
    _guard: ViewerGuard,
}

impl Viewer {
    /// The next piece of the answer (`None` once the encoder is gone).
    pub async fn recv(&mut self) -> Option<Bytes> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`Self::recv`] for a hand-written `Stream`: `Pending` registers `cx`'s waker.
    pub fn poll_recv(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Bytes>> {
        let got = self.rx.poll_recv(cx);
        if got.is_ready()
            && self.lost.load(Ordering::Relaxed)
            && self.lost.swap(false, Ordering::Relaxed)
        {
            // There is room now: the next picture is made whole for it.
            self.wants_whole.store(true, Ordering::Relaxed);
        }
        got
    }
}

#[derive(Debug)]
struct ViewerGuard {
    hub: Arc<Inner>,
    stream: String,
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.hub.streams.lock()
            && let Some(e) = m.get_mut(&self.stream)
        {
            e.viewers = e.viewers.saturating_sub(1);
        }
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(HubConfig::default())
    }
}

impl Hub {
    pub fn new(cfg: HubConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg,
                streams: Mutex::new(HashMap::new()),
                off: Mutex::new(std::collections::HashSet::new()),
            }),
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.cfg
    }

    /// The in-process feed of `stream` (made on first call), delivering pictures `width` wide
    /// about `fps` times a second. The ingest's tap publishes into it.
    pub fn register(&self, stream: &str, width: u32, fps: u32) -> Feed {
        let mut m = lock(&self.inner.streams);
        if let Some(e) = m.get_mut(stream) {
            if !e.in_process {
                e.feed = Feed::new(fps);
                e.in_process = true;
            }
            e.width = width;
            e.fps = fps;
            return e.feed.clone();
        }
        let feed = Feed::new(fps);
        m.insert(
            stream.to_owned(),
            StreamEntry::new(feed.clone(), true, width, fps),
        );
        feed
    }

    /// Records that `stream`'s ingest runs in this process with previews off (`--preview-fps 0`,
    /// the default with `--video copy`, or an unpaced import), so a viewer is told why at once.
    pub fn mark_off(&self, stream: &str) {
        lock(&self.inner.off).insert(stream.to_owned());
    }

    /// Whether `stream` runs in this process with previews off ([`Self::mark_off`]).
    pub fn is_off(&self, stream: &str) -> bool {
        lock(&self.inner.off).contains(stream)
    }

    /// Whether `stream` has a feed in this process.
    pub fn has_feed(&self, stream: &str) -> bool {
        lock(&self.inner.streams)
            .get(stream)
            .is_some_and(|e| e.in_process)
    }

    /// Checks a requested width and rate against [`WIDTHS`] and [`RATES`].
    pub fn check(width: Option<u32>, fps: Option<u32>) -> Result<(), PreviewError> {
        if let Some(w) = width
            && !WIDTHS.contains(&w)
        {
            return Err(PreviewError::Width(w));
        }
        if let Some(f) = fps
            && !RATES.contains(&f)
        {
            return Err(PreviewError::Fps(f));
        }
        Ok(())
    }

    /// A new viewer of `stream` in `format`, `width` pixels wide (default: the stream's preview
    /// width) at `fps` (default: the stream's preview rate; never more than the feed delivers).
    pub fn subscribe(
        &self,
        stream: &str,
        format: Format,
        width: Option<u32>,
        fps: Option<u32>,
    ) -> Result<Viewer, PreviewError> {
        Self::check(width, fps)?;
        let cfg = &self.inner.cfg;
        let mut m = lock(&self.inner.streams);
        if !m.contains_key(stream) {
            if cfg.files_root.is_none() {
                return Err(PreviewError::NoPreview(stream.to_owned()));
            }
            let e = StreamEntry::new(Feed::new(DEFAULT_FPS), false, DEFAULT_WIDTH, DEFAULT_FPS);
            m.insert(stream.to_owned(), e);
        }
        let Some(e) = m.get_mut(stream) else {
            return Err(PreviewError::NoPreview(stream.to_owned()));
        };
        if e.viewers >= cfg.max_viewers_per_stream {
            return Err(PreviewError::TooManyViewers {
                stream: stream.to_owned(),
                max: cfg.max_viewers_per_stream,
            });
        }
        let key = Key {
            format,
            width: width.unwrap_or(e.width),
            fps: fps.unwrap_or(e.fps).min(e.feed.fps()),
        };
        let (tx, rx) = mpsc::channel(cfg.queue.max(2));
        let lost = Arc::new(AtomicBool::new(false));
        let slot = Slot {
            tx,
            started: false,
            last: None,
            lost: lost.clone(),
        };
        let wants_whole = match e.encoders.get(&key) {
            Some(enc) => {
                join(enc, slot, &e.counters, format);
                enc.wants_whole.clone()
            }
            None => {
                let enc = Arc::new(Encoder::default());
                join(&enc, slot, &e.counters, format);
                let job = EncoderJob {
                    // A new viewer starts at the next picture after it asked (read now, not when
                    // the thread first runs, or a picture published in between would be skipped).
                    start_after: e.feed.latest().map_or(0, |f| f.seq),
                    hub: self.inner.clone(),
                    stream: stream.to_owned(),
                    key,
                    feed: e.feed.clone(),
                    enc: enc.clone(),
                    counters: e.counters.clone(),
                };
                // Counted before the thread runs, so a file poller started now does not stop.
                e.feed.watch();
                std::thread::Builder::new()
                    .name(format!("preview-{}", format.as_str()))
                    .spawn(move || job.run())
                    .map_err(|e| PreviewError::Thread(e.to_string()))?;
                let wants_whole = enc.wants_whole.clone();
                e.encoders.insert(key, enc);
                wants_whole
            }
        };
        if !e.in_process
            && !e.poller
            && let Some(root) = &cfg.files_root
        {
            e.poller = true;
            let path = root.join(stream).join(PREVIEW_FILE);
            let (hub, feed, name) = (self.inner.clone(), e.feed.clone(), stream.to_owned());
            let period = cfg.file_poll;
            let spawned = std::thread::Builder::new()
                .name("preview-file".into())
                .spawn(move || poll_file(&hub, &name, &feed, &path, period));
            if let Err(err) = spawned {
                e.poller = false;
                return Err(PreviewError::Thread(err.to_string()));
            }
        }
        e.viewers += 1;
        Ok(Viewer {
            rx,
            lost,
            wants_whole,
            format,
            width: key.width,
            fps: key.fps,
            _guard: ViewerGuard {
                hub: self.inner.clone(),
                stream: stream.to_owned(),
            },
        })
    }

    /// Counters of every stream and format that had a viewer or a feed.
    pub fn stats(&self) -> Vec<PreviewStats> {
        let m = lock(&self.inner.streams);
        let mut out = Vec::new();
        for (name, e) in m.iter() {
            for format in [Format::Gif, Format::Mjpeg] {
                let mine = e.encoders.iter().filter(|(k, _)| k.format == format);
                let (encoders, viewers) =
                    mine.fold((0, 0), |(n, v), (_, enc)| (n + 1, v + enc.viewers()));
                out.push(PreviewStats {
                    stream: name.clone(),
                    format,
                    viewers,
                    encoders,
                    sent: e.counters.sent[format.slot()].load(Ordering::Relaxed),
                    dropped: e.counters.dropped[format.slot()].load(Ordering::Relaxed),
                });
            }
        }
        out.sort_by(|a, b| (&a.stream, a.format.slot()).cmp(&(&b.stream, b.format.slot())));
        out
    }
}

impl StreamEntry {
    fn new(feed: Feed, in_process: bool, width: u32, fps: u32) -> Self {
        Self {
            feed,
            in_process,
            width,
            fps,
            poller: false,
            viewers: 0,
            encoders: HashMap::new(),
            counters: Arc::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (counters, lists).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One encoder's thread.
struct EncoderJob {
    start_after: u64,
    hub: Arc<Inner>,
    stream: String,
    key: Key,
    feed: Feed,
    enc: Arc<Encoder>,
    counters: Arc<Counters>,
}

impl EncoderJob {
    fn run(self) {
        tracing::debug!(stream = %self.stream, format = self.key.format.as_str(), width = self.key.width, fps = self.key.fps, "preview encoder started");
        let mut last_seq = self.start_after;
        // Thinning to the asked rate by count, not by arrival time: pictures come in bursts
        // when the machine is busy, and a time rule would drop those bursts. `want` of every
        // `have` pictures go out; the first one always does.
        let (want, have) = (self.key.fps.max(1), self.feed.fps().max(1));
        let mut credit = have.saturating_sub(want);
        let mut gif: Option<GifWriter> = None;
        let mut warned = false;
        let mut sent_out = 0u64;
        loop {
            let frame = self.feed.wait_after(last_seq, IDLE_CHECK);
            if self.stop_if_alone() {
                break;
            }
            let Some(frame) = frame else { continue };
            last_seq = frame.seq;
            credit += want;
            if credit < have {
                continue;
            }
            credit -= have;
            let encoded = match self.key.format {
                Format::Gif => self.gif_frame(&mut gif, &frame),
                Format::Mjpeg => self.mjpeg_part(&frame),
            };
            let (header, body, delta) = match encoded {
                Ok(x) => x,
                Err(e) => {
                    if !warned {
                        tracing::warn!(stream = %self.stream, format = self.key.format.as_str(), error = %e, "preview picture skipped");
                        warned = true;
                    }
                    continue;
                }
            };
            sent_out += 1;
            self.fan_out(Piece {
                header,
                body,
                seq: sent_out,
                delta,
            });
        }
        tracing::debug!(stream = %self.stream, format = self.key.format.as_str(), "preview encoder stopped");
    }

    /// Drops viewers that left (and relays left without viewers); with none left, unregisters
    /// and says so.
    fn stop_if_alone(&self) -> bool {
        let mut m = lock(&self.hub.streams);
        let mut groups = lock(&self.enc.groups);
        groups.retain(|g| {
            let mut v = lock(&g.viewers);
            v.retain(|s| !s.tx.is_closed());
            !v.is_empty()
        });
        if !groups.is_empty() {
            return false;
        }
        if let Some(e) = m.get_mut(&self.stream)
            && e.encoders
                .get(&self.key)
                .is_some_and(|x| Arc::ptr_eq(x, &self.enc))
        {
            e.encoders.remove(&self.key);
        }
        self.feed.unwatch();
        true
    }

    /// One wake per relay (HTTP worker), or the viewers themselves when they have none.
    fn fan_out(&self, piece: Piece) {
        let format = self.key.format;
        for g in lock(&self.enc.groups).iter() {
            match &g.relay {
                None => deliver(
                    &g.viewers,
                    &piece,
                    &self.counters,
                    format,
                    &self.enc.wants_whole,
                ),
                Some(relay) => match relay.try_send(piece.clone()) {
                    Ok(()) | Err(TrySendError::Closed(_)) => {}
                    // Its thread is stuck: each of its viewers loses this picture (and needs
                    // the next whole).
                    Err(TrySendError::Full(_)) => {
                        self.enc.wants_whole.store(true, Ordering::Relaxed);
                        let n = lock(&g.viewers).len() as u64;
                        self.counters.dropped[format.slot()].fetch_add(n, Ordering::Relaxed);
                    }
                },
            }
        }
    }

    fn out_size(&self, f: &Frame) -> (u32, u32) {
        let w = self.key.width;
        let h = (u64::from(f.height) * u64::from(w) + u64::from(f.width) / 2)
            / u64::from(f.width.max(1));
        (w, u32::try_from(h).unwrap_or(1).max(1))
    }

    /// The picture as packed RGB of exactly `size`.
    fn rgb(f: &Frame, size: (u32, u32)) -> Result<Vec<u8>, PreviewError> {
        let img = image::load_from_memory_with_format(&f.jpeg, image::ImageFormat::Jpeg)
            .map_err(PreviewError::Image)?
            .to_rgb8();
        if img.dimensions() == size {
            return Ok(img.into_raw());
        }
        let scaled =
            image::imageops::resize(&img, size.0, size.1, image::imageops::FilterType::Triangle);
        Ok(scaled.into_raw())
    }

    fn gif_frame(&self, gif: &mut Option<GifWriter>, f: &Frame) -> Result<Encoded, PreviewError> {
        let w = match gif {
            Some(w) => w,
            None => {
                let (width, height) = self.out_size(f);
                gif.insert(GifWriter::new(width, height, self.key.fps)?)
            }
        };
        // The screen size is fixed by the header: a source that changes size is scaled to it.
        let rgb = Self::rgb(f, w.size())?;
        let frame = w.frame(&rgb, self.enc.wants_whole.swap(false, Ordering::Relaxed))?;
        if frame.whole.is_some() {
            self.enc.made_whole.fetch_add(1, Ordering::Relaxed);
        }
        Ok((Some(w.header()), frame.whole, frame.delta))
    }

    fn mjpeg_part(&self, f: &Frame) -> Result<Encoded, PreviewError> {
        if f.width == self.key.width {
            return Ok((None, Some(mjpeg::part(&f.jpeg)), None));
        }
        let size = self.out_size(f);
        let rgb = Self::rgb(f, size)?;
        let mut out = Vec::with_capacity(f.jpeg.len());
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode(&rgb, size.0, size.1, image::ExtendedColorType::Rgb8)
            .map_err(PreviewError::Image)?;
        Ok((None, Some(mjpeg::part(&out)), None))
    }
}

/// A picture encoded: the header a new viewer starts with, the picture whole, and the picture as
/// a change from the one before ([`Piece`]).
type Encoded = (Option<Bytes>, Option<Bytes>, Option<Bytes>);

/// Adds a viewer to the group of the calling thread's runtime, starting that group's relay on
/// the runtime when it has none yet.
fn join(enc: &Encoder, slot: Slot, counters: &Arc<Counters>, format: Format) {
    let runtime = tokio::runtime::Handle::try_current().ok();
    let thread = runtime.as_ref().map(|_| std::thread::current().id());
    // A new viewer starts with a whole picture.
    enc.wants_whole.store(true, Ordering::Relaxed);
    let mut groups = lock(&enc.groups);
    if let Some(g) = groups.iter().find(|g| g.thread == thread) {
        lock(&g.viewers).push(slot);
        return;
    }
    let viewers = Arc::new(Mutex::new(vec![slot]));
    let relay = runtime.map(|rt| {
        let (tx, mut rx) = mpsc::channel::<Piece>(RELAY_QUEUE);
        let (mine, counters) = (viewers.clone(), counters.clone());
        let wants_whole = enc.wants_whole.clone();
        rt.spawn(async move {
            while let Some(piece) = rx.recv().await {
                // This thread's own copy of the picture: each of its viewers' answers takes a
                // reference and drops it once written, and a count shared with the other
                // workers' viewers would bounce between the cores (a cache miss a viewer).
                let piece = Piece {
                    body: piece.body.as_deref().map(Bytes::copy_from_slice),
                    delta: piece.delta.as_deref().map(Bytes::copy_from_slice),
                    ..piece
                };
                deliver(&mine, &piece, &counters, format, &wants_whole);
            }
        });
        tx
    });
    groups.push(Group {
        thread,
        relay,
        viewers,
    });
}

/// Hands `piece` to each viewer of a group that has room for it (a GIF viewer's first picture
/// comes with the header; a viewer that got the picture before gets the delta, when there is
/// one); counted once per group.
fn deliver(
    viewers: &Mutex<Vec<Slot>>,
    piece: &Piece,
    counters: &Counters,
    format: Format,
    wants_whole: &AtomicBool,
) {
    let (mut sent, mut dropped) = (0, 0);
    for s in lock(viewers).iter_mut() {
        let body = match (&piece.delta, &piece.body) {
            (Some(d), _) if s.last.is_some_and(|l| l + 1 == piece.seq) => d.clone(),
            (_, Some(w)) => w.clone(),
            // Only the change was made, and this viewer did not get the picture before (it
            // lost it while this one was being made, or starts now): it waits for the next,
            // which is made whole once it has room for it.
            _ => {
                if s.tx.capacity() == 0 {
                    s.lost.store(true, Ordering::Relaxed);
                } else {
                    wants_whole.store(true, Ordering::Relaxed);
                }
                if s.started {
                    dropped += 1;
                }
                continue;
            }
        };
        if !s.started {
            // A fresh queue has room for the header and the picture.
            if let Some(h) = &piece.header
                && s.tx.try_send(h.clone()).is_err()
            {
                continue;
            }
            s.started = true;
        }
        match s.tx.try_send(body) {
            Ok(()) => {
                s.last = Some(piece.seq);
                sent += 1;
            }
            Err(TrySendError::Full(_)) => {
                dropped += 1;
                s.lost.store(true, Ordering::Relaxed);
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }
    let slot = format.slot();
    if sent > 0 {
        counters.sent[slot].fetch_add(sent, Ordering::Relaxed);
    }
    if dropped > 0 {
        counters.dropped[slot].fetch_add(dropped, Ordering::Relaxed);
    }
}

/// Reads the preview picture a separate ingest process writes (replaced by rename at its rate)
/// while someone watches: one `stat` per period, a read when it changed.
fn poll_file(
    hub: &Arc<Inner>,
    stream: &str,
    feed: &Feed,
    path: &std::path::Path,
    period: Duration,
) {
    use std::os::unix::fs::MetadataExt as _;
    let mut last = None;
    let mut idle_since: Option<Instant> = None;
    loop {
        std::thread::sleep(period);
        if feed.watched() {
            idle_since = None;
        } else if idle_since.get_or_insert_with(Instant::now).elapsed() > POLLER_LINGER {
            let mut m = lock(&hub.streams);
            if !feed.watched() {
                if let Some(e) = m.get_mut(stream) {
                    e.poller = false;
                }
                return;
            }
            continue;
        }
        let Ok(md) = std::fs::metadata(path) else {
            continue;
        };
        let id = (md.ino(), md.mtime(), md.mtime_nsec(), md.len());
        if last == Some(id) {
            continue;
        }
        if let Ok(b) = std::fs::read(path)
            && feed.publish(Bytes::from(b))
        {
            last = Some(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32, shade: u8) -> Bytes {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([shade, 255 - shade, 90]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&img)
            .unwrap();
        Bytes::from(out)
    }

    /// A hub with a 160 px feed of stream "cam" and two GIF viewers of it.
    fn gif_viewers() -> (Hub, Feed, [Viewer; 2]) {
        let hub = Hub::default();
        let feed = hub.register("cam", 160, 10);
        let v = [(); 2].map(|()| hub.subscribe("cam", Format::Gif, None, None).unwrap());
        (hub, feed, v)
    }

    /// A viewer's next piece, waited for at most 2 s.
    fn take(rt: &tokio::runtime::Runtime, v: &mut Viewer) -> Bytes {
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), v.recv()).await })
            .unwrap()
            .unwrap()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_slow_viewer_loses_pictures_the_fast_one_gets_them_all_and_the_encoder_stops() {
        let hub = Hub::new(HubConfig {
            max_viewers_per_stream: 2,
            ..HubConfig::default()
        });
        let feed = hub.register("cam", 160, 15);
        let mut fast = hub.subscribe("cam", Format::Mjpeg, None, None).unwrap();
        let slow = hub.subscribe("cam", Format::Mjpeg, None, None).unwrap();
        let e = hub.subscribe("cam", Format::Gif, None, None).unwrap_err();
        assert!(
            matches!(e, PreviewError::TooManyViewers { max: 2, .. }),
            "{e}"
        );
        assert!(matches!(
            hub.subscribe("cam", Format::Gif, Some(10), None),
            Err(PreviewError::Width(10))
        ));
        let rt = rt();
        let pics = 20;
        let mut got = 0;
        for i in 0..pics {
            assert!(feed.publish(jpeg(160, 90, u8::try_from(i * 10).unwrap())));
            let part = rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(2), fast.recv()).await })
                .unwrap()
                .unwrap();
            assert!(part.starts_with(b"Content-Type: image/jpeg\r\n"));
            got += 1;
            // 15 fps: pictures further apart than the thinning slack.
            std::thread::sleep(Duration::from_millis(70));
        }
        assert_eq!(got, pics);
        let s = &hub.stats()[1];
        assert_eq!((s.format, s.viewers, s.encoders), (Format::Mjpeg, 2, 1));
        assert_eq!(
            s.dropped,
            (pics - 4) as u64,
            "the slow viewer's queue holds 4"
        );
        assert!(feed.watched());
        drop((fast, slow));
        let t0 = Instant::now();
        while feed.watched() && t0.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!feed.watched(), "the encoder stopped with its last viewer");
        assert_eq!(hub.stats()[1].encoders, 0);
    }

    /// Viewers subscribed on a runtime get their pictures through that runtime's relay: the
    /// same pictures, and a slow viewer still loses only what its own queue cannot hold.
    #[test]
    fn viewers_on_a_runtime_get_every_picture_through_its_relay() {
        let hub = Hub::default();
        let feed = hub.register("cam", 160, 15);
        let rt = rt();
        let (mut fast, slow, mut gif) = rt.block_on(async {
            (
                hub.subscribe("cam", Format::Mjpeg, None, None).unwrap(),
                hub.subscribe("cam", Format::Mjpeg, None, None).unwrap(),
                hub.subscribe("cam", Format::Gif, None, None).unwrap(),
            )
        });
        let pics = 12;
        for i in 0..pics {
            assert!(feed.publish(jpeg(160, 90, u8::try_from(i * 10).unwrap())));
            rt.block_on(async {
                async fn next(v: &mut Viewer) -> Bytes {
                    tokio::time::timeout(Duration::from_secs(5), v.recv())
                        .await
                        .unwrap()
                        .unwrap()
                }
                let part = next(&mut fast).await;
                assert!(part.starts_with(b"Content-Type: image/jpeg\r\n"));
                if i == 0 {
                    let head = next(&mut gif).await;
                    assert_eq!(&head[..6], b"GIF89a");
                }
                let frame = next(&mut gif).await;
                assert_eq!(frame[0], 0x21, "a GIF frame");
            });
            std::thread::sleep(Duration::from_millis(70));
        }
        let mjpeg = &hub.stats()[1];
        assert_eq!(
            mjpeg.dropped,
            (pics - 4) as u64,
            "the slow viewer's queue holds 4"
        );
        assert_eq!(mjpeg.sent, (pics + 4) as u64);
        assert_eq!(hub.stats()[0].sent, pics as u64);
        drop((fast, slow, gif));
        let t0 = Instant::now();
        while feed.watched() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !feed.watched(),
            "the encoders stopped with their last viewers"
        );
    }

    #[test]
    fn a_gif_viewer_gets_the_header_with_its_first_picture_scaled_to_its_width() {
        let hub = Hub::default();
        let feed = hub.register("cam", 160, 10);
        let mut v = hub
            .subscribe("cam", Format::Gif, Some(80), Some(5))
            .unwrap();
        assert_eq!((v.width, v.fps), (80, 5));
        feed.publish(jpeg(160, 90, 0));
        let rt = rt();
        let mut next = || {
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), v.recv()).await })
                .unwrap()
                .unwrap()
        };
        let head = next();
        assert_eq!(&head[..6], b"GIF89a");
        assert_eq!(&head[6..10], &[80, 0, 45, 0], "80x45");
        let frame = next();
        assert_eq!(frame[0], 0x21, "graphic control extension first");
        let gif = [head.to_vec(), frame.to_vec()].concat();
        let mut d = gif::DecodeOptions::new().read_info(&gif[..]).unwrap();
        let f = d.read_next_frame().unwrap().unwrap();
        assert_eq!((f.width, f.height), (80, 45));
    }

    /// A grey 160x90 JPEG with a white square at column `x`.
    fn square_at(x: u32) -> Bytes {
        let img = image::RgbImage::from_fn(160, 90, |px, py| {
            if (x..x + 16).contains(&px) && (30..46).contains(&py) {
                image::Rgb([255, 255, 255])
            } else {
                image::Rgb([90, 90, 90])
            }
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .unwrap();
        Bytes::from(out)
    }

    /// The screens a GIF stream (no trailer) draws, one per whole frame: (whether the frame covered the
    /// screen opaquely, RGBA of the screen after it).
    fn screens(bytes: &[u8]) -> Vec<(bool, Vec<u8>)> {
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::RGBA);
        let mut d = opts.read_info(bytes).unwrap();
        let sw = usize::from(d.width());
        let full = (d.width(), d.height());
        let mut screen = vec![0u8; sw * usize::from(d.height()) * 4];
        let mut out = Vec::new();
        while let Ok(Some(f)) = d.read_next_frame() {
            crate::gif::tests::draw(&mut screen, sw, f);
            out.push((
                (f.width, f.height) == full && f.transparent.is_none(),
                screen.clone(),
            ));
        }
        out
    }

    /// GIF viewers that got the picture before get its change from it, a small block; a viewer
    /// that lost pictures gets the next one whole, and after it sees the same screen as the
    /// viewer that got them all.
    #[test]
    fn a_gif_viewer_gets_changes_and_after_a_loss_the_whole_picture() {
        let (hub, feed, [mut fast, mut slow]) = gif_viewers();
        let rt = rt();
        let next = |v: &mut Viewer| take(&rt, v);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..10u32 {
            feed.publish(square_at(8 + 12 * i));
            if i == 0 {
                a.extend_from_slice(&next(&mut fast));
            }
            let piece = next(&mut fast);
            if i > 0 {
                assert!(
                    piece.len() < 1_000,
                    "picture {i}: a change, {} bytes",
                    piece.len()
                );
            }
            a.extend_from_slice(&piece);
            std::thread::sleep(Duration::from_millis(110));
        }
        // The slow viewer's queue held the header and 3 pictures; the rest were lost.
        for _ in 0..4 {
            b.extend_from_slice(&next(&mut slow));
        }
        feed.publish(square_at(40));
        a.extend_from_slice(&next(&mut fast));
        b.extend_from_slice(&next(&mut slow));
        let (sa, sb) = (screens(&a), screens(&b));
        assert_eq!(sa.len(), 11);
        assert_eq!(
            sa.iter().map(|s| s.0).collect::<Vec<_>>(),
            [[true].as_slice(), &[false; 10]].concat(),
            "the first whole, then changes"
        );
        assert_eq!(sb.len(), 4);
        assert_eq!(
            sb.iter().map(|s| s.0).collect::<Vec<_>>(),
            [true, false, false, true],
            "after the loss, the whole picture"
        );
        assert_eq!(
            sa.last().unwrap().1,
            sb.last().unwrap().1,
            "the same screen"
        );
        assert_eq!(sa[2].1, sb[2].1);
        assert_ne!(sa[2].1, sb[3].1);
        assert!(hub.stats()[0].dropped >= 6);
    }

    /// A GIF viewer that reads nothing loses pictures (counted) without making the encoder
    /// write each picture whole as well as its change: it asks for a whole one only once it
    /// has taken something out of its queue.
    #[test]
    fn a_gif_viewer_that_reads_nothing_does_not_keep_pictures_whole() {
        let (hub, feed, [mut fast, mut stuck]) = gif_viewers();
        let rt = rt();
        let next = |v: &mut Viewer| take(&rt, v);
        let made = || {
            let m = lock(&hub.inner.streams);
            let enc = m["cam"].encoders.values().next().unwrap().clone();
            enc.made_whole.load(Ordering::Relaxed)
        };
        let mut a = Vec::new();
        for i in 0..12u32 {
            feed.publish(square_at(8 + 12 * i));
            if i == 0 {
                a.extend_from_slice(&next(&mut fast));
            }
            a.extend_from_slice(&next(&mut fast));
            std::thread::sleep(Duration::from_millis(110));
        }
        assert_eq!(
            made(),
            1,
            "only the first picture (both viewers new) made whole"
        );
        assert_eq!(
            screens(&a).len(),
            12,
            "the reading viewer got every picture"
        );
        assert!(hub.stats()[0].dropped >= 8, "{:?}", hub.stats());
        // Once the stuck viewer takes something out, its next picture is whole.
        for _ in 0..4 {
            next(&mut stuck);
        }
        feed.publish(square_at(40));
        next(&mut fast);
        let b = next(&mut stuck);
        assert_eq!(made(), 2);
        assert!(b.len() > 1_000, "a whole picture, {} bytes", b.len());
    }
}
