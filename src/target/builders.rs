//! Desired objects the controller owns: the `<target>-primary` workload, the apex/primary/canary
//! Services, the primary HPA and owner references, derived from the target as Flagger does; pure.
use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
};
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::Canary;
use crate::api::canary::CustomMetadata;

pub use crate::core::fields::{
    HELM_DRIFT_DETECTION_ANNOTATION, KUSTOMIZE_RECONCILE_ANNOTATION, TOOLKIT_MARKER,
    drop_toolkit_keys, owner_reference,
};
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

/// The headless Service `<serviceName>-primary` that governs a primary StatefulSet (its Pods'
/// DNS names are `<pod>.<serviceName>-primary`), selecting `{label: <value>-primary}`. Ports and
/// `publishNotReadyAddresses` come from the target's own headless Service when it exists, else
/// the Canary's port.
pub fn primary_headless_service(
    canary: &Canary,
    label: &(String, String),
    service_name: &str,
    target_headless: Option<&Service>,
) -> Service {
    let (key, value) = label;
    let name = primary_value(service_name);
    let existing = target_headless.and_then(|s| s.spec.as_ref());
    let ports = existing
        .and_then(|s| s.ports.clone())
        .filter(|p| !p.is_empty())
        .map(|ports| {
            ports
                .into_iter()
                .map(|p| ServicePort {
                    node_port: None,
                    ..p
                })
                .collect()
        })
        .or_else(|| {
            canary.spec.service.as_ref().map(|s| {
                vec![ServicePort {
                    name: Some(canary.spec.port_name()),
                    protocol: Some("TCP".into()),
                    port: s.port,
                    target_port: Some(effective_target_port(canary, s.port)),
                    ..Default::default()
                }]
            })
        });
    Service {
        metadata: service_metadata(canary, &name, key, None),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some("None".into()),
            selector: Some(BTreeMap::from([(key.clone(), primary_value(value))])),
            ports,
            publish_not_ready_addresses: existing.and_then(|s| s.publish_not_ready_addresses),
            ..Default::default()
        }),
        status: None,
    }
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

/// The annotation that pauses a KEDA ScaledObject at the given replica count.
pub const KEDA_PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";

/// A trigger query for the primary, as Flagger rewrites it when `primaryScalerQueries` has none
/// for the trigger: `<target>` becomes `<target>-primary`, while `<target>-canary` is kept.
fn primary_query(query: &str, target: &str) -> String {
    const HOLD: &str = "\u{0}serin-canary\u{0}";
    let canary = format!("{target}-canary");
    query
        .replace(&canary, HOLD)
        .replace(target, &primary_value(target))
        .replace(HOLD, &canary)
}

