//! `docker-compose.scale.yml` cannot silently rot: this test parses it and runs every service's
//! command natively (no Docker engine here) with the same environment: the Redis Cluster's six
//! `redis-server`s and its one-shot `redis-cli --cluster create`, Garage and its one-shot
//! set-up script, two `hlsmark generate --standby` ingest nodes, two `hlsmark serve` API nodes
//! and nginx with `scale/nginx.conf`. Then, through nginx as a player would: the live LL-HLS
//! playlist, blocking reloads, parts, segments (cached by nginx), markers and SSE on every node.
//!
//! A viewer watches all along: the page built into the binary, opened through nginx in a real
//! headless Chromium (`frontend/test/scale-player.mjs`: playwright-core and Debian's chromium,
//! sampling the player every 250 ms; `frontend/node_modules` must be installed, `cd frontend &&
//! npm ci`). One API node is SIGKILLed while the page, a real HLS client (ffmpeg) and a loop of
//! LL blocking reloads play through nginx: they all keep playing through the other node, the
//! page's picture never standing still for more than a few seconds. Then the active ingest is
//! SIGKILLed: the standby takes the lease, the playlist goes on in a new epoch after a
//! DISCONTINUITY, the page plays on into the new epoch (standing still at most the takeover's
//! gap plus a few seconds), and a marker of the new ingest is frame-exact twice: on the decoded
//! segments, and clicked in the page (the frame it lands on has the mint corner, the frame
//! before it not).
//!
//! Container-only values are mapped to this machine: host names (`redis-N`, `api-N`, `garage`) to
//! 127.0.0.1 and free ports, volumes to temp dirs, nginx's cache paths to a temp dir, the
//! published port 5000 to a free port (the test checks the mapping says 5000 first). The
//! generator's picture is made smaller (640x360) so two cores keep up while everything else
//! runs; nothing else differs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hlsmark_testkit::{free_port, http, require_program, wait_for_port};
use yaml_rust2::{Yaml, YamlLoader};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn compose() -> Yaml {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.scale.yml")).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

/// A service with compose's merge keys (`<<: *anchor`) applied: the anchor's entries first, the
/// service's own win.
fn merged(y: &Yaml) -> Yaml {
    let Some(h) = y.as_hash() else {
        return y.clone();
    };
    let mut out = yaml_rust2::yaml::Hash::new();
    if let Some(base) = h.get(&Yaml::String("<<".into()))
        && let Some(b) = merged(base).as_hash()
    {
        for (k, v) in b {
            out.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in h {
        if k.as_str() != Some("<<") {
            out.insert(k.clone(), merged(v));
        }
    }
    Yaml::Hash(out)
}

fn service(c: &Yaml, name: &str) -> Yaml {
    let s = &c["services"][name];
    assert!(!s.is_badvalue(), "service {name} missing");
    merged(s)
}

/// Compose's `${VAR:-default}` interpolation, from the defaults (the test's environment is not
/// consulted, so the result does not depend on who runs it).
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').expect("unterminated ${") + i;
        let inner = &rest[i + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, d)| d));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .expect("a list")
        .iter()
        .map(|v| interpolate(v.as_str().expect("a string")))
        .collect()
}

fn env_of(svc: &Yaml) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if let Some(h) = svc["environment"].as_hash() {
        for (k, v) in h {
            let v = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                Yaml::Boolean(b) => b.to_string(),
                other => panic!("unsupported env value {other:?}"),
            };
            env.insert(k.as_str().unwrap().to_owned(), interpolate(&v));
        }
    }
    env
}

const REDIS_NODES: [&str; 6] = [
    "redis-1", "redis-2", "redis-3", "redis-4", "redis-5", "redis-6",
];

#[test]
fn scale_compose_file_has_every_role() {
    let c = compose();
    for name in REDIS_NODES {
        let s = service(&c, name);
        let cmd = strings(&s["command"]).join(" ");
        for want in [
            "--cluster-enabled yes",
            "--appendonly yes",
            "--appendfsync always",
        ] {
            assert!(cmd.contains(want), "{name}: {want} missing in {cmd}");
        }
        assert!(
            !s["healthcheck"]["test"].is_badvalue(),
            "{name} healthcheck"
        );
    }
    let init = strings(&service(&c, "redis-cluster-init")["command"]).join(" ");
    assert!(
        init.contains("--cluster create") && init.contains("--cluster-replicas 1"),
        "{init}"
    );
    for name in REDIS_NODES {
        assert!(init.contains(&format!("{name}:6379")), "{init}");
    }
    assert!(!service(&c, "garage")["command"].is_badvalue());
    // Two ingest nodes of one stream, both standing by for the lease; two API nodes with the
    // same token; every hlsmark node on the same store and media.
    let mut stores = Vec::new();
    for name in ["ingest-1", "ingest-2"] {
        let s = service(&c, name);
        assert_eq!(
            strings(&s["command"]),
            ["hlsmark", "generate", "--standby"],
            "{name}"
        );
        let env = env_of(&s);
        assert_eq!(env["HLSMARK_STREAM"], "live");
        stores.push((env["HLSMARK_STORE"].clone(), env["HLSMARK_MEDIA"].clone()));
    }
    let mut tokens = Vec::new();
    for name in ["api-1", "api-2"] {
        let s = service(&c, name);
        assert_eq!(strings(&s["command"]), ["hlsmark", "serve"], "{name}");
        let env = env_of(&s);
        assert_eq!(env["HLSMARK_LISTEN"], "0.0.0.0:5000");
        tokens.push(env["HLSMARK_TOKEN"].clone());
        stores.push((env["HLSMARK_STORE"].clone(), env["HLSMARK_MEDIA"].clone()));
        assert!(
            !s["healthcheck"]["test"].is_badvalue(),
            "{name} healthcheck"
        );
        assert!(
            s["ports"].is_badvalue(),
            "{name}: only nginx publishes a port"
        );
    }
    assert_eq!(tokens[0], tokens[1], "both API nodes take the same token");
    assert!(!tokens[0].is_empty());
    assert!(stores.iter().all(|s| *s == stores[0]), "{stores:?}");
    assert!(stores[0].0.starts_with("redis+cluster://"), "{stores:?}");
    assert!(stores[0].1.starts_with("s3://"), "{stores:?}");
    let nginx = service(&c, "nginx");
    assert_eq!(strings(&nginx["ports"]), ["5000:5000"]);
    assert!(
        strings(&nginx["volumes"])
            .iter()
            .any(|v| v.starts_with("./scale/nginx.conf:/etc/nginx/nginx.conf")),
        "nginx takes scale/nginx.conf"
    );
    // Every hlsmark setting is an HLSMARK_ variable (or RUST_LOG, or the usual AWS ones).
    for name in ["ingest-1", "ingest-2", "api-1", "api-2"] {
        for k in env_of(&service(&c, name)).keys() {
            assert!(
                k.starts_with("HLSMARK_") || k == "RUST_LOG" || k.starts_with("AWS_"),
                "{name}: unexpected env {k}"
            );
        }
    }
    // nginx.conf names the compose file's API nodes and port.
    let conf = std::fs::read_to_string(repo_root().join("scale/nginx.conf")).unwrap();
    for want in ["server api-1:5000", "server api-2:5000", "listen 5000;"] {
        assert!(conf.contains(want), "scale/nginx.conf lacks {want:?}");
    }
}

