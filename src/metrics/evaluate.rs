//! Judging one metric reading against its range, Flagger's halt messages, and the verdict of a
//! tick under the inconclusive policy; pure.
use chrono::{DateTime, Utc};

use super::builtin::{DURATION, SUCCESS_RATE};
use crate::api::canary::{CanaryMetric, CheckRecord};
use crate::api::defaults::InconclusivePolicy;
pub use crate::core::verdict::Outcome;
use crate::core::verdict::Verdict;

/// What the provider answered for one query.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    /// One number (possibly NaN, which counts as no data).
    Value(f64),
    /// An empty result.
    Empty,
    /// The query failed; the provider's message.
    Failed(String),
}

/// The names Flagger's messages use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// The Canary's name.
    pub name: String,
    /// The Canary's namespace.
    pub namespace: String,
    /// `targetRef.name`.
    pub target: String,
    /// The metrics provider string used to pick the builtin observer (e.g. `kubernetes`).
    pub provider: String,
}

/// How a check's value is read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// `request-success-rate`: a percentage.
    SuccessRate,
    /// `request-duration`: the query result times this factor is milliseconds, truncated.
    Duration {
        /// Factor from the query's unit to milliseconds.
        to_ms: f64,
    },
    /// A MetricTemplate or inline query: a plain number.
    Custom,
}

/// Judges one reading and writes its decision record. `query` is the query as sent (`None` when
/// rendering failed before anything was sent).
pub fn judge(
    metric: &CanaryMetric,
    kind: Kind,
    query: Option<String>,
    reading: Reading,
    subject: &Subject,
    now: DateTime<Utc>,
) -> CheckRecord {
    let (min, max) = metric.effective_range();
    let id = format!("{}.{}", subject.name, subject.namespace);
    let no_values = || match kind {
        Kind::Custom => format!(
            "Halt advancement no values found for custom metric: {}",
            metric.name
        ),
        _ => format!(
            "Halt advancement no values found for {} metric {} probably {}.{} is not receiving traffic",
            subject.provider, metric.name, subject.target, subject.namespace
        ),
    };
    let (value, outcome, message) = match reading {
        Reading::Failed(e) => {
            let msg = match kind {
                Kind::Custom => format!("Metric query failed for {}: {e}", metric.name),
                _ => format!("Prometheus query failed: {e}"),
            };
            (None, Outcome::Error, Some(msg))
        }
        Reading::Empty => (None, Outcome::NoData, Some(no_values())),
        Reading::Value(v) if v.is_nan() => (None, Outcome::NoData, Some(no_values())),
        Reading::Value(v) => match kind {
            Kind::SuccessRate => {
                let msg = if min.is_some_and(|m| v < m) {
                    Some(format!(
                        "Halt {id} advancement success rate {v:.2}% < {}%",
                        min.unwrap_or_default()
                    ))
                } else if max.is_some_and(|m| v > m) {
                    Some(format!(
                        "Halt {id} advancement success rate {v:.2}% > {}%",
                        max.unwrap_or_default()
                    ))
                } else {
                    None
                };
                verdict_of(v, msg)
            }
            Kind::Duration { to_ms } => {
                // Flagger converts to a Go time.Duration of whole milliseconds before comparing.
                let ms = (v * to_ms).trunc();
                let msg = if let Some(m) = min.filter(|m| ms < m.trunc()) {
                    Some(format!(
                        "Halt {id} advancement request duration {} < {}",
                        go_duration(ms),
                        go_duration(m.trunc())
                    ))
                } else {
                    max.filter(|m| ms > m.trunc()).map(|m| {
                        format!(
                            "Halt {id} advancement request duration {} > {}",
                            go_duration(ms),
                            go_duration(m.trunc())
                        )
                    })
                };
                verdict_of(ms, msg)
            }
            Kind::Custom => {
                let msg = if min.is_some_and(|m| v < m) {
                    Some(format!(
                        "Halt {id} advancement {} {v:.2} < {}",
                        metric.name,
                        min.unwrap_or_default()
                    ))
                } else if max.is_some_and(|m| v > m) {
                    Some(format!(
                        "Halt {id} advancement {} {v:.2} > {}",
                        metric.name,
                        max.unwrap_or_default()
                    ))
                } else {
                    None
                };
                verdict_of(v, msg)
            }
        },
    };
    CheckRecord {
        name: metric.name.clone(),
        kind: "metric".into(),
        query,
        value,
        min,
        max,
        outcome: outcome.as_str().into(),
        message,
        time: Some(crate::api::time::to_time(now)),
    }
}

