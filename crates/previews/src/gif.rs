//! The endless animated GIF: a header once per viewer (GIF89a, logical screen, no global
//! palette, NETSCAPE2.0 "loop for ever"), then one image block per picture, each with its own
//! local palette and a graphic control extension (the delay), and never the trailer.
//!
//! Each picture is written as the change from the picture before it (a delta: the rectangle
//! around the pixels whose colour changed, the others transparent), and whole (opaque, the full
//! screen) only when someone needs it: a new viewer, one that lost a picture, or a scene whose
//! changes are no smaller than whole pictures. Every block says "do not dispose", so a delta
//! drawn over the picture before it gives exactly the whole picture. A viewer that got the
//! picture before gets the delta, any other the whole: a camera's still background costs no bytes
//! after the first picture, and LZW packs the transparent runs of a moving one.
//!
//! Quantization is a fixed 6x7x6 colour cube (252 colours: 6 levels of red and blue, 7 of green,
//! to which the eye is most sensitive), looked up per channel in tables: about a millisecond for
//! 480x270, no per-frame palette search and the same result for every viewer. An adaptive
//! palette (NeuQuant, median cut) would look better on flat colours but costs 10-50x more per
//! frame; the palette is still written as each frame's local palette, so changing the quantizer
//! later changes no byte of the container.

use bytes::Bytes;

use crate::PreviewError;

/// The palette entry no colour maps to (the cube has 252): a delta's unchanged pixels.
const TRANSPARENT: u8 = 255;

const R_LEVELS: usize = 6;
const G_LEVELS: usize = 7;
const B_LEVELS: usize = 6;

/// The fixed palette (256 entries, the last 4 unused) and per-channel lookup tables.
#[derive(Debug)]
pub struct Palette {
    rgb: Vec<u8>,
    r: [u8; 256],
    g: [u8; 256],
    b: [u8; 256],
}

fn level(v: usize, levels: usize) -> u8 {
    // Nearest of `levels` evenly spaced values 0..=255.
    let l = (v * (levels - 1) + 127) / 255;
    u8::try_from(l).unwrap_or(u8::MAX)
}

fn value(l: usize, levels: usize) -> u8 {
    u8::try_from(l * 255 / (levels - 1)).unwrap_or(u8::MAX)
}

impl Default for Palette {
    fn default() -> Self {
        let mut rgb = Vec::with_capacity(256 * 3);
        for r in 0..R_LEVELS {
            for g in 0..G_LEVELS {
                for b in 0..B_LEVELS {
                    rgb.extend_from_slice(&[
                        value(r, R_LEVELS),
                        value(g, G_LEVELS),
                        value(b, B_LEVELS),
                    ]);
                }
            }
        }
        rgb.resize(256 * 3, 0);
        let mut t = Self {
            rgb,
            r: [0; 256],
            g: [0; 256],
            b: [0; 256],
        };
        // Index = r * 42 + g * 6 + b: the tables hold each channel's share of it.
        let (gb, b1) = (G_LEVELS * B_LEVELS, B_LEVELS);
        for v in 0..256 {
            t.r[v] = level(v, R_LEVELS) * u8::try_from(gb).unwrap_or(0);
            t.g[v] = level(v, G_LEVELS) * u8::try_from(b1).unwrap_or(0);
            t.b[v] = level(v, B_LEVELS);
        }
        t
    }
}

impl Palette {
    /// Palette indices of packed RGB pixels.
    pub fn indices(&self, rgb: &[u8]) -> Vec<u8> {
        rgb.chunks_exact(3)
            .map(|p| {
                self.r[usize::from(p[0])] + self.g[usize::from(p[1])] + self.b[usize::from(p[2])]
            })
            .collect()
    }

    /// The 768 bytes of the palette.
    pub fn bytes(&self) -> &[u8] {
        &self.rgb
    }
}

/// `GIF89a`, a logical screen of `w` x `h` without a global colour table, and the NETSCAPE2.0
/// application extension that loops for ever.
pub fn header(w: u16, h: u16) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(b"GIF89a");
    b.extend_from_slice(&w.to_le_bytes());
    b.extend_from_slice(&h.to_le_bytes());
    // Packed fields (no global table), background index, pixel aspect ratio.
    b.extend_from_slice(&[0, 0, 0]);
    b.extend_from_slice(&[0x21, 0xFF, 0x0B]);
    b.extend_from_slice(b"NETSCAPE2.0");
    // Sub-block of 3: id 1, loop count 0 (for ever), then the block terminator.
    b.extend_from_slice(&[0x03, 0x01, 0x00, 0x00, 0x00]);
    b
}

