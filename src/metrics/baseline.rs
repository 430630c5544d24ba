//! The judge in the analysis: per-version (canary and primary) count and histogram queries built
//! from the builtin selectors, and the mapping of a [`crate::core::judge`] decision to a decision
//! record; pure.
use chrono::{DateTime, Utc};

use super::builtin::{DURATION, Observer, SUCCESS_RATE};
use crate::api::MetricTemplate;
use crate::api::canary::{CanaryAnalysis, CanaryJudge, CanaryMetric, CheckRecord};
pub use crate::api::metric_template::ERRORS_QUERY_ANNOTATION;
use crate::api::metric_template::SAMPLE_QUERY_ANNOTATION;
use crate::api::template::{self, Model};
use crate::core::judge::{Decision, LatencyJudgement, RateJudgement, Settings};
use crate::core::verdict::Outcome;

/// The quantile the latency judge compares: the builtin `request-duration` check's p99.
pub const LATENCY_QUANTILE: f64 = 0.99;

/// The `kind` of a judge's decision record (metrics are `metric`, webhooks `webhook`).
pub const RECORD_KIND: &str = "judge";

/// Why the judge cannot build a query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The mesh's builtin queries cannot tell the primary's requests from the canary's.
    #[error("the judge has no per-version queries for the {0:?} metrics observer")]
    NoPrimaryVariant(Observer),
    /// The mesh's request-duration query is not a histogram (e.g. a mean from sum/count).
    #[error("the {0:?} metrics observer has no latency histogram to compare")]
    NoHistogram(Observer),
    /// Rendering the template failed.
    #[error("rendering the judge's query: {0}")]
    Render(#[from] template::Error),
    /// A MetricTemplate the judge compares does not declare its per-version queries.
    #[error(
        "MetricTemplate {0} declares no judge queries: the judge needs the annotations \
         {ERRORS_QUERY_ANNOTATION} (failed requests in the window) and serin.dev/sample-query \
         (all requests in the window)"
    )]
    NoTemplateQueries(String),
}

/// The queries of one version (canary or primary) over the metric's window.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionQueries {
    /// Requests in the window.
    pub total: String,
    /// Successful (non-5xx) requests in the window.
    pub successes: String,
    /// `sum(increase(..._bucket[w])) by (le)`: the latency histogram, if the mesh has one.
    pub buckets: Option<String>,
}

/// The canary's and the primary's queries.
#[derive(Clone, Debug, PartialEq)]
pub struct Queries {
    /// The canary's.
    pub canary: VersionQueries,
    /// The primary's, over the same window.
    pub primary: VersionQueries,
}

/// The success-rate template's numerator (successful requests) as an `increase` over the window.
fn successes_template(o: Observer) -> String {
    let q = o.success_rate_query();
    let numerator = q.split_once(" / ").map_or(q, |(n, _)| n);
    numerator.replace("rate(", "increase(")
}

/// The duration template's inner `sum(rate(..._bucket[w])) by (le)` as an `increase`, when it is
/// a `histogram_quantile`.
fn buckets_template(o: Observer) -> Option<String> {
    let q = o.duration_query();
    let inner = q.strip_prefix("histogram_quantile( 0.99, ")?;
    let (inner, _) = inner.rsplit_once("by (le)")?;
    Some(format!("{inner}by (le)").replace("rate(", "increase("))
}

/// The primary's variant of a canary template: which names the primary carries in each mesh's
/// metrics. Target-named observers see the `<target>-primary` workload; router-named ones see the
/// `-primary` service next to the `-canary` one.
fn primary_variant(o: Observer, template: &str, model: &Model) -> Result<(String, Model), Error> {
    match o {
        Observer::Istio
        | Observer::Linkerd
        | Observer::AppMesh
        | Observer::Http
        | Observer::Osm => Ok((
            template.to_string(),
            Model {
                target: format!("{}-primary", model.target),
                ..model.clone()
            },
        )),
        Observer::Contour | Observer::Kuma | Observer::Traefik => {
            Ok((template.replace("-canary", "-primary"), model.clone()))
        }
        _ => Err(Error::NoPrimaryVariant(o)),
    }
}

fn render(template: &str, model: &Model) -> Result<String, Error> {
    Ok(template::collapse_whitespace(&template::render(
        template, model,
    )?))
}

