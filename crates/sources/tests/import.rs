//! Importing a recording into a stream's timeline, through the ingest pipeline with a real ffmpeg
//! and the embedded store: a clip read unpaced and backdated (`pace = false`, `start_utc`) lands
//! in the index with every segment's UTC exactly `start_utc + media time`, the mint frame where
//! the clip has it; a live generator run on the same stream continues after it (new epoch, HLS
//! time going on, a gap in UTC); retention by age keeps what is younger than the retention and
//! removes the rest; an import that would overlap the stream's media is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hlsmark_clock::{Duration90k, Segment, UtcTime};
use hlsmark_sources::encode::VideoMode;
use hlsmark_sources::{GeneratorError, Source, StreamConfig};
use hlsmark_store::{Store, StreamName, StreamState};
use hlsmark_testkit::{ClipSpec, decode_frames, make_clip};

const NAME: &str = "rec";

async fn embedded(data: &Path) -> Arc<dyn Store> {
    std::fs::create_dir_all(data).unwrap();
    hlsmark_store::open(data.join("hlsmark.redb").to_str().unwrap(), "hlsmark")
        .await
        .unwrap()
}

fn import_config(data: &Path, clip: &Path, start: Option<UtcTime>) -> StreamConfig {
    let mut c = StreamConfig::new(StreamName::new(NAME).unwrap(), data.to_owned());
    c.source = Source::File {
        path: clip.to_owned(),
        looped: false,
    };
    c.encoding.video = VideoMode::Copy;
    c.pace = false;
    c.start_utc = start;
    c.retention = Duration::from_secs(24 * 3_600);
    c.live_window = 5;
    c
}

async fn segments(store: &dyn Store) -> Vec<Segment> {
    store
        .last_segments(&StreamName::new(NAME).unwrap(), 100_000)
        .await
        .unwrap_or_default()
}

