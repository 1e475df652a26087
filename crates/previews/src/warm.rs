//! Decoders kept running for cold thumbnails: one ffmpeg per (init section, width) that is fed
//! one picture after another, so a thumbnail costs its decode and not an ffmpeg's start (~80 ms
//! of CPU: loading Debian ffmpeg's 215 libraries, more than the decode of a GOP).
//!
//! The decoder reads one endless fragmented MP4 on stdin ([`hlsmark_media::clip::feed_init`],
//! then a fragment per picture: [`hlsmark_media::clip::feed_picture`]) and writes JPEGs on
//! stdout. It cannot be told which frame is wanted per picture, so the frames carry it: each
//! fragment holds the samples from the keyframe to the frame (as a one-shot decode), and only the
//! frame asked for has a presentation time of 1 modulo 4, which a fixed `select` lets through
//! (`-copyts` keeps the times as written). A decoder holds pictures back (to put B-frames in
//! order, and one per extra frame thread) until more come; without an end of input to flush it,
//! the fragment ends with filler pictures (never shown) that push the frame out (each a flat grey
//! IDR picture written for the stream, next to nothing to decode, or for a stream it cannot be
//! written for a copy of the keyframe; [`hlsmark_media::clip::feed_picture`]). As many as the
//! stream's reorder depth (announced in its SPS, else what the segment shows) less the
//! pictures the decoder already holds that are shown after the frame, plus the extra threads
//! (exact for libx264 streams with and without B-frames: a test checks that one fewer leaves the
//! frame in), and one more each time the frame is late ([`hlsmark_media::clip::feed_filler`]),
//! remembered by that decoder (a stream that announces nothing may reorder deeper than a segment
//! shows).
//!
//! Only H.264 whose keyframe is an IDR picture (which starts afresh whatever came before); other
//! pictures, a decoder that fails or is late past [`WARM_TIMEOUT`], go the one-shot way.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hlsmark_media::clip::{ClipInit, FEED_STEP, FEED_TARGET, feed_filler, feed_init, feed_picture};

/// Decoders kept at most (each an ffmpeg blocked on its input, ~75 MB RSS at 720p).
pub const WARM_MAX: usize = 2;
/// A decoder unused this long is stopped (checked at each request).
pub const WARM_IDLE: Duration = Duration::from_secs(600);
/// How long a picture may take in a decoder kept running before it is made the one-shot way.
pub const WARM_TIMEOUT: Duration = Duration::from_secs(3);
/// The decoder's frame threads (two cut a GOP's decode by a third; each past the first holds a
/// picture back).
const THREADS: usize = 2;
/// Fillers added to one picture at most before the decoder is given up.
const MAX_NUDGES: usize = 16;
/// Fillers learned at most (each one more picture to decode per picture).
const MAX_EXTRA: usize = 4;
/// The largest JPEG taken from the decoder.
const MAX_PICTURE: usize = 32 << 20;

/// One decoder kept running (see the module's notes). Killed and reaped when dropped.
#[derive(Debug)]
pub struct Warm {
    init: Bytes,
    width: Option<u32>,
    child: Arc<Mutex<Child>>,
    stdin: ChildStdin,
    pictures: mpsc::Receiver<Bytes>,
    base: u64,
    sequence: u32,
    /// Fillers beyond the segment's reorder depth and the extra threads, learned (see above).
    extra: usize,
    used: Instant,
}

