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
//! | `status`          | stream                       | stream status as JSON         |
//! | `parts`           | (stream, seq, index)         | part as JSON                  |
//!
//! A range query is one B-tree seek plus `k` steps: O(log n + k). `Uuid::as_u128` is big-endian,
//! so the key order (hls, id) is exactly [`Cursor`](crate::Cursor) order. Writes run in
//! `tokio::task::spawn_blocking` (a commit waits for fsync; the runtime must not), and so do large
//! reads; point lookups and pages of up to 100 rows run inline, measured well under 0.1 ms.
//!
//! redb locks the file: only one process can open it. The live feed is an in-process broadcast, so
//! it reaches subscribers of the same process only; so does the update feed ([`StreamUpdate`],
//! sent after every commit that changes a stream).
//!
//! Parts (LL-HLS) arrive five times a second per stream and live a few seconds: they are
//! committed with `Durability::None` (no fsync; redb makes them durable with the next immediate
//! commit, a segment's, about a second later). A crash may lose the newest parts and the
//! version bumps that came with them; the ingest clears every part when it starts, and the
//! version is only compared within the process that holds the file. Separate `generate` and `serve` processes must
//! share a Redis store instead; the error when the file is taken says so.

use std::collections::{HashMap, VecDeque};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hlsmark_clock::{Epoch, HlsTime, Part, Segment, SeqNo};
use redb::{
    Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use tokio::sync::{broadcast, oneshot};
use uuid::Uuid;

#[path = "embedded_outbox.rs"]
mod outbox;

#[path = "embedded_journal.rs"]
mod journal;

use journal::Journal;

use crate::model::check_batch;
use crate::{
    Cursor, FILTER_SCAN_MAX, InsertOutcome, Marker, MarkerFeed, Page, RangeQuery, Result,
    RetentionReport, Store, StoreError, StreamName, StreamStatus, StreamUpdate, UpdateFeed,
};

/// Page cache of the embedded store.
const CACHE_BYTES: usize = 256 << 20;

/// (stream, hls ticks, id): a row of [`MARKERS`].
type MarkerKey<'a> = (&'a str, i64, u128);
const MARKERS: TableDefinition<'_, MarkerKey<'_>, &[u8]> = TableDefinition::new("markers");
const MARKER_IDS: TableDefinition<'_, (&str, u128), i64> = TableDefinition::new("marker_ids");
const SEGMENTS: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("segments");
const SEGMENTS_BY_HLS: TableDefinition<'_, (&str, i64, u64), ()> =
    TableDefinition::new("segments_by_hls");
const EPOCHS: TableDefinition<'_, (&str, u32), &[u8]> = TableDefinition::new("epochs");
/// stream -> (version, marker count).
const STREAMS: TableDefinition<'_, &str, (u64, u64)> = TableDefinition::new("streams");
/// stream -> its [`StreamStatus`] as JSON.
const STATUS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("status");
/// (stream, parent seq, index) -> part as JSON.
const PARTS: TableDefinition<'_, (&str, u64, u32), &[u8]> = TableDefinition::new("parts");

