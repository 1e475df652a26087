//! The store writer: one ordered queue of epochs, parts, segments and markers, written by one task.
//!
//! Order matters and is kept: an epoch is written before its segments, a segment's parts before
//! it, a marker after the segment that holds its first frame; old parts are dropped just before
//! the segment that ends their hold, and their files are deleted only once the store has let go
//! of them (a playlist never lists a deleted part). While the store is unreachable, writes wait in
//! the queue (bounded by `queue_limit`; when full the oldest part record is dropped first, then
//! the oldest segment record, never an epoch or a marker unless nothing else is left) and are
//! retried with a short backoff until it returns.
//!
//! At shutdown the queue gets [`FLUSH_TIMEOUT`](crate) to drain; what the store still did not
//! take then (a full disk, a store that is down) is not dropped: the epochs, segments and
//! markers are saved to the stream directory's journal ([`JOURNAL_FILE`], JSON lines) and
//! written first by the next start ([`replay_journal`]), before it reads where to continue.
//! Parts are not saved (the next start clears them anyway). Writes are idempotent, so a record
//! written twice (its write was in flight at the deadline) is harmless.
//!
//! The stream's status ([`StatusBoard`]) goes its own way: it is a single value that only its
//! newest version matters for, rewritten on every change and at least every 5 s, never queued.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hlsmark_clock::{Epoch, Part, Segment, SeqNo, UtcTime};
use hlsmark_store::{ErrorKind, Marker, Store, StoreError, StreamName, StreamState, StreamStatus};
use tokio::sync::{mpsc, watch};

use crate::media_out::StreamMedia;

/// One write to the store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Op {
    Epoch(Epoch),
    Part(Part),
    Segment(Segment),
    Marker(Marker),
    /// Drop the parts of segments before this sequence number, then delete their files.
    DropParts(SeqNo),
}

/// Counters shared with the supervisor (for the report and the logs).
#[derive(Debug, Default)]
pub struct PublishStats {
    pub segments: AtomicU64,
    pub parts: AtomicU64,
    /// Part files deleted after their records left the store.
    pub parts_removed: AtomicU64,
    /// Parts never written because a later drop had overtaken them (the writer was behind).
    pub parts_skipped: AtomicU64,
    pub markers: AtomicU64,
    pub epochs: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Refused by the store (invalid or conflicting): logged, not retried.
    pub rejected: AtomicU64,
    /// Refused because another ingest took the stream's lease (their media files deleted).
    pub fenced: AtomicU64,
    /// Largest queue length seen.
    pub max_queued: AtomicU64,
    /// Times the store went from reachable to unreachable.
    pub outages: AtomicU64,
}

const OP_TIMEOUT: Duration = Duration::from_secs(3);

async fn write(
    store: &dyn Store,
    stream: &StreamName,
    media: &StreamMedia,
    op: &Op,
    stats: &PublishStats,
) -> Result<(), StoreError> {
    let fut = async {
        match op {
            Op::Epoch(e) => store.put_epoch(stream, e).await,
            Op::Part(p) => store.append_part(stream, p).await,
            Op::Segment(s) => store.append_segment(stream, s).await,
            Op::Marker(m) => store.insert_marker(m).await.map(|_| ()),
            Op::DropParts(before) => {
                let gone = store.drop_parts(stream, *before).await?;
                remove_part_files(media, &gone, stats).await;
                Ok(())
            }
        }
    };
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Timeout(
            u64::try_from(OP_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
        )),
    }
}

/// Deletes the files of parts the store no longer lists (a file already gone is fine; with
/// object storage one DeleteObjects request).
pub(crate) async fn remove_part_files(media: &StreamMedia, parts: &[Part], stats: &PublishStats) {
    let n = media.delete(parts.iter().map(|p| p.file.as_str())).await;
    stats
        .parts_removed
        .fetch_add(u64::try_from(n).unwrap_or(0), Ordering::Relaxed);
}

/// The queue and what is known of the drops it holds.
#[derive(Default)]
struct Queue {
    q: VecDeque<Op>,
    /// The highest `DropParts` queued so far: a queued part of an older segment would be dropped
    /// right after being written, and an older `DropParts` is covered by it.
    latest_drop: SeqNo,
}

