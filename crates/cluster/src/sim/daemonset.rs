//! The simulated DaemonSet controller's decisions (pure, no I/O): which nodes should run a daemon
//! Pod, which Pods to create and delete (including rolling updates) and the DaemonSet status.
use super::util::{
    self, CONTROLLER_REVISION_HASH, controller_ref, map_selector_matches, pod_active,
    pod_available, pod_ready, scaled_value,
};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;

/// Label the API server's DaemonSet strategy maintains as the template generation.
const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// Label on daemon Pods with the template generation they were created from.
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// What one reconcile of a DaemonSet decided.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// Nodes to create a daemon Pod on.
    pub create_on: Vec<String>,
    /// Names of daemon Pods to delete.
    pub delete: Vec<String>,
    /// The status to write, when it changed.
    pub status: Option<DaemonSetStatus>,
    /// When a Pod becomes available (minReadySeconds), if ahead.
    pub requeue_at: Option<Timestamp>,
}

/// The hash of the DaemonSet's current template (the `controller-revision-hash` of its Pods).
pub fn current_hash(ds: &DaemonSet) -> String {
    let template = ds.spec.template.clone();
    util::template_hash(
        &template,
        ds.status.as_ref().and_then(|s| s.collision_count),
    )
}

fn template_generation(ds: &DaemonSet) -> Option<String> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)
        .cloned()
}

/// Whether a daemon Pod runs the current template (`IsPodUpdated`).
fn pod_updated(pod: &Pod, hash: &str, generation: Option<&str>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    label(CONTROLLER_REVISION_HASH) == Some(hash)
        || generation.is_some_and(|g| label(TEMPLATE_GENERATION_LABEL) == Some(g))
}

/// Whether the DaemonSet's Pods belong on `node`: node name, nodeSelector, required node affinity
/// and NoSchedule/NoExecute taints (`NodeShouldRunDaemonPod`).
pub fn should_run(ds: &DaemonSet, node: &Node) -> bool {
    let Some(pod_spec) = ds.spec.template.spec.as_ref() else {
        return false;
    };
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    if pod_spec
        .node_name
        .as_deref()
        .is_some_and(|n| n != node_name)
    {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    if let Some(selector) = &pod_spec.node_selector
        && !map_selector_matches(selector, labels)
    {
        return false;
    }
    let required = pod_spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if let Some(required) = required
        && !required
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node))
    {
        return false;
    }
    let tolerations = pod_spec.tolerations.clone().unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|taint| {
            tolerations.iter().any(|tol| {
                let key_ok = tol
                    .key
                    .as_deref()
                    .is_none_or(|k| k.is_empty() || k == taint.key);
                let effect_ok = tol
                    .effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == taint.effect);
                let value_ok = match tol.operator.as_deref() {
                    Some("Exists") => true,
                    _ => {
                        tol.value.as_deref().unwrap_or_default()
                            == taint.value.as_deref().unwrap_or_default()
                    }
                };
                key_ok && effect_ok && value_ok
            })
        })
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let fields = BTreeMap::from([(
        "metadata.name".to_string(),
        node.metadata.name.clone().unwrap_or_default(),
    )]);
    let exprs = term
        .match_expressions
        .iter()
        .flatten()
        .all(|e| requirement_matches(e, &labels));
    let fields_ok = term
        .match_fields
        .iter()
        .flatten()
        .all(|e| requirement_matches(e, &fields));
    let empty = term.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        && term.match_fields.as_ref().is_none_or(|f| f.is_empty());
    !empty && exprs && fields_ok
}

