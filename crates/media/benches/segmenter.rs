//! Parse + rebase + segment throughput over an in-memory fMP4 stream made by ffmpeg (H.264 with
//! AAC, 200 ms fragments, as ingest reads it), in MB/s. A 1080p30 copy stream at ~4 Mbit/s is
//! 0.5 MB/s, so CPU share of one core = 0.5 / (MB/s).
#![allow(clippy::unwrap_used)]

use std::process::Command;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hlsmark_clock::Duration90k;
use hlsmark_media::{FragmentReader, Item, Segmenter, SegmenterConfig};

/// About 6 MB: 10 s of 640x360 at 30 fps with large frames, and AAC audio.
fn fixture() -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "10"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-qp", "10"])
        .args(["-force_key_frames", "expr:gte(t,n_forced*1)"])
        .args(["-c:a", "aac", "-ar", "48000", "-ac", "2"])
        .args([
            "-f",
            "mp4",
            "-movflags",
            "empty_moov+default_base_moof+frag_keyframe",
        ])
        .args([
            "-frag_duration",
            "200000",
            "-video_track_timescale",
            "90000",
        ])
        .args(["-flush_packets", "1", "pipe:1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Reads, shifts every track by 10 s and segments the whole stream; returns the segment count.
async fn ingest(data: &[u8]) -> usize {
    let mut r = FragmentReader::new(data);
    let mut seg = None;
    let mut tracks = Vec::new();
    let mut n = 0;
    while let Some(item) = r.next().await.unwrap() {
        match item {
            Item::Init(i) => {
                let v = i.video().unwrap();
                seg = Some(Segmenter::new(SegmenterConfig {
                    target: Duration90k::from_secs(1),
                    video_track: v.id,
                    video_timescale: v.timescale,
                }));
                tracks = i.tracks.iter().map(|t| (t.id, t.timescale)).collect();
            }
            Item::Fragment(mut f) => {
                for &(id, ts) in &tracks {
                    f.shift(id, 10 * i64::from(ts)).unwrap();
                }
                if seg.as_mut().unwrap().push(f).segment.is_some() {
                    n += 1;
                }
            }
        }
    }
    n + usize::from(seg.unwrap().finish().segment.is_some())
}

fn bench(c: &mut Criterion) {
    let data = fixture();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(ingest(&data)), 10);
    let mut g = c.benchmark_group("segmenter");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function(
        format!("read+shift+segment {} KB", data.len() / 1000),
        |b| {
            b.iter(|| rt.block_on(ingest(&data)));
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
