//! Ingest leases and fencing tokens (`lease.rs`) on every backend: embedded (own temp dir),
//! Redis (own real `redis-server` on a free port) and a cluster-enabled redis-server serving
//! every slot (a lease script naming keys of two slots would fail with `CROSSSLOT`). The fencing
//! of writes needs two handles on one store, which only Redis has (redb: one process per file).

// The shared behaviours are plain async fns called by the generated #[tokio::test]s: test bodies.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hlsmark_clock::{Duration90k, Epoch, FrameRate, GenTime, HlsTime, Part, Segment, UtcTime};
use hlsmark_store::{
    ErrorKind, LeaseAttempt, Store, StoreError, StreamName, StreamState, StreamStatus, open,
};
use hlsmark_testkit::{RedisCluster, RedisServer};

/// Upper bound of a wait for something that should happen (a lease to expire); nothing asserts
/// that it is fast.
const PATIENCE: Duration = Duration::from_secs(10);
const SEC: i64 = 90_000;
const TTL: Duration = Duration::from_millis(400);

struct Harness {
    spec: String,
    store: Arc<dyn Store>,
    _redis: Option<RedisServer>,
    _cluster: Option<RedisCluster>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn embedded() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("s.redb").to_string_lossy().into_owned();
        let store = open(&spec, "t").await.unwrap();
        Self {
            spec,
            store,
            _redis: None,
            _cluster: None,
            _dir: dir,
        }
    }

    async fn redis() -> Self {
        let server = RedisServer::start_with(false);
        let spec = server.url();
        let store = open(&spec, "t").await.unwrap();
        Self {
            spec,
            store,
            _redis: Some(server),
            _cluster: None,
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn redis_slots() -> Self {
        let cluster = RedisCluster::start_one();
        let spec = cluster.node_url();
        let store = open(&spec, "t").await.unwrap();
        Self {
            spec,
            store,
            _redis: None,
            _cluster: Some(cluster),
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Another handle (for Redis a separate client, as another process would have).
    async fn open_again(&self) -> Arc<dyn Store> {
        open(&self.spec, "t").await.unwrap()
    }
}

fn live() -> StreamName {
    StreamName::new("live").unwrap()
}

fn acquired(a: &LeaseAttempt) -> u64 {
    match a {
        LeaseAttempt::Acquired { token } => *token,
        LeaseAttempt::Held(h) => panic!("expected the lease, held by {h:?}"),
    }
}

/// Waits until nobody holds the stream's lease (it expired).
async fn until_expired(store: &dyn Store, stream: &StreamName) {
    let start = Instant::now();
    while store.lease_holder(stream).await.unwrap().is_some() {
        assert!(start.elapsed() < PATIENCE, "lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fenced_by(e: &StoreError) -> u64 {
    match e {
        StoreError::Fenced { current, .. } => *current,
        other => panic!("expected Fenced, got {other:?}"),
    }
}

/// One holder at a time; the other is told who holds it and is listed as waiting; tokens grow
/// with every grant; a release hands over at once; an older token cannot renew.
async fn lease_is_exclusive_and_tokens_grow(h: Harness) {
    let s = &h.store;
    let t1 = acquired(&s.acquire_lease(&live(), "a:1", TTL).await.unwrap());
    match s.acquire_lease(&live(), "b:2", TTL).await.unwrap() {
        LeaseAttempt::Held(held) => {
            assert_eq!(held.holder, "a:1");
            assert_eq!(held.token, t1);
            assert!(held.ttl_left <= TTL, "{held:?}");
        }
        other => panic!("second holder got {other:?}"),
    }
    let holder = s.lease_holder(&live()).await.unwrap().unwrap();
    assert_eq!((holder.holder.as_str(), holder.token), ("a:1", t1));
    assert_eq!(holder.standby, vec!["b:2".to_owned()]);
    let renewed = s.renew_lease(&live(), t1, TTL).await.unwrap();
    assert_eq!(renewed.standby, vec!["b:2".to_owned()]);
    // Another stream's lease is independent.
    let other = StreamName::new("other").unwrap();
    acquired(&s.acquire_lease(&other, "b:2", TTL).await.unwrap());

    s.release_lease(&live(), t1).await.unwrap();
    assert_eq!(s.lease_holder(&live()).await.unwrap(), None);
    let t2 = acquired(&s.acquire_lease(&live(), "b:2", TTL).await.unwrap());
    assert!(t2 > t1, "{t2} > {t1}");
    let e = s.renew_lease(&live(), t1, TTL).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(fenced_by(&e), t2);
    // Releasing with a stale token does not release the holder's lease.
    s.release_lease(&live(), t1).await.unwrap();
    assert_eq!(s.lease_holder(&live()).await.unwrap().unwrap().token, t2);

    // Expiry: another holder gets a newer token, and the expired one is fenced.
    until_expired(s.as_ref(), &live()).await;
    let t3 = acquired(&s.acquire_lease(&live(), "c:3", TTL).await.unwrap());
    assert!(t3 > t2);
    assert_eq!(
        fenced_by(&s.renew_lease(&live(), t2, TTL).await.unwrap_err()),
        t3
    );
}

/// A store outage longer than the ttl must not fence the only ingest: a token that is still the
/// newest renews after its lease ran out.
async fn expired_but_newest_token_still_renews(h: Harness) {
    let s = &h.store;
    let t1 = acquired(&s.acquire_lease(&live(), "a:1", TTL).await.unwrap());
    until_expired(s.as_ref(), &live()).await;
    s.renew_lease(&live(), t1, TTL).await.unwrap();
    let holder = s.lease_holder(&live()).await.unwrap().unwrap();
    assert_eq!((holder.holder.as_str(), holder.token), ("a:1", t1));
}

async fn bad_lease_arguments_are_invalid(h: Harness) {
    let s = &h.store;
    for holder in ["", "a b", "a/b", &"x".repeat(129)] {
        let e = s.acquire_lease(&live(), holder, TTL).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{holder:?}: {e}");
        assert!(e.to_string().contains("holder id"), "{e}");
    }
    for ttl in [
        Duration::ZERO,
        Duration::from_millis(10),
        Duration::from_secs(7200),
    ] {
        let e = s.acquire_lease(&live(), "a:1", ttl).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{ttl:?}: {e}");
        let e = s.renew_lease(&live(), 1, ttl).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{ttl:?}: {e}");
    }
    assert_eq!(s.lease_holder(&live()).await.unwrap(), None);
}

/// A Redis grant whose reply was lost (on a cluster: applied, then `WAIT` for the replica timed
/// out) is retried by the same holder: it gets the lease again with a newer token, not "held by
/// itself", and the lost token is fenced.
async fn the_same_holder_asking_again_gets_a_newer_token(h: Harness) {
    let s = &h.store;
    let t1 = acquired(&s.acquire_lease(&live(), "a:1", TTL).await.unwrap());
    let t2 = acquired(&s.acquire_lease(&live(), "a:1", TTL).await.unwrap());
    assert!(t2 > t1, "{t2} > {t1}");
    assert_eq!(
        fenced_by(&s.renew_lease(&live(), t1, TTL).await.unwrap_err()),
        t2
    );
    let holder = s.lease_holder(&live()).await.unwrap().unwrap();
    assert_eq!((holder.holder.as_str(), holder.token), ("a:1", t2));
    assert!(holder.standby.is_empty(), "{holder:?}");
    // Another holder is still refused.
    assert!(matches!(
        s.acquire_lease(&live(), "b:2", TTL).await.unwrap(),
        LeaseAttempt::Held(held) if held.holder == "a:1" && held.token == t2
    ));
}

mod same_holder_again {
    #[tokio::test]
    async fn redis() {
        super::the_same_holder_asking_again_gets_a_newer_token(super::Harness::redis().await).await;
    }
    #[tokio::test]
    async fn redis_slots() {
        super::the_same_holder_asking_again_gets_a_newer_token(super::Harness::redis_slots().await)
            .await;
    }
}

macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Harness::embedded().await).await;
            })*
        }
        mod redis {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Harness::redis().await).await;
            })*
        }
        mod redis_slots {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Harness::redis_slots().await).await;
            })*
        }
    };
}

