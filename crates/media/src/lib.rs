//! Fragmented MP4 in, HLS segments out: reads ffmpeg's fMP4 stream box by box, knows every
//! sample's decode and presentation time, duration and keyframe flag, rebases `tfdt`, and cuts
//! segments at video keyframes with the frame table of every segment.
//!
//! # Data flow
//!
//! ```text
//! AsyncRead (ffmpeg's stdout) ─▶ FragmentReader ─▶ Item::Init (ftyp+moov) / Item::Fragment (moof+mdat)
//!                                   Fragment::shift (patch tfdt) ─▶ Segmenter::push ─▶ CutSegment
//! ```
//!
//! # Why mp4-atom
//!
//! Boxes are decoded with [`mp4-atom`](https://crates.io/crates/mp4-atom) (kixelated, MIT OR
//! Apache-2.0, pinned to exactly 0.17.0), by the author of moq, who reads live fMP4 with it. It is
//! actively maintained and decodes everything this crate needs: `moov`/`trak`/`mdia`/`hdlr`/
//! `mdhd`, `stsd` with `avc1`/`avcC` and `mp4a`/`esds`, `mvex`/`trex`, and `moof`/`mfhd`/`traf`/
//! `tfhd`/`tfdt`/`trun` (version 0 unsigned and version 1 signed composition offsets,
//! `first_sample_flags`, and runs without per-sample fields kept as a count, so an untrusted
//! `sample_count` never sizes an allocation), plus `prft`. Unknown child boxes are skipped, not
//! refused. Two things we do by hand in [`boxes`]: framing boxes on the async pipe (its tokio
//! reader copies every box body through `tokio::io::copy` into a `Vec` grown from 4 KiB, `mdat`
//! included; we read the pipe in large chunks into one `BytesMut` per fragment and hand out
//! `Bytes` without copying the payload), and finding the byte offset of a `tfdt` to patch it in
//! place (decoded structs carry no offsets, and re-encoding a `moof` could change bytes we want
//! untouched). The tests check every assumption on its decoding against ffprobe. The alternative,
//! `mp4` 0.14 (alfg/mp4-rust, MIT), reads through `Read + Seek` (a pipe cannot seek), keeps `trun`
//! composition offsets as `u32` (version 1's negative offsets come out wrong) and reserves memory
//! from an untrusted `sample_count`.
//!
//! Time stays integer: samples carry their track's own timescale; [`rescale`] converts exactly
//! (round to nearest) and the segmenter speaks [`hlsmark_clock`]'s 90 kHz types.

pub mod boxes;
pub mod clip;
mod error;
mod fragment;
mod init;
mod reader;
mod segmenter;

pub use error::MediaError;
pub use fragment::{Fragment, ProducerTime, Sample};
pub use init::{Init, Track, TrackKind};
pub use reader::{DEFAULT_MAX_BOX_SIZE, FragmentReader, Item, MAX_SAMPLES_PER_FRAGMENT};
pub use segmenter::{CutPart, CutSegment, Pushed, Segmenter, SegmenterConfig};

/// `value` in timescale `from` expressed in timescale `to`, rounded to the nearest unit (halves
/// away from zero, as ffmpeg's `av_rescale_q` does). `None` when a timescale is 0 or the result
/// does not fit an `i64`. The identity when `from == to`.
pub fn rescale(value: i64, from: u32, to: u32) -> Option<i64> {
    if from == 0 || to == 0 {
        return None;
    }
    if from == to {
        return Some(value);
    }
    let num = i128::from(value) * i128::from(to);
    let den = i128::from(from);
    let half = den / 2;
    let q = if num >= 0 {
        (num + half) / den
    } else {
        (num - half) / den
    };
    i64::try_from(q).ok()
}

#[cfg(test)]
mod tests {
    use super::rescale;

    #[test]
    fn rescale_rounds_to_nearest_and_is_identity_at_equal_rates() {
        assert_eq!(rescale(12345, 90_000, 90_000), Some(12345));
        assert_eq!(rescale(1024, 48_000, 90_000), Some(1920));
        assert_eq!(rescale(1001, 24_000, 90_000), Some(3754)); // 3753.75
        assert_eq!(rescale(-1001, 24_000, 90_000), Some(-3754));
        assert_eq!(rescale(1, 180_000, 90_000), Some(1)); // 0.5 rounds away from zero
        assert_eq!(rescale(-1, 180_000, 90_000), Some(-1));
        assert_eq!(rescale(1, 0, 90_000), None);
        assert_eq!(rescale(i64::MAX, 1, 90_000), None);
    }
}
