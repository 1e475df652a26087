//! The fast path: plain `GET`/`HEAD` requests for a segment or init file or a live playlist,
//! answered by the connection's [`ZcStream`](crate::zerocopy::ZcStream) without actix-http
//! parsing them.
//!
//! A viewer asks for one segment and one playlist per segment duration, and these requests are
//! all bytes and no logic: strict name, an open file (or the playlist rendered once per index
//! change), fixed headers, bytes. Through actix-http and actix-web such a request cost about
//! 3.4 µs of user time on 16 KB segments (parsing into a `HeaderMap`, the request and response
//! objects, the middleware chain), twice what nginx spends on the whole request. So the stream
//! reads the socket itself, frames every request with `httparse`, and answers the plainest ones
//! directly (1.4-1.7 µs). Everything else goes to actix-http byte for byte, unchanged.
//!
//! The fast answer is the slow path's answer for the same request: same status, headers (a test
//! compares them, with and without CORS) and bytes, counted in the same metrics. A request
//! qualifies only when
//! - it is `GET` or `HEAD`, HTTP/1.1, without a body;
//! - every header is one the answer ignores ([`HARMLESS`], `sec-*`, `Connection:
//!   keep-alive`): a `Range`, `If-*`, `Origin`, `Expect` or unknown header goes to actix;
//! - the path is `/hls/{stream}/{file}` with a valid stream name and a segment or init file name,
//!   or `/hls/{stream}/index.m3u8`, with no percent-escapes (a query is ignored, as on the slow
//!   path);
//! - the file exists (a 404 is actix's JSON), or the playlist is rendered for the store version
//!   read less than `revalidate` ago (else actix asks the store);
//! - and the connection is idle: actix has answered the first request of the connection and every
//!   request handed to it since, to the last byte (so answers leave in request order, and
//!   actix-http's first-request timeout is disarmed).

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::Method;
use actix_web::http::header::HttpDate;
use actix_web::web;
use bytes::Bytes;
use hlsmark_store::StreamName;

use crate::files::{self, MediaKind, OpenFile};
use crate::state::AppState;
use crate::zerocopy::Body;

/// Most headers a request may have (actix-http's own limit); more is actix's 431.
const MAX_HEADERS: usize = 96;

/// Request headers the file answer does not look at. Anything else sends the request to actix.
const HARMLESS: &[&str] = &[
    "host",
    "user-agent",
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "pragma",
    "referer",
    "cookie",
    "dnt",
    "priority",
    "upgrade-insecure-requests",
    "x-playback-session-id",
    "x-requested-with",
];

/// The route labels of the answers (as the slow path counts them).
const MEDIA_ROUTE: &str = "/hls/{stream}/{file}";
const PLAYLIST_ROUTE: &str = "/hls/{stream}/index.m3u8";

/// A request that may be answered fast.
#[derive(Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub head_only: bool,
    pub stream: &'a str,
    /// A segment or init file name, or `index.m3u8`.
    pub file: &'a str,
    /// The file's kind; `None` for the live playlist.
    pub kind: Option<MediaKind>,
}

/// What the front of a connection's input holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a whole request head yet.
    Partial,
    /// Bytes the stream cannot frame (not HTTP/1 as `httparse` reads it, a chunked body, an
    /// upgrade): actix-http gets everything from here on and answers it.
    Opaque,
    /// A request head of `head_len` bytes followed by `body_len` body bytes; `fast` when it may
    /// be answered without actix.
    Request {
        head_len: usize,
        body_len: u64,
        fast: Option<Candidate<'a>>,
    },
}

/// Frames the request at the front of `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Opaque,
    };
    let method = req.method.unwrap_or("");
    if method == "CONNECT" {
        return Parsed::Opaque;
    }
    let mut body_len = None;
    let mut plain = true;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(h.value).map(str::trim);
            match value
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            {
                Some(v) if body_len.is_none() => match v.parse::<u64>() {
                    Ok(n) => body_len = Some(n),
                    Err(_) => return Parsed::Opaque,
                },
                _ => return Parsed::Opaque,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Parsed::Opaque;
        } else if name.eq_ignore_ascii_case("connection") {
            plain &= h.value.eq_ignore_ascii_case(b"keep-alive");
        } else {
            plain &= HARMLESS.iter().any(|n| name.eq_ignore_ascii_case(n))
                || name
                    .get(..4)
                    .is_some_and(|p| p.eq_ignore_ascii_case("sec-"));
        }
    }
    let body_len = body_len.unwrap_or(0);
    let head_only = method == "HEAD";
    let fast = (plain && body_len == 0 && req.version == Some(1) && (head_only || method == "GET"))
        .then(|| req.path.and_then(media_path))
        .flatten()
        .map(|(stream, file, kind)| Candidate {
            head_only,
            stream,
            file,
            kind,
        });
    Parsed::Request {
        head_len,
        body_len,
        fast,
    }
}

