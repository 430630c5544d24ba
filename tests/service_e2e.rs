//! End to end: Service-to-Service canaries (a Canary whose target is a plain core/v1 Service) on
//! the embedded cluster with 1-second intervals: the target is copied into `<name>-primary` and
//! `<name>-canary`, a change of its spec is analysed while the Gateway API router shifts traffic
//! between the copies, and promotion copies the spec into the primary (rollback leaves it).
//!
//! The controller runs in-process (`controller::run_with`) so that a test can inject a metrics
//! checker that fails at a chosen weight.
use anyhow::{Context, bail};
use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use serin::api::{Canary, CanaryPhase};
use serin::cluster::sim::{self, SimConfig};
use serin::cluster::{ClusterConfig, ClusterHandle};
use serin::controller::observe::ObserveConfig;
use serin::metrics::{AnalysisReport, MetricsChecker, Verdict};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NS: &str = "test";
const GW_V1: &str = "gateway.networking.k8s.io/v1";

struct Env {
    client: Client,
    _cluster: ClusterHandle,
    _sims: sim::SimHandle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Fails every analysis once the canary weight reaches `at` (never with `i32::MAX`).
struct FailAt(i32);

#[async_trait]
impl MetricsChecker for FailAt {
    async fn check(&self, canary: &Canary) -> AnalysisReport {
        let weight = canary.status.as_ref().map(|s| s.canary_weight).unwrap_or(0);
        if weight >= self.0 {
            AnalysisReport {
                verdict: Verdict::Fail(format!("injected failure at weight {weight}")),
                records: vec![],
            }
        } else {
            AnalysisReport::pass()
        }
    }
}

fn ar(api_version: &str, kind: &str) -> ApiResource {
    let (g, v) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(g, v, kind))
}

