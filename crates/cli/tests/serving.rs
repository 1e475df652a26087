//! The `hlsmark` binary as users start it for serving: the player page built into the binary
//! when it runs outside the checkout, HTTPS (HTTP/2 and HTTP/1.1) from `--tls-cert`/`--tls-key`
//! or their variables, and one clear line for every bad TLS flag, on `serve` and `run`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use hlsmark_testkit::{free_port, http, require_program, wait_for_port};

/// The binary with a clean environment, started in `cwd`.
fn hlsmark(cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hlsmark"));
    c.current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    c
}

/// Starts `serve` and returns it with the URL it printed.
fn start(mut c: Command) -> (Child, String) {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .last()
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    (child, url)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    require_program("openssl");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl failed");
    (cert, key)
}

#[test]
fn a_binary_started_outside_the_checkout_shows_the_page() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut c = hlsmark(tmp.path());
    c.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
    let (child, url) = start(c);
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    assert!(wait_for_port(port, Duration::from_secs(10)));
    let page = http::get(port, "/").unwrap();
    assert_eq!(page.status, 200);
    let html = page.text();
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../frontend/dist/index.html");
    match std::fs::read_to_string(&dist) {
        // The page built before this binary is the page it serves, with its bundle.
        Ok(built) => {
            assert_eq!(html, built);
            let js = html
                .split('"')
                .find(|p| p.starts_with("/assets/") && p.ends_with(".js"))
                .unwrap();
            let r = http::get(port, js).unwrap();
            assert_eq!(r.status, 200);
            assert!(r.header("content-type").unwrap().contains("javascript"));
        }
        Err(_) => assert!(html.contains("npm --prefix frontend ci"), "{html}"),
    }
    // --frontend-dir still serves a directory (page development).
    stop(child);
    let dev = tmp.path().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(dev.join("index.html"), "<!doctype html><p>dev page</p>").unwrap();
    let port = free_port();
    let mut c = hlsmark(tmp.path());
    c.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("HLSMARK_FRONTEND_DIR", &dev);
    let (child, _) = start(c);
    assert!(wait_for_port(port, Duration::from_secs(10)));
    assert!(http::get(port, "/").unwrap().text().contains("dev page"));
    stop(child);
}

#[test]
fn serve_speaks_https_with_http2_from_the_flags_and_the_variables() {
    require_program("curl");
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(tmp.path());
    for by_env in [false, true] {
        let port = free_port();
        let mut c = hlsmark(tmp.path());
        c.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        if by_env {
            c.env("HLSMARK_TLS_CERT", &cert)
                .env("HLSMARK_TLS_KEY", &key);
        } else {
            c.arg("--tls-cert").arg(&cert).arg("--tls-key").arg(&key);
        }
        let (child, url) = start(c);
        assert_eq!(url, format!("https://127.0.0.1:{port}"));
        assert!(wait_for_port(port, Duration::from_secs(10)));
        for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
            let o = Command::new("curl")
                .args(["-sS", "-k", flag, "-o", "/dev/null", "-w"])
                .arg("%{http_version} %{http_code}")
                .arg(format!("{url}/healthz"))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{version} 200"));
        }
        stop(child);
    }
}

/// Runs a start-up that must fail and returns its stderr's one line.
fn fails_with_one_line(mut cmd: Command) -> String {
    let out: Output = cmd.stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "exit status {:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{err}");
    assert!(lines[0].starts_with("hlsmark: error: "), "{err}");
    lines[0].to_owned()
}

#[test]
fn bad_tls_flags_stop_the_start_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(tmp.path());
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (_, other_key) = self_signed(&other);
    let data = tmp.path().join("data");
    for cmd in ["serve", "run"] {
        let args = |c: &mut Command| {
            c.args([cmd, "--listen", &format!("127.0.0.1:{}", free_port())])
                .arg("--data-dir")
                .arg(&data);
        };
        let mut c = hlsmark(tmp.path());
        args(&mut c);
        c.args(["--tls-cert", "/nonexistent/cert.pem", "--tls-key"])
            .arg(&key);
        let line = fails_with_one_line(c);
        assert!(
            line.contains("cannot read the TLS certificate file /nonexistent/cert.pem"),
            "{line}"
        );
        let mut c = hlsmark(tmp.path());
        args(&mut c);
        c.arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&other_key);
        let line = fails_with_one_line(c);
        assert!(line.contains("does not fit the certificate"), "{line}");
        let mut c = hlsmark(tmp.path());
        args(&mut c);
        c.arg("--tls-cert").arg(&cert).arg("--tls-key").arg(&cert);
        let line = fails_with_one_line(c);
        assert!(line.contains("holds no private key"), "{line}");
        // One of the two alone: clap's usage error names the missing flag.
        let mut c = hlsmark(tmp.path());
        args(&mut c);
        c.arg("--tls-cert").arg(&cert);
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
    }
}