/// Writes the GIF of one encoder: [`Self::header`] for each new viewer, [`Self::frame`] per picture.
pub struct GifWriter {
    width: u16,
    height: u16,
    delay_cs: u16,
    palette: Palette,
    header: Bytes,
    /// The container writer; its buffer is emptied after every frame. Dropping it would write the
    /// trailer into that buffer, which is then dropped unsent.
    enc: gif::Encoder<Vec<u8>>,
    /// The palette indices of the last picture written (what a delta is from).
    last: Option<Vec<u8>>,
    /// Pictures still to be written whole only, and how many the next delta that is not smaller
    /// than its whole picture will add (doubling up to [`MAX_SKIP`], back to 0 on one that is).
    skip: u32,
    backoff: u32,
    /// The size of the last whole picture written: a delta not smaller is not worth it.
    whole_len: usize,
}

/// Pictures written whole only at most, after deltas that did not pay.
const MAX_SKIP: u32 = 32;

/// One picture of the GIF: at least one of the two.
#[derive(Debug, Clone)]
pub struct GifFrame {
    /// The whole picture, an opaque image block of the full screen (`None` when not asked for
    /// and the delta is worth sending).
    pub whole: Option<Bytes>,
    /// The change from the picture before (`None` for the first, when it is not smaller than the
    /// last whole picture, and for a while after that): an image block over the changed
    /// rectangle, unchanged pixels transparent.
    pub delta: Option<Bytes>,
}

impl std::fmt::Debug for GifWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GifWriter")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("delay_cs", &self.delay_cs)
            .finish_non_exhaustive()
    }
}

impl GifWriter {
    /// A GIF of `width` x `height` shown at `fps` pictures a second.
    pub fn new(width: u32, height: u32, fps: u32) -> Result<Self, PreviewError> {
        let size = |v: u32| {
            u16::try_from(v)
                .ok()
                .filter(|v| *v > 0)
                .ok_or(PreviewError::Size(width, height))
        };
        let (w, h) = (size(width)?, size(height)?);
        let mut enc = gif::Encoder::new(Vec::with_capacity(64 * 1024), w, h, &[])
            .map_err(PreviewError::Gif)?;
        // The gif crate always writes a global colour table (two black entries when given
        // none); the header is ours, without one: every frame has its local palette.
        enc.get_mut().clear();
        let header = Bytes::from(header(w, h));
        Ok(Self {
            width: w,
            height: h,
            // GIF delays are in 1/100 s. Slightly shorter than the picture interval, so a
            // browser never falls behind the live edge by waiting out a delay longer than the
            // time the next picture takes to arrive.
            delay_cs: u16::try_from((100 / fps.max(1)).saturating_sub(1).max(2)).unwrap_or(10),
            palette: Palette::default(),
            header,
            enc,
            last: None,
            skip: 0,
            backoff: 0,
            whole_len: usize::MAX,
        })
    }

    /// `GIF89a`, the logical screen and the looping extension.
    pub fn header(&self) -> Bytes {
        self.header.clone()
    }

    pub fn size(&self) -> (u32, u32) {
        (u32::from(self.width), u32::from(self.height))
    }

    /// One picture (control extension, descriptor, local palette, LZW data) of packed RGB pixels
    /// of exactly this writer's size: as the change from the picture before and, when
    /// `whole_wanted` (someone starts or lost a picture) or there is no change worth sending, whole.
    pub fn frame(&mut self, rgb: &[u8], whole_wanted: bool) -> Result<GifFrame, PreviewError> {
        let n = usize::from(self.width) * usize::from(self.height);
        if rgb.len() != n * 3 {
            return Err(PreviewError::Size(self.size().0, self.size().1));
        }
        let indices = self.palette.indices(rgb);
        // A scene that moves all over (the generator's scrolling checkerboard) makes changes no
        // smaller than whole pictures: after one, deltas are skipped for a while (an LZW pass
        // for nothing), for longer each time.
        let delta = match &self.last {
            Some(last) if self.skip == 0 => Some(self.block(delta(last, &indices, self.width))?),
            _ => None,
        };
        self.skip = self.skip.saturating_sub(1);
        let delta = match delta {
            // Against the last whole picture written (this one's is not made unless needed).
            Some(d) if d.len() < self.whole_len => {
                self.backoff = 0;
                Some(d)
            }
            Some(_) => {
                self.backoff = (self.backoff * 2).clamp(1, MAX_SKIP);
                self.skip = self.backoff;
                None
            }
            None => None,
        };
        let whole = if whole_wanted || delta.is_none() {
            let w = self.block(Region {
                left: 0,
                top: 0,
                width: self.width,
                height: self.height,
                pixels: indices.clone(),
                transparent: false,
            })?;
            self.whole_len = w.len();
            Some(w)
        } else {
            None
        };
        self.last = Some(indices);
        Ok(GifFrame { whole, delta })
    }