backends!(
    lease_is_exclusive_and_tokens_grow,
    expired_but_newest_token_still_renews,
    bad_lease_arguments_are_invalid,
);

fn epoch(index: u32, first_seq: u64) -> Epoch {
    Epoch {
        index,
        first_seq,
        hls_start: HlsTime(i64::try_from(first_seq).unwrap() * SEC),
        gen_start: GenTime(0),
        utc_start: UtcTime(1_795_000_000 * SEC),
        fps: FrameRate::integer(30),
        segment_frames: 30,
        hls_end: None,
        pts_start: None,
    }
}

fn segment(seq: u64, epoch: u32) -> Segment {
    let start = i64::try_from(seq).unwrap() * SEC;
    Segment {
        seq,
        epoch,
        hls_start: HlsTime(start),
        duration: Duration90k(SEC),
        utc_start: UtcTime(1_795_000_000 * SEC + start),
        file: format!("e{epoch}-{seq:08}.m4s"),
        init_file: Some(format!("e{epoch}-init.mp4")),
        frames: Default::default(),
    }
}

fn part(seq: u64, index: u32, epoch: u32) -> Part {
    Part {
        seq,
        index,
        epoch,
        hls_start: HlsTime(i64::try_from(seq).unwrap() * SEC + i64::from(index) * SEC / 5),
        duration: Duration90k(SEC / 5),
        independent: index == 0,
        file: Part::file_name(epoch, seq, index),
    }
}

fn status(state: StreamState, note: &str) -> StreamStatus {
    StreamStatus {
        state,
        source: "generator".into(),
        kind: "generator".into(),
        since_90k: UtcTime(1_795_000_000 * SEC),
        updated_90k: UtcTime(1_795_000_000 * SEC),
        last_error: Some(note.into()),
        restarts: 0,
        epoch: None,
        restream: Vec::new(),
    }
}