fn verdict_of(v: f64, msg: Option<String>) -> (Option<f64>, Outcome, Option<String>) {
    match msg {
        Some(m) => (Some(v), Outcome::Fail, Some(m)),
        None => (Some(v), Outcome::Pass, None),
    }
}

/// The kind of a metric: builtins by name, everything else custom.
pub fn kind_of(metric: &CanaryMetric, duration_to_ms: f64) -> Kind {
    match metric.name.as_str() {
        SUCCESS_RATE => Kind::SuccessRate,
        DURATION => Kind::Duration {
            to_ms: duration_to_ms,
        },
        _ => Kind::Custom,
    }
}

/// The verdict of a tick. A value outside its range always fails. Under `fail`, the first
/// non-passing check in order fails the tick (Flagger stops at the first one); under `hold`, an
/// inconclusive check holds it.
pub fn verdict(records: &[CheckRecord], policy: InconclusivePolicy) -> Verdict {
    let outcome = |r: &CheckRecord| Outcome::parse(&r.outcome).unwrap_or(Outcome::Error);
    let message = |r: &CheckRecord| {
        r.message
            .clone()
            .unwrap_or_else(|| format!("metric {} {}", r.name, r.outcome))
    };
    if let Some(r) = records.iter().find(|r| outcome(r) == Outcome::Fail) {
        let first = records.iter().find(|r| outcome(r) != Outcome::Pass);
        return Verdict::Fail(match (policy, first) {
            (InconclusivePolicy::Fail, Some(first)) => message(first),
            _ => message(r),
        });
    }
    match records.iter().find(|r| outcome(r).is_inconclusive()) {
        None => Verdict::Pass,
        Some(r) => match policy {
            InconclusivePolicy::Fail => Verdict::Fail(message(r)),
            InconclusivePolicy::Hold => Verdict::Hold(message(r)),
        },
    }
}

