//! The Grafana dashboard (deploy/dashboards/serin.json) and the alerts
//! (deploy/prometheus-rule.yaml): `promtool` checks and unit-tests the rules, and every dashboard
//! query and rule expression runs against a real Prometheus (Debian's `prometheus` package)
//! scraping the controller's own /metrics server.
use anyhow::{Context, bail};
use serde_json::Value;
use serin::api::canary::{CanaryAnalysis, CanaryStatus, TargetRef, WaitingFor};
use serin::api::{Canary, CanaryPhase, CanarySpec};
use serin::controller::telemetry::Telemetry;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[path = "support/prometheus.rs"]
mod support;
use support::Prometheus;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(root().join("deploy/dashboards/serin.json"))
        .expect("deploy/dashboards/serin.json");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// The PrometheusRule's `spec` (its rule groups).
fn rule_spec() -> Value {
    let text = std::fs::read_to_string(root().join("deploy/prometheus-rule.yaml"))
        .expect("deploy/prometheus-rule.yaml");
    let rule: Value = serde_yaml_ng::from_str(&text).expect("the PrometheusRule is YAML");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    rule["spec"].clone()
}

/// (alert name, expression) of every rule.
fn rules() -> Vec<(String, String)> {
    rule_spec()["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["alert"].as_str().unwrap_or_default().to_string(),
                r["expr"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// (panel title, query) of every dashboard target, with Grafana's variables replaced the way
/// Grafana expands them for "All" namespaces.
fn queries() -> Vec<(String, String)> {
    let d = dashboard();
    d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| {
                    let expr = t["expr"]
                        .as_str()
                        .unwrap_or_default()
                        .replace("$namespace", ".*")
                        .replace("$__rate_interval", "1m");
                    (title.clone(), expr)
                })
        })
        .collect()
}

fn promtool() -> PathBuf {
    let path = std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/promtool"));
    assert!(
        path.exists(),
        "promtool not found at {}: install Debian's `prometheus` package or set $PROMTOOL",
        path.display()
    );
    path
}

