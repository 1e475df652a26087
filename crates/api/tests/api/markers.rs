//! Markers over HTTP: created by HLS, GEN or UTC time and snapped to the frame, read back in every
//! clock, idempotent by id, paged, deleted, and pushed live over SSE.

use serde_json::json;

use crate::common::{D, Sse, TOKEN, TestServer, request};

fn ticks(v: &serde_json::Value) -> i64 {
    v["hls_90k"].as_i64().unwrap()
}

#[test]
fn markers_round_trip_in_every_clock() {
    let s = TestServer::start();
    // HLS 2.345 s is inside frame 70 (2.3333 s): the marker snaps to that frame's first tick.
    let a = s.post_marker(
        &json!({"label": "by hls", "hls": 2.345, "duration": 0.5, "data": {"score": 1}}),
    );
    assert_eq!(a.status, 201, "{}", a.text());
    assert!(a.header("location").is_some());
    let a = a.json();
    assert_eq!(ticks(&a), 70 * 3_000);
    assert_eq!(a["seq"], 2);
    assert_eq!(a["kind"], "manual");
    assert_eq!(a["utc"], "2026-11-24T07:00:02.333Z");
    assert_eq!(a["duration_90k"], 45_000);
    assert_eq!(a["data"]["score"], 1);
    assert!((a["gen"].as_f64().unwrap() - 70.0 / 30.0).abs() < 1e-9);

    // GEN 8.0 s is in epoch 1 (GEN starts at 7.5 s there, HLS at 6 s): HLS 6.5 s, seq 6.
    let b = s.post_marker(&json!({"label": "by gen", "gen": 8.0, "kind": "detector.v2"}));
    assert_eq!(b.status, 201, "{}", b.text());
    let b = b.json();
    assert_eq!(ticks(&b), 6 * D + D / 2);
    assert_eq!(b["seq"], 6);
    assert_eq!(b["utc"], "2026-11-24T07:00:08.000Z");

    // UTC 07:00:09.010 is in epoch 1 at HLS 7.51 s -> frame 225 of the stream = 7.5 s.
    let c = s.post_marker(&json!({"label": "by utc", "utc": "2026-11-24T08:00:09.010+01:00"}));
    assert_eq!(c.status, 201, "{}", c.text());
    let c = c.json();
    assert_eq!(ticks(&c), 7 * D + D / 2);
    assert_eq!(c["gen"].as_f64().unwrap(), 9.0);
    assert_eq!(c["utc"], "2026-11-24T07:00:09.000Z");

    // Query by HLS seconds, by RFC 3339, with client times for a player that joined at seq 2.
    let all = s.get("/markers?from=0&to=100").json();
    let ids: Vec<_> = all["markers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, vec![a["id"].clone(), b["id"].clone(), c["id"].clone()]);
    assert_eq!(all["next_cursor"], serde_json::Value::Null);
    assert_eq!(all["stream"], "live");

    let by_utc = s
        .get("/markers?from=2026-11-24T07:00:08Z&to=2026-11-24T07:00:09.5Z")
        .json();
    let ids: Vec<_> = by_utc["markers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, vec![b["id"].clone(), c["id"].clone()]);

    let with_client = s.get("/markers?seq=2").json();
    let m = &with_client["markers"].as_array().unwrap();
    assert!((m[0]["client"].as_f64().unwrap() - (70.0 / 30.0 - 2.0)).abs() < 1e-9);
    // Across the discontinuity: 6.5 - 2 (no gap: epoch 0 ended exactly at 6 s).
    assert!((m[1]["client"].as_f64().unwrap() - 4.5).abs() < 1e-9);
    assert!(
        s.get("/markers").json()["markers"][0]
            .get("client")
            .is_none()
    );

    // Paging with the cursor visits every marker once.
    let mut seen = Vec::new();
    let mut path = "/markers?limit=1".to_owned();
    loop {
        let page = s.get(&path).json();
        for m in page["markers"].as_array().unwrap() {
            seen.push(m["id"].clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/markers?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3);

    // One marker; idempotent re-POST; conflicting re-POST; delete.
    let id = a["id"].as_str().unwrap();
    assert_eq!(s.get(&format!("/markers/{id}")).json(), a);
    let again = s.post_marker(
        &json!({"id": id, "label": "by hls", "hls": 2.34, "duration": 0.5, "data": {"score": 1}}),
    );
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json(), a);
    let conflict = s.post_marker(&json!({"id": id, "label": "other", "hls": 2.34}));
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.error_code(), "conflict");
    let auth = format!("Bearer {TOKEN}");
    let del = request(
        s.addr,
        "DELETE",
        &format!("/markers/{id}"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(del.status, 204);
    assert_eq!(s.get(&format!("/markers/{id}")).status, 404);
    let del = request(
        s.addr,
        "DELETE",
        &format!("/markers/{id}"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(del.error_code(), "marker_not_found");
}

#[test]
fn sse_delivers_a_posted_marker() {
    let s = TestServer::start();
    let mut feed = Sse::connect(s.addr, "/markers/live");
    let mut other = Sse::connect(s.addr, "/markers/live?stream=live");
    let posted = s
        .post_marker(&json!({"label": "live one", "hls": 3.0}))
        .json();
    let got = feed.next_marker();
    assert_eq!(got, posted);
    assert_eq!(other.next_marker()["id"], posted["id"]);
    let metrics = s.get("/metrics").text();
    assert!(metrics.contains("hlsmark_sse_clients 2\n"), "{metrics}");
}

#[test]
fn times_without_video_are_refused_and_ranges_skip_them() {
    let s = TestServer::start();
    // The fixture's epoch 0 ends at 07:00:06 (GEN 6 s); epoch 1 begins at 07:00:07.5 (GEN 7.5 s).
    for body in [
        json!({"label": "down", "utc": "2026-11-24T07:00:06.800Z"}),
        json!({"label": "down", "gen": 7.0}),
        json!({"label": "future", "hls": 1.0e7}),
        json!({"label": "future", "utc": "2100-01-01T00:00:00Z"}),
    ] {
        let r = s.post_marker(&body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.error_code(), "time_out_of_range", "{body}");
        assert!(
            !r.text().contains("/*"),
            "no internal formatting: {}",
            r.text()
        );
    }
    // A range bound while the stream was down is where the video resumed (HLS 6 s).
    let m = s.post_marker(&json!({"label": "after restart", "hls": 6.0}));
    assert_eq!(m.status, 201, "{}", m.text());
    let page = s
        .get("/markers?from=2026-11-24T07:00:06.5Z&to=2026-11-24T07:00:07.6Z")
        .json();
    assert_eq!(page["markers"].as_array().unwrap().len(), 1, "{page}");
    let empty = s
        .get("/markers?from=2026-11-24T07:00:06.5Z&to=2026-11-24T07:00:07.0Z")
        .json();
    assert_eq!(empty["markers"].as_array().unwrap().len(), 0, "{empty}");
}

#[test]
fn a_markers_printed_utc_posts_back_to_the_same_frame() {
    let s = TestServer::start();
    // Frame 70 starts at 2.3333... s, printed as .333: posting that UTC must land on frame 70.
    let a = s.post_marker(&json!({"label": "a", "hls": 2.345})).json();
    assert_eq!(ticks(&a), 70 * 3_000);
    let b = s
        .post_marker(&json!({"label": "b", "utc": a["utc"]}))
        .json();
    assert_eq!(ticks(&b), 70 * 3_000, "{b}");
    assert_eq!(b["utc"], a["utc"]);
}

#[test]
fn media_published_ahead_of_the_wall_clock_takes_markers() {
    use hlsmark_clock::{Duration90k, Epoch, FrameRate, GenTime, HlsTime, Segment, UtcTime};
    use hlsmark_store::StreamName;
    // An unpaced generator: 10 minutes of media published one second after the epoch began.
    let s = TestServer::start_with(None, false, Some(TOKEN));
    let live = StreamName::live();
    let e = Epoch {
        index: 0,
        first_seq: 0,
        hls_start: HlsTime(0),
        gen_start: GenTime(0),
        utc_start: UtcTime::now() - Duration90k(D),
        fps: FrameRate::integer(30),
        segment_frames: 30,
        hls_end: None,
    };
    s.rt.block_on(s.store.put_epoch(&live, &e)).unwrap();
    let last = Segment {
        seq: 599,
        epoch: 0,
        hls_start: HlsTime(599 * D),
        duration: Duration90k(D),
        utc_start: e.utc_start + Duration90k(599 * D),
        file: "e0-00000599.m4s".to_owned(),
        init_file: Some("e0-init.mp4".to_owned()),
    };
    s.rt.block_on(s.store.append_segment(&live, &last)).unwrap();
    let ok = s.post_marker(&json!({"label": "late in the media", "hls": 590.0}));
    assert_eq!(ok.status, 201, "{}", ok.text());
    let too_far = s.post_marker(&json!({"label": "beyond", "hls": 700.0}));
    assert_eq!(too_far.status, 400, "{}", too_far.text());
}
