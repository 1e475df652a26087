//! LL-HLS over HTTP against the real server and store: the LL playlist once parts exist, blocking
//! reloads answered when the part lands (woken by the store's update feed) and within the bound
//! otherwise, the hinted part request waiting for its file, delta updates, caching headers, and a
//! blocking reload on one Redis woken by a part written through another connection (a replica).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hlsmark_clock::{Duration90k, HlsTime, Part};
use hlsmark_store::{Store, StreamName};

use crate::common::{D, TOKEN, TestServer};

/// 200 ms parts.
const PT: i64 = 18_000;

fn part(seq: u64, index: u32) -> Part {
    Part {
        seq,
        index,
        epoch: 1,
        hls_start: HlsTime(i64::try_from(seq).unwrap() * D + i64::from(index) * PT),
        duration: Duration90k(PT),
        independent: index == 0,
        file: Part::file_name(1, seq, index),
    }
}

/// Publishes part (seq, index) of epoch 1 as the ingest does: the file first, then the record.
fn publish(
    rt: &tokio::runtime::Runtime,
    store: &Arc<dyn Store>,
    data: &std::path::Path,
    seq: u64,
    index: u32,
) {
    let p = part(seq, index);
    let path = data.join("hls/live").join(&p.file);
    std::fs::write(&path, format!("part {seq}.{index}").repeat(100)).unwrap();
    rt.block_on(store.append_part(&StreamName::live(), &p))
        .unwrap();
}

/// The fixture (segments 0-8, seq 8 in epoch 1) with the parts of seq 8 and two of the open seq 9.
fn ll_server(store_spec: Option<String>) -> TestServer {
    ll_server_with(store_spec, None)
}

/// [`ll_server`] with a write token (marker writes need one).
fn ll_server_with(store_spec: Option<String>, token: Option<&str>) -> TestServer {
    let s = TestServer::start_with(store_spec, true, token);
    for i in 0..5 {
        publish(&s.rt, &s.store, s.data_dir(), 8, i);
    }
    for i in 0..2 {
        publish(&s.rt, &s.store, s.data_dir(), 9, i);
    }
    s
}

/// GET in a thread; returns its join handle with (status, cache-control, body, elapsed).
fn get_later(
    addr: std::net::SocketAddr,
    path: &str,
) -> std::thread::JoinHandle<(u16, Option<String>, String, Duration)> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = crate::common::request(addr, "GET", &path, &[], b"");
        (
            r.status,
            r.header("cache-control").map(str::to_owned),
            String::from_utf8_lossy(&r.body).into_owned(),
            t.elapsed(),
        )
    })
}

#[test]
fn ll_playlist_lists_parts_and_hints_the_next() {
    let s = ll_server(None);
    let r = s.get("/hls/live/index.m3u8");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,CAN-SKIP-UNTIL=6.000,CAN-SKIP-DATERANGES=YES\n"), "{text}");
    assert!(
        text.contains("#EXT-X-PART-INF:PART-TARGET=0.200\n"),
        "{text}"
    );
    assert_eq!(text.matches("#EXT-X-PART:").count(), 7, "{text}");
    assert!(
        text.contains("#EXT-X-PART:DURATION=0.200,URI=\"e1-00000009.p0.m4s?v="),
        "{text}"
    );
    let hint = text.lines().last().unwrap();
    assert!(
        hint.starts_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"e1-00000009.p2.m4s?v="),
        "{text}"
    );
    // A listed part is served like a segment: immutable.
    let p = s.get("/hls/live/e1-00000009.p1.m4s");
    assert_eq!(p.status, 200);
    assert_eq!(p.header("content-type"), Some("video/iso.segment"));
    assert!(p.header("cache-control").unwrap().contains("immutable"));
    // Delta updates: segments ending more than 6 s before the end (seqs 0 and 1) are skipped.
    let d = s.get("/hls/live/index.m3u8?_HLS_skip=YES");
    let dt = String::from_utf8_lossy(&d.body);
    assert_eq!(d.header("cache-control"), Some("no-store"));
    assert!(
        dt.contains("#EXT-X-VERSION:9\n") && dt.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=2\n"),
        "{dt}"
    );
    assert!(
        !dt.contains("e0-00000001.m4s") && dt.contains("e0-00000002.m4s"),
        "{dt}"
    );
    // v2 only once this server has watched the stream for a skip boundary (it cannot know
    // deletions made before): until then the full playlist, a valid answer to a skip request.
    let v2 = s.get("/hls/live/index.m3u8?_HLS_skip=v2");
    let v2t = String::from_utf8_lossy(&v2.body);
    assert!(
        v2t.contains("#EXT-X-VERSION:6\n") && !v2t.contains("#EXT-X-SKIP"),
        "{v2t}"
    );
    let v2t = wait_v2_delta(&s);
    assert!(
        v2t.contains("#EXT-X-VERSION:10\n")
            && v2t.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=2,RECENTLY-REMOVED-DATERANGES=\"\"\n"),
        "{v2t}"
    );
}

