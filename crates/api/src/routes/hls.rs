//! `/hls/{stream}/...`: the live playlist, time-range VOD playlists, segment and init files.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use hlsmark_clock::HlsTime;
use hlsmark_playlist::Kind;
use serde::Deserialize;

use std::sync::atomic::Ordering;

use actix_web::HttpMessage as _;
use actix_web::ResponseError as _;
use actix_web::http::{Method, StatusCode};

use crate::error::ApiError;
use crate::files::{self, Answer, OpenFile, classify};
use crate::routes::params::TimeParam;
use crate::state::{AppState, MAX_ABS_TICKS};
use crate::zerocopy::{self, Body, Job, ZcConn};

pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// Playlists change every segment: clients must revalidate (well under half a segment).
pub const PLAYLIST_CACHE: &str = "no-cache";
/// Most segments one VOD playlist lists (12 h of 1 s segments).
const MAX_VOD_SEGMENTS: usize = 43_200;

fn playlist_response(body: Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(PLAYLIST_TYPE)
        .insert_header((header::CACHE_CONTROL, PLAYLIST_CACHE))
        .body(body)
}

/// Everything under `/hls/`: `{stream}/index.m3u8`, `{stream}/vod.m3u8` and `{stream}/{file}`,
/// told apart by splitting the path. Segments decode like actix's path parameters (percent-decoded
/// once), and anything that is not exactly two segments is the same 404 as an unknown route.
pub async fn dispatch(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rest = req.match_info().unprocessed();
    let parts = rest
        .strip_prefix('/')
        .and_then(|r| r.split_once('/'))
        .filter(|(s, f)| !s.is_empty() && !f.is_empty() && !f.contains('/'))
        .and_then(|(s, f)| Some((percent_decode(s)?, percent_decode(f)?)));
    let Some((stream, file)) = parts else {
        return crate::routes::meta::not_found(req).await;
    };
    let pattern = match file.as_str() {
        "index.m3u8" => "/hls/{stream}/index.m3u8",
        "vod.m3u8" => "/hls/{stream}/vod.m3u8",
        _ => "/hls/{stream}/{file}",
    };
    req.extensions_mut().insert(crate::RouteLabel(pattern));
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut res = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{} is not allowed on {pattern}; use GET or HEAD",
                req.method()
            ),
        )
        .error_response();
        res.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return Ok(res);
    }
    match file.as_str() {
        "index.m3u8" => live_playlist(state, web::Path::from(stream)).await,
        "vod.m3u8" => {
            let query = web::Query::<VodQuery>::from_query(req.query_string())
                .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
            vod_playlist(state, web::Path::from(stream), query).await
        }
        _ => media_file(req, state, web::Path::from((stream, file))).await,
    }
}

