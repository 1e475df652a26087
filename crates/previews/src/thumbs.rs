//! Exact-frame thumbnails: the picture of frame `index` (presentation order, as in the segment's
//! frame table) of a retained segment, decoded by ffmpeg from the epoch's init section and the
//! segment's samples from the keyframe before that frame to the frame, and kept in a bounded
//! least-recently-used cache (segments never change).
//!
//! Most of a cold thumbnail's time was ffmpeg starting (loading its libraries: ~50-80 ms of CPU,
//! more of wall time on a busy machine) rather than decoding. So [`SPARES`] ffmpegs are kept
//! started ahead ("spares"), blocked reading their input from stdin, in a pool of the
//! [`Thumbnails`] (any thread may use any of them: they are plain processes, their pipes are
//! handed to the runtime of the request that takes one). A request writes its filter into the
//! spare's `-filter_script` file (read only once the input is open) and pipes the frame's input
//! in; the pool is topped up after the picture is made, so the next ffmpeg's start does not
//! compete with this decode for a core. Without a spare, or if the spare fails, ffmpeg is run
//! as before.
//!
//! Before either, a picture goes to a decoder kept running for its init section and width
//! ([`crate::warm`]), which costs no start at all; the first picture of an init section and
//! width, and any the decoder cannot make, go the way above.
//!
//! The input is not the whole segment but the fewest samples that decode the frame
//! ([`decoder_input`], [`hlsmark_media::clip::picture`]): from the nearest keyframe, without the
//! pictures nothing refers to (a camera's B-frames: about half of a GOP), nothing after the
//! frame; the same picture (a test compares it with the whole segment's).
//!
//! Also the timeline's tiles: one small picture per segment (its first frame, which is always a
//! keyframe: segments are cut at keyframes), decoded with `-skip_frame nokey` so only that one
//! frame is decoded, letterboxed to [`TILE_WIDTH`] x [`TILE_HEIGHT`], kept in a cache of their
//! own (an hour of one-second segments is 3,600 tiles of ~3 KB).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hlsmark_clock::SeqNo;

use crate::PreviewError;
use crate::warm::{WARM_TIMEOUT, WarmError, WarmPool};

/// ffmpeg runs at once for thumbnails (each decodes up to a segment of video).
const CONCURRENT: usize = 2;
/// ffmpegs kept started ahead: one per turn and one more, so that a spare taken was started at
/// least one picture earlier (an ffmpeg's start is ~50 ms of CPU; taken sooner, the request
/// waits for the rest of it), also when requests come back to back or several at once.
pub const SPARES: usize = CONCURRENT + 1;
/// How long a request waits for a turn before it is refused as busy.
const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// How long one extraction may take.
const EXTRACT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an ffmpeg that closed its output may take to exit.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Size of a timeline tile (16:9; other shapes are letterboxed into it).
pub const TILE_WIDTH: u32 = 160;
pub const TILE_HEIGHT: u32 = 90;
/// Tiles kept: four hours of one-second segments of one stream, or an hour of four streams.
const TILE_MAX_ENTRIES: usize = 16_384;
const TILE_MAX_BYTES: usize = 64 << 20;

/// One timeline tile: the first frame of a segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TileKey {
    pub stream: String,
    pub epoch: u32,
    pub seq: SeqNo,
}

/// One thumbnail: which frame, at which width (`None`: the video's own size).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThumbKey {
    pub stream: String,
    pub epoch: u32,
    pub seq: SeqNo,
    pub index: usize,
    pub width: Option<u32>,
}

/// A thumbnail and whether it came from the cache.
#[derive(Debug, Clone)]
pub struct Thumb {
    pub jpeg: Bytes,
    pub cached: bool,
}

/// Extracts and caches thumbnails.
#[derive(Debug)]
pub struct Thumbnails {
    ffmpeg: PathBuf,
    max_entries: usize,
    max_bytes: usize,
    turns: tokio::sync::Semaphore,
    cache: Mutex<Lru<ThumbKey>>,
    tiles: Mutex<Lru<TileKey>>,
    /// Streams whose tiles someone makes as segments finish (see [`Self::claim_tiler`]).
    tilers: Mutex<HashSet<String>>,
    /// ffmpegs started ahead, waiting for a request's input (see the module's notes).
    spares: Mutex<VecDeque<Spare>>,
    /// Spares are not used after one failed where a plain run worked (an ffmpeg without
    /// `-filter_script`, say).
    no_spares: AtomicBool,
    /// Thumbnails made ahead of any request ([`Self::get_if_free`]).
    made_ahead: AtomicU64,
    /// Decoders kept running (see [`crate::warm`]).
    warm: Arc<WarmPool>,
    /// Thumbnails being made now: a request for one of them waits for that picture rather than
    /// decoding it a second time (the page asks for a new marker's row thumbnail as soon as its
    /// segment is out, just when the tiler makes it ahead).
    making: Mutex<HashMap<ThumbKey, tokio::sync::watch::Receiver<()>>>,
}

/// A thumbnail being made (see [`Thumbnails::making`]); waiters wake when it is dropped.
struct Making<'a> {
    owner: &'a Thumbnails,
    key: ThumbKey,
    /// This one's entry in the map (another maker of the same key may have replaced it).
    mine: tokio::sync::watch::Receiver<()>,
    _done: tokio::sync::watch::Sender<()>,
}

impl Drop for Making<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.owner.making.lock()
            && m.get(&self.key).is_some_and(|r| r.same_channel(&self.mine))
        {
            m.remove(&self.key);
        }
    }
}

#[derive(Debug)]
struct Lru<K> {
    map: HashMap<K, (Bytes, u64)>,
    tick: u64,
    bytes: usize,
}

impl<K> Default for Lru<K> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            tick: 0,
            bytes: 0,
        }
    }
}

impl<K: Hash + Eq + Clone> Lru<K> {
    fn lookup(&mut self, key: &K) -> Option<Bytes> {
        self.tick += 1;
        let tick = self.tick;
        let (b, used) = self.map.get_mut(key)?;
        *used = tick;
        Some(b.clone())
    }

