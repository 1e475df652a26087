//! Segment and init files as the server sends them (from memory, or streamed from disk when too
//! big for the cache): exact bytes, validators, conditional requests, ranges, HEAD, and
//! kept-alive and pipelined connections where file answers and ordinary answers alternate.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::common::{Resp, TestServer, parse_response, request};

/// A kept-alive connection that reads answers one by one, framed by Content-Length.
pub struct Conn {
    pub s: TcpStream,
    buf: Vec<u8>,
    /// The previous answer's first bytes (for messages).
    last: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Self {
            s,
            buf: Vec::new(),
            last: Vec::new(),
        }
    }

    pub fn send(&mut self, raw: &str) {
        self.s.write_all(raw.as_bytes()).unwrap();
    }

    pub fn fill(&mut self) {
        let mut chunk = [0u8; 65536];
        let n = self.s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed; have {} bytes", self.buf.len());
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next answer; `head_only` for HEAD requests (Content-Length without a body).
    pub fn next(&mut self, head_only: bool) -> Resp {
        let end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            self.fill();
        };
        if !self.buf.starts_with(b"HTTP/1.1 ") {
            panic!(
                "an answer without a status line (framing lost); previous answer {:?}, now {:?}",
                String::from_utf8_lossy(&self.last),
                String::from_utf8_lossy(&self.buf[..end.min(600)])
            );
        }
        let head = parse_response(&self.buf[..end]);
        let len: usize = match head.header("content-length") {
            _ if head_only || head.status == 304 => 0,
            Some(v) => v.parse().unwrap(),
            None => panic!("answer without content-length: {head:?}"),
        };
        while self.buf.len() < end + len {
            self.fill();
        }
        let body = self.buf[end..end + len].to_vec();
        self.last = self.buf[..(end + len).min(800)].to_vec();
        self.buf.drain(..end + len);
        Resp { body, ..head }
    }

    pub fn get(&mut self, path: &str, extra: &str) -> Resp {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n"));
        self.next(false)
    }
}

/// A segment-named file much bigger than the fixture's own segments (a few KB), so the socket
/// needs several rounds for it.
pub fn big_file(s: &TestServer, name: &str, len: usize) -> Vec<u8> {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 253).to_le_bytes()[0]).collect();
    std::fs::write(s.data_dir().join("hls/live").join(name), &bytes).unwrap();
    bytes
}

pub fn file(s: &TestServer, name: &str) -> Vec<u8> {
    std::fs::read(s.data_dir().join("hls/live").join(name)).unwrap()
}

/// `hlsmark_files_served_total` and `hlsmark_file_bytes_served_total`.
pub fn served(s: &TestServer) -> (u64, u64) {
    let m = s.get("/metrics").text();
    let counter = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {m}"))
            .trim()
            .parse()
            .unwrap()
    };
    (
        counter("hlsmark_files_served_total "),
        counter("hlsmark_file_bytes_served_total "),
    )
}

#[test]
fn segments_leave_exact_with_validators() {
    let s = TestServer::start();
    big_file(&s, "e0-00000600.m4s", 300_000);
    let before = served(&s);
    let mut bytes = 0;
    // The fixture's small files and a big one.
    for name in [
        "e0-init.mp4",
        "e0-00000000.m4s",
        "e0-00000003.m4s",
        "e0-00000600.m4s",
    ] {
        let want = file(&s, name);
        bytes += want.len() as u64;
        let r = s.get(&format!("/hls/live/{name}"));
        assert_eq!(r.status, 200, "{name}");
        assert!(
            r.body == want,
            "{name}: {} bytes, want {}",
            r.body.len(),
            want.len()
        );
        assert_eq!(
            r.header("content-length"),
            Some(want.len().to_string().as_str())
        );
        assert!(
            r.header("etag").is_some_and(|e| e.starts_with('"')),
            "{r:?}"
        );
        assert!(
            r.header("last-modified")
                .is_some_and(|d| d.ends_with("GMT"))
        );
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        let ct = if name.ends_with(".mp4") {
            "video/mp4"
        } else {
            "video/iso.segment"
        };
        assert_eq!(r.header("content-type"), Some(ct));
        assert!(
            r.headers.iter().all(|(k, _)| !k.contains("hlsmark")),
            "internal header leaked: {r:?}"
        );
    }
    assert_eq!(served(&s), (before.0 + 4, before.1 + bytes));
}

#[test]
fn ranges_and_conditional_requests() {
    let s = TestServer::start();
    big_file(&s, "e0-00000602.m4s", 150_000);
    // A small file and a big one.
    for name in ["e0-00000002.m4s", "e0-00000602.m4s"] {
        ranges_and_conditionals_of(&s, name);
    }
}

