//! The media crate against real ffmpeg output: sample times against ffprobe, segment cuts and
//! frame tables, `tfdt` shifting checked by ffprobe, decoding of the cut segments, and broken input.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bytes::Bytes;
use hlsmark_clock::{Duration90k, HlsTime};
use hlsmark_media::{
    CutPart, CutSegment, Fragment, FragmentReader, Init, Item, MediaError, Segmenter,
    SegmenterConfig, TrackKind,
};
use tokio::io::AsyncWriteExt;

// ---------------------------------------------------------------------------------------------
// Fixtures and probes

/// Runs ffmpeg with `args` (inputs and codec options) and hlsmark's fMP4 output flags, writing
/// the pipe output to `dir/name`.
fn fmp4(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let file = File::create(&out).unwrap();
    let res = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin"])
        .args(args)
        .args([
            "-f",
            "mp4",
            "-movflags",
            "empty_moov+default_base_moof+frag_keyframe",
            "-frag_duration",
            "200000",
            "-video_track_timescale",
            "90000",
            "-flush_packets",
            "1",
            "pipe:1",
        ])
        .stdout(file)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    out
}

/// x264 options shared by the fixtures: small, fast, keyframes forced every `key` seconds.
fn x264(key: &str) -> Vec<String> {
    [
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-sc_threshold",
        "0",
        "-force_key_frames",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([format!("expr:gte(t,n_forced*{key})")])
    .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packet {
    pts: i64,
    dts: i64,
    duration: i64,
    key: bool,
}

/// ffprobe's packets of one stream (`v:0`, `a:0`), in file order, in the stream's time base.
fn probe_packets(path: &Path, stream: &str) -> Vec<Packet> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream])
        .args(["-show_entries", "packet=pts,dts,duration,flags"])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.trim().split(',').collect();
            Packet {
                pts: f[0].parse().unwrap(),
                dts: f[1].parse().unwrap(),
                duration: f[2].parse().unwrap_or(-1),
                key: f[3].starts_with('K'),
            }
        })
        .collect()
}