impl Queue {
    /// Whether the front op is already overtaken by a later drop (the writer is behind: a
    /// store outage, or an unpaced run faster than the store). Its part file is deleted here,
    /// since no drop will ever name it.
    async fn front_is_obsolete(&self, media: &StreamMedia, stats: &PublishStats) -> bool {
        match self.q.front() {
            Some(Op::Part(p)) if p.seq < self.latest_drop => {
                remove_part_files(media, std::slice::from_ref(p), stats).await;
                stats.parts_skipped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(Op::DropParts(b)) => *b < self.latest_drop,
            _ => false,
        }
    }
}

fn push_bounded(queue: &mut Queue, op: Op, limit: usize, stats: &PublishStats) {
    if let Op::DropParts(b) = op {
        queue.latest_drop = queue.latest_drop.max(b);
    }
    let q = &mut queue.q;
    q.push_back(op);
    if q.len() > limit {
        // Parts are worth least (they are only for the live edge), then segment records.
        let victim = q
            .iter()
            .position(|o| matches!(o, Op::Part(_)))
            .or_else(|| q.iter().position(|o| matches!(o, Op::Segment(_))))
            .unwrap_or(0);
        if let Some(old) = q.remove(victim) {
            let n = stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped_total = n,
                    ?old,
                    "store write queue full; dropped the oldest"
                );
            }
        }
    }
    let len = u64::try_from(q.len()).unwrap_or(u64::MAX);
    stats.max_queued.fetch_max(len, Ordering::Relaxed);
}

/// Runs until `rx` is closed and the queue is empty (then returns nothing), or until `give_up`
/// turns true: then it returns every write still queued, the one in flight first (see the
/// module note: the caller saves them to the journal).
pub async fn run_publisher(
    store: Arc<dyn Store>,
    stream: StreamName,
    media: StreamMedia,
    rx: mpsc::UnboundedReceiver<Op>,
    limit: usize,
    stats: Arc<PublishStats>,
    mut give_up: watch::Receiver<bool>,
) -> Vec<Op> {
    let mut q = Queue::default();
    let mut rx = rx;
    {
        let drain = drain(store, &stream, &media, &mut rx, &mut q, limit, &stats);
        tokio::select! {
            () = drain => return Vec::new(),
            _ = give_up.wait_for(|g| *g) => {}
        }
    }
    // Records sent but not taken yet are queued too.
    while let Ok(op) = rx.try_recv() {
        q.q.push_back(op);
    }
    q.q.into()
}

