//! The webhook outbox on both backends: entries are written with the markers (single inserts,
//! batches, bulk loads) for the registrations whose streams match, claims lease them, finishes
//! and retries count, stats show it all.

use std::sync::Arc;
use std::time::Duration;

use hlsmark_clock::{Duration90k, GenTime, HlsTime, UtcTime};
use hlsmark_store::outbox::{self, Finish, HookRegistration};
use hlsmark_store::{Marker, Severity, Store, StreamName};
use uuid::Uuid;

const SEC: i64 = 90_000;

fn marker(stream: &str, n: u128) -> Marker {
    let hls = i64::try_from(n).expect("small") * SEC;
    Marker {
        id: Uuid::from_u128(n),
        stream: StreamName::new(stream).expect("stream"),
        label: format!("event {n}"),
        kind: "event".into(),
        gen_time: GenTime(hls),
        hls: HlsTime(hls),
        utc: UtcTime(1_795_000_000 * SEC + hls),
        duration: Duration90k(SEC),
        severity: Severity::Info,
        color: None,
        tags: Vec::new(),
        data: None,
        created_at: UtcTime(1_795_000_000 * SEC),
    }
}

async fn exercise(store: Arc<dyn Store>) {
    let ob = outbox::of(&*store).expect("both backends have an outbox");
    // Before any registration, inserts write no entries.
    store
        .insert_marker(&marker("live", 1))
        .await
        .expect("insert");
    assert!(ob.outbox_stats().await.expect("stats").is_empty());

    ob.register_webhook(&HookRegistration {
        id: "all".into(),
        url_masked: "http://a.example/hook?token=****".into(),
        streams: None,
    })
    .await
    .expect("register");
    ob.register_webhook(&HookRegistration {
        id: "lab".into(),
        url_masked: "http://b.example/".into(),
        streams: Some(vec![StreamName::new("lab").expect("stream")]),
    })
    .await
    .expect("register");

    store
        .insert_marker(&marker("live", 2))
        .await
        .expect("insert");
    // The same marker again is not a new marker: no second entry.
    store
        .insert_marker(&marker("live", 2))
        .await
        .expect("retry");
    let lab = StreamName::new("lab").expect("stream");
    store
        .insert_marker_batch(&lab, &[marker("lab", 3), marker("lab", 4)])
        .await
        .expect("batch");
    store
        .insert_markers(&[marker("live", 5)])
        .await
        .expect("bulk");

    let stats = ob.outbox_stats().await.expect("stats");
    let by = |h: &str| stats.iter().find(|s| s.hook == h).cloned().expect("hook");
    assert_eq!(by("all").pending, 4, "{stats:?}");
    assert_eq!(by("lab").pending, 2, "{stats:?}");
    assert_eq!(by("all").url_masked, "http://a.example/hook?token=****");
    assert!(by("all").oldest_pending_ms.is_some());

    let lease = Duration::from_secs(60);
    let claimed = ob.claim_due("all", 10, lease).await.expect("claim");
    assert_eq!(claimed.len(), 4);
    assert!(claimed.iter().all(|e| e.attempt == 1));
    // Leased: nothing due until the lease ends.
    assert!(
        ob.claim_due("all", 10, lease)
            .await
            .expect("claim")
            .is_empty()
    );

    ob.finish(&claimed[0], Finish::Delivered)
        .await
        .expect("finish");
    // A second finish of the same entry (a node that lost its lease) counts nothing.
    ob.finish(&claimed[0], Finish::Delivered)
        .await
        .expect("finish");
    ob.finish(&claimed[1], Finish::Skipped)
        .await
        .expect("finish");
    ob.finish(&claimed[2], Finish::Dead).await.expect("finish");
    ob.retry_later(&claimed[3], Duration::ZERO)
        .await
        .expect("retry");
    let again = ob.claim_due("all", 10, lease).await.expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].marker, claimed[3].marker);
    assert_eq!(again[0].created_ms, claimed[3].created_ms);
    assert_eq!(again[0].attempt, 2);

    // A short lease runs out: the entry is due again (a dead node's claim taken over).
    let short = ob
        .claim_due("lab", 10, Duration::from_millis(1))
        .await
        .expect("claim");
    assert_eq!(short.len(), 2);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        ob.claim_due("lab", 10, lease).await.expect("claim").len(),
        2
    );

    let stats = ob.outbox_stats().await.expect("stats");
    let all = stats.iter().find(|s| s.hook == "all").expect("hook");
    assert_eq!(
        (
            all.pending,
            all.delivered,
            all.skipped,
            all.dead,
            all.failed_attempts
        ),
        (1, 1, 1, 1, 2),
        "{all:?}"
    );
    assert!(all.now_ms >= all.oldest_pending_ms.expect("one pending"));
}

#[tokio::test]
async fn outbox_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = hlsmark_store::open(
        dir.path().join("s.redb").to_str().expect("utf-8"),
        "hlsmark",
    )
    .await
    .expect("open");
    exercise(store).await;
}

#[tokio::test]
async fn outbox_redis() {
    let redis = hlsmark_testkit::RedisServer::start();
    let store = hlsmark_store::open(&redis.url(), "t").await.expect("open");
    exercise(store).await;
}

/// On a Redis Cluster (3 masters + 3 replicas): entries live in each stream's slot, claims walk
/// the streams, stats add them up.
#[tokio::test]
async fn outbox_redis_cluster() {
    let cluster = hlsmark_testkit::RedisCluster::start_volatile();
    let store = hlsmark_store::open(&cluster.url(), "t")
        .await
        .expect("open");
    exercise(store).await;
}

/// What a registered webhook adds to marker inserts (bulk loads of 20,000 markers, no webhook
/// vs one vs three). A measurement, not a check: `cargo test --release -p hlsmark-store --test
/// outbox -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement; run it on purpose with --release"]
async fn outbox_insert_overhead() {
    let redis = hlsmark_testkit::RedisServer::start();
    for backend in ["embedded", "redis"] {
        for hooks in [0usize, 1, 3] {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = match backend {
                "embedded" => {
                    hlsmark_store::open(dir.path().join("s.redb").to_str().expect("utf-8"), "x")
                        .await
                        .expect("open")
                }
                _ => hlsmark_store::open(&redis.url(), &format!("o{hooks}"))
                    .await
                    .expect("open"),
            };
            let ob = outbox::of(&*store).expect("outbox");
            for h in 0..hooks {
                ob.register_webhook(&HookRegistration {
                    id: format!("h{h}"),
                    url_masked: "http://h/".into(),
                    streams: None,
                })
                .await
                .expect("register");
            }
            // Three rounds of 20,000 new markers each: the machine is shared, rounds differ.
            let mut rounds = vec![];
            for r in 0..3u128 {
                let markers: Vec<Marker> = (1..=20_000u128)
                    .map(|n| marker("live", r * 100_000 + n))
                    .collect();
                let t = std::time::Instant::now();
                store.insert_markers(&markers).await.expect("bulk");
                rounds.push(format!("{:.1}", t.elapsed().as_secs_f64() * 1e6 / 20_000.0));
            }
            let pending: u64 = ob
                .outbox_stats()
                .await
                .expect("stats")
                .iter()
                .map(|s| s.pending)
                .sum();
            assert_eq!(pending, 60_000 * hooks as u64);
            println!(
                "OUTBOX {backend} webhooks={hooks}: µs per marker, rounds of 20,000: {}",
                rounds.join(" / ")
            );
        }
    }
}
