//! Retention: segments whose media ended longer ago than the retention, by their UTC (PDT), leave
//! the index (`Store::apply_retention`) and then the disk; so does every other file of the stream's
//! directory that belongs to an epoch older than the oldest one with a segment left (its init
//! section, parts, temporary files, re-anchored copies, files of older versions). Markers follow
//! their own optional retention.
//!
//! Files a killed process left (temporary files it was writing, segments whose record never
//! reached the store) are its epoch's: [`remove_temps`] deletes the temporary ones at the next
//! start, and the epoch scan above takes the rest once a later epoch is the oldest one left.
//!
//! Age is wall-clock age: the UTC cut-off `now - retention` is turned into an HLS bound through
//! the epochs ([`utc_bound`]), so media imported backdated (`--start-utc`) or left from before an
//! outage ages by when it was recorded, not by how much media came after it. The newest live
//! window is never removed (the live playlist keeps its segments).
//!
//! LL-HLS parts live only seconds: the store writer drops them four segments behind the live
//! edge (`publish`), and [`clear_parts`] removes every part record and file of the stream when
//! it starts and when it stops, so a crash, a lost store write or a shutdown never leaves part
//! files behind for long.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use hlsmark_clock::{Duration90k, Epoch, HlsTime, UtcTime};
use hlsmark_store::{Store, StoreError, StreamName};

use crate::media_out::StreamMedia;
use crate::pipeline::{file_epoch, is_part_file};

/// No segment published yet.
pub(crate) const NO_END: i64 = i64::MIN;

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub segments: usize,
    pub markers: u64,
}

/// One retention pass relative to `end` (the end of the newest published segment).
pub async fn apply_once(
    store: &dyn Store,
    stream: &StreamName,
    dir: &Path,
    end: HlsTime,
    retention: Duration90k,
    marker_retention: Option<Duration90k>,
) -> Result<Removed, StoreError> {
    apply_before(
        store,
        stream,
        &StreamMedia::dir(dir),
        end - retention,
        marker_retention.map(|r| end - r),
    )
    .await
}

/// The HLS time before which media was recorded before `cutoff` (UTC): within each epoch
/// `utc = utc_start + (hls - hls_start)` (a real source's slew keeps its PDT within 500 ppm of
/// that); epochs run from their `hls_start` to their `hls_end`, the next epoch's start, or
/// `latest_end` for the newest. Epochs in `epochs` are in index order.
pub fn utc_bound(epochs: &[Epoch], latest_end: HlsTime, cutoff: UtcTime) -> HlsTime {
    let mut bound = HlsTime::ZERO;
    for (i, e) in epochs.iter().enumerate() {
        if e.utc_start > cutoff {
            break;
        }
        let end = e
            .hls_end
            .or_else(|| epochs.get(i + 1).map(|n| n.hls_start))
            .unwrap_or(latest_end);
        bound = (e.hls_start + (cutoff - e.utc_start)).min(end).max(bound);
    }
    bound
}

/// One retention pass by wall-clock age: media recorded before `now - retention` goes (markers
/// before `now - marker_retention`), but never the newest `keep` of media before `end`.
#[allow(clippy::too_many_arguments)]
pub async fn apply_by_age_in(
    store: &dyn Store,
    stream: &StreamName,
    media: &StreamMedia,
    end: HlsTime,
    now: UtcTime,
    retention: Duration90k,
    marker_retention: Option<Duration90k>,
    keep: Duration90k,
) -> Result<Removed, StoreError> {
    let mut epochs = store.epochs(stream).await?;
    epochs.sort_by_key(|e| e.index);
    let floor = end - keep;
    let before = utc_bound(&epochs, end, now - retention).min(floor);
    let markers = marker_retention.map(|r| utc_bound(&epochs, end, now - r).min(floor));
    apply_before(store, stream, media, before, markers).await
}

/// [`apply_by_age_in`] for the files of a stream directory.
#[allow(clippy::too_many_arguments)]
pub async fn apply_by_age(
    store: &dyn Store,
    stream: &StreamName,
    dir: &Path,
    end: HlsTime,
    now: UtcTime,
    retention: Duration90k,
    marker_retention: Option<Duration90k>,
    keep: Duration90k,
) -> Result<Removed, StoreError> {
    let media = StreamMedia::dir(dir);
    apply_by_age_in(
        store,
        stream,
        &media,
        end,
        now,
        retention,
        marker_retention,
        keep,
    )
    .await
}

/// Removes segments ending at or before `before` (and their files), markers before `markers`.
async fn apply_before(
    store: &dyn Store,
    stream: &StreamName,
    media: &StreamMedia,
    before: HlsTime,
    markers: Option<HlsTime>,
) -> Result<Removed, StoreError> {
    let report = store.apply_retention(stream, before, markers).await?;
    media
        .delete(report.segments.iter().map(|s| s.file.as_str()))
        .await;
    if !report.segments.is_empty() {
        // The oldest epoch that still has a segment keeps its init file; older ones go.
        let oldest = store
            .segments_in_range(stream, before, HlsTime(i64::MAX / 4), 1)
            .await?
            .first()
            .map(|s| s.epoch);
        let first_gone = report.segments.iter().map(|s| s.epoch).min();
        if let (Some(o), Some(g)) = (oldest, first_gone)
            && g < o
        {
            remove_epochs_before(media, o).await;
        }
        tracing::debug!(
            segments = report.segments.len(),
            markers = report.markers,
            "retention removed old media"
        );
    }
    Ok(Removed {
        segments: report.segments.len(),
        markers: report.markers,
    })
}