    /// The image block of `r`, shown for the picture interval and then kept under the next.
    fn block(&mut self, r: Region) -> Result<Bytes, PreviewError> {
        let frame = gif::Frame {
            delay: self.delay_cs,
            dispose: gif::DisposalMethod::Keep,
            transparent: r.transparent.then_some(TRANSPARENT),
            left: r.left,
            top: r.top,
            width: r.width,
            height: r.height,
            palette: Some(self.palette.bytes().to_vec()),
            buffer: std::borrow::Cow::Owned(r.pixels),
            ..gif::Frame::default()
        };
        self.enc.write_frame(&frame).map_err(PreviewError::Gif)?;
        Ok(Bytes::from(std::mem::take(self.enc.get_mut())))
    }
}

/// A rectangle of palette indices.
struct Region {
    left: u16,
    top: u16,
    width: u16,
    height: u16,
    pixels: Vec<u8>,
    transparent: bool,
}

/// The change from `last` to `now` (rows of `width`): the rectangle around the pixels
/// that differ, the others in it transparent; a single transparent pixel when none differ (the
/// block still carries the picture's delay).
fn delta(last: &[u8], now: &[u8], width: u16) -> Region {
    let w = usize::from(width);
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for (y, (a, b)) in last.chunks_exact(w).zip(now.chunks_exact(w)).enumerate() {
        if a == b {
            continue;
        }
        let first = a.iter().zip(b).position(|(p, q)| p != q).unwrap_or(0);
        let end = w - a.iter().zip(b).rev().position(|(p, q)| p != q).unwrap_or(0);
        (x0, x1) = (x0.min(first), x1.max(end));
        (y0, y1) = (y0.min(y), y + 1);
    }
    if x0 == usize::MAX {
        return Region {
            left: 0,
            top: 0,
            width: 1,
            height: 1,
            pixels: vec![TRANSPARENT],
            transparent: true,
        };
    }
    let mut pixels = Vec::with_capacity((x1 - x0) * (y1 - y0));
    for y in y0..y1 {
        let row = y * w;
        pixels.extend(
            last[row + x0..row + x1]
                .iter()
                .zip(&now[row + x0..row + x1])
                .map(|(p, q)| if p == q { TRANSPARENT } else { *q }),
        );
    }
    let at = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
    Region {
        left: at(x0),
        top: at(y0),
        width: at(x1 - x0),
        height: at(y1 - y0),
        pixels,
        transparent: true,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn palette_maps_primaries_and_mint_closely() {
        let p = Palette::default();
        for c in [
            [0u8, 0, 0],
            [255, 255, 255],
            [255, 0, 0],
            [0, 255, 0],
            [61, 220, 151],
        ] {
            let i = usize::from(p.indices(&c)[0]);
            let got = &p.bytes()[i * 3..i * 3 + 3];
            for k in 0..3 {
                assert!(got[k].abs_diff(c[k]) <= 26, "{c:?} -> {got:?}");
            }
        }
    }

    #[test]
    fn stream_decodes_with_local_palettes_and_has_no_trailer() {
        let mut w = GifWriter::new(40, 20, 10).unwrap();
        let mut bytes = w.header().to_vec();
        for shade in [0u8, 128, 255] {
            let rgb: Vec<u8> = (0..40 * 20)
                .flat_map(|_| [shade, 255 - shade, 60])
                .collect();
            bytes.extend_from_slice(&w.frame(&rgb, true).unwrap().whole.unwrap());
        }
        drop(w);
        assert_ne!(bytes.last(), Some(&0x3B), "no trailer");
        assert!(bytes.starts_with(b"GIF89a"));
        assert!(bytes.windows(11).any(|x| x == b"NETSCAPE2.0"));
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::RGBA);
        let mut d = opts.read_info(&bytes[..]).unwrap();
        assert_eq!(bytes[10] & 0x80, 0, "no global colour table");
        let mut n = 0;
        while let Ok(Some(f)) = d.read_next_frame() {
            assert!(f.palette.is_some(), "local palette");
            assert_eq!(f.delay, 9);
            n += 1;
            if n == 3 {
                break;
            }
        }
        assert_eq!(n, 3);
    }

    /// Draws one decoded block (RGBA, transparent pixels alpha 0) onto an RGBA canvas
    /// `screen_w` pixels wide, as a browser does with "do not dispose".
    pub(crate) fn draw(canvas: &mut [u8], screen_w: usize, f: &gif::Frame<'_>) {
        let (l, t, w) = (
            usize::from(f.left),
            usize::from(f.top),
            usize::from(f.width),
        );
        for (i, px) in f.buffer.chunks_exact(4).enumerate() {
            if px[3] == 0 {
                continue;
            }
            let at = ((t + i / w) * screen_w + l + i % w) * 4;
            canvas[at..at + 4].copy_from_slice(px);
        }
    }

    /// Whole pictures and deltas draw the same screens: a viewer that takes the whole first
    /// picture and then every delta sees, after each, exactly that picture whole; a delta covers
    /// only the changed rectangle (one transparent pixel when nothing changed) and is smaller.
    #[test]
    fn deltas_drawn_over_the_picture_before_give_the_whole_pictures() {
        let (sw, sh) = (64usize, 48usize);
        let mut w = GifWriter::new(64, 48, 10).unwrap();
        // A background, a block that moves, a frame with nothing changed, one all noise.
        let picture = |k: usize| -> Vec<u8> {
            let mut rgb = vec![0u8; sw * sh * 3];
            for y in 0..sh {
                for x in 0..sw {
                    let at = (y * sw + x) * 3;
                    let c = if k == 4 {
                        // Noise: every pixel its own colour, nothing for LZW to pack.
                        let v = u32::try_from(at).unwrap().wrapping_mul(2_654_435_761);
                        let [a, b, c, _] = v.to_be_bytes();
                        [a, b, c]
                    } else if (x / 8 + k).is_multiple_of(5) && (10..20).contains(&y) {
                        [61, 220, 151]
                    } else {
                        [40, 40, u8::try_from(x * 3).unwrap()]
                    };
                    rgb[at..at + 3].copy_from_slice(&c);
                }
            }
            rgb
        };
        let pics: Vec<Vec<u8>> = [0, 1, 1, 2, 4].into_iter().map(picture).collect();
        let frames: Vec<GifFrame> = pics.iter().map(|p| w.frame(p, true).unwrap()).collect();
        assert!(frames[0].delta.is_none(), "the first picture has no delta");
        let decode = |bytes: &[u8]| -> Vec<(Vec<u8>, gif::Frame<'static>)> {
            let mut opts = gif::DecodeOptions::new();
            opts.set_color_output(gif::ColorOutput::RGBA);
            let mut d = opts.read_info(bytes).unwrap();
            let mut out = Vec::new();
            while let Ok(Some(f)) = d.read_next_frame() {
                assert_eq!(f.dispose, gif::DisposalMethod::Keep);
                out.push((f.buffer.to_vec(), f.clone()));
            }
            out
        };
        let mut whole = w.header().to_vec();
        let mut deltas = w.header().to_vec();
        for (i, f) in frames.iter().enumerate() {
            let w = f.whole.as_ref().unwrap();
            whole.extend_from_slice(w);
            deltas.extend_from_slice(f.delta.as_ref().filter(|_| i > 0).unwrap_or(w));
        }
        let (whole, deltas) = (decode(&whole), decode(&deltas));
        assert_eq!((whole.len(), deltas.len()), (5, 5));
        let mut a = vec![0u8; sw * sh * 4];
        let mut b = vec![0u8; sw * sh * 4];
        for i in 0..5 {
            draw(&mut a, sw, &whole[i].1);
            draw(&mut b, sw, &deltas[i].1);
            assert_eq!(a, b, "picture {i}");
            assert_eq!((whole[i].1.width, whole[i].1.height), (64, 48));
        }
        // Picture 2 repeats picture 1: one transparent pixel.
        let same = &deltas[2].1;
        assert_eq!((same.width, same.height), (1, 1));
        assert_eq!(same.buffer[3], 0);
        // Picture 3 moves the block: rows 10-19 only.
        assert_eq!((deltas[3].1.top, deltas[3].1.height), (10, 10));
        for f in &frames[1..4] {
            assert!(f.delta.as_ref().unwrap().len() < f.whole.as_ref().unwrap().len());
        }
        // Picture 4 is noise: its change is larger than the last whole picture, so no delta
        // (the whole, though not asked for), and none for the next picture (then one again, then
        // after another miss none for two).
        assert!(frames[4].delta.is_none());
        let (red, grey) = (picture(4), picture(0));
        let mut next = |rgb: &[u8]| w.frame(rgb, false).unwrap();
        for (rgb, delta, why) in [
            (&grey, false, "skipped"),
            (&red, false, "tried, not smaller"),
            (&grey, false, "skipped"),
            (&red, false, "skipped"),
            (&red, true, "tried: nothing changed"),
            (&red, true, "nothing changed"),
        ] {
            let f = next(rgb);
            assert_eq!(f.delta.is_some(), delta, "{why}");
            assert_eq!(f.whole.is_some(), !delta, "{why}: whole only when needed");
        }
        assert!(next(&red).whole.is_none());
        assert!(w.frame(&red, true).unwrap().whole.is_some(), "asked for");
    }
}
