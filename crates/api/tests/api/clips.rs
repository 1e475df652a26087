//! Clips (`/clips/{stream}.mp4`, `/markers/{id}/clip.mp4`) of real archives: the generator's
//! (mint corner on every event, a beep with `--tone`) made by `hlsmark generate`, and a variable
//! frame rate file played by `hlsmark generate --source`, then served in-process on the same
//! store. Every clip is checked by real ffmpeg/ffprobe: the first shown frame is the marker's
//! first mint frame and the frame before it is not in the clip, durations match to the frame,
//! audio is there and starts with the video, and ffprobe reports nothing wrong.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hlsmark_api::{Api, ApiConfig};
use hlsmark_store::Store;
use hlsmark_testkit::clip::{ClipSpec, Timing, make_clip};
use hlsmark_testkit::decode::{DecodedFrame, decode_frames, probe_streams};

use crate::common::{Resp, hlsmark_bin, request};

/// Generator frame size and mint block (the decoder crops the block's interior).
const WIDTH: u32 = 640;
const BLOCK: u32 = 80;
const FRAME: i64 = 3_000; // 30 fps

/// `hlsmark generate` into `data` (embedded store), as fast as ffmpeg encodes, then exits.
fn generate(data: &Path, args: &[&str]) {
    let out = Command::new(hlsmark_bin())
        .arg("generate")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hlsmark generate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The API in-process over a finished archive.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Dropped before the runtime it needs.
    _store: Arc<dyn Store>,
    _rt: tokio::runtime::Runtime,
}

impl Server {
    fn start(data: &Path, adjust: impl FnOnce(&mut ApiConfig)) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let spec = data.join("hlsmark.redb").to_string_lossy().into_owned();
        let store = rt.block_on(hlsmark_store::open(&spec, "hlsmark")).unwrap();
        let mut cfg = crate::common::config(data, None);
        adjust(&mut cfg);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let api = Api::from_listener(listener, cfg, store.clone()).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(async move {
            let _ = api
                .run_until(async {
                    let _ = rx.await;
                })
                .await;
        });
        assert!(hlsmark_testkit::wait_for_port(
            addr.port(),
            Duration::from_secs(10)
        ));
        Self {
            addr,
            _rt: rt,
            stop: Some(tx),
            _store: store,
        }
    }

    fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, &[], b"")
    }

    /// GETs a clip, checks it is a 200 MP4 and writes it to `dir/name`.
    fn clip(&self, path: &str, dir: &Path, name: &str) -> (Resp, PathBuf) {
        let r = self.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("video/mp4"), "{path}");
        assert_eq!(
            r.header("content-length")
                .map(|v| v.parse::<usize>().unwrap()),
            Some(r.body.len())
        );
        let file = dir.join(name);
        std::fs::write(&file, &r.body).unwrap();
        (r, file)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// ffprobe and a full decode report no error at all.
fn assert_clean(path: &Path) {
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_format", "-show_streams"])
        .arg(path)
        .output()
        .unwrap();
    assert!(probe.status.success());
    assert!(
        probe.stderr.is_empty(),
        "ffprobe: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decode.status.success() && decode.stderr.is_empty(),
        "ffmpeg decode: {}",
        String::from_utf8_lossy(&decode.stderr)
    );
    // faststart: ftyp, moov, then mdat.
    let b = std::fs::read(path).unwrap();
    let kinds: Vec<&[u8]> = [0usize, 1, 2]
        .iter()
        .scan(0usize, |at, _| {
            let size = u32::from_be_bytes(b[*at..*at + 4].try_into().unwrap()) as usize;
            let kind = &b[*at + 4..*at + 8];
            *at += size.max(8);
            Some(kind)
        })
        .collect();
    assert_eq!(kinds, [&b"ftyp"[..], b"moov", b"mdat"]);
}

