//! Fault rows of issue 18 at the API, through the real server: closed SSE clients noticed at once
//! and SSE limits (row 4), symlinks never followed out of the served roots (row 8), deleted
//! segments out of the media cache at once (row 9). `/readyz` on a store that refuses writes
//! (row 7) needs the binary's write probe: `crates/cli/tests/faults.rs`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::{Sse, TOKEN, TestServer, request};

/// A gauge of `/metrics`.
fn gauge(s: &TestServer, name: &str) -> f64 {
    let text = s.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Waits until `f` holds (polling every 10 ms), returning how long it took.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// A raw SSE request whose answer is read up to the end of the head.
fn sse_head(addr: SocketAddr) -> (crate::common::Resp, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /markers/live HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut raw = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        raw.extend_from_slice(line.as_bytes());
        if line == "\r\n" {
            break;
        }
    }
    let mut resp = crate::common::parse_response(&raw);
    // A refusal has a small JSON body with Content-Length.
    if let Some(len) = resp.header("content-length").and_then(|l| l.parse().ok()) {
        let mut body = vec![0u8; len];
        std::io::Read::read_exact(&mut r, &mut body).unwrap();
        resp.body = body;
    }
    (resp, s)
}

#[test]
fn closed_sse_clients_are_noticed_at_once_not_at_the_next_keepalive() {
    let s = TestServer::start_configured(None, true, Some(TOKEN), |c| {
        // Far longer than the test: only the closed connection can end the feed.
        c.sse_keepalive = Duration::from_secs(60);
    });
    let feeds: Vec<Sse> = (0..20)
        .map(|_| Sse::connect(s.addr, "/markers/live"))
        .collect();
    assert_eq!(gauge(&s, "hlsmark_sse_clients"), 20.0);
    let conns_open = gauge(&s, "hlsmark_open_connections");
    drop(feeds);
    let took = within(Duration::from_secs(2), || {
        gauge(&s, "hlsmark_sse_clients") == 0.0
    })
    .expect("closed SSE clients still counted 2 s later (noticed only at a keep-alive?)");
    // The connection gauge drops when the connection task ends, a moment after the feed's
    // stream is dropped: wait for it too rather than read it once (the CI flake).
    within(Duration::from_secs(2), || {
        gauge(&s, "hlsmark_open_connections") <= conns_open - 20.0
    })
    .expect("their connections are closed too");
    eprintln!("20 closed SSE clients noticed in {took:?}");
    // A client that half-closes (shuts down its writing side) is gone as well.
    let mut sse = TcpStream::connect(s.addr).unwrap();
    write!(sse, "GET /markers/live HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    within(Duration::from_secs(2), || {
        gauge(&s, "hlsmark_sse_clients") == 1.0
    })
    .expect("feed opened");
    sse.shutdown(std::net::Shutdown::Write).unwrap();
    within(Duration::from_secs(2), || {
        gauge(&s, "hlsmark_sse_clients") == 0.0
    })
    .expect("a half-closed feed is ended");
}

