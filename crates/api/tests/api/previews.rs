//! Previews and thumbnails against a real `hlsmark run` (the generator through ffmpeg, the
//! preview tap on its FIFO, the API) read over real sockets and decoded by real decoders: the
//! endless GIF by the `gif` crate, MJPEG parts and thumbnails by the `image` crate's JPEG decoder.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hlsmark_testkit::decode::is_mint;

use crate::common::{hlsmark_bin, request};

/// Generator settings of every test: small frames, frequent short events (the mint corner).
const WIDTH: u32 = 640;
const BLOCK: u32 = 80;

/// A `hlsmark run` process with the generator, killed when dropped.
struct Run {
    child: Child,
    addr: SocketAddr,
    _data: tempfile::TempDir,
}

impl Run {
    fn start(extra: &[&str]) -> Self {
        let data = tempfile::tempdir().unwrap();
        let port = hlsmark_testkit::free_port();
        let mut child = Command::new(hlsmark_bin())
            .arg("run")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data.path())
            .args(if extra.contains(&"--width") {
                vec![]
            } else {
                vec![
                    "--width".to_owned(),
                    WIDTH.to_string(),
                    "--height".into(),
                    "360".into(),
                ]
            })
            .args(["--block-size", &BLOCK.to_string()])
            .args(["--event-mean", "1500ms", "--event-duration", "1s"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        if !hlsmark_testkit::wait_for_port(port, Duration::from_secs(20)) {
            let _ = child.kill();
            panic!("hlsmark run did not listen on {port}");
        }
        Self {
            child,
            addr: ([127, 0, 0, 1], port).into(),
            _data: data,
        }
    }

    fn metric(&self, series: &str) -> f64 {
        let text = request(self.addr, "GET", "/metrics", &[], b"").text();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until `f` holds (polling), or panics naming `what`.
    fn wait(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Self) -> bool) {
        let t0 = Instant::now();
        while !f(self) {
            assert!(t0.elapsed() < timeout, "{what}: not within {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An endless answer (chunked) read as it comes.
struct Endless {
    status: u16,
    head: String,
    sock: TcpStream,
    /// The bytes after the head, still chunked.
    raw: Vec<u8>,
    /// `raw` decoded so far.
    body: Vec<u8>,
    decoded: usize,
}

impl Endless {
    fn open(addr: SocketAddr, path: &str) -> Self {
        let mut sock = TcpStream::connect(addr).unwrap();
        write!(sock, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = sock.read(&mut chunk).unwrap();
            assert!(n > 0, "closed before the head");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status = head[9..12].parse().unwrap();
        let mut e = Self {
            status,
            head,
            sock,
            raw: buf[end..].to_vec(),
            body: Vec::new(),
            decoded: 0,
        };
        e.dechunk();
        e
    }

    /// Moves every whole chunk of `raw` into `body`.
    fn dechunk(&mut self) {
        if !self
            .head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            self.body.extend_from_slice(&self.raw[self.decoded..]);
            self.decoded = self.raw.len();
            return;
        }
        loop {
            let rest = &self.raw[self.decoded..];
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if rest.len() < eol + 2 + size + 2 {
                return;
            }
            self.body.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            self.decoded += eol + 2 + size + 2;
        }
    }

    /// Reads for `d` (or until the server closes).
    fn read_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        let mut chunk = [0u8; 65536];
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.sock.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    self.raw.extend_from_slice(&chunk[..n]);
                    self.dechunk();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
}

/// Mean colour of a small patch inside the mint corner block of an RGB(A) picture `w` wide
/// showing the generator's frame scaled to `w`.
fn corner(px: &[u8], w: u32, channels: usize) -> [u8; 3] {
    let block = BLOCK * w / WIDTH;
    let (from, to) = (block / 4, block * 3 / 4);
    let mut sum = [0u64; 3];
    let mut n = 0;
    for y in from..to {
        for x in from..to {
            let i = (y * w + x) as usize * channels;
            for c in 0..3 {
                sum[c] += u64::from(px[i + c]);
            }
            n += 1;
        }
    }
    sum.map(|s| u8::try_from(s / n).unwrap())
}

/// Frames of a GIF stream cut anywhere, as a viewer sees them: (width, height, RGBA) of the
/// screen after each whole frame is drawn (a frame may cover part of the screen, its transparent
/// pixels leaving the picture before; every frame keeps what it drew), checking that each has a
/// local palette and says "do not dispose", and counting the frames that covered the screen.
fn gif_frames(bytes: &[u8]) -> (Vec<(u16, u16, Vec<u8>)>, usize) {
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::RGBA);
    let mut d = opts.read_info(bytes).unwrap();
    let (sw, sh) = (usize::from(d.width()), usize::from(d.height()));
    let full = (d.width(), d.height());
    let mut screen = vec![0u8; sw * sh * 4];
    let mut out = Vec::new();
    let mut whole = 0;
    // The last frame may be cut short (the read stopped mid-frame): an error ends the loop.
    while let Ok(Some(f)) = d.read_next_frame() {
        assert!(
            f.palette.is_some(),
            "frame {} has no local palette",
            out.len()
        );
        assert_eq!(f.dispose, gif::DisposalMethod::Keep);
        let (l, t, w) = (
            usize::from(f.left),
            usize::from(f.top),
            usize::from(f.width),
        );
        if (f.width, f.height) == full && f.transparent.is_none() {
            whole += 1;
        }
        for (i, px) in f.buffer.chunks_exact(4).enumerate() {
            if px[3] != 0 {
                let at = ((t + i / w) * sw + l + i % w) * 4;
                screen[at..at + 4].copy_from_slice(px);
            }
        }
        out.push((full.0, full.1, screen.clone()));
    }
    (out, whole)
}

/// `(headers, jpeg)` of every whole part of a multipart/x-mixed-replace body.
fn mjpeg_parts(body: &[u8], boundary: &str) -> Vec<Vec<u8>> {
    let delim = format!("--{boundary}\r\n");
    assert!(
        body.starts_with(delim.as_bytes()),
        "starts with the boundary"
    );
    let mut at = delim.len();
    let mut parts = Vec::new();
    while let Some(h) = body[at..].windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&body[at..at + h]).to_ascii_lowercase();
        assert!(head.contains("content-type: image/jpeg"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("Content-Length")
            .trim()
            .parse()
            .unwrap();
        let start = at + h + 4;
        let end = start + len + 2 + delim.len();
        if end > body.len() {
            break;
        }
        assert_eq!(
            &body[start + len..end],
            format!("\r\n{delim}").as_bytes(),
            "each part closes with the boundary"
        );
        parts.push(body[start..start + len].to_vec());
        at = end;
    }
    parts
}

#[test]
fn endless_gif_is_decoded_frame_by_frame_at_the_rate_with_mint_during_events() {
    let run = Run::start(&[]);
    run.wait("first segment", Duration::from_secs(20), |r| {
        request(r.addr, "GET", "/hls/live/index.m3u8", &[], b"").status == 200
    });
    let t0 = Instant::now();
    let mut g = Endless::open(run.addr, "/preview/live.gif");
    assert_eq!(g.status, 200, "{}", g.head);
    assert!(g.head.contains("content-type: image/gif"), "{}", g.head);
    // Time to the first frame: the header and the first frame come together.
    while g.body.len() < 800 {
        g.read_for(Duration::from_millis(20));
    }
    let first = t0.elapsed();
    let secs = 4.0;
    g.read_for(Duration::from_secs_f64(secs));
    let body = &g.body;
    assert!(body.starts_with(b"GIF89a"));
    assert_eq!(u16::from_le_bytes([body[6], body[7]]), 480);
    assert_eq!(u16::from_le_bytes([body[8], body[9]]), 270);
    assert_eq!(
        body[10] & 0x80,
        0,
        "no global colour table: local palettes only"
    );
    assert_eq!(&body[13..16], &[0x21, 0xFF, 0x0B]);
    assert_eq!(&body[16..27], b"NETSCAPE2.0");
    assert_eq!(
        &body[27..32],
        &[0x03, 0x01, 0x00, 0x00, 0x00],
        "loops for ever"
    );
    // The generator's checkerboard scrolls all over, so its changes are no smaller than whole
    // pictures and most frames come whole; a still scene's come as changes (the hub's tests).
    let (frames, whole) = gif_frames(body);
    assert!(whole >= 1, "the first frame covers the screen");
    let n = frames.len() as f64;
    eprintln!(
        "GIF: first frame after {first:?}, {n} frames in {secs} s, {} bytes/s",
        body.len() as f64 / secs
    );
    // 10 fps by default; a shared 2-core machine may lose a few.
    assert!(
        (0.5 * 10.0 * secs..=1.2 * 10.0 * secs + 2.0).contains(&n),
        "{n} frames in {secs} s"
    );
    assert!(
        first < Duration::from_secs(2),
        "first frame after {first:?}"
    );
    let mint: Vec<bool> = frames
        .iter()
        .map(|(w, h, px)| {
            assert_eq!((*w, *h), (480, 270));
            is_mint(corner(px, 480, 4))
        })
        .collect();
    assert!(
        mint.iter().any(|m| !*m),
        "the corner is grey outside events"
    );
    // Events every ~2.5 s on average, each 1 s: some within the 4 s read, very likely.
    assert!(
        mint.iter().any(|m| *m),
        "the corner turned mint during an event"
    );
    // The stream never ends: no trailer arrived (the last byte read is not the trailer of a
    // completed stream) and the connection is still open.
    let so_far = g.body.len();
    g.read_for(Duration::from_millis(500));
    assert!(g.body.len() > so_far, "still sending");
    assert_ne!(g.body.last(), Some(&0x3B), "no trailer");
    assert_eq!(
        request(run.addr, "GET", "/preview/live.gif?width=2000", &[], b"").error_code(),
        "invalid_parameter"
    );
    assert_eq!(
        request(run.addr, "GET", "/preview/live.mjpeg?fps=0", &[], b"").error_code(),
        "invalid_parameter"
    );
    // Not a number: the same code, and the message gives the range (not u32's).
    let r = request(run.addr, "GET", "/preview/live.gif?width=-1", &[], b"");
    assert_eq!(r.error_code(), "invalid_parameter");
    assert!(r.text().contains("64 to 1280"), "{}", r.text());
    assert_eq!(
        request(run.addr, "GET", "/preview/nosuch.gif", &[], b"").error_code(),
        "unknown_stream"
    );
    assert_eq!(
        request(run.addr, "GET", "/preview/live.png", &[], b"").status,
        404
    );
}

#[test]
fn mjpeg_parts_are_whole_jpegs_and_a_slow_viewer_loses_frames_without_slowing_a_fast_one() {
    // Big pictures at 15 fps (passed through as ffmpeg made them): the slow viewer's socket
    // buffers (up to tcp_wmem's 4 MiB on the server side) fill within seconds, not minutes.
    let run = Run::start(&[
        "--width",
        "1280",
        "--height",
        "720",
        "--preview-width",
        "960",
        "--preview-fps",
        "15",
    ]);
    run.wait("first segment", Duration::from_secs(20), |r| {
        request(r.addr, "GET", "/hls/live/index.m3u8", &[], b"").status == 200
    });
    // The slow viewer opens first and never reads.
    let slow = Endless::open(run.addr, "/preview/live.mjpeg");
    assert_eq!(slow.status, 200);
    let mut fast = Endless::open(run.addr, "/preview/live.mjpeg");
    assert_eq!(fast.status, 200);
    let boundary = fast
        .head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .split("boundary=")
                .nth(1)
                .map(str::to_owned)
        })
        .expect("boundary")
        .trim()
        .to_owned();
    assert!(fast.head.contains("multipart/x-mixed-replace"));
    let t0 = Instant::now();
    let dropped = "hlsmark_preview_frames_dropped_total{stream=\"live\",format=\"mjpeg\"}";
    // Read until the slow viewer's socket buffers are full and its queue overflows.
    while run.metric(dropped) == 0.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "the slow viewer never lost a picture"
        );
        fast.read_for(Duration::from_millis(500));
    }
    fast.read_for(Duration::from_secs(2));
    let secs = t0.elapsed().as_secs_f64();
    // What the one encoder made: every picture went to both viewers, sent or dropped.
    let sent = "hlsmark_preview_frames_sent_total{stream=\"live\",format=\"mjpeg\"}";
    let made = (run.metric(sent) + run.metric(dropped)) / 2.0;
    fast.read_for(Duration::from_millis(300));
    let parts = mjpeg_parts(&fast.body, &boundary);
    let n = parts.len() as f64;
    eprintln!(
        "MJPEG: {n} parts in {secs:.1} s ({made} made), {:.0} bytes/s; slow viewer lost {}",
        fast.body.len() as f64 / secs,
        run.metric(dropped)
    );
    // The fast viewer got every picture the encoder made (whatever rate a busy machine let
    // ffmpeg deliver: 5.8 a second of the asked 15 was seen at load 5), and pictures kept
    // coming (the rate itself is the benchmark's, scripts/bench-previews.sh).
    assert!(
        n >= made - 1.0,
        "the fast viewer lost pictures: {n} of {made}"
    );
    assert!(n >= 0.2 * 15.0 * secs, "{n} parts in {secs:.1} s");
    for (i, p) in parts.iter().enumerate() {
        let img = image::load_from_memory_with_format(p, image::ImageFormat::Jpeg)
            .unwrap_or_else(|e| panic!("part {i}: {e}"));
        assert_eq!((img.width(), img.height()), (960, 540));
    }
    drop(slow);
}

