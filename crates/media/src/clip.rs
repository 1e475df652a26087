//! Exact clips: a standard, faststart MP4 (`ftyp`, `moov`, then one `mdat`) made from retained
//! fMP4 segments without re-encoding anything.
//!
//! The `moov` is computed from the segments' `moof` boxes alone ([`ClipInit::scan`] reads only
//! those, by positioned reads): every sample's size, decode time, composition offset and sync
//! flag, and where its bytes sit in which segment file. The `mdat` is then the segments' sample
//! bytes copied in file order ([`ClipPlan::pieces`]), so a server can send the head at once and
//! stream the rest from disk.
//!
//! **Exact first frame by an edit list.** Video can only be decoded from a sync sample, so the
//! clip holds the samples from the last keyframe at or before the first wanted frame, and an
//! edit list (`elst`) starts the presentation at that frame: nothing is re-encoded, the cut is
//! exact to the tick, and it costs nothing. Browsers (Chromium, Firefox, Safari), VLC,
//! QuickTime and ffmpeg honour `elst`. The frames decoded but not shown add at most one GOP of
//! bytes. Audio (AAC) gets its own edit list that starts at the same instant in its own
//! timescale (sample-exact), and ends with the video.
//!
//! Times: `from`/`to` are HLS ticks (90 kHz). The first shown frame is the frame showing at
//! `from` (the last frame whose presentation time is at or before it, as markers are snapped);
//! the last is the last frame that starts before `to`; the clip lasts until that frame ends (the
//! next frame's time, or the segment's end), so its duration is a whole number of frames.

mod filler;
mod picture;
mod scan;
#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};
use hlsmark_clock::HlsTime;
use mp4_atom::{
    Co64, Ctts, CttsEntry, Decode, Elst, ElstEntry, Encode, FourCC, Moov, Stco, Stsc, StscEntry,
    Stss, Stsz, StszSamples, Stts, SttsEntry,
};

pub use picture::{
    FEED_STEP, FEED_TARGET, FeedPicture, PictureInput, feed_filler, feed_init, feed_picture,
    picture,
};
pub use scan::{LocalFile, ReadAt, Run};

use crate::boxes;
use crate::fragment::{Sample, TrackState};
use crate::init::{Track, TrackDefaults, TrackKind, tracks_of};
use crate::rescale;

/// Why a clip cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClipError {
    #[error("cannot read a segment")]
    Io(#[source] std::io::Error),
    #[error("cannot decode the moof at offset {offset}")]
    Decode {
        offset: u64,
        #[source]
        source: mp4_atom::Error,
    },
    #[error("invalid media: {0}")]
    Invalid(String),
    #[error("the init section has no video track")]
    NoVideo,
    #[error("no video frame starts in [{from:?}, {to:?})")]
    NoFrames { from: HlsTime, to: HlsTime },
    #[error("cannot write the clip's boxes")]
    Encode(#[source] mp4_atom::Error),
}

impl ClipError {
    fn invalid(why: impl Into<String>) -> Self {
        Self::Invalid(why.into())
    }
}

/// An epoch's init section, read for making clips: its tracks, their `trex` defaults, and the
/// raw boxes a clip copies (`stsd` with `avcC`/`esds` exactly as ffmpeg wrote them).
#[derive(Debug, Clone)]
pub struct ClipInit {
    moov_raw: Bytes,
    moov: Moov,
    tracks: Vec<Track>,
    defaults: Vec<TrackDefaults>,
}

impl ClipInit {
    /// Reads `ftyp` + `moov` (an `e{E}-init.mp4`).
    pub fn parse(init: Bytes) -> Result<Self, ClipError> {
        const MOOV: FourCC = FourCC::new(b"moov");
        let (_, at, len) = boxes::children(&init)
            .find(|(h, _, _)| h.kind == MOOV)
            .ok_or_else(|| ClipError::invalid("the init section has no moov"))?;
        let moov_raw = init.slice(at..at + len);
        let moov = Moov::decode(&mut &moov_raw[..]).map_err(|source| ClipError::Decode {
            offset: at as u64,
            source,
        })?;
        let (tracks, defaults) = tracks_of(&moov).map_err(ClipError::Invalid)?;
        if !tracks.iter().any(|t| t.kind == TrackKind::Video) {
            return Err(ClipError::NoVideo);
        }
        Ok(Self {
            moov_raw,
            moov,
            tracks,
            defaults,
        })
    }

    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// The runs of every segment file, in order (decode times carry over from one file to the
    /// next for a `traf` without `tfdt`).
    pub fn scan(&self, files: &[&dyn ReadAt]) -> Result<Vec<Vec<Run>>, ClipError> {
        let mut state: Vec<TrackState> = self
            .defaults
            .iter()
            .map(|&defaults| TrackState {
                defaults,
                next_dts: 0,
            })
            .collect();
        files
            .iter()
            .map(|f| scan::scan_segment(*f, &mut state))
            .collect()
    }
}

/// One segment of a clip: its runs ([`ClipInit::scan`]) and where its media ends on the HLS
/// clock (the next segment's start, from the segment index), which is where its last frame ends.
#[derive(Debug, Clone)]
pub struct ClipSegment {
    pub runs: Vec<Run>,
    pub end: Option<HlsTime>,
}

/// Bytes of the clip's `mdat` taken from a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Index of the segment in the list given to [`plan`].
    pub segment: usize,
    pub offset: u64,
    pub len: u64,
}