/// The desired `<so>-primary` KEDA ScaledObject (`keda.sh/v1alpha1`, as JSON: KEDA's types are
/// not a dependency) scaling `<target>-primary`: the target ScaledObject's spec with
/// `scaleTargetRef.name` → `<target>-primary`; each trigger's `metadata.query` replaced by
/// `autoscalerRef.primaryScalerQueries[<trigger name>]` when given, else rewritten by
/// [`primary_query`]; `primaryScalerReplicas` overriding `minReplicaCount`/`maxReplicaCount`; an
/// HPA name in `advanced.horizontalPodAutoscalerConfig.name` gets `-primary`. Labels and
/// annotations are copied minus Flux toolkit keys and the pause annotation; owner is the Canary.
pub fn primary_scaled_object(canary: &Canary, target_so: &serde_json::Value) -> serde_json::Value {
    use serde_json::{Value, json};
    let so_name = target_so["metadata"]["name"].as_str().unwrap_or_default();
    let target_name = canary.spec.target_name();
    let autoscaler = canary.spec.autoscaler_ref.as_ref();
    let queries = autoscaler.and_then(|a| a.primary_scaler_queries.clone());
    let overrides = autoscaler.and_then(|a| a.primary_scaler_replicas.clone());
    let mut spec = target_so.get("spec").cloned().unwrap_or_else(|| json!({}));
    spec["scaleTargetRef"]["name"] = json!(primary_value(&target_name));
    if let Some(triggers) = spec.get_mut("triggers").and_then(Value::as_array_mut) {
        for t in triggers {
            let name = t.get("name").and_then(Value::as_str).map(str::to_string);
            let given = name
                .as_ref()
                .and_then(|n| queries.as_ref().and_then(|q| q.get(n)).cloned());
            let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut) else {
                continue;
            };
            match (given, meta.get("query").and_then(Value::as_str)) {
                (Some(q), _) => {
                    meta.insert("query".into(), json!(q));
                }
                (None, Some(q)) => {
                    let rewritten = primary_query(q, &target_name);
                    meta.insert("query".into(), json!(rewritten));
                }
                (None, None) => {}
            }
        }
    }
    if let Some(o) = overrides {
        if let Some(min) = o.min_replicas {
            spec["minReplicaCount"] = json!(min);
        }
        if let Some(max) = o.max_replicas {
            spec["maxReplicaCount"] = json!(max);
        }
    }
    if let Some(hpa_name) = spec
        .pointer_mut("/advanced/horizontalPodAutoscalerConfig/name")
        .filter(|n| n.as_str().is_some_and(|s| !s.is_empty()))
    {
        let name = hpa_name.as_str().unwrap_or_default().to_string();
        *hpa_name = json!(primary_value(&name));
    }
    let strip = |v: &Value| -> Option<BTreeMap<String, String>> {
        let map: BTreeMap<String, String> = serde_json::from_value(v.clone()).ok()?;
        let mut map = drop_toolkit_keys(&map);
        map.remove(KEDA_PAUSED_REPLICAS);
        Some(map)
    };
    let meta = &target_so["metadata"];
    let mut metadata = json!({
        "name": primary_value(so_name),
        "namespace": canary.metadata.namespace.clone().or_else(|| meta["namespace"].as_str().map(str::to_string)),
        "ownerReferences": [owner_reference(canary)],
    });
    for key in ["labels", "annotations"] {
        if let Some(m) = strip(&meta[key]).filter(|m| !m.is_empty()) {
            metadata[key] = json!(m);
        }
    }
    json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata,
        "spec": spec,
    })
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

