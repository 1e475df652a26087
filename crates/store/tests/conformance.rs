//! One conformance suite for every [`Store`] backend: each behaviour below runs once against the
//! embedded redb store (own temp dir) and once against Redis (own real `redis-server` on a free
//! port), through `hlsmark_store::open` exactly as the binaries do. Backend-specific tests
//! (durability by reopening the file, the Redis fault test) follow the shared ones.

// The shared behaviours are plain async fns called by the generated #[tokio::test]s: test bodies.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hlsmark_clock::{Duration90k, Epoch, FrameRate, GenTime, HlsTime, Part, Segment, UtcTime};
use hlsmark_store::{
    Cursor, ErrorKind, FILTER_SCAN_MAX, InsertOutcome, MAX_BATCH, MAX_STATUS_ERROR_CHARS,
    MAX_STATUS_SOURCE_CHARS, Marker, MarkerFilter, RangeQuery, Severity, Store, StoreError,
    StreamName, StreamState, StreamStatus, StreamUpdate, UpdateFeed, open,
};
use hlsmark_testkit::{RedisCluster, RedisServer};
use uuid::Uuid;

/// How long a test waits for something that should happen (a live marker, a reconnect). Only an
/// upper bound so a broken backend fails instead of hanging; nothing asserts it is fast.
const PATIENCE: Duration = Duration::from_secs(10);
const SEC: i64 = 90_000;

/// One backend under test with what keeps it alive.
struct Harness {
    spec: String,
    prefix: String,
    store: Arc<dyn Store>,
    redis: Option<RedisServer>,
    _cluster: Option<RedisCluster>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = dir
            .path()
            .join("sub/dir/store.redb")
            .to_string_lossy()
            .into_owned();
        let store = open(&spec, "t").await.expect("open embedded");
        Self {
            spec,
            prefix: "t".into(),
            store,
            redis: None,
            _cluster: None,
            _dir: dir,
        }
    }

    async fn redis() -> Self {
        Self::redis_with(false).await
    }

    async fn redis_with(appendonly: bool) -> Self {
        let server = RedisServer::start_with(appendonly);
        let spec = server.url();
        let store = open(&spec, "t").await.expect("open redis");
        Self {
            spec,
            prefix: "t".into(),
            store,
            redis: Some(server),
            _cluster: None,
            _dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Redis in cluster mode, one node serving every slot, through a plain `redis://` client:
    /// the server refuses a script whose `KEYS`, or a multi-key command whose keys, are in two
    /// slots (`CROSSSLOT`), so every behaviour passing here names keys of one slot per call.
    async fn redis_slots() -> Self {
        let cluster = RedisCluster::start_one();
        let spec = cluster.node_url();
        let store = open(&spec, "t").await.expect("open redis (cluster mode)");
        Self {
            spec,
            prefix: "t".into(),
            store,
            redis: None,
            _cluster: Some(cluster),
            _dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A real Redis Cluster (3 masters, 3 replicas; no persistence: behaviour, not durability,
    /// which `tests/redis_cluster.rs` checks) through `redis+cluster://`: the cluster client
    /// routes every call by slot, writes wait for a replica (`WAIT 1`), and the live feed is a
    /// subscription on one node.
    async fn redis_cluster() -> Self {
        let cluster = RedisCluster::start_volatile();
        let spec = cluster.url();
        let store = open(&spec, "t").await.expect("open redis+cluster");
        Self {
            spec,
            prefix: "t".into(),
            store,
            redis: None,
            _cluster: Some(cluster),
            _dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A second, independent `open` of the same store (another process would do the same).
    async fn open_again(&self) -> Arc<dyn Store> {
        open(&self.spec, &self.prefix).await.expect("open again")
    }
}

fn live() -> StreamName {
    StreamName::live()
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn marker(stream: &StreamName, hls: i64, n: u128) -> Marker {
    Marker {
        id: id(n),
        stream: stream.clone(),
        label: format!("event {n}"),
        kind: "event".into(),
        gen_time: GenTime(hls),
        hls: HlsTime(hls),
        utc: UtcTime(1_795_000_000 * SEC + hls),
        duration: Duration90k(SEC / 2),
        severity: Severity::Info,
        color: None,
        tags: Vec::new(),
        data: Some(serde_json::json!({ "n": n.to_string() })),
        created_at: UtcTime(1_795_000_000 * SEC),
    }
}

fn query(from: i64, to: i64, limit: u64, after: Option<Cursor>) -> RangeQuery {
    RangeQuery::new(live(), HlsTime(from), HlsTime(to), limit, after).expect("valid query")
}

fn segment(seq: u64) -> Segment {
    let start = i64::try_from(seq).expect("small seq") * 2 * SEC;
    Segment {
        seq,
        epoch: 0,
        hls_start: HlsTime(start),
        duration: Duration90k(2 * SEC),
        utc_start: UtcTime(1_795_000_000 * SEC + start),
        file: format!("seg{seq:06}.m4s"),
        init_file: Some("init0.mp4".into()),
        frames: Default::default(),
    }
}

fn epoch(index: u32, first_seq: u64) -> Epoch {
    Epoch {
        index,
        first_seq,
        hls_start: HlsTime(i64::try_from(first_seq).expect("small") * 2 * SEC),
        gen_start: GenTime(0),
        utc_start: UtcTime(1_795_000_000 * SEC),
        fps: FrameRate::integer(30),
        segment_frames: 60,
        hls_end: None,
        pts_start: None,
    }
}

/// All markers of `[from, to)` by paging with `limit`.
async fn all_pages(store: &dyn Store, from: i64, to: i64, limit: u64) -> Vec<Marker> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .query_markers(&query(from, to, limit, after))
            .await
            .expect("query");
        assert!(page.markers.len() <= usize::try_from(limit).expect("small"));
        out.extend(page.markers);
        match page.next {
            Some(c) => after = Some(c),
            None => return out,
        }
    }
}

fn ids(ms: &[Marker]) -> Vec<Uuid> {
    ms.iter().map(|m| m.id).collect()
}

// ---------------------------------------------------------------------------------------------
// The shared behaviours.

async fn insert_get_delete(h: Harness) {
    let s = &h.store;
    let m = marker(&live(), 5 * SEC, 1);
    assert_eq!(s.insert_marker(&m).await.unwrap(), InsertOutcome::Inserted);
    assert_eq!(s.get_marker(&live(), m.id).await.unwrap(), Some(m.clone()));
    assert_eq!(s.get_marker(&live(), id(99)).await.unwrap(), None);
    let other = StreamName::new("cam2").unwrap();
    assert_eq!(
        s.get_marker(&other, m.id).await.unwrap(),
        None,
        "ids are per stream"
    );
    assert_eq!(s.count_markers(&live()).await.unwrap(), 1);
    assert!(s.delete_marker(&live(), m.id).await.unwrap());
    assert!(!s.delete_marker(&live(), m.id).await.unwrap());
    assert_eq!(s.get_marker(&live(), m.id).await.unwrap(), None);
    assert_eq!(s.count_markers(&live()).await.unwrap(), 0);
    let page = s
        .query_markers(&query(0, 100 * SEC, 10, None))
        .await
        .unwrap();
    assert!(page.markers.is_empty());
    // Re-inserting a deleted id is a fresh insert.
    assert_eq!(s.insert_marker(&m).await.unwrap(), InsertOutcome::Inserted);
}

async fn idempotent_reinsert(h: Harness) {
    let s = &h.store;
    let m = marker(&live(), SEC, 1);
    assert_eq!(s.insert_marker(&m).await.unwrap(), InsertOutcome::Inserted);
    assert_eq!(
        s.insert_marker(&m).await.unwrap(),
        InsertOutcome::AlreadyExists
    );
    // A retried POST stamps a new creation time: still the same marker.
    let retried = Marker {
        created_at: UtcTime(m.created_at.0 + 5 * SEC),
        ..m.clone()
    };
    assert_eq!(
        s.insert_marker(&retried).await.unwrap(),
        InsertOutcome::AlreadyExists
    );
    assert_eq!(s.count_markers(&live()).await.unwrap(), 1);
    assert_eq!(s.get_marker(&live(), m.id).await.unwrap(), Some(m));
    let batch = vec![marker(&live(), SEC, 1), marker(&live(), 2 * SEC, 2)];
    assert_eq!(
        s.insert_markers(&batch).await.unwrap(),
        vec![InsertOutcome::AlreadyExists, InsertOutcome::Inserted]
    );
    assert_eq!(s.count_markers(&live()).await.unwrap(), 2);
}

async fn conflicting_reinsert(h: Harness) {
    let s = &h.store;
    let m = marker(&live(), SEC, 1);
    s.insert_marker(&m).await.unwrap();
    for changed in [
        Marker {
            label: "other".into(),
            ..m.clone()
        },
        Marker {
            hls: HlsTime(2 * SEC),
            ..m.clone()
        },
        Marker {
            data: None,
            ..m.clone()
        },
    ] {
        let err = s.insert_marker(&changed).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(i) if i == m.id), "{err}");
        assert_eq!(err.kind(), ErrorKind::Conflict);
    }
    assert_eq!(s.get_marker(&live(), m.id).await.unwrap(), Some(m));
    assert_eq!(s.count_markers(&live()).await.unwrap(), 1);
}

async fn out_of_order_inserts_come_back_in_time_order(h: Harness) {
    let s = &h.store;
    // Times out of order, with ties (ordered by id) and negative media times.
    let times = [9, 3, -4, 3, 7, 0, 3, 12, -1, 5];
    let ms: Vec<Marker> = times
        .iter()
        .enumerate()
        .map(|(i, t)| marker(&live(), t * SEC, 100 - i as u128))
        .collect();
    for m in &ms {
        s.insert_marker(m).await.unwrap();
    }
    let got = all_pages(s.as_ref(), -100 * SEC, 100 * SEC, 1000).await;
    let mut want = ms.clone();
    want.sort_by_key(|m| (m.hls, m.id));
    assert_eq!(got, want);
    assert_eq!(s.count_markers(&live()).await.unwrap(), 10);
}

async fn range_is_half_open_with_limit(h: Harness) {
    let s = &h.store;
    for i in 0..10u128 {
        let t = i64::try_from(i).unwrap() * SEC;
        s.insert_marker(&marker(&live(), t, i + 1)).await.unwrap();
    }
    let page = s
        .query_markers(&query(2 * SEC, 5 * SEC, 100, None))
        .await
        .unwrap();
    let hls: Vec<i64> = page.markers.iter().map(|m| m.hls.ticks() / SEC).collect();
    assert_eq!(hls, vec![2, 3, 4], "from inclusive, to exclusive");
    assert_eq!(page.next, None);
    // One tick either side of the bounds.
    let page = s
        .query_markers(&query(2 * SEC + 1, 5 * SEC + 1, 100, None))
        .await
        .unwrap();
    let hls: Vec<i64> = page.markers.iter().map(|m| m.hls.ticks() / SEC).collect();
    assert_eq!(hls, vec![3, 4, 5]);
    let page = s.query_markers(&query(0, 10 * SEC, 4, None)).await.unwrap();
    assert_eq!(page.markers.len(), 4);
    assert_eq!(page.next, Some(page.markers[3].cursor()));
    // Exactly `limit` left: no next page is promised.
    let page = s
        .query_markers(&query(6 * SEC, 10 * SEC, 4, None))
        .await
        .unwrap();
    assert_eq!(page.markers.len(), 4);
    assert_eq!(page.next, None);
    // Empty range.
    let page = s
        .query_markers(&query(3 * SEC, 3 * SEC, 4, None))
        .await
        .unwrap();
    assert!(page.markers.is_empty());
}

async fn cursor_paging_is_stable_under_inserts(h: Harness) {
    let s = &h.store;
    // Five markers at the same time (ordered by id) and five later ones.
    for i in 0..5u128 {
        s.insert_marker(&marker(&live(), 10 * SEC, 10 + i))
            .await
            .unwrap();
        s.insert_marker(&marker(
            &live(),
            20 * SEC + i64::try_from(i).unwrap(),
            20 + i,
        ))
        .await
        .unwrap();
    }
    let p1 = s
        .query_markers(&query(0, 100 * SEC, 3, None))
        .await
        .unwrap();
    assert_eq!(ids(&p1.markers), vec![id(10), id(11), id(12)]);
    let c = p1.next.expect("more pages");
    // The cursor survives a round trip through its text form (the API hands it to clients).
    let c: Cursor = c.to_string().parse().unwrap();
    // Between pages: one insert before the cursor (not seen), one after (seen), one at the same
    // time with a smaller id (before the cursor: not seen), and the cursor's own marker deleted.
    s.insert_marker(&marker(&live(), 5 * SEC, 1)).await.unwrap();
    s.insert_marker(&marker(&live(), 10 * SEC, 2))
        .await
        .unwrap();
    s.insert_marker(&marker(&live(), 15 * SEC, 3))
        .await
        .unwrap();
    s.delete_marker(&live(), id(12)).await.unwrap();
    let rest = {
        let mut out = Vec::new();
        let mut after = Some(c);
        while let Some(a) = after {
            let p = s
                .query_markers(&query(0, 100 * SEC, 3, Some(a)))
                .await
                .unwrap();
            out.extend(p.markers);
            after = p.next;
        }
        out
    };
    assert_eq!(
        ids(&rest),
        vec![
            id(13),
            id(14),
            id(3),
            id(20),
            id(21),
            id(22),
            id(23),
            id(24)
        ]
    );
}

async fn unknown_stream(h: Harness) {
    let s = &h.store;
    let ghost = StreamName::new("ghost").unwrap();
    let q = RangeQuery::new(ghost.clone(), HlsTime(0), HlsTime(SEC), 10, None).unwrap();
    let err = s.query_markers(&q).await.unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownStream(ref n) if n == "ghost"),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::UnknownStream);
    let err = s.count_markers(&ghost).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownStream);
    assert_eq!(s.get_marker(&ghost, id(1)).await.unwrap(), None);
    assert!(!s.delete_marker(&ghost, id(1)).await.unwrap());
    assert!(s.epochs(&ghost).await.unwrap().is_empty());
    assert!(s.last_segments(&ghost, 5).await.unwrap().is_empty());
    assert_eq!(s.get_segment(&ghost, 0).await.unwrap(), None);
    assert_eq!(s.version(&ghost).await.unwrap(), 0);
    assert!(s.streams().await.unwrap().is_empty());
    // A stream with an epoch but no markers is known: an empty page, a count of zero.
    s.put_epoch(&ghost, &epoch(0, 0)).await.unwrap();
    assert!(s.query_markers(&q).await.unwrap().markers.is_empty());
    assert_eq!(s.count_markers(&ghost).await.unwrap(), 0);
    s.insert_marker(&marker(&live(), 0, 1)).await.unwrap();
    assert_eq!(s.streams().await.unwrap(), vec![ghost, live()]);
}