    fn insert(&mut self, key: K, value: Bytes, max_entries: usize, max_bytes: usize) {
        if value.len() > max_bytes {
            return;
        }
        self.tick += 1;
        let tick = self.tick;
        self.bytes += value.len();
        if let Some((old, _)) = self.map.insert(key, (value, tick)) {
            self.bytes -= old.len();
        }
        while self.map.len() > max_entries || self.bytes > max_bytes {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
    }

    fn remove(&mut self, key: &K) {
        if let Some((b, _)) = self.map.remove(key) {
            self.bytes -= b.len();
        }
    }
}

impl Thumbnails {
    /// `ffmpeg` (a name on `PATH` or a path); at most `max_entries` thumbnails and `max_bytes`
    /// kept.
    pub fn new(ffmpeg: PathBuf, max_entries: usize, max_bytes: usize) -> Self {
        Self {
            warm: Arc::new(WarmPool::new(ffmpeg.clone())),
            ffmpeg,
            max_entries: max_entries.max(1),
            max_bytes,
            turns: tokio::sync::Semaphore::new(CONCURRENT),
            cache: Mutex::new(Lru::default()),
            tiles: Mutex::new(Lru::default()),
            tilers: Mutex::new(HashSet::new()),
            spares: Mutex::new(VecDeque::new()),
            no_spares: AtomicBool::new(false),
            made_ahead: AtomicU64::new(0),
            making: Mutex::new(HashMap::new()),
        }
    }

    /// Pictures made by decoders kept running so far.
    pub fn warm_made(&self) -> u64 {
        self.warm.made()
    }

    /// Decoders kept running and idle now (tests, diagnostics).
    pub fn warm_waiting(&self) -> usize {
        self.warm.idle()
    }

    /// Frame `key.index` of `segment` by a decoder kept running for `init` at `key.width`:
    /// `Ok(Err(Some(init)))` when none runs for them (the caller makes it the one-shot way, then
    /// starts one with these init bytes), `Ok(Err(None))` when the files could not be read here
    /// or the picture cannot be fed to the decoder (which stays as it was),
    /// `Err` when the decoder failed (it is stopped; the caller makes it the one-shot way).
    async fn extract_warm_decoder(
        &self,
        key: &ThumbKey,
        init: &Path,
        segment: &Path,
    ) -> Result<Result<Bytes, Option<Bytes>>, String> {
        let (init_path, segment_path) = (init.to_owned(), segment.to_owned());
        let Ok((init_bytes, seg)) = read_blocking(segment, move || {
            Ok((
                Bytes::from(std::fs::read(init_path)?),
                Bytes::from(std::fs::read(segment_path)?),
            ))
        })
        .await
        else {
            return Ok(Err(None));
        };
        let Some(mut warm) = self.warm.take(&init_bytes, key.width) else {
            return Ok(Err(Some(init_bytes)));
        };
        let killer = warm.killer();
        let index = key.index;
        let job = tokio::task::spawn_blocking(move || {
            let made = hlsmark_media::clip::ClipInit::parse(init_bytes)
                .map_err(|e| WarmError::Input(e.to_string()))
                .and_then(|clip| warm.picture(&clip, &seg, index));
            (warm, made)
        });
        match tokio::time::timeout(WARM_TIMEOUT + Duration::from_secs(1), job).await {
            Ok(Ok((warm, Ok(jpeg)))) => {
                self.warm.put(warm, true);
                Ok(Ok(jpeg))
            }
            Ok(Ok((warm, Err(WarmError::Input(e))))) => {
                // Not a picture for it (an open GOP, say): the decoder stays, the picture is
                // made the one-shot way.
                tracing::debug!(error = %e, "thumbnail: not for a decoder kept running");
                self.warm.put(warm, false);
                Ok(Err(None))
            }
            Ok(Ok((warm, Err(e)))) => {
                self.warm.failed();
                tokio::task::spawn_blocking(move || drop(warm));
                Err(e.to_string())
            }
            Ok(Err(e)) => {
                self.warm.failed();
                Err(e.to_string())
            }
            Err(_) => {
                self.warm.failed();
                tokio::task::spawn_blocking(move || killer.kill());
                Err("the decoder kept running hung".to_owned())
            }
        }
    }

    /// Thumbnails made ahead of any request so far.
    pub fn made_ahead(&self) -> u64 {
        self.made_ahead.load(Ordering::Relaxed)
    }

    /// Starts the spare ffmpegs unless they run (cheap when they do). Called by every request
    /// that may lead to a cold thumbnail (the seek bar's track starts them before anyone asks
    /// for a picture); a server that makes no pictures starts none.
    pub fn warm_up(&self) {
        if self.no_spares.load(Ordering::Relaxed) {
            return;
        }
        let want = SPARES.saturating_sub(self.spares.lock().map_or(SPARES, |p| p.len()));
        // Started outside the lock: a fork and exec each.
        let started: Vec<Spare> = (0..want).map_while(|_| start_spare(&self.ffmpeg)).collect();
        if let Ok(mut pool) = self.spares.lock() {
            pool.extend(started);
            pool.truncate(SPARES);
        }
    }

    /// Spares waiting now (tests, diagnostics).
    pub fn spares_waiting(&self) -> usize {
        self.spares.lock().map_or(0, |p| p.len())
    }

    /// The oldest spare that still waits, if any (the oldest: the most likely to have finished
    /// starting).
    fn take_spare(&self) -> Option<Spare> {
        if self.no_spares.load(Ordering::Relaxed) {
            return None;
        }
        let mut pool = self.spares.lock().ok()?;
        while let Some(mut s) = pool.pop_front() {
            if matches!(s.child.try_wait(), Ok(None)) {
                return Some(s);
            }
        }
        None
    }

    /// Makes the tiles of `segments` (seq and file, consecutive in one epoch sharing `init`) in
    /// one ffmpeg run: a tile's cost is mostly ffmpeg's start (~0.1 s of CPU alone, ~0.02 s each
    /// in a run of five). Returns how many were made: 0 when the run did not give exactly one
    /// picture per segment (a segment with several keyframes), and the caller makes them one by
    /// one.
    pub async fn tiles_batch(
        &self,
        stream: &str,
        epoch: u32,
        init: Option<&Path>,
        segments: &[(SeqNo, PathBuf)],
    ) -> Result<usize, PreviewError> {
        let Some((_, first)) = segments.first() else {
            return Ok(0);
        };
        let paths: Vec<&Path> = segments.iter().map(|(_, p)| p.as_path()).collect();
        self.warm_up();
        let _turn = tokio::time::timeout(QUEUE_WAIT, self.turns.acquire())
            .await
            .map_err(|_| PreviewError::Busy)?
            .map_err(|_| PreviewError::Busy)?;
        let out = run_ffmpeg(
            &self.ffmpeg,
            tiles_args(init, &paths, false),
            Input::Concat(init),
            first,
            0,
        )
        .await?;
        let mut split = crate::jpeg::JpegSplitter::new(out.len() + 1);
        split.push(&out);
        let pictures: Vec<Bytes> = std::iter::from_fn(|| split.next_picture()).collect();
        if pictures.len() != segments.len() {
            return Ok(0);
        }
        let Ok(mut c) = self.tiles.lock() else {
            return Ok(0);
        };
        for ((seq, _), jpeg) in segments.iter().zip(pictures) {
            let key = TileKey {
                stream: stream.to_owned(),
                epoch,
                seq: *seq,
            };
            c.insert(key, jpeg, TILE_MAX_ENTRIES, TILE_MAX_BYTES);
        }
        Ok(segments.len())
    }

