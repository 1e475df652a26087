//! The initialization section (`ftyp` + `moov`): the tracks, their timescales and codecs, and the
//! per-track sample defaults (`trex`) that fragments inherit.

use bytes::Bytes;
use mp4_atom::{Codec, Moov};

/// What a track carries, from its `hdlr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    Video,
    Audio,
    Other,
}

/// One track of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub id: u32,
    pub kind: TrackKind,
    /// Units per second of this track's sample times (`mdhd`).
    pub timescale: u32,
    /// RFC 6381 codec string: `avc1.64001f`, `mp4a.40.2`; the sample entry type for others.
    pub codec: String,
    /// Video only (0 otherwise), from the sample entry.
    pub width: u32,
    pub height: u32,
    /// Audio only (0 otherwise), from the sample entry.
    pub sample_rate: u32,
    pub channels: u32,
}

/// The initialization section, and what it says about the tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Init {
    /// `ftyp` + `moov` exactly as read (an `e{E}-init.mp4`).
    pub bytes: Bytes,
    pub tracks: Vec<Track>,
}

impl Init {
    /// The first video track.
    pub fn video(&self) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind == TrackKind::Video)
    }

    /// The first audio track.
    pub fn audio(&self) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind == TrackKind::Audio)
    }

    /// The track with this id.
    pub fn track(&self, id: u32) -> Option<&Track> {
        self.tracks.iter().find(|t| t.id == id)
    }
}

/// What a fragment needs to know about a track to time its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TrackDefaults {
    pub id: u32,
    pub kind: TrackKind,
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
}

/// Tracks and their `trex` defaults from a decoded `moov`. `Err` names what is wrong.
pub(crate) fn tracks_of(moov: &Moov) -> Result<(Vec<Track>, Vec<TrackDefaults>), String> {
    let mut tracks = Vec::with_capacity(moov.trak.len());
    let mut defaults = Vec::with_capacity(moov.trak.len());
    for trak in &moov.trak {
        let id = trak.tkhd.track_id;
        let timescale = trak.mdia.mdhd.timescale;
        if timescale == 0 {
            return Err(format!("track {id} has timescale 0"));
        }
        if tracks.iter().any(|t: &Track| t.id == id) {
            return Err(format!("track {id} is declared twice"));
        }
        let kind = match &trak.mdia.hdlr.handler.to_string()[..] {
            "vide" => TrackKind::Video,
            "soun" => TrackKind::Audio,
            _ => TrackKind::Other,
        };
        let entry = trak.mdia.minf.stbl.stsd.codecs.first();
        let mut t = Track {
            id,
            kind,
            timescale,
            codec: entry.map(codec_string).unwrap_or_default(),
            width: 0,
            height: 0,
            sample_rate: 0,
            channels: 0,
        };
        if let Some(v) = entry.and_then(Codec::visual) {
            t.width = u32::from(v.width);
            t.height = u32::from(v.height);
        }
        if let Some(a) = entry.and_then(audio_of) {
            // The sample entry's rate is 16.16 fixed point and cannot hold rates over 65535 Hz;
            // the media timescale of an audio track is its sample rate.
            let rate = u32::from(a.sample_rate.integer());
            t.sample_rate = if rate == 0 { timescale } else { rate };
            t.channels = u32::from(a.channel_count);
        }
        let trex = moov
            .mvex
            .as_ref()
            .and_then(|m| m.trex.iter().find(|x| x.track_id == id));
        defaults.push(TrackDefaults {
            id,
            kind,
            duration: trex.map_or(0, |x| x.default_sample_duration),
            size: trex.map_or(0, |x| x.default_sample_size),
            flags: trex.map_or(0, |x| x.default_sample_flags),
        });
        tracks.push(t);
    }
    Ok((tracks, defaults))
}

fn audio_of(c: &Codec) -> Option<&mp4_atom::Audio> {
    Some(match c {
        Codec::Mp4a(a) => &a.audio,
        Codec::Opus(a) => &a.audio,
        Codec::Ac3(a) => &a.audio,
        Codec::Eac3(a) => &a.audio,
        Codec::Flac(a) => &a.audio,
        _ => return None,
    })
}

/// RFC 6381 `codecs` value of a sample entry.
fn codec_string(c: &Codec) -> String {
    match c {
        Codec::Avc1(a) => avc("avc1", &a.avcc),
        Codec::Avc3(a) => avc("avc3", &a.avcc),
        Codec::Mp4a(a) => {
            let dc = &a.esds.es_desc.dec_config;
            match &dc.dec_specific {
                Some(ds) if dc.object_type_indication == 0x40 => {
                    format!("mp4a.40.{}", ds.profile)
                }
                _ => format!("mp4a.{:x}", dc.object_type_indication),
            }
        }
        Codec::Opus(_) => "opus".to_owned(),
        Codec::Flac(_) => "flac".to_owned(),
        Codec::Ac3(_) => "ac-3".to_owned(),
        Codec::Eac3(_) => "ec-3".to_owned(),
        Codec::Hev1(_) => "hev1".to_owned(),
        Codec::Hvc1(_) => "hvc1".to_owned(),
        Codec::Vp09(_) => "vp09".to_owned(),
        Codec::Av01(_) => "av01".to_owned(),
        Codec::Unknown(kind, _) => kind.to_string(),
        _ => String::new(),
    }
}

fn avc(prefix: &str, c: &mp4_atom::Avcc) -> String {
    format!(
        "{prefix}.{:02x}{:02x}{:02x}",
        c.avc_profile_indication, c.profile_compatibility, c.avc_level_indication
    )
}
