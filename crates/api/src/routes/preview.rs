//! Pictures: `GET /preview/{stream}.gif` (an endless animated GIF), `GET /preview/{stream}.mjpeg`
//! (Motion JPEG), `GET /thumbnail/{stream}.jpg?t=` and `GET /markers/{id}/thumbnail.jpg` (the
//! exact frame at an instant, from the retained segment), and the seek bar's thumbnail track:
//! `GET /thumbs/{stream}.vtt` (WebVTT) and its tiles `GET /thumbs/{stream}/{seq}.jpg`
//! (`services::tiles`).
//!
//! The moving pictures come from `hlsmark_previews::Hub` (`ApiConfig::previews`): one encoder per
//! stream, format, width and rate, fanned out to every viewer; this module only checks the
//! request and turns a viewer's queue into the answer body. Thumbnails are snapped to a frame
//! through the segment's frame table (as markers are) and decoded by `hlsmark_previews::thumbs`.

use std::fmt::Write as _;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use hlsmark_clock::HlsTime;
use hlsmark_previews::{Format, Hub, PreviewError, ThumbKey, Viewer};
use hlsmark_store::{StreamName, StreamState};
use serde::Deserialize;

use crate::error::ApiError;
use crate::routes::params::{TimeParam, parse_u64};
use crate::services::clocks::Clocks;
use crate::services::snap::SnapError;
use crate::state::AppState;