fn ranges_and_conditionals_of(s: &TestServer, name: &str) {
    let want = file(s, name);
    let n = want.len();
    let path = format!("/hls/live/{name}");
    let get = |h: &[(&str, &str)]| request(s.addr, "GET", &path, h, b"");
    let full = get(&[]);
    let etag = full.header("etag").unwrap().to_owned();
    let lm = full.header("last-modified").unwrap().to_owned();

    let r = get(&[("Range", "bytes=100-1099")]);
    assert_eq!(r.status, 206);
    assert!(r.body == want[100..1100]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100-1099/{n}").as_str())
    );
    assert_eq!(r.header("content-length"), Some("1000"));

    let r = get(&[("Range", "bytes=-500")]);
    assert_eq!(r.status, 206);
    assert!(r.body == want[n - 500..]);

    let r = get(&[("Range", &format!("bytes={}-", n - 1))]);
    assert_eq!((r.status, r.body.as_slice()), (206, &want[n - 1..]));

    let r = get(&[("Range", &format!("bytes={n}-"))]);
    assert_eq!(r.status, 416);
    assert_eq!(r.error_code(), "range_not_satisfiable");
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{n}").as_str())
    );

    // Several ranges or another unit: the whole file.
    for ignored in ["bytes=0-1,5-9", "lines=1-2", "bytes=9-1"] {
        let r = get(&[("Range", ignored)]);
        assert_eq!(r.status, 200, "{ignored}");
        assert!(r.body == want, "{ignored}");
    }

    let r = get(&[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = get(&[("If-Modified-Since", &lm)]);
    assert_eq!(r.status, 304);
    let r = get(&[("If-None-Match", "\"something-else\"")]);
    assert_eq!(r.status, 200);
    assert!(r.body == want);

    // If-Range: partial only for the same representation.
    let r = get(&[("Range", "bytes=0-9"), ("If-Range", &etag)]);
    assert_eq!((r.status, r.body.as_slice()), (206, &want[..10]));
    let r = get(&[("Range", "bytes=0-9"), ("If-Range", "\"old\"")]);
    assert_eq!(r.status, 200);
    assert!(r.body == want);
}

#[test]
fn kept_alive_and_pipelined_connections_stay_framed() {
    let s = TestServer::start();
    let seg0 = file(&s, "e0-00000000.m4s");
    // Small files and a big one alternate.
    let seg1 = big_file(&s, "e0-00000601.m4s", 200_000);
    let init = file(&s, "e0-init.mp4");

    // One request at a time on one connection: files, HEAD, 304 and JSON answers alternate.
    let mut c = Conn::open(s.addr);
    for _ in 0..3 {
        let r = c.get("/hls/live/e0-00000000.m4s", "");
        assert!(r.status == 200 && r.body == seg0);
        c.send("HEAD /hls/live/e0-00000601.m4s HTTP/1.1\r\nHost: x\r\n\r\n");
        let h = c.next(true);
        assert_eq!(h.status, 200);
        assert_eq!(
            h.header("content-length"),
            Some(seg1.len().to_string().as_str())
        );
        let r = c.get("/healthz", "");
        assert_eq!(r.status, 200, "{r:?}");
        let r = c.get("/hls/live/e0-00000601.m4s", "Range: bytes=10-19\r\n");
        assert_eq!((r.status, r.body.as_slice()), (206, &seg1[10..20]));
        let etag = h.header("etag").unwrap().to_owned();
        let r = c.get(
            "/hls/live/e0-00000601.m4s",
            &format!("If-None-Match: {etag}\r\n"),
        );
        assert_eq!(r.status, 304);
        let r = c.get("/hls/live/e0-00000099.m4s", "");
        assert_eq!(r.status, 404);
        assert_eq!(r.error_code(), "segment_not_found");
        let r = c.get("/hls/live/index.m3u8", "");
        assert_eq!(r.status, 200);
        assert!(r.text().starts_with("#EXTM3U"));
    }

    // Pipelined: everything written at once; the answers come back whole and in order. (No HEAD
    // in the pipeline: actix-http decides whether an answer carries its body by the method of
    // the request it decoded last, so a HEAD pipelined behind or before a GET can get the wrong
    // framing. No browser, player or curl pipelines; HTTP/2 has no such problem. See
    // design/api.md, open items.)
    let mut c = Conn::open(s.addr);
    let mut all = String::new();
    for _ in 0..4 {
        all.push_str("GET /hls/live/e0-00000000.m4s HTTP/1.1\r\nHost: x\r\n\r\n");
        all.push_str("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        all.push_str(
            "GET /hls/live/e0-00000601.m4s HTTP/1.1\r\nHost: x\r\nRange: bytes=-7\r\n\r\n",
        );
        all.push_str("GET /hls/live/e0-init.mp4 HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    c.send(&all);
    for round in 0..4 {
        let r = c.next(false);
        assert!(
            r.status == 200 && r.body == seg0,
            "round {round}: {}",
            r.status
        );
        assert_eq!(c.next(false).status, 200);
        let r = c.next(false);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (206, &seg1[seg1.len() - 7..])
        );
        let r = c.next(false);
        assert!(r.status == 200 && r.body == init);
    }
}

#[test]
fn a_slow_reader_gets_every_byte_of_a_large_file() {
    let s = TestServer::start();
    // Bigger than the memory cache takes (streamed in chunks) and than any socket buffer: the
    // server has to wait for the reader many times.
    let big: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    std::fs::write(s.data_dir().join("hls/live/e0-00000777.m4s"), &big).unwrap();
    let mut c = Conn::open(s.addr);
    c.send("GET /hls/live/e0-00000777.m4s HTTP/1.1\r\nHost: x\r\n\r\n");
    // Read slowly at first, so the server's sends block.
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        c.fill();
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = c.next(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), big.len());
    assert!(r.body == big, "bytes differ");
    // The connection is still usable afterwards.
    let r = c.get(
        "/hls/live/e0-00000777.m4s",
        "Range: bytes=5000000-5000009\r\n",
    );
    assert_eq!(
        (r.status, r.body.as_slice()),
        (206, &big[5_000_000..5_000_010])
    );
}

#[test]
fn many_connections_fetching_at_once_all_get_exact_bytes() {
    let s = TestServer::start();
    let names: Vec<String> = (0..4).map(|i| format!("e0-{i:08}.m4s")).collect();
    let files: Vec<Vec<u8>> = names.iter().map(|n| file(&s, n)).collect();
    let addr = s.addr;
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (names, files) = (&names, &files);
            scope.spawn(move || {
                let mut c = Conn::open(addr);
                for i in 0..40 {
                    let k = (t + i) % names.len();
                    if i % 5 == 4 {
                        assert_eq!(c.get("/markers?from=0&to=5", "").status, 200);
                    }
                    let r = c.get(&format!("/hls/live/{}", names[k]), "");
                    assert_eq!(r.status, 200);
                    assert!(r.body == files[k], "thread {t} request {i}: bytes differ");
                }
            });
        }
    });
}

