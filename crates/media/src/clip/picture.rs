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

use super::filler::light_filler;
use super::{
    ClipError, ClipInit, OutTrack, ReadAt, body_of, container, edit, encoded, ftyp, moov,
    non_negative,
};
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
    let sel = Selection::new(init, segment, index)?;
    let samples: Vec<Sample> = sel.kept.iter().map(|&i| sel.vs[i].0).collect();
    let first_pts = samples.iter().map(|s| s.pts).min().unwrap_or(0);
    let end_pts = samples
        .iter()
        .map(|s| s.pts + i64::from(s.duration.max(1)))
        .max()
        .unwrap_or(0);
    let new_index = samples
        .iter()
        .filter(|s| s.pts < sel.vs[sel.target].0.pts)
        .count();
    let payload: usize = samples.iter().map(|s| s.size as usize).sum();
    let track = OutTrack {
        id: sel.video.id,
        timescale: sel.video.timescale,
        samples,
        chunks: vec![(u32::try_from(sel.kept.len()).unwrap_or(u32::MAX), 0)],
        edits: vec![edit(
            non_negative(end_pts - first_pts, "the frames' span")?,
            Some(non_negative(
                first_pts - sel.vs[sel.key].0.dts,
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
    for &i in &sel.kept {
        file.extend_from_slice(sel.bytes_of(i));
    }
    Ok(PictureInput {
        file,
        index: new_index,
        samples: sel.kept.len(),
        skipped: sel.target - sel.key + 1 - sel.kept.len(),
    })
}

/// Which samples of a segment decode one frame.
struct Selection<'a> {
    video: &'a crate::init::Track,
    segment: &'a Bytes,
    /// Every video sample in decode order, with where its bytes are.
    vs: Vec<(Sample, usize)>,
    /// The frame asked for, its keyframe, and the samples kept from the one to the other.
    target: usize,
    key: usize,
    kept: Vec<usize>,
    /// `avcC`'s NAL length size (H.264 only).
    nal_length: Option<usize>,
}

impl<'a> Selection<'a> {
    fn new(init: &'a ClipInit, segment: &'a Bytes, index: usize) -> Result<Self, ClipError> {
        let video = init
            .tracks
            .iter()
            .find(|t| t.kind == TrackKind::Video)
            .ok_or(ClipError::NoVideo)?;
        let runs = init
            .scan(&[segment as &dyn ReadAt])?
            .pop()
            .unwrap_or_default();
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
        let mut sel = Self {
            video,
            segment,
            vs,
            target,
            key,
            kept: Vec::new(),
            nal_length,
        };
        sel.kept = (key..=target)
            .filter(|&i| {
                i == key
                    || i == target
                    || !nal_length.is_some_and(|n| never_referred_to(sel.bytes_of(i), n))
            })
            .collect();
        Ok(sel)
    }

    fn bytes_of(&self, i: usize) -> &'a [u8] {
        let (s, at) = self.vs[i];
        &self.segment[at..at + s.size as usize]
    }
}

/// A decoder kept running is fed one picture after another as the fragments of one endless
/// fragmented MP4 ([`feed_init`], then a [`feed_picture`] per picture), and the picture asked
/// for is told from the others by its presentation time alone: it is the only one whose time is
/// [`FEED_TARGET`] modulo [`FEED_STEP`] (ffmpeg: `select=eq(mod(pts\,4)\,1)` with `-copyts`).
pub const FEED_STEP: u64 = STEP as u64;
/// [`FEED_STEP`] as a sample duration.
const STEP: u32 = 4;
/// See [`FEED_STEP`].
pub const FEED_TARGET: u64 = 1;

/// One picture for a decoder kept running ([`FEED_STEP`]).
#[derive(Debug, Clone)]
pub struct FeedPicture {
    /// `moof` + `mdat`: the samples from the keyframe to the frame (as [`picture`] keeps them),
    /// then the fillers.
    pub fragment: Vec<u8>,
    /// The `tfdt` of the next picture's fragment (decode and presentation times only grow).
    pub next_base: u64,
    /// Samples of the picture (without fillers) and those left out (as [`PictureInput`]).
    pub samples: usize,
    pub skipped: usize,
    /// How many pictures a decoder holds back to put them in order: the stream's announced
    /// reorder depth (SPS), or, unannounced, the most pictures of the segment decoded before one
    /// they are shown after (at least).
    pub reorder: usize,
    /// Frames of the fragment decoded before the frame asked for and shown after it: a decoder
    /// holds them when the frame is decoded, so it needs that many fewer pushes to let the
    /// frame out.
    pub held: usize,
    /// Fillers in the fragment (what `fillers` answered for `reorder` less `held`).
    pub fillers: usize,
    /// Whether the fillers are the light grey picture ([`super::filler`]), not keyframe copies.
    pub light: bool,
    /// The video track and the filler's sample (for [`feed_filler`]).
    pub track: u32,
    pub filler: Bytes,
}

/// The init section of a decoder kept running: `ftyp`, and a `moov` with the video track's
/// `stsd` copied from `init`, no samples and no edit list, and an `mvex`.
pub fn feed_init(init: &ClipInit) -> Result<Vec<u8>, ClipError> {
    let video = init
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .ok_or(ClipError::NoVideo)?;
    let track = OutTrack {
        id: video.id,
        timescale: video.timescale,
        samples: Vec::new(),
        chunks: Vec::new(),
        edits: Vec::new(),
    };
    let moov_bytes = moov(init, std::slice::from_ref(&track), 0, false)?;
    let trex = encoded(&mp4_atom::Trex {
        track_id: video.id,
        default_sample_description_index: 1,
        ..Default::default()
    })?;
    let mvex = container(b"mvex", &[&trex]);
    let mut file = ftyp();
    file.extend_from_slice(&container(b"moov", &[body_of(&moov_bytes), &mvex]));
    Ok(file)
}

/// The fragment that gives frame `index` of `segment` to a decoder kept running on
/// [`feed_init`] of `init`: the samples [`picture`] keeps, then `fillers` filler pictures (a
/// flat grey IDR picture written for the stream, [`super::filler`], or where that cannot be
/// written, copies of the keyframe), which push the frame out of a decoder that holds pictures back (to reorder them,
/// or one per extra frame thread) and are never shown (see [`FEED_STEP`]). `fillers` is told
/// how many pictures the reordering alone needs after the frame: the decoder's reorder depth
/// ([`FeedPicture::reorder`]) less those it already holds that are shown after the frame
/// ([`FeedPicture::held`]); the caller adds its frame threads. Decode times start at
/// `base` and step by [`FEED_STEP`]; presentation times keep the frames' order, all after every
/// decode time of the fragment, the frame's at [`FEED_TARGET`] modulo the step.
///
/// H.264 only, and only when the keyframe is an IDR picture (which starts afresh whatever was
/// decoded before it); otherwise [`ClipError::Invalid`] and the caller decodes as [`picture`].
pub fn feed_picture(
    init: &ClipInit,
    segment: &Bytes,
    index: usize,
    sequence: u32,
    base: u64,
    fillers: impl FnOnce(usize) -> usize,
) -> Result<FeedPicture, ClipError> {
    let sel = Selection::new(init, segment, index)?;
    let n = sel
        .nal_length
        .ok_or_else(|| ClipError::invalid("not H.264"))?;
    if !has_idr_slice(sel.bytes_of(sel.key), n) {
        return Err(ClipError::invalid("its keyframe is not an IDR picture"));
    }
    let shown = (0..sel.vs.len())
        .map(|i| {
            (0..i)
                .filter(|&j| sel.vs[j].0.pts > sel.vs[i].0.pts)
                .count()
        })
        .max()
        .unwrap_or(0);
    // What the decoder holds back: what the stream announces (a decoder takes it as told), else
    // what the segment shows (a decoder finds it out as it goes; `fillers` may add to it).
    let reorder = announced_reorder(init, sel.video.id).map_or(shown, |a| a.max(shown));
    let target_pts = sel.vs[sel.target].0.pts;
    let held = sel
        .kept
        .iter()
        .take_while(|&&i| i != sel.target)
        .filter(|&&i| sel.vs[i].0.pts > target_pts)
        .count();
    let fillers = fillers(reorder.saturating_sub(held));
    let k = sel.kept.len() as u64;
    let step = FEED_STEP;
    let mut rank: Vec<usize> = (0..sel.kept.len()).collect();
    rank.sort_by_key(|&j| sel.vs[sel.kept[j]].0.pts);
    let mut shown_at = vec![0u64; sel.kept.len()];
    for (r, &j) in rank.iter().enumerate() {
        shown_at[j] = r as u64;
    }
    let key_bytes = sel.bytes_of(sel.key);
    let light = avcc(init, sel.video.id).and_then(|c| {
        light_filler(
            &c.sequence_parameter_sets,
            &c.picture_parameter_sets,
            key_bytes,
            n,
        )
    });
    let filler: &[u8] = light.as_deref().unwrap_or(key_bytes);
    let flags = |key: bool| if key { 0x0200_0000 } else { 0x0101_0000 };
    let mut entries = Vec::with_capacity(sel.kept.len() + fillers);
    for (j, &i) in sel.kept.iter().enumerate() {
        let tag = if i == sel.target { FEED_TARGET } else { 0 };
        // pts - dts = (rank + k - j) steps (+ tag): never negative, as rank >= 0 and j < k.
        let cts = (shown_at[j] + k - j as u64) * step + tag;
        entries.push(mp4_atom::TrunEntry {
            duration: Some(STEP),
            size: Some(sel.vs[i].0.size),
            flags: Some(flags(sel.vs[i].0.keyframe)),
            cts: Some(i64::try_from(cts).map_err(|_| ClipError::invalid("a picture too long"))?),
        });
    }
    for _ in 0..fillers {
        entries.push(mp4_atom::TrunEntry {
            duration: Some(STEP),
            size: Some(u32::try_from(filler.len()).unwrap_or(u32::MAX)),
            flags: Some(flags(true)),
            // Shown after the picture's frames (k + j steps after its own decode time).
            cts: Some(i64::try_from(k * step).unwrap_or(i64::MAX)),
        });
    }
    let mut payload: Vec<&[u8]> = sel.kept.iter().map(|&i| sel.bytes_of(i)).collect();
    payload.extend(std::iter::repeat_n(filler, fillers));
    let fragment = fragment(sel.video.id, sequence, base, entries, &payload)?;
    Ok(FeedPicture {
        fragment,
        next_base: base + (2 * k + fillers as u64 + 1) * step,
        samples: sel.kept.len(),
        skipped: sel.target - sel.key + 1 - sel.kept.len(),
        reorder,
        held,
        fillers,
        light: light.is_some(),
        track: sel.video.id,
        filler: Bytes::copy_from_slice(filler),
    })
}

/// One more filler after `picture` (a decoder that holds back more pictures than thought): a
/// fragment of one filler at `base`, and the next fragment's `tfdt`.
pub fn feed_filler(
    picture: &FeedPicture,
    sequence: u32,
    base: u64,
) -> Result<(Vec<u8>, u64), ClipError> {
    let entry = mp4_atom::TrunEntry {
        duration: Some(STEP),
        size: Some(u32::try_from(picture.filler.len()).unwrap_or(u32::MAX)),
        flags: Some(0x0200_0000),
        cts: Some(i64::from(STEP)),
    };
    let f = fragment(
        picture.track,
        sequence,
        base,
        vec![entry],
        &[&picture.filler],
    )?;
    Ok((f, base + 2 * FEED_STEP))
}

/// `moof` (one `traf` of `track` with `tfdt` `base` and one `trun` of `entries`) + `mdat`.
fn fragment(
    track: u32,
    sequence: u32,
    base: u64,
    entries: Vec<mp4_atom::TrunEntry>,
    payload: &[&[u8]],
) -> Result<Vec<u8>, ClipError> {
    let bytes: usize = payload.iter().map(|p| p.len()).sum();
    let mut moof = mp4_atom::Moof {
        mfhd: mp4_atom::Mfhd {
            sequence_number: sequence,
        },
        traf: vec![mp4_atom::Traf {
            tfhd: mp4_atom::Tfhd {
                track_id: track,
                default_base_is_moof: true,
                ..Default::default()
            },
            tfdt: Some(mp4_atom::Tfdt {
                base_media_decode_time: base,
            }),
            trun: vec![mp4_atom::Trun {
                data_offset: Some(0),
                samples: mp4_atom::TrunSamples::Explicit(entries),
            }],
            ..Default::default()
        }],
    };
    let moof_len = encoded(&moof)?.len();
    let data_offset = i32::try_from(moof_len + 8)
        .map_err(|_| ClipError::invalid("a fragment header over 2 GiB"))?;
    if let Some(t) = moof.traf.first_mut().and_then(|t| t.trun.first_mut()) {
        t.data_offset = Some(data_offset);
    }
    let mut out = encoded(&moof)?;
    let mdat_len = u32::try_from(bytes + 8)
        .map_err(|_| ClipError::invalid("a picture's samples over 4 GiB"))?;
    out.reserve(bytes + 8);
    out.extend_from_slice(&mdat_len.to_be_bytes());
    out.extend_from_slice(b"mdat");
    for p in payload {
        out.extend_from_slice(p);
    }
    Ok(out)
}

/// Whether an H.264 sample holds a slice of an IDR picture (NAL unit type 5).
fn has_idr_slice(sample: &[u8], length_size: usize) -> bool {
    nal_headers(sample, length_size).any(|h| h & 0x1f == 5)
}

/// The header byte of each NAL unit of a length-prefixed sample, up to the first that does not
/// fit.
fn nal_headers(sample: &[u8], length_size: usize) -> impl Iterator<Item = u8> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let len_bytes = sample.get(at..at + length_size)?;
        let len = len_bytes
            .iter()
            .fold(0usize, |v, &b| (v << 8) | usize::from(b));
        let header = *sample.get(at + length_size)?;
        if len == 0 || at + length_size + len > sample.len() {
            return None;
        }
        at += length_size + len;
        Some(header)
    })
}