async fn bad_input_is_a_typed_error(h: Harness) {
    let s = &h.store;
    s.insert_marker(&marker(&live(), SEC, 1)).await.unwrap();
    let v0 = s.version(&live()).await.unwrap();

    // Times from the edges: NaN, infinities and huge values never become a marker time.
    for secs in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -1e300] {
        assert!(HlsTime::from_secs_f64(secs).is_err(), "{secs}");
    }
    // In range for the clock, out of range for a marker.
    for bad in [i64::MAX, i64::MIN, 10_001 * 366 * 86_400 * SEC] {
        let m = Marker {
            hls: HlsTime(bad),
            ..marker(&live(), 0, 50)
        };
        let err = s.insert_marker(&m).await.unwrap_err();
        assert!(matches!(err, StoreError::TimeOutOfRange(_)), "{err}");
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }
    type Check = fn(&StoreError) -> bool;
    let cases: Vec<(Marker, Check)> = vec![
        (
            Marker {
                label: String::new(),
                ..marker(&live(), 0, 51)
            },
            |e| matches!(e, StoreError::LabelLength(0)),
        ),
        (
            Marker {
                label: "x".repeat(257),
                ..marker(&live(), 0, 52)
            },
            |e| matches!(e, StoreError::LabelLength(257)),
        ),
        (
            Marker {
                data: Some(serde_json::json!({ "blob": "y".repeat(16 * 1024) })),
                ..marker(&live(), 0, 53)
            },
            |e| matches!(e, StoreError::DataTooLarge(_)),
        ),
        (
            Marker {
                duration: Duration90k(-1),
                ..marker(&live(), 0, 54)
            },
            |e| matches!(e, StoreError::NegativeDuration(-1)),
        ),
        (
            Marker {
                kind: "Not A Kind".into(),
                ..marker(&live(), 0, 55)
            },
            |e| matches!(e, StoreError::InvalidKind(_)),
        ),
    ];
    for (m, ok) in cases {
        let err = s.insert_marker(&m).await.unwrap_err();
        assert!(ok(&err), "{err}");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert_eq!(s.get_marker(&live(), m.id).await.unwrap(), None);
        // A batch with one bad marker writes nothing.
        let batch = [marker(&live(), 0, 60), m];
        assert!(s.insert_markers(&batch).await.is_err());
        assert_eq!(s.get_marker(&live(), id(60)).await.unwrap(), None);
    }
    assert_eq!(s.version(&live()).await.unwrap(), v0, "nothing was written");

    // Queries: from > to, limit 0 and above the maximum, out-of-range bounds.
    let q = |from, to, limit| RangeQuery::new(live(), HlsTime(from), HlsTime(to), limit, None);
    assert!(matches!(
        q(2, 1, 10),
        Err(StoreError::InvertedRange { from: 2, to: 1 })
    ));
    assert!(matches!(q(0, 1, 0), Err(StoreError::InvalidLimit(0))));
    assert!(matches!(q(0, 1, 1001), Err(StoreError::InvalidLimit(1001))));
    assert!(q(0, 1, 1000).is_ok());
    assert!(matches!(
        q(0, i64::MAX, 10),
        Err(StoreError::TimeOutOfRange(_))
    ));
    // Cursors: text that is not one, and a well-formed one that cannot come from this range.
    for bad in ["", "abc", "12.xyz", "1.00000000000000000000000000000001x"] {
        let err = bad.parse::<Cursor>().unwrap_err();
        assert!(matches!(err, StoreError::InvalidCursor(_)), "{bad:?}");
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }
    let outside = Cursor {
        hls: HlsTime(500 * SEC),
        id: id(1),
    };
    let err = s
        .query_markers(&query(0, 10 * SEC, 10, Some(outside)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidCursor(_)), "{err}");
    // Stream names.
    for bad in ["", "a/b", "../etc", &"x".repeat(65)] {
        let err = StreamName::new(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }
    // Segments: an inverted range, a negative duration.
    let err = s
        .segments_in_range(&live(), HlsTime(10), HlsTime(5), 10)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvertedRange { .. }));
    let bad_seg = Segment {
        duration: Duration90k(-5),
        ..segment(1)
    };
    assert_eq!(
        s.append_segment(&live(), &bad_seg)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Invalid
    );
    assert_eq!(s.get_segment(&live(), 1).await.unwrap(), None);
}

async fn live_feed_reaches_another_handle(h: Harness) {
    let writer = &h.store;
    let reader = h.open_again().await;
    let mut feed = reader.subscribe_markers().await.unwrap();
    let a = marker(&live(), SEC, 1);
    let b = marker(&StreamName::new("cam2").unwrap(), 2 * SEC, 2);
    writer.insert_marker(&a).await.unwrap();
    // A repeated insert is not news.
    writer.insert_marker(&a).await.unwrap();
    writer
        .insert_markers(std::slice::from_ref(&b))
        .await
        .unwrap();
    let got1 = tokio::time::timeout(PATIENCE, feed.recv())
        .await
        .unwrap()
        .unwrap();
    let got2 = tokio::time::timeout(PATIENCE, feed.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got1, got2), (a, b));
    assert!(feed.try_recv().is_err(), "nothing else was published");
}

