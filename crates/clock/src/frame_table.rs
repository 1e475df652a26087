//! A segment's frame table: the presentation time of every video frame, so time conversions on
//! real sources (variable frame rate, dropped frames, any rate) use the real frames instead of
//! `n x 90000 / fps`.

use serde::{Deserialize, Serialize};

use crate::time::{Duration90k, HlsTime};

/// Presentation times of a segment's video frames as tick offsets from the segment's start,
/// strictly increasing. Serialized as a plain array of integers (about 5 bytes a frame).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<u32>", into = "Vec<u32>")]
pub struct FrameTable {
    offsets: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameTableError {
    #[error("frame {index} at {ticks} ticks is not after the frame before it")]
    NotIncreasing { index: usize, ticks: i64 },
    #[error("frame {index} at {ticks} ticks from the segment start is outside 0..2^32 ticks")]
    OutOfRange { index: usize, ticks: i64 },
}

impl TryFrom<Vec<u32>> for FrameTable {
    type Error = FrameTableError;
    fn try_from(offsets: Vec<u32>) -> Result<Self, FrameTableError> {
        for (i, w) in offsets.windows(2).enumerate() {
            if w[1] <= w[0] {
                return Err(FrameTableError::NotIncreasing {
                    index: i + 1,
                    ticks: i64::from(w[1]),
                });
            }
        }
        Ok(Self { offsets })
    }
}

impl From<FrameTable> for Vec<u32> {
    fn from(t: FrameTable) -> Vec<u32> {
        t.offsets
    }
}

impl FrameTable {
    /// A table from frame presentation times (any order; duplicates refused) relative to `start`.
    pub fn new(
        start: HlsTime,
        pts: impl IntoIterator<Item = HlsTime>,
    ) -> Result<Self, FrameTableError> {
        let mut v: Vec<i64> = pts.into_iter().map(|t| (t - start).ticks()).collect();
        v.sort_unstable();
        let mut offsets = Vec::with_capacity(v.len());
        for (index, ticks) in v.into_iter().enumerate() {
            let o =
                u32::try_from(ticks).map_err(|_| FrameTableError::OutOfRange { index, ticks })?;
            if offsets.last().is_some_and(|&last| o <= last) {
                return Err(FrameTableError::NotIncreasing { index, ticks });
            }
            offsets.push(o);
        }
        Ok(Self { offsets })
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Offsets from the segment start, in ticks.
    pub fn offsets(&self) -> &[u32] {
        &self.offsets
    }

    /// Presentation time of every frame, for a segment starting at `start`.
    pub fn times(&self, start: HlsTime) -> impl Iterator<Item = HlsTime> + '_ {
        self.offsets
            .iter()
            .map(move |&o| start + Duration90k(i64::from(o)))
    }

    /// The frame showing at `t` in a segment starting at `start`: the last frame whose
    /// presentation time is at or before `t`, as (index, its time). `None` before the first frame.
    pub fn frame_at(&self, start: HlsTime, t: HlsTime) -> Option<(usize, HlsTime)> {
        let d = (t - start).ticks();
        if d < 0 {
            return None;
        }
        let d = u32::try_from(d).unwrap_or(u32::MAX);
        let i = self.offsets.partition_point(|&o| o <= d).checked_sub(1)?;
        Some((i, start + Duration90k(i64::from(self.offsets[i]))))
    }

    /// Time of frame `index`, if the segment has that many frames.
    pub fn frame_time(&self, start: HlsTime, index: usize) -> Option<HlsTime> {
        self.offsets
            .get(index)
            .map(|&o| start + Duration90k(i64::from(o)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_found_by_time() {
        let start = HlsTime(900_000);
        let t = FrameTable::new(
            start,
            [0, 3_003, 6_006, 12_012].map(|o| start + Duration90k(o)),
        )
        .unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t.frame_at(start, HlsTime(899_999)), None);
        assert_eq!(t.frame_at(start, start), Some((0, start)));
        assert_eq!(
            t.frame_at(start, start + Duration90k(3_002)),
            Some((0, start))
        );
        assert_eq!(
            t.frame_at(start, start + Duration90k(3_003)),
            Some((1, start + Duration90k(3_003)))
        );
        // A dropped frame (9009 missing): the frame before it stays on screen.
        assert_eq!(
            t.frame_at(start, start + Duration90k(10_000)),
            Some((2, start + Duration90k(6_006)))
        );
        assert_eq!(
            t.frame_at(start, HlsTime(i64::MAX / 2)),
            Some((3, start + Duration90k(12_012)))
        );
        assert_eq!(t.frame_time(start, 3), Some(start + Duration90k(12_012)));
        assert_eq!(t.frame_time(start, 4), None);
    }

    #[test]
    fn serde_is_a_plain_array_and_checks_order() {
        let t = FrameTable::new(HlsTime(0), [HlsTime(3_000), HlsTime(0)]).unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "[0,3000]");
        assert_eq!(serde_json::from_str::<FrameTable>("[0,3000]").unwrap(), t);
        assert!(serde_json::from_str::<FrameTable>("[5,5]").is_err());
        assert!(FrameTable::new(HlsTime(10), [HlsTime(9)]).is_err());
        assert!(FrameTable::new(HlsTime(0), [HlsTime(1), HlsTime(1)]).is_err());
    }
}
