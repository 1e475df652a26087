//! Markers, stream names, range queries and cursors, with the validation every backend applies.

use std::fmt;
use std::str::FromStr;

// Marker times must lie within +-10,000 years of zero on every clock (keeps sums far from
// overflow): the clock crate's one bound, `MAX_ABS_TICKS`.
use hlsmark_clock::{Duration90k, GenTime, HlsTime, MAX_ABS_TICKS, Segment, UtcTime};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;

pub const MAX_LABEL_CHARS: usize = 256;
pub const MAX_DATA_BYTES: usize = 16 * 1024;
pub const MAX_LIMIT: u64 = 1000;
/// Most tags a marker may carry, and the longest tag (characters of `[A-Za-z0-9_.:-]`).
pub const MAX_TAGS: usize = 16;
pub const MAX_TAG_CHARS: usize = 32;
/// Most segments a live playlist lists (`--live-window`): one bound for the ingest, which keeps
/// at least that many, and the API, which lists them.
pub const LIVE_WINDOW_MAX: u32 = 10_000;
/// Most markers in one all-or-nothing batch ([`crate::Store::insert_marker_batch`]).
pub const MAX_BATCH: usize = 1000;
/// Most markers a filtered query looks at before it answers (see [`MarkerFilter`]): bounds the
/// work of one call whatever the filter matches; the page's cursor continues from there.
pub const FILTER_SCAN_MAX: usize = 10_000;

/// A validated stream name: 1-64 characters of `[A-Za-z0-9_-]`, safe in keys, paths and URLs.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamName(String);

impl StreamName {
    pub fn new(s: &str) -> Result<Self, StoreError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(StoreError::InvalidStream(s.chars().take(80).collect()))
        }
    }
    /// The default stream of a single-source install.
    pub fn live() -> Self {
        Self("live".to_owned())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StreamName {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self, StoreError> {
        Self::new(&s)
    }
}
impl From<StreamName> for String {
    fn from(s: StreamName) -> String {
        s.0
    }
}
impl FromStr for StreamName {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        Self::new(s)
    }
}
impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// How much a marker matters to whoever watches: `info` (the default), `warning`, `critical`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl FromStr for Severity {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| StoreError::InvalidSeverity(s.chars().take(80).collect()))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `kind` is a valid marker kind: 1-64 of `[a-z0-9_.-]`.
pub fn valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 64
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b))
}

/// Whether `tag` is a valid tag: 1-32 of `[A-Za-z0-9_.:-]` (safe in a URL query, a playlist
/// attribute and a comma-separated list).
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= MAX_TAG_CHARS
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

/// Whether `color` is `#rrggbb` (hex digits of either case; the API stores them lower case).
pub fn valid_color(color: &str) -> bool {
    color.len() == 7
        && color.starts_with('#')
        && color.bytes().skip(1).all(|b| b.is_ascii_hexdigit())
}

/// An event on the timeline, with its time on every clock that is fixed when it is stored.
///
/// `severity`, `color` and `tags` came later: records without them load as `info`, no colour,
/// no tags (serde defaults), and compare equal to a re-POST that does not give them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub id: Uuid,
    pub stream: StreamName,
    /// Human text, 1-256 characters.
    pub label: String,
    /// What made it: `event` (the generator), `manual`, or any short tag of an external detector.
    pub kind: String,
    #[serde(rename = "gen_90k")]
    pub gen_time: GenTime,
    /// Media time of the first frame the event is visible on. Markers are ordered and queried by it.
    #[serde(rename = "hls_90k")]
    pub hls: HlsTime,
    #[serde(rename = "utc_90k")]
    pub utc: UtcTime,
    #[serde(rename = "duration_90k")]
    pub duration: Duration90k,
    #[serde(default)]
    pub severity: Severity,
    /// `#rrggbb`, for a page that draws the marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// At most 16 distinct tags of 1-32 characters of `[A-Za-z0-9_.:-]`, in the producer's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Free JSON of the producer, at most 16 KiB serialized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(rename = "created_at_90k")]
    pub created_at: UtcTime,
}

