//! The live edge as it moves: one subscription to the store's update feed per process fans out to
//! per-stream watchers, so LL-HLS blocking playlist reloads (`_HLS_msn`/`_HLS_part`) and requests
//! for a hinted part wake when the store says something changed, in any process that wrote it
//! (Redis pub/sub across `serve` replicas, an in-process broadcast for the embedded store). Nothing
//! here polls: a waiter sleeps on a `watch` channel until an update or its deadline.
//!
//! The same feed keeps the version cache fresh: an update carries the stream's new version, so
//! the next request renders at that version without asking the store (`AppState::view`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use bytes::Bytes;
use hlsmark_clock::{Duration90k, HlsTime, Part, TICKS_PER_SECOND};
use hlsmark_playlist::{Blocking, Skip};
use hlsmark_store::{Store, StreamName, StreamUpdate};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::state::AppState;

/// Streams a process keeps watchers for (request paths name streams: never grow without bound).
const MAX_WATCHED: usize = 1024;
/// Longest any wait may last, whatever the target duration says (a 10 s target would otherwise
/// hold requests 30 s).
const MAX_WAIT: Duration = Duration::from_secs(12);

/// Last version read per stream and when it was read: the version cache `AppState::view` uses,
/// refreshed by store reads and by the update feed.
pub type VersionsSeen = RwLock<HashMap<StreamName, (Instant, u64)>>;

