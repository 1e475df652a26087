//! Clips of real ffmpeg fMP4 (B-frames, AAC) checked by ffmpeg and ffprobe: the first and last
//! shown frames by picture checksum, durations to the frame, 32- and 64-bit chunk offsets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use hlsmark_clock::HlsTime;

use super::*;

const FRAME: i64 = 3_600; // 25 fps at 90 kHz
/// Presentation time of frame 0: ffmpeg delays a B-frame stream by two frames (dts 0, pts 7200).
const P0: i64 = 2 * FRAME;

/// Presentation time of frame `n`.
fn t(n: i64) -> i64 {
    P0 + n * FRAME
}

/// 4 s of 25 fps test pattern (2 B-frames, a keyframe every second) with AAC 48 kHz, as
/// hlsmark's ingest asks ffmpeg for it: `(init, every fragment as its own segment file)`.
fn source(dir: &Path) -> (Bytes, Vec<Bytes>, std::path::PathBuf) {
    source_preset(dir, "ultrafast")
}

/// [`source`] from libx264's `preset` (ultrafast: CAVLC, no deblocking; the others CABAC, 8x8
/// transforms, weighted prediction).
fn source_preset(dir: &Path, preset: &str) -> (Bytes, Vec<Bytes>, std::path::PathBuf) {
    source_with(dir, preset, &[])
}

/// [`source_preset`] with more encoder options.
fn source_with(dir: &Path, preset: &str, more: &[&str]) -> (Bytes, Vec<Bytes>, std::path::PathBuf) {
    let path = dir.join(format!("src-{preset}{}.mp4", more.concat()));
    let res = Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-nostdin", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=160x96:rate=25")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "4", "-c:v", "libx264", "-preset", preset])
        .args([
            "-bf",
            "2",
            "-g",
            "25",
            "-keyint_min",
            "25",
            "-sc_threshold",
            "0",
        ])
        .args(more)
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-ar", "48000"])
        .args([
            "-f",
            "mp4",
            "-movflags",
            "empty_moov+default_base_moof+frag_keyframe",
        ])
        .args([
            "-frag_duration",
            "200000",
            "-video_track_timescale",
            "90000",
        ])
        .arg(&path)
        .output()
        .expect("run ffmpeg");
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let all = Bytes::from(std::fs::read(&path).unwrap());
    let mut init_end = 0;
    let mut frags = Vec::new();
    let mut frag_start = None;
    for (h, at, len) in boxes::children(&all) {
        match &h.kind.to_string()[..] {
            "ftyp" | "moov" => init_end = at + len,
            "moof" => frag_start = Some(at),
            "mdat" => {
                let s = frag_start.take().unwrap();
                frags.push(all.slice(s..at + len));
            }
            _ => {}
        }
    }
    (all.slice(..init_end), frags, path)
}

/// Every decoded video frame of `path`: (pts in seconds, picture checksum), presentation order.
fn frames(path: &Path) -> Vec<(f64, String)> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-vf", "showinfo", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    let field = |l: &str, k: &str| -> String {
        let i = l.find(k).unwrap() + k.len();
        l[i..].split_whitespace().next().unwrap().to_owned()
    };
    log.lines()
        .filter(|l| l.contains("Parsed_showinfo") && l.contains(" pts_time:"))
        .map(|l| {
            (
                field(l, "pts_time:").parse().unwrap(),
                field(l, "checksum:"),
            )
        })
        .collect()
}

fn probe(path: &Path, entries: &str) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", entries, "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "ffprobe complains: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Writes the planned clip to `path`.
fn write(path: &Path, p: &ClipPlan, segs: &[Bytes]) {
    let mut b = p.head.to_vec();
    for piece in &p.pieces {
        let s = &segs[piece.segment];
        let at = usize::try_from(piece.offset).unwrap();
        b.extend_from_slice(&s[at..at + usize::try_from(piece.len).unwrap()]);
    }
    assert_eq!(b.len() as u64, p.len);
    std::fs::write(path, b).unwrap();
}