/// init + segment, as a player's MSE sees them.
fn joined(dir: &Path, seg: &Segment) -> PathBuf {
    let mut bytes = std::fs::read(dir.join(seg.init_file.as_ref().unwrap())).unwrap();
    bytes.extend(std::fs::read(dir.join(&seg.file)).unwrap());
    let p = dir.join(format!(".test-{}.mp4", seg.seq));
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Now, whole milliseconds (what a user types as --start-utc).
fn now_ms() -> UtcTime {
    UtcTime::now().round_to_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaced_backdated_import_is_exact_continued_and_aged_by_utc() {
    let tmp = tempfile::tempdir().unwrap();
    // 3 minutes at 25 fps, the mint corner from 2:00.
    let clip = make_clip(
        tmp.path(),
        &ClipSpec::new("night")
            .frames(4_500)
            .mint(3_000..3_010)
            .audio(true),
    );
    let media = Duration90k(clip.duration_90k - clip.frames[0].pts_90k);
    let data = tmp.path().join("data");
    let store = embedded(&data).await;
    let start = now_ms() - Duration90k::from_secs(2 * 3_600);
    let cfg = import_config(&data, &clip.path, Some(start));
    let dir = cfg.stream_dir();

    let t0 = Instant::now();
    let report = hlsmark_sources::run(cfg, store.clone(), std::future::pending())
        .await
        .unwrap();
    let took = t0.elapsed();
    // Paced, this would take the clip's 180 s; unpaced it ends when ffmpeg has read the file.
    assert!(
        took < Duration::from_secs(150),
        "unpaced import of 180 s took {took:?}"
    );
    eprintln!("imported 180 s of media in {:.1} s", took.as_secs_f64());
    assert!(report.flushed && report.failed.is_none(), "{report:?}");
    assert_eq!(report.epochs, 1);

    let name = StreamName::new(NAME).unwrap();
    let status = store.statuses().await.unwrap();
    let st = &status.iter().find(|(n, _)| n == &name).unwrap().1;
    assert_eq!(st.state, StreamState::Stopped, "{st:?}");

    let epochs = store.epochs(&name).await.unwrap();
    assert_eq!(epochs.len(), 1);
    let e = epochs[0];
    let segs = segments(store.as_ref()).await;
    assert!(segs.len() >= 170, "{} segments", segs.len());
    // The first frame is at start_utc; every segment's UTC is start_utc + its media time, exactly.
    assert_eq!(e.utc_start, start);
    assert_eq!(segs[0].hls_start, e.hls_start);
    for s in &segs {
        assert_eq!(s.epoch, 0);
        assert_eq!(
            s.utc_start,
            start + (s.hls_start - e.hls_start),
            "segment {}",
            s.seq
        );
    }
    for w in segs.windows(2) {
        assert_eq!(w[1].hls_start, w[0].hls_end(), "segments abut");
    }
    let last = segs.last().unwrap();
    assert_eq!(
        last.hls_end() - e.hls_start,
        media,
        "all of the clip is imported"
    );

    // The mint frame is where the clip has it: media offset from the first frame, same in UTC.
    let mint_hls = e.hls_start + Duration90k(clip.first_mint_90k - clip.frames[0].pts_90k);
    let seg = segs
        .iter()
        .find(|s| s.hls_start <= mint_hls && mint_hls < s.hls_end())
        .unwrap();
    let (i, at) = seg.frames.frame_at(seg.hls_start, mint_hls).unwrap();
    assert_eq!(at, mint_hls, "a frame starts exactly there");
    let decoded = decode_frames(joined(&dir, seg), 320, 32);
    assert!(decoded[i].mint, "frame {i} of segment {} is mint", seg.seq);
    if i > 0 {
        assert!(!decoded[i - 1].mint);
    }
    let mint_utc = start + Duration90k(clip.first_mint_90k - clip.frames[0].pts_90k);
    assert_eq!(seg.utc_start + (mint_hls - seg.hls_start), mint_utc);

    // A second import starting inside the first is refused before anything runs.
    let again = import_config(&data, &clip.path, Some(start + Duration90k::from_secs(60)));
    let err = hlsmark_sources::run(again, store.clone(), std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, GeneratorError::Import(_)), "{err}");
    assert!(
        err.to_string()
            .contains("before the end of the stream's newest media"),
        "{err}"
    );
    // One that would end in the future too.
    let future = import_config(
        &data,
        &clip.path,
        Some(now_ms() - Duration90k::from_secs(60)),
    );
    let err = hlsmark_sources::run(future, store.clone(), std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("in the future"), "{err}");
    assert_eq!(segments(store.as_ref()).await.len(), segs.len());

    // A live generator run on the same stream continues the timeline after a gap.
    let mut live = StreamConfig::new(name.clone(), data.clone());
    live.width = 320;
    live.height = 180;
    live.block_size = 32;
    live.live_window = 5;
    live.retention = Duration::from_secs(24 * 3_600);
    live.stop_after = Some(Duration::from_secs(3));
    let before_live = UtcTime::now();
    let r = hlsmark_sources::run(live, store.clone(), std::future::pending())
        .await
        .unwrap();
    assert!(r.segments >= 3, "{r:?}");
    let epochs = store.epochs(&name).await.unwrap();
    assert_eq!(epochs.len(), 2, "{epochs:?}");
    let (e0, e1) = (epochs[0], epochs[1]);
    assert_eq!(
        e0.hls_end,
        Some(last.hls_end()),
        "the import's epoch is closed"
    );
    assert_eq!(e1.first_seq, last.seq + 1);
    assert!(
        e1.hls_start >= last.hls_end(),
        "HLS time goes on: {e1:?} after {last:?}"
    );
    assert!(
        e1.utc_start >= before_live,
        "the live epoch is on the wall clock"
    );
    assert!(
        e1.utc_start - (last.utc_start + last.duration) > Duration90k::from_secs(3_600),
        "a gap of about 2 h between the import and the live run"
    );
    let all = segments(store.as_ref()).await;
    for w in all.windows(2) {
        assert!(w[1].hls_start >= w[0].hls_end(), "HLS monotonic");
        assert!(w[1].utc_start > w[0].utc_start, "UTC monotonic");
    }

    // Retention by age, with the wall clock given: the import ended at `import_end`.
    let import_end = last.utc_start + last.duration;
    let end = all.last().unwrap().hls_end();
    // The newest second (the live run's) always stays.
    let keep = Duration90k::from_secs(1);
    let hour = Duration90k::from_secs(3_600);
    let pass = |now: UtcTime, retention: Duration90k| {
        let (store, name, dir) = (store.clone(), name.clone(), dir.clone());
        async move {
            hlsmark_sources::retention::apply_by_age(
                store.as_ref(),
                &name,
                &dir,
                end,
                now,
                retention,
                None,
                keep,
            )
            .await
            .unwrap()
        }
    };
    // 35 minutes after the import's end, a 1 h retention keeps all of it.
    let removed = pass(import_end + Duration90k::from_secs(35 * 60), hour).await;
    assert_eq!(removed.segments, 0);
    // One minute after its end, a 2 min retention removes exactly what was recorded before then.
    let now = import_end + Duration90k::from_secs(60);
    let cutoff = now - Duration90k::from_secs(120);
    let removed = pass(now, Duration90k::from_secs(120)).await;
    let gone: Vec<&Segment> = all
        .iter()
        .filter(|s| s.utc_start + s.duration <= cutoff)
        .collect();
    assert!(gone.len() > 100, "{}", gone.len());
    assert_eq!(removed.segments, gone.len());
    for s in &gone {
        assert!(!dir.join(&s.file).exists(), "{} deleted", s.file);
    }
    let left = segments(store.as_ref()).await;
    assert_eq!(left.len(), all.len() - gone.len());
    assert!(left[0].utc_start + left[0].duration > cutoff);
    // Now (2 h after the import): all of it is older than a 1 h retention; the live run stays.
    let removed = pass(UtcTime::now(), hour).await;
    assert_eq!(
        removed.segments,
        left.iter().filter(|s| s.epoch == 0).count()
    );
    let left = segments(store.as_ref()).await;
    assert!(left.iter().all(|s| s.epoch == 1) && !left.is_empty());
    assert!(
        !dir.join("e0-init.mp4").exists(),
        "the import's init section goes with it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_without_start_utc_ends_now() {
    let tmp = tempfile::tempdir().unwrap();
    let clip = make_clip(tmp.path(), &ClipSpec::new("short").frames(250));
    let data = tmp.path().join("data");
    let store = embedded(&data).await;
    let before = UtcTime::now();
    let cfg = import_config(&data, &clip.path, None);
    hlsmark_sources::run(cfg, store.clone(), std::future::pending())
        .await
        .unwrap();
    let after = UtcTime::now();
    let segs = segments(store.as_ref()).await;
    let last = segs.last().unwrap();
    let end = last.utc_start + last.duration;
    // It ended at the moment it started (to ffmpeg's 10 ms of printed duration): after the run
    // was asked for, before it returned; its start is that end minus its media, exactly.
    assert!(
        end >= before - Duration90k::from_millis(500),
        "end {end} vs start of the run {before}"
    );
    assert!(end <= after, "end {end} after the run returned at {after}");
    assert_eq!(end - segs[0].utc_start, last.hls_end() - segs[0].hls_start);
    assert!(end - segs[0].utc_start >= Duration90k::from_millis(9_900));
}
