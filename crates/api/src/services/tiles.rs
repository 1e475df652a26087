//! The seek bar's thumbnail track: one small tile per retained segment (its first frame, which is
//! a keyframe: segments are cut at keyframes), made in the background as segments are published
//! so hovering the seek bar costs the server nothing, and listed as a WebVTT thumbnails track
//! (`GET /thumbs/{stream}.vtt`) whose cues are the segments' exact times.
//!
//! One tiler task per stream and process, started by the first request for the stream's track or
//! a tile (nobody looking: no work), running until shutdown. Bounded: one ffmpeg at a time (sharing
//! the thumbnails' two turns), for [`BATCH`] or more of the newest [`MAX_BEHIND`] segments at once
//! (ffmpeg's start is most of a tile's cost: ~0.1 s of CPU for one tile, ~0.02 s each in a run of
//! five), so a tile is made at most [`BATCH`] segments after its segment; older ones are filled in
//! only while no update waits ([`BACKFILL`] of them, [`BACKFILL_PAUSE`] apart), and any tile not
//! made yet is made when a viewer asks for it. Tiles of segments that retention removed are
//! forgotten at each pass. Tiles come from the segment files, so every source kind has them, with
//! or without the preview branch.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::web;
use hlsmark_clock::{Duration90k, HlsTime, SeqNo, Timeline};
use hlsmark_previews::{TILE_HEIGHT, TILE_WIDTH, Thumb, TileKey};
use hlsmark_store::StreamName;
use tokio::sync::broadcast::error::RecvError;

use crate::error::ApiError;
use crate::routes::preview::{Turn, frame_thumb};
use crate::services::clocks::Clocks;
use crate::services::segment_index::IndexedSegment;
use crate::state::AppState;

/// Newest segments the tiler looks at in every pass; anything older is made later (idle backfill)
/// or on request, so a machine that cannot keep up skips rather than queues.
const MAX_BEHIND: usize = 8;
/// Missing tiles among the newest that make the tiler run (in one ffmpeg).
const BATCH: usize = 4;
/// Older segments the tiler fills in while idle, newest first (the rest on request).
const BACKFILL: usize = 120;
/// Pause between backfilled tiles: at ~60 ms of CPU a tile, at most a third of a core.
const BACKFILL_PAUSE: Duration = Duration::from_millis(200);
/// The tiler looks again after this long without an update (a store whose feed is down).
const IDLE_LOOK: Duration = Duration::from_secs(10);
/// Most cues in one track, the newest kept (a day of one-second segments is 86,400).
pub const MAX_CUES: usize = 20_000;
/// The width of a marker row's thumbnail on the page (`ROW_THUMB_WIDTH` in
/// frontend/src/thumbs.js): the width made ahead for new markers.
pub const ROW_THUMB_WIDTH: u32 = 160;
/// Markers of the newest segments whose row thumbnails one pass makes ahead, at most (each is a
/// decode from the keyframe, ~50-200 ms of CPU): a burst of markers gets its first ones made and
/// the rest on request.
const MARKER_THUMBS: usize = 4;
/// Newest markers of the newest segments one pass looks at.
const MARKER_LOOK: u32 = 16;

/// What the tiler remembers between passes about the markers' thumbnails it made ahead.
#[derive(Debug, Default)]
struct MarkerThumbs {
    /// The newest segment when the markers were last looked at: looked at again only when a
    /// segment was published (not at every part).
    looked_at: Option<SeqNo>,
    /// Markers whose thumbnail could not be made (not tried again by this tiler).
    failed: HashSet<uuid::Uuid>,
}

/// Which clock a track's cue times are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackClock {
    /// Media time in seconds (as `/markers`' `hls`); the page maps it to its player itself.
    Hls,
    /// The player's `currentTime` for a player that joined at the segment starting at `join`
    /// (as `/markers?seq=`' `client`).
    Client { join: HlsTime },
}

/// Starts the stream's tiler unless one runs.
pub fn ensure_tiler(state: &web::Data<AppState>, stream: &StreamName) {
    if !state.cfg.thumbnails.claim_tiler(stream.as_str()) {
        return;
    }
    let state = state.clone();
    let stream = stream.clone();
    actix_web::rt::spawn(async move {
        run(&state, &stream).await;
        state.cfg.thumbnails.release_tiler(stream.as_str());
    });
}

