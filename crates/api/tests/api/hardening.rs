//! Regressions found by QA: stalled request bodies, HEAD on every GET route, unknown streams on
//! the live feed and the debug view, an OpenAPI document that describes every route, one message
//! for every bad limit, the URL `hlsmark serve` prints, and a log that clients cannot flood.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Resp, Sse, TOKEN, TestServer, hlsmark_bin, request};

/// Sends `head_and_partial_body` and never the rest; returns the answer (read until its
/// Content-Length is complete) and how long it took.
fn stall(addr: SocketAddr, head_and_partial_body: &str) -> (Resp, Duration, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let start = Instant::now();
    s.write_all(head_and_partial_body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..p]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if raw.len() >= p + 4 + len {
                break;
            }
        }
    }
    let elapsed = start.elapsed();
    assert!(!raw.is_empty(), "no answer to a stalled body");
    (crate::common::parse_response(&raw), elapsed, s)
}

/// The connection is closed by the server soon after the answer (the rest of the body is not
/// awaited).
fn assert_closed(mut s: TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let r = s.read_to_end(&mut rest);
    assert!(r.is_ok(), "connection still open after the answer: {r:?}");
}

#[test]
fn stalled_request_body_gets_json_408_in_bounded_time() {
    let s = TestServer::start_configured(None, true, Some(TOKEN), |c| {
        c.body_timeout = Duration::from_secs(2);
        c.cors_origins = vec!["http://dash.example".into()];
    });
    let auth = format!("Bearer {TOKEN}");
    for (what, req) in [
        (
            "content-length",
            format!(
                "POST /markers HTTP/1.1\r\nHost: x\r\nOrigin: http://dash.example\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"label\":"
            ),
        ),
        (
            "chunked",
            format!(
                "POST /markers HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{{\"label\":\r\n"
            ),
        ),
    ] {
        let (r, took, conn) = stall(s.addr, &req);
        assert_eq!(r.status, 408, "{what}: {r:?}");
        assert_eq!(r.error_code(), "request_timeout", "{what}");
        if what == "content-length" {
            // A browser page can read the answer.
            assert_eq!(
                r.header("access-control-allow-origin"),
                Some("http://dash.example")
            );
        }
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(15),
            "{what}: answered after {took:?}"
        );
        assert_closed(conn);
    }
    // A body that arrives in time is not affected, and the server keeps serving.
    let ok = s.post_marker(&json!({"label": "in time", "hls": 1.0}));
    assert_eq!(ok.status, 201, "{}", ok.text());
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn stalled_request_body_does_not_hold_shutdown() {
    let mut s = TestServer::start_configured(None, true, Some(TOKEN), |c| {
        c.body_timeout = Duration::from_secs(60);
        c.shutdown_timeout = Duration::from_secs(30);
    });
    let addr = s.addr;
    let client = std::thread::spawn(move || {
        stall(
            addr,
            // Authorised: an unauthorised write is refused before its body is read.
            &format!(
                "POST /markers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"label\":"
            ),
        )
    });
    // Let the request reach its handler.
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    s.stop();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
    let (r, _, _) = client.join().unwrap();
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.error_code(), "shutting_down");
}

/// Writes a tiny built page into the server's frontend dir.
fn build_page(s: &TestServer) {
    let dist = s.data_dir().join("no-frontend");
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(dist.join("index.html"), "<!doctype html><title>t</title>").unwrap();
    std::fs::write(dist.join("assets/app-1.js"), "console.log(1)").unwrap();
}

