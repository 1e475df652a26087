//! Shared state of every worker: the store, the config, metrics, and per-stream views (timeline,
//! segment index and rendered live playlist, LL-HLS parts included) cached by `Store::version`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use hlsmark_clock::{Duration90k, HlsTime, Part, Segment, Timeline, UtcTime};
use hlsmark_playlist::{DateRange, Kind, LiveEdge, LowLatency, Skip};
use hlsmark_store::{ErrorKind, RangeQuery, Store, StoreError, StreamName};

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::files::OpenFiles;
use crate::metrics::Metrics;
use crate::services::live::LiveHub;
use crate::services::removed::{RecentlyRemoved, Removed};
use crate::services::segment_index::SegmentIndex;
use crate::services::snap::FrameTables;

/// Largest magnitude of a time on any clock (10,000 years of ticks), as the store accepts it: the
/// clock crate's one bound.
pub use hlsmark_clock::MAX_ABS_TICKS;
/// How far before the window a marker may start and still be listed as a date range in it.
const DATERANGE_LOOKBACK: Duration90k = Duration90k::from_secs(600);
/// At most this many markers become date ranges in one playlist (live or VOD): the newest that
/// overlap its window. A capped playlist says so in a comment line ([`CAPPED_NOTE`]).
pub const MAX_DATERANGES: usize = 2_000;
/// Markers that started before the window are looked for among the newest this many of the
/// lookback (a marker long enough to reach into the window behind more than this many later ones
/// is not listed; `/markers` always has it).
const LOOKBACK_SCAN: usize = 20_000;
/// The comment written after `#EXTM3U` when a playlist holds more overlapping markers than
/// [`MAX_DATERANGES`] (players ignore comments).
pub const CAPPED_NOTE: &str = "# hlsmark: more markers overlap this playlist than its cap; the newest are listed as EXT-X-DATERANGE, GET /markers?from=&to= has them all";
/// After the store failed a live playlist, the last good one is served without asking the
/// store again for this long (a stopped Redis would cost every request its 800 ms timeout).
const STALE_GRACE: std::time::Duration = std::time::Duration::from_millis(1000);

/// One in-flight `Store::version` call that concurrent requests share.
type VersionCheck = Shared<BoxFuture<'static, Result<u64, Arc<StoreError>>>>;

/// Parts of this many segments before the newest one are read to learn the part target (the
/// ingest keeps four segments' parts).
const PART_TARGET_SEGMENTS: u64 = 3;

/// The live playlist of one version and what blocking requests compare with.
#[derive(Debug)]
pub struct LiveRender {
    /// The whole playlist (LL-HLS when the stream has parts, else exactly the plain one).
    pub full: Bytes,
    /// Where it ends.
    pub edge: LiveEdge,
    /// Epoch of the newest segment.
    pub last_epoch: Option<u32>,
    /// Kept parts were found: the playlist is an LL one and supports delta updates.
    pub ll: bool,
    segs: Vec<Segment>,
    parts: Vec<Part>,
    ranges: Vec<DateRange>,
    part_target: Duration90k,
    /// IDs of date ranges recently removed from the playlist, for `_HLS_skip=v2`, and whether
    /// this process can know them all yet (see [`crate::services::removed`]).
    removed: Option<RecentlyRemoved>,
    skip_segments: OnceLock<Bytes>,
    skip_dateranges: OnceLock<Bytes>,
}

impl LiveRender {
    /// The playlist a request gets: the whole one, or the delta update it asked for (`_HLS_skip`
    /// is ignored when the playlist offers none, RFC 8216bis §6.2.5.1). A delta is rendered once
    /// per version, on first use. A v2 delta is answered with the whole playlist (always a valid
    /// answer to a skip request, RFC 8216bis §6.2.5.1) while this process cannot name every date
    /// range removed within the skip boundary: for one skip boundary after it started watching
    /// the stream (deletions before that were seen, if at all, by another process).
    pub fn body(&self, skip: Skip, timeline: &Timeline) -> Bytes {
        let cell = match skip {
            _ if !self.ll => return self.full.clone(),
            Skip::No => return self.full.clone(),
            Skip::Segments => &self.skip_segments,
            Skip::SegmentsAndDateRanges
                if !self
                    .removed
                    .as_ref()
                    .is_some_and(|r| r.watched.complete(UtcTime::now())) =>
            {
                return self.full.clone();
            }
            Skip::SegmentsAndDateRanges => &self.skip_dateranges,
        };
        cell.get_or_init(|| {
            let ll = LowLatency {
                part_target: self.part_target,
                parts: &self.parts,
                skip,
                now: UtcTime::now(),
                // Fixed per version: the list only changes with a new view.
                removed_dateranges: self.removed.as_ref().map_or(&[], |r| r.ids.as_slice()),
            };
            hlsmark_playlist::render_live_ll(timeline, &self.segs, &self.ranges, &ll)
                .map_or_else(|_| self.full.clone(), Bytes::from)
        })
        .clone()
    }
}

