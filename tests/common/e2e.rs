//! The end-to-end harness shared by the test binaries that run the real `serin controller`
//! against the embedded cluster with its simulators (1-second intervals); its cluster helpers
//! (`install`, `apply`, `poll_until`) also serve the in-process harness of `inprocess`.
#![allow(dead_code)]

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PodSpec, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use serin::api::{Canary, CanaryPhase};
use serin::cluster::sim::{self, SimConfig};
use serin::cluster::{ClusterConfig, ClusterHandle};
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const NS: &str = "test";

pub struct Env {
    /// Extra `serin controller` flags (e.g. `--metrics-server URL`).
    pub extra_args: Vec<String>,
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub dir: PathBuf,
    pub controller: Option<Child>,
    pub cluster: ClusterHandle,
    pub _sims: sim::SimHandle,
    /// Grants besides deploy/'s RBAC that the docs tell users to add (checked with it on drop).
    pub user_grants: Vec<serin::install::authz::Grant>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop_controller();
        let _ = std::fs::remove_dir_all(&self.dir);
        // Every request the controller made must be allowed by deploy/'s RBAC.
        super::rbac::assert_controller_authorized(
            &self.cluster.requests().snapshot(),
            &self.user_grants,
        );
    }
}

impl Env {
    pub async fn start(name: &str) -> anyhow::Result<Env> {
        Self::start_with_crds(name, Vec::new()).await
    }

    /// The harness with `extra` CRDs installed next to Serin's (e.g. the Gateway API's).
    pub async fn start_with_crds(
        name: &str,
        extra: Vec<CustomResourceDefinition>,
    ) -> anyhow::Result<Env> {
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
        let dir = std::env::temp_dir().join(format!("serin-e2e-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = dir.join("kubeconfig");
        cluster.write_kubeconfig(&kubeconfig)?;
        let client = cluster.client()?;
        let mut crds = serin::api::crd::all();
        crds.extend(extra);
        install(&client, crds).await?;
        // The CRDs are served once a list works.
        let canaries: Api<Canary> = Api::namespaced(client.clone(), NS);
        eventually(10, "canaries to be served", || async {
            Ok(canaries.list(&Default::default()).await.ok())
        })
        .await?;
        Ok(Env {
            extra_args: Vec::new(),
            client,
            kubeconfig,
            dir,
            controller: None,
            cluster,
            _sims: sims,
            user_grants: Vec::new(),
        })
    }

    /// Deploys podinfo 1.0.0 with its ConfigMap, starts the controller and waits for the Canary
    /// `podinfo` (the common [`canary`] with `extra` in its spec) to be initialised.
    pub async fn initialized(&mut self, extra: Value) -> anyhow::Result<()> {
        self.apply(config("blue")).await?;
        self.apply(podinfo("podinfo:1.0.0", json!({}))).await?;
        self.start_controller()?;
        self.apply(canary("podinfo", "Deployment", "podinfo", extra))
            .await?;
        self.wait_phase("podinfo", CanaryPhase::Initialized, 30)
            .await?;
        Ok(())
    }

    /// The harness with the controller started and pointed at a metrics server
    /// (`--metrics-server`), as the metric-analysis suites run it.
    pub async fn with_metrics_server(name: &str, metrics_server: &str) -> anyhow::Result<Env> {
        let mut env = Env::start(name).await?;
        env.extra_args = vec!["--metrics-server".into(), metrics_server.into()];
        env.start_controller()?;
        Ok(env)
    }

    /// The notes of every event recorded in the test namespace.
    pub async fn event_notes(&self) -> anyhow::Result<Vec<String>> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), NS);
        Ok(events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter_map(|e| e.note)
            .collect())
    }

    pub fn start_controller(&mut self) -> anyhow::Result<()> {
        let child = self.controller_command("controller", 0)?.spawn()?;
        self.controller = Some(child);
        Ok(())
    }

    /// A `serin controller` command with the harness's flags, `--port port` (0: no health and
    /// metrics server) and `extra_args`, logging to `<dir>/<name>.log`; add flags and spawn it to
    /// run several controllers.
    pub fn controller_command(&self, name: &str, port: u16) -> anyhow::Result<Command> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_serin"));
        cmd.args(["controller", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args([
                "-mesh-provider=kubernetes",
                "--min-interval",
                "1",
                "--log-level",
                "debug",
            ])
            .args(["--port".to_string(), port.to_string()])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log);
        Ok(cmd)
    }

    /// The log of the controller started as `name` (see [`Env::controller_command`]).
    pub fn log_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    pub fn stop_controller(&mut self) {
        if let Some(mut c) = self.controller.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        self.log_of("controller")
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        Api::namespaced(self.client.clone(), NS)
    }

    pub async fn apply(&self, obj: Value) -> anyhow::Result<()> {
        apply(&self.client, obj).await
    }

    pub async fn canary(&self, name: &str) -> anyhow::Result<Canary> {
        Ok(self.api::<Canary>().get(name).await?)
    }

    pub async fn wait_phase(
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

    pub async fn deployment(&self, name: &str) -> anyhow::Result<Deployment> {
        Ok(self.api::<Deployment>().get(name).await?)
    }

    /// Deletes the Canary `name` once it carries Flagger's finalizer (within `secs`), so that
    /// the controller restores the target before the Canary goes (`revertOnDeletion`).
    pub async fn delete_finalized_canary(&self, name: &str, secs: u64) -> anyhow::Result<()> {
        eventually(secs, "the finalizer", || async {
            Ok(self
                .canary(name)
                .await?
                .finalizers()
                .iter()
                .any(|f| f == "finalizer.flagger.app")
                .then_some(()))
        })
        .await?;
        self.api::<Canary>()
            .delete(name, &DeleteParams::default())
            .await?;
        Ok(())
    }

    /// `Some(())` once the Canary `name` no longer exists (for [`eventually`]).
    pub async fn canary_gone(&self, name: &str) -> anyhow::Result<Option<()>> {
        Ok(self
            .api::<Canary>()
            .get_opt(name)
            .await?
            .is_none()
            .then_some(()))
    }
}

