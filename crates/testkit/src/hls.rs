//! Reading hlsmark's output as a player does: the live playlist (segments, PDT, discontinuities,
//! init sections) parsed without a playlist library, and segments fetched over HTTP and joined
//! (init + fragments) into one file that ffmpeg decodes.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};

use crate::http;

/// One `#EXTINF` entry of a media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaylistSegment {
    /// Media sequence number.
    pub seq: u64,
    pub uri: String,
    /// `#EXTINF` seconds.
    pub duration: f64,
    /// `#EXT-X-PROGRAM-DATE-TIME` of this segment, if given.
    pub pdt: Option<DateTime<Utc>>,
    /// An `#EXT-X-DISCONTINUITY` precedes this segment.
    pub discontinuity: bool,
    /// The `#EXT-X-MAP` URI in force for this segment.
    pub map: Option<String>,
}

/// A media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Playlist {
    pub text: String,
    pub media_sequence: u64,
    pub segments: Vec<PlaylistSegment>,
}

impl Playlist {
    /// Parses the tags tests look at; other tags (parts, dateranges, ...) are kept in `text`.
    pub fn parse(text: &str) -> Self {
        let mut pl = Playlist {
            text: text.to_owned(),
            media_sequence: 0,
            segments: Vec::new(),
        };
        let (mut map, mut pdt, mut disc, mut dur) = (None, None, false, None);
        for line in text.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                pl.media_sequence = v.parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
                map = attr(v, "URI");
            } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                pdt = DateTime::parse_from_rfc3339(v)
                    .ok()
                    .map(|t| t.with_timezone(&Utc));
            } else if line == "#EXT-X-DISCONTINUITY" {
                disc = true;
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                dur = v.split(',').next().and_then(|d| d.parse().ok());
            } else if !line.is_empty() && !line.starts_with('#') {
                let seq = pl.media_sequence + pl.segments.len() as u64;
                pl.segments.push(PlaylistSegment {
                    seq,
                    uri: line.to_owned(),
                    duration: dur.take().unwrap_or(0.0),
                    pdt: pdt.take(),
                    discontinuity: std::mem::take(&mut disc),
                    map: map.clone(),
                });
            }
        }
        pl
    }

    pub fn discontinuities(&self) -> usize {
        self.segments.iter().filter(|s| s.discontinuity).count()
    }
}

/// The value of `KEY="..."` or `KEY=...` in an attribute list.
fn attr(list: &str, key: &str) -> Option<String> {
    let start = list.find(&format!("{key}="))? + key.len() + 1;
    let rest = &list[start..];
    if let Some(r) = rest.strip_prefix('"') {
        r.split('"').next().map(str::to_owned)
    } else {
        rest.split(',').next().map(str::to_owned)
    }
}

/// `GET /hls/{stream}/index.m3u8` parsed, or `None` until it answers 200 with a segment.
pub fn live_playlist(port: u16, stream: &str) -> Option<Playlist> {
    let r = http::get(port, &format!("/hls/{stream}/index.m3u8")).ok()?;
    if r.status != 200 {
        return None;
    }
    let pl = Playlist::parse(&r.text());
    (!pl.segments.is_empty()).then_some(pl)
}

/// Fetches `uri` (relative to `/hls/{stream}/`) and fails the test unless it answers 200.
pub fn fetch(port: u16, stream: &str, uri: &str) -> Vec<u8> {
    let path = if uri.starts_with('/') {
        uri.to_owned()
    } else {
        format!("/hls/{stream}/{uri}")
    };
    let r = http::get(port, &path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.body
}

/// The init section of the first segment followed by every segment, fetched over HTTP and written
/// to `<dir>/<name>`: one file a decoder reads as the player's buffer would hold it. All segments
/// must share one init section (one epoch).
pub fn join_segments(
    port: u16,
    stream: &str,
    segments: &[PlaylistSegment],
    dir: &Path,
    name: &str,
) -> PathBuf {
    let first = segments.first().expect("at least one segment");
    let map = first.map.as_deref().expect("an EXT-X-MAP");
    let mut bytes = fetch(port, stream, map);
    for s in segments {
        assert_eq!(s.map.as_deref(), Some(map), "segments of one init section");
        bytes.extend(fetch(port, stream, &s.uri));
    }
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write joined segments");
    path
}

/// `t + ticks` (90 kHz) as RFC 3339 rounded to the nearest millisecond, as a client computes a
/// frame's wall time from a playlist's PDT (which has milliseconds) for `POST /markers {"utc"}`.
pub fn utc_plus_90k(t: DateTime<Utc>, ticks: i64) -> String {
    // 90 kHz ticks to nanoseconds exactly: 1 tick = 100000/9 ns; then to the nearest ms.
    let ns = i128::from(ticks) * 100_000 / 9;
    let at = t + ChronoDuration::nanoseconds(i64::try_from(ns).expect("in range"));
    let ns_in_s = i64::from(at.timestamp_subsec_nanos());
    let rounded = at - ChronoDuration::nanoseconds(ns_in_s)
        + ChronoDuration::milliseconds((ns_in_s + 500_000) / 1_000_000);
    rounded.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_segments_pdt_maps_and_discontinuities() {
        let text = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:4\n\
            #EXT-X-MAP:URI=\"e0-init.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:19:02.651Z\n\
            #EXTINF:1.000000,\ne0-00000004.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"e1-init.mp4\"\n\
            #EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:19:05.000Z\n#EXTINF:0.96,\ne1-00000005.m4s\n";
        let pl = Playlist::parse(text);
        assert_eq!(pl.media_sequence, 4);
        assert_eq!(pl.segments.len(), 2);
        assert_eq!(pl.segments[0].seq, 4);
        assert_eq!(pl.segments[0].map.as_deref(), Some("e0-init.mp4"));
        assert!(!pl.segments[0].discontinuity && pl.segments[1].discontinuity);
        assert_eq!(pl.segments[1].map.as_deref(), Some("e1-init.mp4"));
        assert!((pl.segments[1].duration - 0.96).abs() < 1e-9);
        let pdt = pl.segments[0].pdt.unwrap();
        assert_eq!(utc_plus_90k(pdt, 90_000), "2026-11-24T07:19:03.651Z");
        assert_eq!(utc_plus_90k(pdt, 3003), "2026-11-24T07:19:02.684Z");
        assert_eq!(utc_plus_90k(pdt, 3060), "2026-11-24T07:19:02.685Z");
    }
}
