//! Simulated workload controllers for the embedded cluster (network I/O through a kube-rs
//! `Client`): Deployments with their ReplicaSets and Pods, DaemonSets on simulated nodes,
//! StatefulSets with their ControllerRevisions and PVCs, HorizontalPodAutoscalers and Endpoints, plus a kubelet that moves Pods to Running and Ready.
//!
//! Each controller is a pure planner (`deployment::plan`, `replicaset::plan`, …) fed by watch
//! caches, and a small runner that writes the plan back through the API, so the simulators would
//! run against any Kubernetes API server. Pod templates can ask for faults with the
//! `sim.serin.dev/fault` annotation (see [`kubelet`]).
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Endpoints, Node, PersistentVolumeClaim, Pod, Service};
use kube::Client;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub mod bench;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod hpa;
pub mod instant;
pub mod kubelet;
pub mod nodes;
pub mod replicaset;
mod runtime;
pub mod statefulset;
#[cfg(test)]
mod testing;
pub mod util;

/// Errors from starting the simulators.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Registering the simulated Node objects failed.
    #[error("cannot register simulated nodes")]
    RegisterNodes(#[source] kube::Error),
    /// The watch cache of a kind did not fill in time.
    #[error("the simulators' watch cache of {0} did not sync")]
    CacheSync(String),
    /// The embedded API server did not start, or no client for it could be built.
    #[error("cannot start the embedded cluster")]
    StartCluster(#[source] super::Error),
}

impl Error {
    /// A short stable label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::RegisterNodes(_) => "RegisterNodes",
            Error::StartCluster(_) => "StartCluster",
            Error::CacheSync(_) => "CacheSync",
        }
    }
}

/// Starts the embedded API server with the simulators running against it. The server's own
/// instant kubelet is switched off when the simulated kubelet runs (one of them must own Pod
/// status), and `cluster.nodes` decides how many nodes are registered.
pub async fn start_cluster(
    mut cluster: super::ClusterConfig,
    mut sim: SimConfig,
) -> Result<(super::ClusterHandle, SimHandle), Error> {
    if sim.kubelet && !sim.instant {
        cluster.kubelet = false;
    }
    sim.nodes = cluster.nodes;
    let handle = super::start(cluster).await.map_err(Error::StartCluster)?;
    let client = handle.client().map_err(Error::StartCluster)?;
    let sims = start(client, sim).await?;
    Ok((handle, sims))
}

/// Which simulated controllers run, and their timing.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Simulate the Deployment and ReplicaSet controllers.
    pub deployments: bool,
    /// Instant workloads ([`instant`]): enabled Deployments and DaemonSets report a finished
    /// rollout as soon as they are written, with no ReplicaSets or Pods. Cheap enough for
    /// benchmarks at thousands of workloads; the full Deployment and DaemonSet simulators and
    /// the simulated kubelet do not run.
    pub instant: bool,
    /// Simulate the DaemonSet controller.
    pub daemonsets: bool,
    /// Simulate the StatefulSet controller (Pods, PVCs, ControllerRevisions).
    pub statefulsets: bool,
    /// Simulate the HorizontalPodAutoscaler controller (min/max clamping only).
    pub hpa: bool,
    /// Simulate the endpoints controller.
    pub endpoints: bool,
    /// Simulate kubelets: Pods get an IP, run, and become Ready.
    pub kubelet: bool,
    /// How many Node objects (`sim-node-0` …) to register; 0 registers none. [`start_cluster`]
    /// takes this from `ClusterConfig::nodes` instead.
    pub nodes: usize,
    /// How long a healthy Pod takes from start to Ready.
    pub pod_ready_delay: Duration,
    /// How often a `crashloop` Pod's containers restart.
    pub crashloop_interval: Duration,
    /// How often the HPA controller re-checks every HPA (the real default is 15s).
    pub hpa_sync_period: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            deployments: true,
            instant: false,
            daemonsets: true,
            statefulsets: true,
            hpa: true,
            endpoints: true,
            kubelet: true,
            nodes: 3,
            pod_ready_delay: Duration::from_millis(500),
            crashloop_interval: Duration::from_secs(10),
            hpa_sync_period: Duration::from_secs(15),
        }
    }
}