fn make(
    dir: &Path,
    name: &str,
    from: i64,
    to: i64,
    opts: ClipOptions,
) -> (ClipPlan, Vec<(f64, String)>) {
    let (init, segs, _) = source(dir);
    let init = ClipInit::parse(init).unwrap();
    let files: Vec<&dyn ReadAt> = segs.iter().map(|s| s as &dyn ReadAt).collect();
    let segments: Vec<ClipSegment> = init
        .scan(&files)
        .unwrap()
        .into_iter()
        .map(|runs| ClipSegment { runs, end: None })
        .collect();
    let p = plan(&init, &segments, HlsTime(from), HlsTime(to), opts).unwrap();
    let path = dir.join(name);
    write(&path, &p, &segs);
    (p, frames(&path))
}

#[test]
fn the_first_shown_frame_is_the_one_at_from_and_the_clip_lasts_whole_frames() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, src) = source(dir.path());
    let all = frames(&src);
    assert_eq!(all.len(), 100);
    // Frame 38 (a B- or P-frame 13 frames after a keyframe) to frame 65 (exclusive); `from` a
    // little after frame 38 starts still shows frame 38.
    let (p, got) = make(
        dir.path(),
        "a.mp4",
        t(38) + 100,
        t(65),
        ClipOptions::default(),
    );
    assert_eq!(p.info.start, HlsTime(t(38)));
    assert_eq!(p.info.end, HlsTime(t(65)));
    assert_eq!(p.info.frames, 27);
    // Decoded from the keyframe at frame 25: 13 frames before the first shown one.
    assert!(p.info.video_samples >= 40, "{:?}", p.info);
    assert!(p.info.audio_samples > 0);
    assert!(!p.info.co64);
    let sums: Vec<&str> = got.iter().map(|f| f.1.as_str()).collect();
    let want: Vec<&str> = all[38..65].iter().map(|f| f.1.as_str()).collect();
    assert_eq!(sums, want, "the clip shows exactly frames 38..65");
    assert!(
        got[0].0.abs() < 1e-9,
        "the first shown frame is at 0: {:?}",
        got[0]
    );
    let path = dir.path().join("a.mp4");
    assert_eq!(probe(&path, "format=duration"), "1.080000");
    let streams = probe(&path, "stream=codec_type,duration");
    assert!(streams.contains("video,1.080000"), "{streams}");
    assert!(streams.contains("audio,1.080000"), "{streams}");
    // faststart: moov before mdat.
    let head = std::fs::read(&path).unwrap();
    let kinds: Vec<String> = boxes::children(&head)
        .map(|(h, _, _)| h.kind.to_string())
        .collect();
    assert_eq!(kinds, ["ftyp", "moov", "mdat"]);
}

#[test]
fn co64_offsets_give_the_same_pictures() {
    let dir = tempfile::tempdir().unwrap();
    let (a, fa) = make(dir.path(), "a.mp4", t(10), t(90), ClipOptions::default());
    let (b, fb) = make(
        dir.path(),
        "b.mp4",
        t(10),
        t(90),
        ClipOptions { force_co64: true },
    );
    assert!(b.info.co64 && !a.info.co64);
    assert_eq!(b.len, a.len + 4 * (a.pieces.len() as u64));
    assert_eq!(fa, fb);
    assert_eq!(fa.len(), 80);
}

