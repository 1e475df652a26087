//! Real sources through the ingest pipeline with a real ffmpeg and the embedded store: a looped,
//! paced file (frame tables equal the decoded frames, the mint frame where the clip has it), copy
//! mode (the source's H.264 untouched) with AAC audio, a source that cannot be opened (backoff,
//! then new epochs), and a stalled source. End-to-end tests over HTTP (RTSP, HLS, growing files,
//! several streams) live in `crates/cli/tests`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hlsmark_clock::{Duration90k, Epoch, HlsTime, Segment, Timeline, UtcTime};
use hlsmark_sources::encode::VideoMode;
use hlsmark_sources::pipeline::LIVE_AHEAD;
use hlsmark_sources::{GeneratorError, Report, Source, StreamConfig};
use hlsmark_store::{Store, StreamName, StreamState, StreamStatus};
use hlsmark_testkit::decode::probe_streams;
use hlsmark_testkit::{Clip, ClipSpec, Container, decode_frames, make_clip};
use tokio::sync::oneshot;

async fn embedded(data: &Path) -> Arc<dyn Store> {
    std::fs::create_dir_all(data).unwrap();
    hlsmark_store::open(data.join("hlsmark.redb").to_str().unwrap(), "hlsmark")
        .await
        .unwrap()
}

fn config(data: &Path, name: &str, source: Source) -> StreamConfig {
    let mut c = StreamConfig::new(StreamName::new(name).unwrap(), data.to_owned());
    c.source = source;
    c.encoding.quality = 0.5;
    c.stall_timeout = Duration::from_secs(3);
    c
}

fn spawn(
    cfg: StreamConfig,
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

async fn wait_for(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn segments(store: &dyn Store, name: &str) -> Vec<Segment> {
    store
        .last_segments(&StreamName::new(name).unwrap(), 100_000)
        .await
        .unwrap_or_default()
}

async fn timeline(store: &dyn Store, name: &str) -> Timeline {
    Timeline::new(store.epochs(&StreamName::new(name).unwrap()).await.unwrap()).unwrap()
}

async fn status(store: &dyn Store, name: &str) -> Option<StreamStatus> {
    store
        .statuses()
        .await
        .unwrap()
        .into_iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, s)| s)
}