/// The per-process fan-out of the store's update feed.
#[derive(Debug, Default)]
pub struct LiveHub {
    pub(crate) versions_seen: VersionsSeen,
    watchers: Mutex<HashMap<StreamName, watch::Sender<u64>>>,
    /// The task that reads the feed, while it runs.
    pump: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl LiveHub {
    /// A receiver that sees every update of `stream` from now on. Take it before reading the state
    /// a wait depends on: an update that lands in between then wakes the wait at once.
    pub fn watch(&self, stream: &StreamName) -> watch::Receiver<u64> {
        let Ok(mut map) = self.watchers.lock() else {
            // A poisoned map: a receiver whose sender is gone makes the wait end at once (503).
            return watch::channel(0).1;
        };
        if let Some(tx) = map.get(stream) {
            return tx.subscribe();
        }
        if map.len() >= MAX_WATCHED {
            map.retain(|_, tx| tx.receiver_count() > 0);
        }
        let (tx, rx) = watch::channel(0);
        map.insert(stream.clone(), tx);
        rx
    }

    /// Starts reading the store's update feed unless a reader runs already.
    pub async fn ensure_pump(self: &Arc<Self>, store: &Arc<dyn Store>) -> Result<(), ApiError> {
        let mut pump = self.pump.lock().await;
        if pump.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        let mut rx = store.subscribe_updates().await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("cannot follow the store's updates: {e}"),
            )
        })?;
        let hub: Weak<Self> = Arc::downgrade(self);
        *pump = Some(tokio::spawn(async move {
            loop {
                let msg = rx.recv().await;
                let Some(hub) = hub.upgrade() else { return };
                match msg {
                    Ok(u) => hub.on_update(&u),
                    // Missed updates: every stream may have moved.
                    Err(RecvError::Lagged(_)) => hub.wake_all(),
                    Err(RecvError::Closed) => {
                        hub.wake_all();
                        return;
                    }
                }
            }
        }));
        Ok(())
    }

    fn on_update(&self, u: &StreamUpdate) {
        if let Ok(mut seen) = self.versions_seen.write() {
            if seen.len() >= MAX_WATCHED && !seen.contains_key(&u.stream) {
                seen.clear();
            }
            let v = seen
                .get(&u.stream)
                .map_or(u.version, |(_, v)| (*v).max(u.version));
            seen.insert(u.stream.clone(), (Instant::now(), v));
        }
        if let Ok(map) = self.watchers.lock()
            && let Some(tx) = map.get(&u.stream)
        {
            tx.send_replace(u.version);
        }
    }

    /// Forgets every cached version and wakes every waiter (they re-read).
    fn wake_all(&self) {
        if let Ok(mut seen) = self.versions_seen.write() {
            seen.clear();
        }
        if let Ok(map) = self.watchers.lock() {
            for tx in map.values() {
                tx.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }
}

/// `Duration90k` as a wait bound (non-negative, at most [`MAX_WAIT`]).
fn wait_bound(d: Duration90k) -> Duration {
    let ms = u64::try_from(d.ticks().max(0) / (TICKS_PER_SECOND / 1000)).unwrap_or(0);
    Duration::from_millis(ms).min(MAX_WAIT)
}

/// Why a wait ended without its answer.
enum Woke {
    Update,
    Deadline,
    Gone,
}

/// Sleeps until the stream's next update, the deadline or shutdown.
async fn next_update(
    state: &AppState,
    rx: &mut watch::Receiver<u64>,
    deadline: tokio::time::Instant,
) -> Woke {
    let mut shutdown = state.shutdown.clone();
    if *shutdown.borrow() {
        return Woke::Gone;
    }
    tokio::select! {
        r = tokio::time::timeout_at(deadline, rx.changed()) => match r {
            Ok(Ok(())) => Woke::Update,
            Ok(Err(_)) => Woke::Gone,
            Err(_) => Woke::Deadline,
        },
        _ = shutdown.changed() => Woke::Gone,
    }
}

fn unavailable(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
}

/// The live playlist for a blocking reload: answered once it holds segment `msn` (and part
/// `part`), 400 when that is further ahead than the spec lets a client ask, 503 after three target
/// durations without it (RFC 8216bis §6.2.5.2).
pub async fn blocking_playlist(
    state: &AppState,
    stream: &StreamName,
    msn: u64,
    part: Option<u64>,
    skip: Skip,
) -> Result<Bytes, ApiError> {
    let mut rx = state.live.watch(stream);
    state.live.ensure_pump(&state.store).await?;
    let started = tokio::time::Instant::now();
    let mut checked = false;
    loop {
        // While the store is down the last good playlist still answers what it holds.
        let answer = state.live_answer(stream).await?;
        let (view, live) = (answer.view, answer.live);
        let limit = wait_bound(live.edge.block_limit());
        match live.edge.blocking(msn, part) {
            Blocking::Ready => return Ok(live.body(skip, &view.timeline)),
            Blocking::TooFar => {
                return Err(ApiError::bad_request(
                    "hls_directive_too_far",
                    format!(
                        "_HLS_msn={msn}{} is further ahead than the spec allows: the playlist \
                         ends at segment {} (part {}); ask for at most segment {} or {} parts ahead",
                        part.map(|p| format!("&_HLS_part={p}")).unwrap_or_default(),
                        live.edge.msn,
                        live.edge.open_parts,
                        live.edge.msn.saturating_add(2),
                        live.edge.advance_part_limit(),
                    ),
                ));
            }
            Blocking::Wait => {}
        }
        // A stream whose ingest ended (a file played once, an import, a source that cannot
        // work) gets nothing more: said at once instead of after three target durations.
        if !checked {
            checked = true;
            if let Some(s) = crate::services::streams::ingest_status(state, stream).await
                && s.state.is_final()
            {
                return Err(unavailable(
                    "stream_not_running",
                    format!(
                        "segment {msn} of {stream} will not come: {} (the playlist without \
                         _HLS_msn lists what there is)",
                        crate::services::streams::state_phrase(&s)
                    ),
                ));
            }
        }
        match next_update(state, &mut rx, started + limit).await {
            Woke::Update => {}
            Woke::Deadline => {
                return Err(unavailable(
                    "playlist_not_ready",
                    format!(
                        "segment {msn}{} did not arrive within {} ms (the stream may be stalled)",
                        part.map(|p| format!(" part {p}")).unwrap_or_default(),
                        limit.as_millis()
                    ),
                ));
            }
            Woke::Gone => {
                return Err(unavailable(
                    "shutting_down",
                    "the server is stopping or lost the store's update feed".to_owned(),
                ));
            }
        }
    }
}

/// Waits (at most `bound`) until the stream's published media reaches past `t`: a marker posted
/// for "now" on a real source names a frame whose segment is not cut yet, and is snapped through
/// that segment's frame table once it is. `true` when it arrived, `false` at the bound (the
/// caller then snaps at the nominal rate, as before).
pub async fn wait_published(
    state: &AppState,
    stream: &StreamName,
    t: HlsTime,
    bound: Duration,
) -> Result<bool, ApiError> {
    let mut rx = state.live.watch(stream);
    state.live.ensure_pump(&state.store).await?;
    let deadline = tokio::time::Instant::now() + bound.min(MAX_WAIT);
    loop {
        let end = state
            .track(state.store.last_segments(stream, 1).await)?
            .last()
            .map(hlsmark_clock::Segment::hls_end);
        if end.is_some_and(|e| e > t) {
            return Ok(true);
        }
        match next_update(state, &mut rx, deadline).await {
            Woke::Update => {}
            Woke::Deadline | Woke::Gone => return Ok(false),
        }
    }
}

/// A part file: answered at once when it is there; the hinted part (the next one, not written
/// yet) is waited for (bounded like a blocking reload), then answered; anything else is 404.
pub async fn part_file(
    req: &actix_web::HttpRequest,
    state: &AppState,
    stream: &StreamName,
    file: &str,
) -> Result<actix_web::HttpResponse, ApiError> {
    let answer = || {
        crate::files::media_answer(
            req,
            &state.open_files,
            &state.metrics,
            &state.cfg.data_dir,
            stream,
            file,
        )
    };
    let Some((epoch, seq, index)) = Part::parse_file_name(file) else {
        return answer().await;
    };
    let mut rx = state.live.watch(stream);
    let waiting = state.live.ensure_pump(&state.store).await.is_ok();
    let started = tokio::time::Instant::now();
    loop {
        match answer().await {
            Err(e) if e.code == "segment_not_found" => {}
            other => return other,
        }
        let not_found = || {
            ApiError::not_found(
                "part_not_found",
                format!("{file} is not (or no longer, or not yet) a part of stream {stream}"),
            )
        };
        if !waiting {
            return Err(not_found());
        }
        let (_, live) = state.live_render(stream).await?;
        let same_epoch = live.last_epoch == Some(epoch);
        if !same_epoch || live.edge.blocking(seq, Some(u64::from(index))) != Blocking::Wait {
            // Listed (then the file is gone), of another epoch, or beyond the hint.
            return Err(not_found());
        }
        let limit = wait_bound(live.edge.block_limit());
        match next_update(state, &mut rx, started + limit).await {
            Woke::Update => {}
            Woke::Deadline | Woke::Gone => return Err(not_found()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_bounds_are_capped() {
        assert_eq!(wait_bound(Duration90k(270_000)), Duration::from_secs(3));
        assert_eq!(wait_bound(Duration90k(-5)), Duration::ZERO);
        assert_eq!(wait_bound(Duration90k(i64::MAX)), MAX_WAIT);
    }

    #[tokio::test]
    async fn updates_wake_the_streams_watchers_only() {
        let hub = LiveHub::default();
        let a = StreamName::new("a").unwrap_or_else(|_| unreachable!());
        let b = StreamName::new("b").unwrap_or_else(|_| unreachable!());
        let mut ra = hub.watch(&a);
        let rb = hub.watch(&b);
        hub.on_update(&StreamUpdate {
            stream: a.clone(),
            version: 7,
        });
        assert!(ra.has_changed().unwrap_or(false));
        assert!(!rb.has_changed().unwrap_or(true));
        assert_eq!(*ra.borrow_and_update(), 7);
        let seen = hub.versions_seen.read().map(|m| m.get(&a).map(|x| x.1));
        assert_eq!(seen.ok().flatten(), Some(7));
        hub.wake_all();
        assert!(rb.has_changed().unwrap_or(false));
    }
}
