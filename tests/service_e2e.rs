//! End to end: Service-to-Service canaries (a Canary whose target is a plain core/v1 Service) on
//! the embedded cluster with 1-second intervals: the target is copied into `<name>-primary` and
//! `<name>-canary`, a change of its spec is analysed while the Gateway API router shifts traffic
//! between the copies, and promotion copies the spec into the primary (rollback leaves it).
//!
//! The controller runs in-process (`controller::run_with`) so that a test can inject a metrics
//! checker that fails at a chosen weight.
mod common;

use common::inprocess::{
    Env, FailAt, GW_V1, NS, eventually, httproute_weights, passing, seen, weights,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};
use serin::api::{Canary, CanaryPhase};
use serin::cluster::ClusterConfig;
use serin::cluster::sim::SimConfig;
use std::sync::Arc;
use std::time::Duration;

impl Env {
    /// The default cluster with the Gateway API CRDs.
    async fn start() -> anyhow::Result<Env> {
        Env::start_with(
            ClusterConfig::default(),
            SimConfig::default(),
            &["gateway-api.yaml"],
        )
        .await
    }

    async fn service(&self, name: &str) -> anyhow::Result<Service> {
        Ok(Api::<Service>::namespaced(self.client.clone(), NS)
            .get(name)
            .await?)
    }

    /// Waits until Service `name` selects `app: <app>`.
    async fn wait_selects(&self, name: &str, app: &str, secs: u64) -> anyhow::Result<()> {
        eventually(secs, &format!("{name} to select {app}"), || async {
            Ok((selected(&self.service(name).await?).as_deref() == Some(app)).then_some(()))
        })
        .await
    }
}

/// The user's Service, pointing at the pods of one colour (nothing needs to run behind it).
fn target(colour: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": "podinfo", "namespace": NS,
            "labels": {"app": "podinfo", "kustomize.toolkit.fluxcd.io/name": "apps"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
        },
        "spec": {
            "type": "NodePort",
            "selector": {"app": format!("podinfo-{colour}")},
            "ports": [{"name": "http", "port": 9898, "targetPort": 9898}]
        }
    })
}

/// The podinfo Canary of a Service target, with `extra` replacing fields of its spec.
fn canary(provider: &str, extra: Value) -> Value {
    Canary::test()
        .namespace(NS)
        .provider(provider)
        .target("v1", "Service", "podinfo")
        .spec(json!({"progressDeadlineSeconds": 60,
            "service": {"gatewayRefs": [{"name": "public"}]},
            "analysis": {"interval": "1s", "threshold": 1, "stepWeight": 20, "maxWeight": 60}}))
        .replace(extra)
        .json()
}

fn selected(s: &Service) -> Option<String> {
    s.spec.as_ref()?.selector.as_ref()?.get("app").cloned()
}