/// Half a millisecond: how far before a frame a time given in seconds or RFC 3339 may land and
/// still mean that frame.
const INPUT_TOLERANCE: hlsmark_clock::Duration90k = hlsmark_clock::Duration90k(45);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    width: Option<String>,
    fps: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThumbQuery {
    t: Option<String>,
    width: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkerThumbQuery {
    stream: Option<String>,
    width: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackQuery {
    from: Option<String>,
    to: Option<String>,
    seq: Option<String>,
}

pub(crate) fn preview_error(e: PreviewError) -> ApiError {
    match e {
        PreviewError::Width(_) | PreviewError::Fps(_) => {
            ApiError::bad_request("invalid_parameter", e.to_string())
        }
        PreviewError::NoPreview(_) => ApiError::not_found("no_preview", e.to_string()),
        PreviewError::TooManyViewers { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_viewers",
            format!("{e}; retry later"),
        ),
        PreviewError::Busy => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()),
        // Retention removed the segment while its picture was being made.
        PreviewError::Read { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            ApiError::not_found(
                "no_frame",
                "the segment left the retention while its picture was being made",
            )
        }
        other => {
            let mut msg = other.to_string();
            let mut src = std::error::Error::source(&other);
            while let Some(s) = src {
                let _ = write!(msg, ": {s}");
                src = s.source();
            }
            tracing::warn!(error = %msg, "picture failed");
            ApiError::internal(msg)
        }
    }
}

/// `width=` or `fps=`: a whole number, checked against its range by [`Hub::check`]; what is not
/// a number gets that range in its message too (`width=-1: must be 64 to 1280 pixels`).
fn number(name: &str, v: Option<&str>) -> Result<Option<u32>, ApiError> {
    let Some(s) = v else { return Ok(None) };
    match parse_u64(name, s, u64::from(u32::MAX)) {
        Ok(n) => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
        Err(_) => {
            let range = match name {
                "width" => format!(
                    "{} to {} pixels",
                    hlsmark_previews::WIDTHS.start(),
                    hlsmark_previews::WIDTHS.end()
                ),
                _ => format!(
                    "{} to {} pictures a second",
                    hlsmark_previews::RATES.start(),
                    hlsmark_previews::RATES.end()
                ),
            };
            Err(ApiError::bad_request(
                "invalid_parameter",
                format!(
                    "{name}={:?}: must be a whole number, {range}",
                    s.chars().take(32).collect::<String>()
                ),
            ))
        }
    }
}

/// The stream must exist: it has an in-process preview feed, or the store knows it.
async fn known_stream(state: &AppState, hub: &Hub, stream: &StreamName) -> Result<(), ApiError> {
    if hub.has_feed(stream.as_str()) {
        return Ok(());
    }
    let view = state.view(stream).await?;
    if view.timeline.is_empty() {
        return Err(crate::services::streams::no_timeline(state, stream).await);
    }
    Ok(())
}

/// A picture file older than this is not a live preview: its ingest stopped writing it.
const PICTURE_FILE_STALE: std::time::Duration = std::time::Duration::from_secs(10);

/// A stream whose ingest runs in another process is previewed from the `preview.jpg` that ingest
/// writes into its stream directory (design/previews.md, "Across processes"). An API node that
/// does not see a fresh one (a separate media store such as S3, an ingest on another machine,
/// `--preview-fps 0`, or an ingest that is down) answers 404 `no_preview` at once, with the
/// reason, instead of an endless answer that never sends a picture (design/scale.md).
fn picture_file_is_fresh(hub: &Hub, stream: &StreamName) -> Result<(), ApiError> {
    let Some(root) = &hub.config().files_root else {
        return Err(ApiError::not_found(
            "no_preview",
            format!("stream {stream} has no live preview in this server"),
        ));
    };
    let path = root
        .join(stream.as_str())
        .join(hlsmark_previews::PREVIEW_FILE);
    let age = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map(|t| t.elapsed().unwrap_or_default());
    match age {
        Ok(age) if age <= PICTURE_FILE_STALE => Ok(()),
        found => Err(ApiError::not_found(
            "no_preview",
            format!(
                "stream {stream} has no live preview on this node: its ingest runs elsewhere and \
                 {} (live previews need the ingest's data directory shared with the API node; \
                 /thumbnail/{stream}.jpg works on every node)",
                match found {
                    Ok(age) => format!(
                        "its {} was last written {} s ago",
                        hlsmark_previews::PREVIEW_FILE,
                        age.as_secs()
                    ),
                    Err(_) => format!(
                        "no {} of it is visible here",
                        hlsmark_previews::PREVIEW_FILE
                    ),
                }
            ),
        )),
    }
}

/// `GET /preview/{stream}.gif?width=&fps=`
pub async fn gif(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PreviewQuery>,
) -> Result<HttpResponse, ApiError> {
    preview(req, state, &path, query, Format::Gif).await
}

/// `GET /preview/{stream}.mjpeg?width=&fps=`
pub async fn mjpeg(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PreviewQuery>,
) -> Result<HttpResponse, ApiError> {
    preview(req, state, &path, query, Format::Mjpeg).await
}

async fn preview(
    req: HttpRequest,
    state: web::Data<AppState>,
    name: &str,
    query: web::Query<PreviewQuery>,
    format: Format,
) -> Result<HttpResponse, ApiError> {
    let stream = state.stream(Some(name))?;
    let width = number("width", query.width.as_deref())?;
    let fps = number("fps", query.fps.as_deref())?;
    Hub::check(width, fps).map_err(preview_error)?;
    let hub = state.cfg.previews.clone();
    known_stream(&state, &hub, &stream).await?;
    let content_type = match format {
        Format::Gif => "image/gif".to_owned(),
        Format::Mjpeg => hlsmark_previews::mjpeg::content_type(),
    };
    let mut answer = HttpResponse::Ok();
    answer
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Reverse proxies (nginx) must pass each picture on at once.
        .insert_header(("X-Accel-Buffering", "no"));
    if req.method() == actix_web::http::Method::HEAD {
        return Ok(answer.finish());
    }
    if hub.is_off(stream.as_str()) {
        return Err(ApiError::not_found(
            "no_preview",
            format!(
                "stream {stream} runs here with live previews off: --preview-fps 0, the default \
                 with --video copy (a copied stream decodes nothing; set --preview-fps 10 to \
                 decode it for previews), or an unpaced import; /thumbnail/{stream}.jpg works"
            ),
        ));
    }
    if !hub.has_feed(stream.as_str()) {
        picture_file_is_fresh(&hub, &stream)?;
    }
    // Per client address and in total first (a 503 here costs no encoder), then per stream.
    let permit = match req.app_data::<web::Data<crate::limits::Limits>>() {
        Some(l) => Some(l.preview.acquire(req.peer_addr().map(|a| a.ip()))?),
        None => None,
    };
    let mut viewer = hub
        .subscribe(stream.as_str(), format, width, fps)
        .map_err(preview_error)?;
    // The answer starts with its first picture. When none comes within a few seconds, a stream
    // that will send none (failed, stopped, or no ingest reports it) gets a 503 with the reason
    // instead of a 200 that never sends a byte; one that is starting or retrying (a camera that
    // restarts) gets its answer now, and its pictures when the source is back.
    let mut shutdown = state.shutdown.clone();
    let piece = tokio::select! {
        p = tokio::time::timeout(FIRST_PICTURE_WAIT, viewer.recv()) => p.ok().flatten(),
        _ = shutdown.wait_for(|s| *s) => None,
    };
    if piece.is_none() {
        if *state.shutdown.borrow() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            ));
        }
        let status = crate::services::streams::ingest_status(&state, &stream).await;
        let coming = status.as_ref().is_some_and(|s| {
            matches!(
                s.state,
                StreamState::Starting | StreamState::Retrying | StreamState::Live
            )
        });
        if !coming {
            drop(viewer);
            let why = status.as_ref().map_or_else(
                || "no ingest reports it".to_owned(),
                crate::services::streams::state_phrase,
            );
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_pictures",
                format!("stream {stream} sends no pictures ({why}); try again when it is live"),
            ));
        }
    }
    let preamble = match format {
        Format::Mjpeg => Some(hlsmark_previews::mjpeg::preamble()),
        Format::Gif => None,
    };
    let first = match (preamble, piece) {
        (Some(pre), Some(p)) => {
            let mut b = bytes::BytesMut::with_capacity(pre.len() + p.len());
            b.extend_from_slice(&pre);
            b.extend_from_slice(&p);
            Some(b.freeze())
        }
        (pre, p) => pre.or(p),
    };
    Ok(answer.streaming(body(viewer, permit, first, state.shutdown.clone())))
}

