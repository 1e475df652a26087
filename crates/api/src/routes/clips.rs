//! Clips: `GET /clips/{stream}.mp4?from=&to=` and `GET /markers/{id}/clip.mp4?pad=`: a standard
//! MP4 (faststart) of the retained segments, stream-copied, whose first shown frame is the frame
//! at `from` (or the marker's frame, `pad` seconds earlier). The head (`ftyp` + `moov`) leaves at
//! once; the sample bytes follow from the segment files in 256 KiB reads on the blocking pool.
//! One `Range: bytes=` range is answered (206), as browsers ask for when seeking in an MP4.

use std::io;
use std::sync::Arc;

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};
use bytes::Bytes;
use hlsmark_clock::{Duration90k, HlsTime};
use hlsmark_media::clip::ReadAt;
use hlsmark_store::StreamName;
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::ApiError;
use crate::files::{Answer, Validators};
use crate::routes::params::TimeParam;
use crate::services::clips::{self, Prepared, Scope};
use crate::services::clocks::Clocks;
use crate::state::AppState;

/// Padding before and after a marker's span when `?pad=` is not given.
pub const DEFAULT_PAD: Duration90k = Duration90k(2 * 90_000);
/// Largest `?pad=`: 60 s on each side.
const MAX_PAD_SECS: f64 = 60.0;
/// Half a millisecond: a `from` printed from ticks (a marker's `utc` to the millisecond) may read
/// back a little before its frame and must still start on it (as thumbnails and markers do).
const INPUT_TOLERANCE: Duration90k = Duration90k(45);
/// Bytes read from a segment per body chunk.
const CHUNK: u64 = 256 << 10;
/// How long a clip's client may take nothing before its slot is given back ([`watch_slot`]).
const CLIP_STALL_RELEASE: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipQuery {
    from: Option<String>,
    to: Option<String>,
    download: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkerClipQuery {
    stream: Option<String>,
    pad: Option<String>,
    download: Option<String>,
}

fn flag(name: &str, v: Option<&str>) -> Result<bool, ApiError> {
    match v.map(str::trim) {
        None | Some("0" | "false" | "") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            "invalid_parameter",
            format!(
                "{name}={:?}: use 1 or 0",
                other.chars().take(32).collect::<String>()
            ),
        )),
    }
}

fn too_long(state: &AppState, len: Duration90k) -> Result<(), ApiError> {
    let max = state.cfg.clip_max_duration;
    let max_ticks = i64::try_from(max.as_millis()).unwrap_or(i64::MAX / 90) * 90;
    if len.ticks() > max_ticks {
        return Err(ApiError::bad_request(
            "range_too_large",
            format!(
                "a clip lasts at most {:?} (--clip-max-duration); this one would last {:.3} s",
                max,
                len.as_secs_f64()
            ),
        ));
    }
    Ok(())
}

/// `GET /clips/{stream}.mp4?from=&to=&download=`
pub async fn range_clip(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ClipQuery>,
) -> Result<HttpResponse, ApiError> {
    let stream = state.stream(Some(&path))?;
    let download = flag("download", query.download.as_deref())?;
    let need = |name: &str, v: Option<&str>| -> Result<TimeParam, ApiError> {
        let v = v.ok_or_else(|| {
            ApiError::bad_request(
                "invalid_time",
                format!("{name} is required: seconds on the HLS clock (12.5) or an RFC 3339 time"),
            )
        })?;
        TimeParam::parse(name, v)
    };
    let from = need("from", query.from.as_deref())?;
    let to = need("to", query.to.as_deref())?;
    let (view, index) = state.clocks(&stream).await?;
    if view.timeline.is_empty() {
        return Err(crate::services::streams::no_timeline(&state, &stream).await);
    }
    let clocks = Clocks::new(&view.timeline, &index);
    let (from, to) = (from.to_hls(&clocks)? + INPUT_TOLERANCE, to.to_hls(&clocks)?);
    if to <= from {
        // A time before the stream's first video is its start: a range that ends there holds
        // nothing of the stream (it read "to (0.000 s) must be after from (0.001 s)").
        let start = view.timeline.epochs().first().map(|e| e.hls_start);
        if start == Some(to)
            && let Some(first) = view.timeline.epochs().first()
        {
            return Err(ApiError::not_found(
                "no_segments",
                format!(
                    "the range ends before the video of {stream} begins ({}): nothing to clip",
                    first.utc_start.to_rfc3339_millis()
                ),
            ));
        }
        let given = |v: Option<&str>| v.unwrap_or_default().chars().take(40).collect::<String>();
        return Err(ApiError::bad_request(
            "invalid_range",
            format!(
                "to ({}) must be after from ({}), by more than half a millisecond",
                given(query.to.as_deref()),
                given(query.from.as_deref())
            ),
        ));
    }
    too_long(&state, to - from)?;
    let p = clips::prepare(&state, &stream, from, to, Scope::Range).await?;
    let name = format!("{stream}-{}.mp4", file_time(&clocks, p.plan.info.start));
    Ok(answer(
        &req,
        state.cfg.clip_max_mbps,
        &stream,
        p,
        download.then_some(name),
    ))
}

