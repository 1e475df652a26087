//! The little of a media playlist a player acts on: sequence numbers (delta updates included),
//! segment and part URIs with their durations and wall-clock ends (from PDT), the init section,
//! and what the server can do (blocking reload, skip). Not a validator: tags a player would not
//! use here are passed over.

use chrono::DateTime;

/// A segment or part the playlist lists, with what the viewers need to fetch and time it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// Media sequence number of the (parent) segment.
    pub msn: u64,
    /// Part index within the parent segment; [`WHOLE`] for a whole segment.
    pub index: u32,
    pub uri: String,
    pub duration_us: u64,
    /// Wall time (ms since the Unix epoch) at which the media ends: the parent's PDT plus the
    /// durations up to and including this one. `None` without a PDT.
    pub end_unix_ms: Option<i64>,
}

/// The `index` of a whole segment (parts count from 0).
pub const WHOLE: u32 = u32::MAX;

impl Media {
    /// Order of media in the stream: by segment, then part (a whole segment after its parts).
    pub fn key(&self) -> (u64, u32) {
        (self.msn, self.index)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Playlist {
    pub target_duration_us: u64,
    pub part_target_us: Option<u64>,
    pub can_block_reload: bool,
    pub can_skip: bool,
    pub init_uri: Option<String>,
    /// Complete segments, oldest first (after any `EXT-X-SKIP`).
    pub segments: Vec<Media>,
    /// Every listed part (of complete segments and of the open one), in order.
    pub parts: Vec<Media>,
    /// Sequence number the next segment will have (the open segment's).
    pub next_msn: u64,
}

impl Playlist {
    /// What a blocking reload asks for next: the part after the last listed one, or part 0 of
    /// the open segment when none of it is listed yet.
    pub fn next_part(&self) -> (u64, u32) {
        match self.parts.last() {
            Some(p) if p.msn >= self.next_msn => (p.msn, p.index.saturating_add(1)),
            _ => (self.next_msn, 0),
        }
    }
}

/// Decimal seconds (`1.000`, `0.208544`) as integer microseconds, without going through a float.
fn seconds_us(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches(',');
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(frac.is_empty() || digits(frac)) {
        return None;
    }
    // Beyond microseconds the digits are dropped (truncated).
    let micros = format!("{:0<6}", &frac[..frac.len().min(6)]);
    whole
        .parse::<u64>()
        .ok()?
        .checked_mul(1_000_000)?
        .checked_add(micros.parse().ok()?)
}

fn attr<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.split_once(':')?.1;
    let mut at = 0;
    while at < rest.len() {
        let tail = &rest[at..];
        let eq = tail.find('=')?;
        let name = &tail[..eq];
        let value_start = eq + 1;
        let (value, used) = if tail[value_start..].starts_with('"') {
            let close = tail[value_start + 1..].find('"')? + value_start + 1;
            (&tail[value_start + 1..close], close + 1)
        } else {
            let end = tail[value_start..]
                .find(',')
                .map_or(tail.len(), |i| i + value_start);
            (&tail[value_start..end], end)
        };
        if name == key {
            return Some(value);
        }
        at += used + 1;
    }
    None
}

/// Parses a live media playlist (full or a delta update).
pub fn parse(text: &str) -> anyhow::Result<Playlist> {
    let mut pl = Playlist::default();
    let mut msn = None::<u64>;
    let mut pdt_ms = None::<i64>;
    // Offset from the open segment's start of the next part (µs), and its next index.
    let mut offset_us = 0u64;
    let mut part_index = 0u32;
    let mut extinf = None::<u64>;
    let mut lines = text.lines();
    anyhow::ensure!(
        lines.next().map(str::trim) == Some("#EXTM3U"),
        "not a playlist"
    );
    let end_of = |pdt: Option<i64>, us: u64| pdt.map(|p| p + i64::try_from(us / 1000).unwrap_or(0));
    for line in lines {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            pl.target_duration_us = seconds_us(v).unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            msn = Some(v.parse()?);
        } else if line.starts_with("#EXT-X-SKIP:") {
            let n: u64 = attr(line, "SKIPPED-SEGMENTS").unwrap_or("0").parse()?;
            msn = Some(msn.unwrap_or(0) + n);
        } else if line.starts_with("#EXT-X-SERVER-CONTROL:") {
            pl.can_block_reload = attr(line, "CAN-BLOCK-RELOAD") == Some("YES");
            pl.can_skip = attr(line, "CAN-SKIP-UNTIL").is_some();
        } else if line.starts_with("#EXT-X-PART-INF:") {
            pl.part_target_us = attr(line, "PART-TARGET").and_then(seconds_us);
        } else if line.starts_with("#EXT-X-MAP:") {
            pl.init_uri = attr(line, "URI").map(str::to_owned);
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt_ms = DateTime::parse_from_rfc3339(v)
                .ok()
                .map(|t| t.timestamp_millis());
        } else if line.starts_with("#EXT-X-PART:") {
            let m = msn.unwrap_or(0);
            let duration_us = attr(line, "DURATION").and_then(seconds_us).unwrap_or(0);
            offset_us += duration_us;
            pl.parts.push(Media {
                msn: m,
                index: part_index,
                uri: attr(line, "URI").unwrap_or_default().to_owned(),
                duration_us,
                end_unix_ms: end_of(pdt_ms, offset_us),
            });
            part_index += 1;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            extinf = seconds_us(v.split(',').next().unwrap_or(v));
        } else if !line.is_empty() && !line.starts_with('#') {
            let m = msn.unwrap_or(0);
            let duration_us = extinf.take().unwrap_or(0);
            pl.segments.push(Media {
                msn: m,
                index: WHOLE,
                uri: line.to_owned(),
                duration_us,
                end_unix_ms: end_of(pdt_ms, duration_us),
            });
            msn = Some(m + 1);
            // The next segment starts where this one ends (its own PDT, when listed, wins).
            pdt_ms = end_of(pdt_ms, duration_us);
            offset_us = 0;
            part_index = 0;
        }
    }
    pl.next_msn = msn.unwrap_or(0);
    Ok(pl)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL: &str = r#"#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:3
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,CAN-SKIP-UNTIL=6.000,CAN-SKIP-DATERANGES=YES
#EXT-X-PART-INF:PART-TARGET=0.200
#EXT-X-SKIP:SKIPPED-SEGMENTS=4
#EXT-X-MAP:URI="e0-init.mp4?v=1"
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:08.000Z
#EXTINF:1.000,
e0-00000007.m4s?v=1
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:09.000Z
#EXT-X-PART:DURATION=0.200,URI="e0-00000008.p0.m4s?v=1",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.800,URI="e0-00000008.p1.m4s?v=1"
#EXTINF:1.000,
e0-00000008.m4s?v=1
#EXT-X-DATERANGE:ID="x",START-DATE="2026-11-24T07:00:10.033Z"
#EXT-X-PART:DURATION=0.200,URI="e0-00000009.p0.m4s?v=1",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="e0-00000009.p1.m4s?v=1"
"#;

