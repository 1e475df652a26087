//! Segment and init files (and, with LL-HLS, parts): strict names, content types, validators,
//! conditional requests and byte ranges, and the one function that answers them
//! ([`media_answer`]). Recently served files are answered from memory ([`MediaCache`]); a file
//! too big for it is streamed from disk in chunks.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue, HttpDate};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _};
use bytes::Bytes;
use hlsmark_mediastore::SharedMedia;
use hlsmark_store::StreamName;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Segment and init URLs are never reused: epoch and sequence are in the file name, and the
/// playlist adds the epoch's wall-clock start as `?v=<hex>` (ignored here), because file names
/// start over at `e0-00000000.m4s` when a stream's data is wiped.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Where a stream's media file lives. `file` must have passed [`classify`] and `stream` is a
/// valid stream name: neither can leave the stream directory.
pub fn media_path(data_dir: &Path, stream: &StreamName, file: &str) -> PathBuf {
    data_dir.join("hls").join(stream.as_str()).join(file)
}

/// A path ffmpeg can read for a stream's media file (thumbnails, tiles, preview frames): the
/// file itself under `<data_dir>/hls`, or with a remote media store a copy fetched (through
/// the cache) into this process's spool directory in the system temp dir. A file that cannot be
/// had gives a path that does not exist, so callers keep their usual "gone" answer. The spool
/// keeps at most [`SPOOL_FILES`] files (oldest removed first).
pub async fn readable_path(
    cache: &MediaCache,
    data_dir: &Path,
    stream: &StreamName,
    file: &str,
) -> PathBuf {
    let Some(remote) = &cache.remote else {
        return media_path(data_dir, stream, file);
    };
    let dir = spool_dir(std::process::id()).join(stream.as_str());
    let path = dir.join(file);
    if classify(file).is_none() || path.is_file() {
        return path;
    }
    let Ok(media) = remote.get(stream, file).await else {
        return path;
    };
    let MediaBody::Memory(bytes) = media.body else {
        return path;
    };
    let (d, p) = (dir.clone(), path.clone());
    let written = actix_web::web::block(move || {
        std::fs::create_dir_all(&d)?;
        hlsmark_mediastore::write_whole(&p, &[bytes])?;
        prune_spool(d.parent().unwrap_or(&d));
        Ok::<_, io::Error>(())
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::warn!(file, "could not spool a media file for ffmpeg");
    }
    path
}

/// The spool directory of process `pid` in the system temp dir.
fn spool_dir(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("hlsmark-spool-{pid}"))
}

/// Removes the spool directories of processes that are gone (a `kill -9` leaves its spool) and
/// this process's own (a reused pid must not serve another run's copies). Called when the API
/// starts; each spool holds up to [`SPOOL_FILES`] segment copies.
pub fn sweep_spools() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("hlsmark-spool-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Removes this process's spool directory (at shutdown).
pub fn remove_own_spool() {
    let _ = std::fs::remove_dir_all(spool_dir(std::process::id()));
}

/// Files kept in the spool of [`readable_path`] at most.
const SPOOL_FILES: usize = 256;

/// Removes the oldest spooled files beyond [`SPOOL_FILES`].
fn prune_spool(root: &Path) {
    let mut files: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter_map(|f| Some((f.metadata().ok()?.modified().ok()?, f.path())))
        .collect();
    if files.len() <= SPOOL_FILES {
        return;
    }
    files.sort();
    for (_, p) in &files[..files.len() - SPOOL_FILES] {
        let _ = std::fs::remove_file(p);
    }
}

/// With `--media-public-url`, a playlist whose segment and init-section URIs point at
/// `<url>/<stream>/<file>` (the bucket or a CDN in front of it: players fetch the bulk of the
/// bytes there). LL-HLS parts and preload hints keep pointing at this server: a hinted part is
/// requested before it exists and this server holds that request until it is written, which an
/// object store or CDN would answer with 404. Without the flag the body is returned as it is.
pub fn public_playlist(cfg: &crate::config::ApiConfig, stream: &StreamName, body: Bytes) -> Bytes {
    let Some(base) = cfg.media_public_url.as_deref() else {
        return body;
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return body;
    };
    let prefix = format!("{}/{}/", base.trim_end_matches('/'), stream.as_str());
    let mut out = String::with_capacity(text.len() + 64 * prefix.len());
    for line in text.split_inclusive('\n') {
        if !line.starts_with('#') && !line.trim().is_empty() {
            out.push_str(&prefix);
            out.push_str(line);
        } else if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            out.push_str("#EXT-X-MAP:URI=\"");
            out.push_str(&prefix);
            out.push_str(rest);
        } else {
            out.push_str(line);
        }
    }
    Bytes::from(out)
}

/// What a valid media file name in a stream directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// `e{epoch}-{seq:08}.m4s` (fMP4 media segment).
    Fmp4Segment,
    /// `e{epoch}-{seq:08}.ts` (MPEG-TS media segment).
    TsSegment,
    /// `e{epoch}-init.mp4` (fMP4 initialization section).
    Init,
}

impl MediaKind {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Fmp4Segment => "video/iso.segment",
            Self::TsSegment => "video/mp2t",
            Self::Init => "video/mp4",
        }
    }
}

