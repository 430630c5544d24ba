//! End to end sample sizes and the judge: the real `serin controller` binary against the
//! embedded cluster, with a real Prometheus scraping a test exporter that plays the canary's and
//! the primary's pods.
mod common;

use common::e2e::{Env, NS, blue_green_canary, checks, deployment, eventually};
use serde_json::{Value, json};
use serin::api::CanaryPhase;

#[path = "support/prometheus.rs"]
mod support;
use support::{Exporter, Prometheus, Workload, sampled_builtins};

/// Blue/green (kubernetes provider), two iterations at 1 s, both builtins over 5 s windows with
/// `minSamples`, held when inconclusive; `extra` is merged into the analysis.
fn canary(name: &str, min_samples: f64, extra: Value) -> Value {
    blue_green_canary(name, 120)
        .analysis(sampled_builtins(Some(min_samples)))
        .analysis(extra)
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_traffic_with_a_rare_error_is_held_under_min_samples_then_promoted_when_traffic_arrives()
-> anyhow::Result<()> {
    let exporter = Exporter::start().await?;
    let pod = "quiet-5f7c9d8b4-x2k4p";
    // Two requests a second, one in ten an error: a 90% success rate on about ten requests.
    let low = Workload {
        rps: 2.0,
        error_ratio: 0.1,
        ..Workload::healthy(pod, NS, "quiet")
    };
    exporter.set(low.clone());
    let prom = Prometheus::start("e2e-lowtraffic", exporter.addr, false).await?;
    let env = Env::with_metrics_server("analysis-lowtraffic", &prom.url).await?;
    env.apply(deployment("quiet", "podinfo:1.0.0")).await?;
    env.apply(canary("quiet", 200.0, json!({}))).await?;
    env.wait_phase("quiet", CanaryPhase::Initialized, 30)
        .await?;
    env.apply(deployment("quiet", "podinfo:2.0.0")).await?;

    // Held: the success-rate check is an insufficient sample, no failed check is counted.
    let held = eventually(
        40,
        "the run to be held on an insufficient sample",
        || async {
            let c = env.canary("quiet").await?;
            let insufficient = checks(&c).iter().any(|r| {
                r.name == "request-success-rate"
                    && r.outcome == "InsufficientSample"
                    && r.sample.is_some_and(|n| n > 0.0 && n < 200.0)
            });
            Ok(insufficient.then_some(c))
        },
    )
    .await?;
    let st = held.status.clone().unwrap_or_default();
    assert_eq!(st.phase, Some(CanaryPhase::Progressing), "{st:#?}");
    assert_eq!(st.failed_checks, 0, "{st:#?}");
    assert!(st.hold_start_time.is_some(), "{st:#?}");
    let notes = env.event_notes().await?;
    assert!(
        notes.iter().any(|n| n.starts_with(
            "Holding quiet.test advancement: Insufficient sample for metric request-success-rate"
        )),
        "{notes:#?}"
    );

    // Traffic arrives, healthy: the run resumes and is promoted.
    exporter.set(Workload {
        rps: 100.0,
        error_ratio: 0.0,
        ..low
    });
    let done = env.wait_phase("quiet", CanaryPhase::Succeeded, 60).await?;
    assert_eq!(done.status.as_ref().map(|s| s.failed_checks), Some(0));
    assert!(
        checks(&done)
            .iter()
            .all(|r| r.outcome == "Pass" && r.sample.is_some_and(|n| n >= 200.0)),
        "{:#?}",
        checks(&done)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_rolls_back_a_canary_twice_as_slow_as_its_primary_and_promotes_an_equal_one()
-> anyhow::Result<()> {
    let exporter = Exporter::start().await?;
    // 200 ms against a 100 ms primary: p99 about 250 ms, under the absolute 500 ms.
    exporter.slow_and_same_beside_primaries(NS, "5f7c9d8b4-x2k4p");
    let prom = Prometheus::start("e2e-judge", exporter.addr, false).await?;
    let env = Env::with_metrics_server("analysis-judge", &prom.url).await?;
    let judge = json!({"judge": {"confidence": 0.95, "tolerance": 10}});
    for name in ["slow", "same"] {
        env.apply(deployment(name, "podinfo:1.0.0")).await?;
        env.apply(canary(name, 20.0, judge.clone())).await?;
    }
    for name in ["slow", "same"] {
        env.wait_phase(name, CanaryPhase::Initialized, 30).await?;
    }
    // Wait until the windows hold enough requests, so neither run starts on a hold.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    for name in ["slow", "same"] {
        env.apply(deployment(name, "podinfo:2.0.0")).await?;
    }

    let failed = env.wait_phase("slow", CanaryPhase::Failed, 60).await?;
    let records = checks(&failed);
    let absolute = records
        .iter()
        .find(|r| r.name == "request-duration" && r.kind == "metric");
    assert_eq!(
        absolute.map(|r| r.outcome.as_str()),
        Some("Pass"),
        "{records:#?}"
    );
    let judged = records
        .iter()
        .find(|r| r.name == "request-duration" && r.kind == "judge");
    assert!(
        judged.is_some_and(|r| r.outcome == "Fail"
            && r.effect.is_some_and(|e| e > 0.5)
            && r.p_value.is_some_and(|p| p < 0.05)
            && r.interval.is_some()),
        "{records:#?}"
    );
    println!("judge decision record: {}", serde_json::to_string(&judged)?);
    let notes = env.event_notes().await?;
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("Judge request-duration Fail") && n.contains("p-value")),
        "{notes:#?}"
    );

    let done = env.wait_phase("same", CanaryPhase::Succeeded, 60).await?;
    assert!(
        checks(&done).iter().all(|r| r.outcome == "Pass"),
        "{:#?}",
        checks(&done)
    );
    Ok(())
}