/// ffprobe's container duration in seconds (printed with 6 decimals).
fn duration(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The segments of the archive as one file (the epoch's init section, then every segment).
fn joined(data: &Path, dir: &Path) -> PathBuf {
    let live = data.join("hls").join("live");
    let mut names: Vec<String> = std::fs::read_dir(&live)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("e0-") && n.ends_with(".m4s") && !n.contains(".p"))
        .collect();
    names.sort();
    let mut bytes = std::fs::read(live.join("e0-init.mp4")).unwrap();
    for n in names {
        bytes.extend(std::fs::read(live.join(n)).unwrap());
    }
    let path = dir.join("joined.mp4");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn header_field(r: &Resp, key: &str) -> i64 {
    let h = r.header("x-hlsmark-clip").unwrap();
    h.split("; ")
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key} in {h}"))
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The first decoded audio sample (48 kHz, from the file's time 0) of a generator's beep at or
/// after `from_sample`: a beep is about 16 times louder than the background tone.
fn beep_onset_48k(path: &Path, from_sample: usize) -> i64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args([
            "-map", "0:a:0", "-ac", "1", "-ar", "48000", "-f", "s16le", "-",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let at = out
        .stdout
        .chunks_exact(2)
        .skip(from_sample)
        .position(|b| i16::from_le_bytes([b[0], b[1]]).unsigned_abs() > 3_000)
        .expect("a beep");
    i64::try_from(at + from_sample).unwrap()
}

fn first_mint(frames: &[DecodedFrame]) -> usize {
    frames
        .iter()
        .position(|f| f.mint)
        .expect("a mint frame in the clip")
}

#[test]
fn a_marker_clip_starts_on_the_marker_frame_with_its_audio() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(
        &data,
        &[
            "--realtime",
            "false",
            "--stop-after",
            "12s",
            "--tone",
            "--width",
            "640",
            "--height",
            "360",
            "--event-mean",
            "1500ms",
            "--event-duration",
            "1s",
        ],
    );
    let s = Server::start(&data, |_| {});
    let page = s.get("/markers?from=0&to=100").json();
    let markers = page["markers"].as_array().unwrap();
    // A marker with a second of retained video on each side.
    let m = markers
        .iter()
        .find(|m| (1.5..9.0).contains(&m["hls"].as_f64().unwrap()))
        .unwrap_or_else(|| panic!("no marker inside the archive: {page}"));
    let id = m["id"].as_str().unwrap();
    let hls_90k = m["hls_90k"].as_i64().unwrap();
    let dur_90k = m["duration_90k"].as_i64().unwrap();

    // pad=0: exactly the marker's span, its first frame the first mint one.
    let (r, exact) = s.clip(
        &format!("/markers/{id}/clip.mp4?pad=0"),
        dir.path(),
        "exact.mp4",
    );
    assert_clean(&exact);
    assert_eq!(header_field(&r, "start_90k"), hls_90k);
    assert_eq!(header_field(&r, "end_90k"), hls_90k + dur_90k);
    let frames = decode_frames(&exact, WIDTH, BLOCK);
    assert_eq!(frames.len() as i64, dur_90k / FRAME, "{frames:?}");
    assert_eq!(
        frames[0].pts_90k, 0,
        "the clip's time 0 is its first shown frame"
    );
    assert!(
        frames.iter().all(|f| f.mint),
        "every frame of the event is mint"
    );
    assert!((duration(&exact) - dur_90k as f64 / 90_000.0).abs() < 1e-6);
    assert!(r.header("content-disposition").is_none());

    // pad=1 (with audio): the marker's frame one second in, the frame before it not mint.
    let (r, padded) = s.clip(
        &format!("/markers/{id}/clip.mp4?pad=1&download=1"),
        dir.path(),
        "padded.mp4",
    );
    assert_clean(&padded);
    assert!(
        r.header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment; filename=\"live-") && d.ends_with(".mp4\"")),
        "{:?}",
        r.header("content-disposition")
    );
    let frames = decode_frames(&padded, WIDTH, BLOCK);
    let i = first_mint(&frames);
    assert_eq!(i, 30, "the marker's frame one second in");
    assert_eq!(frames[i].pts_90k, 90_000);
    assert!(
        !frames[i - 1].mint,
        "the frame before the marker's is not mint"
    );
    assert_eq!(frames.len() as i64, (dur_90k + 2 * 90_000) / FRAME);
    assert!((duration(&padded) - (dur_90k as f64 / 90_000.0 + 2.0)).abs() < 1e-6);
    let streams = probe_streams(&padded);
    assert!(
        streams
            .iter()
            .any(|s| s.kind == "audio" && s.codec == "aac"),
        "{streams:?}"
    );
    // The beep sits where it sits in the archive, relative to the marker's frame (to the
    // sample): audio is trimmed with the video.
    let src = joined(&data, dir.path());
    let beep_src = beep_onset_48k(&src, usize::try_from((hls_90k - 9_000) * 48 / 90).unwrap());
    let beep_clip = beep_onset_48k(&padded, 0);
    let in_archive = beep_src - hls_90k * 48 / 90;
    assert!(
        in_archive.abs() < 4_800,
        "the archive's first beep is this marker's: {in_archive}"
    );
    assert!(
        (beep_clip - 48_000 - in_archive).abs() <= 1,
        "beep at sample {beep_clip} of the clip, {in_archive} from the marker in the archive"
    );
    // pad=0 starts on the beep: heard from its first samples, as in the archive. Without the
    // AAC frame before it (hidden by the edit list) a decoder gave the first 4-20 ms near silent.
    let beep_exact = beep_onset_48k(&exact, 0);
    assert!(
        (beep_exact - in_archive.max(0)).abs() <= 1,
        "beep at sample {beep_exact} of the pad=0 clip, {in_archive} from the marker in the archive"
    );

    // One byte range, as a browser asks when seeking.
    let range = request(
        s.addr,
        "GET",
        &format!("/markers/{id}/clip.mp4?pad=1"),
        &[("Range", "bytes=100-1099")],
        b"",
    );
    assert_eq!(range.status, 206, "{}", range.text());
    assert_eq!(range.body, r.body[100..1100]);
    assert_eq!(
        range.header("content-range"),
        Some(format!("bytes 100-1099/{}", r.body.len()).as_str())
    );
}

#[test]
fn range_clips_are_exact_in_hls_seconds_and_utc_and_bad_requests_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate(
        &data,
        &[
            "--realtime",
            "false",
            "--stop-after",
            "8s",
            "--width",
            "640",
            "--height",
            "360",
            "--event-mean",
            "1500ms",
            "--event-duration",
            "1s",
        ],
    );
    let s = Server::start(&data, |c| c.clip_max_duration = Duration::from_secs(5));
    let src = decode_frames(joined(&data, dir.path()), WIDTH, BLOCK);

    // 2.51 s is inside frame 75 (2.5 s): the clip starts there and ends at 4 s: 45 frames.
    let (r, path) = s.clip("/clips/live.mp4?from=2.51&to=4", dir.path(), "a.mp4");
    assert_clean(&path);
    assert_eq!(header_field(&r, "start_90k"), 75 * FRAME);
    assert_eq!(header_field(&r, "frames"), 45);
    assert!((duration(&path) - 1.5).abs() < 1e-6, "{}", duration(&path));
    let got = decode_frames(&path, WIDTH, BLOCK);
    let want: Vec<&str> = src
        .iter()
        .filter(|f| (75 * FRAME..120 * FRAME).contains(&f.pts_90k))
        .map(|f| f.checksum.as_str())
        .collect();
    let sums: Vec<&str> = got.iter().map(|f| f.checksum.as_str()).collect();
    assert_eq!(sums, want, "exactly the archive's frames 75..120");
    // No tone: no audio track.
    assert!(probe_streams(&path).iter().all(|s| s.kind != "audio"));

    // By wall time: a marker's own UTC to one second later starts on its frame.
    let page = s.get("/markers?from=0&to=100").json();
    let m = &page["markers"][0];
    let utc = m["utc"].as_str().unwrap();
    let to = chrono::DateTime::parse_from_rfc3339(utc).unwrap() + chrono::Duration::seconds(1);
    let (r, path) = s.clip(
        &format!(
            "/clips/live.mp4?from={utc}&to={}",
            to.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
        dir.path(),
        "utc.mp4",
    );
    assert_eq!(
        header_field(&r, "start_90k"),
        m["hls_90k"].as_i64().unwrap()
    );
    let frames = decode_frames(&path, WIDTH, BLOCK);
    assert!(frames[0].mint, "starts on the marker's (mint) frame");

    let id = m["id"].as_str().unwrap();
    for (path, status, code) in [
        ("/clips/live.mp4?from=1", 400, "invalid_time"),
        ("/clips/live.mp4?from=x&to=2", 400, "invalid_time"),
        ("/clips/live.mp4?from=2&to=2", 400, "invalid_range"),
        ("/clips/live.mp4?from=3&to=1", 400, "invalid_range"),
        ("/clips/live.mp4?from=0&to=6", 400, "range_too_large"),
        (
            "/clips/live.mp4?from=0&to=1&download=yes",
            400,
            "invalid_parameter",
        ),
        ("/clips/live.mp4?from=0&to=1&x=1", 400, "invalid_query"),
        ("/clips/live.mp4?from=1000&to=1001", 404, "no_segments"),
        ("/clips/live.mp4?from=-5&to=-1", 404, "no_segments"),
        // Wall times before the stream: nothing of it (was 400 "to (0.000 s) must be after
        // from (0.001 s)").
        (
            "/clips/live.mp4?from=1999-01-01T00:00:00Z&to=1999-01-01T00:00:10Z",
            404,
            "no_segments",
        ),
        ("/clips/nope.mp4?from=0&to=1", 404, "unknown_stream"),
        ("/clips/bad%20name.mp4?from=0&to=1", 400, "invalid_stream"),
        ("/markers/not-a-uuid/clip.mp4", 400, "invalid_id"),
        (
            "/markers/00000000-0000-4000-8000-000000000000/clip.mp4",
            404,
            "marker_not_found",
        ),
        (
            &format!("/markers/{id}/clip.mp4?pad=-1"),
            400,
            "invalid_parameter",
        ),
        (
            &format!("/markers/{id}/clip.mp4?pad=abc"),
            400,
            "invalid_parameter",
        ),
        (
            &format!("/markers/{id}/clip.mp4?pad=61"),
            400,
            "invalid_parameter",
        ),
        (
            &format!("/markers/{id}/clip.mp4?pad=3"),
            400,
            "range_too_large",
        ),
    ] {
        let r = s.get(path);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(r.error_code(), code, "{path}");
    }
    // A range that runs past the archive is cut to it.
    let (r, _) = s.clip("/clips/live.mp4?from=6&to=9", dir.path(), "tail.mp4");
    assert_eq!(header_field(&r, "end_90k"), 8 * 90_000);
    assert_eq!(r.header("cache-control"), Some("no-cache"));
}

#[test]
fn a_variable_frame_rate_file_clip_is_frame_exact() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ClipSpec::new("vfr")
        .timing(Timing::Variable)
        .frames(100)
        .mint(40..50);
    let clip = make_clip(dir.path(), &spec);
    let data = dir.path().join("data");
    // Copied as it is (cut at its own keyframes), played once at its own pace.
    generate(
        &data,
        &[
            "--source",
            clip.path.to_str().unwrap(),
            "--loop",
            "false",
            "--video",
            "copy",
            "--preview-fps",
            "0",
        ],
    );
    let s = Server::start(&data, |_| {});
    let archive = decode_frames(joined(&data, dir.path()), spec.width, spec.block);
    let m0 = first_mint(&archive);
    assert!(m0 > 0);
    let from = archive[m0].pts_90k;
    // Ten frames of the variable rate: to = the 11th frame's time.
    let to = archive[m0 + 10].pts_90k;
    let (r, path) = s.clip(
        &format!(
            "/clips/live.mp4?from={:.6}&to={:.6}",
            from as f64 / 90_000.0,
            to as f64 / 90_000.0
        ),
        dir.path(),
        "vfr.mp4",
    );
    assert_clean(&path);
    assert_eq!(header_field(&r, "start_90k"), from);
    assert_eq!(header_field(&r, "end_90k"), to);
    let got = decode_frames(&path, spec.width, spec.block);
    assert_eq!(got.len(), 10);
    assert!(got[0].mint, "the first shown frame is the first mint one");
    let sums: Vec<&str> = got.iter().map(|f| f.checksum.as_str()).collect();
    let want: Vec<&str> = archive[m0..m0 + 10]
        .iter()
        .map(|f| f.checksum.as_str())
        .collect();
    assert_eq!(
        sums, want,
        "the archive's frames, none before the first mint one"
    );
    // Presentation times keep the variable rate.
    let offsets: Vec<i64> = got.iter().map(|f| f.pts_90k).collect();
    let want: Vec<i64> = archive[m0..m0 + 10]
        .iter()
        .map(|f| f.pts_90k - from)
        .collect();
    assert_eq!(offsets, want);
    assert!((duration(&path) - (to - from) as f64 / 90_000.0).abs() < 1e-5);
}