fn requirement_matches(req: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    let values = req.values.clone().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(|v| number(v)), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((value.and_then(|v| number(v)), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// Plans one reconcile. `pods` are the DaemonSet's Pods; `manage` is false while earlier creations
/// or deletions are not observed yet.
pub fn plan(ds: &DaemonSet, nodes: &[Node], pods: &[Pod], manage: bool, now: Timestamp) -> Plan {
    let spec = ds.spec.clone();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let hash = current_hash(ds);
    let generation = template_generation(ds);
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods.iter().filter(|p| pod_active(p)) {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        by_node.entry(node).or_default().push(pod);
    }
    for list in by_node.values_mut() {
        list.sort_by_key(|p| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.clone(),
            )
        });
    }
    let should: BTreeMap<String, bool> = nodes
        .iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, should_run(ds, n))))
        .collect();
    let desired = should.values().filter(|v| **v).count() as i32;
    let rolling = spec
        .update_strategy
        .as_ref()
        .is_none_or(|s| s.type_.as_deref() != Some("OnDelete"));
    let ru = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let max_surge = ru
        .and_then(|r| r.max_surge.as_ref())
        .and_then(|v| scaled_value(v, desired, true).ok())
        .unwrap_or(0);
    let mut max_unavailable = ru
        .and_then(|r| r.max_unavailable.clone())
        .map_or(Ok(1), |v: IntOrString| scaled_value(&v, desired, true))
        .unwrap_or(1);
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    let surging = rolling && max_surge > 0;

    let mut plan = Plan::default();
    if manage && ds.metadata.deletion_timestamp.is_none() {
        // podsShouldBeOnNode: create where missing, delete where unwanted or duplicated.
        for (node, run) in &should {
            let on_node = by_node.get(node).cloned().unwrap_or_default();
            if *run && on_node.is_empty() {
                plan.create_on.push(node.clone());
            } else if !*run {
                plan.delete
                    .extend(on_node.iter().filter_map(|p| p.metadata.name.clone()));
            } else if surging {
                // Keep the oldest updated and the oldest old pod; the rolling update retires the old.
                let (updated, old): (Vec<&Pod>, Vec<&Pod>) = on_node
                    .iter()
                    .partition(|p| pod_updated(p, &hash, generation.as_deref()));
                plan.delete.extend(
                    updated
                        .iter()
                        .skip(1)
                        .chain(old.iter().skip(1))
                        .filter_map(|p| p.metadata.name.clone()),
                );
            } else {
                plan.delete.extend(
                    on_node
                        .iter()
                        .skip(1)
                        .filter_map(|p| p.metadata.name.clone()),
                );
            }
        }
        for (node, list) in &by_node {
            if !should.contains_key(node) {
                plan.delete
                    .extend(list.iter().filter_map(|p| p.metadata.name.clone()));
            }
        }
        if rolling && plan.create_on.is_empty() && plan.delete.is_empty() {
            rolling_update(
                &mut plan,
                &by_node,
                &should,
                &hash,
                generation.as_deref(),
                max_surge,
                max_unavailable,
                min_ready,
                now,
            );
        }
    }

    let (mut current, mut misscheduled, mut ready, mut available, mut updated) = (0, 0, 0, 0, 0);
    for (node, run) in &should {
        let on_node = by_node.get(node);
        let scheduled = on_node.is_some_and(|l| !l.is_empty());
        if !*run {
            misscheduled += i32::from(scheduled);
            continue;
        }
        let Some(pod) = on_node.and_then(|l| l.first()) else {
            continue;
        };
        current += 1;
        if pod_ready(pod) {
            ready += 1;
            if pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if pod_updated(pod, &hash, generation.as_deref()) {
            updated += 1;
        }
    }
    let status = DaemonSetStatus {
        current_number_scheduled: current,
        number_misscheduled: misscheduled,
        desired_number_scheduled: desired,
        number_ready: ready,
        observed_generation: ds.metadata.generation,
        updated_number_scheduled: util::nz(updated),
        number_available: util::nz(available),
        number_unavailable: util::nz(desired - available),
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    if ds.status.as_ref() != Some(&status) {
        plan.status = Some(status);
    }
    plan.requeue_at = pods
        .iter()
        .filter_map(|p| util::pod_available_at(p, min_ready, now))
        .min();
    plan
}

/// `rollingUpdate`: replaces old Pods within the maxUnavailable budget, or surges new ones first.
#[allow(clippy::too_many_arguments)]
fn rolling_update(
    plan: &mut Plan,
    by_node: &BTreeMap<String, Vec<&Pod>>,
    should: &BTreeMap<String, bool>,
    hash: &str,
    generation: Option<&str>,
    max_surge: i32,
    max_unavailable: i32,
    min_ready: i32,
    now: Timestamp,
) {
    let mut unavailable = 0;
    let mut candidates = Vec::new();
    let mut surge_count = 0;
    for (node, pods) in by_node {
        if !should.get(node).copied().unwrap_or(false) {
            continue;
        }
        let (new, old): (Vec<&&Pod>, Vec<&&Pod>) =
            pods.iter().partition(|p| pod_updated(p, hash, generation));
        if new.len() > 1 || old.len() > 1 {
            unavailable += 1;
            continue;
        }
        let available = |p: &Pod| pod_available(p, min_ready, now);
        match (new.first(), old.first()) {
            (Some(n), Some(o)) => {
                if max_surge > 0 {
                    surge_count += 1;
                    if available(n) {
                        plan.delete.extend(o.metadata.name.clone());
                    }
                } else {
                    unavailable += 1;
                }
            }
            (Some(n), None) => {
                if !available(n) {
                    unavailable += 1;
                }
            }
            (None, Some(o)) => {
                if max_surge > 0 {
                    if !available(o) || surge_count < max_surge {
                        if available(o) {
                            surge_count += 1;
                        }
                        plan.create_on.push(node.clone());
                    }
                } else if !available(o) {
                    plan.delete.extend(o.metadata.name.clone());
                } else if unavailable < max_unavailable {
                    candidates.extend(o.metadata.name.clone());
                }
            }
            (None, None) => unavailable += 1,
        }
    }
    if max_surge == 0 {
        let budget = (max_unavailable - unavailable).max(0) as usize;
        plan.delete.extend(candidates.into_iter().take(budget));
    }
}

/// A daemon Pod for `node`: the template with the revision labels, pinned to the node by affinity
/// and by name (standing in for the scheduler), with the tolerations the real controller adds.
pub fn new_pod(ds: &DaemonSet, node: &str) -> Pod {
    let ds_name = ds.metadata.name.clone().unwrap_or_default();
    let template = ds.spec.template.clone();
    let mut meta = template.metadata.unwrap_or_default();
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(CONTROLLER_REVISION_HASH.into(), current_hash(ds));
    if let Some(g) = template_generation(ds) {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g);
    }
    let mut spec = template.spec.unwrap_or_default();
    spec.node_name = Some(node.to_string());
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default)
        .required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            ..Default::default()
        }],
    });
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ] {
        if !tolerations.iter().any(|t| t.key.as_deref() == Some(key)) {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(effect.into()),
                ..Default::default()
            });
        }
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{ds_name}-{}", util::random_suffix())),
            generate_name: Some(format!("{ds_name}-")),
            namespace: ds.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            owner_references: Some(vec![controller_ref("apps/v1", "DaemonSet", &ds.metadata)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::nodes;
    use crate::sim::testing::pod;
    use k8s_openapi::api::apps::v1::DaemonSetSpec;
    use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};

    fn ds(node_selector: Option<(&str, &str)>) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: DaemonSetSpec {
                template: PodTemplateSpec {
                    spec: Some(PodSpec {
                        node_selector: node_selector
                            .map(|(k, v)| BTreeMap::from([(k.to_string(), v.to_string())])),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            },
            status: None,
        }
    }

    fn on(mut p: Pod, node: &str, hash: &str) -> Pod {
        if let Some(s) = p.spec.as_mut() {
            s.node_name = Some(node.into());
        }
        p.metadata.labels = Some(BTreeMap::from([(
            CONTROLLER_REVISION_HASH.into(),
            hash.into(),
        )]));
        p
    }

    #[test]
    fn every_node_gets_one_pod() {
        let nodes: Vec<Node> = (0..3).map(nodes::node).collect();
        let plan = plan(&ds(None), &nodes, &[], true, Timestamp::UNIX_EPOCH);
        assert_eq!(
            plan.create_on,
            vec!["sim-node-0", "sim-node-1", "sim-node-2"]
        );
        assert_eq!(plan.status.map(|s| s.desired_number_scheduled), Some(3));
    }

    #[test]
    fn a_selector_no_node_has_schedules_nothing() {
        let nodes: Vec<Node> = (0..3).map(nodes::node).collect();
        let d = ds(Some(("flagger.app/scale-to-zero", "true")));
        let plan = plan(&d, &nodes, &[], true, Timestamp::UNIX_EPOCH);
        assert!(plan.create_on.is_empty());
        let status = plan.status.unwrap_or_default();
        assert_eq!(status.desired_number_scheduled, 0);
        assert_eq!(
            status.number_unavailable, None,
            "zero is omitted like Go's omitempty"
        );
    }

    #[test]
    fn pods_on_nodes_that_no_longer_match_are_removed() {
        let nodes: Vec<Node> = (0..1).map(nodes::node).collect();
        let d = ds(Some(("flagger.app/scale-to-zero", "true")));
        let pods = vec![on(
            pod("agent-x", true, 10),
            "sim-node-0",
            &current_hash(&d),
        )];
        let plan = plan(&d, &nodes, &pods, true, Timestamp::UNIX_EPOCH);
        assert_eq!(plan.delete, vec!["agent-x"]);
        assert_eq!(plan.status.map(|s| s.number_misscheduled), Some(1));
    }

    #[test]
    fn a_template_change_replaces_one_available_pod_at_a_time() {
        let nodes: Vec<Node> = (0..3).map(nodes::node).collect();
        let d = ds(None);
        let pods: Vec<Pod> = (0..3)
            .map(|i| {
                on(
                    pod(&format!("old-{i}"), true, 10),
                    &format!("sim-node-{i}"),
                    "oldhash",
                )
            })
            .collect();
        let plan = plan(&d, &nodes, &pods, true, Timestamp::UNIX_EPOCH);
        assert_eq!(plan.delete.len(), 1);
        let status = plan.status.unwrap_or_default();
        assert_eq!(status.updated_number_scheduled, None);
        assert_eq!(status.number_ready, 3);
    }
}