/// The heart of fencing: once another ingest took the lease, every index write of the old
/// holder (epoch, segment, part, part drop, retention, status) is refused, atomically with the
/// check, and nothing of it reaches the index; the new holder writes on; a handle that never
/// took a lease (tools, tests) is not fenced.
async fn a_stale_holder_is_fenced_on_every_index_write(h: Harness) {
    let old = h.store.clone();
    let new = h.open_again().await;
    let t1 = acquired(&old.acquire_lease(&live(), "old:1", TTL).await.unwrap());
    old.put_epoch(&live(), &epoch(0, 0)).await.unwrap();
    old.append_segment(&live(), &segment(0, 0)).await.unwrap();
    old.append_part(&live(), &part(1, 0, 0)).await.unwrap();
    old.put_status(&live(), &status(StreamState::Live, "old"))
        .await
        .unwrap();

    // The old holder stalls past its ttl; the standby takes over.
    until_expired(new.as_ref(), &live()).await;
    let t2 = acquired(&new.acquire_lease(&live(), "new:2", TTL).await.unwrap());
    assert!(t2 > t1);
    let version = new.version(&live()).await.unwrap();

    let closed = Epoch {
        hls_end: Some(HlsTime(5 * SEC)),
        ..epoch(0, 0)
    };
    let errs = [
        old.put_epoch(&live(), &closed).await.unwrap_err(),
        old.put_epoch(&live(), &epoch(1, 1)).await.unwrap_err(),
        old.append_segment(&live(), &segment(1, 0))
            .await
            .unwrap_err(),
        old.append_part(&live(), &part(1, 1, 0)).await.unwrap_err(),
        old.drop_parts(&live(), 10).await.unwrap_err(),
        old.apply_retention(&live(), HlsTime(100 * SEC), None)
            .await
            .unwrap_err(),
        old.put_status(&live(), &status(StreamState::Stopped, "old again"))
            .await
            .unwrap_err(),
    ];
    for e in &errs {
        assert_eq!(fenced_by(e), t2, "{e}");
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.to_string().contains("another ingest took over"), "{e}");
    }
    // Nothing of it is in the index, and the version did not move.
    assert_eq!(new.version(&live()).await.unwrap(), version);
    assert_eq!(new.epochs(&live()).await.unwrap(), vec![epoch(0, 0)]);
    assert_eq!(
        new.last_segments(&live(), 10).await.unwrap(),
        vec![segment(0, 0)]
    );
    assert_eq!(new.parts(&live(), 0).await.unwrap(), vec![part(1, 0, 0)]);
    let st = new.statuses().await.unwrap();
    assert_eq!(st[0].1.last_error.as_deref(), Some("old"));

    // The new holder continues the sequence.
    new.put_epoch(&live(), &closed).await.unwrap();
    new.put_epoch(&live(), &epoch(1, 1)).await.unwrap();
    new.append_segment(&live(), &segment(1, 1)).await.unwrap();
    new.put_status(&live(), &status(StreamState::Live, "new"))
        .await
        .unwrap();
    assert_eq!(new.last_segments(&live(), 10).await.unwrap().len(), 2);
    // The old handle's other streams, and unfenced handles, are not affected.
    let other = StreamName::new("other").unwrap();
    old.put_epoch(&other, &epoch(0, 0)).await.unwrap();
    let tool = h.open_again().await;
    tool.put_status(&live(), &status(StreamState::Live, "tool"))
        .await
        .unwrap();
    // Markers are not the ingest's: the API writes them whoever ingests.
    let m = hlsmark_store::Marker {
        id: uuid::Uuid::from_u128(7),
        stream: live(),
        label: "x".into(),
        kind: "manual".into(),
        gen_time: GenTime(0),
        hls: HlsTime(SEC),
        utc: UtcTime(1_795_000_000 * SEC),
        duration: Duration90k(0),
        severity: Default::default(),
        color: None,
        tags: Vec::new(),
        data: None,
        created_at: UtcTime(1_795_000_000 * SEC),
    };
    old.insert_marker(&m).await.unwrap();
}

mod fencing {
    #[tokio::test]
    async fn redis() {
        super::a_stale_holder_is_fenced_on_every_index_write(super::Harness::redis().await).await;
    }
    #[tokio::test]
    async fn redis_slots() {
        super::a_stale_holder_is_fenced_on_every_index_write(super::Harness::redis_slots().await)
            .await;
    }
}

/// redb lets one process open a file, so the embedded lease only has to keep two ingests of
/// one stream in one process apart: a second `open` is the same handle, and the second
/// acquisition is refused while the first holds the lease.
#[tokio::test]
async fn embedded_second_ingest_in_one_process_is_refused() {
    let h = Harness::embedded().await;
    let again = h.open_again().await;
    acquired(&h.store.acquire_lease(&live(), "a:1", TTL).await.unwrap());
    assert!(matches!(
        again.acquire_lease(&live(), "b:2", TTL).await.unwrap(),
        LeaseAttempt::Held(held) if held.holder == "a:1"
    ));
}
