//! Workload targets (Deployment, DaemonSet, StatefulSet): their observation from cached objects,
//! the `<target>-primary` workload built from the target, readiness and fingerprint; pure, no I/O.
//!
//! Every kind-specific step goes through [`Workload`] and a `match` on its variant, so another
//! workload kind is a variant there, a lookup in [`lookup`] and arms here.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde_json::Value;

use super::builders::{
    self, BuildConfig, BuildError, drop_toolkit_keys, include_labels_by_prefix, owner_reference,
    primary_value,
};
use super::configs::{self, ConfigKind, ConfigRenames, rename_refs};
use super::fingerprint::template_fingerprint;
use super::{Observation, Options, Snapshot, contains, is_owned_by, to_json};
use crate::api::{Canary, TargetKind};
use crate::core::plan::{Generated, PrimaryObs, TargetObs, TargetProblem};
use crate::core::workload::{FLAGGER_ID_ANNOTATION, SCALE_TO_ZERO_SELECTOR, Workload};

/// The workload of kind `kind` named `name` in `ns`, from the snapshot; `None` when it is not
/// cached, or `kind` is not a workload kind.
pub fn lookup(snapshot: &dyn Snapshot, kind: TargetKind, ns: &str, name: &str) -> Option<Workload> {
    match kind {
        TargetKind::Deployment => snapshot
            .deployment(ns, name)
            .map(|d| Workload::Deployment((*d).clone())),
        TargetKind::DaemonSet => snapshot
            .daemonset(ns, name)
            .map(|d| Workload::DaemonSet((*d).clone())),
        TargetKind::StatefulSet => snapshot
            .statefulset(ns, name)
            .map(|s| Workload::StatefulSet((*s).clone())),
        TargetKind::Service | TargetKind::KnativeService => None,
    }
}

/// Readiness of a workload, target or primary, by Flagger's rules (`core::readiness`); `since`
/// starts the deadline of kinds without a progress condition (DaemonSets).
pub use crate::core::readiness::workload_readiness as readiness;

/// The fingerprint of what a workload runs: its pod template plus the checksums of its tracked
/// configs. For a primary, pass the template through [`unprimary_template`] first.
pub fn fingerprint(template: &PodTemplateSpec, configs: &BTreeMap<String, String>) -> String {
    template_fingerprint(template, configs)
}

