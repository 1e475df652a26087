//! One conformance suite for every [`Store`] backend: each behaviour below runs once against the
//! embedded redb store (own temp dir) and once against Redis (own real `redis-server` on a free
//! port), through `hlsmark_store::open` exactly as the binaries do. Backend-specific tests
//! (durability by reopening the file, the Redis fault test) follow the shared ones.

// The shared behaviours are plain async fns called by the generated #[tokio::test]s: test bodies.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hlsmark_clock::{Duration90k, Epoch, FrameRate, GenTime, HlsTime, Segment, UtcTime};
use hlsmark_store::{
    Cursor, ErrorKind, InsertOutcome, Marker, RangeQuery, Store, StoreError, StreamName, open,
};
use hlsmark_testkit::RedisServer;
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
    };
}

conformance!(
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
);

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

#[tokio::test]
async fn tls_redis_url_is_refused_clearly_not_taken_for_a_file() {
    let port = hlsmark_testkit::free_port();
    let err = open(&format!("rediss://127.0.0.1:{port}/"), "t")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(!std::path::Path::new("rediss:").exists());
}
