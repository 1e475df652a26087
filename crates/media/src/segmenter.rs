//! Cuts a stream of fragments into HLS segments at video keyframes, near a target duration, and
//! builds each segment's frame table; every fragment is also handed out as an LL-HLS part.
//!
//! A part is handed out as soon as its fragment is here: it runs from where the previous part of
//! its segment ended (the segment's start for part 0) to the end of the fragment's latest video
//! frame (pts + duration; ffmpeg writes a fragment's last duration from the next frame's decode
//! time when that frame ends the fragment, so the end is exact). So parts of a segment are
//! contiguous by construction and a part never waits for the next fragment (it did until
//! 2026-12: one fragment, ~200 ms, of LL-HLS latency). A fragment that would end no later than
//! the previous part (no video, or only frames shown before that end: audio-only fragments,
//! reordered frames) waits and joins the next part.
//!
//! A segment is still cut when the fragment that starts the next one (a keyframe) arrives: only
//! then is it known that the segment ended. Its duration is that keyframe's PTS minus its start,
//! and its parts add up to it exactly whenever the last part's end was that PTS (always, unless
//! a fragment's last frame duration was a guess: [`Segmenter::part_mismatches`] counts the
//! segments whose parts do not; a playlist then lists that segment without its parts). A
//! segment's parts, in order, are its bytes exactly.

use bytes::Bytes;
use hlsmark_clock::{Duration90k, FrameTable, HlsTime};

use crate::{Fragment, rescale};

const HZ_90K: u32 = 90_000;

/// How to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// Wanted segment duration; a segment ends at the first keyframe at or after
    /// `target - half a frame`.
    pub target: Duration90k,
    /// The video track whose keyframes cut and whose frames fill the frame tables.
    pub video_track: u32,
    /// Its timescale (90000 in our ffmpeg output; 0 is taken as 90000).
    pub video_timescale: u32,
}

/// A finished segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutSegment {
    /// The fragments, in order; the file is their concatenation.
    pub bytes: Vec<Bytes>,
    /// Earliest video PTS (90 kHz).
    pub start: HlsTime,
    /// Next segment's start - start; at the end of input, the end of the last frame - start.
    pub duration: Duration90k,
    /// Every video frame's PTS, sorted.
    pub frames: FrameTable,
    pub has_audio: bool,
}

/// A finished part (one or more fragments) of the open segment, or of the segment cut with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutPart {
    /// The fragments, in order; the part file is their concatenation.
    pub bytes: Vec<Bytes>,
    /// Where the previous part of its segment ended; the segment's start for index 0.
    pub start: HlsTime,
    /// To the end of its latest video frame; for a part completed by a segment cut, to the
    /// segment's end.
    pub duration: Duration90k,
    /// Starts with a video keyframe.
    pub independent: bool,
    /// 0, 1, 2 ... within its segment.
    pub index: u32,
    /// Its segment's position among the segments of this segmenter (0 for the first one it
    /// cut): the caller's sequence number of the segment is its first one plus this.
    pub segment: u64,
}

impl CutPart {
    /// Size of the part file.
    pub fn len_bytes(&self) -> usize {
        self.bytes.iter().map(Bytes::len).sum()
    }
}

/// What one fragment produced, in the order it must be published: `part` (a part of the open
/// segment, or the last part of the segment this fragment closes), then `segment` (the segment
/// this fragment closed), then `opening` (part 0 of the segment this fragment opened). Any of them
/// may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushed {
    pub part: Option<CutPart>,
    pub segment: Option<CutSegment>,
    pub opening: Option<CutPart>,
}

impl Pushed {
    /// Every part, in publishing order (`part` before `opening`), for callers that do not care
    /// about the segment.
    pub fn parts(&self) -> impl Iterator<Item = &CutPart> {
        self.part.iter().chain(self.opening.iter())
    }
}

impl CutSegment {
    /// Size of the segment file.
    pub fn len_bytes(&self) -> usize {
        self.bytes.iter().map(Bytes::len).sum()
    }

    /// `start + duration`.
    pub fn end(&self) -> HlsTime {
        self.start + self.duration
    }
}