#[test]
fn the_viewer_limit_answers_503_and_the_encoder_stops_with_its_last_viewer() {
    let run = Run::start(&["--preview-max-viewers", "2"]);
    run.wait("first segment", Duration::from_secs(20), |r| {
        request(r.addr, "GET", "/hls/live/index.m3u8", &[], b"").status == 200
    });
    let encoders = "hlsmark_preview_encoders{stream=\"live\",format=\"gif\"}";
    let mut a = Endless::open(run.addr, "/preview/live.gif");
    let b = Endless::open(run.addr, "/preview/live.gif");
    assert_eq!((a.status, b.status), (200, 200));
    a.read_for(Duration::from_millis(300));
    assert!(a.body.starts_with(b"GIF89a"));
    assert_eq!(run.metric(encoders), 1.0, "one encoder for both viewers");
    let third = request(run.addr, "GET", "/preview/live.mjpeg", &[], b"");
    assert_eq!(third.status, 503);
    assert_eq!(third.error_code(), "too_many_viewers");
    assert!(third.header("retry-after").is_some());
    drop((a, b));
    run.wait("encoder stopped", Duration::from_secs(5), |r| {
        r.metric(encoders) == 0.0
    });
    let again = Endless::open(run.addr, "/preview/live.gif");
    assert_eq!(again.status, 200, "places came back");
}