/// What the clip holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipInfo {
    /// Presentation time of the first shown frame (the clip's time 0).
    pub start: HlsTime,
    /// Where the last shown frame ends.
    pub end: HlsTime,
    /// Frames shown.
    pub frames: u32,
    /// Frames in the file (the shown ones and those decoded before the first).
    pub video_samples: u32,
    /// Audio samples (AAC frames) in the file; 0 without audio.
    pub audio_samples: u32,
    /// Chunk offsets are 64-bit (`co64`): the file is over 4 GiB.
    pub co64: bool,
}

/// A clip ready to send: `head` (`ftyp` + `moov` + the `mdat` header), then every piece in order.
#[derive(Debug, Clone)]
pub struct ClipPlan {
    pub head: Bytes,
    pub pieces: Vec<Piece>,
    /// Size of the whole file.
    pub len: u64,
    pub info: ClipInfo,
}

/// Knobs for tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClipOptions {
    /// Write `co64` even when 32-bit offsets would do (tests of the > 4 GiB layout).
    pub force_co64: bool,
}

/// A sample of the clip and where it comes from.
#[derive(Debug, Clone, Copy)]
struct Loc {
    seg: usize,
    s: Sample,
}

/// Every sample of `track` in decode order.
fn samples_of(segments: &[ClipSegment], track: u32) -> Result<Vec<Loc>, ClipError> {
    let mut out: Vec<Loc> = Vec::new();
    for (seg, sg) in segments.iter().enumerate() {
        for r in sg.runs.iter().filter(|r| r.track == track) {
            for &s in &r.samples {
                if let Some(prev) = out.last()
                    && s.dts <= prev.s.dts
                {
                    return Err(ClipError::invalid(format!(
                        "track {track}: decode time {} follows {} (not increasing)",
                        s.dts, prev.s.dts
                    )));
                }
                out.push(Loc { seg, s });
            }
        }
    }
    Ok(out)
}

/// The audio samples a clip holds (indices in decode order) and their edit list.
struct AudioSel {
    id: u32,
    timescale: u32,
    range: std::ops::RangeInclusive<usize>,
    edits: Vec<ElstEntry>,
}

/// The samples of one output track, their chunks and edit list.
struct OutTrack {
    id: u32,
    timescale: u32,
    samples: Vec<Sample>,
    /// (samples in the chunk, byte offset in the mdat payload).
    chunks: Vec<(u32, u64)>,
    edits: Vec<ElstEntry>,
}

impl OutTrack {
    fn media_duration(&self) -> u64 {
        match (self.samples.first(), self.samples.last()) {
            (Some(a), Some(b)) => u64::try_from(b.dts - a.dts).unwrap_or(0) + u64::from(b.duration),
            _ => 0,
        }
    }
    fn edit_duration(&self) -> u64 {
        self.edits.iter().map(|e| e.segment_duration).sum()
    }
}

fn edit(duration: u64, media_time: Option<u64>) -> ElstEntry {
    ElstEntry {
        segment_duration: duration,
        media_time,
        media_rate: 1.into(),
    }
}

fn ticks_to(v: i64, from: u32, to: u32) -> Result<i64, ClipError> {
    rescale(v, from, to).ok_or_else(|| ClipError::invalid("a time does not fit its timescale"))
}