/// A child process, killed when dropped.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    /// SIGKILLed by the test on purpose.
    killed: bool,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name: name.to_owned(),
            child,
            log,
            killed: false,
        }
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// SIGTERM, then the exit status within `timeout` (SIGKILL after).
    fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.signal("TERM");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn json(resp: &http::Response) -> serde_json::Value {
    serde_json::from_slice(&resp.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", resp.text()))
}

/// An open `text/event-stream` answer, read line by line.
struct Sse {
    reader: BufReader<TcpStream>,
}

impl Sse {
    fn connect(port: u16, path: &str) -> Self {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "SSE {path}: {status}");
        Self { reader }
    }

    /// The next `event: marker`'s data (chunk-size lines of a chunked answer are skipped: they
    /// are never `data:` lines).
    fn next_marker(&mut self) -> serde_json::Value {
        let mut in_marker = false;
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("SSE read");
            assert!(n > 0, "SSE feed ended");
            let line = line.trim_end();
            if line == "event: marker" {
                in_marker = true;
            } else if let Some(data) = line.strip_prefix("data: ")
                && in_marker
            {
                return serde_json::from_str(data).unwrap();
            }
        }
    }
}

/// The first `n` bytes of an endless answer's body (after its head), within 20 s.
fn first_bytes(port: u16, path: &str, n: usize) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < n + 1024 {
        let k = std::io::Read::read(&mut s, &mut chunk).expect("read the endless answer");
        assert!(k > 0, "{path} ended after {} bytes", buf.len());
        buf.extend_from_slice(&chunk[..k]);
    }
    let head = String::from_utf8_lossy(&buf[..buf.len().min(200)]).into_owned();
    assert!(head.contains(" 200 "), "{path}: {head}");
    buf
}

/// Whether process `pid` has a child named `comm` (from /proc; no procps needed).
fn has_child(pid: u32, comm: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            return false;
        };
        let ppid = stat[close + 2..]
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        &stat[open + 1..close] == comm && ppid == Some(pid)
    })
}

/// One look at the page's player (a `sample` line of `frontend/test/scale-player.mjs`).
#[derive(Clone, Debug)]
struct Sample {
    /// When the test read it.
    at: Instant,
    /// The video's `currentTime`, seconds.
    ct: f64,
    paused: bool,
    /// The epoch of the fragment on screen (from its name), once hls.js plays one.
    epoch: Option<u32>,
    raw: serde_json::Value,
}

/// A time the picture did not move (currentTime not advancing, or paused).
#[derive(Clone, Copy, Debug)]
struct Stall {
    from: Instant,
    len: Duration,
}

/// The stalls longer than 1 s in `samples` (in order), the one still going at the end included.
fn stalls(samples: &[Sample]) -> Vec<Stall> {
    let mut out = Vec::new();
    let Some(first) = samples.first() else {
        return out;
    };
    let (mut moved, mut prev) = (first.at, first.ct);
    for s in &samples[1..] {
        // A source reload (the page's retry after a fatal engine error) may set currentTime
        // back: only a step forward while playing counts as the picture moving.
        if !s.paused && s.ct > prev + 0.001 {
            if s.at - moved > Duration::from_secs(1) {
                out.push(Stall {
                    from: moved,
                    len: s.at - moved,
                });
            }
            moved = s.at;
        }
        prev = s.ct;
    }
    let last = samples.last().unwrap().at;
    if last - moved > Duration::from_secs(1) {
        out.push(Stall {
            from: moved,
            len: last - moved,
        });
    }
    out
}

/// The hlsmark page in a real headless Chromium, through `frontend/test/scale-player.mjs`
/// (playwright-core and Debian's chromium): it samples the player every ~250 ms and takes
/// commands on stdin. Closing stdin ends it and its browser.
struct Viewer {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    samples: std::sync::Arc<std::sync::Mutex<Vec<Sample>>>,
    /// Everything else it printed (HTTP errors the page saw, page errors, fatal errors).
    notes: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    replies: std::sync::mpsc::Receiver<serde_json::Value>,
    log: PathBuf,
}

