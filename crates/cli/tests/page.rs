//! A web page as a source, end to end through the real binary, a real headless Chromium (Debian's
//! `chromium`) and a real ffmpeg: a page served by a tiny HTTP server in the test, whose colour
//! and big counter change every 100 ms, is streamed over HLS. Segments decode, consecutive
//! segments show different pictures, frame times are evenly spaced at the stream's rate, a posted
//! marker snaps to a decoded frame, a browser killed with `kill -9` comes back as a new epoch
//! after an EXT-X-DISCONTINUITY, and a hung page is restarted.
//!
//! One browser and one ffmpeg at a time, at 320x180 and 10 fps, to stay light on shared cores.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hlsmark_testkit::hls::{Playlist, PlaylistSegment, join_segments, live_playlist};
use hlsmark_testkit::{DecodedFrame, Hlsmark, decode_frames, require_program};

const WIDTH: u32 = 320;
const HEIGHT: u32 = 180;
const FPS: i64 = 10;
/// One frame at `FPS` in 90 kHz ticks.
const FRAME_90K: i64 = 90_000 / FPS;

/// The page: the whole background takes the next of four colours and a big counter goes up
/// every 100 ms, so any two pictures 100 ms apart differ everywhere.
const PAGE: &str = r##"<!doctype html><html><head><title>counter</title></head>
<body style="margin:0;overflow:hidden;background:#c00">
<div id="n" style="font:bold 120px monospace;color:#fff;text-align:center;line-height:180px">0</div>
<script>
let n = 0;
const colours = ["#c00", "#0a0", "#00c", "#cc0"];
setInterval(() => {
  n += 1;
  document.getElementById("n").textContent = n;
  document.body.style.background = colours[n % 4];
}, 100);
</script></body></html>"##;

/// A page that counts for 2 s, then blocks its main thread for ever (a hung page: it neither
/// repaints nor answers).
const HANGING_PAGE: &str = r##"<!doctype html><html><body style="margin:0;background:#036">
<div id="n" style="font:bold 120px monospace;color:#fff">0</div>
<script>
let n = 0;
setInterval(() => { document.getElementById("n").textContent = ++n; }, 100);
setTimeout(() => { for (;;) {} }, 2000);
</script></body></html>"##;

/// A page that opens an `alert()` after 1 s (which blocks it until answered) and counts on.
const ALERT_PAGE: &str = r##"<!doctype html><html><body style="margin:0;background:#363">
<div id="n" style="font:bold 60px monospace;color:#fff">0</div>
<script>
let n = 0;
setInterval(() => { document.getElementById("n").textContent = ++n; }, 100);
setTimeout(() => { alert("hello"); document.body.style.background = "#633"; }, 1000);
</script></body></html>"##;

/// Serves `page` for every GET on 127.0.0.1 (a thread per connection; the test ends the
/// process, the threads go with it). Returns the port and the count of page loads.
fn serve_page(page: &'static str) -> (u16, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let h = h.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut request = String::new();
                let _ = r.read_line(&mut request);
                // The headers, up to the blank line.
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                // The browser also asks for /favicon.ico, and opens connections it may never use
                // (preconnect): only page loads are counted.
                if !request.starts_with("GET ") {
                    return;
                }
                if request.contains("/missing") {
                    let body = "<html><body><h1>Not Found</h1></body></html>";
                    let _ = write!(
                        s,
                        "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    return;
                }
                if request.contains("/favicon.ico") {
                    let _ = write!(
                        s,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    return;
                }
                h.fetch_add(1, Ordering::Relaxed);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Cache-Control: no-store\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
            });
        }
    });
    (port, hits)
}

/// `hlsmark run` of `source` at 160x90, 5 fps, with `extra` flags, in `tmp`.
fn start_small_page(tmp: &Path, source: &str, extra: &[&str]) -> Hlsmark {
    let mut args = vec![
        "--source", source, "--width", "160", "--height", "90", "--fps", "5",
    ];
    args.extend_from_slice(extra);
    Hlsmark::start(bin(), &tmp.join("data"), &args, &[])
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hlsmark"))
}

/// Pids of hlsmark's children that are Chromium (the browser is started through `sh -c exec`,
/// so its pid is a direct child).
fn browser_pids(hlsmark: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == hlsmark && comm.contains("chrom") {
            out.push(pid);
        }
    }
    out
}

/// Every live process in process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // state ppid pgrp: a zombie is gone already.
        if f.first() != Some(&"Z") && f.get(2).and_then(|g| g.parse().ok()) == Some(pgid) {
            out.push(pid);
        }
    }
    out
}

