//! The streams overview (`GET /streams`, the per-stream series of `/metrics`): every stream the
//! store knows, with the ingest side's status (restream targets included) and what the segment
//! index says of its media.

use std::fmt::Write as _;

use hlsmark_clock::{Duration90k, HlsTime, UtcTime};
use hlsmark_store::{RestreamState, RestreamStatus, StreamName, StreamState, StreamStatus};
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

/// A status not rewritten for this long is stale: the ingest rewrites it at least every 5 s, so
/// three missed rewrites mean the ingest process is gone or stuck.
pub const STALE_AFTER: Duration90k = Duration90k::from_secs(15);

/// The stream's status as its ingest reports it; `None` when no ingest reports the stream (or
/// the store does not answer).
pub async fn ingest_status(state: &AppState, stream: &StreamName) -> Option<StreamStatus> {
    let all = state.store.statuses().await.ok()?;
    all.into_iter().find(|(n, _)| n == stream).map(|(_, s)| s)
}

/// A status as one phrase: `it is retrying: Connection refused`.
pub fn state_phrase(s: &StreamStatus) -> String {
    match &s.last_error {
        Some(e) => format!("it is {}: {e}", s.state.as_str()),
        None => format!("it is {}", s.state.as_str()),
    }
}

/// 404 for a stream without a timeline: `no_media` with its state when an ingest reports it
/// (starting, retrying or failed before its first segment), else `unknown_stream`.
pub async fn no_timeline(state: &AppState, stream: &StreamName) -> ApiError {
    match ingest_status(state, stream).await {
        Some(s) => ApiError::not_found(
            "no_media",
            format!("stream {stream} has no media yet ({})", state_phrase(&s)),
        ),
        None => ApiError::not_found("unknown_stream", format!("no stream named {stream}")),
    }
}

/// One stream as `/streams` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamRow {
    pub name: String,
    pub kind: Option<String>,
    pub source: Option<String>,
    pub state: Option<StreamState>,
    pub since: Option<String>,
    pub updated: Option<String>,
    pub stale: bool,
    pub last_error: Option<String>,
    pub restarts: u64,
    pub epoch: Option<u32>,
    pub live_edge: Option<f64>,
    pub live_edge_90k: Option<i64>,
    /// Retained segments (the segment index).
    pub segments: usize,
    pub playlist: String,
    /// Restream targets (`--restream`), key masked; empty when none.
    pub restream: Vec<RestreamRow>,
    /// Who holds the stream's ingest lease and who waits for it (`--standby`); `null` when no
    /// ingest holds it (none runs, or the lease just lapsed).
    pub ingest: Option<IngestRow>,
}

/// The stream's ingest lease as `/streams` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IngestRow {
    /// The active ingest (`--ingest-id`, default `host:pid`).
    pub holder: String,
    /// Its fencing token (grows with every takeover).
    pub token: u64,
    /// Ingests waiting to take over (`--standby`), sorted.
    pub standby: Vec<String>,
}

/// One restream target as `/streams` shows it. `target` has its stream key masked
/// (`rtmp://host/app/****`): the key never leaves the ingest process.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RestreamRow {
    pub target: String,
    /// `connecting`, `connected`, `retrying`, `failed`, `stopped`.
    pub state: RestreamState,
    pub since: String,
    /// Why the last attempt ended (ffmpeg's last line, a stall).
    pub last_error: Option<String>,
    pub bytes_sent: u64,
    /// Media sent, seconds (over every attempt).
    pub seconds_sent: f64,
    /// Restarts after the target's ffmpeg exited or stalled.
    pub restarts: u64,
    /// Restarts because the stream's init section changed (a new epoch of another shape).
    pub reinits: u64,
    /// Fragments not sent because the target was behind (resynchronised at a keyframe).
    pub dropped_fragments: u64,
}

impl From<&RestreamStatus> for RestreamRow {
    #[allow(clippy::cast_precision_loss)] // milliseconds as seconds: exact below 2^53 ms
    fn from(r: &RestreamStatus) -> Self {
        Self {
            target: r.target.clone(),
            state: r.state,
            since: r.since_90k.to_rfc3339_millis(),
            last_error: r.last_error.clone(),
            bytes_sent: r.bytes_sent,
            seconds_sent: r.sent_ms as f64 / 1000.0,
            restarts: r.restarts,
            reinits: r.reinits,
            dropped_fragments: r.dropped_fragments,
        }
    }
}

