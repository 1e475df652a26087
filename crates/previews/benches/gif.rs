//! What one GIF preview picture costs on one core at 480x270 (issue 14's target: quantize and
//! encode <= 5 ms): JPEG decode (what the encoder gets from the feed), the fixed-palette lookup,
//! and the palette + LZW of the `gif` crate (each picture written whole and as its change from
//! the picture before: the most an encoder does, when a viewer needs the whole picture; then as
//! an encoder with every viewer keeping up does, the change alone unless it does not pay), each
//! timed per picture over pictures ffmpeg made of
//! a busy test pattern (testsrc2: moving shapes, gradients, text; harder for LZW than the
//! generator's checkerboard). Prints medians and p90 of several rounds.
//!
//! `cargo bench -p hlsmark-previews --bench gif` (release code; runs on the calling thread).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hlsmark_previews::gif::{GifWriter, Palette};

const WIDTH: u32 = 480;
const HEIGHT: u32 = 270;
const PICTURES: usize = 100;
const ROUNDS: usize = 5;

/// `PICTURES` JPEGs of 480x270 as the preview branch makes them (ffmpeg's mjpeg, q 5).
fn pictures() -> Vec<Bytes> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-f", "lavfi"])
        .args(["-i", &format!("testsrc2=size={WIDTH}x{HEIGHT}:rate=10")])
        .args(["-frames:v", &PICTURES.to_string()])
        .args(["-c:v", "mjpeg", "-q:v", "5", "-f", "image2pipe", "pipe:1"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut split = hlsmark_previews::JpegSplitter::new(out.stdout.len() + 1);
    split.push(&out.stdout);
    let v: Vec<Bytes> = std::iter::from_fn(|| split.next_picture()).collect();
    assert_eq!(v.len(), PICTURES);
    v
}

fn decode(jpeg: &[u8]) -> Vec<u8> {
    image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .unwrap()
        .to_rgb8()
        .into_raw()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `percent`-th percentile (nearest rank).
fn pct(v: &mut [Duration], percent: usize) -> Duration {
    v.sort_unstable();
    v[((v.len() - 1) * percent + 50) / 100]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let jpegs = pictures();
    let rgbs: Vec<Vec<u8>> = jpegs.iter().map(|j| decode(j)).collect();
    let palette = Palette::default();
    let mut rows: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("jpeg decode", vec![], vec![]),
        ("quantize (palette lookup)", vec![], vec![]),
        ("quantize + encode whole + change", vec![], vec![]),
        ("decode + quantize + encode (steady)", vec![], vec![]),
    ];
    let (mut whole, mut delta, mut deltas) = (0usize, 0usize, 0usize);
    for _ in 0..ROUNDS {
        let mut t: [Vec<Duration>; 4] = Default::default();
        let mut w = GifWriter::new(WIDTH, HEIGHT, 10).unwrap();
        let mut w_all = GifWriter::new(WIDTH, HEIGHT, 10).unwrap();
        (whole, delta, deltas) = (0, 0, 0);
        for (jpeg, rgb) in jpegs.iter().zip(&rgbs) {
            let s = Instant::now();
            black_box(decode(jpeg));
            t[0].push(s.elapsed());
            let s = Instant::now();
            black_box(palette.indices(rgb));
            t[1].push(s.elapsed());
            let s = Instant::now();
            let f = black_box(w.frame(rgb, true).unwrap());
            t[2].push(s.elapsed());
            whole += f.whole.as_ref().map_or(0, Bytes::len);
            if let Some(d) = &f.delta {
                delta += d.len();
                deltas += 1;
            }
            let s = Instant::now();
            black_box(w_all.frame(&decode(jpeg), false).unwrap());
            t[3].push(s.elapsed());
        }
        for (row, times) in rows.iter_mut().zip(t.iter_mut()) {
            row.1.push(ms(pct(times, 50)));
            row.2.push(ms(pct(times, 90)));
        }
    }
    println!(
        "# GIF {WIDTH}x{HEIGHT}, {PICTURES} pictures x {ROUNDS} rounds on one thread; \
         median of the rounds' p50 and p90 per picture (mean whole picture {} B, mean change \
         {} B, {deltas} changes smaller than the whole)",
        whole / PICTURES,
        delta / deltas.max(1)
    );
    for (name, p50, p90) in rows {
        println!(
            "{name:<34} p50 {:6.2} ms   p90 {:6.2} ms",
            median(p50),
            median(p90)
        );
    }
}