/// A segment decoded alone (init + segment), as a player gets it.
fn decode(h: &Hlsmark, s: &PlaylistSegment, dir: &Path) -> Vec<DecodedFrame> {
    let name = format!("seg-{}.mp4", s.seq);
    let p = join_segments(h.port(), "live", std::slice::from_ref(s), dir, &name);
    decode_frames(&p, WIDTH, 32)
}

/// Checks one epoch's segments: each decodes, frame times step by exactly one frame at the
/// stream's rate (inside and across segments), and consecutive segments differ in picture.
/// Returns the decoded frames of each segment.
fn check_epoch(h: &Hlsmark, segs: &[PlaylistSegment], dir: &Path) -> Vec<Vec<DecodedFrame>> {
    let decoded: Vec<Vec<DecodedFrame>> = segs.iter().map(|s| decode(h, s, dir)).collect();
    let mut pts: Vec<i64> = Vec::new();
    for (s, frames) in segs.iter().zip(&decoded) {
        assert!(!frames.is_empty(), "segment {} decodes to no frame", s.seq);
        let distinct: HashSet<&str> = frames.iter().map(|f| f.checksum.as_str()).collect();
        assert!(
            distinct.len() >= 2,
            "segment {}: the page changes every 100 ms, but all {} frames are one picture",
            s.seq,
            frames.len()
        );
        let mut p: Vec<i64> = frames.iter().map(|f| f.pts_90k).collect();
        p.sort_unstable();
        pts.extend(p);
    }
    let steps: Vec<i64> = pts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        steps.iter().all(|&d| d == FRAME_90K),
        "frame times are not evenly spaced at {FPS} fps ({FRAME_90K} ticks): {steps:?}"
    );
    for (i, w) in decoded.windows(2).enumerate() {
        assert_ne!(
            w[0][0].checksum,
            w[1][0].checksum,
            "segments {} and {} start with the same picture",
            segs[i].seq,
            segs[i + 1].seq
        );
    }
    decoded
}

/// A marker posted between two frames of a page stream snaps to the frame showing at that time,
/// as on any stream: the answer names the decoded frame (segment, index, time).
fn marker_lands_on_a_decoded_frame(h: &Hlsmark, seg: &PlaylistSegment, frames: &[DecodedFrame]) {
    let mut pts: Vec<i64> = frames.iter().map(|f| f.pts_90k).collect();
    pts.sort_unstable();
    let (i, at) = (3, pts[3]);
    #[allow(clippy::cast_precision_loss)]
    let secs = (at + FRAME_90K / 2) as f64 / 90_000.0;
    let r = h.post_marker(&serde_json::json!({ "label": "on the page", "hls": secs }));
    assert_eq!(r.status, 201, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["hls_90k"].as_i64(), Some(at), "{v}");
    assert_eq!(v["frame"]["seq"].as_u64(), Some(seg.seq), "{v}");
    assert_eq!(v["frame"]["index"].as_u64(), Some(i), "{v}");
}

/// The segments of the newest epoch (after the last discontinuity).
fn newest_epoch(pl: &Playlist) -> Vec<PlaylistSegment> {
    let start = pl
        .segments
        .iter()
        .rposition(|s| s.discontinuity)
        .unwrap_or(0);
    pl.segments[start..].to_vec()
}

