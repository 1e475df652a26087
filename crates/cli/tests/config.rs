//! Streams from `--source` and `--config hlsmark.toml` as a user meets them: every start-up
//! problem is one line naming the file, line, stream and key (exit 2, no panic), and a file with
//! two generator streams runs both in one process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hlsmark_testkit::{free_port, http, repo_root, require_program, wait_for_port};

fn hlsmark() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hlsmark"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    c
}

/// Runs `hlsmark <args> --data-dir <dir>` (which must fail at start) and returns its one line.
fn one_line_error(dir: &Path, args: &[&str]) -> String {
    let out: Output = hlsmark()
        .args(args)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got:\n{err}");
    assert!(lines[0].starts_with("hlsmark: error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    lines[0].to_owned()
}

#[test]
fn config_and_source_problems_are_one_line_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).unwrap();
        name.to_owned()
    };
    let gen_ok = "[[stream]]\nname = \"a\"\n";

    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            write(
                "unknown.toml",
                &format!("{gen_ok}\n[[stream]]\nname = \"b\"\ncolour = \"red\"\n"),
            ),
            vec!["unknown.toml: line 6, stream 2", "unknown field `colour`"],
        ),
        (
            write("dup.toml", &format!("{gen_ok}{gen_ok}")),
            vec!["dup.toml: line 3", "two streams are named \"a\""],
        ),
        (
            write("name.toml", "[[stream]]\nname = \"no spaces\"\n"),
            vec!["name.toml: line 1", "name \"no spaces\""],
        ),
        (
            write(
                "scheme.toml",
                "[[stream]]\nname = \"cam\"\nsource = \"srt://u:hunter2@h:9000\"\n",
            ),
            vec!["stream \"cam\"", "unknown scheme \"srt\"", "rtsp://"],
        ),
        (
            write(
                "missing.toml",
                "[[stream]]\nname = \"f\"\nsource = \"/no/such/clip.mp4\"\n",
            ),
            vec!["stream \"f\"", "/no/such/clip.mp4", "no such file"],
        ),
        (
            write("syntax.toml", "[[stream]]\nname = \"a\"\nfps = \n"),
            vec!["syntax.toml: line 3"],
        ),
        (
            write(
                "value.toml",
                "[[stream]]\nname = \"a\"\nsegment_duration = \"soon\"\n",
            ),
            vec!["stream \"a\": segment_duration", "\"soon\""],
        ),
        (
            write("range.toml", "[[stream]]\nname = \"a\"\ncrf = 60\n"),
            vec!["stream \"a\"", "--crf 60"],
        ),
        (
            write("empty.toml", "# nothing\n"),
            vec!["no [[stream]] table"],
        ),
    ];
    for (file, wanted) in &cases {
        for cmd in ["run", "generate"] {
            let line = one_line_error(dir, &[cmd, "--config", file]);
            for w in wanted {
                assert!(line.contains(w), "{cmd} {file}: {w:?} not in {line}");
            }
            assert!(!line.contains("hunter2"), "{line}");
        }
    }
    let line = one_line_error(dir, &["run", "--config", "absent.toml"]);
    assert!(line.contains("absent.toml"), "{line}");

    // The same checks on flags.
    let line = one_line_error(dir, &["run", "--source", "ftp://h/x"]);
    assert!(line.contains("unknown scheme \"ftp\""), "{line}");
    let line = one_line_error(dir, &["generate", "--source", "missing.mp4"]);
    assert!(
        line.contains("missing.mp4") && line.contains("no such file"),
        "{line}"
    );
    let line = one_line_error(dir, &["generate", "--video", "copy"]);
    assert!(line.contains("--video copy"), "{line}");
    let line = one_line_error(dir, &["generate", "--tone", "--audio", "off"]);
    assert!(line.contains("--tone"), "{line}");
    // A negative number is a value its flag refuses (was clap's "unexpected argument '-2'").
    let line = one_line_error(dir, &["generate", "--quality", "-0.5"]);
    assert!(line.contains("--quality -0.5"), "{line}");
    let out = hlsmark().args(["run", "--width", "-2"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid value '-2' for '--width"), "{err}");
    // A duration is said as written, not as Rust's Debug (`0ns`).
    let line = one_line_error(dir, &["generate", "--segment-duration", "0s"]);
    assert!(line.contains("--segment-duration 0s:"), "{line}");
    // An env variable is a flag too.
    let out = hlsmark()
        .args(["generate", "--data-dir"])
        .arg(dir.join("data"))
        .env("HLSMARK_SOURCE", "gopher://h")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gopher"));
}

#[test]
fn the_example_config_is_valid() {
    // examples/hlsmark.toml names a file that only exists where the user puts one: check that
    // everything else in it parses by pointing that stream at a real file.
    let text = std::fs::read_to_string(repo_root().join("examples/hlsmark.toml")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let clip = tmp.path().join("clip.mp4");
    std::fs::write(&clip, b"not checked at start").unwrap();
    let text = text.replace("/srv/video/lobby.mp4", &clip.to_string_lossy());
    std::fs::write(tmp.path().join("h.toml"), text).unwrap();
    // An unreachable ffmpeg makes the run stop right after the configuration was accepted.
    let line = one_line_error(
        tmp.path(),
        &[
            "generate",
            "--config",
            "h.toml",
            "--ffmpeg",
            "/nonexistent/ffmpeg",
        ],
    );
    assert!(
        line.contains("ffmpeg not found") && !line.contains("h.toml"),
        "{line}"
    );
}

#[test]
fn two_generator_streams_from_one_config() {
    require_program("ffmpeg");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("two.toml"),
        r#"
[[stream]]
name = "north"
width = 160
height = 96
block_size = 16
stop_after = "3s"
realtime = false

[[stream]]
name = "south"
width = 128
height = 72
fps = "24000/1001"
block_size = 8
stop_after = "3s"
realtime = false
tone = true
"#,
    )
    .unwrap();
    let port = free_port();
    let started = Instant::now();
    let out = hlsmark()
        .args(["run", "--config", "two.toml", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(stdout.contains("hlsmark run: open http://"), "{stdout}");
    assert!(
        stdout.contains("stream \"north\": generator")
            && stdout.contains("stream \"south\": generator"),
        "{stdout}"
    );
    for s in ["north", "south"] {
        let segs = std::fs::read_dir(dir.join("data/hls").join(s))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".m4s")
            })
            .count();
        assert_eq!(segs, 3, "{s}: 3 s of 1 s segments");
    }

    // The same store serves both streams' playlists.
    let mut serve = hlsmark()
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .current_dir(dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for_port(port, Duration::from_secs(20)));
    for s in ["north", "south"] {
        let r = http::get(port, &format!("/hls/{s}/index.m3u8")).unwrap();
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, 200, "{s}: {body}");
        assert_eq!(body.matches("#EXTINF").count(), 3, "{s}: {body}");
    }
    serve.kill().unwrap();
    serve.wait().unwrap();
}