async fn drain(
    store: Arc<dyn Store>,
    stream: &StreamName,
    media: &StreamMedia,
    rx: &mut mpsc::UnboundedReceiver<Op>,
    q: &mut Queue,
    limit: usize,
    stats: &PublishStats,
) {
    let stream = stream.clone();
    let mut closed = false;
    let mut down_since: Option<tokio::time::Instant> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        // Take everything that is waiting without blocking.
        while let Ok(op) = rx.try_recv() {
            push_bounded(q, op, limit, stats);
        }
        if q.front_is_obsolete(media, stats).await {
            q.q.pop_front();
            continue;
        }
        let Some(op) = q.q.front() else {
            if closed {
                return;
            }
            match rx.recv().await {
                Some(op) => push_bounded(q, op, limit, stats),
                None => closed = true,
            }
            continue;
        };
        match write(store.as_ref(), &stream, media, op, stats).await {
            Ok(()) => {
                match op {
                    Op::Epoch(_) => stats.epochs.fetch_add(1, Ordering::Relaxed),
                    Op::Part(_) => stats.parts.fetch_add(1, Ordering::Relaxed),
                    Op::Segment(_) => stats.segments.fetch_add(1, Ordering::Relaxed),
                    Op::Marker(_) => stats.markers.fetch_add(1, Ordering::Relaxed),
                    Op::DropParts(_) => 0,
                };
                q.q.pop_front();
                if let Some(t) = down_since.take() {
                    tracing::info!(
                        after_ms = t.elapsed().as_millis(),
                        queued = q.q.len() + 1,
                        "store reachable again; writing the queued records"
                    );
                }
                backoff = Duration::from_millis(100);
            }
            Err(e @ StoreError::Fenced { .. }) => {
                // Another ingest holds the stream now (lease.rs): the record is not in the index
                // and never will be, so its media goes too (no orphan for retention to find).
                let file = match op {
                    Op::Segment(seg) => Some(seg.file.as_str()),
                    Op::Part(p) => Some(p.file.as_str()),
                    _ => None,
                };
                let removed = media.delete(file).await;
                if stats.fenced.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(stream = %stream, error = %e, removed, "fenced: the store refuses this ingest's writes; dropping them and their files");
                }
                q.q.pop_front();
            }
            Err(e) if matches!(e.kind(), ErrorKind::Invalid | ErrorKind::Conflict) => {
                // A re-anchored event whose original marker was stored by an earlier run is a
                // Conflict by id: the original stands.
                let level_conflict = e.kind() == ErrorKind::Conflict;
                if level_conflict {
                    tracing::info!(error = %e, "store kept an earlier version of this record");
                } else {
                    tracing::error!(error = %e, ?op, "store refused a record; dropping it");
                }
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                q.q.pop_front();
            }
            Err(e) => {
                if down_since.is_none() {
                    down_since = Some(tokio::time::Instant::now());
                    stats.outages.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, queued = q.q.len(), "store unreachable; queueing writes");
                }
                // Wait, but keep accepting new records meanwhile.
                let sleep = tokio::time::sleep(backoff);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        op = rx.recv(), if !closed => match op {
                            Some(op) => push_bounded(q, op, limit, stats),
                            None => closed = true,
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// The journal of a stream directory: records the store did not take before a shutdown.
pub const JOURNAL_FILE: &str = ".store-journal.jsonl";

/// Space kept in every stream directory for the journal: on a full disk (the usual reason the
/// store cannot take records) it is deleted to make room for the journal.
pub const RESERVE_FILE: &str = ".journal-reserve";
const RESERVE_BYTES: usize = 1 << 20;

/// Makes sure `dir/`[`RESERVE_FILE`] holds [`RESERVE_BYTES`] (best effort, at start).
pub fn reserve_space(dir: &Path) {
    let path = dir.join(RESERVE_FILE);
    let have = std::fs::metadata(&path).map_or(0, |m| m.len());
    if have == RESERVE_BYTES as u64 {
        return;
    }
    if let Err(e) = std::fs::write(&path, vec![0u8; RESERVE_BYTES]) {
        let _ = std::fs::remove_file(&path);
        tracing::debug!(file = %path.display(), error = %e, "no space reserved for the journal");
    }
}

/// Appends `ops` (epochs, segments, markers; parts and drops are left out) to the journal of
/// `dir`; on a full disk the reserve ([`RESERVE_FILE`]) is given up to make room. Returns how
/// many were saved; an error names the file (then they are lost, and the caller says so).
pub fn save_journal(dir: &Path, ops: &[Op]) -> std::io::Result<usize> {
    match save_journal_once(dir, ops) {
        Err(e) if std::fs::remove_file(dir.join(RESERVE_FILE)).is_ok() => {
            tracing::warn!(error = %e, "journal did not fit; using the space reserved for it");
            save_journal_once(dir, ops)
        }
        r => r,
    }
}

fn save_journal_once(dir: &Path, ops: &[Op]) -> std::io::Result<usize> {
    let path = dir.join(JOURNAL_FILE);
    let mut text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut n = 0;
    for op in ops {
        if matches!(op, Op::Part(_) | Op::DropParts(_)) {
            continue;
        }
        let line = serde_json::to_string(op).map_err(std::io::Error::other)?;
        text.push_str(&line);
        text.push('\n');
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    crate::pipeline::write_whole(dir, JOURNAL_FILE, &[bytes::Bytes::from(text)])
        .map_err(|e| std::io::Error::other(crate::error_chain(&e)))?;
    Ok(n)
}

/// Writes the journal of `dir` (if any) to the store in order, waiting while the store is
/// unavailable (until `stop` turns true: then the journal stays for the next start), then
/// removes it. A record the store refuses (invalid, conflicting) is logged and skipped.
/// Returns how many records were written.
pub async fn replay_journal(
    store: &dyn Store,
    stream: &StreamName,
    dir: &Path,
    stop: &mut watch::Receiver<bool>,
) -> usize {
    let path = dir.join(JOURNAL_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return 0;
    };
    let stats = PublishStats::default();
    // The journal holds no part drops: nothing is deleted through this.
    let media = StreamMedia::dir(dir);
    let mut written = 0;
    let mut warned = false;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let op: Op = match serde_json::from_str(line) {
            Ok(op) => op,
            Err(e) => {
                tracing::error!(stream = %stream, file = %path.display(), line = i + 1, error = %e, "unreadable journal line; skipped");
                continue;
            }
        };
        loop {
            match write(store, stream, &media, &op, &stats).await {
                Ok(()) => {
                    written += 1;
                    break;
                }
                Err(e) if matches!(e.kind(), ErrorKind::Invalid | ErrorKind::Conflict) => {
                    tracing::warn!(stream = %stream, error = %e, ?op, "store refused a journal record; skipped");
                    break;
                }
                Err(e) => {
                    if !warned {
                        warned = true;
                        tracing::warn!(stream = %stream, error = %e, "store unreachable; waiting to write the journal of the last run");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(250)) => {}
                        _ = stop.changed() => {}
                    }
                    if *stop.borrow() {
                        return written;
                    }
                }
            }
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {
            tracing::info!(stream = %stream, records = written, "wrote the records the last run could not store")
        }
        Err(e) => {
            tracing::warn!(stream = %stream, file = %path.display(), error = %e, "could not remove the written journal")
        }
    }
    written
}

/// How often the status is rewritten when nothing changes (the API calls a status older than
/// 15 s stale).
pub const STATUS_PERIOD: Duration = Duration::from_secs(5);

/// The stream's status as the supervisor sees it; a background task writes it to the store on
/// every change and every [`STATUS_PERIOD`].
#[derive(Debug)]
pub struct StatusBoard {
    tx: watch::Sender<StreamStatus>,
    task: tokio::task::JoinHandle<()>,
    store: Arc<dyn Store>,
    stream: StreamName,
}

impl StatusBoard {
    /// Starts in `Starting`.
    pub fn start(store: Arc<dyn Store>, stream: StreamName, source: String, kind: String) -> Self {
        let now = UtcTime::now();
        let (tx, rx) = watch::channel(StreamStatus {
            state: StreamState::Starting,
            source,
            kind,
            since_90k: now,
            updated_90k: now,
            last_error: None,
            restarts: 0,
            epoch: None,
            restream: Vec::new(),
        });
        let task = tokio::spawn(status_loop(store.clone(), stream.clone(), rx));
        Self {
            tx,
            task,
            store,
            stream,
        }
    }

    /// Enters `state` (a change of state moves `since`); `error` replaces the last error when
    /// given.
    pub fn set(&self, state: StreamState, error: Option<String>) {
        self.tx.send_modify(|s| {
            if s.state != state {
                s.state = state;
                s.since_90k = UtcTime::now();
            }
            if error.is_some() {
                s.last_error = error;
            }
        });
    }

    pub fn set_epoch(&self, epoch: u32) {
        self.tx.send_if_modified(|s| {
            let changed = s.epoch != Some(epoch);
            s.epoch = Some(epoch);
            changed
        });
    }

    pub fn restarted(&self) {
        self.tx.send_modify(|s| s.restarts += 1);
    }

    /// Sets the restream targets' states (written only when they changed), from another task.
    pub fn restream_setter(&self) -> impl Fn(Vec<hlsmark_store::RestreamStatus>) + Send + 'static {
        let tx = self.tx.clone();
        move |targets| {
            tx.send_if_modified(|s| {
                let changed = s.restream != targets;
                s.restream = targets;
                changed
            });
        }
    }

    pub fn state(&self) -> StreamState {
        self.tx.borrow().state
    }

    /// Stops the periodic writer and writes the final status once (bounded by the store timeout).
    pub async fn close(self, state: StreamState) {
        self.task.abort();
        let mut s = self.tx.borrow().clone();
        if s.state != state {
            s.state = state;
            s.since_90k = UtcTime::now();
        }
        s.updated_90k = UtcTime::now();
        let _ = tokio::time::timeout(OP_TIMEOUT, self.store.put_status(&self.stream, &s)).await;
    }
}

async fn status_loop(
    store: Arc<dyn Store>,
    stream: StreamName,
    mut rx: watch::Receiver<StreamStatus>,
) {
    let mut warned = false;
    loop {
        let mut s = rx.borrow_and_update().clone();
        s.updated_90k = UtcTime::now();
        match tokio::time::timeout(OP_TIMEOUT, store.put_status(&stream, &s)).await {
            Ok(Ok(())) => warned = false,
            Ok(Err(e)) if !warned => {
                warned = true;
                tracing::debug!(stream = %stream, error = %e, "could not write the stream status");
            }
            _ => {}
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            () = tokio::time::sleep(STATUS_PERIOD) => {}
        }
    }
}