/// The `app` label a Service selects (the apex Service's current backend).
pub fn selected_app(svc: Service) -> Option<String> {
    svc.spec
        .and_then(|s| s.selector)
        .and_then(|s| s.get("app").cloned())
}

/// The resource of `kind` in `api_version` (`group/version`, or `version` for the core group).
pub fn ar(api_version: &str, kind: &str) -> ApiResource {
    let (g, v) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(g, v, kind))
}

/// Server-side applies `obj` in `NS`, taking its resource from `apiVersion` and `kind`.
pub async fn apply(client: &Client, obj: Value) -> anyhow::Result<()> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), NS, &ar(&api_version, &kind));
    api.patch(
        &name,
        &PatchParams::apply("e2e-test").force(),
        &Patch::Apply(&obj),
    )
    .await?;
    Ok(())
}

/// Creates `crds` and the namespace `NS` (the CRDs are not necessarily served yet).
pub async fn install(client: &Client, crds: Vec<CustomResourceDefinition>) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        api.create(&PostParams::default(), &crd)
            .await
            .context("installing CRDs")?;
    }
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": NS}}))?,
    )
    .await?;
    Ok(())
}

/// Polls `check` every 100 ms until it yields a value or `secs` pass.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    poll_until(Duration::from_millis(100), secs, what, check).await
}

#[path = "../support/poll.rs"]
mod poll;
pub use poll::poll_until;

pub fn podinfo(image: &str, annotations: Value) -> Value {
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

/// A one-replica Deployment `name` of `image`, labelled `app: <name>`, with podinfo's port.
pub fn deployment(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "podinfod", "image": image,
                    "ports": [{"name": "http", "containerPort": 9898}]}]}
            }
        }
    })
}

pub fn config(data: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "podinfo-config", "namespace": NS}, "data": {"color": data}})
}

/// A Canary `name` of the `kubernetes` provider with a short analysis, targeting the workload
/// `target` of `target_kind`, with `extra` replacing fields of its spec.
pub fn canary(name: &str, target_kind: &str, target: &str, extra: Value) -> Value {
    Canary::test()
        .name(name)
        .namespace(NS)
        .provider("kubernetes")
        .target("apps/v1", target_kind, target)
        .spec(json!({"progressDeadlineSeconds": 6,
            "analysis": {"interval": "1s", "threshold": 2, "iterations": 2, "stepWeight": null}}))
        .replace(extra)
        .json()
}

/// The blue/green Canary of the metric suites: `name` in `NS` targeting the Deployment `name`,
/// two 1 s iterations on the kubernetes provider, `deadline` seconds of progress deadline.
pub fn blue_green_canary(name: &str, deadline: u32) -> serin::testing::CanaryBuilder {
    Canary::test()
        .namespace(NS)
        .workload(name)
        .blue_green("1s", 2)
        .spec(json!({ "progressDeadlineSeconds": deadline }))
}

/// The decision records of the Canary's last analysis tick (`status.checks`).
pub fn checks(c: &Canary) -> Vec<serin::api::canary::CheckRecord> {
    c.status
        .as_ref()
        .and_then(|s| s.checks.clone())
        .unwrap_or_default()
}

pub fn image_of(d: &Deployment) -> Option<String> {
    first_image(d.spec.template.spec.as_ref())
}

/// The image of a pod template's first container.
pub fn first_image(pod: Option<&PodSpec>) -> Option<String> {
    pod?.containers.first()?.image.clone()
}

pub fn ready(d: &Deployment) -> i32 {
    d.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}