async fn segments_append_last_range_get(h: Harness) {
    let s = &h.store;
    for seq in 0..10 {
        s.append_segment(&live(), &segment(seq)).await.unwrap();
    }
    let v = s.version(&live()).await.unwrap();
    s.append_segment(&live(), &segment(9)).await.unwrap();
    assert_eq!(
        s.version(&live()).await.unwrap(),
        v,
        "same record again is a no-op"
    );

    let last: Vec<u64> = s
        .last_segments(&live(), 3)
        .await
        .unwrap()
        .iter()
        .map(|g| g.seq)
        .collect();
    assert_eq!(last, vec![7, 8, 9]);
    assert_eq!(s.last_segments(&live(), 100).await.unwrap().len(), 10);
    assert!(s.last_segments(&live(), 0).await.unwrap().is_empty());
    // Segment k covers [2k, 2k+2) s. [5 s, 9 s) overlaps segments 2, 3, 4.
    let seqs = |v: Vec<Segment>| v.iter().map(|g| g.seq).collect::<Vec<_>>();
    let r = s
        .segments_in_range(&live(), HlsTime(5 * SEC), HlsTime(9 * SEC), 100)
        .await
        .unwrap();
    assert_eq!(seqs(r), vec![2, 3, 4]);
    // Bounds on segment edges: [4 s, 8 s) is exactly segments 2 and 3.
    let r = s
        .segments_in_range(&live(), HlsTime(4 * SEC), HlsTime(8 * SEC), 100)
        .await
        .unwrap();
    assert_eq!(seqs(r), vec![2, 3]);
    let r = s
        .segments_in_range(&live(), HlsTime(5 * SEC), HlsTime(100 * SEC), 2)
        .await
        .unwrap();
    assert_eq!(seqs(r), vec![2, 3], "limit");
    assert_eq!(s.get_segment(&live(), 4).await.unwrap(), Some(segment(4)));
    assert_eq!(s.get_segment(&live(), 40).await.unwrap(), None);
    // Replacing a record by seq (a re-publish with a new file name) keeps one row per seq.
    let re = Segment {
        file: "again.m4s".into(),
        ..segment(4)
    };
    s.append_segment(&live(), &re).await.unwrap();
    assert_eq!(s.get_segment(&live(), 4).await.unwrap(), Some(re));
    let r = s
        .segments_in_range(&live(), HlsTime(8 * SEC), HlsTime(10 * SEC), 100)
        .await
        .unwrap();
    assert_eq!(seqs(r), vec![4]);
}