#[test]
fn preview_viewers_are_limited_per_address_apart_from_marker_feeds() {
    let run = Run::start(&["--sse-max-per-ip", "2", "--preview-max-viewers", "50"]);
    run.wait("first segment", Duration::from_secs(20), |r| {
        request(r.addr, "GET", "/hls/live/index.m3u8", &[], b"").status == 200
    });
    let a = Endless::open(run.addr, "/preview/live.gif");
    let b = Endless::open(run.addr, "/preview/live.mjpeg");
    assert_eq!((a.status, b.status), (200, 200));
    let third = request(run.addr, "GET", "/preview/live.gif", &[], b"");
    assert_eq!(third.status, 503, "{}", third.text());
    assert_eq!(third.error_code(), "too_many_connections");
    assert!(
        third.text().contains("preview") && third.text().contains("--sse-max-per-ip"),
        "the refusal names the kind and the flag: {}",
        third.text()
    );
    // Marker feeds have their own count: two previews do not keep this address from its feeds.
    let feed1 = Endless::open(run.addr, "/markers/live");
    let feed2 = Endless::open(run.addr, "/markers/live");
    assert_eq!((feed1.status, feed2.status), (200, 200));
    // A place comes back when its viewer goes (when the connection's task ends, shortly after).
    drop(a);
    let mut again = None;
    run.wait("a preview place back", Duration::from_secs(5), |r| {
        let e = Endless::open(r.addr, "/preview/live.gif");
        let ok = e.status == 200;
        again = Some(e);
        ok
    });
    drop((b, feed1, feed2, again));
}

