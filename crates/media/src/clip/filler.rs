//! A filler picture that costs a decoder next to nothing: a flat grey IDR picture of the stream's
//! size, written for the stream's own sequence parameter set.
//!
//! A decoder kept running is pushed to give out the frame asked for by pictures after it
//! ([`super::feed_picture`]'s fillers). Any IDR picture of the stream's size does (an IDR picture
//! starts afresh, so what it holds is of no matter), but a copy of the segment's keyframe costs a
//! keyframe's decode each time: a camera's keyframe is its largest picture (tens of KB of
//! residual to decode and deblock). This one is one slice in which every macroblock is
//! `I_16x16` with DC prediction and nothing coded (one byte a macroblock in CAVLC: `mb_type` 3,
//! `intra_chroma_pred_mode` 0, `mb_qp_delta` 0, an empty DC block), with the deblocking filter
//! off: ~3.6 KB at 720p, decoded as fast as a decoder can walk the macroblocks.
//!
//! It refers to the stream's active SPS (the keyframe's, so size, bit depth, chroma format,
//! aspect ratio and VUI are the stream's own and the decoder does not reconfigure) through a
//! picture parameter set of its own carried in the same sample, under an id the stream does
//! not use (CAVLC whatever the stream's entropy coder, the deblocking control present). Streams
//! it cannot be written for (fields or MBAFF, 4:4:4 or monochrome, parameter sets it cannot
//! read) get `None`, and the caller keeps copying the keyframe.
//!
//! Written here rather than by an encoder: no crate writes H.264 slices, and running ffmpeg's
//! encoder per stream would need libx264 (GPL) in the ffmpeg a user runs; the syntax is a few
//! dozen bits (ITU-T H.264 7.3.2.2, 7.3.3, 7.3.4, 7.3.5), written with h264-reader's bit and
//! emulation-prevention writers.

use h264_reader::Context;
use h264_reader::nal::NalHeader;
use h264_reader::nal::pps::PicParameterSet;
use h264_reader::nal::slice::SliceHeader;
use h264_reader::nal::sps::{ChromaFormat, FrameMbsFlags, PicOrderCntType, SeqParameterSet};
use h264_reader::rbsp::{BitReader, BitWrite, BitWriter, ByteWriter, decode_nal};

/// NAL unit types (ITU-T H.264 table 7-1).
const IDR_SLICE: u8 = 5;
const SPS: u8 = 7;
const PPS: u8 = 8;

/// The filler sample (length-prefixed NAL units of `length_size` bytes: its PPS, then its IDR
/// slice) for a stream whose parameter sets are `sps` and `pps` (from `avcC`) and whose
/// keyframe sample is `keyframe` (which may carry parameter sets of its own, in-band).
pub fn light_filler(
    sps: &[Vec<u8>],
    pps: &[Vec<u8>],
    keyframe: &[u8],
    length_size: usize,
) -> Option<Vec<u8>> {
    if !(1..=4).contains(&length_size) {
        return None;
    }
    let in_band = nal_units(keyframe, length_size)?;
    let mut ctx = Context::default();
    let mut used_pps = Vec::new();
    let all = || {
        sps.iter()
            .chain(pps)
            .map(Vec::as_slice)
            .chain(in_band.iter().copied())
    };
    for nal in all().filter(|n| n.first().is_some_and(|h| h & 0x1f == SPS)) {
        let rbsp = decode_nal(nal).ok()?;
        ctx.put_seq_param_set(SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).ok()?);
    }
    for nal in all().filter(|n| n.first().is_some_and(|h| h & 0x1f == PPS)) {
        let rbsp = decode_nal(nal).ok()?;
        let p = PicParameterSet::from_bits(&ctx, BitReader::new(&rbsp[..])).ok()?;
        used_pps.push(p.pic_parameter_set_id.id());
        ctx.put_pic_param_set(p);
    }
    let slice = in_band
        .iter()
        .find(|n| n.first().is_some_and(|h| h & 0x1f == IDR_SLICE))?;
    let header = NalHeader::new(slice[0]).ok()?;
    let rbsp = decode_nal(slice).ok()?;
    let (key, active, _) =
        SliceHeader::from_bits(&ctx, &mut BitReader::new(&rbsp[..]), header, None).ok()?;
    let pps_id = (0..=255u8).rev().find(|id| !used_pps.contains(id))?;
    // Another id than the keyframe's (two IDR pictures in a row should differ).
    let idr_pic_id = key.idr_pic_id.map_or(0, |k| k.wrapping_add(1) % 65_536);
    let mut sample = Vec::new();
    for nal in [
        pps_nal(pps_id, active)?,
        idr_nal(pps_id, idr_pic_id, active)?,
    ] {
        let len = u32::try_from(nal.len()).ok()?.to_be_bytes();
        sample.extend_from_slice(len.get(4 - length_size..)?);
        if length_size < 4 && nal.len() >> (8 * length_size) != 0 {
            return None;
        }
        sample.extend_from_slice(&nal);
    }
    Some(sample)
}

/// The NAL units of a length-prefixed sample (`None` if a length runs past its end).
fn nal_units(sample: &[u8], length_size: usize) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < sample.len() {
        let len = sample
            .get(at..at + length_size)?
            .iter()
            .fold(0usize, |v, &b| (v << 8) | usize::from(b));
        at += length_size;
        out.push(sample.get(at..at + len)?);
        at += len;
    }
    Some(out)
}

