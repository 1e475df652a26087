//! Frame synthesis speed at 1280x720 RGB24, next to a plain memcpy of the same bytes measured in
//! the same run (the target is at least half of memcpy speed). Prints frames/s and the ratio.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hlsmark_clock::FrameRate;
use hlsmark_sources::render::{Renderer, Scene};

fn scene() -> Scene {
    Scene {
        width: 1280,
        height: 720,
        block: 80,
        fps: FrameRate::integer(30),
        roll_px_per_sec: 80,
    }
}

fn per_frame(mut f: impl FnMut(i64)) -> Duration {
    // Warm up, then time enough frames for a stable figure.
    for g in 0..50 {
        f(g);
    }
    let n = 2_000;
    let t = Instant::now();
    for g in 0..n {
        f(g);
    }
    t.elapsed() / u32::try_from(n).unwrap()
}

fn bench(c: &mut Criterion) {
    let r = Renderer::new(scene());
    let len = r.frame_len();
    let mut out = vec![0u8; len];
    let src = vec![7u8; len];

    let mut g = c.benchmark_group("frame_1280x720_rgb24");
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("render", |b| {
        let mut n = 0i64;
        b.iter(|| {
            n += 1;
            r.render(black_box(n), n % 3 == 0, &mut out);
            black_box(&out);
        });
    });
    g.bench_function("memcpy", |b| {
        b.iter(|| {
            out.copy_from_slice(black_box(&src));
            black_box(&out);
        });
    });
    g.finish();

    // The ratio, measured back to back in this run.
    let render = per_frame(|n| {
        r.render(black_box(n), n % 3 == 0, &mut out);
        black_box(&out);
    });
    let memcpy = per_frame(|_| {
        out.copy_from_slice(black_box(&src));
        black_box(&out);
    });
    let fps = 1.0 / render.as_secs_f64();
    let ratio = memcpy.as_secs_f64() / render.as_secs_f64();
    println!(
        "render 1280x720 rgb24: {fps:.0} frames/s ({render:?}/frame); memcpy {memcpy:?}/frame; \
         render speed / memcpy speed = {ratio:.2} (target >= 0.5)"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