/// Classifies a file name, accepting only the names the ingest writes (their one spelling and
/// parse are in `crates/clock`: [`hlsmark_clock::Segment::file_name`], its `init_file_name` and
/// [`hlsmark_clock::Part::file_name`]) and MPEG-TS segments spelt like ours
/// (`e{epoch}-{seq:08}.ts`). Anything else (dots, slashes, encodings, other spellings of a
/// number) is refused.
pub fn classify(name: &str) -> Option<MediaKind> {
    use hlsmark_clock::{Part, Segment};
    if Segment::parse_file_name(name).is_some() || Part::parse_file_name(name).is_some() {
        return Some(MediaKind::Fmp4Segment);
    }
    if Segment::parse_init_file_name(name).is_some() {
        return Some(MediaKind::Init);
    }
    let ts = name.strip_suffix(".ts")?;
    Segment::parse_file_name(&format!("{ts}.m4s")).map(|_| MediaKind::TsSegment)
}

/// Files this size or smaller are kept in memory once served (a 720p camera makes 250 KB-4 MB
/// segments); bigger ones are streamed from disk in [`CHUNK`]-byte reads.
const MAX_CACHED_FILE: u64 = 8 << 20;
/// Bytes of file contents the cache holds at most.
const MAX_CACHED_BYTES: u64 = 64 << 20;
/// Read size of a streamed (uncached) file.
const CHUNK: u64 = 256 << 10;

/// The former name of [`MediaCache`] (`AppState::open_files`).
pub type OpenFiles = MediaCache;

/// Opens the regular file at `path` for reading without following a symlink at its end
/// (`O_NOFOLLOW`: a link answers `NotFound`), without blocking on a FIFO (`O_NONBLOCK`), and only
/// if the file it opened lies inside `root` (the directories on the way may be links, e.g. a data
/// directory on another disk, as long as the file they reach is under the root's real path).
/// Anything else is `NotFound`: a segment named `link.m4s` -> `/etc/passwd` is never served.
pub fn open_inside(root: &Path, path: &Path) -> io::Result<(File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // The name is a symlink.
            Some(code) if code == nix::errno::Errno::ELOOP as i32 => {
                io::Error::new(io::ErrorKind::NotFound, "a symlink is not served")
            }
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::ErrorKind::NotFound.into());
    }
    if !is_inside(root, &file)? {
        tracing::warn!(
            path = %path.display(),
            root = %root.display(),
            "refused a file that resolves outside the served directory"
        );
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the file lies outside the served directory",
        ));
    }
    Ok((file, meta))
}

/// Whether the open `file` lies under `root`'s real path (by the kernel's name of the open file).
fn is_inside(root: &Path, file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd as _;
    let real_root = std::fs::canonicalize(root)?;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    Ok(real.starts_with(&real_root) && real != real_root)
}

/// Recently served media files in memory: every viewer of a live stream asks for the same newest
/// segments, so each is read from disk once and then answered from one shared `Bytes`. Bounded by
/// entries and by [`MAX_CACHED_BYTES`] (least recently used go first). An entry keeps the file it
/// was read from open: a hit checks that file's link count (`fstat`, no path walk), so a segment
/// that retention deleted, or that was replaced by a rename, leaves the cache (and its memory) on
/// the next request for it, which answers 404 or the new file. The path itself is looked at again
/// once its last look is older than `fresh` (`--revalidate`, 20 ms), for file systems whose
/// deleted-but-open files keep a link (NFS), and to verify its identity (inode, length, mtime).
#[derive(Debug)]
pub struct MediaCache {
    max_entries: usize,
    fresh: Duration,
    inner: Mutex<CacheInner>,
    /// `--media s3://...`: media is read from this store instead of `<data-dir>/hls`.
    pub remote: Option<RemoteMedia>,
}

#[derive(Debug, Default)]
struct CacheInner {
    // Keyed by the path's bytes (hashing a `Path` walks its components).
    map: HashMap<OsString, Cached>,
    bytes: u64,
    /// Use counter: the entry with the smallest `used` is the least recently used.
    tick: u64,
}

#[derive(Debug)]
struct Cached {
    media: Media,
    /// The file the bytes were read from (its link count tells whether it was deleted).
    file: Arc<File>,
    identity: Identity,
    /// When the path was last seen to name this file.
    checked: Instant,
    used: u64,
}

/// One version of a media file, with what its answers need.
#[derive(Debug, Clone)]
pub struct Media {
    pub body: MediaBody,
    pub len: u64,
    pub validators: Arc<Validators>,
}

/// Where a media file's bytes come from.
#[derive(Debug, Clone)]
pub enum MediaBody {
    /// The whole file, read once and shared by every answer.
    Memory(Bytes),
    /// An open file too big for the cache, read in chunks while it is sent (an open file stays
    /// readable when retention removes its name).
    File(Arc<File>),
}

/// What tells one version of a file from another.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.modified().ok(),
        }
    }
}

/// Whether an open file still has a name (a deleted one has none; a renamed-over one neither).
fn still_linked(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    file.metadata().is_ok_and(|m| m.nlink() > 0)
}