/// A NAL unit: `header`, then the RBSP `write` makes, with its trailing bits, escaped.
fn nal(
    header: u8,
    write: impl FnOnce(&mut BitWriter<ByteWriter<&mut Vec<u8>>>) -> std::io::Result<()>,
) -> Option<Vec<u8>> {
    let mut out = vec![header];
    // Whole bytes go through as they fill; the trailing bits end on a byte.
    let mut w = BitWriter::new(ByteWriter::new(&mut out));
    write(&mut w).ok()?;
    w.write_rbsp_trailing_bits().ok()?;
    w.into_writer();
    Some(out)
}

/// The filler's picture parameter set (7.3.2.2): CAVLC, one slice group, no weighted
/// prediction, QP 26, the deblocking filter control present, nothing more.
fn pps_nal(pps_id: u8, sps: &SeqParameterSet) -> Option<Vec<u8>> {
    nal(0x68, |w| {
        w.write_ue(u32::from(pps_id))?;
        w.write_ue(u32::from(sps.seq_parameter_set_id.id()))?;
        w.write_bit(false)?; // entropy_coding_mode_flag: CAVLC
        w.write_bit(false)?; // bottom_field_pic_order_in_frame_present_flag
        w.write_ue(0)?; // num_slice_groups_minus1
        w.write_ue(0)?; // num_ref_idx_l0_default_active_minus1
        w.write_ue(0)?; // num_ref_idx_l1_default_active_minus1
        w.write_bit(false)?; // weighted_pred_flag
        w.write_var(2, 0u8)?; // weighted_bipred_idc
        w.write_se(0)?; // pic_init_qp_minus26
        w.write_se(0)?; // pic_init_qs_minus26
        w.write_se(0)?; // chroma_qp_index_offset
        w.write_bit(true)?; // deblocking_filter_control_present_flag
        w.write_bit(false)?; // constrained_intra_pred_flag
        w.write_bit(false) // redundant_pic_cnt_present_flag
    })
}

/// The filler's IDR slice (7.3.3, 7.3.4): the whole frame, flat grey.
fn idr_nal(pps_id: u8, idr_pic_id: u32, sps: &SeqParameterSet) -> Option<Vec<u8>> {
    if sps.frame_mbs_flags != FrameMbsFlags::Frames
        || !matches!(
            sps.chroma_info.chroma_format,
            ChromaFormat::YUV420 | ChromaFormat::YUV422
        )
        || sps.chroma_info.separate_colour_plane_flag
    {
        return None;
    }
    let macroblocks = sps
        .pic_width_in_mbs()
        .checked_mul(sps.pic_height_in_map_units())?;
    if macroblocks == 0 || macroblocks > 139_264 {
        // Level 6.2's MaxFS: anything larger is not a stream a decoder takes.
        return None;
    }
    let frame_num_bits = u32::from(sps.log2_max_frame_num());
    // nal_ref_idc 3, IDR slice.
    nal(0x65, |w| {
        w.write_ue(0)?; // first_mb_in_slice
        w.write_ue(7)?; // slice_type: I (every slice of the picture)
        w.write_ue(u32::from(pps_id))?;
        w.write_var(frame_num_bits, 0u32)?; // frame_num: 0 in an IDR picture
        w.write_ue(idr_pic_id)?;
        match &sps.pic_order_cnt {
            PicOrderCntType::TypeZero {
                log2_max_pic_order_cnt_lsb_minus4,
            } => w.write_var(u32::from(*log2_max_pic_order_cnt_lsb_minus4) + 4, 0u32)?,
            PicOrderCntType::TypeOne {
                delta_pic_order_always_zero_flag: false,
                ..
            } => w.write_se(0)?, // delta_pic_order_cnt[0]
            PicOrderCntType::TypeOne { .. } | PicOrderCntType::TypeTwo => {}
        }
        // dec_ref_pic_marking (an IDR picture): output the pictures before it, short-term.
        w.write_bit(false)?; // no_output_of_prior_pics_flag
        w.write_bit(false)?; // long_term_reference_flag
        w.write_se(0)?; // slice_qp_delta
        w.write_ue(1)?; // disable_deblocking_filter_idc: off
        // slice_data: mb_type I_16x16_2_0_0 (ue 3 = 00100), intra_chroma_pred_mode DC (ue 0),
        // mb_qp_delta 0 (se 0), Intra16x16DCLevel with no coefficient (coeff_token 1).
        for _ in 0..macroblocks {
            w.write_var(8, 0b0010_0111u8)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::light_filler;

    /// What it cannot read gives `None` (the caller copies the keyframe), never a panic.
    #[test]
    fn unreadable_input_gives_none() {
        let idr = [0, 0, 0, 5, 0x65, 0x88, 0x84, 0x00, 0x10];
        assert!(light_filler(&[], &[], &idr, 4).is_none(), "no SPS");
        assert!(light_filler(&[], &[], &idr, 0).is_none(), "no length size");
        assert!(light_filler(&[], &[], &idr, 5).is_none());
        assert!(light_filler(&[], &[], &idr[..6], 4).is_none(), "cut short");
        assert!(light_filler(&[vec![0x67, 0xff]], &[vec![0x68]], &idr, 4).is_none());
        assert!(light_filler(&[], &[], &[], 4).is_none(), "no slice");
    }
}
