//! Clock conversions of one stream through its segment index: the segment holding a time gives
//! its sequence number and wall time (`utc = seg.utc_start + (t - seg.hls_start)`), and a join
//! sequence gives the player's zero for CLIENT. Where the index has no segment (ahead of the live
//! edge, older than the index) the nearest segment of the same epoch is extrapolated from, and
//! without one the epoch formula of the timeline is used. For the generator, whose segments all
//! follow the epoch formula, every answer is the timeline's.

use hlsmark_clock::{ClientTime, Epoch, GenTime, HlsTime, SeqNo, Timeline, TimelineError, UtcTime};

use crate::services::segment_index::{IndexedSegment, SegmentIndex};

/// A real source's epoch: its segments are cut at the source's keyframes and its UTC is slewed
/// per segment, so nothing may be computed from `fps x segment_frames` (design/sources.md).
pub fn is_real_source(e: &Epoch) -> bool {
    e.pts_start.is_some()
}

/// The conversions of one stream at one store version.
#[derive(Debug, Clone, Copy)]
pub struct Clocks<'a> {
    pub timeline: &'a Timeline,
    pub index: &'a SegmentIndex,
}

impl<'a> Clocks<'a> {
    pub fn new(timeline: &'a Timeline, index: &'a SegmentIndex) -> Self {
        Self { timeline, index }
    }

