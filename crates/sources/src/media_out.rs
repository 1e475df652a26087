//! Where one stream's media files go: its directory (`<data-dir>/hls/<stream>/`, the default) or
//! the configured media store (`--media s3://...`, keys `<prefix>/<stream>/<file>`). The
//! pipeline writes init sections, parts and segments here once; the store writer deletes parts
//! and retention deletes old files through it. The stream directory itself stays local either
//! way: the journal, the pid file and the preview picture are the ingest's own state.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use hlsmark_mediastore::{LocalDir, MediaError, SharedMedia};

use crate::pipeline::PipelineError;

/// A stream's media files in a media store.
#[derive(Debug, Clone)]
pub struct StreamMedia {
    store: SharedMedia,
    /// `<stream>/`, or empty for a store rooted at the stream directory.
    prefix: String,
}

impl StreamMedia {
    /// The stream directory itself (today's layout).
    pub fn dir(dir: &Path) -> Self {
        Self {
            store: Arc::new(LocalDir::new(dir.to_owned())),
            prefix: String::new(),
        }
    }

    /// The stream `stream` of a shared store.
    pub fn in_store(store: SharedMedia, stream: &str) -> Self {
        Self {
            store,
            prefix: format!("{stream}/"),
        }
    }

    /// Where a file is, for messages (a path or an object name).
    pub fn describe(&self, file: &str) -> PathBuf {
        match self.store.local_dir() {
            Some(d) => d.join(format!("{}{file}", self.prefix)),
            None => PathBuf::from(format!("{}/{}{file}", self.store.describe(), self.prefix)),
        }
    }

    /// Writes the whole file once (see [`hlsmark_mediastore::MediaStore::put`]).
    pub async fn put(&self, file: &str, chunks: Vec<Bytes>) -> Result<(), PipelineError> {
        self.store
            .put(&format!("{}{file}", self.prefix), chunks)
            .await
            .map_err(|e| PipelineError::Write {
                path: self.describe(file),
                source: match e {
                    MediaError::Io { source, .. } => source,
                    other => std::io::Error::other(other),
                },
            })
    }

    /// Deletes these files (one already gone is fine); logs a failure. Returns how many are gone.
    pub async fn delete(&self, files: impl IntoIterator<Item = &str>) -> usize {
        let keys: Vec<String> = files
            .into_iter()
            .map(|f| format!("{}{f}", self.prefix))
            .collect();
        if keys.is_empty() {
            return 0;
        }
        match self.store.delete_many(&keys).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "could not delete media files");
                0
            }
        }
    }

    /// The names of the stream's files (an error is logged and lists nothing).
    pub async fn files(&self) -> Vec<String> {
        match self.store.list(&self.prefix).await {
            Ok(keys) => keys
                .into_iter()
                .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_owned))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "could not list the stream's media");
                Vec::new()
            }
        }
    }
}