/// The running simulators; dropping it (or [`SimHandle::shutdown`]) stops every task.
#[derive(Debug)]
pub struct SimHandle {
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// Stops all simulator tasks and waits for them to end.
    pub async fn shutdown(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Registers the simulated nodes and starts the enabled controllers against `client`.
pub async fn start(client: Client, config: SimConfig) -> Result<SimHandle, Error> {
    if config.nodes > 0 {
        runtime::register_nodes(&client, config.nodes)
            .await
            .map_err(Error::RegisterNodes)?;
    }
    let wake = || Arc::new(Notify::new());
    let (n_deploy, n_rs, n_kubelet, n_ds, n_hpa, n_ep, n_sts) =
        (wake(), wake(), wake(), wake(), wake(), wake(), wake());
    let pick = |pairs: &[(bool, &Arc<Notify>)]| -> Vec<Arc<Notify>> {
        pairs
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| Arc::clone(n))
            .collect()
    };
    let mut handle = SimHandle { tasks: Vec::new() };
    if config.instant {
        instant::start(
            &client,
            config.deployments,
            config.daemonsets,
            config.nodes,
            &mut handle.tasks,
        )
        .await?;
    }
    let full = SimConfig {
        deployments: config.deployments && !config.instant,
        daemonsets: config.daemonsets && !config.instant,
        kubelet: config.kubelet && !config.instant,
        ..config.clone()
    };
    let c = &full;
    let needs_pods = c.deployments || c.daemonsets || c.statefulsets || c.kubelet || c.endpoints;
    let needs_nodes = c.deployments || c.daemonsets || c.kubelet;
    let tasks = &mut handle.tasks;
    let pods = if needs_pods {
        let w = pick(&[
            (c.deployments, &n_rs),
            (c.daemonsets, &n_ds),
            (c.statefulsets, &n_sts),
            (c.kubelet, &n_kubelet),
            (c.endpoints, &n_ep),
        ]);
        Some(runtime::reflect::<Pod>(&client, w, tasks).await?)
    } else {
        None
    };
    let nodes = if needs_nodes {
        let w = pick(&[
            (c.deployments, &n_rs),
            (c.daemonsets, &n_ds),
            (c.kubelet, &n_kubelet),
        ]);
        Some(runtime::reflect::<Node>(&client, w, tasks).await?)
    } else {
        None
    };
    if let (Some(pods), Some(nodes)) = (&pods, &nodes) {
        if c.deployments {
            // One Deployment cache wakes the HPA loop too (a scale to zero, a new size).
            let mut wake_on_deployments = vec![n_deploy.clone()];
            if c.hpa {
                wake_on_deployments.push(n_hpa.clone());
            }
            let deployments =
                runtime::reflect::<Deployment>(&client, wake_on_deployments, tasks).await?;
            let replica_sets = runtime::reflect::<ReplicaSet>(
                &client,
                vec![n_deploy.clone(), n_rs.clone()],
                tasks,
            )
            .await?;
            tasks.push(tokio::spawn(runtime::run_deployments(
                client.clone(),
                n_deploy.clone(),
                deployments,
                replica_sets.clone(),
                pods.clone(),
            )));
            tasks.push(tokio::spawn(runtime::run_replica_sets(
                client.clone(),
                n_rs.clone(),
                replica_sets,
                pods.clone(),
                nodes.clone(),
            )));
        }
        if c.daemonsets {
            let daemon_sets =
                runtime::reflect::<DaemonSet>(&client, vec![n_ds.clone()], tasks).await?;
            tasks.push(tokio::spawn(runtime::run_daemon_sets(
                client.clone(),
                n_ds.clone(),
                daemon_sets,
                pods.clone(),
                nodes.clone(),
            )));
        }
        if c.statefulsets {
            let sets = runtime::reflect::<StatefulSet>(&client, vec![n_sts.clone()], tasks).await?;
            let claims =
                runtime::reflect::<PersistentVolumeClaim>(&client, vec![n_sts.clone()], tasks)
                    .await?;
            let revisions =
                runtime::reflect::<ControllerRevision>(&client, vec![n_sts.clone()], tasks).await?;
            tasks.push(tokio::spawn(runtime::run_stateful_sets(
                client.clone(),
                n_sts.clone(),
                sets,
                pods.clone(),
                claims,
                revisions,
                nodes.clone(),
            )));
        }
        if c.kubelet {
            tasks.push(tokio::spawn(runtime::run_kubelet(
                client.clone(),
                n_kubelet.clone(),
                pods.clone(),
                nodes.clone(),
                config.clone(),
            )));
        }
    }
    if c.endpoints
        && let Some(pods) = &pods
    {
        let services = runtime::reflect::<Service>(&client, vec![n_ep.clone()], tasks).await?;
        let endpoints = runtime::reflect::<Endpoints>(&client, vec![n_ep.clone()], tasks).await?;
        tasks.push(tokio::spawn(runtime::run_endpoints(
            client.clone(),
            n_ep.clone(),
            services,
            pods.clone(),
            endpoints,
        )));
    }
    if c.hpa {
        // Deployment changes (a scale to zero, a new size) wake the HPA loop: through the
        // Deployment controller's cache when that runs, else through a cache of its own.
        if !(c.deployments && pods.is_some() && nodes.is_some()) {
            let _deployments =
                runtime::reflect::<Deployment>(&client, vec![n_hpa.clone()], tasks).await?;
        }
        let hpas = runtime::reflect::<HorizontalPodAutoscaler>(&client, vec![n_hpa.clone()], tasks)
            .await?;
        tasks.push(tokio::spawn(runtime::run_hpas(
            client.clone(),
            n_hpa.clone(),
            hpas,
            c.hpa_sync_period,
        )));
    }
    Ok(handle)
}