    /// The segment whose media holds `t`, if it is retained.
    pub fn segment_at(&self, t: HlsTime) -> Option<&'a IndexedSegment> {
        self.index.containing(t)
    }

    /// Sequence number of the segment holding `t`: from the index; for the generator outside the
    /// index from the epoch formula; `None` for a real source's time the index does not hold
    /// (before retention, or not yet published).
    pub fn seq_at(&self, t: HlsTime) -> Option<SeqNo> {
        if let Some(s) = self.segment_at(t) {
            return Some(s.seq);
        }
        let e = self.timeline.epoch_at_hls(t).ok()?;
        (!is_real_source(e)).then(|| e.seq_at(t))
    }

    /// HLS -> UTC (the PDT clock): the holding segment's wall time plus the media since its start.
    pub fn hls_to_utc(&self, t: HlsTime) -> Result<UtcTime, TimelineError> {
        if let Some(s) = self.segment_at(t) {
            return Ok(s.utc_at(t));
        }
        let e = self.timeline.epoch_at_hls(t)?;
        match self.index.nearest_in_epoch(e.index, t) {
            Some(s) => s
                .utc_start
                .checked_add(t - s.hls_start)
                .ok_or(TimelineError::Overflow("HLS to UTC")),
            None => self.timeline.hls_to_utc(t),
        }
    }

    /// UTC -> HLS (the inverse of [`Self::hls_to_utc`]). A wall time after an epoch's last
    /// segment ended and before the next epoch began has no video: `InGap`. A wall time between
    /// two segments of one epoch (a slew of up to 500 ppm leaves a sliver) is the last tick of
    /// the earlier segment: its last frame is still showing.
    pub fn utc_to_hls(&self, u: UtcTime) -> Result<HlsTime, TimelineError> {
        let Some((s, next)) = self.index.at_or_before_utc(u) else {
            return self.timeline.utc_to_hls(u);
        };
        let t = s
            .hls_start
            .checked_add(u - s.utc_start)
            .ok_or(TimelineError::Overflow("UTC to HLS"))?;
        if u < s.utc_end() {
            return Ok(t);
        }
        let e = self.timeline.epoch_at_hls(s.hls_start)?;
        // A later epoch that began by `u` but has no segment yet (a source that restarted a
        // moment ago): its own anchor says where `u` is.
        if let Ok(later) = self.timeline.epoch_at_utc(u)
            && later.index > e.index
        {
            return self.timeline.utc_to_hls(u);
        }
        match next {
            Some(n) if n.epoch == s.epoch => Ok(t.min(n.hls_start - hlsmark_clock::Duration90k(1))),
            // After the epoch's last segment: video only if the epoch goes on (the live edge).
            _ if e.hls_end.is_none() && next.is_none() => Ok(t),
            _ => Err(TimelineError::InGap(
                u.to_string(),
                s.utc_end().to_string(),
                self.timeline
                    .epochs()
                    .iter()
                    .find(|n| n.index > e.index)
                    .map_or_else(|| "now".to_owned(), |n| self.epoch_utc_start(n).to_string()),
            )),
        }
    }

    /// Wall time of an epoch's first frame: its first segment's PDT when the index holds it.
    fn epoch_utc_start(&self, e: &Epoch) -> UtcTime {
        match self.index.by_seq(e.first_seq) {
            Some(s) if s.epoch == e.index => s.utc_start,
            _ => e.utc_start,
        }
    }

    /// UTC -> HLS for the bound of a range: before the stream is its start, while the stream was
    /// down is where the video resumed.
    pub fn utc_to_hls_bound(&self, u: UtcTime) -> Result<HlsTime, TimelineError> {
        match self.utc_to_hls(u) {
            Err(TimelineError::BeforeStart(_)) => self.timeline.utc_to_hls_bound(u),
            Err(TimelineError::InGap(..)) => {
                let (s, _) = self.index.at_or_before_utc(u).ok_or(TimelineError::Empty)?;
                let e = self.timeline.epoch_at_hls(s.hls_start)?;
                Ok(self
                    .timeline
                    .epochs()
                    .iter()
                    .find(|n| n.index > e.index)
                    .map_or(e.hls_start, |n| n.hls_start))
            }
            r => r,
        }
    }

    /// HLS -> GEN. For a real source GEN is the HLS clock itself.
    pub fn hls_to_gen(&self, t: HlsTime) -> Result<GenTime, TimelineError> {
        let e = self.timeline.epoch_at_hls(t)?;
        if is_real_source(e) {
            Ok(GenTime(t.ticks()))
        } else {
            self.timeline.hls_to_gen(t)
        }
    }

    /// Start of segment `seq` on the HLS clock: from the index; ahead of it (a player cannot
    /// have joined there yet, but the arithmetic is asked for) extrapolated at the nominal
    /// segment length from the newest segment of the epoch; for the generator anywhere else the
    /// epoch formula. A real source's segment the index does not hold has no known start.
    pub fn segment_start(&self, seq: SeqNo) -> Result<HlsTime, TimelineError> {
        if let Some(s) = self.index.by_seq(seq) {
            return Ok(s.hls_start);
        }
        let e = self.timeline.epoch_at_seq(seq)?;
        let formula = || {
            e.checked_segment_start(seq)
                .ok_or(TimelineError::Overflow("sequence number to media time"))
        };
        let newest = self
            .index
            .last()
            .filter(|l| l.seq < seq && l.epoch == e.index);
        match newest {
            Some(l) => {
                // The nominal distance from the segment after the newest one to `seq`.
                let ahead = formula()?
                    - e.checked_segment_start(l.seq + 1)
                        .ok_or(TimelineError::Overflow("sequence number to media time"))?;
                l.hls_end()
                    .checked_add(ahead)
                    .ok_or(TimelineError::Overflow("sequence number to media time"))
            }
            None if is_real_source(e) => Err(TimelineError::SeqBeforeStart(seq)),
            None => formula(),
        }
    }

    /// HLS -> CLIENT for a player that joined at `join_seq`: `hls - start(join) - gaps`.
    pub fn hls_to_client(&self, t: HlsTime, join_seq: SeqNo) -> Result<ClientTime, TimelineError> {
        Ok(self
            .timeline
            .hls_to_client_from(t, self.segment_start(join_seq)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hlsmark_clock::{Duration90k, FrameRate};

    const D: i64 = 90_000;
    const A: i64 = 1_795_000_000 * D;

    fn epoch(index: u32, first_seq: SeqNo, hls: i64, utc: i64, pts: Option<i64>) -> Epoch {
        Epoch {
            index,
            first_seq,
            hls_start: HlsTime(hls),
            gen_start: GenTime(hls),
            utc_start: UtcTime(utc),
            fps: FrameRate::integer(30),
            segment_frames: 30,
            hls_end: None,
            pts_start: pts,
        }
    }

    fn row(seq: SeqNo, epoch: u32, hls: i64, dur: i64, utc: i64) -> IndexedSegment {
        IndexedSegment {
            seq,
            epoch,
            hls_start: HlsTime(hls),
            duration: Duration90k(dur),
            utc_start: UtcTime(utc),
        }
    }

    /// A real source: 1.5 s, 0.8 s, 2 s segments, UTC slewed +500 ppm after the first; then a
    /// restart 3 s of wall time later (epoch 1, no HLS gap).
    fn real() -> (Timeline, SegmentIndex) {
        let mut e0 = epoch(0, 0, 0, A, Some(1_000));
        e0.hls_end = Some(HlsTime(4 * D + 27_000));
        let e1 = epoch(1, 3, 4 * D + 27_000, A + 7 * D + 27_000 + 90, Some(50));
        let t = Timeline::new(vec![e0, e1]).unwrap();
        let idx = SegmentIndex::from_rows(vec![
            row(0, 0, 0, 135_000, A),
            row(1, 0, 135_000, 72_000, A + 135_000 + 68),
            row(2, 0, 207_000, 180_000, A + 207_000 + 104),
            row(3, 1, 387_000, 90_000, A + 7 * D + 27_000 + 90),
        ]);
        (t, idx)
    }

    #[test]
    fn real_source_times_come_from_segments() {
        let (t, idx) = real();
        let c = Clocks::new(&t, &idx);
        assert_eq!(c.seq_at(HlsTime(135_000)), Some(1));
        assert_eq!(c.seq_at(HlsTime(206_999)), Some(1));
        assert_eq!(c.seq_at(HlsTime(10 * D)), None, "not published yet");
        assert_eq!(
            c.hls_to_utc(HlsTime(140_000)).unwrap(),
            UtcTime(A + 140_068)
        );
        assert_eq!(
            c.utc_to_hls(UtcTime(A + 140_068)).unwrap(),
            HlsTime(140_000)
        );
        // The 68-tick sliver between segment 0's end and segment 1's PDT: segment 0 still shows.
        assert_eq!(
            c.utc_to_hls(UtcTime(A + 135_030)).unwrap(),
            HlsTime(134_999)
        );
        // Down between epochs; the bound is where video resumed.
        let down = UtcTime(A + 6 * D);
        assert!(matches!(c.utc_to_hls(down), Err(TimelineError::InGap(..))));
        assert_eq!(c.utc_to_hls_bound(down).unwrap(), HlsTime(387_000));
        // Ahead of the live edge: extrapolated from the newest segment.
        assert_eq!(
            c.hls_to_utc(HlsTime(387_000 + 2 * D)).unwrap(),
            UtcTime(A + 7 * D + 27_000 + 90 + 2 * D)
        );
        assert_eq!(
            c.utc_to_hls(UtcTime(A + 7 * D + 27_000 + 90 + 2 * D))
                .unwrap(),
            HlsTime(387_000 + 2 * D)
        );
        // CLIENT from the real starts: joined at seq 1 (135000), a time in seq 3.
        assert_eq!(
            c.hls_to_client(HlsTime(400_000), 1).unwrap(),
            ClientTime(400_000 - 135_000)
        );
        assert_eq!(c.segment_start(5).unwrap(), HlsTime(387_000 + 90_000 + D));
        // GEN is HLS for a real source.
        assert_eq!(c.hls_to_gen(HlsTime(140_000)).unwrap(), GenTime(140_000));
    }

    /// Regression: right after a restart the new epoch is in the timeline (its anchor a moment
    /// ago) but has no segment yet; a wall time in it was refused as "down from the old epoch's
    /// end to the new epoch's start", though it is after that start.
    #[test]
    fn a_new_epoch_without_segments_maps_by_its_anchor() {
        let (t, idx) = real();
        let only_epoch_0 = SegmentIndex::from_rows(idx.rows()[..3].to_vec());
        let c = Clocks::new(&t, &only_epoch_0);
        let start1 = A + 7 * D + 27_000 + 90;
        assert_eq!(
            c.utc_to_hls(UtcTime(start1 + D / 3)).unwrap(),
            HlsTime(4 * D + 27_000 + D / 3)
        );
        // Between the epochs it is still down.
        assert!(matches!(
            c.utc_to_hls(UtcTime(start1 - 1)),
            Err(TimelineError::InGap(..))
        ));
    }

    #[test]
    fn real_source_segments_the_index_does_not_hold_have_no_start() {
        let (t, idx) = real();
        let trimmed = SegmentIndex::from_rows(idx.rows()[2..].to_vec());
        let c = Clocks::new(&t, &trimmed);
        assert!(matches!(
            c.segment_start(0),
            Err(TimelineError::SeqBeforeStart(0))
        ));
        assert_eq!(c.segment_start(2).unwrap(), HlsTime(207_000));
    }

    #[test]
    fn generator_answers_are_the_timelines() {
        let mut e0 = epoch(0, 0, 0, A, None);
        e0.hls_end = Some(HlsTime(6 * D));
        let e1 = Epoch {
            gen_start: GenTime(7 * D + D / 2),
            ..epoch(1, 6, 6 * D, A + 7 * D + D / 2, None)
        };
        let t = Timeline::new(vec![e0, e1]).unwrap();
        // Seqs 2..=7 retained.
        let idx = SegmentIndex::from_rows(
            (2..8)
                .map(|s: u64| {
                    let h = HlsTime(i64::try_from(s).unwrap() * D);
                    row(
                        s,
                        u32::from(s >= 6),
                        h.ticks(),
                        D,
                        t.hls_to_utc(h).unwrap().ticks(),
                    )
                })
                .collect(),
        );
        let c = Clocks::new(&t, &idx);
        for ticks in (0..12 * D).step_by(7_919) {
            let h = HlsTime(ticks);
            assert_eq!(c.seq_at(h), t.seq_at(h).ok(), "{h:?}");
            assert_eq!(c.hls_to_utc(h), t.hls_to_utc(h), "{h:?}");
            assert_eq!(c.hls_to_gen(h), t.hls_to_gen(h), "{h:?}");
            let u = UtcTime(A + ticks);
            assert_eq!(c.utc_to_hls(u), t.utc_to_hls(u), "{u:?}");
            assert_eq!(c.utc_to_hls_bound(u), t.utc_to_hls_bound(u), "{u:?}");
            for join in [0, 2, 7, 9, 1_000_000_000] {
                assert_eq!(
                    c.hls_to_client(h, join),
                    t.hls_to_client(h, join),
                    "{h:?} {join}"
                );
            }
        }
    }
}