/// `(stream, file, kind)` of `/hls/{stream}/{file}[?query]` when `file` is a segment or init name
/// (kind `Some`) or the live playlist (`None`), and nothing needs decoding (a query is ignored by
/// both routes).
fn media_path(target: &str) -> Option<(&str, &str, Option<MediaKind>)> {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let (stream, file) = path.strip_prefix("/hls/")?.split_once('/')?;
    if stream.is_empty() || file.contains('/') || path.contains('%') {
        return None;
    }
    if file == LIVE_PLAYLIST {
        return Some((stream, file, None));
    }
    files::classify(file).map(|kind| (stream, file, Some(kind)))
}

const LIVE_PLAYLIST: &str = "index.m3u8";

/// What a connection's stream needs to answer fast requests (one per server, shared).
#[derive(Debug)]
pub struct FastPath {
    state: web::Data<AppState>,
    /// CORS is on: actix-cors adds `Vary` to every answer, also without `Origin`.
    vary: bool,
}

/// A fast answer: the whole head, then the first `len` bytes of `body` (whole files only).
#[derive(Debug)]
pub struct FastAnswer {
    pub head: Vec<u8>,
    pub body: Body,
    pub len: u64,
}

impl FastPath {
    pub fn new(state: web::Data<AppState>, cors: bool) -> Self {
        Self { state, vary: cors }
    }

    /// The answer to `c`, or `None` when actix should answer (bad stream name, no such file, a
    /// playlist that needs a store call).
    pub fn answer(&self, c: &Candidate<'_>) -> Option<FastAnswer> {
        let start = Instant::now();
        let stream = self.state.stream(Some(c.stream)).ok()?;
        match c.kind {
            None => {
                let body = self.state.live_playlist_if_fresh(&stream)?;
                Some(self.playlist(c, body, start))
            }
            Some(kind) => self.media(c, kind, &stream, start),
        }
    }

    /// The live playlist from the cache (as `routes::hls::live_playlist` answers it).
    fn playlist(&self, c: &Candidate<'_>, body: Bytes, start: Instant) -> FastAnswer {
        let len = body.len() as u64;
        let mut head = self.head_start(len);
        head.extend_from_slice(b"\r\ncontent-type: ");
        head.extend_from_slice(crate::routes::hls::PLAYLIST_TYPE.as_bytes());
        head.extend_from_slice(b"\r\ncache-control: ");
        head.extend_from_slice(crate::routes::hls::PLAYLIST_CACHE.as_bytes());
        self.head_end(&mut head);
        self.count(PLAYLIST_ROUTE, c.head_only, start);
        FastAnswer {
            head,
            body: if c.head_only {
                Body::None
            } else {
                Body::Bytes(body)
            },
            len,
        }
    }

    /// `HTTP/1.1 200 OK` and the Content-Length.
    fn head_start(&self, len: u64) -> Vec<u8> {
        let mut head = Vec::with_capacity(320);
        head.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: ");
        // Writing into a Vec cannot fail.
        let _ = write!(head, "{len}");
        head
    }

