//! The endless animated GIF: a header once per viewer (GIF89a, logical screen, no global
//! palette, NETSCAPE2.0 "loop for ever"), then one image block per picture, each with its own
//! local palette and a graphic control extension (the delay), and never the trailer.
//!
//! Quantization is a fixed 6x7x6 colour cube (252 colours: 6 levels of red and blue, 7 of green,
//! to which the eye is most sensitive), looked up per channel in tables: about a millisecond for
//! 480x270, no per-frame palette search and the same result for every viewer. An adaptive
//! palette (NeuQuant, median cut) would look better on flat colours but costs 10-50x more per
//! frame; the palette is still written as each frame's local palette, so changing the quantizer
//! later changes no byte of the container.

use bytes::Bytes;

use crate::PreviewError;

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
        })
    }

    /// `GIF89a`, the logical screen and the looping extension.
    pub fn header(&self) -> Bytes {
        self.header.clone()
    }

    pub fn size(&self) -> (u32, u32) {
        (u32::from(self.width), u32::from(self.height))
    }

    /// One image block (control extension, descriptor, local palette, LZW data) of packed RGB
    /// pixels of exactly this writer's size.
    pub fn frame(&mut self, rgb: &[u8]) -> Result<Bytes, PreviewError> {
        let n = usize::from(self.width) * usize::from(self.height);
        if rgb.len() != n * 3 {
            return Err(PreviewError::Size(self.size().0, self.size().1));
        }
        let indices = self.palette.indices(rgb);
        let frame = gif::Frame {
            delay: self.delay_cs,
            width: self.width,
            height: self.height,
            palette: Some(self.palette.bytes().to_vec()),
            buffer: std::borrow::Cow::Owned(indices),
            ..gif::Frame::default()
        };
        self.enc.write_frame(&frame).map_err(PreviewError::Gif)?;
        Ok(Bytes::from(std::mem::take(self.enc.get_mut())))
    }
}

#[cfg(test)]
mod tests {
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
            bytes.extend_from_slice(&w.frame(&rgb).unwrap());
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
}
