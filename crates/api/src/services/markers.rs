//! Marker domain rules, callable without HTTP: the time a request names on the HLS clock (by
//! `hls`, `gen`, `pts` or `utc`), how far past the live edge it may be, the frame it snaps to,
//! the marker's style (severity, colour, tags), and creating one marker or an all-or-nothing
//! batch, idempotent by id.

use std::sync::Arc;

use hlsmark_clock::{Duration90k, GenTime, HlsTime, Segment, Timeline, UtcTime};
use hlsmark_store::{InsertOutcome, MAX_BATCH, Marker, Severity, StreamName, valid_color};
use serde::Deserialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::services::clocks::{Clocks, is_real_source};
use crate::services::segment_index::SegmentIndex;
use crate::services::snap::{Frame, SnapError};
use crate::state::{AppState, StreamView};

/// One millisecond: how far a UTC given to the millisecond may be before the exact time. A
/// client that computes a frame's UTC as the segment's PDT (printed to the ms, its sub-ms part
/// lost: segments are slewed and NTSC durations are not whole ms) plus the frame's offset (rounded
/// to the ms too) is off by up to two half milliseconds. Frames are at least ~8 ms apart, so this
/// never reaches the next frame.
const UTC_INPUT_TOLERANCE: Duration90k = Duration90k(90);
/// How far past the live edge a marker may be (clock skew of detectors, segment latency).
pub const FUTURE_TOLERANCE: Duration90k = Duration90k::from_secs(30);
/// How long a POST for a real source's not yet published instant waits for its segment (one
/// segment and the cut's delay, for the usual 1-2 s segments); after it, the nominal frame rate.
const PUBLISH_WAIT: std::time::Duration = std::time::Duration::from_secs(4);
/// How long past its newest segment's end (plus that segment's length) a stream whose epoch is
/// open may go without publishing before a marker past its media is answered 503: its ingest is
/// stalled or dead, and whether the instant will have video is not known.
const STALL_GRACE: Duration90k = Duration90k::from_secs(2);
/// How recent an instant after a closed epoch's end must be to get 503 (retry) rather than 400:
/// a restarted source's new epoch is registered with its first segment, a second or two after
/// the frame that anchors it.
const RESTART_GRACE: Duration90k = Duration90k::from_secs(5);

/// One marker of a `POST /markers` body (alone, or an entry of an array).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMarker {
    pub id: Option<Uuid>,
    pub label: String,
    pub kind: Option<String>,
    pub hls: Option<f64>,
    #[serde(rename = "gen")]
    pub gen_secs: Option<f64>,
    pub utc: Option<String>,
    /// Seconds of source presentation time (real sources).
    pub pts: Option<f64>,
    /// The epoch a `pts` belongs to (default: the newest whose media holds it).
    pub epoch: Option<u32>,
    pub duration: Option<f64>,
    /// `info` (default), `warning` or `critical`.
    pub severity: Option<String>,
    /// `#rrggbb` (stored lower case).
    pub color: Option<String>,
    /// Up to 16 tags of 1-32 of `[A-Za-z0-9_.:-]`; a repeated tag counts once.
    pub tags: Option<Vec<String>>,
    pub data: Option<serde_json::Value>,
    pub stream: Option<String>,
}

/// What a write did with a marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    /// The identical marker was already stored (a retry): nothing changed.
    Existing,
}

/// A marker as written (or found), with the frame its time landed on.
#[derive(Debug, Clone)]
pub struct Written {
    pub outcome: Outcome,
    pub marker: Marker,
    pub frame: Frame,
}

/// The clocks a write was made with: the stream's view and segment index (after any wait for
/// a real source's segment) and the end of its newest published segment.
pub struct Context {
    pub view: Arc<StreamView>,
    pub index: Arc<SegmentIndex>,
    pub published_end: Option<HlsTime>,
    /// The wall time the stream's media reaches (its newest segment's end, or a newer epoch's
    /// anchor) and how long it may stay there while the stream still counts as publishing.
    pub frontier: Option<(UtcTime, Duration90k)>,
}

impl Context {
    pub fn clocks(&self) -> Clocks<'_> {
        Clocks::new(&self.view.timeline, &self.index)
    }
}

fn invalid_time(name: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_time", format!("{name}: {e}"))
}

/// The error of batch entry `index`, named by its index and the id it gave.
fn entry_error(index: usize, id: Option<Uuid>, e: ApiError) -> ApiError {
    let who = id.map_or_else(|| "no id given".to_owned(), |id| format!("id {id}"));
    ApiError::new(
        e.status,
        e.code,
        format!("markers[{index}] ({who}): {}", e.message),
    )
}

