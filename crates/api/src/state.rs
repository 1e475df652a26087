//! Shared state of every worker: the store, the config, metrics, and per-stream views (timeline
//! and rendered live playlist) cached by `Store::version`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use hlsmark_clock::{Duration90k, HlsTime, Segment, Timeline};
use hlsmark_playlist::{DateRange, Kind};
use hlsmark_store::{ErrorKind, RangeQuery, Store, StoreError, StreamName};

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::files::OpenFiles;
use crate::metrics::Metrics;

/// Largest magnitude of a time on any clock (10,000 years of ticks), as the store accepts it.
pub const MAX_ABS_TICKS: i64 = 10_000 * 366 * 86_400 * 90_000;
/// How far before the window a marker may start and still be listed as a date range in it.
const DATERANGE_LOOKBACK: Duration90k = Duration90k::from_secs(600);
/// At most this many markers become date ranges in one live playlist.
const MAX_DATERANGES: usize = 2_000;

/// One in-flight `Store::version` call that concurrent requests share.
type VersionCheck = Shared<BoxFuture<'static, Result<u64, Arc<StoreError>>>>;

/// One stream as of one store version.
#[derive(Debug)]
pub struct StreamView {
    pub version: u64,
    pub timeline: Timeline,
    live: tokio::sync::OnceCell<Bytes>,
}

impl StreamView {
    fn new(version: u64, timeline: Timeline) -> Self {
        Self {
            version,
            timeline,
            live: tokio::sync::OnceCell::new(),
        }
    }
}

/// Segment and init files kept open (a live window of 30 segments plus older ones still asked
/// for by viewers behind the edge).
const OPEN_FILES: usize = 64;

/// What every handler gets (`web::Data<AppState>`).
#[derive(Debug)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub cfg: ApiConfig,
    pub metrics: Arc<Metrics>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Open files of recently served segments.
    pub open_files: OpenFiles,
    views: RwLock<HashMap<StreamName, Arc<StreamView>>>,
    version_checks: Mutex<HashMap<StreamName, VersionCheck>>,
    /// Last version read per stream and when that read started.
    versions_seen: RwLock<HashMap<StreamName, (Instant, u64)>>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        cfg: ApiConfig,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            open_files: OpenFiles::new(OPEN_FILES, cfg.revalidate),
            cfg,
            metrics: Arc::new(Metrics::default()),
            shutdown,
            views: RwLock::new(HashMap::new()),
            version_checks: Mutex::new(HashMap::new()),
            versions_seen: RwLock::new(HashMap::new()),
        }
    }

    /// Counts store failures for `/metrics` and turns them into API errors.
    pub fn track<T>(&self, r: Result<T, StoreError>) -> Result<T, ApiError> {
        r.map_err(|e| self.store_error(&e))
    }

    fn store_error(&self, e: &StoreError) -> ApiError {
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
        if let Ok(mut seen) = self.versions_seen.write() {
            seen.remove(stream);
        }
    }

    /// The stream's store version. A read younger than `cfg.revalidate` is reused; requests that
    /// arrive while a `version` call for the stream is in flight share its answer. Either way a
    /// burst of playlist requests costs one store call, not one each.
    async fn version(&self, stream: &StreamName) -> Result<u64, Arc<StoreError>> {
        let ttl = self.cfg.revalidate;
        if !ttl.is_zero()
            && let Ok(seen) = self.versions_seen.read()
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
            && let Ok(mut seen) = self.versions_seen.write()
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
        let cached = self.cached(stream);
        let version = match self.version(stream).await {
            Ok(v) => v,
            Err(e) => {
                let err = self.store_error(&e);
                if e.kind() == ErrorKind::Unavailable
                    && let Some(c) = cached
                {
                    return Ok(c);
                }
                return Err(err);
            }
        };
        if let Some(c) = cached
            && c.version == version
        {
            return Ok(c);
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
        Ok(view)
    }

    /// The live playlist exactly as [`Self::live_playlist`] would answer it now, when that needs
    /// no store call: the stream's version was read less than `revalidate` ago and the playlist
    /// of that version is rendered. `None` otherwise (the connection fast path then lets actix
    /// answer).
    pub fn live_playlist_if_fresh(&self, stream: &StreamName) -> Option<Bytes> {
        let ttl = self.cfg.revalidate;
        if ttl.is_zero() {
            return None;
        }
        let version = {
            let seen = self.versions_seen.read().ok()?;
            let (at, v) = seen.get(stream)?;
            (at.elapsed() < ttl).then_some(*v)?
        };
        let view = self.cached(stream)?;
        if view.version != version || view.timeline.is_empty() {
            return None;
        }
        view.live.get().cloned()
    }

    /// The live playlist of the stream, rendered at most once per store version.
    pub async fn live_playlist(&self, stream: &StreamName) -> Result<Bytes, ApiError> {
        let view = self.view(stream).await?;
        if view.timeline.is_empty() {
            return Err(ApiError::not_found(
                "unknown_stream",
                format!("stream {stream:?} has no segments yet"),
            ));
        }
        let text = view
            .live
            .get_or_try_init(|| async {
                let segs =
                    self.track(self.store.last_segments(stream, self.cfg.live_window).await)?;
                let text = self
                    .render(stream, &view.timeline, &segs, Kind::Live)
                    .await?;
                self.metrics
                    .playlist_renders
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok::<_, ApiError>(Bytes::from(text))
            })
            .await?;
        Ok(text.clone())
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
        let ranges = self
            .dateranges(stream, first - DATERANGE_LOOKBACK, last)
            .await?;
        hlsmark_playlist::render(timeline, segs, &ranges, kind)
            .map_err(|e| ApiError::internal(format!("rendering the playlist of {stream}: {e}")))
    }

    async fn dateranges(
        &self,
        stream: &StreamName,
        from: HlsTime,
        to: HlsTime,
    ) -> Result<Vec<DateRange>, ApiError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let q = RangeQuery::new(stream.clone(), from, to, 1000, after)?;
            let page = match self.store.query_markers(&q).await {
                Ok(p) => p,
                Err(e) if e.kind() == ErrorKind::UnknownStream => break,
                Err(e) => return Err(self.track(Err(e))?),
            };
            out.extend(page.markers.iter().map(|m| DateRange {
                id: m.id.to_string(),
                label: m.label.clone(),
                hls: m.hls,
                utc: m.utc,
                duration: m.duration,
            }));
            match page.next {
                Some(c) if out.len() < MAX_DATERANGES => after = Some(c),
                _ => break,
            }
        }
        Ok(out)
    }
}
