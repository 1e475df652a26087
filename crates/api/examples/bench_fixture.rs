//! Loads a benchmark fixture into a store through the store's own API: one epoch, a segment record
//! for every `e0-NNNNNNNN.m4s` already in `<data-dir>/hls/<stream>/`, and N markers spread over a
//! long media range (batched inserts). Used by `scripts/bench-api.sh`.
//!
//! `cargo run --release -p hlsmark-api --example bench_fixture -- <store-spec> <data-dir> <markers>`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench helper: fail loudly

use std::time::Instant;

use hlsmark_clock::{Duration90k, Epoch, FrameRate, GenTime, HlsTime, Segment, Timeline, UtcTime};
use hlsmark_store::{Marker, StreamName};

const D: i64 = 90_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, spec, data_dir, n] = args.as_slice() else {
        eprintln!("usage: bench_fixture <store-spec> <data-dir> <markers>");
        std::process::exit(2);
    };
    let n: u64 = n.parse().expect("marker count");
    let store = hlsmark_store::open(spec, "bench")
        .await
        .expect("open store");
    let stream = StreamName::live();
    let anchor = UtcTime::parse_rfc3339("2026-11-24T07:00:00Z").unwrap();
    let epoch = Epoch {
        index: 0,
        first_seq: 0,
        hls_start: HlsTime(0),
        gen_start: GenTime(0),
        utc_start: anchor,
        fps: FrameRate::integer(30),
        segment_frames: 30,
        hls_end: None,
        pts_start: None,
    };
    store.put_epoch(&stream, &epoch).await.unwrap();
    let timeline = Timeline::new(vec![epoch]).unwrap();

    let dir = std::path::Path::new(data_dir).join("hls").join("live");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("segment dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.starts_with("e0-") && f.ends_with(".m4s"))
        .collect();
    files.sort();
    for (i, file) in files.iter().enumerate() {
        let seq = i as u64;
        let hls = timeline.segment_start(seq).unwrap();
        let seg = Segment {
            seq,
            epoch: 0,
            hls_start: hls,
            duration: Duration90k(D),
            utc_start: timeline.hls_to_utc(hls).unwrap(),
            file: file.clone(),
            init_file: Some("e0-init.mp4".to_owned()),
            frames: Default::default(),
        };
        store.append_segment(&stream, &seg).await.unwrap();
    }

    // Markers every 1/3 s of media from 0 on: 1,000,000 markers span about 92 hours.
    let have = store.count_markers(&stream).await.unwrap_or(0);
    let start = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in have..n {
        let hls = HlsTime(i64::try_from(i).unwrap() * 30_000);
        batch.push(Marker {
            id: uuid::Uuid::from_u128(0xbe7c_0000_0000_4000_8000_0000_0000_0000 | u128::from(i)),
            stream: stream.clone(),
            label: format!("bench marker {i}"),
            kind: "bench".to_owned(),
            gen_time: GenTime(hls.ticks()),
            hls,
            utc: timeline.hls_to_utc(hls).unwrap(),
            duration: Duration90k(D / 2),
            severity: Default::default(),
            color: None,
            tags: Vec::new(),
            data: None,
            created_at: anchor,
        });
        if batch.len() == batch.capacity() {
            store.insert_markers(&batch).await.unwrap();
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.insert_markers(&batch).await.unwrap();
    }
    println!(
        "fixture: {} segments, {} markers ({} inserted in {:.1} s)",
        files.len(),
        store.count_markers(&stream).await.unwrap(),
        n.saturating_sub(have),
        start.elapsed().as_secs_f64()
    );
}