async fn run(state: &AppState, stream: &StreamName) {
    let mut updates = match state.store.subscribe_updates().await {
        Ok(u) => Some(u),
        Err(e) => {
            tracing::warn!(%stream, error = %e, "thumbnail track: no update feed; looking every 10 s");
            None
        }
    };
    let mut shutdown = state.shutdown.clone();
    let mut failed = HashSet::new();
    let mut markers = MarkerThumbs::default();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let idle = updates.as_ref().is_none_or(|u| u.is_empty());
        let more = pass(state, stream, idle, &mut failed, &mut markers).await;
        let pause = if more { BACKFILL_PAUSE } else { IDLE_LOOK };
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(pause) => {}
            closed = next_update(updates.as_mut(), stream) => if closed { updates = None },
        }
    }
}

/// Waits for an update of `stream` (or any sign that updates were lost); `true` when the feed
/// closed.
async fn next_update(
    updates: Option<&mut tokio::sync::broadcast::Receiver<hlsmark_store::StreamUpdate>>,
    stream: &StreamName,
) -> bool {
    let Some(updates) = updates else {
        return std::future::pending().await;
    };
    loop {
        match updates.recv().await {
            Ok(u) if &u.stream == stream => return false,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return false,
            Err(RecvError::Closed) => return true,
        }
    }
}

/// One pass: forget what retention removed, make the newest tiles and the row thumbnails of the
/// newest markers, and (when `idle`) one older tile. `true` when older ones remain to be filled in.
async fn pass(
    state: &AppState,
    stream: &StreamName,
    idle: bool,
    failed: &mut HashSet<(u32, SeqNo)>,
    markers: &mut MarkerThumbs,
) -> bool {
    let Ok((view, index)) = state.clocks(stream).await else {
        return false;
    };
    let rows = index.rows();
    let thumbs = &state.cfg.thumbnails;
    if let Some(first) = rows.first() {
        thumbs.forget_tiles_before(stream.as_str(), first.seq);
        failed.retain(|(_, seq)| *seq >= first.seq);
    }
    let missing = |r: &IndexedSegment, failed: &HashSet<(u32, SeqNo)>| {
        !failed.contains(&(r.epoch, r.seq)) && !thumbs.has_tile(&key(stream, r.epoch, r.seq))
    };
    let mut newest: Vec<IndexedSegment> = rows
        .iter()
        .rev()
        .take(MAX_BEHIND)
        .filter(|r| missing(r, failed))
        .copied()
        .collect();
    if newest.len() >= BATCH {
        newest.reverse();
        make_batch(state, stream, &newest, failed).await;
    }
    let clocks = Clocks::new(&view.timeline, &index);
    marker_thumbs(state, stream, &clocks, rows, markers).await;
    if !idle {
        return true;
    }
    let mut older: Vec<IndexedSegment> = rows
        .iter()
        .rev()
        .skip(MAX_BEHIND)
        .take(BACKFILL)
        .filter(|r| missing(r, failed))
        .take(2 * BATCH)
        .copied()
        .collect();
    if older.is_empty() {
        return false;
    }
    older.reverse();
    make_batch(state, stream, &older, failed).await;
    true
}

/// Row thumbnails of the newest markers in the newest [`MAX_BEHIND`] published segments, made
/// ahead so the page's marker rows find them cached: once per published segment, at most
/// [`MARKER_THUMBS`] each time, and only while no request is decoding one (a request never waits
/// for this work; what is not made here is made when asked for). Refused for a busy turn, the
/// segment's look is tried again at the next pass (the next part or segment published).
async fn marker_thumbs(
    state: &AppState,
    stream: &StreamName,
    clocks: &Clocks<'_>,
    rows: &[IndexedSegment],
    markers: &mut MarkerThumbs,
) {
    let (Some(last), Some(first)) = (rows.last(), rows.get(rows.len().saturating_sub(MAX_BEHIND)))
    else {
        return;
    };
    if markers.looked_at == Some(last.seq) {
        return;
    }
    let query = hlsmark_store::RangeQuery {
        stream: stream.clone(),
        from: first.hls_start,
        to: last.hls_end(),
        limit: MARKER_LOOK,
        after: None,
        newest_first: true,
        filter: Default::default(),
    };
    let Ok(page) = state.store.query_markers(&query).await else {
        return;
    };
    if markers.failed.len() > 10_000 {
        markers.failed.clear();
    }
    let mut made = 0;
    let todo: Vec<_> = page
        .markers
        .iter()
        .filter(|m| !markers.failed.contains(&m.id))
        .collect();
    for m in todo {
        if made == MARKER_THUMBS {
            // Enough for this segment: the rest are made when asked for (or, while they stay
            // among the newest, after the next segment).
            break;
        }
        let width = Some(ROW_THUMB_WIDTH);
        match frame_thumb(state, stream, clocks, m.hls, width, Turn::IfFree).await {
            Ok((thumb, _)) => made += usize::from(!thumb.cached),
            // Requests are decoding: tried again at the next pass.
            Err(e) if e.status == actix_web::http::StatusCode::SERVICE_UNAVAILABLE => return,
            Err(e) => {
                tracing::debug!(%stream, marker = %m.id, error = %e.message, "marker thumbnail not made ahead");
                markers.failed.insert(m.id);
            }
        }
    }
    markers.looked_at = Some(last.seq);
}

