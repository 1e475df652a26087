//! The embedded durable backend: one redb file, the default of the single-binary run.
//!
//! Why redb: it is pure Rust (no C toolchain, no system library), ACID with copy-on-write B-trees
//! (a crash at any point leaves the last committed transaction intact, no write-ahead log to
//! replay), it fsyncs on every commit by default (`Durability::Immediate`), readers never block the
//! writer (MVCC), and it is actively maintained with a stable file format. An in-memory map would
//! not be durable; SQLite would need C and a SQL layer for what are four ordered key spaces.
//!
//! Layout (all keys start with the stream name, so streams never mix and a range is contiguous):
//!
//! | table             | key                          | value                         |
//! |-------------------|------------------------------|-------------------------------|
//! | `markers`         | (stream, hls ticks, id u128) | marker as JSON                |
//! | `marker_ids`      | (stream, id u128)            | hls ticks (id -> position)    |
//! | `segments`        | (stream, seq)                | segment as JSON               |
//! | `segments_by_hls` | (stream, hls start, seq)     | ()                            |
//! | `epochs`          | (stream, index)              | epoch as JSON                 |
//! | `streams`         | stream                       | (version, marker count)       |
//!
//! A range query is one B-tree seek plus `k` steps: O(log n + k). `Uuid::as_u128` is big-endian,
//! so the key order (hls, id) is exactly [`Cursor`](crate::Cursor) order. Writes run in
//! `tokio::task::spawn_blocking` (a commit waits for fsync; the runtime must not), and so do large
//! reads; point lookups and pages of up to 100 rows run inline, measured well under 0.1 ms.
//!
//! redb locks the file: only one process can open it. The live feed is an in-process broadcast, so
//! it reaches subscribers of the same process only. Separate `generate` and `serve` processes must
//! share a Redis store instead; the error when the file is taken says so.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use hlsmark_clock::{Epoch, HlsTime, Segment, SeqNo};
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::{
    InsertOutcome, Marker, MarkerFeed, Page, RangeQuery, Result, RetentionReport, Store,
    StoreError, StreamName,
};

/// Page cache of the embedded store.
const CACHE_BYTES: usize = 256 << 20;

const MARKERS: TableDefinition<'_, (&str, i64, u128), &[u8]> = TableDefinition::new("markers");
const MARKER_IDS: TableDefinition<'_, (&str, u128), i64> = TableDefinition::new("marker_ids");
const SEGMENTS: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("segments");
const SEGMENTS_BY_HLS: TableDefinition<'_, (&str, i64, u64), ()> =
    TableDefinition::new("segments_by_hls");
const EPOCHS: TableDefinition<'_, (&str, u32), &[u8]> = TableDefinition::new("epochs");
/// stream -> (version, marker count).
const STREAMS: TableDefinition<'_, &str, (u64, u64)> = TableDefinition::new("streams");

/// Capacity of the in-process live feed before a slow subscriber sees `Lagged`.
const FEED_CAPACITY: usize = 4096;
/// Largest page (markers, segments) read on the caller's thread; see [`EmbeddedStore::read`].
const INLINE_READ_MAX: u32 = 100;
/// Raw JSON decoded on the caller's thread at most (about 30 µs of parsing).
const INLINE_DECODE_BYTES: usize = 32 * 1024;
/// Markers per write transaction in [`Store::insert_markers`].
const BULK_CHUNK: usize = 10_000;

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                let e: redb::Error = e.into();
                match e {
                    redb::Error::Io(io) => StoreError::Unavailable(format!("store file: {io}")),
                    other => StoreError::Backend(format!("redb: {other}")),
                }
            }
        }
    )*};
}
redb_errors!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Open handles by canonical path: a second `open` of the same file in one process (the single
/// binary runs generator and API side by side) shares the handle instead of failing on the lock.
fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<EmbeddedStore>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Weak<EmbeddedStore>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The redb-backed [`Store`].
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    feed: broadcast::Sender<Marker>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Backend(format!("encode: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], key: impl FnOnce() -> String) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key(),
        why: e.to_string(),
    })
}