/// init + segment, as a player's MSE sees them.
fn joined(dir: &Path, seg: &Segment) -> PathBuf {
    let mut bytes = std::fs::read(dir.join(seg.init_file.as_ref().unwrap())).unwrap();
    bytes.extend(std::fs::read(dir.join(&seg.file)).unwrap());
    let p = dir.join(format!(".test-{}.mp4", seg.seq));
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The epochs are a valid timeline, each continuing the last segment of the one before (no gap
/// in HLS time, sequence continues), PDT never going back.
fn assert_epochs_continue(t: &Timeline, segs: &[Segment]) {
    for w in t.epochs().windows(2) {
        let (a, b) = (w[0], w[1]);
        let last_a = segs.iter().rfind(|s| s.epoch == a.index).unwrap();
        assert_eq!(
            a.hls_end,
            Some(last_a.hls_end()),
            "epoch {} closed",
            a.index
        );
        assert_eq!(b.first_seq, last_a.seq + 1);
        // The first video frame lands on the previous end, or up to 14 ticks later (audio grid).
        let gap = (b.hls_start - last_a.hls_end()).ticks();
        assert!((0..15).contains(&gap), "gap {gap} before epoch {}", b.index);
        assert!(b.utc_start >= last_a.utc_start + last_a.duration);
        assert_eq!(b.gen_start.ticks(), b.hls_start.ticks());
        assert!(b.pts_start.is_some());
    }
    for w in segs.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
        assert!(w[1].utc_start > w[0].utc_start);
        if w[0].epoch == w[1].epoch {
            assert_eq!(w[1].hls_start, w[0].hls_end(), "segments of one epoch abut");
        }
    }
}

/// A 25 fps clip, looped and paced by ffmpeg, encoded: every segment's frame table is exactly the
/// decoded frames' PTS, the frames follow the clip's own times (loop after loop, no drift), the
/// mint frame is where the clip has it, and PDT follows the wall clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looped_paced_file_is_published_with_its_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let clip: Clip = make_clip(
        tmp.path(),
        &ClipSpec::new("loop").size(160, 96).frames(50).mint(20..25),
    );
    let data = tmp.path().join("data");
    let store = embedded(&data).await;
    let source = Source::parse(clip.path.to_str().unwrap(), false, true).unwrap();
    let cfg = config(&data, "file", source);
    let dir = cfg.stream_dir();
    let started = UtcTime::now();
    let t0 = Instant::now();
    let (stop, h) = spawn(cfg, store.clone());
    // LL-HLS parts as they come (files read at once: they leave 4 segments later).
    let mut parts = std::collections::BTreeMap::new();
    let mut open_parts = 0;
    let name = StreamName::new("file").unwrap();
    // Two loops of the 2 s clip and a bit.
    wait_for("5 s of media", Duration::from_secs(30), async || {
        let segs = segments(store.as_ref(), "file").await;
        for p in store.parts(&name, 0).await.unwrap() {
            if segs.last().is_none_or(|l| p.seq > l.seq) {
                open_parts += 1;
            }
            if let std::collections::btree_map::Entry::Vacant(e) = parts.entry((p.seq, p.index)) {
                let bytes = std::fs::read(dir.join(&p.file)).unwrap();
                e.insert((p, bytes));
            }
        }
        segs.iter().map(|s| s.duration.ticks()).sum::<i64>() >= 5 * 90_000
    })
    .await;
    // Paced: about as much media as wall time, less the first segment (read at once, before
    // pacing starts: launch time) and start-up.
    let wall = t0.elapsed().as_secs_f64();
    assert!(wall > 3.5, "5 s of media in {wall} s: not paced");
    stop.send(()).unwrap();
    let report = h.await.unwrap().unwrap();
    assert_eq!(report.ffmpeg_restarts, 0, "{report:?}");
    assert_eq!(report.epochs, 1);
    assert!(report.flushed);

    let segs = segments(store.as_ref(), "file").await;
    let t = timeline(store.as_ref(), "file").await;
    let e: Epoch = t.epochs()[0];
    assert_eq!(e.fps, hlsmark_clock::FrameRate::integer(25));
    assert_eq!(e.segment_frames, 25);
    assert_eq!(e.hls_start, HlsTime(0));
    assert_eq!(e.gen_start.ticks(), 0);
    assert!(e.pts_start.is_some());
    // Anchored by the least-delayed fragment of the first segment. That segment is read at once
    // (a burst: pacing starts with the epoch), so its anchor lies in the past by up to the burst
    // (the segment and the keyframe fragment that cut it: 1.2 s here), and later fragments are
    // released at their PDT.
    let burst = Duration90k::from_millis(1_200);
    assert!(e.utc_start + burst >= started, "{e:?}");
    assert!((e.utc_start - started).as_millis_rounded() < 3_000, "{e:?}");
    assert_epochs_continue(&t, &segs);
    assert_eq!(segs.last().unwrap().seq, report.last_seq.unwrap());

    // Parts: none for the first segment (the epoch is made when it is cut), then the open
    // segment's parts were in the store before it; a segment whose every part was seen is its
    // parts byte for byte; after the stop no part is left.
    assert!(open_parts > 0, "parts of an open segment were seen");
    assert!(parts.keys().all(|&(seq, _)| seq > 0), "{:?}", parts.keys());
    let mut whole_checked = 0;
    for seg in &segs {
        let mine: Vec<_> = parts
            .range((seg.seq, 0)..(seg.seq + 1, 0))
            .map(|(_, v)| v)
            .collect();
        let complete = mine
            .first()
            .is_some_and(|(p, _)| p.index == 0 && p.hls_start == seg.hls_start)
            && mine
                .last()
                .is_some_and(|(p, _)| p.hls_end() == seg.hls_end())
            && mine
                .windows(2)
                .all(|w| w[0].0.hls_end() == w[1].0.hls_start);
        if complete {
            let concat: Vec<u8> = mine.iter().flat_map(|(_, b)| b.iter().copied()).collect();
            assert!(
                concat == std::fs::read(dir.join(&seg.file)).unwrap(),
                "{}",
                seg.file
            );
            whole_checked += 1;
        }
    }
    assert!(
        whole_checked >= 2,
        "segments checked against their parts: {whole_checked}"
    );
    assert!(store.parts(&name, 0).await.unwrap().is_empty());
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .filter(|n| hlsmark_sources::pipeline::is_part_file(n))
        .collect();
    assert_eq!(left, Vec::<String>::new());

    // Frame tables = decoded PTS, segment by segment.
    let mut all = Vec::new();
    for seg in &segs {
        let decoded = decode_frames(joined(&dir, seg), 160, 32);
        let pts: Vec<i64> = decoded.iter().map(|f| f.pts_90k).collect();
        let table: Vec<i64> = seg.frames.times(seg.hls_start).map(|x| x.ticks()).collect();
        assert_eq!(pts, table, "{}", seg.file);
        assert_eq!(seg.hls_start.ticks(), table[0]);
        all.extend(decoded);
    }
    // ...and they are the clip's frames, loop after loop: frame k of loop L at
    // L * clip duration + (clip pts k - clip pts 0).
    let clip_pts = clip.pts_90k();
    assert_eq!(clip_pts.len(), 50);
    for (i, f) in all.iter().enumerate() {
        let (l, k) = (i / 50, i % 50);
        let want = l as i64 * clip.duration_90k + clip_pts[k] - clip_pts[0];
        assert_eq!(f.pts_90k, want, "frame {i} (loop {l}, frame {k})");
        assert_eq!(f.mint, clip.frames[k].mint, "frame {i}");
    }
    assert!(all.len() >= 125);
    // The first mint frame is at the clip's time of it, and the frame before is not mint.
    let first_mint = all.iter().position(|f| f.mint).unwrap();
    assert_eq!(all[first_mint].pts_90k, clip.first_mint_90k - clip_pts[0]);
    assert!(!all[first_mint - 1].mint);
    // PDT: segment utc_start follows media time (slewed at most 500 ppm).
    for w in segs.windows(2) {
        let media = (w[1].hls_start - w[0].hls_start).ticks();
        let utc = (w[1].utc_start - w[0].utc_start).ticks();
        assert!((utc - media).abs() <= media * 500 / 1_000_000 + 1, "{w:?}");
    }
    let st = status(store.as_ref(), "file").await.unwrap();
    assert_eq!(st.state, StreamState::Stopped);
    assert_eq!(st.kind, "file");
}