/// One path segment percent-decoded (`None`: a broken escape or not UTF-8).
fn percent_decode(segment: &str) -> Option<String> {
    if !segment.contains('%') {
        return Some(segment.to_owned());
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `GET /hls/{stream}/index.m3u8`
pub async fn live_playlist(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let stream = state.stream(Some(&path))?;
    let body = state.live_playlist(&stream).await?;
    Ok(playlist_response(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VodQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /hls/{stream}/vod.m3u8?from=&to=`: every retained segment overlapping `[from, to)`.
pub async fn vod_playlist(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<VodQuery>,
) -> Result<HttpResponse, ApiError> {
    let stream = state.stream(Some(&path))?;
    let from = query
        .from
        .as_deref()
        .map(|s| TimeParam::parse("from", s))
        .transpose()?;
    let to = query
        .to
        .as_deref()
        .map(|s| TimeParam::parse("to", s))
        .transpose()?;
    let view = state.view(&stream).await?;
    if view.timeline.is_empty() {
        return Err(ApiError::not_found(
            "unknown_stream",
            format!("stream {stream:?} has no segments yet"),
        ));
    }
    let from = match from {
        Some(t) => t.to_hls(&view.timeline)?,
        None => HlsTime(-MAX_ABS_TICKS),
    };
    let to = match to {
        Some(t) => t.to_hls(&view.timeline)?,
        None => HlsTime(MAX_ABS_TICKS),
    };
    if from > to {
        return Err(ApiError::bad_request(
            "invalid_range",
            "from must not be after to",
        ));
    }
    let segs = state.track(
        state
            .store
            .segments_in_range(&stream, from, to, MAX_VOD_SEGMENTS + 1)
            .await,
    )?;
    if segs.len() > MAX_VOD_SEGMENTS {
        return Err(ApiError::bad_request(
            "range_too_large",
            format!("the range holds more than {MAX_VOD_SEGMENTS} segments; ask for a shorter one"),
        ));
    }
    let text = state
        .render(&stream, &view.timeline, &segs, Kind::Vod)
        .await?;
    Ok(playlist_response(Bytes::from(text)))
}

/// `GET /hls/{stream}/{file}`: a segment or init file of the stream, by strict name, with
/// validators, conditional requests and single byte ranges. On the server's own connections the
/// bytes go out with `sendfile` after the head (see `zerocopy`); elsewhere (actix's test harness)
/// they are read into the body.
pub async fn media_file(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (stream, file) = path.into_inner();
    let stream = state.stream(Some(&stream))?;
    let kind = classify(&file).ok_or_else(|| {
        ApiError::not_found(
            "not_found",
            format!(
                "{:?} is not a segment or init file name (e<epoch>-<seq>.m4s, e<epoch>-init.mp4)",
                file.chars().take(80).collect::<String>()
            ),
        )
    })?;
    // Both parts are validated to [A-Za-z0-9_-] and our name pattern: the path stays inside.
    let full = files::media_path(&state.cfg.data_dir, &stream, &file);
    let gone = || {
        ApiError::not_found(
            "segment_not_found",
            format!("{file} is not (or no longer) available in stream {stream}"),
        )
    };
    // The answer describes exactly the bytes of the open file, even if retention deletes the
    // name meanwhile (an open file stays readable).
    let Ok(OpenFile {
        file: handle,
        len: total,
        validators,
        ..
    }) = state.open_files.open(&full)
    else {
        return Err(gone());
    };
    let decided = files::answer(req.headers(), &validators, total);
    let mut res = match decided {
        Answer::NotModified => HttpResponse::NotModified(),
        Answer::Full => HttpResponse::Ok(),
        Answer::Partial { .. } => HttpResponse::PartialContent(),
        Answer::Unsatisfiable => {
            let mut res = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("{file} has {total} bytes; the requested range starts beyond its end"),
            )
            .error_response();
            res.headers_mut().insert(
                header::CONTENT_RANGE,
                header::HeaderValue::from_str(&format!("bytes */{total}"))
                    .map_err(|e| ApiError::internal(e.to_string()))?,
            );
            return Ok(res);
        }
    };
    res.insert_header((header::CACHE_CONTROL, files::IMMUTABLE))
        .insert_header((header::ACCEPT_RANGES, "bytes"));
    for h in &validators.headers {
        res.insert_header(h.clone());
    }
    let (offset, len) = match decided {
        Answer::NotModified => return Ok(res.finish()),
        Answer::Partial { start, len } => {
            res.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{total}", start + len - 1),
            ));
            (start, len)
        }
        _ => (0, total),
    };
    res.content_type(kind.content_type());
    let metrics = &state.metrics;
    metrics.files_served.fetch_add(1, Ordering::Relaxed);
    let head_only = req.method() == Method::HEAD;
    if !head_only {
        metrics.file_bytes_served.fetch_add(len, Ordering::Relaxed);
    }
    // Zero-copy needs the plain-text HTTP/1 head that `ZcStream` rewrites. The server speaks only
    // HTTP/1.x (as actix-web's `HttpServer::listen` does); should h2c ever be enabled, its
    // HPACK-framed answers carry the bytes in the body instead.
    if let Some(conn) = req
        .conn_data::<ZcConn>()
        .filter(|_| req.version() <= actix_web::http::Version::HTTP_11)
    {
        let body = if head_only {
            Body::None
        } else {
            Body::File(handle)
        };
        let marker = conn.push(Job { body, offset, len });
        if !head_only {
            metrics.files_direct.fetch_add(1, Ordering::Relaxed);
        }
        res.insert_header((zerocopy::MARKER_NAME, marker));
        return Ok(res.body(actix_web::body::None::new()));
    }
    let body = web::block(move || files::read_range(&handle, offset, len))
        .await
        .map_err(|e| ApiError::internal(format!("reading {file}: {e}")))?
        .map_err(|_| gone())?;
    Ok(res.body(body))
}

#[cfg(test)]
mod tests {
    use actix_web::{App, test};

    use super::*;
    use crate::ApiConfig;

    /// Outside the server's own connections (here actix's test harness) there is no zero-copy
    /// stream: the same answers carry the bytes read from the file.
    #[actix_web::test]
    async fn without_the_zero_copy_stream_bodies_are_read_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("hls/live")).unwrap();
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("hls/live/e0-00000001.m4s"), &bytes).unwrap();
        let spec = dir.path().join("s.redb");
        let store = hlsmark_store::open(spec.to_str().unwrap(), "t")
            .await
            .unwrap();
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let cfg = ApiConfig::new(dir.path().to_path_buf());
        let state = web::Data::new(AppState::new(store, cfg, rx));
        let app = test::init_service(
            App::new()
                .app_data(state.clone())
                .configure(crate::configure),
        )
        .await;
        let get = |range: Option<&str>| {
            let mut req = test::TestRequest::get().uri("/hls/live/e0-00000001.m4s");
            if let Some(r) = range {
                req = req.insert_header((header::RANGE, r));
            }
            req.to_request()
        };
        let res = test::call_service(&app, get(None)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(!res.headers().contains_key(zerocopy::MARKER_HEADER));
        assert_eq!(&test::read_body(res).await[..], &bytes[..]);
        let res = test::call_service(&app, get(Some("bytes=10-19"))).await;
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(&test::read_body(res).await[..], &bytes[10..20]);
        let sent = state.metrics.files_direct.load(Ordering::Relaxed);
        assert_eq!(sent, 0, "no zero-copy answers without the stream");
    }
}