impl Marker {
    /// Checks everything a backend must refuse. Backends call this before writing.
    pub fn validate(&self) -> Result<(), StoreError> {
        let n = self.label.chars().count();
        if n == 0 || n > MAX_LABEL_CHARS {
            return Err(StoreError::LabelLength(n));
        }
        if !valid_kind(&self.kind) {
            return Err(StoreError::InvalidKind(
                self.kind.chars().take(80).collect(),
            ));
        }
        if let Some(c) = &self.color
            && !valid_color(c)
        {
            return Err(StoreError::InvalidColor(c.chars().take(80).collect()));
        }
        if self.tags.len() > MAX_TAGS {
            return Err(StoreError::InvalidTags(format!(
                "{} tags; at most {MAX_TAGS} are allowed",
                self.tags.len()
            )));
        }
        for (i, t) in self.tags.iter().enumerate() {
            if !valid_tag(t) {
                return Err(StoreError::InvalidTags(format!(
                    "tag {:?} is not 1 to {MAX_TAG_CHARS} of A-Z, a-z, 0-9, '_', '.', ':' and '-'",
                    t.chars().take(80).collect::<String>()
                )));
            }
            if self.tags[..i].contains(t) {
                return Err(StoreError::InvalidTags(format!("tag {t:?} is given twice")));
            }
        }
        if let Some(d) = &self.data {
            let len = serde_json::to_vec(d).map(|v| v.len()).unwrap_or(usize::MAX);
            if len > MAX_DATA_BYTES {
                return Err(StoreError::DataTooLarge(len));
            }
        }
        if self.duration.ticks() < 0 {
            return Err(StoreError::NegativeDuration(self.duration.ticks()));
        }
        for (name, t) in [
            ("gen", self.gen_time.ticks()),
            ("hls", self.hls.ticks()),
            ("utc", self.utc.ticks()),
            ("duration", self.duration.ticks()),
            ("created_at", self.created_at.ticks()),
        ] {
            if t.unsigned_abs() > MAX_ABS_TICKS.unsigned_abs() {
                return Err(StoreError::TimeOutOfRange(format!("{name} = {t} ticks")));
            }
        }
        Ok(())
    }

    /// Whether `other` is the same marker for idempotency: every field but `created_at` (a
    /// retried POST stamps a new creation time but is still the same marker).
    pub fn same_content(&self, other: &Marker) -> bool {
        Marker {
            created_at: other.created_at,
            ..self.clone()
        } == *other
    }

    /// The position of this marker in query order.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            hls: self.hls,
            id: self.id,
        }
    }
}

/// Checks a batch for [`crate::Store::insert_marker_batch`] before anything is written: size,
/// every marker valid and of `stream`, and ids repeated inside the batch (see [`repeats`]).
pub(crate) fn check_batch(
    stream: &StreamName,
    markers: &[Marker],
) -> Result<Vec<Option<usize>>, StoreError> {
    if markers.len() > MAX_BATCH {
        return Err(StoreError::BatchTooLarge(markers.len()));
    }
    for (index, m) in markers.iter().enumerate() {
        let entry = |error: StoreError| StoreError::BatchEntry {
            index,
            id: m.id,
            error: Box::new(error),
        };
        m.validate().map_err(entry)?;
        if m.stream != *stream {
            return Err(entry(StoreError::StreamMismatch {
                marker: m.stream.to_string(),
                batch: stream.to_string(),
            }));
        }
    }
    repeats(markers, true)
}

/// For each marker, the index of an earlier one with the same stream, id and content (a retry
/// inside one call: it will be `AlreadyExists`). The same id with other content is a conflict of
/// the later entry (named as a batch entry when `batch`).
pub(crate) fn repeats(markers: &[Marker], batch: bool) -> Result<Vec<Option<usize>>, StoreError> {
    let mut first: std::collections::HashMap<(&StreamName, Uuid), usize> =
        std::collections::HashMap::with_capacity(markers.len());
    let mut out = Vec::with_capacity(markers.len());
    for (index, m) in markers.iter().enumerate() {
        match first.get(&(&m.stream, m.id)) {
            Some(&i) if markers[i].same_content(m) => out.push(Some(i)),
            Some(_) if batch => {
                return Err(StoreError::BatchEntry {
                    index,
                    id: m.id,
                    error: Box::new(StoreError::Conflict(m.id)),
                });
            }
            Some(_) => return Err(StoreError::Conflict(m.id)),
            None => {
                first.insert((&m.stream, m.id), index);
                out.push(None);
            }
        }
    }
    Ok(out)
}

/// Result of an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// The identical marker was already stored (a retried POST); nothing changed.
    AlreadyExists,
}

/// A position in (hls, id) order: the last marker of a page. Stable under inserts and deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub hls: HlsTime,
    pub id: Uuid,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.hls.ticks(), self.id.simple())
    }
}

