//! The API on a real source's timeline: segments cut at the source's keyframes (variable
//! lengths), frame tables with a variable frame rate and a dropped frame, UTC slewed per segment,
//! source PTS, a restart; and `/streams` with every state. Records are published into a real
//! store by hand, as the ingest would.

use hlsmark_clock::{
    Duration90k, Epoch, FrameRate, FrameTable, GenTime, HlsTime, Segment, SeqNo, UtcTime,
};
use hlsmark_store::{StreamName, StreamState, StreamStatus};
use serde_json::json;

use crate::common::{D, TOKEN, TestServer};

/// Source PTS of epoch 0's first frame (10 s) and of epoch 1's (50 s: the source restarted).
const PTS0: i64 = 10 * D;
const PTS1: i64 = 50 * D;

/// Segment 0: 1.5 s at 30 fps with frame 3 (9000) dropped. Segment 1: 2.2 s at 23.976 fps
/// (3753/3754-tick frames). Segment 2: 0.9 s at 29.97 fps. Then the source restarts 5.3 s of
/// wall time later: epoch 1, segment 3: 1 s at 30 fps.
fn frames(seq: SeqNo) -> Vec<i64> {
    match seq {
        0 => (0..45).filter(|&n| n != 3).map(|n| n * 3_000).collect(),
        1 => {
            let film = FrameRate::new(24_000, 1_001).unwrap();
            (0..)
                .map(|n| film.frame_to_ticks(n).ticks())
                .take_while(|&t| t < 198_000)
                .collect()
        }
        2 => (0..30).map(|n| n * 3_003).collect(),
        _ => (0..30).map(|n| n * 3_000).collect(),
    }
}

/// (seq, epoch, hls start, duration, UTC start offset from the anchor). UTC is slewed: +68
/// ticks after segment 0 (500 ppm of 1.5 s), +99 after segment 1, so PDT != the epoch formula.
const SEGS: [(SeqNo, u32, i64, i64, i64); 4] = [
    (0, 0, 0, 135_000, 0),
    (1, 0, 135_000, 198_000, 135_068),
    (2, 0, 333_000, 90_000, 333_167),
    (3, 1, 423_000, 90_000, 10 * D),
];

struct Fixture {
    s: TestServer,
    anchor: UtcTime,
}

impl Fixture {
    fn utc(&self, offset: i64) -> UtcTime {
        self.anchor + Duration90k(offset)
    }
}

fn publish() -> Fixture {
    let s = TestServer::start_with(None, false, Some(TOKEN));
    // 20 s ago, to the millisecond: the restart's segment is 10 s old, so "now" is near the edge.
    let anchor = UtcTime((UtcTime::now().ticks() / 90 - 20_000) * 90);
    let live = StreamName::live();
    let fps = FrameRate::integer(30);
    let e0 = Epoch {
        index: 0,
        first_seq: 0,
        hls_start: HlsTime(0),
        gen_start: GenTime(0),
        utc_start: anchor,
        fps,
        segment_frames: 60,
        hls_end: Some(HlsTime(423_000)),
        pts_start: Some(PTS0),
    };
    let e1 = Epoch {
        index: 1,
        first_seq: 3,
        hls_start: HlsTime(423_000),
        gen_start: GenTime(423_000),
        utc_start: anchor + Duration90k(10 * D),
        hls_end: None,
        pts_start: Some(PTS1),
        ..e0
    };
    s.rt.block_on(async {
        s.store.put_epoch(&live, &e0).await.unwrap();
        s.store.put_epoch(&live, &e1).await.unwrap();
        for (seq, epoch, hls, dur, utc) in SEGS {
            let start = HlsTime(hls);
            let seg = Segment {
                seq,
                epoch,
                hls_start: start,
                duration: Duration90k(dur),
                utc_start: anchor + Duration90k(utc),
                file: format!("e{epoch}-{seq:08}.m4s"),
                init_file: Some(format!("e{epoch}-init.mp4")),
                frames: FrameTable::new(
                    start,
                    frames(seq).into_iter().map(|o| start + Duration90k(o)),
                )
                .unwrap(),
            };
            s.store.append_segment(&live, &seg).await.unwrap();
        }
    });
    Fixture { s, anchor }
}

fn ticks(v: &serde_json::Value) -> i64 {
    v["hls_90k"].as_i64().unwrap()
}

fn post_ok(s: &TestServer, body: serde_json::Value) -> serde_json::Value {
    let r = s.post_marker(&body);
    assert_eq!(r.status, 201, "{body}: {}", r.text());
    r.json()
}

