//! Importing a recording into a stream's timeline, through the real binary as a user runs it:
//! `hlsmark run --source clip --loop false --pace false --start-utc T` imports a testkit clip
//! backdated by half an hour; the VOD playlist serves it with PDT = T + media time; a marker
//! posted at the first mint frame's UTC (and by HLS time) lands on that frame in the decoded
//! segments; a later live generator run on the same stream and store continues the timeline (a
//! new epoch after a gap, HLS and PDT monotonic, the import still served); an overlapping import
//! and nonsense flags are refused at start; a run with a 10 minute retention removes the import.
//!
//! Real ffmpeg, the embedded store, a free port and a temp dir per run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hlsmark_clock::{Duration90k, UtcTime};
use hlsmark_testkit::hls::{Playlist, join_segments, live_playlist, utc_plus_90k};
use hlsmark_testkit::{ClipSpec, Hlsmark, decode_frames, make_clip, require_program};
use serde_json::{Value, json};

const STREAM: &str = "rec";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hlsmark"))
}

fn state(h: &Hlsmark) -> Option<String> {
    let v = h.json("/streams");
    v["streams"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == STREAM)
        .and_then(|s| s["state"].as_str().map(str::to_owned))
}

fn vod(h: &Hlsmark, from: &str, to: &str) -> Playlist {
    let r = h.get(&format!("/hls/{STREAM}/vod.m3u8?from={from}&to={to}"));
    assert_eq!(r.status, 200, "vod {from}..{to}: {}", r.text());
    Playlist::parse(&r.text())
}

fn timeline(h: &Hlsmark) -> Value {
    h.json(&format!("/timeline?stream={STREAM}"))
}

