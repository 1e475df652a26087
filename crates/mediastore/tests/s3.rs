//! The S3 store against a real Garage (testkit): put/get (whole and ranged)/list/delete, and the
//! one-line start-up errors (missing bucket, refused credentials, no server). Endpoint, region and
//! key are passed in the spec (the process environment is shared by parallel tests).

use bytes::Bytes;
use hlsmark_mediastore::{Credentials, MediaSpec, MediaStore, S3, S3Spec};
use hlsmark_testkit::Garage;
use hlsmark_testkit::s3::{KEY_ID, REGION, SECRET};

fn spec(g: &Garage, bucket: &str, prefix: &str) -> S3Spec {
    S3Spec {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        endpoint: Some(g.endpoint()),
        region: Some(REGION.to_owned()),
        credentials: Some(Credentials {
            key_id: KEY_ID.to_owned(),
            secret: SECRET.to_owned(),
        }),
    }
}

#[tokio::test]
async fn garage_put_get_range_list_delete() {
    let g = Garage::start();
    let s3 = S3::open(&spec(&g, g.bucket(), "pfx/a")).await.unwrap();
    let key = "live/e0-00000001.m4s";
    s3.put(
        key,
        vec![Bytes::from_static(b"moof"), Bytes::from(vec![7u8; 300_000])],
    )
    .await
    .unwrap();
    s3.put("live/e0-init.mp4", vec![Bytes::from_static(b"init")])
        .await
        .unwrap();
    s3.put("other/e0-init.mp4", vec![Bytes::from_static(b"x")])
        .await
        .unwrap();
    let o = s3.get(key, None).await.unwrap();
    assert_eq!(o.size, 300_004);
    assert_eq!(&o.bytes[..4], b"moof");
    assert!(o.bytes[4..].iter().all(|&b| b == 7));
    assert!(o.etag.is_some() && o.last_modified.is_some());
    let r = s3.get(key, Some(2..6)).await.unwrap();
    assert_eq!((&r.bytes[..], r.size), (&b"of\x07\x07"[..], 300_004));
    let mut keys = s3.list("live/").await.unwrap();
    keys.sort();
    assert_eq!(keys, vec!["live/e0-00000001.m4s", "live/e0-init.mp4"]);
    assert_eq!(s3.list("live/e0-0").await.unwrap(), vec![key]);
    // Under the prefix: the object's full name in the bucket.
    let whole = S3::open(&spec(&g, g.bucket(), "")).await.unwrap();
    assert_eq!(
        whole.get(&format!("pfx/a/{key}"), None).await.unwrap().size,
        300_004
    );
    let gone = vec![key.to_owned(), "live/e9-00000009.m4s".to_owned()];
    assert_eq!(s3.delete_many(&gone).await.unwrap(), 2);
    assert!(s3.get(key, None).await.unwrap_err().is_not_found());
    assert_eq!(s3.list("live/").await.unwrap(), vec!["live/e0-init.mp4"]);
    assert!(s3.get("../x", None).await.is_err());
}

#[tokio::test]
async fn garage_start_errors_are_one_line_without_secrets() {
    let g = Garage::start();
    let e = S3::open(&spec(&g, "no-such-bucket", "p"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no-such-bucket") && e.contains("bucket not found") && !e.contains('\n'),
        "{e}"
    );
    assert!(!e.contains(SECRET), "{e}");
    // A secret the server refuses (printed nowhere).
    let mut wrong = spec(&g, g.bucket(), "p");
    wrong.credentials = Some(Credentials {
        key_id: KEY_ID.to_owned(),
        secret: "f".repeat(64),
    });
    let e = S3::open(&wrong).await.unwrap_err().to_string();
    assert!(
        e.contains("credentials refused") && !e.contains("ffff"),
        "{e}"
    );
    // A server that is not there.
    let mut bad = spec(&g, g.bucket(), "p");
    bad.endpoint = Some(format!("http://127.0.0.1:{}", hlsmark_testkit::free_port()));
    let e = S3::open(&bad).await.unwrap_err().to_string();
    assert!(
        !e.contains('\n') && e.contains("s3://media/p") && e.contains("cannot reach"),
        "{e}"
    );
    // The spec parser and the store agree on what a bucket URL is.
    assert!(matches!(
        MediaSpec::parse(&g.media_url("p"), Some(&g.endpoint()), Some(REGION)),
        Ok(MediaSpec::S3(_))
    ));
}
