//! `/markers`: range queries in every clock, create (by HLS, GEN or UTC time, snapped to the
//! frame), get, delete, and the live feed as Server-Sent Events.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use hlsmark_clock::{Duration90k, GenTime, HlsTime, Segment, SeqNo, Timeline, UtcTime};
use hlsmark_store::{Cursor, InsertOutcome, MAX_LIMIT, Marker, RangeQuery, StreamName};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::params::{TimeParam, parse_u64};
use crate::state::{AppState, MAX_ABS_TICKS};

const DEFAULT_LIMIT: u64 = 100;
/// Largest join sequence accepted (31,000 years of 1 s segments): keeps every conversion far from
/// `i64` overflow.
const MAX_SEQ: u64 = 1_000_000_000_000;

/// A marker as the API shows it: seconds on every clock, plus exact ticks where it matters.
#[derive(Debug, Serialize)]
pub struct MarkerView<'a> {
    pub id: Uuid,
    pub stream: &'a str,
    pub label: &'a str,
    pub kind: &'a str,
    #[serde(rename = "gen")]
    pub gen_secs: f64,
    pub hls: f64,
    pub hls_90k: i64,
    pub utc: String,
    pub duration: f64,
    pub duration_90k: i64,
    /// Media sequence number of the segment holding the marker.
    pub seq: Option<SeqNo>,
    /// Player `currentTime` for a player that joined at `?seq=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a serde_json::Value>,
}

impl<'a> MarkerView<'a> {
    pub fn new(
        m: &'a Marker,
        timeline: &Timeline,
        join_seq: Option<SeqNo>,
    ) -> Result<Self, ApiError> {
        let client = match join_seq {
            Some(s) => Some(timeline.hls_to_client(m.hls, s)?.as_secs_f64()),
            None => None,
        };
        Ok(Self {
            id: m.id,
            stream: m.stream.as_str(),
            label: &m.label,
            kind: &m.kind,
            gen_secs: m.gen_time.as_secs_f64(),
            hls: m.hls.as_secs_f64(),
            hls_90k: m.hls.ticks(),
            utc: m.utc.to_rfc3339_millis(),
            duration: m.duration.as_secs_f64(),
            duration_90k: m.duration.ticks(),
            seq: timeline.seq_at(m.hls).ok(),
            client,
            data: m.data.as_ref(),
        })
    }
}

fn json_response(status: actix_web::http::StatusCode, body: &impl Serialize) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(b) => HttpResponse::build(status)
            .content_type("application/json")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(b),
        Err(e) => actix_web::ResponseError::error_response(&ApiError::internal(format!(
            "serializing the answer: {e}"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    from: Option<String>,
    to: Option<String>,
    stream: Option<String>,
    seq: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct ListBody<'a> {
    stream: &'a str,
    markers: Vec<MarkerView<'a>>,
    next_cursor: Option<String>,
}

/// `GET /markers?from=&to=&stream=&seq=&limit=&cursor=`
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let stream = state.stream(q.stream.as_deref())?;
    let from = q
        .from
        .as_deref()
        .map(|s| TimeParam::parse("from", s))
        .transpose()?;
    let to =
        q.to.as_deref()
            .map(|s| TimeParam::parse("to", s))
            .transpose()?;
    let seq = q
        .seq
        .as_deref()
        .map(|s| parse_u64("seq", s, MAX_SEQ))
        .transpose()?;
    let limit = match q.limit.as_deref() {
        // Every bad limit (0, -1, 1001, ten, empty) gets the same code and message.
        Some(s) => match s.trim().parse::<u64>() {
            Ok(l) if (1..=MAX_LIMIT).contains(&l) => l,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_limit",
                    format!(
                        "limit={:?}: limit must be 1 to {MAX_LIMIT}",
                        s.chars().take(64).collect::<String>()
                    ),
                ));
            }
        },
        None => DEFAULT_LIMIT,
    };
    let after = q
        .cursor
        .as_deref()
        .map(|c| c.parse::<Cursor>())
        .transpose()?;
    let view = state.view(&stream).await?;
    let tl = &view.timeline;
    let from = from.map_or(Ok(HlsTime(-MAX_ABS_TICKS)), |t| t.to_hls(tl))?;
    let to = to.map_or(Ok(HlsTime(MAX_ABS_TICKS)), |t| t.to_hls(tl))?;
    if let Some(s) = seq {
        tl.segment_start(s)?;
    }
    let query = RangeQuery::new(stream.clone(), from, to, limit, after)?;
    let page = state.track(state.store.query_markers(&query).await)?;
    let markers = page
        .markers
        .iter()
        .map(|m| MarkerView::new(m, tl, seq))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json_response(
        actix_web::http::StatusCode::OK,
        &ListBody {
            stream: stream.as_str(),
            markers,
            next_cursor: page.next.map(|c| c.to_string()),
        },
    ))
}