/// The latest media time a marker may have: where the last epoch is now by the wall clock (or
/// where it ended, if it is closed) or the end of the newest published segment, whichever is
/// later, plus [`FUTURE_TOLERANCE`].
fn live_limit(clocks: &Clocks<'_>, published_end: Option<HlsTime>) -> HlsTime {
    let Some(last) = clocks.timeline.last() else {
        return HlsTime::ZERO;
    };
    let edge = match last.hls_end {
        Some(end) => end,
        None => clocks.utc_to_hls(UtcTime::now()).unwrap_or(last.hls_start),
    };
    let edge = published_end.map_or(edge, |p| p.max(edge));
    edge.checked_add(FUTURE_TOLERANCE).unwrap_or(edge)
}

/// A source presentation time (`"pts"`, seconds) on the HLS clock: `hls_start + (pts -
/// pts_start)` in the given epoch, or else in the newest epoch with a source PTS whose media holds
/// it (up to `limit` for the open epoch).
fn pts_to_hls(
    pts_secs: f64,
    epoch: Option<u32>,
    timeline: &Timeline,
    limit: HlsTime,
) -> Result<HlsTime, ApiError> {
    let pts = HlsTime::from_secs_f64(pts_secs)
        .map_err(|e| invalid_time("pts", e))?
        .ticks();
    let map = |e: &hlsmark_clock::Epoch| -> Option<HlsTime> {
        let d = pts.checked_sub(e.pts_start?)?;
        e.hls_start.checked_add(Duration90k(d))
    };
    let holds = |e: &hlsmark_clock::Epoch, t: HlsTime| {
        t >= e.hls_start && e.hls_end.map_or(t <= limit, |end| t < end)
    };
    if !timeline.epochs().iter().any(is_real_source) {
        return Err(invalid_time(
            "pts",
            "this stream has no source presentation times (a generator stream, or records from \
             before real sources): give \"hls\", \"gen\" or \"utc\"",
        ));
    }
    if let Some(n) = epoch {
        let e = timeline
            .epochs()
            .iter()
            .find(|e| e.index == n)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!(
                        "epoch {n} does not exist (this stream has epochs {} to {})",
                        timeline.epochs().first().map_or(0, |e| e.index),
                        timeline.last().map_or(0, |e| e.index)
                    ),
                )
            })?;
        if !is_real_source(e) {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("epoch {n} has no source presentation times"),
            ));
        }
        return map(e).filter(|t| holds(e, *t)).ok_or_else(|| {
            ApiError::bad_request(
                "time_out_of_range",
                format!("there is no video at pts {pts_secs} s in epoch {n}"),
            )
        });
    }
    timeline
        .epochs()
        .iter()
        .rev()
        .filter(|e| is_real_source(e))
        .find_map(|e| map(e).filter(|t| holds(e, *t)))
        .ok_or_else(|| {
            ApiError::bad_request(
                "time_out_of_range",
                format!(
                    "there is no video at pts {pts_secs} s: no epoch's media holds it (give \
                     \"epoch\" to pick one)"
                ),
            )
        })
}

/// The time a request body names, on the HLS clock, not yet snapped.
fn requested_time(
    body: &NewMarker,
    clocks: &Clocks<'_>,
    limit: HlsTime,
    published_end: Option<HlsTime>,
) -> Result<HlsTime, ApiError> {
    let given = [
        body.hls.is_some(),
        body.gen_secs.is_some(),
        body.utc.is_some(),
        body.pts.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        return Err(ApiError::bad_request(
            "invalid_time",
            "give exactly one of \"hls\" (seconds), \"gen\" (seconds), \"pts\" (seconds of \
             source presentation time) or \"utc\" (RFC 3339)",
        ));
    }
    if body.epoch.is_some() && body.pts.is_none() {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "\"epoch\" only goes with \"pts\" (it says which run of the source the PTS is from)",
        ));
    }
    if let Some(h) = body.hls {
        HlsTime::from_secs_f64(h).map_err(|e| invalid_time("hls", e))
    } else if let Some(g) = body.gen_secs {
        let g = GenTime::from_secs_f64(g).map_err(|e| invalid_time("gen", e))?;
        Ok(clocks.timeline.gen_to_hls(g)?)
    } else if let Some(p) = body.pts {
        pts_to_hls(p, body.epoch, clocks.timeline, limit)
    } else {
        let u = body.utc.as_deref().unwrap_or_default();
        let u = UtcTime::parse_rfc3339(u).map_err(|e| invalid_time("utc", e))?;
        // UTC comes in (and goes out) with millisecond precision, rounded to the nearest ms: a
        // frame start printed as .484 for .4843 must come back to that frame, not the one before.
        let t = clocks.utc_to_hls(u)?;
        // Never across the end of the epoch holding the time or of the published media: 1 ms
        // before an epoch's end is its last frame, not the first frame of the next run (another
        // recording, maybe), nor a frame not published yet.
        let epoch_end = clocks.timeline.epoch_at_hls(t).ok().and_then(|e| e.hls_end);
        let media_end = published_end.filter(|p| t < *p);
        let stop = [epoch_end, media_end].into_iter().flatten().min();
        Ok(match stop {
            Some(end) if t + UTC_INPUT_TOLERANCE >= end => t,
            _ => t + UTC_INPUT_TOLERANCE,
        })
    }
}

