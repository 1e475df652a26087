//! Reading a segment file's `moof` boxes (and only those) into runs of samples with their byte
//! offsets in the file, through positioned reads: the `mdat` payloads are skipped, so indexing a
//! minute of 4 MB segments reads a few kilobytes.

use std::io;

use mp4_atom::{Decode, FourCC, Moof};

use crate::boxes::{self, HeaderError};
use crate::fragment::{Sample, TrackState};
use crate::init::TrackKind;

use super::ClipError;

/// `sample_is_non_sync_sample` in the sample flags (ISO/IEC 14496-12 8.8.3.1).
const NON_SYNC: u32 = 0x0001_0000;
/// Largest `moof` accepted (a 200 ms fragment's is a few hundred bytes).
const MAX_MOOF: u64 = 16 << 20;
/// Samples one segment file may hold (a 10 s segment of 60 fps video and AAC holds ~1,100).
const MAX_SAMPLES: usize = 1 << 20;

/// Positioned reads of one media file: a local file today, an object in S3-compatible storage
/// later (a ranged GET per call). Only [`scan_segment`] and the body of a clip call it.
pub trait ReadAt: Send + Sync {
    /// Size of the file in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; an error when the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

/// A local file opened for reading, with its size.
#[derive(Debug)]
pub struct LocalFile {
    file: std::fs::File,
    size: u64,
}

impl LocalFile {
    pub fn new(file: std::fs::File) -> io::Result<Self> {
        let size = file.metadata()?.len();
        Ok(Self { file, size })
    }
}

impl ReadAt for LocalFile {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }
}