impl Viewer {
    fn start(page_url: &str, logs: &Path) -> Self {
        let frontend = repo_root().join("frontend");
        assert!(
            frontend.join("node_modules/playwright-core").is_dir(),
            "frontend/node_modules is missing (the browser player needs playwright-core): run \
             `cd frontend && npm ci` (scripts/test.sh does it before the Rust tests)"
        );
        require_program("node");
        let chromium =
            std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
        assert!(
            chromium.is_file(),
            "{} is missing: `apt-get install chromium` (scripts/test.sh installs it)",
            chromium.display()
        );
        let log = logs.join("scale-player.log");
        let mut child = Command::new("node")
            .arg("test/scale-player.mjs")
            .arg(page_url)
            .current_dir(&frontend)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node test/scale-player.mjs: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let notes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, replies) = std::sync::mpsc::channel();
        let (s, n) = (samples.clone(), notes.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    n.lock().unwrap().push(line);
                    continue;
                };
                if let Some(x) = v.get("sample") {
                    s.lock().unwrap().push(Sample {
                        at: Instant::now(),
                        ct: x["ct"].as_f64().unwrap_or(-1.0),
                        paused: x["paused"].as_bool().unwrap_or(true),
                        epoch: x["epoch"].as_u64().and_then(|e| u32::try_from(e).ok()),
                        raw: x.clone(),
                    });
                } else if v.get("reply").is_some() {
                    let _ = tx.send(v);
                } else {
                    n.lock().unwrap().push(line);
                }
            }
        });
        Self {
            child,
            stdin,
            samples,
            notes,
            replies,
            log,
        }
    }

    fn samples_since(&self, from: Instant) -> Vec<Sample> {
        let all = self.samples.lock().unwrap();
        all.iter().filter(|s| s.at >= from).cloned().collect()
    }

    /// What a failure message needs: the last samples, what the page reported, node's stderr.
    fn describe(&self) -> String {
        let samples = self.samples.lock().unwrap();
        let last: Vec<String> = samples[samples.len().saturating_sub(8)..]
            .iter()
            .map(|s| s.raw.to_string())
            .collect();
        let notes = self.notes.lock().unwrap();
        let stderr = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!(
            "last samples:\n{}\npage reported (last 20):\n{}\nnode stderr (tail):\n{}",
            last.join("\n"),
            notes[notes.len().saturating_sub(20)..].join("\n"),
            stderr
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// Waits until the picture moves: currentTime advanced by more than 1 s while playing.
    fn wait_playing(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Sample) -> bool) {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            {
                let all = self.samples.lock().unwrap();
                let good: Vec<&Sample> = all
                    .iter()
                    .filter(|s| s.at >= started && pred(s) && !s.paused)
                    .collect();
                if let (Some(a), Some(b)) = (good.first(), good.last())
                    && b.ct - a.ct > 1.0
                {
                    return;
                }
            }
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            assert!(
                Instant::now() < deadline && !exited,
                "the browser did not play ({what}) within {timeout:?}{}\n{}",
                if exited {
                    " (scale-player.mjs exited)"
                } else {
                    ""
                },
                self.describe()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends one command line and returns its reply.
    fn command(&mut self, line: &str, timeout: Duration) -> serde_json::Value {
        let stdin = self.stdin.as_mut().expect("the viewer's stdin is open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        self.replies.recv_timeout(timeout).unwrap_or_else(|e| {
            panic!(
                "no reply to {line:?} within {timeout:?} ({e})\n{}",
                self.describe()
            )
        })
    }

    /// Closes stdin: the script closes its browser and exits 0.
    fn stop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                assert!(
                    st.success(),
                    "scale-player.mjs exited with {st}\n{}",
                    self.describe()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "scale-player.mjs did not exit within 30 s of its stdin closing\n{}",
            self.describe()
        );
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // Never SIGKILL first: the script's exit handlers are what kill the browser.
        drop(self.stdin.take());
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The epoch of a media URI (`e{epoch}-...`).
fn epoch_of(uri: &str) -> u32 {
    let name = uri.rsplit('/').next().unwrap_or(uri);
    name.strip_prefix('e')
        .and_then(|r| r.split('-').next())
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("no epoch in {uri}"))
}

/// How much longer than the takeover's gap (kill -> the standby's first segment listed) the
/// page's picture may stand still across it: hls.js's retries of the failing reloads and parts,
/// or the page's reload of the source after a fatal engine error (every 3 s), on a loaded machine.
const TAKEOVER_STALL_SLACK: Duration = Duration::from_secs(10);
/// The longest the page's picture may stand still while an API node is killed (nginx sends what
/// the dead node did not answer to the other one: nothing should be seen).
const API_KILL_STALL: Duration = Duration::from_secs(5);

/// The standby half of the slow test (see its caller).
fn standby_takes_over(nginx_port: u16, ingest: &mut [Proc], dir: &Path, viewer: &mut Viewer) {
    let active = wait_until(
        "one ingest to write (its ffmpeg)",
        Duration::from_secs(30),
        || {
            ingest
                .iter()
                .position(|p| has_child(p.child.id(), "ffmpeg"))
        },
    );
    assert!(
        !has_child(ingest[1 - active].child.id(), "ffmpeg"),
        "both ingests run an encoder: two writers of one stream"
    );
    let live = || hlsmark_testkit::hls::live_playlist(nginx_port, "live");
    let before = wait_until("a playlist", Duration::from_secs(10), live);
    let old_epoch = epoch_of(&before.segments.last().unwrap().uri);
    // An LL player through nginx across the takeover: it may be told to retry while no ingest
    // writes (503 playlist_not_ready, a part of the dead epoch gone: 404), never anything else,
    // and it must be playing parts of the new epoch at the end.
    let player = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(40);
        let mut text = http::get(nginx_port, "/hls/live/index.m3u8")
            .unwrap()
            .text();
        let mut seen = std::collections::BTreeSet::new();
        let (mut retries, mut new_parts) = (0, 0);
        while Instant::now() < deadline && new_parts < 10 {
            for l in text.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
                let uri = l.split("URI=\"").nth(1).unwrap().split('"').next().unwrap();
                if !seen.insert(uri.to_owned()) {
                    continue;
                }
                let path = if uri.starts_with('/') {
                    uri.to_owned()
                } else {
                    format!("/hls/live/{uri}")
                };
                let r = http::get(nginx_port, &path).unwrap();
                match r.status {
                    200 if epoch_of(uri) > old_epoch => new_parts += 1,
                    200 => {}
                    404 if epoch_of(uri) == old_epoch => retries += 1,
                    s => panic!("part {path}: {s} {}", r.text()),
                }
            }
            let (msn, part) = edge_of(&text);
            let (msn, part) = match part {
                Some(p) => (msn, p + 1),
                None => (msn + 1, 0),
            };
            let r = http::get(
                nginx_port,
                &format!("/hls/live/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
            )
            .unwrap();
            match r.status {
                200 => text = r.text(),
                // The edge moved to a new epoch (the numbers may be too far) or nothing came
                // within the wait: start again from the plain playlist, as hls.js does.
                400 | 503 => {
                    retries += 1;
                    std::thread::sleep(Duration::from_millis(200));
                    text = http::get(nginx_port, "/hls/live/index.m3u8")
                        .unwrap()
                        .text();
                }
                s => panic!("blocking reload {msn}.{part}: {s} {}", r.text()),
            }
        }
        (new_parts, retries)
    });
    std::thread::sleep(Duration::from_secs(2));
    let killed_at = Instant::now();
    ingest[active].signal("KILL");
    ingest[active].killed = true;
    let mut gap = Duration::ZERO;
    let after = wait_until(
        "the standby's first segment through nginx",
        Duration::from_secs(30),
        || {
            let pl = live()?;
            gap = killed_at.elapsed();
            pl.segments
                .iter()
                .any(|s| epoch_of(&s.uri) > old_epoch)
                .then_some(pl)
        },
    );
    eprintln!(
        "standby takeover: first new segment listed {} ms after the kill",
        gap.as_millis()
    );
    let first_new = after
        .segments
        .iter()
        .find(|s| epoch_of(&s.uri) > old_epoch)
        .unwrap()
        .clone();
    assert!(
        first_new.discontinuity,
        "no DISCONTINUITY before the new epoch:\n{}",
        after.text
    );
    let (new_parts, retries) = player
        .join()
        .expect("the LL player failed across the takeover");
    assert!(
        new_parts >= 10,
        "the player got {new_parts} parts of the new epoch ({retries} retries)"
    );
    // The page in Chromium plays on through the takeover: it reaches the new epoch's media.
    viewer.wait_playing(
        "media of the standby's epoch",
        Duration::from_secs(60),
        |s| s.epoch.is_some_and(|e| e > old_epoch),
    );
    let resumed = viewer
        .samples_since(killed_at)
        .into_iter()
        .find(|s| s.epoch.is_some_and(|e| e > old_epoch))
        .map_or(Duration::ZERO, |s| s.at - killed_at);
    eprintln!(
        "standby takeover: the page plays the new epoch {} ms after the kill",
        resumed.as_millis()
    );
    // A marker of the new ingest (a generator event) on its exact frame: the first mint frame
    // of the decoded segments, and the frame before it not mint.
    let marker = wait_until(
        "a generator event of the new ingest, past its first segment",
        Duration::from_secs(90),
        || {
            let r = http::get(nginx_port, "/markers?stream=live&limit=1000").ok()?;
            let v = json(&r);
            v["markers"]
                .as_array()?
                .iter()
                .rev()
                .find(|m| {
                    m["kind"] == "event" && m["seq"].as_u64().is_some_and(|s| s > first_new.seq)
                })
                .cloned()
        },
    );
    let seq = marker["seq"].as_u64().unwrap();
    let around = wait_until(
        "the segments around the marker",
        Duration::from_secs(20),
        || {
            let pl = live()?;
            let segs: Vec<_> = pl
                .segments
                .iter()
                .filter(|s| (seq - 1..=seq + 1).contains(&s.seq))
                .cloned()
                .collect();
            (segs.len() == 3).then_some(segs)
        },
    );
    let joined =
        hlsmark_testkit::hls::join_segments(nginx_port, "live", &around, dir, "marker.mp4");
    let frames = hlsmark_testkit::decode::decode_frames(&joined, 640, 80);
    let i = frames.iter().position(|f| f.mint).expect("a mint frame");
    assert!(
        i > 0 && !frames[i - 1].mint,
        "the frame before the event is not mint"
    );
    assert_eq!(
        Some(frames[i].pts_90k),
        marker["hls_90k"].as_i64(),
        "the new ingest's marker sits on the first mint frame"
    );

    // The page's picture never stood still longer than the takeover's gap plus a little, from
    // the kill until now (it played on while the marker came).
    let seen = viewer.samples_since(
        killed_at
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(killed_at),
    );
    let st = stalls(&seen);
    eprintln!(
        "standby takeover: the page's stalls (s after the kill, length ms) {:?}, over {} samples",
        st.iter()
            .map(|s| (
                s.from.saturating_duration_since(killed_at).as_secs_f32(),
                s.len.as_millis()
            ))
            .collect::<Vec<_>>(),
        seen.len()
    );
    let longest = st.iter().map(|s| s.len).max().unwrap_or_default();
    assert!(
        longest <= gap + TAKEOVER_STALL_SLACK,
        "the page stood still {longest:?} across the takeover (gap {gap:?}): {st:?}\n{}",
        viewer.describe()
    );
    assert!(
        seen.len() > 10 && seen.last().is_some_and(|s| !s.paused),
        "{}",
        viewer.describe()
    );

    // The same marker clicked in the page: the frame it lands on is mint, the one before not.
    let id = marker["id"].as_str().unwrap();
    let asked = Instant::now();
    let r = viewer.command(&format!("seek-marker {id}"), Duration::from_secs(60));
    eprintln!(
        "standby takeover: the page's seek to the marker took {} ms, corner {} at it, {} a frame before",
        asked.elapsed().as_millis(),
        r["at"]["rgb"],
        r["before"]["rgb"]
    );
    let why = || format!("{r:#}\n{}", viewer.describe());
    assert_eq!(r["ok"], true, "seek-marker {id}: {}", why());
    assert_eq!(r["hls_90k"], marker["hls_90k"], "{}", why());
    assert_eq!(r["landed"]["hls_90k"], marker["hls_90k"], "{}", why());
    assert_eq!(
        r["at"]["mint"],
        true,
        "the page shows the marker's frame mint: {}",
        why()
    );
    assert_eq!(
        r["before"]["mint"],
        false,
        "the frame before the marker is not mint in the page: {}",
        why()
    );
}

