//! `/markers`: range queries in every clock, create (by HLS, GEN, PTS or UTC time, snapped to the
//! frame through the segment's frame table), get, delete, and the live feed's events (framed and
//! kept alive by `crate::sse`).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use hlsmark_clock::{HlsTime, SeqNo, TimelineError};
use hlsmark_store::{Cursor, MAX_BATCH, MAX_LIMIT, Marker, MarkerFilter, RangeQuery, StreamName};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::params::{TimeParam, marker_filter, parse_u64};
use crate::services::clocks::Clocks;
use crate::services::markers::{self, NewMarker, Outcome};
use crate::services::snap::Frame;
use crate::state::{AppState, MAX_ABS_TICKS};

const DEFAULT_LIMIT: u64 = 100;
/// Largest body of an array of markers (`POST /markers` with up to 1,000), unless
/// `--body-limit` is larger: 1,000 markers with labels, tags and a little `data` fit easily.
pub const BULK_BODY_LIMIT: usize = 4 << 20;
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
    /// `info`, `warning` or `critical`.
    pub severity: &'a str,
    /// `#rrggbb` or null.
    pub color: Option<&'a str>,
    pub tags: &'a [String],
    /// Media sequence number of the segment holding the marker.
    pub seq: Option<SeqNo>,
    /// Player `currentTime` for a player that joined at `?seq=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a serde_json::Value>,
    /// The frame a POSTed time landed on (answers of `POST /markers` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<FrameView>,
}

/// Which frame a marker landed on: its segment, its index there, its time.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FrameView {
    pub seq: Option<SeqNo>,
    pub index: Option<usize>,
    pub hls: f64,
    pub hls_90k: i64,
}

impl From<Frame> for FrameView {
    fn from(f: Frame) -> Self {
        Self {
            seq: f.seq,
            index: f.index,
            hls: f.hls.as_secs_f64(),
            hls_90k: f.hls.ticks(),
        }
    }
}