/// Capacity of the in-process live feed before a slow subscriber sees `Lagged`.
const FEED_CAPACITY: usize = 4096;
/// Largest page (markers, segments) read on the caller's thread; see [`EmbeddedStore::read`].
const INLINE_READ_MAX: u32 = 100;
/// Raw JSON decoded on the caller's thread at most (about 30 µs of parsing).
const INLINE_DECODE_BYTES: usize = 32 * 1024;
/// Markers per write transaction in [`Store::insert_markers`].
const BULK_CHUNK: usize = 10_000;
/// How long a leader with nothing queued waits for the next write before it ends.
const LEADER_LINGER: Duration = Duration::from_millis(2);
/// Most markers one group commit takes (see [`GroupCommit`]): a group of a thousand 1 KiB
/// markers commits in a few milliseconds, so a write waits at most about one such commit.
pub const DEFAULT_MAX_GROUP: usize = 2048;

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                let e: redb::Error = e.into();
                match e {
                    redb::Error::Io(io) => StoreError::Unavailable(format!("store file: {io}")),
                    // redb latches an I/O error: every later call fails until the file is
                    // reopened, which `Db::recover` does.
                    redb::Error::PreviousIo => StoreError::Unavailable(
                        "store file: an earlier write failed (disk full?); reopening it".into(),
                    ),
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

/// Least time between two attempts to reopen the file after an I/O error.
const REOPEN_EVERY: Duration = Duration::from_millis(250);

/// The open database and what happens after an I/O error. redb latches a failed write (a full
/// disk, an I/O error): every later call answers `PreviousIo` until the database is closed and
/// opened again. So the first I/O error marks the handle faulty (one warning), every call then
/// tries to reopen the file (at most every [`REOPEN_EVERY`], on a blocking thread) and answers
/// `Unavailable` (HTTP 503) until that succeeds (one info line). Reopening runs redb's repair,
/// which writes: it fails while the disk is still full and succeeds once space returns. Nothing
/// acknowledged is lost: a failed commit was never acknowledged, and redb keeps the last
/// committed transaction intact.
struct Db {
    path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
    faulty: AtomicBool,
    fault: Mutex<Fault>,
    /// The marker journal: replayed when the file is reopened (its records may be newer than
    /// what the reopened redb holds).
    journal: Arc<Journal>,
}

#[derive(Default)]
struct Fault {
    /// Start of the current outage: set by the first failure, cleared once calls have worked for
    /// [`QUIET_AFTER`] (a reopen on a disk that is still full works until the next write).
    since: Option<Instant>,
    last_failure: Option<Instant>,
    last_try: Option<Instant>,
    attempts: u64,
}

/// Calls must have worked this long after the last failure before the outage is called over.
const QUIET_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

impl Db {
    fn create(path: &Path) -> std::result::Result<Database, DatabaseError> {
        // redb's default page cache is 1 GiB, which a long-running server fills with the marker
        // table (300 MB RSS after a million markers were queried). 256 MiB keeps a million
        // markers' index hot (range queries stay flat, see design/store.md) with a bounded size.
        Database::builder().set_cache_size(CACHE_BYTES).create(path)
    }

    /// The database to use now: after an I/O error, reopened first (or `Unavailable`).
    fn get(&self) -> Result<Arc<Database>> {
        if self.faulty.load(Ordering::Acquire) {
            self.recover()?;
        }
        self.db
            .read()
            .map_err(|_| StoreError::Backend("store handle poisoned".into()))?
            .clone()
            .ok_or_else(|| self.unavailable("it is being reopened"))
    }

    fn unavailable(&self, why: &str) -> StoreError {
        StoreError::Unavailable(format!(
            "store file {}: a write failed (disk full?); {why}",
            self.path.display()
        ))
    }

    /// Notes the outcome of a call: an I/O error (`Unavailable` from redb) makes the handle
    /// faulty, logged once per outage.
    fn observe<T>(&self, r: &Result<T>) {
        let Ok(mut f) = self.fault.lock() else {
            return;
        };
        match r {
            Err(e @ StoreError::Unavailable(_)) => {
                self.faulty.store(true, Ordering::Release);
                f.last_failure = Some(Instant::now());
                if f.since.is_none() {
                    f.since = Some(Instant::now());
                    f.attempts = 0;
                    // One line per outage, however often a reopen works and the next write fails.
                    tracing::warn!(
                        file = %self.path.display(),
                        error = %e,
                        "store file failed a write (disk full?); answering 503 and reopening it until it works"
                    );
                }
            }
            Ok(_) => {
                if let Some(since) = f.since
                    && f.last_failure.is_none_or(|t| t.elapsed() >= QUIET_AFTER)
                {
                    f.since = None;
                    let down_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
                    tracing::info!(
                        file = %self.path.display(),
                        down_ms,
                        attempts = f.attempts,
                        "store file works again; writes accepted"
                    );
                }
            }
            Err(_) => {}
        }
    }

    /// Closes and reopens the file (blocking: run it off the async threads). One attempt per
    /// [`REOPEN_EVERY`]; concurrent callers do not wait for it.
    fn recover(&self) -> Result<()> {
        let Ok(mut fault) = self.fault.try_lock() else {
            return Err(self.unavailable("it is being reopened"));
        };
        if !self.faulty.load(Ordering::Acquire) {
            return Ok(());
        }
        if fault.last_try.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
            return Err(self.unavailable("retrying shortly"));
        }
        fault.last_try = Some(Instant::now());
        fault.attempts += 1;
        let mut slot = self
            .db
            .write()
            .map_err(|_| StoreError::Backend("store handle poisoned".into()))?;
        if let Some(old) = slot.take() {
            match Arc::try_unwrap(old) {
                // Closed here: redb releases the file lock, so the same process may open it again.
                Ok(db) => drop(db),
                Err(still_used) => {
                    // A call in flight still holds it; it ends within milliseconds.
                    *slot = Some(still_used);
                    return Err(self.unavailable("waiting for calls in flight"));
                }
            }
        }
        let reopened = Self::create(&self.path)
            .map_err(|e| self.unavailable(&format!("reopening failed: {e}")))
            .and_then(|db| {
                // Groups acknowledged from the journal may be missing from the reopened file
                // (their redb commits were not durable yet): apply them again first.
                let mut io = self.journal.lock_io();
                self.journal
                    .replay(&mut io, &db, &EmbeddedStore::replay_markers)
                    .map_err(|e| self.unavailable(&format!("replaying the journal failed: {e}")))?;
                Ok(db)
            });
        match reopened {
            Ok(db) => {
                *slot = Some(Arc::new(db));
                self.faulty.store(false, Ordering::Release);
                // The outage is over only once calls keep working (see `observe`).
                tracing::debug!(
                    file = %self.path.display(),
                    attempts = fault.attempts,
                    "store file reopened"
                );
                Ok(())
            }
            Err(e) => {
                if fault.attempts.is_power_of_two() {
                    tracing::debug!(file = %self.path.display(), error = %e, attempts = fault.attempts, "store file not reopened yet");
                }
                Err(e)
            }
        }
    }
}

