//! Segment index + timeline + markers -> one media playlist (live window or VOD).

use chrono::{FixedOffset, TimeZone};
use hlsmark_clock::{Duration90k, HlsTime, Part, Segment, Timeline, TimelineError, UtcTime};
use m3u8_rs::{ExtTag, Map, MediaPlaylist, MediaPlaylistType, MediaSegment};

use crate::format::{quoted_string_value, secs_decimal};
use crate::ll::{
    EdgeParts, LowLatency, PART_HOLD_BACK_PARTS, SKIP_UNTIL_TARGETS, Skip, edge_parts,
    effective_part_target,
};

/// `EXT-X-VERSION`: 6 is the lowest that allows `EXT-X-MAP` in a normal media playlist (fMP4).
/// The LL-HLS tags need no higher one; only `EXT-X-SKIP` does (§8: 9, and 10 when it also
/// replaces date ranges), so full LL playlists stay at 6 and players that ignore LL tags read them.
const VERSION: usize = 6;
const VERSION_SKIP: usize = 9;
const VERSION_SKIP_DATERANGES: usize = 10;
/// `CLASS` of every marker date range: one class, one set of attribute semantics (RFC 8216
/// §4.3.2.7): `X-LABEL` always; `X-SEVERITY` (`warning`, `critical`), `X-COLOR` (`#rrggbb`) and
/// `X-TAGS` (comma-separated) only when the marker has them, absence meaning `info`, no colour,
/// no tags. Written only when set because every marker of the window goes out in every reload.
const MARKER_CLASS: &str = "hlsmark-marker";

/// Which playlist to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Sliding window: no end tag, the player reloads it. Only the contiguous run of sequence
    /// numbers that ends at the newest segment is listed (a hole would renumber later segments).
    Live,
    /// A finished range: `EXT-X-PLAYLIST-TYPE:VOD` and `EXT-X-ENDLIST`. A hole in the sequence is
    /// bridged with `EXT-X-DISCONTINUITY`.
    Vod,
}

/// A marker as an `EXT-X-DATERANGE`. Every attribute is a function of the marker alone, so a
/// marker keeps the same attributes in every reload of the playlist (RFC 8216 §4.3.2.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateRange {
    /// `ID` (the marker's uuid).
    pub id: String,
    /// `X-LABEL` (sanitised into a quoted-string).
    pub label: String,
    /// Media time of the marker: decides which segment the tag is written before.
    pub hls: HlsTime,
    /// `START-DATE`, as stored with the marker.
    pub utc: UtcTime,
    /// `DURATION`.
    pub duration: Duration90k,
    /// When the marker was stored: with its start time it bounds when the date range entered the
    /// playlist, which `_HLS_skip=v2` delta updates need (RFC 8216bis §6.2.5.1).
    pub created: UtcTime,
    /// `X-SEVERITY`, `X-COLOR`, `X-TAGS`.
    pub style: DateRangeStyle,
}

/// The optional client attributes of a marker's date range; the default writes none of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DateRangeStyle {
    /// `X-SEVERITY`: `None` for the default severity (`info`), which is not written.
    pub severity: Option<String>,
    /// `X-COLOR`, e.g. `#ff8800`.
    pub color: Option<String>,
    /// `X-TAGS`, joined with commas (tags hold no comma).
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaylistError {
    #[error("no segments to list")]
    NoSegments,
    #[error("segment {seq}: {source}")]
    Timeline {
        seq: u64,
        #[source]
        source: TimelineError,
    },
    #[error("segment {seq}: wall time {utc_ticks} ticks cannot be written as a date")]
    BadDate { seq: u64, utc_ticks: i64 },
}

/// The query that makes a segment's URL unique to its epoch's incarnation: file names restart at
/// `e0-…` when a stream's data is wiped, and segments are served `immutable`, so the URL carries
/// the epoch's wall-clock start (`?v=<utc ticks, hex>`); the server ignores it.
fn incarnation_query(timeline: &Timeline, epoch: u32) -> String {
    timeline
        .epochs()
        .iter()
        .find(|e| e.index == epoch)
        .map_or_else(String::new, |e| format!("?v={:x}", e.utc_start.ticks()))
}

