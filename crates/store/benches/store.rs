//! Store benchmark (a bench binary: criterion reports no p99 and would re-run a 1M preload per
//! sample). For each backend: preload markers one second apart with the batched insert, then time
//! single range queries returning 10 markers at random places (p50/p99/max, three rounds of 5,000)
//! at 10k, 100k and 1M markers, then single-marker insert latency and throughput at the full size.
//!
//! `cargo bench -p hlsmark-store --bench store`; `HLSMARK_BENCH_MAX=100000` for a short run,
//! `HLSMARK_BENCH_BACKENDS=redis` (or `embedded`) for one backend. The embedded file lives in a temp
//! dir, Redis is a private `redis-server` (no persistence) on a free port, reached over TCP on
//! 127.0.0.1 like a local client.

// A bench is a test program: a failed setup should stop it loudly.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hlsmark_clock::{Duration90k, GenTime, HlsTime, UtcTime};
use hlsmark_store::{ErrorKind, Marker, RangeQuery, Store, StreamName, open};
use uuid::Uuid;

const SEC: i64 = 90_000;
const QUERIES: usize = 5_000;
const ROUNDS: usize = 3;
const SINGLE_INSERTS: usize = 2_000;
const LOAD_CHUNK: usize = 10_000;

fn marker(i: u64) -> Marker {
    let hls = i as i64 * SEC;
    Marker {
        // Ids scattered over the uuid space, distinct per i.
        id: Uuid::from_u128(
            u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) | 1,
        ),
        stream: StreamName::live(),
        label: format!("bench event {i}"),
        kind: "event".into(),
        gen_time: GenTime(hls),
        hls: HlsTime(hls),
        utc: UtcTime(1_795_000_000 * SEC + hls),
        duration: Duration90k(SEC / 2),
        severity: Default::default(),
        color: None,
        tags: Vec::new(),
        data: Some(serde_json::json!({ "score": i % 100, "zone": "a" })),
        created_at: UtcTime(1_795_000_000 * SEC + hls),
    }
}

/// xorshift64*: reproducible positions without a dependency.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

async fn load(store: &Arc<dyn Store>, from: u64, to: u64, concurrent: usize) -> f64 {
    let t = Instant::now();
    let mut next = from;
    while next < to {
        let mut batch = Vec::new();
        for _ in 0..concurrent {
            if next >= to {
                break;
            }
            let end = (next + LOAD_CHUNK as u64).min(to);
            batch.push((next..end).map(marker).collect::<Vec<_>>());
            next = end;
        }
        let jobs = batch.iter().map(|ms| async move {
            // Inserts are idempotent: a chunk that timed out on a loaded machine is retried.
            let mut tries = 0;
            loop {
                match store.insert_markers(ms).await {
                    Ok(_) => return tries,
                    Err(e) if e.kind() == ErrorKind::Unavailable && tries < 5 => tries += 1,
                    Err(e) => panic!("preload failed: {e}"),
                }
            }
        });
        let retried: u32 = futures_util::future::join_all(jobs).await.into_iter().sum();
        if retried > 0 {
            println!("  ({retried} chunk(s) retried after a timeout)");
        }
    }
    (to - from) as f64 / t.elapsed().as_secs_f64()
}

async fn query_latency(store: &Arc<dyn Store>, n: u64, rng: &mut Rng) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(QUERIES);
    for k in 0..QUERIES + 500 {
        let start = rng.below(n - 10) as i64 * SEC;
        let q = RangeQuery::new(
            StreamName::live(),
            HlsTime(start),
            HlsTime(start + 10 * SEC),
            10,
            None,
        )
        .unwrap();
        let t = Instant::now();
        let page = store.query_markers(&q).await.unwrap();
        let took = t.elapsed();
        assert_eq!(page.markers.len(), 10);
        if k >= 500 {
            lat.push(took);
        }
    }
    lat.sort();
    lat
}

async fn bench(name: &str, store: Arc<dyn Store>, max: u64, load_concurrency: usize) {
    println!("\n== {name} ==");
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut loaded = 0;
    for size in [10_000, 100_000, 1_000_000] {
        let size = size.min(max);
        if size <= loaded {
            continue;
        }
        let rate = load(&store, loaded, size, load_concurrency).await;
        println!("preload {loaded} -> {size}: {rate:.0} markers/s (batched insert)");
        loaded = size;
        assert_eq!(
            store.count_markers(&StreamName::live()).await.unwrap(),
            size
        );
        // Three rounds, each reported: on a shared machine a neighbour's burst shows up as one
        // bad round rather than hiding inside an average.
        for round in 1..=ROUNDS {
            let lat = query_latency(&store, size, &mut rng).await;
            println!(
                "range query, 10 of {size} markers, round {round}: p50 {}  p99 {}  max {}  ({} queries)",
                us(pct(&lat, 0.5)),
                us(pct(&lat, 0.99)),
                us(lat[lat.len() - 1]),
                lat.len()
            );
        }
    }
    // Single inserts one after another: the latency a POST sees.
    let mut lat = Vec::with_capacity(SINGLE_INSERTS);
    let t = Instant::now();
    for i in 0..SINGLE_INSERTS as u64 {
        let m = marker(loaded + i);
        let t = Instant::now();
        store.insert_marker(&m).await.unwrap();
        lat.push(t.elapsed());
    }
    let rate = SINGLE_INSERTS as f64 / t.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "single insert, sequential: {rate:.0} inserts/s  p50 {}  p99 {}",
        us(pct(&lat, 0.5)),
        us(pct(&lat, 0.99))
    );
    // Single inserts from 16 concurrent writers (many detectors posting at once).
    let base = loaded + SINGLE_INSERTS as u64;
    let t = Instant::now();
    let writers = (0..16u64).map(|w| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for i in 0..(SINGLE_INSERTS as u64 / 16) {
                store
                    .insert_marker(&marker(base + w * 1_000_000 + i))
                    .await
                    .unwrap();
            }
        })
    });
    for r in futures_util::future::join_all(writers).await {
        r.unwrap();
    }
    let rate = SINGLE_INSERTS as f64 / t.elapsed().as_secs_f64();
    println!("single insert, 16 concurrent writers: {rate:.0} inserts/s");
}

fn main() {
    let max: u64 = std::env::var("HLSMARK_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
        .max(1_000);
    let which = std::env::var("HLSMARK_BENCH_BACKENDS").unwrap_or_else(|_| "embedded,redis".into());
    // One thread, like each actix-web worker that serves the API: the caller and the Redis
    // connection's driver task wake each other without crossing threads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Redis first: tearing it down is a process kill, while deleting a 1M-marker redb file
        // keeps the disk and kernel busy for seconds and would bleed into the next backend.
        if which.contains("redis") {
            let server = hlsmark_testkit::RedisServer::start();
            let store = open(&server.url(), "bench").await.unwrap();
            bench("redis (local redis-server over TCP)", store, max, 4).await;
        }
        if which.contains("embedded") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("bench.redb");
            let store = open(&path.to_string_lossy(), "bench").await.unwrap();
            bench("embedded (redb, fsync per commit)", store, max, 1).await;
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            println!("file size: {} MiB", size >> 20);
        }
    });
}