    /// Tiles in the cache now and their bytes.
    pub fn tiles_cached(&self) -> (usize, usize) {
        self.tiles.lock().map_or((0, 0), |c| (c.map.len(), c.bytes))
    }

    /// `true` once per stream: the caller is to make its tiles as segments finish (one task per
    /// stream and process, however many requests ask at once).
    pub fn claim_tiler(&self, stream: &str) -> bool {
        self.tilers
            .lock()
            .is_ok_and(|mut t| t.insert(stream.to_owned()))
    }

    /// Gives the stream's tiler back (its task ended), so the next request starts another.
    pub fn release_tiler(&self, stream: &str) {
        if let Ok(mut t) = self.tilers.lock() {
            t.remove(stream);
        }
    }

    /// Whether the tile is made (without waiting or making it).
    pub fn has_tile(&self, key: &TileKey) -> bool {
        self.tiles.lock().is_ok_and(|c| c.map.contains_key(key))
    }

    /// Forgets the stream's tiles of segments before `seq` (retention removed them) or of
    /// another epoch numbering (a wiped data directory reuses sequence numbers).
    pub fn forget_tiles_before(&self, stream: &str, seq: SeqNo) {
        let Ok(mut c) = self.tiles.lock() else { return };
        let gone: Vec<TileKey> = c
            .map
            .keys()
            .filter(|k| k.stream == stream && k.seq < seq)
            .cloned()
            .collect();
        for k in &gone {
            c.remove(k);
        }
    }

    /// The tile of `key` (the first frame of `init` + `segment`; MPEG-TS segments have no
    /// init section), from the cache when it is there.
    pub async fn tile(
        &self,
        key: TileKey,
        init: Option<&Path>,
        segment: &Path,
    ) -> Result<Thumb, PreviewError> {
        let lookup = |k: &TileKey| self.tiles.lock().ok().and_then(|mut c| c.lookup(k));
        if let Some(jpeg) = lookup(&key) {
            return Ok(Thumb { jpeg, cached: true });
        }
        self.warm_up();
        let _turn = tokio::time::timeout(QUEUE_WAIT, self.turns.acquire())
            .await
            .map_err(|_| PreviewError::Busy)?
            .map_err(|_| PreviewError::Busy)?;
        if let Some(jpeg) = lookup(&key) {
            return Ok(Thumb { jpeg, cached: true });
        }
        let jpeg = run_ffmpeg(
            &self.ffmpeg,
            tile_args(init, segment),
            Input::Concat(init),
            segment,
            0,
        )
        .await?;
        if let Ok(mut c) = self.tiles.lock() {
            c.insert(key, jpeg.clone(), TILE_MAX_ENTRIES, TILE_MAX_BYTES);
        }
        Ok(Thumb {
            jpeg,
            cached: false,
        })
    }

    /// Thumbnails in the cache now and their bytes.
    pub fn cached(&self) -> (usize, usize) {
        self.cache.lock().map_or((0, 0), |c| (c.map.len(), c.bytes))
    }

    /// The thumbnail of `key` from `init` + `segment`, from the cache when it is there.
    pub async fn get(
        &self,
        key: ThumbKey,
        init: &Path,
        segment: &Path,
    ) -> Result<Thumb, PreviewError> {
        if let Some(jpeg) = self.lookup(&key) {
            return Ok(Thumb { jpeg, cached: true });
        }
        if let Some(mut done) = self.being_made(&key) {
            // Made by another request or ahead: that picture, unless it failed.
            let _ = tokio::time::timeout(EXTRACT_TIMEOUT, done.changed()).await;
            if let Some(jpeg) = self.lookup(&key) {
                return Ok(Thumb { jpeg, cached: true });
            }
        }
        if self.spares_waiting() == 0 {
            // The first request (or the pool ran dry): one of these is taken below.
            self.warm_up();
        }
        let mut turn = tokio::time::timeout(QUEUE_WAIT, self.turns.acquire())
            .await
            .map_err(|_| PreviewError::Busy)?
            .map_err(|_| PreviewError::Busy)?;
        // Another request may have made it, or begun to, while this one waited for its turn.
        if let Some(jpeg) = self.lookup(&key) {
            return Ok(Thumb { jpeg, cached: true });
        }
        if let Some(mut done) = self.being_made(&key) {
            drop(turn);
            let _ = tokio::time::timeout(EXTRACT_TIMEOUT, done.changed()).await;
            if let Some(jpeg) = self.lookup(&key) {
                return Ok(Thumb { jpeg, cached: true });
            }
            turn = tokio::time::timeout(QUEUE_WAIT, self.turns.acquire())
                .await
                .map_err(|_| PreviewError::Busy)?
                .map_err(|_| PreviewError::Busy)?;
        }
        let _turn = turn;
        let _making = self.making(&key);
        let made = self.extract(&key, init, segment).await;
        // The next spare starts now that this decode is done (not during it, on a core it needs).
        self.warm_up();
        let jpeg = made?;
        self.insert(key, jpeg.clone());
        Ok(Thumb {
            jpeg,
            cached: false,
        })
    }

    /// As [`Thumbnails::get`], for work made ahead of any request: only while no request is
    /// decoding (else [`PreviewError::Busy`] at once, not a wait), with a turn taken so requests
    /// that come meanwhile use the other, and in an ffmpeg of its own at a lower CPU priority
    /// (`nice -n 10`), so the spares stay for requests and a request's decode wins the cores.
    pub async fn get_if_free(
        &self,
        key: ThumbKey,
        init: &Path,
        segment: &Path,
    ) -> Result<Thumb, PreviewError> {
        if let Some(jpeg) = self.lookup(&key) {
            return Ok(Thumb { jpeg, cached: true });
        }
        if self.turns.available_permits() < CONCURRENT || self.being_made(&key).is_some() {
            return Err(PreviewError::Busy);
        }
        let _turn = self.turns.try_acquire().map_err(|_| PreviewError::Busy)?;
        let _making = self.making(&key);
        let (input, index) = read_input(init, segment, key.index).await?;
        let args = extract_args(index, key.width);
        let jpeg =
            run_ffmpeg_niced(&self.ffmpeg, args, Input::Stdin(input), segment, key.index).await?;
        self.made_ahead.fetch_add(1, Ordering::Relaxed);
        self.insert(key, jpeg.clone());
        Ok(Thumb {
            jpeg,
            cached: false,
        })
    }

