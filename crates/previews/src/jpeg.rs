//! Whole JPEG pictures out of a byte stream of concatenated JPEGs (ffmpeg's `image2pipe` of
//! `mjpeg` on the preview FIFO), and the size of a picture read from its frame header.
//!
//! The splitter walks the JPEG marker structure (segment lengths, then the entropy-coded data up
//! to the next real marker) instead of searching for `FF D9`: header segments may hold any byte,
//! and a picture cut short by an ffmpeg restart is recognised (a new `FF D8` before the end) and
//! skipped, so the stream resynchronises on the next whole picture.

use bytes::{Buf as _, Bytes, BytesMut};

/// Splits concatenated JPEG pictures. Feed bytes with [`Self::push`], take pictures with
/// [`Self::next_picture`].
#[derive(Debug)]
pub struct JpegSplitter {
    buf: BytesMut,
    /// A picture larger than this is dropped (and the stream resynchronised).
    max_picture: usize,
    /// Bytes thrown away while resynchronising (broken or cut pictures).
    skipped: u64,
}

enum Scan {
    /// A whole picture of this many bytes starts at 0.
    Whole(usize),
    /// More bytes are needed.
    Incomplete,
    /// The picture starting at 0 is broken; throw away this many bytes and look again.
    Broken(usize),
}

impl JpegSplitter {
    pub fn new(max_picture: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(64 * 1024),
            max_picture,
            skipped: 0,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes skipped so far while resynchronising.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The next whole picture, if one has arrived.
    pub fn next_picture(&mut self) -> Option<Bytes> {
        loop {
            // Find a start of image.
            match find_soi(&self.buf) {
                Some(0) => {}
                Some(at) => {
                    self.skip(at);
                    continue;
                }
                None => {
                    // Keep a trailing 0xFF: it may be the first half of the next SOI.
                    let keep = usize::from(self.buf.last() == Some(&0xFF));
                    let n = self.buf.len() - keep;
                    self.skip(n);
                    return None;
                }
            }
            match scan(&self.buf) {
                Scan::Whole(n) => return Some(self.buf.split_to(n).freeze()),
                Scan::Incomplete if self.buf.len() > self.max_picture => {
                    let n = self.buf.len();
                    self.skip(n);
                    return None;
                }
                Scan::Incomplete => return None,
                Scan::Broken(n) => self.skip(n),
            }
        }
    }

    fn skip(&mut self, n: usize) {
        self.skipped += n as u64;
        self.buf.advance(n);
    }
}

fn find_soi(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == [0xFF, 0xD8])
}

/// Walks the picture that starts at 0 (`FF D8`).
fn scan(b: &[u8]) -> Scan {
    let mut i = 2;
    loop {
        // A marker: 0xFF (fill bytes allowed), then its code.
        if i >= b.len() {
            return Scan::Incomplete;
        }
        if b[i] != 0xFF {
            return Scan::Broken(2);
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&code) = b.get(i) else {
            return Scan::Incomplete;
        };
        let marker_at = i - 1;
        i += 1;
        match code {
            0xD9 => return Scan::Whole(i),
            // A new picture began before this one ended: it was cut short.
            0xD8 => return Scan::Broken(marker_at),
            0x01 | 0xD0..=0xD7 => continue,
            0x00 => return Scan::Broken(2),
            _ => {}
        }
        let Some(len) = b
            .get(i..i + 2)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
        else {
            return Scan::Incomplete;
        };
        if len < 2 {
            return Scan::Broken(2);
        }
        i += len;
        if code != 0xDA {
            continue;
        }
        // Entropy-coded data after a start of scan: runs to the next 0xFF that is neither a
        // stuffed zero nor a restart marker.
        loop {
            let Some(ff) = b.get(i..).and_then(|r| r.iter().position(|&x| x == 0xFF)) else {
                return Scan::Incomplete;
            };
            i += ff;
            match b.get(i + 1) {
                None => return Scan::Incomplete,
                Some(0x00 | 0xD0..=0xD7) => i += 2,
                Some(_) => break,
            }
        }
    }
}

/// `(width, height)` from a JPEG's frame header (any SOF marker), or `None` if it has none.
pub fn dimensions(jpeg: &[u8]) -> Option<(u32, u32)> {
    if jpeg.get(..2) != Some(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    loop {
        while *jpeg.get(i)? == 0xFF && *jpeg.get(i + 1)? == 0xFF {
            i += 1;
        }
        if *jpeg.get(i)? != 0xFF {
            return None;
        }
        let code = *jpeg.get(i + 1)?;
        let len = usize::from(u16::from_be_bytes([*jpeg.get(i + 2)?, *jpeg.get(i + 3)?]));
        let is_sof = matches!(code, 0xC0..=0xCF) && !matches!(code, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            let h = u16::from_be_bytes([*jpeg.get(i + 5)?, *jpeg.get(i + 6)?]);
            let w = u16::from_be_bytes([*jpeg.get(i + 7)?, *jpeg.get(i + 8)?]);
            return (w > 0 && h > 0).then_some((u32::from(w), u32::from(h)));
        }
        if code == 0xDA || len < 2 {
            return None;
        }
        i += 2 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real JPEG made by the image crate.
    pub(crate) fn sample(w: u32, h: u32, shade: u8) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([shade, ((x * 7) ^ (y * 3)).to_le_bytes()[0], 255 - shade])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn splits_pictures_fed_in_any_chunks_and_reads_their_size() {
        let a = sample(64, 36, 10);
        let b = sample(48, 20, 200);
        let stream = [a.clone(), b.clone(), a.clone()].concat();
        for chunk in [1, 7, 100, 4096] {
            let mut s = JpegSplitter::new(1 << 20);
            let mut got = Vec::new();
            for c in stream.chunks(chunk) {
                s.push(c);
                while let Some(p) = s.next_picture() {
                    got.push(p);
                }
            }
            assert_eq!(got.len(), 3, "chunk {chunk}");
            assert_eq!(&got[0][..], &a[..]);
            assert_eq!(&got[1][..], &b[..]);
            assert_eq!(s.skipped(), 0);
        }
        assert_eq!(dimensions(&a), Some((64, 36)));
        assert_eq!(dimensions(&b), Some((48, 20)));
        assert_eq!(dimensions(b"not a jpeg"), None);
    }

    #[test]
    fn a_picture_cut_short_is_skipped_and_the_next_one_kept() {
        let a = sample(64, 36, 10);
        let b = sample(32, 32, 99);
        // Garbage, then half a picture (an ffmpeg killed mid-write), then a whole one.
        let stream = [b"junk".to_vec(), a[..a.len() / 2].to_vec(), b.clone()].concat();
        let mut s = JpegSplitter::new(1 << 20);
        s.push(&stream);
        let p = s.next_picture().expect("the whole picture");
        assert_eq!(&p[..], &b[..]);
        assert!(s.next_picture().is_none());
        assert!(s.skipped() >= 4 + (a.len() / 2) as u64 - 2);
    }

    #[test]
    fn an_endless_picture_is_dropped_at_the_limit() {
        let mut s = JpegSplitter::new(1000);
        s.push(&[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02]);
        s.push(&[0x11; 2000]);
        assert!(s.next_picture().is_none());
        let b = sample(16, 16, 1);
        s.push(&b);
        assert_eq!(&s.next_picture().unwrap()[..], &b[..]);
    }
}
