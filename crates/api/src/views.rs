//! How the API shows a marker as JSON: seconds on every clock plus exact ticks. One shape for
//! `GET /markers`, `POST /markers`, the live feed and webhook bodies (a service, so it lives
//! here and not in a route).

use hlsmark_clock::SeqNo;
use hlsmark_store::Marker;
use serde::Serialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::services::clocks::Clocks;
use crate::services::snap::Frame;

/// A marker as the API shows it: seconds on every clock, plus exact ticks where it matters.
#[derive(Debug, Serialize)]
pub struct MarkerView<'a> {
    pub id: Uuid,
    pub stream: &'a str,
    pub label: &'a str,
    pub kind: &'a str,
    #[serde(rename = "gen")]
    pub gen_secs: f64,
    pub hls: f64,
    pub hls_90k: i64,
    pub utc: String,
    pub duration: f64,
    pub duration_90k: i64,
    /// `info`, `warning` or `critical`.
    pub severity: &'a str,
    /// `#rrggbb` or null.
    pub color: Option<&'a str>,
    pub tags: &'a [String],
    /// Media sequence number of the segment holding the marker.
    pub seq: Option<SeqNo>,
    /// Player `currentTime` for a player that joined at `?seq=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a serde_json::Value>,
    /// The frame a POSTed time landed on (answers of `POST /markers` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<FrameView>,
}

/// Which frame a marker landed on: its segment, its index there, its time.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FrameView {
    pub seq: Option<SeqNo>,
    pub index: Option<usize>,
    pub hls: f64,
    pub hls_90k: i64,
}

impl From<Frame> for FrameView {
    fn from(f: Frame) -> Self {
        Self {
            seq: f.seq,
            index: f.index,
            hls: f.hls.as_secs_f64(),
            hls_90k: f.hls.ticks(),
        }
    }
}

impl<'a> MarkerView<'a> {
    pub fn new(
        m: &'a Marker,
        clocks: &Clocks<'_>,
        join_seq: Option<SeqNo>,
    ) -> Result<Self, ApiError> {
        let client = match join_seq {
            Some(s) => Some(clocks.hls_to_client(m.hls, s)?.as_secs_f64()),
            None => None,
        };
        Ok(Self {
            id: m.id,
            stream: m.stream.as_str(),
            label: &m.label,
            kind: &m.kind,
            gen_secs: m.gen_time.as_secs_f64(),
            hls: m.hls.as_secs_f64(),
            hls_90k: m.hls.ticks(),
            utc: m.utc.to_rfc3339_millis(),
            duration: m.duration.as_secs_f64(),
            duration_90k: m.duration.ticks(),
            severity: m.severity.as_str(),
            color: m.color.as_deref(),
            tags: &m.tags,
            seq: clocks.seq_at(m.hls),
            client,
            data: m.data.as_ref(),
            frame: None,
        })
    }
}
