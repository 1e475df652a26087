//! Standby ingest (issue 17) against the real binary: two `hlsmark generate` processes for the
//! same stream, one real `redis-server` (free port, temp dir) and one media directory; an
//! `hlsmark serve` reads what they write, as a player would. `kill -9` of the active ingest: the
//! standby takes over, the playlist goes on after a DISCONTINUITY with the next sequence numbers,
//! no segment repeats or overlaps, and markers (the generator's events and posted ones, before
//! and after) sit on exact frames of the decoded segments. `SIGSTOP` of the active ingest past its
//! lease: the standby takes over; resumed, the old one is fenced (it stops, nothing it wrote after
//! the fence is in the index, its files of that time are gone, the stream's status stays the new
//! holder's). `hlsmark run --standby` with a file source (an mp4 made by ffmpeg in the test's
//! temp dir): the same takeover, each process serving the shared store and media on its own port.
//! Timing is never asserted: every wait is for a condition, with generous limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hlsmark_clock::Segment;
use hlsmark_store::{Store, StreamName};
use hlsmark_testkit::hls::{PlaylistSegment, join_segments, live_playlist};
use hlsmark_testkit::process::TOKEN;
use hlsmark_testkit::{RedisServer, free_port, require_program, wait_for_port};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(60);
/// The generator's frame width and checkerboard block (the mint corner's size).
const WIDTH: u32 = 320;
const BLOCK: u32 = 40;