/// Drops every part of the stream from the store and deletes every part file (and part being
/// written) of its directory, whether the store knew it or not (a crash may have lost the newest
/// part records: the embedded store does not fsync them). Returns the files deleted. A store
/// error is returned after the files are gone (its records are then dropped at the next start).
pub async fn clear_parts(
    store: &dyn Store,
    stream: &StreamName,
    media: &StreamMedia,
) -> Result<usize, StoreError> {
    let dropped = store.drop_parts(stream, u64::MAX).await;
    let files = media.files().await;
    let n = media
        .delete(files.iter().map(String::as_str).filter(|f| is_part_file(f)))
        .await;
    dropped.map(|_| n)
}

/// Deletes the temporary files (`.….tmp`) of the stream's directory: at start nothing writes
/// there, so they are what a killed process was writing (never renamed, never published).
/// Returns how many were removed.
pub fn remove_temps(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for f in rd.flatten() {
        let name = f.file_name();
        let temp = name
            .to_str()
            .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
        if temp {
            remove(&f.path());
            n += 1;
        }
    }
    n
}

/// Deletes every file of an epoch older than `oldest` (one directory scan or object listing,
/// only when an epoch lost its last segment).
async fn remove_epochs_before(media: &StreamMedia, oldest: u32) {
    let files = media.files().await;
    media
        .delete(
            files
                .iter()
                .map(String::as_str)
                .filter(|f| file_epoch(f).is_some_and(|e| e < oldest)),
        )
        .await;
}

fn remove(p: &Path) {
    match std::fs::remove_file(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %p.display(), error = %e, "could not delete"),
    }
}

/// Runs a pass by age ([`apply_by_age`]) every `period`; `latest_end` (ticks) is the newest
/// published end, below which `keep` (the live window) always stays.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn retention_loop(
    store: Arc<dyn Store>,
    stream: StreamName,
    media: StreamMedia,
    retention: Duration90k,
    marker_retention: Option<Duration90k>,
    keep: Duration90k,
    latest_end: Arc<AtomicI64>,
    period: Duration,
) {
    let mut failing = false;
    loop {
        tokio::time::sleep(period).await;
        let end = latest_end.load(Ordering::Acquire);
        if end == NO_END {
            continue;
        }
        let pass = apply_by_age_in(
            store.as_ref(),
            &stream,
            &media,
            HlsTime(end),
            UtcTime::now(),
            retention,
            marker_retention,
            keep,
        );
        match tokio::time::timeout(Duration::from_secs(5), pass).await {
            Ok(Ok(_)) => failing = false,
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "retention pass failed; retrying");
            }
            Err(_) if !failing => {
                failing = true;
                tracing::warn!("retention pass timed out; retrying");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hlsmark_clock::{FrameRate, GenTime};

    const SEC: i64 = 90_000;
    const T0: i64 = 1_795_000_000 * SEC;

    fn epoch(index: u32, hls: i64, utc: i64, hls_end: Option<i64>) -> Epoch {
        Epoch {
            index,
            first_seq: 0,
            hls_start: HlsTime(hls * SEC),
            gen_start: GenTime(hls * SEC),
            utc_start: UtcTime(T0 + utc * SEC),
            fps: FrameRate::integer(30),
            segment_frames: 30,
            hls_end: hls_end.map(|h| HlsTime(h * SEC)),
            pts_start: None,
        }
    }

    #[test]
    fn age_is_measured_in_utc_across_a_gap() {
        // An import of 35 min recorded 10 h ago (HLS 0..2100 s), then a live epoch from now - 60 s.
        let now = 10 * 3_600 + 2_100;
        let es = [epoch(0, 0, 0, Some(2_100)), epoch(1, 2_100, now - 60, None)];
        let end = HlsTime(2_160 * SEC);
        let at = |ago: i64| utc_bound(&es, end, UtcTime(T0 + (now - ago) * SEC)).ticks() / SEC;
        // 1 h: the import is 10 h old, all of it goes; nothing of the live minute.
        assert_eq!(at(3_600), 2_100);
        // 10h10m: the import's first 25 min (recorded 10h35m to 10h10m ago) are older.
        assert_eq!(at(now - 1_500), 1_500);
        // 30 s: half of the live minute too.
        assert_eq!(at(30), 2_130);
        // A cut-off before everything removes nothing.
        assert_eq!(at(20 * 3_600), 0);
    }

    #[test]
    fn an_import_ending_now_keeps_what_is_younger_than_the_retention() {
        // 35 min imported, ending now (the default anchor); open epoch (no hls_end).
        let es = [epoch(0, 0, 0, None)];
        let end = HlsTime(2_100 * SEC);
        let now = 2_100;
        let at = |ago: i64| utc_bound(&es, end, UtcTime(T0 + (now - ago) * SEC)).ticks() / SEC;
        assert_eq!(at(3_600), 0, "1 h keeps all 35 min");
        assert_eq!(at(600), 1_500, "10 min keeps the last 10 min");
    }
}
