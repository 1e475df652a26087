//! Helpers of the API tests: real media cut by ffmpeg, a real store (redb file or redis-server),
//! the server in-process or as `hlsmark serve` processes, and a raw HTTP/1.1 client (raw so that
//! traversal paths reach the server byte for byte).

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // test helpers

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hlsmark_api::{Api, ApiConfig};
use hlsmark_clock::{Duration90k, Epoch, FrameRate, GenTime, HlsTime, Segment, Timeline, UtcTime};
use hlsmark_store::{Store, StreamName};

pub const TOKEN: &str = "test-token-0123456789";
pub const D: i64 = 90_000;

/// Wall anchor of epoch 0 of every fixture stream.
pub fn anchor() -> UtcTime {
    UtcTime::parse_rfc3339("2026-11-24T07:00:00Z").unwrap()
}

/// Cuts `secs` one-second fMP4 segments (media time starting at `first_seq` seconds) of a 160x96 test pattern with ffmpeg into `dir`, named the
/// way the generator names them: `e{epoch}-init.mp4`, `e{epoch}-{seq:08}.m4s` from `first_seq`.
pub fn cut_segments(dir: &Path, epoch: u32, first_seq: u64, secs: u32) -> Vec<String> {
    hlsmark_testkit::require_program("ffmpeg");
    let work = tempfile::tempdir().unwrap();
    let status = Command::new("ffmpeg")
        .current_dir(work.path())
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=160x96:rate=30")
        .args(["-t", &secs.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-g", "30", "-keyint_min", "30", "-sc_threshold", "0"])
        // Media time inside the segments is the HLS time of the index (sequence-aligned).
        .args(["-output_ts_offset", &first_seq.to_string()])
        .args(["-f", "hls", "-hls_segment_type", "fmp4", "-hls_time", "1"])
        .args([
            "-hls_playlist_type",
            "vod",
            "-hls_fmp4_init_filename",
            "init.mp4",
        ])
        .args(["-hls_segment_filename", "seg%d.m4s", "out.m3u8"])
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg failed");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(
        work.path().join("init.mp4"),
        dir.join(format!("e{epoch}-init.mp4")),
    )
    .unwrap();
    let mut names = Vec::new();
    for i in 0..u64::from(secs) {
        let name = format!("e{epoch}-{:08}.m4s", first_seq + i);
        std::fs::copy(work.path().join(format!("seg{i}.m4s")), dir.join(&name)).unwrap();
        names.push(name);
    }
    names
}

/// The fixture stream "live": epoch 0 with seqs 0-5 (6 s), ffmpeg "restarted" with 1.5 s of wall
/// time lost, epoch 1 with seqs 6-8. Media files under `<data>/hls/live/`, records in `store`.
pub async fn publish_fixture(store: &Arc<dyn Store>, data: &Path) -> Timeline {
    let dir = data.join("hls").join("live");
    let (a, b) = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            (cut_segments(&dir, 0, 0, 6), cut_segments(&dir, 1, 6, 3))
        })
        .await
        .unwrap()
    };
    let stream = StreamName::live();
    let fps = FrameRate::integer(30);
    let e0 = Epoch {
        index: 0,
        first_seq: 0,
        hls_start: HlsTime(0),
        gen_start: GenTime(0),
        utc_start: anchor(),
        fps,
        segment_frames: 30,
        hls_end: Some(HlsTime(6 * D)),
        pts_start: None,
    };
    let e1 = Epoch {
        index: 1,
        first_seq: 6,
        hls_start: HlsTime(6 * D),
        gen_start: GenTime(7 * D + D / 2),
        utc_start: anchor() + Duration90k(7 * D + D / 2),
        fps,
        segment_frames: 30,
        hls_end: None,
        pts_start: None,
    };
    store.put_epoch(&stream, &e0).await.unwrap();
    store.put_epoch(&stream, &e1).await.unwrap();
    let timeline = Timeline::new(vec![e0, e1]).unwrap();
    for (epoch, names, first) in [(0u32, a, 0u64), (1, b, 6)] {
        for (i, file) in names.into_iter().enumerate() {
            let seq = first + i as u64;
            let hls = timeline.segment_start(seq).unwrap();
            let seg = Segment {
                seq,
                epoch,
                hls_start: hls,
                duration: Duration90k(D),
                utc_start: timeline.hls_to_utc(hls).unwrap(),
                file,
                init_file: Some(format!("e{epoch}-init.mp4")),
                frames: Default::default(),
            };
            store.append_segment(&stream, &seg).await.unwrap();
        }
    }
    timeline
}

/// A test configuration on a free loopback port.
pub fn config(data: &Path, token: Option<&str>) -> ApiConfig {
    let mut c = ApiConfig::new(data.to_path_buf());
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.token = token.map(str::to_owned);
    c.workers = 2;
    // A directory the page tests fill (the embedded page has tests of its own).
    c.frontend_dir = Some(data.join("no-frontend"));
    c.sse_keepalive = Duration::from_secs(1);
    c.shutdown_timeout = Duration::from_secs(2);
    c
}