/// The restream series of `/metrics`, one per target (label `target`: the masked URL):
/// `hlsmark_restream_up` (1 when connected and its stream's status is not stale), bytes and
/// seconds sent, restarts, dropped fragments.
pub fn restream_series(statuses: &[(StreamName, StreamStatus)], now: UtcTime, text: &mut String) {
    if statuses.iter().all(|(_, s)| s.restream.is_empty()) {
        return;
    }
    type Value = fn(&RestreamStatus) -> String;
    let series: [(&str, &str, &str, Value); 5] = [
        (
            "hlsmark_restream_up",
            "gauge",
            "1 when the restream target is connected and its stream's ingest reported within 15 s.",
            |_| String::new(),
        ),
        (
            "hlsmark_restream_bytes_total",
            "counter",
            "Bytes written to the restream target.",
            |r| r.bytes_sent.to_string(),
        ),
        (
            "hlsmark_restream_sent_seconds_total",
            "counter",
            "Media sent to the restream target, seconds.",
            |r| format!("{:.3}", r.sent_ms as f64 / 1000.0),
        ),
        (
            "hlsmark_restream_restarts_total",
            "counter",
            "Restarts of the restream target's ffmpeg after an exit or a stall.",
            |r| r.restarts.to_string(),
        ),
        (
            "hlsmark_restream_dropped_fragments_total",
            "counter",
            "Fragments not sent to the restream target because it was behind.",
            |r| r.dropped_fragments.to_string(),
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (stream, s) in statuses {
            for r in &s.restream {
                let v = if name == "hlsmark_restream_up" {
                    u8::from(r.state == RestreamState::Connected && !is_stale(s, now)).to_string()
                } else {
                    value(r)
                };
                // Stream names are [A-Za-z0-9_-]; the masked URL is escaped as a label value.
                let _ = writeln!(
                    text,
                    "{name}{{stream=\"{stream}\",target=\"{}\"}} {v}",
                    label(&r.target)
                );
            }
        }
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Whether a status written at `updated` is stale at `now`. A final state (`failed`, `stopped`)
/// is the ingest's last word on the stream and is written once, when its run ends: it stays true
/// whether the process lives on (`hlsmark run` with other streams) or not, so it is never stale
/// (it read "stale" 15 s after a stream failed, and the page showed that instead of the failure).
pub fn is_stale(status: &StreamStatus, now: UtcTime) -> bool {
    !status.state.is_final() && now - status.updated_90k > STALE_AFTER
}

/// Every stream with a status or segments, sorted by name.
pub async fn overview(state: &AppState, now: UtcTime) -> Result<Vec<StreamRow>, ApiError> {
    let statuses = state.track(state.store.statuses().await)?;
    let mut names = state.track(state.store.streams().await)?;
    names.extend(statuses.iter().map(|(n, _)| n.clone()));
    names.sort();
    names.dedup();
    let mut rows = Vec::with_capacity(names.len());
    for name in names {
        let status = statuses.iter().find(|(n, _)| *n == name).map(|(_, s)| s);
        let view = state.view(&name).await?;
        let (edge, segments, last_epoch) = if view.timeline.is_empty() {
            (None, 0, None)
        } else {
            let index = state.index(&name, &view).await?;
            (
                index.last().map(|s| s.hls_end()),
                index.len(),
                view.timeline.last().map(|e| e.index),
            )
        };
        rows.push(StreamRow {
            playlist: format!("/hls/{name}/index.m3u8"),
            kind: status.map(|s| s.kind.clone()),
            source: status.map(|s| s.source.clone()),
            state: status.map(|s| s.state),
            since: status.map(|s| s.since_90k.to_rfc3339_millis()),
            updated: status.map(|s| s.updated_90k.to_rfc3339_millis()),
            stale: status.is_some_and(|s| is_stale(s, now)),
            last_error: status.and_then(|s| s.last_error.clone()),
            restarts: status.map_or(0, |s| s.restarts),
            epoch: status.and_then(|s| s.epoch).or(last_epoch),
            live_edge: edge.map(HlsTime::as_secs_f64),
            live_edge_90k: edge.map(HlsTime::ticks),
            segments,
            restream: status.map_or_else(Vec::new, |s| {
                s.restream.iter().map(RestreamRow::from).collect()
            }),
            // A lease that cannot be read leaves the row as it was before leases existed.
            ingest: state
                .store
                .lease_holder(&name)
                .await
                .ok()
                .flatten()
                .map(|h| IngestRow {
                    holder: h.holder,
                    token: h.token,
                    standby: h.standby,
                }),
            name: name.to_string(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_running_state_goes_stale() {
        let now = UtcTime::now();
        let status = |state, ago: i64| StreamStatus {
            state,
            source: "generator".into(),
            kind: "generator".into(),
            since_90k: now - Duration90k::from_secs(ago),
            updated_90k: now - Duration90k::from_secs(ago),
            last_error: None,
            restarts: 0,
            epoch: None,
            restream: Vec::new(),
        };
        for state in [
            StreamState::Starting,
            StreamState::Live,
            StreamState::Retrying,
        ] {
            assert!(!is_stale(&status(state, 10), now), "{state:?}");
            assert!(is_stale(&status(state, 16), now), "{state:?}");
        }
        for state in [StreamState::Failed, StreamState::Stopped] {
            assert!(!is_stale(&status(state, 3_600), now), "{state:?}");
        }
    }
}