/// ffprobe's decoded video frame count.
fn probe_frame_count(path: &Path) -> usize {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// ffprobe's stream duration in its time base.
fn probe_duration_ts(path: &Path, stream: &str) -> i64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream])
        .args(["-show_entries", "stream=duration_ts", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// ffprobe's stream time base of `stream` (`90000` for 1/90000).
fn probe_time_base(path: &Path, stream: &str) -> i64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream])
        .args(["-show_entries", "stream=time_base", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    let s = String::from_utf8(out.stdout).unwrap();
    s.trim().trim_start_matches("1/").parse().unwrap()
}

async fn read_all(path: &Path) -> (Init, Vec<Fragment>) {
    let f = tokio::fs::File::open(path).await.unwrap();
    read_from(FragmentReader::new(f)).await
}

async fn read_from<R: tokio::io::AsyncRead + Unpin>(
    mut r: FragmentReader<R>,
) -> (Init, Vec<Fragment>) {
    let mut init = None;
    let mut frags = Vec::new();
    while let Some(item) = r.next().await.unwrap() {
        match item {
            Item::Init(i) => {
                assert!(init.is_none(), "one init");
                init = Some(i);
            }
            Item::Fragment(f) => frags.push(f),
        }
    }
    (init.unwrap(), frags)
}

fn segment(init: &Init, frags: Vec<Fragment>, target: Duration90k) -> (Vec<CutSegment>, Segmenter) {
    let v = init.video().unwrap();
    let mut s = Segmenter::new(SegmenterConfig {
        target,
        video_track: v.id,
        video_timescale: v.timescale,
    });
    let (mut out, mut parts) = (Vec::new(), Vec::new());
    for f in frags {
        let p = s.push(f);
        parts.extend(p.part);
        out.extend(p.segment);
        parts.extend(p.opening);
    }
    let p = s.finish();
    parts.extend(p.part);
    out.extend(p.segment);
    assert_eq!(s.part_mismatches(), 0, "every segment's parts add up");
    assert_parts_make_their_segments(&out, &parts);
    (out, s)
}

/// Every test that cuts real ffmpeg output also checks its LL-HLS parts: each segment's parts
/// are numbered from 0, the first starts the segment with a keyframe, each starts where the
/// previous ended, their durations sum exactly to the segment's, and their bytes, in order, are
/// the segment's bytes.
fn assert_parts_make_their_segments(segs: &[CutSegment], parts: &[CutPart]) {
    assert_eq!(
        parts.iter().map(|p| p.segment).max().map(|m| m + 1),
        u64::try_from(segs.len()).ok().filter(|&n| n > 0),
        "parts belong to the segments"
    );
    for (i, seg) in (0u64..).zip(segs) {
        let mine: Vec<&CutPart> = parts.iter().filter(|p| p.segment == i).collect();
        assert!(!mine.is_empty(), "segment {i} has parts");
        let indexes: Vec<u32> = mine.iter().map(|p| p.index).collect();
        let want: Vec<u32> = (0..u32::try_from(mine.len()).unwrap()).collect();
        assert_eq!(indexes, want, "segment {i}: indexes from 0");
        assert_eq!(mine[0].start, seg.start, "segment {i}: part 0 starts it");
        assert!(
            mine[0].independent,
            "segment {i}: part 0 starts with a keyframe"
        );
        for w in mine.windows(2) {
            assert_eq!(
                w[0].start + w[0].duration,
                w[1].start,
                "segment {i}: contiguous"
            );
            assert!(w[0].duration.ticks() > 0, "segment {i}: no empty part");
        }
        let sum: i64 = mine.iter().map(|p| p.duration.ticks()).sum();
        assert_eq!(
            sum,
            seg.duration.ticks(),
            "segment {i}: part durations sum exactly"
        );
        let concat: Vec<u8> = mine
            .iter()
            .flat_map(|p| p.bytes.iter())
            .flatten()
            .copied()
            .collect();
        let whole: Vec<u8> = seg.bytes.iter().flatten().copied().collect();
        assert!(
            concat == whole,
            "segment {i}: parts are the segment byte for byte"
        );
    }
}

fn write_file(path: &Path, init: &Init, parts: impl IntoIterator<Item = Bytes>) {
    let mut f = File::create(path).unwrap();
    f.write_all(&init.bytes).unwrap();
    for b in parts {
        f.write_all(&b).unwrap();
    }
}

fn video_samples(init: &Init, frags: &[Fragment]) -> Vec<hlsmark_media::Sample> {
    let id = init.video().unwrap().id;
    frags
        .iter()
        .flat_map(|f| f.track_samples(id).copied())
        .collect()
}

/// Every segment's frame table holds exactly ffprobe's frame PTS in [start, end), contiguous
/// segments, and together every frame of the file.
fn assert_tables_match_ffprobe(segs: &[CutSegment], packets: &[Packet]) {
    let mut all: Vec<i64> = packets.iter().map(|p| p.pts).collect();
    all.sort_unstable();
    let mut ours = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let times: Vec<i64> = s.frames.times(s.start).map(HlsTime::ticks).collect();
        let expect: Vec<i64> = all
            .iter()
            .copied()
            .filter(|&p| p >= s.start.ticks() && p < s.end().ticks())
            .collect();
        assert_eq!(times, expect, "segment {i} frames");
        if let Some(next) = segs.get(i + 1) {
            assert_eq!(
                s.end(),
                next.start,
                "segment {i} ends where the next starts"
            );
        }
        ours.extend(times);
    }
    assert_eq!(ours, all, "all frames, in order");
}

// ---------------------------------------------------------------------------------------------
// Frame rates and cuts

