//! Segment and init files: strict names, content types, and a small in-memory cache.
//!
//! A published segment never changes, so its bytes are kept in memory (bounded) and served without
//! touching the disk again; every request still `stat`s the file so that a segment that aged out
//! (deleted by retention) answers 404 at once, never stale bytes or a 500.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;

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

#[derive(Debug)]
struct Entry {
    bytes: Bytes,
    mtime: Option<SystemTime>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<PathBuf, Entry>,
    order: VecDeque<PathBuf>,
    total: usize,
}

/// Bounded cache of immutable files, oldest inserted evicted first.
#[derive(Debug)]
pub struct FileCache {
    cap: usize,
    inner: Mutex<Inner>,
}

impl FileCache {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Largest single file kept (bigger ones are streamed from disk).
    pub fn max_entry(&self) -> usize {
        self.cap / 4
    }

    /// The cached bytes if they belong to the file as it is now (same length and mtime).
    pub fn get(&self, path: &Path, meta: &std::fs::Metadata) -> Option<Bytes> {
        let inner = self.inner.lock().ok()?;
        let e = inner.map.get(path)?;
        let same = e.bytes.len() as u64 == meta.len() && e.mtime == meta.modified().ok();
        same.then(|| e.bytes.clone())
    }

    pub fn put(&self, path: PathBuf, meta: &std::fs::Metadata, bytes: Bytes) {
        if bytes.len() > self.max_entry() {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let entry = Entry {
            mtime: meta.modified().ok(),
            bytes,
        };
        let len = entry.bytes.len();
        if let Some(old) = inner.map.insert(path.clone(), entry) {
            inner.total -= old.bytes.len();
        } else {
            inner.order.push_back(path);
        }
        inner.total += len;
        while inner.total > self.cap {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(e) = inner.map.remove(&oldest) {
                inner.total -= e.bytes.len();
            }
        }
    }

    /// Bytes held now.
    pub fn size(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.total)
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

    #[test]
    fn cache_is_bounded_and_checks_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(4 * 100);
        let mut paths = Vec::new();
        for i in 0..6 {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, vec![7u8; 90]).unwrap();
            let meta = std::fs::metadata(&p).unwrap();
            cache.put(p.clone(), &meta, Bytes::from(vec![7u8; 90]));
            paths.push(p);
        }
        assert!(cache.size() <= 400);
        let last = &paths[5];
        let meta = std::fs::metadata(last).unwrap();
        assert!(cache.get(last, &meta).is_some());
        let first = &paths[0];
        assert!(
            cache
                .get(first, &std::fs::metadata(first).unwrap())
                .is_none()
        );
        // A file that changed length is not served from the cache.
        std::fs::write(last, vec![1u8; 10]).unwrap();
        assert!(cache.get(last, &std::fs::metadata(last).unwrap()).is_none());
    }
}
