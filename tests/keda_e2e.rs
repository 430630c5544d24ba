//! End to end: a Deployment whose autoscaler is a KEDA ScaledObject, with the real `serin
//! controller` binary against the embedded cluster and the minimal ScaledObject CRD of
//! `tests/fixtures/crds/keda.yaml` (KEDA itself does not run): the objects Flagger's `test/keda`
//! e2e expects, through initialisation, promotion and rollback.
mod common;

use common::e2e::*;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};
use serin::api::CanaryPhase;

const PRIMARY_QUERY: &str = r#"sum(rate(http_requests_total{ app="podinfo-primary" }[10s]))"#;

fn scaled_object() -> Value {
    json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "podinfo-so", "namespace": NS},
        "spec": {
            "scaleTargetRef": {"name": "podinfo"},
            "pollingInterval": 10, "cooldownPeriod": 20,
            "minReplicaCount": 1, "maxReplicaCount": 3,
            "triggers": [{
                "type": "prometheus", "name": "requests",
                "metadata": {
                    "serverAddress": "http://flagger-prometheus.flagger-system:9090",
                    "metricName": "http_requests_total",
                    "query": r#"sum(rate(http_requests_total{ app="podinfo" }[10s]))"#,
                    "threshold": "5"
                }
            }]
        }
    })
}

async fn install_keda(env: &Env) -> anyhow::Result<()> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crds/keda.yaml");
    let text = std::fs::read_to_string(path)?;
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if !v.is_null() {
            crds.create(&PostParams::default(), &serde_json::from_value(v)?)
                .await?;
        }
    }
    let sos = so_api(env);
    eventually(10, "ScaledObjects to be served", || async {
        Ok(sos.list(&Default::default()).await.ok())
    })
    .await?;
    Ok(())
}

fn so_api(env: &Env) -> Api<DynamicObject> {
    Api::namespaced_with(
        env.client.clone(),
        NS,
        &ar("keda.sh/v1alpha1", "ScaledObject"),
    )
}

async fn so(env: &Env, name: &str) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(so_api(env).get(name).await?)?)
}

fn paused(so: &Value) -> Option<&str> {
    so["metadata"]["annotations"]["autoscaling.keda.sh/paused-replicas"].as_str()
}

/// The primary ScaledObject as Flagger's e2e checks it.
fn assert_primary(p: &Value) {
    assert_eq!(p["spec"]["scaleTargetRef"]["name"], "podinfo-primary");
    assert_eq!(p["spec"]["triggers"][0]["metadata"]["query"], PRIMARY_QUERY);
    assert_eq!(p["spec"]["minReplicaCount"], 2, "primaryScalerReplicas");
    assert_eq!(p["spec"]["maxReplicaCount"], 4, "primaryScalerReplicas");
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Canary");
    assert_eq!(paused(p), None, "the primary's autoscaler is never paused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaled_objects_are_mirrored_paused_and_survive_promotion_and_rollback()
-> anyhow::Result<()> {
    let mut env = Env::start("keda").await?;
    install_keda(&env).await?;
    env.apply(config("blue")).await?;
    env.apply(podinfo("podinfo:1.0.0", json!({}))).await?;
    env.apply(scaled_object()).await?;
    env.start_controller()?;
    env.apply(canary(
        "podinfo",
        "Deployment",
        "podinfo",
        json!({"autoscalerRef": {
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "podinfo-so",
            "primaryScalerQueries": {"requests": PRIMARY_QUERY},
            "primaryScalerReplicas": {"minReplicas": 2, "maxReplicas": 4}
        }}),
    ))
    .await?;
    env.wait_phase("podinfo", CanaryPhase::Initialized, 40)
        .await?;
    let primary = eventually(20, "podinfo-so-primary", || async {
        Ok(so_api(&env).get_opt("podinfo-so-primary").await?)
    })
    .await?;
    assert_primary(&serde_json::to_value(primary)?);
    // The canary is at zero, and so is its paused ScaledObject.
    assert_eq!(env.deployment("podinfo").await?.spec.replicas, Some(0));
    assert_eq!(paused(&so(&env, "podinfo-so").await?), Some("0"));

    // A run resumes the canary's ScaledObject; promotion pauses it again.
    env.apply(podinfo("podinfo:2.0.0", json!({}))).await?;
    env.wait_phase("podinfo", CanaryPhase::Progressing, 20)
        .await?;
    let resumed = eventually(10, "the canary's ScaledObject resumed", || async {
        Ok(paused(&so(&env, "podinfo-so").await?)
            .is_none()
            .then_some(()))
    })
    .await;
    if resumed.is_err() {
        eprintln!(
            "podinfo-so: {}\ncanary: {:?}\ncontroller log:\n{}",
            so(&env, "podinfo-so").await?,
            env.canary("podinfo").await?.status,
            env.log()
        );
    }
    resumed?;
    env.wait_phase("podinfo", CanaryPhase::Succeeded, 40)
        .await?;
    assert_primary(&so(&env, "podinfo-so-primary").await?);
    eventually(10, "the canary's ScaledObject paused", || async {
        Ok((paused(&so(&env, "podinfo-so").await?) == Some("0")).then_some(()))
    })
    .await?;
    assert_eq!(
        so(&env, "podinfo-so").await?["spec"]["scaleTargetRef"]["name"],
        "podinfo",
        "the canary's ScaledObject keeps its target"
    );

    // A faulty revision is rolled back; both ScaledObjects are still as expected.
    env.apply(podinfo(
        "podinfo:3.0.0",
        json!({"sim.serin.dev/fault": "unready"}),
    ))
    .await?;
    env.wait_phase("podinfo", CanaryPhase::Failed, 40).await?;
    assert_primary(&so(&env, "podinfo-so-primary").await?);
    eventually(
        10,
        "the canary's ScaledObject paused after rollback",
        || async { Ok((paused(&so(&env, "podinfo-so").await?) == Some("0")).then_some(())) },
    )
    .await?;
    Ok(())
}