/// Checks `Authorization: Bearer <token>` against the configured token.
fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(token) = &state.cfg.token else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "writes_disabled",
            "writes are disabled because no token is configured: start the server with --token <secret> or HLSMARK_TOKEN=<secret> and send Authorization: Bearer <secret>",
        ));
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is wrong",
        )),
        None => Err(ApiError::new(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token> to write",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Body of `POST /markers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMarker {
    id: Option<Uuid>,
    label: String,
    kind: Option<String>,
    hls: Option<f64>,
    #[serde(rename = "gen")]
    gen_secs: Option<f64>,
    utc: Option<String>,
    duration: Option<f64>,
    data: Option<serde_json::Value>,
    stream: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    stream: Option<String>,
}

impl StreamQuery {
    pub fn stream_name(&self) -> Option<&str> {
        self.stream.as_deref()
    }
}

fn invalid_time(name: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_time", format!("{name}: {e}"))
}

/// Half a millisecond: how far a UTC given to the millisecond may be from the exact time.
const UTC_INPUT_TOLERANCE: Duration90k = Duration90k(45);
/// How far past the live edge a marker may be (clock skew of detectors, segment latency).
const FUTURE_TOLERANCE: Duration90k = Duration90k::from_secs(30);

/// The latest media time a marker may have: where the last epoch is now by the wall clock (or
/// where it ended, if it is closed) or the end of the newest published segment, whichever is
/// later, plus [`FUTURE_TOLERANCE`].
fn live_limit(timeline: &Timeline, published_end: Option<HlsTime>) -> HlsTime {
    let Some(last) = timeline.last() else {
        return HlsTime::ZERO;
    };
    let edge = match last.hls_end {
        Some(end) => end,
        None => timeline
            .utc_to_hls(UtcTime::now())
            .unwrap_or(last.hls_start),
    };
    let edge = published_end.map_or(edge, |p| p.max(edge));
    edge.checked_add(FUTURE_TOLERANCE).unwrap_or(edge)
}

/// Turns a request body into a marker: the given time snapped to the start of the frame showing
/// then, the other clocks computed from it.
fn build_marker(
    body: NewMarker,
    stream: StreamName,
    timeline: &Timeline,
    published_end: Option<HlsTime>,
) -> Result<Marker, ApiError> {
    let given = [
        body.hls.is_some(),
        body.gen_secs.is_some(),
        body.utc.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        return Err(ApiError::bad_request(
            "invalid_time",
            "give exactly one of \"hls\" (seconds), \"gen\" (seconds) or \"utc\" (RFC 3339)",
        ));
    }
    let raw = if let Some(h) = body.hls {
        HlsTime::from_secs_f64(h).map_err(|e| invalid_time("hls", e))?
    } else if let Some(g) = body.gen_secs {
        let g = GenTime::from_secs_f64(g).map_err(|e| invalid_time("gen", e))?;
        timeline.gen_to_hls(g)?
    } else {
        let u = body.utc.as_deref().unwrap_or_default();
        let u = UtcTime::parse_rfc3339(u).map_err(|e| invalid_time("utc", e))?;
        // UTC comes in (and goes out) with millisecond precision, rounded to the nearest ms: a
        // frame start printed as .484 for .4843 must come back to that frame, not the one before.
        timeline.utc_to_hls(u)? + UTC_INPUT_TOLERANCE
    };
    // The time must hold video: not before the stream, not while it was down, not in the future.
    let epoch = timeline.check_media(raw)?;
    let limit = live_limit(timeline, published_end);
    if raw > limit {
        return Err(ApiError::bad_request(
            "time_out_of_range",
            format!(
                "{} s (HLS) is in the future: the live edge is near {} s; markers may be at most \
                 {} s ahead of it",
                raw.as_secs_f64(),
                (limit - FUTURE_TOLERANCE).as_secs_f64(),
                FUTURE_TOLERANCE.as_secs_f64()
            ),
        ));
    }
    let hls = epoch.snap_to_frame(raw);
    let duration = match body.duration {
        Some(d) => {
            let d = Duration90k::from_secs_f64(d).map_err(|e| invalid_time("duration", e))?;
            if d < Duration90k::ZERO {
                return Err(ApiError::bad_request(
                    "invalid_duration",
                    "duration must not be negative",
                ));
            }
            d
        }
        None => Duration90k::ZERO,
    };
    let data = match body.data {
        None | Some(serde_json::Value::Null) => None,
        Some(v @ serde_json::Value::Object(_)) => Some(v),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_data",
                "data must be a JSON object",
            ));
        }
    };
    Ok(Marker {
        id: body.id.unwrap_or_else(Uuid::now_v7),
        stream,
        label: body.label,
        kind: body.kind.unwrap_or_else(|| "manual".to_owned()),
        gen_time: timeline.hls_to_gen(hls)?,
        hls,
        utc: timeline.hls_to_utc(hls)?,
        duration,
        data,
        created_at: UtcTime::now(),
    })
}