async fn epochs_put_replace_list(h: Harness) {
    let s = &h.store;
    s.put_epoch(&live(), &epoch(1, 50)).await.unwrap();
    s.put_epoch(&live(), &epoch(0, 0)).await.unwrap();
    let got = s.epochs(&live()).await.unwrap();
    assert_eq!(got, vec![epoch(0, 0), epoch(1, 50)], "ordered by index");
    let closed = Epoch {
        hls_end: Some(HlsTime(99 * SEC)),
        pts_start: None,
        ..epoch(0, 0)
    };
    s.put_epoch(&live(), &closed).await.unwrap();
    assert_eq!(s.epochs(&live()).await.unwrap(), vec![closed, epoch(1, 50)]);
    assert!(
        s.epochs(&StreamName::new("cam2").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn version_changes_on_every_change(h: Harness) {
    let s = &h.store;
    let other = StreamName::new("cam2").unwrap();
    let mut last = s.version(&live()).await.unwrap();
    let mut changed = |v: u64, what: &str| {
        assert_ne!(v, last, "{what} must move the version");
        last = v;
    };
    s.insert_marker(&marker(&live(), SEC, 1)).await.unwrap();
    changed(s.version(&live()).await.unwrap(), "insert");
    s.append_segment(&live(), &segment(0)).await.unwrap();
    changed(s.version(&live()).await.unwrap(), "segment");
    s.put_epoch(&live(), &epoch(0, 0)).await.unwrap();
    changed(s.version(&live()).await.unwrap(), "epoch");
    s.delete_marker(&live(), id(1)).await.unwrap();
    changed(s.version(&live()).await.unwrap(), "delete");
    s.apply_retention(&live(), HlsTime(10 * SEC), None)
        .await
        .unwrap();
    changed(s.version(&live()).await.unwrap(), "retention");
    // Another stream's changes leave this one alone; so does a no-op.
    s.insert_marker(&marker(&other, SEC, 1)).await.unwrap();
    s.put_epoch(&live(), &epoch(0, 0)).await.unwrap();
    assert!(!s.delete_marker(&live(), id(1)).await.unwrap());
    assert_eq!(s.version(&live()).await.unwrap(), last);
}

async fn retention_drops_old_segments_and_markers(h: Harness) {
    let s = &h.store;
    for seq in 0..10 {
        s.append_segment(&live(), &segment(seq)).await.unwrap();
    }
    for i in 0..10u128 {
        let t = i64::try_from(i).unwrap() * 2 * SEC;
        s.insert_marker(&marker(&live(), t, i + 1)).await.unwrap();
    }
    // Segments ending at or before 7 s: 0 [0,2), 1 [2,4), 2 [4,6). Segment 3 ends at 8 s.
    let r = s
        .apply_retention(&live(), HlsTime(7 * SEC), None)
        .await
        .unwrap();
    assert_eq!(r.segments, vec![segment(0), segment(1), segment(2)]);
    assert_eq!(r.markers, 0);
    assert_eq!(s.get_segment(&live(), 2).await.unwrap(), None);
    assert_eq!(s.last_segments(&live(), 100).await.unwrap().len(), 7);
    let r = s
        .segments_in_range(&live(), HlsTime(0), HlsTime(100 * SEC), 100)
        .await
        .unwrap();
    assert_eq!(r.first().map(|g| g.seq), Some(3));
    // Markers before 6 s: those at 0, 2 and 4 s.
    let r = s
        .apply_retention(&live(), HlsTime(8 * SEC), Some(HlsTime(6 * SEC)))
        .await
        .unwrap();
    assert_eq!(r.segments, vec![segment(3)]);
    assert_eq!(r.markers, 3);
    assert_eq!(s.count_markers(&live()).await.unwrap(), 7);
    let left = all_pages(s.as_ref(), -1000 * SEC, 1000 * SEC, 1000).await;
    assert_eq!(left.first().map(|m| m.hls), Some(HlsTime(6 * SEC)));
    assert_eq!(s.get_marker(&live(), id(1)).await.unwrap(), None);
    // Nothing more to drop.
    let r = s
        .apply_retention(&live(), HlsTime(8 * SEC), Some(HlsTime(6 * SEC)))
        .await
        .unwrap();
    assert!(r.segments.is_empty() && r.markers == 0);
    s.ping().await.unwrap();
}

/// Random inserts, deletes and paged range queries checked against an ordered map: the store must
/// return exactly what a `BTreeMap<(hls, id), Marker>` would, page by page.
async fn random_operations_match_a_model(h: Harness) {
    use std::collections::BTreeMap;
    let s = &h.store;
    let mut model: BTreeMap<(HlsTime, Uuid), Marker> = BTreeMap::new();
    // A known stream, so an empty range is an empty page rather than `UnknownStream`.
    s.put_epoch(&live(), &epoch(0, 0)).await.unwrap();
    // xorshift64: deterministic, so a failure reproduces.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let t = |r: u64| (i64::try_from(r).unwrap() - 20) * SEC / 2;
    for step in 0..400 {
        match rnd(10) {
            0..=4 => {
                let m = marker(&live(), t(rnd(60)), u128::from(rnd(80)) + 1);
                let existing = model.values().find(|x| x.id == m.id).cloned();
                match (s.insert_marker(&m).await, existing) {
                    (Ok(InsertOutcome::Inserted), None) => {
                        model.insert((m.hls, m.id), m);
                    }
                    (Ok(InsertOutcome::AlreadyExists), Some(x)) if x == m => {}
                    (Err(StoreError::Conflict(_)), Some(x)) if x != m => {}
                    (got, had) => panic!("step {step}: insert {m:?} -> {got:?}, model had {had:?}"),
                }
            }
            5 | 6 => {
                let i = id(u128::from(rnd(80)) + 1);
                let key = model.iter().find(|(_, x)| x.id == i).map(|(k, _)| *k);
                assert_eq!(s.delete_marker(&live(), i).await.unwrap(), key.is_some());
                if let Some(k) = key {
                    model.remove(&k);
                }
            }
            _ => {
                let (a, b) = (t(rnd(70)), t(rnd(70)));
                let (from, to) = (a.min(b), a.max(b));
                let limit = rnd(7) + 1;
                let got = all_pages(s.as_ref(), from, to, limit).await;
                let want: Vec<Marker> = model
                    .range((HlsTime(from), Uuid::nil())..(HlsTime(to), Uuid::nil()))
                    .map(|(_, m)| m.clone())
                    .collect();
                assert_eq!(got, want, "step {step}: [{from}, {to}) by {limit}");
            }
        }
    }
    assert_eq!(s.count_markers(&live()).await.unwrap(), model.len() as u64);
    assert!(model.len() > 10, "the walk inserted something");
}

/// Pages of markers carrying the largest allowed `data` come back whole (the embedded backend
/// decodes such pages off the async thread; small pages on it).
async fn large_markers_round_trip(h: Harness) {
    let s = &h.store;
    let big = |n: u128| Marker {
        data: Some(serde_json::json!({ "blob": "z".repeat(16 * 1024 - 20), "n": n.to_string() })),
        ..marker(&live(), i64::try_from(n).unwrap() * SEC, n)
    };
    let ms: Vec<Marker> = (1..=40u128).map(big).collect();
    for m in &ms {
        m.validate().unwrap();
    }
    s.insert_markers(&ms).await.unwrap();
    for limit in [3, 40, 1000] {
        assert_eq!(
            all_pages(s.as_ref(), 0, 100 * SEC, limit).await,
            ms,
            "limit {limit}"
        );
    }
    assert_eq!(s.get_marker(&live(), id(7)).await.unwrap(), Some(big(7)));
}

fn status(state: StreamState, updated: i64) -> StreamStatus {
    StreamStatus {
        state,
        source: "rtsp://user:***@cam.local/stream1".into(),
        kind: "rtsp".into(),
        since_90k: UtcTime(1_795_000_000 * SEC),
        updated_90k: UtcTime(1_795_000_000 * SEC + updated),
        last_error: None,
        restarts: 0,
        epoch: None,
        restream: Vec::new(),
    }
}

async fn statuses_round_trip_overwrite_and_list(h: Harness) {
    let s = &h.store;
    assert!(s.statuses().await.unwrap().is_empty());
    let cam = StreamName::new("cam2").unwrap();
    let starting = status(StreamState::Starting, 0);
    s.put_status(&cam, &starting).await.unwrap();
    assert_eq!(s.statuses().await.unwrap(), vec![(cam.clone(), starting)]);
    // A stream with only a status is listed and known (an empty page, not `UnknownStream`), and
    // its version does not move: playlists do not depend on the status.
    assert_eq!(s.streams().await.unwrap(), vec![cam.clone()]);
    let q = RangeQuery::new(cam.clone(), HlsTime(0), HlsTime(SEC), 10, None).unwrap();
    assert!(s.query_markers(&q).await.unwrap().markers.is_empty());
    let v = s.version(&cam).await.unwrap();

    // Overwrite: the newest report wins, every field comes back.
    let retrying = StreamStatus {
        last_error: Some("Connection refused".into()),
        restarts: 3,
        epoch: Some(2),
        ..status(StreamState::Retrying, 5 * SEC)
    };
    s.put_status(&cam, &retrying).await.unwrap();
    assert_eq!(s.version(&cam).await.unwrap(), v);

    // Several streams, sorted by name, each with its own status; another handle sees them.
    let live_status = StreamStatus {
        source: "generator".into(),
        kind: "generator".into(),
        epoch: Some(0),
        ..status(StreamState::Live, SEC)
    };
    s.put_status(&live(), &live_status).await.unwrap();
    let a = StreamName::new("a-first").unwrap();
    let failed = StreamStatus {
        last_error: Some("No such file or directory".into()),
        ..status(StreamState::Failed, 2 * SEC)
    };
    s.put_status(&a, &failed).await.unwrap();
    let want = vec![
        (a.clone(), failed),
        (cam.clone(), retrying),
        (live(), live_status),
    ];
    assert_eq!(s.statuses().await.unwrap(), want);
    assert_eq!(h.open_again().await.statuses().await.unwrap(), want);
    assert_eq!(s.streams().await.unwrap(), vec![a, cam, live()]);

    // A stream with segments and no status is listed by `streams` but not by `statuses`.
    let seg_only = StreamName::new("seg-only").unwrap();
    s.append_segment(&seg_only, &segment(0)).await.unwrap();
    assert!(s.streams().await.unwrap().contains(&seg_only));
    assert!(
        s.statuses()
            .await
            .unwrap()
            .iter()
            .all(|(n, _)| *n != seg_only)
    );
}

async fn status_text_is_truncated_not_refused(h: Harness) {
    let s = &h.store;
    let long = StreamStatus {
        source: format!("rtsp://cam/{}", "é".repeat(2_000)),
        last_error: Some("ffmpeg: ".to_owned() + &"x".repeat(10_000)),
        ..status(StreamState::Retrying, 0)
    };
    s.put_status(&live(), &long).await.unwrap();
    let (_, got) = s.statuses().await.unwrap().remove(0);
    assert_eq!(got.source.chars().count(), MAX_STATUS_SOURCE_CHARS);
    assert!(got.source.starts_with("rtsp://cam/éé") && got.source.ends_with('…'));
    let err = got.last_error.unwrap();
    assert_eq!(err.chars().count(), MAX_STATUS_ERROR_CHARS);
    assert!(err.starts_with("ffmpeg: xx"));
    assert_eq!(got.state, StreamState::Retrying);
}

/// Part `index` of segment `seq` (2 s segments of ten 0.2 s parts, as `segment(seq)`).
fn part(seq: u64, index: u32) -> Part {
    let start = i64::try_from(seq).expect("small seq") * 2 * SEC + i64::from(index) * SEC / 5;
    Part {
        seq,
        index,
        epoch: 0,
        hls_start: HlsTime(start),
        duration: Duration90k(SEC / 5),
        independent: index == 0,
        file: Part::file_name(0, seq, index),
    }
}

fn keys(parts: &[Part]) -> Vec<(u64, u32)> {
    parts.iter().map(|p| (p.seq, p.index)).collect()
}

async fn parts_round_trip_in_order_and_idempotent(h: Harness) {
    let s = &h.store;
    assert!(
        s.parts(&live(), 0).await.unwrap().is_empty(),
        "unknown stream"
    );
    // Out of order on purpose (index 10 sorts after 9, seq before index).
    for (seq, index) in [(3, 1), (2, 10), (3, 0), (2, 9), (2, 0), (4, 0)] {
        s.append_part(&live(), &part(seq, index)).await.unwrap();
    }
    let all = s.parts(&live(), 0).await.unwrap();
    assert_eq!(
        keys(&all),
        vec![(2, 0), (2, 9), (2, 10), (3, 0), (3, 1), (4, 0)]
    );
    assert_eq!(all[0], part(2, 0), "every field round-trips");
    assert_eq!(
        keys(&s.parts(&live(), 3).await.unwrap()),
        vec![(3, 0), (3, 1), (4, 0)]
    );
    assert!(s.parts(&live(), 5).await.unwrap().is_empty());
    assert!(s.parts(&live(), u64::MAX).await.unwrap().is_empty());

    // The same part again changes nothing; a different one under the same key replaces it.
    let v = s.version(&live()).await.unwrap();
    s.append_part(&live(), &part(3, 1)).await.unwrap();
    assert_eq!(
        s.version(&live()).await.unwrap(),
        v,
        "a repeated part is no change"
    );
    let longer = Part {
        duration: Duration90k(SEC / 4),
        ..part(3, 1)
    };
    s.append_part(&live(), &longer).await.unwrap();
    assert_ne!(s.version(&live()).await.unwrap(), v);
    let now = s.parts(&live(), 3).await.unwrap();
    assert_eq!(now.len(), 3);
    assert_eq!(now[1], longer);

    // Streams do not mix, and a part makes its stream known.
    let other = StreamName::new("cam2").unwrap();
    assert!(s.parts(&other, 0).await.unwrap().is_empty());
    assert!(s.streams().await.unwrap().contains(&live()));

    // Bad records are typed errors, nothing is written.
    let negative = Part {
        duration: Duration90k(-1),
        ..part(9, 0)
    };
    assert_eq!(
        s.append_part(&live(), &negative).await.unwrap_err().kind(),
        ErrorKind::Invalid
    );
    let beyond = Part {
        hls_start: HlsTime(i64::MAX - 1),
        ..part(9, 0)
    };
    assert!(s.append_part(&live(), &beyond).await.is_err());
    assert!(s.parts(&live(), 9).await.unwrap().is_empty());
}

async fn drop_parts_removes_older_segments_parts(h: Harness) {
    let s = &h.store;
    let other = StreamName::new("cam2").unwrap();
    for seq in 0..6 {
        for index in 0..5 {
            s.append_part(&live(), &part(seq, index)).await.unwrap();
        }
    }
    s.append_part(&other, &part(0, 0)).await.unwrap();
    let v = s.version(&live()).await.unwrap();
    // Nothing below the oldest: no change, no version move.
    assert!(s.drop_parts(&live(), 0).await.unwrap().is_empty());
    assert_eq!(s.version(&live()).await.unwrap(), v);

    let dropped = s.drop_parts(&live(), 2).await.unwrap();
    let want: Vec<Part> = (0..2)
        .flat_map(|q| (0..5).map(move |i| part(q, i)))
        .collect();
    assert_eq!(
        dropped, want,
        "the dropped parts, in order, for their files"
    );
    assert_ne!(s.version(&live()).await.unwrap(), v);
    assert_eq!(
        s.parts(&live(), 0).await.unwrap().first(),
        Some(&part(2, 0))
    );
    assert_eq!(s.parts(&live(), 0).await.unwrap().len(), 20);
    // Again: already gone.
    assert!(s.drop_parts(&live(), 2).await.unwrap().is_empty());
    // Everything (the ingest's clean start), other streams untouched.
    assert_eq!(s.drop_parts(&live(), u64::MAX).await.unwrap().len(), 20);
    assert!(s.parts(&live(), 0).await.unwrap().is_empty());
    assert_eq!(s.parts(&other, 0).await.unwrap(), vec![part(0, 0)]);
    // Segments are not parts: dropping parts leaves the index alone and vice versa.
    s.append_segment(&live(), &segment(7)).await.unwrap();
    s.append_part(&live(), &part(7, 0)).await.unwrap();
    assert_eq!(s.drop_parts(&live(), 8).await.unwrap(), vec![part(7, 0)]);
    assert_eq!(s.get_segment(&live(), 7).await.unwrap(), Some(segment(7)));
}

/// The next update of `stream` (skipping other streams'), within the patience.
async fn next_update(feed: &mut UpdateFeed, stream: &StreamName) -> StreamUpdate {
    loop {
        let u = tokio::time::timeout(PATIENCE, feed.recv())
            .await
            .expect("an update within the patience")
            .expect("feed open");
        if &u.stream == stream {
            return u;
        }
    }
}

async fn update_feed_reaches_another_handle(h: Harness) {
    let writer = &h.store;
    let reader = h.open_again().await;
    let mut feed = reader.subscribe_updates().await.unwrap();
    let cam = StreamName::new("cam2").unwrap();

    // Every kind of change, each answered by one update carrying the version it produced.
    let mut seen = Vec::new();
    macro_rules! expect_update {
        ($what:expr, $op:expr) => {{
            $op;
            let u = next_update(&mut feed, &live()).await;
            let now = writer.version(&live()).await.unwrap();
            assert_eq!(
                u.version, now,
                "{}: the update carries the new version",
                $what
            );
            seen.push(($what, u.version));
        }};
    }
    expect_update!(
        "part",
        writer.append_part(&live(), &part(0, 0)).await.unwrap()
    );
    expect_update!(
        "epoch",
        writer.put_epoch(&live(), &epoch(0, 0)).await.unwrap()
    );
    expect_update!(
        "segment",
        writer.append_segment(&live(), &segment(0)).await.unwrap()
    );
    expect_update!(
        "marker",
        writer
            .insert_marker(&marker(&live(), SEC, 1))
            .await
            .unwrap()
    );
    expect_update!(
        "markers (batch)",
        writer
            .insert_markers(&[marker(&live(), SEC, 2), marker(&live(), SEC, 3)])
            .await
            .unwrap()
    );
    expect_update!(
        "delete",
        assert!(writer.delete_marker(&live(), id(1)).await.unwrap())
    );
    expect_update!("drop parts", writer.drop_parts(&live(), 1).await.unwrap());
    expect_update!(
        "retention",
        writer
            .apply_retention(&live(), HlsTime(100 * SEC), None)
            .await
            .unwrap()
    );
    let before = writer.version(&live()).await.unwrap();
    expect_update!(
        "status",
        writer
            .put_status(&live(), &status(StreamState::Live, 1))
            .await
            .unwrap()
    );
    assert_eq!(
        seen.last().unwrap().1,
        before,
        "a status does not move the version"
    );
    for w in seen.windows(2).take(seen.len() - 2) {
        assert!(w[1].1 > w[0].1, "versions move forward: {seen:?}");
    }

    // No-ops send nothing; another stream's changes carry its own name.
    writer.append_part(&live(), &part(5, 0)).await.unwrap();
    let base = next_update(&mut feed, &live()).await;
    writer.append_part(&live(), &part(5, 0)).await.unwrap();
    writer.put_epoch(&live(), &epoch(0, 0)).await.unwrap();
    assert!(writer.drop_parts(&live(), 0).await.unwrap().is_empty());
    writer.append_part(&cam, &part(0, 0)).await.unwrap();
    let u = tokio::time::timeout(PATIENCE, feed.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.stream, cam, "no update for the no-ops before it");
    assert_eq!(u.version, writer.version(&cam).await.unwrap());
    assert!(
        feed.try_recv().is_err(),
        "nothing else: {:?}",
        feed.try_recv()
    );
    assert_eq!(writer.version(&live()).await.unwrap(), base.version);
}

macro_rules! conformance {
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
        mod redis_cluster {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Harness::redis_cluster().await).await;
            })*
        }
    };
}

