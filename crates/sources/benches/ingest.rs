//! CPU of the ingest pipeline itself (ffmpeg apart) per copy-mode stream: N streams of a 1080p30
//! H.264 file (made by ffmpeg first), looped and paced, in one process through `run_many`.
//! Prints this process's CPU (utime+stime from /proc/self/stat: the reader, segmenter, file writes
//! and store records; ffmpeg children excluded) and the children's, per stream, over a window after
//! a warm-up.
//!
//! `cargo bench -p hlsmark-sources --bench ingest -- [streams] [seconds] [generator]` (default 1
//! stream, 20 s; `generator`: the live 1280x720@30 generator instead of the file, pacing, rendering
//! and the rawvideo pipe included).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hlsmark_sources::encode::VideoMode;
use hlsmark_sources::{Source, StreamConfig};
use hlsmark_store::StreamName;

/// (utime + stime) in clock ticks of a process, from /proc/<pid>/stat.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |x| x.1);
    let f: Vec<&str> = rest.split(' ').collect();
    // After "pid (comm) ": state is field 3, utime 14, stime 15 -> indices 11, 12 here.
    let n = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// CPU ticks of every child process of ours (the ffmpegs).
fn children_ticks() -> u64 {
    let me = std::process::id().to_string();
    let mut sum = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{name}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|x| x.1.split(' ').nth(1))
            .unwrap_or("");
        if ppid == me {
            sum += cpu_ticks(&name);
        }
    }
    sum
}

fn make_clip(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("cam1080.mp4");
    let ok = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1920x1080:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:r=48000",
            "-t",
            "10",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "4M",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ])
        .arg(&p)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ffmpeg could not make the 1080p clip");
    p
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let streams: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1);
    let secs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let generator = args.get(2).is_some_and(|a| a == "generator");
    let tmp = tempfile::tempdir().unwrap();
    let clip = make_clip(tmp.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let store = hlsmark_store::open(data.join("s.redb").to_str().unwrap(), "b")
            .await
            .unwrap();
        let cfgs: Vec<StreamConfig> = (0..streams)
            .map(|i| {
                let mut c =
                    StreamConfig::new(StreamName::new(&format!("cam{i}")).unwrap(), data.clone());
                if !generator {
                    c.source = Source::parse(clip.to_str().unwrap(), false, true).unwrap();
                    c.encoding.video = VideoMode::Copy;
                }
                // LL-HLS parts (default 200 ms); `HLSMARK_BENCH_PART_MS=0` measures without.
                if let Some(ms) = std::env::var("HLSMARK_BENCH_PART_MS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                {
                    c.part_duration = Duration::from_millis(ms);
                }
                c
            })
            .collect();
        let part = cfgs.first().map(|c| c.part_duration).unwrap_or_default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let h = tokio::spawn(hlsmark_sources::run_many(cfgs, store, async move {
            let _ = rx.await;
        }));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let hz = 100.0; // CLK_TCK on Linux
        let (me0, ch0) = (cpu_ticks("self"), children_ticks());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (me1, ch1) = (cpu_ticks("self"), children_ticks());
        let _ = tx.send(());
        let reports = h.await.unwrap().unwrap();
        let per = |t: u64| t as f64 / hz / secs as f64 * 100.0 / streams as f64;
        let segs: u64 = reports.iter().map(|r| r.segments).sum();
        let bytes: u64 = reports.iter().map(|r| r.bytes_published).sum();
        let lag = reports
            .iter()
            .map(|r| r.max_publish_lag_ms)
            .max()
            .unwrap_or(0);
        let what = if generator {
            "generator stream(s) at 1280x720@30"
        } else {
            "copy stream(s) of 1080p30 H.264 + AAC"
        };
        println!(
            "ingest: {streams} {what}, parts {:?}, {secs} s measured: \
             hlsmark {:.2} % of a core per stream, ffmpeg {:.2} % per stream; \
             {segs} segments, {:.1} MB, worst publish lag {lag} ms",
            part,
            per(me1 - me0),
            per(ch1 - ch0),
            bytes as f64 / 1e6
        );
    });
}
