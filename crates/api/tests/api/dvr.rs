//! The DVR window as a duration (`ApiConfig::dvr_window`, `--dvr-window`): a 2 h window lists
//! two hours of segments in the live playlist, and an LL-HLS player's delta update
//! (`_HLS_skip=YES`) of it stays a few KiB: only the segments within CAN-SKIP-UNTIL of the end
//! and the parts, the rest one `EXT-X-SKIP` line.

use std::time::Duration;

use hlsmark_clock::{Duration90k, Epoch, FrameRate, GenTime, HlsTime, Part, Segment, Timeline};
use hlsmark_store::StreamName;

use crate::common::{D, TestServer, anchor};

/// Segments of the stream: a little more than the 2 h window.
const SEGMENTS: u64 = 7_300;
const WINDOW_SECS: u64 = 7_200;
/// 200 ms parts.
const PT: i64 = 18_000;

#[test]
fn a_two_hour_dvr_window_is_listed_and_its_delta_update_is_small() {
    // 7,300 segment commits: on a memory file system when there is one (fsync costs nothing
    // there), so the test takes seconds, not minutes, on a busy disk.
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let spec = dir.path().join("dvr.redb").to_string_lossy().into_owned();
    let s = TestServer::start_configured(Some(spec), false, None, |c| {
        c.dvr_window = Some(Duration::from_secs(WINDOW_SECS));
    });
    let stream = StreamName::live();
    let epoch = Epoch {
        index: 0,
        first_seq: 0,
        hls_start: HlsTime(0),
        gen_start: GenTime(0),
        utc_start: anchor(),
        fps: FrameRate::integer(30),
        segment_frames: 30,
        hls_end: None,
        pts_start: None,
    };
    let timeline = Timeline::new(vec![epoch]).unwrap();
    let dir = s.data_dir().join("hls/live");
    std::fs::create_dir_all(&dir).unwrap();
    s.rt.block_on(async {
        s.store.put_epoch(&stream, &epoch).await.unwrap();
        for seq in 0..SEGMENTS {
            let hls = timeline.segment_start(seq).unwrap();
            let seg = Segment {
                seq,
                epoch: 0,
                hls_start: hls,
                duration: Duration90k(D),
                utc_start: timeline.hls_to_utc(hls).unwrap(),
                file: format!("e0-{seq:08}.m4s"),
                init_file: Some("e0-init.mp4".into()),
                frames: Default::default(),
            };
            s.store.append_segment(&stream, &seg).await.unwrap();
        }
        // The parts of the newest segment and two of the open one: an LL-HLS playlist.
        for (seq, parts) in [(SEGMENTS - 1, 5u32), (SEGMENTS, 2)] {
            for index in 0..parts {
                let p = Part {
                    seq,
                    index,
                    epoch: 0,
                    hls_start: HlsTime(i64::try_from(seq).unwrap() * D + i64::from(index) * PT),
                    duration: Duration90k(PT),
                    independent: index == 0,
                    file: Part::file_name(0, seq, index),
                };
                std::fs::write(dir.join(&p.file), b"part").unwrap();
                s.store.append_part(&stream, &p).await.unwrap();
            }
        }
    });

    let full = s.get("/hls/live/index.m3u8");
    assert_eq!(full.status, 200);
    let text = full.text();
    // Exactly the window: 7,200 one-second segments, the oldest 100 left out.
    assert_eq!(text.matches("#EXTINF:").count(), 7_200);
    assert!(
        text.contains(&format!("#EXT-X-MEDIA-SEQUENCE:{}\n", SEGMENTS - 7_200)),
        "{}",
        &text[..400]
    );
    assert!(text.contains("CAN-SKIP-UNTIL=6.000"), "{}", &text[..400]);

    let delta = s.get("/hls/live/index.m3u8?_HLS_skip=YES");
    assert_eq!(delta.status, 200);
    let d = delta.text();
    // Segments ending more than 6 s before the end are one line; 6-7 remain listed.
    let skipped: u64 = d
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-SKIP:SKIPPED-SEGMENTS="))
        .expect("a delta update")
        .parse()
        .unwrap();
    let listed = d.matches("#EXTINF:").count() as u64;
    assert_eq!(skipped + listed, 7_200, "{d}");
    assert!(listed <= 8, "{d}");
    assert_eq!(d.matches("#EXT-X-PART:").count(), 7, "{d}");
    eprintln!(
        "2 h DVR window: full playlist {} bytes, delta update {} bytes",
        full.body.len(),
        delta.body.len()
    );
    assert!(delta.body.len() < 4096, "{d}");
    assert!(full.body.len() > 100 * delta.body.len());
}
