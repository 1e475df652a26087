//! Reads an fMP4 byte stream (ffmpeg's stdout) box by box into the init section and fragments.
//!
//! The pipe is read in large chunks straight into the buffer of the fragment being assembled, and
//! a finished fragment leaves as a `Bytes` that owns that buffer alone: the `mdat` payload is
//! never copied (only bytes of the next box that arrived in the same read are moved to a fresh
//! buffer), and [`Fragment::shift`] can patch it in place.

use bytes::{Buf, BytesMut};
use mp4_atom::{Decode, FourCC, Moov};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::boxes::{self, HeaderError};
use crate::fragment::{Sample, TrackState, samples_of};
use crate::init::{Init, tracks_of};
use crate::{Fragment, MediaError};

/// Largest box accepted by default (64 MiB): a fragment of a 1080p stream is well under 1 MiB.
pub const DEFAULT_MAX_BOX_SIZE: u64 = 64 << 20;
/// Most samples one fragment may hold (a 200 ms fragment holds about 20).
pub const MAX_SAMPLES_PER_FRAGMENT: usize = 1 << 17;
/// Smallest read buffer; a fragment's buffer starts at 1.25x the last fragment's size.
const MIN_CHUNK: usize = 64 << 10;

const FTYP: FourCC = FourCC::new(b"ftyp");
const MOOV: FourCC = FourCC::new(b"moov");
const MOOF: FourCC = FourCC::new(b"moof");
const MDAT: FourCC = FourCC::new(b"mdat");
/// Top-level boxes that travel with the next fragment; every other non-media box is skipped.
const CARRIED: [FourCC; 3] = [
    FourCC::new(b"styp"),
    FourCC::new(b"prft"),
    FourCC::new(b"emsg"),
];

/// What the stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Init(Init),
    Fragment(Fragment),
}

/// Reads [`Item`]s from an fMP4 stream: `ftyp` + `moov` become an [`Init`], every `moof` + `mdat`
/// a [`Fragment`]. Unknown top-level boxes (`free`, `sidx`, `mfra`, `uuid`, ...) are skipped.
#[derive(Debug)]
pub struct FragmentReader<R> {
    r: R,
    /// Bytes of the unit being assembled (`..kept`), then whatever has been read beyond it.
    buf: BytesMut,
    /// Length of the current unit at the front of `buf`: carried boxes, `ftyp`, `moof`.
    kept: usize,
    /// Stream offset of `buf[0]`.
    offset: u64,
    /// Samples of a `moof` waiting for its `mdat`, and the `moof`'s offset.
    pending: Option<(Vec<Sample>, u64)>,
    tracks: Option<Vec<TrackState>>,
    max_box: u64,
    last_fragment_len: usize,
    eof: bool,
    poisoned: bool,
}

impl<R: AsyncRead + Unpin> FragmentReader<R> {
    pub fn new(r: R) -> Self {
        Self {
            r,
            buf: BytesMut::with_capacity(MIN_CHUNK),
            kept: 0,
            offset: 0,
            pending: None,
            tracks: None,
            max_box: DEFAULT_MAX_BOX_SIZE,
            last_fragment_len: 0,
            eof: false,
            poisoned: false,
        }
    }

    /// Refuse boxes larger than `max` bytes (default [`DEFAULT_MAX_BOX_SIZE`]).
    pub fn with_max_box_size(mut self, max: u64) -> Self {
        self.max_box = max;
        self
    }

