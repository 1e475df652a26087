//! The per-stream segment index the API converts times with: where each retained segment starts
//! and how long it is on the HLS clock, and its own wall time. Real sources cut at the source's
//! keyframes (variable durations) and slew UTC per segment, so sequence numbers, CLIENT and UTC
//! come from these rows, not from `fps x segment_frames` (design/time.md, "Real sources").
//!
//! Loaded once with `Store::segments_in_range`, then extended with the segments published since
//! and trimmed to what retention kept, once per store version that a request needs. Bounded: at
//! most [`MAX_ROWS`] rows (40 bytes each) per stream; older times fall back to the epoch formula.

use hlsmark_clock::{Duration90k, HlsTime, Segment, SeqNo, UtcTime};
use hlsmark_store::{Store, StoreError, StreamName};

use crate::state::MAX_ABS_TICKS;

/// Rows kept per stream: 250,000 (10 MB) is three days of one-second segments.
pub const MAX_ROWS: usize = 250_000;
/// Segments read per store call while loading.
const PAGE: usize = 2_000;

/// One retained segment, without its file names and frame table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedSegment {
    pub seq: SeqNo,
    pub epoch: u32,
    pub hls_start: HlsTime,
    pub duration: Duration90k,
    pub utc_start: UtcTime,
}

impl IndexedSegment {
    pub fn hls_end(&self) -> HlsTime {
        self.hls_start + self.duration
    }

    /// Wall time of media time `t` of this segment (or extrapolated from it, at the media rate).
    pub fn utc_at(&self, t: HlsTime) -> UtcTime {
        self.utc_start + (t - self.hls_start)
    }

    pub fn utc_end(&self) -> UtcTime {
        self.utc_start + self.duration
    }
}

impl From<&Segment> for IndexedSegment {
    fn from(s: &Segment) -> Self {
        Self {
            seq: s.seq,
            epoch: s.epoch,
            hls_start: s.hls_start,
            duration: s.duration,
            utc_start: s.utc_start,
        }
    }
}

/// The retained segments of one stream in sequence order (which is also media-time and wall-time
/// order: segments are published in order and PDT never goes back).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    rows: Vec<IndexedSegment>,
}

impl SegmentIndex {
    pub fn from_rows(mut rows: Vec<IndexedSegment>) -> Self {
        rows.sort_by_key(|r| r.seq);
        rows.dedup_by_key(|r| r.seq);
        Self { rows }
    }