    /// The picture of `key` by a decoder kept running, else through a spare, else (none
    /// waiting, or it failed) a plain run.
    async fn extract(
        &self,
        key: &ThumbKey,
        init: &Path,
        segment: &Path,
    ) -> Result<Bytes, PreviewError> {
        let start_one = match self.extract_warm_decoder(key, init, segment).await {
            Ok(Ok(jpeg)) => return Ok(jpeg),
            Ok(Err(init)) => init,
            Err(e) => {
                tracing::debug!(error = %e, "a decoder kept running failed; one-shot");
                None
            }
        };
        let made = self.extract_one_shot(key, init, segment).await;
        // A decoder for the next pictures of this init section and width, started now that this
        // one is made (not during its decode, on a core it needs).
        if let Some(init) = start_one {
            self.warm.start(init, key.width);
        }
        made
    }

    /// The picture of `key` through a spare, else (none waiting, or it failed) a plain run.
    async fn extract_one_shot(
        &self,
        key: &ThumbKey,
        init: &Path,
        segment: &Path,
    ) -> Result<Bytes, PreviewError> {
        let Some(spare) = self.take_spare() else {
            return extract(&self.ffmpeg, init, segment, key.index, key.width).await;
        };
        match extract_warm(spare, &self.ffmpeg, init, segment, key.index, key.width).await {
            Ok(jpeg) => return Ok(jpeg),
            Err(e) => tracing::debug!(error = %e, "the spare ffmpeg failed; running one"),
        }
        let jpeg = extract(&self.ffmpeg, init, segment, key.index, key.width).await?;
        if !self.no_spares.swap(true, Ordering::Relaxed) {
            tracing::info!(
                "thumbnails: ffmpeg started ahead failed where a plain run worked; not used any more"
            );
            if let Ok(mut pool) = self.spares.lock() {
                pool.clear();
            }
        }
        Ok(jpeg)
    }

    /// A wait for `key` when it is being made now.
    fn being_made(&self, key: &ThumbKey) -> Option<tokio::sync::watch::Receiver<()>> {
        self.making.lock().ok()?.get(key).cloned()
    }

    /// Marks `key` as being made until the returned guard is dropped.
    fn making(&self, key: &ThumbKey) -> Making<'_> {
        let (done, waiting) = tokio::sync::watch::channel(());
        if let Ok(mut m) = self.making.lock() {
            m.insert(key.clone(), waiting.clone());
        }
        Making {
            owner: self,
            key: key.clone(),
            mine: waiting,
            _done: done,
        }
    }

    fn lookup(&self, key: &ThumbKey) -> Option<Bytes> {
        self.cache.lock().ok()?.lookup(key)
    }

    fn insert(&self, key: ThumbKey, jpeg: Bytes) {
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, jpeg, self.max_entries, self.max_bytes);
        }
    }
}

/// The ffmpeg arguments of one timeline tile: only keyframes are decoded (`-skip_frame nokey`
/// on the input's decoder) and the first one is kept, so a tile costs one frame's decode
/// whatever the segment's length.
pub fn tile_args(init: Option<&Path>, segment: &Path) -> Vec<String> {
    tiles_args(init, &[segment], true)
}

/// The arguments of tiles of `segments` (one epoch, in order) in one run: a picture per keyframe.
/// With `first_only`, only the first picture.
pub fn tiles_args(init: Option<&Path>, segments: &[&Path], first_only: bool) -> Vec<String> {
    let mut parts: Vec<String> = init.iter().map(|p| p.display().to_string()).collect();
    parts.extend(segments.iter().map(|p| p.display().to_string()));
    let input = if parts.len() == 1 {
        parts.remove(0)
    } else {
        format!("concat:{}", parts.join("|"))
    };
    let (w, h) = (TILE_WIDTH, TILE_HEIGHT);
    let filter = format!(
        "{},scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2",
        display_scale(None)
    );
    [
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-threads",
        "1",
        "-skip_frame",
        "nokey",
        "-i",
        &input,
        "-an",
        "-vf",
        &filter,
        "-frames:v",
        if first_only { "1" } else { "1000000" },
        "-fps_mode",
        "passthrough",
        "-c:v",
        "mjpeg",
        "-q:v",
        "5",
        "-f",
        "image2pipe",
        "pipe:1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// The filter of one extraction: `n` counts decoded frames in presentation order, the frame
/// table's index.
fn extract_filter(index: usize, width: Option<u32>) -> String {
    format!("select=eq(n\\,{index}),{}", display_scale(width))
}

/// The scaling of every picture made from the stream's frames: to the video's display aspect
/// with square pixels, `width` wide (else the stored height, widened by the sample aspect ratio),
/// even sizes. A JPEG's JFIF header can carry a pixel aspect ratio, but browsers draw its pixels
/// square, so an anamorphic source (e.g. 640x360 at SAR 4:3, shown 480x202 at 480 wide) must be
/// resampled here or it looks squashed. ffmpeg's `sar` is 1 when the stream does not say; square
/// pixels at their own size pass through the scaler untouched. The live preview branch scales
/// the same way (`hlsmark_sources::ffmpeg`).
pub(crate) fn display_scale(width: Option<u32>) -> String {
    match width {
        Some(w) => format!("scale={w}:'trunc({w}*ih/(iw*sar)/2)*2',setsar=1"),
        None => "scale='trunc(iw*sar/2)*2':ih,setsar=1".to_owned(),
    }
}

/// The ffmpeg arguments of one extraction from its input on stdin (kept in one place; see the
/// test): frame `index` of the input ([`decoder_input`]).
pub fn extract_args(index: usize, width: Option<u32>) -> Vec<String> {
    let filter = extract_filter(index, width);
    jpeg_command(&["-f", "mp4", "-i", "pipe:0", "-an", "-vf", &filter])
}

/// What ffmpeg is fed for frame `index` of `init` + `segment`, and the frame's place in it: the
/// fewest samples that decode the frame ([`hlsmark_media::clip::picture`]: from the nearest
/// keyframe, without the pictures nothing refers to, nothing after it), else (a segment that
/// cannot be read so) the init section and the whole segment.
pub fn decoder_input(
    init: &Path,
    segment: &Path,
    index: usize,
) -> std::io::Result<(Vec<u8>, usize)> {
    use std::io::Read as _;
    let init_bytes = Bytes::from(std::fs::read(init)?);
    let mut seg = Vec::new();
    std::fs::File::open(segment)?.read_to_end(&mut seg)?;
    let seg = Bytes::from(seg);
    let made = hlsmark_media::clip::ClipInit::parse(init_bytes.clone())
        .and_then(|clip| hlsmark_media::clip::picture(&clip, &seg, index));
    match made {
        Ok(p) => Ok((p.file, p.index)),
        Err(e) => {
            tracing::debug!(error = %e, segment = %segment.display(), "thumbnail: decoding the whole segment");
            Ok(([&init_bytes[..], &seg[..]].concat(), index))
        }
    }
}

/// [`decoder_input`] on the blocking pool.
async fn read_input(
    init: &Path,
    segment: &Path,
    index: usize,
) -> Result<(Vec<u8>, usize), PreviewError> {
    let (init_path, segment_path) = (init.to_owned(), segment.to_owned());
    read_blocking(segment, move || {
        decoder_input(&init_path, &segment_path, index)
    })
    .await
}

/// `read` (the reads of `segment`'s picture) on the blocking pool; its failure is a
/// [`PreviewError::Read`] of `segment`.
async fn read_blocking<T: Send + 'static>(
    segment: &Path,
    read: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, PreviewError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|source| PreviewError::Read {
            path: segment.to_owned(),
            source,
        })
}

