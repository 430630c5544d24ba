//! Builds the [`Observed`] snapshot for one Canary from reflector caches; reads memory only, no API calls.
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::plan::{Generated, Observed, PrimaryObs, TargetObs, TargetProblem};
use super::readiness::{self, Readiness};
use super::workload::Workload;
use crate::api::validation::{self, ValidationContext};
use crate::api::{Canary, Provider, TargetKind};
use crate::router::knative;
use crate::target::builders::{self, BuildConfig};
use crate::target::configs::{self, ConfigKind, ConfigRenames};
use crate::target::fingerprint;
use crate::target::service as service_target;

/// The finalizer Flagger uses for `revertOnDeletion`.
pub const FINALIZER: &str = "finalizer.flagger.app";

/// Reflector caches of everything a Canary depends on.
#[derive(Clone)]
pub struct Stores {
    /// Deployments (targets and primaries).
    pub deployments: Store<Deployment>,
    /// DaemonSets (targets and primaries).
    pub daemonsets: Store<DaemonSet>,
    /// Services.
    pub services: Store<Service>,
    /// ConfigMaps.
    pub configmaps: Store<ConfigMap>,
    /// Secrets.
    pub secrets: Store<Secret>,
    /// HorizontalPodAutoscalers.
    pub hpas: Store<HorizontalPodAutoscaler>,
    /// Knative Services (`serving.knative.dev/v1`).
    pub knative_services: Store<DynamicObject>,
    /// Set once the Knative Services have been listed. Knative Serving is often not installed,
    /// so the other caches do not wait for this one; a Knative target waits instead.
    pub knative_synced: Arc<AtomicBool>,
}

/// Controller settings that observation depends on.
#[derive(Clone, Debug)]
pub struct ObserveConfig {
    /// `--mesh-provider`.
    pub mesh_provider: String,
    /// `--min-interval`.
    pub min_interval: Duration,
    /// `--selector-labels` and `--include-label-prefix`.
    pub build: BuildConfig,
    /// `--enable-config-tracking`.
    pub config_tracking: bool,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        Self {
            mesh_provider: "istio".into(),
            min_interval: crate::api::defaults::MIN_INTERVAL,
            build: BuildConfig::default(),
            config_tracking: true,
        }
    }
}