/// Formats whole milliseconds as Go's `time.Duration.String` does (`500ms`, `1.2s`, `1m1s`).
pub fn go_duration(ms: f64) -> String {
    // Values come from truncated floats; saturate instead of wrapping on absurd inputs.
    let ms = if ms.is_finite() { ms as i64 } else { 0 };
    if ms == 0 {
        return "0s".into();
    }
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    if ms < 1000 {
        return format!("{sign}{ms}ms");
    }
    let (h, rem) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, frac) = (rem / 1000, rem % 1000);
    let mut secs = s.to_string();
    if frac > 0 {
        let f = format!("{frac:03}");
        secs.push('.');
        secs.push_str(f.trim_end_matches('0'));
    }
    match (h, m) {
        (0, 0) => format!("{sign}{secs}s"),
        (0, m) => format!("{sign}{m}m{secs}s"),
        (h, m) => format!("{sign}{h}h{m}m{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::canary::ThresholdRange;

    fn subject() -> Subject {
        Subject {
            name: "podinfo".into(),
            namespace: "test".into(),
            target: "podinfo".into(),
            provider: "kubernetes".into(),
        }
    }

    fn metric(name: &str, min: Option<f64>, max: Option<f64>) -> CanaryMetric {
        CanaryMetric {
            name: name.into(),
            threshold_range: Some(ThresholdRange { min, max }),
            ..Default::default()
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn run(m: &CanaryMetric, kind: Kind, r: Reading) -> CheckRecord {
        judge(m, kind, Some("q".into()), r, &subject(), now())
    }

    #[test]
    fn success_rate_below_min_fails_with_flaggers_message() {
        let m = metric(SUCCESS_RATE, Some(99.0), None);
        let r = run(&m, Kind::SuccessRate, Reading::Value(95.0));
        assert_eq!(r.outcome, "Fail");
        assert_eq!(r.value, Some(95.0));
        assert_eq!(
            r.message.as_deref(),
            Some("Halt podinfo.test advancement success rate 95.00% < 99%")
        );
        let r = run(&m, Kind::SuccessRate, Reading::Value(99.0));
        assert_eq!((r.outcome.as_str(), r.message), ("Pass", None));
    }

    #[test]
    fn durations_are_truncated_to_milliseconds_and_printed_like_go() {
        let m = metric(DURATION, None, Some(500.0));
        let r = run(&m, Kind::Duration { to_ms: 1000.0 }, Reading::Value(1.2));
        assert_eq!(r.value, Some(1200.0));
        assert_eq!(
            r.message.as_deref(),
            Some("Halt podinfo.test advancement request duration 1.2s > 500ms")
        );
        // 500.9 ms truncates to 500 ms, which is inside the range.
        let r = run(&m, Kind::Duration { to_ms: 1000.0 }, Reading::Value(0.5009));
        assert_eq!((r.outcome.as_str(), r.value), ("Pass", Some(500.0)));
        let r = run(&m, Kind::Duration { to_ms: 1.0 }, Reading::Value(501.0));
        assert_eq!(r.outcome, "Fail");
    }

    #[test]
    fn custom_metrics_compare_plain_numbers() {
        let m = metric("error-rate", None, Some(1.0));
        let r = run(&m, Kind::Custom, Reading::Value(2.5));
        assert_eq!(
            r.message.as_deref(),
            Some("Halt podinfo.test advancement error-rate 2.50 > 1")
        );
        let m = metric("throughput", Some(10.0), None);
        let r = run(&m, Kind::Custom, Reading::Value(3.0));
        assert_eq!(
            r.message.as_deref(),
            Some("Halt podinfo.test advancement throughput 3.00 < 10")
        );
    }

    #[test]
    fn empty_and_nan_are_no_data_and_failures_are_errors() {
        let m = metric(SUCCESS_RATE, Some(99.0), None);
        for reading in [Reading::Empty, Reading::Value(f64::NAN)] {
            let r = run(&m, Kind::SuccessRate, reading);
            assert_eq!(r.outcome, "NoData");
            assert_eq!(r.value, None);
            assert_eq!(
                r.message.as_deref(),
                Some(
                    "Halt advancement no values found for kubernetes metric request-success-rate probably podinfo.test is not receiving traffic"
                )
            );
        }
        let r = run(
            &m,
            Kind::SuccessRate,
            Reading::Failed("connection refused".into()),
        );
        assert_eq!(r.outcome, "Error");
        assert_eq!(
            r.message.as_deref(),
            Some("Prometheus query failed: connection refused")
        );
        let c = metric("custom", None, Some(1.0));
        let r = run(
            &c,
            Kind::Custom,
            Reading::Failed("bad_data: parse error".into()),
        );
        assert_eq!(
            r.message.as_deref(),
            Some("Metric query failed for custom: bad_data: parse error")
        );
    }

    #[test]
    fn deprecated_threshold_is_used_as_the_range() {
        let m = CanaryMetric {
            name: DURATION.into(),
            threshold: Some(500.0),
            ..Default::default()
        };
        let r = run(&m, Kind::Duration { to_ms: 1.0 }, Reading::Value(600.0));
        assert_eq!((r.outcome.as_str(), r.max), ("Fail", Some(500.0)));
    }

    fn rec(name: &str, outcome: Outcome) -> CheckRecord {
        CheckRecord {
            name: name.into(),
            outcome: outcome.as_str().into(),
            message: Some(format!("{name} says {}", outcome.as_str())),
            ..Default::default()
        }
    }

    #[test]
    fn verdicts_follow_the_policy() {
        use InconclusivePolicy::{Fail, Hold};
        use Outcome as O;
        let cases: Vec<(Vec<CheckRecord>, InconclusivePolicy, Verdict)> = vec![
            (vec![], Fail, Verdict::Pass),
            (
                vec![rec("a", O::Pass), rec("b", O::Pass)],
                Hold,
                Verdict::Pass,
            ),
            (
                vec![rec("a", O::Pass), rec("b", O::NoData)],
                Fail,
                Verdict::Fail("b says NoData".into()),
            ),
            (
                vec![rec("a", O::Pass), rec("b", O::NoData)],
                Hold,
                Verdict::Hold("b says NoData".into()),
            ),
            (
                vec![rec("a", O::Error)],
                Hold,
                Verdict::Hold("a says Error".into()),
            ),
            // A regression fails even under hold.
            (
                vec![rec("a", O::NoData), rec("b", O::Fail)],
                Hold,
                Verdict::Fail("b says Fail".into()),
            ),
            // Under fail, the first non-passing check speaks, as Flagger stops there.
            (
                vec![rec("a", O::NoData), rec("b", O::Fail)],
                Fail,
                Verdict::Fail("a says NoData".into()),
            ),
        ];
        for (records, policy, want) in cases {
            assert_eq!(verdict(&records, policy), want, "{records:?} {policy:?}");
        }
    }

    #[test]
    fn go_durations() {
        for (ms, want) in [
            (0.0, "0s"),
            (5.0, "5ms"),
            (500.0, "500ms"),
            (1000.0, "1s"),
            (1200.0, "1.2s"),
            (1234.0, "1.234s"),
            (61_000.0, "1m1s"),
            (3_600_000.0, "1h0m0s"),
            (-250.0, "-250ms"),
        ] {
            assert_eq!(go_duration(ms), want);
        }
    }
}
