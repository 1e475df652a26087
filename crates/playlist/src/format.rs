//! Exact text forms of tick counts and safe quoted-string values for playlist attributes.

use hlsmark_clock::{Duration90k, TICKS_PER_SECOND};

/// Seconds of `d` as a decimal: microsecond precision (a tick is 11.1 µs, so this names the tick),
/// trailing zeros trimmed down to three decimals: `1.000`, `1.001`, `0.033367`.
///
/// Printed from integer ticks, never through a float, so `EXTINF` and `DURATION` say exactly what
/// the segment index holds.
pub fn secs_decimal(d: Duration90k) -> String {
    let ticks = i128::from(d.ticks());
    let neg = ticks < 0;
    let abs = ticks.abs();
    // Microseconds, rounded half up: ticks * 1e6 / 90000 = ticks * 100 / 9.
    let tps = i128::from(TICKS_PER_SECOND);
    let micros = (abs * 1_000_000 + tps / 2) / tps;
    let whole = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let mut digits = format!("{frac:06}");
    while digits.len() > 3 && digits.ends_with('0') {
        digits.pop();
    }
    format!(
        "{}{whole}.{digits}",
        if neg && micros != 0 { "-" } else { "" }
    )
}

/// A value safe inside an HLS quoted-string (RFC 8216 §4.2: no `"`, CR or LF): double quotes become
/// single quotes and control characters spaces, so a marker label can never break the playlist.
pub fn quoted_string_value(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_and_trimmed() {
        assert_eq!(secs_decimal(Duration90k(90_000)), "1.000");
        assert_eq!(secs_decimal(Duration90k(90_090)), "1.001");
        assert_eq!(secs_decimal(Duration90k(45_000)), "0.500");
        assert_eq!(secs_decimal(Duration90k(3_003)), "0.033367");
        assert_eq!(secs_decimal(Duration90k(3_000)), "0.033333");
        assert_eq!(secs_decimal(Duration90k(0)), "0.000");
        assert_eq!(secs_decimal(Duration90k(-45_000)), "-0.500");
        assert_eq!(
            secs_decimal(Duration90k(i64::MAX)),
            "102481911520608.620078"
        );
    }

    #[test]
    fn labels_cannot_break_quoted_strings() {
        assert_eq!(quoted_string_value("a \"goal\"\r\nnow"), "a 'goal'  now");
        assert_eq!(quoted_string_value("Tor! ⚽"), "Tor! ⚽");
    }
}