    #[test]
    fn a_delta_update_is_read_like_a_player_reads_it() {
        let pl = parse(LL).unwrap();
        assert!(pl.can_block_reload && pl.can_skip);
        assert_eq!(pl.target_duration_us, 1_000_000);
        assert_eq!(pl.part_target_us, Some(200_000));
        assert_eq!(pl.init_uri.as_deref(), Some("e0-init.mp4?v=1"));
        let segs: Vec<_> = pl.segments.iter().map(Media::key).collect();
        assert_eq!(segs, [(7, WHOLE), (8, WHOLE)]);
        let parts: Vec<_> = pl.parts.iter().map(Media::key).collect();
        assert_eq!(parts, [(8, 0), (8, 1), (9, 0)]);
        assert_eq!(pl.next_msn, 9);
        assert_eq!(pl.next_part(), (9, 1));
        // 07:00:09 + 0.2 + 0.8 s; part 0 of segment 9 ends 0.2 s after 07:00:10.
        let t9 = DateTime::parse_from_rfc3339("2026-11-24T07:00:09Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(pl.parts[1].end_unix_ms, Some(t9 + 1000));
        assert_eq!(pl.parts[2].end_unix_ms, Some(t9 + 1200));
        assert_eq!(pl.parts[2].uri, "e0-00000009.p0.m4s?v=1");
    }

    #[test]
    fn with_no_open_part_the_next_is_part_zero_of_the_next_segment() {
        let text = LL
            .lines()
            .take_while(|l| !l.starts_with("#EXT-X-DATERANGE"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(parse(&text).unwrap().next_part(), (9, 0));
        assert!(parse("<html>").is_err());
        assert_eq!(seconds_us("0.208544"), Some(208_544));
        assert_eq!(seconds_us("2"), Some(2_000_000));
        assert_eq!(seconds_us("1.5,"), Some(1_500_000));
        assert_eq!(seconds_us("-1"), None);
    }
}