/// Renders a media playlist over `segments` (any order, duplicates ignored), writing the markers
/// that overlap the listed media range as date ranges.
///
/// m3u8-rs's writer is used for the model and the text, with these fix-ups applied afterwards:
/// - `EXTINF` is re-printed from exact ticks ([`secs_decimal`]); m3u8-rs stores an `f32`.
/// - `EXT-X-MEDIA-SEQUENCE` and `EXT-X-DISCONTINUITY-SEQUENCE` are written even when 0 (m3u8-rs
///   omits them; a reader must then assume 0, which is right but hides the value when debugging).
/// - `EXT-X-DISCONTINUITY` is moved before the `EXT-X-MAP` of the same segment (the conventional
///   order: the new init section belongs to the new discontinuity).
/// - Date ranges go in as raw tags: m3u8-rs allows one per segment, prints `START-DATE` with
///   nanoseconds and orders `X-` attributes by hash.
pub fn render(
    timeline: &Timeline,
    segments: &[Segment],
    dateranges: &[DateRange],
    kind: Kind,
) -> Result<String, PlaylistError> {
    render_with(timeline, segments, dateranges, kind, None)
}

/// Renders the live playlist with Low-Latency HLS: [`render`]'s live playlist plus
/// `EXT-X-SERVER-CONTROL`, `EXT-X-PART-INF`, `EXT-X-PART` for the live edge's parts
/// ([`edge_parts`]), `EXT-X-PRELOAD-HINT` for the next part and, when `ll.skip` asks for it, a
/// Playlist Delta Update (`EXT-X-SKIP`).
///
/// LL tags are written as raw tags (m3u8-rs has no model for them): parts after the segment tags
/// of their parent (so `EXT-X-DISCONTINUITY`, `EXT-X-MAP` and PDT precede its first part, as
/// §4.4.4.9 requires) and before its `EXTINF`; the open segment's parts and the hint at the end.
/// Players that ignore LL tags see [`render`]'s playlist plus tags they skip.
pub fn render_live_ll(
    timeline: &Timeline,
    segments: &[Segment],
    dateranges: &[DateRange],
    ll: &LowLatency<'_>,
) -> Result<String, PlaylistError> {
    render_with(timeline, segments, dateranges, Kind::Live, Some(ll))
}

/// The segments a playlist of `kind` lists, in order: sorted, deduplicated, and for a live
/// playlist the contiguous run of sequence numbers that ends at the newest segment.
pub fn listed_segments(segments: &[Segment], kind: Kind) -> Vec<&Segment> {
    let mut segs: Vec<&Segment> = segments.iter().collect();
    segs.sort_by_key(|s| s.seq);
    segs.dedup_by_key(|s| s.seq);
    if kind == Kind::Live {
        let cut = segs
            .windows(2)
            .rposition(|w| w[1].seq != w[0].seq + 1)
            .map_or(0, |i| i + 1);
        segs.drain(..cut);
    }
    segs
}

