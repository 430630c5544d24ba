//! Conversions between chrono times (our clock type) and Kubernetes `Time` (jiff); pure.
use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A Kubernetes `Time` for a chrono instant (sub-second precision is kept; the API server's
/// RFC 3339 encoding truncates to seconds).
pub fn to_time(t: DateTime<Utc>) -> Time {
    let nanos = t.timestamp_nanos_opt().unwrap_or(0);
    Time(Timestamp::from_nanosecond(i128::from(nanos)).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The chrono instant of a Kubernetes `Time`.
pub fn from_time(t: &Time) -> DateTime<Utc> {
    let nanos = t.0.as_nanosecond();
    let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or(0);
    let sub = u32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or(0);
    Utc.timestamp_opt(secs, sub).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_between_chrono_and_kubernetes() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 5, 13, 46).unwrap();
        assert_eq!(from_time(&to_time(t)), t);
    }
}
