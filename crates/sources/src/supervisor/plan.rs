//! Where the next epoch starts: the stream's position read from the store at start
//! ([`resume`]), then the generator's epoch ([`plan_epoch`]) or a real source's timing
//! ([`plan_source`]) after whatever was published last, so HLS time never has a gap or an
//! overlap and PDT never goes back.

use std::time::Duration;

use hlsmark_clock::{Duration90k, Epoch, GenTime, HlsTime, Segment, UtcTime};
use hlsmark_store::{ErrorKind, Store, StreamName};
use tokio::sync::watch;

use crate::GeneratorError;
use crate::config::StreamConfig;
use crate::pipeline::Timing;

/// Where the stream stands before an attempt starts.
#[derive(Debug, Clone, Default)]
pub(super) struct Position {
    pub(super) last_epoch: Option<Epoch>,
    /// The newest segment handed to the store (by this run or, at start, found in the store).
    pub(super) last_seg: Option<Segment>,
    /// Frames written into the last epoch by this process (0 when it came from the store).
    pub(super) frames_in_last: i64,
}

impl Position {
    /// The last epoch's newest segment, if the last segment belongs to it.
    fn last_in_last_epoch(&self) -> Option<&Segment> {
        let p = self.last_epoch?;
        self.last_seg.as_ref().filter(|s| s.epoch == p.index)
    }

    /// The previous epoch closed at its last segment, when a new epoch `index` follows it.
    pub(super) fn close_for(&self, index: u32) -> Option<Epoch> {
        let p = self.last_epoch?;
        let s = self.last_in_last_epoch()?;
        (p.index < index && p.hls_end.is_none()).then(|| Epoch {
            hls_end: Some(s.hls_end()),
            ..p
        })
    }
}

/// The generator's next epoch: continues the sequence after the last published segment, GEN after
/// everything rendered or the wall time that passed (whichever is later), and replaces (same
/// index) a last epoch that never published a segment. Returns (epoch, its first GEN frame, the
/// previous epoch closed).
pub(super) fn plan_epoch(
    pos: &Position,
    cfg: &StreamConfig,
    now: UtcTime,
) -> (Epoch, i64, Option<Epoch>) {
    let fps = cfg.fps;
    let segment_frames = cfg.segment_frames();
    let Some(p) = pos.last_epoch else {
        let e = Epoch {
            index: 0,
            first_seq: 0,
            hls_start: HlsTime::ZERO,
            gen_start: GenTime::ZERO,
            utc_start: now,
            fps,
            segment_frames,
            hls_end: None,
            pts_start: None,
        };
        return (e, 0, None);
    };
    let last_in_p = pos.last_in_last_epoch();
    let media = last_in_p.map_or(Duration90k::ZERO, |s| s.hls_end() - p.hls_start);
    let written = p.fps.frame_to_ticks(pos.frames_in_last);
    let wall = (now - p.utc_start).max(Duration90k::ZERO);
    let gen_ticks = p.gen_start + media.max(written).max(wall);
    let g0 = fps.ticks_to_frame_ceil(Duration90k(gen_ticks.ticks()));
    let gen_start = GenTime(fps.frame_to_ticks(g0).ticks());
    // PDT never goes back: not before the last epoch's start nor its last segment's end (an
    // imported epoch is backdated, but a clock set back could put `now` before either).
    let utc_start = now
        .max(p.utc_start)
        .max(last_in_p.map_or(p.utc_start, |s| s.utc_start + s.duration));
    // Sequence-aligned after a generator epoch; after a real source's or an import's (segments
    // of their own lengths, a nominal rate) the aligned start could fall inside its last
    // segment: never before that segment's end.
    let (index, first_seq, hls_start) = match last_in_p {
        Some(s) => (
            p.index + 1,
            s.seq + 1,
            p.segment_start(s.seq + 1).max(s.hls_end()),
        ),
        None => (p.index, p.first_seq, p.hls_start),
    };
    let e = Epoch {
        index,
        first_seq,
        hls_start,
        gen_start,
        utc_start,
        fps,
        segment_frames,
        hls_end: None,
        pts_start: None,
    };
    (e, g0, pos.close_for(index))
}

