//! The restart policy: attempts one after another until shutdown, the end of the media or a
//! failure that can never work; between failed attempts a pause that doubles (real sources 1 s
//! to 30 s, the generator 100 ms to 1 s), reset by a run that stayed live long enough, and
//! short when it was the disk that failed.

use std::time::{Duration, Instant};

use hlsmark_store::StreamState;

use super::StreamRun;
use super::exit::AttemptEnd;

/// Restart pauses of real sources, and how long a run must stay live to reset them.
const SOURCE_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));
const SOURCE_HEALTHY: Duration = Duration::from_secs(300);
/// The generator's (its failures are ffmpeg crashes, not sources that are down).
const GEN_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));
const GEN_HEALTHY: Duration = Duration::from_secs(5);
/// Longest pause after an attempt that failed writing a file (a full disk): the source is fine.
const DISK_RETRY: Duration = Duration::from_secs(1);

impl StreamRun {
    /// Attempts until shutdown, the end of the media, or a fatal failure.
    pub(super) async fn supervise(&mut self) -> Option<String> {
        let generator = self.cfg.source.is_generator();
        let (min, max) = if generator {
            GEN_BACKOFF
        } else {
            SOURCE_BACKOFF
        };
        let healthy = if generator {
            GEN_HEALTHY
        } else {
            SOURCE_HEALTHY
        };
        let mut remaining = if generator {
            self.cfg.stop_after_frames()
        } else {
            None
        };
        let mut backoff = min;
        loop {
            if self.stopping() || !self.lease.confirm().await {
                return None;
            }
            let started = Instant::now();
            let (end, live_for, frames) = self.attempt(remaining).await;
            self.pos.frames_in_last = frames;
            if let Some(r) = remaining.as_mut() {
                *r -= frames;
            }
            match end {
                AttemptEnd::Shutdown | AttemptEnd::Finished => return None,
                AttemptEnd::Again { why } => {
                    // Not a failure of the source: no pause, no restart counted, no `retrying`.
                    self.status.set(StreamState::Starting, why);
                }
                AttemptEnd::Failed { what, why, fatal } => {
                    if remaining.is_some_and(|r| r <= 0) || self.stopping() {
                        return None;
                    }
                    // A retried import would read the file from its start again, as a new
                    // epoch over UTC it has already published: what it published stays, the
                    // rest is not imported.
                    let (fatal, why) = if self.cfg.is_import() && self.report.segments > 0 {
                        let why = format!(
                            "{why}; the import stopped after {} segments (they stay; the rest of the file is not imported)",
                            self.report.segments
                        );
                        (true, why)
                    } else {
                        (fatal, why)
                    };
                    let source = self.cfg.source.masked();
                    let stream = &self.cfg.stream;
                    if fatal {
                        tracing::error!(
                            "stream={stream} source={source} {what}: {why}; it cannot work, not retrying"
                        );
                        self.status.set(StreamState::Failed, Some(why.clone()));
                        return Some(why);
                    }
                    // A run that stayed up resets the pause.
                    let ran = if generator {
                        Some(started.elapsed())
                    } else {
                        live_for
                    };
                    if ran.is_some_and(|d| d >= healthy) {
                        backoff = min;
                    }
                    self.report.ffmpeg_restarts += 1;
                    self.status.restarted();
                    self.status.set(StreamState::Retrying, Some(why.clone()));
                    // The disk (full, failing) is not the source: its retries stay short, so
                    // the stream is back within a second of space returning.
                    let pause = if std::mem::take(&mut self.disk_failure) {
                        backoff.min(DISK_RETRY)
                    } else {
                        let b = backoff;
                        backoff = (backoff * 2).min(max);
                        b
                    };
                    tracing::warn!(
                        "stream={stream} source={source} {what}: {why}; retrying in {}",
                        human(pause)
                    );
                    let mut stop_rx = self.stop_rx.clone();
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = stop_rx.changed() => {}
                    }
                }
            }
        }
    }
}

/// `4 s`, `500 ms`.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_read_well() {
        assert_eq!(human(Duration::from_secs(4)), "4 s");
        assert_eq!(human(Duration::from_millis(400)), "400 ms");
        assert_eq!(human(Duration::from_millis(1_600)), "1.6 s");
    }
}
