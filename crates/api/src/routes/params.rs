//! Parsing of query parameters into clock values, join sequences and marker filters, with errors
//! that name the parameter and say what was expected.

use hlsmark_clock::{HlsTime, SeqNo, TimelineError, UtcTime};
use hlsmark_store::{
    MAX_LABEL_CHARS, MAX_TAG_CHARS, MarkerFilter, Severity, valid_kind, valid_tag,
};

use crate::error::ApiError;
use crate::services::clocks::Clocks;

/// A time as a client wrote it: seconds on the HLS clock, or an RFC 3339 wall time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeParam {
    Hls(HlsTime),
    Utc(UtcTime),
}

impl TimeParam {
    /// Parses `12.5` (HLS seconds) or `2026-11-24T07:00:00Z` (RFC 3339). NaN, infinities, empty
    /// strings and anything beyond 10,000 years are refused.
    pub fn parse(name: &str, s: &str) -> Result<Self, ApiError> {
        let bad = |why: &str| {
            ApiError::bad_request(
                "invalid_time",
                format!(
                    "{name}={:?}: {why}; use seconds on the HLS clock (12.5) or an RFC 3339 time (2026-11-24T07:00:00.033Z)",
                    s.chars().take(64).collect::<String>()
                ),
            )
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("empty"));
        }
        let lower = t.to_ascii_lowercase();
        if ["nan", "inf", "infinity"].contains(&lower.trim_start_matches(['+', '-'])) {
            return Err(bad("not a finite number"));
        }
        let looks_numeric = t
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
        if looks_numeric {
            let secs: f64 = t.parse().map_err(|_| bad("not a number"))?;
            return HlsTime::from_secs_f64(secs)
                .map(TimeParam::Hls)
                .map_err(|e| bad(&e.to_string()));
        }
        if t.contains('T') || t.contains('t') {
            return UtcTime::parse_rfc3339(t)
                .or_else(|e| {
                    // An unencoded '+' of a UTC offset (`...T08:00:00+01:00` typed into a URL)
                    // arrives as a space after query decoding: read it as the '+' it was.
                    match t.rsplit_once(' ') {
                        Some((a, b)) => UtcTime::parse_rfc3339(&format!("{a}+{b}")).map_err(|_| e),
                        None => Err(e),
                    }
                })
                .map(TimeParam::Utc)
                .map_err(|e| bad(&format!("not an RFC 3339 time ({e})")));
        }
        Err(bad("neither a number nor an RFC 3339 time"))
    }

    /// The HLS time of a range bound (an RFC 3339 time is converted through the segment index). A
    /// wall time before the stream began is the stream's start ("the last hour" of a stream that
    /// started ten minutes ago is everything it has, not an error), and a wall time when the
    /// stream was down is where the video resumed.
    pub fn to_hls(self, clocks: &Clocks<'_>) -> Result<HlsTime, ApiError> {
        match self {
            TimeParam::Hls(h) => Ok(h),
            TimeParam::Utc(u) => clocks.utc_to_hls_bound(u).map_err(ApiError::from),
        }
    }
}

/// Parses an unsigned integer parameter.
pub fn parse_u64(name: &str, s: &str, max: u64) -> Result<u64, ApiError> {
    let v: u64 = s.trim().parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_parameter",
            format!(
                "{name}={:?} must be a whole number from 0 to {max}",
                s.chars().take(64).collect::<String>()
            ),
        )
    })?;
    if v > max {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("{name}={v} is larger than {max}"),
        ));
    }
    Ok(v)
}

/// The filters of `GET /markers`: `kind` (exact), `label` (a prefix, case-sensitive), `tag`
/// (one tag) and `severity` (one or a comma list of `info`, `warning`, `critical`). A value no
/// marker could have is 400 `invalid_parameter` naming the parameter, never an empty page.
pub fn marker_filter(
    kind: Option<&str>,
    label: Option<&str>,
    tag: Option<&str>,
    severity: Option<&str>,
) -> Result<MarkerFilter, ApiError> {
    let bad = |name: &str, v: &str, why: &str| {
        ApiError::bad_request(
            "invalid_parameter",
            format!("{name}={:?}: {why}", v.chars().take(64).collect::<String>()),
        )
    };
    if let Some(k) = kind
        && !valid_kind(k)
    {
        return Err(bad(
            "kind",
            k,
            "a kind is 1 to 64 of a-z, 0-9, '_', '-' and '.'",
        ));
    }
    if let Some(l) = label {
        let n = l.chars().count();
        if n == 0 || n > MAX_LABEL_CHARS {
            return Err(bad("label", l, "a label prefix is 1 to 256 characters"));
        }
    }
    if let Some(t) = tag
        && !valid_tag(t)
    {
        return Err(bad(
            "tag",
            t,
            &format!("a tag is 1 to {MAX_TAG_CHARS} of A-Z, a-z, 0-9, '_', '.', ':' and '-'"),
        ));
    }
    let mut severities = Vec::new();
    if let Some(list) = severity {
        for s in list.split(',') {
            let v: Severity = s.trim().parse().map_err(|_| {
                bad(
                    "severity",
                    list,
                    "give info, warning or critical, or a comma list of them",
                )
            })?;
            if !severities.contains(&v) {
                severities.push(v);
            }
        }
    }
    Ok(MarkerFilter {
        kind: kind.map(str::to_owned),
        label_prefix: label.map(str::to_owned),
        tag: tag.map(str::to_owned),
        severities,
    })
}

