//! The store: markers, the segment index, the timeline epochs and the status of every stream.
//!
//! Two backends implement one [`Store`] trait: [`redis`](crate::redis) (shared; docker compose,
//! several API replicas) and [`embedded`](crate::embedded) (redb, durable, the default of the single
//! binary). The generator writes, the API reads; neither knows which backend it holds. The store
//! knows marker times only as numbers on the clocks of `hlsmark-clock`; it knows nothing of HLS
//! playlists, HTTP or ffmpeg.

pub mod embedded;
mod error;
pub mod lease;
mod model;
pub mod outbox;
pub mod redis;
pub mod redis_cluster;
mod status;

pub use error::{ErrorKind, StoreError};
pub use model::{
    Cursor, FILTER_SCAN_MAX, InsertOutcome, LIVE_WINDOW_MAX, MAX_BATCH, MAX_DATA_BYTES,
    MAX_LABEL_CHARS, MAX_LIMIT, MAX_TAG_CHARS, MAX_TAGS, Marker, MarkerFilter, Page, RangeQuery,
    RetentionReport, Severity, StreamName, StreamUpdate, valid_color, valid_kind, valid_tag,
};
pub use status::{
    MAX_STATUS_ERROR_CHARS, MAX_STATUS_KIND_CHARS, MAX_STATUS_SOURCE_CHARS, StreamState,
    StreamStatus,
};
pub use status::{MAX_STATUS_RESTREAM, RestreamState, RestreamStatus};

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use hlsmark_clock::{Epoch, HlsTime, Part, Segment, SeqNo};
use uuid::Uuid;

pub use embedded::EmbeddedStore;
pub use lease::{LeaseAttempt, LeaseHolder, LeaseRenewal};
pub use redis::RedisStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Receiver of markers inserted by anyone (any process, for the Redis backend) after subscribing.
/// A slow receiver sees `RecvError::Lagged` and should re-query the range it missed.
pub type MarkerFeed = tokio::sync::broadcast::Receiver<Marker>;

/// Receiver of [`StreamUpdate`]s of every stream, written by anyone (any process, for the Redis
/// backend) after subscribing. `RecvError::Lagged` (a slow receiver) and a Redis feed that was
/// resubscribed after an outage both mean "re-read": after a resubscription the Redis backend
/// sends the current version of every stream, so nothing waits for an update it missed.
pub type UpdateFeed = tokio::sync::broadcast::Receiver<StreamUpdate>;