#[test]
fn the_dashboard_and_the_rules_are_hand_written_data_that_manifests_leave_alone() {
    let generated: BTreeSet<String> = serin::install::files()
        .expect("render the bundle")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    for path in [
        "deploy/dashboards/serin.json",
        "deploy/prometheus-rule.yaml",
    ] {
        assert!(!generated.contains(path), "{path} is hand-written");
    }
    let d = dashboard();
    assert_eq!(d["uid"], "serin-canaries");
    let ids: Vec<i64> = d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter_map(|p| p["id"].as_i64())
        .collect();
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "panel ids are unique");
    for p in d["panels"].as_array().expect("panels") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        assert!(
            p["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "{} has a query",
            p["title"]
        );
    }
    let names: Vec<String> = rules().into_iter().map(|r| r.0).collect();
    assert_eq!(
        names,
        [
            "SerinCanaryFailed",
            "SerinCanaryStuck",
            "SerinControllerDown"
        ]
    );
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let dir = std::env::temp_dir().join(format!("serin-rules-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let groups = serde_yaml_ng::to_string(&rule_spec()).expect("rule groups as YAML");
    std::fs::write(dir.join("rules.yml"), groups).expect("rules.yml");
    std::fs::copy(
        root().join("tests/fixtures/prometheus-rule-tests.yaml"),
        dir.join("tests.yml"),
    )
    .expect("copy the rule tests");
    for args in [
        ["check", "rules", "rules.yml"],
        ["test", "rules", "tests.yml"],
    ] {
        let out = Command::new(promtool())
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn canary(name: &str, deadline: i32) -> Canary {
    let mut c = Canary::new(
        name,
        CanarySpec {
            target_ref: Some(TargetRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: name.into(),
            }),
            progress_deadline_seconds: Some(deadline),
            analysis: Some(CanaryAnalysis {
                step_weight: Some(20),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    c.metadata.namespace = Some("test".into());
    c
}

fn running(weight: i32, wait: Option<(&str, i64)>) -> CanaryStatus {
    let now = chrono::Utc::now().timestamp();
    CanaryStatus {
        phase: Some(CanaryPhase::Progressing),
        canary_weight: weight,
        waiting_for: wait.map(|(reason, ago)| WaitingFor {
            reason: reason.into(),
            message: format!("{reason} for {ago}s"),
            since: chrono::DateTime::from_timestamp(now - ago, 0).map(serin::api::time::to_time),
        }),
        ..Default::default()
    }
}

/// The controller's metrics as reconciles leave them for five canaries: one failed, one stuck
/// past its deadline on unready Pods, one behind a closed gate for as long, one that has just
/// started waiting, and one promoted.
fn populate(t: &Telemetry) -> Vec<Canary> {
    let mut all = Vec::new();
    let mut step = |c: Canary, before: CanaryStatus, after: CanaryStatus| {
        let mut c = c;
        c.status = Some(before);
        drop(t.canary_timer(&c));
        t.observe_status(&c, &after, None);
        c.status = Some(after);
        all.push(c);
    };
    step(
        canary("failed", 600),
        running(40, None),
        CanaryStatus {
            phase: Some(CanaryPhase::Failed),
            ..Default::default()
        },
    );
    step(
        canary("stuck", 60),
        running(0, None),
        running(0, Some(("CanaryPodsNotReady", 3600))),
    );
    step(
        canary("gated", 60),
        running(20, None),
        running(20, Some(("GateClosed", 3600))),
    );
    step(
        canary("fresh", 600),
        running(0, None),
        running(0, Some(("RouteNotAccepted", 1))),
    );
    step(
        canary("done", 600),
        running(60, None),
        CanaryStatus {
            phase: Some(CanaryPhase::Succeeded),
            ..Default::default()
        },
    );
    if let Some(c) = all
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some("gated"))
    {
        t.observe_checks(
            c,
            &[serin::api::canary::CheckRecord {
                name: "request-success-rate".into(),
                kind: "metric".into(),
                value: Some(99.5),
                outcome: "Pass".into(),
                ..Default::default()
            }],
        );
    }
    t.reconcile_failure("PatchStatus");
    drop(t.reconcile_timer());
    t.set_leader(true);
    t.sync_canaries(all.iter());
    all
}

async fn query(prom: &Prometheus, expr: &str) -> anyhow::Result<Vec<Value>> {
    let body: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/query", prom.url))
        .query(&[("query", expr)])
        .send()
        .await?
        .json()
        .await?;
    if body["status"] != "success" {
        bail!("{expr}: {body}");
    }
    Ok(body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn names(result: &[Value]) -> BTreeSet<String> {
    result
        .iter()
        .filter_map(|r| r["metric"]["name"].as_str().map(String::from))
        .collect()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_and_alert_expression_works_on_a_scraped_controller()
-> anyhow::Result<()> {
    serin::install_crypto_provider();
    let t = Telemetry::new("istio", None);
    let canaries = populate(&t);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let server = tokio::spawn(serin::controller::telemetry::serve(addr, t.clone()));
    let prom = Prometheus::start_job("observability", addr, false, "serin")
        .await
        .context("prometheus")?;

    // increase() and rate() need two samples in their window: move the counters between
    // scrapes, as a running controller does.
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let Some(c) = canaries.first() {
        drop(t.canary_timer(c));
    }
    drop(t.reconcile_timer());
    tokio::time::sleep(Duration::from_secs(3)).await;

    for (title, expr) in queries() {
        let result = query(&prom, &expr).await?;
        assert!(
            !result.is_empty(),
            "panel {title:?}: {expr} returned no series"
        );
    }
    let status = query(&prom, "max by (namespace, name) (flagger_canary_status)").await?;
    assert_eq!(
        names(&status),
        ["done", "failed", "fresh", "gated", "stuck"]
            .into_iter()
            .map(String::from)
            .collect()
    );

    let by_rule: std::collections::BTreeMap<String, String> = rules().into_iter().collect();
    let failed = query(&prom, &by_rule["SerinCanaryFailed"]).await?;
    assert_eq!(names(&failed), BTreeSet::from(["failed".to_string()]));
    let stuck = query(&prom, &by_rule["SerinCanaryStuck"]).await?;
    assert_eq!(
        names(&stuck),
        BTreeSet::from(["stuck".to_string()]),
        "{stuck:?}"
    );
    assert_eq!(stuck[0]["metric"]["reason"], "CanaryPodsNotReady");
    let down = &by_rule["SerinControllerDown"];
    assert!(query(&prom, down).await?.is_empty(), "the controller is up");

    // A deleted canary's series leave /metrics, and so Prometheus' answers.
    let left: Vec<&Canary> = canaries
        .iter()
        .filter(|c| c.metadata.name.as_deref() != Some("stuck"))
        .collect();
    t.sync_canaries(left);
    let gone = async {
        loop {
            let stuck = query(&prom, &by_rule["SerinCanaryStuck"]).await?;
            let weight = query(&prom, r#"flagger_canary_weight{workload="stuck"}"#).await?;
            if stuck.is_empty() && weight.is_empty() {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), gone)
        .await
        .context("a deleted canary's series stayed in Prometheus")??;

    // The controller stops answering: the down alert's expression returns its series.
    server.abort();
    let fires = async {
        loop {
            if !query(&prom, down).await?.is_empty() {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fires)
        .await
        .context("SerinControllerDown never matched a stopped controller")??;
    Ok(())
}
