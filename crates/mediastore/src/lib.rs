//! Where media bytes live: segments, init sections and LL-HLS parts, behind one trait
//! ([`MediaStore`]) with two kinds: the local directory ([`LocalDir`], the default, today's
//! layout and atomic write-then-rename) and S3-compatible object storage ([`S3`], the
//! `object_store` crate). Ingest writes each object once, API nodes read it, retention deletes it.
//!
//! Keys are relative paths of our own names (`stream/e0-00000001.m4s`): ASCII letters, digits,
//! `.`, `_`, `-`, separated by `/`, never `.`/`..` or empty. A local key is a path under the
//! directory; an S3 key is appended to the bucket prefix. This crate knows nothing of HLS.

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

mod local;
mod s3;
mod spec;

pub use local::{LocalDir, write_whole};
pub use s3::S3;
pub use spec::{Credentials, MediaSpec, S3Spec, SpecError};

/// One object read (whole, or the requested range of it).
#[derive(Debug, Clone)]
pub struct Object {
    /// The bytes read: the whole object, or the range asked for.
    pub bytes: Bytes,
    /// The whole object's length.
    pub size: u64,
    pub last_modified: Option<SystemTime>,
    /// The store's entity tag (S3), if it has one.
    pub etag: Option<String>,
}

/// Errors of a media store. `Display` never holds a secret (credentials are never in a key, a
/// URL we print or an error of ours).
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{key} not found")]
    NotFound { key: String },
    #[error("invalid media key {0:?} (letters, digits, '.', '_', '-' separated by '/')")]
    InvalidKey(String),
    #[error("{op} {key}")]
    Io {
        op: &'static str,
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} {key}")]
    Remote {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    /// A failure at open (bad URL, missing bucket, refused credentials): one line for the user.
    #[error("{0}")]
    Open(String),
}

impl MediaError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

/// Where media objects live. Implementations are cheap to share (`Arc<dyn MediaStore>`).
#[async_trait::async_trait]
pub trait MediaStore: Send + Sync + fmt::Debug {
    /// Writes the whole object `key` (the concatenation of `chunks`) once: a reader sees all of
    /// it or nothing (local: temporary file, then rename; S3: one PUT).
    async fn put(&self, key: &str, chunks: Vec<Bytes>) -> Result<(), MediaError>;

    /// The object `key`, whole or the byte `range` of it (clamped to its end);
    /// [`MediaError::NotFound`] when it is not there.
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Object, MediaError>;

    /// Deletes these objects; one already gone is fine. Returns how many were asked for and are
    /// gone now.
    async fn delete_many(&self, keys: &[String]) -> Result<usize, MediaError>;

    /// The keys under `prefix` (a directory-like prefix such as `stream/`), unordered.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, MediaError>;

    /// The directory objects are files in, for readers that can open files directly (the API's
    /// local fast path, ffmpeg); `None` for remote stores.
    fn local_dir(&self) -> Option<&Path> {
        None
    }

    /// Where the store is, for logs (`/data/hls`, `s3://bucket/prefix at http://...`), no secret.
    fn describe(&self) -> String;
}

/// A shared media store.
pub type SharedMedia = Arc<dyn MediaStore>;

/// Checks a key (see the module note).
pub fn check_key(key: &str) -> Result<(), MediaError> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(MediaError::InvalidKey(key.chars().take(80).collect()))
    }
}

/// The key of a stream's media file: `stream/file`.
pub fn stream_key(stream: &str, file: &str) -> String {
    format!("{stream}/{file}")
}

/// Opens the store a spec names. S3: checks the bucket is there and the credentials work (one
/// list request) so a wrong setting fails at start with one line.
pub async fn open(spec: &MediaSpec) -> Result<SharedMedia, MediaError> {
    match spec {
        MediaSpec::Dir(dir) => Ok(Arc::new(LocalDir::new(dir.clone()))),
        MediaSpec::S3(s) => Ok(Arc::new(S3::open(s).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_our_names_only() {
        for ok in ["a/e0-00000001.m4s", "live/e12-init.mp4", "x", "a_b/c.d"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "../a", "a/../b", "./a", "a b", "a/%2e", "a\\b", "é",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key(&"a".repeat(513)).is_err());
    }
}