impl MediaCache {
    /// At most `max_entries` files (and [`MAX_CACHED_BYTES`]); a path `stat`ed less than `fresh`
    /// ago is not `stat`ed again.
    pub fn new(max_entries: usize, fresh: Duration) -> Self {
        Self {
            max_entries,
            fresh,
            inner: Mutex::new(CacheInner::default()),
            remote: None,
        }
    }

    /// Reads media from `store` (a remote media store) instead of the data directory.
    pub fn with_remote(mut self, store: SharedMedia) -> Self {
        self.remote = Some(RemoteMedia::new(store));
        self
    }

    /// The regular file at `path` (under `root`, see [`open_inside`]) as it is now; `NotFound`
    /// for anything else. Reads a file that is not cached on the blocking pool (needs the actix
    /// runtime, as every handler has).
    pub async fn get(&self, root: &Path, path: &Path) -> io::Result<Media> {
        let started = Instant::now();
        if let Some((media, file, checked)) = self.hit(path) {
            if !still_linked(&file) {
                // Deleted (retention) or replaced: out of memory now, whatever `fresh` says.
                self.forget(path);
            } else if !self.fresh.is_zero()
                && started.saturating_duration_since(checked) < self.fresh
            {
                return Ok(media);
            }
        }
        let (file, meta) = match open_inside(root, path) {
            Ok(f) => f,
            Err(e) => {
                self.forget(path);
                return Err(e);
            }
        };
        let now = Identity::of(&meta);
        if let Some(m) = self.same(path, &now, started) {
            return Ok(m);
        }
        if meta.len() > MAX_CACHED_FILE {
            self.forget(path);
            // Described by the open file itself: the bytes sent are the ones these headers say.
            return Ok(Media {
                body: MediaBody::File(Arc::new(file)),
                len: meta.len(),
                validators: Arc::new(Validators::of(&meta)),
            });
        }
        let file = Arc::new(file);
        let reading = file.clone();
        let len = meta.len();
        let bytes = actix_web::web::block(move || read_whole(&reading, len))
            .await
            .map_err(io::Error::other)??;
        let media = Media {
            len: bytes.len() as u64,
            body: MediaBody::Memory(bytes),
            validators: Arc::new(Validators::of(&meta)),
        };
        self.insert(path, &media, file, now, started);
        Ok(media)
    }

    /// The cached media of `path`, its file and when the path was last looked at (marks it used).
    fn hit(&self, path: &Path) -> Option<(Media, Arc<File>, Instant)> {
        let mut inner = self.inner.lock().ok()?;
        inner.tick += 1;
        let tick = inner.tick;
        let c = inner.map.get_mut(path.as_os_str())?;
        c.used = tick;
        Some((c.media.clone(), c.file.clone(), c.checked))
    }

    /// The cached media of `path` if it is still the file with identity `now` (then the path
    /// counts as looked at, at `checked`).
    fn same(&self, path: &Path, now: &Identity, checked: Instant) -> Option<Media> {
        let mut inner = self.inner.lock().ok()?;
        let c = inner.map.get_mut(path.as_os_str())?;
        if c.identity != *now {
            return None;
        }
        c.checked = checked;
        Some(c.media.clone())
    }

    /// Drops the entry of a path that no longer names a cacheable file.
    fn forget(&self, path: &Path) {
        if let Ok(mut inner) = self.inner.lock()
            && let Some(old) = inner.map.remove(path.as_os_str())
        {
            inner.bytes -= old.media.len;
        }
    }

    fn insert(
        &self,
        path: &Path,
        media: &Media,
        file: Arc<File>,
        identity: Identity,
        checked: Instant,
    ) {
        if self.max_entries == 0 {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.tick += 1;
        let used = inner.tick;
        let entry = Cached {
            media: media.clone(),
            file,
            identity,
            checked,
            used,
        };
        if let Some(old) = inner.map.insert(path.as_os_str().to_owned(), entry) {
            inner.bytes -= old.media.len;
        }
        inner.bytes += media.len;
        while inner.map.len() > self.max_entries || inner.bytes > MAX_CACHED_BYTES {
            let Some(oldest) = inner
                .map
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(old) = inner.map.remove(&oldest) {
                inner.bytes -= old.media.len;
            }
        }
    }

    /// Files held now.
    pub fn len(&self) -> usize {
        if let Some(r) = &self.remote {
            return r.len();
        }
        self.inner.lock().map_or(0, |i| i.map.len())
    }

    /// Bytes of file contents held now.
    pub fn bytes(&self) -> u64 {
        if let Some(r) = &self.remote {
            return r.bytes();
        }
        self.inner.lock().map_or(0, |i| i.bytes)
    }
}

/// How long a remote object is answered from memory before it is fetched again: names are never
/// reused while a stream lives (epoch and sequence are in them), so this only bounds how long a
/// deleted object (retention, a wiped stream) is still served by this node.
const REMOTE_FRESH: Duration = Duration::from_secs(10);

/// Media in a remote store (`--media s3://...`): each object is fetched whole once and shared
/// from memory by every viewer (the live edge is the same few objects for all of them), least
/// recently used out first, bounded by entries and [`MAX_CACHED_BYTES`]. Concurrent requests for
/// an object not in memory wait for one fetch (a new part asked for by a thousand players is one
/// GET). Objects over [`MAX_CACHED_FILE`] are answered but not kept.
#[derive(Debug)]
pub struct RemoteMedia {
    store: SharedMedia,
    inner: Mutex<RemoteInner>,
}

#[derive(Debug, Default)]
struct RemoteInner {
    map: HashMap<String, RemoteEntry>,
    bytes: u64,
    tick: u64,
}

#[derive(Debug)]
struct RemoteEntry {
    cell: Arc<tokio::sync::OnceCell<Media>>,
    fetched: Instant,
    used: u64,
}

impl RemoteMedia {
    pub fn new(store: SharedMedia) -> Self {
        Self {
            store,
            inner: Mutex::new(RemoteInner::default()),
        }
    }

