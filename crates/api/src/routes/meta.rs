//! The timeline views, health, metrics and the OpenAPI document (the player page is `page.rs`).

use std::fmt::Write as _;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use hlsmark_clock::{HlsTime, Segment};
use serde_json::json;

use crate::error::ApiError;
use crate::routes::markers::StreamQuery;
use crate::state::{AppState, MAX_ABS_TICKS};

fn secs(t: HlsTime) -> f64 {
    t.as_secs_f64()
}

/// `GET /timeline?stream=`
pub async fn timeline(
    state: web::Data<AppState>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let stream = state.stream(query.stream_name())?;
    let view = state.view(&stream).await?;
    let Some(last_epoch) = view.timeline.last() else {
        return Err(ApiError::not_found(
            "unknown_stream",
            format!("stream {stream:?} has no timeline yet"),
        ));
    };
    let window = state.track(
        state
            .store
            .last_segments(&stream, state.cfg.live_window)
            .await,
    )?;
    let first_retained = state.track(
        state
            .store
            .segments_in_range(&stream, HlsTime(-MAX_ABS_TICKS), HlsTime(MAX_ABS_TICKS), 1)
            .await,
    )?;
    let epochs: Vec<_> = view
        .timeline
        .epochs()
        .iter()
        .map(|e| {
            json!({
                "index": e.index,
                "first_seq": e.first_seq,
                "hls_start": secs(e.hls_start),
                "hls_start_90k": e.hls_start.ticks(),
                "gen_start": e.gen_start.as_secs_f64(),
                "utc_start": e.utc_start.to_rfc3339_millis(),
                "fps": e.fps.to_string(),
                "segment_frames": e.segment_frames,
                "segment_duration": e.segment_duration().as_secs_f64(),
                "segment_duration_90k": e.segment_duration().ticks(),
                "hls_end": e.hls_end.map(secs),
                "hls_end_90k": e.hls_end.map(HlsTime::ticks),
            })
        })
        .collect();
    let win = match (window.first(), window.last()) {
        (Some(f), Some(l)) => json!({
            "first_seq": f.seq,
            "last_seq": l.seq,
            "start": secs(f.hls_start),
            "start_90k": f.hls_start.ticks(),
            "end": secs(l.hls_end()),
            "end_90k": l.hls_end().ticks(),
            // Each segment's own PDT (real sources slew UTC per segment).
            "start_utc": f.utc_start.to_rfc3339_millis(),
            "end_utc": (l.utc_start + l.duration).to_rfc3339_millis(),
        }),
        _ => serde_json::Value::Null,
    };
    let body = json!({
        "stream": stream.as_str(),
        "segment_duration": last_epoch.segment_duration().as_secs_f64(),
        "segment_duration_90k": last_epoch.segment_duration().ticks(),
        "fps": last_epoch.fps.to_string(),
        "epochs": epochs,
        "window": win,
        "live_edge": window.last().map(|l| secs(l.hls_end())),
        "live_edge_90k": window.last().map(|l| l.hls_end().ticks()),
        "retained": first_retained.first().map(|s| json!({"first_seq": s.seq, "start": secs(s.hls_start), "start_90k": s.hls_start.ticks()})),
    });
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body.to_string()))
}