pub(crate) fn check_segment(segment: &Segment) -> Result<()> {
    if segment.duration.ticks() < 0 {
        return Err(StoreError::NegativeDuration(segment.duration.ticks()));
    }
    if segment.hls_start.checked_add(segment.duration).is_none() {
        return Err(StoreError::TimeOutOfRange(format!(
            "segment {} ends beyond the clock",
            segment.seq
        )));
    }
    Ok(())
}

fn rows_bytes_small(rows: &[Vec<u8>]) -> bool {
    rows.iter().map(Vec::len).sum::<usize>() <= INLINE_DECODE_BYTES
}

/// Bumps the stream's version and adjusts its marker count, registering the stream if new.
fn touch(txn: &WriteTransaction, stream: &str, count_delta: i64) -> Result<()> {
    let mut t = txn.open_table(STREAMS)?;
    let (version, count) = t.get(stream)?.map(|g| g.value()).unwrap_or((0, 0));
    let count = count.saturating_add_signed(count_delta);
    t.insert(stream, (version + 1, count))?;
    Ok(())
}

impl EmbeddedStore {
    /// Opens (or creates) the store file, creating parent directories. A file held by another
    /// process is an `Unavailable` error that names the way out (a Redis store).
    pub async fn open(path: &Path) -> Result<Arc<Self>> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path))
            .await
            .map_err(|e| StoreError::Backend(format!("open task failed: {e}")))?
    }

    fn open_blocking(path: &Path) -> Result<Arc<Self>> {
        let unwritable = |what: &str, p: &Path, e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!(
                "cannot {what} {}: {e} (is the location writable?)",
                p.display()
            ))
        };
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .map_err(|e| unwritable("create the store directory", parent, &e))?;
        let dir = parent
            .canonicalize()
            .map_err(|e| unwritable("resolve the store directory", parent, &e))?;
        let name = path.file_name().ok_or_else(|| {
            StoreError::Unavailable(format!("store path {} names no file", path.display()))
        })?;
        let canonical = dir.join(name);

        let mut reg = registry()
            .lock()
            .map_err(|_| StoreError::Backend("store registry poisoned".into()))?;
        if let Some(open) = reg.get(&canonical).and_then(Weak::upgrade) {
            return Ok(open);
        }
        // redb's default page cache is 1 GiB, which a long-running server fills with the marker
        // table (300 MB RSS after a million markers were queried). 256 MiB keeps a million markers'
        // index hot (range queries stay flat, see design/store.md) with a bounded process size.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&canonical)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                    "store file {} is in use by another process; use redis:// for separate \
                 generate/serve processes",
                    canonical.display()
                )),
                DatabaseError::Storage(redb::StorageError::Io(io)) => {
                    unwritable("open the store file", &canonical, &io)
                }
                other => StoreError::Backend(format!(
                    "cannot open store file {}: {other}",
                    canonical.display()
                )),
            })?;
        // Create every table once so readers never meet a missing one.
        let txn = db.begin_write()?;
        txn.open_table(MARKERS)?;
        txn.open_table(MARKER_IDS)?;
        txn.open_table(SEGMENTS)?;
        txn.open_table(SEGMENTS_BY_HLS)?;
        txn.open_table(EPOCHS)?;
        txn.open_table(STREAMS)?;
        txn.commit()?;
        let store = Arc::new(Self {
            db: Arc::new(db),
            path: canonical.clone(),
            feed: broadcast::channel(FEED_CAPACITY).0,
        });
        reg.retain(|_, w| w.strong_count() > 0);
        reg.insert(canonical, Arc::downgrade(&store));
        Ok(store)
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }

    /// Runs a read. A small one (a point lookup, a page of at most [`INLINE_READ_MAX`] rows) runs
    /// on the caller's thread: it is a few B-tree seeks in redb's page cache, measured at p50 9 µs
    /// and never above 0.1 ms for a 10-marker page of a 100k-marker store, while the hand-off to a
    /// blocking thread and back costs more than that and adds millisecond tails on a busy machine.
    /// Large reads, and every write (a commit waits for fsync), go through `spawn_blocking`.
    async fn read<T: Send + 'static>(
        &self,
        small: bool,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if small {
            f(&self.db)
        } else {
            self.run(f).await
        }
    }

    /// Inserts within an open write transaction; `Some(marker)` when it is new.
    fn insert_in(txn: &WriteTransaction, m: &Marker) -> Result<InsertOutcome> {
        let s = m.stream.as_str();
        let id = m.id.as_u128();
        let mut ids = txn.open_table(MARKER_IDS)?;
        let mut markers = txn.open_table(MARKERS)?;
        if let Some(hls) = ids.get((s, id))?.map(|g| g.value()) {
            let old: Marker = match markers.get((s, hls, id))? {
                Some(g) => decode(g.value(), || format!("markers/{s}/{hls}/{}", m.id))?,
                None => {
                    return Err(StoreError::Corrupt {
                        key: format!("marker_ids/{s}/{}", m.id),
                        why: "no marker at the indexed position".into(),
                    });
                }
            };
            return if old.same_content(m) {
                Ok(InsertOutcome::AlreadyExists)
            } else {
                Err(StoreError::Conflict(m.id))
            };
        }
        let body = encode(m)?;
        markers.insert((s, m.hls.ticks(), id), body.as_slice())?;
        ids.insert((s, id), m.hls.ticks())?;
        Ok(InsertOutcome::Inserted)
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn insert_marker(&self, marker: &Marker) -> Result<InsertOutcome> {
        marker.validate()?;
        let m = marker.clone();
        let outcome = self
            .run(move |db| {
                let txn = db.begin_write()?;
                let outcome = Self::insert_in(&txn, &m)?;
                if outcome == InsertOutcome::Inserted {
                    touch(&txn, m.stream.as_str(), 1)?;
                    txn.commit()?;
                }
                Ok(outcome)
            })
            .await?;
        if outcome == InsertOutcome::Inserted {
            // No subscriber is not an error.
            let _ = self.feed.send(marker.clone());
        }
        Ok(outcome)
    }

    async fn insert_markers(&self, markers: &[Marker]) -> Result<Vec<InsertOutcome>> {
        for m in markers {
            m.validate()?;
        }
        let mut out = Vec::with_capacity(markers.len());
        for chunk in markers.chunks(BULK_CHUNK) {
            let batch = chunk.to_vec();
            let (outcomes, batch) = self
                .run(move |db| {
                    let txn = db.begin_write()?;
                    let mut outcomes = Vec::with_capacity(batch.len());
                    let mut added: HashMap<&str, i64> = HashMap::new();
                    for m in &batch {
                        let o = Self::insert_in(&txn, m)?;
                        if o == InsertOutcome::Inserted {
                            *added.entry(m.stream.as_str()).or_default() += 1;
                        }
                        outcomes.push(o);
                    }
                    for (s, n) in added {
                        touch(&txn, s, n)?;
                    }
                    txn.commit()?;
                    Ok((outcomes, batch))
                })
                .await?;
            for (m, o) in batch.into_iter().zip(&outcomes) {
                if *o == InsertOutcome::Inserted {
                    let _ = self.feed.send(m);
                }
            }
            out.extend(outcomes);
        }
        Ok(out)
    }

    async fn get_marker(&self, stream: &StreamName, id: Uuid) -> Result<Option<Marker>> {
        let s = stream.clone();
        self.read(true, move |db| {
            let txn = db.begin_read()?;
            let ids = txn.open_table(MARKER_IDS)?;
            let Some(hls) = ids.get((s.as_str(), id.as_u128()))?.map(|g| g.value()) else {
                return Ok(None);
            };
            let markers = txn.open_table(MARKERS)?;
            let g = markers.get((s.as_str(), hls, id.as_u128()))?;
            g.map(|g| decode(g.value(), || format!("markers/{s}/{hls}/{id}")))
                .transpose()
        })
        .await
    }

    async fn delete_marker(&self, stream: &StreamName, id: Uuid) -> Result<bool> {
        let s = stream.clone();
        self.run(move |db| {
            let txn = db.begin_write()?;
            let removed = {
                let mut ids = txn.open_table(MARKER_IDS)?;
                let hls = ids.remove((s.as_str(), id.as_u128()))?.map(|g| g.value());
                match hls {
                    Some(hls) => {
                        let mut markers = txn.open_table(MARKERS)?;
                        markers.remove((s.as_str(), hls, id.as_u128()))?;
                        true
                    }
                    None => false,
                }
            };
            if removed {
                touch(&txn, s.as_str(), -1)?;
                txn.commit()?;
            }
            Ok(removed)
        })
        .await
    }

    async fn query_markers(&self, query: &RangeQuery) -> Result<Page> {
        let q = query.clone();
        if let Some(c) = q.after
            && (c.hls < q.from || c.hls >= q.to)
        {
            return Err(StoreError::InvalidCursor(c.to_string()));
        }
        // Copy the raw rows out (a memcpy, cheap even for 100 markers of 16 KiB), then decode
        // here when they are small, on a blocking thread when they are not: JSON parsing is what
        // costs time, and only big `data` makes it slow.
        let (rows, more) = self
            .read(q.limit <= INLINE_READ_MAX, move |db| {
                let txn = db.begin_read()?;
                let s = q.stream.as_str();
                if txn.open_table(STREAMS)?.get(s)?.is_none() {
                    return Err(StoreError::UnknownStream(s.to_owned()));
                }
                let markers = txn.open_table(MARKERS)?;
                let start = match q.after {
                    Some(c) => Bound::Excluded((s, c.hls.ticks(), c.id.as_u128())),
                    None => Bound::Included((s, q.from.ticks(), 0u128)),
                };
                let end = Bound::Excluded((s, q.to.ticks(), 0u128));
                let limit = usize::try_from(q.limit).unwrap_or(usize::MAX);
                let mut rows = Vec::with_capacity(limit.min(64));
                let mut more = false;
                for row in markers.range((start, end))? {
                    let (_, v) = row?;
                    if rows.len() == limit {
                        more = true;
                        break;
                    }
                    rows.push(v.value().to_vec());
                }
                Ok((rows, more))
            })
            .await?;
        let small = rows_bytes_small(&rows);
        let decode_all = move || -> Result<Page> {
            let markers = rows
                .iter()
                .map(|r| decode::<Marker>(r, || "markers (range query)".to_owned()))
                .collect::<Result<Vec<_>>>()?;
            let next = if more {
                markers.last().map(Marker::cursor)
            } else {
                None
            };
            Ok(Page { markers, next })
        };
        if small {
            decode_all()
        } else {
            tokio::task::spawn_blocking(decode_all)
                .await
                .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
        }
    }

    async fn count_markers(&self, stream: &StreamName) -> Result<u64> {
        let s = stream.clone();
        self.read(true, move |db| {
            let txn = db.begin_read()?;
            match txn.open_table(STREAMS)?.get(s.as_str())? {
                Some(g) => Ok(g.value().1),
                None => Err(StoreError::UnknownStream(s.to_string())),
            }
        })
        .await
    }

    async fn subscribe_markers(&self) -> Result<MarkerFeed> {
        Ok(self.feed.subscribe())
    }

    async fn append_segment(&self, stream: &StreamName, segment: &Segment) -> Result<()> {
        check_segment(segment)?;
        let s = stream.clone();
        let seg = segment.clone();
        self.run(move |db| {
            let body = encode(&seg)?;
            let txn = db.begin_write()?;
            {
                let mut segs = txn.open_table(SEGMENTS)?;
                let mut by_hls = txn.open_table(SEGMENTS_BY_HLS)?;
                let old = segs.get((s.as_str(), seg.seq))?.map(|g| g.value().to_vec());
                if let Some(old) = old {
                    if old == body {
                        return Ok(());
                    }
                    let old: Segment = decode(&old, || format!("segments/{s}/{}", seg.seq))?;
                    by_hls.remove((s.as_str(), old.hls_start.ticks(), old.seq))?;
                }
                segs.insert((s.as_str(), seg.seq), body.as_slice())?;
                by_hls.insert((s.as_str(), seg.hls_start.ticks(), seg.seq), ())?;
            }
            touch(&txn, s.as_str(), 0)?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn last_segments(&self, stream: &StreamName, n: usize) -> Result<Vec<Segment>> {
        let s = stream.clone();
        self.read(n <= INLINE_READ_MAX as usize, move |db| {
            let txn = db.begin_read()?;
            let segs = txn.open_table(SEGMENTS)?;
            let mut out = Vec::with_capacity(n.min(1024));
            for row in segs
                .range((s.as_str(), 0u64)..=(s.as_str(), u64::MAX))?
                .rev()
                .take(n)
            {
                let (k, v) = row?;
                out.push(decode(v.value(), || format!("segments/{:?}", k.value()))?);
            }
            out.reverse();
            Ok(out)
        })
        .await
    }

    async fn segments_in_range(
        &self,
        stream: &StreamName,
        from: HlsTime,
        to: HlsTime,
        limit: usize,
    ) -> Result<Vec<Segment>> {
        if from > to {
            return Err(StoreError::InvertedRange {
                from: from.ticks(),
                to: to.ticks(),
            });
        }
        let s = stream.clone();
        self.read(limit <= INLINE_READ_MAX as usize, move |db| {
            let txn = db.begin_read()?;
            let segs = txn.open_table(SEGMENTS)?;
            let by_hls = txn.open_table(SEGMENTS_BY_HLS)?;
            let load = |seq: u64| -> Result<Option<Segment>> {
                segs.get((s.as_str(), seq))?
                    .map(|g| decode(g.value(), || format!("segments/{s}/{seq}")))
                    .transpose()
            };
            let mut out = Vec::new();
            if from == to || limit == 0 {
                return Ok(out);
            }
            // The one segment that may start before `from` and still reach into the range.
            let before = by_hls
                .range((s.as_str(), i64::MIN, 0u64)..(s.as_str(), from.ticks(), 0u64))?
                .next_back()
                .transpose()?
                .map(|(k, _)| k.value().2);
            if let Some(seg) = before.map(load).transpose()?.flatten()
                && seg.hls_end() > from
            {
                out.push(seg);
            }
            for row in
                by_hls.range((s.as_str(), from.ticks(), 0u64)..(s.as_str(), to.ticks(), 0u64))?
            {
                if out.len() >= limit {
                    break;
                }
                let seq = row?.0.value().2;
                if let Some(seg) = load(seq)? {
                    out.push(seg);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn get_segment(&self, stream: &StreamName, seq: SeqNo) -> Result<Option<Segment>> {
        let s = stream.clone();
        self.read(true, move |db| {
            let txn = db.begin_read()?;
            let segs = txn.open_table(SEGMENTS)?;
            let g = segs.get((s.as_str(), seq))?;
            g.map(|g| decode(g.value(), || format!("segments/{s}/{seq}")))
                .transpose()
        })
        .await
    }

    async fn put_epoch(&self, stream: &StreamName, epoch: &Epoch) -> Result<()> {
        let s = stream.clone();
        let e = *epoch;
        self.run(move |db| {
            let body = encode(&e)?;
            let txn = db.begin_write()?;
            {
                let mut epochs = txn.open_table(EPOCHS)?;
                let same = epochs
                    .get((s.as_str(), e.index))?
                    .is_some_and(|g| g.value() == body.as_slice());
                if same {
                    return Ok(());
                }
                epochs.insert((s.as_str(), e.index), body.as_slice())?;
            }
            touch(&txn, s.as_str(), 0)?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn epochs(&self, stream: &StreamName) -> Result<Vec<Epoch>> {
        let s = stream.clone();
        self.read(true, move |db| {
            let txn = db.begin_read()?;
            let epochs = txn.open_table(EPOCHS)?;
            let mut out = Vec::new();
            for row in epochs.range((s.as_str(), 0u32)..=(s.as_str(), u32::MAX))? {
                let (k, v) = row?;
                out.push(decode(v.value(), || format!("epochs/{:?}", k.value()))?);
            }
            Ok(out)
        })
        .await
    }

    async fn streams(&self) -> Result<Vec<StreamName>> {
        self.read(true, |db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(STREAMS)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, _) = row?;
                out.push(StreamName::new(k.value()).map_err(|e| StoreError::Corrupt {
                    key: format!("streams/{:?}", k.value()),
                    why: e.to_string(),
                })?);
            }
            Ok(out)
        })
        .await
    }

    async fn version(&self, stream: &StreamName) -> Result<u64> {
        let s = stream.clone();
        self.read(true, move |db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(STREAMS)?;
            Ok(t.get(s.as_str())?.map_or(0, |g| g.value().0))
        })
        .await
    }

    async fn apply_retention(
        &self,
        stream: &StreamName,
        segments_before: HlsTime,
        markers_before: Option<HlsTime>,
    ) -> Result<RetentionReport> {
        let s = stream.clone();
        self.run(move |db| {
            let txn = db.begin_write()?;
            let mut report = RetentionReport::default();
            {
                let mut segs = txn.open_table(SEGMENTS)?;
                let mut by_hls = txn.open_table(SEGMENTS_BY_HLS)?;
                // Segments are published in time order: drop from the oldest until one survives.
                for row in segs.range((s.as_str(), 0u64)..=(s.as_str(), u64::MAX))? {
                    let (k, v) = row?;
                    let seg: Segment = decode(v.value(), || format!("segments/{:?}", k.value()))?;
                    if seg.hls_end() > segments_before {
                        break;
                    }
                    report.segments.push(seg);
                }
                for seg in &report.segments {
                    segs.remove((s.as_str(), seg.seq))?;
                    by_hls.remove((s.as_str(), seg.hls_start.ticks(), seg.seq))?;
                }
            }
            if let Some(before) = markers_before {
                let mut markers = txn.open_table(MARKERS)?;
                let mut ids = txn.open_table(MARKER_IDS)?;
                let mut doomed = Vec::new();
                for row in markers
                    .range((s.as_str(), i64::MIN, 0u128)..(s.as_str(), before.ticks(), 0u128))?
                {
                    let (k, _) = row?;
                    let (_, hls, id) = k.value();
                    doomed.push((hls, id));
                }
                for (hls, id) in &doomed {
                    markers.remove((s.as_str(), *hls, *id))?;
                    ids.remove((s.as_str(), *id))?;
                }
                report.markers = doomed.len() as u64;
            }
            if !report.segments.is_empty() || report.markers > 0 {
                let n = i64::try_from(report.markers).unwrap_or(i64::MAX);
                touch(&txn, s.as_str(), -n)?;
                txn.commit()?;
            }
            Ok(report)
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.read(true, |db| {
            db.begin_read()?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use uuid::Uuid;

    proptest! {
        /// Keys hold ids as `as_u128`: their order must be `Uuid`'s (and so `Cursor`'s) order.
        #[test]
        fn uuid_order_is_u128_order(a: [u8; 16], b: [u8; 16]) {
            let (x, y) = (Uuid::from_bytes(a), Uuid::from_bytes(b));
            prop_assert_eq!(x.cmp(&y), x.as_u128().cmp(&y.as_u128()));
        }
    }
}
