//! Webhooks end to end (issue 16), on the embedded store and on a real redis-server: the real
//! `hlsmark run` (generator events and POSTed markers) delivers to a real HTTP receiver that
//! first answers 500, is then killed, and comes back on the same port while hlsmark itself is
//! SIGKILLed and started again on the same store. Every marker must arrive (answered 200), each
//! request signed (the HMAC is recomputed here with the RustCrypto crates, as a receiver would),
//! a marker's repeated deliveries carry one delivery id, and `/metrics` shows the outbox
//! (failed attempts, delivered, nothing pending at the end, the URL's token masked).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use hlsmark_testkit::{RedisServer, free_port, http, require_program, wait_for_port};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

const TOKEN: &str = "test-token-0123456789";
const SECRET: &str = "webhook-secret-for-tests-42";
const URL_TOKEN: &str = "s3cr3t-query-token";

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
    answered: u16,
}

/// A real HTTP/1.1 receiver (std sockets, one request per connection) that answers 500 to its
/// first `fail_first` requests, then 200. `stop` closes the socket: the port refuses
/// connections until a receiver is started on it again.
struct Receiver {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(port: u16, fail_first: usize, log: Arc<Mutex<Vec<Received>>>) -> Self {
        Self::start_slow(port, fail_first, Duration::ZERO, log)
    }