/// How long a new viewer's answer waits for the stream's first picture before it looks at why
/// none came: the slowest preview rate (1 a second) a few times over.
const FIRST_PICTURE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A viewer's queue as an answer body: ends when the encoder goes or the server shuts down; the
/// limiter's place is given back when actix drops it.
///
/// Written by hand rather than as `select!` over the queue and the shutdown signal: that would
/// make and drop a wait on the signal for every picture of every viewer; here the wait is made
/// once and polled only when no picture is waiting, and a picture is given out only after a
/// look at the signal's version (one atomic load), so a slow viewer's full queue does not keep
/// its answer open through a shutdown.
fn body(
    viewer: Viewer,
    permit: Option<crate::limits::Permit>,
    first: Option<Bytes>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    struct Body {
        viewer: Viewer,
        _permit: Option<crate::limits::Permit>,
        first: Option<Bytes>,
        /// The shutdown signal, for its version.
        signal: tokio::sync::watch::Receiver<bool>,
        stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    }
    impl futures_util::Stream for Body {
        type Item = Result<Bytes, actix_web::Error>;
        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            let this = self.get_mut();
            if let Some(b) = this.first.take() {
                return Poll::Ready(Some(Ok(b)));
            }
            // The signal only ever changes to "stopping" (or its sender goes).
            if !matches!(this.signal.has_changed(), Ok(false)) {
                return Poll::Ready(None);
            }
            match this.viewer.poll_recv(cx) {
                Poll::Ready(b) => return Poll::Ready(b.map(Ok)),
                Poll::Pending => {}
            }
            // Shutting down (or the server gone) ends the answer once no picture waits.
            this.stop.as_mut().poll(cx).map(|()| None)
        }
    }
    Body {
        viewer,
        _permit: permit,
        first,
        signal: shutdown.clone(),
        stop: Box::pin(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        }),
    }
}

/// `GET /thumbnail/{stream}.jpg?t=&width=`
pub async fn thumbnail(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ThumbQuery>,
) -> Result<HttpResponse, ApiError> {
    let stream = state.stream(Some(&path))?;
    let width = number("width", query.width.as_deref())?;
    Hub::check(width, None).map_err(preview_error)?;
    let Some(t) = query.t.as_deref() else {
        return Err(ApiError::bad_request(
            "invalid_time",
            "t is required: seconds on the HLS clock (12.5) or an RFC 3339 time",
        ));
    };
    let t = TimeParam::parse("t", t)?;
    let (view, index) = state.clocks(&stream).await?;
    if view.timeline.is_empty() {
        return Err(crate::services::streams::no_timeline(&state, &stream).await);
    }
    let clocks = Clocks::new(&view.timeline, &index);
    // Times printed from ticks (a marker's `hls` in seconds, its `utc` to the millisecond) may
    // read back a little before their frame: half a millisecond of slack, far less than any
    // frame interval.
    let hls = match t {
        TimeParam::Hls(h) => h,
        TimeParam::Utc(u) => clocks.utc_to_hls(u).map_err(|e| no_frame(&stream, e))?,
    } + INPUT_TOLERANCE;
    frame_picture(&state, &stream, &clocks, hls, width).await
}

