//! Parsing of Go-style durations (`30s`, `1m30s`, `500ms`) as used by Flagger's fields; pure.
use std::time::Duration;

/// The schema pattern Flagger puts on `analysis.interval`, metric `interval` and webhook `timeout`.
/// It is a prefix match (not anchored at the end), so `1m30s` passes it.
pub const INTERVAL_PATTERN: &str = "^[0-9]+(m|s)";

/// Why a duration string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration")]
    Empty,
    /// The string is not a Go duration.
    #[error(
        "invalid duration {0:?}: expected a Go duration, numbers each followed by a unit (ns, us, ms, s, m, h), e.g. 30s, 1m30s or 1h"
    )]
    Invalid(String),
}

/// Why a value of a field under Flagger's [`INTERVAL_PATTERN`] (`analysis.interval`, a metric's
/// `interval`, a webhook's `timeout`) was rejected: the API server refuses it by the pattern, or
/// Flagger cannot parse it. One message for both, so that no message contradicts another.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid duration {0:?}: this field takes a Go duration that starts with a whole number of seconds or minutes (the CRD pattern ^[0-9]+(m|s)), e.g. 30s, 1m30s or 60m; 1h, 1.5m and 0 are refused"
)]
pub struct IntervalError(pub String);

/// Parses a field under Flagger's [`INTERVAL_PATTERN`]: it must match the pattern (as the API
/// server checks) and be a Go duration (as Flagger parses it).
pub fn parse_interval(input: &str) -> Result<Duration, IntervalError> {
    match parse_duration(input) {
        Ok(d) if matches_interval_pattern(input) => Ok(d),
        _ => Err(IntervalError(input.to_string())),
    }
}

/// Parses a Go `time.ParseDuration` string (without sign): a sequence of decimal numbers, each with
/// a unit among `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`. `0` alone is accepted, as in Go.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || DurationError::Invalid(input.to_string());
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(invalid());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_secs = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total += value * unit_secs;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(invalid());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration the way Prometheus range selectors accept it (`90s`, `5m`, `1h`).
pub fn format_prometheus(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() != 0 || secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// True when `s` matches Flagger's schema pattern `^[0-9]+(m|s)`.
pub fn matches_interval_pattern(s: &str) -> bool {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(s.as_bytes().get(digits), Some(b'm' | b's'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let cases = [
            ("30s", 30_000),
            ("1m", 60_000),
            ("1m30s", 90_000),
            ("500ms", 500),
            ("2h", 7_200_000),
            ("1.5s", 1_500),
            ("0", 0),
        ];
        for (s, ms) in cases {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for s in ["", "10", "s", "10x", "1m30", "-5s", "ten seconds"] {
            assert!(parse_duration(s).is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn interval_pattern_is_a_prefix_match_like_flaggers() {
        assert!(matches_interval_pattern("1m"));
        assert!(matches_interval_pattern("1m30s"));
        assert!(matches_interval_pattern("500ms"));
        assert!(!matches_interval_pattern("1h"));
        assert!(!matches_interval_pattern("m"));
    }

    #[test]
    fn interval_fields_take_seconds_or_minutes_first() {
        for (s, ms) in [
            ("30s", 30_000),
            ("1m30s", 90_000),
            ("60m", 3_600_000),
            ("500ms", 500),
        ] {
            assert_eq!(parse_interval(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for s in ["1h", "1.5m", "0", "1mn", "", "m"] {
            assert_eq!(
                parse_interval(s),
                Err(IntervalError(s.to_string())),
                "{s:?}"
            );
        }
        // The go-duration fields (a Service timeout) do take hours.
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn prometheus_format_uses_the_largest_whole_unit() {
        assert_eq!(format_prometheus(Duration::from_secs(60)), "1m");
        assert_eq!(format_prometheus(Duration::from_secs(90)), "90s");
        assert_eq!(format_prometheus(Duration::from_secs(7200)), "2h");
        assert_eq!(format_prometheus(Duration::from_millis(1500)), "1500ms");
    }
}
