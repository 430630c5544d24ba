//! The judge on a MetricTemplate that declares its per-version counts (Serin's
//! `serin.dev/judge-errors-query` and `serin.dev/sample-query` annotations), against a real
//! Prometheus (Debian's `prometheus` package) scraping a test exporter; no cluster (the Analyzer
//! runs directly, the template comes from memory).
use anyhow::bail;
use async_trait::async_trait;
use serde_json::json;
use serin::api::canary::CheckRecord;
use serin::api::{Canary, MetricTemplate};
use serin::metrics::{Analyzer, MetricsChecker, Objects, Verdict};
use std::collections::BTreeMap;
use std::time::Duration;

#[path = "support/prometheus.rs"]
mod support;
use support::{Exporter, Prometheus, Workload};

/// One MetricTemplate, `test/error-rate`; no Secrets.
struct OneTemplate(MetricTemplate);

#[async_trait]
impl Objects for OneTemplate {
    async fn metric_template(&self, ns: &str, name: &str) -> Result<MetricTemplate, String> {
        if (ns, name) == ("test", "error-rate") {
            Ok(self.0.clone())
        } else {
            Err(format!("metrictemplates {name:?} not found in {ns}"))
        }
    }
    async fn secret_data(&self, ns: &str, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        Err(format!("secrets {name:?} not found in {ns}"))
    }
}

/// The error-rate template (percent of 5xx over the window), with the judge's counts when
/// `judged`.
fn template(judged: bool) -> MetricTemplate {
    let pods = r#"kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)""#;
    let annotations = if judged {
        json!({
            "serin.dev/judge-errors-query":
                format!(r#"sum(increase(http_request_duration_seconds_count{{{pods}, status=~"5.."}}[{{{{ interval }}}}]))"#),
            "serin.dev/sample-query":
                format!(r#"sum(increase(http_request_duration_seconds_count{{{pods}}}[{{{{ interval }}}}]))"#),
        })
    } else {
        json!({})
    };
    serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "error-rate", "namespace": "test", "annotations": annotations},
        "spec": {
            "provider": {"type": "prometheus"},
            "query": format!(
                r#"100 * sum(rate(http_request_duration_seconds_count{{{pods}, status=~"5.."}}[{{{{ interval }}}}])) / sum(rate(http_request_duration_seconds_count{{{pods}}}[{{{{ interval }}}}]))"#
            )
        }
    }))
    .unwrap_or_else(|e| panic!("template fixture: {e}"))
}

/// A canary of `target` with one template metric, `errors` (at most 50% errors), judged.
fn canary(target: &str) -> Canary {
    serde_json::from_value(json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": target, "namespace": "test"},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "service": {"port": 9898},
            "analysis": {
                "interval": "1s", "threshold": 2, "iterations": 2,
                "judge": {"confidence": 0.95, "tolerance": 10, "metrics": ["errors"]},
                "metrics": [{"name": "errors", "interval": "5s", "minSamples": 50,
                    "templateRef": {"name": "error-rate"}, "thresholdRange": {"max": 50}}]
            }
        }
    }))
    .unwrap_or_else(|e| panic!("canary fixture: {e}"))
}

fn find<'a>(records: &'a [CheckRecord], kind: &str) -> &'a CheckRecord {
    records
        .iter()
        .find(|r| r.name == "errors" && r.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} record in {records:#?}"))
}

/// Checks until both records have enough data (scrapes and windows take a few seconds).
async fn judged(
    checker: &impl MetricsChecker,
    c: &Canary,
) -> anyhow::Result<(Verdict, Vec<CheckRecord>)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let report = checker.check(c).await;
        if report
            .records
            .iter()
            .all(|r| r.outcome != "NoData" && r.outcome != "InsufficientSample")
        {
            return Ok((report.verdict, report.records));
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no judgement after 30s: {:#?}", report.records);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_fails_a_template_metric_worse_than_the_primary_and_passes_an_equal_one()
-> anyhow::Result<()> {
    let exporter = Exporter::start().await?;
    // The primaries answer every request; the bad canary fails one in five (20%, under the
    // template's absolute 50%), the good one none.
    for (pod, workload, error_ratio) in [
        ("bad-primary-5f7c9d-abcde", "bad-primary", 0.0),
        ("bad-5f7c9d-abcde", "bad", 0.2),
        ("good-primary-5f7c9d-abcde", "good-primary", 0.0),
        ("good-5f7c9d-abcde", "good", 0.0),
    ] {
        exporter.set(Workload {
            error_ratio,
            ..Workload::healthy(pod, "test", workload)
        });
    }
    let prom = Prometheus::start("judge-template", exporter.addr, false).await?;
    let checker = Analyzer::new(OneTemplate(template(true)), prom.url.clone(), "kubernetes")?;

    let (verdict, records) = judged(&checker, &canary("bad")).await?;
    let absolute = find(&records, "metric");
    assert_eq!(absolute.outcome, "Pass", "{absolute:?}");
    let j = find(&records, "judge");
    assert_eq!(j.outcome, "Fail", "{j:?}");
    // A difference of error rates around 0.2, its interval above 0, on the canary's requests.
    assert!(j.effect.is_some_and(|e| e > 0.1), "{j:?}");
    assert!(
        j.interval
            .as_ref()
            .is_some_and(|i| i.len() == 2 && i[0] > 0.0),
        "{j:?}"
    );
    assert!(j.p_value.is_some_and(|p| p < 0.05), "{j:?}");
    assert!(j.sample.is_some_and(|n| n >= 50.0), "{j:?}");
    assert!(
        j.query
            .as_deref()
            .is_some_and(|q| q.contains(r#"kubernetes_pod_name=~"bad-[0-9a-zA-Z]+"#)),
        "{j:?}"
    );
    assert!(
        matches!(&verdict, Verdict::Fail(m) if m.starts_with("Judge errors Fail")),
        "{verdict:?}"
    );
    println!(
        "template judge decision record: {}",
        serde_json::to_string(j)?
    );

    let (verdict, records) = judged(&checker, &canary("good")).await?;
    let j = find(&records, "judge");
    assert_eq!(j.outcome, "Pass", "{j:?}");
    assert_eq!(verdict, Verdict::Pass);

    // A template that declares no judge queries is an Error record that says what is missing.
    let plain = Analyzer::new(OneTemplate(template(false)), prom.url.clone(), "kubernetes")?;
    let report = plain.check(&canary("good")).await;
    let j = find(&report.records, "judge");
    assert_eq!(j.outcome, "Error", "{j:?}");
    assert!(
        j.message
            .as_deref()
            .is_some_and(|m| m.contains("declares no judge queries")),
        "{j:?}"
    );
    Ok(())
}