/// `GET /markers/{id}/clip.mp4?stream=&pad=&download=`: the marker's span with `pad` seconds
/// (default 2) before and after, within the marker's epoch and the retention.
pub async fn marker_clip(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<MarkerClipQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = uuid::Uuid::try_parse(&path)
        .map_err(|_| ApiError::bad_request("invalid_id", "a marker id is a UUID"))?;
    state.stream(query.stream.as_deref())?;
    let download = flag("download", query.download.as_deref())?;
    let pad = match query.pad.as_deref() {
        None => DEFAULT_PAD,
        Some(s) => {
            let secs: f64 = s.trim().parse().unwrap_or(f64::NAN);
            if !(0.0..=MAX_PAD_SECS).contains(&secs) {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!(
                        "pad={:?}: seconds from 0 to {MAX_PAD_SECS}",
                        s.chars().take(32).collect::<String>()
                    ),
                ));
            }
            Duration90k::from_secs_f64(secs)
                .map_err(|e| ApiError::bad_request("invalid_parameter", e.to_string()))?
        }
    };
    let (stream, m) = crate::services::markers::find(&state, query.stream.as_deref(), id).await?;
    // At least the marker's own frame, however short its span.
    let span = m.duration.max(Duration90k(1));
    too_long(&state, span + pad + pad)?;
    let from = m.hls - pad;
    let to = m.hls + span + pad;
    let p = clips::prepare(&state, &stream, from, to, Scope::Around(m.hls)).await?;
    let (view, index) = state.clocks(&stream).await?;
    let clocks = Clocks::new(&view.timeline, &index);
    let name = format!(
        "{stream}-{}-{}.mp4",
        file_time(&clocks, p.plan.info.start),
        file_label(&m.label)
    );
    Ok(answer(
        &req,
        state.cfg.clip_max_mbps,
        &stream,
        p,
        download.then_some(name),
    ))
}

/// The clip's wall time for a file name: `2026-11-24T07-00-03.500Z`.
fn file_time(clocks: &Clocks<'_>, t: HlsTime) -> String {
    clocks.hls_to_utc(t).map_or_else(
        |_| format!("{:.3}s", t.as_secs_f64()),
        |u| u.to_rfc3339_millis().replace(':', "-"),
    )
}

/// A label as part of a file name: ASCII letters, digits, `-` and `_`, at most 40.
fn file_label(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let s = s.trim_matches('-').to_owned();
    if s.is_empty() { "marker".to_owned() } else { s }
}

/// A piece of the answer body.
enum Part {
    Head(Bytes),
    File {
        file: Arc<dyn ReadAt>,
        offset: u64,
        len: u64,
    },
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Head(b) => b.len() as u64,
            Part::File { len, .. } => *len,
        }
    }
}

/// The parts of bytes `start..start + len` of the clip.
fn parts(p: &Prepared, start: u64, len: u64) -> Vec<Part> {
    let mut all = vec![Part::Head(p.plan.head.clone())];
    all.extend(p.plan.pieces.iter().map(|pc| Part::File {
        file: p.files[pc.segment].clone(),
        offset: pc.offset,
        len: pc.len,
    }));
    let end = start + len;
    let mut at = 0u64;
    let mut out = Vec::new();
    for part in all {
        let (lo, hi) = (at, at + part.len());
        at = hi;
        if hi <= start || lo >= end {
            continue;
        }
        let (cut_lo, cut_hi) = (start.max(lo) - lo, end.min(hi) - lo);
        out.push(match part {
            Part::Head(b) => Part::Head(
                b.slice(usize::try_from(cut_lo).unwrap_or(0)..usize::try_from(cut_hi).unwrap_or(0)),
            ),
            Part::File { file, offset, .. } => Part::File {
                file,
                offset: offset + cut_lo,
                len: cut_hi - cut_lo,
            },
        });
    }
    out
}