/// The part target of a stream: its longest kept part, rounded up to the millisecond (ffmpeg
/// cuts a fragment at the first frame at or after `--part-duration`, so this is stable).
fn part_target(parts: &[Part]) -> Duration90k {
    let longest = parts.iter().map(|p| p.duration.ticks()).max().unwrap_or(0);
    let ms = TICKS_PER_MS;
    Duration90k(longest.saturating_add(ms - 1) / ms * ms)
}
const TICKS_PER_MS: i64 = 90;

/// `CAN-SKIP-UNTIL` of a live playlist listing `listed`, computed as the renderer does: 6 target
/// durations, the target being the longest segment (or epoch segment duration) rounded to
/// whole seconds, at least 1.
fn skip_boundary(timeline: &Timeline, listed: &[&Segment]) -> Duration90k {
    let longest = listed
        .iter()
        .map(|s| {
            timeline
                .epoch_at_hls(s.hls_start)
                .map_or(s.duration, |e| s.duration.max(e.segment_duration()))
        })
        .fold(Duration90k::ZERO, Duration90k::max);
    let secs = ((longest.ticks().max(0) + 45_000) / 90_000).max(1);
    Duration90k(
        secs.saturating_mul(90_000)
            .saturating_mul(hlsmark_playlist::ll::SKIP_UNTIL_TARGETS),
    )
}

/// One stream as of one store version.
#[derive(Debug)]
pub struct StreamView {
    pub version: u64,
    pub timeline: Timeline,
    live: tokio::sync::OnceCell<Arc<LiveRender>>,
    /// The segment index at this version, built on first use (the live playlist needs none).
    index: tokio::sync::OnceCell<Arc<SegmentIndex>>,
}

impl StreamView {
    fn new(version: u64, timeline: Timeline) -> Self {
        Self {
            version,
            timeline,
            live: tokio::sync::OnceCell::new(),
            index: tokio::sync::OnceCell::new(),
        }
    }
}

/// Segment, part and init files kept in memory (a live window of 30 segments, the ~25 parts of
/// the live edge, plus older segments still asked for by viewers behind the edge).
const OPEN_FILES: usize = 128;

/// What every handler gets (`web::Data<AppState>`).
#[derive(Debug)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub cfg: ApiConfig,
    pub metrics: Arc<Metrics>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Open files of recently served segments.
    pub open_files: OpenFiles,
    /// Frame tables of segments markers were snapped in.
    pub frame_tables: FrameTables,
    views: RwLock<HashMap<StreamName, Arc<StreamView>>>,
    /// The newest segment index built per stream: the next version extends it.
    indexes: Mutex<HashMap<StreamName, Arc<SegmentIndex>>>,
    version_checks: Mutex<HashMap<StreamName, VersionCheck>>,
    /// The store's update feed fanned out to waiters, and the last version seen per stream.
    pub live: Arc<LiveHub>,
    /// The last live playlist rendered per stream: served (marked stale) while the store fails.
    last_live: RwLock<LastLive>,
    /// Until when live playlists skip the store after it failed (see [`STALE_GRACE`]).
    store_down_until: Mutex<Option<Instant>>,
    /// Live playlists answered stale (from the last good render) since start.
    pub stale_playlists: std::sync::atomic::AtomicU64,
    /// Date ranges removed from each stream's live playlist, for `_HLS_skip=v2` deltas.
    removed: Removed,
}

/// The last live playlist rendered per stream, with its view.
type LastLive = HashMap<StreamName, (Arc<StreamView>, Arc<LiveRender>)>;

