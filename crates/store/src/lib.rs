//! The store: markers, the segment index and the timeline epochs of every stream.
//!
//! Two backends implement one [`Store`] trait: [`redis`](crate::redis) (shared; docker compose,
//! several API replicas) and [`embedded`](crate::embedded) (redb, durable, the default of the single
//! binary). The generator writes, the API reads; neither knows which backend it holds. The store
//! knows marker times only as numbers on the clocks of `hlsmark-clock`; it knows nothing of HLS
//! playlists, HTTP or ffmpeg.

pub mod embedded;
mod error;
mod model;
pub mod redis;

pub use error::{ErrorKind, StoreError};
pub use model::{
    Cursor, InsertOutcome, MAX_DATA_BYTES, MAX_LABEL_CHARS, MAX_LIMIT, Marker, Page, RangeQuery,
    RetentionReport, StreamName,
};

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use hlsmark_clock::{Epoch, HlsTime, Segment, SeqNo};
use uuid::Uuid;

pub use embedded::EmbeddedStore;
pub use redis::RedisStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Receiver of markers inserted by anyone (any process, for the Redis backend) after subscribing.
/// A slow receiver sees `RecvError::Lagged` and should re-query the range it missed.
pub type MarkerFeed = tokio::sync::broadcast::Receiver<Marker>;

/// Opens the store named by `spec`: a `redis://` (or `redis+unix://`) URL selects the shared Redis
/// backend with every key under `{prefix}:` (`rediss://` is recognised but this build has no TLS:
/// it is refused with a clear error, not mistaken for a file); anything else is the path of the
/// embedded redb file (parent directories are created; `prefix` is not used there, the file is
/// the namespace). Opening the same file twice in one process returns the same handle.
pub async fn open(spec: &str, prefix: &str) -> Result<Arc<dyn Store>> {
    let is_redis = ["redis://", "rediss://", "redis+unix://"]
        .iter()
        .any(|scheme| spec.starts_with(scheme));
    if is_redis {
        Ok(Arc::new(RedisStore::connect(spec, prefix).await?))
    } else {
        Ok(EmbeddedStore::open(Path::new(spec)).await?)
    }
}

/// What every backend provides. All methods are cancel-safe and never block the async runtime for
/// long; a backend that cannot be reached answers [`ErrorKind::Unavailable`] within a second.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Inserts a marker (any time order). Idempotent by id: the same marker again (every field but
    /// `created_at` equal, see [`Marker::same_content`]) is [`InsertOutcome::AlreadyExists`]; a
    /// different marker with the same id is a `Conflict` error.
    /// The marker is validated first ([`Marker::validate`]).
    async fn insert_marker(&self, marker: &Marker) -> Result<InsertOutcome>;

    /// Inserts many markers with the semantics of [`Store::insert_marker`] for each, batched by the
    /// backend (one transaction or one pipeline per chunk). All are validated before any is
    /// written; a conflict fails the call, and then the other markers of the call may or may not
    /// have been written (retrying without the conflicting one is safe: inserts are idempotent).
    async fn insert_markers(&self, markers: &[Marker]) -> Result<Vec<InsertOutcome>> {
        let mut out = Vec::with_capacity(markers.len());
        for m in markers {
            out.push(self.insert_marker(m).await?);
        }
        Ok(out)
    }

    /// The marker with this id in this stream, if any.
    async fn get_marker(&self, stream: &StreamName, id: Uuid) -> Result<Option<Marker>>;

    /// Deletes a marker; `false` if there was none.
    async fn delete_marker(&self, stream: &StreamName, id: Uuid) -> Result<bool>;

    /// Markers with `from <= hls < to`, ordered by (hls, id), at most `limit`, after the cursor.
    /// `Page::next` is set when more markers may follow. Unknown stream -> `UnknownStream`; a
    /// cursor outside `[from, to)` cannot come from this range -> `InvalidCursor`.
    async fn query_markers(&self, query: &RangeQuery) -> Result<Page>;

    /// Number of markers in the stream (O(1)). Unknown stream -> `UnknownStream`.
    async fn count_markers(&self, stream: &StreamName) -> Result<u64>;

    /// Live feed of markers inserted from now on (all streams; filter by `Marker::stream`).
    async fn subscribe_markers(&self) -> Result<MarkerFeed>;

    /// Publishes a finished segment. Idempotent by `seq` (the same record again is a no-op; a
    /// different record with the same `seq` replaces it).
    async fn append_segment(&self, stream: &StreamName, segment: &Segment) -> Result<()>;

    /// The newest `n` segments, oldest first (the live window). Empty for an unknown stream.
    async fn last_segments(&self, stream: &StreamName, n: usize) -> Result<Vec<Segment>>;

    /// Segments overlapping media time `[from, to)`, oldest first, at most `limit`.
    async fn segments_in_range(
        &self,
        stream: &StreamName,
        from: HlsTime,
        to: HlsTime,
        limit: usize,
    ) -> Result<Vec<Segment>>;

    /// The segment with this sequence number, if it is still in the index.
    async fn get_segment(&self, stream: &StreamName, seq: SeqNo) -> Result<Option<Segment>>;

    /// Inserts or replaces an epoch by its index (the generator closes an epoch by setting `hls_end`).
    async fn put_epoch(&self, stream: &StreamName, epoch: &Epoch) -> Result<()>;

    /// All epochs of the stream, by index, empty for an unknown stream (epochs are tiny and few; they are never dropped while
    /// a segment of theirs is retained).
    async fn epochs(&self, stream: &StreamName) -> Result<Vec<Epoch>>;

    /// Names of all streams that have an epoch or a marker.
    async fn streams(&self) -> Result<Vec<StreamName>>;

    /// A number that changes whenever the stream's segments, epochs or markers change: the API
    /// re-renders a cached playlist only when it moves. Any stream, known or not, has a version.
    async fn version(&self, stream: &StreamName) -> Result<u64>;

    /// Drops segments that end at or before `segments_before` and, when given, markers with
    /// `hls < markers_before`. Returns what was dropped so the caller can delete the files.
    async fn apply_retention(
        &self,
        stream: &StreamName,
        segments_before: HlsTime,
        markers_before: Option<HlsTime>,
    ) -> Result<RetentionReport>;

    /// Cheap round trip to the backend (for `/readyz`).
    async fn ping(&self) -> Result<()>;
}
