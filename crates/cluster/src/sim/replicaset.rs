//! The simulated ReplicaSet controller's decisions (pure, no I/O): how many Pods to create, which
//! to delete, and the ReplicaSet status, as kube-controller-manager's replicaset controller does.
use super::util::{self, controller_ref, pod_active, pod_available, pod_ready, pod_terminating};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use std::cmp::Ordering;

/// The real controller creates or deletes at most this many pods per sync.
const BURST_REPLICAS: usize = 500;

/// What one reconcile of a ReplicaSet decided.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// How many Pods to create from the template.
    pub create: usize,
    /// Names of Pods to delete, the least valuable first.
    pub delete: Vec<String>,
    /// The status to write, when it changed.
    pub status: Option<ReplicaSetStatus>,
    /// When a ready Pod becomes available (minReadySeconds), if that is still ahead.
    pub requeue_at: Option<Timestamp>,
}

/// Plans one reconcile. `pods` are the Pods the ReplicaSet controls; `manage` is false while
/// earlier creations or deletions have not been observed yet (the real controller's
/// "expectations"), in which case only the status is computed.
pub fn plan(rs: &ReplicaSet, pods: &[Pod], manage: bool, now: Timestamp) -> Plan {
    let spec = Some(&rs.spec);
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let active: Vec<&Pod> = pods.iter().filter(|p| pod_active(p)).collect();
    let mut plan = Plan::default();
    if manage && rs.metadata.deletion_timestamp.is_none() {
        let diff = active.len() as i64 - i64::from(replicas.max(0));
        if diff < 0 {
            plan.create = (diff.unsigned_abs() as usize).min(BURST_REPLICAS);
        } else if diff > 0 {
            let mut ranked = active.clone();
            ranked.sort_by(|a, b| deletion_order(a, b));
            plan.delete = ranked
                .iter()
                .take((diff as usize).min(BURST_REPLICAS))
                .filter_map(|p| p.metadata.name.clone())
                .collect();
        }
    }
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|p| util::map_selector_matches(&template_labels, p.metadata.labels.as_ref()))
        .count();
    let status = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: util::nz(fully_labeled as i32),
        ready_replicas: util::nz(active.iter().filter(|p| pod_ready(p)).count() as i32),
        available_replicas: util::nz(
            active
                .iter()
                .filter(|p| pod_available(p, min_ready, now))
                .count() as i32,
        ),
        terminating_replicas: Some(pods.iter().filter(|p| pod_terminating(p)).count() as i32),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    if rs.status.as_ref() != Some(&status) {
        plan.status = Some(status);
    }
    plan.requeue_at = active
        .iter()
        .filter_map(|p| util::pod_available_at(p, min_ready, now))
        .min();
    plan
}

/// A Pod for `rs`, named `<rs>-<5 random characters>` like `generateName` would, on `node`.
pub fn new_pod(rs: &ReplicaSet, node: Option<String>) -> Pod {
    let rs_name = rs.metadata.name.clone().unwrap_or_default();
    let template = rs.spec.template.clone().unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    if spec.node_name.is_none() {
        spec.node_name = node;
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{rs_name}-{}", util::random_suffix())),
            generate_name: Some(format!("{rs_name}-")),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref("apps/v1", "ReplicaSet", &rs.metadata)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Which Pod to delete first (`ActivePodsWithRanks`): unscheduled before scheduled, pending before
/// running, not ready before ready, ready for less time, more restarts, newer.
fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let phase = |p: &Pod| match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Running") => 2,
        Some("Unknown") => 1,
        _ => 0,
    };
    let ready_since = |p: &Pod| {
        util::pod_condition(p, "Ready")
            .filter(|c| c.status == "True")
            .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
    };
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |cs| {
                cs.iter().map(|c| c.restart_count).max().unwrap_or(0)
            })
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase(a).cmp(&phase(b)))
        .then_with(|| pod_ready(a).cmp(&pod_ready(b)))
        // Both ready: the one ready more recently goes first.
        .then_with(|| ready_since(b).cmp(&ready_since(a)))
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| created(b).cmp(&created(a)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::testing::{pod, replica_set};

    fn now() -> Timestamp {
        Timestamp::from_second(20).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn missing_pods_are_created_and_status_counts_what_exists() {
        let rs = replica_set("web-abc", 3);
        let pods = vec![pod("web-abc-1", true, 10)];
        let plan = plan(&rs, &pods, true, now());
        assert_eq!(plan.create, 2);
        let status = plan.status.unwrap_or_default();
        assert_eq!(status.replicas, 1);
        assert_eq!(status.ready_replicas, Some(1));
        assert_eq!(status.available_replicas, Some(1));
    }

    #[test]
    fn unready_pods_are_deleted_before_ready_ones() {
        let rs = replica_set("web-abc", 1);
        let pods = vec![pod("ready", true, 10), pod("unready", false, 20)];
        let plan = plan(&rs, &pods, true, now());
        assert_eq!(plan.delete, vec!["unready".to_string()]);
    }

    #[test]
    fn unmet_expectations_stop_creation_but_not_status() {
        let rs = replica_set("web-abc", 3);
        let plan = plan(&rs, &[], false, now());
        assert_eq!(plan.create, 0);
        assert_eq!(plan.status.map(|s| s.replicas), Some(0));
    }

    #[test]
    fn min_ready_seconds_delays_availability_and_asks_for_a_requeue() {
        let mut rs = replica_set("web-abc", 1);
        rs.spec.min_ready_seconds = Some(30);
        let pods = vec![pod("p", true, 10)];
        let plan = plan(&rs, &pods, true, now());
        let status = plan.status.unwrap_or_default();
        assert_eq!(status.ready_replicas, Some(1));
        assert_eq!(status.available_replicas, None);
        assert!(plan.requeue_at.is_some_and(|t| t > now()));
    }
}
