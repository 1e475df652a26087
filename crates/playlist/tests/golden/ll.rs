//! Low-Latency HLS playlists: one golden text, then a table of live edges (parts complete or not,
//! open segment or not, delta updates v1/v2, a restart) checked tag by tag against RFC 8216bis.

use hlsmark_clock::{Duration90k, FrameRate, HlsTime, Part, Segment, Timeline, UtcTime};
use hlsmark_playlist::{
    Blocking, DateRange, Kind, LiveEdge, LowLatency, Skip, render, render_live_ll,
};

use super::{D, anchor, epoch, uuid_like};

/// 200 ms: six frames at 30 fps.
const PT: i64 = 18_000;

fn timeline() -> Timeline {
    Timeline::new(vec![epoch(0, 0, 0, anchor(), FrameRate::integer(30))]).unwrap()
}

fn seg(t: &Timeline, seq: u64) -> Segment {
    let hls = HlsTime(i64::try_from(seq).unwrap() * D);
    Segment {
        seq,
        epoch: 0,
        hls_start: hls,
        duration: Duration90k(D),
        utc_start: t.hls_to_utc(hls).unwrap(),
        file: format!("e0-{seq:08}.m4s"),
        init_file: Some("e0-init.mp4".to_owned()),
        frames: Default::default(),
    }
}

/// The first `n` parts of segment `seq`: five of 200 ms each; part 0 starts with the GOP's
/// keyframe, and segment 9 has a scene-cut keyframe at its part 3.
fn parts(seq: u64, n: u32) -> Vec<Part> {
    (0..n)
        .map(|i| Part {
            seq,
            index: i,
            epoch: 0,
            hls_start: HlsTime(i64::try_from(seq).unwrap() * D + i64::from(i) * PT),
            duration: Duration90k(PT),
            independent: i == 0 || (seq == 9 && i == 3),
            file: Part::file_name(0, seq, i),
        })
        .collect()
}

/// Segments 0-9 complete, the parts of 6-9 kept (as the ingest keeps four), two parts of the open
/// segment 10.
fn fixture() -> (Timeline, Vec<Segment>, Vec<Part>) {
    let t = timeline();
    let segs = (0..10).map(|s| seg(&t, s)).collect();
    let mut ps: Vec<Part> = (6..10).flat_map(|s| parts(s, 5)).collect();
    ps.extend(parts(10, 2));
    (t, segs, ps)
}

fn range(n: u128, hls: i64, dur: i64, created: UtcTime) -> DateRange {
    DateRange {
        id: uuid_like(n),
        label: format!("m{n}"),
        hls: HlsTime(hls),
        utc: anchor() + Duration90k(hls),
        duration: Duration90k(dur),
        created,
        style: Default::default(),
    }
}

/// 1: in seq 1; 2: in seq 9; 3: in the open segment's first part; 4: ended before the window
/// (slid out 0.5 s of media ago); 5: started in seq 0, still running; 6: long gone.
fn ranges() -> Vec<DateRange> {
    let at = |s: i64| anchor() + Duration90k(s);
    vec![
        range(1, D + 3_000, D / 2, at(D + 3_000)),
        range(2, 9 * D + 6_000, 0, at(9 * D + 6_000)),
        range(3, 10 * D + 3_000, D, at(10 * D + 3_000)),
        range(4, -D, D / 2, at(-D)),
        range(5, D / 3, 20 * D, at(D / 3)),
        range(6, -100 * D, D, at(-100 * D)),
    ]
}

fn ll<'a>(ps: &'a [Part], skip: Skip, now: UtcTime) -> LowLatency<'a> {
    LowLatency {
        part_target: Duration90k(PT),
        parts: ps,
        skip,
        now,
        removed_dateranges: &[],
    }
}