/// The segment being filled.
#[derive(Debug)]
struct Open {
    bytes: Vec<Bytes>,
    /// Earliest video PTS of the fragment that opened it, 90 kHz.
    start: i64,
    /// Every video PTS, 90 kHz, in arrival order.
    pts: Vec<i64>,
    /// Latest video pts + duration, 90 kHz.
    end: i64,
    /// Duration of the last video sample (decode order), 90 kHz.
    last_duration: i64,
    has_audio: bool,
    /// End of the last part handed out (the segment's start before any).
    parts_end: i64,
    /// Index of the next part.
    next_index: u32,
    /// Fragments not in a handed-out part yet (see the module note).
    pending: Vec<Bytes>,
    /// The first pending fragment starts with a keyframe.
    pending_independent: bool,
    /// Position of this segment among the segments of the segmenter.
    ordinal: u64,
}

/// Fragments in, segments out. See [`Segmenter::push`].
#[derive(Debug)]
pub struct Segmenter {
    cfg: SegmenterConfig,
    open: Option<Open>,
    /// Segments opened so far (the next one's ordinal).
    opened: u64,
    dropped_fragments: u64,
    dropped_frames: u64,
    part_mismatches: u64,
}

impl Segmenter {
    pub fn new(mut cfg: SegmenterConfig) -> Self {
        if cfg.video_timescale == 0 {
            cfg.video_timescale = HZ_90K;
        }
        Self {
            cfg,
            open: None,
            opened: 0,
            dropped_fragments: 0,
            dropped_frames: 0,
            part_mismatches: 0,
        }
    }

    pub fn config(&self) -> &SegmenterConfig {
        &self.cfg
    }

    /// Takes the next fragment (already rebased). Closes the open segment when this fragment
    /// starts with a video keyframe and the open segment holds >= target - half a frame of video
    /// (measured from its start to this fragment's earliest video PTS); hands the fragment out as
    /// a part at once (see the module note). Fragments before the first keyframe are dropped
    /// (counted in `dropped_fragments()`).
    pub fn push(&mut self, f: Fragment) -> Pushed {
        let video = self.cfg.video_track;
        let keyframe = f.starts_with_keyframe(video);
        let Some((open_start, open_last)) = self.open.as_ref().map(|o| (o.start, o.last_duration))
        else {
            if !keyframe {
                self.dropped_fragments += 1;
                return Pushed::default();
            }
            let (open, opening) = self.open_with(f);
            self.open = Some(open);
            return Pushed {
                opening,
                ..Pushed::default()
            };
        };
        let first = self.earliest_video_pts(&f);
        let need = self.cfg.target.ticks().saturating_sub(open_last / 2);
        if let Some(first) = first
            && keyframe
            && first > open_start
            && first.saturating_sub(open_start) >= need
        {
            let (next, opening) = self.open_with(f);
            let Some(mut done) = self.open.replace(next) else {
                return Pushed::default();
            };
            let part = self.close_parts(&mut done, first);
            return Pushed {
                part,
                segment: Some(self.close(done, first)),
                opening,
            };
        }
        let Some(mut open) = self.open.take() else {
            return Pushed::default();
        };
        let part = self.fill(&mut open, f, keyframe);
        self.open = Some(open);
        Pushed {
            part,
            ..Pushed::default()
        }
    }

    /// The open segment at end of input, with its last part if one was still waiting; its
    /// duration runs to the end of its last video frame (latest pts + that frame's duration).
    pub fn finish(&mut self) -> Pushed {
        let Some(mut open) = self.open.take() else {
            return Pushed::default();
        };
        let end = open.end.max(open.start);
        let part = self.close_parts(&mut open, end);
        Pushed {
            part,
            segment: Some(self.close(open, end)),
            opening: None,
        }
    }

    /// Fragments dropped because no video keyframe had arrived yet.
    pub fn dropped_fragments(&self) -> u64 {
        self.dropped_fragments
    }

    /// Video frames left out of frame tables because the input was broken: a PTS that repeats
    /// one already in the segment, or lies before the segment's start.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// Segments whose parts do not add up to the segment exactly: the last handed-out part
    /// ended elsewhere than the keyframe that closed the segment (a fragment's last frame
    /// duration was ffmpeg's guess). Such a segment is listed without its parts once complete.
    pub fn part_mismatches(&self) -> u64 {
        self.part_mismatches
    }