/// One ffmpeg that decodes one frame of its input to a JPEG on stdout: the same quiet, two-thread
/// start and the same output for a cold extraction and a spare, around `input_and_filter`.
fn jpeg_command(input_and_filter: &[&str]) -> Vec<String> {
    // `-nofind_stream_info`: the input's first frames are not decoded a first time to probe
    // what the init section already says (the filters are set up from the first decoded
    // frame); the same JPEG, ~10-25 ms of CPU less.
    // `-threads 2` (the decoder's: it comes before `-i`): a thumbnail decodes every frame from
    // the keyframe, and H.264 frame threading on two threads cuts that by a third (a 720p
    // 4 Mbit/s camera, 60 frames: 386 -> 250 ms on the 2-core VM; 16 frames: 141 -> 103 ms).
    // More threads add start-up and a frame of delay each for little more.
    const START: [&str; 7] = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-threads",
        "2",
        "-nofind_stream_info",
    ];
    const OUTPUT: [&str; 11] = [
        "-frames:v",
        "1",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "mjpeg",
        "-q:v",
        "3",
        "-f",
        "image2pipe",
        "pipe:1",
    ];
    START
        .iter()
        .chain(input_and_filter)
        .chain(&OUTPUT)
        .map(|s| (*s).to_owned())
        .collect()
}

/// Decodes frame `index` of `init` + `segment` into a JPEG.
pub async fn extract(
    ffmpeg: &Path,
    init: &Path,
    segment: &Path,
    index: usize,
    width: Option<u32>,
) -> Result<Bytes, PreviewError> {
    let (input, at) = read_input(init, segment, index).await?;
    run_ffmpeg(
        ffmpeg,
        extract_args(at, width),
        Input::Stdin(input),
        segment,
        index,
    )
    .await
}

/// The arguments of a spare: the input from stdin, the filter from `script` (ffmpeg reads it when
/// it opens its output, after the input's first bytes arrived), the output as [`extract_args`].
pub fn spare_args(script: &Path) -> Vec<String> {
    let script = script.display().to_string();
    jpeg_command(&[
        "-f",
        "mp4",
        "-i",
        "pipe:0",
        "-an",
        "-filter_script:v",
        &script,
    ])
}

/// An ffmpeg started ahead, waiting for its input (see the module's notes): a plain process, so
/// any runtime may use it; killed and reaped when dropped unused.
#[derive(Debug)]
struct Spare {
    child: std::process::Child,
    script: ScriptFile,
}

impl Drop for Spare {
    fn drop(&mut self) {
        // Either already exited and reaped (`wait` returns the kept status at once) or waiting on
        // its stdin, which the kill ends at once.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The spare's filter file, removed with it.
#[derive(Debug)]
struct ScriptFile(PathBuf);

impl Drop for ScriptFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn start_spare(ffmpeg: &Path) -> Option<Spare> {
    static N: AtomicU64 = AtomicU64::new(0);
    let script = ScriptFile(std::env::temp_dir().join(format!(
        "hlsmark-thumb-{}-{}.filter",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )));
    let child = std::process::Command::new(ffmpeg)
        .args(spare_args(&script.0))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| tracing::debug!(error = %e, "starting a spare ffmpeg"))
        .ok()?;
    Some(Spare { child, script })
}

/// Frame `index` of `init` + `segment` through a spare.
///
/// The answer is ready when ffmpeg closes its output with a whole JPEG in it: ffmpeg's own
/// teardown (freeing its codecs and filters, unmapping its libraries) is not waited for. The
/// spare is then killed and reaped off the request's path. Only without a picture are its exit
/// status and error output waited for, to say why.
async fn extract_warm(
    mut spare: Spare,
    ffmpeg: &Path,
    init: &Path,
    segment: &Path,
    index: usize,
    width: Option<u32>,
) -> Result<Bytes, PreviewError> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let io = |source| PreviewError::Spawn {
        path: ffmpeg.to_owned(),
        source,
    };
    let missing = || io(std::io::Error::other("a spare ffmpeg without its pipes"));
    // The reads and the filter in one trip to the blocking pool: on a busy machine every hop
    // between threads is a wake-up that waits for a core.
    let script = spare.script.0.clone();
    let (init_path, segment_path) = (init.to_owned(), segment.to_owned());
    let data = read_blocking(segment, move || {
        let (data, at) = decoder_input(&init_path, &segment_path, index)?;
        std::fs::write(&script, extract_filter(at, width))?;
        Ok(data)
    })
    .await?;
    // The pipes join this request's runtime; the process stays a std one (reaped below).
    let stdin = spare.child.stdin.take().ok_or_else(missing)?;
    let mut stdin = tokio::process::ChildStdin::from_std(stdin).map_err(io)?;
    let stdout = spare.child.stdout.take().ok_or_else(missing)?;
    let mut stdout = tokio::process::ChildStdout::from_std(stdout).map_err(io)?;
    let stderr = spare.child.stderr.take().ok_or_else(missing)?;
    let mut stderr = tokio::process::ChildStderr::from_std(stderr).map_err(io)?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    // Until ffmpeg closes its output (its error output is drained meanwhile, so it never blocks
    // on it).
    let read = async {
        let mut err_open = true;
        loop {
            tokio::select! {
                n = stdout.read_buf(&mut out) => if n? == 0 { return std::io::Result::Ok(()) },
                n = stderr.read_buf(&mut err), if err_open => err_open = n? > 0,
            }
        }
    };
    // ffmpeg stops reading once it has its frame: a broken pipe is the normal end, and input
    // still unwritten when the output closed is not needed.
    let feed = async move {
        let _ = stdin.write_all(&data).await;
    };
    let read = tokio::time::timeout(EXTRACT_TIMEOUT, async {
        tokio::pin!(read);
        tokio::select! {
            r = &mut read => r,
            () = feed => read.await,
        }
    })
    .await
    .map_err(|_| PreviewError::Ffmpeg(format!("no picture within {EXTRACT_TIMEOUT:?}")))?;
    read.map_err(io)?;
    if crate::jpeg::dimensions(&out).is_some() {
        // Killed (it is tearing down anyway) and reaped by a blocking-pool thread.
        tokio::task::spawn_blocking(move || drop(spare));
        return Ok(Bytes::from(out));
    }
    // No picture: its status and last error line say why.
    let _ = tokio::time::timeout(EXIT_WAIT, stderr.read_to_end(&mut err)).await;
    let status = tokio::time::timeout(EXIT_WAIT, async {
        loop {
            match spare.child.try_wait() {
                Ok(None) => tokio::time::sleep(Duration::from_millis(1)).await,
                done => return done,
            }
        }
    })
    .await
    .map_err(|_| PreviewError::Ffmpeg(format!("ffmpeg did not exit within {EXIT_WAIT:?}")))?
    .map_err(io)?
    .ok_or_else(missing)?;
    let out = std::process::Output {
        status,
        stdout: out,
        stderr: err,
    };
    checked(out, index, segment)
}

