//! A movie fragment (`moof` + `mdat`) and its samples' times, and `tfdt` rebasing in place.

use bytes::{Bytes, BytesMut};
use mp4_atom::{Decode, FourCC, Moof, Prft};

use crate::MediaError;
use crate::boxes;
use crate::init::{TrackDefaults, TrackKind};

/// `sample_is_non_sync_sample` in the sample flags (ISO/IEC 14496-12 8.8.3.1).
const NON_SYNC: u32 = 0x0001_0000;

/// One sample (a video frame or an audio frame). Times in the track's own timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sample {
    pub track: u32,
    pub dts: i64,
    pub pts: i64,
    pub duration: u32,
    /// A sync sample (an IDR frame); every audio sample is one.
    pub keyframe: bool,
    pub size: u32,
}

/// One movie fragment as it came from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// `moof` + `mdat`, with any `styp`/`prft`/`emsg` that came right before the `moof`.
    pub bytes: Bytes,
    /// Every sample, in decode order within each track, tracks in `traf` order.
    pub samples: Vec<Sample>,
}

/// A producer reference time (`prft`, ffmpeg's `-write_prft`): the wall time at which the sample
/// of `track` at `media_time` was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerTime {
    pub track: u32,
    /// NTP format: seconds since 1900 in the high 32 bits, the fraction in the low 32.
    pub ntp: u64,
    /// In the track's timescale, as in the fragment (before any [`Fragment::shift`]).
    pub media_time: u64,
}

impl Fragment {
    /// First sample of `video_track` in this fragment is a sync sample. `false` when the fragment
    /// has no sample of that track.
    pub fn starts_with_keyframe(&self, video_track: u32) -> bool {
        self.samples
            .iter()
            .find(|s| s.track == video_track)
            .is_some_and(|s| s.keyframe)
    }

    /// Adds `delta` (track timescale) to the track's `tfdt` in `bytes` (patched in place; a
    /// version-0 tfdt that would overflow is an error) and to its samples' dts/pts. A negative
    /// result is an error too. Nothing changes when it fails. A fragment without samples of
    /// `track` is left alone; one with samples but no `tfdt` for it cannot be shifted.
    ///
    /// `bytes` is patched without copying when this fragment holds the only reference to them
    /// (as the reader hands them out); otherwise they are copied once.
    pub fn shift(&mut self, track: u32, delta: i64) -> Result<(), MediaError> {
        if delta == 0 {
            return Ok(());
        }
        let locs = boxes::find_tfdts(&self.bytes, track);
        if locs.is_empty() {
            if self.samples.iter().any(|s| s.track == track) {
                return Err(MediaError::NoTfdt { track });
            }
            return Ok(());
        }
        // Check everything before touching anything.
        let mut new_values = Vec::with_capacity(locs.len());
        for l in &locs {
            let max = if l.version == 0 {
                u64::from(u32::MAX)
            } else {
                u64::MAX
            };
            let to = i128::from(l.signed()) + i128::from(delta);
            let fits = u64::try_from(to).ok().filter(|&v| v <= max);
            let Some(v) = fits else {
                return Err(MediaError::ShiftOutOfRange {
                    track,
                    delta,
                    from: l.value,
                    to,
                    max,
                    version: l.version,
                });
            };
            new_values.push(v);
        }
        let fits =
            |s: &Sample| s.dts.checked_add(delta).is_some() && s.pts.checked_add(delta).is_some();
        if !self.samples.iter().filter(|s| s.track == track).all(fits) {
            return Err(MediaError::ShiftOutOfRange {
                track,
                delta,
                from: locs[0].value,
                to: i128::from(locs[0].signed()) + i128::from(delta),
                max: i64::MAX.unsigned_abs(),
                version: locs[0].version,
            });
        }
        let mut b = match std::mem::take(&mut self.bytes).try_into_mut() {
            Ok(b) => b,
            Err(shared) => BytesMut::from(&shared[..]),
        };
        for (l, v) in locs.iter().zip(new_values) {
            let at = l.value_offset;
            if l.version == 0 {
                // Checked against u32::MAX above.
                let v = u32::try_from(v).unwrap_or(u32::MAX);
                b[at..at + 4].copy_from_slice(&v.to_be_bytes());
            } else {
                b[at..at + 8].copy_from_slice(&v.to_be_bytes());
            }
        }
        self.bytes = b.freeze();
        for s in self.samples.iter_mut().filter(|s| s.track == track) {
            // Checked above.
            s.dts = s.dts.saturating_add(delta);
            s.pts = s.pts.saturating_add(delta);
        }
        Ok(())
    }

