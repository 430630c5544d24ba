//! Benchmark of the simulated controllers (network I/O against the embedded server): how long
//! Deployments take from creation to `NewReplicaSetAvailable`, and a rolling update to finish.
//! Run with `cargo run --release --example sim_convergence [deployments] [replicas]`.
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serin::cluster::ClusterConfig;
use serin::cluster::sim::{self, SimConfig};
use std::time::{Duration, Instant};

fn deployment(name: &str, replicas: i32) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "nginx:1"}]}}
        }
    }))?)
}

/// Waits until every Deployment reports NewReplicaSetAvailable for its current generation.
async fn settled(api: &Api<Deployment>, count: usize) -> anyhow::Result<()> {
    loop {
        let list = api.list(&ListParams::default()).await?.items;
        let done = list
            .iter()
            .filter(|d| {
                let s = d.status.clone().unwrap_or_default();
                s.observed_generation == d.metadata.generation
                    && s.conditions
                        .iter()
                        .flatten()
                        .any(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"))
                    && s.available_replicas == d.spec.replicas
            })
            .count();
        if done == count {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let replicas: i32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let config = SimConfig {
        pod_ready_delay: Duration::ZERO,
        ..SimConfig::default()
    };
    let (cluster, sims) = sim::start_cluster(
        ClusterConfig {
            nodes: 3,
            ..ClusterConfig::default()
        },
        config,
    )
    .await?;
    let api: Api<Deployment> = Api::namespaced(cluster.client()?, "default");

    let start = Instant::now();
    for i in 0..count {
        api.create(
            &PostParams::default(),
            &deployment(&format!("web-{i}"), replicas)?,
        )
        .await?;
    }
    settled(&api, count).await?;
    let created = start.elapsed();

    let start = Instant::now();
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}});
    for i in 0..count {
        api.patch(
            &format!("web-{i}"),
            &PatchParams::default(),
            &Patch::Strategic(patch.clone()),
        )
        .await?;
    }
    settled(&api, count).await?;
    let rolled = start.elapsed();

    println!("deployments: {count} x {replicas} replicas, pod ready delay 0");
    println!(
        "create -> NewReplicaSetAvailable: {:>8.1} ms total, {:>6.1} ms per deployment",
        created.as_secs_f64() * 1e3,
        created.as_secs_f64() * 1e3 / count as f64
    );
    println!(
        "image change -> rolled out:       {:>8.1} ms total, {:>6.1} ms per deployment",
        rolled.as_secs_f64() * 1e3,
        rolled.as_secs_f64() * 1e3 / count as f64
    );
    println!("objects stored: {}", cluster.object_count());
    sims.shutdown().await;
    cluster.shutdown().await;
    Ok(())
}