/// The newest media sequence and its highest part index in an LL playlist.
fn edge_of(text: &str) -> (u64, Option<u64>) {
    let pl = hlsmark_testkit::hls::Playlist::parse(text);
    let last = pl.segments.last().map(|s| s.seq);
    // Parts after the last complete segment belong to the next one.
    let tail = text
        .rsplit_once("#EXTINF")
        .map_or(text, |(_, t)| t)
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .count();
    match last {
        Some(s) if tail > 0 => (s + 1, Some(tail as u64 - 1)),
        Some(s) => (s, None),
        None => (pl.media_sequence, None),
    }
}

#[test]
fn scale_compose_runs_natively_and_survives_an_api_node() {
    require_program("redis-server");
    require_program("redis-cli");
    require_program("ffmpeg");
    require_program("nginx");
    let c = compose();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // nginx's workers may run as `nobody` when the test runs as root.
    let _ = Command::new("chmod").arg("755").arg(t).status();
    let logs = t.join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    // --- Redis Cluster: the six nodes' own commands, ports, dirs and bus ports mapped.
    let mut redis_port = BTreeMap::new();
    let mut procs: Vec<Proc> = Vec::new();
    for name in REDIS_NODES {
        let s = service(&c, name);
        let mut cmd = strings(&s["command"]);
        assert_eq!(cmd[0], "redis-server");
        let (port, bus) = (free_port(), free_port());
        let dir = t.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 1..cmd.len() {
            match cmd[i - 1].as_str() {
                "--port" => cmd[i] = port.to_string(),
                "--dir" => cmd[i] = dir.to_string_lossy().into_owned(),
                "--cluster-announce-hostname" => cmd[i] = "127.0.0.1".into(),
                _ => {}
            }
        }
        // In compose every node has its own address; here they share one, so the cluster bus
        // (port + 10000 by default) needs its own free port.
        cmd.extend(["--cluster-port".into(), bus.to_string()]);
        cmd.extend(["--bind".into(), "127.0.0.1".into()]);
        let mut command = Command::new(&cmd[0]);
        command.args(&cmd[1..]);
        procs.push(Proc::spawn(name, command, &logs));
        redis_port.insert(name.to_owned(), port);
    }
    for (name, port) in &redis_port {
        assert!(
            wait_for_port(*port, Duration::from_secs(10)),
            "{name} did not start"
        );
    }
    let map_hosts = |s: &str| -> String {
        let mut s = s.to_owned();
        for (name, port) in &redis_port {
            s = s.replace(&format!("{name}:6379"), &format!("127.0.0.1:{port}"));
        }
        s
    };
    let init: Vec<String> = strings(&service(&c, "redis-cluster-init")["command"])
        .iter()
        .map(|a| map_hosts(a))
        .collect();
    let out = Command::new(&init[0]).args(&init[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "redis-cluster-init: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let first = redis_port["redis-1"];
    wait_until(
        "the cluster to serve every slot",
        Duration::from_secs(30),
        || {
            let out = Command::new("redis-cli")
                .args(["-p", &first.to_string(), "cluster", "info"])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("cluster_state:ok")
                .then_some(())
        },
    );

    // The hlsmark nodes use the cluster, as the compose file says.
    let store_spec = map_hosts(&env_of(&service(&c, "api-1"))["HLSMARK_STORE"]);

    // --- Garage (scripts/ensure-garage.sh builds it once; the test command runs it) and its
    // set-up script.
    let garage_ports = (free_port(), free_port(), free_port());
    let media_env: BTreeMap<String, String> = {
        let garage_bin = hlsmark_testkit::s3::garage_binary();
        let g = service(&c, "garage");
        let cmd = strings(&g["command"]);
        assert_eq!(cmd[0], "/garage");
        let (s3_port, rpc_port, admin_port) = garage_ports;
        let conf = std::fs::read_to_string(repo_root().join("scale/garage.toml"))
            .unwrap()
            .replace("/var/lib/garage", &t.join("garage").to_string_lossy())
            .replace("0.0.0.0:3900", &format!("127.0.0.1:{s3_port}"))
            .replace("0.0.0.0:3901", &format!("127.0.0.1:{rpc_port}"))
            .replace("127.0.0.1:3901", &format!("127.0.0.1:{rpc_port}"))
            .replace("0.0.0.0:3903", &format!("127.0.0.1:{admin_port}"));
        let conf_path = t.join("garage.toml");
        std::fs::write(&conf_path, conf).unwrap();
        let mut args: Vec<String> = cmd[1..].to_vec();
        let i = args.iter().position(|a| a == "-c").unwrap();
        args[i + 1] = conf_path.to_string_lossy().into_owned();
        let mut command = Command::new(&garage_bin);
        command.args(&args);
        procs.push(Proc::spawn("garage", command, &logs));
        assert!(wait_for_port(admin_port, Duration::from_secs(30)), "garage");
        let gi = service(&c, "garage-init");
        let cmd = strings(&gi["command"]);
        assert_eq!(cmd, ["sh", "/scale/garage-init.sh"]);
        let mut env = env_of(&gi);
        env.insert(
            "GARAGE_ADMIN".into(),
            format!("http://127.0.0.1:{admin_port}"),
        );
        let out = Command::new("sh")
            .arg(repo_root().join("scale/garage-init.sh"))
            .envs(&env)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "garage-init: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        BTreeMap::from([(
            "http://garage:3900".to_owned(),
            format!("http://127.0.0.1:{s3_port}"),
        )])
    };

    // --- The hlsmark nodes: their commands and environment, mapped.
    let api_ports = [free_port(), free_port()];
    let nginx_port = free_port();
    let spawn_hlsmark = |name: &str| -> Proc {
        let svc = service(&c, name);
        let cmd = strings(&svc["command"]);
        assert_eq!(cmd[0], "hlsmark");
        let mut env = env_of(&svc);
        env.insert("HLSMARK_STORE".into(), store_spec.clone());
        // Every node has a data dir of its own: they share only the store and the bucket.
        let data = t.join(format!("{name}-data"));
        std::fs::create_dir_all(&data).unwrap();
        for v in env.values_mut() {
            if v == "/data" {
                *v = data.to_string_lossy().into_owned();
            }
            for (from, to) in &media_env {
                *v = v.replace(from, to);
            }
        }
        if let Some(l) = env.get_mut("HLSMARK_LISTEN") {
            assert_eq!(l, "0.0.0.0:5000");
            let port = if name == "api-1" {
                api_ports[0]
            } else {
                api_ports[1]
            };
            *l = format!("127.0.0.1:{port}");
        }
        // Smaller pictures: two cores run all of this at once.
        for (k, v) in [("HLSMARK_WIDTH", "640"), ("HLSMARK_HEIGHT", "360")] {
            if env.contains_key(k) {
                env.insert(k.into(), v.into());
            }
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_hlsmark"));
        command
            .args(&cmd[1..])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&env)
            .current_dir(t);
        Proc::spawn(name, command, &logs)
    };
    let mut ingest = vec![spawn_hlsmark("ingest-1"), spawn_hlsmark("ingest-2")];
    let mut api_a = spawn_hlsmark("api-1");
    let mut api_b = spawn_hlsmark("api-2");
    for (p, port) in [(&api_a, api_ports[0]), (&api_b, api_ports[1])] {
        assert!(
            wait_for_port(port, Duration::from_secs(30)),
            "{} did not listen: {}",
            p.name,
            p.log_tail()
        );
    }

    // --- nginx: the compose file's config, mapped, run as a normal process.
    let ng = service(&c, "nginx");
    let ng_cmd = strings(&ng["command"]);
    assert_eq!(ng_cmd[0], "nginx");
    let nginx_dir = t.join("nginx");
    std::fs::create_dir_all(&nginx_dir).unwrap();
    let conf = std::fs::read_to_string(repo_root().join("scale/nginx.conf"))
        .unwrap()
        .replace("api-1:5000", &format!("127.0.0.1:{}", api_ports[0]))
        .replace("api-2:5000", &format!("127.0.0.1:{}", api_ports[1]))
        .replace("listen 5000;", &format!("listen 127.0.0.1:{nginx_port};"))
        .replace("/var/cache/nginx", &nginx_dir.to_string_lossy());
    let conf_path = nginx_dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut command = Command::new("nginx");
    command
        .arg("-p")
        .arg(&nginx_dir)
        .arg("-e")
        .arg(nginx_dir.join("error.log"))
        .arg("-c")
        .arg(&conf_path)
        .arg("-g")
        .arg(format!(
            "{} pid {}/nginx.pid; master_process off;",
            ng_cmd[2],
            nginx_dir.display()
        ));
    assert_eq!(ng_cmd[1], "-g");
    let nginx = Proc::spawn("nginx", command, &logs);
    assert!(
        wait_for_port(nginx_port, Duration::from_secs(10)),
        "nginx: {}",
        nginx.log_tail()
    );
    let token = env_of(&service(&c, "api-1"))["HLSMARK_TOKEN"].clone();

    // --- Through nginx: ready (as the compose file's health checks, with retries: a node may
    // answer 503 while it first reaches the cluster), and a live LL playlist.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = http::get(nginx_port, "/readyz").unwrap();
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz through nginx: {} {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let playlist = wait_until(
        "a live LL playlist with 3 segments through nginx",
        Duration::from_secs(90),
        || {
            let r = http::get(nginx_port, "/hls/live/index.m3u8").ok()?;
            let text = r.text();
            (r.status == 200
                && text.matches("#EXTINF").count() >= 3
                && text.contains("#EXT-X-PART:"))
            .then_some(text)
        },
    );
    // --- A viewer: the page, built into the binary, in a real Chromium through nginx. Started
    // now so that its start overlaps the checks below; it plays through both kills.
    let page = http::get(nginx_port, "/").unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        !page.text().contains("npm --prefix frontend ci"),
        "this hlsmark binary was built without the page: run `cd frontend && npm ci && npm run \
         build`, then build hlsmark again"
    );
    let mut viewer = Viewer::start(
        &format!("http://127.0.0.1:{nginx_port}/?stream=live"),
        &logs,
    );

    // Both API nodes answer the same (rendered from the store, not from anything local).
    let seg = hlsmark_testkit::hls::Playlist::parse(&playlist)
        .segments
        .first()
        .unwrap()
        .clone();
    let seg_path = if seg.uri.starts_with('/') {
        seg.uri.clone()
    } else {
        format!("/hls/live/{}", seg.uri)
    };
    let (a, b) = (
        http::get(api_ports[0], &seg_path).unwrap(),
        http::get(api_ports[1], &seg_path).unwrap(),
    );
    assert_eq!((a.status, b.status), (200, 200), "{seg_path}");
    assert_eq!(a.body, b.body, "{seg_path} differs between the API nodes");
    // nginx caches media: the second request is a hit.
    let first_get = http::get(nginx_port, &seg_path).unwrap();
    assert_eq!(first_get.status, 200);
    let again = http::get(nginx_port, &seg_path).unwrap();
    assert_eq!(again.header("x-cache-status"), Some("HIT"), "{seg_path}");
    assert_eq!(again.body, a.body);
    // ... but never a live playlist.
    let pl = http::get(nginx_port, "/hls/live/index.m3u8").unwrap();
    assert_ne!(pl.header("x-cache-status"), Some("HIT"));

    // --- Blocking reloads wake on each API node (neither ingests) for the next part.
    for port in [api_ports[0], api_ports[1], nginx_port] {
        let now = http::get(port, "/hls/live/index.m3u8").unwrap().text();
        let (msn, part) = edge_of(&now);
        let (msn, part) = match part {
            Some(p) => (msn, p + 1),
            None => (msn + 1, 0),
        };
        let path = format!("/hls/live/index.m3u8?_HLS_msn={msn}&_HLS_part={part}");
        let r = http::get(port, &path).unwrap();
        assert_eq!(r.status, 200, "{port} {path}: {}", r.text());
        let (got_msn, got_part) = edge_of(&r.text());
        assert!(
            got_msn > msn || (got_msn == msn && got_part >= Some(part)),
            "{path} answered a playlist ending at {got_msn}.{got_part:?}"
        );
    }

    // --- A marker posted to one node reaches SSE clients of every node (and through nginx).
    let mut feeds = [
        Sse::connect(api_ports[0], "/markers/live?stream=live"),
        Sse::connect(api_ports[1], "/markers/live?stream=live"),
        Sse::connect(nginx_port, "/markers/live?stream=live"),
    ];
    let edge = json(&http::get(api_ports[1], "/timeline?stream=live").unwrap());
    let hls = edge["live_edge"].as_f64().expect("live_edge") - 2.0;
    let auth = format!("Bearer {token}");
    let post = http::request(
        "POST",
        api_ports[0],
        "/markers?stream=live",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        serde_json::json!({"label": "scale check", "hls": hls})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(post.status, 201, "{}", post.text());
    let posted = json(&post);
    for f in &mut feeds {
        let m = loop {
            let m = f.next_marker();
            if m["id"] == posted["id"] {
                break m;
            }
        };
        assert_eq!(m["hls_90k"], posted["hls_90k"]);
    }
    // Every node lists it (B's playlist too, as a date range).
    let id = posted["id"].as_str().unwrap().to_owned();
    wait_until(
        "api-2's playlist lists the marker",
        Duration::from_secs(10),
        || {
            http::get(api_ports[1], "/hls/live/index.m3u8")
                .ok()?
                .text()
                .contains(&id)
                .then_some(())
        },
    );
    assert_eq!(
        http::get(nginx_port, &format!("/markers/{id}?stream=live"))
            .unwrap()
            .status,
        200
    );
    // A thumbnail of the marker from the node that did not take the POST.
    let th = http::get(
        api_ports[1],
        &format!("/markers/{id}/thumbnail.jpg?stream=live"),
    )
    .unwrap();
    assert_eq!(th.status, 200, "{}", th.text());
    assert_eq!(th.header("content-type"), Some("image/jpeg"));

    // Live previews are the ingest's: an API node that cannot see its preview.jpg (S3 media,
    // its own data dir) says so at once (404 no_preview), never an endless answer without
    // pictures (`preview_from_a_separate_ingest_process` covers a shared directory).
    let r = http::get(nginx_port, "/preview/live.mjpeg").unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(json(&r)["error"]["code"], "no_preview");

    // Round robin: both nodes took requests from nginx.
    let served = |port: u16| -> f64 {
        let m = http::get(port, "/metrics").unwrap().text();
        m.lines()
            .filter(|l| l.starts_with("hlsmark_http_requests_total{") && l.contains("/hls/"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    for _ in 0..6 {
        http::get(nginx_port, "/hls/live/index.m3u8").unwrap();
    }
    assert!(served(api_ports[0]) > 0.0 && served(api_ports[1]) > 0.0);

    // --- Kill api-1 while three players play through nginx: the page in Chromium (hls.js, LL),
    // ffmpeg (a real HLS client, plain playlist reloads and segments) and a loop of LL blocking
    // reloads plus parts.
    viewer.wait_playing("the live stream", Duration::from_secs(90), |_| true);
    let clip = t.join("played.ts");
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "warning", "-y"])
        .args(["-live_start_index", "-1"])
        .arg("-i")
        .arg(format!("http://127.0.0.1:{nginx_port}/hls/live/index.m3u8"))
        .args(["-t", "12", "-c", "copy"])
        .arg(&clip)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ll_loop = std::thread::spawn(move || {
        // 10 s of LL playback: every blocking reload and every new part must answer 200.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut text = http::get(nginx_port, "/hls/live/index.m3u8")
            .unwrap()
            .text();
        let mut reloads = 0;
        let mut parts = 0;
        let mut seen = std::collections::BTreeSet::new();
        while Instant::now() < deadline {
            for l in text.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
                let uri = l.split("URI=\"").nth(1).unwrap().split('"').next().unwrap();
                if seen.insert(uri.to_owned()) && seen.len() > 8 {
                    let path = if uri.starts_with('/') {
                        uri.to_owned()
                    } else {
                        format!("/hls/live/{uri}")
                    };
                    let r = http::get(nginx_port, &path).unwrap();
                    assert_eq!(r.status, 200, "part {path}: {}", r.text());
                    parts += 1;
                }
            }
            let (msn, part) = edge_of(&text);
            let (msn, part) = match part {
                Some(p) => (msn, p + 1),
                None => (msn + 1, 0),
            };
            let r = http::get(
                nginx_port,
                &format!("/hls/live/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
            )
            .unwrap();
            assert_eq!(r.status, 200, "blocking reload {msn}.{part}: {}", r.text());
            text = r.text();
            reloads += 1;
        }
        (reloads, parts)
    });
    std::thread::sleep(Duration::from_secs(3));
    let api_killed_at = Instant::now();
    api_a.signal("KILL");
    let (reloads, parts) = ll_loop.join().expect("the LL player failed through nginx");
    assert!(
        reloads > 10 && parts > 5,
        "reloads {reloads}, parts {parts}"
    );
    let st = wait_until("ffmpeg to end", Duration::from_secs(60), || {
        ffmpeg.try_wait().ok().flatten()
    });
    let mut err = String::new();
    if let Some(mut e) = ffmpeg.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(st.success(), "ffmpeg through nginx failed: {err}");
    let probe = hlsmark_testkit::decode::probe_streams(&clip);
    assert!(!probe.is_empty(), "ffmpeg wrote no stream: {err}");
    let dur = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(&clip)
        .output()
        .unwrap();
    let secs: f64 = String::from_utf8_lossy(&dur.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0);
    assert!(secs >= 10.0, "ffmpeg played {secs} s through nginx: {err}");
    // After the kill, everything goes to api-2; a request still answers.
    assert!(api_a.exited());
    for _ in 0..4 {
        assert_eq!(
            http::get(nginx_port, "/hls/live/index.m3u8")
                .unwrap()
                .status,
            200
        );
    }

    // The page played on through the API node's death: its picture never stood still for long.
    let seen = viewer.samples_since(
        api_killed_at
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(api_killed_at),
    );
    let st = stalls(&seen);
    eprintln!(
        "api node kill: the page's stalls (s after the kill, length ms) {:?}, over {} samples, \
         currentTime {:.1} -> {:.1}",
        st.iter()
            .map(|s| (
                s.from
                    .saturating_duration_since(api_killed_at)
                    .as_secs_f32(),
                s.len.as_millis()
            ))
            .collect::<Vec<_>>(),
        seen.len(),
        seen.first().map_or(0.0, |s| s.ct),
        seen.last().map_or(0.0, |s| s.ct),
    );
    assert!(
        seen.len() > 20 && st.iter().all(|s| s.len <= API_KILL_STALL),
        "the page stood still while api-1 was killed: {st:?}\n{}",
        viewer.describe()
    );

    // --- Kill -9 the active ingest while an LL player and the page play through nginx: the
    // standby takes the lease, the playlist goes on in a new epoch after a DISCONTINUITY, the
    // page plays on into it, and a marker of the new ingest sits on its exact frame (decoded,
    // and clicked in the page).
    standby_takes_over(nginx_port, &mut ingest, t, &mut viewer);
    viewer.stop();

    // --- Shutdown: the hlsmark nodes exit 0 on SIGTERM.
    for p in std::iter::once(&mut api_b).chain(ingest.iter_mut().filter(|p| !p.killed)) {
        let st = p.terminate(Duration::from_secs(15));
        assert!(
            matches!(st, Some(s) if s.success()),
            "{} did not exit cleanly on SIGTERM: {st:?}\n{}",
            p.name,
            p.log_tail()
        );
    }
    drop(nginx);
    drop(procs);
}

/// A live preview on an API node whose stream's ingest is another process: served from the
/// ingest's preview.jpg when the node shares its data dir; 404 no_preview at once, with the
/// reason, on a node that cannot see one.
#[test]
fn preview_from_a_separate_ingest_process() {
    require_program("ffmpeg");
    let redis = hlsmark_testkit::RedisServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let (shared, other) = (tmp.path().join("shared"), tmp.path().join("other"));
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    let url = redis.url();
    let hlsmark = |name: &str, args: &[&str], data: &Path| -> Proc {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hlsmark"));
        c.args(args)
            .args(["--store", &url, "--data-dir"])
            .arg(data)
            .current_dir(tmp.path());
        Proc::spawn(name, c, tmp.path())
    };
    let _ingest = hlsmark(
        "generate",
        &[
            "generate", "--stream", "live", "--width", "320", "--height", "180",
        ],
        &shared,
    );
    let (p1, p2) = (free_port(), free_port());
    let near = hlsmark(
        "serve-shared",
        &["serve", "--listen", &format!("127.0.0.1:{p1}")],
        &shared,
    );
    let far = hlsmark(
        "serve-other",
        &["serve", "--listen", &format!("127.0.0.1:{p2}")],
        &other,
    );
    for (p, port) in [(&near, p1), (&far, p2)] {
        assert!(
            wait_for_port(port, Duration::from_secs(30)),
            "{}: {}",
            p.name,
            p.log_tail()
        );
    }
    wait_until("the ingest's preview.jpg", Duration::from_secs(60), || {
        shared
            .join("hls/live")
            .join(hlsmark_previews::PREVIEW_FILE)
            .is_file()
            .then_some(())
    });
    let jpeg = first_bytes(p1, "/preview/live.mjpeg", 4096);
    assert!(
        jpeg.windows(2).any(|w| w == [0xff, 0xd8]),
        "no JPEG in the MJPEG preview of the node sharing the data dir"
    );
    let started = Instant::now();
    let r = http::get(p2, "/preview/live.gif").unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    let e = json(&r);
    assert_eq!(e["error"]["code"], "no_preview");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("preview.jpg") && msg.contains("/thumbnail/live.jpg"),
        "{msg}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the 404 came at once"
    );
}

