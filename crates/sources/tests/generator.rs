//! End-to-end tests of the generator with a real ffmpeg (and a real redis-server for the outage
//! test): segment durations, frame-exact markers (decoded pixels), no drift over an hour of media,
//! ffmpeg killed mid-stream, the store going away and coming back, a restarted generator.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hlsmark_clock::{Epoch, FrameRate, HlsTime, Segment, SeqNo, Timeline};
use hlsmark_sources::events::EventSchedule;
use hlsmark_sources::render::corner_is_mint;
use hlsmark_sources::{GeneratorConfig, GeneratorError, Report, marker_id};
use hlsmark_store::{Marker, RangeQuery, Store, StreamName};
use hlsmark_testkit::{RedisServer, require_program};
use tokio::sync::oneshot;

const W: u32 = 160;
const H: u32 = 96;
const BLOCK: u32 = 16;

fn config(data: &Path) -> GeneratorConfig {
    let mut c = GeneratorConfig::new(StreamName::live(), data.to_owned());
    c.width = W;
    c.height = H;
    c.block_size = BLOCK;
    c.roll_speed = 40;
    c.fps = FrameRate::integer(30);
    c.event_mean = Duration::from_millis(700);
    c.event_duration = Duration::from_millis(300);
    c.seed = 42;
    c.realtime = false;
    c
}

async fn embedded(data: &Path) -> Arc<dyn Store> {
    std::fs::create_dir_all(data).unwrap();
    hlsmark_store::open(data.join("hlsmark.redb").to_str().unwrap(), "hlsmark")
        .await
        .unwrap()
}

/// Runs the generator to completion (`stop_after` set) or until `stop` fires.
fn spawn(
    cfg: GeneratorConfig,
    store: Arc<dyn Store>,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<Report, GeneratorError>>,
) {
    let (tx, rx) = oneshot::channel::<()>();
    let h = tokio::spawn(hlsmark_sources::run(cfg, store, async move {
        let _ = rx.await;
    }));
    (tx, h)
}

/// What a test reads back: the store's view plus the files.
struct Stream {
    store: Arc<dyn Store>,
    name: StreamName,
    dir: PathBuf,
    decoded: HashMap<SeqNo, Vec<Vec<u8>>>,
}

impl Stream {
    fn new(store: Arc<dyn Store>, data: &Path) -> Self {
        Self {
            store,
            name: StreamName::live(),
            dir: data.join("hls/live"),
            decoded: HashMap::new(),
        }
    }

    async fn segments(&self) -> Vec<Segment> {
        self.store.last_segments(&self.name, 100_000).await.unwrap()
    }

    async fn timeline(&self) -> Timeline {
        Timeline::new(self.store.epochs(&self.name).await.unwrap()).unwrap()
    }

    async fn markers(&self) -> Vec<Marker> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let q = RangeQuery::new(
                self.name.clone(),
                HlsTime(0),
                HlsTime(90_000 * 86_400 * 365),
                1000,
                after,
            )
            .unwrap();
            let page = self.store.query_markers(&q).await.unwrap();
            out.extend(page.markers);
            match page.next {
                Some(c) => after = Some(c),
                None => return out,
            }
        }
    }

    /// init + segment concatenated, as a player's MSE sees them.
    fn joined(&self, seg: &Segment) -> PathBuf {
        let mut bytes = std::fs::read(self.dir.join(seg.init_file.as_ref().unwrap())).unwrap();
        bytes.extend(std::fs::read(self.dir.join(&seg.file)).unwrap());
        let p = self.dir.join(format!(".test-{}.mp4", seg.seq));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Decoded RGB24 frames of a segment.
    fn frames(&mut self, seg: &Segment) -> &Vec<Vec<u8>> {
        if !self.decoded.contains_key(&seg.seq) {
            let p = self.joined(seg);
            let out = Command::new("ffmpeg")
                .args(["-v", "error", "-i"])
                .arg(&p)
                .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
                .output()
                .unwrap();
            assert!(out.status.success(), "decode {}", seg.file);
            let len = (W * H * 3) as usize;
            assert_eq!(out.stdout.len() % len, 0);
            let frames = out.stdout.chunks_exact(len).map(<[u8]>::to_vec).collect();
            self.decoded.insert(seg.seq, frames);
        }
        &self.decoded[&seg.seq]
    }

    /// Presentation time (90 kHz) of the first packet of a segment: its `tfdt`.
    fn first_pts(&self, seg: &Segment) -> i64 {
        let p = self.joined(seg);
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "packet=pts",
                "-of",
                "csv=p=0",
            ])
            .arg(&p)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    }

    /// Whether the frame showing at `hls` has the mint corner; `None` if that media is not there.
    async fn mint_at(&mut self, hls: HlsTime) -> Option<bool> {
        let t = self.timeline().await;
        let e = *t.epoch_at_hls(hls).ok()?;
        let seq = e.seq_at(hls);
        let seg = self.store.get_segment(&self.name, seq).await.unwrap()?;
        if hls >= seg.hls_end() || seg.epoch != e.index {
            return None;
        }
        let k = e.frame_at(hls) - e.frame_at(seg.hls_start);
        let frames = self.frames(&seg);
        let f = frames.get(usize::try_from(k).unwrap())?;
        Some(corner_is_mint(f, W as usize, BLOCK as usize))
    }
}