    /// The store media is read from.
    pub fn store(&self) -> &SharedMedia {
        &self.store
    }

    /// The object of `file` in `stream` (a name [`classify`] accepted); `Err(None)` when it is
    /// not there, `Err(Some(e))` when the store failed.
    pub async fn get(
        &self,
        stream: &StreamName,
        file: &str,
    ) -> Result<Media, Option<hlsmark_mediastore::MediaError>> {
        let key = hlsmark_mediastore::stream_key(stream.as_str(), file);
        let cell = {
            let mut inner = self.inner.lock().map_err(|_| None)?;
            inner.tick += 1;
            let tick = inner.tick;
            let stale = inner
                .map
                .get(&key)
                .is_some_and(|e| e.fetched.elapsed() > REMOTE_FRESH);
            if stale && let Some(old) = inner.map.remove(&key) {
                inner.bytes -= old.cell.get().map_or(0, |m| m.len);
            }
            let e = inner.map.entry(key.clone()).or_insert_with(|| RemoteEntry {
                cell: Arc::new(tokio::sync::OnceCell::new()),
                fetched: Instant::now(),
                used: tick,
            });
            e.used = tick;
            e.cell.clone()
        };
        let fresh = !cell.initialized();
        let got = cell
            .get_or_try_init(|| async {
                let o = self.store.get(&key, None).await?;
                Ok::<_, hlsmark_mediastore::MediaError>(Media {
                    len: o.bytes.len() as u64,
                    validators: Arc::new(Validators::new(o.size, o.last_modified)),
                    body: MediaBody::Memory(o.bytes),
                })
            })
            .await;
        match got {
            Ok(m) => {
                let m = m.clone();
                if fresh {
                    self.account(&key, &cell, m.len);
                }
                Ok(m)
            }
            Err(e) => {
                self.forget(&key, &cell);
                Err((!e.is_not_found()).then_some(e))
            }
        }
    }

    /// Counts a fetched object, drops one too big to keep, and evicts down to the bounds.
    fn account(&self, key: &str, cell: &Arc<tokio::sync::OnceCell<Media>>, len: u64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if !inner
            .map
            .get(key)
            .is_some_and(|e| Arc::ptr_eq(&e.cell, cell))
        {
            return;
        }
        if len > MAX_CACHED_FILE {
            inner.map.remove(key);
            return;
        }
        inner.bytes += len;
        while inner.map.len() > REMOTE_ENTRIES || inner.bytes > MAX_CACHED_BYTES {
            let Some(oldest) = inner
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(old) = inner.map.remove(&oldest) {
                inner.bytes -= old.cell.get().map_or(0, |m| m.len);
            }
        }
    }

    fn forget(&self, key: &str, cell: &Arc<tokio::sync::OnceCell<Media>>) {
        if let Ok(mut inner) = self.inner.lock()
            && inner
                .map
                .get(key)
                .is_some_and(|e| Arc::ptr_eq(&e.cell, cell))
        {
            inner.map.remove(key);
        }
    }

    fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.map.len())
    }

    fn bytes(&self) -> u64 {
        self.inner.lock().map_or(0, |i| i.bytes)
    }
}

/// Objects of a remote store kept in memory at most (a live window of 30 segments and ~25 parts
/// for a few streams).
const REMOTE_ENTRIES: usize = 256;

/// The whole of an open regular file of `len` bytes.
fn read_whole(file: &File, len: u64) -> io::Result<Bytes> {
    let bytes = read_range(file, 0, len)?;
    if file.metadata()?.len() != len {
        // Written to in place while read: not a published segment (those are renamed into place).
        return Err(io::Error::other("the file changed while it was read"));
    }
    Ok(bytes)
}

/// `len` bytes of `file` from `offset` (positional: the shared file's cursor is not used).
pub fn read_range(file: &File, offset: u64, len: u64) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt as _;
    let mut buf = vec![0; usize::try_from(len).map_err(io::Error::other)?];
    file.read_exact_at(&mut buf, offset)?;
    Ok(Bytes::from(buf))
}

