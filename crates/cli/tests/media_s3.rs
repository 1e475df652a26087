//! Media in S3-compatible object storage, end to end against a real Garage (testkit) and a real
//! redis-server: `hlsmark run --media s3://...` with the generator publishes init sections,
//! parts and segments as objects (nothing in the local directory), the API serves them byte for
//! byte as they are in the bucket, retention deletes the old objects, a stop deletes the parts,
//! and a second node (`hlsmark serve`, an empty data directory) serves the same stream from the
//! bucket (playlist, segments, clips, thumbnails); with `--media-public-url` its playlists point
//! segments and init sections there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hlsmark_mediastore::{Credentials, MediaStore, S3, S3Spec};
use hlsmark_testkit::s3::{KEY_ID, REGION, SECRET};
use hlsmark_testkit::{Garage, Hlsmark, RedisServer, free_port, http, wait_for_port};

const PREFIX: &str = "it";

fn bucket(g: &Garage) -> S3 {
    let spec = S3Spec {
        bucket: g.bucket().to_owned(),
        prefix: PREFIX.to_owned(),
        endpoint: Some(g.endpoint()),
        region: Some(REGION.to_owned()),
        credentials: Some(Credentials {
            key_id: KEY_ID.to_owned(),
            secret: SECRET.to_owned(),
        }),
    };
    rt().block_on(S3::open(&spec)).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The media flags and AWS variables of a node on `g` (credentials only in the environment).
fn media_args(g: &Garage) -> Vec<String> {
    vec![
        "--media".into(),
        g.media_url(PREFIX),
        "--s3-endpoint".into(),
        g.endpoint(),
        "--s3-region".into(),
        REGION.into(),
    ]
}

fn aws_env() -> [(&'static str, &'static str); 2] {
    [
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ]
}

/// The URIs of a playlist: segment lines, `EXT-X-MAP` and `EXT-X-PART` URIs (query removed).
fn uris(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let strip = |u: &str| u.split('?').next().unwrap_or(u).to_owned();
    let attr = |l: &str| {
        l.split("URI=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(strip)
    };
    let mut segs = Vec::new();
    let mut maps = Vec::new();
    let mut parts = Vec::new();
    for l in text.lines() {
        if l.starts_with("#EXT-X-MAP:") {
            maps.extend(attr(l));
        } else if l.starts_with("#EXT-X-PART:") {
            parts.extend(attr(l));
        } else if !l.starts_with('#') && !l.trim().is_empty() {
            segs.push(strip(l));
        }
    }
    (segs, maps, parts)
}

fn media_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|f| f.file_name().to_str().map(str::to_owned))
                .filter(|n| n.ends_with(".m4s") || n.ends_with(".mp4"))
                .collect()
        })
        .unwrap_or_default()
}

