//! `/markers`: range queries in every clock, create (by HLS, GEN, PTS or UTC time, snapped to the
//! frame through the segment's frame table by `services::markers`), get and delete. Beside them:
//! the request body's limits (`body`) and the live feed (`live`); the JSON shape is
//! `crate::views`, who may write is `crate::auth`.

mod body;
mod live;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use hlsmark_clock::HlsTime;
use hlsmark_store::{Cursor, MAX_BATCH, MAX_LIMIT, Marker, RangeQuery};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use live::live;

use crate::auth::authorize;
use crate::error::ApiError;
use crate::routes::params::{TimeParam, check_join_seq, marker_filter, parse_u64};
use crate::services::clocks::Clocks;
use crate::services::markers::{self, NewMarker, Outcome};
use crate::services::snap::Frame;
use crate::state::{AppState, MAX_ABS_TICKS};
use crate::views::{FrameView, MarkerView};

const DEFAULT_LIMIT: u64 = 100;
/// Largest join sequence accepted (31,000 years of 1 s segments): keeps every conversion far from
/// `i64` overflow.
const MAX_SEQ: u64 = 1_000_000_000_000;

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
    let body = body::read_body(&req, &state, payload).await?;
    if body::is_array(&body) {
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
    let (stream, m) = crate::services::markers::find(&state, query.stream.as_deref(), id).await?;
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
    let (stream, _) = crate::services::markers::find(&state, query.stream.as_deref(), id).await?;
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