/// `GET /markers/{id}/thumbnail.jpg?stream=&width=`: the frame the marker sits on.
pub async fn marker_thumbnail(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<MarkerThumbQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = uuid::Uuid::try_parse(&path)
        .map_err(|_| ApiError::bad_request("invalid_id", "a marker id is a UUID"))?;
    let width = number("width", query.width.as_deref())?;
    Hub::check(width, None).map_err(preview_error)?;
    let (stream, m) = crate::services::markers::find(&state, query.stream.as_deref(), id).await?;
    let (view, index) = state.clocks(&stream).await?;
    let clocks = Clocks::new(&view.timeline, &index);
    frame_picture(&state, &stream, &clocks, m.hls, width).await
}

fn no_frame(stream: &StreamName, why: impl std::fmt::Display) -> ApiError {
    ApiError::not_found(
        "no_frame",
        format!("no retained video of {stream} at that time ({why})"),
    )
}

/// The JPEG of the frame showing at `hls`, from the retained segment holding it.
async fn frame_picture(
    state: &AppState,
    stream: &StreamName,
    clocks: &Clocks<'_>,
    hls: HlsTime,
    width: Option<u32>,
) -> Result<HttpResponse, ApiError> {
    // A frame of the live edge whose segment is not cut yet (a "now" marker's picture asked for
    // right after its POST, by a webhook receiver or a notification): waited for, as a POST
    // waits, instead of 404 for the second until the segment is out.
    // (Only for a time the index does not hold: a picture of retained media reads nothing more.)
    let newest = if clocks.segment_at(hls).is_none() {
        state
            .track(state.store.last_segments(stream, 1).await)?
            .pop()
    } else {
        None
    };
    let open = clocks.timeline.last().is_some_and(|e| e.hls_end.is_none());
    if let Some(end) = newest.map(|s| s.hls_end())
        && open
        && hls >= end
        && hls < end + LIVE_EDGE_WAIT_SPAN
        && crate::services::live::wait_published(state, stream, hls, LIVE_EDGE_WAIT).await?
    {
        let (view, index) = state.clocks(stream).await?;
        let fresh = Clocks::new(&view.timeline, &index);
        let (thumb, frame) = frame_thumb(state, stream, &fresh, hls, width, Turn::Wait).await?;
        return Ok(picture_answer(thumb, frame));
    }
    let (thumb, frame) = frame_thumb(state, stream, clocks, hls, width, Turn::Wait).await?;
    Ok(picture_answer(thumb, frame))
}

/// How far past the newest segment a picture's time may be and still be waited for.
const LIVE_EDGE_WAIT_SPAN: hlsmark_clock::Duration90k = hlsmark_clock::Duration90k::from_secs(10);
/// How long it is waited for (one segment and the cut's delay, as a marker's POST waits).
const LIVE_EDGE_WAIT: std::time::Duration = std::time::Duration::from_secs(4);

/// The answer of one frame's picture.
fn picture_answer(thumb: hlsmark_previews::Thumb, frame: FrameAt) -> HttpResponse {
    let mut answer = HttpResponse::Ok();
    answer
        .content_type("image/jpeg")
        // One frame of an immutable segment: the same URL may answer another frame only when a
        // wiped data directory reuses the time.
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((
            "X-Hlsmark-Frame",
            HeaderValue::from_str(&format!(
                "seq={}; index={}; hls_90k={}",
                frame.seq,
                frame.index,
                frame.hls.ticks()
            ))
            .unwrap_or(HeaderValue::from_static("")),
        ))
        .insert_header(("X-Hlsmark-Cache", if thumb.cached { "hit" } else { "miss" }));
    answer.body(thumb.jpeg)
}

/// Whether a thumbnail not in the cache waits for a decoding turn ([`Turn::Wait`], a request)
/// or is given up when none is free ([`Turn::IfFree`], work made ahead in the background).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    Wait,
    IfFree,
}

/// Where a thumbnail's frame is: its segment, its index there, its exact time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameAt {
    pub seq: hlsmark_clock::SeqNo,
    pub index: usize,
    pub hls: HlsTime,
}