/// Tiles of `rows` (oldest first): runs of one epoch and init section in one ffmpeg each, one by
/// one where a run does not give one picture per segment.
async fn make_batch(
    state: &AppState,
    stream: &StreamName,
    rows: &[IndexedSegment],
    failed: &mut HashSet<(u32, SeqNo)>,
) {
    let mut run: Vec<(IndexedSegment, PathBuf)> = Vec::new();
    let mut run_init: Option<PathBuf> = None;
    for r in rows {
        let seg = match state.store.get_segment(stream, r.seq).await {
            Ok(Some(seg)) => seg,
            _ => {
                failed.insert((r.epoch, r.seq));
                continue;
            }
        };
        let read =
            |f| crate::files::readable_path(&state.open_files, &state.cfg.data_dir, stream, f);
        let path = read(&seg.file).await;
        let init = match seg.init_file.as_deref() {
            Some(f) => Some(read(f).await),
            None => None,
        };
        let same = run
            .first()
            .is_none_or(|(f, _)| f.epoch == seg.epoch && run_init == init);
        if !same {
            flush(state, stream, &mut run, run_init.as_deref(), failed).await;
        }
        run_init = init;
        run.push((*r, path));
    }
    flush(state, stream, &mut run, run_init.as_deref(), failed).await;
}

async fn flush(
    state: &AppState,
    stream: &StreamName,
    run: &mut Vec<(IndexedSegment, PathBuf)>,
    init: Option<&Path>,
    failed: &mut HashSet<(u32, SeqNo)>,
) {
    let Some((first, _)) = run.first() else {
        return;
    };
    let segs: Vec<(SeqNo, PathBuf)> = run.iter().map(|(r, p)| (r.seq, p.clone())).collect();
    let made = if run.len() >= 2 {
        state
            .cfg
            .thumbnails
            .tiles_batch(stream.as_str(), first.epoch, init, &segs)
            .await
            .unwrap_or(0)
    } else {
        0
    };
    if made == 0 {
        for (r, _) in run.iter() {
            make(state, stream, *r, failed).await;
        }
    }
    run.clear();
}

async fn make(
    state: &AppState,
    stream: &StreamName,
    r: IndexedSegment,
    failed: &mut HashSet<(u32, SeqNo)>,
) {
    if let Err(e) = tile(state, stream, r.seq).await {
        // Gone meanwhile (retention) or undecodable: not tried again by this tiler; a request
        // for it still tries.
        tracing::debug!(%stream, seq = r.seq, error = %e.message, "thumbnail tile not made");
        failed.insert((r.epoch, r.seq));
    }
}

fn key(stream: &StreamName, epoch: u32, seq: SeqNo) -> TileKey {
    TileKey {
        stream: stream.to_string(),
        epoch,
        seq,
    }
}

/// The tile of segment `seq` (made now when it is not made yet).
pub async fn tile(state: &AppState, stream: &StreamName, seq: SeqNo) -> Result<Thumb, ApiError> {
    let gone = |why: &str| {
        ApiError::not_found(
            "no_frame",
            format!("no retained segment {seq} of {stream} ({why})"),
        )
    };
    let Some(seg) = state.track(state.store.get_segment(stream, seq).await)? else {
        return Err(gone("not in the index"));
    };
    let read = |f| crate::files::readable_path(&state.open_files, &state.cfg.data_dir, stream, f);
    let seg_path = read(&seg.file).await;
    let init_path = match seg.init_file.as_deref() {
        Some(f) => Some(read(f).await),
        None => None,
    };
    if !seg_path.is_file() || init_path.as_ref().is_some_and(|p| !p.is_file()) {
        return Err(gone("its file is gone"));
    }
    state
        .cfg
        .thumbnails
        .tile(key(stream, seg.epoch, seq), init_path.as_deref(), &seg_path)
        .await
        .map_err(crate::routes::preview::preview_error)
}