#[test]
fn every_get_route_answers_head_with_the_get_headers_and_no_body() {
    let s = TestServer::start();
    build_page(&s);
    for path in [
        "/",
        "/index.html",
        "/healthz",
        "/readyz",
        "/timeline",
        "/debug/timeline",
        "/markers",
        "/metrics",
        "/openapi.json",
        "/assets/app-1.js",
        "/hls/live/index.m3u8",
        "/hls/live/vod.m3u8",
        "/hls/live/e0-00000001.m4s",
    ] {
        let get = s.get(path);
        let head = request(s.addr, "HEAD", path, &[], b"");
        assert_eq!(get.status, 200, "GET {path}: {}", get.text());
        assert_eq!(head.status, 200, "HEAD {path}: {head:?}");
        assert!(head.body.is_empty(), "HEAD {path} has a body");
        for h in ["content-type", "cache-control"] {
            assert_eq!(head.header(h), get.header(h), "HEAD {path}: {h}");
        }
        if path != "/metrics" {
            // (the metrics text changes between the two requests)
            assert_eq!(
                head.header("content-length"),
                get.header("content-length"),
                "HEAD {path}: content-length"
            );
        }
    }
    // One marker by id, and the live feed: headers at once, not a stream that never ends.
    let m = s.post_marker(&json!({"label": "h", "hls": 2.0})).json();
    let path = format!("/markers/{}", m["id"].as_str().unwrap());
    assert_eq!(request(s.addr, "HEAD", &path, &[], b"").status, 200);
    let start = Instant::now();
    let live = request(s.addr, "HEAD", "/markers/live", &[], b"");
    assert_eq!(live.status, 200);
    assert_eq!(live.header("content-type"), Some("text/event-stream"));
    assert!(live.body.is_empty());
    assert!(start.elapsed() < Duration::from_secs(5));
    // HEAD of something that is not there is the same 404 as GET.
    assert_eq!(
        request(s.addr, "HEAD", "/timeline?stream=nope", &[], b"").status,
        404
    );
}

#[test]
fn live_feed_and_debug_timeline_of_an_unknown_stream_are_404_json() {
    let s = TestServer::start();
    for path in [
        "/markers/live?stream=nope",
        "/debug/timeline?stream=nope",
        "/timeline?stream=nope",
        "/markers?stream=nope",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.error_code(), "unknown_stream", "{path}");
    }
    // A known stream with no markers yet still gets a working feed.
    assert_eq!(s.get("/markers").json()["markers"], json!([]));
    let mut feed = Sse::connect(s.addr, "/markers/live?stream=live");
    let posted = s.post_marker(&json!({"label": "first", "hls": 3.0})).json();
    assert_eq!(feed.next_marker()["id"], posted["id"]);
}

#[test]
fn live_feed_of_the_configured_stream_opens_before_its_first_segment() {
    // No fixture: the default stream has no timeline yet (the generator is starting).
    let s = TestServer::start_with(None, false, Some(TOKEN));
    assert_eq!(s.get("/timeline").error_code(), "unknown_stream");
    let _feed = Sse::connect(s.addr, "/markers/live");
    let _feed = Sse::connect(s.addr, "/markers/live?stream=live");
    assert_eq!(
        s.get("/markers/live?stream=other").error_code(),
        "unknown_stream"
    );
}

#[test]
fn every_invalid_limit_gives_invalid_limit_1_to_1000() {
    let s = TestServer::start();
    for bad in [
        "0",
        "-1",
        "1001",
        "abc",
        "",
        "1e3",
        "1.5",
        "99999999999999999999999",
    ] {
        let r = s.get(&format!("/markers?limit={bad}"));
        assert_eq!(r.status, 400, "limit={bad}");
        assert_eq!(r.error_code(), "invalid_limit", "limit={bad}");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains("1 to 1000"), "limit={bad}: {msg}");
    }
    for ok in ["1", "1000"] {
        assert_eq!(s.get(&format!("/markers?limit={ok}")).status, 200);
    }
}

/// A concrete request for a documented path and method.
fn concrete(path: &str, marker_id: &str) -> String {
    let file = match path {
        "/hls/{stream}/{file}" => "e0-00000001.m4s",
        "/assets/{file}" => "app-1.js",
        _ => "index.html",
    };
    let url = path
        .replace("{stream}", "live")
        .replace("{id}", marker_id)
        .replace("{file}", file)
        // A tile is a segment's (the fixture's segment 1 is kept).
        .replace("{seq}", "1");
    // A thumbnail needs its time (the fixture's marker is at 4 s).
    if path == "/thumbnail/{stream}.jpg" {
        return url + "?t=4";
    }
    // So does a clip (inside epoch 0 of the fixture).
    if path == "/clips/{stream}.mp4" {
        return url + "?from=3&to=5";
    }
    url
}

