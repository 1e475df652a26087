//! Snapping a time to the frame showing at that instant: through the frame table of the segment
//! that holds it (real sources: variable frame rate, dropped frames), or through the epoch's
//! frame formula when the segment has no table (the generator, records from before frame tables).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hlsmark_clock::{FrameTable, HlsTime, SeqNo, Timeline, TimelineError};
use hlsmark_store::{Store, StoreError, StreamName};

use crate::services::clocks::{Clocks, is_real_source};

/// Frame tables kept in memory (segments are immutable, so a table never goes stale).
const CACHED_TABLES: usize = 512;

/// The frame a time landed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Its presentation time: the marker's HLS time.
    pub hls: HlsTime,
    /// The segment holding it, when known (a real source's frame past the newest published
    /// segment is not known yet: it is estimated at the nominal frame rate).
    pub seq: Option<SeqNo>,
    /// Its index within that segment.
    pub index: Option<usize>,
}

/// Frame tables of recently snapped-to segments, by stream and sequence number.
#[derive(Debug, Default)]
pub struct FrameTables {
    cache: Mutex<HashMap<(StreamName, SeqNo), Arc<FrameTable>>>,
}

impl FrameTables {
    /// The frame table of a segment (`get_segment` once, then from memory). An empty table when
    /// the segment is gone or was written without one.
    pub async fn get(
        &self,
        store: &dyn Store,
        stream: &StreamName,
        seq: SeqNo,
    ) -> Result<Arc<FrameTable>, StoreError> {
        let key = (stream.clone(), seq);
        if let Some(t) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(t);
        }
        let table = Arc::new(
            store
                .get_segment(stream, seq)
                .await?
                .map(|s| s.frames)
                .unwrap_or_default(),
        );
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHED_TABLES {
                c.clear();
            }
            c.insert(key, table.clone());
        }
        Ok(table)
    }

    /// The frame showing at `t` (which must hold video: see `Timeline::check_media`).
    pub async fn snap(
        &self,
        store: &dyn Store,
        stream: &StreamName,
        clocks: &Clocks<'_>,
        t: HlsTime,
    ) -> Result<Frame, SnapError> {
        let epoch = clocks.timeline.epoch_at_hls(t)?;
        if let Some(seg) = clocks.segment_at(t) {
            let table = self.get(store, stream, seg.seq).await?;
            if !table.is_empty() {
                if let Some((index, hls)) = table.frame_at(seg.hls_start, t) {
                    return Ok(Frame {
                        hls,
                        seq: Some(seg.seq),
                        index: Some(index),
                    });
                }
                // Before the segment's first frame: the previous segment's last frame shows.
                if let Some(prev) = clocks.index.previous(seg)
                    && prev.epoch == seg.epoch
                {
                    let table = self.get(store, stream, prev.seq).await?;
                    if let Some((index, hls)) = table.frame_at(prev.hls_start, t) {
                        return Ok(Frame {
                            hls,
                            seq: Some(prev.seq),
                            index: Some(index),
                        });
                    }
                }
                let first = table.frame_time(seg.hls_start, 0).unwrap_or(seg.hls_start);
                return Ok(Frame {
                    hls: first,
                    seq: Some(seg.seq),
                    index: Some(0),
                });
            }
            if !is_real_source(epoch) {
                return Ok(formula_frame(
                    clocks.timeline,
                    t,
                    Some(seg.seq),
                    seg.hls_start,
                ));
            }
        }
        if is_real_source(epoch) {
            // Not published yet (or a real source's segment without a table): the nominal rate
            // from the newest segment of the epoch, or from the epoch start.
            let (base, seq) = match clocks.segment_at(t) {
                Some(s) => (s.hls_start, Some(s.seq)),
                None => (
                    clocks
                        .index
                        .nearest_in_epoch(epoch.index, t)
                        .filter(|s| s.hls_end() <= t)
                        .map_or(epoch.hls_start, |s| s.hls_end()),
                    None,
                ),
            };
            let n = epoch.fps.ticks_to_frame(t - base);
            return Ok(Frame {
                hls: base + epoch.fps.frame_to_ticks(n),
                seq,
                index: None,
            });
        }
        let seq = epoch.seq_at(t);
        Ok(formula_frame(
            clocks.timeline,
            t,
            Some(seq),
            epoch.segment_start(seq),
        ))
    }
}

/// The generator's frame at `t` by the epoch formula, with its index in the segment at `start`.
fn formula_frame(timeline: &Timeline, t: HlsTime, seq: Option<SeqNo>, start: HlsTime) -> Frame {
    let Ok(e) = timeline.epoch_at_hls(t) else {
        return Frame {
            hls: t,
            seq,
            index: None,
        };
    };
    let n = e.frame_at(t);
    let first = e.frame_at(start);
    Frame {
        hls: e.frame_time(n),
        seq,
        index: usize::try_from(n - first).ok(),
    }
}

/// Why a time could not be snapped.
#[derive(Debug, thiserror::Error)]
pub enum SnapError {
    #[error(transparent)]
    Timeline(#[from] TimelineError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