fn non_negative(v: i64, what: &str) -> Result<u64, ClipError> {
    u64::try_from(v).map_err(|_| ClipError::invalid(format!("{what} is negative ({v})")))
}

/// Plans the clip of `[from, to)` (HLS ticks) from `segments` (in order, one epoch, all of
/// `init`'s). See the module docs for which frames it holds.
pub fn plan(
    init: &ClipInit,
    segments: &[ClipSegment],
    from: HlsTime,
    to: HlsTime,
    opts: ClipOptions,
) -> Result<ClipPlan, ClipError> {
    let video = init
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .ok_or(ClipError::NoVideo)?;
    let vts = video.timescale;
    let from_v = ticks_to(from.ticks(), 90_000, vts)?;
    let to_v = ticks_to(to.ticks(), 90_000, vts)?;
    let vs = samples_of(segments, video.id)?;
    let none = || ClipError::NoFrames { from, to };
    // The first shown frame: the one showing at `from`, or the earliest one after it.
    let first = vs
        .iter()
        .enumerate()
        .filter(|(_, l)| l.s.pts <= from_v)
        .max_by_key(|(_, l)| l.s.pts)
        .or_else(|| vs.iter().enumerate().min_by_key(|(_, l)| l.s.pts))
        .map(|(_, l)| l.s.pts)
        .ok_or_else(none)?;
    let shown: Vec<usize> = (0..vs.len())
        .filter(|&i| vs[i].s.pts >= first && vs[i].s.pts < to_v)
        .collect();
    let (Some(&lo), Some(&hi)) = (shown.iter().min(), shown.iter().max()) else {
        return Err(none());
    };
    let k = (0..=lo)
        .rev()
        .find(|&i| vs[i].s.keyframe)
        .ok_or_else(|| ClipError::invalid("no keyframe before the clip's first frame"))?;
    // Where the last shown frame ends: the next frame's time, else its segment's end.
    let last = shown
        .iter()
        .map(|&i| vs[i])
        .max_by_key(|l| l.s.pts)
        .ok_or_else(none)?;
    let end_v = match vs.iter().map(|l| l.s.pts).filter(|&p| p > last.s.pts).min() {
        Some(p) => p,
        None => match segments[last.seg].end {
            Some(e) if ticks_to(e.ticks(), 90_000, vts)? > last.s.pts => {
                ticks_to(e.ticks(), 90_000, vts)?
            }
            _ => last.s.pts + i64::from(last.s.duration.max(1)),
        },
    };
    if from_v >= end_v {
        // After the last frame ended: it is not showing any more.
        return Err(none());
    }
    let kdts = vs[k].s.dts;
    let v_edit = edit(
        non_negative(end_v - first, "the clip's duration")?,
        Some(non_negative(first - kdts, "the first frame's offset")?),
    );
    let v_range = k..=hi;

    // Audio: the same instants in its own timescale.
    let audio = init.tracks.iter().find(|t| t.kind == TrackKind::Audio);
    let mut a_sel: Option<AudioSel> = None;
    if let Some(a) = audio {
        let ats = a.timescale;
        let a_start = ticks_to(first, vts, ats)?;
        let a_end = ticks_to(end_v, vts, ats)?;
        let als = samples_of(segments, a.id)?;
        let inside: Vec<usize> = (0..als.len())
            .filter(|&i| {
                let s = als[i].s;
                s.pts < a_end && s.pts + i64::from(s.duration) > a_start
            })
            .collect();
        if let (Some(&a0), Some(&a1)) = (inside.first(), inside.last()) {
            // One AAC frame before the first one heard, when the segments hold it: AAC's
            // transform overlaps frames, so a decoder starting at a frame gives its first
            // milliseconds near silent (6-21 ms measured); the edit list skips the extra frame.
            let a0 = if a0 > 0 && als[a0].s.pts <= a_start {
                a0 - 1
            } else {
                a0
            };
            let head = als[a0].s;
            let tail_end = inside
                .iter()
                .map(|&i| als[i].s.pts + i64::from(als[i].s.duration))
                .max()
                .unwrap_or(a_end)
                .min(a_end);
            let movie = |v: i64| -> Result<u64, ClipError> {
                non_negative(ticks_to(v, ats, vts)?, "an audio edit")
            };
            let edits = if a_start >= head.pts {
                vec![edit(
                    movie(tail_end - a_start)?,
                    Some(non_negative(a_start - head.dts, "the audio start")?),
                )]
            } else {
                // Audio begins after the first frame: silence until it does.
                vec![
                    edit(movie(head.pts - a_start)?, None),
                    edit(
                        movie(tail_end - head.pts)?,
                        Some(non_negative(head.pts - head.dts, "the audio start")?),
                    ),
                ]
            };
            a_sel = Some(AudioSel {
                id: a.id,
                timescale: ats,
                range: a0..=a1,
                edits,
            });
        }
    }

    // The mdat: every included sample's bytes in file order, one chunk per run (or part of one).
    let mut pieces = Vec::new();
    let mut payload = 0u64;
    let mut v_out = OutTrack {
        id: video.id,
        timescale: vts,
        samples: Vec::new(),
        chunks: Vec::new(),
        edits: vec![v_edit],
    };
    let mut a_out = a_sel.as_ref().map(|a| OutTrack {
        id: a.id,
        timescale: a.timescale,
        samples: Vec::new(),
        chunks: Vec::new(),
        edits: a.edits.clone(),
    });
    // Global sample index of each run's first sample, per track.
    let mut v_at = 0usize;
    let mut a_at = 0usize;
    for (si, sg) in segments.iter().enumerate() {
        for r in &sg.runs {
            let (range, at, out) = if r.track == video.id {
                (Some(v_range.clone()), &mut v_at, Some(&mut v_out))
            } else if let Some(a) = &a_sel
                && r.track == a.id
            {
                (Some(a.range.clone()), &mut a_at, a_out.as_mut())
            } else {
                continue;
            };
            let start = *at;
            *at += r.samples.len();
            let (Some(range), Some(out)) = (range, out) else {
                continue;
            };
            let i0 = (*range.start()).max(start);
            let i1 = (*range.end() + 1).min(start + r.samples.len());
            if i0 >= i1 {
                continue;
            }
            let local = &r.samples[i0 - start..i1 - start];
            let skip: u64 = r.samples[..i0 - start]
                .iter()
                .map(|s| u64::from(s.size))
                .sum();
            let len: u64 = local.iter().map(|s| u64::from(s.size)).sum();
            out.chunks
                .push((u32::try_from(local.len()).unwrap_or(u32::MAX), payload));
            out.samples.extend_from_slice(local);
            pieces.push(Piece {
                segment: si,
                offset: r.offset + skip,
                len,
            });
            payload += len;
        }
    }
    debug_assert_eq!(v_out.samples.len(), v_range.clone().count());

    let mut tracks = vec![v_out];
    tracks.extend(a_out);
    let ftyp = ftyp();
    // Offsets do not change box sizes: measure with zeros, then write the real ones.
    let measure =
        |co64: bool| -> Result<usize, ClipError> { Ok(moov(init, &tracks, 0, co64)?.len()) };
    let mdat_header = |payload: u64| {
        if payload + 8 > u64::from(u32::MAX) {
            16
        } else {
            8
        }
    };
    let small = ftyp.len() as u64 + measure(false)? as u64 + mdat_header(payload) + payload;
    let co64 = opts.force_co64 || small > u64::from(u32::MAX);
    let moov_len = measure(co64)? as u64;
    let base = ftyp.len() as u64 + moov_len + mdat_header(payload);
    let moov_bytes = moov(init, &tracks, base, co64)?;
    debug_assert_eq!(moov_bytes.len() as u64, moov_len);
    let mut head = BytesMut::with_capacity(ftyp.len() + moov_bytes.len() + 16);
    head.extend_from_slice(&ftyp);
    head.extend_from_slice(&moov_bytes);
    if mdat_header(payload) == 16 {
        head.extend_from_slice(&1u32.to_be_bytes());
        head.extend_from_slice(b"mdat");
        head.extend_from_slice(&(payload + 16).to_be_bytes());
    } else {
        head.extend_from_slice(&u32::try_from(payload + 8).unwrap_or(0).to_be_bytes());
        head.extend_from_slice(b"mdat");
    }
    let info = ClipInfo {
        start: HlsTime(ticks_to(first, vts, 90_000)?),
        end: HlsTime(ticks_to(end_v, vts, 90_000)?),
        frames: u32::try_from(shown.len()).unwrap_or(u32::MAX),
        video_samples: u32::try_from(tracks[0].samples.len()).unwrap_or(u32::MAX),
        audio_samples: tracks
            .get(1)
            .map_or(0, |t| u32::try_from(t.samples.len()).unwrap_or(u32::MAX)),
        co64,
    };
    Ok(ClipPlan {
        len: head.len() as u64 + payload,
        head: head.freeze(),
        pieces,
        info,
    })
}

