//! End to end metric analysis: the real `serin controller` binary against the embedded cluster,
//! with a real Prometheus scraping a test exporter that plays the canary's pods (podinfo-style
//! `http_request_duration_seconds_*` series for `podinfo-<hash>-<id>`).
mod common;

use anyhow::Context;
use common::e2e::{Env, NS, blue_green_canary, checks, deployment, eventually};
use serde_json::{Value, json};
use serin::api::{Canary, CanaryPhase};

#[path = "support/prometheus.rs"]
mod support;
use support::{Exporter, Prometheus, Workload};

/// The error rate of the canary's pods in percent, as a MetricTemplate (answered by
/// `--metrics-server`, since the template names no address).
fn error_rate_template() -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "error-rate", "namespace": NS},
        "spec": {
            "provider": {"type": "prometheus"},
            "query": "100 - sum(rate(http_request_duration_seconds_count{kubernetes_namespace=\"{{ namespace }}\", kubernetes_pod_name=~\"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)\", status!~\"{{ variables.bad }}\"}[{{ interval }}])) / sum(rate(http_request_duration_seconds_count{kubernetes_namespace=\"{{ namespace }}\", kubernetes_pod_name=~\"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)\"}[{{ interval }}])) * 100"
        }
    })
}

/// A Canary with both builtins and the template metric; blue/green (kubernetes provider) with
/// two iterations at 1 s.
fn canary(name: &str, policy: Option<&str>) -> Value {
    blue_green_canary(name, 60)
        .analysis(json!({"onInconclusive": policy}))
        .metric(json!({"name": "request-success-rate", "interval": "5s", "thresholdRange": {"min": 99}}))
        .metric(json!({"name": "request-duration", "interval": "5s", "thresholdRange": {"max": 500}}))
        .metric(json!({"name": "error-rate", "interval": "5s", "templateRef": {"name": "error-rate"},
             "templateVariables": {"bad": "5.*"}, "thresholdRange": {"max": 1}}))
        .json()
}