/// The first `_HLS_skip=v2` answer that is a delta: the server answers the full playlist until it
/// has watched the stream for a skip boundary (6 s here). Polled every 100 ms, which keeps it
/// watching.
fn wait_v2_delta(s: &TestServer) -> String {
    let t = Instant::now();
    loop {
        let text = s.get("/hls/live/index.m3u8?_HLS_skip=v2").text();
        if text.contains("#EXT-X-SKIP:") {
            eprintln!("first v2 delta after {:?}", t.elapsed());
            return text;
        }
        assert!(text.contains("#EXT-X-VERSION:6\n"), "{text}");
        assert!(t.elapsed() < Duration::from_secs(20), "no v2 delta: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The IDs of `RECENTLY-REMOVED-DATERANGES`.
fn removed_ids(text: &str) -> Vec<String> {
    let skip = text
        .lines()
        .find(|l| l.starts_with("#EXT-X-SKIP:"))
        .unwrap_or_else(|| panic!("no EXT-X-SKIP: {text}"));
    let list = skip
        .split_once("RECENTLY-REMOVED-DATERANGES=\"")
        .and_then(|(_, rest)| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{skip}"));
    list.split('\t')
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The IDs of the playlist's date ranges.
fn daterange_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-DATERANGE:ID=\""))
        .filter_map(|l| l.split_once('"').map(|(id, _)| id.to_owned()))
        .collect()
}

#[test]
fn v2_deltas_name_deleted_and_aged_out_markers_once_and_never_listed_ones() {
    let s = ll_server_with(None, Some(TOKEN));
    wait_v2_delta(&s);
    // In the window: one to delete, one that stays; one in seq 0 that ages out below.
    let post = |label: &str, hls: f64| {
        let r = s.post_marker(&serde_json::json!({"label": label, "hls": hls, "duration": 0.2}));
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["id"].as_str().unwrap().to_owned()
    };
    let deleted = post("deleted", 7.2);
    let stays = post("stays", 5.5);
    let aging = post("aging", 0.5);
    let d = s.get("/hls/live/index.m3u8?_HLS_skip=v2").text();
    assert!(d.contains("#EXT-X-VERSION:10\n"), "{d}");
    let listed = daterange_ids(&d);
    for id in [&deleted, &stays, &aging] {
        assert!(listed.contains(id), "{id} not in the v2 delta: {d}");
    }
    assert_eq!(removed_ids(&d), Vec::<String>::new(), "{d}");

    // Deleted: the next v2 delta names it once and no longer lists it.
    let auth = format!("Bearer {TOKEN}");
    let r = crate::common::request(
        s.addr,
        "DELETE",
        &format!("/markers/{deleted}"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let d = s.get("/hls/live/index.m3u8?_HLS_skip=v2").text();
    assert_eq!(removed_ids(&d), vec![deleted.clone()], "{d}");
    let listed = daterange_ids(&d);
    assert!(!listed.contains(&deleted), "{d}");
    assert!(listed.contains(&stays) && listed.contains(&aging), "{d}");
    assert!(!daterange_ids(&s.get("/hls/live/index.m3u8").text()).contains(&deleted));

    // Retention drops seqs 0-1: the window starts at seq 2 and "aging" (seq 0, kept in the store)
    // slides out. Named once (the renderer never gets ranges outside the window, so this is the
    // only place that names it), next to "deleted" while it is recent; listed ranges never.
    s.rt.block_on(
        s.store
            .apply_retention(&StreamName::live(), HlsTime(2 * D), None),
    )
    .unwrap();
    let t = Instant::now();
    while s
        .get("/hls/live/index.m3u8")
        .text()
        .contains("e0-00000001.m4s")
    {
        assert!(t.elapsed() < Duration::from_secs(5), "retention not seen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let d = s.get("/hls/live/index.m3u8?_HLS_skip=v2").text();
    let removed = removed_ids(&d);
    assert_eq!(removed.iter().filter(|id| **id == aging).count(), 1, "{d}");
    assert!(
        removed.iter().filter(|id| **id == deleted).count() <= 1,
        "{d}"
    );
    assert!(!removed.contains(&stays), "{d}");
    let full = s.get("/hls/live/index.m3u8").text();
    assert!(daterange_ids(&full).contains(&stays), "{full}");
    for id in daterange_ids(&d).iter().chain(&daterange_ids(&full)) {
        assert!(
            !removed.contains(id),
            "{id} is listed and named removed: {d}"
        );
    }
    // The marker itself is still there: it only aged out of the window.
    assert_eq!(s.get(&format!("/markers/{aging}")).status, 200);
}

#[test]
fn blocking_reload_wakes_when_the_part_lands_and_is_bounded_otherwise() {
    let s = ll_server(None);
    // Already there: at once, not stored by caches.
    let (st, cc, body, took) = get_later(s.addr, "/hls/live/index.m3u8?_HLS_msn=9&_HLS_part=1")
        .join()
        .unwrap();
    assert_eq!((st, cc.as_deref()), (200, Some("no-store")));
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert!(body.contains("e1-00000009.p1.m4s"));

    // The next part: answered when it is published, woken by the update feed.
    let waiting = get_later(s.addr, "/hls/live/index.m3u8?_HLS_msn=9&_HLS_part=2");
    let hinted = get_later(s.addr, "/hls/live/e1-00000009.p2.m4s");
    std::thread::sleep(Duration::from_millis(400));
    let published = Instant::now();
    publish(&s.rt, &s.store, s.data_dir(), 9, 2);
    let (st, cc, body, took) = waiting.join().unwrap();
    let wake = published.elapsed();
    assert_eq!((st, cc.as_deref()), (200, Some("no-store")), "{body}");
    assert!(
        took >= Duration::from_millis(400),
        "answered before the part existed: {took:?}"
    );
    assert!(
        body.contains("e1-00000009.p2.m4s?v=")
            && body.contains("PRELOAD-HINT:TYPE=PART,URI=\"e1-00000009.p3.m4s"),
        "{body}"
    );
    eprintln!("blocking reload answered {wake:?} after the part was published");
    assert!(wake < Duration::from_millis(300), "{wake:?}");
    let (st, cc, body, took) = hinted.join().unwrap();
    assert_eq!(st, 200, "{body}");
    assert!(took >= Duration::from_millis(400));
    assert!(cc.unwrap().contains("immutable"));
    assert!(body.starts_with("part 9.2"));

    // Past the final part of complete seq 8 = part 0 of seq 9: there already.
    assert_eq!(
        s.get("/hls/live/index.m3u8?_HLS_msn=8&_HLS_part=7").status,
        200
    );
    // Never arrives: 503 after three target durations (3 s), with the JSON error.
    let t = Instant::now();
    let r = s.get("/hls/live/index.m3u8?_HLS_msn=10&_HLS_part=0");
    let took = t.elapsed();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("\"playlist_not_ready\""));
    assert!(
        took >= Duration::from_millis(2_900) && took < Duration::from_millis(4_500),
        "{took:?}"
    );
    // A hinted part that never comes: 404 within the same bound.
    let t = Instant::now();
    assert_eq!(s.get("/hls/live/e1-00000009.p4.m4s").status, 404);
    assert!(t.elapsed() < Duration::from_millis(4_500));
    // Too far ahead: 400 at once.
    let t = Instant::now();
    assert_eq!(
        s.get("/hls/live/index.m3u8?_HLS_msn=9&_HLS_part=30").status,
        400
    );
    assert_eq!(s.get("/hls/live/index.m3u8?_HLS_msn=12").status, 400);
    assert!(t.elapsed() < Duration::from_millis(500));
}

#[test]
fn many_blocked_requests_wake_together() {
    let s = ll_server(None);
    let waiting: Vec<_> = (0..50)
        .map(|_| get_later(s.addr, "/hls/live/index.m3u8?_HLS_msn=9&_HLS_part=2"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let published = Instant::now();
    publish(&s.rt, &s.store, s.data_dir(), 9, 2);
    for w in waiting {
        let (st, _, body, _) = w.join().unwrap();
        assert_eq!(st, 200, "{body}");
    }
    let all = published.elapsed();
    eprintln!("50 blocked reloads answered within {all:?} of the part");
    assert!(all < Duration::from_millis(1_000), "{all:?}");
}

#[test]
fn a_part_written_through_another_redis_connection_wakes_the_blocked_reload() {
    let redis = hlsmark_testkit::RedisServer::start();
    let s = ll_server(Some(redis.url()));
    // Another process's store handle (same prefix as TestServer's "t").
    let writer =
        s.rt.block_on(hlsmark_store::open(&redis.url(), "t"))
            .unwrap();
    let waiting = get_later(s.addr, "/hls/live/index.m3u8?_HLS_msn=9&_HLS_part=2");
    std::thread::sleep(Duration::from_millis(400));
    let published = Instant::now();
    publish(&s.rt, &writer, s.data_dir(), 9, 2);
    let (st, _, body, _) = waiting.join().unwrap();
    let wake = published.elapsed();
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("e1-00000009.p2.m4s"), "{body}");
    eprintln!("Redis: blocked reload answered {wake:?} after another connection's part");
    assert!(wake < Duration::from_millis(500), "{wake:?}");
}
