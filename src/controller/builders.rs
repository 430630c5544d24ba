//! Desired objects the controller owns: the `<target>-primary` workload, the apex/primary/canary
//! Services, the primary HPA and owner references, derived from the target as Flagger does; pure.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::Canary;
use crate::api::canary::CustomMetadata;
use crate::controller::configs::{ConfigRenames, rename_refs};
use crate::controller::workload::{FLAGGER_ID_ANNOTATION, SCALE_TO_ZERO_SELECTOR, Workload};

/// Marker of Flux toolkit keys; Flagger never copies them, so Flux does not adopt or prune copies.
pub const TOOLKIT_MARKER: &str = "toolkit.fluxcd.io";
/// Annotation telling Flux's kustomize-controller to leave an object alone.
pub const KUSTOMIZE_RECONCILE_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/reconcile";
/// Annotation telling Flux's helm-controller not to revert drift on an object.
pub const HELM_DRIFT_DETECTION_ANNOTATION: &str = "helm.toolkit.fluxcd.io/driftDetection";
/// Sidecar containers whose ports port discovery skips.
pub const SIDECAR_CONTAINERS: [&str; 2] = ["istio-proxy", "envoy"];

/// Controller-wide settings that shape the objects built here (Flagger's command-line flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildConfig {
    /// Candidate selector labels, in order (`-selector-labels`).
    pub selector_labels: Vec<String>,
    /// Prefixes of target labels copied to the primary (`-include-label-prefix`); `*` copies all,
    /// an empty list copies none.
    pub include_label_prefix: Vec<String>,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            selector_labels: ["app", "name", "app.kubernetes.io/name"]
                .map(String::from)
                .to_vec(),
            include_label_prefix: Vec::new(),
        }
    }
}

/// Why a desired object could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// The target's selector has none of the configured labels.
    #[error(
        "{kind} {name}.{namespace} spec.selector.matchLabels must contain one of [{labels}]",
        labels = .labels.join(" ")
    )]
    NoSelectorLabel {
        /// Lower-case kind, as in Flagger's message (`deployment`, `daemonset`).
        kind: String,
        /// Target name.
        name: String,
        /// Target namespace.
        namespace: String,
        /// The labels looked for.
        labels: Vec<String>,
    },
    /// The Canary has no `spec.service`.
    #[error("canary {name}.{namespace} has no spec.service")]
    MissingService {
        /// Canary name.
        name: String,
        /// Canary namespace.
        namespace: String,
    },
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