/// A Deployment, DaemonSet or StatefulSet target: the canary is the target itself, the primary
/// is `<target>-primary` of the same kind; generated are the primary, the apex/primary/canary
/// Services (and, for a StatefulSet, its headless `<serviceName>-primary`), the `-primary` copies
/// of tracked configs and the primary HPA.
pub fn observe(
    opts: &Options<'_>,
    snapshot: &dyn Snapshot,
    canary: &Canary,
    kind: TargetKind,
    name: &str,
    ns: &str,
    now: DateTime<Utc>,
) -> Result<Observation, TargetProblem> {
    let target = lookup(snapshot, kind, ns, name)
        .ok_or_else(|| TargetProblem::Missing(format!("{kind} {name}.{ns} not found")))?;
    let label =
        selector_label(&target, opts.build).map_err(|e| TargetProblem::Invalid(e.to_string()))?;
    let template = target
        .template()
        .cloned()
        .ok_or_else(|| TargetProblem::Invalid(format!("{kind} {name}.{ns} has no pod template")))?;
    let headless = statefulset_service_name(&target);
    if let Some(governing) = &headless
        && *governing == canary.spec.service_name()
    {
        return Err(TargetProblem::Invalid(format!(
            "StatefulSet {name}.{ns} serviceName {governing:?} is the Canary's service name: the \
             primary's headless Service {governing}-primary would collide with the generated \
             primary Service; give the StatefulSet its own headless Service"
        )));
    }

    // Tracked configs: checksums of the target's and of the primary's copies.
    let mut target_configs = BTreeMap::new();
    let mut primary_configs = BTreeMap::new();
    let mut tracked = Vec::new();
    let mut copies: Vec<(Value, bool)> = Vec::new(); // (desired copy, exists)
    if opts.config_tracking {
        let spec = template.spec.clone().unwrap_or_default();
        for r in configs::tracked_refs(&spec) {
            let copy_name = configs::primary_name(&r.name);
            match r.kind {
                ConfigKind::ConfigMap => {
                    let Some(cm) = snapshot
                        .config_map(ns, &r.name)
                        .filter(|c| configs::is_tracked_configmap(c))
                    else {
                        continue;
                    };
                    target_configs.insert(
                        configs::status_key(r.kind, &r.name),
                        configs::checksum_configmap(&cm),
                    );
                    let copy = snapshot.config_map(ns, &copy_name);
                    if let Some(c) = &copy {
                        primary_configs.insert(
                            configs::status_key(r.kind, &r.name),
                            configs::checksum_configmap(c),
                        );
                    }
                    copies.push((
                        to_json(&configs::primary_configmap(&cm, canary)),
                        copy.is_some(),
                    ));
                }
                ConfigKind::Secret => {
                    let Some(s) = snapshot
                        .secret(ns, &r.name)
                        .filter(|s| configs::is_tracked_secret(s))
                    else {
                        continue;
                    };
                    target_configs.insert(
                        configs::status_key(r.kind, &r.name),
                        configs::checksum_secret(&s),
                    );
                    let copy = snapshot.secret(ns, &copy_name);
                    if let Some(c) = &copy {
                        primary_configs.insert(
                            configs::status_key(r.kind, &r.name),
                            configs::checksum_secret(c),
                        );
                    }
                    copies.push((
                        to_json(&configs::primary_secret(&s, canary)),
                        copy.is_some(),
                    ));
                }
            }
            tracked.push(r);
        }
    }
    let renames: ConfigRenames = configs::renames_for(tracked.iter());
    let target_fp = fingerprint(&template, &target_configs);

    let primary = lookup(
        snapshot,
        target.target_kind(),
        ns,
        &primary_value(target.name()),
    );
    let hpa_ref = canary
        .spec
        .autoscaler_ref
        .as_ref()
        .filter(|a| a.kind == "HorizontalPodAutoscaler");
    let target_hpa = hpa_ref
        .and_then(|a| snapshot.hpa(ns, &a.name))
        .map(|h| (*h).clone());
    let so_ref = canary
        .spec
        .autoscaler_ref
        .as_ref()
        .filter(|a| a.kind == "ScaledObject");
    let target_so = so_ref.and_then(|a| snapshot.scaled_object(ns, &a.name));
    // DaemonSets have no progress condition: their deadline counts from the run start.
    let deadline = canary.spec.progress_deadline();
    let since = canary
        .status
        .as_ref()
        .and_then(|s| {
            s.run_start_time
                .as_ref()
                .or(s.last_transition_time.as_ref())
        })
        .map(crate::api::time::from_time);
    let primary_obs = primary.as_ref().map(|p| {
        let fp = p
            .template()
            .map(|t| unprimary_template(t, &label, &renames))
            .map(|t| fingerprint(&t, &primary_configs))
            .unwrap_or_default();
        PrimaryObs {
            fingerprint: fp,
            readiness: readiness(
                p,
                canary.spec.primary_ready_threshold(),
                deadline,
                since,
                now,
            ),
            replicas: p.desired_replicas(),
        }
    });
    let target_obs = TargetObs {
        kind: target.target_kind(),
        name: target.name().to_string(),
        selector: label.clone(),
        fingerprint: target_fp.clone(),
        tracked_configs: target_configs,
        replicas: target.desired_replicas(),
        scale_up_replicas: match &target_so {
            Some(so) => scale_from_zero_with_scaled_object(&target, so),
            None => scale_from_zero_replicas(&target, primary.as_ref(), target_hpa.as_ref()),
        },
        readiness: readiness(
            &target,
            canary.spec.canary_ready_threshold(),
            deadline,
            since,
            now,
        ),
        pods: target.pod_counts(),
    };

    // Desired generated objects.
    let flagger_id = target_fp.trim_start_matches("v1:").to_string();
    let desired_primary = primary_workload(
        canary,
        &target,
        &label,
        &renames,
        opts.build,
        &flagger_id,
        canary.spec.autoscaler_ref.is_none(),
    );
    let mut generated = Generated {
        primary: Some(desired_primary),
        ..Default::default()
    };
    if let Ok(services) = builders::canary_services(canary, &label, &template) {
        for desired in services {
            let name = desired.metadata.name.clone().unwrap_or_default();
            let live = snapshot.service(ns, &name);
            let desired = match &live {
                Some(l) if !is_owned_by(l.as_ref(), canary) => {
                    builders::merge_existing_apex(&desired, l)
                }
                _ => desired,
            };
            let desired_json = to_json(&desired);
            let in_sync = live
                .as_ref()
                .is_some_and(|l| contains(&to_json(l.as_ref()), &desired_json));
            if !in_sync {
                generated.services_to_apply.push(desired_json);
            }
        }
    }
    if let Some(governing) = &headless {
        let target_headless = snapshot.service(ns, governing);
        let desired = builders::primary_headless_service(
            canary,
            &label,
            governing,
            target_headless.as_deref(),
        );
        let desired_json = to_json(&desired);
        let live = snapshot.service(ns, &primary_value(governing));
        if !live
            .as_ref()
            .is_some_and(|l| contains(&to_json(l.as_ref()), &desired_json))
        {
            generated.services_to_apply.push(desired_json);
        }
    }
    for (copy, exists) in copies {
        if !exists {
            generated.missing_configs.push(copy.clone());
        }
        generated.promoted_configs.push(copy);
    }
    if let (Some(a), Some(hpa)) = (hpa_ref, &target_hpa) {
        let desired = to_json(&builders::primary_hpa(canary, hpa));
        if snapshot.hpa(ns, &primary_value(&a.name)).is_none() {
            generated.missing_hpa = Some(desired.clone());
        }
        generated.promoted_hpa = Some(desired);
    }
    if let (Some(a), Some(so)) = (so_ref, &target_so) {
        let desired = builders::primary_scaled_object(canary, so);
        if snapshot
            .scaled_object(ns, &primary_value(&a.name))
            .is_none()
        {
            generated.missing_hpa = Some(desired.clone());
        }
        generated.promoted_hpa = Some(desired);
    }
    Ok(Observation {
        target: target_obs,
        primary: primary_obs,
        generated,
    })
}

