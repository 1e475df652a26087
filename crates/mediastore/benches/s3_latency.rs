//! Segment and part latency through S3 against a real Garage on loopback (testkit): how long a
//! PUT takes until the object is readable (S3 is read-after-write consistent: readable when the
//! PUT returns), and a GET of it right after, for segment-sized (1 MB) and part-sized (64 KB)
//! objects. Prints p50/p99/max. Run: `cargo bench -p hlsmark-mediastore --bench s3_latency`
//! (needs garage: `./scripts/ensure-garage.sh`). A debug build of Garage is what the tests use;
//! figures are for this machine and that build, not for a production object store.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use hlsmark_mediastore::{Credentials, MediaStore, S3, S3Spec};
use hlsmark_testkit::Garage;
use hlsmark_testkit::s3::{KEY_ID, REGION, SECRET};

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

fn main() {
    let g = Garage::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s3 = S3::open(&S3Spec {
            bucket: g.bucket().to_owned(),
            prefix: "bench".to_owned(),
            endpoint: Some(g.endpoint()),
            region: Some(REGION.to_owned()),
            credentials: Some(Credentials {
                key_id: KEY_ID.to_owned(),
                secret: SECRET.to_owned(),
            }),
        })
        .await
        .unwrap();
        for (what, size, n) in [
            ("segment 1 MB", 1 << 20, 200),
            ("part 64 KB", 64 << 10, 500),
        ] {
            let body = Bytes::from(vec![0x5a; size]);
            let (mut put, mut get, mut total) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..n {
                let key = format!("live/e0-{i:08}.m4s");
                let t0 = Instant::now();
                s3.put(&key, vec![body.clone()]).await.unwrap();
                let t1 = Instant::now();
                let o = s3.get(&key, None).await.unwrap();
                let t2 = Instant::now();
                assert_eq!(o.bytes.len(), size);
                put.push(t1 - t0);
                get.push(t2 - t1);
                total.push(t2 - t0);
                // Paced like a live stream would be, but faster (not a throughput test).
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for (name, v) in [
                ("PUT", &mut put),
                ("GET after PUT", &mut get),
                ("PUT->GET", &mut total),
            ] {
                println!(
                    "{what:>13} {name:>14}: p50 {:6.2} ms  p99 {:6.2} ms  max {:6.2} ms  (n={n})",
                    pct(v, 0.5),
                    pct(v, 0.99),
                    pct(v, 1.0)
                );
            }
        }
    });
}
