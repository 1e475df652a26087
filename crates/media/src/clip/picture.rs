//! One frame's input for a decoder: the fewest samples of a segment that decode that frame, as a
//! small MP4 (what `/thumbnail` hands to ffmpeg).
//!
//! A frame decodes from the last keyframe at or before it in decode order (not the segment's
//! first: a camera's GOP may be shorter than a segment). Of the samples between, only those that
//! other pictures refer to are needed: an H.264 picture whose slices all have `nal_ref_idc` 0 is
//! never used for reference (ISO/IEC 14496-10, 7.4.1), so it is left out, as are the samples
//! after the frame in decode order. Dropping non-reference pictures is what the standard's
//! temporal scalability does: `frame_num` counts reference pictures only, so no gap appears. A
//! camera's non-reference B-frames are about half of its GOP, and so about half of a cold
//! thumbnail's decode. Other codecs keep every sample from the keyframe to the frame.
//!
//! The sample tables keep the real decode-time steps (a left-out sample's time is added to the
//! one before it), so every kept frame keeps its presentation time, and the edit list covers
//! every kept frame: nothing is discarded by a player that honours it, and the frame is the
//! [`PictureInput::index`]-th in presentation order whether the edit list is honoured or not.

use bytes::Bytes;
use mp4_atom::Codec;

use super::{ClipError, ClipInit, OutTrack, ReadAt, edit, ftyp, moov, non_negative};
use crate::fragment::Sample;
use crate::init::TrackKind;

/// The decoder's input for one frame.
#[derive(Debug, Clone)]
pub struct PictureInput {
    /// A plain MP4 (`ftyp`, `moov`, `mdat`) with the video track only.
    pub file: Vec<u8>,
    /// The frame's place among the file's frames in presentation order.
    pub index: usize,
    /// Samples in the file (the keyframe, the references between, the frame).
    pub samples: usize,
    /// Samples between the keyframe and the frame left out (not referred to).
    pub skipped: usize,
}

/// The input that decodes frame `index` (presentation order, as a frame table counts) of
/// `segment`, a fragmented segment of `init`.
pub fn picture(init: &ClipInit, segment: &Bytes, index: usize) -> Result<PictureInput, ClipError> {
    let video = init
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .ok_or(ClipError::NoVideo)?;
    let runs = init
        .scan(&[segment as &dyn ReadAt])?
        .pop()
        .unwrap_or_default();
    // Every video sample in decode order, with where its bytes are.
    let mut vs: Vec<(Sample, usize)> = Vec::new();
    for r in runs.iter().filter(|r| r.track == video.id) {
        let mut at = usize::try_from(r.offset).map_err(|_| ClipError::invalid("an offset"))?;
        for &s in &r.samples {
            if vs.last().is_some_and(|(p, _)| s.dts <= p.dts) {
                return Err(ClipError::invalid("decode times do not increase"));
            }
            vs.push((s, at));
            at += s.size as usize;
        }
    }
    if vs
        .iter()
        .any(|&(s, at)| at + s.size as usize > segment.len())
    {
        return Err(ClipError::invalid(
            "a sample runs past the end of the segment",
        ));
    }
    let mut by_pts: Vec<usize> = (0..vs.len()).collect();
    by_pts.sort_by_key(|&i| vs[i].0.pts);
    let &target = by_pts.get(index).ok_or_else(|| {
        ClipError::invalid(format!(
            "frame {index} asked of a segment of {} frames",
            vs.len()
        ))
    })?;
    let key = (0..=target)
        .rev()
        .find(|&i| vs[i].0.keyframe)
        .ok_or_else(|| ClipError::invalid("no keyframe before the frame in its segment"))?;
    let nal_length = nal_length_size(init, video.id);
    let bytes_of = |i: usize| &segment[vs[i].1..vs[i].1 + vs[i].0.size as usize];
    let kept: Vec<usize> = (key..=target)
        .filter(|&i| {
            i == key
                || i == target
                || !nal_length.is_some_and(|n| never_referred_to(bytes_of(i), n))
        })
        .collect();
    let samples: Vec<Sample> = kept.iter().map(|&i| vs[i].0).collect();
    let first_pts = samples.iter().map(|s| s.pts).min().unwrap_or(0);
    let end_pts = samples
        .iter()
        .map(|s| s.pts + i64::from(s.duration.max(1)))
        .max()
        .unwrap_or(0);
    let new_index = samples.iter().filter(|s| s.pts < vs[target].0.pts).count();
    let payload: usize = samples.iter().map(|s| s.size as usize).sum();
    let track = OutTrack {
        id: video.id,
        timescale: video.timescale,
        samples,
        chunks: vec![(u32::try_from(kept.len()).unwrap_or(u32::MAX), 0)],
        edits: vec![edit(
            non_negative(end_pts - first_pts, "the frames' span")?,
            Some(non_negative(
                first_pts - vs[key].0.dts,
                "the first frame's offset",
            )?),
        )],
    };
    let ftyp = ftyp();
    let mdat_header = 8usize;
    let moov_len = moov(init, std::slice::from_ref(&track), 0, false)?.len();
    let base = ftyp.len() + moov_len + mdat_header;
    let moov_bytes = moov(init, std::slice::from_ref(&track), base as u64, false)?;
    let mut file = Vec::with_capacity(base + payload);
    file.extend_from_slice(&ftyp);
    file.extend_from_slice(&moov_bytes);
    let mdat_len = u32::try_from(payload + mdat_header)
        .map_err(|_| ClipError::invalid("a picture's samples over 4 GiB"))?;
    file.extend_from_slice(&mdat_len.to_be_bytes());
    file.extend_from_slice(b"mdat");
    for &i in &kept {
        file.extend_from_slice(bytes_of(i));
    }
    Ok(PictureInput {
        file,
        index: new_index,
        samples: kept.len(),
        skipped: target - key + 1 - kept.len(),
    })
}