/// The stream's clocks for a write of `bodies`. A real source's "now" is usually past its
/// newest segment (cut at the next keyframe): the latest time the bodies name is waited for,
/// bounded, so markers are snapped through that segment's real frame table rather than at the
/// nominal frame rate.
pub async fn context(
    state: &AppState,
    stream: &StreamName,
    bodies: &[NewMarker],
) -> Result<Context, ApiError> {
    let mut view = state.view(stream).await?;
    if view.timeline.is_empty() {
        return Err(ApiError::not_found(
            "unknown_stream",
            format!("stream {stream:?} has no timeline yet: markers need its clocks"),
        ));
    }
    let mut index = state.index(stream, &view).await?;
    // The newest published media: an unpaced generator runs ahead of the wall clock.
    let mut newest = state
        .track(state.store.last_segments(stream, 1).await)?
        .pop();
    if view.timeline.last().is_some_and(is_real_source) {
        let clocks = Clocks::new(&view.timeline, &index);
        let published_end = newest.as_ref().map(Segment::hls_end);
        let limit = live_limit(&clocks, published_end);
        let latest = bodies
            .iter()
            .filter_map(|b| requested_time(b, &clocks, limit, published_end).ok())
            .filter(|raw| *raw <= limit)
            .max();
        if let Some(raw) = latest
            && published_end.is_some_and(|end| raw >= end)
        {
            // Waited for, and read again whether it came or not: a segment of a new epoch may
            // have come instead.
            crate::services::live::wait_published(state, stream, raw, PUBLISH_WAIT).await?;
            view = state.view(stream).await?;
            index = state.index(stream, &view).await?;
            newest = state
                .track(state.store.last_segments(stream, 1).await)?
                .pop();
        }
    }
    let published_end = newest.as_ref().map(Segment::hls_end);
    let frontier = newest.as_ref().map(|s| {
        let mut utc = s.utc_start + s.duration;
        if let Some(e) = view.timeline.last()
            && e.index > s.epoch
        {
            utc = utc.max(e.utc_start);
        }
        (utc, s.duration + STALL_GRACE)
    });
    Ok(Context {
        view,
        index,
        published_end,
        frontier,
    })
}

/// 503 `no_video_yet`: the instant is past everything the stream published and the stream is not
/// publishing now, so whether it will have video is not known until the stream is back. A marker
/// placed by extrapolation there landed on other video when the source came back as a new epoch
/// (the HLS clock goes on where the old epoch ended).
async fn no_video_yet(
    state: &AppState,
    stream: &StreamName,
    what: &str,
    since: UtcTime,
) -> ApiError {
    let how = crate::services::streams::ingest_status(state, stream)
        .await
        .map_or_else(String::new, |s| {
            format!(
                " (its ingest last reported: {})",
                crate::services::streams::state_phrase(&s)
            )
        });
    ApiError::new(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "no_video_yet",
        format!(
            "there is no video at {what} yet: stream {stream} has published nothing since \
             {since}{how}. Retry: once the stream is back the marker lands, or (a time while \
             it was down) is refused with 400 time_out_of_range"
        ),
    )
}

/// Whether the body names a recent instant after the end of the stream's newest epoch, closed
/// because its source stopped (a restart may be under way), and the wall time that epoch ended.
fn after_closed_end(body: &NewMarker, clocks: &Clocks<'_>) -> Option<UtcTime> {
    let last = clocks.timeline.last()?;
    let end = last.hls_end?;
    let end_utc = clocks
        .hls_to_utc(end - Duration90k(1))
        .ok()
        .map(|u| u + Duration90k(1))?;
    let now = UtcTime::now();
    let at = if let Some(h) = body.hls {
        let h = HlsTime::from_secs_f64(h).ok()?;
        (h >= end).then(|| end_utc + (h - end))?
    } else if let Some(u) = body.utc.as_deref() {
        UtcTime::parse_rfc3339(u).ok()?
    } else {
        return None;
    };
    (at >= end_utc && at + RESTART_GRACE >= now && at <= now + FUTURE_TOLERANCE).then_some(end_utc)
}

