//! Segment and init files: strict names, content types, validators, conditional requests and
//! byte ranges. The bytes themselves go out with `sendfile` (see `zerocopy`).

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hlsmark_store::StreamName;

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue, HttpDate};

/// Segment and init URLs are never reused: epoch and sequence are in the file name, and the
/// playlist adds the epoch's wall-clock start as `?v=<hex>` (ignored here), because file names
/// start over at `e0-00000000.m4s` when a stream's data is wiped.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Where a stream's media file lives. `file` must have passed [`classify`] and `stream` is a
/// valid stream name: neither can leave the stream directory.
pub fn media_path(data_dir: &Path, stream: &StreamName, file: &str) -> PathBuf {
    data_dir.join("hls").join(stream.as_str()).join(file)
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

/// Classifies a file name, accepting only our own patterns: `e` + 1-10 digits + `-` + (8-20
/// digits + `.m4s`/`.ts` | `init.mp4`). Anything else (dots, slashes, encodings) is refused.
pub fn classify(name: &str) -> Option<MediaKind> {
    let rest = name.strip_prefix('e')?;
    let dash = rest.find('-')?;
    let (epoch, rest) = (&rest[..dash], &rest[dash + 1..]);
    if epoch.is_empty() || epoch.len() > 10 || !epoch.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if rest == "init.mp4" {
        return Some(MediaKind::Init);
    }
    let (seq, ext) = rest.split_once('.')?;
    if seq.len() < 8 || seq.len() > 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match ext {
        "m4s" => Some(MediaKind::Fmp4Segment),
        "ts" => Some(MediaKind::TsSegment),
        _ => None,
    }
}

/// Open files of recently served segments, so that serving a hot segment again costs no system
/// call before its bytes leave (a live stream's newest segments are asked for by every viewer).
/// A path is `stat`ed again once its last look is older than `fresh` (`--revalidate`, 20 ms, the
/// staleness the playlist has too): a segment removed by retention answers 404 from then on,
/// and a replaced file (another inode, length or mtime) is opened again. Until then the open file
/// is served, whose bytes stay exactly the segment's. Measured with 2 workers, the `stat` of one
/// hot path on every request cost about 1 µs of kernel time per request (the workers contend for
/// the path's dentry). `sendfile` reads at an explicit offset, so connections share one open file.
#[derive(Debug)]
pub struct OpenFiles {
    cap: usize,
    fresh: Duration,
    inner: Mutex<OpenInner>,
}

#[derive(Debug, Default)]
struct OpenInner {
    // Keyed by the path's bytes (hashing a `Path` walks its components).
    map: HashMap<OsString, OpenFile>,
    order: VecDeque<OsString>,
}

/// One open file with what the answers need to know about it.
#[derive(Debug, Clone)]
pub struct OpenFile {
    pub file: Arc<File>,
    pub len: u64,
    pub validators: Arc<Validators>,
    identity: Identity,
    /// When the path was last seen to name this file.
    checked: Instant,
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

impl OpenFiles {
    /// At most `cap` files; a path `stat`ed less than `fresh` ago is not `stat`ed again.
    pub fn new(cap: usize, fresh: Duration) -> Self {
        Self {
            cap,
            fresh,
            inner: Mutex::new(OpenInner::default()),
        }
    }

    /// The regular file at `path` as it is now (as it was at most `fresh` ago); `NotFound` for
    /// anything else.
    pub fn open(&self, path: &Path) -> io::Result<OpenFile> {
        let started = Instant::now();
        if !self.fresh.is_zero()
            && let Ok(inner) = self.inner.lock()
            && let Some(f) = inner.map.get(path.as_os_str())
            && started.saturating_duration_since(f.checked) < self.fresh
        {
            return Ok(f.clone());
        }
        let meta = std::fs::metadata(path)?;
        if !meta.is_file() {
            return Err(io::ErrorKind::NotFound.into());
        }
        let now = Identity::of(&meta);
        if let Ok(mut inner) = self.inner.lock()
            && let Some(f) = inner.map.get_mut(path.as_os_str())
            && f.identity == now
        {
            f.checked = started;
            return Ok(f.clone());
        }
        let file = File::open(path)?;
        // Described by the open file itself: the bytes sent are the ones these headers describe.
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::ErrorKind::NotFound.into());
        }
        let opened = OpenFile {
            file: Arc::new(file),
            len: meta.len(),
            validators: Arc::new(Validators::of(&meta)),
            identity: Identity::of(&meta),
            checked: started,
        };
        if self.cap > 0
            && let Ok(mut inner) = self.inner.lock()
        {
            let key = path.as_os_str().to_owned();
            if inner.map.insert(key.clone(), opened.clone()).is_none() {
                inner.order.push_back(key);
            }
            while inner.map.len() > self.cap {
                let Some(oldest) = inner.order.pop_front() else {
                    break;
                };
                inner.map.remove(&oldest);
            }
        }
        Ok(opened)
    }

    /// Files held open now.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.map.len())
    }
}

