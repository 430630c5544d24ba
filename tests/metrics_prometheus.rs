//! The metric checks against a real Prometheus (Debian's `prometheus` package) scraping a test
//! exporter every second. MetricTemplates and Secrets come from an in-memory store, so no cluster
//! is needed here; tests/metrics_e2e.rs runs the whole controller.
use anyhow::bail;
use async_trait::async_trait;
use serde_json::json;
use serin::api::canary::CheckRecord;
use serin::api::{Canary, MetricTemplate};
use serin::metrics::{Analyzer, MetricsChecker, Objects, Verdict};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

#[path = "support/prometheus.rs"]
mod support;
use support::{Exporter, PASSWORD, Prometheus, USER, Workload};

/// Secret data by (namespace, name).
type Secrets = BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>;

#[derive(Default)]
struct Store {
    templates: Mutex<BTreeMap<(String, String), MetricTemplate>>,
    secrets: Mutex<Secrets>,
}

impl Store {
    fn template(&self, ns: &str, name: &str, spec: serde_json::Value) {
        let t: MetricTemplate = serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
            "metadata": {"name": name, "namespace": ns}, "spec": spec
        }))
        .unwrap_or_else(|e| panic!("template fixture: {e}"));
        self.templates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((ns.into(), name.into()), t);
    }

    fn secret(&self, ns: &str, name: &str, data: &[(&str, &str)]) {
        self.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                (ns.into(), name.into()),
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect(),
            );
    }
}

#[async_trait]
impl Objects for &'static Store {
    async fn metric_template(&self, ns: &str, name: &str) -> Result<MetricTemplate, String> {
        self.templates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(ns.into(), name.into()))
            .cloned()
            .ok_or_else(|| format!("metrictemplates {name:?} not found in {ns}"))
    }
    async fn secret_data(&self, ns: &str, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        self.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(ns.into(), name.into()))
            .cloned()
            .ok_or_else(|| format!("secrets {name:?} not found in {ns}"))
    }
}

fn store() -> &'static Store {
    Box::leak(Box::default())
}

fn canary(target: &str, provider: &str, metrics: serde_json::Value) -> Canary {
    Canary::test()
        .name(target)
        .provider(provider)
        .target("apps/v1", "Deployment", target)
        .analysis(
            json!({"interval": "1s", "threshold": 2, "iterations": 2, "stepWeight": null,
            "metrics": metrics}),
        )
        .build()
}

/// The two builtins with Flagger's usual ranges over 5 s windows (five 1 s scrapes).
fn builtins() -> serde_json::Value {
    json!([
        {"name": "request-success-rate", "interval": "5s", "thresholdRange": {"min": 99}},
        {"name": "request-duration", "interval": "5s", "thresholdRange": {"max": 500}}
    ])
}

fn record<'a>(records: &'a [CheckRecord], name: &str) -> &'a CheckRecord {
    records
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no record {name} in {records:#?}"))
}

