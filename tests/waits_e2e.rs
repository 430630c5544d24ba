//! End to end on the embedded cluster: every explained wait shows in `status.waitingFor` with its
//! reason, counts and a `since` that stays put, and exactly one Normal event announces each
//! change of cause, however many reconciles the wait lasts. The controller runs in-process so a
//! test can inject a metrics checker that finds no data and a gate that stays closed.
mod common;

use async_trait::async_trait;
use common::inprocess::{Env, NS, passing};
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use serde_json::{Value, json};
use serin::api::canary::{CheckRecord, WaitingFor};
use serin::api::webhook_type::WebhookType;
use serin::api::{Canary, CanaryPhase};
use serin::metrics::{AnalysisReport, MetricsChecker, Verdict};
use serin::webhook::NoWebhooks;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// podinfo with `replicas` replicas; `fault` is a simulator fault for its Pods
/// (`sim.serin.dev/fault`).
fn podinfo(version: &str, replicas: i32, fault: Option<&str>) -> Value {
    let annotations = fault.map_or_else(|| json!({}), |f| json!({"sim.serin.dev/fault": f}));
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": NS, "labels": {"app": "podinfo"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}, "annotations": annotations},
                "spec": {"containers": [{"name": "podinfod", "image": format!("ghcr.io/stefanprodan/podinfo:{version}"),
                    "ports": [{"name": "http", "containerPort": 9898}]}]}
            }
        }
    })
}

fn canary(provider: &str, service: Value, analysis: Value) -> Value {
    let mut a = json!({"interval": "1s", "threshold": 10, "stepWeight": 20, "maxWeight": 60});
    for (k, v) in analysis.as_object().into_iter().flatten() {
        match (a.as_object_mut(), v.is_null()) {
            (Some(m), true) => {
                m.remove(k);
            }
            _ => a[k] = v.clone(),
        }
    }
    let mut s = json!({"port": 9898});
    for (k, v) in service.as_object().into_iter().flatten() {
        s[k] = v.clone();
    }
    json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": NS},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 600,
            "service": s,
            "analysis": a
        }
    })
}

async fn waiting_for(env: &Env) -> anyhow::Result<Option<WaitingFor>> {
    let c: Canary = Api::namespaced(env.client.clone(), NS)
        .get("podinfo")
        .await?;
    Ok(c.status.and_then(|s| s.waiting_for))
}

/// Waits until `status.waitingFor.reason` is `reason`.
async fn wait_reason(env: &Env, reason: &str, secs: u64) -> anyhow::Result<WaitingFor> {
    common::inprocess::eventually(secs, &format!("waitingFor {reason}"), || async {
        Ok(waiting_for(env).await?.filter(|w| w.reason == reason))
    })
    .await
}

/// The notes of the Events about the Canary that start with `prefix`, with their series counts.
async fn events(env: &Env, prefix: &str) -> anyhow::Result<Vec<(String, i32)>> {
    let api: Api<Event> = Api::namespaced(env.client.clone(), NS);
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Canary"))
        .filter_map(|e| {
            let note = e.note.clone().unwrap_or_default();
            let count = e.series.as_ref().map_or(1, |s| s.count);
            note.starts_with(prefix).then_some((note, count))
        })
        .collect())
}