impl FromStr for Cursor {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::InvalidCursor(s.chars().take(80).collect());
        let (hls, id) = s.split_once('.').ok_or_else(bad)?;
        let hls: i64 = hls.parse().map_err(|_| bad())?;
        if id.len() != 32 || hls.unsigned_abs() > MAX_ABS_TICKS.unsigned_abs() {
            return Err(bad());
        }
        let id = Uuid::try_parse(id).map_err(|_| bad())?;
        Ok(Self {
            hls: HlsTime(hls),
            id,
        })
    }
}

/// A validated range query: markers with `from <= hls < to`, oldest first (or newest first, see
/// [`RangeQuery::newest_first`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeQuery {
    pub stream: StreamName,
    pub from: HlsTime,
    pub to: HlsTime,
    pub limit: u32,
    /// Start strictly after this position (in the query's order: before it when newest first).
    pub after: Option<Cursor>,
    /// Descending (hls, id) order: the page holds the newest markers of the range and
    /// `Page::next` continues towards older ones. Playlists use it to keep the newest markers of
    /// a window under their cap, whatever came before.
    pub newest_first: bool,
    /// Only markers that match (empty: all). A filtered query looks at no more than
    /// [`FILTER_SCAN_MAX`] markers of the range per call, so a page may hold fewer than `limit`
    /// markers (none, even) and still have a `next` cursor: the place where the scan stopped.
    pub filter: MarkerFilter,
}

/// Which markers a range query returns: every given condition must hold. Backends apply it while
/// scanning the range in order (no index per field; see design/store.md for what that costs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkerFilter {
    /// Exactly this kind.
    pub kind: Option<String>,
    /// Labels that start with this text (case-sensitive, 1-256 characters).
    pub label_prefix: Option<String>,
    /// Markers carrying this tag.
    pub tag: Option<String>,
    /// Any of these severities (empty: any).
    pub severities: Vec<Severity>,
}

impl MarkerFilter {
    pub fn is_empty(&self) -> bool {
        self.kind.is_none()
            && self.label_prefix.is_none()
            && self.tag.is_none()
            && self.severities.is_empty()
    }

    pub fn matches(&self, m: &Marker) -> bool {
        self.kind.as_ref().is_none_or(|k| *k == m.kind)
            && self
                .label_prefix
                .as_ref()
                .is_none_or(|p| m.label.starts_with(p.as_str()))
            && self.tag.as_ref().is_none_or(|t| m.tags.contains(t))
            && (self.severities.is_empty() || self.severities.contains(&m.severity))
    }

    /// Refuses values no marker could have, naming the parameter (`kind`, `label`, `tag`).
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |param: &'static str, v: &str, why: &str| StoreError::InvalidFilter {
            param,
            why: format!("{:?} {why}", v.chars().take(80).collect::<String>()),
        };
        if let Some(k) = &self.kind
            && !valid_kind(k)
        {
            return Err(bad(
                "kind",
                k,
                "is not a kind (1 to 64 of a-z, 0-9, '_', '-' and '.')",
            ));
        }
        if let Some(p) = &self.label_prefix {
            let n = p.chars().count();
            if n == 0 || n > MAX_LABEL_CHARS {
                return Err(bad("label", p, "must be 1 to 256 characters"));
            }
        }
        if let Some(t) = &self.tag
            && !valid_tag(t)
        {
            return Err(bad(
                "tag",
                t,
                "is not a tag (1 to 32 of A-Z, a-z, 0-9, '_', '.', ':' and '-')",
            ));
        }
        Ok(())
    }
}

impl RangeQuery {
    pub fn new(
        stream: StreamName,
        from: HlsTime,
        to: HlsTime,
        limit: u64,
        after: Option<Cursor>,
    ) -> Result<Self, StoreError> {
        if from > to {
            return Err(StoreError::InvertedRange {
                from: from.ticks(),
                to: to.ticks(),
            });
        }
        for t in [from, to] {
            if t.ticks().unsigned_abs() > MAX_ABS_TICKS.unsigned_abs() {
                return Err(StoreError::TimeOutOfRange(format!("{} ticks", t.ticks())));
            }
        }
        if limit == 0 || limit > MAX_LIMIT {
            return Err(StoreError::InvalidLimit(limit));
        }
        let limit = u32::try_from(limit).map_err(|_| StoreError::InvalidLimit(limit))?;
        Ok(Self {
            stream,
            from,
            to,
            limit,
            after,
            newest_first: false,
            filter: MarkerFilter::default(),
        })
    }