fn outcomes(c: &Canary) -> Vec<(String, String)> {
    checks(c).into_iter().map(|r| (r.name, r.outcome)).collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Waits until Prometheus has a few scrapes of `pod`, so the first tick already sees data.
async fn scraped(prom: &Prometheus, pod: &str) -> anyhow::Result<()> {
    serin::install_crypto_provider();
    let http = reqwest::Client::builder().build()?;
    let q = format!(
        "count_over_time(http_request_duration_seconds_count{{kubernetes_pod_name=\"{pod}\",status=\"200\"}}[10s]) >= 5"
    );
    eventually(30, "prometheus to scrape the exporter", || async {
        let r: Value = http
            .get(format!("{}/api/v1/query", prom.url))
            .query(&[("query", q.as_str())])
            .send()
            .await?
            .json()
            .await?;
        Ok(r["data"]["result"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            .then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_and_an_erroring_one_is_rolled_back_with_the_reasons()
-> anyhow::Result<()> {
    let exporter = Exporter::start().await?;
    let pod = "podinfo-5f7c9d8b4-x2k4p";
    exporter.set(Workload::healthy(pod, NS, "podinfo"));
    let prom = Prometheus::start("e2e-promote", exporter.addr, false).await?;
    let env = Env::with_metrics_server("metrics-promote", &prom.url).await?;
    env.apply(error_rate_template()).await?;
    env.apply(deployment("podinfo", "podinfo:1.0.0")).await?;
    env.apply(canary("podinfo", None)).await?;
    env.wait_phase("podinfo", CanaryPhase::Initialized, 30)
        .await?;
    scraped(&prom, pod).await?;

    env.apply(deployment("podinfo", "podinfo:2.0.0")).await?;
    let done = env
        .wait_phase("podinfo", CanaryPhase::Succeeded, 40)
        .await?;
    assert_eq!(
        outcomes(&done),
        pairs(&[
            ("request-success-rate", "Pass"),
            ("request-duration", "Pass"),
            ("error-rate", "Pass")
        ])
    );
    let records = checks(&done);
    assert_eq!(records[0].value, Some(100.0));
    assert_eq!(records[0].min, Some(99.0));
    assert_eq!(records[1].value, Some(24.0));
    assert!(
        records[2]
            .query
            .as_deref()
            .is_some_and(|q| q.contains(r#"status!~"5.*"}[5s]"#)),
        "{:?}",
        records[2].query
    );

    // Half the canary's requests fail from now on.
    exporter.set(Workload {
        error_ratio: 0.5,
        ..Workload::healthy(pod, NS, "podinfo")
    });
    env.apply(deployment("podinfo", "podinfo:3.0.0")).await?;
    let failed = env.wait_phase("podinfo", CanaryPhase::Failed, 40).await?;
    let sr = checks(&failed)
        .into_iter()
        .find(|r| r.name == "request-success-rate")
        .context("success-rate record")?;
    assert_eq!(sr.outcome, "Fail");
    // The 5 s window may still hold healthy samples from before the switch, so the value is
    // between 50% and 99%.
    let v = sr.value.unwrap_or_default();
    assert!((50.0..99.0).contains(&v), "success rate {v}");
    let notes = env.event_notes().await?;
    assert!(
        notes.iter().any(
            |n| n.starts_with("Halt podinfo.test advancement success rate")
                && n.contains("[check request-success-rate: outcome Fail")
        ),
        "{notes:#?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("Halt podinfo.test advancement error-rate")),
        "{notes:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_traffic_hold_waits_for_data_while_fail_rolls_back() -> anyhow::Result<()> {
    let exporter = Exporter::start().await?;
    // Only an unrelated pod has traffic, so Prometheus is up but the canaries have no data.
    exporter.set(Workload::healthy(
        "unrelated-5f7c9d8b4-x2k4p",
        NS,
        "unrelated",
    ));
    let prom = Prometheus::start("e2e-hold", exporter.addr, false).await?;
    let env = Env::with_metrics_server("metrics-hold", &prom.url).await?;
    env.apply(error_rate_template()).await?;
    for (name, policy) in [("held", "hold"), ("failing", "fail")] {
        env.apply(deployment(name, "podinfo:1.0.0")).await?;
        env.apply(canary(name, Some(policy))).await?;
    }
    for name in ["held", "failing"] {
        env.wait_phase(name, CanaryPhase::Initialized, 30).await?;
    }
    scraped(&prom, "unrelated-5f7c9d8b4-x2k4p").await?;
    for name in ["held", "failing"] {
        env.apply(deployment(name, "podinfo:2.0.0")).await?;
    }

    let failed = env.wait_phase("failing", CanaryPhase::Failed, 40).await?;
    assert_eq!(
        outcomes(&failed)[0],
        ("request-success-rate".to_string(), "NoData".to_string())
    );

    // The held canary has seen at least as many ticks, and is still progressing.
    let held = env.canary("held").await?;
    let st = held.status.clone().unwrap_or_default();
    assert_eq!(st.phase, Some(CanaryPhase::Progressing), "{st:#?}");
    assert_eq!(st.failed_checks, 0);
    assert!(st.hold_start_time.is_some(), "{st:#?}");
    assert_eq!(
        outcomes(&held),
        pairs(&[
            ("request-success-rate", "NoData"),
            ("request-duration", "NoData"),
            ("error-rate", "NoData")
        ])
    );
    let notes = env.event_notes().await?;
    assert!(
        notes.iter().any(|n| n.starts_with("Holding held.test advancement: Halt advancement no values found for kubernetes metric request-success-rate")),
        "{notes:#?}"
    );

    // Traffic arrives: the held canary resumes and is promoted.
    exporter.set(Workload::healthy("held-5f7c9d8b4-x2k4p", NS, "held"));
    let done = env.wait_phase("held", CanaryPhase::Succeeded, 40).await?;
    assert!(
        outcomes(&done).iter().all(|(_, o)| o == "Pass"),
        "{:?}",
        outcomes(&done)
    );
    assert_eq!(done.status.and_then(|s| s.hold_start_time), None);
    Ok(())
}