    /// Video held by the open segment so far (start to the end of its latest frame).
    pub fn open_duration(&self) -> Duration90k {
        self.open.as_ref().map_or(Duration90k::ZERO, |o| {
            Duration90k(o.end.saturating_sub(o.start).max(0))
        })
    }

    /// Start of the open segment, if one is open.
    pub fn open_start(&self) -> Option<HlsTime> {
        self.open.as_ref().map(|o| HlsTime(o.start))
    }

    fn to_90k(&self, v: i64) -> i64 {
        rescale(v, self.cfg.video_timescale, HZ_90K).unwrap_or(if v < 0 {
            i64::MIN
        } else {
            i64::MAX
        })
    }

    fn earliest_video_pts(&self, f: &Fragment) -> Option<i64> {
        f.track_samples(self.cfg.video_track)
            .map(|s| self.to_90k(s.pts))
            .min()
    }

    /// A new segment opened by keyframe fragment `f`, and its part 0 if `f` holds any time.
    fn open_with(&mut self, f: Fragment) -> (Open, Option<CutPart>) {
        let start = self.earliest_video_pts(&f).unwrap_or(0);
        let mut open = Open {
            bytes: Vec::with_capacity(8),
            start,
            pts: Vec::with_capacity(64),
            end: start,
            last_duration: 0,
            has_audio: false,
            parts_end: start,
            next_index: 0,
            pending: Vec::with_capacity(2),
            pending_independent: true,
            ordinal: self.opened,
        };
        self.opened += 1;
        let part = self.fill(&mut open, f, true);
        (open, part)
    }

    /// Adds `f` to the segment and hands out the part it completes: the waiting fragments plus
    /// `f`, up to `f`'s latest video end, when that is past the previous part's end.
    fn fill(&self, open: &mut Open, f: Fragment, keyframe: bool) -> Option<CutPart> {
        let video = self.cfg.video_track;
        let mut f_end: Option<i64> = None;
        for s in &f.samples {
            if s.track != video {
                open.has_audio = true;
                continue;
            }
            let pts = self.to_90k(s.pts);
            let end = self.to_90k(s.pts.saturating_add(i64::from(s.duration)));
            open.pts.push(pts);
            open.end = open.end.max(end);
            open.last_duration = end.saturating_sub(pts);
            f_end = Some(f_end.map_or(end, |e| e.max(end)));
        }
        if open.pending.is_empty() {
            open.pending_independent = keyframe;
        }
        // A clone of `Bytes` shares the buffer: the part and the segment hold the same bytes.
        open.pending.push(f.bytes.clone());
        open.bytes.push(f.bytes);
        let end = f_end.filter(|&e| e > open.parts_end)?;
        Some(Self::take_part(open, end))
    }

    /// The waiting fragments as the part `[parts_end, end)`.
    fn take_part(open: &mut Open, end: i64) -> CutPart {
        let start = open.parts_end;
        let part = CutPart {
            bytes: std::mem::take(&mut open.pending),
            start: HlsTime(start),
            duration: Duration90k(end.saturating_sub(start).max(0)),
            independent: open.pending_independent,
            index: open.next_index,
            segment: open.ordinal,
        };
        open.parts_end = end.max(start);
        open.next_index = open.next_index.saturating_add(1);
        part
    }

    /// Ends the parts of a segment being closed at `end`: the waiting fragments, if any, become
    /// its last part (zero long when they hold no video time past the previous part: the audio
    /// after the last frame at the end of input; a playlist lists such a segment without its
    /// parts); a mismatch of the parts' end and `end` is counted.
    fn close_parts(&mut self, open: &mut Open, end: i64) -> Option<CutPart> {
        let part = (!open.pending.is_empty()).then(|| Self::take_part(open, end));
        if open.parts_end != end {
            self.part_mismatches += 1;
        }
        part
    }

