//! The test infrastructure tested against the real tools it drives: clips made by ffmpeg have
//! their mint block and beep exactly where the spec says, the decoder finds them, and the RTSP
//! camera serves a clip in real time, loops it, and comes back on the same URL after a kill.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{Duration, Instant};

use hlsmark_testkit::decode::probe_streams;
use hlsmark_testkit::{ClipSpec, Container, RtspServer, Timing, decode_frames, make_clip};

fn expected_pts(spec: &ClipSpec, n: u32) -> i64 {
    let q = i64::from(n) * 4
        + match spec.timing {
            Timing::Variable => i64::from(n % 3),
            _ => 0,
        };
    let num = q * 90_000 * i64::from(spec.fps_den);
    let den = 4 * i64::from(spec.fps_num);
    let late = match spec.timing {
        Timing::VariableFrom(k) if n >= k => i64::from(n % 3) * 1001,
        _ => 0,
    };
    (num + den / 2) / den + late
}

#[test]
fn clips_have_their_frames_mint_block_and_beep_where_the_spec_says() {
    let tmp = tempfile::tempdir().unwrap();
    let specs = [
        ClipSpec::new("cfr25").audio(true),
        ClipSpec::new("ntsc").fps(30_000, 1_001).frames(90),
        ClipSpec::new("vfr").timing(Timing::Variable),
        ClipSpec::new("vfr_late").timing(Timing::VariableFrom(30)),
        ClipSpec::new("dropped").timing(Timing::Dropped(vec![20, 21, 22, 39, 44])),
        ClipSpec::new("bframes")
            .bframes(2)
            .container(Container::Mkv),
    ];
    for spec in &specs {
        let clip = make_clip(tmp.path(), spec);
        let kept: Vec<u32> = (0..spec.frames)
            .filter(|n| !matches!(&spec.timing, Timing::Dropped(d) if d.contains(n)))
            .collect();
        let want: Vec<i64> = kept.iter().map(|n| expected_pts(spec, *n)).collect();
        if spec.container == Container::Mkv {
            // Matroska keeps milliseconds: each time within half a millisecond.
            for (got, want) in clip.pts_90k().iter().zip(&want) {
                assert!((got - want).abs() <= 45, "{}: {got} vs {want}", spec.name);
            }
        } else {
            assert_eq!(clip.pts_90k(), want, "{}", spec.name);
        }
        let first_mint = kept.iter().position(|n| spec.mint.contains(n)).unwrap();
        assert_eq!(clip.first_mint_90k, clip.frames[first_mint].pts_90k);
        assert_eq!(clip.before_mint_90k, clip.frames[first_mint - 1].pts_90k);
        assert!(clip.frames[0].keyframe);
        if let Some(beep) = clip.beep_90k {
            // The beep starts on the first mint frame, to well under a millisecond.
            assert!(
                (beep - clip.first_mint_90k).abs() < 90,
                "{}: beep at {beep}, mint at {}",
                spec.name,
                clip.first_mint_90k
            );
        }
        let streams = probe_streams(&clip.path);
        assert_eq!(streams[0].codec, "h264");
        assert_eq!((streams[0].width, streams[0].height), (320, 180));
        assert_eq!(streams.len(), if spec.audio { 2 } else { 1 });
    }
    // The dropped-frame clip: frame 39 is gone, so the frame before the first mint is frame 38.
    let dropped = make_clip(tmp.path(), &specs[4]);
    assert_eq!(dropped.first_mint_90k, 40 * 3600);
    assert_eq!(dropped.before_mint_90k, 38 * 3600);
}

fn ffprobe_ok(url: &str) -> bool {
    Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-timeout",
            "3000000",
        ])
        .arg(url)
        .status()
        .unwrap()
        .success()
}

#[test]
fn rtsp_server_serves_a_clip_in_real_time_looped_and_restarts_on_the_same_url() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = make_clip(
        tmp.path(),
        &ClipSpec::new("cam").frames(50).mint(20..25).audio(true),
    );
    let mut cam = RtspServer::start(&clip.path);
    let url = cam.url();
    let streams = probe_streams(&url);
    let kinds: Vec<_> = streams.iter().map(|s| s.codec.as_str()).collect();
    assert_eq!(kinds, ["h264", "aac"], "{streams:?}");

    // 5 s of it, copied: takes real time, loops (2 s clip), the mint block every 2 s.
    let rec = tmp.path().join("rec.mkv");
    let t0 = Instant::now();
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-rtsp_transport", "tcp", "-i", &url])
        .args(["-t", "5", "-c", "copy"])
        .arg(&rec)
        .status()
        .unwrap();
    let took = t0.elapsed();
    assert!(st.success());
    assert!(
        took >= Duration::from_millis(4_500),
        "5 s of stream in {took:?}: not real time"
    );
    let frames = decode_frames(&rec, 320, 32);
    let mint: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f.mint)
        .map(|(i, _)| i)
        .collect();
    let want: Vec<usize> = [20, 70, 120]
        .iter()
        .flat_map(|s| *s..*s + 5)
        .filter(|i| *i < frames.len())
        .collect();
    assert_eq!(mint, want, "{} frames", frames.len());
    // Timestamps never go back across the loop.
    assert!(frames.windows(2).all(|w| w[1].pts_90k > w[0].pts_90k));

    cam.stop();
    assert!(!ffprobe_ok(&url), "stopped server still answers");
    cam.start_again();
    assert_eq!(cam.url(), url);
    assert!(ffprobe_ok(&url), "restarted server does not answer");
}