#[test]
fn ll_live_playlist_golden() {
    let (t, segs, ps) = fixture();
    let now = t.hls_to_utc(HlsTime(10 * D + 2 * PT)).unwrap();
    let text = render_live_ll(&t, &segs[7..], &ranges(), &ll(&ps, Skip::No, now)).unwrap();
    let expected = r#"#EXTM3U
#EXT-X-VERSION:6
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,CAN-SKIP-UNTIL=6.000,CAN-SKIP-DATERANGES=YES
#EXT-X-PART-INF:PART-TARGET=0.200
#EXT-X-MAP:URI="e0-init.mp4?v=92f857e26700"
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:07.000Z
#EXT-X-DATERANGE:ID="00000000-0000-4000-8000-000000000005",CLASS="hlsmark-marker",START-DATE="2026-11-24T07:00:00.333Z",DURATION=20.000,X-LABEL="m5"
#EXTINF:1.000,
e0-00000007.m4s?v=92f857e26700
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:08.000Z
#EXTINF:1.000,
e0-00000008.m4s?v=92f857e26700
#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:09.000Z
#EXT-X-DATERANGE:ID="00000000-0000-4000-8000-000000000002",CLASS="hlsmark-marker",START-DATE="2026-11-24T07:00:09.067Z",DURATION=0.000,X-LABEL="m2"
#EXT-X-PART:DURATION=0.200,URI="e0-00000009.p0.m4s?v=92f857e26700",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.200,URI="e0-00000009.p1.m4s?v=92f857e26700"
#EXT-X-PART:DURATION=0.200,URI="e0-00000009.p2.m4s?v=92f857e26700"
#EXT-X-PART:DURATION=0.200,URI="e0-00000009.p3.m4s?v=92f857e26700",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.200,URI="e0-00000009.p4.m4s?v=92f857e26700"
#EXTINF:1.000,
e0-00000009.m4s?v=92f857e26700
#EXT-X-DATERANGE:ID="00000000-0000-4000-8000-000000000003",CLASS="hlsmark-marker",START-DATE="2026-11-24T07:00:10.033Z",DURATION=1.000,X-LABEL="m3"
#EXT-X-PART:DURATION=0.200,URI="e0-00000010.p0.m4s?v=92f857e26700",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.200,URI="e0-00000010.p1.m4s?v=92f857e26700"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="e0-00000010.p2.m4s?v=92f857e26700"
"#;
    assert_eq!(text, expected);
}

/// One row of the table: a live edge and a request.
struct Case {
    name: &'static str,
    /// Complete segments listed.
    segs: std::ops::Range<u64>,
    /// Parts kept: (segment, how many of its parts).
    parts: &'static [(u64, u32)],
    skip: Skip,
}

const CASES: &[Case] = &[
    Case {
        name: "open segment with two parts",
        segs: 0..10,
        parts: &[(6, 5), (7, 5), (8, 5), (9, 5), (10, 2)],
        skip: Skip::No,
    },
    Case {
        name: "segment just cut: no open parts yet",
        segs: 0..10,
        parts: &[(6, 5), (7, 5), (8, 5), (9, 5)],
        skip: Skip::No,
    },
    Case {
        name: "newest segment's parts incomplete: listed without parts",
        segs: 0..10,
        parts: &[(9, 3), (10, 1)],
        skip: Skip::No,
    },
    Case {
        name: "no parts kept at all (LL just switched on)",
        segs: 0..3,
        parts: &[],
        skip: Skip::No,
    },
    Case {
        name: "delta update v1",
        segs: 0..10,
        parts: &[(9, 5), (10, 4)],
        skip: Skip::Segments,
    },
    Case {
        name: "delta update v2",
        segs: 0..10,
        parts: &[(9, 5), (10, 4)],
        skip: Skip::SegmentsAndDateRanges,
    },
    Case {
        name: "delta update of a short window skips nothing",
        segs: 4..10,
        parts: &[(9, 5), (10, 1)],
        skip: Skip::Segments,
    },
];

/// `NAME=value` of a tag's attribute list (unquoted).
fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (_, rest) = line.split_once(':')?;
    let mut rest = rest;
    while !rest.is_empty() {
        let (k, v) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = v.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].strip_prefix(',').unwrap_or(""))
        } else {
            v.split_once(',').unwrap_or((v, ""))
        };
        if k == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

fn secs(s: &str) -> f64 {
    s.parse().unwrap()
}