/// A running `hlsmark serve`, killed on drop.
struct Serve {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path, redis: &RedisServer, extra: &[String]) -> Serve {
    std::fs::create_dir_all(data).unwrap();
    let port = free_port();
    let log = data.with_extension("serve.log");
    let f = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_hlsmark"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .envs(aws_env())
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .args(["--store", &redis.url()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    let mut s = Serve { child, port, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !wait_for_port(port, Duration::from_millis(200)) {
        let log = std::fs::read_to_string(&s.log).unwrap_or_default();
        assert!(
            s.child.try_wait().unwrap().is_none() && Instant::now() < deadline,
            "hlsmark serve did not start:\n{log}"
        );
    }
    s
}

#[test]
fn s3_media_round_trip_retention_and_a_second_node() {
    let g = Garage::start();
    let redis = RedisServer::start();
    let s3 = bucket(&g);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ingest");
    let mut args: Vec<String> = vec![
        "--store".into(),
        redis.url(),
        "--width".into(),
        "320".into(),
        "--height".into(),
        "240".into(),
        "--fps".into(),
        "10".into(),
        "--block-size".into(),
        "40".into(),
        "--live-window".into(),
        "3".into(),
        "--retention".into(),
        "4s".into(),
    ];
    args.extend(media_args(&g));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let h = Hlsmark::start(
        Path::new(env!("CARGO_BIN_EXE_hlsmark")),
        &data,
        &args,
        &aws_env(),
    );

    // A playlist of three segments, every one of them fetched through the API and compared with
    // the object in the bucket.
    let text = h.wait_until("3 segments listed", Duration::from_secs(60), |h| {
        let r = h.get("/hls/live/index.m3u8");
        let t = r.text();
        (r.status == 200 && uris(&t).0.len() >= 3).then_some(t)
    });
    let (segs, maps, parts) = uris(&text);
    assert!(!maps.is_empty(), "{text}");
    for f in segs.iter().chain(&maps) {
        let r = h.get(&format!("/hls/live/{f}"));
        assert_eq!(r.status, 200, "{f}: {}", r.text());
        let obj = rt().block_on(s3.get(&format!("live/{f}"), None)).unwrap();
        assert_eq!(r.body, obj.bytes.to_vec(), "{f}: API bytes = bucket bytes");
        assert!(!r.body.is_empty());
    }
    // LL-HLS parts live in the bucket too, and are served from it.
    assert!(!parts.is_empty(), "{text}");
    let p = parts.last().unwrap();
    let r = h.get(&format!("/hls/live/{p}"));
    assert_eq!(r.status, 200, "{p}");
    // A byte range of a segment: the right bytes with 206. The newest listed one: the oldest
    // may be aged out by the short retention between the answer and the bucket's read.
    let seg = segs.last().unwrap();
    let r = http::request(
        "GET",
        h.port(),
        &format!("/hls/live/{seg}"),
        &[("Range", "bytes=4-11")],
        b"",
    )
    .unwrap();
    let obj = rt().block_on(s3.get(&format!("live/{seg}"), None)).unwrap();
    assert_eq!((r.status, &r.body[..]), (206, &obj.bytes[4..12]));
    // A name that is not there: 404 JSON, not a 5xx.
    let r = h.get("/hls/live/e0-99999999.m4s");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("segment_not_found"));
    // Nothing of the media went to the local stream directory.
    let local = media_files(&data.join("hls/live"));
    assert!(local.is_empty(), "local media files: {local:?}");

    // A second node with no local media serves the same stream from the bucket, and with
    // --media-public-url points players at it for segments and init sections.
    let public = format!("{}/{}/{PREFIX}", g.endpoint(), g.bucket());
    let mut extra = media_args(&g);
    extra.extend(["--media-public-url".into(), public.clone()]);
    let node_b = serve(&tmp.path().join("api-b"), &redis, &extra);
    let r = http::get(node_b.port, "/hls/live/index.m3u8").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let text_b = r.text();
    let (segs_b, maps_b, parts_b) = uris(&text_b);
    assert!(!segs_b.is_empty() && !maps_b.is_empty(), "{text_b}");
    for u in segs_b.iter().chain(&maps_b) {
        let file = u
            .strip_prefix(&format!("{public}/live/"))
            .unwrap_or_else(|| panic!("{u} is not under {public}/live/"));
        let r = http::get(node_b.port, &format!("/hls/live/{file}")).unwrap();
        assert_eq!(r.status, 200, "{file} on node B");
        let obj = rt()
            .block_on(s3.get(&format!("live/{file}"), None))
            .unwrap();
        assert_eq!(r.body, obj.bytes.to_vec(), "{file} on node B");
    }
    // Parts (and the preload hint) stay on the API: it holds a hinted part until it is written.
    assert!(
        parts_b.iter().all(|p| !p.contains("://")),
        "parts point at the API: {text_b}"
    );
    assert!(media_files(&tmp.path().join("api-b/hls/live")).is_empty());

    // Clips and thumbnails on node B (no local media at all) read the objects too.
    let t: serde_json::Value = serde_json::from_slice(
        &http::get(node_b.port, "/timeline?stream=live")
            .unwrap()
            .body,
    )
    .unwrap();
    let end = t["window"]["end"].as_f64().expect("window end");
    let clip = http::get(
        node_b.port,
        &format!("/clips/live.mp4?from={:.3}&to={:.3}", end - 2.0, end - 1.0),
    )
    .unwrap();
    assert_eq!(clip.status, 200, "{}", clip.text());
    assert_eq!(&clip.body[4..8], b"ftyp", "an MP4");
    let thumb = http::get(
        node_b.port,
        &format!("/thumbnail/live.jpg?t={:.3}&width=160", end - 0.5),
    )
    .unwrap();
    assert_eq!(thumb.status, 200, "{}", thumb.text());
    assert_eq!(&thumb.body[..2], &[0xff, 0xd8], "a JPEG");

    // Retention (4 s, live window 3): the first segment's object leaves the bucket.
    let first = segs.iter().min().cloned().expect("a first segment listed");
    h.wait_until(
        "retention to delete the oldest segment object",
        Duration::from_secs(60),
        |_| {
            let keys = rt().block_on(s3.list("live/")).unwrap();
            (!keys.contains(&format!("live/{first}"))).then_some(())
        },
    );
    // The bucket holds a bounded number of segments, not the whole run.
    let keys = rt().block_on(s3.list("live/")).unwrap();
    let seg_objects = keys
        .iter()
        .filter(|k| k.ends_with(".m4s") && !k.contains(".p"))
        .count();
    assert!(seg_objects <= 12, "{seg_objects} segment objects: {keys:?}");

    // A stop clears the parts (objects too); segments and init stay.
    assert!(h.stop(Duration::from_secs(20)).is_some_and(|s| s.success()));
    let keys = rt().block_on(s3.list("live/")).unwrap();
    assert!(
        !keys.iter().any(|k| k.contains(".p")),
        "parts left after stop: {keys:?}"
    );
    assert!(keys.iter().any(|k| k.ends_with("-init.mp4")), "{keys:?}");
}

#[test]
fn s3_media_start_errors_are_one_line() {
    let g = Garage::start();
    let tmp = tempfile::tempdir().unwrap();
    let run = |media: &str, endpoint: &str, secret: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_hlsmark"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--data-dir")
            .arg(tmp.path())
            .args(["--media", media, "--s3-endpoint", endpoint])
            .args(["--s3-region", REGION])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {err}");
        assert!(!err.contains(SECRET) && !err.contains("panicked"), "{err}");
        lines[0].to_owned()
    };
    let ep = g.endpoint();
    assert!(run("s3://nope-bucket/x", &ep, SECRET).contains("bucket not found"));
    assert!(run("s3://media/x", &ep, &"e".repeat(64)).contains("credentials refused"));
    assert!(run("s3://Bad_Bucket/x", &ep, SECRET).contains("bad bucket name"));
    assert!(run("gs://media/x", &ep, SECRET).contains("unsupported scheme"));
    assert!(run("s3://media/x", "ftp://127.0.0.1:1", SECRET).contains("--s3-endpoint"));
}