    /// What the middleware adds (CORS's `Vary`), `Date` and the blank line.
    fn head_end(&self, head: &mut Vec<u8>) {
        if self.vary {
            head.extend_from_slice(
                b"\r\nvary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            );
        }
        head.extend_from_slice(b"\r\ndate: ");
        DATE.with(|d| head.extend_from_slice(d.borrow_mut().now()));
        head.extend_from_slice(b"\r\n\r\n");
    }

    /// Counts the answer in the request metrics, under the route the slow path would use.
    fn count(&self, route: &str, head_only: bool, start: Instant) {
        let method = if head_only { Method::HEAD } else { Method::GET };
        let m = &self.state.metrics;
        m.fast_answers.fetch_add(1, Ordering::Relaxed);
        m.observe(route, &method, 200, start.elapsed());
    }

    /// A segment or init file (as `routes::hls::media_file` answers it).
    fn media(
        &self,
        c: &Candidate<'_>,
        kind: MediaKind,
        stream: &StreamName,
        start: Instant,
    ) -> Option<FastAnswer> {
        let state = &self.state;
        let path = files::media_path(&state.cfg.data_dir, stream, c.file);
        let OpenFile {
            file,
            len,
            validators,
            ..
        } = state.open_files.open(&path).ok()?;
        let mut head = self.head_start(len);
        head.extend_from_slice(b"\r\ncache-control: ");
        head.extend_from_slice(files::IMMUTABLE.as_bytes());
        head.extend_from_slice(b"\r\naccept-ranges: bytes\r\ncontent-type: ");
        head.extend_from_slice(kind.content_type().as_bytes());
        for (name, value) in &validators.headers {
            head.extend_from_slice(b"\r\n");
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
        }
        self.head_end(&mut head);
        let body = if c.head_only {
            Body::None
        } else {
            Body::File(file)
        };
        let m = &state.metrics;
        m.files_served.fetch_add(1, Ordering::Relaxed);
        if !c.head_only {
            m.file_bytes_served.fetch_add(len, Ordering::Relaxed);
            m.files_direct.fetch_add(1, Ordering::Relaxed);
        }
        self.count(MEDIA_ROUTE, c.head_only, start);
        Some(FastAnswer { head, body, len })
    }
}

/// The `Date` value, formatted once per second per thread.
#[derive(Debug, Default)]
struct DateCache {
    secs: u64,
    text: Vec<u8>,
}

impl DateCache {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs || self.text.is_empty() {
            self.secs = secs;
            self.text = HttpDate::from(now).to_string().into_bytes();
        }
        &self.text
    }
}

thread_local! {
    static DATE: RefCell<DateCache> = RefCell::new(DateCache::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast(req: &str) -> Option<Candidate<'_>> {
        match parse(req.as_bytes()) {
            Parsed::Request { fast, .. } => fast,
            other => panic!("{req:?}: {other:?}"),
        }
    }

    #[test]
    fn plain_segment_requests_qualify() {
        let c = fast("GET /hls/live/e0-00000001.m4s HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(
            (c.stream, c.file, c.head_only),
            ("live", "e0-00000001.m4s", false)
        );
        let c = fast(
            "HEAD /hls/cam_2/e3-init.mp4?v=1a HTTP/1.1\r\nhost: x\r\nConnection: Keep-Alive\r\n\
             Sec-Fetch-Mode: cors\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (c.stream, c.file, c.head_only),
            ("cam_2", "e3-init.mp4", true)
        );
        assert!(
            fast("GET /hls/live/e0-00000001.ts HTTP/1.1\r\nContent-Length: 0\r\n\r\n").is_some()
        );
    }

    #[test]
    fn anything_else_goes_to_actix() {
        for req in [
            "GET /hls/live/vod.m3u8?from=1 HTTP/1.1\r\n\r\n",
            "GET /markers HTTP/1.1\r\n\r\n",
            "GET /hls/live/e0-00000001.m4s HTTP/1.0\r\n\r\n",
            "POST /hls/live/e0-00000001.m4s HTTP/1.1\r\n\r\n",
            "GET /hls/live/e0-00000001.m4s HTTP/1.1\r\nRange: bytes=0-1\r\n\r\n",
            "GET /hls/live/e0-00000001.m4s HTTP/1.1\r\nIf-None-Match: \"a\"\r\n\r\n",
            "GET /hls/live/e0-00000001.m4s HTTP/1.1\r\nOrigin: http://a\r\n\r\n",
            "GET /hls/live/e0-00000001.m4s HTTP/1.1\r\nX-Unknown: 1\r\n\r\n",
            "GET /hls/live/e0-00000001.m4s HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET /hls/live/e0-00000001.m4s HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "GET /hls/li%76e/e0-00000001.m4s HTTP/1.1\r\n\r\n",
            "GET /hls/live/sub/e0-00000001.m4s HTTP/1.1\r\n\r\n",
            "GET /hls//e0-00000001.m4s HTTP/1.1\r\n\r\n",
            "GET /hls/live/../e0-00000001.m4s HTTP/1.1\r\n\r\n",
            "GET /hls/live/e0-1.m4s HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(fast(req), None, "{req:?}");
        }
    }

    #[test]
    fn requests_are_framed_with_their_bodies() {
        let req = b"POST /markers HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET";
        assert_eq!(
            parse(req),
            Parsed::Request {
                head_len: req.len() - 8,
                body_len: 5,
                fast: None
            }
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial);
        for opaque in [
            &b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"CONNECT a:1 HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01 binary",
            b"GET /a b c\r\n\r\n",
        ] {
            assert_eq!(
                parse(opaque),
                Parsed::Opaque,
                "{:?}",
                String::from_utf8_lossy(opaque)
            );
        }
    }
}