/// The segment's frame table is the epoch's frame grid: frame i of segment `seq` sits at
/// `epoch.frame_time(k*S + i)` (the same function markers use), and its duration is its frames'.
fn assert_frames_on_grid(e: &Epoch, seg: &Segment, frames: usize) {
    let k = i64::try_from(seg.seq - e.first_seq).unwrap() * i64::from(e.segment_frames);
    assert_eq!(seg.frames.len(), frames, "frame table of {}", seg.file);
    for (i, t) in seg.frames.times(seg.hls_start).enumerate() {
        assert_eq!(t, e.frame_time(k + i as i64), "{} frame {i}", seg.file);
    }
    assert_eq!(
        seg.duration,
        e.frame_time(k + frames as i64) - e.frame_time(k),
        "{}",
        seg.file
    );
}

/// Every frame's presentation time in the file (90 kHz), as a decoder sees it.
fn file_pts(s: &Stream, seg: &Segment) -> Vec<i64> {
    let p = s.joined(seg);
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts",
            "-of",
            "csv=p=0",
        ])
        .arg(&p)
        .output()
        .unwrap();
    let mut v: Vec<i64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().trim_end_matches(',').parse().unwrap())
        .collect();
    v.sort_unstable();
    v
}

/// Every marker's HLS time shows the mint corner and the frame before does not (unless the marker
/// was re-anchored to an epoch's first frame); its last frame is mint and the next is not.
async fn assert_markers_frame_exact(s: &mut Stream, markers: &[Marker]) -> usize {
    let t = s.timeline().await;
    let mut checked = 0;
    for m in markers {
        let e = *t.epoch_at_hls(m.hls).unwrap();
        // The frames before and at the end, by index (at 24000/1001 frames are 3753 or 3754 ticks
        // apart, so "one frame" is not a constant number of ticks).
        let n = e.frame_at(m.hls);
        let before = e.frame_time(n - 1);
        assert_eq!(m.hls, e.snap_to_frame(m.hls), "{} not on a frame", m.label);
        assert_eq!(m.utc, t.hls_to_utc(m.hls).unwrap(), "{}", m.label);
        assert_eq!(m.gen_time, t.hls_to_gen(m.hls).unwrap(), "{}", m.label);
        let Some(mint) = s.mint_at(m.hls).await else {
            continue;
        };
        assert!(
            mint,
            "{} at {:?}: the frame does not show the mint corner",
            m.label, m.hls
        );
        if m.hls != e.hls_start {
            assert_eq!(
                s.mint_at(before).await,
                Some(false),
                "{}: the frame before is already mint",
                m.label
            );
        }
        // The event's end is checkable only when its whole duration lies in the same epoch (an
        // ffmpeg restart cuts the media, and GEN jumps across the gap).
        let last = e.frame_time(e.frame_at(m.hls + m.duration) - 1);
        let same_epoch = |h: HlsTime| {
            t.epoch_at_hls(h).is_ok_and(|x| x.index == e.index)
                && e.hls_end.is_none_or(|end| h < end)
        };
        if same_epoch(last)
            && let Some(v) = s.mint_at(last).await
        {
            assert!(v, "{}: last frame of the event not mint", m.label);
        }
        if same_epoch(m.hls + m.duration)
            && let Some(v) = s.mint_at(m.hls + m.duration).await
        {
            assert!(!v, "{}: mint after the event's duration", m.label);
        }
        checked += 1;
    }
    checked
}