/// The controller owner reference to a Canary, so that deleting it garbage-collects what it owns.
pub fn owner_reference(canary: &Canary) -> OwnerReference {
    OwnerReference {
        api_version: "flagger.app/v1beta1".into(),
        kind: "Canary".into(),
        name: canary.metadata.name.clone().unwrap_or_default(),
        uid: canary.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A copy of `map` without Flux toolkit keys.
pub fn drop_toolkit_keys(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .filter(|(k, _)| !k.contains(TOOLKIT_MARKER))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Flagger's `includeLabelsByPrefix`: keys matching one of the prefixes (`*` matches all, an
/// empty prefix nothing), never Flux toolkit keys.
pub fn include_labels_by_prefix(
    labels: &BTreeMap<String, String>,
    prefixes: &[String],
) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| !k.contains(TOOLKIT_MARKER))
        .filter(|(k, _)| {
            prefixes
                .iter()
                .any(|p| p == "*" || (!p.is_empty() && k.starts_with(p.as_str())))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The value the primary's selector label carries.
pub fn primary_value(value: &str) -> String {
    format!("{value}-primary")
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
/// selector.
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

/// The canary's effective target port: `service.targetPort` unless unset, `0` or empty, else the
/// service port.
fn effective_target_port(canary: &Canary, port: i32) -> IntOrString {
    let tp = canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.target_port.clone());
    match tp {
        Some(IntOrString::Int(0)) | None => IntOrString::Int(port),
        Some(IntOrString::String(s)) if s.is_empty() => IntOrString::Int(port),
        Some(tp) => tp,
    }
}

/// Ports found by `portDiscovery`: every container port except sidecars' and the main one,
/// named by the port's name or `tcp-<container>-<index>`, sorted by name (Flagger's order is a
/// Go map's; one name wins per name).
fn discovered_ports(canary: &Canary, template: &PodTemplateSpec) -> BTreeMap<String, i32> {
    let mut ports = BTreeMap::new();
    let Some(service) = canary.spec.service.as_ref() else {
        return ports;
    };
    let main_target = effective_target_port(canary, service.port);
    let containers = template.spec.iter().flat_map(|s| s.containers.iter());
    for c in containers.filter(|c| !SIDECAR_CONTAINERS.contains(&c.name.as_str())) {
        for (i, p) in c.ports.iter().flatten().enumerate() {
            let is_main = match &main_target {
                IntOrString::Int(n) => p.container_port == *n,
                IntOrString::String(s) => p.name.as_deref() == Some(s.as_str()),
            };
            if is_main {
                continue;
            }
            let name = p
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| format!("tcp-{}-{i}", c.name));
            ports.insert(name, p.container_port);
        }
    }
    ports
}

fn service_metadata(
    canary: &Canary,
    name: &str,
    selector_key: &str,
    custom: Option<&CustomMetadata>,
) -> ObjectMeta {
    let mut labels = custom.and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(selector_key.to_string(), name.to_string());
    let mut annotations = custom
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    add_flux_opt_out(&mut annotations);
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: canary.metadata.namespace.clone(),
        labels: Some(labels),
        annotations: Some(annotations),
        owner_references: Some(vec![owner_reference(canary)]),
        ..Default::default()
    }
}

/// Adds the annotations that stop Flux from reverting what Serin manages.
pub fn add_flux_opt_out(annotations: &mut BTreeMap<String, String>) {
    annotations.insert(KUSTOMIZE_RECONCILE_ANNOTATION.into(), "disabled".into());
    annotations.insert(HELM_DRIFT_DETECTION_ANNOTATION.into(), "disabled".into());
}

/// The desired apex `<svc>`, `<svc>-primary` and `<svc>-canary` Services, in that order.
///
/// Apex and primary select `{label: <value>-primary}`, canary `{label: <value>}`. The main port is
/// `service.portName` (default `http`), TCP, `service.port` → `service.targetPort` (default the
/// port), with `appProtocol`; with `portDiscovery` the other container ports of
/// `target_template` follow. Labels are `service.<role>.labels` plus `{label: <service name>}`;
/// annotations `service.<role>.annotations` plus the Flux opt-outs; owner is the Canary.
pub fn canary_services(
    canary: &Canary,
    label: &(String, String),
    target_template: &PodTemplateSpec,
) -> Result<[Service; 3], BuildError> {
    let service = canary
        .spec
        .service
        .as_ref()
        .ok_or_else(|| BuildError::MissingService {
            name: canary.metadata.name.clone().unwrap_or_default(),
            namespace: canary.metadata.namespace.clone().unwrap_or_default(),
        })?;
    let (key, value) = label;
    let mut ports = vec![ServicePort {
        name: Some(canary.spec.port_name()),
        protocol: Some("TCP".into()),
        port: service.port,
        target_port: Some(effective_target_port(canary, service.port)),
        app_protocol: service.app_protocol.clone().filter(|p| !p.is_empty()),
        node_port: None,
    }];
    if service.port_discovery.unwrap_or(false) {
        ports.extend(
            discovered_ports(canary, target_template)
                .into_iter()
                .map(|(name, port)| ServicePort {
                    name: Some(name),
                    protocol: Some("TCP".into()),
                    port,
                    target_port: Some(IntOrString::Int(port)),
                    ..Default::default()
                }),
        );
    }
    let spec = |selector: String| ServiceSpec {
        type_: Some("ClusterIP".into()),
        cluster_ip: service
            .headless
            .unwrap_or(false)
            .then(|| "None".to_string()),
        selector: Some(BTreeMap::from([(key.clone(), selector)])),
        ports: Some(ports.clone()),
        traffic_distribution: service
            .traffic_distribution
            .clone()
            .filter(|t| !t.is_empty()),
        ..Default::default()
    };
    let apex = canary.spec.service_name();
    let primary = format!("{apex}-primary");
    let canary_name = format!("{apex}-canary");
    Ok([
        Service {
            metadata: service_metadata(canary, &apex, key, service.apex.as_ref()),
            spec: Some(spec(primary_value(value))),
            status: None,
        },
        Service {
            metadata: service_metadata(canary, &primary, key, service.primary.as_ref()),
            spec: Some(spec(primary_value(value))),
            status: None,
        },
        Service {
            metadata: service_metadata(canary, &canary_name, key, service.canary.as_ref()),
            spec: Some(spec(value.clone())),
            status: None,
        },
    ])
}

/// An existing apex Service the Canary does not own, updated as Flagger does: ports and selector
/// come from `desired` (keeping node ports of same-named existing ports), everything else is
/// kept, plus the Flux opt-out annotations Flagger adds on every update (otherwise Flux would
/// revert the selector).
pub fn merge_existing_apex(desired: &Service, existing: &Service) -> Service {
    let mut out = existing.clone();
    let existing_ports = existing
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut ports = desired
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    for port in &mut ports {
        if let Some(old) = existing_ports
            .iter()
            .find(|o| o.name == port.name && o.node_port.is_some_and(|n| n > 0))
        {
            port.node_port = old.node_port;
        }
    }
    let spec = out.spec.get_or_insert_with(Default::default);
    spec.ports = Some(ports);
    spec.selector = desired.spec.as_ref().and_then(|s| s.selector.clone());
    add_flux_opt_out(
        out.metadata
            .annotations
            .get_or_insert_with(Default::default),
    );
    out
}

/// The desired `<hpa>-primary` (autoscaling/v2) scaling `<target>-primary`: the target HPA's
/// metrics, behavior and min/max, with `autoscalerRef.primaryScalerReplicas` overriding min/max;
/// labels and annotations copied minus Flux toolkit keys; owner is the Canary.
pub fn primary_hpa(
    canary: &Canary,
    target_hpa: &HorizontalPodAutoscaler,
) -> HorizontalPodAutoscaler {
    let spec = target_hpa.spec.clone();
    let target_name = canary
        .spec
        .target_ref
        .as_ref()
        .map(|t| t.name.clone())
        .unwrap_or_else(|| spec.scale_target_ref.name.clone());
    let overrides = canary
        .spec
        .autoscaler_ref
        .as_ref()
        .and_then(|a| a.primary_scaler_replicas.as_ref());
    let min_replicas = overrides.and_then(|o| o.min_replicas).or(spec.min_replicas);
    let max_replicas = overrides
        .and_then(|o| o.max_replicas)
        .unwrap_or(spec.max_replicas);
    HorizontalPodAutoscaler {
        metadata: ObjectMeta {
            name: Some(primary_value(
                target_hpa.metadata.name.as_deref().unwrap_or_default(),
            )),
            namespace: canary
                .metadata
                .namespace
                .clone()
                .or_else(|| target_hpa.metadata.namespace.clone()),
            labels: target_hpa.metadata.labels.as_ref().map(drop_toolkit_keys),
            annotations: target_hpa
                .metadata
                .annotations
                .as_ref()
                .map(drop_toolkit_keys),
            owner_references: Some(vec![owner_reference(canary)]),
            ..Default::default()
        },
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                name: primary_value(&target_name),
                kind: spec.scale_target_ref.kind.clone(),
                api_version: spec.scale_target_ref.api_version.clone(),
            },
            min_replicas,
            max_replicas,
            metrics: spec.metrics,
            behavior: spec.behavior,
        },
        status: None,
    }
}

/// Replicas to give a scaled-to-zero Deployment target when a run starts (Flagger's
/// `ScaleFromZero`): its own `spec.replicas` if > 0; else, without an autoscaler (`hpa` is
/// `None`), the primary's replicas if > 0; with an HPA its `minReplicas` if > 1; else 1.
/// DaemonSets are scaled by node selector, not replicas, and always get 1.
///
/// A KEDA ScaledObject target is not modelled here: pass `None` for `hpa` and no primary to get 1,
/// or compute `max(minReplicaCount, 1)` at the call site.
pub fn scale_from_zero_replicas(
    target: &Workload,
    primary: Option<&Workload>,
    hpa: Option<&HorizontalPodAutoscaler>,
) -> i32 {
    let replicas = |w: &Workload| match w {
        Workload::Deployment(d) => d.spec.replicas,
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
