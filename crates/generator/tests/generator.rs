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
use hlsmark_generator::events::EventSchedule;
use hlsmark_generator::render::corner_is_mint;
use hlsmark_generator::{GeneratorConfig, GeneratorError, Report, marker_id};
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
    let h = tokio::spawn(hlsmark_generator::run(cfg, store, async move {
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

/// ffmpeg's own playlist of an epoch: (uri, EXTINF seconds as printed).
fn ffmpeg_extinf(dir: &Path, epoch: u32) -> HashMap<String, String> {
    let text = std::fs::read_to_string(dir.join(format!(".ffmpeg-e{epoch}.m3u8"))).unwrap();
    let lines: Vec<_> = text.lines().collect();
    lines
        .windows(2)
        .filter_map(|w| {
            let d = w[0].strip_prefix("#EXTINF:")?;
            Some((w[1].to_owned(), d.trim_end_matches(',').to_owned()))
        })
        .collect()
}

/// Every marker's HLS time shows the mint corner and the frame before does not (unless the marker
/// was re-anchored to an epoch's first frame); its last frame is mint and the next is not.
async fn assert_markers_frame_exact(s: &mut Stream, markers: &[Marker]) -> usize {
    let t = s.timeline().await;
    let mut checked = 0;
    for m in markers {
        let e = *t.epoch_at_hls(m.hls).unwrap();
        let frame = e.fps.frame_to_ticks(1);
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
                s.mint_at(m.hls - frame).await,
                Some(false),
                "{}: the frame before is already mint",
                m.label
            );
        }
        // The event's end is checkable only when its whole duration lies in the same epoch (an
        // ffmpeg restart cuts the media, and GEN jumps across the gap).
        let last = m.hls + m.duration - frame;
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

fn ffmpeg_children_of_us(dir: &Path) -> Vec<i32> {
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
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if ppid == me && stat.contains("(ffmpeg)") && cmdline.contains(dir.to_str().unwrap()) {
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
    let extinf = ffmpeg_extinf(&s.dir, 0);
    let t = s.timeline().await;
    let e = t.epochs()[0];
    for seg in &segs {
        let frames = s.frames(seg).len() as i64;
        let want = if seg.seq < 5 { 30 } else { 15 };
        assert_eq!(frames, want, "frames in {}", seg.file);
        assert_eq!(seg.duration, e.fps.frame_to_ticks(frames), "{}", seg.file);
        // ffmpeg printed EXTINF = frames / fps exactly (six decimals).
        let printed: f64 = extinf[&seg.file].parse().unwrap();
        assert_eq!((printed * 30.0).round() as i64, frames);
        assert!((printed - frames as f64 / 30.0).abs() < 1e-6);
        assert_eq!(seg.hls_start, e.segment_start(seg.seq));
        assert_eq!(seg.utc_start, t.hls_to_utc(seg.hls_start).unwrap());
        // The media inside says the same: the first packet's time is the segment's HLS start.
        assert_eq!(s.first_pts(seg), seg.hls_start.ticks(), "{}", seg.file);
    }

    // Retention: keep 2 s (live window 2) of 5.5 s: segments ending at or before 3.5 s leave the
    // index and the disk.
    let end = segs.last().unwrap().hls_end();
    let removed = hlsmark_generator::retention::apply_once(
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
    let extinf = ffmpeg_extinf(&s.dir, 0);
    assert_eq!(segs.len(), 4);
    for seg in &segs {
        // 30 frames of 3003 ticks: 1.001 s, on the segment's sequence-aligned start.
        assert_eq!(seg.duration.ticks(), 90_090, "{}", seg.file);
        assert_eq!(seg.hls_start.ticks(), seg.seq as i64 * 90_090);
        assert_eq!(extinf[&seg.file], "1.001000");
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
    let s = Stream::new(store, tmp.path());
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
    let pids = ffmpeg_children_of_us(&s.dir);
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
    // The graceful stop let ffmpeg finish its last (short) segment, and it was published.
    let pl = std::fs::read_to_string(s.dir.join(".ffmpeg-e1.m3u8")).unwrap();
    assert!(pl.contains("#EXT-X-ENDLIST"));
    let last_listed = pl.lines().rfind(|l| l.ends_with(".m4s")).unwrap();
    assert_eq!(last_listed, segs.last().unwrap().file);
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