    pub fn rows(&self) -> &[IndexedSegment] {
        &self.rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn first(&self) -> Option<&IndexedSegment> {
        self.rows.first()
    }

    pub fn last(&self) -> Option<&IndexedSegment> {
        self.rows.last()
    }

    /// The segment with this sequence number.
    pub fn by_seq(&self, seq: SeqNo) -> Option<&IndexedSegment> {
        self.rows
            .binary_search_by_key(&seq, |r| r.seq)
            .ok()
            .map(|i| &self.rows[i])
    }

    /// Position of the last segment starting at or before `t`.
    fn at_or_before(&self, t: HlsTime) -> Option<usize> {
        self.rows
            .partition_point(|r| r.hls_start <= t)
            .checked_sub(1)
    }

    /// The segment whose media holds `t` (`hls_start <= t < hls_end`).
    pub fn containing(&self, t: HlsTime) -> Option<&IndexedSegment> {
        let r = &self.rows[self.at_or_before(t)?];
        (t < r.hls_end()).then_some(r)
    }

    /// The segment before `seg` in the index, if it is the one right before it in sequence.
    pub fn previous(&self, seg: &IndexedSegment) -> Option<&IndexedSegment> {
        let i = self.rows.binary_search_by_key(&seg.seq, |r| r.seq).ok()?;
        let p = self.rows.get(i.checked_sub(1)?)?;
        (p.seq + 1 == seg.seq).then_some(p)
    }

    /// The nearest segment of epoch `epoch` to `t`: the last one starting at or before `t`, or
    /// else the first one after it (to extrapolate a time the index has no segment for).
    pub fn nearest_in_epoch(&self, epoch: u32, t: HlsTime) -> Option<&IndexedSegment> {
        let i = self.rows.partition_point(|r| r.hls_start <= t);
        let before = self.rows[..i].iter().rev().find(|r| r.epoch == epoch);
        before.or_else(|| {
            self.rows[i..]
                .iter()
                .take_while(|r| r.epoch <= epoch)
                .find(|r| r.epoch == epoch)
        })
    }

    /// Position of the last segment whose wall time starts at or before `u`.
    pub fn at_or_before_utc(
        &self,
        u: UtcTime,
    ) -> Option<(&IndexedSegment, Option<&IndexedSegment>)> {
        let i = self
            .rows
            .partition_point(|r| r.utc_start <= u)
            .checked_sub(1)?;
        Some((&self.rows[i], self.rows.get(i + 1)))
    }

    /// Adds segments published after the newest row (a record published again under the newest
    /// sequence number replaces it) and keeps at most [`MAX_ROWS`].
    fn extend(&mut self, segs: &[Segment]) -> usize {
        let mut added = 0;
        for s in segs {
            match self.rows.last_mut() {
                Some(l) if s.seq < l.seq => {}
                Some(l) if s.seq == l.seq => *l = s.into(),
                _ => {
                    self.rows.push(s.into());
                    added += 1;
                }
            }
        }
        if self.rows.len() > MAX_ROWS {
            let extra = self.rows.len() - MAX_ROWS;
            self.rows.drain(..extra);
        }
        added
    }

    /// Drops the rows retention removed from the store (those before its first segment).
    fn trim_before(&mut self, first_retained: Option<SeqNo>) {
        match first_retained {
            None => self.rows.clear(),
            Some(f) => {
                let cut = self.rows.partition_point(|r| r.seq < f);
                self.rows.drain(..cut);
            }
        }
    }

    /// This index brought up to date with the store: trimmed to the retained segments and
    /// extended with the ones published since. A stream seen for the first time is loaded in
    /// pages of 2,000 segments.
    pub async fn refreshed(
        &self,
        store: &dyn Store,
        stream: &StreamName,
    ) -> Result<Self, StoreError> {
        let (lo, hi) = (HlsTime(-MAX_ABS_TICKS), HlsTime(MAX_ABS_TICKS));
        let mut next = self.clone();
        if !next.is_empty() {
            let first = store.segments_in_range(stream, lo, hi, 1).await?;
            next.trim_before(first.first().map(|s| s.seq));
        }
        loop {
            // From the newest row's start: it comes back too (and replaces itself if changed).
            let from = next.last().map_or(lo, |r| r.hls_start);
            let page = store.segments_in_range(stream, from, hi, PAGE).await?;
            let added = next.extend(&page);
            if page.len() < PAGE || added == 0 {
                break;
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: SeqNo, epoch: u32, hls: i64, dur: i64, utc: i64) -> IndexedSegment {
        IndexedSegment {
            seq,
            epoch,
            hls_start: HlsTime(hls),
            duration: Duration90k(dur),
            utc_start: UtcTime(utc),
        }
    }

    #[test]
    fn lookups_by_time_seq_and_wall_time() {
        let idx = SegmentIndex::from_rows(vec![
            row(4, 1, 300, 100, 10_300),
            row(2, 0, 100, 150, 10_100),
            row(3, 0, 250, 50, 10_251),
        ]);
        assert_eq!(idx.containing(HlsTime(99)), None);
        assert_eq!(idx.containing(HlsTime(100)).map(|r| r.seq), Some(2));
        assert_eq!(idx.containing(HlsTime(249)).map(|r| r.seq), Some(2));
        assert_eq!(idx.containing(HlsTime(250)).map(|r| r.seq), Some(3));
        assert_eq!(idx.containing(HlsTime(400)), None);
        assert_eq!(idx.by_seq(3).map(|r| r.hls_start), Some(HlsTime(250)));
        assert_eq!(idx.by_seq(5), None);
        let three = *idx.by_seq(3).unwrap();
        assert_eq!(idx.previous(&three).map(|r| r.seq), Some(2));
        assert_eq!(
            idx.nearest_in_epoch(0, HlsTime(1_000)).map(|r| r.seq),
            Some(3)
        );
        assert_eq!(idx.nearest_in_epoch(1, HlsTime(0)).map(|r| r.seq), Some(4));
        assert_eq!(idx.nearest_in_epoch(7, HlsTime(0)), None);
        let (r, next) = idx.at_or_before_utc(UtcTime(10_250)).unwrap();
        assert_eq!((r.seq, next.map(|n| n.seq)), (2, Some(3)));
        assert!(idx.at_or_before_utc(UtcTime(10_099)).is_none());
    }

    #[test]
    fn extend_replaces_the_newest_and_trim_follows_retention() {
        let seg = |seq: SeqNo, dur: i64| Segment {
            seq,
            epoch: 0,
            hls_start: HlsTime(i64::try_from(seq).unwrap() * 100),
            duration: Duration90k(dur),
            utc_start: UtcTime(0),
            file: String::new(),
            init_file: None,
            frames: Default::default(),
        };
        let mut idx = SegmentIndex::default();
        assert_eq!(idx.extend(&[seg(0, 100), seg(1, 50)]), 2);
        assert_eq!(idx.extend(&[seg(1, 100), seg(2, 100)]), 1);
        assert_eq!(idx.by_seq(1).unwrap().duration, Duration90k(100));
        idx.trim_before(Some(1));
        assert_eq!(idx.first().map(|r| r.seq), Some(1));
        idx.trim_before(None);
        assert!(idx.is_empty());
    }
}
