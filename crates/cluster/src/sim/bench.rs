//! Benchmark of the simulated controllers (network I/O against the embedded server): how long
//! Deployments take from creation to `NewReplicaSetAvailable`, and a rolling image change to finish.
use super::{SimConfig, start_cluster};
use crate::ClusterConfig;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use std::time::{Duration, Instant};

/// Errors of the benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster or the simulators did not start.
    #[error("starting the simulated cluster")]
    Start(#[source] super::Error),
    /// No client for the server.
    #[error("building a client")]
    Client(#[source] crate::Error),
    /// An API call failed.
    #[error("API call")]
    Api(#[source] kube::Error),
    /// A manifest did not deserialize.
    #[error("building a Deployment")]
    Manifest(#[source] serde_json::Error),
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Deployments created.
    pub deployments: usize,
    /// Replicas per Deployment.
    pub replicas: i32,
    /// Whether a Service selected each Deployment's pods.
    pub services: bool,
    /// From the first create to every Deployment reporting NewReplicaSetAvailable.
    pub create: Duration,
    /// From the first image change to every rollout finished.
    pub rollout: Duration,
    /// Resident memory of this process (server, simulators and client) at the end, in MiB.
    pub rss_mib: Option<f64>,
    /// Peak resident memory of this process so far, in MiB.
    pub peak_rss_mib: Option<f64>,
}

/// A `/proc/self/status` field in KiB (`VmRSS`, `VmHWM`), as MiB; `None` off Linux.
fn proc_status_mib(field: &str) -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = |d: Duration| d.as_secs_f64() * 1e3 / self.deployments.max(1) as f64;
        writeln!(
            f,
            "deployments: {} x {} replicas{}, pod ready delay 0",
            self.deployments,
            self.replicas,
            if self.services {
                ", one Service each"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "create -> NewReplicaSetAvailable: {:>8.1} ms total, {:>6.1} ms per deployment",
            self.create.as_secs_f64() * 1e3,
            per(self.create)
        )?;
        writeln!(
            f,
            "image change -> rolled out:       {:>8.1} ms total, {:>6.1} ms per deployment",
            self.rollout.as_secs_f64() * 1e3,
            per(self.rollout)
        )?;
        let mib = |m: Option<f64>| m.map_or("n/a".to_string(), |m| format!("{m:.0} MiB"));
        write!(
            f,
            "process RSS: {} at the end, {} peak",
            mib(self.rss_mib),
            mib(self.peak_rss_mib)
        )
    }
}

fn deployment(name: &str, replicas: i32) -> Result<Deployment, Error> {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "nginx:1"}]}}
        }
    }))
    .map_err(Error::Manifest)
}

/// Waits until every Deployment reports NewReplicaSetAvailable for its current generation.
async fn settled(api: &Api<Deployment>, count: usize) -> Result<(), Error> {
    // Listing thousands of Deployments is work for the server under test: poll less often then.
    let every = Duration::from_millis((count as u64 / 10).clamp(10, 250));
    loop {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(Error::Api)?
            .items;
        let done = list
            .iter()
            .filter(|d| {
                let s = d.status.clone().unwrap_or_default();
                s.observed_generation == d.metadata.generation
                    && s.available_replicas == d.spec.replicas
                    && s.conditions
                        .iter()
                        .flatten()
                        .any(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"))
            })
            .count();
        if done == count {
            return Ok(());
        }
        tokio::time::sleep(every).await;
    }
}

fn service(name: &str) -> Result<Service, Error> {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .map_err(Error::Manifest)
}

/// Creates `count` Deployments of `replicas` pods, waits for them, changes every image and waits
/// for the rollouts.
pub async fn run(count: usize, replicas: i32) -> Result<Report, Error> {
    run_with(count, replicas, false).await
}

/// [`run`], with one Service selecting each Deployment's pods when `services` is set (the
/// endpoints controller then works too, as it does for canaries: Flagger's primary and canary
/// Services select one Deployment each).
pub async fn run_with(count: usize, replicas: i32, services: bool) -> Result<Report, Error> {
    let config = SimConfig {
        pod_ready_delay: Duration::ZERO,
        ..SimConfig::default()
    };
    let (cluster, sims) = start_cluster(
        ClusterConfig {
            nodes: 3,
            ..ClusterConfig::default()
        },
        config,
    )
    .await
    .map_err(Error::Start)?;
    let client = cluster.client().map_err(Error::Client)?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    for i in 0..count {
        if services {
            Api::<Service>::namespaced(client.clone(), "default")
                .create(&PostParams::default(), &service(&format!("web-{i}"))?)
                .await
                .map_err(Error::Api)?;
        }
        let d = deployment(&format!("web-{i}"), replicas)?;
        api.create(&PostParams::default(), &d)
            .await
            .map_err(Error::Api)?;
    }
    settled(&api, count).await?;
    let create = start.elapsed();
    let start = Instant::now();
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}});
    for i in 0..count {
        api.patch(
            &format!("web-{i}"),
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .map_err(Error::Api)?;
    }
    settled(&api, count).await?;
    let rollout = start.elapsed();
    let rss_mib = proc_status_mib("VmRSS:");
    let peak_rss_mib = proc_status_mib("VmHWM:");
    sims.shutdown().await;
    cluster.shutdown().await;
    Ok(Report {
        deployments: count,
        replicas,
        services,
        create,
        rollout,
        rss_mib,
        peak_rss_mib,
    })
}