fn render_with(
    timeline: &Timeline,
    segments: &[Segment],
    dateranges: &[DateRange],
    kind: Kind,
    ll: Option<&LowLatency<'_>>,
) -> Result<String, PlaylistError> {
    let segs = listed_segments(segments, kind);
    let (Some(first), Some(last)) = (segs.first().copied(), segs.last().copied()) else {
        return Err(PlaylistError::NoSegments);
    };
    let ll = ll.filter(|_| kind == Kind::Live);
    let edge: Option<EdgeParts<'_>> = ll.map(|l| edge_parts(last, l.parts));
    let open_end = edge
        .as_ref()
        .and_then(|e| e.open.last())
        .map(|p| p.hls_end());
    let window = (
        first.hls_start,
        open_end.unwrap_or(last.hls_end()).max(last.hls_end()),
    );

    let mut target = Duration90k::ZERO;
    for s in &segs {
        target = target.max(s.duration);
        if let Ok(e) = timeline.epoch_at_hls(s.hls_start) {
            target = target.max(e.segment_duration());
        }
    }
    let target_secs = target_duration_secs(target);
    let target_whole = Duration90k(i64::try_from(target_secs).unwrap_or(i64::MAX / 2) * 90_000);
    let skip_until = Duration90k(target_whole.ticks().saturating_mul(SKIP_UNTIL_TARGETS));
    let skip = ll.map_or(Skip::No, |l| l.skip);

    // A delta update replaces the segments whose end is further than the skip boundary from the
    // end of the last complete segment (§6.2.5.1).
    let skipped = if skip == Skip::No {
        0
    } else {
        segs.iter()
            .take_while(|s| last.hls_end() - s.hls_end() > skip_until)
            .count()
    };

    let overlaps =
        |d: &DateRange| d.hls < window.1 && (d.hls + d.duration > window.0 || d.hls >= window.0);
    let mut marks: Vec<&DateRange> = dateranges.iter().filter(|d| overlaps(d)).collect();
    marks.sort_by(|a, b| (a.hls, &a.id).cmp(&(b.hls, &b.id)));
    marks.dedup_by(|a, b| a.id == b.id);
    let mut removed: Vec<String> = Vec::new();
    if let (Some(l), Skip::SegmentsAndDateRanges) = (ll, skip) {
        // v2: leave out the ranges that entered the playlist more than the skip boundary ago
        // (the client has them). A range enters when it is posted and its start is listed: no
        // later than max(created, start + 2 targets), so a range is left out only when even that
        // bound is older; leaving one in is harmless (clients merge by ID), leaving one out that
        // the client never saw is not.
        let horizon = l.now - skip_until;
        let lag = Duration90k(target_whole.ticks().saturating_mul(2));
        marks.retain(|d| d.created.max(d.utc + lag) >= horizon);
        // Removed within the skip boundary: ranges that slid out of the window lately, and the
        // deleted ones the caller knows of.
        let mut gone: Vec<&DateRange> = dateranges
            .iter()
            .filter(|d| {
                !overlaps(d) && d.hls < window.0 && d.hls + d.duration > window.0 - skip_until
            })
            .collect();
        gone.sort_by(|a, b| (a.hls, &a.id).cmp(&(b.hls, &b.id)));
        gone.dedup_by(|a, b| a.id == b.id);
        // (quoted_string_value turns tabs into spaces: an ID cannot split the list.)
        removed.extend(gone.iter().map(|d| quoted_string_value(&d.id)));
        removed.extend(
            l.removed_dateranges
                .iter()
                .map(|id| quoted_string_value(id)),
        );
    }

    let mut out = Vec::with_capacity(segs.len());
    let mut listed: Vec<&Segment> = Vec::with_capacity(segs.len());
    let mut prev: Option<&Segment> = None;
    let mut next_mark = 0;
    let mut carried: Vec<ExtTag> = Vec::new();
    let open_tail = edge.as_ref().is_some_and(|e| !e.open.is_empty());
    for (i, s) in segs.iter().copied().enumerate() {
        let discontinuity = prev.is_some_and(|p| p.epoch != s.epoch || p.seq + 1 != s.seq);
        let incarnation = incarnation_query(timeline, s.epoch);
        // The first segment after an EXT-X-SKIP repeats its init section: the skipped segments'
        // EXT-X-MAP is gone with them.
        let first_listed = i == skipped;
        let map = match (&s.init_file, prev) {
            (None, _) => None,
            (Some(f), Some(p))
                if !discontinuity && !first_listed && p.init_file.as_ref() == Some(f) =>
            {
                None
            }
            (Some(f), _) => Some(Map {
                uri: format!("{f}{incarnation}"),
                ..Map::default()
            }),
        };
        // The segment's own wall time: for the generator it is the epoch formula
        // (`Timeline::hls_to_utc` of its start), for real sources the per-segment anchor, slewed
        // towards the wall clock (design/time.md, "Real sources").
        let utc = s.utc_start;
        // Rounded to the millisecond like every other printed UTC (DATERANGE, JSON), so a
        // marker's START-DATE and its segment's PDT agree to the millisecond.
        let pdt = utc
            .round_to_millis()
            .to_chrono()
            .and_then(|t| FixedOffset::east_opt(0).map(|z| z.from_utc_datetime(&t.naive_utc())))
            .ok_or(PlaylistError::BadDate {
                seq: s.seq,
                utc_ticks: utc.ticks(),
            })?;
        // Date ranges starting before the next segment go before this one's URI (the last
        // segment takes the rest, unless the open segment's parts follow it).
        let mut tags = std::mem::take(&mut carried);
        let is_last = i + 1 == segs.len();
        while let Some(d) = marks.get(next_mark) {
            if (open_tail || !is_last) && d.hls >= s.hls_end() {
                break;
            }
            tags.push(daterange_tag(d)?);
            next_mark += 1;
        }
        if i < skipped {
            // Date ranges are playlist tags, not segment tags: the ones a skipped segment carried
            // move to the first listed segment.
            carried = tags;
            prev = Some(s);
            continue;
        }
        if is_last && let Some(e) = &edge {
            tags.extend(e.last.iter().map(|p| part_tag(p, &incarnation)));
        }
        out.push(MediaSegment {
            uri: format!("{}{incarnation}", s.file),
            #[allow(clippy::cast_possible_truncation)]
            duration: s.duration.as_secs_f64() as f32,
            title: None,
            discontinuity,
            map,
            program_date_time: Some(pdt),
            unknown_tags: tags,
            ..MediaSegment::default()
        });
        listed.push(s);
        prev = Some(s);
    }

    let mut header: Vec<String> = Vec::new();
    let mut tail: Vec<String> = Vec::new();
    let mut version = VERSION;
    if let (Some(l), Some(e)) = (ll, &edge) {
        let part_target = effective_part_target(l.part_target, e);
        let hold_back = Duration90k(part_target.ticks().saturating_mul(PART_HOLD_BACK_PARTS));
        header.push(format!(
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},CAN-SKIP-UNTIL={},CAN-SKIP-DATERANGES=YES",
            secs_decimal(hold_back),
            secs_decimal(skip_until),
        ));
        header.push(format!(
            "#EXT-X-PART-INF:PART-TARGET={}",
            secs_decimal(part_target)
        ));
        match skip {
            Skip::No => {}
            Skip::Segments => {
                version = VERSION_SKIP;
                header.push(format!("#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}"));
            }
            Skip::SegmentsAndDateRanges => {
                version = VERSION_SKIP_DATERANGES;
                header.push(format!(
                    "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped},RECENTLY-REMOVED-DATERANGES=\"{}\"",
                    removed.join("\t")
                ));
            }
        }
        let incarnation = incarnation_query(timeline, last.epoch);
        for d in marks.get(next_mark..).unwrap_or_default() {
            tail.push(daterange_tag(d)?.to_string());
        }
        tail.extend(e.open.iter().map(|p| part_tag(p, &incarnation).to_string()));
        let (epoch, seq, index) = e.hint;
        tail.push(format!(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}{incarnation}\"",
            Part::file_name(epoch, seq, index)
        ));
    }

    let playlist = MediaPlaylist {
        version: Some(version),
        target_duration: target_secs,
        media_sequence: first.seq,
        discontinuity_sequence: u64::from(first.epoch),
        end_list: kind == Kind::Vod,
        playlist_type: (kind == Kind::Vod).then_some(MediaPlaylistType::Vod),
        independent_segments: true,
        segments: out,
        ..MediaPlaylist::default()
    };
    let mut buf = Vec::with_capacity(128 + segs.len() * 120);
    // Writing into a Vec cannot fail.
    let _ = playlist.write_to(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    Ok(fix_up(
        &text,
        &listed,
        first.seq,
        first.epoch,
        &header,
        &tail,
    ))
}

