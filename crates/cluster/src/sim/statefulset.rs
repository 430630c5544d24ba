//! The simulated StatefulSet controller's decisions (pure, no I/O): ControllerRevisions, ordered
//! `<set>-<ordinal>` Pods with their PVCs, rolling updates with a partition, and the status, as
//! kube-controller-manager 1.24's `pkg/controller/statefulset` (`stateful_set_control.go`) does.
use super::util::{self, CONTROLLER_REVISION_HASH, controller_ref, pod_available, pod_ready};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// The label naming a StatefulSet Pod, so a Service can select exactly one of them.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// What one reconcile of a StatefulSet decided, in the order the runner carries it out.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// A ControllerRevision to create for the current template.
    pub create_revision: Option<ControllerRevision>,
    /// An existing revision that matches the template again (a rollback) and gets the next
    /// revision number.
    pub renumber_revision: Option<ControllerRevision>,
    /// Claims to create before the Pods that mount them.
    pub create_claims: Vec<PersistentVolumeClaim>,
    /// Pods to create.
    pub create_pods: Vec<Pod>,
    /// Names of Pods to delete.
    pub delete_pods: Vec<String>,
    /// Names of claims to delete (`persistentVolumeClaimRetentionPolicy.whenScaled: Delete`).
    pub delete_claims: Vec<String>,
    /// Names of old revisions beyond `revisionHistoryLimit`.
    pub delete_revisions: Vec<String>,
    /// The status to write, when it changed.
    pub status: Option<StatefulSetStatus>,
    /// When a Ready Pod becomes available (minReadySeconds), if ahead.
    pub requeue_at: Option<Timestamp>,
}

/// The revision data the real controller stores: a strategic merge patch that replaces the
/// template (`getPatch`).
fn revision_data(set: &StatefulSet) -> serde_json::Value {
    let mut template = util::canonical(&set.spec.template);
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), "replace".into());
    }
    serde_json::json!({"spec": {"template": template}})
}

/// The name of the revision of `set`'s current template: `<set>-<hash>`, the hash covering the
/// template and the collision count (`ControllerRevisionName` + `HashControllerRevision`).
pub fn revision_name(set: &StatefulSet) -> String {
    let collisions = set.status.as_ref().and_then(|s| s.collision_count);
    format!(
        "{}-{}",
        set.metadata.name.as_deref().unwrap_or_default(),
        util::template_hash(&set.spec.template, collisions)
    )
}

/// Whether two revisions hold the same template (`EqualRevision`).
fn same_data(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    util::canonical(&a.data.0) == util::canonical(&b.data.0)
}

/// The revision the current template would be stored as (`newRevision`).
pub fn new_revision(set: &StatefulSet, number: i64) -> ControllerRevision {
    let labels = set
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone());
    // The set's annotations are copied onto the revision, as `newRevision` does.
    let annotations = set.metadata.annotations.clone().unwrap_or_default();
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(set)),
            namespace: set.metadata.namespace.clone(),
            labels,
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![controller_ref(
                "apps/v1",
                "StatefulSet",
                &set.metadata,
            )]),
            ..Default::default()
        },
        data: RawExtension(revision_data(set)),
        revision: Some(number),
    }
}

/// The template a revision holds.
fn revision_template(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.0.get("spec")?.get("template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// The ordinal of a Pod of `set`, from its `<set>-<ordinal>` name.
pub fn ordinal(set_name: &str, pod: &Pod) -> Option<i32> {
    let name = pod.metadata.name.as_deref()?;
    let n = name.strip_prefix(set_name)?.strip_prefix('-')?;
    if n.starts_with('+') || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    n.parse::<i32>().ok().filter(|o| *o >= 0)
}

/// `<claim>-<set>-<ordinal>`.
pub fn claim_name(claim: &str, set: &str, ordinal: i32) -> String {
    format!("{claim}-{set}-{ordinal}")
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH)
        .map(String::as_str)
}

/// `isRunningAndReady`.
fn running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && pod_ready(pod)
}