/// `len` bytes of `file` from `offset` (positional: the shared file's cursor is not used).
pub fn read_range(file: &File, offset: u64, len: u64) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt as _;
    let mut buf = vec![0; usize::try_from(len).map_err(io::Error::other)?];
    file.read_exact_at(&mut buf, offset)?;
    Ok(Bytes::from(buf))
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
        let mtime = meta.modified().ok();
        let nanos = mtime
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        // HTTP dates have whole seconds: compared with If-Modified-Since as sent back.
        let whole_secs = mtime
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| UNIX_EPOCH + std::time::Duration::from_secs(d.as_secs()));
        let etag = format!("\"{:x}-{nanos:x}\"", meta.len());
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
    use super::*;

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

    #[test]
    fn open_files_follow_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let files = OpenFiles::new(2, Duration::ZERO);
        let p = dir.path().join("e0-00000001.m4s");
        std::fs::write(&p, b"first").unwrap();
        let a = files.open(&p).unwrap();
        let b = files.open(&p).unwrap();
        assert!(
            Arc::ptr_eq(&a.file, &b.file),
            "the second answer reuses the open file"
        );
        // Replaced (new inode, as the generator's rename does): opened again.
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, b"second!").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        let c = files.open(&p).unwrap();
        assert!(!Arc::ptr_eq(&a.file, &c.file));
        assert_eq!(c.len, 7);
        assert_ne!(a.validators.etag, c.validators.etag);
        // Removed by retention: gone at once, although still open here.
        std::fs::remove_file(&p).unwrap();
        assert_eq!(files.open(&p).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(
            files.open(dir.path()).unwrap_err().kind(),
            io::ErrorKind::NotFound,
            "a directory is not a file"
        );
        // Bounded.
        for i in 0..5 {
            let q = dir.path().join(format!("f{i}"));
            std::fs::write(&q, b"x").unwrap();
            files.open(&q).unwrap();
        }
        assert_eq!(files.len(), 2);
    }

    #[test]
    fn a_path_looked_at_within_fresh_is_not_looked_at_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e0-00000001.m4s");
        std::fs::write(&path, b"first").unwrap();
        let files = OpenFiles::new(4, Duration::from_secs(3600));
        assert_eq!(files.open(&path).unwrap().len, 5);
        // Removed: still the open file's exact bytes while the last look is fresh.
        std::fs::remove_file(&path).unwrap();
        let held = files.open(&path).unwrap();
        assert_eq!(&read_range(&held.file, 0, held.len).unwrap()[..], b"first");
        // With a short window, the next look after it finds the file gone.
        let files = OpenFiles::new(4, Duration::from_millis(5));
        std::fs::write(&path, b"second").unwrap();
        assert_eq!(files.open(&path).unwrap().len, 6);
        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(
            files.open(&path).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
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