/// `--video copy`: the segments carry the source's H.264 untouched (same codec, profile, level,
/// size and the very same decoded pictures), with the source's AAC audio; a file played once
/// (`--loop false`) ends the stream by itself (state `stopped`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_mode_keeps_the_h264_untouched_with_aac_audio() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = make_clip(
        tmp.path(),
        &ClipSpec::new("copy")
            .size(160, 96)
            .frames(50)
            .mint(20..25)
            .audio(true)
            .container(Container::MpegTs),
    );
    let data = tmp.path().join("data");
    let store = embedded(&data).await;
    let source = Source::parse(clip.path.to_str().unwrap(), false, false).unwrap();
    let mut cfg = config(&data, "copy", source);
    cfg.encoding.video = VideoMode::Copy;
    let dir = cfg.stream_dir();
    let (_stop, h) = spawn(cfg, store.clone());
    let report = tokio::time::timeout(Duration::from_secs(30), h)
        .await
        .expect("a file played once ends the stream")
        .unwrap()
        .unwrap();
    assert_eq!(report.ffmpeg_restarts, 0, "{report:?}");
    let segs = segments(store.as_ref(), "copy").await;
    assert!(segs.len() >= 2, "{segs:?}");
    let src = probe_streams(&clip.path);
    let src_video = src.iter().find(|s| s.kind == "video").unwrap();
    let mut pictures = Vec::new();
    for seg in &segs {
        let p = joined(&dir, seg);
        let got = probe_streams(&p);
        let v = got.iter().find(|s| s.kind == "video").unwrap();
        assert_eq!(
            (&v.codec, &v.profile, v.level, v.width, v.height),
            (
                &src_video.codec,
                &src_video.profile,
                src_video.level,
                src_video.width,
                src_video.height
            ),
            "{}",
            seg.file
        );
        let a = got.iter().find(|s| s.kind == "audio").expect("audio");
        assert_eq!((a.codec.as_str(), a.sample_rate), ("aac", 48_000));
        pictures.extend(decode_frames(&p, 160, 32).into_iter().map(|f| f.checksum));
    }
    let want: Vec<_> = clip.frames.iter().map(|f| f.checksum.clone()).collect();
    assert_eq!(pictures, want, "copied pictures differ from the source's");
    assert_eq!(report.frames_published, 50);
    let st = status(store.as_ref(), "copy").await.unwrap();
    assert_eq!(st.state, StreamState::Stopped);
}