/// The thumbnail of the frame showing at `hls` (from the cache, else decoded from the retained
/// segment holding it) and where that frame is. With [`Turn::IfFree`], a picture that is not
/// cached while every decoding turn is taken is [`PreviewError::Busy`] (503) at once.
pub(crate) async fn frame_thumb(
    state: &AppState,
    stream: &StreamName,
    clocks: &Clocks<'_>,
    hls: HlsTime,
    width: Option<u32>,
    turn: Turn,
) -> Result<(hlsmark_previews::Thumb, FrameAt), ApiError> {
    if clocks.segment_at(hls).is_none() {
        return Err(no_frame(stream, "outside the retained segments"));
    }
    let frame = state
        .frame_tables
        .snap(&*state.store, stream, clocks, hls)
        .await
        .map_err(|e| match e {
            SnapError::Timeline(e) => no_frame(stream, e),
            SnapError::Store(e) => state.store_error(&e),
        })?;
    let (Some(seq), Some(index)) = (frame.seq, frame.index) else {
        return Err(no_frame(stream, "not published yet"));
    };
    let Some(seg) = state.track(state.store.get_segment(stream, seq).await)? else {
        return Err(no_frame(stream, "the segment left the retention"));
    };
    let Some(init) = seg.init_file.as_deref() else {
        return Err(no_frame(stream, "the segment has no init section"));
    };
    let read = |f| crate::files::readable_path(&state.open_files, &state.cfg.data_dir, stream, f);
    let seg_path = read(&seg.file).await;
    let init_path = read(init).await;
    if !seg_path.is_file() || !init_path.is_file() {
        return Err(no_frame(stream, "the segment file is gone"));
    }
    let key = ThumbKey {
        stream: stream.to_string(),
        epoch: seg.epoch,
        seq,
        index,
        width,
    };
    let thumbs = &state.cfg.thumbnails;
    let thumb = match turn {
        Turn::Wait => thumbs.get(key, &init_path, &seg_path).await,
        Turn::IfFree => thumbs.get_if_free(key, &init_path, &seg_path).await,
    }
    .map_err(preview_error)?;
    let at = FrameAt {
        seq,
        index,
        hls: frame.hls,
    };
    Ok((thumb, at))
}

/// `GET /thumbs/{stream}.vtt?from=&to=&seq=`: the WebVTT thumbnails track of the retained
/// segments overlapping `[from, to)` (HLS seconds or RFC 3339; default all), cue times on the
/// HLS clock, or with `seq` on the player's clock for that join sequence.
pub async fn thumbs_track(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<TrackQuery>,
) -> Result<HttpResponse, ApiError> {
    use crate::services::tiles::{self, TrackClock};
    let stream = state.stream(Some(&path))?;
    let (view, index) = state.clocks(&stream).await?;
    if view.timeline.is_empty() {
        return Err(crate::services::streams::no_timeline(&state, &stream).await);
    }
    let clocks = Clocks::new(&view.timeline, &index);
    let bound = |name: &str, v: Option<&str>| -> Result<Option<HlsTime>, ApiError> {
        let Some(v) = v else { return Ok(None) };
        Ok(Some(match TimeParam::parse(name, v)? {
            TimeParam::Hls(h) => h,
            TimeParam::Utc(u) => clocks
                .utc_to_hls_bound(u)
                .map_err(|e| ApiError::bad_request("invalid_time", format!("{name}: {e}")))?,
        }))
    };
    let from = bound("from", query.from.as_deref())?;
    let to = bound("to", query.to.as_deref())?;
    let clock = match query.seq.as_deref() {
        None => TrackClock::Hls,
        Some(s) => {
            let seq = parse_u64("seq", s, u64::MAX >> 1)?;
            let join = clocks.segment_start(seq).map_err(|e| {
                ApiError::bad_request("invalid_parameter", format!("seq={seq}: {e}"))
            })?;
            TrackClock::Client { join }
        }
    };
    tiles::ensure_tiler(&state, &stream);
    let rows: Vec<_> = index
        .rows()
        .iter()
        .filter(|r| from.is_none_or(|f| r.hls_end() > f) && to.is_none_or(|t| r.hls_start < t))
        .copied()
        .collect();
    let rows = &rows[rows.len().saturating_sub(tiles::MAX_CUES)..];
    let text = tiles::render_vtt(&stream, &view.timeline, rows, clock);
    Ok(HttpResponse::Ok()
        .content_type("text/vtt; charset=utf-8")
        // A new cue with every segment.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(text))
}

/// `GET /thumbs/{stream}/{seq}.jpg`: the tile of segment `seq` (its first frame, 160x90).
pub async fn thumbs_tile(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, seq) = path.into_inner();
    let stream = state.stream(Some(&name))?;
    let seq = parse_u64("seq", &seq, u64::MAX >> 1)?;
    crate::services::tiles::ensure_tiler(&state, &stream);
    let thumb = crate::services::tiles::tile(&state, &stream, seq).await?;
    Ok(HttpResponse::Ok()
        .content_type("image/jpeg")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header(("X-Hlsmark-Cache", if thumb.cached { "hit" } else { "miss" }))
        .body(thumb.jpeg))
}