/// A WebVTT timestamp (`hh:mm:ss.mmm`, hours as many digits as needed) of `ticks`, rounded to
/// the millisecond: the one place the track's exact ticks become the text's milliseconds.
fn vtt_time(ticks: i64) -> String {
    let ms = Duration90k(ticks).as_millis_rounded().max(0);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// The WebVTT thumbnails track of `rows` (oldest first). Each cue spans its segment exactly on
/// the chosen clock and names its tile relative to the track's URL (`{stream}/{seq}.jpg`, with
/// the `#xywh=` fragment thumbnail plug-ins read); its identifier carries the exact ticks
/// (`{seq} hls_90k={start}..{end}`) for clients that want them. Cues before a client clock's zero
/// are left out.
pub fn render_vtt(
    stream: &StreamName,
    timeline: &Timeline,
    rows: &[IndexedSegment],
    clock: TrackClock,
) -> String {
    let mut out = String::with_capacity(64 + rows.len() * 96);
    let clock_name = match clock {
        TrackClock::Hls => "hls",
        TrackClock::Client { .. } => "client",
    };
    let _ = write!(
        out,
        "WEBVTT - hlsmark thumbnails of {stream}, clock {clock_name}\n\n\
         NOTE one {TILE_WIDTH}x{TILE_HEIGHT} tile per segment, its first frame; cue ids carry the exact 90 kHz ticks\n\n"
    );
    let on_clock = |t: HlsTime| match clock {
        TrackClock::Hls => t.ticks(),
        TrackClock::Client { join } => timeline.hls_to_client_from(t, join).0,
    };
    for r in rows {
        let (start, end) = (on_clock(r.hls_start), on_clock(r.hls_end()));
        if end <= 0 {
            continue;
        }
        let _ = write!(
            out,
            "{seq} hls_90k={s}..{e}\n{a} --> {b}\n{stream}/{seq}.jpg#xywh=0,0,{TILE_WIDTH},{TILE_HEIGHT}\n\n",
            seq = r.seq,
            s = r.hls_start.ticks(),
            e = r.hls_end().ticks(),
            a = vtt_time(start),
            b = vtt_time(end),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hlsmark_clock::{Epoch, FrameRate, GenTime, UtcTime};

    fn row(seq: SeqNo, hls: i64, dur: i64) -> IndexedSegment {
        IndexedSegment {
            seq,
            epoch: 0,
            hls_start: HlsTime(hls),
            duration: Duration90k(dur),
            utc_start: UtcTime(hls),
        }
    }

    fn timeline() -> Timeline {
        Timeline::new(vec![Epoch {
            index: 0,
            first_seq: 0,
            hls_start: HlsTime(0),
            gen_start: GenTime(0),
            utc_start: UtcTime(0),
            fps: FrameRate::integer(30),
            segment_frames: 30,
            hls_end: None,
            pts_start: None,
        }])
        .unwrap()
    }

    #[test]
    fn vtt_times_have_hours_of_any_size_and_round_to_the_millisecond() {
        assert_eq!(vtt_time(0), "00:00:00.000");
        assert_eq!(vtt_time(90_000 * 3_661 + 45), "01:01:01.001");
        assert_eq!(vtt_time(90_000 * 3600 * 123_456), "123456:00:00.000");
        assert_eq!(vtt_time(-5), "00:00:00.000");
    }

    #[test]
    fn the_track_lists_contiguous_cues_with_exact_ticks_on_either_clock() {
        let s = StreamName::new("cam").unwrap();
        let rows = [row(5, 450_000, 90_000), row(6, 540_000, 93_003)];
        let hls = render_vtt(&s, &timeline(), &rows, TrackClock::Hls);
        assert!(hls.starts_with("WEBVTT"));
        assert!(hls.contains(
            "5 hls_90k=450000..540000\n00:00:05.000 --> 00:00:06.000\ncam/5.jpg#xywh=0,0,160,90\n"
        ));
        assert!(hls.contains("6 hls_90k=540000..633003\n00:00:06.000 --> 00:00:07.033\n"));
        let client = render_vtt(
            &s,
            &timeline(),
            &rows,
            TrackClock::Client {
                join: HlsTime(540_000),
            },
        );
        assert!(!client.contains("cam/5.jpg"), "before the player's zero");
        assert!(client.contains("00:00:00.000 --> 00:00:01.033\ncam/6.jpg"));
    }
}