/// Checks until every record has data (the first scrapes take a few seconds).
async fn settled(checker: &impl MetricsChecker, c: &Canary) -> anyhow::Result<Vec<CheckRecord>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        let report = checker.check(c).await;
        if report.records.iter().all(|r| r.outcome != "NoData") {
            return Ok(report.records);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no data after 25s: {:#?}", report.records);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_checks_pass_healthy_canaries_and_fail_erroring_and_slow_ones() -> anyhow::Result<()>
{
    let exporter = Exporter::start().await?;
    exporter.set(Workload::healthy("healthy-5f7c9d-abcde", "test", "healthy"));
    exporter.set(Workload {
        error_ratio: 0.25,
        ..Workload::healthy("errors-5f7c9d-abcde", "test", "errors")
    });
    exporter.set(Workload {
        latency: 0.8,
        ..Workload::healthy("slow-5f7c9d-abcde", "test", "slow")
    });
    // Primary pods must not count: the pod-name pattern excludes `<target>-primary-…`.
    exporter.set(Workload {
        error_ratio: 1.0,
        ..Workload::healthy("healthy-primary-5f7c9d-abcde", "test", "healthy-primary")
    });
    let prom = Prometheus::start("builtins", exporter.addr, false).await?;
    let checker = Analyzer::new(store(), prom.url.clone(), "kubernetes")?;

    let healthy = settled(&checker, &canary("healthy", "kubernetes", builtins())).await?;
    let sr = record(&healthy, "request-success-rate");
    assert_eq!((sr.outcome.as_str(), sr.value), ("Pass", Some(100.0)));
    assert!(sr.query.as_deref().is_some_and(|q| {
        q.contains(r#"kubernetes_pod_name=~"healthy-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)""#)
    }));
    // 20 ms requests land in the (10 ms, 25 ms] bucket; histogram_quantile interpolates the
    // 99th percentile to 10 + 15 × 0.99 = 24.85 ms, truncated to 24.
    let d = record(&healthy, "request-duration");
    assert_eq!(
        (d.outcome.as_str(), d.value, d.max),
        ("Pass", Some(24.0), Some(500.0))
    );

    let errors = settled(&checker, &canary("errors", "kubernetes", builtins())).await?;
    let sr = record(&errors, "request-success-rate");
    assert_eq!(sr.outcome, "Fail");
    // Both status series advance together at every scrape, so rate() extrapolates them
    // identically and the ratio is exactly 75% up to float rounding.
    let v = sr.value.unwrap_or_default();
    assert!((v - 75.0).abs() < 0.01, "success rate {v}");
    assert_eq!(
        sr.message.as_deref(),
        Some("Halt errors.test advancement success rate 75.00% < 99%")
    );

    let slow = settled(&checker, &canary("slow", "kubernetes", builtins())).await?;
    let d = record(&slow, "request-duration");
    // 800 ms requests land in (500 ms, 1 s]: p99 = 500 + 500 × 0.99 = 995 ms. Prometheus
    // interpolates with (0.99 × rate) / rate, which for some rates is a hair under 0.99 in
    // floating point, and the value is truncated to whole milliseconds (as Flagger does): 994
    // or 995 depending on the scrape timing.
    assert_eq!(d.outcome, "Fail");
    let ms = d.value.unwrap_or_default();
    assert!(ms == 994.0 || ms == 995.0, "p99 {ms}");
    assert_eq!(
        d.message.as_deref(),
        Some(format!("Halt slow.test advancement request duration {ms}ms > 500ms").as_str())
    );
    assert_eq!(record(&slow, "request-success-rate").outcome, "Pass");

    // The Istio queries read the Istio-style series of the same traffic.
    let istio = settled(&checker, &canary("healthy", "istio", builtins())).await?;
    assert_eq!(record(&istio, "request-success-rate").value, Some(100.0));
    assert_eq!(record(&istio, "request-duration").value, Some(24.0));
    let slow_istio = settled(&checker, &canary("slow", "istio", builtins())).await?;
    assert_eq!(record(&slow_istio, "request-duration").outcome, "Fail");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_traffic_is_no_data_and_a_stopped_prometheus_is_an_error() -> anyhow::Result<()> {
    let exporter = Exporter::start().await?;
    exporter.set(Workload::healthy("other-5f7c9d-abcde", "test", "other"));
    let mut prom = Prometheus::start("nodata", exporter.addr, false).await?;
    let checker = Analyzer::new(store(), prom.url.clone(), "kubernetes")?;
    // Wait for Prometheus to have scraped something, so "no data" is about the canary.
    settled(&checker, &canary("other", "kubernetes", builtins())).await?;

    let idle = canary("idle", "kubernetes", builtins());
    let report = checker.check(&idle).await;
    for r in &report.records {
        assert_eq!((r.outcome.as_str(), r.value), ("NoData", None), "{r:?}");
    }
    assert_eq!(
        report.verdict,
        Verdict::Fail(
            "Halt advancement no values found for kubernetes metric request-success-rate probably idle.test is not receiving traffic".into()
        )
    );
    let mut held = idle.clone();
    if let Some(a) = held.spec.analysis.as_mut() {
        a.on_inconclusive = Some("hold".into());
    }
    assert!(matches!(
        checker.check(&held).await.verdict,
        Verdict::Hold(_)
    ));

    prom.stop();
    let report = checker
        .check(&canary("other", "kubernetes", builtins()))
        .await;
    for r in &report.records {
        assert_eq!(r.outcome, "Error", "{r:?}");
        let msg = r.message.as_deref().unwrap_or_default();
        assert!(
            msg.starts_with("Prometheus query failed: ") && msg.contains("onnection refused"),
            "{msg}"
        );
    }
    assert!(matches!(report.verdict, Verdict::Fail(_)));
    assert!(checker.probe_default_server().await.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_template_renders_its_variables_and_runs() -> anyhow::Result<()> {
    let exporter = Exporter::start().await?;
    exporter.set(Workload::healthy("podinfo-5f7c9d-abcde", "test", "podinfo"));
    let prom = Prometheus::start("template", exporter.addr, false).await?;
    let objects = store();
    objects.template(
        "test",
        "latency",
        json!({
            "provider": {"type": "prometheus", "address": prom.url},
            "query": "histogram_quantile(\n  {{ variables.quantile }},\n  sum(rate(http_request_duration_seconds_bucket{\n    kubernetes_namespace=\"{{ namespace }}\",\n    kubernetes_pod_name=~\"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)\"\n  }[{{ interval }}])) by (le)\n)"
        }),
    );
    objects.template(
        "test",
        "typo",
        json!({"provider": {"type": "prometheus"}, "query": "up{job=\"{{ job }}\"}"}),
    );
    // The default server is unreachable: a template's address wins over it.
    let checker = Analyzer::new(objects, "http://127.0.0.1:9", "kubernetes")?;
    let c = canary(
        "podinfo",
        "kubernetes",
        json!([{
            "name": "latency-p95", "interval": "5s",
            "templateRef": {"name": "latency"},
            "templateVariables": {"quantile": "0.95"},
            "thresholdRange": {"max": 0.1}
        }]),
    );
    let records = settled(&checker, &c).await?;
    let r = record(&records, "latency-p95");
    assert_eq!(
        r.query.as_deref(),
        Some(
            r#"histogram_quantile( 0.95, sum(rate(http_request_duration_seconds_bucket{ kubernetes_namespace="test", kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[5s])) by (le) )"#
        )
    );
    // p95 of 20 ms requests in (10 ms, 25 ms]: 0.010 + 0.015 × 0.95 = 0.02425 s.
    let v = r.value.unwrap_or_default();
    assert!((v - 0.02425).abs() < 1e-9, "p95 {v}");
    assert_eq!(r.outcome, "Pass");

    let typo = canary(
        "podinfo",
        "kubernetes",
        json!([{"name": "typo", "templateRef": {"name": "typo"}, "thresholdRange": {"max": 1}}]),
    );
    let report = checker.check(&typo).await;
    let r = record(&report.records, "typo");
    assert_eq!((r.outcome.as_str(), r.query.as_deref()), ("Error", None));
    assert!(
        r.message
            .as_deref()
            .is_some_and(|m| m.contains("unknown template variable \"job\"")),
        "{r:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_credentials_come_from_a_secret_in_the_canarys_namespace() -> anyhow::Result<()>
{
    let exporter = Exporter::start().await?;
    exporter.set(Workload::healthy("podinfo-5f7c9d-abcde", "test", "podinfo"));
    let prom = Prometheus::start("auth", exporter.addr, true).await?;
    let objects = store();
    let query = "sum(rate(http_request_duration_seconds_count{kubernetes_namespace=\"{{ namespace }}\"}[{{ interval }}]))";
    for (ns, name, secret) in [
        ("test", "rps", "prom-auth"),
        ("test", "rps-wrong", "prom-wrong"),
        ("monitoring", "rps-elsewhere", "prom-auth"),
    ] {
        objects.template(
            ns,
            name,
            json!({"provider": {"type": "prometheus", "address": prom.url, "secretRef": {"name": secret}}, "query": query}),
        );
    }
    objects.secret(
        "test",
        "prom-auth",
        &[("username", USER), ("password", PASSWORD)],
    );
    objects.secret(
        "test",
        "prom-wrong",
        &[("username", USER), ("password", "nope")],
    );
    objects.secret(
        "monitoring",
        "prom-auth",
        &[("username", USER), ("password", PASSWORD)],
    );
    let checker = Analyzer::new(objects, prom.url.clone(), "kubernetes")?;
    let metric = |name: &str, ns: &str| json!({"name": name, "interval": "5s", "templateRef": {"name": name, "namespace": ns}, "thresholdRange": {"min": 1}});
    let ok = canary("podinfo", "kubernetes", json!([metric("rps", "test")]));
    // The exporter serves 20 requests per second. While the 5 s window still reaches back to
    // before the first scrape, rate() under-estimates; after that it is 20 up to the jitter of
    // scrape timestamps (a few ms per second, so well within 0.5).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    let r = loop {
        let records = settled(&checker, &ok).await?;
        let r = record(&records, "rps").clone();
        assert_eq!(r.outcome, "Pass", "{r:?}");
        if (r.value.unwrap_or_default() - 20.0).abs() < 0.5 {
            break r;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("rate did not reach 20/s: {r:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(r.min, Some(1.0));

    let c = canary(
        "podinfo",
        "kubernetes",
        json!([metric("rps-wrong", "test"), metric("rps-elsewhere", "monitoring"), {"name": "request-success-rate", "interval": "5s", "thresholdRange": {"min": 99}}]),
    );
    let report = checker.check(&c).await;
    let wrong = record(&report.records, "rps-wrong");
    assert_eq!(wrong.outcome, "Error");
    assert!(
        wrong.message.as_deref().is_some_and(|m| m.contains("401")),
        "{wrong:?}"
    );
    let elsewhere = record(&report.records, "rps-elsewhere");
    assert_eq!(elsewhere.outcome, "Error");
    assert!(
        elsewhere
            .message
            .as_deref()
            .is_some_and(|m| m.contains("only read from the Canary's namespace")),
        "{elsewhere:?}"
    );
    // Builtin checks carry no credentials.
    let builtin = record(&report.records, "request-success-rate");
    assert!(
        builtin
            .message
            .as_deref()
            .is_some_and(|m| m.contains("401")),
        "{builtin:?}"
    );
    Ok(())
}