#[test]
fn thumbnails_show_the_exact_frame_mint_at_a_marker_and_not_one_frame_before() {
    let run = Run::start(&[]);
    let mut marker = serde_json::Value::Null;
    run.wait("a marker", Duration::from_secs(30), |r| {
        let m = request(r.addr, "GET", "/markers?limit=1", &[], b"").json();
        marker = m["markers"][0].clone();
        !marker.is_null()
    });
    let id = marker["id"].as_str().unwrap();
    let hls = marker["hls"].as_f64().unwrap();
    let fetch = |path: &str| {
        let r = request(run.addr, "GET", path, &[], b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("image/jpeg"));
        let img = image::load_from_memory_with_format(&r.body, image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8();
        (r, img)
    };
    let t0 = Instant::now();
    let (cold, at) = fetch(&format!("/markers/{id}/thumbnail.jpg"));
    let cold_ms = t0.elapsed().as_secs_f64() * 1e3;
    assert_eq!(cold.header("x-hlsmark-cache"), Some("miss"));
    assert_eq!(at.width(), WIDTH, "the video's own size by default");
    assert!(
        is_mint(corner(at.as_raw(), WIDTH, 3)),
        "the marker's frame is mint"
    );
    let t1 = Instant::now();
    let (warm, _) = fetch(&format!("/thumbnail/live.jpg?t={hls}"));
    let warm_ms = t1.elapsed().as_secs_f64() * 1e3;
    eprintln!("thumbnail: cold {cold_ms:.0} ms, warm {warm_ms:.1} ms");
    assert_eq!(
        warm.header("x-hlsmark-cache"),
        Some("hit"),
        "same frame, from the cache"
    );
    assert_eq!(
        warm.header("x-hlsmark-frame"),
        cold.header("x-hlsmark-frame")
    );
    let (_, before) = fetch(&format!(
        "/thumbnail/live.jpg?t={}&width=320",
        hls - 1.0 / 30.0
    ));
    assert_eq!(before.width(), 320);
    assert!(
        !is_mint(corner(before.as_raw(), 320, 3)),
        "the frame before the marker is not"
    );
    let utc = marker["utc"].as_str().unwrap();
    let (by_utc, _) = fetch(&format!("/thumbnail/live.jpg?t={utc}"));
    assert_eq!(
        by_utc.header("x-hlsmark-frame"),
        cold.header("x-hlsmark-frame")
    );
    for (path, status, code) in [
        ("/thumbnail/live.jpg?t=99999", 404, "no_frame"),
        ("/thumbnail/live.jpg?t=-5", 404, "no_frame"),
        ("/thumbnail/live.jpg", 400, "invalid_time"),
        ("/thumbnail/live.jpg?t=abc", 400, "invalid_time"),
        ("/thumbnail/live.jpg?t=1&width=9", 400, "invalid_parameter"),
        ("/thumbnail/live.jpg?t=1&bogus=1", 400, "invalid_query"),
        ("/thumbnail/nosuch.jpg?t=1", 404, "unknown_stream"),
        ("/markers/not-a-uuid/thumbnail.jpg", 400, "invalid_id"),
        (
            "/markers/00000000-0000-0000-0000-000000000000/thumbnail.jpg",
            404,
            "marker_not_found",
        ),
    ] {
        let r = request(run.addr, "GET", path, &[], b"");
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (status, code),
            "{path}"
        );
    }
}