    /// The `prft` that came with this fragment, if ffmpeg wrote one (`-write_prft`).
    pub fn prft(&self) -> Option<ProducerTime> {
        const PRFT: FourCC = FourCC::new(b"prft");
        let (_, at, len) = boxes::children(&self.bytes).find(|(h, _, _)| h.kind == PRFT)?;
        let mut b = self.bytes.get(at..at + len)?;
        let p = Prft::decode(&mut b).ok()?;
        Some(ProducerTime {
            track: p.reference_track_id,
            ntp: p.ntp_timestamp,
            media_time: p.media_time,
        })
    }

    /// The samples of one track.
    pub fn track_samples(&self, track: u32) -> impl Iterator<Item = &Sample> + '_ {
        self.samples.iter().filter(move |s| s.track == track)
    }

    /// Earliest presentation time and latest presentation end (pts + duration) of a track's
    /// samples, in its timescale; `None` without samples of it.
    pub fn pts_range(&self, track: u32) -> Option<(i64, i64)> {
        self.track_samples(track).fold(None, |acc, s| {
            let end = s.pts.saturating_add(i64::from(s.duration));
            Some(match acc {
                None => (s.pts, end),
                Some((lo, hi)) => (lo.min(s.pts), hi.max(end)),
            })
        })
    }
}

/// Per-track timing state the reader keeps between fragments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrackState {
    pub defaults: TrackDefaults,
    /// Decode time after the last sample seen, for a `traf` without `tfdt`.
    pub next_dts: i64,
}