/// The Canary as the Table `kubectl get canary` asks the API server for.
async fn canary_table(env: &Env) -> anyhow::Result<Value> {
    let req = http::Request::get(format!(
        "/apis/flagger.app/v1beta1/namespaces/{NS}/canaries/podinfo"
    ))
    .header(
        http::header::ACCEPT,
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    .body(Vec::new())?;
    Ok(serde_json::from_str(&env.client.request_text(req).await?)?)
}

fn column<'a>(table: &'a Value, name: &str) -> Option<&'a Value> {
    table["columnDefinitions"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

/// The first row's cell of column `name`.
fn cell(table: &Value, name: &str) -> Option<Value> {
    let i = table["columnDefinitions"]
        .as_array()?
        .iter()
        .position(|c| c["name"] == name)?;
    Some(table["rows"][0]["cells"][i].clone())
}

/// Holds the wait for a few reconciles, then checks that `since` did not move and that one
/// Normal event (written once) announced the cause.
async fn stays_one_event(env: &Env, reason: &str, first: &WaitingFor) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_secs(4)).await;
    let now = waiting_for(env).await?;
    assert_eq!(now.as_ref().map(|w| w.reason.as_str()), Some(reason));
    assert_eq!(now.and_then(|w| w.since), first.since, "since stays put");
    let announced = events(env, &format!("Waiting for podinfo.{NS} ({reason})")).await?;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0].1, 1, "written once: {announced:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_pods_that_never_become_ready_are_explained_with_counts() -> anyhow::Result<()> {
    let mut env = Env::start_two_nodes(&[]).await?;
    env.start_controller("kubernetes", passing(), Default::default());
    env.apply(podinfo("1.0", 1, None)).await?;
    env.apply(canary(
        "kubernetes",
        json!({}),
        json!({"iterations": 3, "stepWeight": null}),
    ))
    .await?;
    env.wait_phase(CanaryPhase::Initialized, 30).await?;
    env.apply(podinfo("2.0", 1, Some("unready"))).await?;
    let first = wait_reason(&env, "CanaryPodsNotReady", 30).await?;
    // The new Pod exists but never becomes ready: the counts say so (the old revision's ready
    // Pod, still running during the rollout, is not counted).
    let counted = common::inprocess::eventually(30, "counts in waitingFor", || async {
        Ok(waiting_for(&env)
            .await?
            .filter(|w| w.message.starts_with("canary Pods not ready: 0/1 ready")))
    })
    .await?;
    assert_eq!(counted.since, first.since, "same cause, same since");
    stays_one_event(&env, "CanaryPodsNotReady", &first).await?;
    let c: Canary = Api::namespaced(env.client.clone(), NS)
        .get("podinfo")
        .await?;
    assert_eq!(c.status.map(|s| s.failed_checks), Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_its_gateway_does_not_accept_is_explained_until_it_is_accepted()
-> anyhow::Result<()> {
    let mut env = Env::start_two_nodes(&["gateway-api.yaml"]).await?;
    let accept = Arc::new(AtomicBool::new(false));
    env.start_gateway_accepting(accept.clone());
    env.start_controller("gatewayapi:v1", passing(), Default::default());
    env.apply(podinfo("1.0", 1, None)).await?;
    env.apply(canary(
        "gatewayapi:v1",
        json!({"gatewayRefs": [{"name": "public", "namespace": "gateways"}]}),
        json!({}),
    ))
    .await?;
    env.wait_phase(CanaryPhase::Initialized, 30).await?;
    env.apply(podinfo("2.0", 1, None)).await?;
    let first = wait_reason(&env, "RouteNotAccepted", 30).await?;
    assert!(
        first.message.contains("reason: NotAllowedByListeners"),
        "{}",
        first.message
    );
    stays_one_event(&env, "RouteNotAccepted", &first).await?;
    // `kubectl get canary` shows the reason, `-o wide` (priority 1) the message.
    let table = canary_table(&env).await?;
    assert_eq!(
        cell(&table, "Waiting"),
        Some(json!("RouteNotAccepted")),
        "{table}"
    );
    assert_eq!(
        cell(&table, "Status"),
        Some(json!("Progressing")),
        "{table}"
    );
    assert_eq!(
        cell(&table, "WaitingFor"),
        Some(json!(first.message)),
        "{table}"
    );
    assert_eq!(
        column(&table, "WaitingFor").map(|c| c["priority"].clone()),
        Some(json!(1))
    );
    let c: Canary = Api::namespaced(env.client.clone(), NS)
        .get("podinfo")
        .await?;
    assert_eq!(
        c.status.map(|s| s.canary_weight),
        Some(0),
        "no traffic moved"
    );

    accept.store(true, Ordering::Release);
    let done = env.wait_phase(CanaryPhase::Succeeded, 60).await?;
    assert_eq!(done.status.and_then(|s| s.waiting_for), None, "cleared");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_gate_is_explained_and_announced_once() -> anyhow::Result<()> {
    let mut env = Env::start_two_nodes(&["gateway-api.yaml"]).await?;
    env.start_gateway();
    env.start_controller_with(
        "gatewayapi:v1",
        passing(),
        Default::default(),
        Arc::new(NoWebhooks::closed(WebhookType::ConfirmPromotion)),
    );
    env.apply(podinfo("1.0", 1, None)).await?;
    env.apply(canary(
        "gatewayapi:v1",
        json!({"gatewayRefs": [{"name": "public", "namespace": "gateways"}]}),
        json!({"webhooks": [{"name": "approve", "type": "confirm-promotion", "url": "http://gate.test/"}]}),
    ))
    .await?;
    env.wait_phase(CanaryPhase::Initialized, 30).await?;
    env.apply(podinfo("2.0", 1, None)).await?;
    let first = wait_reason(&env, "GateClosed", 60).await?;
    assert_eq!(first.message, "confirm-promotion gate is closed");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let now = waiting_for(&env).await?;
    assert_eq!(now.and_then(|w| w.since), first.since, "since stays put");
    // The gate announces itself when the canary enters WaitingPromotion; no second event.
    let announced = events(
        &env,
        &format!("Waiting for approval: confirm-promotion gate is closed for podinfo.{NS}"),
    )
    .await?;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0].1, 1, "written once: {announced:?}");
    let again = events(&env, &format!("Waiting for podinfo.{NS} (GateClosed)")).await?;
    assert!(
        again.is_empty(),
        "the gate's own event announced it: {again:?}"
    );
    Ok(())
}