#[tokio::test]
async fn cuts_25fps_into_exact_one_second_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x36:rate=25",
        "-t",
        "4",
    ];
    let x = x264("1");
    args.extend(strs(&x));
    args.extend(["-tune", "zerolatency"]);
    let path = fmp4(dir.path(), "a.mp4", &args);
    let (init, frags) = read_all(&path).await;
    let v = init.video().unwrap();
    assert_eq!(
        (v.kind, v.timescale, v.width, v.height),
        (TrackKind::Video, 90_000, 64, 36)
    );
    assert!(v.codec.starts_with("avc1."), "{}", v.codec);
    assert!(init.audio().is_none());

    let (segs, s) = segment(&init, frags, Duration90k::from_secs(1));
    assert_eq!(s.dropped_fragments(), 0);
    assert_eq!(s.dropped_frames(), 0);
    assert_eq!(segs.len(), 4);
    let steps: Vec<u32> = (0..25).map(|n| n * 3600).collect();
    for (i, seg) in segs.iter().enumerate() {
        assert_eq!(seg.start, HlsTime(90_000 * i64::try_from(i).unwrap()));
        assert_eq!(seg.duration, Duration90k(90_000), "segment {i}");
        assert_eq!(seg.frames.offsets(), &steps[..], "segment {i}");
        assert!(!seg.has_audio);
    }
    assert_tables_match_ffprobe(&segs, &probe_packets(&path, "v:0"));
}

#[tokio::test]
async fn cuts_ntsc_30000_1001_into_90090_tick_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x36:rate=30000/1001",
        "-t",
        "3",
    ];
    let x = x264("1");
    args.extend(strs(&x));
    args.extend(["-tune", "zerolatency"]);
    let path = fmp4(dir.path(), "ntsc.mp4", &args);
    let (init, frags) = read_all(&path).await;
    let (segs, _) = segment(&init, frags, Duration90k::from_secs(1));
    assert_eq!(segs.len(), 3);
    let steps: Vec<u32> = (0..30).map(|n| n * 3003).collect();
    for (i, seg) in segs.iter().enumerate() {
        assert_eq!(seg.duration, Duration90k(90_090), "segment {i}");
        assert_eq!(seg.frames.offsets(), &steps[..], "segment {i}");
    }
    assert_tables_match_ffprobe(&segs, &probe_packets(&path, "v:0"));
}

#[tokio::test]
async fn film_24000_1001_frames_sit_where_ffprobe_and_the_exact_rescale_put_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x36:rate=24000/1001",
        "-t",
        "3",
    ];
    let x = x264("1");
    args.extend(strs(&x));
    args.extend(["-bf", "0"]);
    let path = fmp4(dir.path(), "film.mp4", &args);
    let (init, frags) = read_all(&path).await;
    let ours: Vec<i64> = video_samples(&init, &frags).iter().map(|s| s.pts).collect();
    let probe: Vec<i64> = probe_packets(&path, "v:0").iter().map(|p| p.pts).collect();
    assert_eq!(ours, probe);
    // n * 3753.75 rounded to the nearest tick, halves up (all values are positive).
    let exact: Vec<i64> = (0..ours.len() as i64)
        .map(|n| (n * 375_375 + 50) / 100)
        .collect();
    assert_eq!(ours, exact);
    assert_eq!(ours.len(), 72);

    let (segs, _) = segment(&init, frags, Duration90k::from_secs(1));
    assert_tables_match_ffprobe(&segs, &probe_packets(&path, "v:0"));
    for s in &segs {
        // Whole frames: 24 or 25 of them (keyframes at the first frame with t >= n).
        assert!(matches!(s.frames.len(), 24 | 25), "{}", s.frames.len());
    }
}

