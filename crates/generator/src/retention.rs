//! Retention: segments whose media ended longer ago than the retention leave the index
//! (`Store::apply_retention`) and then the disk, together with the init files and private playlists
//! of epochs that no longer have any segment. Markers follow their own optional retention.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use hlsmark_clock::{Duration90k, HlsTime};
use hlsmark_store::{Store, StoreError, StreamName};

use crate::ffmpeg::{init_name, private_playlist};

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
    let before = end - retention;
    let report = store
        .apply_retention(stream, before, marker_retention.map(|r| end - r))
        .await?;
    for seg in &report.segments {
        remove(&dir.join(&seg.file));
    }
    if !report.segments.is_empty() {
        // The oldest epoch that still has a segment keeps its init file; older ones go.
        let oldest = store
            .segments_in_range(stream, before, HlsTime(i64::MAX / 4), 1)
            .await?
            .first()
            .map(|s| s.epoch);
        let mut gone: Vec<u32> = report.segments.iter().map(|s| s.epoch).collect();
        gone.dedup();
        for e in gone.into_iter().filter(|e| oldest.is_some_and(|o| *e < o)) {
            remove(&dir.join(init_name(e)));
            remove(&private_playlist(dir, e));
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

fn remove(p: &Path) {
    match std::fs::remove_file(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %p.display(), error = %e, "could not delete"),
    }
}

/// Runs a pass every `period` against the newest published end in `latest_end` (ticks).
pub(crate) async fn retention_loop(
    store: Arc<dyn Store>,
    stream: StreamName,
    dir: std::path::PathBuf,
    retention: Duration90k,
    marker_retention: Option<Duration90k>,
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
        let pass = apply_once(
            store.as_ref(),
            &stream,
            &dir,
            HlsTime(end),
            retention,
            marker_retention,
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