/// A live playlist answer: fresh, or the last good one while the store is unreachable.
#[derive(Debug, Clone)]
pub struct LiveAnswer {
    pub view: Arc<StreamView>,
    pub live: Arc<LiveRender>,
    /// Served from the last good render because the store failed (`X-Hlsmark-Stale: 1`).
    pub stale: bool,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        cfg: ApiConfig,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            open_files: match &cfg.media {
                Some(m) => OpenFiles::new(OPEN_FILES, cfg.revalidate).with_remote(m.clone()),
                None => OpenFiles::new(OPEN_FILES, cfg.revalidate),
            },
            cfg,
            metrics: Arc::new(Metrics::default()),
            shutdown,
            frame_tables: FrameTables::default(),
            views: RwLock::new(HashMap::new()),
            indexes: Mutex::new(HashMap::new()),
            version_checks: Mutex::new(HashMap::new()),
            live: Arc::new(LiveHub::default()),
            last_live: RwLock::new(HashMap::new()),
            store_down_until: Mutex::new(None),
            stale_playlists: std::sync::atomic::AtomicU64::new(0),
            removed: Removed::default(),
        }
    }

    /// The live playlist, or while the store fails (503) the last one rendered for the stream
    /// (`stale`), whatever request came before: video keeps playing through a store outage. For
    /// [`STALE_GRACE`] after a failure the stale one is served without asking the store.
    pub async fn live_answer(&self, stream: &StreamName) -> Result<LiveAnswer, ApiError> {
        let last = || {
            self.last_live
                .read()
                .ok()
                .and_then(|m| m.get(stream).cloned())
        };
        let down = self
            .store_down_until
            .lock()
            .ok()
            .and_then(|d| *d)
            .is_some_and(|until| Instant::now() < until);
        if down && let Some((view, live)) = last() {
            self.stale_playlists
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(LiveAnswer {
                view,
                live,
                stale: true,
            });
        }
        let fresh = match self.view_checked(stream).await {
            // The store failed and the cached view stands in: the last render is at least as new.
            Ok((_, true)) => Err(ApiError::from(StoreError::Unavailable(
                "the store did not answer the version check".into(),
            ))),
            Ok((view, false)) => self.live_of(stream, &view).await.map(|live| (view, live)),
            Err(e) => Err(e),
        };
        match fresh {
            Ok((view, live)) => {
                let was_down = self
                    .store_down_until
                    .lock()
                    .ok()
                    .and_then(|mut d| d.take())
                    .is_some();
                if was_down {
                    tracing::info!(stream = %stream, "store answers again; live playlists are fresh");
                }
                Ok(LiveAnswer {
                    view,
                    live,
                    stale: false,
                })
            }
            Err(e) if e.status == actix_web::http::StatusCode::SERVICE_UNAVAILABLE => {
                let first = self
                    .store_down_until
                    .lock()
                    .ok()
                    .map(|mut d| d.replace(Instant::now() + STALE_GRACE).is_none())
                    .unwrap_or(false);
                let Some((view, live)) = last() else {
                    return Err(e);
                };
                if first {
                    tracing::warn!(
                        stream = %stream,
                        error = %e,
                        "store unreachable; serving the last good live playlist (X-Hlsmark-Stale: 1)"
                    );
                }
                self.stale_playlists
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(LiveAnswer {
                    view,
                    live,
                    stale: true,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Counts store failures for `/metrics` and turns them into API errors.
    pub fn track<T>(&self, r: Result<T, StoreError>) -> Result<T, ApiError> {
        r.map_err(|e| self.store_error(&e))
    }

    pub(crate) fn store_error(&self, e: &StoreError) -> ApiError {
        if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Internal) {
            self.metrics
                .store_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(error = %e, "store call failed");
        }
        ApiError::from(e)
    }

    /// Forgets the last version read of a stream (after a write through this server), so the
    /// next request sees the write at once.
    pub fn invalidate(&self, stream: &StreamName) {
        if let Ok(mut seen) = self.live.versions_seen.write() {
            seen.remove(stream);
        }
    }

    /// The stream's store version. A read younger than `cfg.revalidate` is reused; requests that
    /// arrive while a `version` call for the stream is in flight share its answer. Either way a
    /// burst of playlist requests costs one store call, not one each.
    async fn version(&self, stream: &StreamName) -> Result<u64, Arc<StoreError>> {
        let ttl = self.cfg.revalidate;
        if !ttl.is_zero()
            && let Ok(seen) = self.live.versions_seen.read()
            && let Some((at, v)) = seen.get(stream)
            && at.elapsed() < ttl
        {
            return Ok(*v);
        }
        let started = Instant::now();
        let check = {
            let Ok(mut map) = self.version_checks.lock() else {
                return self.store.version(stream).await.map_err(Arc::new);
            };
            match map.get(stream) {
                Some(c) if c.peek().is_none() => c.clone(),
                _ => {
                    let (store, s) = (self.store.clone(), stream.clone());
                    let c = async move { store.version(&s).await.map_err(Arc::new) }
                        .boxed()
                        .shared();
                    if map.len() >= 1024 {
                        // Requests name streams: never let them grow this map without bound.
                        map.retain(|_, c| c.peek().is_none());
                    }
                    map.insert(stream.clone(), c.clone());
                    c
                }
            }
        };
        let v = check.await?;
        if !ttl.is_zero()
            && let Ok(mut seen) = self.live.versions_seen.write()
        {
            if seen.len() >= 1024 {
                seen.clear();
            }
            let newer = seen.get(stream).is_none_or(|(at, _)| *at < started);
            if newer {
                seen.insert(stream.clone(), (started, v));
            }
        }
        Ok(v)
    }

    /// A stream name from a request (or the default one).
    pub fn stream(&self, name: Option<&str>) -> Result<StreamName, ApiError> {
        match name {
            None => Ok(self.cfg.default_stream.clone()),
            Some(s) => StreamName::new(s).map_err(ApiError::from),
        }
    }

    fn cached(&self, stream: &StreamName) -> Option<Arc<StreamView>> {
        self.views.read().ok()?.get(stream).cloned()
    }

    /// The stream's view at the store's current version (see [`Self::version`] for how often
    /// that is read); epochs are re-read only when it moved. If the store is unreachable and a view is cached, the
    /// cached one is used (video keeps playing while the store is down).
    pub async fn view(&self, stream: &StreamName) -> Result<Arc<StreamView>, ApiError> {
        Ok(self.view_checked(stream).await?.0)
    }

    /// [`Self::view`], and whether it is the cached one because the store failed.
    async fn view_checked(&self, stream: &StreamName) -> Result<(Arc<StreamView>, bool), ApiError> {
        let cached = self.cached(stream);
        let version = match self.version(stream).await {
            Ok(v) => v,
            Err(e) => {
                let err = self.store_error(&e);
                if e.kind() == ErrorKind::Unavailable
                    && let Some(c) = cached
                {
                    return Ok((c, true));
                }
                return Err(err);
            }
        };
        if let Some(c) = cached
            && c.version == version
        {
            return Ok((c, false));
        }
        let epochs = self.track(self.store.epochs(stream).await)?;
        let timeline = Timeline::new(epochs)
            .map_err(|e| ApiError::internal(format!("stored epochs of {stream}: {e}")))?;
        let view = Arc::new(StreamView::new(version, timeline));
        // Only streams that exist are cached: request paths cannot grow the map.
        if !view.timeline.is_empty()
            && let Ok(mut map) = self.views.write()
        {
            let newer = map.get(stream).is_none_or(|c| c.version != version);
            if newer {
                map.insert(stream.clone(), view.clone());
            }
        }
        Ok((view, false))
    }

    /// The stream's segment index at the view's version: the last one built, trimmed and
    /// extended with what changed in the store (built once per version, on first use).
    pub async fn index(
        &self,
        stream: &StreamName,
        view: &StreamView,
    ) -> Result<Arc<SegmentIndex>, ApiError> {
        let index = view
            .index
            .get_or_try_init(|| async {
                let prev = self
                    .indexes
                    .lock()
                    .ok()
                    .and_then(|m| m.get(stream).cloned())
                    .unwrap_or_default();
                let next = Arc::new(self.track(prev.refreshed(&*self.store, stream).await)?);
                // Only streams that exist are kept: request paths cannot grow the map.
                if !view.timeline.is_empty()
                    && let Ok(mut m) = self.indexes.lock()
                {
                    if m.len() >= 1024 {
                        m.clear();
                    }
                    m.insert(stream.clone(), next.clone());
                }
                Ok::<_, ApiError>(next)
            })
            .await?;
        Ok(index.clone())
    }

    /// The view and segment index of a stream, for `services::clocks::Clocks`: `Clocks::new(&view.timeline,
    /// &index)`.
    pub async fn clocks(
        &self,
        stream: &StreamName,
    ) -> Result<(Arc<StreamView>, Arc<SegmentIndex>), ApiError> {
        let view = self.view(stream).await?;
        let index = self.index(stream, &view).await?;
        Ok((view, index))
    }

    /// The live playlist of the stream (the whole one), rendered at most once per store version.
    pub async fn live_playlist(&self, stream: &StreamName) -> Result<Bytes, ApiError> {
        Ok(self.live_render(stream).await?.1.full.clone())
    }

    /// The stream's view and its live playlist at the current version, rendered at most once per
    /// version: LL-HLS (parts, hint, server control) when the store keeps parts of the stream,
    /// otherwise exactly the plain live playlist.
    pub async fn live_render(
        &self,
        stream: &StreamName,
    ) -> Result<(Arc<StreamView>, Arc<LiveRender>), ApiError> {
        let view = self.view(stream).await?;
        let live = self.live_of(stream, &view).await?;
        Ok((view, live))
    }

    /// The live playlist of a view, rendered once per view (its version).
    async fn live_of(
        &self,
        stream: &StreamName,
        view: &Arc<StreamView>,
    ) -> Result<Arc<LiveRender>, ApiError> {
        if view.timeline.is_empty() {
            return Err(ApiError::not_found(
                "unknown_stream",
                format!("stream {stream:?} has no segments yet"),
            ));
        }
        let live = view
            .live
            .get_or_try_init(|| async {
                // The DVR window in segments of the newest epoch (`ApiConfig::live_segments`).
                let n = self.cfg.live_segments(
                    view.timeline
                        .last()
                        .map_or(Duration90k(90_000), |e| e.segment_duration()),
                );
                let segs = self.track(self.store.last_segments(stream, n).await)?;
                // Segments first, then parts: a segment cut in between shows as the open
                // segment's complete set of parts, never as a hole.
                let newest = segs.iter().map(|s| s.seq).max().unwrap_or(0);
                let parts = self.track(
                    self.store
                        .parts(stream, newest.saturating_sub(PART_TARGET_SEGMENTS))
                        .await,
                )?;
                let live = self
                    .render_live(stream, &view.timeline, segs, parts)
                    .await?;
                self.metrics
                    .playlist_renders
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok::<_, ApiError>(Arc::new(live))
            })
            .await?
            .clone();
        // This process still watches the stream (see `services::removed`).
        self.removed.touch(stream, UtcTime::now());
        // Kept for a store outage (only streams that exist get here: bounded by the streams).
        if let Ok(mut m) = self.last_live.write() {
            let newer = m.get(stream).is_none_or(|(_, l)| !Arc::ptr_eq(l, &live));
            if newer {
                m.insert(stream.clone(), (view.clone(), live.clone()));
            }
        }
        Ok(live)
    }

    async fn render_live(
        &self,
        stream: &StreamName,
        timeline: &Timeline,
        segs: Vec<Segment>,
        parts: Vec<Part>,
    ) -> Result<LiveRender, ApiError> {
        let no_segments = || {
            ApiError::not_found(
                "no_segments",
                format!("stream {stream:?} has no segments in that range"),
            )
        };
        let listed = hlsmark_playlist::listed_segments(&segs, Kind::Live);
        let (Some(first), Some(last)) = (listed.first(), listed.last()) else {
            return Err(no_segments());
        };
        let ll = !parts.is_empty();
        let end = parts
            .iter()
            .map(Part::hls_end)
            .max()
            .unwrap_or(last.hls_end())
            .max(last.hls_end());
        let last_epoch = Some(last.epoch);
        let (ranges, capped) = self.dateranges(stream, first.hls_start, end).await?;
        let part_target = part_target(&parts);
        let removed = self.removed.observe(
            stream,
            UtcTime::now(),
            ranges.iter().map(|d| d.id.as_str()),
            skip_boundary(timeline, &listed),
        );
        let render_err = |e: hlsmark_playlist::PlaylistError| {
            ApiError::internal(format!("rendering the playlist of {stream}: {e}"))
        };
        let (full, edge) = if ll {
            let low = LowLatency {
                part_target,
                parts: &parts,
                skip: Skip::No,
                now: UtcTime::now(),
                removed_dateranges: &[],
            };
            (
                hlsmark_playlist::render_live_ll(timeline, &segs, &ranges, &low)
                    .map_err(render_err)?,
                LiveEdge::of(&segs, Some((&parts, part_target))),
            )
        } else {
            (
                hlsmark_playlist::render(timeline, &segs, &ranges, Kind::Live)
                    .map_err(render_err)?,
                LiveEdge::of(&segs, None),
            )
        };
        let edge = edge.ok_or_else(no_segments)?;
        Ok(LiveRender {
            full: Bytes::from(note_cap(full, capped)),
            edge,
            last_epoch,
            ll,
            segs,
            parts,
            ranges,
            part_target,
            removed,
            skip_segments: OnceLock::new(),
            skip_dateranges: OnceLock::new(),
        })
    }

    /// Renders a playlist over `segs` with the markers that overlap them.
    pub async fn render(
        &self,
        stream: &StreamName,
        timeline: &Timeline,
        segs: &[Segment],
        kind: Kind,
    ) -> Result<String, ApiError> {
        let (Some(first), Some(last)) = (
            segs.iter().map(|s| s.hls_start).min(),
            segs.iter().map(Segment::hls_end).max(),
        ) else {
            return Err(ApiError::not_found(
                "no_segments",
                format!("stream {stream:?} has no segments in that range"),
            ));
        };
        let (ranges, capped) = self.dateranges(stream, first, last).await?;
        hlsmark_playlist::render(timeline, segs, &ranges, kind)
            .map(|text| note_cap(text, capped))
            .map_err(|e| ApiError::internal(format!("rendering the playlist of {stream}: {e}")))
    }

    /// The markers that overlap `[from, to)` as date ranges, at most [`MAX_DATERANGES`], the
    /// newest kept, in (hls, id) order; `true` when some were left out. Queried by range, newest
    /// first: those starting in the window, then (if there is room) those that started up to
    /// [`DATERANGE_LOOKBACK`] before it and still reach into it, however many markers came before.
    async fn dateranges(
        &self,
        stream: &StreamName,
        from: HlsTime,
        to: HlsTime,
    ) -> Result<(Vec<DateRange>, bool), ApiError> {
        let mut out = Vec::new();
        let inside = self
            .markers_newest_first(stream, from, to, MAX_DATERANGES, |_| true)
            .await?;
        let mut capped = inside.1;
        out.extend(inside.0);
        if !capped && out.len() < MAX_DATERANGES {
            let room = MAX_DATERANGES - out.len();
            let before = self
                .markers_newest_first(stream, from - DATERANGE_LOOKBACK, from, room, |m| {
                    m.hls + m.duration > from
                })
                .await?;
            capped = before.1;
            out.extend(before.0);
        }
        out.sort_by(|a, b| (a.hls, &a.id).cmp(&(b.hls, &b.id)));
        Ok((out, capped))
    }

    /// Up to `want` markers of `[from, to)` that pass `keep`, newest first, scanning at most
    /// [`LOOKBACK_SCAN`] markers; `true` when more would have been kept.
    async fn markers_newest_first(
        &self,
        stream: &StreamName,
        from: HlsTime,
        to: HlsTime,
        want: usize,
        keep: impl Fn(&DateRange) -> bool,
    ) -> Result<(Vec<DateRange>, bool), ApiError> {
        let mut out = Vec::new();
        let mut after = None;
        let mut scanned = 0;
        loop {
            let q = RangeQuery::new(stream.clone(), from, to, 1000, after)?.newest_first();
            let page = match self.store.query_markers(&q).await {
                Ok(p) => p,
                Err(e) if e.kind() == ErrorKind::UnknownStream => break,
                Err(e) => return Err(self.track(Err(e))?),
            };
            scanned += page.markers.len();
            for m in &page.markers {
                let d = DateRange {
                    id: m.id.to_string(),
                    label: m.label.clone(),
                    hls: m.hls,
                    utc: m.utc,
                    duration: m.duration,
                    created: m.created_at,
                    style: hlsmark_playlist::DateRangeStyle {
                        severity: (m.severity != hlsmark_store::Severity::Info)
                            .then(|| m.severity.as_str().to_owned()),
                        color: m.color.clone(),
                        tags: m.tags.clone(),
                    },
                };
                if keep(&d) {
                    if out.len() == want {
                        return Ok((out, true));
                    }
                    out.push(d);
                }
            }
            match page.next {
                Some(c) if scanned < LOOKBACK_SCAN => after = Some(c),
                _ => break,
            }
        }
        Ok((out, false))
    }
}

/// Adds [`CAPPED_NOTE`] after the `#EXTM3U` line of a capped playlist.
fn note_cap(text: String, capped: bool) -> String {
    if !capped {
        return text;
    }
    match text.split_once('\n') {
        Some((head, rest)) => format!("{head}\n{CAPPED_NOTE}\n{rest}"),
        None => text,
    }
}