fn node_port(s: &Service) -> Option<i32> {
    s.spec.as_ref()?.ports.as_ref()?.first()?.node_port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_service_is_analysed_through_its_copies_and_promoted_into_the_primary()
-> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.start_gateway();
    env.start_controller("gatewayapi:v1", passing(), Default::default());
    env.apply(target("blue")).await?;
    env.apply(canary("gatewayapi:v1", json!({}))).await?;
    env.wait_phase(CanaryPhase::Initialized, 30).await?;

    let original = env.service("podinfo").await?;
    assert_eq!(
        original.metadata.owner_references, None,
        "the target stays the user's"
    );
    for name in ["podinfo-primary", "podinfo-canary"] {
        let copy = env.service(name).await?;
        assert_eq!(selected(&copy).as_deref(), Some("podinfo-blue"), "{name}");
        let owner = copy.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(
            owner
                .iter()
                .map(|o| (o.kind.as_str(), o.controller))
                .collect::<Vec<_>>(),
            vec![("Canary", Some(true))],
            "{name}"
        );
        let spec = copy.spec.clone().unwrap_or_default();
        assert_eq!(spec.type_.as_deref(), Some("NodePort"), "{name}");
        assert_ne!(
            spec.cluster_ip,
            original.spec.as_ref().and_then(|s| s.cluster_ip.clone())
        );
        assert!(node_port(&copy).is_some(), "{name} gets its own node port");
        assert_ne!(node_port(&copy), node_port(&original), "{name}");
        let annotations = copy.metadata.annotations.clone().unwrap_or_default();
        assert!(
            !annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"),
            "{name}: {annotations:?}"
        );
    }
    let canary_copy = env.service("podinfo-canary").await?;
    assert_eq!(
        canary_copy
            .metadata
            .labels
            .unwrap_or_default()
            .into_iter()
            .collect::<Vec<_>>(),
        vec![("app".to_string(), "podinfo".to_string())],
        "labels are copied, Flux's ownership labels are not"
    );
    // Nothing is scaled or created besides the Services and the route.
    let deployments = Api::<Deployment>::namespaced(env.client.clone(), NS)
        .list(&ListParams::default())
        .await?;
    assert!(deployments.items.is_empty());

    let rec = env.record(GW_V1, "HTTPRoute", "podinfo", httproute_weights);
    env.apply(target("green")).await?;
    env.wait_phase(CanaryPhase::Progressing, 20).await?;
    // The canary copy follows the target at once; the primary keeps the promoted spec.
    env.wait_selects("podinfo-canary", "podinfo-green", 10)
        .await?;
    assert_eq!(
        selected(&env.service("podinfo-primary").await?).as_deref(),
        Some("podinfo-blue")
    );
    let done = env.wait_phase(CanaryPhase::Succeeded, 60).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seen(&rec),
        weights(&[(100, 0), (80, 20), (60, 40), (40, 60), (100, 0)])
    );
    assert_eq!(
        selected(&env.service("podinfo-primary").await?).as_deref(),
        Some("podinfo-green")
    );
    let status = done.status.unwrap_or_default();
    assert_eq!(status.last_applied_spec, status.last_promoted_spec);

    // Promoted and unchanged: no new run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.wait_phase(CanaryPhase::Succeeded, 1).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_service_canary_rolls_back_and_the_primary_keeps_the_old_spec()
-> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.start_gateway();
    env.start_controller("gatewayapi:v1", Arc::new(FailAt(40)), Default::default());
    env.apply(target("blue")).await?;
    env.apply(canary("gatewayapi:v1", json!({}))).await?;
    env.wait_phase(CanaryPhase::Initialized, 30).await?;
    let rec = env.record(GW_V1, "HTTPRoute", "podinfo", httproute_weights);
    env.apply(target("green")).await?;
    let failed = env.wait_phase(CanaryPhase::Failed, 60).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seen(&rec),
        weights(&[(100, 0), (80, 20), (60, 40), (100, 0)])
    );
    assert_eq!(failed.status.unwrap_or_default().canary_weight, 0);
    assert_eq!(
        selected(&env.service("podinfo-primary").await?).as_deref(),
        Some("podinfo-blue")
    );
    assert_eq!(
        selected(&env.service("podinfo-canary").await?).as_deref(),
        Some("podinfo-green")
    );

    // Pointing the target back at the promoted pods is no new run.
    env.apply(target("blue")).await?;
    env.wait_selects("podinfo-canary", "podinfo-blue", 10)
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.wait_phase(CanaryPhase::Failed, 1).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_provider_service_canary_promotes_blue_green_and_deletion_keeps_the_target()
-> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.start_controller("kubernetes", passing(), Default::default());
    env.apply(target("blue")).await?;
    env.apply(canary(
        "kubernetes",
        json!({
            "service": null,
            "revertOnDeletion": true,
            "analysis": {"interval": "1s", "threshold": 1, "iterations": 2}
        }),
    ))
    .await?;
    env.wait_phase(CanaryPhase::Initialized, 30).await?;
    env.apply(target("green")).await?;
    env.wait_phase(CanaryPhase::Progressing, 20).await?;
    env.wait_phase(CanaryPhase::Succeeded, 30).await?;
    assert_eq!(
        selected(&env.service("podinfo-primary").await?).as_deref(),
        Some("podinfo-green")
    );

    let canaries: Api<Canary> = Api::namespaced(env.client.clone(), NS);
    canaries.delete("podinfo", &DeleteParams::default()).await?;
    eventually(20, "the canary to be gone", || async {
        Ok(canaries.get_opt("podinfo").await?.is_none().then_some(()))
    })
    .await?;
    assert_eq!(
        selected(&env.service("podinfo").await?).as_deref(),
        Some("podinfo-green"),
        "the target Service is never changed"
    );
    Ok(())
}