/// A tiny HTTP server for one file: `serve` bytes of it per request, then close (or hold the
/// connection open, sending nothing more, when `hold`).
fn http_server(listener: TcpListener, body: Vec<u8>, serve: usize, hold: bool) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while !d.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut sock, _)) => {
                    sock.set_nonblocking(false).unwrap();
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf);
                    let head = if hold {
                        "HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n\r\n".to_owned()
                    } else {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nContent-Length: {serve}\r\nConnection: close\r\n\r\n"
                        )
                    };
                    let _ = sock.write_all(head.as_bytes());
                    let _ = sock.write_all(&body[..serve]);
                    if hold {
                        held.push(sock);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    done
}

/// [`http_server`] on a free loopback port serving the whole of the file at `path`: its URL (with
/// the file's name) and the server's stop flag.
fn serve_clip(path: &Path, hold: bool) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = std::fs::read(path).unwrap();
    let len = body.len();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    (
        format!("http://127.0.0.1:{port}/{name}"),
        http_server(listener, body, len, hold),
    )
}

/// A source that cannot be opened (nothing listens) is retried with backoff (1 s, 2 s, ...: no hot
/// loop), its state is `retrying` with ffmpeg's reason; once the server is up it goes live, and
/// every later run of the (finished, unpaced) HTTP input is a new epoch continuing the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unopenable_source_is_retried_with_backoff_and_each_run_is_an_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = make_clip(
        tmp.path(),
        &ClipSpec::new("net")
            .size(160, 96)
            .frames(50)
            .container(Container::MpegTs),
    );
    let data = tmp.path().join("data");
    let store = embedded(&data).await;
    let port = hlsmark_testkit::free_port();
    let url = format!("http://user:secret@127.0.0.1:{port}/clip.ts?token=hunter2");
    let cfg = config(&data, "net", Source::parse(&url, false, true).unwrap());
    let t0 = Instant::now();
    let (stop, h) = spawn(cfg, store.clone());
    wait_for("a retrying status", Duration::from_secs(20), async || {
        status(store.as_ref(), "net")
            .await
            .is_some_and(|s| s.state == StreamState::Retrying && s.last_error.is_some())
    })
    .await;
    let st = status(store.as_ref(), "net").await.unwrap();
    assert!(
        !st.source.contains("secret") && !st.source.contains("hunter2"),
        "{st:?}"
    );
    assert_eq!(st.kind, "http");
    // Let it fail for ~3.5 s: with 1 s then 2 s pauses that is at most 3 attempts.
    tokio::time::sleep(Duration::from_millis(3_500).saturating_sub(t0.elapsed())).await;
    let st = status(store.as_ref(), "net").await.unwrap();
    assert!(
        (1..=3).contains(&st.restarts),
        "{st:?}: backoff not applied"
    );
    assert!(segments(store.as_ref(), "net").await.is_empty());

    let body = std::fs::read(&clip.path).unwrap();
    let len = body.len();
    let server = http_server(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        body,
        len,
        false,
    );
    wait_for("two epochs", Duration::from_secs(40), async || {
        let t = store
            .epochs(&StreamName::new("net").unwrap())
            .await
            .unwrap_or_default();
        t.len() >= 2
    })
    .await;
    stop.send(()).unwrap();
    let report = h.await.unwrap().unwrap();
    server.store(true, Ordering::Relaxed);
    assert!(report.ffmpeg_restarts >= 3, "{report:?}");
    assert!(report.epochs >= 2, "{report:?}");
    let segs = segments(store.as_ref(), "net").await;
    let t = timeline(store.as_ref(), "net").await;
    assert!(t.epochs().len() >= 2);
    assert_epochs_continue(&t, &segs);
    // Each epoch holds the whole clip (50 frames, unpaced), rebased to where the last ended.
    for e in &t.epochs()[..t.epochs().len() - 1] {
        let frames: usize = segs
            .iter()
            .filter(|s| s.epoch == e.index)
            .map(|s| s.frames.len())
            .sum();
        assert_eq!(frames, 50, "epoch {}", e.index);
    }
}

