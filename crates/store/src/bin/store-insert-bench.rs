//! Insert throughput of the store with many concurrent writers: the journaled group commit (the
//! default) against the group commit with one fsync'd redb commit per group and the old
//! one-commit-per-insert path, measured in the same run (`scripts/bench-store.sh` runs it).
//!
//! `store-insert-bench <dir> [writers] [inserts per writer] [rounds] [redis-url]`
//!
//! Each round, in turn (the order rotates from round to round): the embedded store as built
//! (group commit made durable by the marker journal), the same with `set_journal(false)` (each
//! group its own `Durability::Immediate` redb commit: the build before the journal), the same
//! with groups of one (`EmbeddedStore::set_max_group(1)`: one fsync'd transaction per insert,
//! what every insert did before group commit), and a bulk of 1,000 markers through
//! `insert_marker_batch`. Every case starts on a fresh file in `<dir>` (on the disk being
//! measured). Given a Redis URL, the Redis backend's single inserts run too. Prints every
//! round, then medians and ratios.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench helper: fail loudly

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hlsmark_clock::{Duration90k, GenTime, HlsTime, UtcTime};
use hlsmark_store::{EmbeddedStore, Marker, Severity, Store, StreamName};
use uuid::Uuid;

fn marker(n: u64) -> Marker {
    let t = i64::try_from(n).unwrap() * 3_000;
    Marker {
        id: Uuid::from_u128(u128::from(n) + 1),
        stream: StreamName::live(),
        label: format!("detection {n}"),
        kind: "detector".into(),
        gen_time: GenTime(t),
        hls: HlsTime(t),
        utc: UtcTime(1_795_000_000 * 90_000 + t),
        duration: Duration90k(45_000),
        severity: Severity::Warning,
        color: None,
        tags: vec!["person".into(), format!("zone:{}", n % 4)],
        data: Some(serde_json::json!({ "score": 0.87, "box": [10, 20, 64, 128] })),
        created_at: UtcTime(1_795_000_000 * 90_000),
    }
}

/// `writers` tasks each inserting `per_writer` markers one by one; inserts per second.
async fn concurrent_inserts(store: &Arc<dyn Store>, writers: u64, per_writer: u64) -> f64 {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let store = Arc::clone(store);
        tasks.spawn(async move {
            for i in 0..per_writer {
                store
                    .insert_marker(&marker(w * 10_000_000 + i))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    (writers * per_writer) as f64 / start.elapsed().as_secs_f64()
}

/// One all-or-nothing batch of 1,000 markers into a store holding none; milliseconds.
async fn batch_of_1000(store: &Arc<dyn Store>, base: u64) -> f64 {
    let batch: Vec<Marker> = (0..1000).map(|i| marker(base + i)).collect();
    let start = Instant::now();
    store
        .insert_marker_batch(&StreamName::live(), &batch)
        .await
        .unwrap();
    start.elapsed().as_secs_f64() * 1000.0
}

/// The ways of committing single inserts that the bench compares.
#[derive(Clone, Copy, PartialEq)]
enum Case {
    /// As built: group commit, durable through the journal.
    Journal,
    /// Group commit, one immediate redb commit per group (before the journal).
    Group,
    /// One immediate redb commit per insert (before group commit).
    Single,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Journal => "group commit + journal (as built)",
            Case::Group => "group commit, one redb commit per group (before)",
            Case::Single => "one commit per insert (old path)",
        }
    }
}

async fn embedded(dir: &Path, name: &str, case: Case) -> Arc<EmbeddedStore> {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let mut journal = path.as_os_str().to_owned();
    journal.push(".journal");
    let _ = std::fs::remove_file(journal);
    let store = EmbeddedStore::open(&path).await.unwrap();
    match case {
        Case::Journal => {}
        Case::Group => store.set_journal(false),
        Case::Single => store.set_max_group(1),
    }
    store
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!(
            "usage: store-insert-bench <dir> [writers=32] [inserts per writer=200] [rounds=3] [redis-url]"
        );
        std::process::exit(2);
    };
    let num = |i: usize, default: u64| args.get(i).map_or(default, |v| v.parse().unwrap());
    let writers = num(2, 32);
    let per_writer = num(3, 200);
    let rounds = num(4, 3);
    let redis = args.get(5).cloned();
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir).unwrap();
    println!(
        "{writers} concurrent writers x {per_writer} single inserts per case, {rounds} rounds, files in {}",
        dir.display()
    );
    let (mut journal, mut group, mut single, mut bulk, mut red) =
        (vec![], vec![], vec![], vec![], vec![]);
    let cases = [Case::Journal, Case::Group, Case::Single];
    for round in 1..=rounds {
        // The order rotates across rounds, so a neighbour's burst does not always hit one case.
        for k in 0..cases.len() {
            let case = cases[(k + usize::try_from(round).unwrap() - 1) % cases.len()];
            let store = embedded(dir, &format!("bench-{round}-{k}.redb"), case).await;
            let dyn_store: Arc<dyn Store> = store.clone();
            let rate = concurrent_inserts(&dyn_store, writers, per_writer).await;
            let (commits, markers) = store.group_commit_stats();
            println!(
                "round {round}: embedded, {}: {rate:.0} inserts/s ({commits} groups, {:.1} markers each)",
                case.name(),
                markers as f64 / commits.max(1) as f64
            );
            match case {
                Case::Journal => journal.push(rate),
                Case::Group => group.push(rate),
                Case::Single => single.push(rate),
            }
            drop((store, dyn_store));
        }
        let store: Arc<dyn Store> =
            embedded(dir, &format!("bench-{round}-bulk.redb"), Case::Journal).await;
        let ms = batch_of_1000(&store, 50_000_000).await;
        println!("round {round}: embedded, one batch of 1,000 markers: {ms:.1} ms");
        bulk.push(ms);
        drop(store);
        if let Some(url) = &redis {
            let store = hlsmark_store::open(url, &format!("bench{round}"))
                .await
                .unwrap();
            let rate = concurrent_inserts(&store, writers, per_writer).await;
            println!("round {round}: redis, single inserts: {rate:.0} inserts/s");
            red.push(rate);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for f in std::fs::read_dir(dir).unwrap().flatten() {
        if f.file_name().to_string_lossy().starts_with("bench-") {
            let _ = std::fs::remove_file(f.path());
        }
    }
    let (j, g, s) = (
        median(&mut journal),
        median(&mut group),
        median(&mut single),
    );
    println!(
        "median: embedded journal {j:.0} inserts/s, group commit without journal {g:.0} inserts/s \
         ({:.1}x), one commit per insert {s:.0} inserts/s ({:.1}x)",
        j / g,
        j / s
    );
    println!(
        "median: embedded batch of 1,000 markers {:.1} ms",
        median(&mut bulk)
    );
    if !red.is_empty() {
        println!(
            "median: redis single inserts {:.0} inserts/s",
            median(&mut red)
        );
    }
}