/// `hlsmark generate ARGS` (ingest only) on `data`: exit success and stderr.
fn generate(data: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .arg("generate")
        .arg("--data-dir")
        .arg(data)
        .args(["--stream", STREAM])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_imported_recording_is_on_the_timeline_and_live_continues_after_it() {
    require_program("ffmpeg");
    let tmp = tempfile::tempdir().unwrap();
    // 60 s at 25 fps, the mint corner from 40 s.
    let clip = make_clip(
        tmp.path(),
        &ClipSpec::new("night").frames(1_500).mint(1_000..1_010),
    );
    let clip_path = clip.path.to_str().unwrap().to_owned();
    let data = tmp.path().join("data");
    let start = UtcTime::now().round_to_millis() - Duration90k::from_secs(30 * 60);
    let start_s = start.to_rfc3339_millis();
    let media = clip.duration_90k - clip.frames[0].pts_90k;
    let end_s = (start + Duration90k(media)).to_rfc3339_millis();

    // Nonsense is refused at start, with the flag in the message.
    let (ok, err) = generate(&data, &["--pace", "false"]);
    assert!(!ok && err.contains("--pace false"), "{err}");
    let (ok, err) = generate(&data, &["--source", &clip_path, "--start-utc", &start_s]);
    assert!(!ok && err.contains("--loop false"), "{err}");
    let (ok, err) = generate(
        &data,
        &[
            "--source",
            &clip_path,
            "--loop",
            "false",
            "--start-utc",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert!(!ok && err.contains("in the future"), "{err}");

    // The import.
    let t0 = Instant::now();
    let h = Hlsmark::start(
        bin(),
        &data,
        &[
            "--stream",
            STREAM,
            "--source",
            &clip_path,
            "--loop",
            "false",
            "--pace",
            "false",
            "--start-utc",
            &start_s,
            "--video",
            "copy",
            "--live-window",
            "5",
        ],
        &[],
    );
    h.wait_until("the import to end", Duration::from_secs(120), |h| {
        (state(h).as_deref() == Some("stopped")).then_some(())
    });
    eprintln!(
        "60 s of media imported in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let tl = timeline(&h);
    let e0 = &tl["epochs"][0];
    assert_eq!(e0["utc_start"], start_s.as_str(), "{tl}");
    let h0 = e0["hls_start_90k"].as_i64().unwrap();

    // The VOD playlist of the imported range: PDT = start + media time of each segment.
    let pl = vod(&h, &start_s, &end_s);
    assert!(pl.segments.len() >= 58, "{}", pl.text);
    let p0 = pl.segments[0].pdt.unwrap();
    assert_eq!(utc_plus_90k(p0, 0), start_s);
    let mut media_before = 0i64;
    for s in &pl.segments {
        assert_eq!(
            s.pdt.map(|p| utc_plus_90k(p, 0)),
            Some(utc_plus_90k(p0, media_before)),
            "segment {} in\n{}",
            s.seq,
            pl.text
        );
        media_before += (s.duration * 90_000.0).round() as i64;
    }
    assert_eq!(media_before, media, "the whole clip is listed");

    // The first mint frame, decoded from the segments a player gets.
    let offset = clip.first_mint_90k - clip.frames[0].pts_90k;
    let k = usize::try_from(offset / 90_000).unwrap();
    let around = &pl.segments[k - 1..=k + 1];
    let joined = join_segments(h.port(), STREAM, around, tmp.path(), "around.mp4");
    let frames = decode_frames(&joined, 320, 32);
    let i = frames.iter().position(|f| f.mint).expect("a mint frame");
    assert!(i > 0 && !frames[i - 1].mint);
    let mint_hls = frames[i].pts_90k;
    assert_eq!(
        mint_hls,
        h0 + offset,
        "the mint frame is where the clip has it"
    );

    // Markers into the imported range: by the frame's UTC, and by HLS time half a frame in.
    let utc = utc_plus_90k(p0, offset);
    for (body, what) in [
        (
            json!({"stream": STREAM, "label": "by utc", "utc": utc}),
            "utc",
        ),
        (
            json!({"stream": STREAM, "label": "by hls", "hls": (mint_hls + 1_800) as f64 / 90_000.0}),
            "hls",
        ),
    ] {
        let r = h.post_marker(&body);
        assert_eq!(r.status, 201, "{what}: {}", r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["hls_90k"].as_i64(), Some(mint_hls), "{what}: {v}");
        assert_eq!(
            v["frame"]["hls_90k"].as_i64(),
            Some(mint_hls),
            "{what}: {v}"
        );
        assert_eq!(v["utc"], utc.as_str(), "{what}: {v}");
    }
    let import_pl = pl;
    assert!(h.stop(Duration::from_secs(20)).is_some_and(|s| s.success()));

    // An import that would overlap the stream's media is refused before anything runs.
    let inside = (start + Duration90k::from_secs(10)).to_rfc3339_millis();
    let (ok, err) = generate(
        &data,
        &[
            "--source",
            &clip_path,
            "--loop",
            "false",
            "--pace",
            "false",
            "--start-utc",
            &inside,
        ],
    );
    assert!(
        !ok && err.contains("before the end of the stream's newest media"),
        "{err}"
    );

    // Live continues on the same stream: a new epoch after the import, after a gap.
    let live_args = [
        "--stream",
        STREAM,
        "--width",
        "320",
        "--height",
        "180",
        "--block-size",
        "32",
        "--live-window",
        "5",
    ];
    let h = Hlsmark::start(bin(), &data, &live_args, &[]);
    let pl = h.wait_until("two live segments", Duration::from_secs(60), |h| {
        let pl = live_playlist(h.port(), STREAM)?;
        let d = pl.segments.iter().position(|s| s.discontinuity)?;
        (pl.segments.len() - d >= 2).then_some(pl)
    });
    let tl = timeline(&h);
    let epochs = tl["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2, "{tl}");
    let last_import = import_pl.segments.last().unwrap();
    assert_eq!(epochs[1]["first_seq"].as_u64(), Some(last_import.seq + 1));
    assert_eq!(epochs[0]["hls_end_90k"].as_i64(), Some(h0 + media), "{tl}");
    assert!(
        epochs[1]["hls_start_90k"].as_i64().unwrap() >= h0 + media,
        "{tl}"
    );
    let live_utc = UtcTime::parse_rfc3339(epochs[1]["utc_start"].as_str().unwrap()).unwrap();
    assert!(
        live_utc - (start + Duration90k(media)) > Duration90k::from_secs(25 * 60),
        "a gap of ~29 min: {tl}"
    );
    let pdts: Vec<_> = pl.segments.iter().filter_map(|s| s.pdt).collect();
    assert!(pdts.windows(2).all(|w| w[1] > w[0]), "{}", pl.text);
    // Both runs in one VOD playlist: one discontinuity, PDT rising, the import as before.
    let now_s = UtcTime::now().to_rfc3339_millis();
    let all = vod(&h, &start_s, &now_s);
    assert_eq!(all.discontinuities(), 1, "{}", all.text);
    assert!(
        all.segments.windows(2).all(|w| w[1].pdt > w[0].pdt),
        "{}",
        all.text
    );
    let again = vod(&h, &start_s, &end_s);
    assert_eq!(
        again
            .segments
            .iter()
            .map(|s| (&s.uri, s.pdt))
            .collect::<Vec<_>>(),
        import_pl
            .segments
            .iter()
            .map(|s| (&s.uri, s.pdt))
            .collect::<Vec<_>>()
    );
    let m = h.json(&format!(
        "/markers?stream={STREAM}&from={start_s}&to={end_s}"
    ));
    let listed = m["markers"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{m}");
    assert!(
        listed
            .iter()
            .all(|v| v["hls_90k"].as_i64() == Some(mint_hls))
    );
    assert!(h.stop(Duration::from_secs(20)).is_some_and(|s| s.success()));

    // Retention by age: with 10 minutes, the half-hour-old import goes (index and disk).
    let mut args = live_args.to_vec();
    args.extend(["--retention", "10m"]);
    let h = Hlsmark::start(bin(), &data, &args, &[]);
    h.wait_until("the import to leave", Duration::from_secs(60), |h| {
        let first = timeline(h)["retained"]["first_seq"].as_u64()?;
        (first > last_import.seq).then_some(())
    });
    let dir = data.join("hls").join(STREAM);
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("e0-"))
        .collect();
    assert!(left.is_empty(), "files of the import left: {left:?}");
    assert!(h.stop(Duration::from_secs(20)).is_some_and(|s| s.success()));
}
