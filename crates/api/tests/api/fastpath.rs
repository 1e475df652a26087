//! The segment fast path (`fastpath.rs`, `zerocopy.rs`): plain segment requests answered by the
//! connection's stream without actix-http. Its answers must be the ones actix gives, counted the
//! same, in request order with everything else on the connection, and it must step aside for
//! anything it cannot frame.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use crate::common::{TOKEN, TestServer};
use crate::files::{Conn, big_file, file};

fn metric(s: &TestServer, line_start: &str) -> u64 {
    let m = s.get("/metrics").text();
    m.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn fast_count(s: &TestServer) -> u64 {
    metric(s, "hlsmark_fast_answers_total ")
}

/// Headers as a sorted list of (lower-case name, value), without `date`.
fn headers_of(r: &crate::common::Resp) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| k != "date")
        .collect();
    h.sort();
    h
}

#[test]
fn fast_answers_are_actix_answers_header_for_header() {
    for cors in [false, true] {
        let s = TestServer::start_configured(None, true, Some(TOKEN), |c| {
            // The playlist is answered fast while the version read is this fresh.
            c.revalidate = Duration::from_secs(1);
            if cors {
                c.cors_origins = vec!["http://player.example".into()];
            }
        });
        big_file(&s, "e0-00000602.m4s", 150_000);
        let mut c = Conn::open(s.addr);
        // actix answers the first request of a connection.
        let first = c.get("/hls/live/e0-00000000.m4s", "");
        assert_eq!(first.status, 200);
        assert_eq!(fast_count(&s), 0, "the first request goes through actix");
        let mut fast_answers = 0;
        for name in [
            "e0-init.mp4",
            "e0-00000001.m4s",
            "e0-00000602.m4s",
            "index.m3u8",
        ] {
            let want = if name == "index.m3u8" {
                // Renders it and reads the store version: fresh for a second.
                let r = c.get("/hls/live/index.m3u8", "");
                assert_eq!(r.status, 200);
                r.body
            } else {
                file(&s, name)
            };
            for method in ["GET", "HEAD"] {
                let head_only = method == "HEAD";
                let ask = |extra: &str| {
                    format!(
                        "{method} /hls/live/{name}?v=5e HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\
                         Accept: */*\r\nConnection: keep-alive\r\nSec-Fetch-Mode: cors\r\n{extra}\r\n"
                    )
                };
                let before = fast_count(&s);
                c.send(&ask(""));
                let fast = c.next(head_only);
                fast_answers += 1;
                assert_eq!(
                    fast_count(&s),
                    before + 1,
                    "{method} {name}: not answered fast"
                );
                // An unknown header sends the same request through actix.
                c.send(&ask("X-Via: actix\r\n"));
                let slow = c.next(head_only);
                assert_eq!(fast_count(&s), before + 1, "{method} {name}: answered fast");
                assert_eq!(fast.status, 200);
                assert_eq!(slow.status, 200);
                assert_eq!(
                    headers_of(&fast),
                    headers_of(&slow),
                    "{method} {name} (cors {cors})"
                );
                assert!(fast.header("date").is_some_and(|d| d.ends_with("GMT")));
                assert_eq!(
                    fast.header("content-length"),
                    Some(want.len().to_string().as_str())
                );
                let body = if head_only { &[][..] } else { &want[..] };
                assert!(fast.body == body && slow.body == body, "{method} {name}");
            }
        }
        // Counted like actix's answers: route label, method, status.
        let m = s.get("/metrics").text();
        let count = |route: &str, method: &str| -> u64 {
            let key = format!(
                "hlsmark_http_requests_total{{route=\"/hls/{{stream}}/{route}\",method=\"{method}\",status=\"200\"}} "
            );
            m.lines()
                .find_map(|l| l.strip_prefix(key.as_str()))
                .map_or(0, |v| v.parse().unwrap())
        };
        // Files: the first request, then per file a fast and a slow GET and HEAD each.
        assert_eq!(count("{file}", "GET"), 1 + 3 * 2, "{m}");
        assert_eq!(count("{file}", "HEAD"), 3 * 2, "{m}");
        // The playlist: one GET to render it, then as the files.
        assert_eq!(count("index.m3u8", "GET"), 1 + 2, "{m}");
        assert_eq!(count("index.m3u8", "HEAD"), 2, "{m}");
        assert_eq!(fast_answers, 8);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order_around_the_fast_ones() {
    let s = TestServer::start();
    let seg = file(&s, "e0-00000002.m4s");
    let big = big_file(&s, "e0-00000603.m4s", 120_000);
    let init = file(&s, "e0-init.mp4");
    let mut c = Conn::open(s.addr);
    assert_eq!(c.get("/healthz", "").status, 200);
    let before = fast_count(&s);
    let auth = format!("Bearer {TOKEN}");
    let mut all = String::new();
    for round in 0..5 {
        all.push_str("GET /hls/live/e0-00000002.m4s HTTP/1.1\r\nHost: x\r\n\r\n");
        all.push_str("GET /hls/live/e0-00000603.m4s HTTP/1.1\r\nHost: x\r\n\r\n");
        let body = format!("{{\"label\": \"p{round}\", \"hls\": {round}.5}}");
        all.push_str(&format!(
            "POST /markers HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        all.push_str("HEAD /hls/live/e0-init.mp4 HTTP/1.1\r\nHost: x\r\n\r\n");
        all.push_str("GET /hls/live/e0-00000099.m4s HTTP/1.1\r\nHost: x\r\n\r\n");
        all.push_str(
            "GET /hls/live/e0-00000603.m4s HTTP/1.1\r\nHost: x\r\nRange: bytes=5-9\r\n\r\n",
        );
    }
    c.send(&all);
    for round in 0..5 {
        let r = c.next(false);
        assert!(r.status == 200 && r.body == seg, "round {round}: {r:?}");
        let r = c.next(false);
        assert!(r.status == 200 && r.body == big, "round {round}");
        let r = c.next(false);
        assert_eq!(r.status, 201, "round {round}: {}", r.text());
        assert_eq!(r.json()["label"], format!("p{round}"));
        let r = c.next(true);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-length"),
            Some(init.len().to_string().as_str())
        );
        let r = c.next(false);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (404, "segment_not_found")
        );
        let r = c.next(false);
        assert_eq!((r.status, r.body.as_slice()), (206, &big[5..10]));
    }
    // Then one at a time: every plain segment request is answered fast again.
    for _ in 0..3 {
        let r = c.get("/hls/live/e0-00000603.m4s", "");
        assert!(r.status == 200 && r.body == big);
    }
    let fast = fast_count(&s) - before;
    assert!(fast >= 2 + 3, "{fast} fast answers");
}

#[test]
fn request_bodies_expect_continue_and_chunked_input_keep_the_connection_right() {
    let s = TestServer::start();
    let seg = file(&s, "e0-00000001.m4s");
    let auth = format!("Bearer {TOKEN}");
    let mut c = Conn::open(s.addr);
    assert_eq!(c.get("/healthz", "").status, 200);

    // Expect: 100-continue: the interim answer, then the body, then the answer.
    let body = r#"{"label": "cont", "hls": 1.25}"#;
    c.send(&format!(
        "POST /markers HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    ));
    let interim = c.next(true);
    assert_eq!(interim.status, 100);
    c.send(body);
    let r = c.next(false);
    assert_eq!(r.status, 201, "{}", r.text());
    let before = fast_count(&s);
    let r = c.get("/hls/live/e0-00000001.m4s", "");
    assert!(r.status == 200 && r.body == seg);
    assert_eq!(
        fast_count(&s),
        before + 1,
        "fast again after a request body"
    );

    // A chunked body cannot be framed by the stream: actix gets the connection from there on,
    // and still answers everything right.
    let chunked = r#"{"label": "chunked", "hls": 1.5}"#;
    c.send(&format!(
        "POST /markers HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:X}\r\n{chunked}\r\n0\r\n\r\n",
        chunked.len()
    ));
    let r = c.next(false);
    assert_eq!(r.status, 201, "{}", r.text());
    for _ in 0..3 {
        let r = c.get("/hls/live/e0-00000001.m4s", "");
        assert!(r.status == 200 && r.body == seg);
        let r = c.get("/hls/live/e0-00000077.m4s", "");
        assert_eq!(r.status, 404);
    }
    assert_eq!(fast_count(&s), before + 1, "nothing fast once unframed");
}

#[test]
fn a_request_written_byte_by_byte_is_answered_fast() {
    let s = TestServer::start();
    let seg = file(&s, "e0-00000003.m4s");
    let mut c = Conn::open(s.addr);
    assert_eq!(c.get("/healthz", "").status, 200);
    let before = fast_count(&s);
    c.s.set_nodelay(true).unwrap();
    for b in b"GET /hls/live/e0-00000003.m4s HTTP/1.1\r\nHost: x\r\n\r\n" {
        c.s.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let r = c.next(false);
    assert!(r.status == 200 && r.body == seg);
    assert_eq!(fast_count(&s), before + 1);
}

#[test]
fn a_request_head_left_unfinished_is_cut_off() {
    let s = TestServer::start();
    let mut c = Conn::open(s.addr);
    assert_eq!(c.get("/healthz", "").status, 200);
    c.send("GET /hls/live/e0-00000003.m4s HTTP/1.1\r\nHo");
    std::thread::sleep(Duration::from_millis(5_500));
    // The rest arrives after the head timeout: the connection is closed instead of answered.
    let _ = c.s.write_all(b"st: x\r\n\r\n");
    let mut rest = Vec::new();
    let _ = c.s.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "answered: {:?}",
        String::from_utf8_lossy(&rest)
    );
    // The server is fine.
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn a_client_that_stops_reading_gets_every_answer_whole_and_in_order() {
    let s = TestServer::start();
    let seg = file(&s, "e0-00000001.m4s");
    let openapi = s.get("/openapi.json").body;
    let mut c = Conn::open(s.addr);
    assert_eq!(c.get("/healthz", "").status, 200);
    // Far more than the socket buffers hold: writes stop part-way through heads and bodies.
    let mut all = String::new();
    for _ in 0..200 {
        all.push_str("GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n");
        all.push_str("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        all.push_str("GET /hls/live/e0-00000001.m4s HTTP/1.1\r\nHost: x\r\n\r\n");
        all.push_str("HEAD /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    let raw = all.into_bytes();
    let mut writer = c.s.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&raw).unwrap());
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..200 {
        let r = c.next(false);
        assert!(r.status == 200 && r.body == openapi, "{i}: openapi");
        let r = c.next(false);
        assert_eq!(r.status, 200, "{i}: healthz");
        let r = c.next(false);
        assert!(r.status == 200 && r.body == seg, "{i}: segment");
        let r = c.next(true);
        assert_eq!(
            r.header("content-length"),
            Some(openapi.len().to_string().as_str())
        );
    }
    sender.join().unwrap();
}

/// actix-http decides whether an answer carries its body by the method of the request it decoded
/// last; the stream hands it one request at a time, so pipelined HEAD and GET requests keep their
/// own answers.
#[test]
fn pipelined_head_and_get_requests_keep_their_own_bodies() {
    let s = TestServer::start();
    let openapi = s.get("/openapi.json").body;
    let mut c = Conn::open(s.addr);
    let mut all = String::new();
    for _ in 0..20 {
        all.push_str("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        all.push_str("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        all.push_str("GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n");
        all.push_str("HEAD /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    c.send(&all);
    for i in 0..20 {
        let r = c.next(false);
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, r#"{"status":"ok"}"#),
            "{i}"
        );
        let r = c.next(true);
        assert_eq!(
            (r.status, r.header("content-length")),
            (200, Some("15")),
            "{i}"
        );
        let r = c.next(false);
        assert!(r.status == 200 && r.body == openapi, "{i}");
        let r = c.next(true);
        assert_eq!(r.status, 200, "{i}");
    }
    // Nothing else follows: the HEAD answers carried no bodies.
    c.s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut extra = [0u8; 64];
    assert!(c.s.read(&mut extra).is_err(), "bytes after the last answer");
}

/// Many mixed requests, pipelined and cut into random pieces (a fixed seed), on one connection:
/// every answer comes back whole, in order, with the right status and bytes, whichever path
/// (fast, actix, zero-copy file) made it.
#[test]
fn randomly_cut_pipelined_requests_get_exact_answers_in_order() {
    let s = TestServer::start_configured(None, true, Some(TOKEN), |c| {
        c.revalidate = Duration::from_secs(1);
    });
    let small = file(&s, "e0-00000004.m4s");
    let big = big_file(&s, "e0-00000604.m4s", 90_000);
    let auth = format!("Bearer {TOKEN}");
    // (request, head only, expected status, expected body or None to skip the body check; the
    // playlist changes as markers are posted, so only its start is checked)
    type Case = (String, bool, u16, Option<Vec<u8>>);
    let mut rng: u64 = 0x5eed_1234_abcd_0001;
    let mut next = move |n: u64| {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (rng >> 33) % n
    };
    let mut cases: Vec<Case> = Vec::new();
    for i in 0..300 {
        let get = |p: &str, extra: &str| format!("GET {p} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        cases.push(match next(9) {
            0 => (
                get("/hls/live/e0-00000004.m4s", ""),
                false,
                200,
                Some(small.clone()),
            ),
            1 => (
                get("/hls/live/e0-00000604.m4s", ""),
                false,
                200,
                Some(big.clone()),
            ),
            2 => (
                "HEAD /hls/live/e0-00000604.m4s HTTP/1.1\r\nHost: x\r\n\r\n".into(),
                true,
                200,
                None,
            ),
            3 => (get("/hls/live/index.m3u8", ""), false, 200, None),
            4 => (
                get("/healthz", ""),
                false,
                200,
                Some(br#"{"status":"ok"}"#.to_vec()),
            ),
            5 => (
                "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n".into(),
                true,
                200,
                None,
            ),
            6 => {
                let body = format!("{{\"label\": \"r{i}\", \"hls\": 2.{i}}}");
                (
                    format!(
                        "POST /markers HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\
                         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    ),
                    false,
                    201,
                    None,
                )
            }
            7 => (get("/hls/live/e0-00000098.m4s", ""), false, 404, None),
            _ => (
                get("/hls/live/e0-00000604.m4s", "Range: bytes=100-199\r\n"),
                false,
                206,
                Some(big[100..200].to_vec()),
            ),
        });
    }
    let mut c = Conn::open(s.addr);
    assert_eq!(c.get("/healthz", "").status, 200);
    let before = fast_count(&s);
    let raw: Vec<u8> = cases.iter().flat_map(|c| c.0.bytes()).collect();
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let n = (1 + usize::try_from(next(2000)).unwrap()).min(raw.len() - at);
        pieces.push((raw[at..at + n].to_vec(), next(4) == 0));
        at += n;
    }
    let mut writer = c.s.try_clone().unwrap();
    writer.set_nodelay(true).unwrap();
    let sender = std::thread::spawn(move || {
        for (piece, pause) in pieces {
            writer.write_all(&piece).unwrap();
            if pause {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    for (i, (req, head_only, status, body)) in cases.iter().enumerate() {
        let r = c.next(*head_only);
        let line = req.lines().next().unwrap_or("");
        assert_eq!(r.status, *status, "{i}: {line}: {}", r.text());
        if let Some(b) = body {
            assert!(r.body == *b, "{i}: {line}: {} bytes", r.body.len());
        }
        if line.contains("index.m3u8") {
            assert!(r.text().starts_with("#EXTM3U"), "{i}: {}", r.text());
        }
    }
    sender.join().unwrap();
    assert!(
        fast_count(&s) > before,
        "some answers came from the fast path"
    );
}