/// `#EXT-X-PART` of one part: duration from exact ticks, `INDEPENDENT=YES` when it starts with a
/// keyframe.
fn part_tag(p: &Part, incarnation: &str) -> ExtTag {
    ExtTag {
        tag: "X-PART".to_owned(),
        rest: Some(format!(
            "DURATION={},URI=\"{}{incarnation}\"{}",
            secs_decimal(p.duration),
            p.file,
            if p.independent {
                ",INDEPENDENT=YES"
            } else {
                ""
            }
        )),
    }
}

/// `EXT-X-TARGETDURATION`: every `EXTINF` rounded to the nearest integer must not exceed it.
pub(crate) fn target_duration_secs(max: Duration90k) -> u64 {
    let t = max.ticks().max(0);
    let rounded = (t + 45_000) / 90_000;
    u64::try_from(rounded.max(1)).unwrap_or(1)
}

fn daterange_tag(d: &DateRange) -> Result<ExtTag, PlaylistError> {
    if d.utc.to_chrono().is_none() {
        return Err(PlaylistError::BadDate {
            seq: 0,
            utc_ticks: d.utc.ticks(),
        });
    }
    let mut rest = format!(
        "ID=\"{}\",CLASS=\"{MARKER_CLASS}\",START-DATE=\"{}\",DURATION={},X-LABEL=\"{}\"",
        quoted_string_value(&d.id),
        d.utc.to_rfc3339_millis(),
        secs_decimal(d.duration.max(Duration90k::ZERO)),
        quoted_string_value(&d.label),
    );
    if let Some(sev) = &d.style.severity {
        rest.push_str(&format!(",X-SEVERITY=\"{}\"", quoted_string_value(sev)));
    }
    if let Some(color) = &d.style.color {
        rest.push_str(&format!(",X-COLOR=\"{}\"", quoted_string_value(color)));
    }
    if !d.style.tags.is_empty() {
        let tags = d.style.tags.join(",");
        rest.push_str(&format!(",X-TAGS=\"{}\"", quoted_string_value(&tags)));
    }
    Ok(ExtTag {
        tag: "X-DATERANGE".to_owned(),
        rest: Some(rest),
    })
}

