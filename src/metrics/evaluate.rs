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
        ..Default::default()
    }
}

/// Serin: adds the check's sample (requests in the window) to its record and, when the metric
/// sets `minSamples`, turns a verdict on too few requests into `InsufficientSample`. An empty or
/// NaN sample reading is zero requests; a failed sample query under `minSamples` is an `Error`
/// (the sample is unknown, so the value cannot be trusted either way). Records without a value
/// (`NoData`, `Error`) keep their outcome.
pub fn apply_sample(
    mut record: CheckRecord,
    metric: &CanaryMetric,
    sample: Reading,
) -> CheckRecord {
    let n = match sample {
        Reading::Value(v) if v.is_finite() => v.max(0.0),
        Reading::Value(_) | Reading::Empty => 0.0,
        Reading::Failed(e) => {
            if metric.min_samples.is_some()
                && matches!(
                    Outcome::parse(&record.outcome),
                    Some(Outcome::Pass | Outcome::Fail)
                )
            {
                record.outcome = Outcome::Error.as_str().into();
                record.message = Some(format!("Sample query failed for {}: {e}", metric.name));
            }
            return record;
        }
    };
    record.sample = Some(n);
    if let Some(min) = metric.min_samples
        && n < min
        && matches!(
            Outcome::parse(&record.outcome),
            Some(Outcome::Pass | Outcome::Fail)
        )
    {
        record.outcome = Outcome::InsufficientSample.as_str().into();
        record.message = Some(format!(
            "Insufficient sample for metric {}: {n} requests in the window, minSamples is {min}",
            metric.name
        ));
    }
    record
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
            // Too few requests is inconclusive: held under hold, like NoData.
            (
                vec![rec("a", O::Pass), rec("b", O::InsufficientSample)],
                Hold,
                Verdict::Hold("b says InsufficientSample".into()),
            ),
            (
                vec![rec("a", O::InsufficientSample)],
                Fail,
                Verdict::Fail("a says InsufficientSample".into()),
            ),
            // It never hides a real regression on another check.
            (
                vec![rec("a", O::InsufficientSample), rec("b", O::Fail)],
                Hold,
                Verdict::Fail("b says Fail".into()),
            ),
        ];
        for (records, policy, want) in cases {
            assert_eq!(verdict(&records, policy), want, "{records:?} {policy:?}");
        }
    }

    #[test]
    fn samples_below_min_samples_are_insufficient_not_failed() {
        let mut m = metric(SUCCESS_RATE, Some(99.0), None);
        m.min_samples = Some(200.0);
        let failing = || run(&m, Kind::SuccessRate, Reading::Value(95.0));
        // (sample reading, outcome, sample in the record)
        let cases = [
            (Reading::Value(40.0), "InsufficientSample", Some(40.0)),
            (Reading::Value(199.4), "InsufficientSample", Some(199.4)),
            (Reading::Empty, "InsufficientSample", Some(0.0)),
            (Reading::Value(f64::NAN), "InsufficientSample", Some(0.0)),
            (Reading::Value(200.0), "Fail", Some(200.0)),
            (Reading::Value(5000.0), "Fail", Some(5000.0)),
            (Reading::Failed("timeout".into()), "Error", None),
        ];
        for (sample, outcome, n) in cases {
            let r = apply_sample(failing(), &m, sample.clone());
            assert_eq!((r.outcome.as_str(), r.sample), (outcome, n), "{sample:?}");
        }
        let r = apply_sample(failing(), &m, Reading::Value(40.0));
        assert_eq!(
            r.message.as_deref(),
            Some(
                "Insufficient sample for metric request-success-rate: 40 requests in the window, minSamples is 200"
            )
        );
        // No data stays no data; the sample is still recorded.
        let r = apply_sample(
            run(&m, Kind::SuccessRate, Reading::Empty),
            &m,
            Reading::Empty,
        );
        assert_eq!((r.outcome.as_str(), r.sample), ("NoData", Some(0.0)));
    }

    #[test]
    fn without_min_samples_the_sample_is_only_recorded() {
        let m = metric(SUCCESS_RATE, Some(99.0), None);
        let r = apply_sample(
            run(&m, Kind::SuccessRate, Reading::Value(95.0)),
            &m,
            Reading::Value(3.0),
        );
        assert_eq!((r.outcome.as_str(), r.sample), ("Fail", Some(3.0)));
        let r = apply_sample(
            run(&m, Kind::SuccessRate, Reading::Value(100.0)),
            &m,
            Reading::Failed("down".into()),
        );
        assert_eq!((r.outcome.as_str(), r.sample), ("Pass", None));
    }

    #[test]
    fn records_without_sample_or_judge_fields_serialise_as_before() {
        let r = rec("a", Outcome::Pass);
        let json = serde_json::to_value(&r).unwrap_or_default();
        for k in ["sample", "effect", "interval", "pValue"] {
            assert!(json.get(k).is_none(), "{k} in {json}");
        }
        let r = CheckRecord {
            sample: Some(40.0),
            p_value: Some(0.01),
            ..rec("a", Outcome::InsufficientSample)
        };
        let json = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(json["sample"], 40.0);
        assert_eq!(json["pValue"], 0.01);
        assert_eq!(json["outcome"], "InsufficientSample");
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