/// A source that stops sending without closing (a hung camera) is noticed after the stall
/// timeout, killed and retried; what it sent before is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_source_is_detected_and_restarted() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = make_clip(
        tmp.path(),
        &ClipSpec::new("stall")
            .size(160, 96)
            .frames(250)
            .container(Container::MpegTs),
    );
    let data = tmp.path().join("data");
    let store = embedded(&data).await;
    // The whole clip (10 s: more than ffmpeg's probing needs), then silence on an open connection.
    let (url, server) = serve_clip(&clip.path, true);
    let mut cfg = config(&data, "hung", Source::parse(&url, false, true).unwrap());
    cfg.stall_timeout = Duration::from_secs(1);
    let (stop, h) = spawn(cfg, store.clone());
    wait_for("a stall", Duration::from_secs(30), async || {
        status(store.as_ref(), "hung")
            .await
            .and_then(|s| s.last_error)
            .is_some_and(|e| e.contains("no media"))
    })
    .await;
    stop.send(()).unwrap();
    let report = h.await.unwrap().unwrap();
    server.store(true, Ordering::Relaxed);
    assert!(report.stalls >= 1, "{report:?}");
    assert!(report.ffmpeg_restarts >= 1, "{report:?}");
    // What arrived before the stall was published (the open segment too).
    let segs = segments(store.as_ref(), "hung").await;
    assert!(!segs.is_empty());
    assert_epochs_continue(&timeline(store.as_ref(), "hung").await, &segs);
}

/// A 29.97 fps source, re-encoded: every segment holds 30 frames (1.001 s). With keyframes on a
/// fixed grid of the target (`gte(t,n_forced*D)`) they drifted against the frames: every ~33 s a
/// keyframe came 29 frames after the last, short of the segmenter's `target - half a frame`, and
/// a 59-frame (1.97 s) segment was published (found by QA on a 59.94 fps file: one 1.985 s
/// segment every 16 s, TARGETDURATION 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2997_fps_source_gets_segments_of_one_length() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = make_clip(
        tmp.path(),
        &ClipSpec::new("ntsc")
            .size(160, 96)
            .fps(30_000, 1_001)
            .frames(1_260)
            .container(Container::MpegTs),
    );
    let data = tmp.path().join("data");
    let store = embedded(&data).await;
    // Imported unpaced: the whole clip is encoded in a few seconds.
    let mut cfg = config(
        &data,
        "ntsc",
        Source::parse(clip.path.to_str().unwrap(), false, false).unwrap(),
    );
    cfg.pace = false;
    let (stop, h) = spawn(cfg, store.clone());
    wait_for("the clip's segments", Duration::from_secs(60), async || {
        segments(store.as_ref(), "ntsc")
            .await
            .iter()
            .filter(|s| s.epoch == 0)
            .map(|s| s.frames.len())
            .sum::<usize>()
            >= 1_260
    })
    .await;
    // (The import may have ended already.)
    let _ = stop.send(());
    let _ = h.await;
    let segs: Vec<Segment> = segments(store.as_ref(), "ntsc")
        .await
        .into_iter()
        .filter(|s| s.epoch == 0)
        .collect();
    // 1260 frames = 42 segments of 30; the last may be shorter.
    assert_eq!(segs.len(), 42, "{:?}", lengths(&segs));
    for s in &segs[..segs.len() - 1] {
        assert_eq!(
            s.frames.len(),
            30,
            "segment {:?}: {:?}",
            s.seq,
            lengths(&segs)
        );
        assert_eq!(s.duration.ticks(), 90_090, "segment {:?}", s.seq);
    }
}