impl Env {
    async fn start() -> anyhow::Result<Env> {
        let (cluster, sims) =
            sim::start_cluster(ClusterConfig::default(), SimConfig::default()).await?;
        let client = cluster.client()?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let mut all = serin::api::crd::all();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/crds/gateway-api.yaml");
        let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc)?;
            if !v.is_null() {
                all.push(serde_json::from_value(v)?);
            }
        }
        for crd in all {
            crds.create(&PostParams::default(), &crd)
                .await
                .context("installing CRDs")?;
        }
        let nss: Api<Namespace> = Api::all(client.clone());
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
        )
        .await?;
        let canaries: Api<Canary> = Api::namespaced(client.clone(), NS);
        eventually(10, "canaries to be served", || async {
            Ok(canaries.list(&Default::default()).await.ok())
        })
        .await?;
        Ok(Env {
            client,
            _cluster: cluster,
            _sims: sims,
            tasks: vec![],
        })
    }

    fn start_controller(&mut self, provider: &str, metrics: Arc<dyn MetricsChecker>) {
        let config = serin::controller::Config {
            observe: ObserveConfig {
                mesh_provider: provider.into(),
                min_interval: Duration::from_secs(1),
                ..ObserveConfig::default()
            },
            namespace: Some(NS.into()),
            listen: None,
        };
        let providers = serin::controller::Providers {
            metrics,
            ..Default::default()
        };
        let client = self.client.clone();
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = serin::controller::run_with(client, config, providers).await {
                eprintln!("controller stopped: {e}");
            }
        }));
    }

    /// A Gateway controller stand-in: accepts every HTTPRoute's parents for its current generation.
    fn start_gateway(&mut self) {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), NS, &ar(GW_V1, "HTTPRoute"));
        self.tasks.push(tokio::spawn(async move {
            loop {
                for r in api.list(&ListParams::default()).await.into_iter().flatten() {
                    let v = serde_json::to_value(&r).unwrap_or_default();
                    let generation = v["metadata"]["generation"].as_i64().unwrap_or(0);
                    let parents: Vec<Value> = v["spec"]["parentRefs"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|p| {
                            json!({"parentRef": p, "controllerName": "example.com/gateway", "conditions": [{
                                "type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                                "observedGeneration": generation, "lastTransitionTime": "2025-01-01T00:00:00Z"}]})
                        })
                        .collect();
                    if v["status"]["parents"] != json!(parents) {
                        let name = v["metadata"]["name"].as_str().unwrap_or_default().to_string();
                        let patch = json!({"status": {"parents": parents}});
                        let _ = api
                            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    /// Records every distinct `[primary, canary]` weight pair of the HTTPRoute, in order.
    fn record_weights(&mut self) -> Arc<Mutex<Vec<Value>>> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), NS, &ar(GW_V1, "HTTPRoute"));
        let seen = Arc::new(Mutex::new(Vec::<Value>::new()));
        let out = seen.clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                if let Ok(Some(o)) = api.get_opt("podinfo").await
                    && let Some(v) =
                        httproute_weights(&serde_json::to_value(&o).unwrap_or_default())
                    && let Ok(mut s) = seen.lock()
                    && s.last() != Some(&v)
                {
                    s.push(v);
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }));
        out
    }

    async fn apply(&self, obj: Value) -> anyhow::Result<()> {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), NS, &ar(&api_version, &kind));
        api.patch(
            &name,
            &PatchParams::apply("e2e-test").force(),
            &Patch::Apply(&obj),
        )
        .await?;
        Ok(())
    }

    async fn service(&self, name: &str) -> anyhow::Result<Service> {
        Ok(Api::<Service>::namespaced(self.client.clone(), NS)
            .get(name)
            .await?)
    }

    async fn wait_phase(&self, phase: CanaryPhase, secs: u64) -> anyhow::Result<Canary> {
        let api: Api<Canary> = Api::namespaced(self.client.clone(), NS);
        eventually(secs, &format!("canary to reach {phase}"), || async {
            let c = api.get("podinfo").await?;
            Ok((c.status.as_ref().and_then(|s| s.phase) == Some(phase)).then_some(c))
        })
        .await
    }

    /// Waits until Service `name` selects `app: <app>`.
    async fn wait_selects(&self, name: &str, app: &str, secs: u64) -> anyhow::Result<()> {
        eventually(secs, &format!("{name} to select {app}"), || async {
            Ok((selected(&self.service(name).await?).as_deref() == Some(app)).then_some(()))
        })
        .await
    }
}

async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
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

fn canary(provider: &str, extra: Value) -> Value {
    let mut c = json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": NS},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "v1", "kind": "Service", "name": "podinfo"},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898, "gatewayRefs": [{"name": "public"}]},
            "analysis": {"interval": "1s", "threshold": 1, "stepWeight": 20, "maxWeight": 60}
        }
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        match (c["spec"].as_object_mut(), v) {
            (Some(spec), Value::Null) => {
                spec.remove(k);
            }
            _ => c["spec"][k] = v.clone(),
        }
    }
    c
}

fn selected(s: &Service) -> Option<String> {
    s.spec.as_ref()?.selector.as_ref()?.get("app").cloned()
}

/// `[primary, canary]` weights of the rule routing to both Services.
fn httproute_weights(v: &Value) -> Option<Value> {
    let rules = v["spec"]["rules"].as_array()?;
    let rule = rules
        .iter()
        .rev()
        .find(|r| r["backendRefs"].as_array().is_some_and(|b| b.len() == 2))?;
    Some(json!([
        rule["backendRefs"][0]["weight"],
        rule["backendRefs"][1]["weight"]
    ]))
}

fn weights(pairs: &[(i32, i32)]) -> Vec<Value> {
    pairs.iter().map(|(p, c)| json!([p, c])).collect()
}

fn seen(r: &Arc<Mutex<Vec<Value>>>) -> Vec<Value> {
    r.lock().map(|v| v.clone()).unwrap_or_default()
}

fn node_port(s: &Service) -> Option<i32> {
    s.spec.as_ref()?.ports.as_ref()?.first()?.node_port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_service_is_analysed_through_its_copies_and_promoted_into_the_primary()
-> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.start_gateway();
    env.start_controller("gatewayapi:v1", Arc::new(FailAt(i32::MAX)));
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

    let rec = env.record_weights();
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
    env.start_controller("gatewayapi:v1", Arc::new(FailAt(40)));
    env.apply(target("blue")).await?;
    env.apply(canary("gatewayapi:v1", json!({}))).await?;
    env.wait_phase(CanaryPhase::Initialized, 30).await?;
    let rec = env.record_weights();
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
    env.start_controller("kubernetes", Arc::new(FailAt(i32::MAX)));
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