/// A real `hlsmark` child with its log in a file; SIGTERM (then SIGKILL) when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(args: &[&str], log: &Path) -> Self {
        let logf = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hlsmark"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .args(args)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap();
        Self {
            child,
            log: log.to_owned(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig}");
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until the log contains `needle`.
    fn wait_log(&mut self, needle: &str) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            if let Some(st) = self.exited() {
                panic!("exited ({st}) before logging {needle:?}:\n{}", self.tail());
            }
            assert!(
                start.elapsed() < PATIENCE,
                "no {needle:?} in the log:\n{}",
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    redis: RedisServer,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    store: Arc<dyn Store>,
}

impl Setup {
    fn new() -> Self {
        require_program("ffmpeg");
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = rt
            .block_on(hlsmark_store::open(&redis.url(), "hlsmark"))
            .unwrap();
        Self {
            redis,
            dir,
            rt,
            store,
        }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_string_lossy().into_owned()
    }

    /// `hlsmark generate` as `id` (`--standby` when asked): the generator with an event every
    /// ~2 s, small frames, 1 s segments.
    fn generate(&self, id: &str, standby: bool) -> Proc {
        let data = self.data();
        let url = self.redis.url();
        let mut args = vec![
            "generate",
            "--store",
            &url,
            "--data-dir",
            &data,
            "--ingest-id",
            id,
            "--width",
            "320",
            "--height",
            "180",
            "--block-size",
            "40",
            "--segment-duration",
            "1s",
            "--event-mean",
            "2s",
            "--event-duration",
            "1s",
        ];
        if standby {
            args.push("--standby");
        }
        Proc::spawn(&args, &self.dir.path().join(format!("{id}.log")))
    }

    /// `hlsmark run` as `id` on `port` (`--standby` when asked): the file `source` looped (1 s
    /// segments), the API on the same store and data directory as every other process here.
    fn run(&self, id: &str, standby: bool, port: u16, source: &Path) -> Proc {
        let (data, url) = (self.data(), self.redis.url());
        let listen = format!("127.0.0.1:{port}");
        let source = source.to_string_lossy().into_owned();
        let mut args = vec![
            "run",
            "--store",
            &url,
            "--data-dir",
            &data,
            "--listen",
            &listen,
            "--token",
            TOKEN,
            "--ingest-id",
            id,
            "--source",
            &source,
            "--segment-duration",
            "1s",
        ];
        if standby {
            args.push("--standby");
        }
        Proc::spawn(&args, &self.dir.path().join(format!("{id}.log")))
    }

    fn segments(&self) -> Vec<Segment> {
        self.rt
            .block_on(self.store.last_segments(&live(), 100_000))
            .unwrap()
    }

    fn epochs(&self) -> Vec<hlsmark_clock::Epoch> {
        self.rt.block_on(self.store.epochs(&live())).unwrap()
    }

    /// Waits until `f` holds for the segment index.
    fn wait_segments(&self, what: &str, mut f: impl FnMut(&[Segment]) -> bool) -> Vec<Segment> {
        let start = Instant::now();
        loop {
            let segs = self.segments();
            if f(&segs) {
                return segs;
            }
            assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn live() -> StreamName {
    StreamName::new("live").unwrap()
}

/// The index is one sequence: consecutive numbers, each segment starting where the previous one
/// ended (no overlap, no gap in HLS time), every file name once.
fn assert_one_sequence(segs: &[Segment]) {
    for w in segs.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "{} then {}", w[0].file, w[1].file);
        assert_eq!(
            w[1].hls_start,
            w[0].hls_end(),
            "{} then {}",
            w[0].file,
            w[1].file
        );
        assert!(w[1].epoch >= w[0].epoch);
    }
    let mut files: Vec<&str> = segs.iter().map(|s| s.file.as_str()).collect();
    files.sort_unstable();
    files.dedup();
    assert_eq!(files.len(), segs.len(), "a file listed twice");
}

/// Decodes segment `seg` as a player gets it from `hlsmark serve` on `port`: every frame's
/// (pts, mint corner).
fn decoded(port: u16, seg: &Segment, dir: &Path) -> Vec<(i64, bool)> {
    let s = PlaylistSegment {
        seq: seg.seq,
        uri: seg.file.clone(),
        duration: 0.0,
        pdt: None,
        discontinuity: false,
        map: seg.init_file.clone(),
    };
    let path = join_segments(port, "live", &[s], dir, &format!("s{}.mp4", seg.seq));
    hlsmark_testkit::decode::decode_frames(&path, WIDTH, BLOCK)
        .into_iter()
        .map(|f| (f.pts_90k, f.mint))
        .collect()
}

/// The segment holding media time `hls`.
fn holding(segs: &[Segment], hls: i64) -> &Segment {
    segs.iter()
        .find(|s| s.hls_start.ticks() <= hls && hls < s.hls_end().ticks())
        .unwrap_or_else(|| panic!("no segment holds {hls}"))
}

fn serve(s: &Setup) -> (Proc, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (data, url) = (s.data(), s.redis.url());
    let api = Proc::spawn(
        &[
            "serve",
            "--listen",
            &listen,
            "--data-dir",
            &data,
            "--store",
            &url,
            "--token",
            TOKEN,
        ],
        &s.dir.path().join("serve.log"),
    );
    assert!(
        wait_for_port(port, Duration::from_secs(30)),
        "serve did not listen:\n{}",
        api.tail()
    );
    (api, port)
}

/// The HLS times of the generator's event markers the API lists that lie in `[from, to)`.
fn events(port: u16, from: i64, to: i64) -> Vec<i64> {
    let page = hlsmark_testkit::http::get(port, "/markers?from=0&to=1000000&limit=1000").unwrap();
    let page: serde_json::Value = serde_json::from_slice(&page.body).unwrap_or_default();
    page["markers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|m| m["kind"] == "event")
        .filter_map(|m| m["hls_90k"].as_i64())
        .filter(|h| (from..to).contains(h))
        .collect()
}

/// Waits until `GET /streams` shows stream `live`'s `ingest` object matching `f`; returns it.
fn wait_ingest(port: u16, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let r = hlsmark_testkit::http::get(port, "/streams").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        let row = v["streams"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "live").cloned())
            .unwrap_or_default();
        if f(&row["ingest"]) {
            return row["ingest"].clone();
        }
        assert!(start.elapsed() < PATIENCE, "/streams: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn post_marker(port: u16, label: &str, hls: f64) -> i64 {
    let r = hlsmark_testkit::http::request(
        "POST",
        port,
        "/markers",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {TOKEN}")),
        ],
        json!({"label": label, "hls": hls}).to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let m: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    m["hls_90k"].as_i64().unwrap()
}

#[test]
fn standby_takes_over_after_kill_9_with_a_discontinuity_and_exact_markers() {
    let s = Setup::new();
    let mut active = s.generate("gen-a", false);
    active.wait_log("ingest lease acquired");
    s.wait_segments("the active ingest's first segments", |segs| segs.len() >= 3);
    let (_api, port) = serve(&s);

    // A second ingest without --standby is told who holds the stream, and ends.
    let mut second = s.generate("gen-x", false);
    let start = Instant::now();
    let st = loop {
        if let Some(st) = second.exited() {
            break st;
        }
        assert!(start.elapsed() < PATIENCE, "{}", second.tail());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!st.success());
    let log = second.log();
    assert!(
        log.contains("is being ingested by gen-a") && log.contains("--standby"),
        "{log}"
    );

    let mut standby = s.generate("gen-b", true);
    standby.wait_log("standby: another ingest writes the stream");
    // GET /streams names the active ingest and the standby (the store's lease, read by the API).
    let ingest = wait_ingest(port, |i| {
        i["holder"] == "gen-a"
            && i["standby"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("gen-b")))
    });
    let token_a = ingest["token"].as_u64().unwrap();

    // An event of the first epoch, and a marker posted before the kill.
    s.wait_segments("an event of the first ingest", |segs| {
        !events(port, 0, segs.last().map_or(0, |x| x.hls_end().ticks())).is_empty()
    });
    let before = s.segments();
    let edge = before.last().unwrap();
    let posted_before = post_marker(
        port,
        "before",
        (edge.hls_start.ticks() + 40_000) as f64 / 90_000.0,
    );

    active.signal("KILL");
    let last_before = s.segments().last().unwrap().seq;
    standby.wait_log("ingest lease acquired");
    let segs = s.wait_segments("segments and an event of the new ingest", |segs| {
        let Some(first_new) = segs.iter().find(|x| x.seq > last_before) else {
            return false;
        };
        let end = segs.last().unwrap().hls_end().ticks();
        segs.iter().filter(|x| x.seq > last_before).count() >= 3
            && !events(port, first_new.hls_start.ticks(), end).is_empty()
    });
    assert_one_sequence(&segs);
    let ingest = wait_ingest(port, |i| i["holder"] == "gen-b");
    assert!(ingest["token"].as_u64().unwrap() > token_a, "{ingest}");
    let epochs = s.epochs();
    assert_eq!(epochs.len(), 2, "{epochs:?}");
    let (old, new) = (epochs[0], epochs[1]);
    assert_eq!(old.hls_end, Some(new.hls_start), "the old epoch is closed");
    assert_eq!(new.first_seq, last_before + 1);
    assert!(
        segs.iter()
            .all(|x| (x.seq < new.first_seq) == (x.epoch == 0))
    );

    // The playlist: a DISCONTINUITY before the new epoch's first segment, PDT forward.
    let pl = live_playlist(port, "live").unwrap();
    let first_new = pl
        .segments
        .iter()
        .find(|x| x.seq == new.first_seq)
        .unwrap_or_else(|| panic!("{}", pl.text));
    assert!(first_new.discontinuity, "{}", pl.text);
    assert_eq!(pl.discontinuities(), 1, "{}", pl.text);
    let pdts: Vec<_> = pl.segments.iter().filter_map(|x| x.pdt).collect();
    assert!(pdts.windows(2).all(|w| w[0] < w[1]), "{}", pl.text);

    // A marker posted after the takeover, in the new epoch.
    let newest = segs.last().unwrap();
    let posted_after = post_marker(
        port,
        "after",
        (newest.hls_start.ticks() + 40_000) as f64 / 90_000.0,
    );

    // Frame-exact: posted markers sit on a decoded frame; each event marker of both epochs on
    // the event's first mint frame.
    let tmp = tempfile::tempdir().unwrap();
    for hls in [posted_before, posted_after] {
        let frames = decoded(port, holding(&segs, hls), tmp.path());
        assert!(
            frames.iter().any(|(pts, _)| *pts == hls),
            "posted marker at {hls} is not on a frame: {frames:?}"
        );
    }
    let mut by_epoch = [0, 0];
    for hls in events(port, 0, segs.last().unwrap().hls_end().ticks()) {
        let seg = holding(&segs, hls);
        let frames = decoded(port, seg, tmp.path());
        let i = frames
            .iter()
            .position(|(pts, _)| *pts == hls)
            .unwrap_or_else(|| panic!("event at {hls} is not on a frame of {}", seg.file));
        assert!(frames[i].1, "event at {hls}: its frame is not mint");
        if i > 0 {
            assert!(!frames[i - 1].1, "event at {hls}: the frame before is mint");
        }
        by_epoch[usize::try_from(seg.epoch).unwrap().min(1)] += 1;
    }
    assert!(
        by_epoch[0] > 0 && by_epoch[1] > 0,
        "events in both epochs: {by_epoch:?}"
    );
}

/// `hlsmark run --standby` (ingest and API in one process) with a file source: it serves while it
/// waits, takes over after `kill -9` of the active `run`, and the playlist it serves goes on after
/// a DISCONTINUITY with the next sequence numbers.
#[test]
fn run_standby_with_a_file_source_takes_over_after_kill_9() {
    let s = Setup::new();
    // 30 s at 25 fps with a keyframe every second, looped by the source: no loop point is
    // near the takeover.
    let clip = hlsmark_testkit::clip::make_clip(
        s.dir.path(),
        &hlsmark_testkit::clip::ClipSpec::new("source").frames(750),
    );
    let (port_a, port_b) = (free_port(), free_port());
    let mut active = s.run("run-a", false, port_a, &clip.path);
    active.wait_log("ingest lease acquired");
    s.wait_segments("the active run's first segments", |segs| segs.len() >= 3);

    let mut standby = s.run("run-b", true, port_b, &clip.path);
    standby.wait_log("standby: another ingest writes the stream");
    assert!(
        wait_for_port(port_b, PATIENCE),
        "the standby run does not serve:\n{}",
        standby.tail()
    );
    // While it waits, the standby's API serves the active one's stream and names both ingests.
    let ingest = wait_ingest(port_b, |i| {
        i["holder"] == "run-a"
            && i["standby"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("run-b")))
    });
    let token_a = ingest["token"].as_u64().unwrap();
    let before = live_playlist(port_b, "live").unwrap_or_else(|| panic!("{}", standby.tail()));
    assert!(!before.segments.is_empty(), "{}", before.text);
    assert_eq!(before.discontinuities(), 0, "{}", before.text);

    active.signal("KILL");
    let last_before = s.segments().last().unwrap().seq;
    standby.wait_log("ingest lease acquired");
    let segs = s.wait_segments("three segments of the new holder", |segs| {
        segs.iter().filter(|x| x.seq > last_before).count() >= 3
    });
    assert_one_sequence(&segs);
    let ingest = wait_ingest(port_b, |i| i["holder"] == "run-b");
    assert!(ingest["token"].as_u64().unwrap() > token_a, "{ingest}");
    let epochs = s.epochs();
    assert_eq!(epochs.len(), 2, "{epochs:?}");
    let (old, new) = (epochs[0], epochs[1]);
    assert_eq!(old.hls_end, Some(new.hls_start), "the old epoch is closed");
    assert_eq!(new.first_seq, last_before + 1);

    // The playlist the survivor serves: the old epoch's segments, then a DISCONTINUITY and the
    // next sequence numbers; PDT forward; every segment's bytes are there.
    let pl = live_playlist(port_b, "live").unwrap();
    let seqs: Vec<u64> = pl.segments.iter().map(|x| x.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{}", pl.text);
    let first_new = pl
        .segments
        .iter()
        .find(|x| x.seq == new.first_seq)
        .unwrap_or_else(|| panic!("{}", pl.text));
    assert!(first_new.discontinuity, "{}", pl.text);
    assert_eq!(pl.discontinuities(), 1, "{}", pl.text);
    assert!(
        pl.segments.iter().any(|x| x.seq < new.first_seq),
        "{}",
        pl.text
    );
    let pdts: Vec<_> = pl.segments.iter().filter_map(|x| x.pdt).collect();
    assert!(pdts.windows(2).all(|w| w[0] < w[1]), "{}", pl.text);
    for seg in &pl.segments {
        let r = hlsmark_testkit::http::get(port_b, &format!("/hls/live/{}", seg.uri)).unwrap();
        assert_eq!(r.status, 200, "{}", seg.uri);
        assert!(!r.body.is_empty(), "{}", seg.uri);
    }
    assert!(standby.exited().is_none(), "{}", standby.tail());
}

#[test]
fn a_paused_ingest_is_fenced_when_it_resumes_and_writes_nothing() {
    let s = Setup::new();
    let mut old = s.generate("gen-old", false);
    old.wait_log("ingest lease acquired");
    s.wait_segments("the first ingest's segments", |segs| segs.len() >= 2);
    let mut new = s.generate("gen-new", true);
    new.wait_log("standby: another ingest writes the stream");

    old.signal("STOP");
    new.wait_log("ingest lease acquired");
    s.wait_segments("a segment of the new ingest", |segs| {
        segs.last().is_some_and(|x| x.epoch == 1)
    });
    let epoch1 = s.epochs()[1];
    let old_segments = s.segments().iter().filter(|x| x.epoch == 0).count();

    old.signal("CONT");
    let start = Instant::now();
    let st = loop {
        if let Some(st) = old.exited() {
            break st;
        }
        assert!(start.elapsed() < PATIENCE, "{}", old.tail());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!st.success(), "a fenced ingest ends with an error");
    let log = old.log();
    assert!(log.contains("fenced"), "{log}");

    // The new holder goes on; nothing of the old one after the fence is in the index.
    let last = s.segments().last().unwrap().seq;
    let segs = s.wait_segments("the new ingest goes on", |segs| {
        segs.last().is_some_and(|x| x.seq >= last + 2)
    });
    assert_one_sequence(&segs);
    assert_eq!(segs.iter().filter(|x| x.epoch == 0).count(), old_segments);
    assert!(
        segs.iter()
            .all(|x| (x.seq < epoch1.first_seq) == (x.epoch == 0))
    );
    let epochs = s.epochs();
    assert_eq!(epochs.len(), 2, "{epochs:?}");
    assert_eq!(epochs[1], epoch1, "the new holder's epoch is untouched");
    // The old ingest's media of after the fence is gone from the directory.
    let dir = s.dir.path().join("data/hls/live");
    for f in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        if let Some(seq) = name
            .strip_prefix("e0-")
            .and_then(|r| r.strip_suffix(".m4s"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            assert!(
                seq < epoch1.first_seq,
                "{name} of the fenced ingest is left"
            );
        }
    }
    // The status is the new holder's (the old one's "stopped" was refused).
    let statuses = s.rt.block_on(s.store.statuses()).unwrap();
    assert_eq!(statuses[0].1.state, hlsmark_store::StreamState::Live);
    assert!(new.exited().is_none(), "{}", new.tail());
}

/// The standby flags answer bad input with one clear line at start, before anything runs.
#[test]
fn standby_flags_refuse_bad_input_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--standby"],
            "--standby needs a store that several processes share",
        ),
        (&["--lease-ttl", "10ms"], "must be from 300 ms to 3600 s"),
        (&["--lease-ttl", "soon"], "--lease-ttl"),
        (&["--ingest-id", "a b"], "use 1-128 of A-Z"),
    ];
    for (args, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_hlsmark"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .args(["generate", "--data-dir", &data])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