/// Paces a body to at most `bytes_per_sec` (0: no pacing): before each chunk it waits until the
/// bytes already sent are due.
struct Pace {
    bytes_per_sec: u64,
    start: std::time::Instant,
    sent: u64,
}

impl Pace {
    async fn wait(&mut self, next: u64) {
        if self.bytes_per_sec > 0 {
            // A sleep, not media time: float seconds are fine here.
            #[allow(clippy::cast_precision_loss)]
            let due =
                std::time::Duration::from_secs_f64(self.sent as f64 / self.bytes_per_sec as f64);
            if let Some(ahead) = due.checked_sub(self.start.elapsed()) {
                tokio::time::sleep(ahead).await;
            }
        }
        self.sent += next;
    }
}

/// A clip answer's slot, given back early when its client stops taking bytes.
struct Slot {
    permit: std::sync::Mutex<Option<OwnedSemaphorePermit>>,
    t0: std::time::Instant,
    /// Milliseconds after `t0` the body was last asked for bytes.
    polled: std::sync::atomic::AtomicU64,
}

impl Slot {
    fn touch(&self) {
        let ms = u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.polled.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn idle(&self) -> std::time::Duration {
        let at = self.polled.load(std::sync::atomic::Ordering::Relaxed);
        self.t0
            .elapsed()
            .saturating_sub(std::time::Duration::from_millis(at))
    }
}

/// Watches a clip's slot: when its body has not been asked for bytes for `stall` (the client
/// stopped reading and the socket's buffers are full), the slot is given back, so clients that
/// stop reading cannot hold every clip slot (8 such connections answered every other clip 503
/// for as long as they stayed open). The answer itself goes on if the client reads again; it
/// then just no longer counts against `--clip-max-concurrent`. Ends with the body.
fn watch_slot(slot: &Arc<Slot>, stall: std::time::Duration) {
    let weak = Arc::downgrade(slot);
    let period = (stall / 4).max(std::time::Duration::from_millis(50));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let Some(slot) = weak.upgrade() else { return };
            if slot.idle() >= stall {
                if let Ok(mut p) = slot.permit.lock() {
                    p.take();
                }
                tracing::debug!(idle = ?slot.idle(), "clip client stopped reading: its slot is given back");
                return;
            }
        }
    });
}

/// The body: the parts in order, file bytes read in [`CHUNK`]s on the blocking pool, paced to
/// `--clip-max-mbps`. Holds the clip's slot until it ends, the client goes, or the client takes
/// nothing for `stall` ([`watch_slot`]).
fn body(
    parts: Vec<Part>,
    permit: OwnedSemaphorePermit,
    mbps: u32,
    stall: std::time::Duration,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
    let pace = Pace {
        bytes_per_sec: u64::from(mbps) * 1_000_000 / 8,
        start: std::time::Instant::now(),
        sent: 0,
    };
    let slot = Arc::new(Slot {
        permit: std::sync::Mutex::new(Some(permit)),
        t0: std::time::Instant::now(),
        polled: std::sync::atomic::AtomicU64::new(0),
    });
    watch_slot(&slot, stall);
    let state = (
        parts.into_iter(),
        None::<(Arc<dyn ReadAt>, u64, u64)>,
        (slot, pace),
    );
    futures_util::stream::try_unfold(state, |(mut parts, mut cur, (slot, mut pace))| async move {
        slot.touch();
        loop {
            if let Some((file, at, left)) = cur.take() {
                if left == 0 {
                    continue;
                }
                let n = left.min(CHUNK);
                pace.wait(n).await;
                let f = file.clone();
                let chunk = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0)];
                    f.read_exact_at(&mut buf, at).map(|()| Bytes::from(buf))
                })
                .await
                .map_err(io::Error::other)??;
                return Ok(Some((
                    chunk,
                    (parts, Some((file, at + n, left - n)), (slot, pace)),
                )));
            }
            match parts.next() {
                None => return Ok(None),
                Some(Part::Head(b)) => return Ok(Some((b, (parts, None, (slot, pace))))),
                Some(Part::File { file, offset, len }) => cur = Some((file, offset, len)),
            }
        }
    })
}