#[test]
fn vfr_frames_snap_through_the_frame_table() {
    let f = publish();
    // Between frames 1 (3000) and 2 (6000): the earlier one.
    let m = post_ok(&f.s, json!({"label": "between", "hls": 5_999.0 / 90_000.0}));
    assert_eq!(ticks(&m), 3_000);
    assert_eq!(
        m["frame"],
        json!({"seq": 0, "index": 1, "hls": 3_000.0 / 90_000.0, "hls_90k": 3_000})
    );
    // Frame 3 (9000) was dropped: its slot shows frame 2 (6000) until frame 4 (12000).
    let m = post_ok(
        &f.s,
        json!({"label": "dropped", "hls": 10_000.0 / 90_000.0}),
    );
    assert_eq!(ticks(&m), 6_000);
    assert_eq!(m["frame"]["index"], 2);
    let m = post_ok(
        &f.s,
        json!({"label": "after drop", "hls": 12_000.0 / 90_000.0}),
    );
    assert_eq!((ticks(&m), m["frame"]["index"].clone()), (12_000, json!(3)));
    // 23.976 fps in segment 1: 0.1 s in is frame 2 (7508), not a 30 fps frame.
    let m = post_ok(&f.s, json!({"label": "film", "hls": 1.5 + 0.1}));
    assert_eq!(ticks(&m), 135_000 + 7_508);
    assert_eq!(m["frame"]["seq"], 1);
    assert_eq!(m["frame"]["index"], 2);
    // The seq is the segment that holds the marker (the 60-frame nominal segment would say 0).
    assert_eq!(m["seq"], 1);
    // GEN is the HLS clock for a real source.
    assert_eq!(m["gen"], m["hls"]);
    // CLIENT of a player that joined at seq 1 starts at segment 1's real start (1.5 s).
    let page = f.s.get("/markers?seq=1&from=1.5&to=1.7").json();
    let client = page["markers"][0]["client"].as_f64().unwrap();
    assert!((client - 7_508.0 / 90_000.0).abs() < 1e-9, "{page}");
    // Segment 2 (29.97 fps): frame 10 is at 30030.
    let m = post_ok(
        &f.s,
        json!({"label": "ntsc", "hls": (333_000.0 + 30_031.0) / 90_000.0}),
    );
    assert_eq!(
        (ticks(&m), m["frame"]["index"].clone()),
        (363_030, json!(10))
    );
}