/// `len` bytes of `file` from `offset` as a body stream of [`CHUNK`]-byte reads on the blocking
/// pool.
fn file_stream(
    file: Arc<File>,
    offset: u64,
    len: u64,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
    futures_util::stream::try_unfold((file, offset, len), |(file, at, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let n = left.min(CHUNK);
        let f = file.clone();
        let chunk = actix_web::web::block(move || read_range(&f, at, n))
            .await
            .map_err(io::Error::other)??;
        Ok(Some((chunk, (file, at + n, left - n))))
    })
}

/// The answer to a GET or HEAD of a media file of a stream (segment, init section; LL-HLS parts
/// belong here too): the one place such answers are built. Strict name (404 `not_found`
/// otherwise), 404 `segment_not_found` when the file is not (or no longer) there; validators,
/// 304, one range (206, or 416 past the end), immutable caching.
pub async fn media_answer(
    req: &HttpRequest,
    cache: &MediaCache,
    metrics: &Metrics,
    data_dir: &Path,
    stream: &StreamName,
    file: &str,
) -> Result<HttpResponse, ApiError> {
    let kind = classify(file).ok_or_else(|| {
        ApiError::not_found(
            "not_found",
            format!(
                "{:?} is not a segment or init file name (e<epoch>-<seq>.m4s, e<epoch>-init.mp4)",
                file.chars().take(80).collect::<String>()
            ),
        )
    })?;
    let missing = || {
        ApiError::not_found(
            "segment_not_found",
            format!("{file} is not (or no longer) available in stream {stream}"),
        )
    };
    let media = if let Some(remote) = &cache.remote {
        // `--media s3://...`: the object store, through the in-memory cache of the live edge.
        remote.get(stream, file).await.map_err(|e| match e {
            Some(e) => {
                tracing::warn!(stream = %stream, file, error = ?e, "media store read failed");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "media_store_unavailable",
                    format!("{file} of stream {stream} could not be read from the media store"),
                )
            }
            None => missing(),
        })?
    } else {
        // Both parts are validated to [A-Za-z0-9_-] and our name pattern, and the file opened
        // must lie under <data-dir>/hls (no symlink out of it is followed).
        let path = media_path(data_dir, stream, file);
        cache
            .get(&data_dir.join("hls"), &path)
            .await
            .map_err(|_| missing())?
    };
    let total = media.len;
    let decided = answer(req.headers(), &media.validators, total);
    let mut res = match decided {
        Answer::NotModified => HttpResponse::NotModified(),
        Answer::Full => HttpResponse::Ok(),
        Answer::Partial { .. } => HttpResponse::PartialContent(),
        Answer::Unsatisfiable => {
            let mut res = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("{file} has {total} bytes; the requested range starts beyond its end"),
            )
            .error_response();
            res.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{total}"))
                    .map_err(|e| ApiError::internal(e.to_string()))?,
            );
            return Ok(res);
        }
    };
    res.insert_header((header::CACHE_CONTROL, IMMUTABLE))
        .insert_header((header::ACCEPT_RANGES, "bytes"));
    for h in &media.validators.headers {
        res.insert_header(h.clone());
    }
    let (offset, len) = match decided {
        Answer::NotModified => return Ok(res.finish()),
        Answer::Partial { start, len } => {
            res.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{total}", start + len - 1),
            ));
            (start, len)
        }
        _ => (0, total),
    };
    res.content_type(kind.content_type());
    metrics.files_served.fetch_add(1, Ordering::Relaxed);
    if req.method() != Method::HEAD {
        metrics.file_bytes_served.fetch_add(len, Ordering::Relaxed);
    }
    Ok(match media.body {
        MediaBody::Memory(bytes) => {
            let start = usize::try_from(offset).map_err(|e| ApiError::internal(e.to_string()))?;
            let end =
                usize::try_from(offset + len).map_err(|e| ApiError::internal(e.to_string()))?;
            res.body(bytes.slice(start..end))
        }
        MediaBody::File(file) => res.body(SizedStream::new(
            len,
            Box::pin(file_stream(file, offset, len)),
        )),
    })
}

/// How a file request is answered (RFC 9110 validators, conditional requests and one byte range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 304: the client's copy is current.
    NotModified,
    /// 200 with the whole file.
    Full,
    /// 206 with bytes `start..start + len` of `total`.
    Partial { start: u64, len: u64 },
    /// 416: the range lies beyond the file's end.
    Unsatisfiable,
}

/// A file's validators: strong ETag from length and modification time (a published file never
/// changes, and a rewritten one gets a new mtime) and Last-Modified.
#[derive(Debug, Clone)]
pub struct Validators {
    pub etag: String,
    pub last_modified: Option<HttpDate>,
    /// `ETag` and `Last-Modified`, formatted once per open file.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Validators {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self::new(meta.len(), meta.modified().ok())
    }

    /// From a length and a modification time (a file's, or an object's in a media store).
    pub fn new(len: u64, mtime: Option<SystemTime>) -> Self {
        let nanos = mtime
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        // HTTP dates have whole seconds: compared with If-Modified-Since as sent back.
        let whole_secs = mtime
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| UNIX_EPOCH + std::time::Duration::from_secs(d.as_secs()));
        let etag = format!("\"{len:x}-{nanos:x}\"");
        let last_modified = whole_secs.map(HttpDate::from);
        let mut headers = Vec::with_capacity(2);
        if let Ok(v) = HeaderValue::from_str(&etag) {
            headers.push((header::ETAG, v));
        }
        if let Some(Ok(v)) = last_modified.map(|d| HeaderValue::from_str(&d.to_string())) {
            headers.push((header::LAST_MODIFIED, v));
        }
        Self {
            etag,
            last_modified,
            headers,
        }
    }
}