#[test]
fn a_range_before_the_media_starts_at_its_first_frame_and_an_empty_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (p, got) = make(dir.path(), "a.mp4", -90_000, t(5), ClipOptions::default());
    assert_eq!(
        (p.info.start, p.info.frames, got.len()),
        (HlsTime(P0), 5, 5)
    );
    let (init, segs, _) = source(dir.path());
    let init = ClipInit::parse(init).unwrap();
    let files: Vec<&dyn ReadAt> = segs.iter().map(|s| s as &dyn ReadAt).collect();
    let segments: Vec<ClipSegment> = init
        .scan(&files)
        .unwrap()
        .into_iter()
        .map(|runs| ClipSegment { runs, end: None })
        .collect();
    let e = plan(
        &init,
        &segments,
        HlsTime(500 * FRAME),
        HlsTime(600 * FRAME),
        ClipOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ClipError::NoFrames { .. }), "{e}");
    // A truncated segment is an error, not a panic.
    let cut = segs[3].slice(..segs[3].len() - 10);
    let e = init.scan(&[&cut as &dyn ReadAt]).unwrap_err();
    assert!(matches!(e, ClipError::Invalid(_)), "{e}");
}

/// The fragments whose video starts with a keyframe (where a segment may start).
fn keyframe_starts(init: &ClipInit, frags: &[Bytes]) -> Vec<usize> {
    (0..frags.len())
        .filter(|&i| {
            let runs = init
                .scan(&[&frags[i] as &dyn ReadAt])
                .unwrap()
                .pop()
                .unwrap();
            runs.iter()
                .find(|r| r.track == 1)
                .is_some_and(|r| r.samples[0].keyframe)
        })
        .collect()
}

/// The segment of `frags` from keyframe `from` to keyframe `to` (indices into
/// [`keyframe_starts`]) and its frames as the whole segment decodes (the truth to compare with).
fn gops(
    dir: &Path,
    init_bytes: &Bytes,
    init: &ClipInit,
    frags: &[Bytes],
    from: usize,
    to: usize,
) -> (Bytes, Vec<(f64, String)>) {
    let starts = keyframe_starts(init, frags);
    assert!(starts.len() > to, "{starts:?}");
    let segment = Bytes::from(frags[starts[from]..starts[to]].concat());
    let whole = dir.join("whole.mp4");
    std::fs::write(&whole, [&init_bytes[..], &segment[..]].concat()).unwrap();
    (segment, frames(&whole))
}

/// A frame's input for a decoder ([`picture`]) decodes to exactly that frame of the segment,
/// for every frame of a segment of two GOPs with B-frames cut into parts as the ingest cuts them:
/// from the nearer keyframe, without the pictures nothing refers to.
#[test]
fn a_pictures_input_decodes_to_that_frame_from_the_nearest_keyframe_without_unreferenced_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (init_bytes, frags, _) = source(dir.path());
    let init = ClipInit::parse(init_bytes.clone()).unwrap();
    // A segment from the second keyframe to the fourth: two GOPs of 25 frames, 10 fragments.
    let (segment, truth) = gops(dir.path(), &init_bytes, &init, &frags, 1, 3);
    assert_eq!(truth.len(), 50);
    let mut skipped = 0;
    for (i, want) in truth.iter().enumerate() {
        let p = picture(&init, &segment, i).unwrap();
        let path = dir.path().join(format!("p{i}.mp4"));
        std::fs::write(&path, &p.file).unwrap();
        let got = frames(&path);
        assert_eq!(
            got.len(),
            p.samples,
            "frame {i}: nothing decoded is discarded"
        );
        assert_eq!(got[p.index].1, want.1, "frame {i}: {p:?}");
        if i >= 25 {
            // From the second keyframe (a B-frame also needs the up to 2 frames after it).
            assert!(
                p.samples <= i - 25 + 3,
                "frame {i} decodes from the second keyframe"
            );
        }
        skipped += p.skipped;
    }
    assert!(skipped > 0, "the B-frames nothing refers to are left out");
    assert!(picture(&init, &segment, 50).is_err());
}

