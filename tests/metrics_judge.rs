//! Sample sizes and the statistical judge against a real Prometheus (Debian's `prometheus`
//! package) scraping a test exporter every second; no cluster (the Analyzer runs directly).
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
use support::{Exporter, Prometheus, Workload, sampled_builtins};

/// No MetricTemplates or Secrets: these tests use the builtin checks only.
struct NoObjects;

#[async_trait]
impl Objects for NoObjects {
    async fn metric_template(&self, ns: &str, name: &str) -> Result<MetricTemplate, String> {
        Err(format!("metrictemplates {name:?} not found in {ns}"))
    }
    async fn secret_data(&self, ns: &str, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        Err(format!("secrets {name:?} not found in {ns}"))
    }
}

/// A canary of `target` with the builtin checks over 5 s windows and the given analysis extras.
fn canary(target: &str, min_samples: Option<f64>, extra: serde_json::Value) -> Canary {
    Canary::test()
        .workload(target)
        .blue_green("1s", 2)
        .analysis(sampled_builtins(min_samples))
        .analysis(extra)
        .build()
}

fn find<'a>(records: &'a [CheckRecord], name: &str, kind: &str) -> &'a CheckRecord {
    records
        .iter()
        .find(|r| r.name == name && r.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} record {name} in {records:#?}"))
}

/// Checks until `done` holds for the records (scrapes and windows take a few seconds).
async fn until(
    checker: &impl MetricsChecker,
    c: &Canary,
    what: &str,
    done: impl Fn(&[CheckRecord]) -> bool,
) -> anyhow::Result<(Verdict, Vec<CheckRecord>)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let report = checker.check(c).await;
        if done(&report.records) {
            return Ok((report.verdict, report.records));
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what}: not after 30s: {:#?}", report.records);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_traffic_with_a_rare_error_is_held_under_min_samples_and_passes_once_traffic_arrives()
-> anyhow::Result<()> {
    let exporter = Exporter::start().await?;
    // Two requests a second, one in ten an error: about ten requests per 5 s window.
    let low = Workload {
        rps: 2.0,
        error_ratio: 0.1,
        ..Workload::healthy("quiet-5f7c9d-abcde", "test", "quiet")
    };
    exporter.set(low.clone());
    let prom = Prometheus::start("lowtraffic", exporter.addr, false).await?;
    let checker = Analyzer::new(NoObjects, prom.url.clone(), "kubernetes")?;

    // Without minSamples the rare error fails the 99% range, as in Flagger.
    let plain = canary("quiet", None, json!({}));
    let (verdict, records) = until(&checker, &plain, "a value", |r| {
        r.iter().all(|r| r.outcome != "NoData")
    })
    .await?;
    assert_eq!(
        find(&records, "request-success-rate", "metric").outcome,
        "Fail"
    );
    assert!(matches!(verdict, Verdict::Fail(_)), "{verdict:?}");
    assert_eq!(
        find(&records, "request-success-rate", "metric").sample,
        None
    );

    // With minSamples the same window is an insufficient sample: held, not failed.
    let guarded = canary("quiet", Some(200.0), json!({}));
    let report = checker.check(&guarded).await;
    let sr = find(&report.records, "request-success-rate", "metric");
    assert_eq!(sr.outcome, "InsufficientSample", "{sr:?}");
    let n = sr.sample.unwrap_or_default();
    assert!(n > 0.0 && n < 200.0, "sample {n}");
    assert!(
        matches!(&report.verdict, Verdict::Hold(m) if m.contains("Insufficient sample")),
        "{:?}",
        report.verdict
    );

    // Traffic arrives, healthy: once the window holds enough requests, both checks pass.
    exporter.set(Workload {
        rps: 100.0,
        error_ratio: 0.0,
        ..low
    });
    let (verdict, records) = until(&checker, &guarded, "passing", |r| {
        r.iter().all(|r| r.outcome == "Pass")
    })
    .await?;
    assert_eq!(verdict, Verdict::Pass);
    assert!(
        find(&records, "request-success-rate", "metric")
            .sample
            .is_some_and(|n| n >= 200.0)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_fails_a_canary_twice_as_slow_as_the_primary_and_passes_an_equal_one()
-> anyhow::Result<()> {
    let exporter = Exporter::start().await?;
    // Primaries at 100 ms; the slow canary at 200 ms (p99 under the absolute 500 ms), the
    // equal canary at 100 ms.
    exporter.slow_and_same_beside_primaries("test", "5f7c9d-abcde");
    let prom = Prometheus::start("judge", exporter.addr, false).await?;
    let checker = Analyzer::new(NoObjects, prom.url.clone(), "kubernetes")?;
    let judged = json!({"judge": {"confidence": 0.95, "tolerance": 10}});
    let has_data = |r: &[CheckRecord]| {
        r.iter()
            .all(|r| r.outcome != "NoData" && r.outcome != "InsufficientSample")
    };

    let slow = canary("slow", Some(50.0), judged.clone());
    let (verdict, records) = until(&checker, &slow, "judged", has_data).await?;
    let absolute = find(&records, "request-duration", "metric");
    assert_eq!(absolute.outcome, "Pass", "{absolute:?}");
    let j = find(&records, "request-duration", "judge");
    assert_eq!(j.outcome, "Fail", "{j:?}");
    // p99 of 200 ms requests in (100 ms, 250 ms] against 100 ms ones in (50 ms, 100 ms].
    assert!(j.effect.is_some_and(|e| e > 1.0), "{j:?}");
    assert!(j.p_value.is_some_and(|p| p < 0.05), "{j:?}");
    assert!(j.interval.as_ref().is_some_and(|i| i.len() == 2), "{j:?}");
    assert!(j.sample.is_some_and(|n| n >= 50.0), "{j:?}");
    assert_eq!(
        find(&records, "request-success-rate", "judge").outcome,
        "Pass"
    );
    assert!(
        matches!(&verdict, Verdict::Fail(m) if m.starts_with("Judge request-duration Fail")),
        "{verdict:?}"
    );
    println!("judge decision record: {}", serde_json::to_string(j)?);

    let same = canary("same", Some(50.0), judged);
    let (verdict, records) = until(&checker, &same, "judged", has_data).await?;
    let j = find(&records, "request-duration", "judge");
    assert_eq!((j.outcome.as_str(), j.effect), ("Pass", Some(0.0)), "{j:?}");
    assert_eq!(verdict, Verdict::Pass);
    Ok(())
}