/// Builds the canary's and the primary's queries for the builtin selectors of `o`. `latency`
/// asks for the histogram queries too (an error when the mesh has no histogram).
pub fn queries(o: Observer, model: &Model, latency: bool) -> Result<Queries, Error> {
    let buckets = match (latency, buckets_template(o)) {
        (false, _) => None,
        (true, Some(b)) => Some(b),
        (true, None) => return Err(Error::NoHistogram(o)),
    };
    let version = |t_total: &str, t_ok: &str, t_buckets: Option<&str>, m: &Model| {
        Ok::<_, Error>(VersionQueries {
            total: render(t_total, m)?,
            successes: render(t_ok, m)?,
            buckets: t_buckets.map(|b| render(b, m)).transpose()?,
        })
    };
    let (total, ok) = (o.sample_query(), successes_template(o));
    // Refuse meshes without a primary variant before rendering anything.
    let (p_total, pm) = primary_variant(o, &total, model)?;
    let canary = version(&total, &ok, buckets.as_deref(), model)?;
    let (p_ok, _) = primary_variant(o, &ok, model)?;
    let p_buckets = buckets
        .as_deref()
        .map(|b| primary_variant(o, b, model).map(|(t, _)| t))
        .transpose()?;
    let primary = version(&p_total, &p_ok, p_buckets.as_deref(), &pm)?;
    Ok(Queries { canary, primary })
}

/// One version's request counts from a MetricTemplate's annotations.
#[derive(Clone, Debug, PartialEq)]
pub struct CountQueries {
    /// Failed requests in the window.
    pub failed: String,
    /// All requests in the window.
    pub total: String,
}

/// The canary's and the primary's counts from a MetricTemplate.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateQueries {
    /// The canary's.
    pub canary: CountQueries,
    /// The primary's, over the same window.
    pub primary: CountQueries,
}

/// The canary's and the primary's (failed, all) request counts of a MetricTemplate that declares
/// them in its annotations ([`ERRORS_QUERY_ANNOTATION`], [`SAMPLE_QUERY_ANNOTATION`]). The primary's
/// variant renders the same queries with `{{ target }}` set to `<target>-primary`, the primary
/// workload's name; `collapse` folds whitespace as the template's provider expects.
pub fn template_queries(
    t: &MetricTemplate,
    model: &Model,
    collapse: bool,
) -> Result<TemplateQueries, Error> {
    let annotation = |key: &str| {
        t.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .filter(|q| !q.trim().is_empty())
            .cloned()
    };
    let (Some(errors), Some(total)) = (
        annotation(ERRORS_QUERY_ANNOTATION),
        annotation(SAMPLE_QUERY_ANNOTATION),
    ) else {
        return Err(Error::NoTemplateQueries(format!(
            "{}/{}",
            t.metadata.namespace.as_deref().unwrap_or_default(),
            t.metadata.name.as_deref().unwrap_or_default()
        )));
    };
    let render = |q: &str, m: &Model| -> Result<String, Error> {
        let q = template::render(q, m)?;
        Ok(if collapse {
            template::collapse_whitespace(&q)
        } else {
            q
        })
    };
    let version = |m: &Model| -> Result<CountQueries, Error> {
        Ok(CountQueries {
            failed: render(&errors, m)?,
            total: render(&total, m)?,
        })
    };
    let primary = Model {
        target: format!("{}-primary", model.target),
        ..model.clone()
    };
    Ok(TemplateQueries {
        canary: version(model)?,
        primary: version(&primary)?,
    })
}

/// The judge's settings for one metric: the canary's `analysis.judge` and the metric's
/// `minSamples` (at least one request on each side).
pub fn settings(judge: &CanaryJudge, metric: &CanaryMetric) -> Settings {
    Settings {
        confidence: judge.confidence_or_default(),
        tolerance_percent: judge.tolerance_or_default(),
        min_samples: metric.min_samples.unwrap_or(1.0).max(1.0),
    }
}

/// The metrics the judge compares: `judge.metrics`, else every builtin check present.
pub fn judged(analysis: &CanaryAnalysis) -> Vec<&CanaryMetric> {
    let Some(judge) = &analysis.judge else {
        return vec![];
    };
    analysis
        .metrics
        .iter()
        .flatten()
        .filter(|m| match &judge.metrics {
            Some(names) => names.iter().any(|n| n == &m.name),
            None => m.name == SUCCESS_RATE || m.name == DURATION,
        })
        .collect()
}

/// A judge's decision as a check outcome: Inconclusive is too little evidence, held (or failed)
/// under `analysis.onInconclusive` like `InsufficientSample`.
pub fn outcome(d: Decision) -> Outcome {
    match d {
        Decision::Pass => Outcome::Pass,
        Decision::Fail => Outcome::Fail,
        Decision::Inconclusive => Outcome::InsufficientSample,
    }
}