#[test]
fn marker_row_thumbnails_are_made_ahead_once_the_seek_bar_track_is_asked_for() {
    let run = Run::start(&[]);
    // Nobody looking: nothing is made.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(run.metric("hlsmark_thumbnails_made_ahead_total"), 0.0);
    // The page asks for the seek bar's track: the stream's tiler starts, and from then on the
    // row thumbnails of new markers are made as their segments are published, before anyone
    // asks for them.
    let track = request(run.addr, "GET", "/thumbs/live.vtt", &[], b"");
    assert_eq!(track.status, 200, "{}", track.text());
    run.wait("row thumbnails made ahead", Duration::from_secs(30), |r| {
        r.metric("hlsmark_thumbnails_made_ahead_total") >= 2.0
    });
    let made = run.metric("hlsmark_thumbnails_made_ahead_total");
    assert!(
        run.metric("hlsmark_thumbnails_cached") >= made,
        "what was made ahead is in the cache"
    );
    // The page's request for a row (160 px wide) is then a cache hit, showing the marker's frame.
    let list = request(run.addr, "GET", "/markers?limit=50", &[], b"").json();
    let mut hits = 0;
    for m in list["markers"].as_array().unwrap().iter().rev() {
        let id = m["id"].as_str().unwrap();
        let r = request(
            run.addr,
            "GET",
            &format!("/markers/{id}/thumbnail.jpg?width=160"),
            &[],
            b"",
        );
        if r.status != 200 || r.header("x-hlsmark-cache") != Some("hit") {
            continue;
        }
        let img = image::load_from_memory_with_format(&r.body, image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8();
        assert_eq!(img.width(), 160, "the page's row width");
        assert!(
            is_mint(corner(img.as_raw(), 160, 3)),
            "the marker's own frame (mint)"
        );
        hits += 1;
    }
    assert!(
        hits >= 1,
        "a marker row's thumbnail came from the cache ({made} made ahead)"
    );
}

#[test]
fn preview_answers_end_cleanly_when_the_server_shuts_down() {
    // A shutdown timeout far longer than the test allows: the answers must end because the
    // server is stopping, not because it gave up waiting for them.
    let mut run = Run::start(&["--shutdown-timeout", "60s"]);
    run.wait("first segment", Duration::from_secs(20), |r| {
        request(r.addr, "GET", "/hls/live/index.m3u8", &[], b"").status == 200
    });
    let mut gif = Endless::open(run.addr, "/preview/live.gif");
    let mut mjpeg = Endless::open(run.addr, "/preview/live.mjpeg");
    assert_eq!((gif.status, mjpeg.status), (200, 200));
    gif.read_for(Duration::from_secs(1));
    mjpeg.read_for(Duration::from_secs(1));
    assert!(gif.body.starts_with(b"GIF89a"), "no GIF header");
    assert!(mjpeg.body.len() > 1000, "no MJPEG part");
    let t0 = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(run.child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    for (name, v) in [("gif", &mut gif), ("mjpeg", &mut mjpeg)] {
        v.read_for(Duration::from_secs(30));
        // The chunked body's last chunk: the server ended the answer, it was not cut off.
        assert!(
            v.raw.ends_with(b"0\r\n\r\n"),
            "{name}: the answer did not end with its last chunk ({} bytes)",
            v.raw.len()
        );
    }
    let status = run.child.wait().unwrap();
    let took = t0.elapsed();
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(20), "shutdown took {took:?}");
}

/// A picture of the live edge whose segment is not cut yet (a "now" marker's, asked for right
/// after its POST by a webhook receiver or a notification) is waited for, as a marker's POST
/// waits, instead of 404 `no_frame` for the second until the segment is out.
#[test]
fn a_picture_of_the_live_edge_waits_for_its_segment() {
    let run = Run::start(&[]);
    let mut edge = 0.0;
    run.wait("a published segment", Duration::from_secs(30), |r| {
        let t = request(r.addr, "GET", "/timeline", &[], b"").json();
        edge = t["live_edge"].as_f64().unwrap_or(0.0);
        edge > 0.0
    });
    // Past the newest segment: its frame exists only once the next segment is cut.
    let t = edge + 0.3;
    let r = request(
        run.addr,
        "GET",
        &format!("/thumbnail/live.jpg?t={t}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let frame = r.header("x-hlsmark-frame").unwrap_or_default().to_owned();
    let at: i64 = frame
        .split("hls_90k=")
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{frame}"));
    #[allow(clippy::cast_possible_truncation)]
    let want = (t * 90_000.0).round() as i64;
    assert!(
        at <= want + 45 && want - at < 3_000,
        "the frame showing at {t} s: {frame}"
    );
}