#[test]
fn ll_playlists_follow_the_spec_table() {
    let t = timeline();
    for case in CASES {
        let segs: Vec<Segment> = case.segs.clone().map(|s| seg(&t, s)).collect();
        let kept: Vec<Part> = case.parts.iter().flat_map(|&(s, n)| parts(s, n)).collect();
        let last = segs.last().unwrap();
        let now = t.hls_to_utc(last.hls_end() + Duration90k(PT)).unwrap();
        let marks = ranges();
        let text = render_live_ll(&t, &segs, &marks, &ll(&kept, case.skip, now)).unwrap();
        let full = render_live_ll(&t, &segs, &marks, &ll(&kept, Skip::No, now)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let name = case.name;
        let tag = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();

        // Every tag the spec requires, once.
        assert_eq!(lines[0], "#EXTM3U", "{name}");
        for once in [
            "#EXT-X-VERSION:",
            "#EXT-X-TARGETDURATION:",
            "#EXT-X-MEDIA-SEQUENCE:",
            "#EXT-X-SERVER-CONTROL:",
            "#EXT-X-PART-INF:",
            "#EXT-X-PRELOAD-HINT:",
        ] {
            assert_eq!(tag(once), 1, "{name}: {once}\n{text}");
        }
        assert_eq!(tag("#EXT-X-ENDLIST"), 0, "{name}");
        let target = secs(
            lines
                .iter()
                .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
                .unwrap(),
        );
        let control = lines
            .iter()
            .find(|l| l.starts_with("#EXT-X-SERVER-CONTROL:"))
            .unwrap();
        let part_inf = lines
            .iter()
            .find(|l| l.starts_with("#EXT-X-PART-INF:"))
            .unwrap();
        let part_target = secs(attr(part_inf, "PART-TARGET").unwrap());
        assert_eq!(attr(control, "CAN-BLOCK-RELOAD"), Some("YES"), "{name}");
        assert_eq!(attr(control, "CAN-SKIP-DATERANGES"), Some("YES"), "{name}");
        assert!(
            secs(attr(control, "PART-HOLD-BACK").unwrap()) >= 3.0 * part_target - 1e-9,
            "{name}"
        );
        assert!(
            secs(attr(control, "CAN-SKIP-UNTIL").unwrap()) >= 6.0 * target - 1e-9,
            "{name}"
        );
        // The hint is the last line and names the part after the last listed one.
        assert!(
            lines
                .last()
                .unwrap()
                .starts_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI="),
            "{name}"
        );

        // Parts: within the part target, summing to their parent, INDEPENDENT where a keyframe
        // starts them, after their parent's PDT and before its URI.
        let mut pending: Vec<(String, f64)> = Vec::new();
        let mut seen_pdt_since_uri = false;
        let mut parents_with_parts = 0;
        for (i, l) in lines.iter().enumerate() {
            if l.starts_with("#EXT-X-PROGRAM-DATE-TIME:") {
                assert!(pending.is_empty(), "{name}: PDT after a part (line {i})");
                seen_pdt_since_uri = true;
            }
            if l.starts_with("#EXT-X-MAP:") || *l == "#EXT-X-DISCONTINUITY" {
                assert!(pending.is_empty(), "{name}: {l} after a part (line {i})");
            }
            if l.starts_with("#EXT-X-PART:") {
                let uri = attr(l, "URI").unwrap();
                let d = secs(attr(l, "DURATION").unwrap());
                assert!(d <= part_target + 1e-9, "{name}: {l}");
                let file = uri.split('?').next().unwrap();
                let (_, seq, index) = Part::parse_file_name(file).unwrap();
                let p = kept
                    .iter()
                    .find(|p| p.seq == seq && p.index == index)
                    .unwrap();
                assert_eq!(
                    attr(l, "INDEPENDENT") == Some("YES"),
                    p.independent,
                    "{name}: {l}"
                );
                pending.push((file.to_owned(), d));
            }
            if l.starts_with("#EXTINF:") {
                let d = secs(l.trim_start_matches("#EXTINF:").trim_end_matches(','));
                if !pending.is_empty() {
                    let sum: f64 = pending.iter().map(|(_, d)| d).sum();
                    assert!((sum - d).abs() < 1e-6, "{name}: parts sum {sum} != {d}");
                    parents_with_parts += 1;
                    assert!(seen_pdt_since_uri, "{name}: parent without PDT");
                }
                let uri = lines[i + 1];
                for (f, _) in &pending {
                    let parent = f.split(".p").next().unwrap();
                    assert!(uri.starts_with(parent), "{name}: {f} listed before {uri}");
                }
                pending.clear();
                seen_pdt_since_uri = false;
            }
        }
        // The open segment's parts follow the last URI, contiguous from index 0.
        for (k, (f, _)) in pending.iter().enumerate() {
            let (_, seq, index) = Part::parse_file_name(f).unwrap();
            assert_eq!(
                (seq, index),
                (last.seq + 1, u32::try_from(k).unwrap()),
                "{name}"
            );
        }
        let hint = attr(lines.last().unwrap(), "URI").unwrap();
        let (_, hseq, hindex) = Part::parse_file_name(hint.split('?').next().unwrap()).unwrap();
        assert_eq!(
            (hseq, hindex),
            (last.seq + 1, u32::try_from(pending.len()).unwrap()),
            "{name}"
        );
        let complete_with_parts = case.parts.iter().any(|&(s, n)| s == last.seq && n == 5);
        assert_eq!(
            parents_with_parts,
            usize::from(complete_with_parts),
            "{name}: {text}"
        );

        // A player that ignores LL tags reads the same segments as the full playlist lists.
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
        let parsed_full = m3u8_rs::parse_media_playlist_res(full.as_bytes()).unwrap();
        assert_eq!(parsed.media_sequence, case.segs.start, "{name}");
        assert!(!parsed.end_list);

        // Delta updates: the skipped segments are the ones ending beyond the skip boundary (6 s from
        // the end), the rest is the full playlist's, version 9 (v1) or 10 (v2).
        let skip_line = lines.iter().find(|l| l.starts_with("#EXT-X-SKIP:"));
        let listed = parsed_full.segments.len();
        match case.skip {
            Skip::No => {
                assert!(skip_line.is_none(), "{name}");
                assert_eq!(tag("#EXT-X-VERSION:6"), 1, "{name}");
                assert_eq!(text, full);
                assert_eq!(parsed.segments.len(), listed);
            }
            Skip::Segments | Skip::SegmentsAndDateRanges => {
                let skip_line = skip_line.unwrap();
                let n: usize = attr(skip_line, "SKIPPED-SEGMENTS")
                    .unwrap()
                    .parse()
                    .unwrap();
                // Segments ending more than 6 s before the last one's end: all but the last seven.
                let expect = listed.saturating_sub(7);
                assert_eq!(n, expect, "{name}");
                assert_eq!(parsed.segments.len(), listed - n, "{name}");
                for (a, b) in parsed.segments.iter().zip(&parsed_full.segments[n..]) {
                    assert_eq!(a.uri, b.uri, "{name}");
                    assert_eq!(a.program_date_time, b.program_date_time, "{name}");
                }
                // The first listed segment carries its init section again.
                assert!(parsed.segments[0].map.is_some(), "{name}");
                let v2 = case.skip == Skip::SegmentsAndDateRanges;
                assert_eq!(
                    tag(if v2 {
                        "#EXT-X-VERSION:10"
                    } else {
                        "#EXT-X-VERSION:9"
                    }),
                    1
                );
                assert_eq!(
                    attr(skip_line, "RECENTLY-REMOVED-DATERANGES").is_some(),
                    v2,
                    "{name}"
                );
                // The tail after the last URI is the full playlist's.
                let tail = |s: &str| {
                    s.rsplit_once(".m4s?v=92f857e26700\n")
                        .map(|(_, t)| t.to_owned())
                };
                assert_eq!(tail(&text), tail(&full), "{name}");
            }
        }

        // Date ranges: the full playlist and a v1 delta list every range overlapping the window
        // (v1 moves the skipped segments' ones after the skip); v2 leaves out the ones that entered
        // more than the skip boundary ago and names the ones that slid out within it.
        let ids = |s: &str| -> Vec<String> {
            let mut v: Vec<String> = s
                .lines()
                .filter(|l| l.starts_with("#EXT-X-DATERANGE:"))
                .map(|l| attr(l, "ID").unwrap().to_owned())
                .collect();
            v.sort();
            v
        };
        match case.skip {
            Skip::No | Skip::Segments => assert_eq!(ids(&text), ids(&full), "{name}"),
            Skip::SegmentsAndDateRanges => {
                // now = 10.2 s; boundary 6 s: ranges entered before ~4.2 s (minus 2 targets of
                // publishing lag) are left out: m1 (1.03 s) and m5 (0.33 s); m2 and m3 stay.
                assert_eq!(ids(&text), vec![uuid_like(2), uuid_like(3)], "{name}");
                assert_eq!(
                    attr(skip_line.unwrap(), "RECENTLY-REMOVED-DATERANGES"),
                    Some(uuid_like(4).as_str()),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn v2_keeps_a_range_posted_late_for_old_media() {
    // A detector posts, at 10.2 s, a marker for 1.0 s of media: it entered the playlist now, so a
    // v2 delta must carry it even though its segment was skipped.
    let (t, segs, ps) = fixture();
    let now = t.hls_to_utc(HlsTime(10 * D + 2 * PT)).unwrap();
    let late = range(7, D, 0, now);
    let text = render_live_ll(
        &t,
        &segs,
        &[late],
        &ll(&ps, Skip::SegmentsAndDateRanges, now),
    )
    .unwrap();
    assert!(text.contains(&format!("ID=\"{}\"", uuid_like(7))), "{text}");
    // ... after the skip, before the first listed segment.
    let skip_at = text.find("#EXT-X-SKIP:").unwrap();
    let range_at = text.find("#EXT-X-DATERANGE:").unwrap();
    let first_uri = text.find("e0-00000004.m4s").unwrap();
    assert!(skip_at < range_at && range_at < first_uri, "{text}");
}

#[test]
fn deleted_ranges_are_named_in_v2_only() {
    let (t, segs, ps) = fixture();
    let now = t.hls_to_utc(HlsTime(10 * D)).unwrap();
    let deleted = vec![uuid_like(42), uuid_like(43)];
    for skip in [Skip::No, Skip::Segments, Skip::SegmentsAndDateRanges] {
        let mut l = ll(&ps, skip, now);
        l.removed_dateranges = &deleted;
        let text = render_live_ll(&t, &segs, &[], &l).unwrap();
        let named = text.contains(&format!("{}\t{}", uuid_like(42), uuid_like(43)));
        assert_eq!(
            named,
            skip == Skip::SegmentsAndDateRanges,
            "{skip:?}\n{text}"
        );
    }
}

#[test]
fn a_restart_lists_the_new_epoch_from_its_first_segment() {
    // ffmpeg restarted: epoch 1 begins at seq 10; its first parts exist but no segment record yet.
    let fps = FrameRate::integer(30);
    let mut e0 = epoch(0, 0, 0, anchor(), fps);
    e0.hls_end = Some(HlsTime(10 * D));
    let e1 = epoch(1, 10, 10 * D, anchor() + Duration90k(12 * D), fps);
    let t = Timeline::new(vec![e0, e1]).unwrap();
    let segs: Vec<Segment> = (5..10).map(|s| seg(&t, s)).collect();
    let mut ps = parts(9, 5);
    let mut new = parts(10, 2);
    for p in &mut new {
        p.epoch = 1;
        p.file = Part::file_name(1, p.seq, p.index);
    }
    ps.extend(new);
    let now = anchor() + Duration90k(12 * D);
    let text = render_live_ll(&t, &segs, &[], &ll(&ps, Skip::No, now)).unwrap();
    assert!(
        !text.contains("e1-"),
        "new epoch's parts wait for its first segment:\n{text}"
    );
    // The old epoch's hint will not be published: the server answers it 404 when it gives up.
    assert!(
        text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"e0-00000010.p0.m4s?v=92f857e26700\"\n")
    );
    // The edge the blocking reload compares with agrees: segment 9 complete, no open parts.
    let edge = LiveEdge::of(&segs, Some((&ps, Duration90k(PT)))).unwrap();
    assert_eq!((edge.msn, edge.last_parts, edge.open_parts), (9, 5, 0));
    assert_eq!(edge.blocking(10, Some(0)), Blocking::Wait);
}

#[test]
fn plain_live_playlist_is_unchanged_by_ll_code() {
    // `--part-duration 0`: the API renders with `render`, which writes no LL tag at all.
    let (t, segs, _) = fixture();
    let text = render(&t, &segs, &ranges(), Kind::Live).unwrap();
    for tag in ["PART", "SERVER-CONTROL", "PRELOAD-HINT", "SKIP"] {
        assert!(!text.contains(&format!("#EXT-X-{tag}")), "{tag}\n{text}");
    }
    assert!(text.contains("#EXT-X-VERSION:6\n"));
}

#[test]
fn longer_parts_raise_the_part_target() {
    // 24000/1001: five frames are 208.5 ms; a 200 ms request becomes the longest part.
    let (t, segs, mut ps) = fixture();
    for p in ps.iter_mut().filter(|p| p.seq == 10) {
        p.duration = Duration90k(18_769);
        p.hls_start = HlsTime(10 * D + i64::from(p.index) * 18_769);
    }
    let now = anchor();
    let text = render_live_ll(&t, &segs, &[], &ll(&ps, Skip::No, now)).unwrap();
    assert!(
        text.contains("#EXT-X-PART-INF:PART-TARGET=0.208544\n"),
        "{text}"
    );
    assert!(text.contains("PART-HOLD-BACK=0.625633,"), "{text}");
}