/// [`run_ffmpeg`] at a lower CPU priority (through `nice -n 10`; directly where there is no
/// `nice`).
async fn run_ffmpeg_niced(
    ffmpeg: &Path,
    args: Vec<String>,
    input: Input<'_>,
    segment: &Path,
    index: usize,
) -> Result<Bytes, PreviewError> {
    let mut niced = vec![
        "-n".to_owned(),
        "10".to_owned(),
        ffmpeg.display().to_string(),
    ];
    niced.extend(args.iter().cloned());
    let again = input.clone();
    match run_ffmpeg(Path::new("nice"), niced, input, segment, index).await {
        Err(PreviewError::Spawn { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            run_ffmpeg(ffmpeg, args, again, segment, index).await
        }
        made => made,
    }
}

/// What one ffmpeg run reads.
#[derive(Debug, Clone)]
enum Input<'a> {
    /// The init section (if any) and `segment`, named in the arguments (ffmpeg's `concat:`).
    Concat(Option<&'a Path>),
    /// These bytes on its stdin.
    Stdin(Vec<u8>),
}

/// Runs one picture's ffmpeg and checks that a JPEG came out.
async fn run_ffmpeg(
    ffmpeg: &Path,
    args: Vec<String>,
    input: Input<'_>,
    segment: &Path,
    index: usize,
) -> Result<Bytes, PreviewError> {
    use tokio::io::AsyncWriteExt as _;
    if let Input::Concat(init) = input {
        for p in init.into_iter().chain([segment]) {
            if p.to_string_lossy().contains('|') {
                return Err(PreviewError::Ffmpeg(format!(
                    "{} has a '|' in its path (ffmpeg's concat: protocol cannot read it)",
                    p.display()
                )));
            }
        }
    }
    let data = match input {
        Input::Stdin(data) => Some(data),
        Input::Concat(_) => None,
    };
    let mut child = tokio::process::Command::new(ffmpeg)
        .args(args)
        .stdin(if data.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| PreviewError::Spawn {
            path: ffmpeg.to_owned(),
            source,
        })?;
    // ffmpeg stops reading once it has its frame: a broken pipe is the normal end.
    let stdin = child.stdin.take();
    let feed = async move {
        if let (Some(mut stdin), Some(data)) = (stdin, data) {
            let _ = stdin.write_all(&data).await;
        }
    };
    let out = tokio::time::timeout(EXTRACT_TIMEOUT, async {
        let ((), out) = tokio::join!(feed, child.wait_with_output());
        out
    })
    .await
    .map_err(|_| PreviewError::Ffmpeg(format!("no picture within {EXTRACT_TIMEOUT:?}")))?
    .map_err(|source| PreviewError::Spawn {
        path: ffmpeg.to_owned(),
        source,
    })?;
    checked(out, index, segment)
}

/// The JPEG an ffmpeg run wrote, or why there is none.
fn checked(out: std::process::Output, index: usize, segment: &Path) -> Result<Bytes, PreviewError> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or("").trim();
    if !out.status.success() {
        return Err(PreviewError::Ffmpeg(format!("{}: {last}", out.status)));
    }
    if crate::jpeg::dimensions(&out.stdout).is_none() {
        return Err(PreviewError::NoFrame {
            index,
            segment: segment.to_owned(),
        });
    }
    Ok(Bytes::from(out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_select_the_frame_by_its_presentation_index_and_scale() {
        let a = extract_args(12, Some(320));
        let at = |f: &str| a[a.iter().position(|x| x == f).unwrap() + 1].clone();
        assert_eq!(at("-i"), "pipe:0");
        assert_eq!(at("-f"), "mp4", "the input's format, before -i");
        assert_eq!(
            at("-vf"),
            "select=eq(n\\,12),scale=320:'trunc(320*ih/(iw*sar)/2)*2',setsar=1"
        );
        assert_eq!(at("-frames:v"), "1");
        let b = extract_args(0, None);
        assert_eq!(
            b[b.iter().position(|x| x == "-vf").unwrap() + 1],
            "select=eq(n\\,0),scale='trunc(iw*sar/2)*2':ih,setsar=1"
        );
    }

    /// One second of 320x180 testsrc (libx264's defaults: B-frames, some never referred to)
    /// as an init section and one segment of parts, as the ingest stores them, in a temp dir
    /// kept by the caller.
    fn one_second_clip() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v.mp4");
        let made = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi"])
            .args(["-i", "testsrc=size=320x180:rate=30", "-frames:v", "30"])
            .args(["-c:v", "libx264", "-g", "30", "-f", "mp4"])
            .args(["-movflags", "frag_keyframe+empty_moov+default_base_moof"])
            .args(["-frag_duration", "200000"])
            .arg(&file)
            .status()
            .unwrap();
        assert!(made.success());
        let all = std::fs::read(&file).unwrap();
        let (_, at, len) = hlsmark_media::boxes::children(&all)
            .find(|(h, _, _)| h.kind.to_string() == "moov")
            .unwrap();
        let (init, segment) = (dir.path().join("init.mp4"), dir.path().join("s.m4s"));
        std::fs::write(&init, &all[..at + len]).unwrap();
        std::fs::write(&segment, &all[at + len..]).unwrap();
        (dir, init, segment)
    }

    /// The picture from the fewest samples is the picture from the whole segment, and fewer
    /// samples are decoded for it.
    #[test]
    fn a_frame_decoded_from_its_samples_alone_is_the_frame_of_the_whole_segment() {
        let (_dir, init, segment) = one_second_clip();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let whole = [
            std::fs::read(&init).unwrap(),
            std::fs::read(&segment).unwrap(),
        ]
        .concat();
        let mut fewer = 0;
        for index in [0, 1, 7, 16, 28, 29] {
            let (input, at) = decoder_input(&init, &segment, index).unwrap();
            fewer += usize::from(input.len() < whole.len() - 1_000);
            rt.block_on(async {
                let ffmpeg = Path::new("ffmpeg");
                let plain = run_ffmpeg(
                    ffmpeg,
                    extract_args(index, None),
                    Input::Stdin(whole.clone()),
                    &segment,
                    index,
                )
                .await
                .unwrap();
                let trimmed = run_ffmpeg(
                    ffmpeg,
                    extract_args(at, None),
                    Input::Stdin(input),
                    &segment,
                    index,
                )
                .await
                .unwrap();
                assert_eq!(plain, trimmed, "frame {index} (input index {at})");
            });
        }
        assert!(fewer >= 5, "{fewer}");
    }

    #[test]
    fn a_picture_being_made_is_waited_for_not_made_twice_and_work_ahead_yields() {
        let (_dir, init, segment) = one_second_clip();
        let t = Thumbnails::new("ffmpeg".into(), 16, 1 << 20);
        let key = |index| ThumbKey {
            stream: "s".into(),
            epoch: 0,
            seq: 0,
            index,
            width: Some(160),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Two requests for one frame at once (two turns free): one decode, the other waits
            // for its picture.
            let (a, b) = tokio::join!(
                t.get(key(20), &init, &segment),
                t.get(key(20), &init, &segment)
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(a.jpeg, b.jpeg);
            assert_eq!(
                [a.cached, b.cached].iter().filter(|c| !**c).count(),
                1,
                "made once"
            );
            assert_eq!(t.made_ahead(), 0);
            // Work ahead while a request decodes: refused at once, nothing made.
            let (req, ahead) = tokio::join!(t.get(key(25), &init, &segment), async {
                tokio::task::yield_now().await;
                t.get_if_free(key(26), &init, &segment).await
            });
            assert!(!req.unwrap().cached);
            assert!(matches!(ahead, Err(PreviewError::Busy)), "{ahead:?}");
            // With no request decoding it is made (and a request then finds it cached); a
            // request for a picture being made ahead waits for it.
            let (ahead, req) = tokio::join!(t.get_if_free(key(27), &init, &segment), async {
                tokio::task::yield_now().await;
                t.get(key(27), &init, &segment).await
            });
            assert!(!ahead.unwrap().cached);
            assert!(req.unwrap().cached, "waited for the picture made ahead");
            assert_eq!(t.made_ahead(), 1);
            assert!(t.get(key(27), &init, &segment).await.unwrap().cached);
        });
    }

    /// A real ffmpeg: the spare's picture is the plain run's, and the cache API uses spares
    /// (started ahead outside any runtime, used from another) and tops the pool up after.
    #[test]
    fn a_spare_ffmpeg_gives_the_picture_of_a_plain_run() {
        let (_dir, init, segment) = one_second_clip();
        let ffmpeg = Path::new("ffmpeg");
        let t = Thumbnails::new("ffmpeg".into(), 16, 1 << 20);
        t.warm_up();
        assert_eq!(t.spares_waiting(), SPARES, "started without a runtime");
        let rt = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        rt().block_on(async {
            let cold = extract(ffmpeg, &init, &segment, 17, Some(160))
                .await
                .unwrap();
            let spare = start_spare(ffmpeg).unwrap();
            let script = spare.script.0.clone();
            let warm = extract_warm(spare, ffmpeg, &init, &segment, 17, Some(160))
                .await
                .unwrap();
            assert_eq!(crate::jpeg::dimensions(&warm), Some((160, 90)));
            assert_eq!(cold, warm, "the same frame, encoded alike");
            // The spare is reaped off the request's path: its filter file goes with it, soon.
            let t0 = std::time::Instant::now();
            while script.exists() && t0.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(!script.exists(), "the filter file goes with its spare");
            let other = extract(ffmpeg, &init, &segment, 18, Some(160))
                .await
                .unwrap();
            assert_ne!(cold, other, "another frame is another picture");
            let key = |index| ThumbKey {
                stream: "s".into(),
                epoch: 0,
                seq: 0,
                index,
                width: Some(160),
            };
            assert_eq!(t.get(key(17), &init, &segment).await.unwrap().jpeg, cold);
            assert_eq!(t.spares_waiting(), SPARES, "topped up after the picture");
            // Another runtime (another actix worker) takes spares started in the first.
            std::thread::scope(|s| {
                s.spawn(|| {
                    rt().block_on(async {
                        assert_eq!(t.get(key(18), &init, &segment).await.unwrap().jpeg, other);
                    });
                });
            });
        });
        assert!(!t.no_spares.load(Ordering::Relaxed), "the spares worked");
        assert_eq!(t.spares_waiting(), SPARES);
        let pids: Vec<u32> = t
            .spares
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.child.id())
            .collect();
        drop(t);
        for pid in pids {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "spare {pid} killed and reaped with its pool"
            );
        }
    }

    /// A decoder kept running (started by the first picture of an init section and width, made
    /// the one-shot way) gives the pictures of plain runs, byte for byte, in any order, B-frames
    /// and all; another width has its own; they are stopped with their pool.
    #[test]
    fn a_decoder_kept_running_gives_the_pictures_of_plain_runs() {
        let (_dir, init, segment) = one_second_clip();
        let ffmpeg = Path::new("ffmpeg");
        let t = Thumbnails::new("ffmpeg".into(), 64, 8 << 20);
        let key = |index, width| ThumbKey {
            stream: "s".into(),
            epoch: 0,
            seq: 0,
            index,
            width,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let wait_for = |n: usize| {
                let t = &t;
                async move {
                    let t0 = std::time::Instant::now();
                    while t.warm_waiting() < n && t0.elapsed() < Duration::from_secs(20) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    assert_eq!(t.warm_waiting(), n, "a decoder started");
                }
            };
            let plain = |index, width| extract(ffmpeg, &init, &segment, index, width);
            let first = t.get(key(5, Some(160)), &init, &segment).await.unwrap();
            assert_eq!(first.jpeg, plain(5, Some(160)).await.unwrap());
            assert_eq!(t.warm_made(), 0, "the first the one-shot way");
            wait_for(1).await;
            for index in [29, 0, 13, 14, 28, 1, 7, 0] {
                let key = key(index, Some(160));
                t.cache.lock().unwrap().remove(&key);
                let got = t.get(key, &init, &segment).await.unwrap();
                assert!(!got.cached);
                assert_eq!(
                    got.jpeg,
                    plain(index, Some(160)).await.unwrap(),
                    "frame {index}"
                );
            }
            assert_eq!(t.warm_made(), 8, "all by the decoder kept running");
            // A picture it cannot be fed (no such frame) leaves the decoder as it was.
            assert!(t.get(key(99, Some(160)), &init, &segment).await.is_err());
            assert_eq!(t.warm_waiting(), 1);
            let key9 = key(9, Some(160));
            assert_eq!(
                t.get(key9, &init, &segment).await.unwrap().jpeg,
                plain(9, Some(160)).await.unwrap()
            );
            assert_eq!(t.warm_made(), 9);
            // The video's own size: a decoder of its own.
            let own = t.get(key(3, None), &init, &segment).await.unwrap();
            assert_eq!(crate::jpeg::dimensions(&own.jpeg), Some((320, 180)));
            wait_for(2).await;
            let got = t.get(key(4, None), &init, &segment).await.unwrap();
            assert_eq!(got.jpeg, plain(4, None).await.unwrap());
            assert_eq!(t.warm_made(), 10);
        });
        let pids = t.warm.pids();
        assert_eq!(pids.len(), 2);
        drop(t);
        for pid in pids {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "decoder {pid} killed and reaped with its pool"
            );
        }
    }

    #[test]
    fn tile_args_decode_only_keyframes_and_letterbox() {
        let a = tile_args(Some(Path::new("/d/i.mp4")), Path::new("/d/s.m4s"));
        let at = |f: &str| a[a.iter().position(|x| x == f).unwrap() + 1].clone();
        let pos = |f: &str| a.iter().position(|x| x == f).unwrap();
        assert_eq!(at("-skip_frame"), "nokey");
        assert!(
            pos("-skip_frame") < pos("-i"),
            "a decoder option of the input"
        );
        assert_eq!(at("-frames:v"), "1");
        assert!(at("-vf").starts_with(
            "scale='trunc(iw*sar/2)*2':ih,setsar=1,\
                 scale=160:90:force_original_aspect_ratio=decrease,pad=160:90"
        ));
    }

    /// A real ffmpeg: five one-second fragments of one file, one keyframe each, give five tiles
    /// in one run, each the one a single run gives.
    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_gives_one_tile_per_segment_as_single_runs_do() {
        let dir = tempfile::tempdir().unwrap();
        let made = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi"])
            .args(["-i", "testsrc=size=320x180:rate=25", "-frames:v", "125"])
            .args(["-c:v", "libx264", "-g", "25", "-f", "hls", "-hls_time", "1"])
            .args(["-hls_segment_type", "fmp4", "-hls_list_size", "0"])
            .arg(dir.path().join("p.m3u8"))
            .status()
            .unwrap();
        assert!(made.success());
        let init = dir.path().join("init.mp4");
        let segs: Vec<(SeqNo, PathBuf)> = (0..5)
            .map(|i| (i, dir.path().join(format!("p{i}.m4s"))))
            .collect();
        let t = Thumbnails::new("ffmpeg".into(), 16, 1 << 20);
        assert_eq!(t.tiles_batch("s", 0, Some(&init), &segs).await.unwrap(), 5);
        assert_eq!(t.tiles_cached().0, 5);
        let single = Thumbnails::new("ffmpeg".into(), 16, 1 << 20);
        for (seq, path) in &segs {
            let key = TileKey {
                stream: "s".into(),
                epoch: 0,
                seq: *seq,
            };
            let one = single.tile(key.clone(), Some(&init), path).await.unwrap();
            let batch = t.tile(key, Some(&init), path).await.unwrap();
            assert!(batch.cached, "made by the batch");
            assert_eq!(
                crate::jpeg::dimensions(&batch.jpeg),
                crate::jpeg::dimensions(&one.jpeg)
            );
            assert_eq!(batch.jpeg, one.jpeg, "segment {seq}: the same picture");
        }
        let merged = dir.path().join("two.m4s");
        let mut bytes = std::fs::read(&segs[0].1).unwrap();
        bytes.extend(std::fs::read(&segs[1].1).unwrap());
        std::fs::write(&merged, bytes).unwrap();
        let fresh = Thumbnails::new("ffmpeg".into(), 16, 1 << 20);
        assert_eq!(
            fresh
                .tiles_batch("s", 0, Some(&init), &[(0, merged)])
                .await
                .unwrap(),
            0,
            "two keyframes in one segment: not guessed"
        );
    }

    #[test]
    fn tiles_are_forgotten_with_their_segments_and_tilers_claimed_once() {
        let t = Thumbnails::new("ffmpeg".into(), 2, 1000);
        let k = |stream: &str, seq| TileKey {
            stream: stream.into(),
            epoch: 0,
            seq,
        };
        for seq in 1..=5 {
            t.tiles
                .lock()
                .unwrap()
                .insert(k("a", seq), Bytes::from(vec![0; 10]), 100, 1000);
        }
        t.tiles
            .lock()
            .unwrap()
            .insert(k("b", 1), Bytes::from(vec![0; 10]), 100, 1000);
        t.forget_tiles_before("a", 4);
        assert!(!t.has_tile(&k("a", 3)) && t.has_tile(&k("a", 4)) && t.has_tile(&k("b", 1)));
        assert_eq!(t.tiles_cached(), (3, 30));
        assert!(t.claim_tiler("a"));
        assert!(!t.claim_tiler("a"), "one tiler per stream");
        t.release_tiler("a");
        assert!(t.claim_tiler("a"));
    }

    #[test]
    fn the_cache_keeps_the_recently_used_within_its_bounds() {
        let t = Thumbnails::new("ffmpeg".into(), 2, 1000);
        let k = |seq| ThumbKey {
            stream: "s".into(),
            epoch: 0,
            seq,
            index: 0,
            width: None,
        };
        t.insert(k(1), Bytes::from(vec![0; 100]));
        t.insert(k(2), Bytes::from(vec![0; 100]));
        assert!(t.lookup(&k(1)).is_some(), "1 is now the most recent");
        t.insert(k(3), Bytes::from(vec![0; 100]));
        assert!(t.lookup(&k(2)).is_none(), "2 was the least recently used");
        assert_eq!(t.cached(), (2, 200));
        t.insert(k(4), Bytes::from(vec![0; 950]));
        assert_eq!(t.cached(), (1, 950), "bounded by bytes too");
        t.insert(k(5), Bytes::from(vec![0; 5000]));
        assert!(
            t.lookup(&k(5)).is_none(),
            "larger than the whole cache: not kept"
        );
    }
}
