//! Golden playlists: a small segment index in, the exact m3u8 text out (live and VOD, with a
//! discontinuity, date-range markers and NTSC durations), plus a parse-back with m3u8-rs; the
//! Low-Latency HLS playlists in [`ll`].

#![allow(clippy::unwrap_used)] // test helpers

use hlsmark_clock::{Duration90k, Epoch, FrameRate, GenTime, HlsTime, Segment, Timeline, UtcTime};
use hlsmark_playlist::{DateRange, Kind, PlaylistError, render};

#[path = "golden/ll.rs"]
mod ll;

const D: i64 = 90_000;

fn anchor() -> UtcTime {
    UtcTime::parse_rfc3339("2026-11-24T07:00:00Z").unwrap()
}

fn epoch(index: u32, first_seq: u64, hls: i64, utc: UtcTime, fps: FrameRate) -> Epoch {
    Epoch {
        index,
        first_seq,
        hls_start: HlsTime(hls),
        gen_start: GenTime(hls),
        utc_start: utc,
        fps,
        segment_frames: 30,
        hls_end: None,
        pts_start: None,
    }
}

/// Epoch 0 from seq 0; ffmpeg died after 15 frames of seq 3; epoch 1 starts at seq 4, 1.5 s of
/// wall time later than the sequence-aligned media time would say.
fn two_epochs() -> (Timeline, Vec<Segment>) {
    let fps = FrameRate::integer(30);
    let mut e0 = epoch(0, 0, 0, anchor(), fps);
    e0.hls_end = Some(HlsTime(3 * D + D / 2));
    let e1 = epoch(1, 4, 4 * D, anchor() + Duration90k(5 * D + D / 2), fps);
    let t = Timeline::new(vec![e0, e1]).unwrap();
    let seg = |seq: u64, epoch: u32, dur: i64| {
        let hls = HlsTime(i64::try_from(seq).unwrap() * D);
        Segment {
            seq,
            epoch,
            hls_start: hls,
            duration: Duration90k(dur),
            utc_start: t.hls_to_utc(hls).unwrap(),
            file: format!("e{epoch}-{seq:08}.m4s"),
            init_file: Some(format!("e{epoch}-init.mp4")),
            frames: Default::default(),
        }
    };
    let segs = vec![
        seg(5, 1, D),
        seg(2, 0, D),
        seg(3, 0, D / 2),
        seg(4, 1, D),
        seg(2, 0, D), // a duplicate row is ignored
    ];
    (t, segs)
}

fn marker(id: u128, hls: i64, dur: i64, label: &str, t: &Timeline) -> DateRange {
    DateRange {
        id: uuid_like(id),
        label: label.to_owned(),
        hls: HlsTime(hls),
        utc: t.hls_to_utc(HlsTime(hls)).unwrap(),
        duration: Duration90k(dur),
        created: anchor(),
        style: Default::default(),
    }
}

fn uuid_like(n: u128) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

fn markers(t: &Timeline) -> Vec<DateRange> {
    vec![
        // In epoch 1, label with a quote and a newline.
        marker(3, 5 * D + 3_000 * 7, D / 2, "say \"hi\"\nnow", t),
        // 10 frames into seq 2.
        marker(1, 2 * D + 30_000, D, "goal", t),
        // Started before the window, still running into it: listed on the first segment.
        marker(2, D + D / 2, D, "long", t),
        // Entirely before the window: not listed.
        marker(4, D / 2, D / 5, "old", t),
    ]
}

#[test]
fn live_window_with_discontinuity_and_dateranges() {
    let (t, segs) = two_epochs();
    let text = render(&t, &segs, &markers(&t), Kind::Live).unwrap();
    let expected = r#"#EXTM3U
#EXT-X-VERSION:6
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:2
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-MAP:URI="e0-init.mp4?v=92f857e26700"
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:02.000Z
#EXT-X-DATERANGE:ID="00000000-0000-4000-8000-000000000002",CLASS="hlsmark-marker",START-DATE="2026-11-24T07:00:01.500Z",DURATION=1.000,X-LABEL="long"
#EXT-X-DATERANGE:ID="00000000-0000-4000-8000-000000000001",CLASS="hlsmark-marker",START-DATE="2026-11-24T07:00:02.333Z",DURATION=1.000,X-LABEL="goal"
#EXTINF:1.000,
e0-00000002.m4s?v=92f857e26700
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:03.000Z
#EXTINF:0.500,
e0-00000003.m4s?v=92f857e26700
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI="e1-init.mp4?v=92f857e9f498"
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:05.500Z
#EXTINF:1.000,
e1-00000004.m4s?v=92f857e9f498
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:06.500Z
#EXT-X-DATERANGE:ID="00000000-0000-4000-8000-000000000003",CLASS="hlsmark-marker",START-DATE="2026-11-24T07:00:06.733Z",DURATION=0.500,X-LABEL="say 'hi' now"
#EXTINF:1.000,
e1-00000005.m4s?v=92f857e9f498
"#;
    assert_eq!(text, expected);

    // m3u8-rs reads it back: same segments, discontinuity and date ranges.
    let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
    assert_eq!(parsed.media_sequence, 2);
    assert_eq!(parsed.segments.len(), 4);
    assert!(parsed.segments[2].discontinuity);
    assert!(!parsed.end_list);
    let ranges: Vec<_> = parsed
        .segments
        .iter()
        .filter_map(|s| s.daterange.as_ref())
        .map(|d| d.id.as_str())
        .collect();
    assert!(ranges.contains(&"00000000-0000-4000-8000-000000000003"));
}