impl<'a> MarkerView<'a> {
    pub fn new(
        m: &'a Marker,
        clocks: &Clocks<'_>,
        join_seq: Option<SeqNo>,
    ) -> Result<Self, ApiError> {
        let client = match join_seq {
            Some(s) => Some(clocks.hls_to_client(m.hls, s)?.as_secs_f64()),
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
            severity: m.severity.as_str(),
            color: m.color.as_deref(),
            tags: &m.tags,
            seq: clocks.seq_at(m.hls),
            client,
            data: m.data.as_ref(),
            frame: None,
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
    kind: Option<String>,
    label: Option<String>,
    tag: Option<String>,
    severity: Option<String>,
}

#[derive(Serialize)]
struct ListBody<'a> {
    stream: &'a str,
    markers: Vec<MarkerView<'a>>,
    next_cursor: Option<String>,
}

/// `GET /markers?from=&to=&stream=&seq=&limit=&cursor=&kind=&label=&tag=&severity=`
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
    let filter = marker_filter(
        q.kind.as_deref(),
        q.label.as_deref(),
        q.tag.as_deref(),
        q.severity.as_deref(),
    )?;
    let (view, index) = state.clocks(&stream).await?;
    let clocks = Clocks::new(&view.timeline, &index);
    let from = from.map_or(Ok(HlsTime(-MAX_ABS_TICKS)), |t| t.to_hls(&clocks))?;
    let to = to.map_or(Ok(HlsTime(MAX_ABS_TICKS)), |t| t.to_hls(&clocks))?;
    if let Some(s) = seq {
        check_join_seq(&clocks, s)?;
    }
    let query = RangeQuery::new(stream.clone(), from, to, limit, after)?.filtered(filter)?;
    let page = state.track(state.store.query_markers(&query).await)?;
    let markers = page
        .markers
        .iter()
        .map(|m| MarkerView::new(m, &clocks, seq))
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
        .and_then(|v| v.trim_start().split_once(' '))
        // The scheme is case-insensitive (RFC 9110 11.1): `bearer` and `BEARER` too.
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
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

/// A `?seq=` join sequence must be one whose start is known: retained, ahead of the live edge,
/// or (the generator) computable from its epoch.
fn check_join_seq(clocks: &Clocks<'_>, seq: SeqNo) -> Result<(), ApiError> {
    match clocks.segment_start(seq) {
        Ok(_) => Ok(()),
        Err(TimelineError::SeqBeforeStart(_))
            if clocks
                .timeline
                .epochs()
                .first()
                .is_some_and(|e| e.first_seq <= seq) =>
        {
            let retained = match (clocks.index.first(), clocks.index.last()) {
                (Some(f), Some(l)) => format!("retained: {} to {}", f.seq, l.seq),
                _ => "none is retained".to_owned(),
            };
            Err(ApiError::bad_request(
                "invalid_parameter",
                format!(
                    "seq={seq}: the stream no longer holds that segment, so its start is not known \
                     ({retained})"
                ),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// A body of `POST /markers`: at most `--body-limit` for one marker (an object), at most
/// [`BULK_BODY_LIMIT`] (or `--body-limit` when larger) for an array of up to 1,000.
async fn read_body(
    req: &HttpRequest,
    state: &AppState,
    mut payload: web::Payload,
) -> Result<Bytes, ApiError> {
    use futures_util::StreamExt;
    let single = state.cfg.body_limit;
    let bulk = single.max(BULK_BODY_LIMIT);
    let too_large = |limit: usize| {
        ApiError::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "request body larger than {limit} bytes (one marker: --body-limit; an array of \
                 markers: {bulk} bytes)"
            ),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > bulk) {
        return Err(too_large(bulk));
    }
    let mut body = bytes::BytesMut::with_capacity(declared.unwrap_or(0).min(bulk));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("bad_request", e.to_string()))?;
        if body.len() + chunk.len() > bulk {
            return Err(too_large(bulk));
        }
        body.extend_from_slice(&chunk);
        // One marker may not use the array's allowance.
        if body.len() > single && !is_array(&body) {
            return Err(too_large(single));
        }
    }
    Ok(body.freeze())
}

/// Whether a JSON body is an array (its first non-blank byte is `[`).
fn is_array(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// `POST /markers`: one marker (an object; 201, or 200 when the identical marker exists) or an
/// array of up to 1,000 written all or nothing (201 when any was new, else 200).
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<StreamQuery>,
    payload: web::Payload,
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
    let body = read_body(&req, &state, payload).await?;
    if is_array(&body) {
        return create_batch(&state, query.stream.as_deref(), &body).await;
    }
    let body: NewMarker = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("request body: {e}")))?;
    let stream = state.stream(body.stream.as_deref().or(query.stream.as_deref()))?;
    let (ctx, w) = markers::create_one(&state, &stream, body).await?;
    let clocks = ctx.clocks();
    let status = match w.outcome {
        Outcome::Created => actix_web::http::StatusCode::CREATED,
        Outcome::Existing => actix_web::http::StatusCode::OK,
    };
    let mut res = respond_marker(status, &w.marker, &clocks, Some(w.frame))?;
    if w.outcome == Outcome::Created
        && let Ok(v) =
            header::HeaderValue::from_str(&format!("/markers/{}?stream={stream}", w.marker.id))
    {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

#[derive(Serialize)]
struct BatchBody<'a> {
    stream: &'a str,
    created: usize,
    existing: usize,
    markers: Vec<MarkerView<'a>>,
}

/// The array form of `POST /markers`: entries parsed one by one (a malformed entry is named),
/// then written all or nothing by [`markers::create_batch`].
async fn create_batch(
    state: &AppState,
    query_stream: Option<&str>,
    body: &[u8],
) -> Result<HttpResponse, ApiError> {
    let stream = state.stream(query_stream)?;
    let raw: Vec<serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("request body: {e}")))?;
    if raw.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "batch_too_large",
            format!(
                "give 1 to {MAX_BATCH} markers in the array, got {}",
                raw.len()
            ),
        ));
    }
    let mut bodies = Vec::with_capacity(raw.len());
    for (i, v) in raw.into_iter().enumerate() {
        let id = v.get("id").and_then(|v| v.as_str()).map(str::to_owned);
        let b: NewMarker = serde_json::from_value(v).map_err(|e| {
            let who = id.map_or_else(|| "no id given".to_owned(), |id| format!("id {id}"));
            ApiError::bad_request("invalid_json", format!("markers[{i}] ({who}): {e}"))
        })?;
        bodies.push(b);
    }
    let (ctx, written) = markers::create_batch(state, &stream, bodies).await?;
    let clocks = ctx.clocks();
    let created = written
        .iter()
        .filter(|w| w.outcome == Outcome::Created)
        .count();
    let views = written
        .iter()
        .map(|w| {
            let mut v = MarkerView::new(&w.marker, &clocks, None)?;
            v.frame = Some(FrameView::from(w.frame));
            Ok(v)
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let status = if created > 0 {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(json_response(
        status,
        &BatchBody {
            stream: stream.as_str(),
            created,
            existing: written.len() - created,
            markers: views,
        },
    ))
}

fn respond_marker(
    status: actix_web::http::StatusCode,
    m: &Marker,
    clocks: &Clocks<'_>,
    frame: Option<Frame>,
) -> Result<HttpResponse, ApiError> {
    let mut view = MarkerView::new(m, clocks, None)?;
    view.frame = frame.map(FrameView::from);
    Ok(json_response(status, &view))
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
    let (view, index) = state.clocks(&stream).await?;
    respond_marker(
        actix_web::http::StatusCode::OK,
        &m,
        &Clocks::new(&view.timeline, &index),
        None,
    )
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveQuery {
    stream: Option<String>,
    kind: Option<String>,
    label: Option<String>,
    tag: Option<String>,
    severity: Option<String>,
}

/// `GET /markers/live?stream=&kind=&label=&tag=&severity=`: `event: marker` per new marker of
/// the stream that passes the filters of `GET /markers` (`event: lagged` when this client missed
/// some), framed, kept alive and ended at shutdown by [`crate::sse`];
/// at most `--sse-max-per-ip` / `--sse-max-clients` feeds (503 `too_many_connections` beyond,
/// and the connection is closed).
pub async fn live(
    req: HttpRequest,
    state: web::Data<AppState>,
    limits: web::Data<crate::limits::Limits>,
    query: web::Query<LiveQuery>,
) -> Result<HttpResponse, ApiError> {
    let stream = state.stream(query.stream.as_deref())?;
    let filter = marker_filter(
        query.kind.as_deref(),
        query.label.as_deref(),
        query.tag.as_deref(),
        query.severity.as_deref(),
    )?;
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
    if req.method() == actix_web::http::Method::HEAD {
        // The feed never ends: a HEAD answer must not wait for it.
        return Ok(crate::sse::head().finish());
    }
    let permit = match limits.sse.acquire(req.peer_addr().map(|a| a.ip())) {
        Ok(p) => p,
        Err(e) => {
            // Closed after the answer: a client retrying in a loop keeps no descriptor here.
            let mut res = actix_web::ResponseError::error_response(&e);
            res.head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
            return Ok(res);
        }
    };
    let rx = state.track(state.store.subscribe_markers().await)?;
    let events = marker_events(state.clone(), stream, filter, rx);
    Ok(crate::sse::respond(
        events,
        state.cfg.sse_keepalive,
        state.shutdown.clone(),
        permit,
        state.metrics.clone(),
    ))
}

/// The stream's new markers that pass `filter` as `event: marker` (and `event: lagged
/// {"missed":n}`), until the feed closes.
fn marker_events(
    state: web::Data<AppState>,
    stream: StreamName,
    filter: MarkerFilter,
    rx: hlsmark_store::MarkerFeed,
) -> impl futures_util::Stream<Item = Bytes> {
    let init = (state, (stream, filter), rx);
    futures_util::stream::unfold(init, |(state, sel, mut rx)| async move {
        let (stream, filter) = &sel;
        loop {
            match rx.recv().await {
                Ok(m) if m.stream == *stream && filter.matches(&m) => {
                    let Ok((view, index)) = state.clocks(stream).await else {
                        continue;
                    };
                    let clocks = Clocks::new(&view.timeline, &index);
                    let Ok(v) = MarkerView::new(&m, &clocks, None) else {
                        continue;
                    };
                    let Ok(json) = serde_json::to_string(&v) else {
                        continue;
                    };
                    let ev = crate::sse::event("marker", Some(&m.id.to_string()), &json);
                    return Some((ev, (state, sel, rx)));
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let ev = crate::sse::event("lagged", None, &format!("{{\"missed\":{n}}}"));
                    return Some((ev, (state, sel, rx)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
