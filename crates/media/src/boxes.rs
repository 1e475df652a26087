//! A tiny hand reader for box headers: framing boxes on a stream, walking the children of a box,
//! and finding where a `tfdt` sits in a `moof` so it can be patched in place. Everything else is
//! decoded by mp4-atom.

use mp4_atom::FourCC;

/// A box header: its type, the size of the whole box (header included) and the header length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    pub kind: FourCC,
    /// Size of the whole box, header included; 0 means "to the end of the enclosing space".
    pub size: u64,
    /// 8, or 16 with a 64-bit `largesize`.
    pub header_len: u8,
}

/// Why a header could not be read from a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// More bytes are needed: at least this many in total.
    Short(usize),
    /// The declared size is below the header's own length.
    TooSmall(BoxHeader),
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_be_bytes(a))
}

/// Reads the header at the start of `b`.
pub fn parse_header(b: &[u8]) -> Result<BoxHeader, HeaderError> {
    let (Some(size32), Some(kind)) = (be_u32(b, 0), b.get(4..8)) else {
        return Err(HeaderError::Short(8));
    };
    let kind = FourCC::new(&[kind[0], kind[1], kind[2], kind[3]]);
    let (size, header_len) = match size32 {
        1 => (be_u64(b, 8).ok_or(HeaderError::Short(16))?, 16u8),
        s => (u64::from(s), 8u8),
    };
    let h = BoxHeader {
        kind,
        size,
        header_len,
    };
    if size != 0 && size < u64::from(header_len) {
        return Err(HeaderError::TooSmall(h));
    }
    Ok(h)
}

/// The direct children of a box body (or of a whole buffer), as (header, start offset in `b`,
/// length). Stops at the first malformed or overlong child.
pub fn children(b: &[u8]) -> impl Iterator<Item = (BoxHeader, usize, usize)> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let rest = b.get(pos..)?;
        let h = parse_header(rest).ok()?;
        let len = if h.size == 0 {
            rest.len()
        } else {
            usize::try_from(h.size).ok()?
        };
        if len > rest.len() {
            return None;
        }
        let start = pos;
        pos += len;
        Some((h, start, len))
    })
}

/// Where a track's `tfdt` sits in a buffer of top-level boxes (a fragment's bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TfdtLocation {
    /// Offset of `base_media_decode_time` in the buffer.
    pub value_offset: usize,
    /// 0: a 32-bit value; 1: 64-bit.
    pub version: u8,
    pub value: u64,
}

impl TfdtLocation {
    /// The decode time as a signed number: a version-1 value is two's complement, as ffmpeg
    /// writes a negative start (copied B-frame video with `-avoid_negative_ts disabled`) and as
    /// ffprobe reads it back.
    pub fn signed(&self) -> i64 {
        tfdt_signed(self.value)
    }
}

/// A `tfdt` value read as two's complement (a version-0 value is below 2^32 and unchanged).
pub fn tfdt_signed(value: u64) -> i64 {
    i64::from_be_bytes(value.to_be_bytes())
}

/// The `tfdt` of every `traf` of `track` in every `moof` of `b` (usually one).
pub fn find_tfdts(b: &[u8], track: u32) -> Vec<TfdtLocation> {
    const MOOF: FourCC = FourCC::new(b"moof");
    const TRAF: FourCC = FourCC::new(b"traf");
    const TFHD: FourCC = FourCC::new(b"tfhd");
    const TFDT: FourCC = FourCC::new(b"tfdt");
    let mut out = Vec::new();
    for (moof, moof_at, moof_len) in children(b) {
        if moof.kind != MOOF {
            continue;
        }
        let body_at = moof_at + usize::from(moof.header_len);
        let Some(body) = b.get(body_at..moof_at + moof_len) else {
            continue;
        };
        for (traf, traf_at, traf_len) in children(body) {
            if traf.kind != TRAF {
                continue;
            }
            let traf_body_at = traf_at + usize::from(traf.header_len);
            let Some(traf_body) = body.get(traf_body_at..traf_at + traf_len) else {
                continue;
            };
            let mut id = None;
            let mut tfdt = None;
            for (c, c_at, c_len) in children(traf_body) {
                let c_body_at = c_at + usize::from(c.header_len);
                let Some(c_body) = traf_body.get(c_body_at..c_at + c_len) else {
                    continue;
                };
                if c.kind == TFHD {
                    // version/flags (4 bytes), then track_ID.
                    id = be_u32(c_body, 4);
                } else if c.kind == TFDT {
                    let version = c_body.first().copied();
                    let value = match version {
                        Some(0) => be_u32(c_body, 4).map(u64::from),
                        Some(1) => be_u64(c_body, 4),
                        _ => None,
                    };
                    if let (Some(version), Some(value)) = (version, value) {
                        tfdt = Some(TfdtLocation {
                            value_offset: body_at + traf_body_at + c_body_at + 4,
                            version,
                            value,
                        });
                    }
                }
            }
            if id == Some(track)
                && let Some(t) = tfdt
            {
                out.push(t);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sizes() {
        let b = [0, 0, 0, 16, b'f', b'r', b'e', b'e'];
        let h = parse_header(&b).ok();
        assert_eq!(h.map(|h| (h.size, h.header_len)), Some((16, 8)));
        assert_eq!(parse_header(&b[..7]), Err(HeaderError::Short(8)));
        let big = [0, 0, 0, 1, b'm', b'd', b'a', b't', 0, 0, 0, 0, 0, 0, 0, 32];
        let h = parse_header(&big).ok();
        assert_eq!(h.map(|h| (h.size, h.header_len)), Some((32, 16)));
        assert_eq!(parse_header(&big[..12]), Err(HeaderError::Short(16)));
        let small = [0, 0, 0, 4, b'f', b'r', b'e', b'e'];
        assert!(matches!(
            parse_header(&small),
            Err(HeaderError::TooSmall(_))
        ));
    }
}