conformance!(
    styled_markers_round_trip_and_compare,
    markers_stored_before_styles_still_load,
    filters_select_by_kind_label_tag_and_severity,
    filtered_pages_walk_the_range_once_in_both_orders,
    filtered_scan_is_bounded_and_resumes,
    bad_filters_name_the_parameter,
    batch_is_all_or_nothing_and_names_the_entry,
    batch_is_idempotent_by_id,
    batch_conflict_names_the_entry_and_writes_nothing,
    batch_publishes_each_new_marker_once,
    concurrent_single_inserts_are_each_acknowledged_once,
    insert_get_delete,
    idempotent_reinsert,
    conflicting_reinsert,
    out_of_order_inserts_come_back_in_time_order,
    range_is_half_open_with_limit,
    cursor_paging_is_stable_under_inserts,
    unknown_stream,
    bad_input_is_a_typed_error,
    live_feed_reaches_another_handle,
    segments_append_last_range_get,
    epochs_put_replace_list,
    version_changes_on_every_change,
    retention_drops_old_segments_and_markers,
    random_operations_match_a_model,
    large_markers_round_trip,
    statuses_round_trip_overwrite_and_list,
    status_text_is_truncated_not_refused,
    parts_round_trip_in_order_and_idempotent,
    drop_parts_removes_older_segments_parts,
    update_feed_reaches_another_handle,
);

// ---------------------------------------------------------------------------------------------
// Severity, colour, tags; filters; all-or-nothing batches (issue 16).

/// Marker `n` at `hls` with a style chosen by `n`: kinds `a`/`b`, severities in turn, tags
/// `t0..t2` by residue, labels `cam-{n % 4} ...`.
fn styled(stream: &StreamName, hls: i64, n: u128) -> Marker {
    let sev = Severity::ALL[usize::try_from(n % 3).unwrap()];
    Marker {
        kind: if n.is_multiple_of(2) {
            "a".into()
        } else {
            "b".into()
        },
        label: format!("cam-{} event {n}", n % 4),
        severity: sev,
        color: n.is_multiple_of(5).then(|| "#1a2b3c".to_owned()),
        tags: (0..=(n % 3)).map(|t| format!("t{t}")).collect(),
        ..marker(stream, hls, n)
    }
}

async fn styled_markers_round_trip_and_compare(h: Harness) {
    let s = &h.store;
    let m = styled(&live(), SEC, 10);
    let m = Marker {
        severity: Severity::Critical,
        ..m
    };
    assert_eq!(s.insert_marker(&m).await.unwrap(), InsertOutcome::Inserted);
    assert_eq!(s.get_marker(&live(), m.id).await.unwrap(), Some(m.clone()));
    let page = s
        .query_markers(&query(0, 10 * SEC, 10, None))
        .await
        .unwrap();
    assert_eq!(page.markers, vec![m.clone()]);
    assert_eq!(
        s.insert_marker(&m).await.unwrap(),
        InsertOutcome::AlreadyExists
    );
    // Each new field takes part in the idempotency comparison.
    for changed in [
        Marker {
            severity: Severity::Warning,
            ..m.clone()
        },
        Marker {
            color: None,
            ..m.clone()
        },
        Marker {
            tags: vec!["t0".into()],
            ..m.clone()
        },
    ] {
        let err = s.insert_marker(&changed).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    }
}

/// A record written before severity, colour and tags existed (the JSON of the older version)
/// loads with the defaults, and a re-insert of the same marker is still idempotent.
async fn markers_stored_before_styles_still_load(h: Harness) {
    let s = &h.store;
    let m = marker(&live(), SEC, 77);
    let mut old = serde_json::to_value(&m).unwrap();
    let o = old.as_object_mut().unwrap();
    o.remove("severity");
    o.remove("color");
    o.remove("tags");
    let back: Marker = serde_json::from_value(old).unwrap();
    assert_eq!(back, m, "defaults: info, no colour, no tags");
    // The stored JSON of a default marker carries no colour and no tags at all.
    let json = serde_json::to_string(&m).unwrap();
    assert!(!json.contains("color") && !json.contains("tags"), "{json}");
    s.insert_marker(&m).await.unwrap();
    assert_eq!(s.get_marker(&live(), m.id).await.unwrap(), Some(m));
}

async fn filtered(
    s: &dyn Store,
    filter: MarkerFilter,
    limit: u64,
    newest_first: bool,
) -> Vec<Marker> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let mut q = query(0, 1000 * SEC, limit, after)
            .filtered(filter.clone())
            .unwrap();
        if newest_first {
            q = q.newest_first();
        }
        let page = s.query_markers(&q).await.unwrap();
        assert!(page.markers.len() <= usize::try_from(limit).unwrap());
        out.extend(page.markers);
        match page.next {
            Some(c) => after = Some(c),
            None => return out,
        }
    }
}

async fn filters_select_by_kind_label_tag_and_severity(h: Harness) {
    let s = &h.store;
    let all: Vec<Marker> = (1..=60u128)
        .map(|n| styled(&live(), i64::try_from(n).unwrap() * SEC, n))
        .collect();
    s.insert_markers(&all).await.unwrap();
    let cases = [
        MarkerFilter {
            kind: Some("a".into()),
            ..Default::default()
        },
        MarkerFilter {
            label_prefix: Some("cam-1".into()),
            ..Default::default()
        },
        MarkerFilter {
            label_prefix: Some("cam-1 event 1".into()),
            ..Default::default()
        },
        MarkerFilter {
            tag: Some("t2".into()),
            ..Default::default()
        },
        MarkerFilter {
            severities: vec![Severity::Critical],
            ..Default::default()
        },
        MarkerFilter {
            severities: vec![Severity::Warning, Severity::Critical],
            ..Default::default()
        },
        MarkerFilter {
            kind: Some("b".into()),
            tag: Some("t1".into()),
            severities: vec![Severity::Warning],
            label_prefix: Some("cam-".into()),
        },
        MarkerFilter {
            kind: Some("nothing".into()),
            ..Default::default()
        },
        MarkerFilter {
            tag: Some("T2".into()),
            ..Default::default()
        },
    ];
    for f in cases {
        let want: Vec<Uuid> = all.iter().filter(|m| f.matches(m)).map(|m| m.id).collect();
        assert_eq!(
            ids(&filtered(&**s, f.clone(), 1000, false).await),
            want,
            "{f:?}"
        );
        let mut rev = want.clone();
        rev.reverse();
        assert_eq!(
            ids(&filtered(&**s, f.clone(), 1000, true).await),
            rev,
            "{f:?}"
        );
    }
    // The filter is the tag, not a substring of one; the label filter is a prefix.
    let f = MarkerFilter {
        tag: Some("t".into()),
        ..Default::default()
    };
    assert!(filtered(&**s, f, 100, false).await.is_empty());
    let f = MarkerFilter {
        label_prefix: Some("event".into()),
        ..Default::default()
    };
    assert!(filtered(&**s, f, 100, false).await.is_empty());
}

async fn filtered_pages_walk_the_range_once_in_both_orders(h: Harness) {
    let s = &h.store;
    let all: Vec<Marker> = (1..=97u128)
        .map(|n| styled(&live(), i64::try_from(n % 13).unwrap() * SEC, n))
        .collect();
    s.insert_markers(&all).await.unwrap();
    let f = MarkerFilter {
        severities: vec![Severity::Warning],
        ..Default::default()
    };
    let mut want: Vec<Marker> = all.iter().filter(|m| f.matches(m)).cloned().collect();
    want.sort_by_key(Marker::cursor);
    for limit in [1, 2, 7, 1000] {
        assert_eq!(
            ids(&filtered(&**s, f.clone(), limit, false).await),
            ids(&want),
            "limit {limit}"
        );
        let mut rev = ids(&want);
        rev.reverse();
        assert_eq!(ids(&filtered(&**s, f.clone(), limit, true).await), rev);
    }
    // A page ends with the cursor of its last marker when more match.
    let q = query(0, 1000 * SEC, 3, None).filtered(f.clone()).unwrap();
    let page = s.query_markers(&q).await.unwrap();
    assert_eq!(page.markers.len(), 3);
    assert_eq!(page.next, Some(page.markers[2].cursor()));
    // Unknown stream: the same error as without a filter.
    let q = RangeQuery::new(
        StreamName::new("nope").unwrap(),
        HlsTime(0),
        HlsTime(SEC),
        10,
        None,
    )
    .unwrap()
    .filtered(f)
    .unwrap();
    let err = s.query_markers(&q).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownStream, "{err}");
}

