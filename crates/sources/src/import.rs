//! Importing a recording into a stream's timeline (`--pace false`, `--start-utc`): where its
//! first frame sits in UTC, and the checks that keep the timeline one-way before anything runs.
//!
//! An import is a file played once whose segments' UTC comes from media time, not from when
//! they were read: `utc = start_utc + (hls - epoch.hls_start)`, exact to the tick. HLS time only
//! grows within a stream (segments are appended), so an import must lie after everything the
//! stream already has, in UTC as well: an import that would start before the end of the stream's
//! newest segment is refused, as is one that would end in the future.

use std::path::Path;
use std::process::Stdio;

use hlsmark_clock::{Duration90k, UtcTime};
use hlsmark_store::{ErrorKind, Store};

use crate::config::StreamConfig;
use crate::source::Source;

/// Slack allowed between an import's end and the wall clock: ffmpeg prints a file's duration
/// to 10 ms, and the container's duration may run a little past the last video frame.
const END_SLACK: Duration90k = Duration90k::from_millis(1_000);

/// Why an import cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "stream {stream}: the import would start at {start}, before the end of the stream's newest media ({end}); an import goes after what the stream has (HLS time runs one way): give a later --start-utc, or import into a new stream name"
    )]
    Overlap {
        stream: String,
        start: String,
        end: String,
    },
    #[error(
        "stream {stream}: {path} lasts {secs:.3} s, so starting at {start} it would end at {end}, in the future; give the UTC of its first frame"
    )]
    EndsInFuture {
        stream: String,
        path: String,
        secs: f64,
        start: String,
        end: String,
    },
    #[error(
        "stream {stream}: cannot tell how long {path} is ({why}), which an import without --start-utc needs (it ends now); give --start-utc"
    )]
    NoDuration {
        stream: String,
        path: String,
        why: String,
    },
    #[error("stream {stream}: reading its newest segment")]
    Store {
        stream: String,
        #[source]
        source: hlsmark_store::StoreError,
    },
}

/// The file's duration as ffmpeg reports it (`Duration: HH:MM:SS.cc` of `ffmpeg -i`), or why not.
pub async fn probe_duration(ffmpeg: &Path, file: &Path) -> Result<Duration90k, String> {
    let out = tokio::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("running {}: {e}", ffmpeg.display()))?;
    // ffmpeg exits 1 here ("At least one output file must be specified"): only stderr matters.
    let text = String::from_utf8_lossy(&out.stderr);
    parse_duration(&text).ok_or_else(|| "ffmpeg shows no duration for it".to_owned())
}

/// `Duration: 00:05:00.03,` in ffmpeg's description of its input (`N/A` gives `None`).
fn parse_duration(text: &str) -> Option<Duration90k> {
    let rest = text.split("Duration: ").nth(1)?;
    let field = rest.split(',').next()?.trim();
    let (hms, frac) = field.split_once('.')?;
    let mut parts = hms.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    let num = |v: &str| -> Option<i64> {
        (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse().ok())
            .flatten()
    };
    let (h, m, s) = (num(h)?, num(m)?, num(s)?);
    let frac_digits = i64::try_from(frac.len()).ok()?;
    if !(1..=6).contains(&frac_digits) {
        return None;
    }
    let f = num(frac)?;
    let secs = h
        .checked_mul(3_600)?
        .checked_add(m.checked_mul(60)?)?
        .checked_add(s)?;
    let scale = 10i64.pow(u32::try_from(frac_digits).ok()?);
    let ticks = secs
        .checked_mul(90_000)?
        .checked_add(f.checked_mul(90_000)? / scale)?;
    Some(Duration90k(ticks))
}

/// Fixes an import's `start_utc` and checks it against the store and the wall clock: without
/// `--start-utc` the import ends now (`now - duration`); it must not end in the future (beyond
/// [`END_SLACK`]) nor start before the end of the stream's newest segment. Other streams are
/// left alone.
pub async fn resolve(
    cfg: &mut StreamConfig,
    store: &dyn Store,
    now: UtcTime,
) -> Result<(), ImportError> {
    if !cfg.is_import() {
        return Ok(());
    }
    let Source::File { path, .. } = &cfg.source else {
        return Ok(());
    };
    let stream = cfg.stream.to_string();
    let shown = path.display().to_string();
    let duration = probe_duration(&cfg.ffmpeg, path).await;
    let start = match (cfg.start_utc, &duration) {
        (Some(t), _) => t,
        (None, Ok(d)) => now - *d,
        (None, Err(why)) => {
            return Err(ImportError::NoDuration {
                stream,
                path: shown,
                why: why.clone(),
            });
        }
    };
    if let Ok(d) = duration
        && start + d > now + END_SLACK
    {
        return Err(ImportError::EndsInFuture {
            stream,
            path: shown,
            secs: d.as_secs_f64(),
            start: start.to_rfc3339_millis(),
            end: (start + d).to_rfc3339_millis(),
        });
    }
    let last = match store.last_segments(&cfg.stream, 1).await {
        Err(e) if e.kind() == ErrorKind::UnknownStream => Vec::new(),
        r => r.map_err(|source| ImportError::Store {
            stream: stream.clone(),
            source,
        })?,
    };
    if let Some(s) = last.last() {
        let end = s.utc_start + s.duration;
        if start < end {
            return Err(ImportError::Overlap {
                stream,
                start: start.to_rfc3339_millis(),
                end: end.to_rfc3339_millis(),
            });
        }
    }
    cfg.start_utc = Some(start);
    // Retention is counted back from now: media older than it is deleted as soon as it is
    // written. Said at start, not found out later from a timeline that lost most of the import.
    if let Ok(retention) = Duration90k::from_secs_f64(cfg.retention.as_secs_f64())
        && start + retention < now
    {
        let kept_from = now - retention;
        tracing::warn!(
            stream = %cfg.stream,
            file = %shown,
            start_utc = %start,
            retention_s = cfg.retention.as_secs(),
            "this import begins before the retention (--retention, counted back from now): what \
             it holds before {kept_from} is deleted as soon as it is written; raise --retention \
             to keep all of it",
        );
    }
    tracing::info!(
        stream = %cfg.stream,
        file = %shown,
        start_utc = %start,
        paced = cfg.pace,
        duration_s = duration.as_ref().map(|d| d.as_secs_f64()).ok(),
        "importing a recording: its first frame at start_utc"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_from_ffmpegs_description() {
        let text = "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'a.mp4':\n  Metadata:\n    encoder         : Lavf59.27.100\n  Duration: 00:03:05.04, start: 0.000000, bitrate: 120 kb/s\n";
        assert_eq!(
            parse_duration(text),
            Some(Duration90k((185 * 100 + 4) * 900))
        );
        assert_eq!(
            parse_duration("  Duration: 01:00:00.5, start"),
            Some(Duration90k::from_secs(3_600) + Duration90k(45_000))
        );
        assert_eq!(parse_duration("  Duration: N/A, start: 0.0"), None);
        assert_eq!(parse_duration("no description"), None);
        assert_eq!(parse_duration("  Duration: 00:-1:00.00, x"), None);
    }
}