/// Every analysis finds no data for request-success-rate (under the default `fail` policy,
/// a failed check per tick).
struct NoData;

#[async_trait]
impl MetricsChecker for NoData {
    async fn check(&self, _: &Canary) -> AnalysisReport {
        AnalysisReport {
            verdict: Verdict::Fail("no values found for metric request-success-rate".into()),
            records: vec![CheckRecord {
                name: "request-success-rate".into(),
                kind: "metric".into(),
                outcome: "NoData".into(),
                ..Default::default()
            }],
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_without_data_is_explained_once_while_checks_fail() -> anyhow::Result<()> {
    let mut env = Env::start_two_nodes(&["gateway-api.yaml"]).await?;
    env.start_gateway();
    env.start_controller("gatewayapi:v1", Arc::new(NoData), Default::default());
    env.apply(podinfo("1.0", 1, None)).await?;
    env.apply(canary(
        "gatewayapi:v1",
        json!({"gatewayRefs": [{"name": "public", "namespace": "gateways"}]}),
        json!({"threshold": 30}),
    ))
    .await?;
    env.wait_phase(CanaryPhase::Initialized, 30).await?;
    env.apply(podinfo("2.0", 1, None)).await?;
    let first = wait_reason(&env, "MetricNoData", 30).await?;
    assert_eq!(
        first.message,
        "metric returned no data: request-success-rate"
    );
    stays_one_event(&env, "MetricNoData", &first).await?;
    let c: Canary = Api::namespaced(env.client.clone(), NS)
        .get("podinfo")
        .await?;
    assert!(
        c.status.is_some_and(|s| s.failed_checks >= 2),
        "each tick still counts a failed check"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_canary_shows_why_an_invalid_canary_waits() -> anyhow::Result<()> {
    let mut env = Env::start_two_nodes(&[]).await?;
    env.start_controller("kubernetes", passing(), Default::default());
    // No podinfo Deployment: the target does not exist.
    env.apply(canary(
        "kubernetes",
        json!({}),
        json!({"iterations": 3, "stepWeight": null}),
    ))
    .await?;
    let w = wait_reason(&env, "TargetNotFound", 30).await?;
    assert!(w.message.starts_with("target not found: "), "{}", w.message);
    let table = canary_table(&env).await?;
    assert_eq!(
        cell(&table, "Waiting"),
        Some(json!("TargetNotFound")),
        "{table}"
    );
    assert_eq!(
        cell(&table, "Status"),
        Some(json!("TargetNotFound")),
        "{table}"
    );
    // The Warning event announced it; no Normal one repeats it.
    let normal = events(&env, &format!("Waiting for podinfo.{NS}")).await?;
    assert!(normal.is_empty(), "{normal:?}");
    Ok(())
}
