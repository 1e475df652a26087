//! Stream status: what the ingest side says about each stream (starting, live, retrying, failed,
//! stopped; since when, the last error, how many restarts), for `/streams` and `/metrics`.

use std::fmt;

use hlsmark_clock::UtcTime;
use serde::{Deserialize, Serialize};

/// Longest `source` kept (characters); a longer one is cut, not refused.
pub const MAX_STATUS_SOURCE_CHARS: usize = 512;
/// Longest `last_error` kept (characters); a longer one is cut, not refused.
pub const MAX_STATUS_ERROR_CHARS: usize = 1024;
/// Longest `kind` kept (characters).
pub const MAX_STATUS_KIND_CHARS: usize = 64;
/// Most restream targets kept in one status.
pub const MAX_STATUS_RESTREAM: usize = 64;

/// Where a stream's ingest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// The source is being opened; nothing published in this attempt yet.
    Starting,
    /// Segments are being published.
    Live,
    /// The source failed and is retried after a pause (backoff).
    Retrying,
    /// The source cannot work (it is not retried).
    Failed,
    /// Ingest ended on purpose (end of a file played once, shutdown).
    Stopped,
}

impl StreamState {
    /// The ingest's run of the stream ended (`failed`, `stopped`: a file played once, an import,
    /// a source that cannot work, a shutdown): nothing more comes until a new run, which starts
    /// at its own (later) time.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Failed | Self::Stopped)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Live => "live",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ingest side's report on one stream. It is rewritten on every change and at least every
/// 5 s, so a reader can tell a dead ingest by an old `updated_90k`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStatus {
    pub state: StreamState,
    /// The source string with secrets masked (`rtsp://user:***@cam/stream`).
    pub source: String,
    /// Kind of source: `generator`, `file`, `follow`, `rtsp`, `http`, `v4l2`.
    pub kind: String,
    /// Wall time the stream entered `state`.
    pub since_90k: UtcTime,
    /// Wall time of this report.
    pub updated_90k: UtcTime,
    /// The reason of the last failure (ffmpeg's last stderr line, ...), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Restarts of the source since the process started.
    #[serde(default)]
    pub restarts: u64,
    /// The epoch being written, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u32>,
    /// The stream's restream targets (`--restream`), in the order configured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restream: Vec<RestreamStatus>,
}

/// Where a restream target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestreamState {
    /// Waiting for the stream's media, or connecting.
    Connecting,
    /// Sending.
    Connected,
    /// The last attempt failed; retried after a pause (backoff).
    Retrying,
    /// Cannot work with this stream's media (not retried until it changes).
    Failed,
    /// The stream stopped.
    Stopped,
}

impl RestreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }
}

/// One restream target of a stream, as the ingest reports it. `target` is the URL with its stream
/// key masked (`rtmp://host/app/****`): the key never leaves the ingest process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestreamStatus {
    pub target: String,
    pub state: RestreamState,
    /// Wall time the target entered `state`.
    pub since_90k: UtcTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Bytes written to the target, over every attempt.
    #[serde(default)]
    pub bytes_sent: u64,
    /// Media sent, over every attempt, in milliseconds.
    #[serde(default)]
    pub sent_ms: u64,
    /// Restarts after the target's ffmpeg exited or stalled.
    #[serde(default)]
    pub restarts: u64,
    /// Restarts because the stream's init section changed (a new epoch of another shape).
    #[serde(default)]
    pub reinits: u64,
    /// Fragments not sent to this target because it was behind (resynchronised at a keyframe).
    #[serde(default)]
    pub dropped_fragments: u64,
}

impl StreamStatus {
    /// The status as a backend stores it: over-long text is cut at a character boundary (with
    /// `…` at the end) rather than refused, because a status must always be recordable.
    pub fn bounded(&self) -> StreamStatus {
        StreamStatus {
            source: cut(&self.source, MAX_STATUS_SOURCE_CHARS),
            kind: cut(&self.kind, MAX_STATUS_KIND_CHARS),
            last_error: self
                .last_error
                .as_deref()
                .map(|e| cut(e, MAX_STATUS_ERROR_CHARS)),
            restream: self
                .restream
                .iter()
                .take(MAX_STATUS_RESTREAM)
                .map(|r| RestreamStatus {
                    target: cut(&r.target, MAX_STATUS_SOURCE_CHARS),
                    last_error: r
                        .last_error
                        .as_deref()
                        .map(|e| cut(e, MAX_STATUS_ERROR_CHARS)),
                    ..r.clone()
                })
                .collect(),
            ..self.clone()
        }
    }
}

/// `s` with at most `max` characters; a cut one ends in `…` (counted in `max`).
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> StreamStatus {
        StreamStatus {
            state: StreamState::Retrying,
            source: "rtsp://cam/1".into(),
            kind: "rtsp".into(),
            since_90k: UtcTime(1),
            updated_90k: UtcTime(2),
            last_error: Some("Connection refused".into()),
            restarts: 3,
            epoch: Some(4),
            restream: Vec::new(),
        }
    }

    #[test]
    fn serde_uses_lowercase_states_and_named_ticks() {
        let j = serde_json::to_value(status()).unwrap();
        assert_eq!(j["state"], "retrying");
        assert_eq!(j["since_90k"], 1);
        assert_eq!(j["updated_90k"], 2);
        let back: StreamStatus = serde_json::from_value(j).unwrap();
        assert_eq!(back, status());
        let minimal = r#"{"state":"live","source":"generator","kind":"generator",
            "since_90k":0,"updated_90k":0}"#;
        let s: StreamStatus = serde_json::from_str(minimal).unwrap();
        assert_eq!((s.restarts, s.epoch, s.last_error), (0, None, None));
        assert!(s.restream.is_empty());
        assert!(serde_json::from_str::<StreamStatus>(&minimal.replace("live", "Live")).is_err());
    }

    #[test]
    fn long_text_is_cut_at_characters_not_refused() {
        let s = StreamStatus {
            source: "é".repeat(600),
            last_error: Some("x".repeat(5000)),
            kind: "k".repeat(100),
            ..status()
        }
        .bounded();
        assert_eq!(s.source.chars().count(), MAX_STATUS_SOURCE_CHARS);
        assert!(s.source.ends_with('…'));
        assert_eq!(
            s.last_error.as_deref().map(|e| e.chars().count()),
            Some(MAX_STATUS_ERROR_CHARS)
        );
        assert_eq!(s.kind.chars().count(), MAX_STATUS_KIND_CHARS);
        assert_eq!(status().bounded(), status());
    }
}
