//! Playlists and media over HTTP: live window and VOD rendered from the index, read by ffprobe as
//! a real HLS client; segment/init files with their types; aged-out segments; a store outage.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::TestServer;

/// Runs ffprobe on a URL and returns (decoded video frames, width), failing on any error output.
fn ffprobe_frames(url: &str, extra: &[&str]) -> (u64, u64) {
    hlsmark_testkit::require_program("ffprobe");
    let out = Command::new("timeout")
        .args(["60", "ffprobe", "-v", "error"])
        .args(extra)
        .args(["-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=nb_read_frames,width,codec_name",
            "-of",
            "json",
            url,
        ])
        .output()
        .expect("run ffprobe");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "ffprobe {url}: {stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let st = &v["streams"][0];
    assert_eq!(st["codec_name"], "h264");
    (
        st["nb_read_frames"].as_str().unwrap().parse().unwrap(),
        st["width"].as_u64().unwrap(),
    )
}

/// The playlist with the incarnation queries (`?v=<hex>`) of segment and init URIs removed, after
/// checking every URI has one.
fn without_incarnation(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if let Some(i) = line.find("?v=") {
            let end = line[i + 3..]
                .find(|c: char| !c.is_ascii_hexdigit())
                .map_or(line.len(), |j| i + 3 + j);
            out.push_str(&line[..i]);
            out.push_str(&line[end..]);
        } else {
            assert!(
                !line.contains(".m4s") && !line.contains(".mp4"),
                "media URI without incarnation: {line}"
            );
            out.push_str(line);
        }
    }
    out
}

