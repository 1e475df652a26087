//! `/hls/{stream}/...`: the live playlist, time-range VOD playlists, segment and init files.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use hlsmark_clock::HlsTime;
use hlsmark_playlist::Kind;
use serde::Deserialize;

use crate::error::ApiError;
use crate::files::{MediaKind, classify};
use crate::routes::params::TimeParam;
use crate::state::{AppState, MAX_ABS_TICKS};

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// Playlists change every segment: clients must revalidate (well under half a segment).
const PLAYLIST_CACHE: &str = "no-cache";
/// Segment and init URLs are never reused: epoch and sequence are in the file name, and the
/// playlist adds the epoch's wall-clock start as `?v=<hex>` (ignored here), because file names
/// start over at `e0-00000000.m4s` when a stream's data is wiped.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Most segments one VOD playlist lists (12 h of 1 s segments).
const MAX_VOD_SEGMENTS: usize = 43_200;

fn playlist_response(body: Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(PLAYLIST_TYPE)
        .insert_header((header::CACHE_CONTROL, PLAYLIST_CACHE))
        .body(body)
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

/// `GET /hls/{stream}/{file}`: a segment or init file of the stream, by strict name.
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
    let full = state
        .cfg
        .data_dir
        .join("hls")
        .join(stream.as_str())
        .join(&file);
    let gone = || {
        ApiError::not_found(
            "segment_not_found",
            format!("{file} is not (or no longer) available in stream {stream}"),
        )
    };
    let meta = match std::fs::metadata(&full) {
        Ok(m) if m.is_file() => m,
        _ => return Err(gone()),
    };
    let metrics = &state.metrics;
    let count = |n: usize| {
        metrics
            .files_served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics
            .file_bytes_served
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    };
    let bytes = if let Some(b) = state.files.get(&full, &meta) {
        metrics
            .file_cache_hits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        b
    } else if usize::try_from(meta.len()).is_ok_and(|n| n <= state.files.max_entry()) {
        let p = full.clone();
        let data = web::block(move || std::fs::read(p))
            .await
            .map_err(|e| ApiError::internal(format!("reading {file}: {e}")))?
            .map_err(|_| gone())?;
        let b = Bytes::from(data);
        state.files.put(full, &meta, b.clone());
        b
    } else {
        // Too big to cache: actix-files streams it (with ranges and conditional requests).
        let p = full.clone();
        let f = web::block(move || actix_files::NamedFile::open(p))
            .await
            .map_err(|e| ApiError::internal(format!("opening {file}: {e}")))?
            .map_err(|_| gone())?
            .set_content_type(
                kind.content_type()
                    .parse()
                    .unwrap_or_else(|_| actix_files::file_extension_to_mime("bin")),
            )
            .disable_content_disposition();
        count(usize::try_from(meta.len()).unwrap_or(usize::MAX));
        let mut res = f.into_response(&req);
        res.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static(IMMUTABLE),
        );
        return Ok(res);
    };
    count(bytes.len());
    Ok(file_response(kind, bytes))
}

fn file_response(kind: MediaKind, bytes: Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(kind.content_type())
        .insert_header((header::CACHE_CONTROL, IMMUTABLE))
        .body(bytes)
}