#[test]
fn a_clip_keeps_to_one_encoder_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Two runs of the generator on one archive: epoch 0 is [0, 4 s), epoch 1 starts at 4 s.
    for _ in 0..2 {
        generate(
            &data,
            &[
                "--realtime",
                "false",
                "--stop-after",
                "4s",
                "--width",
                "640",
                "--height",
                "360",
                "--event-mean",
                "1500ms",
                "--event-duration",
                "1s",
            ],
        );
    }
    let s = Server::start(&data, |_| {});
    let r = s.get("/clips/live.mp4?from=2&to=6");
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.error_code(), "clip_spans_restart");
    assert!(
        r.text().contains("4.000 s"),
        "names the restart: {}",
        r.text()
    );
    // Each side of the restart on its own is fine.
    let (r, _) = s.clip("/clips/live.mp4?from=2&to=4", dir.path(), "e0.mp4");
    assert_eq!(header_field(&r, "epoch"), 0);
    assert_eq!(header_field(&r, "end_90k"), 4 * 90_000);
    let (r, e1) = s.clip("/clips/live.mp4?from=4&to=6", dir.path(), "e1.mp4");
    assert_eq!(header_field(&r, "epoch"), 1);
    assert_clean(&e1);
    // A marker's clip whose padding reaches back over the restart is cut to the marker's run.
    let page = s.get("/markers?from=4&to=100").json();
    let Some(m) = page["markers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["hls"].as_f64().unwrap() < 5.0)
    else {
        // The default seed's schedule has an event at 4.33 s.
        panic!("no marker within a second after the restart: {page}");
    };
    let id = m["id"].as_str().unwrap();
    let (r, path) = s.clip(
        &format!("/markers/{id}/clip.mp4?pad=1"),
        dir.path(),
        "m.mp4",
    );
    assert_eq!(header_field(&r, "start_90k"), 4 * 90_000);
    assert_eq!(header_field(&r, "epoch"), 1);
    let frames = decode_frames(&path, WIDTH, BLOCK);
    let i = first_mint(&frames);
    assert_eq!(
        frames[i].pts_90k,
        m["hls_90k"].as_i64().unwrap() - 4 * 90_000,
        "the marker's frame where the run starts plus its offset"
    );
    assert!(!frames[i - 1].mint);
}