/// The instant a body names, as given (for messages).
fn what(body: &NewMarker) -> String {
    if let Some(u) = &body.utc {
        u.chars().take(40).collect()
    } else if let Some(h) = body.hls {
        format!("{h} s (HLS)")
    } else if let Some(g) = body.gen_secs {
        format!("{g} s (GEN)")
    } else {
        format!("pts {} s", body.pts.unwrap_or_default())
    }
}

/// The marker `id` with its stream: in `stream` when given, else in the default stream or, when
/// it is not there, in whichever stream holds it (ids are UUIDs, so a link with the id alone
/// works for a marker of any stream). 404 `marker_not_found` names where it looked.
pub async fn find(
    state: &AppState,
    stream: Option<&str>,
    id: Uuid,
) -> Result<(StreamName, Marker), ApiError> {
    let first = state.stream(stream)?;
    if let Some(m) = state.track(state.store.get_marker(&first, id).await)? {
        return Ok((first, m));
    }
    if stream.is_some() {
        return Err(ApiError::not_found(
            "marker_not_found",
            format!("no marker {id} in stream {first}"),
        ));
    }
    for other in state.track(state.store.streams().await)? {
        if other == first {
            continue;
        }
        if let Some(m) = state.track(state.store.get_marker(&other, id).await)? {
            return Ok((other, m));
        }
    }
    Err(ApiError::not_found(
        "marker_not_found",
        format!("no marker {id} in any stream"),
    ))
}

/// Severity, colour and tags of a body, normalised: severity `info` when not given, colour lower
/// case, a repeated tag once (first place). Tag rules are the store's (`Marker::validate`).
fn style(body: &NewMarker) -> Result<(Severity, Option<String>, Vec<String>), ApiError> {
    let severity = match body.severity.as_deref() {
        None => Severity::Info,
        Some(s) => s.parse::<Severity>()?,
    };
    let color = match body.color.as_deref() {
        None => None,
        Some(c) if valid_color(c) => Some(c.to_ascii_lowercase()),
        Some(c) => {
            return Err(ApiError::bad_request(
                "invalid_color",
                format!(
                    "color must be #rrggbb (six hex digits), got {:?}",
                    c.chars().take(80).collect::<String>()
                ),
            ));
        }
    };
    let mut tags: Vec<String> = Vec::new();
    for t in body.tags.iter().flatten() {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    Ok((severity, color, tags))
}

/// Turns a request body into a valid marker: the given time snapped to the frame showing then
/// (through the segment's frame table), the other clocks computed from it.
pub async fn build_marker(
    state: &AppState,
    body: NewMarker,
    stream: StreamName,
    ctx: &Context,
) -> Result<(Marker, Frame), ApiError> {
    let clocks = ctx.clocks();
    let limit = live_limit(&clocks, ctx.published_end);
    if let Some(since) = after_closed_end(&body, &clocks) {
        let status = crate::services::streams::ingest_status(state, &stream).await;
        if !status.is_some_and(|s| s.state.is_final()) {
            return Err(no_video_yet(state, &stream, &what(&body), since).await);
        }
    }
    let raw = requested_time(&body, &clocks, limit, ctx.published_end)?;
    // The time must hold video: not before the stream, not while it was down, not in the future.
    clocks.timeline.check_media(raw)?;
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
    if ctx.published_end.is_some_and(|end| raw >= end)
        && let Some((since, grace)) = ctx.frontier
        && UtcTime::now() > since + grace
    {
        // A stream whose ingest ended (a file played once, an import) gets nothing more at
        // that time: any later run starts now or later. Known, so 400, not "retry".
        if let Some(s) = crate::services::streams::ingest_status(state, &stream).await
            && s.state.is_final()
        {
            return Err(ApiError::bad_request(
                "time_out_of_range",
                format!(
                    "there is no video at {}: stream {stream} ended at {since} ({})",
                    what(&body),
                    crate::services::streams::state_phrase(&s)
                ),
            ));
        }
        return Err(no_video_yet(state, &stream, &what(&body), since).await);
    }
    let frame = state
        .frame_tables
        .snap(&*state.store, &stream, &clocks, raw)
        .await
        .map_err(|e| match e {
            SnapError::Timeline(e) => ApiError::from(e),
            SnapError::Store(e) => state.store_error(&e),
        })?;
    let hls = frame.hls;
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
    let (severity, color, tags) = style(&body)?;
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
    let marker = Marker {
        id: body.id.unwrap_or_else(Uuid::now_v7),
        stream,
        label: body.label,
        kind: body.kind.unwrap_or_else(|| "manual".to_owned()),
        gen_time: clocks.hls_to_gen(hls)?,
        hls,
        utc: clocks.hls_to_utc(hls)?,
        duration,
        severity,
        color,
        tags,
        data,
        created_at: UtcTime::now(),
    };
    marker.validate()?;
    Ok((marker, frame))
}

/// Creates one marker. Idempotent by id: the same marker again is [`Outcome::Existing`] with
/// the stored one (`created_at` is not compared: a retried POST is the same marker); the same id
/// with other content is 409 `conflict`.
pub async fn create_one(
    state: &AppState,
    stream: &StreamName,
    body: NewMarker,
) -> Result<(Context, Written), ApiError> {
    let ctx = context(state, stream, std::slice::from_ref(&body)).await?;
    let (marker, frame) = build_marker(state, body, stream.clone(), &ctx).await?;
    let existing = |e: Marker| Written {
        outcome: Outcome::Existing,
        marker: e,
        frame,
    };
    if let Some(e) = state.track(state.store.get_marker(stream, marker.id).await)? {
        return if e.same_content(&marker) {
            Ok((ctx, existing(e)))
        } else {
            Err(conflict(marker.id))
        };
    }
    let outcome = match state.store.insert_marker(&marker).await {
        Ok(InsertOutcome::Inserted) => Outcome::Created,
        Ok(InsertOutcome::AlreadyExists) => Outcome::Existing,
        Err(e) if e.kind() == hlsmark_store::ErrorKind::Conflict => {
            // Lost a race with an identical POST?
            return match state.track(state.store.get_marker(stream, marker.id).await)? {
                Some(e) if e.same_content(&marker) => Ok((ctx, existing(e))),
                _ => Err(conflict(marker.id)),
            };
        }
        Err(e) => return Err(state.store_error(&e)),
    };
    if outcome == Outcome::Created {
        state.invalidate(stream);
    }
    Ok((
        ctx,
        Written {
            outcome,
            marker,
            frame,
        },
    ))
}

fn conflict(id: Uuid) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::CONFLICT,
        "conflict",
        format!("marker {id} already exists with different content"),
    )
}