fn evidence(effect: f64, interval: (f64, f64), p: f64) -> String {
    format!(
        "effect {effect:.4}, interval [{:.4}, {:.4}], p-value {p:.3e}",
        interval.0, interval.1
    )
}

/// The decision record of the error-rate comparison: the value is the canary's error rate in
/// percent, the sample its requests, with the effect (difference of rates), the interval and the
/// p-value.
pub fn rate_record(
    metric: &CanaryMetric,
    j: &RateJudgement,
    query: &str,
    now: DateTime<Utc>,
) -> CheckRecord {
    let rate = if j.canary.total > 0.0 {
        j.canary.events / j.canary.total * 100.0
    } else {
        0.0
    };
    let evidence = (j.effect, j.interval, j.p_value);
    CheckRecord {
        value: Some(rate),
        sample: Some(j.canary.total),
        ..judged_record(metric, j.decision, &j.reason, evidence, query, now)
    }
}

/// The decision record of the latency comparison: the value is the canary's p99 in
/// milliseconds, the effect the ratio to the primary's minus one.
pub fn latency_record(
    metric: &CanaryMetric,
    j: &LatencyJudgement,
    sample: f64,
    query: &str,
    now: DateTime<Utc>,
) -> CheckRecord {
    let evidence = (j.effect, j.interval, j.p_value);
    CheckRecord {
        value: j.canary_quantile.map(|s| s * 1000.0),
        sample: Some(sample),
        effect: Some(j.effect).filter(|e| e.is_finite()),
        ..judged_record(metric, j.decision, &j.reason, evidence, query, now)
    }
}

/// What the records of both comparisons share: the decision with its reason and its evidence
/// (`(effect, interval, p-value)`).
fn judged_record(
    metric: &CanaryMetric,
    decision: Decision,
    reason: &str,
    (effect, interval, p_value): (f64, (f64, f64), f64),
    query: &str,
    now: DateTime<Utc>,
) -> CheckRecord {
    CheckRecord {
        name: metric.name.clone(),
        kind: RECORD_KIND.into(),
        query: Some(query.to_string()),
        outcome: outcome(decision).as_str().into(),
        message: Some(format!(
            "Judge {} {}: {reason} ({})",
            metric.name,
            decision.as_str(),
            evidence(effect, interval, p_value)
        )),
        time: Some(crate::api::time::to_time(now)),
        effect: Some(effect),
        interval: Some(vec![interval.0, interval.1]),
        p_value: Some(p_value),
        ..Default::default()
    }
}