#[tokio::test]
async fn variable_frame_rate_and_dropped_frames_keep_ffprobes_times() {
    let dir = tempfile::tempdir().unwrap();
    let x = x264("1");
    for (name, vf) in [
        ("dropped.mp4", "select='not(between(n,10,14))'"),
        ("vfr.mp4", "settb=1/90000,setpts='N*3000+mod(N,4)*700'"),
    ] {
        let mut args = vec![
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x36:rate=30",
            "-t",
            "3",
        ];
        args.extend([
            "-vf",
            vf,
            "-fps_mode",
            "passthrough",
            "-tune",
            "zerolatency",
        ]);
        args.extend(strs(&x));
        let path = fmp4(dir.path(), name, &args);
        let (init, frags) = read_all(&path).await;
        let probe = probe_packets(&path, "v:0");
        let ours: Vec<i64> = video_samples(&init, &frags).iter().map(|s| s.pts).collect();
        assert_eq!(
            ours,
            probe.iter().map(|p| p.pts).collect::<Vec<_>>(),
            "{name}"
        );
        let steps: std::collections::BTreeSet<i64> = ours.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            steps.len() > 1,
            "{name}: the frame intervals vary: {steps:?}"
        );
        let (segs, s) = segment(&init, frags, Duration90k::from_secs(1));
        assert!(segs.len() >= 2, "{name}");
        assert_eq!(s.dropped_frames(), 0);
        assert_tables_match_ffprobe(&segs, &probe);
    }
}

#[tokio::test]
async fn b_frames_get_their_composition_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x36:rate=25",
        "-t",
        "3",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-bf",
        "2",
        "-g",
        "25",
        "-pix_fmt",
        "yuv420p",
    ];
    let path = fmp4(dir.path(), "bframes.mp4", &args);
    let (init, frags) = read_all(&path).await;
    let samples = video_samples(&init, &frags);
    let probe = probe_packets(&path, "v:0");
    assert_eq!(samples.len(), probe.len());
    for (s, p) in samples.iter().zip(&probe) {
        assert_eq!(
            (s.pts, s.dts, i64::from(s.duration), s.keyframe),
            (p.pts, p.dts, p.duration, p.key),
            "{s:?} vs {p:?}"
        );
    }
    assert!(
        samples.iter().any(|s| s.pts != s.dts),
        "the clip has reordered frames"
    );
    assert!(
        samples.windows(2).any(|w| w[1].pts < w[0].pts),
        "decode order != display order"
    );
    let (segs, _) = segment(&init, frags, Duration90k::from_secs(1));
    assert_eq!(segs.len(), 3);
    assert_tables_match_ffprobe(&segs, &probe);
}

#[tokio::test]
async fn aac_audio_track_times_and_codec() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x36:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:sample_rate=48000",
        "-t",
        "2",
        "-c:a",
        "aac",
        "-ar",
        "48000",
        "-ac",
        "2",
        "-tune",
        "zerolatency",
    ];
    let x = x264("1");
    args.extend(strs(&x));
    let path = fmp4(dir.path(), "av.mp4", &args);
    let (init, frags) = read_all(&path).await;
    let a = init.audio().unwrap().clone();
    assert_eq!(
        (
            a.kind,
            a.timescale,
            a.codec.as_str(),
            a.sample_rate,
            a.channels
        ),
        (TrackKind::Audio, 48_000, "mp4a.40.2", 48_000, 2)
    );
    assert_eq!(probe_time_base(&path, "a:0"), 48_000);
    let ours: Vec<_> = frags
        .iter()
        .flat_map(|f| f.track_samples(a.id).copied())
        .collect();
    let probe = probe_packets(&path, "a:0");
    assert_eq!(ours.len(), probe.len());
    for (s, p) in ours.iter().zip(&probe) {
        assert_eq!((s.pts, s.dts), (p.pts, p.dts));
        assert!(s.keyframe);
    }
    // Every AAC frame is 1024 samples but the last, which ffmpeg trims to the input's end in the
    // trun (ffprobe reports the codec's frame size for it, so compare it with the stream length).
    let (last, body) = ours.split_last().unwrap();
    assert!(body.iter().all(|s| s.duration == 1024));
    assert!(
        body.iter()
            .zip(&probe)
            .all(|(s, p)| i64::from(s.duration) == p.duration)
    );
    assert_eq!(
        last.pts + i64::from(last.duration),
        probe_duration_ts(&path, "a:0")
    );
    let (segs, _) = segment(&init, frags, Duration90k::from_secs(1));
    assert_eq!(segs.len(), 2);
    assert!(segs.iter().all(|s| s.has_audio));
    assert_tables_match_ffprobe(&segs, &probe_packets(&path, "v:0"));
}

