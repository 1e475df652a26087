//! `/hls/{stream}/...`: the live playlist (LL-HLS delivery directives `_HLS_msn`, `_HLS_part`,
//! `_HLS_skip`), time-range VOD playlists, segment, part and init files.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use hlsmark_clock::HlsTime;
use hlsmark_playlist::{Kind, Skip};
use serde::Deserialize;

use actix_web::HttpMessage as _;
use actix_web::ResponseError as _;
use actix_web::http::{Method, StatusCode};

use crate::error::ApiError;
use crate::routes::params::TimeParam;
use crate::services::clocks::Clocks;
use crate::state::{AppState, MAX_ABS_TICKS};

pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// Live playlists change every segment (parts: every part): clients and caches must revalidate.
pub const PLAYLIST_CACHE: &str = "no-cache";
/// Blocking playlist reloads (LL-HLS, `_HLS_msn`) and delta updates answer one request at one
/// moment: never stored.
pub const BLOCKING_CACHE: &str = "no-store";
/// A VOD playlist whose range ends at or before a published segment's end lists media that no
/// longer changes; it may be cached briefly (markers posted later for that range, and retention,
/// still change it).
const SETTLED_VOD_CACHE: &str = "public, max-age=60";
/// Most segments one VOD playlist lists (12 h of 1 s segments).
const MAX_VOD_SEGMENTS: usize = 43_200;

/// Every playlist answer (live, VOD; blocking reloads later): type and caching.
fn playlist_response(body: Bytes, cache: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(PLAYLIST_TYPE)
        .insert_header((header::CACHE_CONTROL, cache))
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
        "index.m3u8" => {
            let directives = Directives::parse(req.query_string())?;
            live_playlist(state, web::Path::from(stream), directives).await
        }
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

/// The LL-HLS delivery directives of a live playlist request (RFC 8216bis §6.2.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// `_HLS_msn`: block until this media sequence number is in the playlist.
    pub msn: Option<u64>,
    /// `_HLS_part`: ... and this part of it.
    pub part: Option<u64>,
    /// `_HLS_skip`: `YES` or `v2` (a delta update).
    pub skip: Skip,
}

/// Longest decimal-integer a directive may carry (u64::MAX has 20 digits).
const MAX_DIRECTIVE_DIGITS: usize = 20;

impl Directives {
    /// Parses the query of a live playlist request. `_HLS_msn` and `_HLS_part` are
    /// decimal-integers (digits only, within u64), `_HLS_skip` is `YES` or `v2`; each at most once,
    /// `_HLS_part` only with `_HLS_msn`. Other parameters (cache busters) are ignored as before.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let mut d = Self::default();
        let mut seen_skip = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = |why: &str| {
                ApiError::bad_request(
                    "invalid_hls_directive",
                    format!("{}: {why}", pair.chars().take(80).collect::<String>()),
                )
            };
            let number = |v: &str| -> Result<u64, ApiError> {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("must be a decimal integer (digits only)"));
                }
                if v.len() > MAX_DIRECTIVE_DIGITS {
                    return Err(bad("is larger than any media sequence number"));
                }
                v.parse::<u64>()
                    .map_err(|_| bad("is larger than any media sequence number"))
            };
            match key {
                "_HLS_msn" => {
                    if d.msn.is_some() {
                        return Err(bad("given more than once"));
                    }
                    d.msn = Some(number(value)?);
                }
                "_HLS_part" => {
                    if d.part.is_some() {
                        return Err(bad("given more than once"));
                    }
                    d.part = Some(number(value)?);
                }
                "_HLS_skip" => {
                    if seen_skip {
                        return Err(bad("given more than once"));
                    }
                    seen_skip = true;
                    d.skip = match value {
                        "YES" => Skip::Segments,
                        "v2" => Skip::SegmentsAndDateRanges,
                        _ => return Err(bad("must be YES or v2")),
                    };
                }
                k if k.starts_with("_HLS_") => {
                    return Err(bad(
                        "unknown delivery directive (known: _HLS_msn, _HLS_part, _HLS_skip)",
                    ));
                }
                _ => {}
            }
        }
        if d.part.is_some() && d.msn.is_none() {
            return Err(ApiError::bad_request(
                "invalid_hls_directive",
                "_HLS_part needs _HLS_msn (RFC 8216bis 6.2.5.2)",
            ));
        }
        Ok(d)
    }
}

/// `GET /hls/{stream}/index.m3u8[?_HLS_msn=&_HLS_part=&_HLS_skip=]`: the live playlist; with
/// `_HLS_msn` a blocking reload (`services::live`), with `_HLS_skip` a delta update.
pub async fn live_playlist(
    state: web::Data<AppState>,
    path: web::Path<String>,
    directives: Directives,
) -> Result<HttpResponse, ApiError> {
    let stream = state.stream(Some(&path))?;
    if let Some(msn) = directives.msn {
        let body = crate::services::live::blocking_playlist(
            &state,
            &stream,
            msn,
            directives.part,
            directives.skip,
        )
        .await?;
        let body = crate::files::public_playlist(&state.cfg, &stream, body);
        return Ok(playlist_response(body, BLOCKING_CACHE));
    }
    let answer = state.live_answer(&stream).await?;
    let (view, live) = (&answer.view, &answer.live);
    let public = |body| crate::files::public_playlist(&state.cfg, &stream, body);
    let mut res = if directives.skip != Skip::No && live.ll {
        playlist_response(
            public(live.body(directives.skip, &view.timeline)),
            BLOCKING_CACHE,
        )
    } else {
        playlist_response(public(live.full.clone()), PLAYLIST_CACHE)
    };
    if answer.stale {
        mark_stale(&mut res);
    }
    Ok(res)
}

/// Header of a live playlist served from the last good render while the store is unreachable:
/// the media it lists exists, newer segments are not in it yet.
pub const STALE_HEADER: &str = "x-hlsmark-stale";

fn mark_stale(res: &mut HttpResponse) {
    res.headers_mut().insert(
        header::HeaderName::from_static(STALE_HEADER),
        header::HeaderValue::from_static("1"),
    );
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
    // Wall-clock bounds go through the segment index (real sources slew UTC per segment).
    let needs_index = [from, to]
        .iter()
        .any(|t| matches!(t, Some(TimeParam::Utc(_))));
    let index = if needs_index {
        state.index(&stream, &view).await?
    } else {
        Default::default()
    };
    let clocks = Clocks::new(&view.timeline, &index);
    let from = match from {
        Some(t) => t.to_hls(&clocks)?,
        None => HlsTime(-MAX_ABS_TICKS),
    };
    let bounded = to.is_some();
    let to = match to {
        Some(t) => t.to_hls(&clocks)?,
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
    // Every segment of the range is published once one reaches its end.
    let settled = bounded && segs.last().is_some_and(|s| s.hls_end() >= to);
    let cache = if settled {
        SETTLED_VOD_CACHE
    } else {
        PLAYLIST_CACHE
    };
    let body = crate::files::public_playlist(&state.cfg, &stream, Bytes::from(text));
    Ok(playlist_response(body, cache))
}

/// `GET /hls/{stream}/{file}`: a segment, part or init file of the stream (`files::media_answer`
/// builds every media answer: validators, 304, ranges, immutable caching); the hinted part waits
/// until it is written (`services::live::part_file`).
pub async fn media_file(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (stream, file) = path.into_inner();
    let stream = state.stream(Some(&stream))?;
    crate::services::live::part_file(&req, &state, &stream, &file).await
}
