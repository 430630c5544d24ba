//! Instant workloads, the simulators' cheapest mode for benchmarks at thousands of canaries:
//! Deployments and DaemonSets report a finished rollout as soon as they are written, with no
//! ReplicaSets or Pods. The statuses are the ones the real controllers settle in after a rollout
//! (pure planners here; the runners at the bottom do network I/O through a kube-rs `Client`).
use super::deployment::reason;
use super::util::{self, template_hash};
use super::{nodes, runtime};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetStatus, Deployment, DeploymentCondition, DeploymentStatus,
};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How many status writes run at once.
const CONCURRENCY: usize = 32;
/// Back-off after a failed write, and the longest sleep without an event.
const RETRY: Duration = Duration::from_millis(500);
const IDLE: Duration = Duration::from_secs(30);

fn condition(
    old: Option<&DeploymentCondition>,
    type_: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    // Like the real controller, a condition whose status does not change keeps its
    // lastTransitionTime; lastUpdateTime moves with every new reason or message.
    let same = old.is_some_and(|c| c.status.as_deref() == Some("True"));
    let unchanged = same
        && old.is_some_and(|c| {
            c.reason.as_deref() == Some(reason) && c.message.as_ref() == Some(&message)
        });
    DeploymentCondition {
        type_: Some(type_.into()),
        status: Some("True".into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: if same {
            old.and_then(|c| c.last_transition_time.clone())
        } else {
            Some(util::time(now))
        },
        last_update_time: if unchanged {
            old.and_then(|c| c.last_update_time.clone())
        } else {
            Some(util::time(now))
        },
    }
}

/// The status of a Deployment whose rollout of the current template has finished, or `None` when
/// its status says so already. The new ReplicaSet is named as the real controller would name it.
pub fn deployment_status(d: &Deployment, now: Timestamp) -> Option<DeploymentStatus> {
    let generation = d.metadata.generation;
    let replicas = d.spec.replicas.unwrap_or(1);
    let old = d.status.clone().unwrap_or_default();
    let settled = old.observed_generation == generation
        && old.replicas.unwrap_or(0) == replicas
        && old.updated_replicas.unwrap_or(0) == replicas
        && old.available_replicas.unwrap_or(0) == replicas
        && old.ready_replicas.unwrap_or(0) == replicas;
    if settled && old.conditions.as_ref().is_some_and(|c| c.len() == 2) {
        return None;
    }
    let find = |t: &str| {
        old.conditions
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.type_.as_deref() == Some(t)))
    };
    let rs = format!(
        "{}-{}",
        d.name_any(),
        template_hash(&d.spec.template, old.collision_count)
    );
    Some(DeploymentStatus {
        observed_generation: generation,
        replicas: util::nz(replicas),
        updated_replicas: util::nz(replicas),
        ready_replicas: util::nz(replicas),
        available_replicas: util::nz(replicas),
        unavailable_replicas: None,
        terminating_replicas: None,
        collision_count: old.collision_count,
        conditions: Some(vec![
            condition(
                find("Available"),
                "Available",
                reason::MINIMUM_REPLICAS_AVAILABLE,
                "Deployment has minimum availability.".into(),
                now,
            ),
            condition(
                find("Progressing"),
                "Progressing",
                reason::NEW_REPLICA_SET_AVAILABLE,
                format!("ReplicaSet \"{rs}\" has successfully progressed."),
                now,
            ),
        ]),
    })
}

/// The status of a DaemonSet that runs its current template on every one of `node_count`
/// simulated nodes its `nodeSelector` matches, or `None` when its status says so already.
pub fn daemonset_status(ds: &DaemonSet, node_count: usize) -> Option<DaemonSetStatus> {
    let selector = ds
        .spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.node_selector.clone())
        .unwrap_or_default();
    let desired = (0..node_count)
        .filter(|i| {
            let labels = nodes::node(*i).metadata.labels.unwrap_or_default();
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .count();
    let desired = i32::try_from(desired).unwrap_or(i32::MAX);
    let status = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        current_number_scheduled: desired,
        desired_number_scheduled: desired,
        number_available: util::nz(desired),
        number_ready: desired,
        number_misscheduled: 0,
        number_unavailable: None,
        updated_number_scheduled: util::nz(desired),
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: None,
    };
    (ds.status.as_ref() != Some(&status)).then_some(status)
}

/// Writes `status` through the `/status` subresource of `kind` (merge patch, so a concurrent
/// spec change is not overwritten: the next event plans again).
async fn write_status<K>(api: Api<K>, name: String, status: serde_json::Value) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({"status": status});
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.is_not_found() => true,
        Err(e) => {
            tracing::debug!(name, error = %e, "instant workload status write failed, retrying");
            false
        }
    }
}