/// Realistic targets shared by the tests of this module, of the fingerprint and of the kinds.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::core::workload::Workload;
    use k8s_openapi::api::apps::v1::DeploymentStrategy;
    use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::api::core::v1::{
        Affinity, ConfigMapVolumeSource, Container, ContainerPort, EnvFromSource, PodAffinityTerm,
        PodAntiAffinity, SecretEnvSource, TopologySpreadConstraint, Volume,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use serde_json::json;

    pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn canary() -> Canary {
        Canary::test()
            .uid("4f1c-uid")
            .spec(json!({"analysis": null}))
            .build()
    }

    pub fn label() -> (String, String) {
        ("app".to_string(), "podinfo".to_string())
    }

    /// The pod template of podinfo: a config map volume, secrets via envFrom, anti-affinity and a
    /// spread constraint selecting its own pods, a Flux annotation and a pod annotation.
    pub fn template() -> PodTemplateSpec {
        let self_selector = || LabelSelector {
            match_labels: Some(map(&[("app", "podinfo")])),
            match_expressions: None,
        };
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(map(&[("app", "podinfo"), ("version", "6.0.0")])),
                annotations: Some(map(&[
                    ("prometheus.io/scrape", "true"),
                    ("kustomize.toolkit.fluxcd.io/checksum", "abc"),
                ])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![
                    Container {
                        name: "podinfod".into(),
                        image: Some("ghcr.io/stefanprodan/podinfo:6.0.0".into()),
                        ports: Some(vec![
                            ContainerPort {
                                name: Some("http".into()),
                                container_port: 9898,
                                ..Default::default()
                            },
                            ContainerPort {
                                name: Some("http-metrics".into()),
                                container_port: 9797,
                                ..Default::default()
                            },
                            ContainerPort {
                                container_port: 9999,
                                ..Default::default()
                            },
                        ]),
                        env_from: Some(vec![EnvFromSource {
                            secret_ref: Some(SecretEnvSource {
                                name: "podinfo-secret-env".into(),
                                optional: None,
                            }),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    },
                    Container {
                        name: "istio-proxy".into(),
                        ports: Some(vec![ContainerPort {
                            name: Some("http-envoy-prom".into()),
                            container_port: 15090,
                            ..Default::default()
                        }]),
                        ..Default::default()
                    },
                ],
                volumes: Some(vec![Volume {
                    name: "config".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: "podinfo-config-vol".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                affinity: Some(Affinity {
                    pod_anti_affinity: Some(PodAntiAffinity {
                        required_during_scheduling_ignored_during_execution: Some(vec![
                            PodAffinityTerm {
                                label_selector: Some(LabelSelector {
                                    match_labels: None,
                                    match_expressions: Some(vec![LabelSelectorRequirement {
                                        key: "app".into(),
                                        operator: "In".into(),
                                        values: Some(vec!["podinfo".into(), "other".into()]),
                                    }]),
                                }),
                                topology_key: "kubernetes.io/hostname".into(),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                    label_selector: Some(self_selector()),
                    max_skew: 1,
                    topology_key: "topology.kubernetes.io/zone".into(),
                    when_unsatisfiable: "ScheduleAnyway".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    pub fn deployment(replicas: Option<i32>) -> Workload {
        Workload::Deployment(Deployment {
            metadata: ObjectMeta {
                name: Some("podinfo".into()),
                namespace: Some("test".into()),
                labels: Some(map(&[
                    ("app", "podinfo"),
                    ("team", "a"),
                    ("team.example.com/owner", "b"),
                    ("kustomize.toolkit.fluxcd.io/name", "apps"),
                ])),
                annotations: Some(map(&[
                    ("note", "keep"),
                    ("kustomize.toolkit.fluxcd.io/checksum", "x"),
                ])),
                ..Default::default()
            },
            spec: DeploymentSpec {
                replicas,
                progress_deadline_seconds: Some(60),
                min_ready_seconds: Some(5),
                revision_history_limit: Some(3),
                strategy: Some(DeploymentStrategy {
                    type_: Some("Recreate".into()),
                    rolling_update: None,
                }),
                selector: LabelSelector {
                    match_labels: Some(map(&[("app", "podinfo")])),
                    match_expressions: None,
                },
                template: template(),
                paused: None,
            },
            status: None,
        })
    }

    pub fn hpa(min: Option<i32>, max: i32) -> HorizontalPodAutoscaler {
        HorizontalPodAutoscaler {
            metadata: ObjectMeta {
                name: Some("podinfo-hpa".into()),
                labels: Some(map(&[
                    ("app", "podinfo"),
                    ("helm.toolkit.fluxcd.io/name", "x"),
                ])),
                ..Default::default()
            },
            spec: HorizontalPodAutoscalerSpec {
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: "Deployment".into(),
                    name: "podinfo".into(),
                },
                min_replicas: min,
                max_replicas: max,
                metrics: None,
                behavior: None,
            },
            status: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::api::canary::{AutoscalerRef, ScalerReplicas};

    #[test]
    fn owner_reference_points_at_the_canary_as_controller() {
        let o = owner_reference(&canary());
        assert_eq!(o.api_version, "flagger.app/v1beta1");
        assert_eq!(o.kind, "Canary");
        assert_eq!(o.name, "podinfo");
        assert_eq!(o.uid, "4f1c-uid");
        assert_eq!(o.controller, Some(true));
        assert_eq!(o.block_owner_deletion, Some(true));
    }

    #[test]
    fn include_label_prefix_selects_object_labels_but_never_toolkit_keys() {
        let labels = map(&[
            ("app", "podinfo"),
            ("team", "a"),
            ("kustomize.toolkit.fluxcd.io/name", "apps"),
        ]);
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases = [
            (p(&[]), map(&[])),
            (p(&[""]), map(&[])),
            (p(&["*"]), map(&[("app", "podinfo"), ("team", "a")])),
            (p(&["te"]), map(&[("team", "a")])),
            (p(&["kustomize"]), map(&[])),
        ];
        for (prefixes, want) in cases {
            assert_eq!(
                include_labels_by_prefix(&labels, &prefixes),
                want,
                "{prefixes:?}"
            );
        }
    }

    #[test]
    fn services_select_primary_and_canary_pods() {
        let [apex, primary, canary_svc] =
            canary_services(&canary(), &label(), &template()).unwrap();
        let cases = [
            (&apex, "podinfo", "podinfo-primary"),
            (&primary, "podinfo-primary", "podinfo-primary"),
            (&canary_svc, "podinfo-canary", "podinfo"),
        ];
        for (svc, name, selects) in cases {
            assert_eq!(svc.metadata.name.as_deref(), Some(name));
            assert_eq!(svc.metadata.namespace.as_deref(), Some("test"));
            let spec = svc.spec.as_ref().unwrap();
            assert_eq!(spec.selector, Some(map(&[("app", selects)])), "{name}");
            assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
            assert_eq!(spec.cluster_ip, None);
            let ports = spec.ports.as_ref().unwrap();
            assert_eq!(ports.len(), 1, "no port discovery");
            assert_eq!(ports[0].name.as_deref(), Some("http"));
            assert_eq!(ports[0].port, 9898);
            assert_eq!(ports[0].target_port, Some(IntOrString::Int(9898)));
            assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
            assert_eq!(svc.metadata.labels, Some(map(&[("app", name)])));
            assert_eq!(
                svc.metadata.annotations,
                Some(map(&[
                    (HELM_DRIFT_DETECTION_ANNOTATION, "disabled"),
                    (KUSTOMIZE_RECONCILE_ANNOTATION, "disabled"),
                ]))
            );
            assert_eq!(
                svc.metadata.owner_references.as_ref().unwrap()[0].name,
                "podinfo"
            );
        }
    }

    #[test]
    fn service_options_shape_ports_and_metadata() {
        let mut c = canary();
        let service = c.spec.service.as_mut().unwrap();
        service.name = Some("web".into());
        service.port_name = Some("grpc".into());
        service.target_port = Some(IntOrString::String("http".into()));
        service.app_protocol = Some("kubernetes.io/h2c".into());
        service.headless = Some(true);
        service.port_discovery = Some(true);
        service.traffic_distribution = Some("PreferClose".into());
        service.canary = Some(CustomMetadata {
            labels: Some(map(&[("role", "canary")])),
            annotations: Some(map(&[("a", "b")])),
        });
        let [apex, _, canary_svc] = canary_services(&c, &label(), &template()).unwrap();
        assert_eq!(apex.metadata.name.as_deref(), Some("web"));
        assert_eq!(canary_svc.metadata.name.as_deref(), Some("web-canary"));
        let spec = canary_svc.spec.as_ref().unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.traffic_distribution.as_deref(), Some("PreferClose"));
        type Row<'a> = (Option<&'a str>, i32, Option<IntOrString>, Option<&'a str>);
        let ports: Vec<Row> = spec
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p.name.as_deref(),
                    p.port,
                    p.target_port.clone(),
                    p.app_protocol.as_deref(),
                )
            })
            .collect();
        // The main port's target is the port named http, so discovery skips it; the sidecar's
        // port is skipped; an unnamed port is named tcp-<container>-<index>.
        assert_eq!(
            ports,
            vec![
                (
                    Some("grpc"),
                    9898,
                    Some(IntOrString::String("http".into())),
                    Some("kubernetes.io/h2c")
                ),
                (
                    Some("http-metrics"),
                    9797,
                    Some(IntOrString::Int(9797)),
                    None
                ),
                (
                    Some("tcp-podinfod-2"),
                    9999,
                    Some(IntOrString::Int(9999)),
                    None
                ),
            ]
        );
        assert_eq!(
            canary_svc.metadata.labels,
            Some(map(&[("app", "web-canary"), ("role", "canary")]))
        );
        assert_eq!(
            canary_svc
                .metadata
                .annotations
                .as_ref()
                .unwrap()
                .get("a")
                .map(String::as_str),
            Some("b")
        );
    }

    #[test]
    fn a_canary_without_service_cannot_have_services() {
        let mut c = canary();
        c.spec.service = None;
        assert!(matches!(
            canary_services(&c, &label(), &template()),
            Err(BuildError::MissingService { .. })
        ));
    }

    #[test]
    fn existing_apex_keeps_its_metadata_and_node_ports() {
        let [desired, _, _] = canary_services(&canary(), &label(), &template()).unwrap();
        let existing = Service {
            metadata: ObjectMeta {
                name: Some("podinfo".into()),
                labels: Some(map(&[("owner", "helm")])),
                annotations: Some(map(&[("meta.helm.sh/release-name", "podinfo")])),
                resource_version: Some("42".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("NodePort".into()),
                cluster_ip: Some("10.0.0.7".into()),
                selector: Some(map(&[("app", "podinfo")])),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    node_port: Some(30080),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        };
        let merged = merge_existing_apex(&desired, &existing);
        let spec = merged.spec.as_ref().unwrap();
        assert_eq!(spec.selector, Some(map(&[("app", "podinfo-primary")])));
        let port = &spec.ports.as_ref().unwrap()[0];
        assert_eq!((port.port, port.node_port), (9898, Some(30080)));
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(merged.metadata.labels, existing.metadata.labels);
        assert_eq!(merged.metadata.resource_version.as_deref(), Some("42"));
        assert_eq!(merged.metadata.owner_references, None);
        let annotations = merged.metadata.annotations.unwrap();
        assert_eq!(
            annotations
                .get("meta.helm.sh/release-name")
                .map(String::as_str),
            Some("podinfo")
        );
        assert_eq!(
            annotations
                .get(KUSTOMIZE_RECONCILE_ANNOTATION)
                .map(String::as_str),
            Some("disabled")
        );
    }

    #[test]
    fn primary_hpa_scales_the_primary_with_optional_overrides() {
        let p = primary_hpa(&canary(), &hpa(Some(2), 4));
        assert_eq!(p.metadata.name.as_deref(), Some("podinfo-hpa-primary"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("test"));
        assert_eq!(p.metadata.labels, Some(map(&[("app", "podinfo")])));
        assert_eq!(p.spec.scale_target_ref.name, "podinfo-primary");
        assert_eq!(p.spec.scale_target_ref.kind, "Deployment");
        assert_eq!((p.spec.min_replicas, p.spec.max_replicas), (Some(2), 4));
        assert_eq!(p.metadata.owner_references.unwrap()[0].kind, "Canary");

        let mut c = canary();
        c.spec.autoscaler_ref = Some(AutoscalerRef {
            api_version: "autoscaling/v2".into(),
            kind: "HorizontalPodAutoscaler".into(),
            name: "podinfo-hpa".into(),
            primary_scaler_queries: None,
            primary_scaler_replicas: Some(ScalerReplicas {
                min_replicas: Some(3),
                max_replicas: Some(9),
            }),
        });
        let p = primary_hpa(&c, &hpa(Some(2), 4));
        assert_eq!((p.spec.min_replicas, p.spec.max_replicas), (Some(3), 9));
    }

    #[test]
    fn the_primary_scaled_object_targets_the_primary_with_the_primary_queries() {
        use crate::api::canary::{AutoscalerRef, ScalerReplicas};
        let so = serde_json::json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "podinfo-so", "namespace": "test",
                         "labels": {"team": "a"},
                         "annotations": {"autoscaling.keda.sh/paused-replicas": "0", "note": "kept"}},
            "spec": {
                "scaleTargetRef": {"name": "podinfo"},
                "minReplicaCount": 1, "maxReplicaCount": 3,
                "advanced": {"horizontalPodAutoscalerConfig": {"name": "keda-hpa-podinfo"}},
                "triggers": [
                    {"type": "prometheus", "name": "requests", "metadata": {"query": "sum(rate(x{app=\"podinfo\"}[1m]))"}},
                    {"type": "prometheus", "name": "latency", "metadata": {"query": "max(y{deployment=\"podinfo\"}) + max(y{deployment=\"podinfo-canary\"})"}},
                    {"type": "cpu", "metadata": {"value": "50"}}
                ]
            }
        });
        let mut c = canary();
        c.spec.autoscaler_ref = Some(AutoscalerRef {
            api_version: "keda.sh/v1alpha1".into(),
            kind: "ScaledObject".into(),
            name: "podinfo-so".into(),
            primary_scaler_queries: Some(BTreeMap::from([(
                "requests".to_string(),
                "sum(rate(x{app=\"podinfo-primary\"}[1m]))".to_string(),
            )])),
            primary_scaler_replicas: Some(ScalerReplicas {
                min_replicas: Some(2),
                max_replicas: Some(5),
            }),
        });
        let p = primary_scaled_object(&c, &so);
        assert_eq!(p["metadata"]["name"], "podinfo-so-primary");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Canary");
        assert_eq!(
            p["metadata"]["annotations"],
            serde_json::json!({"note": "kept"})
        );
        assert_eq!(p["metadata"]["labels"], serde_json::json!({"team": "a"}));
        assert_eq!(p["spec"]["scaleTargetRef"]["name"], "podinfo-primary");
        assert_eq!(p["spec"]["minReplicaCount"], 2);
        assert_eq!(p["spec"]["maxReplicaCount"], 5);
        assert_eq!(
            p["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["name"],
            "keda-hpa-podinfo-primary"
        );
        let t = &p["spec"]["triggers"];
        assert_eq!(
            t[0]["metadata"]["query"],
            "sum(rate(x{app=\"podinfo-primary\"}[1m]))"
        );
        assert_eq!(
            t[1]["metadata"]["query"],
            "max(y{deployment=\"podinfo-primary\"}) + max(y{deployment=\"podinfo-canary\"})"
        );
        assert_eq!(t[2]["metadata"], serde_json::json!({"value": "50"}));
    }
}