// ---------------------------------------------------------------------------------------------
// Shifting, decoding what we cut

#[tokio::test]
async fn shift_moves_tfdt_as_ffprobe_sees_it_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x36:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:sample_rate=48000",
        "-t",
        "2",
        "-c:a",
        "aac",
        "-ar",
        "48000",
        "-bf",
        "2",
    ];
    let x = x264("1");
    args.extend(strs(&x));
    let path = fmp4(dir.path(), "av.mp4", &args);
    let (init, frags) = read_all(&path).await;
    let (v, a) = (init.video().unwrap().id, init.audio().unwrap().id);
    // A second read to compare with (a clone would share the bytes).
    let (_, original) = read_all(&path).await;
    let mut shifted = frags;
    for f in &mut shifted {
        // Handed out by the reader, the bytes have one owner: patched without a copy.
        assert!(f.bytes.is_unique());
        let before = f.bytes.as_ptr();
        f.shift(v, 900_000).unwrap(); // 10 s at 90 kHz
        f.shift(a, 480_000).unwrap(); // 10 s at 48 kHz
        assert_eq!(f.bytes.as_ptr(), before, "patched in place");
    }
    let out = dir.path().join("shifted.mp4");
    write_file(&out, &init, shifted.iter().map(|f| f.bytes.clone()));
    for (stream, delta) in [("v:0", 900_000), ("a:0", 480_000)] {
        let a = probe_packets(&path, stream);
        let b = probe_packets(&out, stream);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((x.pts + delta, x.dts + delta), (y.pts, y.dts), "{stream}");
        }
    }
    for (s, o) in shifted.iter().zip(&original) {
        for (x, y) in s.samples.iter().zip(&o.samples) {
            let d = if x.track == v { 900_000 } else { 480_000 };
            assert_eq!((x.pts - d, x.dts - d), (y.pts, y.dts));
        }
    }
    // And back: the very same bytes.
    for (f, o) in shifted.iter_mut().zip(&original) {
        f.shift(v, -900_000).unwrap();
        f.shift(a, -480_000).unwrap();
        assert_eq!(f, o);
    }
    // Below zero: refused, nothing changed.
    let mut f = original[1].clone();
    let err = f.shift(v, -1_000_000_000).unwrap_err();
    assert!(matches!(err, MediaError::ShiftOutOfRange { .. }), "{err}");
    assert_eq!(f, original[1]);
    // A track the fragment does not carry: nothing to do.
    f.shift(99, 5).unwrap();
    assert_eq!(f, original[1]);
}

#[tokio::test]
async fn init_and_segments_concatenated_decode_with_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x90:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:sample_rate=48000",
        "-t",
        "3",
        "-c:a",
        "aac",
        "-ar",
        "48000",
        "-bf",
        "2",
    ];
    let x = x264("1");
    args.extend(strs(&x));
    let path = fmp4(dir.path(), "src.mp4", &args);
    let (init, frags) = read_all(&path).await;
    let (segs, _) = segment(&init, frags, Duration90k::from_secs(1));
    assert_eq!(segs.len(), 3);
    let cat = dir.path().join("cat.mp4");
    write_file(
        &cat,
        &init,
        segs.iter().flat_map(|s| s.bytes.iter().cloned()),
    );
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(&cat)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no decode errors");
    let n = probe_frame_count(&cat);
    assert_eq!(n, probe_frame_count(&path));
    assert_eq!(n, segs.iter().map(|s| s.frames.len()).sum::<usize>());
    assert_eq!(n, 75);
    // Each segment on its own after the init decodes too (what a player fetching it does).
    for (i, s) in segs.iter().enumerate() {
        let one = dir.path().join(format!("seg{i}.mp4"));
        write_file(&one, &init, s.bytes.iter().cloned());
        assert_eq!(probe_frame_count(&one), s.frames.len(), "segment {i}");
    }
}