    /// The same query returning only markers that match `filter` (validated here).
    pub fn filtered(mut self, filter: MarkerFilter) -> Result<Self, StoreError> {
        filter.validate()?;
        self.filter = filter;
        Ok(self)
    }

    /// The same query in descending (hls, id) order.
    #[must_use]
    pub fn newest_first(mut self) -> Self {
        self.newest_first = true;
        self
    }
}

/// One page of a range query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub markers: Vec<Marker>,
    /// Pass as `after` to get the next page; `None` when the range is exhausted.
    pub next: Option<Cursor>,
}

/// What [`crate::Store::apply_retention`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments: Vec<Segment>,
    pub markers: u64,
}

/// Something about a stream changed: a segment, part, epoch or marker (then `version` is the
/// stream's new [`Store::version`](crate::Store::version)) or its status (then `version` is the
/// unchanged current one). Sent by every backend to every subscriber, whichever process wrote.
/// A receiver that wakes on it re-reads what it needs; it never carries the change itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamUpdate {
    pub stream: StreamName,
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker() -> Marker {
        Marker {
            id: Uuid::from_u128(7),
            stream: StreamName::live(),
            label: "goal".into(),
            kind: "event".into(),
            gen_time: GenTime(90_000),
            hls: HlsTime(90_000),
            utc: UtcTime(1_795_000_000 * 90_000),
            duration: Duration90k(45_000),
            severity: Severity::Info,
            color: None,
            tags: Vec::new(),
            data: None,
            created_at: UtcTime(1_795_000_000 * 90_000),
        }
    }

    #[test]
    fn stream_names() {
        assert!(StreamName::new("live").is_ok());
        assert!(StreamName::new("cam-2_b").is_ok());
        for bad in ["", "../x", "a/b", "a b", "ü", &"x".repeat(65), "a%2e"] {
            assert!(StreamName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn marker_validation() {
        assert!(marker().validate().is_ok());
        let m = Marker {
            label: String::new(),
            ..marker()
        };
        assert!(matches!(m.validate(), Err(StoreError::LabelLength(0))));
        let m = Marker {
            label: "é".repeat(256),
            ..marker()
        };
        assert!(m.validate().is_ok(), "256 characters, not bytes");
        let m = Marker {
            label: "x".repeat(257),
            ..marker()
        };
        assert!(matches!(m.validate(), Err(StoreError::LabelLength(257))));
        let m = Marker {
            data: Some(serde_json::json!({ "x": "y".repeat(17_000) })),
            ..marker()
        };
        assert!(matches!(m.validate(), Err(StoreError::DataTooLarge(_))));
        let m = Marker {
            duration: Duration90k(-1),
            ..marker()
        };
        assert!(m.validate().is_err());
        let m = Marker {
            hls: HlsTime(i64::MAX),
            ..marker()
        };
        assert!(m.validate().is_err());
        let m = Marker {
            kind: "Bad Kind".into(),
            ..marker()
        };
        assert!(m.validate().is_err());
    }

    #[test]
    fn cursor_roundtrip_and_rejects() {
        let c = marker().cursor();
        assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        let neg = Cursor {
            hls: HlsTime(-5),
            id: Uuid::from_u128(1),
        };
        assert_eq!(neg.to_string().parse::<Cursor>().unwrap(), neg);
        for bad in [
            "",
            "x",
            "1.",
            ".abc",
            "1.zz",
            "99999999999999999999999.00000000000000000000000000000001",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn most_negative_time_is_an_error_not_an_overflow() {
        let m = Marker {
            hls: HlsTime(i64::MIN),
            ..marker()
        };
        assert!(matches!(m.validate(), Err(StoreError::TimeOutOfRange(_))));
        let c = format!("{}.{}", i64::MIN, Uuid::from_u128(1).simple());
        assert!(c.parse::<Cursor>().is_err());
        let q = RangeQuery::new(StreamName::live(), HlsTime(i64::MIN), HlsTime(0), 10, None);
        assert!(matches!(q, Err(StoreError::TimeOutOfRange(_))));
    }

    #[test]
    fn range_query_validation() {
        let s = StreamName::live();
        assert!(RangeQuery::new(s.clone(), HlsTime(2), HlsTime(1), 10, None).is_err());
        assert!(RangeQuery::new(s.clone(), HlsTime(1), HlsTime(1), 0, None).is_err());
        assert!(RangeQuery::new(s.clone(), HlsTime(1), HlsTime(1), 1001, None).is_err());
        assert!(RangeQuery::new(s, HlsTime(1), HlsTime(2), 1000, None).is_ok());
    }
}