#[test]
fn live_playlist_is_rendered_once_per_change_and_ffprobe_plays_it() {
    let s = TestServer::start();
    let r = s.get("/hls/live/index.m3u8");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let text = without_incarnation(&r.text());
    for needle in [
        "#EXT-X-VERSION:6\n",
        "#EXT-X-TARGETDURATION:1\n",
        "#EXT-X-MEDIA-SEQUENCE:0\n",
        "#EXT-X-DISCONTINUITY-SEQUENCE:0\n",
        "#EXT-X-MAP:URI=\"e0-init.mp4\"\n",
        "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"e1-init.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:07.500Z\n#EXTINF:1.000,\ne1-00000006.m4s\n",
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:05.000Z\n#EXTINF:1.000,\ne0-00000005.m4s\n",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert_eq!(text.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), 9);
    assert!(!text.contains("#EXT-X-ENDLIST"));

    // Cached: the same bytes, one render.
    assert_eq!(s.get("/hls/live/index.m3u8").body, r.body);
    let renders = |s: &TestServer| {
        let m = s.get("/metrics").text();
        m.lines()
            .find_map(|l| l.strip_prefix("hlsmark_playlist_renders_total "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(renders(&s), 1);

    // A new marker changes the store version: the next playlist carries its DATERANGE.
    let m = s
        .post_marker(&json!({"label": "goal \"A\"", "hls": 7.2, "duration": 1.5}))
        .json();
    let text = without_incarnation(&s.get("/hls/live/index.m3u8").text());
    let line = format!(
        "#EXT-X-DATERANGE:ID=\"{}\",CLASS=\"hlsmark-marker\",START-DATE=\"2026-11-24T07:00:08.700Z\",DURATION=1.500,X-LABEL=\"goal 'A'\"\n#EXTINF:1.000,\ne1-00000007.m4s\n",
        m["id"].as_str().unwrap()
    );
    assert!(text.contains(&line), "{text}");
    assert_eq!(renders(&s), 2);

    // A segment published by someone else (the generator) shows up within the revalidation time.
    let mut seg =
        s.rt.block_on(s.store.last_segments(&hlsmark_store::StreamName::live(), 1))
            .unwrap()
            .remove(0);
    seg.seq = 9;
    seg.hls_start = seg.hls_start + hlsmark_clock::Duration90k(crate::common::D);
    seg.utc_start = seg.utc_start + hlsmark_clock::Duration90k(crate::common::D);
    seg.file = "e1-00000009.m4s".to_owned();
    s.rt.block_on(
        s.store
            .append_segment(&hlsmark_store::StreamName::live(), &seg),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = without_incarnation(&s.get("/hls/live/index.m3u8").text());
        if text.contains(
            "#EXT-X-PROGRAM-DATE-TIME:2026-11-24T07:00:10.500Z\n#EXTINF:1.000,\ne1-00000009.m4s\n",
        ) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new segment never listed:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(renders(&s), 3);

    // A real HLS client reads it (from the first listed segment, 120 frames; a live playlist
    // has no end to read to).
    let (frames, width) = ffprobe_frames(
        &format!("http://{}/hls/live/index.m3u8", s.addr),
        &["-live_start_index", "0", "-read_intervals", "%+#120"],
    );
    assert_eq!(frames, 120);
    assert_eq!(width, 160);
}

#[test]
fn vod_playlist_covers_a_range_and_ffprobe_decodes_every_frame() {
    let s = TestServer::start();
    let r = s.get("/hls/live/vod.m3u8?from=1.5&to=2026-11-24T07:00:08.2Z");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{text}");
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:1\n"), "{text}");
    // [1.5 s, HLS 6.7 s) overlaps seqs 1..=6.
    assert_eq!(text.matches("#EXTINF:").count(), 6, "{text}");
    assert!(
        text.contains("e1-00000006.m4s") && !text.contains("e1-00000007.m4s"),
        "{text}"
    );

    // One epoch: ffprobe decodes every frame of [0 s, 6 s).
    let url = format!("http://{}/hls/live/vod.m3u8?from=0&to=6", s.addr);
    assert_eq!(ffprobe_frames(&url, &[]).0, 180);
    // Everything retained, across the discontinuity, without an error. (ffmpeg 5.1's HLS demuxer
    // drops the first fragment after an encoder restart, whatever the playlist says: it does the
    // same on ffmpeg's own playlists; browser players do not, so up to 30 frames may be missing.)
    let (frames, _) = ffprobe_frames(&format!("http://{}/hls/live/vod.m3u8", s.addr), &[]);
    assert!((240..=270).contains(&frames), "{frames}");
}

#[test]
fn segments_and_init_are_served_immutable_and_aged_out_ones_are_404() {
    let s = TestServer::start();
    let seg = s.get("/hls/live/e0-00000003.m4s");
    assert_eq!(seg.status, 200);
    assert_eq!(seg.header("content-type"), Some("video/iso.segment"));
    assert!(seg.header("cache-control").unwrap().contains("immutable"));
    let on_disk = std::fs::read(s.data_dir().join("hls/live/e0-00000003.m4s")).unwrap();
    assert_eq!(seg.body, on_disk);
    // Second time from the open file, same bytes.
    assert_eq!(s.get("/hls/live/e0-00000003.m4s").body, on_disk);
    let init = s.get("/hls/live/e1-init.mp4");
    assert_eq!(init.status, 200);
    assert_eq!(init.header("content-type"), Some("video/mp4"));
    assert_eq!(&init.body[4..8], b"ftyp");

    // Retention deletes the file: 404 once the last look at its path is older than --revalidate
    // (20 ms), even though it is held open.
    std::fs::remove_file(s.data_dir().join("hls/live/e0-00000003.m4s")).unwrap();
    std::thread::sleep(hlsmark_api::ApiConfig::new("x".into()).revalidate * 2);
    let gone = s.get("/hls/live/e0-00000003.m4s");
    assert_eq!(gone.status, 404);
    assert_eq!(gone.error_code(), "segment_not_found");

    // Timeline and debug views describe the same stream.
    let t = s.get("/timeline").json();
    assert_eq!(t["segment_duration"], 1.0);
    assert_eq!(t["fps"], "30");
    assert_eq!(t["epochs"].as_array().unwrap().len(), 2);
    assert_eq!(t["window"]["first_seq"], 0);
    assert_eq!(t["window"]["last_seq"], 8);
    assert_eq!(t["window"]["end_utc"], "2026-11-24T07:00:10.500Z");
    assert_eq!(t["live_edge"], 9.0);
    assert_eq!(t["live_edge_90k"], 9 * crate::common::D);
    assert_eq!(t["epochs"][0]["hls_end_90k"], 6 * crate::common::D);
    assert_eq!(t["segment_duration_90k"], crate::common::D);
    assert_eq!(t["retained"]["first_seq"], 0);
    let dbg = s.get("/debug/timeline").text();
    assert!(
        dbg.contains("e1-00000008.m4s") && dbg.contains("2026-11-24T07:00:09.500Z"),
        "{dbg}"
    );
    // Page, OpenAPI, metrics.
    let page = s.get("/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("npm --prefix frontend ci"));
    let api = s.get("/openapi.json").json();
    for route in [
        "/markers",
        "/markers/{id}",
        "/markers/live",
        "/hls/{stream}/index.m3u8",
        "/timeline",
        "/metrics",
    ] {
        assert!(api["paths"].get(route).is_some(), "{route}");
    }
    let metrics = s.get("/metrics").text();
    assert!(metrics.contains("hlsmark_http_requests_total{route=\"/hls/{stream}/{file}\",method=\"GET\",status=\"200\"} 3"), "{metrics}");
    assert!(metrics.contains("\nhlsmark_open_connections "), "{metrics}");
}

#[test]
fn store_outage_gives_503_on_marker_routes_while_video_keeps_playing() {
    let mut redis = hlsmark_testkit::RedisServer::start();
    let s = TestServer::start_with(Some(redis.url()), true, Some(crate::common::TOKEN));
    let playlist = s.get("/hls/live/index.m3u8");
    assert_eq!(playlist.status, 200);
    assert_eq!(s.get("/markers").status, 200);

    redis.kill();
    let r = s.get("/markers");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "store_unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    let p = s.post_marker(&json!({"label": "x", "hls": 1}));
    assert_eq!(p.status, 503);
    assert_eq!(s.get("/readyz").status, 503);
    // Video keeps being served: segments from disk, the last rendered playlist from memory.
    assert_eq!(s.get("/hls/live/e0-00000001.m4s").status, 200);
    let again = s.get("/hls/live/index.m3u8");
    assert_eq!(again.status, 200);
    assert_eq!(again.body, playlist.body);
    assert!(
        s.get("/metrics")
            .text()
            .contains("hlsmark_store_errors_total ")
    );

    // The store comes back (same port, empty): the API recovers by itself.
    redis.restart();
    let mut ok = false;
    for _ in 0..50 {
        if s.get("/readyz").status == 200 {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "readyz did not recover");
}

#[test]
fn the_built_page_and_its_assets_are_served() {
    let s = TestServer::start_with(None, false, None);
    // The config points at <data>/no-frontend: build a tiny "dist" there while the server runs.
    let dist = s.data_dir().join("no-frontend");
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><script src=\"/assets/app-1.js\"></script>",
    )
    .unwrap();
    std::fs::write(dist.join("assets/app-1.js"), "console.log(1)").unwrap();
    let page = s.get("/");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().contains("/assets/app-1.js"));
    let js = s.get("/assets/app-1.js");
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type").unwrap().contains("javascript"),
        "{js:?}"
    );
    assert_eq!(js.text(), "console.log(1)");
    assert_eq!(s.get("/assets/app-2.js").error_code(), "not_found");
}

fn bulk_marker(n: u128, hls_ms: i64, duration_ms: i64) -> hlsmark_store::Marker {
    let hls = hlsmark_clock::HlsTime(hls_ms * 90);
    hlsmark_store::Marker {
        id: uuid::Uuid::from_u128(n),
        stream: hlsmark_store::StreamName::live(),
        label: format!("bulk {n}"),
        kind: "event".into(),
        gen_time: hlsmark_clock::GenTime(hls.ticks()),
        hls,
        utc: crate::common::anchor() + hlsmark_clock::Duration90k(hls.ticks()),
        duration: hlsmark_clock::Duration90k(duration_ms * 90),
        severity: Default::default(),
        color: None,
        tags: Vec::new(),
        data: None,
        created_at: crate::common::anchor(),
    }
}

fn dateranges(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("#EXT-X-DATERANGE:"))
        .map(|l| {
            l.split("ID=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Issue 18 row 6: 2,500 markers in the ten minutes before the window used to fill the old
/// "first 2,000 since the lookback" query, and the playlists carried no date range at all. The
/// markers overlapping the window are listed however many came before.
#[test]
fn markers_overlapping_the_window_are_listed_behind_thousands_of_older_ones() {
    let s = TestServer::start();
    let mut ms: Vec<_> = (0..2_500u128)
        .map(|i| bulk_marker(10_000 + i, -600_000 + i64::try_from(i).unwrap() * 239, 100))
        .collect();
    // Started before the window, still running into it.
    ms.push(bulk_marker(1, -5_000, 10_000));
    for (n, at) in [(2u128, 1_000), (3, 4_000), (4, 8_000)] {
        ms.push(bulk_marker(n, at, 500));
    }
    s.rt.block_on(s.store.insert_markers(&ms)).unwrap();
    let want: Vec<String> = (1..=4u128)
        .map(|n| uuid::Uuid::from_u128(n).to_string())
        .collect();
    let live = s.get("/hls/live/index.m3u8").text();
    assert_eq!(dateranges(&live), want, "{live}");
    assert!(!live.contains("# hlsmark:"), "not capped: {live}");
    let vod = s.get("/hls/live/vod.m3u8?from=0&to=9").text();
    assert_eq!(dateranges(&vod), want, "{vod}");
}

/// More overlapping markers than the cap: the newest `MAX_DATERANGES` are listed, in time
/// order, and a comment line says the playlist is capped.
#[test]
fn a_capped_playlist_keeps_the_newest_markers_and_says_so() {
    let s = TestServer::start();
    // `state::MAX_DATERANGES` (documented in design/api.md).
    let cap = 2_000;
    let total = cap + 150;
    let ms: Vec<_> = (0..total)
        .map(|i| {
            let i = i64::try_from(i).unwrap();
            bulk_marker(100_000 + u128::try_from(i).unwrap(), i * 4, 0)
        })
        .collect();
    s.rt.block_on(s.store.insert_markers(&ms)).unwrap();
    let live = s.get("/hls/live/index.m3u8").text();
    let listed = dateranges(&live);
    assert_eq!(listed.len(), cap);
    let newest: Vec<String> = ms[total - cap..].iter().map(|m| m.id.to_string()).collect();
    assert_eq!(listed, newest);
    assert!(
        live.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("# hlsmark: more markers overlap this playlist")),
        "{}",
        &live[..300]
    );
}