/// Regression: a file served over HTTP (not a live stream) is read as fast as ffmpeg can, and its
/// segments were published at once with PDT seconds in the future (a 12 s file ran 32 s ahead
/// after 14 s). A live source's media may now be published at most `LIVE_AHEAD` (2 s) before
/// its PDT: a real camera's media arrives after its PDT and is never held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_served_over_http_is_never_published_ahead_of_the_wall_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = make_clip(
        tmp.path(),
        &ClipSpec::new("vod")
            .size(160, 96)
            .frames(150)
            .container(Container::MpegTs),
    );
    let (url, server) = serve_clip(&clip.path, false);
    never_ahead_of_the_wall_clock(tmp.path(), &url, 150).await;
    server.store(true, Ordering::Relaxed);
}

/// Regression: a finished HLS playlist (VOD, `#EXT-X-ENDLIST`) is read by ffmpeg as fast as the
/// network allows, and (HLS playlists being left out of the live guard, whose media comes a
/// segment at a time) its segments were published at once with PDT in the future. ffmpeg's dump
/// gives a finished playlist a duration, a live one `N/A`: a finished one gets the guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_hls_playlist_is_never_published_ahead_of_the_wall_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = make_clip(
        tmp.path(),
        &ClipSpec::new("src")
            .size(160, 96)
            .frames(150)
            .container(Container::MpegTs),
    );
    let dir = tmp.path().join("hls");
    std::fs::create_dir_all(&dir).unwrap();
    let ok = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&clip.path)
        .args([
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-hls_playlist_type",
            "vod",
        ])
        .arg(dir.join("vod.m3u8"))
        .status()
        .unwrap();
    assert!(ok.success());
    let playlist = std::fs::read_to_string(dir.join("vod.m3u8")).unwrap();
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    let (base, server) = serve_dir(dir);
    never_ahead_of_the_wall_clock(tmp.path(), &format!("{base}/vod.m3u8"), 150).await;
    server.store(true, Ordering::Relaxed);
}

/// Runs the HTTP source `url` until `frames` frames of its first epoch are published and checks
/// that no segment of it was ever published ending more than `LIVE_AHEAD` after the wall clock.
async fn never_ahead_of_the_wall_clock(tmp: &Path, url: &str, frames: usize) {
    let data = tmp.join("data");
    let store = embedded(&data).await;
    let cfg = config(&data, "vod", Source::parse(url, false, true).unwrap());
    let (stop, h) = spawn(cfg, store.clone());
    let mut worst = i64::MIN;
    wait_for(
        "the source's frames published",
        Duration::from_secs(40),
        async || {
            let segs = segments(store.as_ref(), "vod").await;
            let now = hlsmark_clock::UtcTime::now();
            for s in segs.iter().filter(|s| s.epoch == 0) {
                worst = worst.max((s.utc_start + s.duration - now).ticks());
            }
            segs.iter()
                .filter(|s| s.epoch == 0)
                .map(|s| s.frames.len())
                .sum::<usize>()
                >= frames
        },
    )
    .await;
    stop.send(()).unwrap();
    let _ = h.await;
    // One part of slack on top of the guard: a check may fall just after a segment was stored.
    assert!(
        worst <= LIVE_AHEAD.ticks() + 18_000,
        "a segment ended {:.2} s in the future",
        worst as f64 / 90_000.0
    );
}