/// A decoder kept running ([`feed_init`], one [`feed_picture`] per picture) gives every frame
/// asked for, in any order, each as soon as its fragment is in, and nothing else: the same
/// pictures as the whole segment decoded from its start. The fillers are exact: the reorder
/// depth the stream announces (libx264's b-pyramid: 2, though these frames show 1) less the
/// pictures the decoder holds that are shown after the frame, plus one for the second frame
/// thread; one fewer and the frame stays in the decoder until [`feed_filler`] pushes it out.
/// The fillers are the light grey picture, for a CAVLC stream and a CABAC one.
#[test]
fn a_decoder_kept_running_gives_each_frame_asked_for_as_soon_as_its_fragment_is_in() {
    for preset in ["ultrafast", "medium"] {
        kept_running(preset);
    }
}

fn kept_running(preset: &str) {
    use std::io::{BufRead as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let (init_bytes, frags, _) = source_preset(dir.path(), preset);
    let init = ClipInit::parse(init_bytes.clone()).unwrap();
    // Three GOPs of 25 frames.
    let (segment, truth) = gops(dir.path(), &init_bytes, &init, &frags, 0, 3);
    assert_eq!(truth.len(), 75);
    let mut child = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-threads",
            "2",
            "-nofind_stream_info",
        ])
        .args(["-copyts", "-f", "mp4", "-i", "pipe:0", "-an", "-vf"])
        .arg(format!(
            "select=eq(mod(pts\\,{FEED_STEP})\\,{FEED_TARGET}),showinfo"
        ))
        .args(["-fps_mode", "passthrough", "-f", "null", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in stderr.lines().map_while(Result::ok) {
            if l.contains("Parsed_showinfo") && l.contains(" pts:") {
                let _ = tx.send(l);
            }
        }
    });
    stdin.write_all(&feed_init(&init).unwrap()).unwrap();
    let mut base = 0;
    let mut sequence = 1;
    let mut by_held = [0usize; 3];
    // Every third frame, out of order, and some twice.
    let order: Vec<usize> = (0..truth.len())
        .map(|i| (i * 37) % truth.len())
        .filter(|i| i % 3 == 0)
        .chain([0, 74, 10])
        .collect();
    for (n, &i) in order.iter().enumerate() {
        let one_short = n % 2 == 1;
        let p = feed_picture(&init, &segment, i, sequence, base, |pushes| {
            pushes + 1 - usize::from(one_short)
        })
        .unwrap();
        sequence += 1;
        assert_eq!(p.reorder, 2, "{preset}: the depth libx264 announces");
        assert!(p.light, "{preset}: light fillers");
        assert_eq!(p.fillers, 2 - p.held + 1 - usize::from(one_short));
        by_held[p.held.min(2)] += 1;
        base = p.next_base;
        stdin.write_all(&p.fragment).unwrap();
        stdin.flush().unwrap();
        if one_short {
            assert!(
                rx.recv_timeout(std::time::Duration::from_millis(300))
                    .is_err(),
                "{preset} frame {i}: out with one filler too few ({p:?})"
            );
            let (f, next) = feed_filler(&p, sequence, base).unwrap();
            sequence += 1;
            base = next;
            stdin.write_all(&f).unwrap();
            stdin.flush().unwrap();
        }
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("frame {i}: no picture before the next fragment"));
        let field = |k: &str| {
            let at = line.find(k).unwrap() + k.len();
            line[at..].split_whitespace().next().unwrap().to_owned()
        };
        let pts: u64 = field(" pts:").parse().unwrap();
        assert_eq!(pts % FEED_STEP, FEED_TARGET, "{line}");
        assert_eq!(field("checksum:"), truth[i].1, "{preset} frame {i}: {line}");
    }
    assert!(
        by_held[0] > 0 && by_held[1] > 0,
        "frames the decoder holds nothing after, and one: {by_held:?}"
    );
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert!(
        rx.recv_timeout(std::time::Duration::from_secs(1)).is_err(),
        "only the frames asked for come out"
    );
    // Not H.264 from an IDR picture: refused, so the caller decodes as `picture` does.
    let not_h264 = Bytes::from_static(b"");
    assert!(feed_picture(&init, &not_h264, 0, 1, 0, |_| 0).is_err());
}

