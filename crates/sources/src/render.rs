//! The synthetic scene: a rolling grey checkerboard, a mint corner while an event is active and a
//! frame counter. Rendering is a pure function of the GEN frame index (and whether an event is
//! active on it), so frame `g` always shows the scene at `g / fps`, whatever was rendered before,
//! and a late generator that catches up shows exactly what it would have shown on time.
//!
//! Speed: both row patterns of the board are precomputed once, one board period wider than the
//! frame; every output row is then a single `copy_from_slice` out of one of them. The whole frame is
//! a memcpy plus two small overlays (corner block and counter box).

use hlsmark_clock::FrameRate;

use crate::font::{GLYPH_H, GLYPH_W, glyph};

/// The event colour of the top-left block, RGB.
pub const MINT: [u8; 3] = [0, 255, 255];
/// Board colours: greys, far from mint in every YUV component, so a decoder never confuses them.
pub const DARK: [u8; 3] = [64, 64, 64];
pub const LIGHT: [u8; 3] = [176, 176, 176];
const TEXT_FG: [u8; 3] = [255, 255, 255];
const TEXT_BG: [u8; 3] = [0, 0, 0];
/// `#0001234 00:00:41.133`: frame index and GEN time.
const TEXT_CHARS: usize = 21;

/// Size and motion of the scene (validated by the caller: even sizes, block >= 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scene {
    pub width: usize,
    pub height: usize,
    pub block: usize,
    pub fps: FrameRate,
    /// Pixels per second the board rolls (right and down).
    pub roll_px_per_sec: u32,
}

/// A renderer for one [`Scene`], holding the precomputed rows.
#[derive(Debug, Clone)]
pub struct Renderer {
    scene: Scene,
    /// `rows[p]`: one board row of phase `p`, `width + 2 * block` pixels.
    rows: [Vec<u8>; 2],
    text_x: usize,
    text_y: usize,
    text_scale: usize,
}

impl Renderer {
    pub fn new(scene: Scene) -> Self {
        let b = scene.block.max(1);
        let wide = scene.width + 2 * b;
        let row = |p: usize| -> Vec<u8> {
            (0..wide)
                .flat_map(|x| {
                    if (x / b + p).is_multiple_of(2) {
                        DARK
                    } else {
                        LIGHT
                    }
                })
                .collect()
        };
        let text_scale = (scene.height / 180).max(1);
        let text_w = (TEXT_CHARS * (GLYPH_W + 1) + 1) * text_scale;
        let text_h = (GLYPH_H + 2) * text_scale;
        let margin = 2 * text_scale;
        Self {
            scene,
            rows: [row(0), row(1)],
            text_x: scene.width.saturating_sub(text_w + margin),
            text_y: scene.height.saturating_sub(text_h + margin),
            text_scale,
        }
    }

    pub fn scene(&self) -> &Scene {
        &self.scene
    }

    /// Bytes of one RGB24 frame.
    pub fn frame_len(&self) -> usize {
        self.scene.width * self.scene.height * 3
    }

    /// How far the board has rolled at frame `g`, modulo one board period (two blocks), in pixels:
    /// `floor(g * speed / fps)` with integer math.
    pub fn roll_offset(&self, g: i64) -> usize {
        let period = 2 * self.scene.block.max(1) as i128;
        let fps = self.scene.fps;
        let px = i128::from(g) * i128::from(self.scene.roll_px_per_sec) * i128::from(fps.den())
            / i128::from(fps.num());
        // rem_euclid of a positive period is in [0, period).
        usize::try_from(px.rem_euclid(period)).unwrap_or(0)
    }

    /// Renders frame `g` (GEN frame index) into `out` (`frame_len()` bytes of RGB24).
    pub fn render(&self, g: i64, event_active: bool, out: &mut [u8]) {
        let Scene {
            width,
            height,
            block,
            ..
        } = self.scene;
        let b = block.max(1);
        let stride = width * 3;
        debug_assert_eq!(out.len(), stride * height);
        let off = self.roll_offset(g);
        let src0 = &self.rows[0][off * 3..(off + width) * 3];
        let src1 = &self.rows[1][off * 3..(off + width) * 3];
        for (y, dst) in out.chunks_exact_mut(stride).enumerate() {
            let src = if ((y + off) / b).is_multiple_of(2) {
                src0
            } else {
                src1
            };
            dst.copy_from_slice(src);
        }
        self.draw_counter(g, out);
        if event_active {
            let (bw, bh) = (b.min(width), b.min(height));
            let mint_row: Vec<u8> = MINT.repeat(bw);
            for dst in out.chunks_exact_mut(stride).take(bh) {
                dst[..bw * 3].copy_from_slice(&mint_row);
            }
        }
    }