/// A tiny HTTP server for the files of `dir` on a free loopback port (one request a connection):
/// its base URL and stop flag.
fn serve_dir(dir: PathBuf) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        while !d.load(Ordering::Relaxed) {
            let Ok((mut sock, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            sock.set_nonblocking(false).unwrap();
            let mut buf = [0u8; 4096];
            let n = sock.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let name = path.trim_start_matches('/').split('?').next().unwrap_or("");
            let (status, body) = match std::fs::read(dir.join(name)) {
                Ok(b) if !name.contains("..") => ("200 OK", b),
                _ => ("404 Not Found", Vec::new()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes());
            let _ = sock.write_all(&body);
        }
    });
    (format!("http://127.0.0.1:{port}"), done)
}

/// A Motion JPEG camera over HTTP (`multipart/x-mixed-replace`, 10 pictures a second, every
/// connection served): JPEGs made by a real ffmpeg, written one by one in real time.
fn mjpeg_camera(listener: TcpListener, jpegs: Vec<Vec<u8>>) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let jpegs = Arc::new(jpegs);
        while !d.load(Ordering::Relaxed) {
            let Ok((mut sock, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let (d, jpegs) = (d.clone(), jpegs.clone());
            std::thread::spawn(move || {
                sock.set_nonblocking(false).unwrap();
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf);
                let head = "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n";
                if sock.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let t0 = Instant::now();
                for (n, j) in jpegs.iter().cycle().enumerate() {
                    // On a schedule, not a sleep after each write: exactly 10 a second.
                    let due = t0 + Duration::from_millis(100 * n as u64);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let part = format!(
                        "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                        j.len()
                    );
                    let ok = sock.write_all(part.as_bytes()).is_ok()
                        && sock.write_all(j).is_ok()
                        && sock.write_all(b"\r\n").is_ok();
                    if !ok || d.load(Ordering::Relaxed) {
                        return;
                    }
                }
            });
        }
    });
    done
}