/// The governing (headless) Service of a StatefulSet target, when it names one.
fn statefulset_service_name(target: &Workload) -> Option<String> {
    match target {
        Workload::StatefulSet(s) => s.spec.service_name.clone().filter(|n| !n.is_empty()),
        Workload::Deployment(_) | Workload::DaemonSet(_) => None,
    }
}

/// The selector label Flagger uses: the first of `cfg.selector_labels` present in the target's
/// `spec.selector.matchLabels`, with its value.
pub fn selector_label(
    target: &Workload,
    cfg: &BuildConfig,
) -> Result<(String, String), BuildError> {
    let labels = target.match_labels();
    cfg.selector_labels
        .iter()
        .find_map(|l| labels.get(l).map(|v| (l.clone(), v.clone())))
        .ok_or_else(|| BuildError::NoSelectorLabel {
            kind: target.kind().to_lowercase(),
            name: target.name().to_string(),
            namespace: target.metadata().namespace.clone().unwrap_or_default(),
            labels: cfg.selector_labels.clone(),
        })
}

/// Labels minus toolkit keys, with the selector label set to `value` (Flagger's
/// `makePrimaryLabels`).
fn with_selector_label(
    labels: &BTreeMap<String, String>,
    key: &str,
    value: &str,
) -> BTreeMap<String, String> {
    let mut out = drop_toolkit_keys(labels);
    out.insert(key.to_string(), value.to_string());
    out
}

/// Rewrites, in pod anti-affinity terms and topology spread constraints, selector values `from`
/// of the key `key` to `to`. The primary's pods carry `<value>-primary`, so a target that spreads
/// away from its own pods must do the same for the primary.
pub(crate) fn rewrite_self_selectors(spec: &mut PodSpec, key: &str, from: &str, to: &str) {
    let rewrite = |sel: Option<&mut LabelSelector>| {
        let Some(sel) = sel else { return };
        if let Some(v) = sel.match_labels.as_mut().and_then(|m| m.get_mut(key))
            && v == from
        {
            *v = to.to_string();
        }
        for expr in sel.match_expressions.iter_mut().flatten() {
            if expr.key == key {
                for v in expr.values.iter_mut().flatten() {
                    if v == from {
                        *v = to.to_string();
                    }
                }
            }
        }
    };
    for c in spec.topology_spread_constraints.iter_mut().flatten() {
        rewrite(c.label_selector.as_mut());
    }
    if let Some(anti) = spec
        .affinity
        .as_mut()
        .and_then(|a| a.pod_anti_affinity.as_mut())
    {
        for term in anti
            .preferred_during_scheduling_ignored_during_execution
            .iter_mut()
            .flatten()
        {
            rewrite(term.pod_affinity_term.label_selector.as_mut());
        }
        for term in anti
            .required_during_scheduling_ignored_during_execution
            .iter_mut()
            .flatten()
        {
            rewrite(term.label_selector.as_mut());
        }
    }
}