/// The NAL unit length size of an H.264 track (`avcC`), `None` for other codecs.
fn nal_length_size(init: &ClipInit, track: u32) -> Option<usize> {
    let trak = init.moov.trak.iter().find(|t| t.tkhd.track_id == track)?;
    let avcc = match trak.mdia.minf.stbl.stsd.codecs.first()? {
        Codec::Avc1(c) => &c.avcc,
        Codec::Avc3(c) => &c.avcc,
        _ => return None,
    };
    Some(usize::from(avcc.length_size)).filter(|n| (1..=4).contains(n))
}

/// Whether an H.264 sample (length-prefixed NAL units) is a picture no other picture refers to:
/// it has slices, and every slice's `nal_ref_idc` is 0. Anything unreadable counts as referred to.
fn never_referred_to(sample: &[u8], length_size: usize) -> bool {
    let mut at = 0usize;
    let mut slices = 0usize;
    while at < sample.len() {
        let Some(len_bytes) = sample.get(at..at + length_size) else {
            return false;
        };
        let len = len_bytes
            .iter()
            .fold(0usize, |v, &b| (v << 8) | usize::from(b));
        at += length_size;
        let Some(&header) = sample.get(at) else {
            return false;
        };
        if len == 0 || at + len > sample.len() {
            return false;
        }
        // Slices: 1 (non-IDR), 5 (IDR), 2-4 (data partitions), 20 (extension).
        if matches!(header & 0x1f, 1..=5 | 20) {
            if header & 0x60 != 0 {
                return false;
            }
            slices += 1;
        }
        at += len;
    }
    slices > 0
}

#[cfg(test)]
mod tests {
    use super::never_referred_to;

    fn nal(header: u8, body: &[u8]) -> Vec<u8> {
        let mut v = u32::try_from(body.len() + 1)
            .unwrap_or(0)
            .to_be_bytes()
            .to_vec();
        v.push(header);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn only_pictures_whose_slices_all_have_nal_ref_idc_0_are_never_referred_to() {
        let sei = nal(0x06, &[1, 2, 3]);
        let b_slice = nal(0x01, &[0x9a, 0x00]);
        let p_slice = nal(0x41, &[0x9a, 0x00]);
        let idr = nal(0x65, &[0x88]);
        assert!(never_referred_to(
            &[sei.clone(), b_slice.clone()].concat(),
            4
        ));
        assert!(never_referred_to(
            &[b_slice.clone(), b_slice.clone()].concat(),
            4
        ));
        assert!(!never_referred_to(
            &[b_slice.clone(), p_slice.clone()].concat(),
            4
        ));
        assert!(!never_referred_to(&idr, 4));
        assert!(!never_referred_to(&sei, 4), "no slice: kept");
        let mut cut = b_slice.clone();
        cut.pop();
        assert!(!never_referred_to(&cut, 4), "a length past the end: kept");
        assert!(!never_referred_to(&[], 4));
        // Two-byte lengths.
        assert!(never_referred_to(&[0, 2, 0x01, 0x9a], 2));
    }
}