#[test]
fn openapi_describes_every_route_and_each_documented_operation_answers() {
    let s = TestServer::start();
    build_page(&s);
    let doc = s.get("/openapi.json").json();
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/assets/{file}",
        "/{file}",
        "/debug/timeline",
        "/readyz",
        "/healthz",
    ] {
        assert!(paths.contains_key(route), "{route} is not documented");
    }
    let marker = s.post_marker(&json!({"label": "doc", "hls": 4.0})).json();
    let id = marker["id"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {TOKEN}");
    let mut deletes = Vec::new();
    for (path, item) in paths {
        let url = concrete(path, &id);
        let ops = item.as_object().unwrap();
        for method in ["get", "head", "post", "put", "delete", "patch"] {
            let m = method.to_ascii_uppercase();
            if !ops.contains_key(method) {
                // An operation the document does not list is not routed either.
                let r = request(s.addr, &m, &url, &[], b"");
                assert_eq!(r.status, 405, "{m} {path} is routed but not documented");
                continue;
            }
            let r = match method {
                "delete" => {
                    deletes.push(url.clone());
                    continue;
                }
                "get" if path == "/markers/live" => {
                    Sse::connect(s.addr, &url);
                    continue;
                }
                // Endless answers (tested in previews.rs); HEAD checks the route here.
                "get" if path.starts_with("/preview/") => continue,
                "post" => request(
                    s.addr,
                    "POST",
                    &url,
                    &[
                        ("Authorization", &auth),
                        ("Content-Type", "application/json"),
                    ],
                    json!({"label": "doc2", "hls": 5.0}).to_string().as_bytes(),
                ),
                _ => request(s.addr, &m, &url, &[], b""),
            };
            assert!(
                (200..300).contains(&r.status),
                "{m} {url} (documented as {path}) -> {}: {}",
                r.status,
                r.text()
            );
            assert!(
                ops[method]["responses"].get(r.status.to_string()).is_some(),
                "{m} {path}: status {} is not documented",
                r.status
            );
        }
    }
    for url in deletes {
        let r = request(s.addr, "DELETE", &url, &[("Authorization", &auth)], b"");
        assert_eq!(r.status, 204, "DELETE {url}: {}", r.text());
    }
}

/// Starts `hlsmark serve` on all interfaces with the default log filter (no RUST_LOG).
fn serve_on_all_interfaces() -> (std::process::Child, u16, String) {
    let data = tempfile::tempdir().unwrap();
    let port = hlsmark_testkit::free_port();
    let mut child = Command::new(hlsmark_bin())
        .arg("serve")
        .args(["--listen", &format!("0.0.0.0:{port}")])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--shutdown-timeout", "2s"])
        .env_remove("RUST_LOG")
        .env_remove("HLSMARK_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // The temp dir must outlive the process; it is small and removed with the test's /tmp.
    std::mem::forget(data);
    (child, port, line)
}

#[test]
fn serve_prints_a_usable_url_and_client_parse_errors_do_not_flood_the_log() {
    let (mut child, port, line) = serve_on_all_interfaces();
    assert_eq!(
        line.trim_end(),
        format!("hlsmark serve: listening on http://localhost:{port}")
    );
    // The printed URL answers.
    assert!(hlsmark_testkit::wait_for_port(
        port,
        Duration::from_secs(20)
    ));
    let url = line.trim_end().rsplit(' ').next().unwrap().to_owned();
    let host = url.strip_prefix("http://").unwrap();
    let addr = std::net::ToSocketAddrs::to_socket_addrs(host)
        .unwrap()
        .find(SocketAddr::is_ipv4)
        .unwrap();
    assert_eq!(request(addr, "GET", "/healthz", &[], b"").status, 200);

    // Garbage any client can send: a raw `<` in the URL, a 100 KB query, 200 headers.
    let raw = |bytes: Vec<u8>| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&bytes);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    for _ in 0..3 {
        assert!(raw(b"GET /<x> HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).starts_with("HTTP/1.1 400"));
        let long = format!(
            "GET /markers?x={} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(100_000)
        );
        assert!(raw(long.into_bytes()).starts_with("HTTP/1.1 4"));
        let mut many = "GET / HTTP/1.1\r\nHost: x\r\n".to_owned();
        for i in 0..200 {
            many.push_str(&format!("X-H{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert!(raw(many.into_bytes()).starts_with("HTTP/1.1 431"));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    // Our info logs are kept; the parse errors are not logged as errors.
    assert!(log.contains("API listening"), "{log}");
    assert!(
        !log.contains("ERROR"),
        "client garbage reached the log:\n{log}"
    );
}