/// The primary's pod template derived from the target's (see [`primary_workload`]).
pub fn primary_template(
    target: &PodTemplateSpec,
    label: &(String, String),
    renames: &ConfigRenames,
    flagger_id: &str,
) -> PodTemplateSpec {
    let (key, value) = label;
    let pv = primary_value(value);
    let meta = target.metadata.clone().unwrap_or_default();
    let mut annotations = meta
        .annotations
        .as_ref()
        .map(drop_toolkit_keys)
        .unwrap_or_default();
    annotations.insert(FLAGGER_ID_ANNOTATION.to_string(), flagger_id.to_string());
    let labels = with_selector_label(&meta.labels.unwrap_or_default(), key, &pv);
    let spec = target.spec.clone().map(|mut spec| {
        rename_refs(&mut spec, renames);
        rewrite_self_selectors(&mut spec, key, value, &pv);
        spec
    });
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        }),
        spec,
    }
}

/// Removes the scale-to-zero node selector (and the node selector itself if nothing else is
/// left), so the primary DaemonSet runs everywhere the target was meant to.
pub(crate) fn strip_scale_to_zero(spec: &mut PodSpec) {
    if let Some(ns) = spec.node_selector.as_mut() {
        ns.remove(SCALE_TO_ZERO_SELECTOR);
        if ns.is_empty() {
            spec.node_selector = None;
        }
    }
}

/// The desired `<target>-primary` workload.
///
/// Object labels are the target's filtered by `cfg.include_label_prefix` plus the selector label
/// set to `<value>-primary`; annotations the target's minus Flux toolkit keys; the Canary is the
/// controller owner. The selector is `{label: <value>-primary}`; the template comes from
/// [`primary_template`] (config references renamed per `renames`, self-referencing anti-affinity
/// and spread selectors rewritten, `flagger-id` set). Deployments copy `progressDeadlineSeconds`,
/// `minReadySeconds`, `revisionHistoryLimit`, `strategy`, and, when `with_replicas` (on creation,
/// or on promotion without an autoscaler), `replicas` = the target's (at least 1). DaemonSets copy
/// `updateStrategy`, `minReadySeconds`, `revisionHistoryLimit` and lose the scale-to-zero node
/// selector. StatefulSets copy `podManagementPolicy`, `updateStrategy` (the partition stays the
/// user's), `minReadySeconds`, `revisionHistoryLimit`, `persistentVolumeClaimRetentionPolicy`
/// and `volumeClaimTemplates` (so the primary's Pods get PVCs of their own,
/// `<claim>-<target>-primary-<ordinal>`), replicas as Deployments do, and are governed by the
/// headless Service `<serviceName>-primary`.
pub fn primary_workload(
    canary: &Canary,
    target: &Workload,
    label: &(String, String),
    renames: &ConfigRenames,
    cfg: &BuildConfig,
    flagger_id: &str,
    with_replicas: bool,
) -> Workload {
    let (key, value) = label;
    let pv = primary_value(value);
    let tmeta = target.metadata();
    let metadata = ObjectMeta {
        name: Some(primary_value(target.name())),
        namespace: canary
            .metadata
            .namespace
            .clone()
            .or_else(|| tmeta.namespace.clone()),
        labels: Some(with_selector_label(
            &include_labels_by_prefix(
                &tmeta.labels.clone().unwrap_or_default(),
                &cfg.include_label_prefix,
            ),
            key,
            &pv,
        )),
        annotations: Some(
            tmeta
                .annotations
                .as_ref()
                .map(drop_toolkit_keys)
                .unwrap_or_default(),
        ),
        owner_references: Some(vec![owner_reference(canary)]),
        ..Default::default()
    };
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([(key.clone(), pv.clone())])),
        match_expressions: None,
    };
    let empty = PodTemplateSpec::default();
    let template = primary_template(
        target.template().unwrap_or(&empty),
        label,
        renames,
        flagger_id,
    );
    match target {
        Workload::Deployment(d) => {
            let ts = d.spec.clone();
            let replicas = with_replicas.then(|| ts.replicas.filter(|r| *r > 0).unwrap_or(1));
            Workload::Deployment(Deployment {
                metadata,
                spec: DeploymentSpec {
                    progress_deadline_seconds: ts.progress_deadline_seconds,
                    min_ready_seconds: ts.min_ready_seconds,
                    revision_history_limit: ts.revision_history_limit,
                    strategy: ts.strategy,
                    replicas,
                    selector,
                    template,
                    paused: None,
                },
                status: None,
            })
        }
        Workload::StatefulSet(s) => {
            let ts = s.spec.clone();
            let replicas = with_replicas.then(|| ts.replicas.filter(|r| *r > 0).unwrap_or(1));
            Workload::StatefulSet(StatefulSet {
                metadata,
                spec: StatefulSetSpec {
                    min_ready_seconds: ts.min_ready_seconds,
                    ordinals: ts.ordinals,
                    persistent_volume_claim_retention_policy: ts
                        .persistent_volume_claim_retention_policy,
                    pod_management_policy: ts.pod_management_policy,
                    replicas,
                    revision_history_limit: ts.revision_history_limit,
                    selector,
                    service_name: ts
                        .service_name
                        .filter(|n| !n.is_empty())
                        .map(|n| primary_value(&n)),
                    template,
                    update_strategy: ts.update_strategy,
                    volume_claim_templates: ts.volume_claim_templates.map(|claims| {
                        claims
                            .into_iter()
                            .map(|mut c| {
                                // Server-set fields of the template are not the primary's to own.
                                c.status = None;
                                c
                            })
                            .collect()
                    }),
                },
                status: None,
            })
        }
        Workload::DaemonSet(d) => {
            let ts = d.spec.clone();
            let mut template = template;
            if let Some(spec) = template.spec.as_mut() {
                strip_scale_to_zero(spec);
            }
            Workload::DaemonSet(DaemonSet {
                metadata,
                spec: DaemonSetSpec {
                    min_ready_seconds: ts.min_ready_seconds,
                    revision_history_limit: ts.revision_history_limit,
                    update_strategy: ts.update_strategy,
                    selector,
                    template,
                },
                status: None,
            })
        }
    }
}