/// `GET /debug/timeline?stream=`: plain text, every clock of the epochs and the window.
pub async fn debug_timeline(
    state: web::Data<AppState>,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let stream = state.stream(query.stream_name())?;
    let view = state.view(&stream).await?;
    if view.timeline.is_empty() {
        return Err(ApiError::not_found(
            "unknown_stream",
            format!("stream {stream:?} has no timeline yet"),
        ));
    }
    let segs: Vec<Segment> = state.track(
        state
            .store
            .last_segments(&stream, state.cfg.live_window)
            .await,
    )?;
    let mut s = String::new();
    let _ = writeln!(s, "stream {stream}  store version {}", view.version);
    let _ = writeln!(s, "\nepochs ({}):", view.timeline.epochs().len());
    for e in view.timeline.epochs() {
        let _ = writeln!(
            s,
            "  #{:<3} first_seq {:<8} fps {:<10} {} frames/segment\n       HLS {:?}\n       GEN {:?}\n       UTC {} ({:?})\n       end {:?}",
            e.index,
            e.first_seq,
            e.fps.to_string(),
            e.segment_frames,
            e.hls_start,
            e.gen_start,
            e.utc_start,
            e.utc_start,
            e.hls_end
        );
    }
    let _ = writeln!(s, "\nlive window ({} segments):", segs.len());
    let _ = writeln!(
        s,
        "  {:>8} {:>5} {:>14} {:>12} {:>24} {:>14}  file",
        "seq", "epoch", "hls_90k", "dur_90k", "utc (PDT)", "gen_90k"
    );
    for seg in &segs {
        let utc = seg.utc_start.to_rfc3339_millis();
        let gen_t = view
            .timeline
            .hls_to_gen(seg.hls_start)
            .map(|g| g.ticks().to_string())
            .unwrap_or_else(|_| "-".into());
        let _ = writeln!(
            s,
            "  {:>8} {:>5} {:>14} {:>12} {:>24} {:>14}  {}",
            seg.seq,
            seg.epoch,
            seg.hls_start.ticks(),
            seg.duration.ticks(),
            utc,
            gen_t,
            seg.file
        );
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(s))
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

/// `GET /readyz`: the store answers reads and takes writes (`readiness.rs`); 503
/// `store_unavailable` or `store_not_writable` with the reason otherwise.
pub async fn readyz(
    state: web::Data<AppState>,
    readiness: web::Data<crate::readiness::Readiness>,
) -> Result<HttpResponse, ApiError> {
    readiness
        .check(
            &*state.store,
            &state.cfg.default_stream,
            state.cfg.write_probe.as_deref(),
        )
        .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ready"}"#))
}

/// `GET /metrics`
pub async fn metrics(
    state: web::Data<AppState>,
    limits: web::Data<crate::limits::Limits>,
) -> HttpResponse {
    let stream = state.cfg.default_stream.clone();
    let markers = state
        .store
        .count_markers(&stream)
        .await
        .map_or(-1.0, |n| n as f64);
    let segments = state
        .store
        .last_segments(&stream, state.cfg.live_window)
        .await
        .map_or(-1.0, |v| v.len() as f64);
    let text = state.metrics.render(&[
        (
            "hlsmark_markers",
            "Markers of the default stream (-1: store unreachable).",
            markers,
        ),
        (
            "hlsmark_live_window_segments",
            "Segments in the default stream's live window (-1: store unreachable).",
            segments,
        ),
        (
            "hlsmark_open_files",
            "Segment and init files held open for reuse.",
            state.open_files.len() as f64,
        ),
        (
            "hlsmark_open_file_bytes",
            "Bytes of segment and init files held in memory.",
            state.open_files.bytes() as f64,
        ),
        (
            "hlsmark_sse_refused_total",
            "/markers/live requests refused by --sse-max-per-ip or --sse-max-clients.",
            limits.sse.refused() as f64,
        ),
        (
            "hlsmark_open_fds",
            "Open file descriptors of the process (-1: unknown).",
            open_fds(),
        ),
        (
            "hlsmark_fd_limit",
            "The process's open-file soft limit.",
            crate::server::fd_limit() as f64,
        ),
    ]);
    let mut text = text;
    stream_series(&state, &mut text).await;
    crate::routes::preview::metric_series(&state, &mut text);
    crate::services::webhooks::metric_series(&state, &mut text).await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// Entries of `/proc/self/fd` (-1 when it cannot be read).
fn open_fds() -> f64 {
    std::fs::read_dir("/proc/self/fd").map_or(-1.0, |d| d.count() as f64)
}

/// `hlsmark_stream_up{stream}` (1 when live and its status is not stale) and
/// `hlsmark_stream_restarts_total{stream}` for every stream with a status. Nothing when the store
/// cannot be read (the store error counter says so).
async fn stream_series(state: &AppState, text: &mut String) {
    let Ok(statuses) = state.store.statuses().await else {
        return;
    };
    let now = hlsmark_clock::UtcTime::now();
    text.push_str("# HELP hlsmark_stream_up 1 when the stream is live and its ingest reported within 15 s.\n# TYPE hlsmark_stream_up gauge\n");
    for (name, s) in &statuses {
        let up = s.state == hlsmark_store::StreamState::Live
            && !crate::services::streams::is_stale(s, now);
        // Stream names are [A-Za-z0-9_-]: nothing to escape in a label.
        let _ = writeln!(
            text,
            "hlsmark_stream_up{{stream=\"{name}\"}} {}",
            u8::from(up)
        );
    }
    text.push_str("# HELP hlsmark_stream_restarts_total Restarts of the stream's source.\n# TYPE hlsmark_stream_restarts_total counter\n");
    for (name, s) in &statuses {
        let _ = writeln!(
            text,
            "hlsmark_stream_restarts_total{{stream=\"{name}\"}} {}",
            s.restarts
        );
    }
    crate::services::streams::restream_series(&statuses, now, text);
}

/// `GET /openapi.json`
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(crate::openapi::document().to_string())
}

/// Fallback for every unmatched path.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(
        "not_found",
        format!(
            "no route for {} {}",
            req.method(),
            req.path().chars().take(200).collect::<String>()
        ),
    ))
}
