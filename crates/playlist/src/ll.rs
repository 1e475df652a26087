//! Low-Latency HLS rules of a live playlist (RFC 8216bis §4.4.3.7-8, §4.4.4.9, §4.4.5.2-3,
//! §6.2.5): which parts are listed, the preload hint, the delta-update skip boundary, and whether a
//! blocking reload (`_HLS_msn`/`_HLS_part`) can be answered yet.
//!
//! Every decision here is a pure function of the segment index and the kept parts, so the API asks
//! the same functions the renderer uses and the two can never disagree about the live edge.

use hlsmark_clock::{Duration90k, Part, Segment, SeqNo, TICKS_PER_SECOND, UtcTime};

/// `_HLS_skip`: which Playlist Delta Update a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Skip {
    /// The whole playlist.
    #[default]
    No,
    /// `_HLS_skip=YES`: segments older than the skip boundary become `EXT-X-SKIP`.
    Segments,
    /// `_HLS_skip=v2`: also leave out date ranges added more than the skip boundary ago, and name
    /// the recently removed ones (`RECENTLY-REMOVED-DATERANGES`).
    SegmentsAndDateRanges,
}

/// What a live playlist needs to become a Low-Latency one.
#[derive(Debug, Clone, Copy)]
pub struct LowLatency<'a> {
    /// Part Target Duration (`PART-TARGET`). Raised to the longest listed part if shorter, so every
    /// `EXT-X-PART` duration stays within it (§4.4.4.9).
    pub part_target: Duration90k,
    /// Parts as kept in the store (any order; only the live edge's are listed, see [`edge_parts`]).
    pub parts: &'a [Part],
    /// The delta update asked for.
    pub skip: Skip,
    /// Wall time of the request: ages date ranges for `_HLS_skip=v2`.
    pub now: UtcTime,
    /// IDs of date ranges deleted recently (within the skip boundary), for `_HLS_skip=v2`. Ranges
    /// that slid out of the window are found by the renderer itself.
    pub removed_dateranges: &'a [String],
}

/// `PART-HOLD-BACK` in part targets: the spec's SHOULD (§4.4.3.8), which keeps a player three parts
/// behind the newest one.
pub const PART_HOLD_BACK_PARTS: i64 = 3;
/// `CAN-SKIP-UNTIL` in target durations: the spec's minimum (§4.4.3.8).
pub const SKIP_UNTIL_TARGETS: i64 = 6;

/// The parts listed at the live edge and the hinted next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeParts<'a> {
    /// Parts of the newest complete segment, listed only when all of them are kept and they add
    /// up to the segment exactly (a parent and its parts must hold the same samples).
    pub last: Vec<&'a Part>,
    /// Parts of the open segment (`last.seq + 1`, same epoch), contiguous from index 0.
    pub open: Vec<&'a Part>,
    /// `(epoch, seq, index)` of the part that comes next (`EXT-X-PRELOAD-HINT`).
    pub hint: (u32, SeqNo, u32),
}

/// Which parts a live playlist ending at `last` lists.
///
/// Parts of the newest complete segment and of the open one only: the ingest keeps the parts of
/// the last four segments (design/llhls.md), so a part stays downloadable for three target
/// durations after its tag leaves the playlist, as §6.2.2 requires. Two complete segments plus the
/// open one's parts cover PART-HOLD-BACK many times over. The open segment's parts are listed only
/// while they continue the same epoch without a gap: a new epoch's first parts would need their own
/// `EXT-X-DISCONTINUITY`, `EXT-X-MAP` and PDT before any segment record exists; they are listed
/// from its first complete segment on.
pub fn edge_parts<'a>(last: &Segment, parts: &'a [Part]) -> EdgeParts<'a> {
    let mut of_last: Vec<&Part> = parts
        .iter()
        .filter(|p| p.seq == last.seq && p.epoch == last.epoch)
        .collect();
    of_last.sort_by_key(|p| p.index);
    of_last.dedup_by_key(|p| p.index);
    if !contiguous(&of_last, last.hls_start)
        || of_last.last().map(|p| p.hls_end()) != Some(last.hls_end())
    {
        of_last.clear();
    }

    let open_seq = last.seq + 1;
    let mut open: Vec<&Part> = parts
        .iter()
        .filter(|p| p.seq == open_seq && p.epoch == last.epoch)
        .collect();
    open.sort_by_key(|p| p.index);
    open.dedup_by_key(|p| p.index);
    let run = contiguous_prefix(&open, last.hls_end());
    open.truncate(run);

    // Once the open segment's parts are as long as the newest complete segment, the next
    // fragment most likely starts the next segment (the generator cuts exactly there): hint its
    // part 0 rather than a part that will never be written. A wrong guess costs one 404.
    let open_len = open
        .iter()
        .fold(Duration90k::ZERO, |acc, p| acc + p.duration);
    let hint = if !open.is_empty() && open_len >= last.duration {
        (last.epoch, open_seq + 1, 0)
    } else {
        (
            last.epoch,
            open_seq,
            u32::try_from(open.len()).unwrap_or(u32::MAX),
        )
    };
    EdgeParts {
        last: of_last,
        open,
        hint,
    }
}