fn get<K>(store: &Store<K>, name: &str, ns: &str) -> Option<K>
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    store
        .get(&ObjectRef::new(name).within(ns))
        .map(|a| (*a).clone())
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// True when every field in `desired` is present in `live` with the same value (lists must have
/// the same length and match element-wise): the drift notion of server-side apply.
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| l.get(k).is_some_and(|lv| contains(lv, dv)) || dv.is_null()),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(a, b)| contains(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// Builds the snapshot. `now` only feeds readiness deadlines.
pub fn observe(
    cfg: &ObserveConfig,
    stores: &Stores,
    canary: &Canary,
    now: DateTime<Utc>,
) -> Observed {
    let ctx = ValidationContext {
        default_provider: cfg.mesh_provider.clone(),
        min_interval: cfg.min_interval,
    };
    let problems = validation::validate_canary(&canary.spec, &ctx);
    let provider: Option<Provider> = canary.spec.provider(&cfg.mesh_provider).ok();
    let interval = canary.spec.interval(cfg.min_interval);
    let has_finalizer = canary.finalizers().iter().any(|f| f == FINALIZER);
    let mut o = Observed {
        canary: canary.clone(),
        provider,
        problems,
        target: Err(TargetProblem::Missing(String::new())),
        primary: None,
        generated: Generated::default(),
        interval,
        has_finalizer,
        routes: None,
        target_ready_pods: None,
    };
    match observe_workloads(cfg, stores, canary, now) {
        Ok((t, p, g)) => {
            o.target = Ok(t);
            o.primary = p;
            o.generated = g;
        }
        Err(e) => o.target = Err(e),
    }
    o
}

fn observe_workloads(
    cfg: &ObserveConfig,
    stores: &Stores,
    canary: &Canary,
    now: DateTime<Utc>,
) -> Result<(TargetObs, Option<PrimaryObs>, Generated), TargetProblem> {
    let ns = canary.namespace().unwrap_or_default();
    let Some(tref) = canary.spec.target_ref.as_ref() else {
        return Err(TargetProblem::Invalid("spec.targetRef is required".into()));
    };
    let target = match TargetKind::of(tref) {
        Some(TargetKind::KnativeService) => return observe_knative(stores, &tref.name, &ns),
        Some(TargetKind::Service) => {
            return observe_service(cfg, stores, canary, &tref.name, &ns);
        }
        Some(TargetKind::Deployment) => {
            get(&stores.deployments, &tref.name, &ns).map(Workload::Deployment)
        }
        Some(TargetKind::DaemonSet) => {
            get(&stores.daemonsets, &tref.name, &ns).map(Workload::DaemonSet)
        }
        None => {
            return Err(TargetProblem::Invalid(format!(
                "targetRef kind {:?} is not supported (Deployment, DaemonSet and Service are)",
                tref.kind
            )));
        }
    };
    let target = target.ok_or_else(|| {
        TargetProblem::Missing(format!("{} {}.{ns} not found", tref.kind, tref.name))
    })?;
    let label = builders::selector_label(&target, &cfg.build)
        .map_err(|e| TargetProblem::Invalid(e.to_string()))?;
    let template = target.template().cloned().ok_or_else(|| {
        TargetProblem::Invalid(format!(
            "{} {}.{ns} has no pod template",
            tref.kind, tref.name
        ))
    })?;

    // Tracked configs: checksums of the target's and of the primary's copies.
    let mut target_configs = BTreeMap::new();
    let mut primary_configs = BTreeMap::new();
    let mut tracked = Vec::new();
    let mut copies: Vec<(Value, bool)> = Vec::new(); // (desired copy, exists)
    if cfg.config_tracking {
        let spec = template.spec.clone().unwrap_or_default();
        for r in configs::tracked_refs(&spec) {
            let copy_name = configs::primary_name(&r.name);
            match r.kind {
                ConfigKind::ConfigMap => {
                    let Some(cm) =
                        get(&stores.configmaps, &r.name, &ns).filter(configs::is_tracked_configmap)
                    else {
                        continue;
                    };
                    target_configs.insert(
                        configs::status_key(r.kind, &r.name),
                        configs::checksum_configmap(&cm),
                    );
                    let copy = get(&stores.configmaps, &copy_name, &ns);
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
                    let Some(s) =
                        get(&stores.secrets, &r.name, &ns).filter(configs::is_tracked_secret)
                    else {
                        continue;
                    };
                    target_configs.insert(
                        configs::status_key(r.kind, &r.name),
                        configs::checksum_secret(&s),
                    );
                    let copy = get(&stores.secrets, &copy_name, &ns);
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
    let target_fp = fingerprint::template_fingerprint(&template, &target_configs);

    let primary_name = format!("{}-primary", target.name());
    let primary = match target {
        Workload::Deployment(_) => {
            get(&stores.deployments, &primary_name, &ns).map(Workload::Deployment)
        }
        Workload::DaemonSet(_) => {
            get(&stores.daemonsets, &primary_name, &ns).map(Workload::DaemonSet)
        }
    };
    let hpa_ref = canary
        .spec
        .autoscaler_ref
        .as_ref()
        .filter(|a| a.kind == "HorizontalPodAutoscaler");
    let target_hpa = hpa_ref.and_then(|a| get(&stores.hpas, &a.name, &ns));
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
            .map(|t| fingerprint::unprimary_template(t, &label, &renames))
            .map(|t| fingerprint::template_fingerprint(&t, &primary_configs))
            .unwrap_or_default();
        PrimaryObs {
            fingerprint: fp,
            readiness: readiness::workload_readiness(
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
        scale_up_replicas: builders::scale_from_zero_replicas(
            &target,
            primary.as_ref(),
            target_hpa.as_ref(),
        ),
        readiness: readiness::workload_readiness(
            &target,
            canary.spec.canary_ready_threshold(),
            deadline,
            since,
            now,
        ),
    };

    // Desired generated objects.
    let flagger_id = target_fp.trim_start_matches("v1:").to_string();
    let desired_primary = builders::primary_workload(
        canary,
        &target,
        &label,
        &renames,
        &cfg.build,
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
            let live = get(&stores.services, &name, &ns);
            let desired = match &live {
                Some(l) if !is_owned_by(l, canary) => builders::merge_existing_apex(&desired, l),
                _ => desired,
            };
            let desired_json = to_json(&desired);
            let in_sync = live
                .as_ref()
                .is_some_and(|l| contains(&to_json(l), &desired_json));
            if !in_sync {
                generated.services_to_apply.push(desired_json);
            }
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
        if get(&stores.hpas, &format!("{}-primary", a.name), &ns).is_none() {
            generated.missing_hpa = Some(desired.clone());
        }
        generated.promoted_hpa = Some(desired);
    }
    Ok((target_obs, primary_obs, generated))
}

/// A Knative Service target: the canary is the latest created revision, the primary the one
/// named by `flagger.app/primary-revision`; there are no generated objects.
fn observe_knative(
    stores: &Stores,
    name: &str,
    ns: &str,
) -> Result<(TargetObs, Option<PrimaryObs>, Generated), TargetProblem> {
    if !stores.knative_synced.load(Ordering::Acquire) {
        return Err(TargetProblem::Missing(format!(
            "Knative Service {name}.{ns}: Knative Services are not listed yet (is Knative Serving installed?)"
        )));
    }
    let key = ObjectRef::<DynamicObject>::new_with(name, knative::resource()).within(ns);
    let live = stores
        .knative_services
        .get(&key)
        .ok_or_else(|| TargetProblem::Missing(format!("Knative Service {name}.{ns} not found")))?;
    let state = knative::read_state(&to_json(live.as_ref()));
    let latest = state.latest_created.clone().ok_or_else(|| {
        TargetProblem::Missing(format!("Knative Service {name}.{ns} has no revision yet"))
    })?;
    let target = TargetObs {
        kind: TargetKind::KnativeService,
        name: name.to_string(),
        selector: (String::new(), String::new()),
        fingerprint: fingerprint::revision_fingerprint(&latest),
        tracked_configs: BTreeMap::new(),
        replicas: 1,
        scale_up_replicas: 1,
        readiness: readiness::knative_readiness(&state),
    };
    let primary = state.primary_revision.as_ref().map(|rev| PrimaryObs {
        fingerprint: fingerprint::revision_fingerprint(rev),
        readiness: readiness::knative_primary_readiness(&state, rev),
        replicas: 1,
    });
    let generated = Generated {
        primary_revision: Some(latest),
        ..Default::default()
    };
    Ok((target, primary, generated))
}

/// A Kubernetes Service target (Service-to-Service canary): the canary is `<target>-canary`, kept
/// an exact copy of the target; the primary is `<target>-primary`, created from the target and
/// rewritten on promotion. Services need no readiness and nothing is scaled.
fn observe_service(
    cfg: &ObserveConfig,
    stores: &Stores,
    canary: &Canary,
    name: &str,
    ns: &str,
) -> Result<(TargetObs, Option<PrimaryObs>, Generated), TargetProblem> {
    let target = get(&stores.services, name, ns)
        .ok_or_else(|| TargetProblem::Missing(format!("Service {name}.{ns} not found")))?;
    if is_owned_by(&target, canary) {
        return Err(TargetProblem::Invalid(format!(
            "Service {name}.{ns} is generated by this Canary and cannot be its target"
        )));
    }
    let spec = target
        .spec
        .as_ref()
        .ok_or_else(|| TargetProblem::Invalid(format!("Service {name}.{ns} has no spec")))?;
    let traffic_distribution = canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.traffic_distribution.as_deref());
    let fingerprint = fingerprint::service_fingerprint(&service_target::copyable_spec(
        spec,
        traffic_distribution,
    ));
    let target_obs = TargetObs {
        kind: TargetKind::Service,
        name: name.to_string(),
        selector: (String::new(), String::new()),
        fingerprint,
        tracked_configs: BTreeMap::new(),
        replicas: 1,
        scale_up_replicas: 1,
        readiness: Readiness::Ready,
    };
    let primary =
        get(&stores.services, &service_target::primary_name(name), ns).map(|p| PrimaryObs {
            fingerprint: fingerprint::service_fingerprint(&service_target::copyable_spec(
                &p.spec.unwrap_or_default(),
                None,
            )),
            readiness: Readiness::Ready,
            replicas: 1,
        });
    let mut generated = Generated {
        primary_service: Some(to_json(&service_target::copy(
            canary,
            &target,
            service_target::Role::Primary,
            &cfg.build,
        ))),
        ..Default::default()
    };
    let desired = to_json(&service_target::copy(
        canary,
        &target,
        service_target::Role::Canary,
        &cfg.build,
    ));
    // The copy follows the target exactly, including fields the target dropped, so the spec
    // is compared whole (in its copyable form); metadata only needs to contain ours.
    let desired_spec = service_target::copyable_spec(spec, traffic_distribution);
    let in_sync = get(&stores.services, &service_target::canary_name(name), ns).is_some_and(|l| {
        let live_spec = service_target::copyable_spec(&l.spec.clone().unwrap_or_default(), None);
        fingerprint::service_fingerprint(&live_spec)
            == fingerprint::service_fingerprint(&desired_spec)
            && contains(&to_json(&l.metadata), &desired["metadata"])
    });
    if !in_sync {
        generated.services_to_apply.push(desired);
    }
    Ok((target_obs, primary, generated))
}

fn is_owned_by<K: kube::Resource>(obj: &K, canary: &Canary) -> bool {
    let uid = canary.metadata.uid.as_deref();
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(o.uid.as_str()) == uid)
}

#[cfg(test)]
mod tests {
    use super::contains;
    use serde_json::json;

    #[test]
    fn contains_is_a_subset_check_with_exact_lists() {
        let live = json!({"a": 1, "b": {"c": [ {"x": 1, "y": 2} ]}, "extra": true});
        assert!(contains(&live, &json!({"b": {"c": [ {"x": 1} ]}})));
        assert!(!contains(&live, &json!({"b": {"c": [ {"x": 2} ]}})));
        assert!(!contains(&live, &json!({"b": {"c": []}})));
        assert!(contains(&live, &json!({"a": 1.0})));
        assert!(!contains(&live, &json!({"missing": 1})));
    }
}