async fn sleep_or_wake(notify: &Notify, failed: bool) {
    tokio::select! {
        _ = notify.notified() => {}
        _ = tokio::time::sleep(if failed { RETRY } else { IDLE }) => {}
    }
    // Let a burst of writes land before a pass over everything.
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// One instant controller loop: writes `status(object, now)` for every cached object that
/// needs one (`None`: its status is already what it should be), then waits for a change.
async fn run_instant<K, S>(
    client: Client,
    notify: Arc<Notify>,
    store: Store<K>,
    status: impl Fn(&K, Timestamp) -> Option<S>,
) where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: serde::Serialize,
{
    loop {
        let now = Timestamp::now();
        let writes: Vec<_> = store
            .state()
            .into_iter()
            .filter_map(|o| {
                let value = serde_json::to_value(status(&o, now)?).ok()?;
                let api: Api<K> =
                    Api::namespaced(client.clone(), &o.namespace().unwrap_or_default());
                Some(write_status(api, o.name_any(), value))
            })
            .collect();
        let results: Vec<bool> = futures::stream::iter(writes)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        sleep_or_wake(&notify, results.contains(&false)).await;
    }
}

/// The instant Deployment controller loop.
pub(super) async fn run_deployments(client: Client, notify: Arc<Notify>, store: Store<Deployment>) {
    run_instant(client, notify, store, deployment_status).await
}

/// The instant DaemonSet controller loop.
pub(super) async fn run_daemon_sets(
    client: Client,
    notify: Arc<Notify>,
    store: Store<DaemonSet>,
    node_count: usize,
) {
    run_instant(client, notify, store, |ds, _| {
        daemonset_status(ds, node_count)
    })
    .await
}

/// Starts the instant Deployment and DaemonSet loops (`deployments`, `daemonsets` say which).
pub(super) async fn start(
    client: &Client,
    deployments: bool,
    daemonsets: bool,
    node_count: usize,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), super::Error> {
    if deployments {
        let wake = Arc::new(Notify::new());
        let store = runtime::reflect::<Deployment>(client, vec![wake.clone()], tasks).await?;
        tasks.push(tokio::spawn(run_deployments(client.clone(), wake, store)));
    }
    if daemonsets {
        let wake = Arc::new(Notify::new());
        let store = runtime::reflect::<DaemonSet>(client, vec![wake.clone()], tasks).await?;
        tasks.push(tokio::spawn(run_daemon_sets(
            client.clone(),
            wake,
            store,
            node_count,
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i32, generation: i64) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "generation": generation},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "nginx:1"}]}}}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn a_written_deployment_reports_a_finished_rollout_of_its_generation() {
        let mut d = deployment(3, 2);
        let now = Timestamp::now();
        let s = deployment_status(&d, now).unwrap_or_default();
        assert_eq!(s.observed_generation, Some(2));
        for n in [
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas,
        ] {
            assert_eq!(n, Some(3));
        }
        let conds = s.conditions.clone().unwrap_or_default();
        let progressing = conds
            .iter()
            .find(|c| c.type_.as_deref() == Some("Progressing"));
        assert_eq!(
            progressing.and_then(|c| c.reason.as_deref()),
            Some("NewReplicaSetAvailable")
        );
        assert!(
            progressing
                .and_then(|c| c.message.as_deref())
                .is_some_and(|m| m.starts_with("ReplicaSet \"web-")
                    && m.ends_with("\" has successfully progressed."))
        );
        let available = conds
            .iter()
            .find(|c| c.type_.as_deref() == Some("Available"));
        assert_eq!(available.and_then(|c| c.status.as_deref()), Some("True"));
        d.status = Some(s);
        assert_eq!(
            deployment_status(&d, now),
            None,
            "settled: nothing to write"
        );
        d.metadata.generation = Some(3);
        let next = deployment_status(&d, now).unwrap_or_default();
        assert_eq!(
            next.observed_generation,
            Some(3),
            "a new generation is observed"
        );
    }

    #[test]
    fn a_deployment_scaled_to_zero_reports_no_replicas_but_stays_available() {
        let s = deployment_status(&deployment(0, 1), Timestamp::now()).unwrap_or_default();
        assert_eq!((s.replicas, s.available_replicas), (None, None));
        assert!(
            s.conditions
                .unwrap_or_default()
                .iter()
                .all(|c| c.status.as_deref() == Some("True"))
        );
    }

    #[test]
    fn a_daemonset_runs_on_the_nodes_its_selector_matches() {
        let mut ds: DaemonSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "agent", "namespace": "default", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "a", "image": "agent:1"}]}}}
        }))
        .unwrap_or_default();
        let s = daemonset_status(&ds, 2).unwrap_or_default();
        assert_eq!((s.desired_number_scheduled, s.number_ready), (2, 2));
        assert_eq!(s.observed_generation, Some(1));
        ds.status = Some(s);
        assert_eq!(daemonset_status(&ds, 2), None);
        if let Some(spec) = ds.spec.template.spec.as_mut() {
            spec.node_selector =
                Some([("serin.dev/nowhere".to_string(), "true".to_string())].into());
        }
        let s = daemonset_status(&ds, 2).unwrap_or_default();
        assert_eq!(s.desired_number_scheduled, 0, "no node matches");
    }
}