/// Creates up to [`MAX_BATCH`] markers of one stream, **all or nothing**: every entry is
/// checked (its time, snapping, style, the store's rules, then ids against the stored markers)
/// before anything is written; the first entry that fails is named by its index and id
/// (`markers[3] (id …): …`) with the code and status it would get alone (409 for a conflict),
/// and nothing is stored. Each entry is idempotent by id like a single POST.
pub async fn create_batch(
    state: &AppState,
    stream: &StreamName,
    bodies: Vec<NewMarker>,
) -> Result<(Context, Vec<Written>), ApiError> {
    if bodies.is_empty() || bodies.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            if bodies.is_empty() {
                "invalid_json"
            } else {
                "batch_too_large"
            },
            format!(
                "give 1 to {MAX_BATCH} markers in the array, got {}",
                bodies.len()
            ),
        ));
    }
    for (i, b) in bodies.iter().enumerate() {
        if let Some(s) = b.stream.as_deref()
            && s != stream.as_str()
        {
            return Err(entry_error(
                i,
                b.id,
                ApiError::bad_request(
                    "invalid_stream",
                    format!(
                        "stream {:?}: every marker of a batch is for the batch's stream {stream} \
                         (?stream=)",
                        s.chars().take(80).collect::<String>()
                    ),
                ),
            ));
        }
    }
    let ctx = context(state, stream, &bodies).await?;
    let mut built = Vec::with_capacity(bodies.len());
    for (i, b) in bodies.into_iter().enumerate() {
        let id = b.id;
        let m = build_marker(state, b, stream.clone(), &ctx)
            .await
            .map_err(|e| entry_error(i, id, e))?;
        built.push(m);
    }
    let markers: Vec<Marker> = built.iter().map(|(m, _)| m.clone()).collect();
    let outcomes = state.track(state.store.insert_marker_batch(stream, &markers).await)?;
    if outcomes.contains(&InsertOutcome::Inserted) {
        state.invalidate(stream);
    }
    let written = built
        .into_iter()
        .zip(outcomes)
        .map(|((marker, frame), o)| Written {
            outcome: match o {
                InsertOutcome::Inserted => Outcome::Created,
                InsertOutcome::AlreadyExists => Outcome::Existing,
            },
            marker,
            frame,
        })
        .collect();
    Ok((ctx, written))
}