    /// Bytes consumed from the stream so far (items returned and boxes skipped).
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// The next init section or fragment. `Ok(None)` at a clean EOF between boxes; a truncated
    /// box is an error. After an error every call fails with [`MediaError::Poisoned`].
    pub async fn next(&mut self) -> Result<Option<Item>, MediaError> {
        if self.poisoned {
            return Err(MediaError::Poisoned);
        }
        let r = self.next_inner().await;
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    async fn next_inner(&mut self) -> Result<Option<Item>, MediaError> {
        loop {
            let at = self.kept;
            let box_offset = self.offset + at as u64;
            // The header.
            let header = loop {
                match boxes::parse_header(&self.buf[at..]) {
                    Ok(h) => break h,
                    Err(HeaderError::TooSmall(h)) => {
                        return Err(MediaError::BadBoxSize {
                            kind: h.kind,
                            offset: box_offset,
                            size: h.size,
                        });
                    }
                    Err(HeaderError::Short(need)) => {
                        if !self.fill(at + need).await? {
                            let have = self.buf.len() - at;
                            if have == 0 {
                                return self.clean_eof(box_offset);
                            }
                            return Err(MediaError::Truncated {
                                what: "a box header".to_owned(),
                                offset: box_offset,
                                have: have as u64,
                                need: need as u64,
                            });
                        }
                    }
                }
            };
            if header.size == 0 {
                return Err(MediaError::UnboundedBox {
                    kind: header.kind,
                    offset: box_offset,
                });
            }
            if header.size > self.max_box {
                return Err(MediaError::BoxTooLarge {
                    kind: header.kind,
                    offset: box_offset,
                    size: header.size,
                    max: self.max_box,
                });
            }
            // Bounded by max_box above, which the caller keeps within memory.
            let size = usize::try_from(header.size).map_err(|_| MediaError::BoxTooLarge {
                kind: header.kind,
                offset: box_offset,
                size: header.size,
                max: self.max_box,
            })?;
            let end = at + size;
            if !self.fill(end).await? {
                return Err(MediaError::Truncated {
                    what: format!("box `{}`", header.kind),
                    offset: box_offset,
                    have: (self.buf.len() - at) as u64,
                    need: header.size,
                });
            }
            let kind = header.kind;
            if kind == MOOF {
                let Some(tracks) = self.tracks.as_mut() else {
                    return Err(MediaError::FragmentBeforeInit { offset: box_offset });
                };
                if self.pending.is_some() {
                    return Err(MediaError::MissingMdat { offset: box_offset });
                }
                let samples = samples_of(
                    &self.buf[at..end],
                    box_offset,
                    tracks,
                    MAX_SAMPLES_PER_FRAGMENT,
                )?;
                self.pending = Some((samples, box_offset));
                self.kept = end;
            } else if kind == MDAT && self.pending.is_some() {
                let (samples, _) = self.pending.take().unwrap_or_default();
                let bytes = self.take_unit(end).freeze();
                self.last_fragment_len = bytes.len();
                return Ok(Some(Item::Fragment(Fragment { bytes, samples })));
            } else if kind == MOOV {
                if self.pending.is_some() {
                    return Err(MediaError::MissingMdat { offset: box_offset });
                }
                let mut body = &self.buf[at..end];
                let moov = Moov::decode(&mut body).map_err(|source| MediaError::Decode {
                    kind,
                    offset: box_offset,
                    source,
                })?;
                let (tracks, defaults) =
                    tracks_of(&moov).map_err(|reason| MediaError::Invalid {
                        kind,
                        offset: box_offset,
                        reason,
                    })?;
                self.tracks = Some(
                    defaults
                        .into_iter()
                        .map(|defaults| TrackState {
                            defaults,
                            next_dts: 0,
                        })
                        .collect(),
                );
                let bytes = self.take_unit(end).freeze();
                return Ok(Some(Item::Init(Init { bytes, tracks })));
            } else if kind == FTYP || CARRIED.contains(&kind) {
                if kind == FTYP && self.pending.is_none() && at > 0 {
                    // A new init section starts: what was carried belonged to no fragment.
                    self.cut_out(0, at);
                    self.kept = size;
                } else {
                    self.kept = end;
                }
            } else {
                // Skipped (free, sidx, mfra, an mdat without moof, anything unknown).
                self.cut_out(at, size);
            }
        }
    }

    /// At EOF between boxes: the end, unless a `moof` is still waiting for its `mdat`.
    fn clean_eof(&mut self, offset: u64) -> Result<Option<Item>, MediaError> {
        if let Some((_, moof_offset)) = self.pending.take() {
            return Err(MediaError::Truncated {
                what: "a fragment (moof without its mdat)".to_owned(),
                offset: moof_offset,
                have: offset - moof_offset,
                need: offset - moof_offset + 8,
            });
        }
        // Carried boxes with no fragment after them (a trailing styp) go nowhere.
        self.offset += self.kept as u64;
        self.buf.clear();
        self.kept = 0;
        Ok(None)
    }

    /// Removes `len` bytes at `at` of the buffer (a skipped box). Only bytes after it move.
    fn cut_out(&mut self, at: usize, len: usize) {
        if at == 0 {
            self.buf.advance(len);
        } else {
            self.buf.copy_within(at + len.., at);
            let n = self.buf.len() - len;
            self.buf.truncate(n);
        }
        self.offset += len as u64;
    }

    /// Splits off the finished unit (`..end`) and leaves the reader a fresh buffer of its own, so
    /// the unit's allocation is referenced by the unit alone.
    fn take_unit(&mut self, end: usize) -> BytesMut {
        let cap = (self.last_fragment_len + self.last_fragment_len / 4).max(MIN_CHUNK);
        let rest = &self.buf[end..];
        let mut fresh = BytesMut::with_capacity(cap.max(rest.len()));
        fresh.extend_from_slice(rest);
        let mut unit = std::mem::replace(&mut self.buf, fresh);
        unit.truncate(end);
        self.kept = 0;
        self.offset += end as u64;
        unit
    }

    /// Reads until `buf` holds `want` bytes. `false` at EOF before that.
    async fn fill(&mut self, want: usize) -> Result<bool, MediaError> {
        while self.buf.len() < want {
            if self.eof {
                return Ok(false);
            }
            let missing = want - self.buf.len();
            if self.buf.capacity() - self.buf.len() < missing {
                // Room for the rest of this box and a large read beyond it, in one step, so a
                // growing fragment is moved at most once.
                self.buf.reserve(missing.max(MIN_CHUNK));
            }
            let n = self
                .r
                .read_buf(&mut self.buf)
                .await
                .map_err(MediaError::Io)?;
            if n == 0 {
                self.eof = true;
            }
        }
        Ok(true)
    }
}