/// Indexes 0, 1, 2 ... each part starting where the previous ended, the first at `start`.
fn contiguous(parts: &[&Part], start: hlsmark_clock::HlsTime) -> bool {
    !parts.is_empty() && contiguous_prefix(parts, start) == parts.len()
}

fn contiguous_prefix(parts: &[&Part], start: hlsmark_clock::HlsTime) -> usize {
    let mut at = start;
    for (i, p) in parts.iter().enumerate() {
        if u32::try_from(i).ok() != Some(p.index) || p.hls_start != at || p.duration.ticks() <= 0 {
            return i;
        }
        at = p.hls_end();
    }
    parts.len()
}

/// `PART-TARGET` actually written: the requested one, or the longest listed part if longer.
pub fn effective_part_target(requested: Duration90k, edge: &EdgeParts<'_>) -> Duration90k {
    edge.last
        .iter()
        .chain(&edge.open)
        .map(|p| p.duration)
        .fold(requested, Duration90k::max)
}

/// Where a live playlist ends, as a blocking reload compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveEdge {
    /// Media sequence number of the newest complete segment.
    pub msn: SeqNo,
    /// Number of listed parts of that segment (0: its parts are not listed).
    pub last_parts: u32,
    /// Number of listed parts of the open segment `msn + 1`.
    pub open_parts: u32,
    /// Part Target Duration written in the playlist (zero: no parts, LL off).
    pub part_target: Duration90k,
    /// Target duration written in the playlist.
    pub target: Duration90k,
}

/// What to do with a blocking playlist request (§6.2.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    /// The playlist holds the requested segment or part (or a later one): answer now.
    Ready,
    /// Not yet: wait for the next update, at most [`LiveEdge::block_limit`].
    Wait,
    /// Further ahead than the spec lets a client ask (`_HLS_msn` beyond the last segment + 2, or
    /// `_HLS_part` beyond the Advance Part Limit): 400 at once.
    TooFar,
}

impl LiveEdge {
    /// The edge of a live playlist over `segments` (the contiguous run at the newest one, as
    /// [`render`](crate::render) lists it) with `ll` parts; `None` without segments.
    pub fn of(segments: &[Segment], ll: Option<(&[Part], Duration90k)>) -> Option<Self> {
        let last = segments.iter().max_by_key(|s| s.seq)?;
        let target_secs = crate::render::target_duration_secs(
            segments
                .iter()
                .map(|s| s.duration)
                .fold(Duration90k::ZERO, Duration90k::max),
        );
        let target = Duration90k(i64::try_from(target_secs).unwrap_or(1) * TICKS_PER_SECOND);
        let (last_parts, open_parts, part_target) = match ll {
            Some((parts, requested)) => {
                let edge = edge_parts(last, parts);
                (
                    u32::try_from(edge.last.len()).unwrap_or(u32::MAX),
                    u32::try_from(edge.open.len()).unwrap_or(u32::MAX),
                    effective_part_target(requested, &edge),
                )
            }
            None => (0, 0, Duration90k::ZERO),
        };
        Some(Self {
            msn: last.seq,
            last_parts,
            open_parts,
            part_target,
            target,
        })
    }

    /// How long a blocking request may wait: three target durations (§6.2.5.2, then 503).
    pub fn block_limit(&self) -> Duration90k {
        Duration90k(self.target.ticks().saturating_mul(3))
    }

    /// The Advance Part Limit (§6.2.5.2): 3 / part target (in seconds) below one second, else 3.
    pub fn advance_part_limit(&self) -> u64 {
        let pt = self.part_target.ticks();
        if pt > 0 && pt < TICKS_PER_SECOND {
            // 3 s worth of parts, rounded up.
            u64::try_from((3 * TICKS_PER_SECOND + pt - 1) / pt).unwrap_or(3)
        } else {
            3
        }
    }

    /// Parts a segment is cut into, at least 1.
    fn parts_per_segment(&self) -> u64 {
        let pt = self.part_target.ticks();
        if pt <= 0 {
            return 1;
        }
        u64::try_from((self.target.ticks().saturating_add(pt - 1) / pt).max(1)).unwrap_or(1)
    }