/// The answer: headers, one range, and the body.
fn answer(
    req: &HttpRequest,
    mbps: u32,
    stream: &StreamName,
    p: Prepared,
    download: Option<String>,
) -> HttpResponse {
    let info = p.plan.info;
    let total = p.plan.len;
    // Segments never change, so the clip of the same segments and frames is the same bytes.
    let etag = format!(
        "\"clip-{:x}-{:x}-{:x}-{:x}-{:x}-{total:x}\"",
        p.epoch,
        p.first_seq,
        p.last_seq,
        info.start.ticks(),
        info.end.ticks()
    );
    let validators = Validators {
        headers: HeaderValue::from_str(&etag)
            .map(|v| vec![(header::ETAG, v)])
            .unwrap_or_default(),
        etag,
        last_modified: None,
    };
    let decided = crate::files::answer(req.headers(), &validators, total);
    let mut res = match decided {
        Answer::NotModified => HttpResponse::NotModified(),
        Answer::Full => HttpResponse::Ok(),
        Answer::Partial { .. } => HttpResponse::PartialContent(),
        Answer::Unsatisfiable => {
            let mut res = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the clip has {total} bytes; the requested range starts beyond its end"),
            )
            .error_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return res;
        }
    };
    for h in &validators.headers {
        res.insert_header(h.clone());
    }
    res.insert_header((
        header::CACHE_CONTROL,
        // A range that reaches past the published video grows until it is published.
        if p.complete {
            "public, max-age=60"
        } else {
            "no-cache"
        },
    ))
    .insert_header((header::ACCEPT_RANGES, "bytes"))
    .insert_header((
        "X-Hlsmark-Clip",
        format!(
            "start_90k={}; end_90k={}; frames={}; epoch={}; seq={}-{}; audio={}",
            info.start.ticks(),
            info.end.ticks(),
            info.frames,
            p.epoch,
            p.first_seq,
            p.last_seq,
            u8::from(info.audio_samples > 0)
        ),
    ));
    if let Some(name) = download {
        res.insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ));
    }
    let (start, len) = match decided {
        Answer::NotModified => return res.finish(),
        Answer::Partial { start, len } => {
            res.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{total}", start + len - 1),
            ));
            (start, len)
        }
        _ => (0, total),
    };
    res.content_type("video/mp4");
    if req.method() == Method::HEAD {
        return res.body(SizedStream::new(
            len,
            futures_util::stream::empty::<io::Result<Bytes>>(),
        ));
    }
    tracing::debug!(stream = %stream, ?info, len, "clip");
    let parts = parts(&p, start, len);
    res.body(SizedStream::new(
        len,
        Box::pin(body(parts, p.permit, mbps, CLIP_STALL_RELEASE)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pacing_holds_each_chunk_until_the_bytes_before_it_are_due() {
        let mut pace = Pace {
            bytes_per_sec: 1_000_000,
            start: std::time::Instant::now(),
            sent: 0,
        };
        pace.wait(400_000).await; // nothing sent yet: at once
        pace.wait(400_000).await; // 400 KB sent: due at 0.4 s
        assert!(pace.start.elapsed() >= std::time::Duration::from_millis(390));
        let mut free = Pace {
            bytes_per_sec: 0,
            start: std::time::Instant::now(),
            sent: 0,
        };
        for _ in 0..10 {
            free.wait(1 << 30).await;
        }
        assert_eq!(free.sent, 10 << 30);
    }

    /// A client that stops taking bytes gives its clip slot back after the stall time; a client
    /// that reads keeps it; the answer goes on either way.
    #[tokio::test]
    async fn a_clip_whose_client_stops_reading_gives_its_slot_back() {
        use futures_util::StreamExt as _;
        let sem = Arc::new(tokio::sync::Semaphore::new(1));
        let parts = (0..6)
            .map(|i| Part::Head(Bytes::from(vec![i; 10])))
            .collect::<Vec<_>>();
        let permit = sem.clone().try_acquire_owned().unwrap();
        let stall = std::time::Duration::from_millis(400);
        let mut b = Box::pin(body(parts, permit, 0, stall));
        // Reading every 100 ms: the slot stays taken.
        for _ in 0..4 {
            assert!(b.next().await.is_some());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(
            sem.available_permits(),
            0,
            "a reading client keeps its slot"
        );
        // Nothing asked for: given back after the stall time.
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        assert_eq!(
            sem.available_permits(),
            1,
            "a stalled client's slot is given back"
        );
        // The answer goes on.
        assert_eq!(b.next().await.unwrap().unwrap()[0], 4);
        assert_eq!(b.next().await.unwrap().unwrap()[0], 5);
        assert!(b.next().await.is_none());
        drop(b);
        assert_eq!(sem.available_permits(), 1, "given back once");
    }
}
