//! Store outages seen by a player (issue 18, row 5): while redis-server is killed or stopped, the
//! live playlist keeps answering with the last good one (`X-Hlsmark-Stale: 1`), whatever request
//! came before it, and fresh ones return by themselves once the store is back.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Resp, TOKEN, TestServer};

const PLAYLIST: &str = "/hls/live/index.m3u8";

/// The pid of the redis-server listening on `port` (its command line names the port).
fn redis_pid(port: u16) -> Option<i32> {
    let needle = format!(":{port}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        (cmd.starts_with("redis-server")
            && (cmd.contains(&needle) || cmd.contains(&port.to_string())))
        .then_some(pid)
    })
}

fn signal(pid: i32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

fn assert_stale(r: &Resp, good: &Resp, after: &str) {
    assert_eq!(r.status, 200, "after {after}: {}", r.text());
    assert_eq!(r.header("x-hlsmark-stale"), Some("1"), "after {after}");
    assert!(r.text().starts_with("#EXTM3U"), "after {after}");
    assert!(
        r.text().contains("e1-00000008.m4s"),
        "after {after}: {}",
        r.text()
    );
    // The last good render (it may include the marker posted before the outage).
    assert!(
        r.text().lines().filter(|l| l.ends_with(".m4s")).count()
            == good.text().lines().filter(|l| l.ends_with(".m4s")).count(),
        "after {after}"
    );
}

/// Issue 18 row 5: the page calls `/markers`, `/timeline` and POSTs between playlist reloads; a
/// Redis outage right after any of them must not turn the live playlist into a 503.
#[test]
fn live_playlist_stays_200_and_marked_stale_during_a_redis_outage_whatever_came_before() {
    for before in ["GET /markers", "GET /timeline", "POST /markers"] {
        let mut redis = hlsmark_testkit::RedisServer::start();
        let s = TestServer::start_configured(Some(redis.url()), true, Some(TOKEN), |c| {
            c.revalidate = Duration::ZERO;
        });
        let good = s.get(PLAYLIST);
        assert_eq!(good.status, 200);
        assert_eq!(good.header("x-hlsmark-stale"), None);
        // Another writer moves the version; then the page's own request renders the new view
        // (without the playlist) just before the store goes away.
        let marker = json!({"label": "before the outage", "hls": 7.5});
        match before {
            "POST /markers" => assert_eq!(s.post_marker(&marker).status, 201),
            path => {
                let hls = hlsmark_clock::HlsTime(7 * 90_000);
                let m = hlsmark_store::Marker {
                    id: uuid::Uuid::from_u128(7),
                    stream: hlsmark_store::StreamName::live(),
                    label: "other writer".into(),
                    kind: "event".into(),
                    gen_time: hlsmark_clock::GenTime(hls.ticks()),
                    hls,
                    utc: hlsmark_clock::UtcTime::now(),
                    duration: hlsmark_clock::Duration90k(0),
                    severity: Default::default(),
                    color: None,
                    tags: Vec::new(),
                    data: None,
                    created_at: hlsmark_clock::UtcTime::now(),
                };
                s.rt.block_on(s.store.insert_marker(&m)).unwrap();
                let path = path.trim_start_matches("GET ");
                assert_eq!(s.get(path).status, 200, "{path}");
            }
        }
        redis.kill();
        let t = Instant::now();
        let r = s.get(PLAYLIST);
        assert_stale(&r, &good, before);
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        // Markers still say 503: only video is served from memory.
        assert_eq!(s.get("/markers").status, 503);
        for _ in 0..5 {
            assert_stale(&s.get(PLAYLIST), &good, before);
        }

        // Back (empty, same port): the next playlists are fresh again, by themselves.
        redis.restart();
        s.rt.block_on(crate::common::publish_fixture(&s.store, s.data_dir()));
        let t = Instant::now();
        loop {
            let r = s.get(PLAYLIST);
            if r.status == 200 && r.header("x-hlsmark-stale").is_none() {
                eprintln!(
                    "{before}: fresh playlist {} ms after Redis returned",
                    t.elapsed().as_millis()
                );
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "never fresh again: {r:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A stopped (SIGSTOP) Redis answers nothing: after the first request found that out (bounded
/// by the store's 800 ms call limit), the next playlists are served stale at once instead of
/// each waiting for the store again.
#[test]
fn stopped_redis_costs_one_timeout_then_stale_playlists_answer_at_once() {
    let redis = hlsmark_testkit::RedisServer::start();
    let s = TestServer::start_configured(Some(redis.url()), true, Some(TOKEN), |c| {
        c.revalidate = Duration::ZERO;
    });
    let good = s.get(PLAYLIST);
    assert_eq!(good.status, 200);
    let pid = redis_pid(redis.port()).expect("redis-server pid");
    signal(pid, "-STOP");
    let t = Instant::now();
    let first = s.get(PLAYLIST);
    let first_ms = t.elapsed();
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        let r = s.get(PLAYLIST);
        worst = worst.max(t.elapsed());
        assert_stale(&r, &good, "SIGSTOP");
    }
    signal(pid, "-CONT");
    assert_stale(&first, &good, "SIGSTOP");
    assert!(first_ms < Duration::from_secs(3), "first: {first_ms:?}");
    assert!(
        worst < Duration::from_millis(300),
        "stale answers took {worst:?}"
    );
    eprintln!(
        "stopped Redis: first playlist {} ms, then at most {} ms",
        first_ms.as_millis(),
        worst.as_millis()
    );
}
