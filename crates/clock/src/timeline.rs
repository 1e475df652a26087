//! The stream timeline: epochs (one per encoder start) and every conversion between clocks.
//!
//! An epoch begins whenever ffmpeg (re)starts. Within an epoch all four clocks move together, tick
//! for tick; between epochs the GEN -> HLS offset may jump (frames lost while ffmpeg restarted) and
//! the stream carries an `EXT-X-DISCONTINUITY`. HLS time is sequence-aligned: a new epoch starts at
//! the media time where its first sequence number would have started had the previous epoch gone
//! on, so `hls = seq * D + offset` holds across the whole stream when D is constant (the proof of
//! concept's CLIENT offset), and the only correction a player needs is the media a short final
//! segment of an epoch did not cover (see [`Timeline::hls_to_client`]).

use serde::{Deserialize, Serialize};

use crate::frame::FrameRate;
use crate::time::{ClientTime, Duration90k, GenTime, HlsTime, UtcTime};

/// An HLS media sequence number.
pub type SeqNo = u64;

/// One continuous run of the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    /// 0 for the first epoch of a stream, then 1, 2, ... (the discontinuity sequence).
    pub index: u32,
    /// Media sequence number of the epoch's first segment.
    pub first_seq: SeqNo,
    /// Media time of the epoch's first frame.
    pub hls_start: HlsTime,
    /// Generator time of the epoch's first frame.
    pub gen_start: GenTime,
    /// Wall time of the epoch's first frame: the anchor of every PDT in the epoch.
    pub utc_start: UtcTime,
    pub fps: FrameRate,
    /// Segment length in whole frames (every segment but possibly an epoch's last is this long).
    pub segment_frames: u32,
    /// End of the epoch's last published segment, once a later epoch has begun.
    pub hls_end: Option<HlsTime>,
    /// Real sources: the source's presentation time (90 kHz, as ffmpeg read it) of the epoch's
    /// first frame, so a time given as source PTS maps to `hls_start + (pts - pts_start)`.
    /// `None` for the generator, whose PTS is its GEN clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pts_start: Option<i64>,
}

impl Epoch {
    /// Nominal segment duration (exact when the frame rate is tick-exact).
    pub fn segment_duration(&self) -> Duration90k {
        self.fps.frame_to_ticks(i64::from(self.segment_frames))
    }

    /// Start of segment `seq`, which must belong to this epoch (`seq >= first_seq`).
    /// Saturates for absurd sequence numbers; [`Self::checked_segment_start`] reports them.
    pub fn segment_start(&self, seq: SeqNo) -> HlsTime {
        self.checked_segment_start(seq).unwrap_or(HlsTime(i64::MAX))
    }

    /// Start of segment `seq`, or `None` when it would lie beyond 10,000 years of media.
    pub fn checked_segment_start(&self, seq: SeqNo) -> Option<HlsTime> {
        let k = i64::try_from(seq.saturating_sub(self.first_seq)).ok()?;
        let frames = k.checked_mul(i64::from(self.segment_frames))?;
        let t = self
            .hls_start
            .checked_add(self.fps.checked_frame_to_ticks(frames)?)?;
        (t.ticks().abs() <= crate::time::MAX_ABS_TICKS).then_some(t)
    }

    /// Media covered by the epoch's published segments, once the epoch is closed.
    fn media_len(&self) -> Option<Duration90k> {
        self.hls_end.map(|end| end - self.hls_start)
    }

    /// Sequence number of the segment holding media time `hls` (which must not precede the epoch).
    pub fn seq_at(&self, hls: HlsTime) -> SeqNo {
        let frame = self.fps.ticks_to_frame(hls - self.hls_start).max(0);
        let k = frame / i64::from(self.segment_frames.max(1));
        self.first_seq + u64::try_from(k).unwrap_or(0)
    }

    /// Index of the frame showing at `hls`, counted from the epoch start.
    pub fn frame_at(&self, hls: HlsTime) -> i64 {
        self.fps.ticks_to_frame(hls - self.hls_start)
    }