impl ReadAt for bytes::Bytes {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let at = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = self
            .get(at..at.saturating_add(buf.len()))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Samples of one track stored back to back in a file (one `trun`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub track: u32,
    /// Byte offset of the first sample's data in the file.
    pub offset: u64,
    /// Decode order; times in the track's timescale.
    pub samples: Vec<Sample>,
}

/// Every run of every `moof` in `file`, in file order. `tracks` carries the `trex` defaults and
/// each track's next decode time (for a `traf` without `tfdt`) from one file to the next.
pub(crate) fn scan_segment(
    file: &dyn ReadAt,
    tracks: &mut [TrackState],
) -> Result<Vec<Run>, ClipError> {
    const MOOF: FourCC = FourCC::new(b"moof");
    let size = file.size();
    let mut runs = Vec::new();
    let mut count = 0usize;
    let mut at = 0u64;
    let mut head = [0u8; 16];
    while at < size {
        let n = usize::try_from((size - at).min(16)).unwrap_or(16);
        file.read_exact_at(&mut head[..n], at)
            .map_err(ClipError::Io)?;
        let h = match boxes::parse_header(&head[..n]) {
            Ok(h) => h,
            Err(HeaderError::Short(_)) => {
                return Err(ClipError::invalid(format!(
                    "the segment ends inside a box header at offset {at}"
                )));
            }
            Err(HeaderError::TooSmall(h)) => {
                return Err(ClipError::invalid(format!(
                    "box `{}` at offset {at} declares size {}",
                    h.kind, h.size
                )));
            }
        };
        let len = if h.size == 0 { size - at } else { h.size };
        if len > size - at {
            return Err(ClipError::invalid(format!(
                "box `{}` at offset {at} runs past the end of the segment ({len} bytes, {} left)",
                h.kind,
                size - at
            )));
        }
        if h.kind == MOOF {
            if len > MAX_MOOF {
                return Err(ClipError::invalid(format!(
                    "moof at offset {at} is {len} bytes"
                )));
            }
            // Bounded by MAX_MOOF just above.
            let mut moof = vec![0u8; usize::try_from(len).unwrap_or(0)];
            file.read_exact_at(&mut moof, at).map_err(ClipError::Io)?;
            let before = runs.len();
            runs_of_moof(&moof, at, tracks, &mut runs)?;
            count += runs[before..]
                .iter()
                .map(|r| r.samples.len())
                .sum::<usize>();
            if count > MAX_SAMPLES {
                return Err(ClipError::invalid(format!(
                    "the segment holds over {MAX_SAMPLES} samples"
                )));
            }
        }
        at += len;
    }
    for r in &runs {
        let bytes: u64 = r.samples.iter().map(|s| u64::from(s.size)).sum();
        if r.offset.checked_add(bytes).is_none_or(|end| end > size) {
            return Err(ClipError::invalid(format!(
                "track {} has {bytes} bytes of samples at offset {}, past the end of the segment ({size} bytes)",
                r.track, r.offset
            )));
        }
    }
    Ok(runs)
}

/// The runs of one `moof` (the whole box in `moof`, found at `moof_at` in the file), with the
/// data offsets resolved as ISO/IEC 14496-12 8.8.7-8.8.8 say: a `traf`'s base is its explicit
/// `base_data_offset`, the `moof` (`default-base-is-moof`, what ffmpeg writes), or for a `traf`
/// without either the end of the previous `traf`'s data (the first: the `moof`); a `trun` without
/// a `data_offset` continues where the previous run of the `traf` ended.
fn runs_of_moof(
    mut moof: &[u8],
    moof_at: u64,
    tracks: &mut [TrackState],
    out: &mut Vec<Run>,
) -> Result<(), ClipError> {
    let m = Moof::decode(&mut moof).map_err(|source| ClipError::Decode {
        offset: moof_at,
        source,
    })?;
    let mut prev_traf_end = moof_at;
    for traf in &m.traf {
        let id = traf.tfhd.track_id;
        let Some(state) = tracks.iter_mut().find(|t| t.defaults.id == id) else {
            return Err(ClipError::invalid(format!(
                "the moof at offset {moof_at} has samples of track {id}, which the init section does not declare"
            )));
        };
        let d = state.defaults;
        let overflow = || ClipError::invalid(format!("track {id}: sample times overflow"));
        let base = match (traf.tfhd.base_data_offset, traf.tfhd.default_base_is_moof) {
            (Some(b), _) => b,
            (None, true) => moof_at,
            (None, false) => prev_traf_end,
        };
        let mut dts = match &traf.tfdt {
            Some(t) => boxes::tfdt_signed(t.base_media_decode_time),
            None => state.next_dts,
        };
        let audio = d.kind == TrackKind::Audio;
        let def_duration = traf.tfhd.default_sample_duration.unwrap_or(d.duration);
        let def_size = traf.tfhd.default_sample_size.unwrap_or(d.size);
        let def_flags = traf.tfhd.default_sample_flags.unwrap_or(d.flags);
        let mut next_data = base;
        for trun in &traf.trun {
            let offset = match trun.data_offset {
                Some(o) => base
                    .checked_add_signed(i64::from(o))
                    .ok_or_else(|| ClipError::invalid("a trun data offset before the file"))?,
                None => next_data,
            };
            let mut samples = Vec::with_capacity(trun.samples.len().min(MAX_SAMPLES));
            let mut bytes = 0u64;
            for e in trun.samples.iter() {
                let duration = e.duration.unwrap_or(def_duration);
                let flags = e.flags.unwrap_or(def_flags);
                let size = e.size.unwrap_or(def_size);
                let pts = dts.checked_add(e.cts.unwrap_or(0)).ok_or_else(overflow)?;
                samples.push(Sample {
                    track: id,
                    dts,
                    pts,
                    duration,
                    keyframe: audio || flags & NON_SYNC == 0,
                    size,
                });
                bytes += u64::from(size);
                dts = dts.checked_add(i64::from(duration)).ok_or_else(overflow)?;
                if samples.len() > MAX_SAMPLES {
                    return Err(ClipError::invalid("a trun holds too many samples"));
                }
            }
            next_data = offset + bytes;
            if !samples.is_empty() {
                out.push(Run {
                    track: id,
                    offset,
                    samples,
                });
            }
        }
        prev_traf_end = next_data;
        state.next_dts = dts;
    }
    Ok(())
}
