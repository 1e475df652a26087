//! Redis Cluster (issue 17): `redis+cluster://` specs (one-line errors, never a file name), the
//! test cluster of real redis-server processes (3 masters, 3 replicas, appendonly, fsync always)
//! and the store over it surviving a SIGKILLed master: the replica is promoted, the store's
//! calls find it by themselves, the live feed comes back, and every write the store
//! acknowledged (after a replica confirmed it, `WAIT 1`) is still there. The conformance suite
//! runs against the same cluster as `redis_cluster::*` in `tests/conformance.rs`.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hlsmark_clock::{Duration90k, GenTime, HlsTime, UtcTime};
use hlsmark_store::{ErrorKind, InsertOutcome, Marker, Severity, Store, StreamName, open};
use hlsmark_testkit::RedisCluster;
use uuid::Uuid;

const SEC: i64 = 90_000;

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-c", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn marker(stream: &StreamName, n: u128) -> Marker {
    let hls = i64::try_from(n).unwrap() * SEC;
    Marker {
        id: Uuid::from_u128(n),
        stream: stream.clone(),
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

#[tokio::test]
async fn cluster_specs_are_checked_and_unreachable_clusters_are_one_line() {
    for spec in [
        "redis+cluster://",
        "redis+cluster://a",
        "redis+cluster://a:1,,b:2",
    ] {
        let e = open(spec, "t").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{spec}");
        assert!(
            e.to_string().contains("invalid redis+cluster spec"),
            "{spec}: {e}"
        );
    }
    // Nothing listens there: refused within the connect bound, without the password.
    let dead = hlsmark_testkit::free_port();
    let started = Instant::now();
    let e = open(
        &format!("redis+cluster://u:secret@127.0.0.1:{dead},127.0.0.1:{dead}"),
        "t",
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let e = e.to_string();
    assert!(e.contains("cannot connect to the redis cluster"), "{e}");
    assert!(!e.contains("secret") && !e.contains('\n'), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10), "{e}");
}

/// The test cluster itself: six real redis-server processes; a key written with a hash tag lives
/// on one master; that master is SIGKILLed; its replica takes over within the node timeout and
/// an election, and the acknowledged key (appendfsync always, replicated before the kill: `WAIT`)
/// is still there.
#[test]
fn test_cluster_fails_over_and_keeps_acknowledged_writes() {
    let mut cluster = RedisCluster::start();
    assert_eq!(cluster.master_ports().len(), 3, "three masters");
    assert!(cluster.url().starts_with("redis+cluster://127.0.0.1:"));
    let any = cluster.live_ports()[0];
    for i in 0..50 {
        assert_eq!(
            cli(any, &["set", &format!("{{t:live}}:k{i}"), &i.to_string()]),
            "OK"
        );
    }
    let master = cluster
        .master_of("{t:live}:k0")
        .expect("a master serves the slot");
    // Acknowledged by the replica too (what a failover can keep). WAIT answers 0 at once while
    // the replica's link to this master is still being set up after the cluster formed (a
    // loaded machine): ask again until it is acknowledged.
    let start = Instant::now();
    while cli(master, &["wait", "1", "1000"]) != "1" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no replica acknowledged the writes in 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.kill(master);
    assert!(
        cluster.wait_ok(Duration::from_secs(20)),
        "the replica was not promoted"
    );
    let new_master = cluster.master_of("{t:live}:k0").expect("slot served again");
    assert_ne!(new_master, master);
    let any = cluster.live_ports()[0];
    for i in 0..50 {
        assert_eq!(
            cli(any, &["get", &format!("{{t:live}}:k{i}")]),
            i.to_string()
        );
    }
    // The old master comes back as a replica; the cluster stays ok.
    cluster.restart(master);
    assert!(cluster.wait_ok(Duration::from_secs(20)));
    assert_eq!(cluster.master_ports().len(), 3);
}

/// The store over the cluster while the master of a stream's slot is SIGKILLed mid-write: a
/// writer keeps inserting (each marker retried until acknowledged); after the replica's
/// promotion the store's calls reach it by themselves (no reopen), the live feed of another
/// handle delivers again, and every acknowledged marker is there. Prints the time from the kill
/// to the first acknowledged write after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_recovers_from_a_killed_master_and_keeps_every_acknowledged_write() {
    let mut cluster = RedisCluster::start();
    let spec = cluster.url();
    let store = open(&spec, "t").await.unwrap();
    let reader = open(&spec, "t").await.unwrap();
    // A stream whose master is the first node of the spec: the one the live feed subscribes
    // on, so the kill takes both the stream's master and the feed's node.
    let first = cluster.live_ports()[0];
    let live = (0..500)
        .map(|i| StreamName::new(&format!("cam{i}")).unwrap())
        .find(|s| cluster.master_of(&format!("{{t:{s}}}:ver")) == Some(first))
        .expect("a stream in a slot of the first node");
    let master = first;
    let mut feed = reader.subscribe_markers().await.unwrap();

    let writer = {
        let store: Arc<dyn Store> = Arc::clone(&store);
        let live = live.clone();
        tokio::spawn(async move {
            // (marker number, when acknowledged); errors while the slot has no master, and
            // when the last one came.
            let mut acked: Vec<(u128, Instant)> = Vec::new();
            let mut errors = 0u32;
            let mut last_error: Option<Instant> = None;
            let mut n = 1u128;
            let deadline = Instant::now() + Duration::from_secs(90);
            while n <= 400 && Instant::now() < deadline {
                match store.insert_marker(&marker(&live, n)).await {
                    Ok(InsertOutcome::Inserted | InsertOutcome::AlreadyExists) => {
                        acked.push((n, Instant::now()));
                        n += 1;
                    }
                    Err(e) => {
                        errors += 1;
                        last_error = Some(Instant::now());
                        if errors % 20 == 1 || std::env::var_os("HLSMARK_TEST_VERBOSE").is_some() {
                            eprintln!(
                                "{:?} write {n} failed ({errors} so far): {e}",
                                std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .unwrap()
                                    .as_millis()
                                    % 100_000
                            );
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (acked, errors, last_error)
        })
    };
    // Kill the stream's master once some writes were acknowledged.
    let patience = Instant::now() + Duration::from_secs(60);
    while store.count_markers(&live).await.unwrap_or(0) < 100 {
        assert!(Instant::now() < patience, "the writer made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed_at = Instant::now();
    cluster.kill(master);
    // When the cluster itself serves the slot again (the replica promoted), to tell the
    // cluster's failover time from the store's part of the recovery.
    let key = format!("{{t:{live}}}:ver");
    let promoted_after = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let owner = cluster.master_of(&key);
            if owner.is_some() && owner != Some(master) {
                return Some(killed_at.elapsed());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let (acked, errors, last_error) = writer.await.unwrap();
    assert_eq!(acked.len(), 400, "the writer finished ({errors} errors)");
    let before = acked.iter().filter(|(_, at)| *at < killed_at).count();
    // Recovered: the first acknowledged write after the last failed one (writes that were in
    // flight at the kill may be answered before the first failure).
    let recovered = last_error.map_or(killed_at, |at| at.max(killed_at));
    let back_after = acked
        .iter()
        .find(|(_, at)| *at > recovered)
        .map(|(_, at)| at.duration_since(killed_at))
        .unwrap();
    eprintln!(
        "failover: {before} writes acknowledged before the SIGKILL, {errors} failed attempts; \
         the replica served the slot {promoted_after:?} after it, the store wrote again \
         {back_after:?} after it"
    );
    assert!(
        cluster.wait_ok(Duration::from_secs(20)),
        "the cluster did not recover"
    );
    assert_ne!(
        cluster.master_of(&format!("{{t:{live}}}:ver")),
        Some(master)
    );

    // Every acknowledged marker is there, read through a handle opened before the kill.
    let mut missing = Vec::new();
    for (n, _) in &acked {
        let got = reader.get_marker(&live, Uuid::from_u128(*n)).await.unwrap();
        if got.is_none() {
            missing.push(*n);
        }
    }
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert_eq!(reader.count_markers(&live).await.unwrap(), 400);

    // The other handle's live feed, subscribed on the killed node before the kill, moved to
    // the next node by itself: a marker written now reaches the same receiver.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 1000u128;
    'outer: loop {
        assert!(
            Instant::now() < deadline,
            "no live marker after the failover"
        );
        n += 1;
        store.insert_marker(&marker(&live, n)).await.unwrap();
        let wait = Instant::now() + Duration::from_millis(500);
        while let Ok(got) = tokio::time::timeout_at(wait.into(), feed.recv()).await {
            match got {
                Ok(m) if m.id.as_u128() > 1000 => {
                    assert_eq!(m.stream, live);
                    break 'outer;
                }
                // Markers of before the kill, or a Lagged notice: keep reading.
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("feed closed: {e}"),
            }
        }
    }
}