/// Marker writes waiting for the next group commit.
///
/// Every insert used to be a transaction of its own, and redb fsyncs every commit: about 2,000
/// inserts a second however many writers there were. Now concurrent marker writes (single
/// inserts and all-or-nothing batches) queue here; the first one that finds no commit running
/// becomes the leader on a blocking thread and commits everything queued in **one** fsync'd
/// transaction, then the next group, until the queue is empty. Each write is answered only after
/// the commit holding it returned, so an acknowledged insert survives a crash exactly as before.
/// A write that fails its own checks (a conflict) is left out of the transaction and answered
/// alone; a failed commit fails every write of its group (none was acknowledged).
struct GroupCommit {
    state: Mutex<GroupState>,
    /// Wakes a lingering leader (see [`LEADER_LINGER`]) when a write is queued.
    queued: std::sync::Condvar,
    /// Markers per transaction at most; 1 = one commit per insert (the old path, kept for the
    /// benchmark's baseline: `EmbeddedStore::set_max_group`).
    max_markers: AtomicUsize,
    /// Groups are made durable by the journal (`embedded_journal.rs`); `false` commits every
    /// group with its own fsync'd redb commit (the group commit before the journal, kept for
    /// the benchmark: `EmbeddedStore::set_journal`).
    journal_on: AtomicBool,
    /// Commits made and the marker writes' markers they carried (the benchmark prints the mean
    /// group size from them).
    commits: AtomicU64,
    committed_markers: AtomicU64,
}

#[derive(Default)]
struct GroupState {
    queue: VecDeque<PendingWrite>,
    /// A leader is committing (or about to): new writes only queue.
    leader: bool,
}

/// One caller's markers: a single insert, or a batch that must be written all or nothing.
struct PendingWrite {
    markers: Vec<Marker>,
    /// From [`check_batch`]: entries repeating an earlier entry's id and content.
    repeats: Vec<Option<usize>>,
    /// Errors of a batch name the entry (`BatchEntry`); a single insert's do not.
    batch: bool,
    reply: oneshot::Sender<Result<Vec<InsertOutcome>>>,
}

/// Clears the leader flag if the leader ends by a panic (the normal end clears it under the
/// lock, together with finding the queue empty). Writes still queued are taken by the next
/// leader; the panicked group's callers see their reply channel closed (an error).
struct LeaderGuard<'a> {
    group: &'a GroupCommit,
    armed: bool,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Ok(mut st) = self.group.state.lock()
        {
            st.leader = false;
        }
    }
}

/// The same error again, for every write of a group whose commit failed (`StoreError` holds
/// no clonable source; kind and text are what callers use).
fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(s) => StoreError::Unavailable(s.clone()),
        StoreError::Timeout(ms) => StoreError::Timeout(*ms),
        StoreError::Corrupt { key, why } => StoreError::Corrupt {
            key: key.clone(),
            why: why.clone(),
        },
        other => StoreError::Backend(other.to_string()),
    }
}