/// A judge's record when its queries could not be built or run.
pub fn error_record(metric: &CanaryMetric, msg: String, now: DateTime<Utc>) -> CheckRecord {
    CheckRecord {
        name: metric.name.clone(),
        kind: RECORD_KIND.into(),
        outcome: Outcome::Error.as_str().into(),
        message: Some(format!("Judge {} failed: {msg}", metric.name)),
        time: Some(crate::api::time::to_time(now)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::judge::{self, Histogram, Proportion};

    fn metric(name: &str) -> CanaryMetric {
        CanaryMetric {
            name: name.into(),
            ..Default::default()
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn http_queries_select_the_canary_and_the_primary_pods() {
        let q = queries(Observer::Http, &Model::test(), true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            q.canary.total,
            r#"sum( increase( http_request_duration_seconds_count{ kubernetes_namespace="test", kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[1m] ) )"#
        );
        assert_eq!(
            q.primary.successes,
            r#"sum( increase( http_request_duration_seconds_count{ kubernetes_namespace="test", kubernetes_pod_name=~"podinfo-primary-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)", status!~"5.*" }[1m] ) )"#
        );
        assert_eq!(
            q.primary.buckets.as_deref(),
            Some(
                r#"sum( increase( http_request_duration_seconds_bucket{ kubernetes_namespace="test", kubernetes_pod_name=~"podinfo-primary-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[1m] ) ) by (le)"#
            )
        );
    }

    #[test]
    fn router_named_meshes_swap_the_canary_service_for_the_primary() {
        let q = queries(Observer::Contour, &Model::test(), true).unwrap_or_else(|e| panic!("{e}"));
        assert!(q.canary.total.contains("test_podinfo-canary_"), "{q:?}");
        assert!(q.primary.total.contains("test_podinfo-primary_"), "{q:?}");
        assert!(
            q.primary
                .buckets
                .as_deref()
                .is_some_and(|b| b.contains("podinfo-primary_") && b.ends_with("by (le)")),
            "{q:?}"
        );
    }

    #[test]
    fn meshes_without_versions_or_histograms_are_refused_clearly() {
        for (o, latency, want) in [
            (
                Observer::Nginx,
                true,
                "the Nginx metrics observer has no latency histogram to compare",
            ),
            (
                Observer::Knative,
                false,
                "the judge has no per-version queries for the Knative metrics observer",
            ),
            (
                Observer::Skipper,
                false,
                "the judge has no per-version queries for the Skipper metrics observer",
            ),
        ] {
            let e = queries(o, &Model::test(), latency)
                .err()
                .map(|e| e.to_string());
            assert_eq!(e.as_deref(), Some(want), "{o:?}");
        }
        assert!(queries(Observer::Istio, &Model::test(), true).is_ok());
    }

    #[test]
    fn every_judge_query_counts_over_the_window() {
        use Observer::*;
        for o in [Istio, Linkerd, AppMesh, Http, Osm, Contour, Kuma, Traefik] {
            let q = queries(o, &Model::test(), true).unwrap_or_else(|e| panic!("{o:?}: {e}"));
            for v in [&q.canary, &q.primary] {
                for s in [&v.total, &v.successes] {
                    assert!(
                        s.contains("increase(") && !s.contains("rate("),
                        "{o:?}: {s}"
                    );
                    assert!(!s.contains(" / ") && !s.contains("{{"), "{o:?}: {s}");
                }
                let b = v.buckets.as_deref().unwrap_or_default();
                assert!(b.ends_with("by (le)") && !b.contains("rate("), "{o:?}: {b}");
            }
            assert_ne!(q.canary, q.primary, "{o:?}");
        }
    }

    #[test]
    fn decisions_map_to_outcomes() {
        assert_eq!(outcome(Decision::Pass), Outcome::Pass);
        assert_eq!(outcome(Decision::Fail), Outcome::Fail);
        assert_eq!(outcome(Decision::Inconclusive), Outcome::InsufficientSample);
    }

    #[test]
    fn settings_default_and_take_min_samples_from_the_metric() {
        let s = settings(&CanaryJudge::default(), &metric(SUCCESS_RATE));
        assert_eq!(
            (s.confidence, s.tolerance_percent, s.min_samples),
            (0.95, 10.0, 1.0)
        );
        let mut m = metric(SUCCESS_RATE);
        m.min_samples = Some(200.0);
        let j = CanaryJudge {
            confidence: Some(0.99),
            tolerance: Some(0.0),
            metrics: None,
        };
        let s = settings(&j, &m);
        assert_eq!(
            (s.confidence, s.tolerance_percent, s.min_samples),
            (0.99, 0.0, 200.0)
        );
    }

    #[test]
    fn judged_metrics_default_to_the_builtins_present() {
        let a = CanaryAnalysis {
            metrics: Some(vec![
                metric(SUCCESS_RATE),
                metric("error-budget"),
                metric(DURATION),
            ]),
            ..Default::default()
        };
        assert!(judged(&a).is_empty(), "no judge, nothing judged");
        let mut a = a;
        a.judge = Some(CanaryJudge::default());
        let names: Vec<_> = judged(&a).iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, [SUCCESS_RATE, DURATION]);
        a.judge = Some(CanaryJudge {
            metrics: Some(vec![DURATION.into()]),
            ..Default::default()
        });
        let names: Vec<_> = judged(&a).iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, [DURATION]);
    }

    #[test]
    fn a_failing_rate_judgement_becomes_a_failed_record_with_its_evidence() {
        let s = Settings::default();
        // 30 errors in 1000 against 10 in 1000: clearly worse than 10% over the primary.
        let j = judge::error_rate(
            Proportion::new(30.0, 1000.0),
            Proportion::new(10.0, 1000.0),
            &s,
        );
        let r = rate_record(&metric(SUCCESS_RATE), &j, "q", now());
        assert_eq!((r.kind.as_str(), r.outcome.as_str()), ("judge", "Fail"));
        assert_eq!(r.sample, Some(1000.0));
        assert_eq!(r.value, Some(3.0));
        assert_eq!(r.effect, Some(j.effect));
        assert_eq!(r.interval, Some(vec![j.interval.0, j.interval.1]));
        assert_eq!(r.p_value, Some(j.p_value));
        let msg = r.message.unwrap_or_default();
        assert!(
            msg.starts_with("Judge request-success-rate Fail: "),
            "{msg}"
        );
        assert!(
            msg.contains("p-value") && msg.contains("interval ["),
            "{msg}"
        );
    }

    #[test]
    fn too_few_requests_on_either_side_are_an_insufficient_sample() {
        let s = Settings {
            min_samples: 200.0,
            ..Settings::default()
        };
        let j = judge::error_rate(Proportion::new(2.0, 40.0), Proportion::new(5.0, 4000.0), &s);
        let r = rate_record(&metric(SUCCESS_RATE), &j, "q", now());
        assert_eq!(
            (r.outcome.as_str(), r.sample),
            ("InsufficientSample", Some(40.0))
        );
    }

    #[test]
    fn a_twice_as_slow_canary_fails_the_latency_record_and_an_equal_one_passes() {
        let s = Settings::default();
        let primary = Histogram::new(vec![
            (0.1, 900.0),
            (0.25, 990.0),
            (0.5, 1000.0),
            (f64::INFINITY, 1000.0),
        ]);
        let slow = Histogram::new(vec![
            (0.1, 300.0),
            (0.25, 800.0),
            (0.5, 1000.0),
            (f64::INFINITY, 1000.0),
        ]);
        let j = judge::latency(&slow, &primary, LATENCY_QUANTILE, &s);
        let r = latency_record(&metric(DURATION), &j, slow.total(), "q", now());
        assert_eq!(r.outcome, "Fail", "{:?}", r.message);
        assert!(r.effect.is_some_and(|e| e > 0.5), "{:?}", r.effect);
        let j = judge::latency(&primary, &primary, LATENCY_QUANTILE, &s);
        let r = latency_record(&metric(DURATION), &j, primary.total(), "q", now());
        assert_eq!((r.outcome.as_str(), r.effect), ("Pass", Some(0.0)));
    }

    /// A MetricTemplate with `annotations`.
    fn template(annotations: serde_json::Value) -> MetricTemplate {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
            "metadata": {"name": "error-rate", "namespace": "test", "annotations": annotations},
            "spec": {"provider": {"type": "prometheus"}, "query": "vector(0)"}
        }))
        .unwrap_or_else(|e| panic!("template fixture: {e}"))
    }

    #[test]
    fn a_template_with_judge_queries_renders_the_canary_and_the_primary_variant() {
        let t = template(serde_json::json!({
            ERRORS_QUERY_ANNOTATION: "sum(increase(requests{pod=~\"{{ target }}-[a-z0-9]+-[a-z0-9]+\", code=~\"5..\"}[{{ interval }}]))",
            "serin.dev/sample-query": "sum(increase(requests{namespace=\"{{ namespace }}\",\n  pod=~\"{{ target }}-[a-z0-9]+-[a-z0-9]+\"}[{{ interval }}]))"
        }));
        let q = template_queries(&t, &Model::test(), true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            q.canary,
            CountQueries {
                failed: r#"sum(increase(requests{pod=~"podinfo-[a-z0-9]+-[a-z0-9]+", code=~"5.."}[1m]))"#
                    .into(),
                total: r#"sum(increase(requests{namespace="test", pod=~"podinfo-[a-z0-9]+-[a-z0-9]+"}[1m]))"#
                    .into(),
            }
        );
        assert_eq!(
            q.primary,
            CountQueries {
                failed: r#"sum(increase(requests{pod=~"podinfo-primary-[a-z0-9]+-[a-z0-9]+", code=~"5.."}[1m]))"#
                    .into(),
                total: r#"sum(increase(requests{namespace="test", pod=~"podinfo-primary-[a-z0-9]+-[a-z0-9]+"}[1m]))"#
                    .into(),
            }
        );
        // Providers that keep whitespace get the query as rendered.
        let kept = template_queries(&t, &Model::test(), false).unwrap_or_else(|e| panic!("{e}"));
        assert!(kept.canary.total.contains(",\n  pod=~"), "{kept:?}");
    }

    #[test]
    fn a_template_without_judge_queries_is_refused_by_name() {
        for annotations in [
            serde_json::json!({}),
            serde_json::json!({"serin.dev/sample-query": "sum(x)"}),
            serde_json::json!({ERRORS_QUERY_ANNOTATION: " ", "serin.dev/sample-query": "sum(x)"}),
        ] {
            let e = template_queries(&template(annotations.clone()), &Model::test(), true)
                .err()
                .map(|e| e.to_string());
            assert_eq!(
                e.as_deref(),
                Some(
                    "MetricTemplate test/error-rate declares no judge queries: the judge needs the \
                     annotations serin.dev/judge-errors-query (failed requests in the window) and \
                     serin.dev/sample-query (all requests in the window)"
                ),
                "{annotations}"
            );
        }
    }
}