/// `ftyp` of a plain MP4 that browsers, VLC and QuickTime take (what ffmpeg's mp4 muxer writes).
fn ftyp() -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&32u32.to_be_bytes());
    b.extend_from_slice(b"ftypisom");
    b.extend_from_slice(&0x200u32.to_be_bytes());
    b.extend_from_slice(b"isomiso2avc1mp41");
    b
}

/// A box of `kind` around `children`.
fn container(kind: &[u8; 4], children: &[&[u8]]) -> Vec<u8> {
    let len: usize = 8 + children.iter().map(|c| c.len()).sum::<usize>();
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&u32::try_from(len).unwrap_or(0).to_be_bytes());
    b.extend_from_slice(kind);
    for c in children {
        b.extend_from_slice(c);
    }
    b
}

fn encoded<T: Encode>(atom: &T) -> Result<Vec<u8>, ClipError> {
    let mut b = Vec::new();
    atom.encode(&mut b).map_err(ClipError::Encode)?;
    Ok(b)
}

/// The body of a box (after its header).
fn body_of(b: &[u8]) -> &[u8] {
    match boxes::parse_header(b) {
        Ok(h) => &b[usize::from(h.header_len).min(b.len())..],
        Err(_) => &[],
    }
}

/// The first child box of `kind` (the whole box) in a box body.
fn child<'a>(body: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let kind = FourCC::new(kind);
    boxes::children(body)
        .find(|(h, _, _)| h.kind == kind)
        .map(|(_, at, len)| &body[at..at + len])
}

