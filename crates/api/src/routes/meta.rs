//! The timeline views, health, metrics, the OpenAPI document and the player page.

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
    let utc = |t: HlsTime| {
        view.timeline
            .hls_to_utc(t)
            .ok()
            .map(|u| u.to_rfc3339_millis())
    };
    let win = match (window.first(), window.last()) {
        (Some(f), Some(l)) => json!({
            "first_seq": f.seq,
            "last_seq": l.seq,
            "start": secs(f.hls_start),
            "start_90k": f.hls_start.ticks(),
            "end": secs(l.hls_end()),
            "end_90k": l.hls_end().ticks(),
            "start_utc": utc(f.hls_start),
            "end_utc": utc(l.hls_end()),
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
        let utc = view
            .timeline
            .hls_to_utc(seg.hls_start)
            .map(|u| u.to_rfc3339_millis())
            .unwrap_or_else(|e| e.to_string());
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

/// `GET /readyz`: the store answers.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.track(state.store.ping().await)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ready"}"#))
}

/// `GET /metrics`
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
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
    ]);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// `GET /openapi.json`
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(crate::openapi::document().to_string())
}

const NOT_BUILT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hlsmark</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem}code{background:#eee;padding:.1rem .3rem}</style>
</head><body>
<h1>hlsmark is running</h1>
<p>The player page has not been built yet. Build it once, then reload:</p>
<p><code>npm --prefix frontend ci &amp;&amp; npm --prefix frontend run build</code></p>
<p>(or point <code>--frontend-dir</code> / <code>HLSMARK_FRONTEND_DIR</code> at a built <code>dist</code> directory).</p>
<p>The API works already: <a href="/hls/live/index.m3u8">/hls/live/index.m3u8</a>,
<a href="/markers">/markers</a>, <a href="/timeline">/timeline</a>, <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"#;

/// `GET /`: the built player page, or a page saying how to build it (never a blank page).
pub async fn index(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let path = state.cfg.frontend_dir.join("index.html");
    match web::block(move || actix_files::NamedFile::open(path))
        .await
        .ok()
        .and_then(Result::ok)
    {
        Some(f) => {
            let mut res = f.disable_content_disposition().into_response(&req);
            res.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-cache"),
            );
            res
        }
        None => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(NOT_BUILT),
    }
}

/// `GET /assets/{file}`: the page's bundles (`<frontend-dir>/assets/`), strict names only.
pub async fn asset(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let dir = state.cfg.frontend_dir.join("assets");
    let mut res = frontend_file(&req, dir, path.into_inner(), "/assets/").await?;
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=300"),
    );
    Ok(res)
}

/// `GET /{file}` for top-level files of the built page (`favicon.ico`, ...): strict names only.
pub async fn top_level_file(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    frontend_file(&req, state.cfg.frontend_dir.clone(), path.into_inner(), "/").await
}

/// One file of the built page from `dir`, by a plain name (no slashes, no leading dot, no `..`).
async fn frontend_file(
    req: &HttpRequest,
    dir: std::path::PathBuf,
    name: String,
    prefix: &str,
) -> Result<HttpResponse, ApiError> {
    let ok = !name.starts_with('.')
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.contains("..");
    let not_found = || ApiError::not_found("not_found", format!("no route for {prefix}{name}"));
    if !ok {
        return Err(not_found());
    }
    let path = dir.join(&name);
    let f = web::block(move || actix_files::NamedFile::open(path))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(not_found)?;
    Ok(f.disable_content_disposition().into_response(req))
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