/// Regression: Motion JPEG has no timestamps and ffmpeg stamped it at 25 fps, so a 10 fps camera's
/// media ran at 0.4x the wall clock and was re-anchored as a new epoch every few seconds. It is
/// found in ffmpeg's input dump and read with arrival times: one epoch at the camera's rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_motion_jpeg_camera_over_http_plays_at_its_own_rate_in_one_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(hlsmark_testkit::require_program("ffmpeg"))
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=10",
        ])
        .args(["-frames:v", "20", "-c:v", "mjpeg", "-f", "image2pipe", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // Split the piped JPEGs at their start-of-image markers.
    let starts: Vec<usize> = out
        .stdout
        .windows(3)
        .enumerate()
        .filter(|(_, w)| *w == [0xFF, 0xD8, 0xFF])
        .map(|(i, _)| i)
        .collect();
    let jpegs: Vec<Vec<u8>> = starts
        .iter()
        .zip(starts.iter().skip(1).chain([&out.stdout.len()]))
        .map(|(&a, &b)| out.stdout[a..b].to_vec())
        .collect();
    assert_eq!(jpegs.len(), 20);
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let camera = mjpeg_camera(listener, jpegs);
    let data = tmp.path().join("data");
    let store = embedded(&data).await;
    let url = format!("http://127.0.0.1:{port}/video.cgi");
    let cfg = config(&data, "mjpeg", Source::parse(&url, false, true).unwrap());
    let (stop, h) = spawn(cfg, store.clone());
    wait_for("8 s of media", Duration::from_secs(40), async || {
        segments(store.as_ref(), "mjpeg")
            .await
            .iter()
            .map(|s| s.duration.ticks())
            .sum::<i64>()
            >= 8 * 90_000
    })
    .await;
    stop.send(()).unwrap();
    let _ = h.await;
    camera.store(true, Ordering::Relaxed);
    let t = timeline(store.as_ref(), "mjpeg").await;
    assert_eq!(t.epochs().len(), 1, "re-anchored: {:?}", t.epochs());
    // Pictures per second of media: the camera's 10 (ffmpeg's 25 when it stamped them).
    let segs = segments(store.as_ref(), "mjpeg").await;
    let frames: usize = segs.iter().map(|s| s.frames.len()).sum();
    let secs = segs.iter().map(|s| s.duration.ticks()).sum::<i64>() as f64 / 90_000.0;
    let rate = frames as f64 / secs;
    assert!(
        (9.0..=11.0).contains(&rate),
        "{frames} pictures in {secs:.2} s of media: {rate:.1} a second, the camera sends 10"
    );
}

fn lengths(segs: &[Segment]) -> Vec<usize> {
    segs.iter().map(|s| s.frames.len()).collect()
}

/// A file with sound only: the stream is `failed` (not retried for ever) with a reason that says
/// so. ffmpeg's last line was its hint "To ignore this, add a trailing '?' to the map.", shown
/// as the reason while the stream retried every 30 s (found by QA with an `.m4a`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_without_video_fails_with_a_clear_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sound.m4a");
    let ok = std::process::Command::new(hlsmark_testkit::require_program("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args([
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "2",
            "-c:a",
            "aac",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(ok.success());
    let data = tmp.path().join("data");
    let store = embedded(&data).await;
    let source = Source::parse(path.to_str().unwrap(), false, true).unwrap();
    let (_stop, h) = spawn(config(&data, "sound", source), store.clone());
    let _ = tokio::time::timeout(Duration::from_secs(20), h)
        .await
        .expect("a file without video is not retried");
    let st = status(store.as_ref(), "sound").await.unwrap();
    assert_eq!(st.state, StreamState::Failed, "{st:?}");
    let why = st.last_error.unwrap_or_default();
    assert!(why.contains("no video stream"), "{why}");
    assert_eq!(st.restarts, 0, "{why}");
}

/// `--video copy` on a source that is not H.264 (VP9 here; HEVC alike) re-encodes it: copying
/// served VP9/HEVC fMP4 segments that browsers' HLS players do not play, with no word in the
/// log or `/streams` (found by QA with a VP9 `.mkv` and an HEVC `.mkv`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_mode_re_encodes_a_source_that_is_not_h264() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("vp9.mkv");
    let ok = std::process::Command::new(hlsmark_testkit::require_program("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=160x96:rate=25", "-frames:v", "50"])
        .args([
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(ok.success());
    let data = tmp.path().join("data");
    let store = embedded(&data).await;
    let source = Source::parse(path.to_str().unwrap(), false, true).unwrap();
    let mut cfg = config(&data, "vp9", source);
    cfg.encoding.video = VideoMode::Copy;
    let dir = cfg.stream_dir();
    let (stop, h) = spawn(cfg, store.clone());
    wait_for("segments", Duration::from_secs(30), async || {
        segments(store.as_ref(), "vp9").await.len() >= 2
    })
    .await;
    let st = status(store.as_ref(), "vp9").await.unwrap();
    assert!(
        st.last_error.as_deref().is_some_and(|e| e.contains("vp09")),
        "{st:?}"
    );
    // Switching to encoding is not a failure of the source: started again at once, no restart.
    assert_eq!(st.restarts, 0, "{st:?}");
    assert_eq!(st.state, StreamState::Live, "{st:?}");
    stop.send(()).unwrap();
    let _ = h.await;
    for seg in segments(store.as_ref(), "vp9").await {
        let got = probe_streams(joined(&dir, &seg));
        let v = got.iter().find(|s| s.kind == "video").unwrap();
        assert_eq!(v.codec, "h264", "{}", seg.file);
    }
}