fn same_marker(a: &Marker, b: &Marker) -> bool {
    Marker {
        created_at: b.created_at,
        ..a.clone()
    } == *b
}

/// `POST /markers`
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<StreamQuery>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "send the marker as JSON with Content-Type: application/json (got {:?})",
                ct.chars().take(80).collect::<String>()
            ),
        ));
    }
    let body: NewMarker = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("request body: {e}")))?;
    let stream = state.stream(body.stream.as_deref().or(query.stream.as_deref()))?;
    let view = state.view(&stream).await?;
    if view.timeline.is_empty() {
        return Err(ApiError::not_found(
            "unknown_stream",
            format!("stream {stream:?} has no timeline yet: markers need its clocks"),
        ));
    }
    // The newest published media: an unpaced generator runs ahead of the wall clock.
    let published_end = state
        .track(state.store.last_segments(&stream, 1).await)?
        .last()
        .map(Segment::hls_end);
    let marker = build_marker(body, stream.clone(), &view.timeline, published_end)?;
    // Idempotent by id: the same marker again answers 200 with the stored one (created_at is not
    // part of the comparison: a retried POST is the same marker).
    if let Some(existing) = state.track(state.store.get_marker(&stream, marker.id).await)? {
        return if same_marker(&marker, &existing) {
            respond_marker(actix_web::http::StatusCode::OK, &existing, &view.timeline)
        } else {
            Err(ApiError::new(
                actix_web::http::StatusCode::CONFLICT,
                "conflict",
                format!("marker {} already exists with different content", marker.id),
            ))
        };
    }
    let status = match state.track(state.store.insert_marker(&marker).await) {
        Ok(InsertOutcome::Inserted) => actix_web::http::StatusCode::CREATED,
        Ok(InsertOutcome::AlreadyExists) => actix_web::http::StatusCode::OK,
        Err(e) if e.code == "conflict" => {
            // Lost a race with an identical POST?
            match state.track(state.store.get_marker(&stream, marker.id).await)? {
                Some(existing) if same_marker(&marker, &existing) => {
                    return respond_marker(
                        actix_web::http::StatusCode::OK,
                        &existing,
                        &view.timeline,
                    );
                }
                _ => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    state.invalidate(&stream);
    let mut res = respond_marker(status, &marker, &view.timeline)?;
    if let Ok(v) = header::HeaderValue::from_str(&format!("/markers/{}?stream={stream}", marker.id))
    {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

fn respond_marker(
    status: actix_web::http::StatusCode,
    m: &Marker,
    timeline: &Timeline,
) -> Result<HttpResponse, ApiError> {
    Ok(json_response(status, &MarkerView::new(m, timeline, None)?))
}

fn parse_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(s).map_err(|_| {
        ApiError::bad_request(
            "invalid_id",
            format!(
                "{:?} is not a marker id (a UUID)",
                s.chars().take(80).collect::<String>()
            ),
        )
    })
}

/// `GET /markers/{id}?stream=`
pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let stream = state.stream(query.stream.as_deref())?;
    let Some(m) = state.track(state.store.get_marker(&stream, id).await)? else {
        return Err(ApiError::not_found(
            "marker_not_found",
            format!("no marker {id} in stream {stream}"),
        ));
    };
    let view = state.view(&stream).await?;
    respond_marker(actix_web::http::StatusCode::OK, &m, &view.timeline)
}

/// `DELETE /markers/{id}?stream=`
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let id = parse_id(&path)?;
    let stream = state.stream(query.stream.as_deref())?;
    if state.track(state.store.delete_marker(&stream, id).await)? {
        state.invalidate(&stream);
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(
            "marker_not_found",
            format!("no marker {id} in stream {stream}"),
        ))
    }
}

