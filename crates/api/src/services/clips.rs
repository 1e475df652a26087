//! Exact clips of the archive (`GET /clips/{stream}.mp4`, `GET /markers/{id}/clip.mp4`): which
//! retained segments a range needs, the bound on clips made at once, and the plan of the MP4
//! (`hlsmark_media::clip`: stream copy, the first frame by an edit list). The bytes are read
//! through [`open_media`], the one place that knows segments are local files.
//!
//! A clip never spans two epochs: a restarted encoder may have other parameters (SPS/PPS, size),
//! which one MP4 track cannot change midway. A range across a restart is refused with 422 naming
//! it; a marker's clip keeps to the marker's epoch (its padding is cut at the restart).

use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use actix_web::http::StatusCode;
use bytes::Bytes;
use hlsmark_clock::{HlsTime, Segment, SeqNo};
use hlsmark_media::clip::{
    ClipError, ClipInit, ClipOptions, ClipPlan, ClipSegment, LocalFile, ReadAt,
};
use hlsmark_store::StreamName;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::state::AppState;

/// Most segments one clip may read (10 min of 30 ms segments; real ones are 0.5-10 s).
const MAX_SEGMENTS: usize = 20_000;

/// The bound on clips being made or sent at once (`--clip-max-concurrent`), shared by the
/// workers of one server. The semaphore is made on first use from the configured number.
#[derive(Debug, Default)]
pub struct ClipGate {
    sem: OnceLock<Arc<Semaphore>>,
}

impl ClipGate {
    /// A slot for one clip, or 503 `too_many_clips` (with `Retry-After`) when all are taken.
    pub fn enter(&self, max: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let sem = self
            .sem
            .get_or_init(|| Arc::new(Semaphore::new(max.max(1))));
        sem.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_clips",
                format!("{max} clips are being made or sent; retry in a moment"),
            )
        })
    }
}

/// Which segments a clip may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// All of `[from, to)`; a restart or a missing segment inside it is a 422.
    Range,
    /// The run of consecutive segments of one epoch around `anchor` (a marker's frame); the
    /// range is cut to it.
    Around(HlsTime),
}

/// A planned clip and what it is read from.
pub struct Prepared {
    pub plan: ClipPlan,
    /// The segment files, in the order of `plan.pieces[..].segment`.
    pub files: Vec<Arc<dyn ReadAt>>,
    pub epoch: u32,
    pub first_seq: SeqNo,
    pub last_seq: SeqNo,
    /// The segments reach `to`: the same request gives the same bytes while they are retained.
    pub complete: bool,
    /// The clip's slot, released when the answer is done.
    pub permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("info", &self.plan.info)
            .field("len", &self.plan.len)
            .field("epoch", &self.epoch)
            .field("seqs", &(self.first_seq..=self.last_seq))
            .finish_non_exhaustive()
    }
}

/// Opens one media file of a stream for positioned reads: the one place clips touch storage
/// (an object store would answer these reads with ranged GETs). The file must lie inside the
/// stream directory (no symlink out of it is followed).
pub fn open_media(data_dir: &Path, stream: &StreamName, file: &str) -> io::Result<Arc<dyn ReadAt>> {
    if crate::files::classify(file).is_none() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "not a media file name",
        ));
    }
    let path = crate::files::media_path(data_dir, stream, file);
    let (f, _) = crate::files::open_inside(&data_dir.join("hls"), &path)?;
    Ok(Arc::new(LocalFile::new(f)?))
}

/// [`open_media`] of a remote media store: the whole object, read on the calling (blocking)
/// thread.
fn open_remote(
    handle: &tokio::runtime::Handle,
    store: &hlsmark_mediastore::SharedMedia,
    stream: &StreamName,
    file: &str,
) -> io::Result<Arc<dyn ReadAt>> {
    if crate::files::classify(file).is_none() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "not a media file name",
        ));
    }
    let key = hlsmark_mediastore::stream_key(stream.as_str(), file);
    match handle.block_on(store.get(&key, None)) {
        Ok(o) => Ok(Arc::new(o.bytes)),
        Err(e) if e.is_not_found() => Err(io::ErrorKind::NotFound.into()),
        Err(e) => Err(io::Error::other(e)),
    }
}