/// Every decoded video frame of `path` as raw 4:2:0 planes of `size` bytes in all, presentation
/// order; the decoder stops at the first error (`-err_detect explode -xerror`) and may say
/// nothing.
fn raw_frames(path: &Path, size: usize) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-nostdin", "-err_detect"])
        .args(["explode", "-xerror", "-copyts", "-i"])
        .arg(path)
        .args(["-an", "-fps_mode", "passthrough"])
        .args(["-pix_fmt", "yuv420p", "-f", "rawvideo", "-"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {log}", path.display());
    assert!(log.trim().is_empty(), "the decoder complains: {log}");
    assert_eq!(out.stdout.len() % size, 0);
    out.stdout.chunks(size).map(<[u8]>::to_vec).collect()
}

/// The light filler ([`super::filler`]) is an IDR picture a real decoder takes without a
/// complaint, for a CAVLC stream and a CABAC one alike (its own PPS): after the frames of a
/// picture, each filler decodes to a flat grey frame of the stream's size (every sample 128), and the frame asked
/// for is intact.
#[test]
fn the_light_filler_decodes_without_error_to_a_grey_frame_of_the_streams_size() {
    let dir = tempfile::tempdir().unwrap();
    let size = 160 * 96 * 3 / 2;
    for preset in ["ultrafast", "medium"] {
        let (init_bytes, frags, _) = source_preset(dir.path(), preset);
        let init = ClipInit::parse(init_bytes.clone()).unwrap();
        let (segment, _) = gops(dir.path(), &init_bytes, &init, &frags, 1, 2);
        let truth = raw_frames(&dir.path().join("whole.mp4"), size);
        assert_eq!(truth.len(), 25);
        // The keyframe itself (a closed GOP shows it first) and a B-frame after it.
        for index in [0, 5, 11] {
            let p = feed_picture(&init, &segment, index, 1, 0, |_| 3).unwrap();
            assert!(p.light, "{preset}: a light filler is written");
            assert_eq!(p.fillers, 3);
            assert!(p.filler.len() < 200, "{preset}: {} bytes", p.filler.len());
            let path = dir.path().join(format!("feed-{preset}-{index}.mp4"));
            std::fs::write(&path, [feed_init(&init).unwrap(), p.fragment].concat()).unwrap();
            let got = raw_frames(&path, size);
            assert_eq!(got.len(), p.samples + 3, "{preset} {index}");
            assert!(
                got[..p.samples].contains(&truth[index]),
                "{preset}: frame {index} among the picture's frames"
            );
            for f in &got[p.samples..] {
                assert!(f.iter().all(|&v| v == 128), "{preset}: a flat grey filler");
            }
        }
    }
}

/// A stream the light filler cannot be written for (interlaced: field or MBAFF pictures) keeps
/// copies of the keyframe as fillers, and the frame still comes out of a real decoder.
#[test]
fn an_interlaced_stream_keeps_keyframe_copies_as_fillers() {
    let dir = tempfile::tempdir().unwrap();
    let (init_bytes, frags, _) = source_with(dir.path(), "veryfast", &["-flags", "+ildct+ilme"]);
    let init = ClipInit::parse(init_bytes.clone()).unwrap();
    let (segment, _) = gops(dir.path(), &init_bytes, &init, &frags, 1, 2);
    let truth = raw_frames(&dir.path().join("whole.mp4"), 160 * 96 * 3 / 2);
    let p = feed_picture(&init, &segment, 5, 1, 0, |_| 3).unwrap();
    assert!(!p.light);
    assert!(p.filler.len() > 200, "a keyframe, not a flat picture");
    let path = dir.path().join("feed-interlaced.mp4");
    std::fs::write(&path, [feed_init(&init).unwrap(), p.fragment].concat()).unwrap();
    let got = raw_frames(&path, 160 * 96 * 3 / 2);
    assert_eq!(got.len(), p.samples + 3);
    assert!(got[..p.samples].contains(&truth[5]));
}