/// `isCreated`: the API server gave the Pod a phase.
fn created(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| !p.is_empty())
}

fn failed(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The claims of `set` for `ordinal`, labelled with the set's selector (`getPersistentVolumeClaims`).
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let selector = set.spec.selector.match_labels.clone().unwrap_or_default();
    let delete_with_set = set
        .spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_deleted.as_deref())
        == Some("Delete");
    set.spec
        .volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let template_name = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&template_name, &set_name, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    owner_references: delete_with_set.then(|| {
                        let mut r = controller_ref("apps/v1", "StatefulSet", &set.metadata);
                        r.controller = None;
                        r.block_owner_deletion = Some(true);
                        vec![r]
                    }),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// The Pod for `ordinal` from `template` at revision `revision` (`newStatefulSetPod` +
/// `setPodRevision`): identity (hostname, subdomain, pod-name label) and storage (one volume
/// per claim template, replacing a template volume of the same name).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let name = format!("{set_name}-{ordinal}");
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(CONTROLLER_REVISION_HASH.into(), revision.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set.spec.service_name.clone().filter(|s| !s.is_empty());
    let mut volumes: Vec<Volume> = spec.volumes.take().unwrap_or_default();
    for t in set.spec.volume_claim_templates.iter().flatten() {
        let vol_name = t.metadata.name.clone().unwrap_or_default();
        volumes.retain(|v| v.name != vol_name);
        volumes.push(Volume {
            name: vol_name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&vol_name, &set_name, ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![controller_ref(
                "apps/v1",
                "StatefulSet",
                &set.metadata,
            )]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The revisions of the set, resolved: the update revision (existing or to create), the
/// current one, and what the plan must write for them.
struct Revisions {
    update_name: String,
    update_template: PodTemplateSpec,
    current_name: String,
    current_template: PodTemplateSpec,
    collision_count: i32,
}

fn resolve_revisions(
    set: &StatefulSet,
    revisions: &[ControllerRevision],
    plan: &mut Plan,
) -> Revisions {
    let mut collision_count = set
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let max = revisions
        .iter()
        .filter_map(|r| r.revision)
        .max()
        .unwrap_or(0);
    let mut desired = new_revision(set, max + 1);
    let equal: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| same_data(r, &desired))
        .collect();
    let update_name = if let Some(existing) = equal.iter().max_by_key(|r| r.revision) {
        if existing.revision.unwrap_or(0) < max {
            let mut renumbered = (*existing).clone();
            renumbered.revision = Some(max + 1);
            plan.renumber_revision = Some(renumbered);
        }
        existing.metadata.name.clone().unwrap_or_default()
    } else {
        // A name taken by a different template is a hash collision: count it and rename.
        let taken = |name: &str| {
            revisions
                .iter()
                .any(|r| r.metadata.name.as_deref() == Some(name))
        };
        let mut name = desired.metadata.name.clone().unwrap_or_default();
        while taken(&name) {
            collision_count += 1;
            let mut bumped = set.clone();
            bumped
                .status
                .get_or_insert_with(Default::default)
                .collision_count = Some(collision_count);
            desired = new_revision(&bumped, max + 1);
            name = desired.metadata.name.clone().unwrap_or_default();
        }
        plan.create_revision = Some(desired);
        name
    };
    let update_template = set.spec.template.clone();
    let current = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.as_deref())
        .and_then(|c| {
            revisions
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(c))
        });
    let (current_name, current_template) =
        match current.and_then(|r| Some((r.metadata.name.clone()?, revision_template(r)?))) {
            Some(found) => found,
            None => (update_name.clone(), update_template.clone()),
        };
    Revisions {
        update_name,
        update_template,
        current_name,
        current_template,
        collision_count,
    }
}

/// Plans one reconcile. `pods`, `claims_present` (claim names) and `revisions` are what the set
/// owns; `manage` is false while earlier creations or deletions have not been observed yet, in
/// which case only revisions and the status are planned.
pub fn plan(
    set: &StatefulSet,
    pods: &[Pod],
    claims_present: &BTreeSet<String>,
    revisions: &[ControllerRevision],
    manage: bool,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let spec = &set.spec;
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let strategy = spec.update_strategy.as_ref();
    let rolling = strategy.is_none_or(|s| s.type_.as_deref() != Some("OnDelete"));
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition);
    let rev = resolve_revisions(set, revisions, &mut plan);

    let mut by_ordinal: BTreeMap<i32, &Pod> = BTreeMap::new();
    for p in pods {
        if let Some(o) = ordinal(&set_name, p) {
            by_ordinal.insert(o, p);
        }
    }

    // Status from what exists (the loop over all claimed Pods in updateStatefulSet).
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        collision_count: Some(rev.collision_count),
        current_revision: Some(rev.current_name.clone()),
        update_revision: Some(rev.update_name.clone()),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let (mut current, mut updated, mut ready, mut available) = (0, 0, 0, 0);
    for p in by_ordinal.values() {
        status.replicas += 1;
        if running_and_ready(p) {
            ready += 1;
            if pod_available(p, min_ready, now) {
                available += 1;
            }
        }
        if created(p) && !terminating(p) {
            current += i32::from(revision_of(p) == Some(rev.current_name.as_str()));
            updated += i32::from(revision_of(p) == Some(rev.update_name.as_str()));
        }
    }

    let current_status_replicas = set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    if manage && set.metadata.deletion_timestamp.is_none() {
        let healthy = |p: &Pod| running_and_ready(p) && pod_available(p, min_ready, now);
        let first_unhealthy = by_ordinal
            .iter()
            .find(|(_, p)| !healthy(p))
            .map(|(o, _)| *o);
        'sync: {
            for ord in 0..replicas {
                let existing = by_ordinal.get(&ord).copied().filter(|p| !failed(p));
                if let Some(p) = by_ordinal
                    .get(&ord)
                    .filter(|p| failed(p) && !terminating(p))
                {
                    // Failed Pods are deleted and recreated (the count drops at once).
                    plan.delete_pods.extend(p.metadata.name.clone());
                    status.replicas -= 1;
                    current -= i32::from(revision_of(p) == Some(rev.current_name.as_str()));
                    updated -= i32::from(revision_of(p) == Some(rev.update_name.as_str()));
                }
                let Some(p) = existing else {
                    // newVersionedStatefulSetPod: below the partition (or below currentReplicas
                    // without one) the Pod keeps the current revision.
                    let keep_current = rolling
                        && match partition {
                            None => ord < current_status_replicas,
                            Some(part) => ord < part,
                        };
                    let (revision, template) = if keep_current {
                        (&rev.current_name, &rev.current_template)
                    } else {
                        (&rev.update_name, &rev.update_template)
                    };
                    for claim in claims(set, ord) {
                        let name = claim.metadata.name.clone().unwrap_or_default();
                        if !claims_present.contains(&name) {
                            plan.create_claims.push(claim);
                        }
                    }
                    plan.create_pods.push(new_pod(set, template, revision, ord));
                    status.replicas += 1;
                    current += i32::from(*revision == rev.current_name);
                    updated += i32::from(*revision == rev.update_name);
                    if monotonic {
                        break 'sync;
                    }
                    continue;
                };
                if terminating(p) || !running_and_ready(p) || !pod_available(p, min_ready, now) {
                    if monotonic {
                        break 'sync;
                    }
                    continue;
                }
            }
            // Condemned Pods go from the highest ordinal down, one at a time when ordered.
            let condemned: Vec<(i32, &Pod)> = by_ordinal
                .iter()
                .rev()
                .filter(|(o, _)| **o >= replicas)
                .map(|(o, p)| (*o, *p))
                .collect();
            for (ord, p) in condemned {
                if terminating(p) {
                    if monotonic {
                        break 'sync;
                    }
                    continue;
                }
                if !running_and_ready(p) && monotonic && Some(ord) != first_unhealthy {
                    break 'sync;
                }
                plan.delete_pods.extend(p.metadata.name.clone());
                if monotonic {
                    break 'sync;
                }
            }
            if !rolling {
                break 'sync;
            }
            // RollingUpdate: from the highest ordinal down to the partition, one Pod at a time,
            // each waiting for the one above to be healthy again.
            let floor = partition.unwrap_or(0).max(0);
            for ord in (floor..replicas).rev() {
                let Some(p) = by_ordinal.get(&ord) else {
                    continue;
                };
                if revision_of(p) != Some(rev.update_name.as_str()) && !terminating(p) {
                    plan.delete_pods.extend(p.metadata.name.clone());
                    break 'sync;
                }
                if !healthy(p) {
                    break 'sync;
                }
            }
        }
        // whenScaled: Delete removes the claims of ordinals at or above replicas once their Pod
        // is gone (the real controller hands them to the garbage collector through the Pod).
        let scaled_delete = spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .and_then(|p| p.when_scaled.as_deref())
            == Some("Delete");
        if scaled_delete {
            for t in spec.volume_claim_templates.iter().flatten() {
                let t_name = t.metadata.name.clone().unwrap_or_default();
                let prefix = format!("{t_name}-{set_name}-");
                for c in claims_present {
                    let Some(ord) = c.strip_prefix(&prefix).and_then(|o| o.parse::<i32>().ok())
                    else {
                        continue;
                    };
                    if ord >= replicas && !by_ordinal.contains_key(&ord) {
                        plan.delete_claims.push(c.clone());
                    }
                }
            }
        }
    }

    status.ready_replicas = util::nz(ready);
    status.available_replicas = Some(available);
    status.current_replicas = util::nz(current);
    status.updated_replicas = util::nz(updated);
    // completeRollingUpdate: once every Pod runs the update revision and is ready, it becomes
    // the current revision.
    if rolling && updated == status.replicas && ready == status.replicas {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
    if set.status.as_ref() != Some(&status) {
        plan.status = Some(status.clone());
    }

    // Revision history: keep the live revisions (current, update, any a Pod runs) and at most
    // revisionHistoryLimit others, dropping the oldest (`truncateHistory`).
    let mut live: BTreeSet<String> = by_ordinal
        .values()
        .filter_map(|p| revision_of(p).map(str::to_string))
        .collect();
    live.extend(status.current_revision.clone());
    live.extend(status.update_revision.clone());
    let mut history: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or_default()))
        .collect();
    history.sort_by_key(|r| r.revision);
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    if history.len() > limit {
        let excess = history.len() - limit;
        plan.delete_revisions = history
            .iter()
            .take(excess)
            .filter_map(|r| r.metadata.name.clone())
            .collect();
    }
    plan.requeue_at = pods
        .iter()
        .filter_map(|p| util::pod_available_at(p, min_ready, now))
        .min();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::testing::pod;
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetSpec, StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaimSpec, PodSpec};

    const NOW: i64 = 1_000;

    fn now() -> Timestamp {
        Timestamp::from_second(NOW).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// A set `db` of `replicas` Pods running `image`, with a `data` claim template.
    /// Three replicas moving from `db:1` to `db:2`: the new set, both revision names and both
    /// ControllerRevisions.
    fn image_update() -> (StatefulSet, String, String, [ControllerRevision; 2]) {
        let old = set(3, "db:1");
        let new = set(3, "db:2");
        let (r1, r2) = (revision_name(&old), revision_name(&new));
        let revs = [new_revision(&old, 1), new_revision(&new, 2)];
        (new, r1, r2, revs)
    }

    fn set(replicas: i32, image: &str) -> StatefulSet {
        let pod = PodSpec {
            containers: vec![Container {
                name: "db".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let (selector, template) = crate::sim::testing::selected_template("db", pod);
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("default".into()),
                uid: Some("uid-db".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: StatefulSetSpec {
                replicas: Some(replicas),
                service_name: Some("db-headless".into()),
                selector,
                template,
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some("data".into()),
                        ..Default::default()
                    },
                    spec: Some(PersistentVolumeClaimSpec::default()),
                    status: None,
                }]),
                ..Default::default()
            },
            status: None,
        }
    }

    /// Builder steps for a set's state.
    trait SetExt {
        fn with_status(self, current: &str, update: &str, current_replicas: i32) -> Self;
        fn partition(self, p: i32) -> Self;
        fn parallel(self) -> Self;
    }

    impl SetExt for StatefulSet {
        fn with_status(mut self, current: &str, update: &str, current_replicas: i32) -> Self {
            self.status = Some(StatefulSetStatus {
                current_revision: Some(current.into()),
                update_revision: Some(update.into()),
                current_replicas: Some(current_replicas),
                ..Default::default()
            });
            self
        }
        fn partition(mut self, p: i32) -> Self {
            self.spec.update_strategy = Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(p),
                    max_unavailable: None,
                }),
            });
            self
        }
        fn parallel(mut self) -> Self {
            self.spec.pod_management_policy = Some("Parallel".into());
            self
        }
    }

    /// Pod `db-<ord>` of `revision`, Running and (if `ready`) Ready.
    fn member(ord: i32, revision: &str, ready: bool) -> Pod {
        let mut p = pod(&format!("db-{ord}"), ready, 10);
        p.metadata.labels = Some(BTreeMap::from([(
            CONTROLLER_REVISION_HASH.to_string(),
            revision.to_string(),
        )]));
        p
    }

    fn names(pods: &[Pod]) -> Vec<String> {
        pods.iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect()
    }

    fn claims_of(n: i32) -> BTreeSet<String> {
        (0..n).map(|o| claim_name("data", "db", o)).collect()
    }

    #[test]
    fn the_first_sync_stores_a_revision_and_creates_ordinal_zero_with_its_claim() {
        let s = set(3, "db:1");
        let plan = plan(&s, &[], &BTreeSet::new(), &[], true, now());
        let rev = plan.create_revision.clone().unwrap_or_default();
        assert_eq!(rev.metadata.name, Some(revision_name(&s)));
        assert_eq!(rev.revision, Some(1));
        assert_eq!(
            names(&plan.create_pods),
            vec!["db-0"],
            "OrderedReady: one at a time"
        );
        let claim_names: Vec<String> = plan
            .create_claims
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        assert_eq!(claim_names, vec!["data-db-0"]);
        assert_eq!(
            plan.create_claims[0].metadata.labels,
            Some(BTreeMap::from([("app".into(), "db".into())]))
        );
        let pod = &plan.create_pods[0];
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(POD_NAME_LABEL).map(String::as_str), Some("db-0"));
        assert_eq!(
            labels.get(CONTROLLER_REVISION_HASH),
            rev.metadata.name.as_ref()
        );
        let spec = pod.spec.clone().unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some("db-0"));
        assert_eq!(spec.subdomain.as_deref(), Some("db-headless"));
        let vol = &spec.volumes.unwrap_or_default()[0];
        assert_eq!(
            vol.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("data-db-0")
        );
        let status = plan.status.unwrap_or_default();
        assert_eq!(status.replicas, 1, "the created Pod is counted at once");
        assert_eq!(status.collision_count, Some(0));
        assert_eq!(status.current_revision, status.update_revision);
    }

    #[test]
    fn ordered_ready_waits_for_the_previous_pod_to_be_ready() {
        let s = set(3, "db:1");
        let r = revision_name(&s);
        let revs = [new_revision(&s, 1)];
        let unready = plan(
            &s,
            &[member(0, &r, false)],
            &claims_of(1),
            &revs,
            true,
            now(),
        );
        assert!(unready.create_pods.is_empty());
        let ready = plan(
            &s,
            &[member(0, &r, true)],
            &claims_of(1),
            &revs,
            true,
            now(),
        );
        assert_eq!(names(&ready.create_pods), vec!["db-1"]);
        assert_eq!(ready.create_claims.len(), 1);
    }

    #[test]
    fn parallel_creates_every_missing_pod_at_once() {
        let s = set(3, "db:1").parallel();
        let plan = plan(&s, &[], &BTreeSet::new(), &[], true, now());
        assert_eq!(names(&plan.create_pods), vec!["db-0", "db-1", "db-2"]);
        assert_eq!(plan.create_claims.len(), 3);
    }

    #[test]
    fn scaling_down_deletes_the_highest_ordinal_first_and_keeps_its_claim() {
        let s = set(1, "db:1");
        let r = revision_name(&s);
        let pods: Vec<Pod> = (0..3).map(|o| member(o, &r, true)).collect();
        let plan = plan(
            &s,
            &pods,
            &claims_of(3),
            &[new_revision(&s, 1)],
            true,
            now(),
        );
        assert_eq!(plan.delete_pods, vec!["db-2"]);
        assert!(plan.delete_claims.is_empty(), "Retain is the default");
    }

    #[test]
    fn when_scaled_delete_removes_claims_of_gone_ordinals() {
        let mut s = set(1, "db:1");
        s.spec.persistent_volume_claim_retention_policy = Some(
            k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_scaled: Some("Delete".into()),
                when_deleted: Some("Retain".into()),
            },
        );
        let r = revision_name(&s);
        let plan = plan(
            &s,
            &[member(0, &r, true)],
            &claims_of(3),
            &[new_revision(&s, 1)],
            true,
            now(),
        );
        assert_eq!(plan.delete_claims, vec!["data-db-1", "data-db-2"]);
    }

    #[test]
    fn a_template_change_updates_from_the_highest_ordinal_one_at_a_time() {
        let old = set(3, "db:1");
        let new = set(3, "db:2");
        let (r1, r2) = (revision_name(&old), revision_name(&new));
        assert_ne!(r1, r2);
        let revs = [new_revision(&old, 1)];
        let pods: Vec<Pod> = (0..3).map(|o| member(o, &r1, true)).collect();
        let s = new.with_status(&r1, &r1, 3);
        let plan = plan(&s, &pods, &claims_of(3), &revs, true, now());
        assert_eq!(plan.create_revision.and_then(|r| r.revision), Some(2));
        assert_eq!(plan.delete_pods, vec!["db-2"]);
        let status = plan.status.unwrap_or_default();
        assert_eq!(status.current_revision.as_deref(), Some(r1.as_str()));
        assert_eq!(status.update_revision.as_deref(), Some(r2.as_str()));
        assert_eq!(status.current_replicas, Some(3));
        assert_eq!(status.updated_replicas, None);
    }

    #[test]
    fn a_recreated_pod_above_the_current_replicas_gets_the_update_revision() {
        let (new, r1, r2, revs) = image_update();
        let pods = vec![member(0, &r1, true), member(1, &r1, true)];
        let s = new.with_status(&r1, &r2, 2);
        let plan = plan(&s, &pods, &claims_of(3), &revs, true, now());
        let created = &plan.create_pods[0];
        assert_eq!(names(&plan.create_pods), vec!["db-2"]);
        assert_eq!(
            created
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(CONTROLLER_REVISION_HASH)),
            Some(&r2)
        );
        assert!(plan.create_claims.is_empty(), "the claim survives the Pod");
        let status = plan.status.unwrap_or_default();
        assert_eq!(status.updated_replicas, Some(1));
        assert_eq!(status.current_replicas, Some(2));
    }

    #[test]
    fn the_update_waits_for_an_unready_updated_pod() {
        let (new, r1, r2, revs) = image_update();
        let pods = vec![
            member(0, &r1, true),
            member(1, &r1, true),
            member(2, &r2, false),
        ];
        let s = new.with_status(&r1, &r2, 2);
        let plan = plan(&s, &pods, &claims_of(3), &revs, true, now());
        assert!(
            plan.delete_pods.is_empty(),
            "a faulty revision stops the rollout"
        );
        let status = plan.status.unwrap_or_default();
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.updated_replicas, Some(1));
    }

    #[test]
    fn a_partition_keeps_lower_ordinals_on_the_current_revision() {
        let (new, r1, r2, revs) = image_update();
        let pods = vec![
            member(0, &r1, true),
            member(1, &r1, true),
            member(2, &r2, true),
        ];
        let s = new.partition(2).with_status(&r1, &r2, 2);
        let plan = plan(&s, &pods, &claims_of(3), &revs, true, now());
        assert!(plan.delete_pods.is_empty());
        let status = plan.status.unwrap_or_default();
        assert_eq!(status.current_revision.as_deref(), Some(r1.as_str()));
        assert_eq!(status.updated_replicas, Some(1));
    }

    #[test]
    fn a_finished_update_makes_the_update_revision_current() {
        let old = set(2, "db:1");
        let new = set(2, "db:2");
        let (r1, r2) = (revision_name(&old), revision_name(&new));
        let revs = [new_revision(&old, 1), new_revision(&new, 2)];
        let pods = vec![member(0, &r2, true), member(1, &r2, true)];
        let s = new.with_status(&r1, &r2, 0);
        let plan = plan(&s, &pods, &claims_of(2), &revs, true, now());
        let status = plan.status.unwrap_or_default();
        assert_eq!(status.current_revision.as_deref(), Some(r2.as_str()));
        assert_eq!(status.current_replicas, Some(2));
        assert_eq!(status.updated_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(2));
    }

    #[test]
    fn going_back_to_an_old_template_renumbers_its_revision() {
        let old = set(1, "db:1");
        let new = set(1, "db:2");
        let revs = [new_revision(&old, 1), new_revision(&new, 2)];
        let plan = plan(&old, &[], &BTreeSet::new(), &revs, false, now());
        assert_eq!(plan.create_revision, None);
        assert_eq!(plan.renumber_revision.and_then(|r| r.revision), Some(3));
    }

    #[test]
    fn a_revision_name_taken_by_another_template_counts_a_collision() {
        let s = set(1, "db:1");
        let mut squatter = new_revision(&set(1, "other"), 1);
        squatter.metadata.name = Some(revision_name(&s));
        let plan = plan(&s, &[], &BTreeSet::new(), &[squatter], true, now());
        let created = plan.create_revision.unwrap_or_default();
        assert_ne!(created.metadata.name, Some(revision_name(&s)));
        assert_eq!(plan.status.and_then(|s| s.collision_count), Some(1));
    }

    #[test]
    fn old_revisions_beyond_the_history_limit_are_deleted() {
        let mut s = set(1, "db:9");
        s.spec.revision_history_limit = Some(1);
        let revs: Vec<ControllerRevision> = (1..=3)
            .map(|i| new_revision(&set(1, &format!("db:{i}")), i64::from(i)))
            .collect();
        let plan = plan(&s, &[], &BTreeSet::new(), &revs, false, now());
        assert_eq!(
            plan.delete_revisions,
            vec![
                revision_name(&set(1, "db:1")),
                revision_name(&set(1, "db:2"))
            ]
        );
    }

    #[test]
    fn ordinals_come_from_canonical_names_only() {
        let p = |n: &str| pod(n, true, 0);
        assert_eq!(ordinal("db", &p("db-0")), Some(0));
        assert_eq!(ordinal("db", &p("db-12")), Some(12));
        assert_eq!(ordinal("db", &p("db-01")), None);
        assert_eq!(ordinal("db", &p("db-primary-0")), None);
        assert_eq!(ordinal("db-primary", &p("db-primary-0")), Some(0));
    }
}