/// ffmpeg processes whose parent is this test process (nextest runs each test in its own process;
/// ffmpeg's command line no longer names the directory: it writes to a pipe).
fn ffmpeg_children_of_us() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(rest) = stat.rsplit_once(") ").map(|x| x.1) else {
            continue;
        };
        let ppid = rest.split(' ').nth(1).unwrap_or("");
        if ppid == me && stat.contains("(ffmpeg)") {
            out.push(pid);
        }
    }
    out
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_segment_is_whole_frames_and_extinf_is_exact() {
    require_program("ffmpeg");
    let tmp = tempfile::tempdir().unwrap();
    let store = embedded(tmp.path()).await;
    let mut cfg = config(tmp.path());
    cfg.stop_after = Some(Duration::from_millis(5_500));
    let (_stop, h) = spawn(cfg, store.clone());
    let report = h.await.unwrap().unwrap();
    assert_eq!(report.frames_written, 165);
    assert!(report.flushed);

    let mut s = Stream::new(store, tmp.path());
    let segs = s.segments().await;
    assert_eq!(
        segs.iter().map(|x| x.seq).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(report.frame_mismatches, 0);
    assert_eq!(report.frames_published, 165);
    let t = s.timeline().await;
    let e = t.epochs()[0];
    for seg in &segs {
        let frames = s.frames(seg).len() as i64;
        let want = if seg.seq < 5 { 30 } else { 15 };
        assert_eq!(frames, want, "frames in {}", seg.file);
        assert_eq!(seg.duration, e.fps.frame_to_ticks(frames), "{}", seg.file);
        // The frame table (what EXTINF and snapping use) is the decoded frames, on the grid.
        assert_frames_on_grid(&e, seg, frames as usize);
        let pts: Vec<i64> = seg.frames.times(seg.hls_start).map(|t| t.ticks()).collect();
        assert_eq!(file_pts(&s, seg), pts, "{}", seg.file);
        assert_eq!(seg.hls_start, e.segment_start(seg.seq));
        assert_eq!(seg.utc_start, t.hls_to_utc(seg.hls_start).unwrap());
        // The media inside says the same: the first packet's time is the segment's HLS start.
        assert_eq!(s.first_pts(seg), seg.hls_start.ticks(), "{}", seg.file);
    }

    // Retention: keep 2 s (live window 2) of 5.5 s: segments ending at or before 3.5 s leave the
    // index and the disk.
    let end = segs.last().unwrap().hls_end();
    let removed = hlsmark_sources::retention::apply_once(
        s.store.as_ref(),
        &s.name,
        &s.dir,
        end,
        hlsmark_clock::Duration90k::from_secs(2),
        None,
    )
    .await
    .unwrap();
    assert_eq!(removed.segments, 3);
    let left: Vec<_> = s.segments().await.iter().map(|x| x.seq).collect();
    assert_eq!(left, [3, 4, 5]);
    for seq in 0..3 {
        assert!(!s.dir.join(format!("e0-{seq:08}.m4s")).exists());
    }
    assert!(s.dir.join("e0-00000003.m4s").exists());
    assert!(s.dir.join("e0-init.mp4").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntsc_rate_segments_are_exact_to_the_tick() {
    let tmp = tempfile::tempdir().unwrap();
    let store = embedded(tmp.path()).await;
    let mut cfg = config(tmp.path());
    cfg.fps = FrameRate::new(30_000, 1_001).unwrap();
    cfg.stop_after = Some(Duration::from_secs(4));
    let (_stop, h) = spawn(cfg, store.clone());
    let report = h.await.unwrap().unwrap();
    assert_eq!(report.frames_written, 120);
    let mut s = Stream::new(store, tmp.path());
    let segs = s.segments().await;
    assert_eq!(report.frame_mismatches, 0);
    let e = s.timeline().await.epochs()[0];
    assert_eq!(segs.len(), 4);
    for seg in &segs {
        // 30 frames of 3003 ticks: 1.001 s, on the segment's sequence-aligned start.
        assert_eq!(seg.duration.ticks(), 90_090, "{}", seg.file);
        assert_eq!(seg.hls_start.ticks(), seg.seq as i64 * 90_090);
        assert_frames_on_grid(&e, seg, 30);
        assert_eq!(s.frames(seg).len(), 30);
        assert_eq!(s.first_pts(seg), seg.hls_start.ticks(), "{}", seg.file);
    }
    let markers = s.markers().await;
    assert!(!markers.is_empty());
    assert_eq!(
        assert_markers_frame_exact(&mut s, &markers).await,
        markers.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_are_frame_exact_in_decoded_video() {
    let tmp = tempfile::tempdir().unwrap();
    let store = embedded(tmp.path()).await;
    let mut cfg = config(tmp.path());
    cfg.stop_after = Some(Duration::from_secs(15));
    let spec = cfg.schedule();
    let (_stop, h) = spawn(cfg, store.clone());
    let report = h.await.unwrap().unwrap();
    let mut s = Stream::new(store, tmp.path());
    let markers = s.markers().await;
    // Every event that starts inside the 450 frames is a marker, with its deterministic id.
    let expected: Vec<_> = EventSchedule::new(spec)
        .take_while(|e| e.start < 450)
        .collect();
    assert!(expected.len() >= 8, "{} events", expected.len());
    assert_eq!(markers.len(), expected.len());
    assert_eq!(report.markers, expected.len() as u64);
    for (m, e) in markers.iter().zip(&expected) {
        assert_eq!(m.id, marker_id(42, &s.name, e.index));
        assert_eq!(m.label, format!("event #{}", e.index));
        assert_eq!(m.kind, "event");
        assert_eq!(m.hls, HlsTime(e.start * 3_000));
        assert_eq!(m.duration.ticks(), 9 * 3_000);
    }
    let checked = assert_markers_frame_exact(&mut s, &markers).await;
    assert_eq!(checked, markers.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_of_media_unpaced_does_not_drift() {
    let tmp = tempfile::tempdir().unwrap();
    let store = embedded(tmp.path()).await;
    let mut cfg = config(tmp.path());
    cfg.width = 64;
    cfg.height = 32;
    cfg.fps = FrameRate::integer(10);
    cfg.event_mean = Duration::from_secs(60);
    cfg.event_duration = Duration::from_secs(1);
    cfg.stop_after = Some(Duration::from_secs(3_600));
    let (_stop, h) = spawn(cfg, store.clone());
    let report = h.await.unwrap().unwrap();
    assert_eq!(report.frames_written, 36_000);
    assert_eq!((report.epochs, report.ffmpeg_restarts), (1, 0));
    let s = Stream::new(store.clone(), tmp.path());
    if !report.flushed {
        // An hour of media in seconds outruns a slow disk's fsyncs (a loaded CI machine): what
        // missed the shutdown flush is in the journal, which the next start writes first. Do
        // what it does; a record lost on the way would still fail the count below.
        let (_keep, mut never) = tokio::sync::watch::channel(false);
        let n =
            hlsmark_sources::publish::replay_journal(&*store, &s.name, &s.dir, &mut never).await;
        assert!(n > 0, "not flushed, and no journal: {report:?}");
    }
    let segs = s.segments().await;
    assert_eq!(segs.len(), 3_600);
    let t = s.timeline().await;
    let e = t.epochs()[0];
    for (i, seg) in segs.iter().enumerate() {
        assert_eq!(seg.seq, i as u64);
        assert_eq!(seg.duration.ticks(), 90_000, "{}", seg.file);
    }
    let last = segs.last().unwrap();
    // Media start is exactly sequence x duration within the epoch...
    assert_eq!(last.hls_start, HlsTime(3_599 * 90_000));
    assert_eq!(last.hls_start, e.hls_start + e.segment_duration() * 3_599);
    // ...inside the file too (ffmpeg's timestamps agree to the tick after an hour)...
    assert_eq!(s.first_pts(last), 3_599 * 90_000);
    // ...and PDT is the anchor plus media time, well within 1 ms.
    let pdt = last.utc_start;
    let want = e.utc_start + (last.hls_start - e.hls_start);
    assert!((pdt - want).as_millis_rounded().abs() < 1);
    assert_eq!(last.hls_end(), HlsTime(3_600 * 90_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ffmpeg_restarts_as_a_new_epoch_and_markers_stay_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let store = embedded(tmp.path()).await;
    let mut cfg = config(tmp.path());
    cfg.realtime = true;
    let (stop, h) = spawn(cfg, store.clone());
    let mut s = Stream::new(store, tmp.path());
    wait_for("3 segments", Duration::from_secs(30), async || {
        s.segments().await.len() >= 3
    })
    .await;
    let pids = ffmpeg_children_of_us();
    assert_eq!(pids.len(), 1, "{pids:?}");
    let killed = Command::new("kill")
        .args(["-KILL", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for(
        "3 segments of epoch 1",
        Duration::from_secs(30),
        async || s.segments().await.iter().filter(|x| x.epoch == 1).count() >= 3,
    )
    .await;
    stop.send(()).unwrap();
    let report = h.await.unwrap().unwrap();
    assert_eq!((report.epochs, report.ffmpeg_restarts), (2, 1));
    assert!(report.flushed);

    let segs = s.segments().await;
    let t = s.timeline().await;
    let (e0, e1) = (t.epochs()[0], t.epochs()[1]);
    let last0 = segs.iter().rfind(|x| x.epoch == 0).unwrap();
    // The sequence continues and HLS time is sequence-aligned; epoch 0 is closed at its last segment.
    assert_eq!(e1.first_seq, last0.seq + 1);
    assert_eq!(e1.hls_start, HlsTime(e1.first_seq as i64 * 90_000));
    assert_eq!(e0.hls_end, Some(last0.hls_end()));
    assert!(e1.gen_start > e0.gen_start && e1.utc_start > e0.utc_start);
    let seqs: Vec<_> = segs.iter().map(|x| x.seq).collect();
    let want: Vec<_> = (0..=*seqs.last().unwrap()).collect();
    assert_eq!(seqs, want, "no gap in the sequence");
    // The graceful stop let ffmpeg finish its last (short) segment, and it was published whole:
    // no segment file is left unpublished, and the last one decodes to its frame table.
    let last = segs.last().unwrap().clone();
    let mut files: Vec<String> = std::fs::read_dir(&s.dir)
        .unwrap()
        .flatten()
        .map(|f| f.file_name().into_string().unwrap())
        .filter(|n| n.starts_with("e1-") && n.ends_with(".m4s"))
        .collect();
    files.sort();
    assert_eq!(files.last(), Some(&last.file));
    assert!(!files.iter().any(|f| f.ends_with(".tmp")));
    assert_eq!(s.frames(&last).len(), last.frames.len());
    assert_eq!(report.frame_mismatches, 0);
    for seg in segs.iter().filter(|x| x.epoch == 1) {
        assert_eq!(s.first_pts(seg), seg.hls_start.ticks(), "{}", seg.file);
    }
    // Markers after the restart are still frame-exact (and so are the ones before).
    let markers = s.markers().await;
    let after: Vec<_> = markers
        .iter()
        .filter(|m| m.hls >= e1.hls_start)
        .cloned()
        .collect();
    assert!(!after.is_empty(), "no marker after the restart");
    let checked = assert_markers_frame_exact(&mut s, &markers).await;
    assert!(checked >= after.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_loses_no_segment_and_no_marker() {
    let tmp = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start_with(true);
    let store = hlsmark_store::open(&redis.url(), "t").await.unwrap();
    let mut cfg = config(tmp.path());
    cfg.realtime = true;
    let spec = cfg.schedule();
    let (stop, h) = spawn(cfg, store.clone());
    let s = Stream::new(store.clone(), tmp.path());
    wait_for("2 segments", Duration::from_secs(30), async || {
        s.segments().await.len() >= 2
    })
    .await;
    redis.kill();
    // Media keeps coming while the store is down (about 3 segments).
    let dir = s.dir.clone();
    let files = || std::fs::read_dir(&dir).unwrap().count();
    let before = files();
    let deadline = Instant::now() + Duration::from_secs(30);
    while files() < before + 3 {
        assert!(
            Instant::now() < deadline,
            "no media while the store was down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis.restart();
    wait_for(
        "the store to be back",
        Duration::from_secs(30),
        async || store.ping().await.is_ok(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.send(()).unwrap();
    let report = h.await.unwrap().unwrap();
    assert!(report.flushed);
    assert!(report.store_outages >= 1, "{report:?}");
    assert_eq!(report.queue_dropped, 0);
    assert_eq!(report.stored_segments, report.segments);
    assert_eq!(report.stored_markers, report.markers);

    let segs = s.segments().await;
    let last = segs.last().unwrap();
    assert_eq!(Some(last.seq), report.last_seq);
    let seqs: Vec<_> = segs.iter().map(|x| x.seq).collect();
    assert_eq!(seqs, (0..=last.seq).collect::<Vec<_>>(), "no segment lost");
    // Every event that starts inside the published media is in the store.
    let end_frame = last.hls_end().ticks() / 3_000;
    let expected: Vec<_> = EventSchedule::new(spec)
        .take_while(|e| e.start < end_frame)
        .map(|e| marker_id(42, &s.name, e.index))
        .collect();
    let mut got: Vec<_> = s.markers().await.iter().map(|m| m.id).collect();
    let mut want = expected.clone();
    got.sort();
    want.sort();
    assert!(!want.is_empty());
    assert_eq!(got, want, "markers lost or extra");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_generator_continues_the_stream() {
    let tmp = tempfile::tempdir().unwrap();
    for run in 0..2 {
        let store = embedded(tmp.path()).await;
        let mut cfg = config(tmp.path());
        cfg.stop_after = Some(Duration::from_secs(3));
        let (_stop, h) = spawn(cfg, store.clone());
        let report = h.await.unwrap().unwrap();
        assert_eq!(report.last_seq, Some(3 * run + 2));
        drop(store);
    }
    let store = embedded(tmp.path()).await;
    let mut s = Stream::new(store, tmp.path());
    let t = s.timeline().await;
    let epochs: Vec<Epoch> = t.epochs().to_vec();
    assert_eq!(epochs.len(), 2);
    assert_eq!((epochs[1].index, epochs[1].first_seq), (1, 3));
    assert_eq!(epochs[1].hls_start, HlsTime(3 * 90_000));
    assert_eq!(epochs[0].hls_end, Some(HlsTime(3 * 90_000)));
    // GEN continued after everything the first run rendered.
    assert!(epochs[1].gen_start.ticks() >= 3 * 90_000);
    let markers = s.markers().await;
    let n = assert_markers_frame_exact(&mut s, &markers).await;
    assert_eq!(n, markers.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ffmpeg_is_a_clear_start_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = embedded(tmp.path()).await;
    let mut cfg = config(tmp.path());
    cfg.ffmpeg = PathBuf::from("/nonexistent/ffmpeg");
    let (_stop, h) = spawn(cfg, store);
    let err = h.await.unwrap().unwrap_err();
    assert!(matches!(err, GeneratorError::FfmpegMissing { .. }));
    assert!(err.to_string().contains("apt-get install ffmpeg"), "{err}");
}

/// Cameras' and films' rates, whose frames are not a whole number of ticks: every frame in the
/// segments sits where `epoch.frame_time(n)` (the markers' function) puts it, and markers land on
/// the first mint frame in the decoded video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntsc_film_and_60_rates_are_frame_exact() {
    for (num, den, s_frames, want_ticks) in
        [(24_000, 1_001, 24, 90_090), (60_000, 1_001, 60, 90_090)]
    {
        let tmp = tempfile::tempdir().unwrap();
        let store = embedded(tmp.path()).await;
        let mut cfg = config(tmp.path());
        cfg.fps = FrameRate::new(num, den).unwrap();
        cfg.stop_after = Some(Duration::from_secs(4));
        let (_stop, h) = spawn(cfg, store.clone());
        let report = h.await.unwrap().unwrap();
        assert_eq!(report.frame_mismatches, 0, "{num}/{den}");
        let mut s = Stream::new(store, tmp.path());
        let segs = s.segments().await;
        let e = s.timeline().await.epochs()[0];
        assert_eq!(e.segment_frames, s_frames);
        let mut frames_total = 0;
        for seg in &segs {
            let n = s.frames(seg).len();
            frames_total += n;
            if seg.seq + 1 < segs.len() as u64 {
                assert_eq!(n, s_frames as usize, "{}", seg.file);
                assert_eq!(seg.duration.ticks(), want_ticks, "{}", seg.file);
            }
            assert_eq!(seg.hls_start, e.segment_start(seg.seq), "{}", seg.file);
            assert_frames_on_grid(&e, seg, n);
            let pts: Vec<i64> = seg.frames.times(seg.hls_start).map(|t| t.ticks()).collect();
            assert_eq!(file_pts(&s, seg), pts, "{num}/{den} {}", seg.file);
        }
        assert_eq!(frames_total as i64, report.frames_written);
        let markers = s.markers().await;
        assert!(!markers.is_empty());
        assert_eq!(
            assert_markers_frame_exact(&mut s, &markers).await,
            markers.len(),
            "{num}/{den}"
        );
    }
}

/// The generator's tone: AAC 48 kHz in the same segments, and the video still frame-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tone_is_muxed_as_aac_and_video_stays_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let store = embedded(tmp.path()).await;
    let mut cfg = config(tmp.path());
    cfg.encoding.tone = true;
    cfg.stop_after = Some(Duration::from_secs(3));
    let (_stop, h) = spawn(cfg, store.clone());
    let report = h.await.unwrap().unwrap();
    assert_eq!(report.frame_mismatches, 0);
    let mut s = Stream::new(store, tmp.path());
    let segs = s.segments().await;
    assert_eq!(segs.len(), 3);
    let e = s.timeline().await.epochs()[0];
    for seg in &segs {
        let streams = hlsmark_testkit::decode::probe_streams(s.joined(seg));
        let audio = streams.iter().find(|x| x.kind == "audio").expect("audio");
        assert_eq!((audio.codec.as_str(), audio.sample_rate), ("aac", 48_000));
        assert_frames_on_grid(&e, seg, 30);
        assert_eq!(s.frames(seg).len(), 30);
    }
    let markers = s.markers().await;
    assert_eq!(
        assert_markers_frame_exact(&mut s, &markers).await,
        markers.len()
    );
}

// ---------------------------------------------------------------------------------------------
// LL-HLS parts

/// What a watcher saw of the parts while the stream ran.
#[derive(Default)]
struct PartLog {
    /// Every part record seen, with its file's bytes read at once (files leave 4 segments on).
    parts: std::collections::BTreeMap<(SeqNo, u32), (hlsmark_clock::Part, Vec<u8>)>,
    /// A part was in the store while its segment was not (the segment still open).
    seen_before_segment: usize,
    /// Largest number of complete segments whose parts were kept at one time.
    max_segments_kept: usize,
    /// Part files seen on disk at any time.
    files: std::collections::BTreeSet<String>,
}

/// Watches the store through its update feed (the way a server's blocking reload waits) until
/// `done` resolves, recording the parts.
async fn watch_parts(store: Arc<dyn Store>, dir: PathBuf, done: oneshot::Receiver<()>) -> PartLog {
    let name = StreamName::live();
    let mut feed = store.subscribe_updates().await.unwrap();
    let mut log = PartLog::default();
    tokio::pin!(done);
    loop {
        tokio::select! {
            _ = &mut done => return log,
            u = feed.recv() => if u.is_err() { continue },
        }
        let parts = store.parts(&name, 0).await.unwrap();
        let last = store.last_segments(&name, 1).await.unwrap();
        let last_seq = last.first().map(|s| s.seq);
        let mut kept = std::collections::BTreeSet::new();
        for p in parts {
            if last_seq.is_none_or(|l| p.seq > l) {
                log.seen_before_segment += 1;
            } else {
                kept.insert(p.seq);
            }
            if let std::collections::btree_map::Entry::Vacant(e) = log.parts.entry((p.seq, p.index))
            {
                // The record is written after its file: the file is there, whole.
                let bytes = std::fs::read(dir.join(&p.file)).unwrap();
                e.insert((p, bytes));
            }
        }
        log.max_segments_kept = log.max_segments_kept.max(kept.len());
        for f in std::fs::read_dir(&dir).unwrap().flatten() {
            let n = f.file_name().to_string_lossy().into_owned();
            if hlsmark_clock::Part::parse_file_name(&n).is_some() {
                log.files.insert(n);
            }
        }
    }
}

/// Every part file the directory still has (parts and parts being written).
fn part_files_left(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .filter(|n| hlsmark_sources::pipeline::is_part_file(n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_reach_the_store_while_their_segment_is_open_and_make_it_byte_for_byte() {
    require_program("ffmpeg");
    let tmp = tempfile::tempdir().unwrap();
    let store = embedded(tmp.path()).await;
    let mut cfg = config(tmp.path());
    // Paced, so a segment is open for a second while its 200 ms parts arrive.
    cfg.realtime = true;
    cfg.stop_after = Some(Duration::from_millis(6_500));
    let dir = tmp.path().join("hls/live");
    std::fs::create_dir_all(&dir).unwrap();
    let (done_tx, done_rx) = oneshot::channel();
    let watcher = tokio::spawn(watch_parts(store.clone(), dir.clone(), done_rx));
    let (_stop, h) = spawn(cfg, store.clone());
    let report = h.await.unwrap().unwrap();
    assert!(report.flushed);
    let _ = done_tx.send(());
    let log = watcher.await.unwrap();

    let s = Stream::new(store.clone(), tmp.path());
    let segs = s.segments().await;
    assert_eq!(segs.len(), 7);
    assert!(
        log.seen_before_segment >= 5,
        "parts of open segments were in the store: {}",
        log.seen_before_segment
    );
    assert!(
        (3..=4).contains(&log.max_segments_kept),
        "parts of the last 4 segments are kept: {}",
        log.max_segments_kept
    );
    for seg in &segs {
        let mine: Vec<_> = log
            .parts
            .range((seg.seq, 0)..(seg.seq + 1, 0))
            .map(|(_, v)| v)
            .collect();
        // 30 frames a segment, a fragment at least every 200 ms (6 frames): 5 parts (the last
        // segment has 15 frames).
        let want = if seg.seq < 6 { 5 } else { 3 };
        assert_eq!(mine.len(), want, "parts of {}", seg.file);
        let mut t = seg.hls_start;
        for (i, (p, _)) in mine.iter().enumerate() {
            assert_eq!((p.index, p.epoch), (u32::try_from(i).unwrap(), seg.epoch));
            assert_eq!(
                p.hls_start, t,
                "part {i} of {} starts where the last ended",
                seg.file
            );
            assert_eq!(p.independent, i == 0, "only part 0 starts with a keyframe");
            // 200 ms = 6 frames; the last segment's 15 frames end with a 3-frame part.
            let frames = if seg.seq == 6 && i == 2 { 3 } else { 6 };
            assert_eq!(
                p.duration.ticks(),
                frames * 3000,
                "part {i} of {}",
                seg.file
            );
            t = p.hls_end();
        }
        assert_eq!(t, seg.hls_end(), "parts of {} sum to it exactly", seg.file);
        let concat: Vec<u8> = mine.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        let whole = std::fs::read(s.dir.join(&seg.file)).unwrap();
        assert!(concat == whole, "parts of {} are its bytes", seg.file);
    }
    // Parts leave the store and the disk: dropped behind the edge while running, every one
    // at the stop.
    assert!(log.files.len() >= 30, "{:?}", log.files);
    assert!(
        store
            .parts(&StreamName::live(), 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(part_files_left(&s.dir), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_duration_zero_publishes_no_parts_and_a_start_clears_stale_ones() {
    require_program("ffmpeg");
    let tmp = tempfile::tempdir().unwrap();
    let store = embedded(tmp.path()).await;
    let name = StreamName::live();
    // Leftovers of a crashed run: a part record, its file, a part being written.
    let dir = tmp.path().join("hls/live");
    std::fs::create_dir_all(&dir).unwrap();
    let stale = hlsmark_clock::Part {
        seq: 9,
        index: 1,
        epoch: 0,
        hls_start: HlsTime(9 * 90_000),
        duration: hlsmark_clock::Duration90k(18_000),
        independent: false,
        file: hlsmark_clock::Part::file_name(0, 9, 1),
    };
    store.append_part(&name, &stale).await.unwrap();
    std::fs::write(dir.join(&stale.file), b"stale").unwrap();
    std::fs::write(dir.join(".e0-00000009.p2.m4s.tmp"), b"stale").unwrap();

    let mut cfg = config(tmp.path());
    cfg.part_duration = Duration::ZERO;
    cfg.stop_after = Some(Duration::from_secs(3));
    let (done_tx, done_rx) = oneshot::channel();
    let watcher = tokio::spawn(watch_parts(store.clone(), dir.clone(), done_rx));
    let (_stop, h) = spawn(cfg, store.clone());
    let report = h.await.unwrap().unwrap();
    let _ = done_tx.send(());
    let log = watcher.await.unwrap();
    assert_eq!(report.segments, 3);
    // The only part ever seen is the stale one, until the start cleared it.
    assert!(
        log.parts.keys().all(|k| *k == (9, 1)),
        "{:?}",
        log.parts.keys()
    );
    assert!(store.parts(&name, 0).await.unwrap().is_empty());
    assert_eq!(part_files_left(&dir), Vec::<String>::new());
    // Without parts ffmpeg fragments at keyframes only: one fragment per segment.
    let s = Stream::new(store, tmp.path());
    for seg in s.segments().await {
        let bytes = std::fs::read(s.dir.join(&seg.file)).unwrap();
        let moofs = bytes.windows(4).filter(|w| w == b"moof").count();
        assert_eq!(moofs, 1, "{}", seg.file);
    }
}

/// Issue 18 row 1: records the store did not take before a shutdown (Redis down at exit) are
/// not dropped: they go to the stream's journal and the next start writes them first, so every
/// segment and marker of the first run is in the store after the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_queued_at_a_shutdown_during_an_outage_are_written_by_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start_with(true);
    let store = hlsmark_store::open(&redis.url(), "t").await.unwrap();
    let mut cfg = config(tmp.path());
    cfg.realtime = true;
    let spec = cfg.schedule();
    let (stop, h) = spawn(cfg.clone(), store.clone());
    let s = Stream::new(store.clone(), tmp.path());
    wait_for("2 segments", Duration::from_secs(30), async || {
        s.segments().await.len() >= 2
    })
    .await;
    redis.kill();
    let dir = s.dir.clone();
    let files = || std::fs::read_dir(&dir).unwrap().count();
    let before = files();
    wait_for(
        "media while the store is down",
        Duration::from_secs(30),
        async || files() >= before + 3,
    )
    .await;
    stop.send(()).unwrap();
    let first = h.await.unwrap().unwrap();
    assert!(!first.flushed, "{first:?}");
    let journal = s.dir.join(hlsmark_sources::publish::JOURNAL_FILE);
    assert!(journal.exists(), "no journal written");

    redis.restart();
    cfg.stop_after = Some(Duration::from_secs(2));
    let (_stop, h) = spawn(cfg, store.clone());
    let second = h.await.unwrap().unwrap();
    assert!(second.flushed, "{second:?}");
    assert!(!journal.exists(), "the journal stays after it was written");
    let segs = s.segments().await;
    let seqs: Vec<_> = segs.iter().map(|x| x.seq).collect();
    let last = *seqs.last().unwrap();
    assert_eq!(seqs, (0..=last).collect::<Vec<_>>(), "a segment was lost");
    assert!(last >= first.last_seq.unwrap(), "{first:?}");
    let end_frame = first_run_end(&segs, first.last_seq.unwrap()) / 3_000;
    let mut want: Vec<_> = EventSchedule::new(spec)
        .take_while(|e| e.start < end_frame)
        .map(|e| marker_id(42, &s.name, e.index))
        .collect();
    let mut got: Vec<_> = s.markers().await.iter().map(|m| m.id).collect();
    got.retain(|id| want.contains(id));
    got.sort();
    want.sort();
    assert!(!want.is_empty());
    assert_eq!(got, want, "markers of the first run lost");
}

fn first_run_end(segs: &[Segment], last_seq: SeqNo) -> i64 {
    segs.iter()
        .find(|s| s.seq == last_seq)
        .map_or(0, |s| s.hls_end().ticks())
}

/// Issue 18 row 3: an ffmpeg a killed hlsmark left behind (here: blocked opening a FIFO that no
/// one writes, so it never writes to its pipe and never dies of EPIPE) is killed by the next
/// start through the pid file, and only when the recorded process is still that ffmpeg.
#[tokio::test]
async fn a_leftover_ffmpeg_is_killed_at_the_next_start_and_only_if_it_is_ours() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("input.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let args: Vec<std::ffi::OsString> = ["-nostdin", "-i"]
        .iter()
        .map(Into::into)
        .chain([fifo.clone().into_os_string()])
        .chain(["-f", "null", "-"].iter().map(Into::into))
        .collect();
    let mut ff =
        hlsmark_sources::pipeline::Ffmpeg::spawn(&require_program("ffmpeg"), &args, false, "live")
            .unwrap();
    let pid = ff.id().unwrap();
    let pid_file = tmp.path().join(hlsmark_sources::pipeline::PID_FILE);
    ff.record_pid(pid_file.clone());
    // The guard never runs: as if hlsmark had been killed with -9.
    std::mem::forget(ff);
    assert!(pid_file.exists());
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
    };
    assert!(alive(pid));

    // A pid file whose process is something else now (same pid, another start time, or not an
    // ffmpeg) is left alone.
    let mut sleep = Command::new("sleep").arg("30").spawn().unwrap();
    let text = std::fs::read_to_string(&pid_file).unwrap();
    let started = text.split_whitespace().nth(1).unwrap().to_owned();
    std::fs::write(&pid_file, format!("{} {started}\n", sleep.id())).unwrap();
    assert_eq!(hlsmark_sources::pipeline::kill_leftover(tmp.path()), None);
    assert!(alive(sleep.id()));
    std::fs::write(&pid_file, format!("{pid} 1\n")).unwrap();
    assert_eq!(hlsmark_sources::pipeline::kill_leftover(tmp.path()), None);
    assert!(alive(pid));
    let _ = sleep.kill();
    let _ = sleep.wait();

    std::fs::write(&pid_file, &text).unwrap();
    assert_eq!(
        hlsmark_sources::pipeline::kill_leftover(tmp.path()),
        Some(pid)
    );
    assert!(!pid_file.exists());
    let t = Instant::now();
    while alive(pid) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "ffmpeg {pid} survived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !ffmpeg_children_of_us()
            .iter()
            .any(|&p| alive(p.unsigned_abs()))
    );
}