/// The text fix-ups listed on [`render`], and the LL lines: `header` after the sequence numbers,
/// `tail` after the last segment.
fn fix_up(
    text: &str,
    segs: &[&Segment],
    media_sequence: u64,
    disc_sequence: u32,
    header: &[String],
    tail: &[String],
) -> String {
    let mut lines: Vec<String> = Vec::with_capacity(segs.len() * 5 + 8 + header.len() + tail.len());
    let mut extinf = segs.iter();
    for line in text.lines() {
        if line.starts_with("#EXTINF:") {
            let d = extinf.next().map_or(Duration90k::ZERO, |s| s.duration);
            lines.push(format!("#EXTINF:{},", secs_decimal(d)));
            continue;
        }
        if line == "#EXT-X-DISCONTINUITY"
            && lines.last().is_some_and(|l| l.starts_with("#EXT-X-MAP:"))
        {
            let map = lines.pop().unwrap_or_default();
            lines.push(line.to_owned());
            lines.push(map);
            continue;
        }
        lines.push(line.to_owned());
        if line.starts_with("#EXT-X-TARGETDURATION:") && media_sequence == 0 {
            lines.push("#EXT-X-MEDIA-SEQUENCE:0".to_owned());
        }
        if lines
            .last()
            .is_some_and(|l| l.starts_with("#EXT-X-MEDIA-SEQUENCE:"))
            && disc_sequence == 0
        {
            lines.push("#EXT-X-DISCONTINUITY-SEQUENCE:0".to_owned());
        }
        if lines
            .last()
            .is_some_and(|l| l.starts_with("#EXT-X-DISCONTINUITY-SEQUENCE:"))
        {
            lines.extend(header.iter().cloned());
        }
    }
    lines.extend(tail.iter().cloned());
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

#[cfg(test)]
mod daterange_style_tests {
    use super::*;

    fn range(style: DateRangeStyle) -> DateRange {
        DateRange {
            id: "m1".into(),
            label: "door \"A\"".into(),
            hls: HlsTime(0),
            utc: UtcTime(1_795_000_000 * 90_000),
            duration: Duration90k(45_000),
            created: UtcTime(1_795_000_000 * 90_000),
            style,
        }
    }

    /// A default marker's tag is unchanged (no style attributes); a styled one carries them,
    /// quoted-string safe.
    #[test]
    fn style_attributes_are_written_only_when_set() {
        let plain = daterange_tag(&range(DateRangeStyle::default())).unwrap();
        let plain = plain.rest.unwrap();
        assert!(
            !plain.contains("X-SEVERITY") && !plain.contains("X-COLOR"),
            "{plain}"
        );
        assert!(!plain.contains("X-TAGS"), "{plain}");
        let styled = daterange_tag(&range(DateRangeStyle {
            severity: Some("critical".into()),
            color: Some("#ff8800".into()),
            tags: vec!["person".into(), "zone:a".into()],
        }))
        .unwrap()
        .rest
        .unwrap();
        assert!(
            styled.ends_with(
                ",X-LABEL=\"door 'A'\",X-SEVERITY=\"critical\",X-COLOR=\"#ff8800\",X-TAGS=\"person,zone:a\""
            ),
            "{styled}"
        );
        // Whatever text arrives, the value cannot leave its quoted-string.
        let odd = daterange_tag(&range(DateRangeStyle {
            severity: Some("a\"b\nc".into()),
            ..Default::default()
        }))
        .unwrap()
        .rest
        .unwrap();
        assert!(odd.ends_with("X-SEVERITY=\"a'b c\""), "{odd}");
    }
}