impl ClipInit {
    /// Whether the video track is H.264 (what [`feed_picture`] takes).
    pub fn is_h264(&self) -> bool {
        self.tracks
            .iter()
            .find(|t| t.kind == TrackKind::Video)
            .is_some_and(|v| nal_length_size(self, v.id).is_some())
    }
}

/// The NAL unit length size of an H.264 track (`avcC`), `None` for other codecs.
fn nal_length_size(init: &ClipInit, track: u32) -> Option<usize> {
    Some(usize::from(avcc(init, track)?.length_size)).filter(|n| (1..=4).contains(n))
}

/// The H.264 decoder configuration of `track`.
fn avcc(init: &ClipInit, track: u32) -> Option<&mp4_atom::Avcc> {
    let trak = init.moov.trak.iter().find(|t| t.tkhd.track_id == track)?;
    match trak.mdia.minf.stbl.stsd.codecs.first()? {
        Codec::Avc1(c) => Some(&c.avcc),
        Codec::Avc3(c) => Some(&c.avcc),
        _ => None,
    }
}

/// The reorder depth the stream's sequence parameter set announces (its VUI's
/// `max_num_reorder_frames`), which a decoder takes as its delay; `None` when the set does not
/// say (a decoder then finds the delay out from the pictures) or cannot be read.
fn announced_reorder(init: &ClipInit, track: u32) -> Option<usize> {
    let nal = avcc(init, track)?.sequence_parameter_sets.first()?;
    let rbsp = h264_reader::rbsp::decode_nal(nal).ok()?;
    let sps = h264_reader::nal::sps::SeqParameterSet::from_bits(h264_reader::rbsp::BitReader::new(
        &rbsp[..],
    ))
    .ok()?;
    let restrictions = sps.vui_parameters?.bitstream_restrictions?;
    usize::try_from(restrictions.max_num_reorder_frames).ok()
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