/// The decoder's arguments: the stream of fragments on stdin, the frames asked for out as JPEGs
/// (as a one-shot thumbnail: same quality, same scaling).
pub fn warm_args(width: Option<u32>) -> Vec<String> {
    let filter = format!(
        "select=eq(mod(pts\\,{FEED_STEP})\\,{FEED_TARGET}),{}",
        crate::thumbs::display_scale(width)
    );
    let threads = THREADS.to_string();
    [
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-threads",
        &threads,
        "-nofind_stream_info",
        "-copyts",
        "-f",
        "mp4",
        "-i",
        "pipe:0",
        "-an",
        "-vf",
        &filter,
        "-fps_mode",
        "passthrough",
        // The encoder keeps the input's time base: the frames asked for are a few ticks apart,
        // which a default 1/25 s would merge into one time (a picture refused as not later).
        "-enc_time_base:v",
        "-1",
        "-c:v",
        "mjpeg",
        // The quantizer of a one-shot's `-q:v 3` (the same bytes), held to by rate control:
        // ffmpeg 5.1 holds a picture back when `-q:v` is given this way.
        "-qmin",
        "3",
        "-qmax",
        "3",
        // Each picture written out as it is made (not when 32 KB have gathered).
        "-flush_packets",
        "1",
        "-f",
        "image2pipe",
        "pipe:1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

impl Warm {
    /// Starts a decoder for pictures of `init` (its bytes, and read) at `width`, and gives it its
    /// init section (it then waits for the first picture).
    pub fn start(
        ffmpeg: &Path,
        init: Bytes,
        clip: &ClipInit,
        width: Option<u32>,
    ) -> std::io::Result<Self> {
        let head = feed_init(clip).map_err(std::io::Error::other)?;
        let mut child = Command::new(ffmpeg)
            .args(warm_args(width))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let (Some(stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("an ffmpeg without its pipes"));
        };
        let (tx, pictures) = mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("thumb-decoder".into())
            .spawn(move || {
                let mut split = crate::jpeg::JpegSplitter::new(MAX_PICTURE);
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = stdout.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    split.push(&buf[..n]);
                    while let Some(p) = split.next_picture() {
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                }
            });
        let child = Arc::new(Mutex::new(child));
        // Killed when dropped, from here on.
        let mut warm = Self {
            init,
            width,
            child,
            stdin,
            pictures,
            base: 0,
            sequence: 1,
            extra: 0,
            used: Instant::now(),
        };
        reader?;
        warm.stdin.write_all(&head)?;
        warm.stdin.flush()?;
        Ok(warm)
    }

    /// Whether this decoder makes pictures of `init` at `width`.
    pub fn serves(&self, init: &[u8], width: Option<u32>) -> bool {
        self.width == width && self.init[..] == *init
    }

    /// When it last made a picture (or started).
    pub fn used(&self) -> Instant {
        self.used
    }

    /// A handle that kills the decoder from elsewhere (a picture that takes too long).
    pub fn killer(&self) -> Killer {
        Killer(Arc::clone(&self.child))
    }

    /// Frame `index` (presentation order) of `segment` as a JPEG. Blocks. After a
    /// [`WarmError::Decoder`] the decoder is unusable (drop it); after a [`WarmError::Input`]
    /// nothing was sent to it.
    pub fn picture(
        &mut self,
        clip: &ClipInit,
        segment: &Bytes,
        index: usize,
    ) -> Result<Bytes, WarmError> {
        let more = THREADS - 1 + self.extra;
        let p = feed_picture(clip, segment, index, self.sequence, self.base, |pushes| {
            pushes + more
        })
        .map_err(|e| WarmError::Input(e.to_string()))?;
        self.sequence = self.sequence.wrapping_add(1);
        self.base = p.next_base;
        // Nothing is pending between pictures; anything here is not this picture.
        while self.pictures.try_recv().is_ok() {}
        let write = |stdin: &mut ChildStdin, b: &[u8]| {
            stdin
                .write_all(b)
                .and_then(|()| stdin.flush())
                .map_err(|e| WarmError::Decoder(format!("writing to the decoder: {e}")))
        };
        let t0 = Instant::now();
        write(&mut self.stdin, &p.fragment)?;
        let frames = u32::try_from(p.samples + p.fillers).unwrap_or(u32::MAX);
        // Its decode, generously (a filler added to a picture only slow to decode would be
        // learned, and decoded with every picture after); then a filler more every 25 ms.
        let mut wait = Duration::from_millis(150) + Duration::from_millis(10) * frames;
        let deadline = t0 + WARM_TIMEOUT;
        let mut nudges = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.pictures.recv_timeout(wait.min(left)) {
                Ok(jpeg) => {
                    tracing::debug!(
                        samples = p.samples,
                        fillers = p.fillers,
                        reorder = p.reorder,
                        held = p.held,
                        light = p.light,
                        nudges,
                        extra = self.extra,
                        ms = t0.elapsed().as_secs_f64() * 1e3,
                        "thumbnail by a decoder kept running"
                    );
                    self.extra = (self.extra + nudges).min(MAX_EXTRA);
                    self.used = Instant::now();
                    return Ok(jpeg);
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() && nudges < MAX_NUDGES => {
                    let (f, next) = feed_filler(&p, self.sequence, self.base)
                        .map_err(|e| WarmError::Decoder(e.to_string()))?;
                    self.sequence = self.sequence.wrapping_add(1);
                    self.base = next;
                    write(&mut self.stdin, &f)?;
                    nudges += 1;
                    wait = Duration::from_millis(25);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(WarmError::Decoder(format!(
                        "no picture within {WARM_TIMEOUT:?}"
                    )));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(WarmError::Decoder("the decoder exited".to_owned()));
                }
            }
        }
    }
}

/// Why a decoder kept running did not make a picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarmError {
    /// The picture cannot be fed to it (not H.264, a keyframe that is not an IDR picture, a
    /// segment that cannot be read so); nothing was sent, the decoder is as it was.
    Input(String),
    /// The decoder failed or was late.
    Decoder(String),
}

impl std::fmt::Display for WarmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Input(e) => write!(f, "not for a decoder kept running: {e}"),
            Self::Decoder(e) => write!(f, "{e}"),
        }
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        Killer(Arc::clone(&self.child)).kill();
    }
}

/// Kills and reaps a [`Warm`]'s ffmpeg.
#[derive(Debug, Clone)]
pub struct Killer(Arc<Mutex<Child>>);

