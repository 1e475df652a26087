//! Restream targets end to end: the real binary pushes a stream to a real nginx-rtmp
//! (`libnginx-mod-rtmp`, testkit `rtmp`), and a real ffprobe plays it back from there.
//!
//! Checked: the restream arrives with H.264 and AAC (silent AAC made for a stream without sound;
//! a file's own AAC copied), it comes back within 5 s of the ingest's return after nginx is
//! killed while HLS never stops, the restart counter rises, a target that refuses (a wrong
//! application: nginx closes the connection) retries with backoff and says why without touching
//! the other target, a URL that cannot work is one start-up line, and the stream key appears in no
//! log line, `/metrics`, `/streams` or other JSON answer.
//!
//! CPU: at most three ffmpeg processes at once (the stream's, one per target) plus a short
//! ffprobe; every process started here is stopped by its guard.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hlsmark_testkit::rtmp::{RtmpServer, probe_codecs};
use hlsmark_testkit::{ClipSpec, Hlsmark, make_clip, require_program};
use serde_json::Value;

const KEY: &str = "secretkey123";
const BAD_KEY: &str = "otherkey456";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hlsmark"))
}

/// The restream targets of stream `live` in `/streams`.
fn targets(h: &Hlsmark) -> Vec<Value> {
    let s = h.json("/streams");
    s["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "live"))
        .and_then(|s| s["restream"].as_array().cloned())
        .unwrap_or_default()
}

fn live_edge_90k(h: &Hlsmark) -> Option<i64> {
    let s = h.json("/streams");
    s["streams"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "live")?["live_edge_90k"]
        .as_i64()
}

/// Publishes of `key` nginx has accepted so far (its error log at `info`).
fn publishes(nginx: &RtmpServer, key: &str) -> usize {
    nginx
        .log()
        .matches(&format!("publish: name='{key}'"))
        .count()
}

/// Every answer and log this test can read, checked for the keys.
fn assert_no_key_anywhere(h: &Hlsmark) {
    let mut seen = vec![("log".to_owned(), h.log())];
    for path in [
        "/streams",
        "/metrics",
        "/timeline",
        "/timeline?stream=live",
        "/debug/timeline",
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/markers?from=0&to=100000",
    ] {
        seen.push((path.to_owned(), h.get(path).text()));
    }
    for (what, text) in seen {
        for key in [KEY, BAD_KEY] {
            assert!(
                !text.contains(key),
                "the stream key {key} shows in {what}:\n{}",
                text.lines()
                    .filter(|l| l.contains(key))
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

#[test]
fn restream_arrives_survives_an_ingest_restart_and_never_shows_the_key() {
    require_program("ffmpeg");
    let tmp = tempfile::tempdir().unwrap();
    let mut nginx = RtmpServer::start();
    let good = nginx.url("live", KEY);
    // nginx-rtmp has no application `wrongapp`: it closes the connection.
    let bad = nginx.url("wrongapp", BAD_KEY);
    let h = Hlsmark::start(
        bin(),
        &tmp.path().join("data"),
        &[
            "--source",
            "generator",
            "--width",
            "320",
            "--height",
            "180",
            "--block-size",
            "40",
            "--segment-duration",
            "1s",
            "--preview-fps",
            "0",
            "--restream",
            &good,
            "--restream",
            &bad,
        ],
        &[],
    );

    // The restream arrives: a player of the ingest sees H.264 and (silent) AAC.
    let started = Instant::now();
    h.wait_until("the good target connected", Duration::from_secs(30), |h| {
        let t = targets(h);
        (t.first()?["state"] == "connected").then_some(())
    });
    let connect_s = started.elapsed().as_secs_f64();
    let codecs = probe_codecs(&good, Duration::from_secs(15));
    assert_eq!(codecs, ["audio:aac", "video:h264"], "{}", nginx.log());
    let t = targets(&h);
    assert_eq!(t.len(), 2, "{t:?}");
    let port = nginx.port();
    assert_eq!(t[0]["target"], format!("rtmp://127.0.0.1:{port}/live/****"));
    assert_eq!(
        t[1]["target"],
        format!("rtmp://127.0.0.1:{port}/wrongapp/****")
    );

    // The refusing target retries with backoff and says why; the other one is untouched.
    let bad_state = h.wait_until(
        "the refused target retrying with a reason",
        Duration::from_secs(30),
        |h| {
            let t = targets(h);
            let b = t.get(1)?.clone();
            (b["restarts"].as_u64()? >= 2 && b["last_error"].is_string()).then_some(b)
        },
    );
    assert_ne!(bad_state["state"], "connected", "{bad_state}");
    let reason = bad_state["last_error"].as_str().unwrap().to_owned();
    assert!(!reason.is_empty(), "{bad_state}");
    let log = h.log();
    let retry_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("wrongapp/****") && l.contains("retrying in"))
        .collect();
    assert!(retry_lines.len() >= 2, "{log}");
    // Backoff: the pauses grow (1 s, 2 s, ...).
    assert!(
        retry_lines[0].contains("retrying in 1 s") && retry_lines[1].contains("retrying in 2 s"),
        "{retry_lines:?}"
    );
    assert_eq!(targets(&h)[0]["state"], "connected");

    // The ingest dies and comes back: the restream is back within 5 s of its return, the HLS
    // stream never stops, the restart counter rises.
    let restarts_before = targets(&h)[0]["restarts"].as_u64().unwrap();
    let published_before = publishes(&nginx, KEY);
    let mut edges: Vec<(Instant, i64)> = Vec::new();
    let sample = |h: &Hlsmark, edges: &mut Vec<(Instant, i64)>| {
        if let Some(e) = live_edge_90k(h) {
            edges.push((Instant::now(), e));
        }
    };
    sample(&h, &mut edges);
    // The edge when the target goes down (not the last sample of the 2 s after: from there to
    // the return is only the time nginx takes to restart, often less than a segment).
    let edge_at_kill = edges.last().map(|e| e.1);
    nginx.kill();
    let killed = Instant::now();
    while killed.elapsed() < Duration::from_secs(2) {
        sample(&h, &mut edges);
        std::thread::sleep(Duration::from_millis(200));
    }
    nginx.restart();
    let back = Instant::now();
    let edge_at_return = live_edge_90k(&h);
    let mut republished = None;
    while back.elapsed() < Duration::from_secs(15) {
        sample(&h, &mut edges);
        if republished.is_none() && publishes(&nginx, KEY) > published_before {
            republished = Some(back.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Segments keep coming after it too (sampled densely: a gap is HLS's, not the test's).
    let after = Instant::now();
    while after.elapsed() < Duration::from_secs(3) {
        sample(&h, &mut edges);
        std::thread::sleep(Duration::from_millis(200));
    }
    let republished = republished.unwrap_or_else(|| {
        panic!(
            "the restream did not come back within 15 s:\n{}\n{}",
            nginx.log(),
            h.log_tail(30)
        )
    });
    assert!(
        republished <= Duration::from_secs(5),
        "back {republished:?} after the ingest's return"
    );
    let codecs = probe_codecs(&good, Duration::from_secs(15));
    assert_eq!(codecs, ["audio:aac", "video:h264"]);
    let t0 = h.wait_until(
        "the restart counted and connected again",
        Duration::from_secs(10),
        |h| {
            let t = targets(h).first()?.clone();
            (t["state"] == "connected" && t["restarts"].as_u64()? > restarts_before).then_some(t)
        },
    );
    // HLS kept going: the live edge moved all along, no pause of more than 3 s (1 s segments).
    let gaps: Vec<f64> = edges
        .windows(2)
        .filter(|w| w[1].1 > w[0].1)
        .map(|w| w[1].0.duration_since(w[0].0).as_secs_f64())
        .collect();
    let first = edges.first().unwrap();
    let last = edges.last().unwrap();
    let advanced_s = (last.1 - first.1) as f64 / 90_000.0;
    let wall_s = last.0.duration_since(first.0).as_secs_f64();
    let mut moved_at = first.0;
    let mut worst = 0.0f64;
    let mut prev = first.1;
    for &(at, e) in &edges {
        if e > prev {
            worst = worst.max(at.duration_since(moved_at).as_secs_f64());
            moved_at = at;
            prev = e;
        }
    }
    // While the ingest was down, segments kept coming.
    let during_s = (edge_at_return.unwrap() - edge_at_kill.unwrap()) as f64 / 90_000.0;
    assert!(
        during_s >= 1.0,
        "{during_s:.1} s of media while the ingest was down 2 s"
    );
    // A loaded 2-core machine may run the generator's encoder late for a moment: 4 s, not 1 s.
    assert!(
        worst < 4.0 && advanced_s > wall_s - 4.0,
        "HLS stalled: worst {worst:.1} s without a new segment; {advanced_s:.1} s of media in {wall_s:.1} s ({gaps:?})"
    );

    // The source restarts (its ffmpeg killed: a new epoch, a new init section): the restream goes
    // on (the same init section keeps the target's ffmpeg; the media time continues).
    let epoch_of = |h: &Hlsmark| h.json("/streams")["streams"][0]["epoch"].as_u64();
    let epoch_before = epoch_of(&h).unwrap();
    let sent_before = targets(&h)[0]["seconds_sent"].as_f64().unwrap();
    let pid_file = h.data_dir().join("hls/live/.ffmpeg.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let pid = pid.split_whitespace().next().unwrap().to_owned();
    assert!(
        Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    h.wait_until("a new epoch", Duration::from_secs(20), |h| {
        (epoch_of(h)? > epoch_before).then_some(())
    });
    let t_epoch = h.wait_until(
        "the restream going on after the new epoch",
        Duration::from_secs(15),
        |h| {
            let t = targets(h).first()?.clone();
            (t["state"] == "connected" && t["seconds_sent"].as_f64()? > sent_before + 2.0)
                .then_some(t)
        },
    );
    let codecs = probe_codecs(&good, Duration::from_secs(15));
    assert_eq!(codecs, ["audio:aac", "video:h264"]);

    // State in /metrics, never the key.
    let metrics = h.get("/metrics").text();
    let up = format!(
        "hlsmark_restream_up{{stream=\"live\",target=\"rtmp://127.0.0.1:{port}/live/****\"}} 1"
    );
    assert!(metrics.contains(&up), "{metrics}");
    assert!(metrics.contains("hlsmark_restream_restarts_total{stream=\"live\""));
    assert!(t0["bytes_sent"].as_u64().unwrap() > 10_000, "{t0}");
    assert!(t0["seconds_sent"].as_f64().unwrap() > 1.0, "{t0}");
    assert_no_key_anywhere(&h);
    eprintln!(
        "RESTREAM connected after {connect_s:.1} s; back {:.2} s after the ingest returned; \
         refused target: {reason:?}; HLS worst gap {worst:.1} s; after a source restart: {t_epoch}",
        republished.as_secs_f64()
    );

    // A clean stop: the targets stop with the stream, nothing of theirs is left running.
    h.stop(Duration::from_secs(20)).expect("hlsmark stopped");
    assert_no_leftover_restream(port);
}

/// No ffmpeg of ours still pushes to the ingest on `port`.
fn assert_no_leftover_restream(port: u16) {
    let needle = format!("127.0.0.1:{port}/");
    let out = Command::new("pgrep")
        .args(["-af", &needle])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&out.stdout);
    assert!(
        !left.lines().any(|l| l.contains("ffmpeg")),
        "left running: {left}"
    );
}

#[test]
fn a_copied_file_with_sound_is_restreamed_with_its_own_aac() {
    require_program("ffmpeg");
    let tmp = tempfile::tempdir().unwrap();
    let clip = make_clip(
        tmp.path(),
        &ClipSpec::new("sound")
            .frames(100)
            .audio(true)
            .size(320, 180),
    );
    let nginx = RtmpServer::start();
    let url = nginx.url("live", KEY);
    let h = Hlsmark::start(
        bin(),
        &tmp.path().join("data"),
        &[
            "--source",
            clip.path.to_str().unwrap(),
            "--video",
            "copy",
            "--segment-duration",
            "1s",
            "--restream",
            &url,
        ],
        &[],
    );
    h.wait_until("the target connected", Duration::from_secs(30), |h| {
        (targets(h).first()?["state"] == "connected").then_some(())
    });
    assert_eq!(
        probe_codecs(&url, Duration::from_secs(15)),
        ["audio:aac", "video:h264"]
    );
    let log = h.log();
    assert!(
        log.contains("plan=Copy"),
        "the file's AAC is copied:\n{log}"
    );
    assert_no_key_anywhere(&h);
}

#[test]
fn a_restream_url_that_cannot_work_is_one_start_up_line_without_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    for (url, want) in [
        ("http://example.com/live/secretkey123", "not rtmp or rtmps"),
        ("rtmp:///live/secretkey123", "no host"),
        (
            "rtmp://example.com/secretkey123",
            "application and a stream key",
        ),
    ] {
        let out = Command::new(bin())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .args(["run", "--data-dir"])
            .arg(tmp.path())
            .args(["--listen", "127.0.0.1:0", "--restream", url])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        // One error line (log lines of the start, like the fd limit, may come before it).
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "{url}: {err}");
        assert!(
            lines[0].starts_with("hlsmark: error: --restream") && lines[0].contains(want),
            "{url}: {err}"
        );
        assert!(!err.contains("secretkey123"), "{url}: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("secretkey123"));
    }
}