/// The answer to a GET/HEAD with these request headers for a file of `total` bytes.
pub fn answer(headers: &HeaderMap, v: &Validators, total: u64) -> Answer {
    let text = |name| {
        headers
            .get(name)
            .and_then(|h: &HeaderValue| h.to_str().ok())
    };
    // If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
    if let Some(inm) = text(header::IF_NONE_MATCH) {
        if etag_list_matches(inm, &v.etag) {
            return Answer::NotModified;
        }
    } else if let (Some(ims), Some(lm)) = (text(header::IF_MODIFIED_SINCE), v.last_modified)
        && let Ok(ims) = ims.parse::<HttpDate>()
        && SystemTime::from(lm) <= SystemTime::from(ims)
    {
        return Answer::NotModified;
    }
    let Some(range) = text(header::RANGE) else {
        return Answer::Full;
    };
    // If-Range: the range applies only to the representation the client names.
    if let Some(ir) = text(header::IF_RANGE) {
        let same = ir == v.etag
            || v.last_modified.is_some_and(|lm| {
                ir.parse::<HttpDate>()
                    .is_ok_and(|d| SystemTime::from(d) == SystemTime::from(lm))
            });
        if !same {
            return Answer::Full;
        }
    }
    parse_range(range, total)
}

/// Weak comparison of an If-None-Match list with our tag (`*` matches any).
fn etag_list_matches(list: &str, etag: &str) -> bool {
    let ours = etag.trim_start_matches("W/");
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == ours)
}

/// One `bytes=` range; anything this server does not serve (other units, several ranges,
/// malformed text) is ignored and the whole file sent, as RFC 9110 14.2 allows.
fn parse_range(value: &str, total: u64) -> Answer {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Answer::Full;
    };
    if spec.contains(',') {
        return Answer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Answer::Full;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.len() <= 19 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim().is_empty(), num(a), num(b)) {
        // bytes=-n: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || total == 0 {
                Answer::Unsatisfiable
            } else {
                let len = n.min(total);
                Answer::Partial {
                    start: total - len,
                    len,
                }
            }
        }
        (false, Some(start), end) if b.trim().is_empty() || end.is_some() => {
            if end.is_some_and(|e| e < start) {
                return Answer::Full;
            }
            if start >= total {
                return Answer::Unsatisfiable;
            }
            let last = end.map_or(total - 1, |e| e.min(total - 1));
            Answer::Partial {
                start,
                len: last - start + 1,
            }
        }
        _ => Answer::Full,
    }
}