#[test]
fn live_window_keeps_the_contiguous_run_at_the_live_edge() {
    let (t, mut segs) = two_epochs();
    segs.retain(|s| s.seq != 3);
    let text = render(&t, &segs, &[], Kind::Live).unwrap();
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:4\n"), "{text}");
    assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
    assert!(!text.contains("e0-"), "{text}");
    assert!(!text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
}

#[test]
fn vod_range_at_ntsc_rate_ends_and_bridges_holes() {
    let fps = FrameRate::new(30_000, 1_001).unwrap();
    let e0 = epoch(0, 0, 0, anchor(), fps);
    let t = Timeline::new(vec![e0]).unwrap();
    let seg = |seq: u64| {
        let hls = e0.segment_start(seq);
        Segment {
            seq,
            epoch: 0,
            hls_start: hls,
            duration: Duration90k(90_090),
            utc_start: t.hls_to_utc(hls).unwrap(),
            file: format!("e0-{seq:08}.m4s"),
            init_file: Some("e0-init.mp4".to_owned()),
            frames: Default::default(),
        }
    };
    let segs = vec![seg(0), seg(1), seg(3)];
    let m = marker(9, 90_090 + 3_003, 0, "frame 31", &t);
    let text = render(&t, &segs, &[m], Kind::Vod).unwrap();
    let expected = r#"#EXTM3U
#EXT-X-VERSION:6
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI="e0-init.mp4?v=92f857e26700"
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:00.000Z
#EXTINF:1.001,
e0-00000000.m4s?v=92f857e26700
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:01.001Z
#EXT-X-DATERANGE:ID="00000000-0000-4000-8000-000000000009",CLASS="hlsmark-marker",START-DATE="2026-11-24T07:00:01.034Z",DURATION=0.000,X-LABEL="frame 31"
#EXTINF:1.001,
e0-00000001.m4s?v=92f857e26700
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI="e0-init.mp4?v=92f857e26700"
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:03.003Z
#EXTINF:1.001,
e0-00000003.m4s?v=92f857e26700
#EXT-X-ENDLIST
"#;
    assert_eq!(text, expected);
    let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
    assert!(parsed.end_list);
    assert_eq!(parsed.segments.len(), 3);
}

#[test]
fn nothing_to_list_is_an_error() {
    let (t, _) = two_epochs();
    assert_eq!(
        render(&t, &[], &[], Kind::Live),
        Err(PlaylistError::NoSegments)
    );
}

mod properties {
    //! Any index the API can hand over renders into a playlist m3u8-rs parses back consistently.

    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_window_renders_and_parses_back(
            seqs in proptest::collection::btree_set(0u64..60, 1..40),
            restart_at in 1u64..60,
            marks in proptest::collection::vec((0i64..60 * D, 0i64..3 * D, "[ -~]{1,20}"), 0..8),
            vod in any::<bool>(),
        ) {
            let fps = FrameRate::new(30_000, 1_001).unwrap();
            let e0 = epoch(0, 0, 0, anchor(), fps);
            let start1 = e0.segment_start(restart_at);
            let e1 = epoch(1, restart_at, start1.ticks(), anchor() + Duration90k(start1.ticks() + D), fps);
            let t = Timeline::new(vec![e0, e1]).unwrap();
            let segs: Vec<Segment> = seqs
                .iter()
                .map(|&seq| {
                    let e = t.epoch_at_seq(seq).unwrap();
                    let hls = e.segment_start(seq);
                    Segment {
                        seq,
                        epoch: e.index,
                        hls_start: hls,
                        duration: e.segment_duration(),
                        utc_start: t.hls_to_utc(hls).unwrap(),
                        file: format!("e{}-{seq:08}.m4s", e.index),
                        init_file: Some(format!("e{}-init.mp4", e.index)),
                        frames: Default::default(),
                    }
                })
                .collect();
            let ranges: Vec<DateRange> = marks
                .iter()
                .enumerate()
                .map(|(i, (hls, dur, label))| DateRange {
                    id: uuid_like(i as u128),
                    label: label.clone(),
                    hls: HlsTime(*hls),
                    utc: t.hls_to_utc(HlsTime(*hls)).unwrap(),
                    duration: Duration90k(*dur),
                    created: anchor(),
                    style: Default::default(),
                })
                .collect();
            let kind = if vod { Kind::Vod } else { Kind::Live };
            let text = render(&t, &segs, &ranges, kind).unwrap();
            let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
            // Live lists the contiguous run at the edge; VOD lists everything.
            let last = *seqs.iter().next_back().unwrap();
            let expected: Vec<u64> = if vod {
                seqs.iter().copied().collect()
            } else {
                let mut run = vec![last];
                while let Some(&prev) = run.last() {
                    if prev > 0 && seqs.contains(&(prev - 1)) { run.push(prev - 1) } else { break }
                }
                run.reverse();
                run
            };
            prop_assert_eq!(parsed.media_sequence, expected[0]);
            prop_assert_eq!(parsed.segments.len(), expected.len());
            prop_assert_eq!(parsed.end_list, vod);
            for (s, seq) in parsed.segments.iter().zip(&expected) {
                let name = format!("-{seq:08}.m4s");
                let (file, query) = s.uri.split_once('?').unwrap_or((&s.uri, ""));
                prop_assert!(file.ends_with(&name), "{} vs {}", s.uri, name);
                prop_assert!(query.starts_with("v="), "incarnation query on {}", s.uri);
                prop_assert!(s.program_date_time.is_some());
                prop_assert!((f64::from(s.duration) - 1.001).abs() < 1e-6);
            }
            prop_assert_eq!(text.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), expected.len());
            // Each date range at most once, and only the ones overlapping the listed media.
            let first_start = t.segment_start(expected[0]).unwrap();
            let end = t.segment_start(*expected.last().unwrap()).unwrap() + Duration90k(90_090);
            for d in &ranges {
                let listed = text.matches(&format!("ID=\"{}\"", d.id)).count();
                let overlaps = d.hls < end && (d.hls >= first_start || d.hls + d.duration > first_start);
                prop_assert_eq!(listed, usize::from(overlaps), "{:?}", d);
            }
        }
    }
}