/// A `?seq=` join sequence must be one whose start is known: retained, ahead of the live edge,
/// or (the generator) computable from its epoch.
pub fn check_join_seq(clocks: &Clocks<'_>, seq: SeqNo) -> Result<(), ApiError> {
    match clocks.segment_start(seq) {
        Ok(_) => Ok(()),
        Err(TimelineError::SeqBeforeStart(_))
            if clocks
                .timeline
                .epochs()
                .first()
                .is_some_and(|e| e.first_seq <= seq) =>
        {
            let retained = match (clocks.index.first(), clocks.index.last()) {
                (Some(f), Some(l)) => format!("retained: {} to {}", f.seq, l.seq),
                _ => "none is retained".to_owned(),
            };
            Err(ApiError::bad_request(
                "invalid_parameter",
                format!(
                    "seq={seq}: the stream no longer holds that segment, so its start is not known \
                     ({retained})"
                ),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_filters_parse_or_name_the_parameter() {
        let f = marker_filter(
            Some("detector.v2"),
            Some("door"),
            Some("zone:a"),
            Some("warning, critical,warning"),
        )
        .unwrap();
        assert_eq!(f.severities, vec![Severity::Warning, Severity::Critical]);
        assert_eq!(f.label_prefix.as_deref(), Some("door"));
        assert!(marker_filter(None, None, None, None).unwrap().is_empty());
        for (args, name) in [
            ((Some("Bad Kind"), None, None, None), "kind="),
            ((Some(""), None, None, None), "kind="),
            ((None, Some(""), None, None), "label="),
            ((None, None, Some("a b"), None), "tag="),
            ((None, None, None, Some("urgent")), "severity="),
            ((None, None, None, Some("info,")), "severity="),
            ((None, None, None, Some("")), "severity="),
        ] {
            let e = marker_filter(args.0, args.1, args.2, args.3).unwrap_err();
            assert_eq!(e.code, "invalid_parameter");
            assert!(e.message.starts_with(name), "{}", e.message);
        }
    }

    #[test]
    fn an_unencoded_plus_of_an_offset_is_read_as_plus() {
        let plus = TimeParam::parse("from", "2026-11-24T08:00:00+01:00").unwrap();
        assert_eq!(
            TimeParam::parse("from", "2026-11-24T08:00:00 01:00").unwrap(),
            plus
        );
        assert!(TimeParam::parse("from", "2026-11-24T08:00:00 xx").is_err());
    }

    #[test]
    fn times_parse_or_say_why() {
        assert_eq!(
            TimeParam::parse("from", "12.5").unwrap(),
            TimeParam::Hls(HlsTime(1_125_000))
        );
        assert_eq!(
            TimeParam::parse("from", "-1").unwrap(),
            TimeParam::Hls(HlsTime(-90_000))
        );
        assert!(matches!(
            TimeParam::parse("from", "2026-11-24T07:00:00Z").unwrap(),
            TimeParam::Utc(_)
        ));
        for bad in [
            "",
            " ",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "infinity",
            "1e400",
            "1e300",
            "abc",
            "12,5",
            "2026-13-24T07:00:00Z",
            "2026-11-24",
            "0x10",
            "--1",
        ] {
            let e = TimeParam::parse("from", bad).unwrap_err();
            assert_eq!(e.code, "invalid_time", "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Whatever a client sends, parsing answers a value or a 400, never a panic, and every
        /// accepted HLS time is finite and within 10,000 years.
        #[test]
        fn any_text_parses_or_is_refused(s in "\\PC{0,40}", n in proptest::num::f64::ANY) {
            for input in [s.clone(), n.to_string(), format!("{n:e}")] {
                match TimeParam::parse("from", &input) {
                    Ok(TimeParam::Hls(h)) => proptest::prop_assert!(h.ticks().abs() <= 10_000 * 366 * 86_400 * 90_000),
                    Ok(TimeParam::Utc(_)) => {}
                    Err(e) => proptest::prop_assert_eq!(e.status.as_u16(), 400),
                }
                let _ = parse_u64("limit", &input, 1000);
                let _ = crate::files::classify(&input);
            }
        }
    }

    #[test]
    fn integers_are_bounded() {
        assert_eq!(parse_u64("limit", "10", 1000).unwrap(), 10);
        for bad in [
            "",
            "-1",
            "1.5",
            "1e3",
            "1001",
            "99999999999999999999999",
            "ten",
        ] {
            assert!(parse_u64("limit", bad, 1000).is_err(), "{bad:?}");
        }
    }
}