#[test]
fn page_source_streams_at_a_steady_rate_and_a_killed_browser_comes_back_as_a_new_epoch() {
    require_program("ffmpeg");
    require_program("chromium");
    let tmp = tempfile::tempdir().unwrap();
    let (page_port, hits) = serve_page(PAGE);
    let source = format!("page:http://127.0.0.1:{page_port}/counter.html");
    let (w, hgt, fps) = (WIDTH.to_string(), HEIGHT.to_string(), FPS.to_string());
    let h = Hlsmark::start(
        bin(),
        &tmp.path().join("data"),
        &[
            "--source",
            &source,
            "--width",
            &w,
            "--height",
            &hgt,
            "--fps",
            &fps,
            "--segment-duration",
            "1s",
            "--live-window",
            "60",
            "--preview-fps",
            "0",
        ],
        &[],
    );
    let hpid = h.pid().unwrap();

    // A cold browser on a busy 2-core machine takes a while to show its first picture.
    let pl = h.wait_until("4 segments of the page", Duration::from_secs(120), |h| {
        live_playlist(h.port(), "live").filter(|p| p.segments.len() >= 4)
    });
    assert!(
        hits.load(Ordering::Relaxed) >= 1,
        "the browser fetched the page"
    );
    assert_eq!(pl.discontinuities(), 0);
    let decoded = check_epoch(&h, &pl.segments[1..4], tmp.path());
    marker_lands_on_a_decoded_frame(&h, &pl.segments[2], &decoded[1]);
    let streams = h.json("/streams");
    assert!(
        streams.to_string().contains("\"page\""),
        "the stream's kind is page: {streams}"
    );

    // kill -9 the browser: the attempt ends, the supervisor starts a new browser and ffmpeg,
    // and the stream goes on as a new epoch after a discontinuity.
    let pids = browser_pids(hpid);
    assert_eq!(pids.len(), 1, "one browser under hlsmark: {pids:?}");
    let first = pids[0];
    let st = Command::new("kill")
        .args(["-9", &first.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let pl = h.wait_until(
        "a new epoch with 3 segments after a discontinuity",
        Duration::from_secs(120),
        |h| {
            live_playlist(h.port(), "live")
                .filter(|p| p.discontinuities() >= 1 && newest_epoch(p).len() >= 3)
        },
    );
    let log = h.log();
    assert!(
        log.contains("exited: chromium exited (signal: 9") || log.contains("DevTools pipe closed"),
        "the restart says why:\n{}",
        h.log_tail(30)
    );
    let epoch = newest_epoch(&pl);
    assert_ne!(
        epoch[0].map, pl.segments[0].map,
        "the new epoch has its own init section"
    );
    check_epoch(&h, &epoch[..3], tmp.path());
    // Every helper of the killed browser went with it (its whole process group).
    assert!(
        group_members(first).is_empty(),
        "the killed browser left processes: {:?}",
        group_members(first)
    );

    let second = browser_pids(hpid);
    assert_eq!(second.len(), 1, "one browser again: {second:?}");
    assert_ne!(second[0], first);
    h.stop(Duration::from_secs(30)).expect("hlsmark stops");
    // Stopping hlsmark ends the browser and all its helpers.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        group_members(second[0]).is_empty(),
        "the browser outlived hlsmark: {:?}",
        group_members(second[0])
    );
}

/// A page whose main thread blocks stops painting and answering: after `--stall-timeout` the
/// browser is restarted like a dead one (a new epoch after a discontinuity), with the reason.
#[test]
fn a_hung_page_is_restarted_after_the_stall_timeout() {
    require_program("ffmpeg");
    require_program("chromium");
    let tmp = tempfile::tempdir().unwrap();
    let (page_port, hits) = serve_page(HANGING_PAGE);
    let source = format!("page:http://127.0.0.1:{page_port}/");
    let h = start_small_page(
        tmp.path(),
        &source,
        &[
            "--segment-duration",
            "1s",
            "--stall-timeout",
            "3s",
            "--preview-fps",
            "0",
        ],
    );
    h.wait_until("the hang detected", Duration::from_secs(120), |h| {
        h.log()
            .contains("exited: the page hung: no picture and no answer for 3 s")
            .then_some(())
    });
    // The frames written while the page hung (the last picture, repeated) were published; the
    // next browser loads the page again and its epoch follows a discontinuity.
    h.wait_until(
        "a second epoch after the hang",
        Duration::from_secs(120),
        |h| live_playlist(h.port(), "live").filter(|p| p.discontinuities() >= 1),
    );
    assert!(
        hits.load(Ordering::Relaxed) >= 2,
        "the page was loaded again"
    );
    h.stop(Duration::from_secs(30)).expect("hlsmark stops");
}

/// The compose file's `page` service (profile `page`) builds the image variant with Chromium and
/// works: its command runs natively with its environment (the `redis` host mapped to a real
/// redis-server, `/data` to a temp dir, the page to the local test page) and publishes segments.
#[test]
fn compose_page_service_builds_the_chromium_image_and_runs() {
    use yaml_rust2::YamlLoader;
    require_program("ffmpeg");
    require_program("chromium");
    require_program("redis-server");
    let root = hlsmark_testkit::repo_root();
    let text = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let c = YamlLoader::load_from_str(&text).unwrap().remove(0);
    let svc = &c["services"]["page"];
    assert_eq!(
        svc["profiles"][0].as_str(),
        Some("page"),
        "opt-in by profile"
    );
    assert_eq!(svc["build"]["args"]["WITH_CHROMIUM"].as_str(), Some("true"));
    assert_eq!(svc["image"].as_str(), Some("hlsmark:page"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("ARG WITH_CHROMIUM=false")
            && dockerfile.contains("install -y --no-install-recommends chromium"),
        "the Dockerfile installs chromium when WITH_CHROMIUM=true"
    );

    let redis = hlsmark_testkit::RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let (page_port, _) = serve_page(PAGE);
    let cmd: Vec<&str> = svc["command"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(cmd[0], "hlsmark");
    let mut p = Command::new(bin());
    p.args(&cmd[1..])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut stream = String::new();
    for (k, v) in svc["environment"].as_hash().unwrap() {
        let (k, v) = (k.as_str().unwrap(), v.as_str().unwrap());
        let v = match k {
            "HLSMARK_STORE" => redis.url(),
            "HLSMARK_DATA_DIR" => tmp.path().to_string_lossy().into_owned(),
            "HLSMARK_SOURCE" => {
                assert!(v.contains("page:https://"), "a page source by default: {v}");
                format!("page:http://127.0.0.1:{page_port}/")
            }
            // Lighter than the service's 1280x720 on shared test machines.
            "HLSMARK_WIDTH" => "320".into(),
            "HLSMARK_HEIGHT" => "180".into(),
            _ => v.to_owned(),
        };
        if k == "HLSMARK_STREAM" {
            stream = v.clone();
        }
        p.env(k, v);
    }
    let mut child = p.spawn().unwrap();
    let dir = tmp.path().join("hls").join(&stream);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let published = loop {
        let n = std::fs::read_dir(&dir).map_or(0, |d| {
            d.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.ends_with(".m4s") && !n.contains(".p")
                })
                .count()
        });
        if n >= 2 || std::time::Instant::now() > deadline {
            break n;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the page service exited"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let st = child.wait().unwrap();
    assert!(
        published >= 2,
        "the page service published {published} segments"
    );
    assert!(
        st.success(),
        "the page service stops cleanly on SIGTERM: {st}"
    );
}

/// A JavaScript dialog blocks a page until someone answers it; hlsmark accepts it at once, so the
/// page goes on painting and is not taken for hung (no restart, no discontinuity).
#[test]
fn a_javascript_dialog_does_not_hang_the_page() {
    require_program("ffmpeg");
    require_program("chromium");
    let tmp = tempfile::tempdir().unwrap();
    let (page_port, hits) = serve_page(ALERT_PAGE);
    let source = format!("page:http://127.0.0.1:{page_port}/");
    let h = start_small_page(
        tmp.path(),
        &source,
        &[
            "--segment-duration",
            "1s",
            "--stall-timeout",
            "2s",
            "--preview-fps",
            "0",
        ],
    );
    // Live, then well past the alert (1 s) plus the stall timeout (2 s).
    h.wait_until("6 segments", Duration::from_secs(120), |h| {
        live_playlist(h.port(), "live").filter(|p| p.segments.len() >= 6)
    });
    let pl = live_playlist(h.port(), "live").unwrap();
    assert_eq!(pl.discontinuities(), 0, "{}", h.log_tail(20));
    assert!(!h.log().contains("the page hung"), "{}", h.log_tail(20));
    assert_eq!(hits.load(Ordering::Relaxed), 1, "the page was loaded once");
    // The page went on after the dialog: its background turned red-brown, so the newest
    // segment differs from the first.
    let first = decode(&h, &pl.segments[0], tmp.path());
    let last = decode(&h, pl.segments.last().unwrap(), tmp.path());
    assert_ne!(first[0].checksum, last[0].checksum);
    h.stop(Duration::from_secs(30)).expect("hlsmark stops");
}

/// A page whose server answers 404 (a wrong path) is not streamed as `live`: the stream retries
/// with "the page answered HTTP 404" as its reason (it streamed the error page without a word).
#[test]
fn a_page_that_answers_404_is_retried_with_the_status_as_its_reason() {
    require_program("ffmpeg");
    require_program("chromium");
    let tmp = tempfile::tempdir().unwrap();
    let (page_port, _) = serve_page(PAGE);
    let source = format!("page:http://127.0.0.1:{page_port}/missing.html");
    let h = start_small_page(tmp.path(), &source, &["--preview-fps", "0"]);
    let row = h.wait_until("a retrying state", Duration::from_secs(60), |h| {
        let v = h.json("/streams");
        let row = v["streams"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "live")?
            .clone();
        (row["state"] == "retrying").then_some(row)
    });
    assert!(
        row["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 404")),
        "{row}"
    );
    assert!(live_playlist(h.port(), "live").is_none_or(|p| p.segments.is_empty()));
    h.stop(Duration::from_secs(30)).expect("hlsmark stops");
}
