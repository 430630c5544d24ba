//! The embedded API server with its simulated controllers, for the simulator suites
//! (cluster_sim, cluster_statefulset), and polling until a condition holds.
use kube::Client;
use serin::cluster::sim::{self, SimConfig};
use serin::cluster::{ClusterConfig, ClusterHandle};
use std::future::Future;
use std::time::Duration;

pub struct Env {
    // Dropped last: the simulators stop before the server.
    _sims: sim::SimHandle,
    _cluster: ClusterHandle,
    pub client: Client,
}

/// Starts the server with `nodes` Nodes and the simulators configured by `config`.
pub async fn start(config: SimConfig, nodes: usize) -> anyhow::Result<Env> {
    let (cluster, sims) = sim::start_cluster(
        ClusterConfig {
            nodes,
            ..ClusterConfig::default()
        },
        config,
    )
    .await?;
    let client = cluster.client()?;
    Ok(Env {
        _sims: sims,
        _cluster: cluster,
        client,
    })
}

#[path = "poll.rs"]
mod poll;

/// Polls `check` every 50 ms until it yields a value or `secs` pass.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    poll::poll_until(Duration::from_millis(50), secs, what, check).await
}
