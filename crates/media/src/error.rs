//! Everything that can go wrong reading fMP4 or rebasing it, with the box and stream offset that
//! caused it.

use mp4_atom::FourCC;

/// Why the media stream could not be read or changed. Offsets are bytes from the start of the
/// stream the reader was given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    #[error("cannot read the fMP4 stream")]
    Io(#[source] std::io::Error),

    #[error("the stream ends inside {what} at offset {offset}: {have} of {need} bytes arrived")]
    Truncated {
        what: String,
        offset: u64,
        have: u64,
        need: u64,
    },

    #[error("box `{kind}` at offset {offset} declares size {size}, smaller than its own header")]
    BadBoxSize {
        kind: FourCC,
        offset: u64,
        size: u64,
    },

    #[error("box `{kind}` at offset {offset} is {size} bytes, over the limit of {max}")]
    BoxTooLarge {
        kind: FourCC,
        offset: u64,
        size: u64,
        max: u64,
    },

    #[error(
        "box `{kind}` at offset {offset} has size 0 (runs to the end of the stream), which a live stream cannot have"
    )]
    UnboundedBox { kind: FourCC, offset: u64 },

    #[error("cannot decode box `{kind}` at offset {offset}")]
    Decode {
        kind: FourCC,
        offset: u64,
        #[source]
        source: mp4_atom::Error,
    },

    #[error("invalid `{kind}` at offset {offset}: {reason}")]
    Invalid {
        kind: FourCC,
        offset: u64,
        reason: String,
    },

    #[error("a moof at offset {offset} arrives before any moov")]
    FragmentBeforeInit { offset: u64 },

    #[error("a moof at offset {offset} follows a moof that had no mdat")]
    MissingMdat { offset: u64 },

    #[error(
        "the fragment at offset {offset} has samples of track {track}, which the moov does not declare"
    )]
    UnknownTrack { offset: u64, track: u32 },

    #[error("the fragment at offset {offset} has {count} samples, over the limit of {max}")]
    TooManySamples { offset: u64, count: u64, max: u64 },

    #[error("track {track}: sample times overflow in the fragment at offset {offset}")]
    TimeOverflow { offset: u64, track: u32 },

    #[error("cannot shift track {track}: the fragment has no tfdt for it")]
    NoTfdt { track: u32 },

    #[error(
        "cannot shift track {track} by {delta}: base_media_decode_time {from} would become {to}, outside 0..={max} (tfdt version {version})"
    )]
    ShiftOutOfRange {
        track: u32,
        delta: i64,
        from: u64,
        to: i128,
        max: u64,
        version: u8,
    },

    #[error("the reader failed before and cannot go on")]
    Poisoned,
}
