//! End to end: gates and rollback webhooks, answered by an in-process `serin loadtester`, with the
//! real `serin controller` binary against the embedded cluster (1-second intervals).
//! The harness follows tests/controller_e2e.rs.
use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use serin::api::{Canary, CanaryPhase};
use serin::cluster::sim::{self, SimConfig};
use serin::cluster::{ClusterConfig, ClusterHandle};
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NS: &str = "test";

struct Env {
    client: Client,
    kubeconfig: PathBuf,
    dir: PathBuf,
    controller: Option<Child>,
    _cluster: ClusterHandle,
    _sims: sim::SimHandle,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop_controller();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Env {
    async fn start(name: &str) -> anyhow::Result<Env> {
        let sims = SimConfig {
            pod_ready_delay: Duration::from_millis(200),
            ..SimConfig::default()
        };
        let (cluster, sims) = sim::start_cluster(
            ClusterConfig {
                nodes: 2,
                ..ClusterConfig::default()
            },
            sims,
        )
        .await?;
        let dir =
            std::env::temp_dir().join(format!("serin-hooks-e2e-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = dir.join("kubeconfig");
        cluster.write_kubeconfig(&kubeconfig)?;
        let client = cluster.client()?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in serin::api::crd::all() {
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
        // The CRDs are served once a list works.
        let canaries: Api<Canary> = Api::namespaced(client.clone(), NS);
        eventually(10, "canaries to be served", || async {
            Ok(canaries.list(&Default::default()).await.ok())
        })
        .await?;
        Ok(Env {
            client,
            kubeconfig,
            dir,
            controller: None,
            _cluster: cluster,
            _sims: sims,
        })
    }

    fn start_controller(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("controller.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_serin"))
            .args(["controller", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args([
                "-mesh-provider=kubernetes",
                "--min-interval",
                "1",
                "--port",
                "0",
                "--log-level",
                "debug",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.controller = Some(child);
        Ok(())
    }

    fn stop_controller(&mut self) {
        if let Some(mut c) = self.controller.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("controller.log")).unwrap_or_default()
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn apply(&self, obj: Value) -> anyhow::Result<()> {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
        let ar = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            group, version, &kind,
        ));
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(self.client.clone(), NS, &ar);
        api.patch(
            &name,
            &PatchParams::apply("e2e-test").force(),
            &Patch::Apply(&obj),
        )
        .await?;
        Ok(())
    }

    async fn canary(&self, name: &str) -> anyhow::Result<Canary> {
        Ok(self.api::<Canary>().get(name).await?)
    }

    async fn wait_phase(
        &self,
        name: &str,
        phase: CanaryPhase,
        secs: u64,
    ) -> anyhow::Result<Canary> {
        let res = eventually(secs, &format!("canary {name} to reach {phase}"), || async {
            let c = self.canary(name).await?;
            Ok((c.status.as_ref().and_then(|s| s.phase) == Some(phase)).then_some(c))
        })
        .await;
        if res.is_err() {
            let c = self.canary(name).await.ok();
            eprintln!(
                "canary status: {:#?}\ncontroller log:\n{}",
                c.and_then(|c| c.status),
                self.log()
            );
        }
        res
    }

    async fn deployment(&self, name: &str) -> anyhow::Result<Deployment> {
        Ok(self.api::<Deployment>().get(name).await?)
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn podinfo(image: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": NS, "labels": {"app": "podinfo"}},
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 4,
            "selector": {"matchLabels": {"app": "podinfo"}},
            "template": {
                "metadata": {"labels": {"app": "podinfo"}, "annotations": annotations},
                "spec": {"containers": [{
                    "name": "podinfod", "image": image,
                    "ports": [{"name": "http", "containerPort": 9898}],
                    "envFrom": [{"configMapRef": {"name": "podinfo-config"}}]
                }]}
            }
        }
    })
}

fn config(data: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "podinfo-config", "namespace": NS}, "data": {"color": data}})
}

fn canary(name: &str, target_kind: &str, target: &str, extra: Value) -> Value {
    let mut c = json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": target_kind, "name": target},
            "progressDeadlineSeconds": 6,
            "service": {"port": 9898},
            "analysis": {"interval": "1s", "threshold": 2, "iterations": 2}
        }
    });
    if let (Some(spec), Some(extra)) = (c["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    c
}

/// An in-process loadtester; returns its base URL.
async fn loadtester() -> anyhow::Result<String> {
    serin::install_crypto_provider();
    let lt = serin::loadtester::LoadTester::new(Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = serin::loadtester::router(lt);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

async fn lt_post(url: String) -> anyhow::Result<()> {
    let resp = reqwest::Client::new()
        .post(url)
        .json(&json!({"name": "podinfo", "namespace": NS}))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().as_u16() == 202,
        "loadtester said {}",
        resp.status()
    );
    Ok(())
}

/// A canary with these webhooks, initialised, then given a new revision.
async fn with_hooks(env: &mut Env, analysis: Value) -> anyhow::Result<()> {
    env.apply(config("blue")).await?;
    env.apply(podinfo("podinfo:1.0.0", json!({}))).await?;
    env.start_controller()?;
    env.apply(canary(
        "podinfo",
        "Deployment",
        "podinfo",
        json!({"analysis": analysis}),
    ))
    .await?;
    env.wait_phase("podinfo", CanaryPhase::Initialized, 30)
        .await?;
    env.apply(podinfo("podinfo:2.0.0", json!({}))).await?;
    Ok(())
}

async fn primary_image(env: &Env) -> anyhow::Result<Option<String>> {
    let primary = env.deployment("podinfo-primary").await?;
    Ok(primary
        .spec
        .template
        .spec
        .and_then(|s| s.containers.first().and_then(|c| c.image.clone())))
}

fn phase(c: &Canary) -> Option<CanaryPhase> {
    c.status.as_ref().and_then(|s| s.phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_confirm_rollout_gate_holds_waiting_until_it_opens() -> anyhow::Result<()> {
    let lt = loadtester().await?;
    let mut env = Env::start("confirm-rollout").await?;
    with_hooks(
        &mut env,
        json!({"interval": "1s", "threshold": 2, "iterations": 1, "webhooks": [
            {"name": "gate", "type": "confirm-rollout", "url": format!("{lt}/gate/check")}
        ]}),
    )
    .await?;
    let waiting = env.wait_phase("podinfo", CanaryPhase::Waiting, 15).await?;
    let record = waiting
        .status
        .and_then(|s| s.checks)
        .and_then(|c| c.into_iter().next())
        .context("a decision record for the closed gate")?;
    assert_eq!(record.name, "gate");
    assert_eq!(record.kind, "webhook");
    assert_eq!(record.query, Some(format!("{lt}/gate/check")));
    assert_eq!(record.value, Some(403.0));
    assert!(
        record
            .message
            .as_deref()
            .unwrap_or_default()
            .ends_with("Forbidden"),
        "{record:?}"
    );
    // Still waiting three ticks later, and the new revision was not scaled up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        phase(&env.canary("podinfo").await?),
        Some(CanaryPhase::Waiting)
    );
    assert_eq!(primary_image(&env).await?.as_deref(), Some("podinfo:1.0.0"));

    lt_post(format!("{lt}/gate/open")).await?;
    env.wait_phase("podinfo", CanaryPhase::Progressing, 15)
        .await?;
    env.wait_phase("podinfo", CanaryPhase::Succeeded, 40)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_confirm_promotion_gate_holds_waiting_promotion() -> anyhow::Result<()> {
    let lt = loadtester().await?;
    let mut env = Env::start("confirm-promotion").await?;
    with_hooks(
        &mut env,
        json!({"interval": "1s", "threshold": 2, "iterations": 1, "webhooks": [
            {"name": "promote", "type": "confirm-promotion", "url": format!("{lt}/gate/check")}
        ]}),
    )
    .await?;
    env.wait_phase("podinfo", CanaryPhase::WaitingPromotion, 30)
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        phase(&env.canary("podinfo").await?),
        Some(CanaryPhase::WaitingPromotion)
    );
    let image = primary_image(&env).await?;
    assert_eq!(
        image.as_deref(),
        Some("podinfo:1.0.0"),
        "not promoted while the gate is closed"
    );

    lt_post(format!("{lt}/gate/open")).await?;
    env.wait_phase("podinfo", CanaryPhase::Succeeded, 40)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_webhook_fails_a_canary_that_is_waiting_for_approval() -> anyhow::Result<()> {
    let lt = loadtester().await?;
    let mut env = Env::start("rollback-waiting").await?;
    with_hooks(
        &mut env,
        json!({"interval": "1s", "threshold": 2, "iterations": 1, "webhooks": [
            {"name": "gate", "type": "confirm-rollout", "url": format!("{lt}/gate/check")},
            {"name": "abort", "type": "rollback", "url": format!("{lt}/rollback/check")}
        ]}),
    )
    .await?;
    env.wait_phase("podinfo", CanaryPhase::Waiting, 15).await?;
    lt_post(format!("{lt}/rollback/open")).await?;
    let failed = env.wait_phase("podinfo", CanaryPhase::Failed, 15).await?;
    assert_eq!(
        failed.status.and_then(|s| s.failure_reason).as_deref(),
        Some("rollback webhook invoked while waiting for approval")
    );
    assert_eq!(primary_image(&env).await?.as_deref(), Some("podinfo:1.0.0"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_webhook_fails_a_progressing_canary() -> anyhow::Result<()> {
    let lt = loadtester().await?;
    let mut env = Env::start("rollback-progressing").await?;
    with_hooks(
        &mut env,
        json!({"interval": "1s", "threshold": 2, "iterations": 30, "webhooks": [
            {"name": "abort", "type": "rollback", "url": format!("{lt}/rollback/check")}
        ]}),
    )
    .await?;
    env.wait_phase("podinfo", CanaryPhase::Progressing, 15)
        .await?;
    lt_post(format!("{lt}/rollback/open")).await?;
    let failed = env.wait_phase("podinfo", CanaryPhase::Failed, 15).await?;
    assert!(failed.status.map(|s| s.iterations).unwrap_or(0) < 30);
    let image = primary_image(&env).await?;
    assert_eq!(image.as_deref(), Some("podinfo:1.0.0"));
    Ok(())
}