/// Opens the store named by `spec`: a `redis://` (or `redis+unix://`) URL selects the shared Redis
/// backend with every key under `{prefix}:` (`rediss://` is recognised but this build has no TLS:
/// it is refused with a clear error, not mistaken for a file); anything else is the path of the
/// embedded redb file (parent directories are created; `prefix` is not used there, the file is
/// the namespace). Opening the same file twice in one process returns the same handle.
///
/// `redis+cluster://host:port,host:port,…` names a Redis Cluster ([`redis_cluster::parse_spec`]):
/// the spec is checked (one-line errors on a bad node list, never taken for a file name), then
/// the same Redis store runs over the cluster client ([`RedisStore::connect_cluster`]).
pub async fn open(spec: &str, prefix: &str) -> Result<Arc<dyn Store>> {
    if spec.starts_with(redis_cluster::SCHEME) {
        let nodes = redis_cluster::parse_spec(spec)?;
        return Ok(Arc::new(RedisStore::connect_cluster(&nodes, prefix).await?));
    }
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
pub trait Store: Send + Sync + std::fmt::Debug + std::any::Any + 'static {
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

    /// Inserts up to [`MAX_BATCH`] markers of `stream` **all or nothing**: every marker is
    /// validated and checked against the stored ones first; if one is invalid, of another
    /// stream, or conflicts (an id stored, or earlier in the batch, with other content), the
    /// call fails with [`StoreError::BatchEntry`] naming its index and id, and nothing is
    /// written. Otherwise each entry is `Inserted` or, idempotent by id, `AlreadyExists`; the
    /// new ones are written in one transaction (embedded) or one script (Redis) and each goes
    /// out on the live feed once.
    async fn insert_marker_batch(
        &self,
        stream: &StreamName,
        markers: &[Marker],
    ) -> Result<Vec<InsertOutcome>>;

    /// The marker with this id in this stream, if any.
    async fn get_marker(&self, stream: &StreamName, id: Uuid) -> Result<Option<Marker>>;

    /// Deletes a marker; `false` if there was none.
    async fn delete_marker(&self, stream: &StreamName, id: Uuid) -> Result<bool>;

    /// Markers with `from <= hls < to`, ordered by (hls, id), at most `limit`, after the cursor,
    /// matching the query's filter. `Page::next` is set when more markers may follow (a filtered
    /// page stops after [`FILTER_SCAN_MAX`] markers looked at, possibly with fewer than `limit`). Unknown stream -> `UnknownStream`; a
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

    /// Publishes a part (LL-HLS partial segment) of a segment that may still be open. Idempotent
    /// by `(seq, index)`: the same record again is a no-op; a different one replaces it. Moves the
    /// stream's version. Parts are ephemeral: the embedded backend commits them without an fsync
    /// (a crash may lose the newest; the ingest clears parts at start anyway).
    async fn append_part(&self, stream: &StreamName, part: &Part) -> Result<()>;

    /// Every kept part of segments `>= from_seq`, ordered by `(seq, index)`, the open segment's
    /// included. Empty for an unknown stream.
    async fn parts(&self, stream: &StreamName, from_seq: SeqNo) -> Result<Vec<Part>>;

    /// Removes the parts of segments `< before_seq` and returns them (ordered by `(seq, index)`)
    /// so the caller can delete their files. Moves the version when it removed any.
    async fn drop_parts(&self, stream: &StreamName, before_seq: SeqNo) -> Result<Vec<Part>>;

    /// Live feed of [`StreamUpdate`]s from now on (all streams; filter by `stream`): one for every
    /// segment, part, epoch, marker and status change, by any process. Blocking playlist reloads
    /// wait on it instead of polling.
    async fn subscribe_updates(&self) -> Result<UpdateFeed>;

    /// Inserts or replaces an epoch by its index (the generator closes an epoch by setting `hls_end`).
    async fn put_epoch(&self, stream: &StreamName, epoch: &Epoch) -> Result<()>;

    /// All epochs of the stream, by index, empty for an unknown stream (epochs are tiny and few; they are never dropped while
    /// a segment of theirs is retained).
    async fn epochs(&self, stream: &StreamName) -> Result<Vec<Epoch>>;

    /// Names of all streams that have an epoch, a segment, a marker or a status, sorted.
    async fn streams(&self) -> Result<Vec<StreamName>>;

    /// Records the ingest side's status of a stream, replacing the previous one. Over-long text
    /// is cut ([`StreamStatus::bounded`]), never refused. It does not move the stream's
    /// [`Store::version`] (playlists do not depend on it), but it makes the stream known and sends
    /// a [`StreamUpdate`] with the current version.
    async fn put_status(&self, stream: &StreamName, status: &StreamStatus) -> Result<()>;

    /// The last status of every stream that has one, sorted by name.
    async fn statuses(&self) -> Result<Vec<(StreamName, StreamStatus)>>;

    /// A number that changes whenever the stream's segments, parts, epochs or markers change: the API
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

    /// Asks for the stream's ingest lease for `ttl` as `holder` ([`lease`]). `Acquired` gives a
    /// fencing token, newer than every token granted before for the stream, and from then on
    /// this handle writes the stream's epochs, segments, parts, retention and status only under
    /// it. `Held` names the holder (the caller is listed as waiting for a few ttls).
    async fn acquire_lease(
        &self,
        stream: &StreamName,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<LeaseAttempt>;

    /// Extends the lease of `token` by `ttl` from now. `Fenced` when a newer token was granted
    /// (the caller must stop writing the stream); a token that is still the newest is renewed
    /// even after its time ran out (a store outage does not fence the only ingest).
    async fn renew_lease(
        &self,
        stream: &StreamName,
        token: u64,
        ttl: std::time::Duration,
    ) -> Result<LeaseRenewal>;

    /// Gives up the lease of `token` (clean shutdown: a standby takes over at once). A no-op when
    /// `token` no longer holds it.
    async fn release_lease(&self, stream: &StreamName, token: u64) -> Result<()>;

    /// The stream's current lease holder, if the lease is held and not expired.
    async fn lease_holder(&self, stream: &StreamName) -> Result<Option<LeaseHolder>>;
}