/// Prometheus series of the previews: viewers, encoders, pictures sent and dropped per stream
/// and format, and the thumbnail cache.
pub fn metric_series(state: &AppState, text: &mut String) {
    let stats = state.cfg.previews.stats();
    let mut series = |name: &str,
                      help: &str,
                      kind: &str,
                      value: &dyn Fn(&hlsmark_previews::PreviewStats) -> u64| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in &stats {
            let _ = writeln!(
                text,
                "{name}{{stream=\"{}\",format=\"{}\"}} {}",
                s.stream,
                s.format.as_str(),
                value(s)
            );
        }
    };
    series(
        "hlsmark_preview_viewers",
        "Open preview answers.",
        "gauge",
        &|s| s.viewers as u64,
    );
    series(
        "hlsmark_preview_encoders",
        "Preview encoders running.",
        "gauge",
        &|s| s.encoders as u64,
    );
    series(
        "hlsmark_preview_frames_sent_total",
        "Preview pictures handed to viewers.",
        "counter",
        &|s| s.sent,
    );
    series(
        "hlsmark_preview_frames_dropped_total",
        "Preview pictures a slow viewer lost (its queue was full).",
        "counter",
        &|s| s.dropped,
    );
    let (tiles, tile_bytes) = state.cfg.thumbnails.tiles_cached();
    let _ = writeln!(
        text,
        "# HELP hlsmark_thumbnail_tiles_cached Seek-bar tiles in memory.\n# TYPE hlsmark_thumbnail_tiles_cached gauge\nhlsmark_thumbnail_tiles_cached {tiles}\n# HELP hlsmark_thumbnail_tile_bytes Bytes of seek-bar tiles in memory.\n# TYPE hlsmark_thumbnail_tile_bytes gauge\nhlsmark_thumbnail_tile_bytes {tile_bytes}"
    );
    let (n, bytes) = state.cfg.thumbnails.cached();
    let _ = writeln!(
        text,
        "# HELP hlsmark_thumbnails_cached Thumbnails in memory.\n# TYPE hlsmark_thumbnails_cached gauge\nhlsmark_thumbnails_cached {n}\n# HELP hlsmark_thumbnail_cache_bytes Bytes of thumbnails in memory.\n# TYPE hlsmark_thumbnail_cache_bytes gauge\nhlsmark_thumbnail_cache_bytes {bytes}"
    );
    let ahead = state.cfg.thumbnails.made_ahead();
    let _ = writeln!(
        text,
        "# HELP hlsmark_thumbnails_made_ahead_total Marker row thumbnails made before anyone asked (the seek bar's tiler).\n# TYPE hlsmark_thumbnails_made_ahead_total counter\nhlsmark_thumbnails_made_ahead_total {ahead}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment removed by retention while its picture was made is a 404 that names no server
    /// path; another read failure stays a 500.
    #[test]
    fn a_segment_gone_while_its_picture_is_made_is_404_without_the_path() {
        let gone = preview_error(PreviewError::Read {
            path: "/data/hls/live/e1-00000007.m4s".into(),
            source: std::io::ErrorKind::NotFound.into(),
        });
        assert_eq!(
            (gone.status, gone.code),
            (StatusCode::NOT_FOUND, "no_frame")
        );
        assert!(!gone.message.contains("/data"), "{}", gone.message);
        let denied = preview_error(PreviewError::Read {
            path: "/x".into(),
            source: std::io::ErrorKind::PermissionDenied.into(),
        });
        assert_eq!(denied.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
