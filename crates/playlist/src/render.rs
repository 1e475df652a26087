//! Segment index + timeline + markers -> one media playlist (live window or VOD).

use chrono::{FixedOffset, TimeZone};
use hlsmark_clock::{Duration90k, HlsTime, Segment, Timeline, TimelineError, UtcTime};
use m3u8_rs::{ExtTag, Map, MediaPlaylist, MediaPlaylistType, MediaSegment};

use crate::format::{quoted_string_value, secs_decimal};

/// `EXT-X-VERSION`: 6 is the lowest that allows `EXT-X-MAP` in a normal media playlist (fMP4).
const VERSION: usize = 6;
/// `CLASS` of every marker date range: one class, one set of attributes (RFC 8216 §4.3.2.7).
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
    let mut segs: Vec<&Segment> = segments.iter().collect();
    segs.sort_by_key(|s| s.seq);
    segs.dedup_by_key(|s| s.seq);
    if kind == Kind::Live {
        // Keep the contiguous run that ends at the newest segment.
        let cut = segs
            .windows(2)
            .rposition(|w| w[1].seq != w[0].seq + 1)
            .map_or(0, |i| i + 1);
        segs.drain(..cut);
    }
    let (Some(first), Some(last)) = (segs.first(), segs.last()) else {
        return Err(PlaylistError::NoSegments);
    };
    let window = (first.hls_start, last.hls_end());

    let mut marks: Vec<&DateRange> = dateranges
        .iter()
        .filter(|d| d.hls < window.1 && (d.hls + d.duration > window.0 || d.hls >= window.0))
        .collect();
    marks.sort_by(|a, b| (a.hls, &a.id).cmp(&(b.hls, &b.id)));
    marks.dedup_by(|a, b| a.id == b.id);

    let mut target = Duration90k::ZERO;
    let mut out = Vec::with_capacity(segs.len());
    let mut prev: Option<&Segment> = None;
    let mut next_mark = 0;
    for (i, s) in segs.iter().enumerate() {
        let discontinuity = prev.is_some_and(|p| p.epoch != s.epoch || p.seq + 1 != s.seq);
        let incarnation = incarnation_query(timeline, s.epoch);
        let map = match (&s.init_file, prev) {
            (None, _) => None,
            (Some(f), Some(p)) if !discontinuity && p.init_file.as_ref() == Some(f) => None,
            (Some(f), _) => Some(Map {
                uri: format!("{f}{incarnation}"),
                ..Map::default()
            }),
        };
        let utc = timeline
            .hls_to_utc(s.hls_start)
            .map_err(|source| PlaylistError::Timeline { seq: s.seq, source })?;
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
        // Date ranges starting before the next segment go before this one's URI.
        let mut tags = Vec::new();
        let is_last = i + 1 == segs.len();
        while let Some(d) = marks.get(next_mark) {
            if !is_last && d.hls >= s.hls_end() {
                break;
            }
            tags.push(daterange_tag(d)?);
            next_mark += 1;
        }
        target = target.max(s.duration);
        if let Ok(e) = timeline.epoch_at_hls(s.hls_start) {
            target = target.max(e.segment_duration());
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
        prev = Some(s);
    }

    let playlist = MediaPlaylist {
        version: Some(VERSION),
        target_duration: target_duration_secs(target),
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
    Ok(fix_up(&text, &segs, first.seq, first.epoch))
}

/// `EXT-X-TARGETDURATION`: every `EXTINF` rounded to the nearest integer must not exceed it.
fn target_duration_secs(max: Duration90k) -> u64 {
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
    Ok(ExtTag {
        tag: "X-DATERANGE".to_owned(),
        rest: Some(format!(
            "ID=\"{}\",CLASS=\"{MARKER_CLASS}\",START-DATE=\"{}\",DURATION={},X-LABEL=\"{}\"",
            quoted_string_value(&d.id),
            d.utc.to_rfc3339_millis(),
            secs_decimal(d.duration.max(Duration90k::ZERO)),
            quoted_string_value(&d.label),
        )),
    })
}

/// The text fix-ups listed on [`render`].
fn fix_up(text: &str, segs: &[&Segment], media_sequence: u64, disc_sequence: u32) -> String {
    let mut lines: Vec<String> = Vec::with_capacity(segs.len() * 5 + 8);
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
    }
    let mut s = lines.join("\n");
    s.push('\n');
    s
}