/// A filter that matches nothing of a long range answers after `FILTER_SCAN_MAX` markers with an
/// empty page and a cursor; following the cursors ends, having visited each marker once.
async fn filtered_scan_is_bounded_and_resumes(h: Harness) {
    let s = &h.store;
    let n = FILTER_SCAN_MAX + FILTER_SCAN_MAX / 2;
    let all: Vec<Marker> = (1..=n)
        .map(|i| {
            let i = u128::try_from(i).unwrap();
            Marker {
                data: None,
                ..marker(&live(), i64::try_from(i).unwrap(), i)
            }
        })
        .collect();
    s.insert_markers(&all).await.unwrap();
    let last = all.last().unwrap().clone();
    let rare = Marker {
        kind: "rare".into(),
        id: id(1 << 90),
        ..last
    };
    s.insert_marker(&rare).await.unwrap();
    let f = MarkerFilter {
        kind: Some("rare".into()),
        ..Default::default()
    };
    for newest_first in [false, true] {
        let mut q = query(0, 1000 * SEC, 10, None).filtered(f.clone()).unwrap();
        if !newest_first {
            // Walking up, the rare marker is past the bound: the first page is empty.
            let page = s.query_markers(&q).await.unwrap();
            assert!(page.markers.is_empty());
            let c = page.next.expect("a cursor where the scan stopped");
            assert_eq!(c, all[FILTER_SCAN_MAX - 1].cursor());
            q.after = Some(c);
            let page = s.query_markers(&q).await.unwrap();
            assert_eq!(ids(&page.markers), vec![rare.id]);
            assert_eq!(page.next, None);
        } else {
            q = q.newest_first();
            let page = s.query_markers(&q).await.unwrap();
            assert_eq!(ids(&page.markers), vec![rare.id]);
            // The rest of the walk down: one more bounded call, then the end.
            let mut after = page.next;
            let mut calls = 0;
            while let Some(c) = after {
                let mut q2 = q.clone();
                q2.after = Some(c);
                let page = s.query_markers(&q2).await.unwrap();
                assert!(page.markers.is_empty());
                after = page.next;
                calls += 1;
                assert!(calls < 5, "the walk ends");
            }
        }
    }
}

async fn bad_filters_name_the_parameter(h: Harness) {
    let _ = &h;
    for (f, param) in [
        (
            MarkerFilter {
                kind: Some("Bad Kind".into()),
                ..Default::default()
            },
            "kind",
        ),
        (
            MarkerFilter {
                label_prefix: Some(String::new()),
                ..Default::default()
            },
            "label",
        ),
        (
            MarkerFilter {
                label_prefix: Some("x".repeat(257)),
                ..Default::default()
            },
            "label",
        ),
        (
            MarkerFilter {
                tag: Some("a b".into()),
                ..Default::default()
            },
            "tag",
        ),
        (
            MarkerFilter {
                tag: Some("x".repeat(33)),
                ..Default::default()
            },
            "tag",
        ),
    ] {
        let err = query(0, SEC, 10, None).filtered(f).unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidFilter { param: p, .. } if *p == param),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }
    assert!("urgent".parse::<Severity>().is_err());
    assert_eq!("warning".parse::<Severity>().unwrap(), Severity::Warning);
}

fn batch(n: u128, base: u128) -> Vec<Marker> {
    (0..n)
        .map(|i| styled(&live(), i64::try_from(i).unwrap() * SEC, base + i))
        .collect()
}

async fn batch_is_all_or_nothing_and_names_the_entry(h: Harness) {
    let s = &h.store;
    s.put_epoch(&live(), &epoch(0, 0)).await.unwrap();
    let v0 = s.version(&live()).await.unwrap();
    let good = batch(1000, 1_000);
    let bad_entries: Vec<(usize, Marker, ErrorKind)> = vec![
        (
            517,
            Marker {
                label: String::new(),
                ..good[517].clone()
            },
            ErrorKind::Invalid,
        ),
        (
            3,
            Marker {
                color: Some("red".into()),
                ..good[3].clone()
            },
            ErrorKind::Invalid,
        ),
        (
            999,
            Marker {
                tags: (0..17).map(|t| format!("t{t}")).collect(),
                ..good[999].clone()
            },
            ErrorKind::Invalid,
        ),
        (
            0,
            Marker {
                tags: vec!["dup".into(), "dup".into()],
                ..good[0].clone()
            },
            ErrorKind::Invalid,
        ),
        (
            10,
            Marker {
                stream: StreamName::new("other").unwrap(),
                ..good[10].clone()
            },
            ErrorKind::Invalid,
        ),
        (
            600,
            // The same id as entry 5 with other content: a conflict inside the batch.
            Marker {
                id: good[5].id,
                ..good[600].clone()
            },
            ErrorKind::Conflict,
        ),
    ];
    for (index, bad, kind) in bad_entries {
        let mut b = good.clone();
        let bad_id = bad.id;
        b[index] = bad;
        let err = s.insert_marker_batch(&live(), &b).await.unwrap_err();
        match &err {
            StoreError::BatchEntry {
                index: i, id: got, ..
            } => {
                assert_eq!((*i, *got), (index, bad_id), "{err}");
            }
            other => panic!("not a batch entry error: {other}"),
        }
        assert_eq!(err.kind(), kind, "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("markers[{index}] (id {bad_id})")),
            "{err}"
        );
        assert_eq!(s.count_markers(&live()).await.unwrap(), 0, "nothing stored");
    }
    assert_eq!(s.version(&live()).await.unwrap(), v0, "no change at all");
    let too_many = batch(u128::try_from(MAX_BATCH).unwrap() + 1, 5_000);
    let err = s.insert_marker_batch(&live(), &too_many).await.unwrap_err();
    assert!(matches!(err, StoreError::BatchTooLarge(1001)), "{err}");
    assert_eq!(s.count_markers(&live()).await.unwrap(), 0);
    // Without the bad entry: all stored once.
    let out = s.insert_marker_batch(&live(), &good).await.unwrap();
    assert_eq!(out, vec![InsertOutcome::Inserted; 1000]);
    assert_eq!(s.count_markers(&live()).await.unwrap(), 1000);
    assert_eq!(all_pages(&**s, 0, 2000 * SEC, 1000).await, good);
    assert!(s.version(&live()).await.unwrap() > v0);
    assert!(
        s.insert_marker_batch(&live(), &[])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn batch_is_idempotent_by_id(h: Harness) {
    let s = &h.store;
    let b = batch(300, 1);
    s.insert_marker_batch(&live(), &b).await.unwrap();
    let v = s.version(&live()).await.unwrap();
    // The same batch again (new creation times, as a retried POST would stamp): nothing changes.
    let retried: Vec<Marker> = b
        .iter()
        .map(|m| Marker {
            created_at: UtcTime(m.created_at.0 + SEC),
            ..m.clone()
        })
        .collect();
    let out = s.insert_marker_batch(&live(), &retried).await.unwrap();
    assert_eq!(out, vec![InsertOutcome::AlreadyExists; 300]);
    assert_eq!(s.version(&live()).await.unwrap(), v);
    assert_eq!(s.count_markers(&live()).await.unwrap(), 300);
    // Half old, half new, and one entry repeated inside the batch.
    let mut mixed: Vec<Marker> = b[150..].to_vec();
    mixed.extend(batch(150, 1_000));
    mixed.push(mixed[200].clone());
    let out = s.insert_marker_batch(&live(), &mixed).await.unwrap();
    let mut want = vec![InsertOutcome::AlreadyExists; 150];
    want.extend(vec![InsertOutcome::Inserted; 150]);
    want.push(InsertOutcome::AlreadyExists);
    assert_eq!(out, want);
    assert_eq!(s.count_markers(&live()).await.unwrap(), 450);
    assert_eq!(
        s.get_marker(&live(), mixed[200].id).await.unwrap().as_ref(),
        Some(&mixed[200])
    );
}

async fn batch_conflict_names_the_entry_and_writes_nothing(h: Harness) {
    let s = &h.store;
    let b = batch(100, 1);
    s.insert_marker_batch(&live(), &b[..50]).await.unwrap();
    let mut again = b.clone();
    again[42] = Marker {
        label: "changed".into(),
        ..b[42].clone()
    };
    let err = s.insert_marker_batch(&live(), &again).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        matches!(&err, StoreError::BatchEntry { index: 42, id, error } if *id == b[42].id && matches!(**error, StoreError::Conflict(_))),
        "{err}"
    );
    assert_eq!(
        s.count_markers(&live()).await.unwrap(),
        50,
        "none of the new 50"
    );
    for m in &b[50..] {
        assert_eq!(s.get_marker(&live(), m.id).await.unwrap(), None);
    }
    assert_eq!(
        s.get_marker(&live(), b[42].id).await.unwrap().as_ref(),
        Some(&b[42])
    );
}

async fn batch_publishes_each_new_marker_once(h: Harness) {
    let s = &h.store;
    let b = batch(200, 1);
    s.insert_marker_batch(&live(), &b[..50]).await.unwrap();
    let mut feed = s.subscribe_markers().await.unwrap();
    s.insert_marker_batch(&live(), &b).await.unwrap();
    // A marker after the batch tells when the batch's messages are all in.
    let end = marker(&live(), 9999 * SEC, 1 << 100);
    s.insert_marker(&end).await.unwrap();
    let mut got = Vec::new();
    loop {
        let m = tokio::time::timeout(PATIENCE, feed.recv())
            .await
            .expect("feed within patience")
            .unwrap();
        if m.id == end.id {
            break;
        }
        got.push(m);
    }
    assert_eq!(
        ids(&got),
        ids(&b[50..]),
        "each new marker once, in batch order"
    );
    assert_eq!(got[0], b[50], "with its severity, colour and tags");
}

/// Many writers at once (the group commit of the embedded store): every insert is answered
/// once, with the right outcome, and every acknowledged marker is there.
async fn concurrent_single_inserts_are_each_acknowledged_once(h: Harness) {
    let s = &h.store;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..32u128 {
        let s = Arc::clone(s);
        tasks.spawn(async move {
            let mut out = Vec::new();
            for i in 0..20u128 {
                let n = w * 1000 + i + 1;
                let m = styled(&live(), i64::try_from(n).unwrap(), n);
                out.push((n, s.insert_marker(&m).await.unwrap()));
                // Every fourth is retried at once: idempotent inside a group too.
                if i.is_multiple_of(4) {
                    assert_eq!(
                        s.insert_marker(&m).await.unwrap(),
                        InsertOutcome::AlreadyExists
                    );
                }
            }
            out
        });
    }
    let mut acked = Vec::new();
    while let Some(r) = tasks.join_next().await {
        acked.extend(r.unwrap());
    }
    assert_eq!(acked.len(), 640);
    assert!(acked.iter().all(|(_, o)| *o == InsertOutcome::Inserted));
    assert_eq!(s.count_markers(&live()).await.unwrap(), 640);
    // Conflicts among concurrent writers are refused one by one, not their whole group.
    let m = styled(&live(), 1, 1);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..8 {
        let s = Arc::clone(s);
        let m = Marker {
            label: format!("conflicting {k}"),
            ..m.clone()
        };
        let fresh = styled(&live(), 5, 100_000 + k);
        tasks.spawn(async move {
            (
                s.insert_marker(&m).await,
                s.insert_marker(&fresh).await.unwrap(),
            )
        });
    }
    while let Some(r) = tasks.join_next().await {
        let (conflict, fresh) = r.unwrap();
        assert!(matches!(conflict, Err(StoreError::Conflict(_))));
        assert_eq!(fresh, InsertOutcome::Inserted);
    }
    assert_eq!(s.count_markers(&live()).await.unwrap(), 648);
}

// ---------------------------------------------------------------------------------------------
// Backend-specific behaviour.

#[tokio::test]
async fn embedded_data_survives_close_and_reopen() {
    let h = Harness::embedded().await;
    let ms: Vec<Marker> = (0..100u128)
        .map(|i| marker(&live(), i64::try_from(i).unwrap() * SEC, i + 1))
        .collect();
    h.store.insert_markers(&ms).await.unwrap();
    h.store.append_segment(&live(), &segment(0)).await.unwrap();
    h.store.put_epoch(&live(), &epoch(0, 0)).await.unwrap();
    let v = h.store.version(&live()).await.unwrap();
    let Harness {
        spec, store, _dir, ..
    } = h;
    drop(store);
    // The file is closed with the last handle; a fresh open reads it back from disk.
    let store = open(&spec, "t").await.unwrap();
    assert_eq!(all_pages(store.as_ref(), 0, 1000 * SEC, 1000).await, ms);
    assert_eq!(
        store.get_segment(&live(), 0).await.unwrap(),
        Some(segment(0))
    );
    assert_eq!(store.epochs(&live()).await.unwrap(), vec![epoch(0, 0)]);
    assert_eq!(store.version(&live()).await.unwrap(), v);
    drop(_dir);
}

#[tokio::test]
async fn embedded_unwritable_location_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    // A path below a regular file can never be created.
    let spec = file.join("store.redb");
    let err = open(&spec.to_string_lossy(), "t").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("plain-file"), "{err}");
}