    /// Each request answered after `delay`, each on a thread of its own (concurrent).
    fn start_slow(
        port: u16,
        fail_first: usize,
        delay: Duration,
        log: Arc<Mutex<Vec<Received>>>,
    ) -> Self {
        // std sets SO_REUSEADDR: the same port binds again right after a stop.
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let n = seen.fetch_add(1, Ordering::SeqCst);
                    let status = if n < fail_first { 500 } else { 200 };
                    if delay.is_zero() {
                        if let Some(r) = serve_one(conn, status, delay) {
                            log.lock().unwrap().push(r);
                        }
                    } else {
                        let log = Arc::clone(&log);
                        std::thread::spawn(move || {
                            if let Some(r) = serve_one(conn, status, delay) {
                                log.lock().unwrap().push(r);
                            }
                        });
                    }
                }
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_one(mut conn: TcpStream, status: u16, delay: Duration) -> Option<Received> {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    if !line.starts_with("POST /hook?token=") {
        return None;
    }
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    std::thread::sleep(delay);
    // A client gone meanwhile (a killed node) still counts as received: the receiver acted.
    let reason = if status == 200 {
        "OK"
    } else {
        "Internal Server Error"
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    Some(Received {
        id: headers.get("webhook-id").cloned().unwrap_or_default(),
        timestamp: headers
            .get("webhook-timestamp")
            .cloned()
            .unwrap_or_default(),
        signature: headers
            .get("webhook-signature")
            .cloned()
            .unwrap_or_default(),
        body,
        answered: status,
    })
}

/// `hlsmark run` with its port and log; SIGKILLed when dropped.
struct Hlsmark {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Hlsmark {
    fn start(data: &Path, store: &[&str], receiver: u16) -> Self {
        Self::start_with(data, store, receiver, &["--event-mean", "3s"])
    }

    /// `extra`: `--event-mean` and any flag not given here.
    fn start_with(data: &Path, store: &[&str], receiver: u16, extra: &[&str]) -> Self {
        let mut args = vec!["--width", "160", "--height", "96", "--block-size", "16"];
        args.extend(["--preview-fps", "0", "--part-duration", "0"]);
        args.extend(["--event-duration", "500ms"]);
        args.extend(extra);
        Self::spawn("run", data, store, receiver, &args)
    }

    /// `sub` (`run` or `serve`) with the webhook flags.
    fn spawn(sub: &str, data: &Path, store: &[&str], receiver: u16, extra: &[&str]) -> Self {
        let port = free_port();
        let log = data.join(format!("run-{port}.log"));
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hlsmark"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .arg(sub)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data)
            .args(["--token", TOKEN])
            .args(store)
            .args(extra)
            .args([
                "--webhook",
                &format!("http://127.0.0.1:{receiver}/hook?token={URL_TOKEN}"),
            ])
            .args(["--webhook-secret", SECRET, "--webhook-timeout", "2s"])
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap();
        let mut h = Self { child, port, log };
        if !wait_for_port(port, Duration::from_secs(60)) {
            let _ = h.child.kill();
            panic!("hlsmark {sub} did not listen:\n{}", h.log());
        }
        h
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn json(&self, path: &str) -> serde_json::Value {
        let r = http::get(self.port, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    /// The live edge once a segment is out.
    fn wait_live(&self) -> f64 {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(r) = http::get(self.port, "/timeline")
                && r.status == 200
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.body)
                && let Some(edge) = v["live_edge"].as_f64()
                && edge > 1.0
            {
                return edge;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no live edge:\n{}", self.log());
    }

    fn post_marker(&self, label: &str) -> String {
        let edge = self.wait_live();
        let body = format!(
            r#"{{"label":"{label}","kind":"webhook-test","hls":{}}}"#,
            edge - 0.5
        );
        let r = http::request(
            "POST",
            self.port,
            "/markers",
            &[
                ("Authorization", &format!("Bearer {TOKEN}")),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 201, "POST /markers: {}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    /// Every marker id of the stream.
    fn marker_ids(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let mut cursor = String::new();
        loop {
            let v = self.json(&format!("/markers?from=0&to=1000000&limit=1000{cursor}"));
            for m in v["markers"].as_array().unwrap() {
                ids.insert(m["id"].as_str().unwrap().to_owned());
            }
            match v["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return ids,
            }
        }
    }

    fn metrics(&self) -> String {
        http::get(self.port, "/metrics").unwrap().text()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Hlsmark {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The value of the one `name{...}` series of `/metrics`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Marker id -> the 200-answered deliveries' bodies.
fn delivered(log: &Mutex<Vec<Received>>) -> BTreeMap<String, serde_json::Value> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|r| r.answered == 200)
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .filter_map(|v| Some((v["marker"]["id"].as_str()?.to_owned(), v)))
        .collect()
}

fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {limit:?}: {what}");
}

/// What a receiver does: recompute the Standard Webhooks signature over the raw body.
fn check_signature(r: &Received) {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{}.{}.", r.id, r.timestamp).as_bytes());
    mac.update(&r.body);
    let want = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(r.signature, want, "bad signature on {}", r.id);
    let ts: u64 = r.timestamp.parse().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts) < 300, "timestamp {ts} is not now ({now})");
}

fn scenario(data: &Path, store: &[&str]) {
    require_program("ffmpeg");
    let log = Arc::new(Mutex::new(Vec::new()));
    // The receiver's first three answers are 500.
    let mut receiver = Receiver::start(0, 3, Arc::clone(&log));
    let rport = receiver.port;
    let mut node = Hlsmark::start(data, store, rport);
    let mut posted = vec![];
    for i in 0..4 {
        posted.push(node.post_marker(&format!("first {i}")));
    }
    wait_for(Duration::from_secs(60), "the first deliveries", || {
        posted.iter().all(|id| delivered(&log).contains_key(id))
    });
    let m = node.metrics();
    assert!(
        metric(&m, "hlsmark_webhook_failed_attempts_total") >= 3.0,
        "{m}"
    );
    assert!(
        !m.contains(URL_TOKEN),
        "the URL's token leaked into /metrics"
    );
    assert!(m.contains("token=****"), "{m}");

    // The receiver goes away: attempts are refused (counted), entries stay pending.
    let failed_before = metric(&m, "hlsmark_webhook_failed_attempts_total");
    receiver.stop();
    for i in 0..3 {
        posted.push(node.post_marker(&format!("while down {i}")));
    }
    wait_for(
        Duration::from_secs(20),
        "refused attempts, pending entries",
        || {
            let m = node.metrics();
            metric(&m, "hlsmark_webhook_pending") >= 3.0
                && metric(&m, "hlsmark_webhook_failed_attempts_total") > failed_before
        },
    );
    // hlsmark dies too (mid-retry, perhaps mid-delivery), the receiver comes back on its
    // port, and hlsmark starts again on the same store.
    node.kill9();
    let mut receiver = Receiver::start(rport, 0, Arc::clone(&log));
    let node = Hlsmark::start(data, store, rport);
    for i in 0..3 {
        posted.push(node.post_marker(&format!("after restart {i}")));
    }
    // Every marker of the store (the generator's events included) arrives.
    let all = node.marker_ids();
    assert!(posted.iter().all(|id| all.contains(id)));
    wait_for(Duration::from_secs(90), "every marker delivered", || {
        let got = delivered(&log);
        all.iter().all(|id| got.contains_key(id))
    });

    let requests = log.lock().unwrap().clone();
    let mut ids_by_marker: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &requests {
        check_signature(r);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["event"], "marker.created");
        assert_eq!(v["stream"], "live");
        assert_eq!(v["delivery_id"].as_str(), Some(r.id.as_str()));
        let id = v["marker"]["id"].as_str().unwrap().to_owned();
        ids_by_marker.entry(id).or_default().insert(r.id.clone());
    }
    for (marker, ids) in &ids_by_marker {
        assert_eq!(
            ids.len(),
            1,
            "marker {marker} delivered under several ids: {ids:?}"
        );
    }
    // The body's marker is the API's view of it.
    for id in &posted {
        let api = node.json(&format!("/markers/{id}"));
        let got = &delivered(&log)[id]["marker"];
        for k in [
            "id",
            "label",
            "kind",
            "hls_90k",
            "utc",
            "duration_90k",
            "stream",
        ] {
            assert_eq!(got[k], api[k], "{k} of {id}");
        }
    }
    let m = node.metrics();
    wait_for(Duration::from_secs(10), "nothing pending", || {
        metric(&node.metrics(), "hlsmark_webhook_pending") == 0.0
    });
    assert_eq!(metric(&m, "hlsmark_webhook_dead_total"), 0.0, "{m}");
    assert!(
        metric(&m, "hlsmark_webhook_delivered_total") >= all.len() as f64,
        "{m}"
    );
    // Latency of a delivery on a healthy path: the POST's 201 -> the request received.
    let mut lat_ms = vec![];
    for i in 0..5 {
        let id = node.post_marker(&format!("latency {i}"));
        let t = Instant::now();
        while !delivered(&log).contains_key(&id) {
            assert!(t.elapsed() < Duration::from_secs(10), "no prompt delivery");
            std::thread::sleep(Duration::from_millis(1));
        }
        lat_ms.push(t.elapsed().as_millis());
    }
    lat_ms.sort_unstable();
    receiver.stop();
    let requests = log.lock().unwrap().clone();
    let duplicates = requests.iter().filter(|r| r.answered == 200).count()
        - requests
            .iter()
            .filter(|r| r.answered == 200)
            .map(|r| r.id.clone())
            .collect::<BTreeSet<_>>()
            .len();
    println!(
        "WEBHOOKS store={store:?} markers={} requests={} failed={} duplicates={duplicates} ack_to_receipt_ms={lat_ms:?}",
        all.len(),
        requests.len(),
        metric(&m, "hlsmark_webhook_failed_attempts_total"),
    );
}

#[test]
fn webhooks_survive_receiver_and_server_restarts_embedded() {
    let dir = tempfile::tempdir().unwrap();
    scenario(dir.path(), &[]);
}

#[test]
fn webhooks_survive_receiver_and_server_restarts_redis() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    scenario(dir.path(), &["--store", &redis.url()]);
}

/// Two nodes on one Redis store share one outbox: while both run, every marker is delivered
/// exactly once (a claim is exclusive); when one is SIGKILLed with deliveries in flight, the
/// other takes them over once their lease ends, under the same delivery ids.
#[test]
fn two_nodes_share_the_outbox_and_take_over_a_dead_nodes_deliveries() {
    require_program("ffmpeg");
    let redis = RedisServer::start();
    let url = redis.url();
    let store = ["--store", url.as_str()];
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let receiver = Receiver::start_slow(0, 0, Duration::from_millis(300), Arc::clone(&log));
    let mut a = Hlsmark::start_with(
        a_dir.path(),
        &store,
        receiver.port,
        &["--event-mean", "100h"],
    );
    let b = Hlsmark::spawn("serve", b_dir.path(), &store, receiver.port, &[]);
    let answered = |log: &Mutex<Vec<Received>>| -> Vec<(String, String)> {
        log.lock()
            .unwrap()
            .iter()
            .filter(|r| r.answered == 200)
            .filter_map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
                Some((v["marker"]["id"].as_str()?.to_owned(), r.id.clone()))
            })
            .collect()
    };
    let mut posted = vec![];
    for i in 0..3 {
        posted.push(a.post_marker(&format!("via a {i}")));
        posted.push(b.post_marker(&format!("via b {i}")));
    }
    wait_for(
        Duration::from_secs(30),
        "both nodes' markers delivered",
        || {
            let got: BTreeSet<String> = answered(&log).into_iter().map(|(m, _)| m).collect();
            posted.iter().all(|id| got.contains(id))
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let once = answered(&log);
    assert_eq!(
        once.len(),
        posted.len(),
        "a marker was delivered twice: {once:?}"
    );

    // A dies while its POSTs wait on the slow receiver.
    for i in 0..6 {
        posted.push(a.post_marker(&format!("before the kill {i}")));
    }
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    a.kill9();
    wait_for(
        Duration::from_secs(40),
        "every marker delivered by b",
        || {
            let got: BTreeSet<String> = answered(&log).into_iter().map(|(m, _)| m).collect();
            posted.iter().all(|id| got.contains(id))
        },
    );
    // ... and the outbox empties: b finishes what a had leased (delivering it again when a's
    // answer was lost with a, under the same delivery id).
    wait_for(Duration::from_secs(40), "nothing pending", || {
        metric(&b.metrics(), "hlsmark_webhook_pending") == 0.0
    });
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let all = answered(&log);
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, d) in &all {
        ids.entry(m.clone()).or_default().insert(d.clone());
    }
    assert!(ids.values().all(|d| d.len() == 1), "{ids:?}");
    for r in log.lock().unwrap().iter() {
        check_signature(r);
    }
    println!(
        "WEBHOOKS two nodes: {} markers, {} deliveries answered ({} duplicates after the kill), outbox empty {took:?} after it",
        posted.len(),
        all.len(),
        all.len() - posted.len()
    );
}

/// A receiver that always answers 500: each entry goes dead after `--webhook-max-attempts`
/// (counted, nothing left pending), and a marker deleted before its delivery is skipped.
#[test]
fn failing_deliveries_go_dead_and_deleted_markers_are_skipped() {
    require_program("ffmpeg");
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let receiver = Receiver::start(0, usize::MAX, Arc::clone(&log));
    let node = Hlsmark::start_with(
        dir.path(),
        &[],
        receiver.port,
        // No generator events: exactly the two markers below.
        &["--event-mean", "100h", "--webhook-max-attempts", "2"],
    );
    let dead = node.post_marker("dead");
    let deleted = node.post_marker("deleted");
    // Attempt 1 has failed (500) and attempt 2 is a second away: delete the marker now.
    wait_for(Duration::from_secs(10), "first attempts", || {
        let seen: BTreeSet<String> = log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .filter_map(|v| Some(v["marker"]["id"].as_str()?.to_owned()))
            .collect();
        seen.contains(&dead) && seen.contains(&deleted)
    });
    let r = http::request(
        "DELETE",
        node.port,
        &format!("/markers/{deleted}"),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    wait_for(Duration::from_secs(20), "dead and skipped", || {
        let m = node.metrics();
        metric(&m, "hlsmark_webhook_dead_total") == 1.0
            && metric(&m, "hlsmark_webhook_skipped_total") == 1.0
            && metric(&m, "hlsmark_webhook_pending") == 0.0
    });
    let m = node.metrics();
    assert_eq!(metric(&m, "hlsmark_webhook_delivered_total"), 0.0, "{m}");
    // Two attempts for the dead one, one for the deleted one.
    assert_eq!(
        metric(&m, "hlsmark_webhook_failed_attempts_total"),
        3.0,
        "{m}"
    );
    assert!(
        node.log().contains("webhook delivery dead"),
        "no dead line:\n{}",
        node.log()
    );
    assert!(
        !node.log().contains(URL_TOKEN),
        "the URL's token leaked into the log"
    );
}

/// Bad webhook flags are one line at start, with the URL masked.
#[test]
fn bad_webhook_flags_are_one_line_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expect) in [
        (
            vec!["--webhook", "ftp://h/x?token=hidden-value"],
            "must be http:// or https://",
        ),
        (vec!["--webhook", "not a url hidden-value"], "is not a URL"),
        (
            vec!["--webhook", "http://h/x", "--webhook-secret", "short"],
            "at least 16 characters",
        ),
        (
            vec!["--webhook", "http://h/x", "--webhook-timeout", "0s"],
            "--webhook-timeout",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hlsmark"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!err.contains("hidden-value"), "{args:?} leaked: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}