/// Replicas to give a scaled-to-zero Deployment or StatefulSet target when a run starts (Flagger's
/// `ScaleFromZero`): its own `spec.replicas` if > 0; else, without an autoscaler (`hpa` is
/// `None`), the primary's replicas if > 0; with an HPA its `minReplicas` if > 1; else 1.
/// DaemonSets are scaled by node selector, not replicas, and always get 1.
///
/// A KEDA ScaledObject autoscaler goes through [`scale_from_zero_with_scaled_object`] instead.
pub fn scale_from_zero_replicas(
    target: &Workload,
    primary: Option<&Workload>,
    hpa: Option<&HorizontalPodAutoscaler>,
) -> i32 {
    let replicas = |w: &Workload| match w {
        Workload::Deployment(d) => d.spec.replicas,
        Workload::StatefulSet(s) => s.spec.replicas,
        Workload::DaemonSet(_) => None,
    };
    if matches!(target, Workload::DaemonSet(_)) {
        return 1;
    }
    if let Some(r) = replicas(target).filter(|r| *r > 0) {
        return r;
    }
    match hpa {
        None => primary.and_then(replicas).filter(|r| *r > 0).unwrap_or(1),
        Some(h) => h.spec.min_replicas.filter(|m| *m > 1).unwrap_or(1),
    }
}

/// Replicas for a scaled-to-zero target whose autoscaler is a KEDA ScaledObject (Flagger's
/// `ScaleFromZero`): its own `spec.replicas` if > 0, else the ScaledObject's `minReplicaCount`
/// if > 1, else 1.
pub fn scale_from_zero_with_scaled_object(target: &Workload, so: &Value) -> i32 {
    if matches!(target, Workload::DaemonSet(_)) {
        return 1;
    }
    let own = match target {
        Workload::Deployment(d) => d.spec.replicas,
        Workload::StatefulSet(s) => s.spec.replicas,
        Workload::DaemonSet(_) => None,
    };
    if let Some(r) = own.filter(|r| *r > 0) {
        return r;
    }
    so.pointer("/spec/minReplicaCount")
        .and_then(Value::as_i64)
        .and_then(|m| i32::try_from(m).ok())
        .filter(|m| *m > 1)
        .unwrap_or(1)
}