    /// Whether a request for `_HLS_msn=msn` (and `_HLS_part=part`) can be answered now.
    ///
    /// A part index past the final part of a complete segment means part 0 of the next segment
    /// (§6.2.5.2). When a complete segment's parts are not listed, its final index is unknown: the
    /// request is answered, and the client's next request names the next part it lacks.
    pub fn blocking(&self, msn: u64, part: Option<u64>) -> Blocking {
        if msn > self.msn.saturating_add(2) {
            return Blocking::TooFar;
        }
        let Some(part) = part else {
            return if msn <= self.msn {
                Blocking::Ready
            } else {
                Blocking::Wait
            };
        };
        // How many parts beyond the newest listed one the request is.
        let (edge_seq, edge_parts) = if self.open_parts > 0 {
            (self.msn + 1, u64::from(self.open_parts))
        } else {
            (self.msn, u64::from(self.last_parts))
        };
        let ahead = msn
            .saturating_sub(edge_seq)
            .saturating_mul(self.parts_per_segment())
            .saturating_add(part)
            .saturating_sub(if msn >= edge_seq { edge_parts } else { 0 });
        if msn >= edge_seq && ahead > self.advance_part_limit() {
            return Blocking::TooFar;
        }
        let ready = if msn < self.msn {
            true
        } else if msn == self.msn {
            self.last_parts == 0 || part < u64::from(self.last_parts) || self.open_parts > 0
        } else if msn == self.msn + 1 {
            part < u64::from(self.open_parts)
        } else {
            false
        };
        if ready {
            Blocking::Ready
        } else {
            Blocking::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    use hlsmark_clock::HlsTime;

    use super::*;

    const PT: i64 = 18_000; // 200 ms

    fn seg(seq: u64) -> Segment {
        Segment {
            seq,
            epoch: 0,
            hls_start: HlsTime(i64::try_from(seq).unwrap_or(0) * 90_000),
            duration: Duration90k(90_000),
            utc_start: UtcTime(0),
            file: format!("e0-{seq:08}.m4s"),
            init_file: None,
            frames: Default::default(),
        }
    }

    fn parts(seq: u64, n: u32) -> Vec<Part> {
        (0..n)
            .map(|i| Part {
                seq,
                index: i,
                epoch: 0,
                hls_start: HlsTime(i64::try_from(seq).unwrap_or(0) * 90_000 + i64::from(i) * PT),
                duration: Duration90k(PT),
                independent: i == 0,
                file: Part::file_name(0, seq, i),
            })
            .collect()
    }

    fn edge(open: u32) -> LiveEdge {
        let segs = [seg(9), seg(10)];
        let mut ps = parts(10, 5);
        ps.extend(parts(11, open));
        LiveEdge::of(&segs, Some((&ps, Duration90k(PT)))).unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn edge_lists_complete_last_segment_and_contiguous_open_parts() {
        let last = seg(10);
        let mut ps = parts(10, 5);
        ps.extend(parts(11, 3));
        ps.extend(parts(9, 5)); // older: kept in the store, not listed
        let mut gap = parts(11, 5);
        gap.remove(3); // index 4 after a hole is not listed
        ps.push(gap[3].clone());
        let e = edge_parts(&last, &ps);
        assert_eq!(e.last.len(), 5);
        assert_eq!(e.open.len(), 3);
        assert_eq!(e.hint, (0, 11, 3));
        // A segment whose parts do not add up to it lists none.
        let mut short = parts(10, 4);
        short.extend(parts(11, 1));
        let e = edge_parts(&last, &short);
        assert!(e.last.is_empty());
        assert_eq!(e.open.len(), 1);
        // An open segment as long as the last complete one: the next part starts segment 12.
        let full: Vec<Part> = parts(11, 5);
        assert_eq!(edge_parts(&last, &full).hint, (0, 12, 0));
    }

    #[test]
    fn blocking_table() {
        use Blocking::*;
        // (open parts, msn, part, expected)
        let table: &[(u32, u64, Option<u64>, Blocking)] = &[
            (2, 10, None, Ready),
            (2, 9, None, Ready),
            (2, 11, None, Wait),
            (2, 12, None, Wait),
            (2, 13, None, TooFar),
            (2, u64::MAX, None, TooFar),
            (2, 11, Some(0), Ready),
            (2, 11, Some(1), Ready),
            (2, 11, Some(2), Wait),
            (2, 10, Some(4), Ready),
            // Past the final part of a complete segment: part 0 of the next one, which exists.
            (2, 10, Some(5), Ready),
            (0, 10, Some(5), Wait),
            (0, 11, Some(0), Wait),
            (2, 11, Some(17), Wait),
            (2, 11, Some(18), TooFar),
            (2, 12, Some(12), Wait),
            (2, 12, Some(13), TooFar),
            (2, 11, Some(u64::MAX), TooFar),
            (2, 3, Some(u64::MAX), Ready),
        ];
        for &(open, msn, part, want) in table {
            assert_eq!(
                edge(open).blocking(msn, part),
                want,
                "{open} {msn} {part:?}"
            );
        }
        assert_eq!(edge(0).block_limit(), Duration90k(270_000));
    }
}
