//! The store writer: one ordered queue of epochs, segments and markers, written by one task.
//!
//! Order matters and is kept: an epoch is written before its segments, a marker after the segment
//! that holds its first frame. While the store is unreachable, writes wait in the queue (bounded by
//! `queue_limit`; when full the oldest segment record is dropped and counted, never an epoch or a
//! marker unless nothing else is left) and are retried with a short backoff until it returns.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hlsmark_clock::{Epoch, Segment};
use hlsmark_store::{ErrorKind, Marker, Store, StoreError, StreamName};
use tokio::sync::mpsc;

/// One write to the store.
#[derive(Debug, Clone)]
pub enum Op {
    Epoch(Epoch),
    Segment(Segment),
    Marker(Marker),
}

/// Counters shared with the supervisor (for the report and the logs).
#[derive(Debug, Default)]
pub struct PublishStats {
    pub segments: AtomicU64,
    pub markers: AtomicU64,
    pub epochs: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Refused by the store (invalid or conflicting): logged, not retried.
    pub rejected: AtomicU64,
    /// Largest queue length seen.
    pub max_queued: AtomicU64,
    /// Times the store went from reachable to unreachable.
    pub outages: AtomicU64,
}

const OP_TIMEOUT: Duration = Duration::from_secs(3);

async fn write(store: &dyn Store, stream: &StreamName, op: &Op) -> Result<(), StoreError> {
    let fut = async {
        match op {
            Op::Epoch(e) => store.put_epoch(stream, e).await,
            Op::Segment(s) => store.append_segment(stream, s).await,
            Op::Marker(m) => store.insert_marker(m).await.map(|_| ()),
        }
    };
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Timeout(
            u64::try_from(OP_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
        )),
    }
}

fn push_bounded(q: &mut VecDeque<Op>, op: Op, limit: usize, stats: &PublishStats) {
    q.push_back(op);
    if q.len() > limit {
        let victim = q
            .iter()
            .position(|o| matches!(o, Op::Segment(_)))
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

/// Runs until `rx` is closed and the queue is empty. Returns the writes still queued when it
/// stopped (0 unless it was aborted).
pub async fn run_publisher(
    store: Arc<dyn Store>,
    stream: StreamName,
    mut rx: mpsc::UnboundedReceiver<Op>,
    limit: usize,
    stats: Arc<PublishStats>,
) {
    let mut q: VecDeque<Op> = VecDeque::new();
    let mut closed = false;
    let mut down_since: Option<tokio::time::Instant> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        // Take everything that is waiting without blocking.
        while let Ok(op) = rx.try_recv() {
            push_bounded(&mut q, op, limit, &stats);
        }
        let Some(op) = q.front() else {
            if closed {
                return;
            }
            match rx.recv().await {
                Some(op) => push_bounded(&mut q, op, limit, &stats),
                None => closed = true,
            }
            continue;
        };
        match write(store.as_ref(), &stream, op).await {
            Ok(()) => {
                match op {
                    Op::Epoch(_) => stats.epochs.fetch_add(1, Ordering::Relaxed),
                    Op::Segment(_) => stats.segments.fetch_add(1, Ordering::Relaxed),
                    Op::Marker(_) => stats.markers.fetch_add(1, Ordering::Relaxed),
                };
                q.pop_front();
                if let Some(t) = down_since.take() {
                    tracing::info!(
                        after_ms = t.elapsed().as_millis(),
                        queued = q.len() + 1,
                        "store reachable again; writing the queued records"
                    );
                }
                backoff = Duration::from_millis(100);
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
                q.pop_front();
            }
            Err(e) => {
                if down_since.is_none() {
                    down_since = Some(tokio::time::Instant::now());
                    stats.outages.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, queued = q.len(), "store unreachable; queueing writes");
                }
                // Wait, but keep accepting new records meanwhile.
                let sleep = tokio::time::sleep(backoff);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        op = rx.recv(), if !closed => match op {
                            Some(op) => push_bounded(&mut q, op, limit, &stats),
                            None => closed = true,
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