/// Undoes what [`primary_template`] did to a target template: the selector label back to
/// `<value>`, config references back to their original names, the `flagger-id` annotation
/// removed, self-referencing anti-affinity and spread selectors back to
/// `<value>`. Then `template_fingerprint(target) == template_fingerprint(unprimary(primary))`
/// exactly when the primary runs the target's revision.
///
/// Limitation: a target that itself refers to `<value>-primary` in an anti-affinity selector, or
/// mounts a config literally named like a renamed copy, is not restored exactly; such a primary
/// then looks different from the target (a spurious run, never a missed one).
pub fn unprimary_template(
    primary_template: &PodTemplateSpec,
    label: &(String, String),
    renames: &ConfigRenames,
) -> PodTemplateSpec {
    let (key, value) = label;
    let mut t = primary_template.clone();
    if let Some(meta) = t.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut()
            && labels.contains_key(key)
        {
            labels.insert(key.clone(), value.clone());
        }
        if let Some(a) = meta.annotations.as_mut() {
            a.remove(FLAGGER_ID_ANNOTATION);
        }
    }
    if let Some(spec) = t.spec.as_mut() {
        let inverse: ConfigRenames = renames
            .iter()
            .map(|((kind, original), renamed)| ((*kind, renamed.clone()), original.clone()))
            .collect();
        rename_refs(spec, &inverse);
        rewrite_self_selectors(spec, key, &primary_value(value), value);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::builders::fixtures::*;
    use crate::target::configs::{renames_for, tracked_refs};
    use k8s_openapi::api::apps::v1::DaemonSetUpdateStrategy;

    fn renames() -> ConfigRenames {
        renames_for(&tracked_refs(template().spec.as_ref().unwrap()))
    }

    fn configs() -> BTreeMap<String, String> {
        map(&[
            ("configmap/podinfo-config-vol", "0123456789abcdef"),
            ("secret/podinfo-secret-env", "fedcba9876543210"),
        ])
    }

    #[test]
    fn selector_label_is_the_first_configured_label_present() {
        let cfg = BuildConfig::default();
        assert_eq!(selector_label(&deployment(None), &cfg), Ok(label()));
        let Workload::Deployment(mut d) = deployment(None) else {
            unreachable!()
        };
        d.spec.selector.match_labels = Some(map(&[
            ("app.kubernetes.io/name", "web"),
            ("name", "podinfo-name"),
        ]));
        assert_eq!(
            selector_label(&Workload::Deployment(d.clone()), &cfg),
            Ok(("name".into(), "podinfo-name".into()))
        );
        d.spec.selector.match_labels = Some(map(&[("component", "web")]));
        let err = selector_label(&Workload::Deployment(d), &cfg).unwrap_err();
        assert_eq!(
            err.to_string(),
            "deployment podinfo.test spec.selector.matchLabels must contain one of [app name app.kubernetes.io/name]"
        );
    }

    #[test]
    fn primary_deployment_is_derived_from_the_target() {
        let cfg = BuildConfig {
            include_label_prefix: vec!["team".into()],
            ..Default::default()
        };
        let Workload::Deployment(p) = primary_workload(
            &canary(),
            &deployment(Some(3)),
            &label(),
            &renames(),
            &cfg,
            "id-1",
            true,
        ) else {
            panic!("kind changed")
        };
        assert_eq!(p.metadata.name.as_deref(), Some("podinfo-primary"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("test"));
        assert_eq!(
            p.metadata.labels,
            Some(map(&[
                ("app", "podinfo-primary"),
                ("team", "a"),
                ("team.example.com/owner", "b"),
            ]))
        );
        assert_eq!(p.metadata.annotations, Some(map(&[("note", "keep")])));
        assert_eq!(
            p.metadata.owner_references.as_ref().unwrap()[0].kind,
            "Canary"
        );
        assert_eq!(
            p.spec.selector.match_labels,
            Some(map(&[("app", "podinfo-primary")]))
        );
        assert_eq!(p.spec.replicas, Some(3));
        assert_eq!(p.spec.progress_deadline_seconds, Some(60));
        assert_eq!(p.spec.min_ready_seconds, Some(5));
        assert_eq!(p.spec.revision_history_limit, Some(3));
        assert_eq!(
            p.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
            Some("Recreate")
        );

        let meta = p.spec.template.metadata.as_ref().unwrap();
        assert_eq!(
            meta.labels,
            Some(map(&[("app", "podinfo-primary"), ("version", "6.0.0")]))
        );
        assert_eq!(
            meta.annotations,
            Some(map(&[
                ("flagger-id", "id-1"),
                ("prometheus.io/scrape", "true")
            ]))
        );
        let spec = p.spec.template.spec.as_ref().unwrap();
        let names: Vec<String> = tracked_refs(spec).into_iter().map(|r| r.name).collect();
        assert_eq!(
            names,
            vec!["podinfo-config-vol-primary", "podinfo-secret-env-primary"]
        );
        let anti = spec
            .affinity
            .as_ref()
            .unwrap()
            .pod_anti_affinity
            .as_ref()
            .unwrap();
        let expr = &anti
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()[0]
            .label_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            expr.values,
            Some(vec!["podinfo-primary".to_string(), "other".to_string()])
        );
        let spread = &spec.topology_spread_constraints.as_ref().unwrap()[0];
        assert_eq!(
            spread.label_selector.as_ref().unwrap().match_labels,
            Some(map(&[("app", "podinfo-primary")]))
        );
        // The image and everything else are copied as they are.
        assert_eq!(
            spec.containers[0].image,
            template().spec.unwrap().containers[0].image
        );
    }

    /// The primary built from `target` with the default configuration, as initialisation builds it.
    fn default_primary(target: &Workload) -> Workload {
        primary_workload(
            &canary(),
            target,
            &label(),
            &renames(),
            &BuildConfig::default(),
            "id",
            true,
        )
    }

    #[test]
    fn primary_replicas_follow_with_replicas_and_are_at_least_one() {
        let cfg = BuildConfig::default();
        let replicas = |target: Option<i32>, with: bool| {
            let w = primary_workload(
                &canary(),
                &deployment(target),
                &label(),
                &renames(),
                &cfg,
                "id",
                with,
            );
            match w {
                Workload::Deployment(d) => d.spec.replicas,
                Workload::DaemonSet(_) | Workload::StatefulSet(_) => panic!("kind changed"),
            }
        };
        assert_eq!(replicas(Some(4), true), Some(4));
        assert_eq!(replicas(Some(0), true), Some(1));
        assert_eq!(replicas(None, true), Some(1));
        assert_eq!(replicas(Some(4), false), None);
    }

    #[test]
    fn primary_daemonset_copies_update_strategy_and_drops_scale_to_zero() {
        let Workload::Deployment(d) = deployment(None) else {
            unreachable!()
        };
        let mut template = d.spec.template.clone();
        template.spec.as_mut().unwrap().node_selector = Some(map(&[
            (SCALE_TO_ZERO_SELECTOR, "true"),
            ("kubernetes.io/os", "linux"),
        ]));
        let target = Workload::DaemonSet(DaemonSet {
            metadata: d.metadata.clone(),
            spec: DaemonSetSpec {
                min_ready_seconds: Some(7),
                revision_history_limit: Some(2),
                update_strategy: Some(DaemonSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: None,
                }),
                selector: d.spec.selector.clone(),
                template,
            },
            status: None,
        });
        let Workload::DaemonSet(p) = default_primary(&target) else {
            panic!("kind changed")
        };
        assert_eq!(p.metadata.name.as_deref(), Some("podinfo-primary"));
        assert_eq!(p.spec.min_ready_seconds, Some(7));
        assert_eq!(p.spec.revision_history_limit, Some(2));
        assert_eq!(
            p.spec.update_strategy.and_then(|s| s.type_),
            Some("RollingUpdate".into())
        );
        assert_eq!(
            p.spec.template.spec.unwrap().node_selector,
            Some(map(&[("kubernetes.io/os", "linux")]))
        );
    }

    #[test]
    fn primary_statefulset_gets_its_own_headless_service_and_claims_and_keeps_the_partition() {
        use k8s_openapi::api::apps::v1::{
            RollingUpdateStatefulSetStrategy, StatefulSetUpdateStrategy,
        };
        let Workload::Deployment(d) = deployment(Some(3)) else {
            unreachable!()
        };
        let claim: k8s_openapi::api::core::v1::PersistentVolumeClaim =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"]},
                "status": {"phase": "Pending"}
            }))
            .unwrap_or_default();
        let strategy = StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                partition: Some(1),
                max_unavailable: None,
            }),
        };
        let target = Workload::StatefulSet(StatefulSet {
            metadata: d.metadata.clone(),
            spec: StatefulSetSpec {
                replicas: Some(3),
                service_name: Some("podinfo-headless".into()),
                pod_management_policy: Some("Parallel".into()),
                update_strategy: Some(strategy.clone()),
                selector: d.spec.selector.clone(),
                template: d.spec.template.clone(),
                volume_claim_templates: Some(vec![claim]),
                ..Default::default()
            },
            status: None,
        });
        let Workload::StatefulSet(p) = default_primary(&target) else {
            panic!("kind changed")
        };
        assert_eq!(p.metadata.name.as_deref(), Some("podinfo-primary"));
        assert_eq!(
            p.spec.service_name.as_deref(),
            Some("podinfo-headless-primary")
        );
        assert_eq!(p.spec.replicas, Some(3));
        assert_eq!(p.spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(p.spec.update_strategy, Some(strategy));
        assert_eq!(
            p.spec.selector.match_labels,
            Some(map(&[("app", "podinfo-primary")]))
        );
        let claims = p.spec.volume_claim_templates.unwrap_or_default();
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
        assert_eq!(claims[0].status, None, "server-set status is not applied");
    }

    #[test]
    fn scale_from_zero_follows_flagger_precedence() {
        let hpa_min = |m| hpa(Some(m), 10);
        let cases = [
            (
                "target replicas win",
                deployment(Some(3)),
                Some(deployment(Some(5))),
                None,
                3,
            ),
            (
                "else the primary's without autoscaler",
                deployment(Some(0)),
                Some(deployment(Some(5))),
                None,
                5,
            ),
            (
                "primary at zero means one",
                deployment(Some(0)),
                Some(deployment(Some(0))),
                None,
                1,
            ),
            ("no primary means one", deployment(None), None, None, 1),
            (
                "hpa minimum above one",
                deployment(Some(0)),
                Some(deployment(Some(5))),
                Some(hpa_min(4)),
                4,
            ),
            (
                "hpa minimum of one",
                deployment(Some(0)),
                Some(deployment(Some(5))),
                Some(hpa_min(1)),
                1,
            ),
        ];
        for (name, target, primary, hpa, want) in cases {
            assert_eq!(
                scale_from_zero_replicas(&target, primary.as_ref(), hpa.as_ref()),
                want,
                "{name}"
            );
        }
    }
    #[test]
    fn unprimary_of_the_primary_has_the_target_fingerprint() {
        let mut with_scale_to_zero = template();
        with_scale_to_zero.spec.as_mut().unwrap().node_selector =
            Some(map(&[(SCALE_TO_ZERO_SELECTOR, "true"), ("os", "linux")]));
        // A template always carries the selector label (the API server requires the selector to
        // match it); annotations are optional.
        let mut no_annotations = template();
        no_annotations.metadata.as_mut().unwrap().annotations = None;
        for target in [template(), with_scale_to_zero, no_annotations] {
            let primary = primary_template(&target, &label(), &renames(), "c0ffee");
            assert_ne!(primary, target);
            let back = unprimary_template(&primary, &label(), &renames());
            assert_eq!(
                template_fingerprint(&back, &configs()),
                template_fingerprint(&target, &configs())
            );
        }
    }

    #[test]
    fn unprimary_of_an_older_primary_differs_from_the_new_target() {
        let old = template();
        let primary = primary_template(&old, &label(), &renames(), "id");
        let mut new = template();
        new.spec.as_mut().unwrap().containers[0].image = Some("podinfo:6.0.1".into());
        let back = unprimary_template(&primary, &label(), &renames());
        assert_ne!(
            template_fingerprint(&back, &configs()),
            template_fingerprint(&new, &configs())
        );
        // Same template, but the primary's config copies hold older contents.
        let mut older = configs();
        older.insert(
            "configmap/podinfo-config-vol".into(),
            "aaaaaaaaaaaaaaaa".into(),
        );
        assert_ne!(
            template_fingerprint(&back, &older),
            template_fingerprint(&old, &configs())
        );
    }
}