    /// Media time of frame `n` of this epoch.
    pub fn frame_time(&self, n: i64) -> HlsTime {
        self.hls_start + self.fps.frame_to_ticks(n)
    }

    /// Start of the frame showing at `hls` (snaps a time inside a frame to its first tick).
    pub fn snap_to_frame(&self, hls: HlsTime) -> HlsTime {
        self.frame_time(self.frame_at(hls))
    }

    /// Wall time of media time `hls` within this epoch (its PDT): the anchor plus media elapsed.
    pub fn utc_at(&self, hls: HlsTime) -> UtcTime {
        self.utc_start + (hls - self.hls_start)
    }

    /// Generator time of media time `hls` within this epoch.
    pub fn gen_at(&self, hls: HlsTime) -> GenTime {
        GenTime((hls - self.gen_offset()).ticks())
    }

    fn gen_offset(&self) -> Duration90k {
        self.hls_start - HlsTime(self.gen_start.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimelineError {
    #[error("the stream has no epochs yet")]
    Empty,
    #[error("{0} is before the stream began")]
    BeforeStart(String),
    #[error("there is no video at {0}: the stream was down from {1} to {2}")]
    InGap(String, String, String),
    #[error("epoch {index} does not follow epoch {prev}: {why}")]
    OutOfOrder {
        index: u32,
        prev: u32,
        why: &'static str,
    },
    #[error("epoch {0} has a segment length of zero frames")]
    ZeroSegment(u32),
    #[error("sequence {0} is before the stream began")]
    SeqBeforeStart(SeqNo),
    #[error("arithmetic overflow converting {0}")]
    Overflow(&'static str),
}

/// The epochs of one stream, in order, with the clock conversions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    epochs: Vec<Epoch>,
}

impl Timeline {
    /// A timeline from epochs in any order; they are sorted by index and validated.
    pub fn new(mut epochs: Vec<Epoch>) -> Result<Self, TimelineError> {
        epochs.sort_by_key(|e| e.index);
        let mut t = Self {
            epochs: Vec::with_capacity(epochs.len()),
        };
        for e in epochs {
            t.push(e)?;
        }
        Ok(t)
    }

    /// Appends a new epoch, closing the previous one at `hls_end` if it is not closed yet.
    pub fn push(&mut self, e: Epoch) -> Result<(), TimelineError> {
        if e.segment_frames == 0 {
            return Err(TimelineError::ZeroSegment(e.index));
        }
        if let Some(prev) = self.epochs.last_mut() {
            let err = |why| TimelineError::OutOfOrder {
                index: e.index,
                prev: prev.index,
                why,
            };
            if e.index <= prev.index {
                return Err(err("index must increase"));
            }
            if e.first_seq <= prev.first_seq {
                return Err(err("first sequence number must increase"));
            }
            if e.hls_start <= prev.hls_start {
                return Err(err("media time must increase"));
            }
            if e.gen_start < prev.gen_start {
                return Err(err("generator time must not go back"));
            }
            if e.utc_start < prev.utc_start {
                return Err(err("wall time must not go back"));
            }
            match prev.hls_end {
                Some(end) if end > e.hls_start => {
                    return Err(err("previous epoch ends after this one starts"));
                }
                Some(_) => {}
                None => prev.hls_end = Some(e.hls_start),
            }
        }
        self.epochs.push(e);
        Ok(())
    }

    pub fn epochs(&self) -> &[Epoch] {
        &self.epochs
    }

    pub fn last(&self) -> Option<&Epoch> {
        self.epochs.last()
    }

    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }

    /// Where a new epoch starting at sequence `first_seq` begins on the HLS clock: the start that
    /// segment would have had in the current last epoch (sequence alignment), or 0 for a new stream.
    pub fn next_epoch_hls_start(&self, first_seq: SeqNo) -> HlsTime {
        match self.epochs.last() {
            Some(e) => e.segment_start(first_seq.max(e.first_seq)),
            None => HlsTime::ZERO,
        }
    }

    fn epoch_by<K: Ord>(&self, key: K, f: impl Fn(&Epoch) -> K) -> Option<&Epoch> {
        let i = self.epochs.partition_point(|e| f(e) <= key);
        i.checked_sub(1).map(|i| &self.epochs[i])
    }

    /// The epoch whose media time range holds `hls` (the latest that starts at or before it).
    pub fn epoch_at_hls(&self, hls: HlsTime) -> Result<&Epoch, TimelineError> {
        self.require()?;
        self.epoch_by(hls, |e| e.hls_start)
            .ok_or_else(|| TimelineError::BeforeStart(format!("{} s (HLS)", hls.as_secs_f64())))
    }

    pub fn epoch_at_gen(&self, gen_time: GenTime) -> Result<&Epoch, TimelineError> {
        self.require()?;
        self.epoch_by(gen_time, |e| e.gen_start).ok_or_else(|| {
            TimelineError::BeforeStart(format!("{} s (GEN)", gen_time.as_secs_f64()))
        })
    }

    pub fn epoch_at_utc(&self, utc: UtcTime) -> Result<&Epoch, TimelineError> {
        self.require()?;
        self.epoch_by(utc, |e| e.utc_start)
            .ok_or_else(|| TimelineError::BeforeStart(utc.to_string()))
    }

    pub fn epoch_at_seq(&self, seq: SeqNo) -> Result<&Epoch, TimelineError> {
        self.require()?;
        self.epoch_by(seq, |e| e.first_seq)
            .ok_or(TimelineError::SeqBeforeStart(seq))
    }

    fn require(&self) -> Result<(), TimelineError> {
        if self.epochs.is_empty() {
            Err(TimelineError::Empty)
        } else {
            Ok(())
        }
    }

    /// GEN -> HLS: same offset as the epoch's first frame. A generator time after a closed epoch
    /// ended and before the next began (the encoder was down) has no video: `InGap`.
    pub fn gen_to_hls(&self, gen_time: GenTime) -> Result<HlsTime, TimelineError> {
        let e = self.epoch_at_gen(gen_time)?;
        if let Some(len) = e.media_len()
            && gen_time - e.gen_start >= len
        {
            return Err(TimelineError::InGap(
                format!("{} s (GEN)", gen_time.as_secs_f64()),
                format!("{} s", (e.gen_start + len).as_secs_f64()),
                self.next_after(e).map_or_else(
                    || "now".to_owned(),
                    |n| format!("{} s", n.gen_start.as_secs_f64()),
                ),
            ));
        }
        HlsTime(gen_time.0)
            .checked_add(e.gen_offset())
            .ok_or(TimelineError::Overflow("GEN to HLS"))
    }

    /// HLS -> GEN.
    pub fn hls_to_gen(&self, hls: HlsTime) -> Result<GenTime, TimelineError> {
        let e = self.epoch_at_hls(hls)?;
        hls.checked_sub(e.gen_offset())
            .map(|h| GenTime(h.0))
            .ok_or(TimelineError::Overflow("HLS to GEN"))
    }

    /// HLS -> UTC: the epoch's wall anchor plus the media time since the epoch began. This is the
    /// value written as `EXT-X-PROGRAM-DATE-TIME`.
    pub fn hls_to_utc(&self, hls: HlsTime) -> Result<UtcTime, TimelineError> {
        let e = self.epoch_at_hls(hls)?;
        e.utc_start
            .checked_add(hls - e.hls_start)
            .ok_or(TimelineError::Overflow("HLS to UTC"))
    }

    /// UTC -> HLS (inverse of [`Self::hls_to_utc`]). A wall time at which the stream was down
    /// (after a closed epoch ended, before the next began) has no video: `InGap`.
    pub fn utc_to_hls(&self, utc: UtcTime) -> Result<HlsTime, TimelineError> {
        let e = self.epoch_at_utc(utc)?;
        if let Some(len) = e.media_len()
            && utc - e.utc_start >= len
        {
            return Err(TimelineError::InGap(
                utc.to_string(),
                (e.utc_start + len).to_string(),
                self.next_after(e)
                    .map_or_else(|| "now".to_owned(), |n| n.utc_start.to_string()),
            ));
        }
        e.hls_start
            .checked_add(utc - e.utc_start)
            .ok_or(TimelineError::Overflow("UTC to HLS"))
    }

    /// UTC -> HLS for the bound of a range: a time before the stream is its start, a time when
    /// the stream was down is where video resumed, so `[from, to)` covers exactly its video.
    pub fn utc_to_hls_bound(&self, utc: UtcTime) -> Result<HlsTime, TimelineError> {
        match self.utc_to_hls(utc) {
            Err(TimelineError::BeforeStart(_)) => Ok(self.epochs[0].hls_start),
            Err(TimelineError::InGap(..)) => {
                let e = self.epoch_at_utc(utc)?;
                Ok(self.next_after(e).map_or(e.hls_start, |n| n.hls_start))
            }
            r => r,
        }
    }

    fn next_after(&self, e: &Epoch) -> Option<&Epoch> {
        self.epochs.iter().find(|n| n.index > e.index)
    }

    /// Checks that media time `hls` holds video: not before the stream, nor in the part of a
    /// closed epoch's nominal range that its short last segment did not cover.
    pub fn check_media(&self, hls: HlsTime) -> Result<&Epoch, TimelineError> {
        let e = self.epoch_at_hls(hls)?;
        match e.hls_end {
            Some(end) if hls >= end => Err(TimelineError::InGap(
                format!("{} s (HLS)", hls.as_secs_f64()),
                format!("{} s", end.as_secs_f64()),
                self.next_after(e).map_or_else(
                    || "now".to_owned(),
                    |n| format!("{} s", n.hls_start.as_secs_f64()),
                ),
            )),
            _ => Ok(e),
        }
    }

    /// Start of segment `seq` on the HLS clock.
    pub fn segment_start(&self, seq: SeqNo) -> Result<HlsTime, TimelineError> {
        self.epoch_at_seq(seq)?
            .checked_segment_start(seq)
            .ok_or(TimelineError::Overflow("sequence number to media time"))
    }

    /// Sequence number of the segment holding `hls`.
    pub fn seq_at(&self, hls: HlsTime) -> Result<SeqNo, TimelineError> {
        let e = self.epoch_at_hls(hls)?;
        Ok(e.seq_at(hls))
    }

    /// Media a player never sees between `from` and `to` (both HLS): the parts of closed epochs'
    /// nominal ranges that their short final segments did not cover.
    fn gaps_between(&self, from: HlsTime, to: HlsTime) -> Duration90k {
        let mut gap = Duration90k::ZERO;
        for w in self.epochs.windows(2) {
            let (e, next) = (&w[0], &w[1]);
            let end = e.hls_end.unwrap_or(next.hls_start);
            // The gap is [end, next.hls_start); count its overlap with [from, to).
            let lo = end.max(from);
            let hi = next.hls_start.min(to);
            if hi > lo {
                gap = gap + (hi - lo);
            }
        }
        gap
    }

    /// HLS -> CLIENT for a player that joined at media sequence `join_seq`: the player's timeline
    /// is the sum of EXTINF from its first segment, so `client = hls - start(join_seq) - gaps`.
    /// With every segment of length D this is the proof of concept's `hls - join_seq * D`.
    pub fn hls_to_client(
        &self,
        hls: HlsTime,
        join_seq: SeqNo,
    ) -> Result<ClientTime, TimelineError> {
        Ok(self.hls_to_client_from(hls, self.segment_start(join_seq)?))
    }

    /// HLS -> CLIENT for a player whose first segment started at `join` (HLS): for segments of
    /// varying length (real sources) the caller knows that start from the segment index.
    pub fn hls_to_client_from(&self, hls: HlsTime, join: HlsTime) -> ClientTime {
        let (lo, hi, sign) = if hls >= join {
            (join, hls, 1)
        } else {
            (hls, join, -1)
        };
        let span = (hi - lo) - self.gaps_between(lo, hi);
        ClientTime(span.ticks() * sign)
    }

    /// CLIENT -> HLS (inverse of [`Self::hls_to_client`] for times that are not inside a gap).
    pub fn client_to_hls(
        &self,
        client: ClientTime,
        join_seq: SeqNo,
    ) -> Result<HlsTime, TimelineError> {
        let join = self.segment_start(join_seq)?;
        if client.0 <= 0 {
            // Walk backwards: gaps before the join point.
            let mut hls = join
                .checked_add(Duration90k(client.0))
                .ok_or(TimelineError::Overflow("CLIENT"))?;
            loop {
                let g = self.gaps_between(hls, join);
                let cand = join - (Duration90k(-client.0) + g);
                if cand == hls {
                    return Ok(hls);
                }
                hls = cand;
            }
        }
        let mut hls = join
            .checked_add(Duration90k(client.0))
            .ok_or(TimelineError::Overflow("CLIENT"))?;
        loop {
            let cand = join + Duration90k(client.0) + self.gaps_between(join, hls);
            if cand == hls {
                return Ok(hls);
            }
            hls = cand;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: i64 = 90_000;

    fn epoch(index: u32, first_seq: SeqNo, hls: i64, gen_time: i64, utc: i64) -> Epoch {
        Epoch {
            index,
            first_seq,
            hls_start: HlsTime(hls),
            gen_start: GenTime(gen_time),
            utc_start: UtcTime(utc),
            fps: FrameRate::integer(30),
            segment_frames: 30,
            hls_end: None,
            pts_start: None,
        }
    }

    const ANCHOR: i64 = 1_795_000_000 * D;

    /// Epoch 0 from seq 0; ffmpeg died 0.5 s into segment 10 (partial segment published), the new
    /// epoch starts at seq 11 after 2 s of generator time lost.
    fn two_epochs() -> Timeline {
        let mut e0 = epoch(0, 0, 0, 0, ANCHOR);
        e0.hls_end = Some(HlsTime(10 * D + D / 2));
        let e1 = epoch(1, 11, 11 * D, 12 * D + D / 2, ANCHOR + 13 * D);
        Timeline::new(vec![e1, e0]).unwrap()
    }

    #[test]
    fn poc_offset_holds_in_one_epoch() {
        let t = Timeline::new(vec![epoch(0, 0, 0, 0, ANCHOR)]).unwrap();
        let hls = HlsTime(37 * D + 3_000 * 7);
        assert_eq!(
            t.hls_to_client(hls, 30).unwrap(),
            ClientTime(hls.0 - 30 * D)
        );
        assert_eq!(
            t.client_to_hls(ClientTime(hls.0 - 30 * D), 30).unwrap(),
            hls
        );
        assert_eq!(t.seq_at(hls).unwrap(), 37);
        assert_eq!(t.hls_to_utc(hls).unwrap(), UtcTime(ANCHOR + hls.0));
    }

    #[test]
    fn client_across_epoch_skips_short_segment_gap() {
        let t = two_epochs();
        // Joined at seq 8; a marker 0.1 s into seq 12. The player saw 8,9 (2 s), 10 (0.5 s), 11 (1 s).
        let hls = HlsTime(12 * D + D / 10);
        assert_eq!(
            t.hls_to_client(hls, 8).unwrap(),
            ClientTime(3 * D + D / 2 + D / 10)
        );
        assert_eq!(
            t.client_to_hls(ClientTime(3 * D + D / 2 + D / 10), 8)
                .unwrap(),
            hls
        );
        // Negative: a marker before the join point.
        let early = HlsTime(9 * D);
        assert_eq!(
            t.hls_to_client(early, 12).unwrap(),
            ClientTime(-(2 * D + D / 2))
        );
        assert_eq!(
            t.client_to_hls(ClientTime(-(2 * D + D / 2)), 12).unwrap(),
            early
        );
    }

    #[test]
    fn gen_and_utc_follow_their_epoch() {
        let t = two_epochs();
        // GEN inside epoch 1 maps with epoch 1's offset.
        let g = GenTime(13 * D);
        assert_eq!(t.gen_to_hls(g).unwrap(), HlsTime(11 * D + D / 2));
        assert_eq!(t.hls_to_gen(HlsTime(11 * D + D / 2)).unwrap(), g);
        assert_eq!(
            t.hls_to_utc(HlsTime(11 * D)).unwrap(),
            UtcTime(ANCHOR + 13 * D)
        );
        assert_eq!(
            t.utc_to_hls(UtcTime(ANCHOR + 13 * D)).unwrap(),
            HlsTime(11 * D)
        );
        assert_eq!(t.epoch_at_seq(10).unwrap().index, 0);
        assert_eq!(t.epoch_at_seq(11).unwrap().index, 1);
    }

    #[test]
    fn empty_and_out_of_order_are_errors() {
        assert_eq!(
            Timeline::default().gen_to_hls(GenTime(0)),
            Err(TimelineError::Empty)
        );
        let t = two_epochs();
        assert!(matches!(
            t.hls_to_utc(HlsTime(-1)),
            Err(TimelineError::BeforeStart(_))
        ));
        let mut bad = t.clone();
        assert!(
            bad.push(epoch(2, 5, 20 * D, 20 * D, ANCHOR + 30 * D))
                .is_err()
        );
        let mut zero = epoch(2, 30, 30 * D, 30 * D, ANCHOR + 40 * D);
        zero.segment_frames = 0;
        assert_eq!(bad.push(zero), Err(TimelineError::ZeroSegment(2)));
    }

    #[test]
    fn next_epoch_is_sequence_aligned() {
        let t = two_epochs();
        assert_eq!(t.next_epoch_hls_start(20), HlsTime(20 * D));
        assert_eq!(Timeline::default().next_epoch_hls_start(0), HlsTime::ZERO);
        let ntsc = Epoch {
            fps: FrameRate::new(30_000, 1_001).unwrap(),
            ..epoch(0, 0, 0, 0, ANCHOR)
        };
        assert_eq!(ntsc.segment_start(3), HlsTime(3 * 90_090));
        assert_eq!(ntsc.frame_time(1), HlsTime(3_003));
        assert_eq!(ntsc.frame_at(HlsTime(3_002)), 0);
        assert_eq!(ntsc.frame_at(HlsTime(3_003)), 1);
    }

    #[test]
    fn times_when_the_stream_was_down_have_no_video() {
        let t = two_epochs();
        // Epoch 0 covers UTC [A, A + 10.5 s); epoch 1 starts at A + 13 s.
        let down = UtcTime(ANCHOR + 12 * D);
        assert!(matches!(t.utc_to_hls(down), Err(TimelineError::InGap(..))));
        assert_eq!(t.utc_to_hls_bound(down).unwrap(), HlsTime(11 * D));
        assert_eq!(t.utc_to_hls_bound(UtcTime(ANCHOR - D)).unwrap(), HlsTime(0));
        assert_eq!(
            t.utc_to_hls(UtcTime(ANCHOR + 10 * D)).unwrap(),
            HlsTime(10 * D)
        );
        // GEN: epoch 0 covers [0, 10.5 s); epoch 1 starts at 12.5 s.
        assert!(matches!(
            t.gen_to_hls(GenTime(11 * D)),
            Err(TimelineError::InGap(..))
        ));
        assert_eq!(t.gen_to_hls(GenTime(10 * D)).unwrap(), HlsTime(10 * D));
        // HLS: the short last segment of epoch 0 ends at 10.5 s.
        assert!(matches!(
            t.check_media(HlsTime(10 * D + D / 2)),
            Err(TimelineError::InGap(..))
        ));
        assert_eq!(t.check_media(HlsTime(11 * D)).unwrap().index, 1);
        let msg = t.utc_to_hls(down).unwrap_err().to_string();
        assert!(msg.contains("no video") && !msg.contains("/*"), "{msg}");
    }

    #[test]
    fn absurd_join_sequences_are_errors_not_wraparounds() {
        let t = two_epochs();
        for seq in [u64::MAX, i64::MAX as u64, 9_223_372_036_854_775, 1 << 40] {
            assert_eq!(
                t.hls_to_client(HlsTime(D), seq),
                Err(TimelineError::Overflow("sequence number to media time")),
                "{seq}"
            );
        }
        assert!(t.hls_to_client(HlsTime(D), 1_000_000).is_ok());
    }

    const TEN_YEARS: i64 = 10 * 366 * 86_400 * D;

    proptest! {
        #[test]
        fn hls_utc_gen_roundtrip(hls in 0i64..TEN_YEARS) {
            let t = two_epochs();
            let h = HlsTime(hls);
            let in_gap = (10 * D + D / 2..11 * D).contains(&hls);
            prop_assume!(!in_gap);
            prop_assert_eq!(t.utc_to_hls(t.hls_to_utc(h).unwrap()).unwrap(), h);
            prop_assert_eq!(t.gen_to_hls(t.hls_to_gen(h).unwrap()).unwrap(), h);
        }

        #[test]
        fn client_roundtrip_and_monotonic(a in 0i64..TEN_YEARS, b in 0i64..TEN_YEARS, join in 0u64..40) {
            let t = two_epochs();
            let in_gap = |x: i64| (10 * D + D / 2..11 * D).contains(&x);
            prop_assume!(!in_gap(a) && !in_gap(b));
            let (ha, hb) = (HlsTime(a), HlsTime(b));
            let ca = t.hls_to_client(ha, join).unwrap();
            prop_assert_eq!(t.client_to_hls(ca, join).unwrap(), ha);
            let cb = t.hls_to_client(hb, join).unwrap();
            prop_assert_eq!(a.cmp(&b), ca.cmp(&cb));
        }

        #[test]
        fn utc_is_monotonic_in_hls(a in 0i64..TEN_YEARS, b in 0i64..TEN_YEARS) {
            let t = two_epochs();
            let (ua, ub) = (t.hls_to_utc(HlsTime(a)).unwrap(), t.hls_to_utc(HlsTime(b)).unwrap());
            prop_assert!(a > b || ua <= ub);
        }

        #[test]
        fn fractional_rate_segments_hold_their_frames(
            rate in proptest::sample::select(vec![(24_000u32, 24u32), (60_000, 60), (120_000, 120)]),
            hls in 0i64..TEN_YEARS,
        ) {
            // 23.976, 59.94 and 119.88 fps: frames are not whole ticks; segments of 1.001 s.
            let e = Epoch {
                fps: FrameRate::new(rate.0, 1_001).unwrap(),
                segment_frames: rate.1,
                ..epoch(0, 0, 0, 0, ANCHOR)
            };
            let h = HlsTime(hls);
            let seq = e.seq_at(h);
            prop_assert!(e.segment_start(seq) <= h && h < e.segment_start(seq + 1));
            // Segment bounds sit on frames, so a segment is 90090 ticks to the tick.
            prop_assert_eq!(e.segment_start(seq + 1) - e.segment_start(seq), Duration90k(90_090));
            let snapped = e.snap_to_frame(h);
            prop_assert!(snapped <= h && h < e.frame_time(e.frame_at(h) + 1));
            prop_assert_eq!(e.snap_to_frame(snapped), snapped);
        }

        #[test]
        fn segment_of_time_contains_it(hls in 0i64..TEN_YEARS) {
            let t = two_epochs();
            let seq = t.seq_at(HlsTime(hls)).unwrap();
            let start = t.segment_start(seq).unwrap();
            prop_assert!(start.0 <= hls);
            prop_assert!(hls - start.0 < D);
        }
    }
}