#[tokio::test]
async fn redis_prefixes_do_not_mix() {
    let h = Harness::redis().await;
    let other = open(&h.spec, "other").await.unwrap();
    h.store
        .insert_marker(&marker(&live(), SEC, 1))
        .await
        .unwrap();
    assert_eq!(
        other.count_markers(&live()).await.unwrap_err().kind(),
        ErrorKind::UnknownStream
    );
    assert!(other.streams().await.unwrap().is_empty());
    assert!(open(&h.spec, "bad prefix").await.is_err());
}

/// Data written by builds before the hash-tagged layout (`t:live:epochs`, `t:streams`,
/// `t:wh:hooks`) is renamed to `{t:live}:epochs`, `{t}:streams`, `{t}:wh:hooks` at open, once.
#[tokio::test]
async fn redis_old_layout_is_renamed_at_open() {
    let server = RedisServer::start();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &server.port().to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let old_epoch = serde_json::to_string(&epoch(0, 0)).unwrap();
    cli(&["sadd", "t:streams", "live"]);
    cli(&["hset", "t:live:epochs", "0", &old_epoch]);
    cli(&["set", "t:live:ver", "42"]);
    cli(&["hset", "t:wh:hooks", "abc", "1|*"]);
    let store = open(&server.url(), "t").await.unwrap();
    assert_eq!(store.streams().await.unwrap(), vec![live()]);
    assert_eq!(store.epochs(&live()).await.unwrap(), vec![epoch(0, 0)]);
    assert_eq!(store.version(&live()).await.unwrap(), 42);
    assert_eq!(store.count_markers(&live()).await.unwrap(), 0);
    assert_eq!(
        cli(&["exists", "t:live:epochs", "t:streams", "t:wh:hooks"]),
        "0"
    );
    assert_eq!(cli(&["hget", "{t}:wh:hooks", "abc"]), "1|*");
    // Opening again renames nothing and loses nothing.
    let again = open(&server.url(), "t").await.unwrap();
    assert_eq!(again.epochs(&live()).await.unwrap(), vec![epoch(0, 0)]);
}

#[tokio::test]
async fn redis_unreachable_at_open_is_unavailable() {
    let port = hlsmark_testkit::free_port();
    let t = Instant::now();
    let err = open(&format!("redis://127.0.0.1:{port}/"), "t")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

/// The fault test: redis-server (appendonly, fsync always) is SIGKILLed while a writer runs. Every
/// call fails with a typed error within a second; once a new redis-server is up on the same port
/// the same handles work again by themselves, and no acknowledged marker is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_kill_and_restart_loses_nothing_acknowledged() {
    let mut h = Harness::redis_with(true).await;
    let store = Arc::clone(&h.store);
    let reader = h.open_again().await;
    let mut feed = reader.subscribe_markers().await.unwrap();

    // A writer that runs across the crash and records what was acknowledged.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failures = Vec::new();
            let mut n = 0u128;
            while !*stop_rx.borrow() {
                n += 1;
                let m = marker(&live(), i64::try_from(n).unwrap() * SEC, n);
                let t = Instant::now();
                match store.insert_marker(&m).await {
                    Ok(_) => acked.push(m),
                    Err(e) => {
                        failures.push((e.kind(), t.elapsed()));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (acked, failures)
        })
    };
    // Let the writer get going, then crash the server.
    let deadline = Instant::now() + PATIENCE;
    while store.count_markers(&live()).await.map_or(0, |n| n) < 20 {
        assert!(Instant::now() < deadline, "writer made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.redis.as_mut().unwrap().kill();

    // While it is down (for a while, so reconnect attempts give up and start again): each call
    // answers with a typed error, within a second.
    let down = Instant::now();
    while down.elapsed() < Duration::from_millis(1500) {
        let t = Instant::now();
        let err = store.count_markers(&live()).await.unwrap_err();
        let took = t.elapsed();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(took < Duration::from_secs(1), "count took {took:?}");
        let t = Instant::now();
        let err = reader
            .query_markers(&query(0, SEC, 10, None))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "query took {:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Back on the same port: the same handles recover without being told.
    h.redis.as_mut().unwrap().restart();
    let deadline = Instant::now() + PATIENCE;
    loop {
        if store.ping().await.is_ok() && reader.ping().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "store did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The writer gets through again too.
    let before = store.count_markers(&live()).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    while store.count_markers(&live()).await.unwrap_or(0) < before + 5 {
        assert!(Instant::now() < deadline, "writer did not recover");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(true).unwrap();
    let (acked, failures) = writer.await.unwrap();

    assert!(!failures.is_empty(), "the writer ran into the outage");
    let slowest = failures.iter().map(|f| f.1).max().unwrap_or_default();
    eprintln!(
        "{} inserts failed during the outage, slowest in {slowest:?}",
        failures.len()
    );
    for (kind, took) in &failures {
        assert_eq!(*kind, ErrorKind::Unavailable);
        assert!(
            *took < Duration::from_secs(1),
            "an insert took {took:?} to fail"
        );
    }
    let stored = all_pages(reader.as_ref(), 0, i64::MAX / 1_000_000, 1000).await;
    let stored: std::collections::HashSet<Uuid> = ids(&stored).into_iter().collect();
    let lost: Vec<Uuid> = acked
        .iter()
        .map(|m| m.id)
        .filter(|i| !stored.contains(i))
        .collect();
    assert!(lost.is_empty(), "acknowledged markers lost: {lost:?}");
    assert!(
        acked.len() >= 25,
        "the writer ran before and after the crash"
    );

    // The live feed resubscribed by itself: a new marker reaches the old subscription.
    let probe_deadline = Instant::now() + PATIENCE;
    let mut n = 1_000_000u128;
    'probe: loop {
        n += 1;
        let m = marker(&live(), 1, n);
        store.insert_marker(&m).await.unwrap();
        let wait = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                got = feed.recv() => match got {
                    Ok(g) if g.id == m.id => break 'probe,
                    _ => {}
                },
                () = &mut wait => break,
            }
        }
        assert!(
            Instant::now() < probe_deadline,
            "live feed did not resubscribe"
        );
    }
}

#[tokio::test]
async fn embedded_file_held_elsewhere_names_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.redb");
    // Another holder of the file lock (as another process would be), outside our handle registry.
    let _other = redb::Database::create(&path).unwrap();
    let err = open(&path.to_string_lossy(), "t").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("in use by another process") && msg.contains("redis://"),
        "{msg}"
    );
}

#[tokio::test]
async fn redis_versions_move_forward_after_data_loss() {
    // No persistence: a restart comes back empty, as after a FLUSHALL or a lost volume.
    let mut h = Harness::redis().await;
    h.store
        .insert_marker(&marker(&live(), SEC, 1))
        .await
        .unwrap();
    let before = h.store.version(&live()).await.unwrap();
    h.redis.as_mut().unwrap().restart();
    let deadline = Instant::now() + PATIENCE;
    while h.store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "store did not reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        h.store.version(&live()).await.unwrap(),
        0,
        "the data is gone"
    );
    h.store
        .insert_marker(&marker(&live(), SEC, 2))
        .await
        .unwrap();
    let after = h.store.version(&live()).await.unwrap();
    assert!(
        after > before,
        "a cache keyed by version {before} must not see it again ({after})"
    );
}