// ---------------------------------------------------------------------------------------------
// How bytes arrive, and broken input

#[tokio::test]
async fn a_pipe_delivering_odd_small_pieces_gives_the_same_items() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x36:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=sample_rate=48000",
        "-t",
        "1",
        "-c:a",
        "aac",
    ];
    let x = x264("0.5");
    args.extend(strs(&x));
    let path = fmp4(dir.path(), "av.mp4", &args);
    let data = std::fs::read(&path).unwrap();
    let (init, frags) = read_all(&path).await;

    let (mut w, r) = tokio::io::duplex(61);
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(13) {
            w.write_all(chunk).await.unwrap();
        }
    });
    let (init2, frags2) = read_from(FragmentReader::new(r)).await;
    writer.await.unwrap();
    assert_eq!(init, init2);
    assert_eq!(frags, frags2);
    assert!(frags2.len() > 2);
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
}

/// Reads `data` to the end, shifting and segmenting what comes out, as ingest would.
/// `Ok(fragments)` or the first error; never a panic.
async fn ingest(data: &[u8]) -> Result<usize, MediaError> {
    let mut r = FragmentReader::new(data);
    let mut seg: Option<Segmenter> = None;
    let mut n = 0;
    while let Some(item) = r.next().await? {
        match item {
            Item::Init(i) => {
                let v = i.video().map_or(1, |t| t.id);
                seg = Some(Segmenter::new(SegmenterConfig {
                    target: Duration90k::from_secs(1),
                    video_track: v,
                    video_timescale: i.video().map_or(90_000, |t| t.timescale),
                }));
            }
            Item::Fragment(mut f) => {
                n += 1;
                let _ = f.shift(1, 12345);
                let _ = f.shift(2, -3);
                let _ = f.prft();
                if let Some(s) = seg.as_mut() {
                    let _ = s.push(f);
                }
            }
        }
    }
    if let Some(s) = seg.as_mut() {
        let _ = s.finish();
    }
    Ok(n)
}

#[tokio::test]
async fn truncated_and_garbage_input_errors_and_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x36:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=sample_rate=48000",
        "-t",
        "1",
        "-c:a",
        "aac",
        "-bf",
        "2",
    ];
    let x = x264("0.5");
    args.extend(strs(&x));
    let path = fmp4(dir.path(), "av.mp4", &args);
    let data = std::fs::read(&path).unwrap();
    let whole = ingest(&data).await.unwrap();
    assert!(whole > 2);

    // Ends of top-level boxes other than a moof (which waits for its mdat): a cut there is a
    // clean, shorter stream.
    let mut boundaries = vec![0usize];
    let mut pos = 0;
    while pos + 8 <= data.len() {
        let size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &data[pos + 4..pos + 8];
        pos += size;
        if kind != b"moof" {
            boundaries.push(pos);
        }
    }
    // Every truncation inside the init and the first fragments, then a spread over the rest.
    let mut cuts: Vec<usize> = (0..4000.min(data.len())).collect();
    cuts.extend((4000..data.len()).step_by(101));
    for cut in cuts {
        let r = ingest(&data[..cut]).await;
        // The trailing mfra is skipped: a cut inside it loses nothing but is still truncated.
        if boundaries.contains(&cut) {
            assert!(r.is_ok(), "cut at box boundary {cut}: {r:?}");
        } else {
            assert!(
                matches!(r, Err(MediaError::Truncated { .. })),
                "cut at {cut}: {r:?}"
            );
        }
    }

    // Random bytes, and the real stream with bytes flipped in its boxes' headers and tables.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut errors = 0;
    for i in 0..3000 {
        let input: Vec<u8> = if i % 3 == 0 {
            let len = rng.below(4096);
            (0..len).map(|_| rng.next().to_le_bytes()[0]).collect()
        } else {
            let mut d = data.clone();
            for _ in 0..1 + rng.below(8) {
                // Mostly the init and the moofs' first bytes, where structure lives.
                let at = if rng.below(2) == 0 {
                    rng.below(2000.min(d.len()))
                } else {
                    rng.below(d.len())
                };
                d[at] = rng.next().to_le_bytes()[0];
            }
            d
        };
        if ingest(&input).await.is_err() {
            errors += 1;
        }
    }
    assert!(
        errors > 1000,
        "broken input is noticed: {errors} errors of 3000"
    );
}