/// The raw `trak` of track `id` in the init's `moov`.
fn raw_trak(moov_raw: &[u8], id: u32) -> Option<&[u8]> {
    let trak_kind = FourCC::new(b"trak");
    let body = body_of(moov_raw);
    boxes::children(body)
        .filter(|(h, _, _)| h.kind == trak_kind)
        .map(|(_, at, len)| &body[at..at + len])
        .find(|t| {
            child(body_of(t), b"tkhd")
                .and_then(|k| mp4_atom::Tkhd::decode(&mut &k[..]).ok())
                .is_some_and(|k| k.track_id == id)
        })
}

/// Writes the `moov`: `mvhd`, then per track `tkhd`, `edts`/`elst`, and `mdia` with the init's
/// own `hdlr`, media header, `dinf` and `stsd` copied byte for byte and fresh sample tables.
/// `base` is the file offset of the mdat payload.
fn moov(init: &ClipInit, tracks: &[OutTrack], base: u64, co64: bool) -> Result<Vec<u8>, ClipError> {
    let movie_ts = tracks[0].timescale;
    let movie_duration = |t: &OutTrack| t.edit_duration();
    let mut mvhd = init.moov.mvhd.clone();
    mvhd.timescale = movie_ts;
    mvhd.duration = tracks.iter().map(movie_duration).max().unwrap_or(0);
    mvhd.next_track_id = tracks.iter().map(|t| t.id).max().unwrap_or(0) + 1;
    let mut parts = vec![encoded(&mvhd)?];
    for t in tracks {
        let raw = raw_trak(&init.moov_raw, t.id)
            .ok_or_else(|| ClipError::invalid(format!("no trak for track {}", t.id)))?;
        let decoded = init
            .moov
            .trak
            .iter()
            .find(|k| k.tkhd.track_id == t.id)
            .ok_or_else(|| ClipError::invalid(format!("no trak for track {}", t.id)))?;
        let mut tkhd = decoded.tkhd.clone();
        tkhd.duration = movie_duration(t);
        tkhd.enabled = true;
        tkhd.in_movie = true;
        let mut mdhd = decoded.mdia.mdhd.clone();
        mdhd.duration = t.media_duration();
        // No edit list for a track without one (a fragmented init of a decoder kept running).
        let edts = if t.edits.is_empty() {
            Vec::new()
        } else {
            container(
                b"edts",
                &[&encoded(&Elst {
                    entries: t.edits.clone(),
                })?],
            )
        };
        let raw_mdia = body_of(child(body_of(raw), b"mdia").unwrap_or_default());
        let hdlr = child(raw_mdia, b"hdlr").unwrap_or_default();
        let raw_minf = body_of(child(raw_mdia, b"minf").unwrap_or_default());
        let media_header = [&b"vmhd"[..], b"smhd", b"nmhd", b"sthd", b"hmhd"]
            .iter()
            .find_map(|k| child(raw_minf, &[k[0], k[1], k[2], k[3]]))
            .unwrap_or_default();
        let dinf = child(raw_minf, b"dinf").unwrap_or_default();
        let stsd = child(
            body_of(child(raw_minf, b"stbl").unwrap_or_default()),
            b"stsd",
        )
        .ok_or_else(|| ClipError::invalid(format!("track {} has no stsd", t.id)))?;
        let tables = sample_tables(t, base, co64)?;
        let mut stbl_parts: Vec<&[u8]> = vec![stsd];
        stbl_parts.extend(tables.iter().map(Vec::as_slice));
        let stbl = container(b"stbl", &stbl_parts);
        let minf = container(b"minf", &[media_header, dinf, &stbl]);
        let mdia = container(b"mdia", &[&encoded(&mdhd)?, hdlr, &minf]);
        parts.push(container(b"trak", &[&encoded(&tkhd)?, &edts, &mdia]));
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    Ok(container(b"moov", &refs))
}

/// `stts`, `ctts` (when any composition offset is not 0), `stss` (when not every sample is a
/// sync sample), `stsc`, `stsz`, `stco`/`co64`, in the order players expect.
fn sample_tables(t: &OutTrack, base: u64, co64: bool) -> Result<Vec<Vec<u8>>, ClipError> {
    let n = t.samples.len();
    let mut stts: Vec<SttsEntry> = Vec::new();
    let mut ctts: Vec<CttsEntry> = Vec::new();
    for (i, s) in t.samples.iter().enumerate() {
        // The real decode-time steps (a tfdt that does not continue the previous durations is
        // kept), the last sample's own duration.
        let delta = match t.samples.get(i + 1) {
            Some(next) => u32::try_from(next.dts - s.dts)
                .map_err(|_| ClipError::invalid("a decode-time step over 32 bits"))?,
            None => s.duration,
        };
        match stts.last_mut() {
            Some(e) if e.sample_delta == delta => e.sample_count += 1,
            _ => stts.push(SttsEntry {
                sample_count: 1,
                sample_delta: delta,
            }),
        }
        let off = s.pts - s.dts;
        match ctts.last_mut() {
            Some(e) if e.sample_offset == off => e.sample_count += 1,
            _ => ctts.push(CttsEntry {
                sample_count: 1,
                sample_offset: off,
            }),
        }
    }
    let mut out = vec![encoded(&Stts { entries: stts })?];
    if ctts.iter().any(|e| e.sample_offset != 0) {
        out.push(encoded(&Ctts { entries: ctts })?);
    }
    if t.samples.iter().any(|s| !s.keyframe) {
        let entries = (1..=n)
            .filter(|&i| t.samples[i - 1].keyframe)
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
            .collect();
        out.push(encoded(&Stss { entries })?);
    }
    let mut stsc: Vec<StscEntry> = Vec::new();
    for (i, &(count, _)) in t.chunks.iter().enumerate() {
        if stsc.last().is_none_or(|e| e.samples_per_chunk != count) {
            stsc.push(StscEntry {
                first_chunk: u32::try_from(i + 1).unwrap_or(u32::MAX),
                samples_per_chunk: count,
                sample_description_index: 1,
            });
        }
    }
    out.push(encoded(&Stsc { entries: stsc })?);
    let sizes: Vec<u32> = t.samples.iter().map(|s| s.size).collect();
    let samples = match sizes.first() {
        Some(&first) if sizes.iter().all(|&s| s == first) => StszSamples::Identical {
            count: u32::try_from(n).unwrap_or(u32::MAX),
            size: first,
        },
        _ => StszSamples::Different { sizes },
    };
    out.push(encoded(&Stsz { samples })?);
    let offsets = t.chunks.iter().map(|&(_, o)| base + o);
    if co64 {
        out.push(encoded(&Co64 {
            entries: offsets.collect(),
        })?);
    } else {
        let entries = offsets
            .map(|o| u32::try_from(o).map_err(|_| ClipError::invalid("a chunk offset over 4 GiB")))
            .collect::<Result<_, _>>()?;
        out.push(encoded(&Stco { entries })?);
    }
    Ok(out)
}
