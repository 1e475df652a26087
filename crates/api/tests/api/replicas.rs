//! Two `hlsmark serve` processes on one redis-server and one segment directory answer the same
//! playlists and markers, and a marker written through one is seen (and pushed) by the other.

use std::sync::Arc;

use serde_json::json;

use crate::common::{ServeProcess, Sse, TOKEN, publish_fixture, request};

#[test]
fn two_api_processes_on_one_redis_give_identical_answers() {
    let redis = hlsmark_testkit::RedisServer::start();
    let data = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store: Arc<dyn hlsmark_store::Store> =
            hlsmark_store::open(&redis.url(), "replicas").await.unwrap();
        publish_fixture(&store, data.path()).await;
    });
    let dir = data.path().to_str().unwrap();
    let url = redis.url();
    let env = [
        ("HLSMARK_STORE", url.as_str()),
        ("HLSMARK_STORE_PREFIX", "replicas"),
        ("HLSMARK_DATA_DIR", dir),
        ("HLSMARK_TOKEN", TOKEN),
        ("HLSMARK_WORKERS", "1"),
        // Ask the store on every request, so the answers must be identical right after a write.
        ("HLSMARK_REVALIDATE", "0s"),
    ];
    let mut a = ServeProcess::start(&[], &env);
    let mut b = ServeProcess::start(&["--live-window", "30"], &env);

    let mut feed_b = Sse::connect(b.addr, "/markers/live");
    let auth = format!("Bearer {TOKEN}");
    let posted = request(
        a.addr,
        "POST",
        "/markers",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        json!({"label": "from A", "utc": "2026-11-24T07:00:03.5Z", "duration": 2})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(posted.status, 201, "{}", posted.text());
    let mut posted = posted.json();
    // Only the POST answer says which frame it landed on.
    posted.as_object_mut().unwrap().remove("frame");
    assert_eq!(
        feed_b.next_marker(),
        posted,
        "B pushes a marker written through A"
    );

    for path in [
        "/hls/live/index.m3u8",
        "/hls/live/vod.m3u8?from=2&to=7",
        "/markers",
        "/markers?from=2026-11-24T07:00:00Z&seq=3",
        &format!("/markers/{}", posted["id"].as_str().unwrap()),
        "/timeline",
        "/hls/live/e1-00000007.m4s",
    ] {
        let (ra, rb) = (
            request(a.addr, "GET", path, &[], b""),
            request(b.addr, "GET", path, &[], b""),
        );
        assert_eq!(ra.status, 200, "{path}: {}", ra.text());
        assert_eq!(ra.body, rb.body, "{path} differs between the replicas");
    }
    assert!(
        request(b.addr, "GET", "/hls/live/index.m3u8", &[], b"")
            .text()
            .contains(posted["id"].as_str().unwrap())
    );

    // Both stop gracefully with exit status 0.
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}