#[test]
fn a_player_on_an_allowed_origin_can_read_segments() {
    let s = TestServer::start_configured(None, true, Some(crate::common::TOKEN), |c| {
        c.cors_origins = vec!["http://player.example".into()];
    });
    let want = file(&s, "e0-00000001.m4s");
    let path = "/hls/live/e0-00000001.m4s";
    let r = request(
        s.addr,
        "GET",
        path,
        &[("Origin", "http://player.example")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://player.example")
    );
    assert!(r.body == want);
    let r = request(
        s.addr,
        "GET",
        path,
        &[("Origin", "http://player.example"), ("Range", "bytes=0-99")],
        b"",
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &want[..100]));
    assert!(r.header("access-control-allow-origin").is_some());
    // Another origin gets the bytes without the permission (the browser withholds them).
    let r = request(
        s.addr,
        "GET",
        path,
        &[("Origin", "http://elsewhere.example")],
        b"",
    );
    assert_eq!(r.header("access-control-allow-origin"), None, "{r:?}");
}

#[test]
fn hls_paths_keep_their_route_labels_methods_and_decoding() {
    let s = TestServer::start();
    assert_eq!(s.get("/hls/live/index.m3u8").status, 200);
    assert_eq!(s.get("/hls/live/vod.m3u8?from=0&to=2").status, 200);
    // Percent-encoded letters decode like any path parameter.
    let r = s.get("/hls/live/%65%30-0000000%31.m4s");
    assert_eq!(r.status, 200);
    assert!(r.body == file(&s, "e0-00000001.m4s"));
    for bad in [
        "/hls/live/e0-0000000%zz.m4s",
        "/hls/live/%ff.m4s",
        "/hls/live/a/b",
        "/hls/live/",
    ] {
        let r = s.get(bad);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (404, "not_found"),
            "{bad}"
        );
    }
    let r = request(s.addr, "POST", "/hls/live/e0-00000001.m4s", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.error_code(), "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let m = s.get("/metrics").text();
    for route in [
        "/hls/{stream}/index.m3u8",
        "/hls/{stream}/vod.m3u8",
        "/hls/{stream}/{file}",
    ] {
        let line = format!(
            "hlsmark_http_requests_total{{route=\"{route}\",method=\"GET\",status=\"200\"}}"
        );
        assert!(m.contains(&line), "{line} missing in {m}");
    }
    assert!(m.contains(
        "hlsmark_http_requests_total{route=\"/hls/{stream}/{file}\",method=\"POST\",status=\"405\"}"
    ));
}