#[test]
fn utc_is_per_segment_with_slew() {
    let f = publish();
    // PDT of every segment is its own (slewed) utc_start, across the restart.
    let playlist = f.s.get("/hls/live/index.m3u8");
    assert_eq!(playlist.status, 200, "{}", playlist.text());
    let pdts: Vec<String> = playlist
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
        .map(str::to_owned)
        .collect();
    let want: Vec<String> = SEGS
        .iter()
        .map(|s| f.utc(s.4).to_rfc3339_millis())
        .collect();
    assert_eq!(pdts, want);
    assert!(
        playlist.text().contains("#EXTINF:2.200,"),
        "{}",
        playlist.text()
    );

    // A marker by UTC lands on the frame showing then in segment 1: 0.1 s after its PDT is
    // frame 2 (7508 ticks in), whose own UTC is PDT + 7508 ticks.
    let u = f.utc(135_068 + 9_000).to_rfc3339_millis();
    let m = post_ok(&f.s, json!({"label": "by utc", "utc": u}));
    assert_eq!(ticks(&m), 135_000 + 7_508, "{m}");
    assert_eq!(m["utc"], f.utc(135_068 + 7_508).to_rfc3339_millis());
    assert_eq!(m["frame"]["seq"], 1);
    // Its printed UTC posts back to the same frame.
    let again = post_ok(&f.s, json!({"label": "again", "utc": m["utc"]}));
    assert_eq!(ticks(&again), ticks(&m));
    // Segment 2's PDT is 167 ticks late against the epoch formula: 3.734 s of wall time is
    // still its frame 0 (the formula would say frame 1, at 3.33667 s of media).
    let u2 = f.utc(336_060).to_rfc3339_millis();
    let m2 = post_ok(&f.s, json!({"label": "seg 2", "utc": u2}));
    assert_eq!((ticks(&m2), m2["seq"].clone()), (333_000, json!(2)), "{m2}");
    assert_eq!(m2["frame"]["index"], 0);

    // While the source was down (after 4.7 s of wall time, before 10 s): no video, and range
    // bounds in that time are where the video resumed.
    let down = f.utc(6 * D).to_rfc3339_millis();
    let r = f.s.post_marker(&json!({"label": "down", "utc": down}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "time_out_of_range");
    let page =
        f.s.get(&format!(
            "/markers?from={down}&to={}",
            f.utc(11 * D).to_rfc3339_millis()
        ))
        .json();
    assert!(page["markers"].as_array().unwrap().is_empty(), "{page}");
    let page =
        f.s.get(&format!(
            "/markers?from={}&to={down}",
            f.utc(135_068).to_rfc3339_millis()
        ))
        .json();
    assert_eq!(page["markers"].as_array().unwrap().len(), 3, "{page}");
}

#[test]
fn pts_markers_map_through_the_epoch_and_snap() {
    let f = publish();
    // 11.6 s of source PTS: epoch 1 began at PTS 50 s, so only epoch 0 holds it (HLS 1.6 s).
    let m = post_ok(&f.s, json!({"label": "pts", "pts": 11.6}));
    assert_eq!(ticks(&m), 135_000 + 7_508);
    assert_eq!(m["frame"]["seq"], 1);
    // PTS 50.5 s: the newest epoch holding it is epoch 1 (HLS 4.7 s + 0.5 s = frame 15 of seq 3).
    let m = post_ok(&f.s, json!({"label": "pts newest", "pts": 50.5}));
    assert_eq!(ticks(&m), 423_000 + 45_000);
    assert_eq!(
        m["frame"],
        json!({"seq": 3, "index": 15, "hls": 468_000.0 / 90_000.0, "hls_90k": 468_000})
    );
    // An explicit epoch.
    let m = post_ok(&f.s, json!({"label": "pts e0", "pts": 10.0, "epoch": 0}));
    assert_eq!(ticks(&m), 0);

    for (body, status, code) in [
        // Epoch 0 ended at 4.7 s of media: 50.5 s of PTS is not in it.
        (
            json!({"label": "x", "pts": 50.5, "epoch": 0}),
            400,
            "time_out_of_range",
        ),
        // Before every epoch's first frame.
        (json!({"label": "x", "pts": 9.0}), 400, "time_out_of_range"),
        (
            json!({"label": "x", "pts": 1.0, "epoch": 7}),
            400,
            "invalid_parameter",
        ),
        (
            json!({"label": "x", "hls": 1.0, "epoch": 0}),
            400,
            "invalid_parameter",
        ),
        (
            json!({"label": "x", "pts": 1.0, "hls": 1.0}),
            400,
            "invalid_time",
        ),
        (json!({"label": "x", "pts": "soon"}), 400, "invalid_json"),
        (json!({"label": "x", "pts": 1e300}), 400, "invalid_time"),
        (
            json!({"label": "x", "pts": 11.0, "epoch": -1}),
            400,
            "invalid_json",
        ),
    ] {
        let r = f.s.post_marker(&body);
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert_eq!(r.error_code(), code, "{body}");
    }
}

#[test]
fn pts_on_a_stream_without_source_pts_is_refused() {
    // The generator fixture: no epoch has a source PTS.
    let s = TestServer::start();
    let r = s.post_marker(&json!({"label": "x", "pts": 1.0}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "invalid_time");
    assert!(
        r.text().contains("no source presentation times"),
        "{}",
        r.text()
    );
    let r = s.post_marker(&json!({"label": "x", "pts": 1.0, "epoch": 0}));
    assert_eq!(r.error_code(), "invalid_time");
}

#[test]
fn join_sequences_follow_the_index() {
    let f = publish();
    post_ok(&f.s, json!({"label": "a", "hls": 4.8}));
    assert_eq!(f.s.get("/markers?seq=2").status, 200);
    // Retention drops segment 0: a real source's start of seq 0 is no longer known.
    f.s.rt
        .block_on(
            f.s.store
                .apply_retention(&StreamName::live(), HlsTime(135_000), None),
        )
        .unwrap();
    // The server reads the store version at most every --revalidate (20 ms).
    std::thread::sleep(std::time::Duration::from_millis(60));
    let r = f.s.get("/markers?seq=0");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "invalid_parameter");
    assert!(r.text().contains("retained: 1 to 3"), "{}", r.text());
    let ok = f.s.get("/markers?seq=1").json();
    let client = ok["markers"][0]["client"].as_f64().unwrap();
    assert!((client - (4.8 - 1.5)).abs() < 1e-9, "{ok}");
}

fn status(state: StreamState, updated_ago_secs: i64, restarts: u64) -> StreamStatus {
    let now = UtcTime::now();
    StreamStatus {
        state,
        source: "rtsp://user:***@cam.local/1".into(),
        kind: "rtsp".into(),
        since_90k: now - Duration90k::from_secs(60),
        updated_90k: now - Duration90k::from_secs(updated_ago_secs),
        last_error: None,
        restarts,
        epoch: Some(1),
        restream: Vec::new(),
    }
}

#[test]
fn streams_list_states_staleness_and_metrics() {
    let f = publish();
    let (live, cam, gen_only) = (
        StreamName::live(),
        StreamName::new("cam2").unwrap(),
        StreamName::new("a-gen").unwrap(),
    );
    let retrying = StreamStatus {
        last_error: Some("Connection refused".into()),
        ..status(StreamState::Retrying, 20, 4)
    };
    f.s.rt.block_on(async {
        f.s.store
            .put_status(&live, &status(StreamState::Live, 1, 0))
            .await
            .unwrap();
        f.s.store.put_status(&cam, &retrying).await.unwrap();
        // A stream with segments but no status.
        let e = Epoch {
            index: 0,
            first_seq: 0,
            hls_start: HlsTime(0),
            gen_start: GenTime(0),
            utc_start: f.anchor,
            fps: FrameRate::integer(30),
            segment_frames: 30,
            hls_end: None,
            pts_start: None,
        };
        f.s.store.put_epoch(&gen_only, &e).await.unwrap();
        let seg = Segment {
            seq: 0,
            epoch: 0,
            hls_start: HlsTime(0),
            duration: Duration90k(D),
            utc_start: f.anchor,
            file: "e0-00000000.m4s".into(),
            init_file: None,
            frames: Default::default(),
        };
        f.s.store.append_segment(&gen_only, &seg).await.unwrap();
    });
    let r = f.s.get("/streams");
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let streams = body["streams"].as_array().unwrap();
    let names: Vec<_> = streams
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a-gen", "cam2", "live"]);

    let g = &streams[0];
    assert_eq!(g["state"], serde_json::Value::Null);
    assert_eq!(g["kind"], serde_json::Value::Null);
    assert_eq!(g["stale"], false);
    assert_eq!(g["segments"], 1);
    assert_eq!(g["live_edge_90k"], D);
    assert_eq!(g["playlist"], "/hls/a-gen/index.m3u8");

    let c = &streams[1];
    assert_eq!(c["state"], "retrying");
    assert_eq!(c["stale"], true, "updated 20 s ago: {c}");
    assert_eq!(c["last_error"], "Connection refused");
    assert_eq!(c["restarts"], 4);
    assert_eq!(c["kind"], "rtsp");
    assert_eq!(c["source"], "rtsp://user:***@cam.local/1");
    assert_eq!(c["segments"], 0);
    assert_eq!(c["live_edge"], serde_json::Value::Null);
    assert_eq!(c["updated"], retrying.updated_90k.to_rfc3339_millis());

    let l = &streams[2];
    assert_eq!(l["state"], "live");
    assert_eq!(l["stale"], false);
    assert_eq!(l["segments"], 4);
    assert_eq!(l["live_edge_90k"], 513_000);
    assert_eq!(l["live_edge"], 513_000.0 / 90_000.0);
    assert_eq!(l["epoch"], 1);
    assert_eq!(l["last_error"], serde_json::Value::Null);
    let keys: Vec<_> = l.as_object().unwrap().keys().cloned().collect();
    for k in [
        "name",
        "kind",
        "source",
        "state",
        "since",
        "updated",
        "stale",
        "last_error",
        "restarts",
        "epoch",
        "live_edge",
        "live_edge_90k",
        "segments",
        "playlist",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} missing: {l}");
    }

    let metrics = f.s.get("/metrics").text();
    for line in [
        "hlsmark_stream_up{stream=\"live\"} 1\n",
        "hlsmark_stream_up{stream=\"cam2\"} 0\n",
        "hlsmark_stream_restarts_total{stream=\"cam2\"} 4\n",
        "hlsmark_stream_restarts_total{stream=\"live\"} 0\n",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(
        !metrics.contains("stream=\"a-gen\""),
        "no status, no series"
    );

    // A live stream whose ingest stopped reporting is not up.
    f.s.rt
        .block_on(
            f.s.store
                .put_status(&live, &status(StreamState::Live, 16, 0)),
        )
        .unwrap();
    assert!(
        f.s.get("/metrics")
            .text()
            .contains("hlsmark_stream_up{stream=\"live\"} 0\n")
    );
    assert_eq!(f.s.get("/streams").json()["streams"][2]["stale"], true);
}
