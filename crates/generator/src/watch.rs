//! Reads ffmpeg's private playlist to learn which segments are finished. ffmpeg lists a segment only
//! after it has closed (and, with `temp_file`, renamed) it, so a listed segment is complete.

use std::path::Path;

use hlsmark_clock::SeqNo;

/// A finished segment as ffmpeg listed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub seq: SeqNo,
    pub uri: String,
    /// EXTINF in seconds (ffmpeg prints six decimals).
    pub extinf: f32,
}

/// The listed segments and whether ffmpeg ended the list (`EXT-X-ENDLIST`: it exited cleanly).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub segments: Vec<Listed>,
    pub ended: bool,
}

/// Parses ffmpeg's playlist text; `None` if it is not (yet) a complete media playlist.
pub fn parse(text: &[u8]) -> Option<Listing> {
    let pl = m3u8_rs::parse_media_playlist_res(text).ok()?;
    let segments = pl
        .segments
        .iter()
        .zip(pl.media_sequence..)
        .map(|(s, seq)| Listed {
            seq,
            uri: s.uri.clone(),
            extinf: s.duration,
        })
        .collect();
    Some(Listing {
        segments,
        ended: pl.end_list,
    })
}

/// Reads and parses the playlist file; `None` when it does not exist yet or is unreadable.
pub fn read(path: &Path) -> Option<Listing> {
    match std::fs::read(path) {
        Ok(bytes) => parse(&bytes),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ffmpeg_fmp4_playlist() {
        let text = b"#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:5\n\
#EXT-X-MAP:URI=\"e3-init.mp4\"\n#EXTINF:1.000000,\ne3-00000005.m4s\n#EXTINF:0.366667,\ne3-00000006.m4s\n\
#EXT-X-ENDLIST\n";
        let l = parse(text).unwrap();
        assert!(l.ended);
        assert_eq!(l.segments.len(), 2);
        assert_eq!(l.segments[1].seq, 6);
        assert_eq!(l.segments[1].uri, "e3-00000006.m4s");
        assert!((l.segments[1].extinf - 0.366_667).abs() < 1e-6);
        assert!(parse(b"not a playlist").is_none());
    }
}