    fn counter_text(&self, g: i64) -> [u8; TEXT_CHARS] {
        let ms = self.scene.fps.frame_to_ticks(g).ticks().max(0) / 90;
        let (h, m, s, milli) = (
            ms / 3_600_000,
            (ms / 60_000) % 60,
            (ms / 1000) % 60,
            ms % 1000,
        );
        let mut t = [b' '; TEXT_CHARS];
        let mut put = |at: usize, v: i64, digits: usize| {
            let mut v = v.unsigned_abs();
            for i in (0..digits).rev() {
                // v % 10 < 10 always fits in a u8.
                t[at + i] = b'0' + u8::try_from(v % 10).unwrap_or(0);
                v /= 10;
            }
        };
        put(1, g.max(0) % 10_000_000, 7);
        put(9, h % 100, 2);
        put(12, m, 2);
        put(15, s, 2);
        put(18, milli, 3);
        t[0] = b'#';
        t[11] = b':';
        t[14] = b':';
        t[17] = b'.';
        t
    }

    fn draw_counter(&self, g: i64, out: &mut [u8]) {
        let Scene { width, height, .. } = self.scene;
        let s = self.text_scale;
        let stride = width * 3;
        let text = self.counter_text(g);
        let box_w = ((TEXT_CHARS * (GLYPH_W + 1) + 1) * s).min(width - self.text_x);
        let box_h = ((GLYPH_H + 2) * s).min(height - self.text_y);
        for fy in 0..box_h {
            let y = self.text_y + fy;
            let row = &mut out[y * stride..(y + 1) * stride];
            let gy = (fy / s).checked_sub(1).filter(|r| *r < GLYPH_H);
            for fx in 0..box_w {
                let x = self.text_x + fx;
                let col = fx / s;
                let on = match (gy, col.checked_sub(1)) {
                    (Some(r), Some(c)) => {
                        let (ch, cx) = (c / (GLYPH_W + 1), c % (GLYPH_W + 1));
                        ch < TEXT_CHARS
                            && cx < GLYPH_W
                            && (glyph(text[ch])[r] >> (GLYPH_W - 1 - cx)) & 1 == 1
                    }
                    _ => false,
                };
                row[x * 3..x * 3 + 3].copy_from_slice(if on { &TEXT_FG } else { &TEXT_BG });
            }
        }
    }
}

/// Whether the corner block of a decoded RGB24 frame looks mint (tolerant of YUV 4:2:0 rounding):
/// the mean over the block's interior, away from edges where chroma subsampling bleeds.
pub fn corner_is_mint(frame: &[u8], width: usize, block: usize) -> bool {
    let (lo, hi) = (block / 4, block - block / 4);
    let (mut r, mut g, mut b, mut n) = (0u64, 0u64, 0u64, 0u64);
    for y in lo..hi {
        for x in lo..hi {
            let i = (y * width + x) * 3;
            if let Some(p) = frame.get(i..i + 3) {
                r += u64::from(p[0]);
                g += u64::from(p[1]);
                b += u64::from(p[2]);
                n += 1;
            }
        }
    }
    n > 0 && r < 80 * n && g > 200 * n && b > 200 * n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene() -> Scene {
        Scene {
            width: 160,
            height: 96,
            block: 16,
            fps: FrameRate::integer(30),
            roll_px_per_sec: 40,
        }
    }

    fn render(r: &Renderer, g: i64, ev: bool) -> Vec<u8> {
        let mut v = vec![0u8; r.frame_len()];
        r.render(g, ev, &mut v);
        v
    }

    #[test]
    fn render_is_a_pure_function_of_the_frame_index() {
        let a = Renderer::new(scene());
        let b = Renderer::new(scene());
        // Different histories (and a dirty buffer) must not matter.
        let mut dirty = vec![0xAAu8; a.frame_len()];
        for g in [5, 999, 3] {
            a.render(g, g % 2 == 0, &mut dirty);
        }
        for g in [0, 1, 29, 30, 31, 12_345, 108_000] {
            for ev in [false, true] {
                a.render(g, ev, &mut dirty);
                assert_eq!(dirty, render(&b, g, ev), "frame {g} event {ev}");
            }
        }
        // The scene moves: consecutive frames differ (40 px/s at 30 fps rolls every frame or so).
        assert_ne!(render(&a, 0, false), render(&a, 2, false));
    }

    #[test]
    fn corner_is_mint_only_during_events_and_board_is_never_mint() {
        let r = Renderer::new(scene());
        for g in 0..200 {
            assert!(!corner_is_mint(&render(&r, g, false), 160, 16), "{g}");
            assert!(corner_is_mint(&render(&r, g, true), 160, 16), "{g}");
        }
        for c in [DARK, LIGHT, TEXT_FG, TEXT_BG] {
            assert!(!(c[0] < 80 && c[1] > 200 && c[2] > 200));
        }
    }

    #[test]
    fn roll_offset_uses_exact_integer_time() {
        let mut s = scene();
        s.fps = FrameRate::new(30_000, 1_001).unwrap();
        s.roll_px_per_sec = 30;
        let r = Renderer::new(s);
        // 30 px/s at 29.97 fps: frame 30000 is at 1001 s -> 30030 px -> mod 32.
        assert_eq!(r.roll_offset(30_000), 30_030 % 32);
        assert_eq!(r.roll_offset(0), 0);
    }

    #[test]
    fn counter_shows_frame_and_gen_time() {
        let r = Renderer::new(scene());
        assert_eq!(&r.counter_text(3_723 * 30 + 4), b"#0111694 01:02:03.133");
    }
}