/// The API in-process on its own runtime, with a store and the fixture published.
pub struct TestServer {
    pub addr: SocketAddr,
    pub rt: tokio::runtime::Runtime,
    pub store: Arc<dyn Store>,
    pub timeline: Option<Timeline>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<std::sync::mpsc::Receiver<()>>,
    pub data: tempfile::TempDir,
}

impl TestServer {
    /// Embedded store in a temp dir, fixture published, token set.
    pub fn start() -> Self {
        Self::start_with(None, true, Some(TOKEN))
    }

    /// `store_spec`: `None` = a redb file in the temp dir.
    pub fn start_with(store_spec: Option<String>, fixture: bool, token: Option<&str>) -> Self {
        Self::start_configured(store_spec, fixture, token, |_| {})
    }

    /// Like [`Self::start_with`], with a last word on the configuration.
    pub fn start_configured(
        store_spec: Option<String>,
        fixture: bool,
        token: Option<&str>,
        adjust: impl FnOnce(&mut ApiConfig),
    ) -> Self {
        let data = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let spec = store_spec.unwrap_or_else(|| {
            data.path()
                .join("hlsmark.redb")
                .to_string_lossy()
                .into_owned()
        });
        let store = rt.block_on(hlsmark_store::open(&spec, "t")).unwrap();
        let timeline = fixture.then(|| rt.block_on(publish_fixture(&store, data.path())));
        let mut s = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            rt,
            store,
            timeline,
            stop: None,
            done: None,
            data,
        };
        let mut cfg = config(s.data.path(), token);
        adjust(&mut cfg);
        s.serve(cfg);
        s
    }

    fn serve(&mut self, cfg: ApiConfig) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        self.addr = listener.local_addr().unwrap();
        let api = Api::from_listener(listener, cfg, self.store.clone()).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        self.rt.spawn(async move {
            api.run_until(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
            let _ = done_tx.send(());
        });
        self.stop = Some(tx);
        self.done = Some(done_rx);
        assert!(hlsmark_testkit::wait_for_port(
            self.addr.port(),
            Duration::from_secs(10)
        ));
    }

    pub fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, &[], b"")
    }

    pub fn post_marker(&self, body: &serde_json::Value) -> Resp {
        let auth = format!("Bearer {TOKEN}");
        request(
            self.addr,
            "POST",
            "/markers",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Stops the server gracefully and waits for it.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.recv_timeout(Duration::from_secs(10));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    /// Asserts the JSON error shape and returns the code.
    pub fn error_code(&self) -> String {
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "error without JSON content type: {self:?}"
        );
        let v = self.json();
        let code = v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code: {v}"));
        let msg = v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.message: {v}"));
        assert!(!msg.is_empty());
        assert!(
            code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{code}"
        );
        code.to_owned()
    }
}

/// One HTTP/1.1 request over a fresh connection, the path sent exactly as given.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    // The server may answer (413) and close before reading a large body: ignore write errors.
    let _ = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(body));
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..p]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        let start = p + 2;
        out.extend_from_slice(&b[start..(start + n).min(b.len())]);
        b = &b[(start + n + 2).min(b.len())..];
    }
    out
}

/// An open `GET /markers/live` connection, read line by line.
pub struct Sse {
    reader: BufReader<TcpStream>,
}

impl Sse {
    pub fn connect(addr: SocketAddr, path: &str) -> Self {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.contains(" 200 "), "SSE status line: {line}");
        // Skip the head and read up to the first comment the server sends on connect.
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.contains(": connected") {
                break;
            }
        }
        Self { reader }
    }

    /// The `data:` of the next `event: marker` (chunk-size lines are skipped).
    pub fn next_marker(&mut self) -> serde_json::Value {
        let mut in_marker = false;
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .expect("SSE read (timed out?)");
            assert!(n > 0, "SSE stream ended");
            let line = line.trim_end();
            if line == "event: marker" {
                in_marker = true;
            } else if in_marker && let Some(d) = line.strip_prefix("data: ") {
                return serde_json::from_str(d).unwrap();
            }
        }
    }
}

/// Path of the `hlsmark` binary built next to this test (`cargo build --bins` builds it; the
/// test command does that before the tests).
pub fn hlsmark_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("hlsmark");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p hlsmark` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A `hlsmark serve` process, SIGTERMed when dropped.
pub struct ServeProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl ServeProcess {
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let port = hlsmark_testkit::free_port();
        let mut child = Command::new(hlsmark_bin())
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .envs(envs.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        if !hlsmark_testkit::wait_for_port(port, Duration::from_secs(20)) {
            let _ = child.kill();
            panic!("hlsmark serve did not listen on {port}");
        }
        Self {
            child,
            addr: ([127, 0, 0, 1], port).into(),
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().unwrap()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