/// The load balancer with no API node to reach (both refuse): nginx's own error is the API's JSON
/// error shape, 503 `no_api_node` with `Retry-After`, not nginx's HTML page.
#[test]
fn the_load_balancer_answers_json_when_no_node_answers() {
    require_program("nginx");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = std::fs::read_to_string(repo_root().join("scale/nginx.conf"))
        .unwrap()
        .replace("api-1:5000", &format!("127.0.0.1:{}", free_port()))
        .replace("api-2:5000", &format!("127.0.0.1:{}", free_port()))
        .replace("listen 5000;", &format!("listen 127.0.0.1:{port};"))
        .replace("/var/cache/nginx", &dir.path().to_string_lossy());
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut nginx = Command::new("nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf_path)
        .arg("-g")
        .arg(format!(
            "daemon off; pid {}/nginx.pid; master_process off;",
            dir.path().display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for_port(port, Duration::from_secs(10)),
        "nginx did not listen"
    );
    for path in [
        "/markers",
        "/hls/live/index.m3u8",
        "/hls/live/e0-00000001.m4s",
    ] {
        let r = http::get(port, path).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert_eq!(v["error"]["code"], "no_api_node", "{path}: {}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"), "{path}");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{path}"
        );
    }
    let _ = nginx.kill();
    let _ = nginx.wait();
}