fn no_segments(stream: &StreamName, why: impl std::fmt::Display) -> ApiError {
    ApiError::not_found(
        "no_segments",
        format!("no retained video of {stream} {why}"),
    )
}

fn unprocessable(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// The segments of `[from, to)` a clip uses, per `scope`.
fn choose(
    stream: &StreamName,
    mut segs: Vec<Segment>,
    scope: Scope,
) -> Result<Vec<Segment>, ApiError> {
    segs.sort_by_key(|s| s.seq);
    match scope {
        Scope::Range => {
            if let Some(w) = segs.windows(2).find(|w| w[0].epoch != w[1].epoch) {
                return Err(unprocessable(
                    "clip_spans_restart",
                    format!(
                        "the range crosses the start of a new epoch of {stream} at {:.3} s ({}: the source restarted, or its wall clock was re-anchored): a clip holds one epoch; ask for the parts before and after it separately",
                        w[1].hls_start.as_secs_f64(),
                        w[1].utc_start.to_rfc3339_millis()
                    ),
                ));
            }
            if let Some(w) = segs.windows(2).find(|w| w[0].seq + 1 != w[1].seq) {
                return Err(unprocessable(
                    "clip_has_gap",
                    format!(
                        "segments {}..{} of {stream} are missing inside the range (from {:.3} s)",
                        w[0].seq + 1,
                        w[1].seq,
                        w[0].hls_end().as_secs_f64()
                    ),
                ));
            }
            Ok(segs)
        }
        Scope::Around(t) => {
            let Some(i) = segs
                .iter()
                .position(|s| s.hls_start <= t && t < s.hls_end())
            else {
                return Err(no_segments(stream, "at the marker's frame"));
            };
            let mut lo = i;
            while lo > 0
                && segs[lo - 1].epoch == segs[i].epoch
                && segs[lo - 1].seq + 1 == segs[lo].seq
            {
                lo -= 1;
            }
            let mut hi = i;
            while hi + 1 < segs.len()
                && segs[hi + 1].epoch == segs[i].epoch
                && segs[hi].seq + 1 == segs[hi + 1].seq
            {
                hi += 1;
            }
            segs.truncate(hi + 1);
            segs.drain(..lo);
            Ok(segs)
        }
    }
}

fn clip_error(stream: &StreamName, e: ClipError) -> ApiError {
    match e {
        ClipError::Io(e) if e.kind() == io::ErrorKind::NotFound => ApiError::not_found(
            "segment_not_found",
            format!(
                "a segment of the range left the retention of {stream} while the clip was made"
            ),
        ),
        ClipError::NoFrames { from, to } => no_segments(
            stream,
            format!(
                "has a frame in [{:.3} s, {:.3} s)",
                from.as_secs_f64(),
                to.as_secs_f64()
            ),
        ),
        other => {
            let mut msg = other.to_string();
            let mut src = std::error::Error::source(&other);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            tracing::warn!(stream = %stream, error = %msg, "clip failed");
            ApiError::internal(format!("cannot make the clip: {msg}"))
        }
    }
}

/// Finds the segments of `[from, to)`, takes a clip slot and plans the MP4 on the blocking pool
/// (reading each segment's `moof` boxes is file I/O).
pub async fn prepare(
    state: &AppState,
    stream: &StreamName,
    from: HlsTime,
    to: HlsTime,
    scope: Scope,
) -> Result<Prepared, ApiError> {
    let segs = state.track(
        state
            .store
            .segments_in_range(stream, from, to, MAX_SEGMENTS)
            .await,
    )?;
    if segs.len() >= MAX_SEGMENTS {
        return Err(ApiError::bad_request(
            "range_too_large",
            format!("the range holds over {MAX_SEGMENTS} segments"),
        ));
    }
    if segs.is_empty() {
        return Err(no_segments(
            stream,
            format!(
                "in [{:.3} s, {:.3} s): it is outside the retention or not published yet",
                from.as_secs_f64(),
                to.as_secs_f64()
            ),
        ));
    }
    let segs = choose(stream, segs, scope)?;
    let (Some(first), Some(last)) = (segs.first(), segs.last()) else {
        return Err(no_segments(stream, "in the range"));
    };
    let Some(init_file) = first.init_file.clone() else {
        return Err(unprocessable(
            "clip_unsupported",
            format!("segment {} of {stream} has no fMP4 init section", first.seq),
        ));
    };
    let (epoch, first_seq, last_seq) = (first.epoch, first.seq, last.seq);
    let complete = last.hls_end() >= to;
    let (from, to) = (from.max(first.hls_start), to.min(last.hls_end()));
    let permit = state.cfg.clip_gate.enter(state.cfg.clip_max_concurrent)?;
    let data_dir = state.cfg.data_dir.clone();
    let name = stream.clone();
    // `--media s3://...`: each object is read whole from the store on this blocking
    // thread; the clip holds its segments in memory while it is sent (bounded by
    // --clip-max-duration and --clip-max-concurrent).
    let remote = state.open_files.remote.as_ref().map(|r| r.store().clone());
    let handle = tokio::runtime::Handle::current();
    let open_media = move |data_dir: &Path, stream: &StreamName, file: &str| match &remote {
        Some(store) => open_remote(&handle, store, stream, file),
        None => open_media(data_dir, stream, file),
    };
    let built = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let gone = |e: io::Error| {
            if e.kind() == io::ErrorKind::NotFound {
                ApiError::not_found(
                    "segment_not_found",
                    format!("a segment of {name} in the range is no longer on disk"),
                )
            } else {
                ApiError::internal(format!("cannot read a segment of {name}: {e}"))
            }
        };
        let init = open_media(&data_dir, &name, &init_file).map_err(gone)?;
        let mut init_bytes = vec![0u8; usize::try_from(init.size().min(16 << 20)).unwrap_or(0)];
        init.read_exact_at(&mut init_bytes, 0).map_err(gone)?;
        let init = ClipInit::parse(Bytes::from(init_bytes)).map_err(|e| clip_error(&name, e))?;
        let files = segs
            .iter()
            .map(|s| open_media(&data_dir, &name, &s.file))
            .collect::<io::Result<Vec<_>>>()
            .map_err(gone)?;
        let refs: Vec<&dyn ReadAt> = files.iter().map(|f| &**f).collect();
        let runs = init.scan(&refs).map_err(|e| clip_error(&name, e))?;
        let segments: Vec<ClipSegment> = runs
            .into_iter()
            .zip(&segs)
            .map(|(runs, s)| ClipSegment {
                runs,
                end: Some(s.hls_end()),
            })
            .collect();
        let plan = hlsmark_media::clip::plan(&init, &segments, from, to, ClipOptions::default())
            .map_err(|e| clip_error(&name, e))?;
        Ok((plan, files))
    })
    .await
    .map_err(|e| ApiError::internal(format!("the clip task failed: {e}")))??;
    let (plan, files) = built;
    Ok(Prepared {
        plan,
        files,
        epoch,
        first_seq,
        last_seq,
        complete,
        permit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_refuses_beyond_its_slots_and_frees_them_when_answers_end() {
        let gate = ClipGate::default();
        let a = gate.enter(2).unwrap();
        let _b = gate.enter(2).unwrap();
        let e = gate.enter(2).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (503, "too_many_clips"));
        drop(a);
        assert!(gate.enter(2).is_ok());
    }
}