/// The redb-backed [`Store`].
pub struct EmbeddedStore {
    db: Arc<Db>,
    path: PathBuf,
    feed: broadcast::Sender<Marker>,
    updates: broadcast::Sender<StreamUpdate>,
    group: Arc<GroupCommit>,
    /// Ingest leases (in memory: one process holds the file) and this handle's fences.
    leases: Arc<crate::lease::LocalLeases>,
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

pub(crate) fn check_part(part: &Part) -> Result<()> {
    if part.duration.ticks() < 0 {
        return Err(StoreError::NegativeDuration(part.duration.ticks()));
    }
    if part.hls_start.checked_add(part.duration).is_none() {
        return Err(StoreError::TimeOutOfRange(format!(
            "part {}.{} ends beyond the clock",
            part.seq, part.index
        )));
    }
    Ok(())
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
/// Returns the new version (for the [`StreamUpdate`] sent once the transaction is committed).
fn touch(txn: &WriteTransaction, stream: &str, count_delta: i64) -> Result<u64> {
    let mut t = txn.open_table(STREAMS)?;
    let (version, count) = t.get(stream)?.map(|g| g.value()).unwrap_or((0, 0));
    let count = count.saturating_add_signed(count_delta);
    t.insert(stream, (version + 1, count))?;
    Ok(version + 1)
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
        let db = Db::create(&canonical).map_err(|e| match e {
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
        txn.open_table(STATUS)?;
        txn.open_table(PARTS)?;
        txn.open_table(journal::APPLIED)?;
        txn.commit()?;
        // Markers acknowledged from the journal after the last checkpoint go into redb now.
        let journal = Journal::open(&canonical)?;
        journal.replay(&mut journal.lock_io(), &db, &Self::replay_markers)?;
        let store = Arc::new(Self {
            db: Arc::new(Db {
                path: canonical.clone(),
                db: RwLock::new(Some(Arc::new(db))),
                faulty: AtomicBool::new(false),
                fault: Mutex::new(Fault::default()),
                journal,
            }),
            path: canonical.clone(),
            feed: broadcast::channel(FEED_CAPACITY).0,
            updates: broadcast::channel(FEED_CAPACITY).0,
            group: Arc::new(GroupCommit {
                state: Mutex::new(GroupState::default()),
                queued: std::sync::Condvar::new(),
                max_markers: AtomicUsize::new(DEFAULT_MAX_GROUP),
                journal_on: AtomicBool::new(true),
                commits: AtomicU64::new(0),
                committed_markers: AtomicU64::new(0),
            }),
            leases: Arc::default(),
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
        let handle = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let db = handle.get()?;
            let r = f(&db);
            drop(db);
            handle.observe(&r);
            r
        })
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
        // After an I/O error the file is reopened first, which blocks: not on this thread.
        if small && !self.db.faulty.load(Ordering::Acquire) {
            let db = self.db.get()?;
            let r = f(&db);
            drop(db);
            self.db.observe(&r);
            r
        } else {
            self.run(f).await
        }
    }

    /// Tells update subscribers (after the commit; no subscriber is not an error).
    fn notify(&self, stream: &StreamName, version: Option<u64>) {
        if let Some(version) = version {
            let _ = self.updates.send(StreamUpdate {
                stream: stream.clone(),
                version,
            });
        }
    }

    /// Markers a group commit takes at most; `1` commits every insert on its own (one fsync
    /// each: the old path, for measuring against). Shared by every handle of the file.
    pub fn set_max_group(&self, markers: usize) {
        self.group
            .max_markers
            .store(markers.max(1), Ordering::Relaxed);
    }

    /// Whether marker groups are made durable by the journal (the default) or each by its own
    /// fsync'd redb commit (`false`: the group commit before the journal, for measuring
    /// against). Shared by every handle of the file.
    pub fn set_journal(&self, on: bool) {
        self.group.journal_on.store(on, Ordering::Relaxed);
    }

    /// Group commits made so far and the markers they carried (written or found to exist).
    pub fn group_commit_stats(&self) -> (u64, u64) {
        (
            self.group.commits.load(Ordering::Relaxed),
            self.group.committed_markers.load(Ordering::Relaxed),
        )
    }

    /// Queues a marker write for the next group commit and waits until it is committed (or
    /// refused). Cancel-safe in the sense that matters: a dropped caller's write still completes.
    async fn submit(
        &self,
        markers: Vec<Marker>,
        repeats: Vec<Option<usize>>,
        batch: bool,
    ) -> Result<Vec<InsertOutcome>> {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut st = self
                .group
                .state
                .lock()
                .map_err(|_| StoreError::Backend("group commit lock poisoned".into()))?;
            st.queue.push_back(PendingWrite {
                markers,
                repeats,
                batch,
                reply,
            });
            !std::mem::replace(&mut st.leader, true)
        };
        if !lead {
            // A leader lingering for more writes takes this one at once.
            self.group.queued.notify_one();
        }
        if lead {
            let db = Arc::clone(&self.db);
            let group = Arc::clone(&self.group);
            let feed = self.feed.clone();
            let updates = self.updates.clone();
            // Not awaited: the leader also answers writes that queue after this one.
            drop(tokio::task::spawn_blocking(move || {
                Self::lead(&db, &group, &feed, &updates);
            }));
        }
        answer
            .await
            .map_err(|_| StoreError::Backend("store writer ended before committing".into()))?
    }

    /// The leader's loop: take a group, commit it, answer it (or hand it to the journal's
    /// flushers, which answer it once durable), until nothing is queued.
    fn lead(
        db: &Db,
        group: &GroupCommit,
        feed: &broadcast::Sender<Marker>,
        updates: &broadcast::Sender<StreamUpdate>,
    ) {
        let mut guard = LeaderGuard { group, armed: true };
        loop {
            let writes: Vec<PendingWrite> = {
                let Ok(mut st) = group.state.lock() else {
                    return;
                };
                if st.queue.is_empty() {
                    // Writers answered a moment ago are about to send their next write: waiting
                    // a little for it saves handing the next group to a new blocking thread.
                    match group.queued.wait_timeout(st, LEADER_LINGER) {
                        Ok((g, _)) => st = g,
                        Err(_) => return,
                    }
                }
                let max = group.max_markers.load(Ordering::Relaxed);
                let mut n = 0;
                let mut writes = Vec::new();
                while let Some(w) = st.queue.front() {
                    if !writes.is_empty() && n + w.markers.len() > max {
                        break;
                    }
                    n += w.markers.len();
                    writes.extend(st.queue.pop_front());
                }
                if writes.is_empty() {
                    st.leader = false;
                    guard.armed = false;
                    return;
                }
                writes
            };
            let journaled = group.journal_on.load(Ordering::Relaxed)
                && group.max_markers.load(Ordering::Relaxed) > 1;
            // `db.get()` first: it may reopen the file, which takes the journal's lock.
            let committed = db
                .get()
                .and_then(|d| Self::commit_and_log(&d, &db.journal, &writes, journaled));
            db.observe(&committed);
            match committed {
                Ok((answers, versions, durable_at)) => {
                    let n: usize = writes.iter().map(|w| w.markers.len()).sum();
                    group.commits.fetch_add(1, Ordering::Relaxed);
                    group
                        .committed_markers
                        .fetch_add(n as u64, Ordering::Relaxed);
                    let feed = feed.clone();
                    let updates = updates.clone();
                    let answer = move |durable: Result<()>| match durable {
                        Ok(()) => {
                            for (w, answer) in writes.into_iter().zip(answers) {
                                if let Ok(outcomes) = &answer {
                                    for (m, o) in w.markers.iter().zip(outcomes) {
                                        if *o == InsertOutcome::Inserted {
                                            // No subscriber is not an error.
                                            let _ = feed.send(m.clone());
                                        }
                                    }
                                }
                                let _ = w.reply.send(answer);
                            }
                            for (stream, version) in versions {
                                let _ = updates.send(StreamUpdate { stream, version });
                            }
                        }
                        Err(e) => {
                            for w in writes {
                                let _ = w.reply.send(Err(copy_error(&e)));
                            }
                        }
                    };
                    match durable_at {
                        None => answer(Ok(())),
                        Some(lsn) => db.journal.wait(lsn, Box::new(answer)),
                    }
                }
                Err(e) => {
                    for w in writes {
                        let _ = w.reply.send(Err(copy_error(&e)));
                    }
                }
            }
        }
    }

    /// Commits a group: with the journal, a `Durability::None` redb commit plus a journal
    /// record (durable once a flusher's fdatasync covers it), or every [`journal::CHECKPOINT_BYTES`]
    /// / [`journal::CHECKPOINT_EVERY`] an immediate commit that empties the journal; without,
    /// an immediate commit. Returns the answers, the versions to announce, and the LSN the
    /// answers must wait for (`None`: durable already).
    #[allow(clippy::type_complexity)]
    fn commit_and_log(
        db: &Database,
        journal: &Arc<Journal>,
        writes: &[PendingWrite],
        journaled: bool,
    ) -> Result<(
        Vec<Result<Vec<InsertOutcome>>>,
        Vec<(StreamName, u64)>,
        Option<u64>,
    )> {
        if !journaled {
            let (answers, versions, _, _) = Self::commit_group(db, writes, None, None)?;
            return Ok((answers, versions, None));
        }
        let mut io = journal.lock_io();
        let lsn = io.next_lsn();
        let checkpoint = journal.checkpoint_due(&io);
        let durability = if checkpoint {
            Durability::Immediate
        } else {
            Durability::None
        };
        let (answers, versions, payload, wrote) =
            Self::commit_group(db, writes, Some((lsn, durability)), Some(journal))?;
        if !wrote {
            // Nothing new, but an `AlreadyExists` may name a marker of a group still being
            // flushed: answer once everything before is durable.
            return Ok((answers, versions, Some(lsn - 1)));
        }
        io.take_lsn();
        if checkpoint {
            journal.emptied(&mut io, lsn);
            return Ok((answers, versions, None));
        }
        journal.append(&mut io, lsn, &payload)?;
        Ok((answers, versions, Some(lsn)))
    }

    /// One transaction for a group: each write is checked (reads only) and, if it passes,
    /// written; a write that fails its checks leaves nothing behind. Committed when anything
    /// was written: immediately (one fsync), or with the given durability after recording the
    /// group's journal LSN. Returns each write's answer, the new versions to announce, the
    /// journal payload of the written markers and whether anything was written.
    #[allow(clippy::type_complexity)]
    fn commit_group(
        db: &Database,
        writes: &[PendingWrite],
        lsn: Option<(u64, Durability)>,
        journal: Option<&Arc<Journal>>,
    ) -> Result<(
        Vec<Result<Vec<InsertOutcome>>>,
        Vec<(StreamName, u64)>,
        Vec<u8>,
        bool,
    )> {
        let mut txn = db.begin_write()?;
        let mut answers = Vec::with_capacity(writes.len());
        let mut added: HashMap<&StreamName, i64> = HashMap::new();
        let mut payload = Vec::new();
        for w in writes {
            let answer = Self::check_write(&txn, &w.markers, &w.repeats, w.batch);
            if let Ok(outcomes) = &answer {
                // A failure here leaves the transaction half-written: the whole group fails.
                Self::write_new(
                    &txn,
                    &w.markers,
                    outcomes,
                    journal.is_some().then_some(&mut payload),
                )?;
                for (m, o) in w.markers.iter().zip(outcomes) {
                    if *o == InsertOutcome::Inserted {
                        *added.entry(&m.stream).or_default() += 1;
                    }
                }
            }
            answers.push(answer);
        }
        let mut versions = Vec::with_capacity(added.len());
        let wrote = !added.is_empty();
        if wrote {
            for (s, n) in added {
                versions.push((s.clone(), touch(&txn, s.as_str(), n)?));
            }
            if let Some((lsn, durability)) = lsn {
                journal::record_lsn(&txn, lsn)?;
                txn.set_durability(durability)
                    .map_err(|e| StoreError::Backend(format!("redb: {e}")))?;
            }
            txn.commit()?;
        }
        Ok((answers, versions, payload, wrote))
    }

    /// Applies a replayed journal record's markers (each checked and written like an insert;
    /// one that now conflicts is skipped with a warning) and bumps the streams' versions.
    fn replay_markers(txn: &WriteTransaction, markers: &[Marker]) -> Result<()> {
        let mut added: HashMap<&StreamName, i64> = HashMap::new();
        for m in markers {
            match Self::check_write(txn, std::slice::from_ref(m), &[None], false) {
                Ok(outcomes) => {
                    Self::write_new(txn, std::slice::from_ref(m), &outcomes, None)?;
                    if outcomes.first() == Some(&InsertOutcome::Inserted) {
                        *added.entry(&m.stream).or_default() += 1;
                    }
                }
                Err(StoreError::Conflict(id)) => {
                    tracing::warn!(%id, "store journal: a replayed marker conflicts with the stored one; kept the stored one");
                }
                Err(e) => return Err(e),
            }
        }
        for (s, n) in added {
            touch(txn, s.as_str(), n)?;
        }
        Ok(())
    }

    /// What each marker of a write would be (reads only): `Inserted` for a new id,
    /// `AlreadyExists` for the same marker stored (or earlier in the batch), or the error of the
    /// first entry that conflicts.
    fn check_write(
        txn: &WriteTransaction,
        batch_markers: &[Marker],
        repeats: &[Option<usize>],
        batch: bool,
    ) -> Result<Vec<InsertOutcome>> {
        let ids = txn.open_table(MARKER_IDS)?;
        let markers = txn.open_table(MARKERS)?;
        let mut out = Vec::with_capacity(batch_markers.len());
        for (index, m) in batch_markers.iter().enumerate() {
            if repeats.get(index).copied().flatten().is_some() {
                out.push(InsertOutcome::AlreadyExists);
                continue;
            }
            let s = m.stream.as_str();
            let id = m.id.as_u128();
            let Some(hls) = ids.get((s, id))?.map(|g| g.value()) else {
                out.push(InsertOutcome::Inserted);
                continue;
            };
            let old: Marker = match markers.get((s, hls, id))? {
                Some(g) => decode(g.value(), || format!("markers/{s}/{hls}/{}", m.id))?,
                None => {
                    return Err(StoreError::Corrupt {
                        key: format!("marker_ids/{s}/{}", m.id),
                        why: "no marker at the indexed position".into(),
                    });
                }
            };
            if old.same_content(m) {
                out.push(InsertOutcome::AlreadyExists);
            } else if batch {
                return Err(StoreError::BatchEntry {
                    index,
                    id: m.id,
                    error: Box::new(StoreError::Conflict(m.id)),
                });
            } else {
                return Err(StoreError::Conflict(m.id));
            }
        }
        Ok(out)
    }

    /// Writes the markers `check_write` found new (and appends their JSON to a journal
    /// record's payload, when given one).
    fn write_new(
        txn: &WriteTransaction,
        new: &[Marker],
        outcomes: &[InsertOutcome],
        mut payload: Option<&mut Vec<u8>>,
    ) -> Result<()> {
        let mut ids = txn.open_table(MARKER_IDS)?;
        let mut markers = txn.open_table(MARKERS)?;
        for (m, o) in new.iter().zip(outcomes) {
            if *o != InsertOutcome::Inserted {
                continue;
            }
            let body = encode(m)?;
            if let Some(p) = payload.as_deref_mut() {
                journal::push_body(p, &body);
            }
            let s = m.stream.as_str();
            markers.insert((s, m.hls.ticks(), m.id.as_u128()), body.as_slice())?;
            ids.insert((s, m.id.as_u128()), m.hls.ticks())?;
        }
        // Webhook entries for the new markers, committed with them (see `crate::outbox`).
        outbox::on_inserted(txn, new, outcomes)
    }

    /// A filtered range query: walks the range in order, decoding each marker, until `limit`
    /// match (and one more, to know whether to give a cursor), the range ends, or
    /// [`FILTER_SCAN_MAX`] markers were looked at (then the cursor is where the walk stopped).
    fn query_filtered(db: &Database, q: &RangeQuery) -> Result<Page> {
        let txn = db.begin_read()?;
        let s = q.stream.as_str();
        if txn.open_table(STREAMS)?.get(s)?.is_none() {
            return Err(StoreError::UnknownStream(s.to_owned()));
        }
        let table = txn.open_table(MARKERS)?;
        let (start, end) = Self::bounds(q);
        let range = table.range((start, end))?;
        let iter: Box<dyn Iterator<Item = _>> = if q.newest_first {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let limit = usize::try_from(q.limit).unwrap_or(usize::MAX);
        let mut markers = Vec::new();
        let mut last = None;
        for (scanned, row) in iter.enumerate() {
            let (k, v) = row?;
            if scanned == FILTER_SCAN_MAX {
                // Looked at enough for one call and more follows: continue after the last
                // marker looked at (a cursor need not be a returned marker).
                return Ok(Page {
                    markers,
                    next: last,
                });
            }
            let (_, hls, id) = k.value();
            last = Some(Cursor {
                hls: HlsTime(hls),
                id: Uuid::from_u128(id),
            });
            let m: Marker = decode(v.value(), || format!("markers/{s}/{hls}/{id}"))?;
            if !q.filter.matches(&m) {
                continue;
            }
            if markers.len() == limit {
                let next = markers.last().map(Marker::cursor);
                return Ok(Page { markers, next });
            }
            markers.push(m);
        }
        Ok(Page {
            markers,
            next: None,
        })
    }

    /// The key range of a query, after its cursor.
    fn bounds(q: &RangeQuery) -> (Bound<MarkerKey<'_>>, Bound<MarkerKey<'_>>) {
        let s = q.stream.as_str();
        let at_cursor = q
            .after
            .map(|c| Bound::Excluded((s, c.hls.ticks(), c.id.as_u128())));
        if q.newest_first {
            (
                Bound::Included((s, q.from.ticks(), 0u128)),
                at_cursor.unwrap_or(Bound::Excluded((s, q.to.ticks(), 0u128))),
            )
        } else {
            (
                at_cursor.unwrap_or(Bound::Included((s, q.from.ticks(), 0u128))),
                Bound::Excluded((s, q.to.ticks(), 0u128)),
            )
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn insert_marker(&self, marker: &Marker) -> Result<InsertOutcome> {
        marker.validate()?;
        let out = self.submit(vec![marker.clone()], vec![None], false).await?;
        out.first()
            .copied()
            .ok_or_else(|| StoreError::Backend("empty insert answer".into()))
    }

    async fn insert_marker_batch(
        &self,
        stream: &StreamName,
        markers: &[Marker],
    ) -> Result<Vec<InsertOutcome>> {
        let repeats = check_batch(stream, markers)?;
        if markers.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(markers.to_vec(), repeats, true).await
    }

    async fn insert_markers(&self, markers: &[Marker]) -> Result<Vec<InsertOutcome>> {
        for m in markers {
            m.validate()?;
        }
        let mut out = Vec::with_capacity(markers.len());
        for chunk in markers.chunks(BULK_CHUNK) {
            let batch = chunk.to_vec();
            let (outcomes, batch, versions) = self
                .run(move |db| {
                    let repeats = crate::model::repeats(&batch, false)?;
                    let txn = db.begin_write()?;
                    let outcomes = Self::check_write(&txn, &batch, &repeats, false)?;
                    Self::write_new(&txn, &batch, &outcomes, None)?;
                    let mut added: HashMap<&StreamName, i64> = HashMap::new();
                    for (m, o) in batch.iter().zip(&outcomes) {
                        if *o == InsertOutcome::Inserted {
                            *added.entry(&m.stream).or_default() += 1;
                        }
                    }
                    let mut versions = Vec::with_capacity(added.len());
                    for (s, n) in added {
                        versions.push((s.clone(), touch(&txn, s.as_str(), n)?));
                    }
                    txn.commit()?;
                    Ok((outcomes, batch, versions))
                })
                .await?;
            for (m, o) in batch.into_iter().zip(&outcomes) {
                if *o == InsertOutcome::Inserted {
                    let _ = self.feed.send(m);
                }
            }
            for (s, v) in versions {
                self.notify(&s, Some(v));
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
        let version = self
            .run(move |db| {
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
                if !removed {
                    return Ok(None);
                }
                let v = touch(&txn, s.as_str(), -1)?;
                txn.commit()?;
                Ok(Some(v))
            })
            .await?;
        self.notify(stream, version);
        Ok(version.is_some())
    }

    async fn query_markers(&self, query: &RangeQuery) -> Result<Page> {
        let q = query.clone();
        if let Some(c) = q.after
            && (c.hls < q.from || c.hls >= q.to)
        {
            return Err(StoreError::InvalidCursor(c.to_string()));
        }
        if !q.filter.is_empty() {
            // Up to FILTER_SCAN_MAX markers decoded: never on the async thread.
            return self.run(move |db| Self::query_filtered(db, &q)).await;
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
                let (start, end) = Self::bounds(&q);
                let limit = usize::try_from(q.limit).unwrap_or(usize::MAX);
                let mut rows = Vec::with_capacity(limit.min(64));
                let mut more = false;
                let range = markers.range((start, end))?;
                let iter: Box<dyn Iterator<Item = _>> = if q.newest_first {
                    Box::new(range.rev())
                } else {
                    Box::new(range)
                };
                for row in iter {
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
        self.leases.check(stream)?;
        check_segment(segment)?;
        let s = stream.clone();
        let seg = segment.clone();
        let version = self
            .run(move |db| {
                let body = encode(&seg)?;
                let txn = db.begin_write()?;
                {
                    let mut segs = txn.open_table(SEGMENTS)?;
                    let mut by_hls = txn.open_table(SEGMENTS_BY_HLS)?;
                    let old = segs.get((s.as_str(), seg.seq))?.map(|g| g.value().to_vec());
                    if let Some(old) = old {
                        if old == body {
                            return Ok(None);
                        }
                        let old: Segment = decode(&old, || format!("segments/{s}/{}", seg.seq))?;
                        by_hls.remove((s.as_str(), old.hls_start.ticks(), old.seq))?;
                    }
                    segs.insert((s.as_str(), seg.seq), body.as_slice())?;
                    by_hls.insert((s.as_str(), seg.hls_start.ticks(), seg.seq), ())?;
                }
                let v = touch(&txn, s.as_str(), 0)?;
                txn.commit()?;
                Ok(Some(v))
            })
            .await?;
        self.notify(stream, version);
        Ok(())
    }

    async fn append_part(&self, stream: &StreamName, part: &Part) -> Result<()> {
        self.leases.check(stream)?;
        check_part(part)?;
        let s = stream.clone();
        let p = part.clone();
        let version = self
            .run(move |db| {
                let body = encode(&p)?;
                let mut txn = db.begin_write()?;
                // Ephemeral: no fsync per part (see the module note).
                txn.set_durability(Durability::None)
                    .map_err(|e| StoreError::Backend(format!("redb: {e}")))?;
                {
                    let mut parts = txn.open_table(PARTS)?;
                    let key = (s.as_str(), p.seq, p.index);
                    if parts
                        .get(key)?
                        .is_some_and(|g| g.value() == body.as_slice())
                    {
                        return Ok(None);
                    }
                    parts.insert(key, body.as_slice())?;
                }
                let v = touch(&txn, s.as_str(), 0)?;
                txn.commit()?;
                Ok(Some(v))
            })
            .await?;
        self.notify(stream, version);
        Ok(())
    }

    async fn parts(&self, stream: &StreamName, from_seq: SeqNo) -> Result<Vec<Part>> {
        let s = stream.clone();
        // A handful of segments' parts (about 25 rows): inline like any small page.
        self.read(true, move |db| {
            let txn = db.begin_read()?;
            let parts = txn.open_table(PARTS)?;
            let mut out = Vec::new();
            for row in
                parts.range((s.as_str(), from_seq, 0u32)..=(s.as_str(), u64::MAX, u32::MAX))?
            {
                let (k, v) = row?;
                out.push(decode(v.value(), || format!("parts/{:?}", k.value()))?);
            }
            Ok(out)
        })
        .await
    }

    async fn drop_parts(&self, stream: &StreamName, before_seq: SeqNo) -> Result<Vec<Part>> {
        self.leases.check(stream)?;
        let s = stream.clone();
        let (dropped, version) = self
            .run(move |db| {
                let mut txn = db.begin_write()?;
                txn.set_durability(Durability::None)
                    .map_err(|e| StoreError::Backend(format!("redb: {e}")))?;
                let mut dropped: Vec<Part> = Vec::new();
                {
                    let mut parts = txn.open_table(PARTS)?;
                    let mut keys = Vec::new();
                    for row in
                        parts.range((s.as_str(), 0u64, 0u32)..(s.as_str(), before_seq, 0u32))?
                    {
                        let (k, v) = row?;
                        let key = k.value();
                        dropped.push(decode(v.value(), || format!("parts/{key:?}"))?);
                        keys.push((key.1, key.2));
                    }
                    for (seq, index) in keys {
                        parts.remove((s.as_str(), seq, index))?;
                    }
                }
                if dropped.is_empty() {
                    return Ok((dropped, None));
                }
                let v = touch(&txn, s.as_str(), 0)?;
                txn.commit()?;
                Ok((dropped, Some(v)))
            })
            .await?;
        self.notify(stream, version);
        Ok(dropped)
    }

    async fn subscribe_updates(&self) -> Result<UpdateFeed> {
        Ok(self.updates.subscribe())
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
        self.leases.check(stream)?;
        let s = stream.clone();
        let e = *epoch;
        let version = self
            .run(move |db| {
                let body = encode(&e)?;
                let txn = db.begin_write()?;
                {
                    let mut epochs = txn.open_table(EPOCHS)?;
                    let same = epochs
                        .get((s.as_str(), e.index))?
                        .is_some_and(|g| g.value() == body.as_slice());
                    if same {
                        return Ok(None);
                    }
                    epochs.insert((s.as_str(), e.index), body.as_slice())?;
                }
                let v = touch(&txn, s.as_str(), 0)?;
                txn.commit()?;
                Ok(Some(v))
            })
            .await?;
        self.notify(stream, version);
        Ok(())
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

    async fn put_status(&self, stream: &StreamName, status: &StreamStatus) -> Result<()> {
        self.leases.check(stream)?;
        let s = stream.clone();
        let body = encode(&status.bounded())?;
        let version = self
            .run(move |db| {
                let txn = db.begin_write()?;
                let version;
                {
                    txn.open_table(STATUS)?
                        .insert(s.as_str(), body.as_slice())?;
                    // Known from now on (listed, an empty page of markers), without a version bump.
                    let mut streams = txn.open_table(STREAMS)?;
                    let current = streams.get(s.as_str())?.map(|g| g.value().0);
                    version = current.unwrap_or(0);
                    if current.is_none() {
                        streams.insert(s.as_str(), (0, 0))?;
                    }
                }
                txn.commit()?;
                Ok(version)
            })
            .await?;
        self.notify(stream, Some(version));
        Ok(())
    }

    async fn statuses(&self) -> Result<Vec<(StreamName, StreamStatus)>> {
        self.read(true, |db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(STATUS)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                let key = || format!("status/{:?}", k.value());
                let name = StreamName::new(k.value()).map_err(|e| StoreError::Corrupt {
                    key: key(),
                    why: e.to_string(),
                })?;
                out.push((name, decode(v.value(), key)?));
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
        self.leases.check(stream)?;
        let s = stream.clone();
        let (report, version) = self
            .run(move |db| {
                let txn = db.begin_write()?;
                let mut report = RetentionReport::default();
                {
                    let mut segs = txn.open_table(SEGMENTS)?;
                    let mut by_hls = txn.open_table(SEGMENTS_BY_HLS)?;
                    // Segments are published in time order: drop from the oldest until one survives.
                    for row in segs.range((s.as_str(), 0u64)..=(s.as_str(), u64::MAX))? {
                        let (k, v) = row?;
                        let seg: Segment =
                            decode(v.value(), || format!("segments/{:?}", k.value()))?;
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
                let mut version = None;
                if !report.segments.is_empty() || report.markers > 0 {
                    let n = i64::try_from(report.markers).unwrap_or(i64::MAX);
                    version = Some(touch(&txn, s.as_str(), -n)?);
                    txn.commit()?;
                }
                Ok((report, version))
            })
            .await?;
        self.notify(stream, version);
        Ok(report)
    }

    async fn ping(&self) -> Result<()> {
        self.read(true, |db| {
            db.begin_read()?;
            Ok(())
        })
        .await
    }

    async fn acquire_lease(
        &self,
        stream: &StreamName,
        holder: &str,
        ttl: Duration,
    ) -> Result<crate::LeaseAttempt> {
        self.leases.acquire(stream, holder, ttl)
    }

    async fn renew_lease(
        &self,
        stream: &StreamName,
        token: u64,
        ttl: Duration,
    ) -> Result<crate::LeaseRenewal> {
        self.leases.renew(stream, token, ttl)
    }

    async fn release_lease(&self, stream: &StreamName, token: u64) -> Result<()> {
        self.leases.release(stream, token)
    }

    async fn lease_holder(&self, stream: &StreamName) -> Result<Option<crate::LeaseHolder>> {
        self.leases.holder(stream)
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