#[tokio::test]
async fn oversized_and_unbounded_boxes_and_fragments_before_the_init_are_errors() {
    // A 100 MB mdat header: refused before any of it is read.
    let mut big = Vec::new();
    big.extend_from_slice(&[0, 0, 0, 0x18, b'f', b't', b'y', b'p']);
    big.extend_from_slice(b"isom\0\0\x02\0isomiso6");
    big.extend_from_slice(&100_000_000u32.to_be_bytes());
    big.extend_from_slice(b"mdat");
    let err = ingest(&big).await.unwrap_err();
    assert!(matches!(err, MediaError::BoxTooLarge { .. }), "{err}");

    let unbounded = [0, 0, 0, 0, b'm', b'd', b'a', b't', 1, 2, 3];
    let err = ingest(&unbounded).await.unwrap_err();
    assert!(matches!(err, MediaError::UnboundedBox { .. }), "{err}");

    let mut moof_first = Vec::new();
    moof_first.extend_from_slice(&[0, 0, 0, 16, b'm', b'o', b'o', b'f']);
    moof_first.extend_from_slice(&[0, 0, 0, 8, b'f', b'r', b'e', b'e']);
    let err = ingest(&moof_first).await.unwrap_err();
    assert!(
        matches!(err, MediaError::FragmentBeforeInit { .. }),
        "{err}"
    );

    // Unknown boxes anywhere at the top level are skipped; an empty stream is just empty.
    assert_eq!(ingest(&[]).await.unwrap(), 0);
    let junk = [0, 0, 0, 12, b'j', b'u', b'n', b'k', 1, 2, 3, 4];
    assert_eq!(ingest(&junk).await.unwrap(), 0);

    // After an error the reader stays failed.
    let mut r = FragmentReader::new(&unbounded[..]);
    assert!(r.next().await.is_err());
    assert!(matches!(r.next().await, Err(MediaError::Poisoned)));
}

#[tokio::test]
async fn producer_reference_times_travel_with_their_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x36:rate=25",
        "-t",
        "1",
    ];
    let x = x264("1");
    args.extend(strs(&x));
    args.extend(["-tune", "zerolatency", "-write_prft", "wallclock"]);
    let path = fmp4(dir.path(), "prft.mp4", &args);
    let (init, frags) = read_all(&path).await;
    let v = init.video().unwrap().id;
    // NTP seconds of 2020-01-01 and 2100-01-01: a wall clock, not garbage.
    let (lo, hi) = (3_786_825_600u64, 6_311_433_600u64);
    for f in &frags {
        let p = f.prft().unwrap();
        assert_eq!(p.track, v);
        let first = f.track_samples(v).next().unwrap();
        assert_eq!(i64::try_from(p.media_time).unwrap(), first.pts);
        assert!((lo..hi).contains(&(p.ntp >> 32)), "{p:?}");
        assert!(f.bytes.starts_with(&[0, 0, 0, 32, b'p', b'r', b'f', b't']));
    }
    // Carried in the segment bytes, the prft boxes do not disturb a decoder.
    let (segs, _) = segment(&init, frags, Duration90k::from_secs(1));
    let cat = dir.path().join("cat.mp4");
    write_file(
        &cat,
        &init,
        segs.iter().flat_map(|s| s.bytes.iter().cloned()),
    );
    assert_eq!(probe_frame_count(&cat), 25);
}