#[cfg(test)]
mod tests {
    /// A spool of a process that is gone and this process's own are removed at start; a live
    /// process's is kept.
    #[test]
    fn spools_of_gone_processes_are_swept() {
        let dead = (3_000_000..4_000_000)
            .find(|p| !std::path::Path::new("/proc").join(p.to_string()).exists())
            .unwrap();
        let live = std::process::id();
        let sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let other = sleeper.id();
        for pid in [dead, live, other] {
            let d = super::spool_dir(pid).join("live");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("e0-00000001.m4s"), b"x").unwrap();
        }
        super::sweep_spools();
        assert!(!super::spool_dir(dead).exists(), "a gone process's spool");
        assert!(
            !super::spool_dir(live).exists(),
            "our own, from a reused pid"
        );
        assert!(super::spool_dir(other).exists(), "a live process's spool");
        let _ = std::fs::remove_dir_all(super::spool_dir(other));
        let mut sleeper = sleeper;
        let _ = sleeper.kill();
        let _ = sleeper.wait();
    }

    use super::*;

    #[test]
    fn a_public_url_moves_segments_and_init_but_not_parts() {
        let text = "#EXTM3U\n#EXT-X-MAP:URI=\"e0-init.mp4?v=1a\"\n#EXTINF:1.00000,\n\
                    e0-00000001.m4s?v=1a\n#EXT-X-PART:DURATION=0.2,URI=\"e0-00000002.p0.m4s?v=1a\"\n\
                    #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"e0-00000002.p1.m4s?v=1a\"\n";
        let mut cfg = crate::config::ApiConfig::new(PathBuf::from("/tmp/x"));
        let body = Bytes::from(text);
        // Without the flag: the same bytes (no copy).
        assert_eq!(
            public_playlist(&cfg, &StreamName::live(), body.clone()),
            body
        );
        cfg.media_public_url = Some("https://cdn.example/m/".into());
        let out = public_playlist(&cfg, &StreamName::live(), body);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "#EXTM3U\n#EXT-X-MAP:URI=\"https://cdn.example/m/live/e0-init.mp4?v=1a\"\n\
             #EXTINF:1.00000,\nhttps://cdn.example/m/live/e0-00000001.m4s?v=1a\n\
             #EXT-X-PART:DURATION=0.2,URI=\"e0-00000002.p0.m4s?v=1a\"\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"e0-00000002.p1.m4s?v=1a\"\n"
        );
    }

    #[test]
    fn only_our_names_pass() {
        assert_eq!(classify("e0-00000001.m4s"), Some(MediaKind::Fmp4Segment));
        assert_eq!(
            classify("e12-123456789012.m4s"),
            Some(MediaKind::Fmp4Segment)
        );
        assert_eq!(classify("e3-00000001.ts"), Some(MediaKind::TsSegment));
        assert_eq!(classify("e0-init.mp4"), Some(MediaKind::Init));
        for bad in [
            "",
            "..",
            "e0-..m4s",
            "../e0-00000001.m4s",
            "e0-0000001.m4s",
            "e-00000001.m4s",
            "e0-00000001.m4s/",
            "e0-00000001.mp4",
            "E0-00000001.m4s",
            "e0-00000001.m4s.bak",
            "e0-%2e%2e.m4s",
            "e0-init.m4s",
            "/etc/passwd",
            "e0-00000001",
            "e00000000000-init.mp4",
            "index.m3u8",
            "e0-0000000a.m4s",
            // Other spellings of our numbers: never written, so never served.
            "e01-00000001.m4s",
            "e0-000000001.m4s",
            "e0-+0000001.m4s",
            "e01-init.mp4",
        ] {
            assert_eq!(classify(bad), None, "{bad:?}");
        }
    }

    fn validators(len: u64) -> (tempfile::TempDir, Validators) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![1u8; usize::try_from(len).unwrap()]).unwrap();
        let v = Validators::of(&std::fs::metadata(&p).unwrap());
        (dir, v)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn memory(m: &Media) -> Bytes {
        match &m.body {
            MediaBody::Memory(b) => b.clone(),
            MediaBody::File(_) => panic!("expected a cached file"),
        }
    }

    #[actix_web::test]
    async fn the_cache_follows_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let cache = MediaCache::new(2, Duration::ZERO);
        let p = dir.path().join("e0-00000001.m4s");
        std::fs::write(&p, b"first").unwrap();
        let a = cache.get(dir.path(), &p).await.unwrap();
        let b = cache.get(dir.path(), &p).await.unwrap();
        assert_eq!(
            memory(&a).as_ptr(),
            memory(&b).as_ptr(),
            "the second answer shares the bytes read once"
        );
        // Replaced (new inode, as the segmenter's rename does): read again.
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, b"second!").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        let c = cache.get(dir.path(), &p).await.unwrap();
        assert_eq!(&memory(&c)[..], b"second!");
        assert_eq!(c.len, 7);
        assert_ne!(a.validators.etag, c.validators.etag);
        // Removed by retention: gone at once, and dropped from memory.
        std::fs::remove_file(&p).unwrap();
        assert_eq!(
            cache.get(dir.path(), &p).await.unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!((cache.len(), cache.bytes()), (0, 0));
        assert_eq!(
            cache.get(dir.path(), dir.path()).await.unwrap_err().kind(),
            io::ErrorKind::NotFound,
            "a directory is not a file"
        );
        // Bounded by entries; the least recently used goes first.
        for i in 0..3 {
            std::fs::write(dir.path().join(format!("f{i}")), b"xy").unwrap();
        }
        cache.get(dir.path(), &dir.path().join("f0")).await.unwrap();
        cache.get(dir.path(), &dir.path().join("f1")).await.unwrap();
        cache.get(dir.path(), &dir.path().join("f0")).await.unwrap();
        cache.get(dir.path(), &dir.path().join("f2")).await.unwrap();
        assert_eq!((cache.len(), cache.bytes()), (2, 4));
        let inner = cache.inner.lock().unwrap();
        assert!(inner.map.contains_key(dir.path().join("f0").as_os_str()));
        assert!(!inner.map.contains_key(dir.path().join("f1").as_os_str()));
    }

    #[actix_web::test]
    async fn the_cache_is_bounded_in_bytes_and_big_files_are_streamed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = MediaCache::new(1000, Duration::ZERO);
        let size = usize::try_from(MAX_CACHED_FILE).unwrap();
        for i in 0..9 {
            std::fs::write(dir.path().join(format!("f{i}")), vec![7u8; size]).unwrap();
            cache
                .get(dir.path(), &dir.path().join(format!("f{i}")))
                .await
                .unwrap();
            assert!(cache.bytes() <= MAX_CACHED_BYTES);
        }
        assert_eq!(cache.len(), 8, "64 MiB hold eight 8 MiB files");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![1u8; size + 1]).unwrap();
        let m = cache.get(dir.path(), &big).await.unwrap();
        assert!(matches!(m.body, MediaBody::File(_)));
        assert_eq!(m.len, MAX_CACHED_FILE + 1);
        assert_eq!(cache.len(), 8, "not cached");
    }

    #[actix_web::test]
    async fn a_deleted_file_leaves_the_cache_at_once_even_within_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e0-00000001.m4s");
        std::fs::write(&path, b"first").unwrap();
        // An hour of `fresh`: only the link count can tell.
        let cache = MediaCache::new(4, Duration::from_secs(3600));
        assert_eq!(cache.get(dir.path(), &path).await.unwrap().len, 5);
        assert_eq!((cache.len(), cache.bytes()), (1, 5));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            cache.get(dir.path(), &path).await.unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!((cache.len(), cache.bytes()), (0, 0), "entry and bytes gone");
        // Replaced by a rename (a new inode): the new bytes at once.
        std::fs::write(&path, b"second").unwrap();
        assert_eq!(cache.get(dir.path(), &path).await.unwrap().len, 6);
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, b"third!!").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(
            &memory(&cache.get(dir.path(), &path).await.unwrap())[..],
            b"third!!"
        );
        assert_eq!((cache.len(), cache.bytes()), (1, 7));
    }

    #[actix_web::test]
    async fn a_symlink_is_never_followed_out_of_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, b"root:x:0:0").unwrap();
        let root = tempfile::tempdir().unwrap();
        let stream = root.path().join("live");
        std::fs::create_dir(&stream).unwrap();
        let cache = MediaCache::new(4, Duration::ZERO);
        // A link as the file itself, to a file outside and to one inside.
        std::os::unix::fs::symlink(&secret, stream.join("e0-00000001.m4s")).unwrap();
        std::fs::write(stream.join("real"), b"inside").unwrap();
        std::os::unix::fs::symlink(stream.join("real"), stream.join("e0-00000002.m4s")).unwrap();
        for name in ["e0-00000001.m4s", "e0-00000002.m4s"] {
            let e = cache
                .get(root.path(), &stream.join(name))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{name}");
        }
        // A stream directory that is a link out of the root.
        std::os::unix::fs::symlink(outside.path(), root.path().join("evil")).unwrap();
        let e = cache
            .get(root.path(), &root.path().join("evil").join("secret"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(cache.len(), 0);
        // A FIFO does not block the open.
        let fifo = stream.join("e0-00000003.m4s");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = cache.get(root.path(), &fifo).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        // A root reached through a link is fine: the check uses its real path.
        let alias = outside.path().join("alias");
        std::os::unix::fs::symlink(root.path(), &alias).unwrap();
        std::fs::write(stream.join("e0-00000004.m4s"), b"ok").unwrap();
        let m = cache
            .get(&alias, &alias.join("live").join("e0-00000004.m4s"))
            .await
            .unwrap();
        assert_eq!(m.len, 2);
    }

    #[test]
    fn ranges() {
        let (_d, v) = validators(1000);
        let ask = |r: &str| answer(&headers(&[("range", r)]), &v, 1000);
        let part = |start, len| Answer::Partial { start, len };
        assert_eq!(ask("bytes=0-99"), part(0, 100));
        assert_eq!(ask("bytes=100-"), part(100, 900));
        assert_eq!(ask("bytes=-10"), part(990, 10));
        assert_eq!(ask("bytes=-5000"), part(0, 1000));
        assert_eq!(ask("bytes=990-5000"), part(990, 10));
        assert_eq!(ask("bytes=999-999"), part(999, 1));
        assert_eq!(ask("bytes=1000-"), Answer::Unsatisfiable);
        assert_eq!(ask("bytes=-0"), Answer::Unsatisfiable);
        for ignored in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1-2-3",
            "bytes=99999999999999999999-",
            "bytes= ",
            "",
        ] {
            assert_eq!(ask(ignored), Answer::Full, "{ignored:?}");
        }
        assert_eq!(
            answer(&headers(&[("range", "bytes=0-")]), &v, 0),
            Answer::Unsatisfiable
        );
    }

    #[test]
    fn conditional_requests() {
        let (_d, v) = validators(10);
        let lm = v.last_modified.unwrap().to_string();
        let ask = |h: &[(&'static str, &str)]| answer(&headers(h), &v, 10);
        assert_eq!(ask(&[("if-none-match", &v.etag)]), Answer::NotModified);
        assert_eq!(
            ask(&[("if-none-match", &format!("\"x\", W/{}", v.etag))]),
            Answer::NotModified
        );
        assert_eq!(ask(&[("if-none-match", "*")]), Answer::NotModified);
        assert_eq!(ask(&[("if-none-match", "\"other\"")]), Answer::Full);
        assert_eq!(ask(&[("if-modified-since", &lm)]), Answer::NotModified);
        assert_eq!(
            ask(&[("if-modified-since", "Mon, 01 Jan 1990 00:00:00 GMT")]),
            Answer::Full
        );
        // If-None-Match decides when both are sent.
        assert_eq!(
            ask(&[("if-none-match", "\"other\""), ("if-modified-since", &lm)]),
            Answer::Full
        );
        // If-Range: the range only for the same representation.
        assert_eq!(
            ask(&[("range", "bytes=0-1"), ("if-range", &v.etag)]),
            Answer::Partial { start: 0, len: 2 }
        );
        assert_eq!(
            ask(&[("range", "bytes=0-1"), ("if-range", &lm)]),
            Answer::Partial { start: 0, len: 2 }
        );
        assert_eq!(
            ask(&[("range", "bytes=0-1"), ("if-range", "\"old\"")]),
            Answer::Full
        );
    }
}