/// Decodes a `moof` (the whole box in `moof`) and times its samples.
pub(crate) fn samples_of(
    mut moof: &[u8],
    offset: u64,
    tracks: &mut [TrackState],
    max_samples: usize,
) -> Result<Vec<Sample>, MediaError> {
    let kind = FourCC::new(b"moof");
    let m = Moof::decode(&mut moof).map_err(|source| MediaError::Decode {
        kind,
        offset,
        source,
    })?;
    let mut count: u64 = 0;
    for traf in &m.traf {
        for trun in &traf.trun {
            count = count.saturating_add(trun.samples.len() as u64);
        }
    }
    if count > max_samples as u64 {
        return Err(MediaError::TooManySamples {
            offset,
            count,
            max: max_samples as u64,
        });
    }
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for traf in &m.traf {
        let id = traf.tfhd.track_id;
        let Some(state) = tracks.iter_mut().find(|t| t.defaults.id == id) else {
            return Err(MediaError::UnknownTrack { offset, track: id });
        };
        let d = state.defaults;
        let overflow = || MediaError::TimeOverflow { offset, track: id };
        let mut dts = match &traf.tfdt {
            Some(t) => boxes::tfdt_signed(t.base_media_decode_time),
            None => state.next_dts,
        };
        let audio = d.kind == TrackKind::Audio;
        let def_duration = traf.tfhd.default_sample_duration.unwrap_or(d.duration);
        let def_size = traf.tfhd.default_sample_size.unwrap_or(d.size);
        let def_flags = traf.tfhd.default_sample_flags.unwrap_or(d.flags);
        for trun in &traf.trun {
            for e in trun.samples.iter() {
                let duration = e.duration.unwrap_or(def_duration);
                let flags = e.flags.unwrap_or(def_flags);
                let pts = dts.checked_add(e.cts.unwrap_or(0)).ok_or_else(overflow)?;
                out.push(Sample {
                    track: id,
                    dts,
                    pts,
                    duration,
                    keyframe: audio || flags & NON_SYNC == 0,
                    size: e.size.unwrap_or(def_size),
                });
                dts = dts.checked_add(i64::from(duration)).ok_or_else(overflow)?;
            }
        }
        state.next_dts = dts;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// moof { mfhd, traf { tfhd(track), tfdt(version, value) } } + an empty mdat.
    fn fragment(track: u32, version: u8, value: u64) -> Fragment {
        let tfdt_body: Vec<u8> = if version == 0 {
            let mut b = vec![0, 0, 0, 0];
            b.extend_from_slice(&u32::try_from(value).unwrap().to_be_bytes());
            b
        } else {
            let mut b = vec![1, 0, 0, 0];
            b.extend_from_slice(&value.to_be_bytes());
            b
        };
        let boxed = |kind: &[u8; 4], body: &[u8]| {
            let mut b = u32::try_from(body.len() + 8)
                .unwrap()
                .to_be_bytes()
                .to_vec();
            b.extend_from_slice(kind);
            b.extend_from_slice(body);
            b
        };
        let mut tfhd = vec![0, 2, 0, 0];
        tfhd.extend_from_slice(&track.to_be_bytes());
        let traf = [boxed(b"tfhd", &tfhd), boxed(b"tfdt", &tfdt_body)].concat();
        let moof = [
            boxed(b"mfhd", &[0, 0, 0, 0, 0, 0, 0, 1]),
            boxed(b"traf", &traf),
        ]
        .concat();
        let bytes = [boxed(b"moof", &moof), boxed(b"mdat", &[])].concat();
        let v = boxes::tfdt_signed(value);
        Fragment {
            bytes: Bytes::from(bytes),
            samples: vec![Sample {
                track,
                dts: v,
                pts: v + 10,
                duration: 1,
                keyframe: true,
                size: 0,
            }],
        }
    }

    #[test]
    fn version_0_tfdt_shifts_within_u32_and_refuses_overflow() {
        let mut f = fragment(7, 0, 100);
        f.shift(7, 50).unwrap();
        assert_eq!(f, fragment(7, 0, 150));
        let before = f.clone();
        let err = f.shift(7, i64::from(u32::MAX)).unwrap_err();
        assert!(
            matches!(err, MediaError::ShiftOutOfRange { version: 0, .. }),
            "{err}"
        );
        assert_eq!(f, before);
        let err = f.shift(7, -151).unwrap_err();
        assert!(matches!(err, MediaError::ShiftOutOfRange { .. }), "{err}");
        assert_eq!(f, before);
    }

    #[test]
    fn a_huge_sample_count_is_refused_before_any_allocation() {
        let boxed = |kind: &[u8; 4], body: &[u8]| {
            let mut b = u32::try_from(body.len() + 8)
                .unwrap()
                .to_be_bytes()
                .to_vec();
            b.extend_from_slice(kind);
            b.extend_from_slice(body);
            b
        };
        // A trun without per-sample fields claiming u32::MAX samples: 4 bytes of count.
        let trun = boxed(b"trun", &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        let tfhd = boxed(b"tfhd", &[0, 0, 0, 0, 0, 0, 0, 1]);
        let traf = boxed(b"traf", &[tfhd, trun].concat());
        let moof = boxed(b"moof", &[boxed(b"mfhd", &[0; 8]), traf].concat());
        let mut tracks = [TrackState {
            defaults: TrackDefaults {
                id: 1,
                kind: TrackKind::Video,
                duration: 3600,
                size: 0,
                flags: 0,
            },
            next_dts: 0,
        }];
        let err = samples_of(&moof, 0, &mut tracks, 1000).unwrap_err();
        assert!(matches!(err, MediaError::TooManySamples { .. }), "{err}");
    }

    #[test]
    fn version_1_tfdt_takes_64_bit_values() {
        let mut f = fragment(3, 1, 5);
        f.shift(3, 1 << 40).unwrap();
        let locs = boxes::find_tfdts(&f.bytes, 3);
        assert_eq!(locs[0].value, (1 << 40) + 5);
        assert_eq!(f.samples[0].dts, (1 << 40) + 5);
        assert_eq!(f.samples[0].pts, (1 << 40) + 15);
        // Another track's samples without a tfdt of their own cannot be shifted.
        f.samples[0].track = 4;
        assert!(matches!(
            f.shift(4, 1),
            Err(MediaError::NoTfdt { track: 4 })
        ));
    }

    #[test]
    fn a_negative_version_1_tfdt_is_read_signed_and_shifts_to_zero() {
        // ffmpeg writes a copied B-frame stream's first decode time (-2 frames) as two's complement.
        let minus_two_frames = u64::from_be_bytes((-7_200i64).to_be_bytes());
        let mut f = fragment(1, 1, minus_two_frames);
        assert_eq!(boxes::find_tfdts(&f.bytes, 1)[0].signed(), -7_200);
        assert_eq!(f.samples[0].dts, -7_200);
        f.shift(1, 7_200).unwrap();
        assert_eq!(f, fragment(1, 1, 0));
        let err = f.shift(1, -1).unwrap_err();
        assert!(matches!(err, MediaError::ShiftOutOfRange { .. }), "{err}");
    }
}
