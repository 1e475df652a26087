//! `hlsmark run` as a new user meets it: the whole product in one process with the embedded store,
//! and one clear line (no panic, no backtrace) for each start-up problem.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hlsmark_testkit::{free_port, http, require_program, wait_for_port};

const TOKEN: &str = "test-token-0123456789";

fn hlsmark() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hlsmark"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    c
}

/// Runs a start-up that must fail and returns its stderr, checking it is one clear error line.
fn fails_with_one_line(mut cmd: Command) -> String {
    let out: Output = cmd.stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "exit status {:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{err}");
    assert!(lines[0].starts_with("hlsmark: error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    lines[0].to_owned()
}

#[test]
fn startup_problems_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();

    // ffmpeg missing: names the install command.
    let mut c = hlsmark();
    c.args([
        "run",
        "--ffmpeg",
        "/nonexistent/ffmpeg",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .arg("--data-dir")
    .arg(&data);
    let line = fails_with_one_line(c);
    assert!(line.contains("apt-get install ffmpeg"), "{line}");

    // Port in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let mut c = hlsmark();
    c.args(["run", "--listen", &format!("127.0.0.1:{busy_port}")])
        .arg("--data-dir")
        .arg(&data);
    let line = fails_with_one_line(c);
    assert!(
        line.contains("cannot listen") && line.contains(&busy_port.to_string()),
        "{line}"
    );
    drop(busy);

    // Data dir not writable (a path below a regular file can never be created).
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let mut c = hlsmark();
    c.args(["run", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(file.join("data"));
    let line = fails_with_one_line(c);
    assert!(line.contains("data dir"), "{line}");

    // Redis URL unreachable: a port nothing listens on.
    let dead = free_port();
    let mut c = hlsmark();
    c.args([
        "run",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--store",
        &format!("redis://127.0.0.1:{dead}/"),
    ])
    .arg("--data-dir")
    .arg(&data);
    let line = fails_with_one_line(c);
    assert!(
        line.contains("redis") && line.contains("unavailable"),
        "{line}"
    );

    // A bad flag value is refused by name.
    let mut c = hlsmark();
    c.args(["run", "--token", "short"])
        .arg("--data-dir")
        .arg(&data);
    let line = fails_with_one_line(c);
    assert!(line.contains("token"), "{line}");
}

#[test]
fn run_serves_video_and_markers_from_one_process_and_stops_cleanly() {
    require_program("ffmpeg");
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = hlsmark()
        .args([
            "run",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--token",
            TOKEN,
        ])
        .args([
            "--width",
            "320",
            "--height",
            "180",
            "--block-size",
            "40",
            "--event-mean",
            "2s",
        ])
        .args(["--event-duration", "500ms", "--live-window", "6"])
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .current_dir(tmp.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for_port(port, Duration::from_secs(20)),
        "hlsmark run did not listen"
    );
    assert!(
        tmp.path().join("data/hlsmark.redb").is_file(),
        "embedded store is the default"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let (playlist, markers) = loop {
        let p = http::get(port, "/hls/live/index.m3u8").unwrap();
        let m = http::get(port, "/markers").unwrap();
        let mj: serde_json::Value = serde_json::from_slice(&m.body).unwrap_or_default();
        let has_event = mj["markers"]
            .as_array()
            .is_some_and(|a| a.iter().any(|m| m["kind"] == "event"));
        if p.status == 200 && p.text().matches("#EXTINF").count() >= 3 && has_event {
            break (p.text(), mj);
        }
        assert!(
            Instant::now() < deadline,
            "no playlist/markers: {} {}",
            p.text(),
            m.text()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(playlist.contains("#EXT-X-PROGRAM-DATE-TIME:"), "{playlist}");
    let ev = markers["markers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "event")
        .unwrap();
    assert!(
        ev["hls_90k"].as_i64().unwrap() % 3000 == 0,
        "event markers sit on frame starts: {ev}"
    );

    // POST with the token, read back by id.
    let r = http::request(
        "POST",
        port,
        "/markers",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {TOKEN}")),
        ],
        br#"{"label":"from a script","hls":1.01}"#,
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let m: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        m["hls_90k"], 90_000,
        "1.01 s is inside frame 30, which starts at 1.0 s: {m}"
    );
    let id = m["id"].as_str().unwrap();
    assert_eq!(
        http::get(port, &format!("/markers/{id}")).unwrap().status,
        200
    );

    // SIGTERM: the last segment is published, exit 0.
    let before = http::get(port, "/timeline").unwrap().text();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "hlsmark run did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "exit status {status:?} (timeline before stop: {before})"
    );
    assert!(
        !tmp.path()
            .join("data/hls/live")
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().ends_with(".tmp") }),
        "no half-written files left"
    );
}