/// A real crash: another process writes markers (each acknowledged after its commit returned) and is
/// SIGKILLed mid-run. While it runs, this process cannot open the file and is told why; after the
/// kill, every acknowledged marker is in the file and the store works.
#[tokio::test]
async fn embedded_survives_a_killed_writer_process() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_store-crash-writer"))
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = 0u64;
    while acked < 200 {
        acked = lines
            .next()
            .expect("writer exited early")
            .unwrap()
            .parse()
            .unwrap();
    }
    let err = open(&path.to_string_lossy(), "t").await.unwrap_err();
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // Lines the writer printed before it died are acknowledged too.
    for line in lines {
        match line {
            Ok(l) => acked = l.parse().unwrap_or(acked),
            Err(_) => break,
        }
    }
    let store = open(&path.to_string_lossy(), "t").await.unwrap();
    for n in 1..=acked {
        let m = store.get_marker(&live(), id(u128::from(n))).await.unwrap();
        assert!(m.is_some(), "acknowledged marker {n} of {acked} lost");
    }
    let count = store.count_markers(&live()).await.unwrap();
    assert!(
        count == acked || count == acked + 1,
        "{count} markers, {acked} acknowledged"
    );
    store
        .insert_marker(&marker(&live(), 0, 1 << 100))
        .await
        .unwrap();
}

/// Group commit keeps the durability promise: 16 writers insert concurrently (their inserts
/// share fsync'd transactions) until the process is SIGKILLed; every marker it acknowledged is
/// in the file afterwards, and at most one group's worth more.
#[tokio::test]
async fn embedded_group_commit_survives_a_killed_writer_process() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_store-crash-writer"))
        .arg(&path)
        .arg("16")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = std::collections::BTreeSet::new();
    while acked.len() < 400 {
        let n: u64 = lines
            .next()
            .expect("writer exited early")
            .unwrap()
            .parse()
            .unwrap();
        assert!(acked.insert(n), "marker {n} acknowledged twice");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for line in lines {
        match line.map(|l| l.parse::<u64>()) {
            Ok(Ok(n)) => {
                acked.insert(n);
            }
            _ => break,
        }
    }
    let store = open(&path.to_string_lossy(), "t").await.unwrap();
    for n in &acked {
        let m = store.get_marker(&live(), id(u128::from(*n))).await.unwrap();
        let m = m.unwrap_or_else(|| panic!("acknowledged marker {n} lost"));
        assert_eq!(m.severity, Severity::Warning);
        assert_eq!(m.tags, vec!["crash".to_owned()]);
    }
    let count = store.count_markers(&live()).await.unwrap();
    let acked_n = acked.len() as u64;
    assert!(
        count >= acked_n && count <= acked_n + 16,
        "{count} markers, {acked_n} acknowledged (at most one group of 16 unacknowledged)"
    );
}

#[tokio::test]
async fn tls_redis_url_is_refused_clearly_not_taken_for_a_file() {
    let port = hlsmark_testkit::free_port();
    let err = open(&format!("rediss://127.0.0.1:{port}/"), "t")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(!std::path::Path::new("rediss:").exists());
}

/// The update feed outlives a Redis crash: after the server is back the subscriber's task
/// resubscribes by itself, first sends every stream's current version (updates published while it
/// was down are lost; a waiter re-reads on this one), then every new change again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_update_feed_survives_a_restart() {
    let mut h = Harness::redis_with(true).await;
    let reader = h.open_again().await;
    let mut feed = reader.subscribe_updates().await.unwrap();
    h.store.append_part(&live(), &part(0, 0)).await.unwrap();
    let first = next_update(&mut feed, &live()).await;

    h.redis.as_mut().unwrap().kill();
    // Down for longer than the feed's retry pause, so it sees the loss and retries a few times.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(h.store.append_part(&live(), &part(0, 1)).await.is_err());
    h.redis.as_mut().unwrap().restart();

    // The resubscribed feed announces the current version (the AOF kept it).
    let again = next_update(&mut feed, &live()).await;
    assert_eq!(
        again.version, first.version,
        "current version after resubscribing"
    );
    // New changes flow again, from this handle and from the other one.
    let deadline = Instant::now() + PATIENCE;
    while h.store.append_part(&live(), &part(0, 1)).await.is_err() {
        assert!(Instant::now() < deadline, "writer never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let u = next_update(&mut feed, &live()).await;
    assert!(u.version > first.version);
    // The other handle's first call after the crash may still meet its dead connection.
    while reader.append_part(&live(), &part(0, 2)).await.is_err() {
        assert!(Instant::now() < deadline, "reader never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = next_update(&mut feed, &live()).await;
    assert!(last.version > u.version);
    assert_eq!(last.version, reader.version(&live()).await.unwrap());
}

/// Parts are committed without an fsync, yet they are there after a clean close and reopen
/// (the next durable commit, or redb's close, persists them) and a reopen keeps them in order.
#[tokio::test]
async fn embedded_parts_survive_close_and_reopen() {
    let h = Harness::embedded().await;
    for index in 0..5 {
        h.store.append_part(&live(), &part(0, index)).await.unwrap();
    }
    h.store.append_segment(&live(), &segment(0)).await.unwrap();
    h.store.append_part(&live(), &part(1, 0)).await.unwrap();
    let Harness {
        spec, store, _dir, ..
    } = h;
    drop(store);
    let store = open(&spec, "t").await.unwrap();
    let parts = store.parts(&live(), 0).await.unwrap();
    assert_eq!(parts.len(), 6, "{parts:?}");
    assert_eq!(parts.last(), Some(&part(1, 0)));
    drop(_dir);
}

/// A tmpfs of `size` mounted on a fresh temp dir, unmounted when dropped. `None` (with the
/// reason printed) when this process may not mount: the disk-full cases need root.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        if !hlsmark_testkit::disk::is_root() {
            eprintln!("skipped: mounting a tmpfs needs root (the test machines run as root)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = hlsmark_testkit::disk::mount_tmpfs(dir.path(), size);
        if !ok {
            eprintln!("skipped: mount -t tmpfs failed (no CAP_SYS_ADMIN in this container?)");
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes zeros into `name` until the file system is full.
    fn fill(&self, name: &str) {
        hlsmark_testkit::disk::fill(&self.path().join(name));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        drop(hlsmark_testkit::disk::Unmount(self.dir.path().to_owned()));
    }
}

/// Issue 18, row 1: a full disk makes writes `Unavailable` (503), never a permanent
/// "previous I/O error"; once space returns the store reopens its file by itself, and every
/// marker it acknowledged before, during or after is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_recovers_by_itself_when_the_full_disk_has_space_again() {
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let spec = fs.path().join("store.redb").to_string_lossy().into_owned();
    let store = open(&spec, "t").await.unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..50u128 {
        let m = marker(&live(), i64::try_from(i).unwrap() * SEC, i + 1);
        store.insert_marker(&m).await.unwrap();
        acknowledged.push(m);
    }
    fs.fill("filler");
    // Writes fail while full: every one Unavailable, with the cause, none Internal.
    let mut failures = 0;
    for i in 50..400u128 {
        let m = marker(&live(), i64::try_from(i).unwrap() * SEC, i + 1);
        match store.insert_marker(&m).await {
            Ok(_) => acknowledged.push(m),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                failures += 1;
            }
        }
        if failures >= 20 {
            break;
        }
    }
    assert!(failures >= 20, "the full disk never failed a write");
    // Still full a second later: still Unavailable (it keeps trying to reopen, never gives up).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let e = store
        .insert_marker(&marker(&live(), 10_000 * SEC, 10_000))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    std::fs::remove_file(fs.path().join("filler")).unwrap();
    let freed = Instant::now();
    let m = marker(&live(), 20_000 * SEC, 20_000);
    loop {
        match store.insert_marker(&m).await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                assert!(freed.elapsed() < PATIENCE, "not recovered: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    eprintln!(
        "store writable again {} ms after space returned",
        freed.elapsed().as_millis()
    );
    acknowledged.push(m);
    let mut got = all_pages(store.as_ref(), 0, 100_000 * SEC, 1000).await;
    got.retain(|g| acknowledged.iter().any(|a| a.id == g.id));
    assert_eq!(ids(&got), ids(&acknowledged));
    drop(store);
    drop(fs);
}

/// Playlists keep the newest markers of a window under a cap: a descending query pages from the
/// end of the range backwards, cursor included, and agrees with the ascending one.
async fn newest_first_pages_walk_the_range_backwards(h: Harness) {
    let ms: Vec<Marker> = (0..25u128)
        .map(|i| marker(&live(), i64::try_from(i / 2).unwrap() * SEC, i + 1))
        .collect();
    h.store.insert_markers(&ms).await.unwrap();
    let mut back = Vec::new();
    let mut after = None;
    loop {
        let q = query(2 * SEC, 11 * SEC, 4, after).newest_first();
        let page = h.store.query_markers(&q).await.unwrap();
        assert!(page.markers.len() <= 4);
        back.extend(page.markers);
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    let mut forward = all_pages(h.store.as_ref(), 2 * SEC, 11 * SEC, 3).await;
    assert_eq!(forward.len(), 18);
    forward.reverse();
    assert_eq!(ids(&back), ids(&forward));
    // The first page of a descending query is the newest of the range.
    let q = query(0, 100 * SEC, 2, None).newest_first();
    let page = h.store.query_markers(&q).await.unwrap();
    assert_eq!(ids(&page.markers), vec![id(25), id(24)]);
}

mod newest_first {
    #[tokio::test]
    async fn embedded() {
        super::newest_first_pages_walk_the_range_backwards(super::Harness::embedded().await).await;
    }
    #[tokio::test]
    async fn redis() {
        super::newest_first_pages_walk_the_range_backwards(super::Harness::redis().await).await;
    }
}