#[test]
fn sse_beyond_the_per_ip_and_total_limits_gets_503_json_and_a_closed_connection() {
    let s = TestServer::start_configured(None, true, Some(TOKEN), |c| {
        c.sse_max_per_ip = 2;
        c.sse_max_clients = 3;
    });
    let a = Sse::connect(s.addr, "/markers/live");
    let _b = Sse::connect(s.addr, "/markers/live");
    let (r, mut conn) = sse_head(s.addr);
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.error_code(), "too_many_connections");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--sse-max-per-ip")
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("connection"), Some("close"));
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut rest = Vec::new();
    assert!(
        std::io::Read::read_to_end(&mut conn, &mut rest).is_ok(),
        "the refused connection is closed by the server"
    );
    // HEAD is no feed: it is never refused.
    assert_eq!(
        request(s.addr, "HEAD", "/markers/live", &[], b"").status,
        200
    );
    // The place comes back when a feed closes.
    drop(a);
    within(Duration::from_secs(2), || {
        gauge(&s, "hlsmark_sse_clients") == 1.0
    })
    .unwrap();
    let _c = Sse::connect(s.addr, "/markers/live");
    assert!(gauge(&s, "hlsmark_sse_refused_total") >= 1.0);
    // Everything else keeps working while feeds are refused.
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn symlinks_in_a_stream_folder_or_the_page_folder_are_never_followed() {
    let s = TestServer::start();
    let dir = s.data_dir().join("hls").join("live");
    std::os::unix::fs::symlink("/etc/passwd", dir.join("e0-00000099.m4s")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("e9-init.mp4")).unwrap();
    // A link to a real segment of the stream is not served either: media files are never links.
    std::os::unix::fs::symlink(dir.join("e0-00000001.m4s"), dir.join("e0-00000098.m4s")).unwrap();
    for f in ["e0-00000099.m4s", "e9-init.mp4", "e0-00000098.m4s"] {
        let r = s.get(&format!("/hls/live/{f}"));
        assert_eq!(r.status, 404, "{f}: {r:?}");
        assert_eq!(r.error_code(), "segment_not_found");
        assert!(!r.text().contains("root:"), "{f}");
    }
    // A stream directory that is a link out of <data-dir>/hls.
    let outside = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.join("e0-00000001.m4s"),
        outside.path().join("e0-00000001.m4s"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), s.data_dir().join("hls").join("evil")).unwrap();
    assert_eq!(s.get("/hls/evil/e0-00000001.m4s").status, 404);
    // The page folder (--frontend-dir): a link to a file outside and an index.html that is one.
    let page = s.data_dir().join("no-frontend");
    std::fs::create_dir_all(page.join("assets")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", page.join("passwd.txt")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", page.join("assets").join("app.js")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", page.join("index.html")).unwrap();
    for p in ["/passwd.txt", "/assets/app.js", "/index.html", "/"] {
        let r = s.get(p);
        assert!(!r.text().contains("root:"), "{p} served the link's target");
        if p != "/" {
            assert_eq!(r.status, 404, "{p}");
        }
    }
    // Real files are still served.
    std::fs::remove_file(page.join("passwd.txt")).unwrap();
    std::fs::write(page.join("robots.txt"), b"User-agent: *").unwrap();
    assert_eq!(s.get("/robots.txt").text(), "User-agent: *");
    assert_eq!(s.get("/hls/live/e0-00000001.m4s").status, 200);
}

#[test]
fn a_segment_deleted_by_retention_leaves_the_media_cache_at_once() {
    let s = TestServer::start_configured(None, true, Some(TOKEN), |c| {
        // The longest revalidation allowed: only the link count can tell within it.
        c.revalidate = Duration::from_secs(1);
    });
    let path = s.data_dir().join("hls/live/e0-00000002.m4s");
    let len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(s.get("/hls/live/e0-00000002.m4s").status, 200);
    assert_eq!(s.get("/hls/live/e0-00000003.m4s").status, 200);
    let (files, bytes) = (
        gauge(&s, "hlsmark_open_files"),
        gauge(&s, "hlsmark_open_file_bytes"),
    );
    assert!(files >= 2.0 && bytes >= len as f64, "{files} {bytes}");
    std::fs::remove_file(&path).unwrap();
    let r = s.get("/hls/live/e0-00000002.m4s");
    assert_eq!(r.status, 404, "the next request after the delete: {r:?}");
    assert_eq!(r.error_code(), "segment_not_found");
    assert_eq!(gauge(&s, "hlsmark_open_files"), files - 1.0, "entry gone");
    assert_eq!(
        gauge(&s, "hlsmark_open_file_bytes"),
        bytes - len as f64,
        "its memory gone"
    );
    assert_eq!(s.get("/hls/live/e0-00000003.m4s").status, 200);
}