/// A real source: segments cut at the source's keyframes (2.002 s, 1.5015 s, 3 s at a nominal
/// 23.976 fps), each with its own wall time slewed towards the wall clock (+1 ms, then +0.5 ms:
/// at most 500 ppm of the duration). PDT is each segment's `utc_start`, not the epoch formula.
#[test]
fn real_source_segments_vary_and_carry_their_own_pdt() {
    let fps = FrameRate::new(24_000, 1_001).unwrap();
    let mut e0 = epoch(0, 0, 0, anchor(), fps);
    e0.segment_frames = 48;
    e0.pts_start = Some(123_456);
    let t = Timeline::new(vec![e0]).unwrap();
    let seg = |seq: u64, hls: i64, dur: i64, utc: UtcTime| Segment {
        seq,
        epoch: 0,
        hls_start: HlsTime(hls),
        duration: Duration90k(dur),
        utc_start: utc,
        file: format!("e0-{seq:08}.m4s"),
        init_file: Some("e0-init.mp4".to_owned()),
        frames: Default::default(),
    };
    let u1 = anchor() + Duration90k(180_180 + 90);
    let u2 = u1 + Duration90k(135_135 + 45);
    let segs = vec![
        seg(0, 0, 180_180, anchor()),
        seg(1, 180_180, 135_135, u1),
        seg(2, 315_315, 270_000, u2),
    ];
    let m = DateRange {
        id: uuid_like(5),
        label: "in seq 1".to_owned(),
        hls: HlsTime(180_180 + 3_754),
        utc: u1 + Duration90k(3_754),
        duration: Duration90k::ZERO,
        created: anchor(),
        style: Default::default(),
    };
    let text = render(&t, &segs, &[m], Kind::Live).unwrap();
    let expected = r#"#EXTM3U
#EXT-X-VERSION:6
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-TARGETDURATION:3
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-MAP:URI="e0-init.mp4?v=92f857e26700"
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:00.000Z
#EXTINF:2.002,
e0-00000000.m4s?v=92f857e26700
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:02.003Z
#EXT-X-DATERANGE:ID="00000000-0000-4000-8000-000000000005",CLASS="hlsmark-marker",START-DATE="2026-11-24T07:00:02.045Z",DURATION=0.000,X-LABEL="in seq 1"
#EXTINF:1.5015,
e0-00000001.m4s?v=92f857e26700
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:03.505Z
#EXTINF:3.000,
e0-00000002.m4s?v=92f857e26700
"#;
    assert_eq!(text, expected);
    let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
    assert_eq!(parsed.segments.len(), 3);
    assert_eq!(parsed.target_duration, 3);
}