    fn close(&mut self, mut open: Open, end: i64) -> CutSegment {
        debug_assert!(open.pending.is_empty(), "the last part is taken first");
        let start = open.start;
        open.pts.sort_unstable();
        let before = open.pts.len();
        open.pts.dedup();
        let max_offset = i64::from(u32::MAX);
        open.pts
            .retain(|&p| p >= start && p.saturating_sub(start) <= max_offset);
        self.dropped_frames += (before - open.pts.len()) as u64;
        // Duplicates and out-of-range times are gone, so this cannot fail; an empty table is the
        // honest answer if it ever did.
        let frames = FrameTable::new(HlsTime(start), open.pts.iter().map(|&p| HlsTime(p)))
            .unwrap_or_default();
        CutSegment {
            bytes: open.bytes,
            start: HlsTime(start),
            duration: Duration90k(end.saturating_sub(start)),
            frames,
            has_audio: open.has_audio,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Sample;

    const V: u32 = 1;
    const A: u32 = 2;

    fn video(pts: &[i64], dur: u32, key: bool) -> Fragment {
        Fragment {
            bytes: Bytes::from(format!("v{pts:?}")),
            samples: pts
                .iter()
                .enumerate()
                .map(|(i, &p)| Sample {
                    track: V,
                    dts: p,
                    pts: p,
                    duration: dur,
                    keyframe: key && i == 0,
                    size: 1,
                })
                .collect(),
        }
    }

    fn audio(dts: i64) -> Fragment {
        let s = Sample {
            track: A,
            dts,
            pts: dts,
            duration: 1024,
            keyframe: true,
            size: 1,
        };
        Fragment {
            bytes: Bytes::from_static(b"a"),
            samples: vec![s],
        }
    }

    fn seg(target: i64, timescale: u32) -> Segmenter {
        Segmenter::new(SegmenterConfig {
            target: Duration90k(target),
            video_track: V,
            video_timescale: timescale,
        })
    }

    #[test]
    fn drops_until_the_first_keyframe_then_cuts_within_half_a_frame_of_the_target() {
        let mut s = seg(9000, 90_000);
        assert!(s.push(video(&[0, 1000], 1000, false)).segment.is_none());
        assert!(s.push(audio(0)).segment.is_none());
        assert_eq!(s.dropped_fragments(), 2);
        assert!(
            s.push(video(&[2000, 3000, 4000, 5000], 1000, true))
                .segment
                .is_none()
        );
        assert!(s.push(audio(100)).segment.is_none()); // joins
        assert!(
            s.push(video(&[6000, 7000, 8000], 1000, false))
                .segment
                .is_none()
        );
        // 10000 - 2000 = 8000 >= 9000 - 500? No.
        assert!(s.push(video(&[10_000], 1000, true)).segment.is_none());
        assert_eq!(s.open_duration(), Duration90k(9000));
        // 10500 - 2000 = 8500 >= 8500: cut.
        let c = s
            .push(video(&[10_500, 11_500], 1000, true))
            .segment
            .unwrap();
        assert_eq!((c.start, c.duration), (HlsTime(2000), Duration90k(8500)));
        assert_eq!(
            c.frames.offsets(),
            &[0, 1000, 2000, 3000, 4000, 5000, 6000, 8000]
        );
        assert!(c.has_audio);
        assert_eq!(c.bytes.len(), 4);
        let last = s.finish().segment.unwrap();
        assert_eq!(
            (last.start, last.duration),
            (HlsTime(10_500), Duration90k(2000))
        );
        assert!(!last.has_audio);
        assert!(s.finish().segment.is_none());
    }

    #[test]
    fn repeated_and_early_pts_are_dropped_and_counted() {
        let mut s = seg(90_000, 90_000);
        assert!(
            s.push(video(&[9000, 9000, 12_600], 3600, true))
                .segment
                .is_none()
        );
        assert!(
            s.push(video(&[5000, 16_200], 3600, false))
                .segment
                .is_none()
        );
        let c = s.finish().segment.unwrap();
        assert_eq!(c.frames.offsets(), &[0, 3600, 7200]);
        assert_eq!(s.dropped_frames(), 2);
        assert_eq!(c.duration, Duration90k(10_800));
    }

    #[test]
    fn other_timescales_are_rescaled_to_90k() {
        // 24000/1001 in a 24000 timescale: 1001 units a frame, 3753.75 ticks.
        let mut s = seg(90_000, 24_000);
        let pts: Vec<i64> = (0..30).map(|n| n * 1001).collect();
        assert!(s.push(video(&pts[..24], 1001, true)).segment.is_none());
        let c = s.push(video(&pts[24..], 1001, true)).segment.unwrap();
        assert_eq!(c.duration, Duration90k(90_090)); // 24 * 1001 * 90000 / 24000
        assert_eq!(c.frames.offsets()[1..4], [3754, 7508, 11_261]);
    }

    /// Pushes everything and returns (segments, parts) in output order.
    fn run(s: &mut Segmenter, frags: Vec<Fragment>) -> (Vec<CutSegment>, Vec<CutPart>) {
        let (mut segs, mut parts) = (Vec::new(), Vec::new());
        let mut out: Vec<Pushed> = frags.into_iter().map(|f| s.push(f)).collect();
        out.push(s.finish());
        for p in out {
            parts.extend(p.part);
            segs.extend(p.segment);
            parts.extend(p.opening);
        }
        (segs, parts)
    }

    #[test]
    fn parts_are_handed_out_with_their_own_fragment_and_sum_exactly_to_their_segment() {
        // 1000-tick frames, a keyframe every 9 frames, fragments of 2 frames (or 1 at a key).
        let mut s = seg(9000, 90_000);
        let mut frags = Vec::new();
        let mut pts = 0;
        while pts < 40_000 {
            let key = pts % 9000 == 0;
            let n = if key { 1 } else { 2 };
            frags.push(video(
                &(0..n).map(|i| pts + i * 1000).collect::<Vec<_>>(),
                1000,
                key,
            ));
            pts += n * 1000;
        }
        // The first part comes out with the first fragment: no waiting for the next one.
        let first = s.push(frags[0].clone());
        let p0 = first.opening.unwrap();
        assert_eq!(
            (p0.start, p0.duration, p0.index, p0.segment),
            (HlsTime(0), Duration90k(1000), 0, 0)
        );
        assert!(p0.independent);
        assert!(first.part.is_none() && first.segment.is_none());
        let p1 = s.push(frags[1].clone()).part.unwrap();
        assert_eq!(
            (p1.start, p1.duration, p1.index, p1.independent),
            (HlsTime(1000), Duration90k(2000), 1, false)
        );

        let mut s = seg(9000, 90_000);
        let (segs, parts) = run(&mut s, frags.clone());
        assert_eq!(segs.len(), 5);
        assert_eq!(s.part_mismatches(), 0);
        for (i, sg) in (0u64..).zip(&segs) {
            let mine: Vec<&CutPart> = parts.iter().filter(|p| p.segment == i).collect();
            // Indexes restart at 0 in every segment.
            assert_eq!(
                mine.iter().map(|p| p.index).collect::<Vec<_>>(),
                (0..u32::try_from(mine.len()).unwrap()).collect::<Vec<_>>()
            );
            assert_eq!(mine[0].start, sg.start);
            let sum: i64 = mine.iter().map(|p| p.duration.ticks()).sum();
            assert_eq!(Duration90k(sum), sg.duration, "segment {i}");
            let pb: Vec<Bytes> = mine.iter().flat_map(|p| p.bytes.clone()).collect();
            assert_eq!(pb, sg.bytes, "segment {i}: same bytes");
            // Only the keyframe part is independent.
            assert_eq!(
                mine.iter().map(|p| p.independent).collect::<Vec<_>>(),
                std::iter::once(true)
                    .chain(std::iter::repeat_n(false, mine.len() - 1))
                    .collect::<Vec<_>>()
            );
        }
        // A full segment: key (1 frame) then four 2-frame fragments: 5 parts, 1000 + 4 x 2000.
        let durs: Vec<i64> = parts
            .iter()
            .filter(|p| p.segment == 1)
            .map(|p| p.duration.ticks())
            .collect();
        assert_eq!(durs, [1000, 2000, 2000, 2000, 2000]);
        // The last part of the input ends with the last frame.
        let last = parts.last().unwrap();
        assert_eq!(last.start + last.duration, segs.last().unwrap().end());

        // Output order at a cut: the closed segment, then part 0 of the next one.
        let mut s = seg(9000, 90_000);
        let mut order = Vec::new();
        for f in frags {
            let p = s.push(f);
            if let Some(sg) = &p.segment {
                order.push(format!("seg {}", sg.start.ticks()));
            }
            if let Some(o) = &p.opening {
                order.push(format!("part {}", o.start.ticks()));
            }
            assert!(p.part.is_none() || p.segment.is_none(), "nothing waited");
        }
        assert_eq!(&order[..4], ["part 0", "seg 0", "part 9000", "seg 9000"]);
    }

    #[test]
    fn a_guessed_last_frame_duration_is_a_counted_mismatch_not_a_gap() {
        // The fragment's last frame was given 500 ticks but the next frame comes 1000 later
        // (what ffmpeg writes when another track ended the fragment and the packet's duration
        // was wrong): parts stay contiguous (the next part starts where this one ended).
        let mut s = seg(90_000, 90_000);
        let _ = s.push(video(&[0], 1000, true));
        let p = s
            .push(Fragment {
                bytes: Bytes::from_static(b"x"),
                samples: vec![
                    Sample {
                        track: V,
                        dts: 1000,
                        pts: 1000,
                        duration: 1000,
                        keyframe: false,
                        size: 1,
                    },
                    Sample {
                        track: V,
                        dts: 2000,
                        pts: 2000,
                        duration: 500,
                        keyframe: false,
                        size: 1,
                    },
                ],
            })
            .part
            .unwrap();
        assert_eq!((p.start, p.duration), (HlsTime(1000), Duration90k(1500)));
        let p = s.push(video(&[3000], 1000, false)).part.unwrap();
        assert_eq!((p.start, p.duration), (HlsTime(2500), Duration90k(1500)));
        // Inside a segment the parts still add up; at its cut the segment keeps the keyframe's
        // time and the mismatch is counted only when the parts end elsewhere.
        let done = s.finish();
        assert!(done.part.is_none());
        assert_eq!(done.segment.unwrap().duration, Duration90k(4000));
        assert_eq!(s.part_mismatches(), 0);

        let mut s = seg(2000, 90_000);
        let _ = s.push(video(&[0], 1500, true));
        let cut = s.push(video(&[2000], 1000, true));
        assert_eq!(cut.segment.unwrap().duration, Duration90k(2000));
        assert_eq!(s.part_mismatches(), 1);
    }

    #[test]
    fn audio_only_fragments_wait_for_the_next_part() {
        let mut s = seg(90_000, 90_000);
        let p = s.push(video(&[0, 3000], 3000, true)).opening.unwrap();
        assert_eq!((p.start, p.duration), (HlsTime(0), Duration90k(6000)));
        // Audio only: no video time, so it cannot end a part; it joins the next one.
        assert_eq!(s.push(audio(0)), Pushed::default());
        let p = s.push(video(&[6000], 3000, false)).part.unwrap();
        assert_eq!(
            (p.index, p.start, p.duration, p.bytes.len(), p.independent),
            (1, HlsTime(6000), Duration90k(3000), 2, false)
        );
        // A keyframe that does not cut the segment still starts an independent part.
        let p = s.push(video(&[9000], 3000, true)).part.unwrap();
        assert_eq!((p.index, p.independent), (2, true));
        // Audio after the last part: at the end it is a part of its own, up to the segment's end
        // (zero long here; the durations still add up).
        assert_eq!(s.push(audio(1)), Pushed::default());
        let done = s.finish();
        let (p, sg) = (done.part.unwrap(), done.segment.unwrap());
        assert_eq!((p.index, p.duration, p.bytes.len()), (3, Duration90k(0), 1));
        assert_eq!(sg.duration, Duration90k(12_000));
        assert_eq!(sg.bytes.len(), 5);
        assert_eq!(s.part_mismatches(), 0);
    }

    #[test]
    fn a_fragment_ending_before_the_last_part_waits_for_the_next() {
        // Broken input: the second fragment's video lies before the first's end. It must not make
        // a part of negative or zero length; it joins the next part instead.
        let mut s = seg(90_000, 90_000);
        let _ = s.push(video(&[9000, 12_000], 3000, true));
        assert_eq!(s.push(video(&[5000], 3000, false)), Pushed::default());
        let p = s.push(video(&[15_000], 3000, false)).part.unwrap();
        assert_eq!(
            (p.start, p.duration, p.bytes.len()),
            (HlsTime(15_000), Duration90k(3000), 2)
        );
    }

    #[test]
    fn no_input_no_parts() {
        let mut s = seg(9000, 90_000);
        assert_eq!(s.push(video(&[0], 1000, false)), Pushed::default());
        assert_eq!(s.finish(), Pushed::default());
    }
}