/// Where a real source's next epoch starts: right after the last published segment (no gap in
/// HLS time), PDT not before that segment's end. A last epoch that never published a segment is
/// replaced (same index).
pub(super) fn plan_source(pos: &Position, import: Option<UtcTime>) -> Timing {
    let next_seq = pos.last_seg.as_ref().map_or(0, |s| s.seq + 1);
    let hls_start = pos
        .last_seg
        .as_ref()
        .map_or(HlsTime::ZERO, Segment::hls_end);
    let floor = pos
        .last_seg
        .as_ref()
        .map_or(UtcTime(0), |s| s.utc_start + s.duration);
    let index = match pos.last_epoch {
        None => 0,
        Some(p) if pos.last_in_last_epoch().is_some() => p.index + 1,
        Some(p) => p.index,
    };
    match import {
        // An import's start was checked against the last segment's end (`import::resolve`).
        Some(utc_start) => Timing::Import {
            index,
            first_seq: next_seq,
            hls_start,
            utc_start: utc_start.max(floor),
        },
        None => Timing::Source {
            index,
            first_seq: next_seq,
            hls_start,
            floor,
        },
    }
}

/// Reads the stream's epochs and newest segment, retrying while the store is unreachable.
/// `None` when shutdown was requested first.
pub(super) async fn resume(
    store: &dyn Store,
    stream: &StreamName,
    stop_rx: &mut watch::Receiver<bool>,
) -> Result<Option<Position>, GeneratorError> {
    let mut warned = false;
    loop {
        let r = async {
            let epochs = match store.epochs(stream).await {
                Err(e) if e.kind() == ErrorKind::UnknownStream => Vec::new(),
                r => r?,
            };
            let last = match store.last_segments(stream, 1).await {
                Err(e) if e.kind() == ErrorKind::UnknownStream => Vec::new(),
                r => r?,
            };
            Ok::<_, hlsmark_store::StoreError>((epochs, last))
        }
        .await;
        match r {
            Ok((epochs, last)) => {
                let last_epoch = epochs.into_iter().max_by_key(|e| e.index);
                return Ok(Some(Position {
                    last_epoch,
                    last_seg: last.into_iter().last(),
                    frames_in_last: 0,
                }));
            }
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                if !warned {
                    warned = true;
                    tracing::warn!(stream = %stream, error = %e, "store unreachable at start; waiting for it");
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop_rx.changed() => {}
                }
                if *stop_rx.borrow() {
                    return Ok(None);
                }
            }
            Err(e) => return Err(GeneratorError::Store(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hlsmark_clock::FrameRate;
    use hlsmark_clock::SeqNo;
    use hlsmark_store::StreamName;
    use std::path::PathBuf;

    fn cfg() -> StreamConfig {
        StreamConfig::new(StreamName::live(), PathBuf::from("/tmp/x"))
    }

    const T0: i64 = 1_795_000_000 * 90_000;

    fn seg(seq: SeqNo, epoch: u32, start: i64, dur: i64) -> Segment {
        Segment {
            seq,
            epoch,
            hls_start: HlsTime(start),
            duration: Duration90k(dur),
            utc_start: UtcTime(T0 + start),
            file: Segment::file_name(epoch, seq),
            init_file: None,
            frames: Default::default(),
        }
    }

    #[test]
    fn first_epoch_of_a_new_stream_starts_at_zero() {
        let (e, g0, close) = plan_epoch(&Position::default(), &cfg(), UtcTime(T0));
        assert_eq!(
            (e.index, e.first_seq, e.hls_start, e.gen_start, g0),
            (0, 0, HlsTime(0), GenTime(0), 0)
        );
        assert_eq!(e.utc_start, UtcTime(T0));
        assert!(close.is_none());
    }

    #[test]
    fn restart_continues_sequence_and_gen_and_closes_previous() {
        let (e0, _, _) = plan_epoch(&Position::default(), &cfg(), UtcTime(T0));
        // Epoch 0 published seq 0..=9 (10 s); 12.5 s of wall time later a new epoch starts.
        let st = Position {
            last_epoch: Some(e0),
            last_seg: Some(seg(9, 0, 9 * 90_000, 90_000)),
            frames_in_last: 315,
        };
        let (e1, g0, close) = plan_epoch(&st, &cfg(), UtcTime(T0 + 12 * 90_000 + 45_000));
        assert_eq!(
            (e1.index, e1.first_seq, e1.hls_start),
            (1, 10, HlsTime(10 * 90_000))
        );
        // GEN follows the wall clock (12.5 s = frame 375).
        assert_eq!(g0, 375);
        assert_eq!(e1.gen_start, GenTime(375 * 3_000));
        assert_eq!(close.unwrap().hls_end, Some(HlsTime(10 * 90_000)));
        // Unpaced: frames written run ahead of the wall clock, GEN follows them.
        let st = Position {
            frames_in_last: 3_000,
            ..st
        };
        let (_, g0, _) = plan_epoch(&st, &cfg(), UtcTime(T0 + 90_000));
        assert_eq!(g0, 3_000);
    }

    #[test]
    fn an_epoch_without_segments_is_replaced() {
        let (e0, _, _) = plan_epoch(&Position::default(), &cfg(), UtcTime(T0));
        let st = Position {
            last_epoch: Some(e0),
            last_seg: None,
            frames_in_last: 3,
        };
        let (e, g0, close) = plan_epoch(&st, &cfg(), UtcTime(T0 + 90_000));
        assert_eq!((e.index, e.first_seq, e.hls_start), (0, 0, HlsTime(0)));
        assert_eq!(g0, 30);
        assert!(close.is_none());
    }

    #[test]
    fn gen_snaps_to_the_new_frame_grid() {
        let (e0, _, _) = plan_epoch(&Position::default(), &cfg(), UtcTime(T0));
        let mut c = cfg();
        c.fps = FrameRate::integer(25);
        let st = Position {
            last_epoch: Some(e0),
            last_seg: None,
            frames_in_last: 0,
        };
        let (e, g0, _) = plan_epoch(&st, &c, UtcTime(T0 + 3_001));
        assert_eq!(g0, 1);
        assert_eq!(e.gen_start, GenTime(3_600));
    }

    #[test]
    fn a_source_epoch_starts_where_the_last_segment_ended() {
        assert!(matches!(
            plan_source(&Position::default(), None),
            Timing::Source {
                index: 0,
                first_seq: 0,
                hls_start: HlsTime(0),
                ..
            }
        ));
        let (e0, _, _) = plan_epoch(&Position::default(), &cfg(), UtcTime(T0));
        // Epoch 0 ended with a short segment: the next starts at its end, not sequence-aligned.
        let st = Position {
            last_epoch: Some(e0),
            last_seg: Some(seg(4, 0, 4 * 90_000, 40_000)),
            frames_in_last: 0,
        };
        let Timing::Source {
            index,
            first_seq,
            hls_start,
            floor,
        } = plan_source(&st, None)
        else {
            panic!()
        };
        assert_eq!((index, first_seq, hls_start), (1, 5, HlsTime(400_000)));
        assert_eq!(floor, UtcTime(T0 + 400_000));
        assert_eq!(st.close_for(1).unwrap().hls_end, Some(HlsTime(400_000)));
        // An epoch that never published is replaced.
        let e1 = Epoch {
            index: 1,
            first_seq: 5,
            ..e0
        };
        let st = Position {
            last_epoch: Some(e1),
            ..st
        };
        assert!(matches!(
            plan_source(&st, None),
            Timing::Source {
                index: 1,
                first_seq: 5,
                ..
            }
        ));
        assert!(st.close_for(1).is_none());
    }
}