/// Decrements the SSE client gauge when the stream ends.
struct SseGuard(std::sync::Arc<crate::metrics::Metrics>);
impl Drop for SseGuard {
    fn drop(&mut self) {
        self.0
            .sse_clients
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `GET /markers/live?stream=`: `event: marker` per new marker, keep-alive comments, ends at
/// server shutdown.
pub async fn live(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let stream = state.stream(query.stream.as_deref())?;
    // Like /markers and /timeline: a stream without a timeline is unknown (a known stream with
    // no markers yet gets the feed). The configured stream is known before its first segment:
    // the page opens this feed once at load, and a browser's EventSource never retries a 404,
    // so a page opened while the generator starts would otherwise never get live markers.
    if stream != state.cfg.default_stream && state.view(&stream).await?.timeline.is_empty() {
        return Err(ApiError::not_found(
            "unknown_stream",
            format!("stream {stream:?} has no timeline yet"),
        ));
    }
    let sse = |mut b: actix_web::HttpResponseBuilder| {
        b.content_type("text/event-stream")
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header(("X-Accel-Buffering", "no"));
        b
    };
    if req.method() == actix_web::http::Method::HEAD {
        // The feed never ends: a HEAD answer must not wait for it.
        return Ok(sse(HttpResponse::Ok()).finish());
    }
    let rx = state.track(state.store.subscribe_markers().await)?;
    state
        .metrics
        .sse_clients
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let guard = SseGuard(state.metrics.clone());
    let keepalive = state.cfg.sse_keepalive;
    let shutdown = state.shutdown.clone();
    let hello = Bytes::from_static(b"retry: 2000\n: connected\n\n");
    struct S {
        state: web::Data<AppState>,
        stream: StreamName,
        rx: hlsmark_store::MarkerFeed,
        tick: tokio::time::Interval,
        shutdown: tokio::sync::watch::Receiver<bool>,
        _guard: SseGuard,
    }
    let mut tick = tokio::time::interval(keepalive.max(Duration::from_millis(100)));
    tick.reset();
    let init = S {
        state: state.clone(),
        stream,
        rx,
        tick,
        shutdown,
        _guard: guard,
    };
    let events = futures_util::stream::unfold(init, |mut s| async move {
        loop {
            if *s.shutdown.borrow() {
                return None;
            }
            tokio::select! {
                _ = s.shutdown.changed() => return None,
                _ = s.tick.tick() => {
                    return Some((Ok::<_, actix_web::Error>(Bytes::from_static(b": keep-alive\n\n")), s));
                }
                r = s.rx.recv() => match r {
                    Ok(m) if m.stream == s.stream => {
                        let Ok(view) = s.state.view(&s.stream).await else { continue };
                        let Ok(v) = MarkerView::new(&m, &view.timeline, None) else { continue };
                        let Ok(json) = serde_json::to_string(&v) else { continue };
                        let ev = format!("event: marker\nid: {}\ndata: {json}\n\n", m.id);
                        return Some((Ok(Bytes::from(ev)), s));
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let ev = format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n");
                        return Some((Ok(Bytes::from(ev)), s));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    let body = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok::<_, actix_web::Error>(hello) }),
        events,
    );
    Ok(sse(HttpResponse::Ok()).streaming(body))
}