impl Killer {
    pub fn kill(&self) {
        if let Ok(mut c) = self.0.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Decoders that fail before none are used any more (a picture they cannot make goes the
/// one-shot way anyway; this spares every later request the wait).
const FAILURES: u64 = 3;

/// The decoders kept running that wait for a picture, shared by every request.
#[derive(Debug)]
pub struct WarmPool {
    ffmpeg: PathBuf,
    idle: Mutex<Vec<Warm>>,
    made: AtomicU64,
    /// A decoder is being started (one at a time, off any request's path).
    starting: Arc<AtomicBool>,
    failed: AtomicU64,
}

impl WarmPool {
    pub fn new(ffmpeg: PathBuf) -> Self {
        Self {
            ffmpeg,
            idle: Mutex::new(Vec::new()),
            made: AtomicU64::new(0),
            starting: Arc::new(AtomicBool::new(false)),
            failed: AtomicU64::new(0),
        }
    }

    /// Pictures made so far.
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    /// Decoders waiting now.
    pub fn idle(&self) -> usize {
        self.idle.lock().map_or(0, |w| w.len())
    }

    /// Their process ids (tests).
    pub fn pids(&self) -> Vec<u32> {
        self.idle.lock().map_or(Vec::new(), |w| {
            w.iter()
                .filter_map(|w| w.child.lock().ok().map(|c| c.id()))
                .collect()
        })
    }

    fn usable(&self) -> bool {
        self.failed.load(Ordering::Relaxed) < FAILURES
    }

    /// A decoder that failed (it is stopped by its taker).
    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// The idle decoder for `init` at `width`, if one runs; decoders idle past [`WARM_IDLE`] are
    /// stopped.
    pub fn take(&self, init: &[u8], width: Option<u32>) -> Option<Warm> {
        if !self.usable() {
            return None;
        }
        let mut pool = self.idle.lock().ok()?;
        let (stale, keep): (Vec<Warm>, Vec<Warm>) = std::mem::take(&mut *pool)
            .into_iter()
            .partition(|w| w.used.elapsed() > WARM_IDLE);
        *pool = keep;
        let taken = pool
            .iter()
            .position(|w| w.serves(init, width))
            .map(|i| pool.swap_remove(i));
        drop(pool);
        reap(stale);
        taken
    }

    /// Gives a decoder back (`made`: it made a picture); the least recently used beyond
    /// [`WARM_MAX`] is stopped.
    pub fn put(&self, warm: Warm, made: bool) {
        if made {
            self.made.fetch_add(1, Ordering::Relaxed);
        }
        let Ok(mut pool) = self.idle.lock() else {
            return;
        };
        pool.push(warm);
        let mut gone = Vec::new();
        while pool.len() > WARM_MAX {
            let Some(oldest) = pool
                .iter()
                .enumerate()
                .min_by_key(|(_, w)| w.used)
                .map(|(i, _)| i)
            else {
                break;
            };
            gone.push(pool.swap_remove(oldest));
        }
        drop(pool);
        reap(gone);
    }

    /// Starts a decoder for `init` at `width` on a thread of its own (off any request's path,
    /// one at a time), to wait in the pool. Only for pictures it can make (H.264).
    pub fn start(self: &Arc<Self>, init: Bytes, width: Option<u32>) {
        if !self.usable() || self.starting.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("thumb-decoder-start".into())
            .spawn(move || {
                let started = ClipInit::parse(init.clone())
                    .map_err(std::io::Error::other)
                    .and_then(|clip| {
                        if clip.is_h264() {
                            Warm::start(&me.ffmpeg, init, &clip, width).map(Some)
                        } else {
                            Ok(None)
                        }
                    });
                match started {
                    Ok(Some(w)) => me.put(w, false),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "thumbnails: starting a decoder kept running");
                        me.failed();
                    }
                }
                me.starting.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.starting.store(false, Ordering::Release);
        }
    }
}

/// Stops decoders on a thread of their own (a kill and a wait each).
fn reap(warm: Vec<Warm>) {
    if !warm.is_empty() {
        let _ = std::thread::Builder::new()
            .name("thumb-decoder-stop".into())
            .spawn(move || drop(warm));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoder_lets_through_only_the_frames_marked_and_scales_as_a_one_shot_does() {
        let a = warm_args(Some(320));
        let at = |f: &str| a[a.iter().position(|x| x == f).unwrap() + 1].clone();
        assert_eq!(
            at("-vf"),
            "select=eq(mod(pts\\,4)\\,1),scale=320:'trunc(320*ih/(iw*sar)/2)*2',setsar=1"
        );
        assert_eq!(at("-i"), "pipe:0");
        assert!(a.contains(&"-copyts".to_owned()), "times as written");
        assert_eq!((at("-qmin"), at("-qmax")), ("3".into(), "3".into()));
        assert!(!a.contains(&"-frames:v".to_owned()), "runs on");
        let b = warm_args(None);
        assert_eq!(
            b[b.iter().position(|x| x == "-vf").unwrap() + 1],
            "select=eq(mod(pts\\,4)\\,1),scale='trunc(iw*sar/2)*2':ih,setsar=1"
        );
    }
}
