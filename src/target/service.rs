//! Kubernetes Service targets (Flagger's Service-to-Service canary): their observation from cached
//! objects and the builders of the `<target>-primary` and `<target>-canary` copies; pure, no I/O.
//!
//! The target is a plain core/v1 Service that the user points at whatever serves the new
//! version (another Deployment's pods, an `ExternalName`, …). Serin keeps `<target>-canary` an
//! exact copy of it at all times, creates `<target>-primary` from it once, and copies the
//! target's spec into the primary on promotion; the traffic provider shifts between the two
//! copies. Nothing is scaled and readiness is not observed: the Services are ready when they exist.
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

use super::builders::{self, BuildConfig};
use super::fingerprint::service_fingerprint;
use super::{Observation, Options, Snapshot, contains, is_owned_by, to_json};
use crate::api::{Canary, TargetKind};
use crate::core::plan::{Generated, PrimaryObs, TargetObs, TargetProblem};
use crate::core::readiness::Readiness;

/// kubectl's client-side apply record; a copy must not carry the target's, or kubectl would
/// treat the copy as its own object.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The name of the primary copy.
pub fn primary_name(target: &str) -> String {
    format!("{target}-primary")
}

/// The name of the canary copy.
pub fn canary_name(target: &str) -> String {
    format!("{target}-canary")
}

/// The target's spec as Serin copies it: without the values the API server allocates for each
/// Service (cluster IPs unless headless, node ports, the health-check node port), which cannot
/// be shared between Services, and with `service.trafficDistribution` from the Canary when set.
/// Change detection hashes this form, so target and primary compare equal after a promotion.
pub fn copyable_spec(spec: &ServiceSpec, traffic_distribution: Option<&str>) -> ServiceSpec {
    let mut s = spec.clone();
    let headless = s.cluster_ip.as_deref() == Some("None");
    if !headless {
        s.cluster_ip = None;
        s.cluster_ips = None;
    }
    s.health_check_node_port = None;
    if let Some(ports) = s.ports.as_mut() {
        for p in ports {
            p.node_port = None;
        }
    }
    if let Some(td) = traffic_distribution.filter(|t| !t.is_empty()) {
        s.traffic_distribution = Some(td.to_string());
    }
    s
}

/// Which metadata a copy takes from the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `<target>-canary`: every label and annotation (Flux toolkit keys and kubectl's apply
    /// record excepted), kept in sync with the target.
    Canary,
    /// `<target>-primary`: labels and annotations filtered by `--include-label-prefix`, as
    /// Flagger's promotion does.
    Primary,
}

/// The copy of `target` for `role`, owned by the Canary. Pure.
pub fn copy(canary: &Canary, target: &Service, role: Role, cfg: &BuildConfig) -> Service {
    let name = target.metadata.name.clone().unwrap_or_default();
    let labels = target.metadata.labels.clone().unwrap_or_default();
    let annotations = target.metadata.annotations.clone().unwrap_or_default();
    let (name, labels, mut annotations) = match role {
        Role::Canary => (
            canary_name(&name),
            builders::drop_toolkit_keys(&labels),
            builders::drop_toolkit_keys(&annotations),
        ),
        Role::Primary => (
            primary_name(&name),
            builders::include_labels_by_prefix(&labels, &cfg.include_label_prefix),
            builders::include_labels_by_prefix(&annotations, &cfg.include_label_prefix),
        ),
    };
    annotations.remove(LAST_APPLIED_ANNOTATION);
    let non_empty = |m: BTreeMap<String, String>| (!m.is_empty()).then_some(m);
    let traffic_distribution = canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.traffic_distribution.as_deref());
    Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: canary.metadata.namespace.clone(),
            labels: non_empty(labels),
            annotations: non_empty(annotations),
            owner_references: Some(vec![builders::owner_reference(canary)]),
            ..Default::default()
        },
        spec: target
            .spec
            .as_ref()
            .map(|s| copyable_spec(s, traffic_distribution)),
        status: None,
    }
}

/// Readiness of a Service target or copy: Services are ready when they exist.
pub fn readiness() -> Readiness {
    Readiness::Ready
}

/// The fingerprint of a Service: of its spec in the copyable form (see [`copyable_spec`]), so a
/// target and its `-primary` copy fingerprint alike exactly when promotion would write nothing new.
pub fn fingerprint(spec: &ServiceSpec, traffic_distribution: Option<&str>) -> String {
    service_fingerprint(&copyable_spec(spec, traffic_distribution))
}

/// A Kubernetes Service target (Service-to-Service canary): the canary is `<target>-canary`, kept
/// an exact copy of the target; the primary is `<target>-primary`, created from the target and
/// rewritten on promotion. Services need no readiness and nothing is scaled.
pub fn observe(
    opts: &Options<'_>,
    snapshot: &dyn Snapshot,
    canary: &Canary,
    name: &str,
    ns: &str,
) -> Result<Observation, TargetProblem> {
    let target = snapshot
        .service(ns, name)
        .ok_or_else(|| TargetProblem::Missing(format!("Service {name}.{ns} not found")))?;
    if is_owned_by(target.as_ref(), canary) {
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
    let target_obs = TargetObs {
        kind: TargetKind::Service,
        name: name.to_string(),
        selector: (String::new(), String::new()),
        fingerprint: fingerprint(spec, traffic_distribution),
        tracked_configs: BTreeMap::new(),
        replicas: 1,
        scale_up_replicas: 1,
        readiness: readiness(),
        pods: None,
    };
    let primary = snapshot
        .service(ns, &primary_name(name))
        .map(|p| PrimaryObs {
            fingerprint: fingerprint(&p.spec.clone().unwrap_or_default(), None),
            readiness: readiness(),
            replicas: 1,
        });
    let mut generated = Generated {
        primary_service: Some(to_json(&copy(canary, &target, Role::Primary, opts.build))),
        ..Default::default()
    };
    let desired = to_json(&copy(canary, &target, Role::Canary, opts.build));
    // The copy follows the target exactly, including fields the target dropped, so the spec
    // is compared whole (in its copyable form); metadata only needs to contain ours.
    let in_sync = snapshot.service(ns, &canary_name(name)).is_some_and(|l| {
        fingerprint(&l.spec.clone().unwrap_or_default(), None)
            == fingerprint(spec, traffic_distribution)
            && contains(&to_json(&l.metadata), &desired["metadata"])
    });
    if !in_sync {
        generated.services_to_apply.push(desired);
    }
    Ok(Observation {
        target: target_obs,
        primary,
        generated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServicePort;
    use serde_json::json;

    fn target() -> Service {
        serde_json::from_value(json!({
            "metadata": {
                "name": "podinfo", "namespace": "test", "uid": "svc-uid",
                "resourceVersion": "7",
                "labels": {"app": "podinfo", "team.io/owner": "a",
                           "kustomize.toolkit.fluxcd.io/name": "apps"},
                "annotations": {LAST_APPLIED_ANNOTATION: "{}", "team.io/note": "n"}
            },
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"],
                "selector": {"app": "podinfo-green"},
                "ports": [{"name": "http", "port": 9898, "protocol": "TCP",
                           "targetPort": 9898, "nodePort": 30080}]
            }
        }))
        .unwrap_or_default()
    }

    fn canary(traffic_distribution: Option<&str>) -> Canary {
        serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "canary-uid"},
            "spec": {
                "targetRef": {"apiVersion": "v1", "kind": "Service", "name": "podinfo"},
                "service": {"port": 9898, "trafficDistribution": traffic_distribution},
                "analysis": {"interval": "1m"}
            }
        }))
        .unwrap_or_else(|e| panic!("fixture: {e}"))
    }

    #[test]
    fn the_copyable_spec_leaves_out_what_the_api_server_allocates_per_service() {
        let spec = target().spec.unwrap_or_default();
        let c = copyable_spec(&spec, None);
        assert_eq!(c.cluster_ip, None);
        assert_eq!(c.cluster_ips, None);
        let ports = c.ports.unwrap_or_default();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].node_port, None);
        assert_eq!(ports[0].port, 9898);
        assert_eq!(c.type_.as_deref(), Some("NodePort"));
        assert_eq!(
            c.selector,
            Some(BTreeMap::from([("app".into(), "podinfo-green".into())]))
        );
    }

    #[test]
    fn a_headless_target_stays_headless_in_its_copies() {
        let spec = ServiceSpec {
            cluster_ip: Some("None".into()),
            cluster_ips: Some(vec!["None".into()]),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        };
        let c = copyable_spec(&spec, Some("PreferClose"));
        assert_eq!(c.cluster_ip.as_deref(), Some("None"));
        assert_eq!(c.traffic_distribution.as_deref(), Some("PreferClose"));
    }

    #[test]
    fn the_canary_copy_keeps_metadata_and_the_primary_copy_filters_it() {
        let cfg = BuildConfig {
            include_label_prefix: vec!["team.io".into()],
            ..BuildConfig::default()
        };
        let c = copy(&canary(None), &target(), Role::Canary, &cfg);
        assert_eq!(c.metadata.name.as_deref(), Some("podinfo-canary"));
        assert_eq!(
            c.metadata.labels,
            Some(BTreeMap::from([
                ("app".into(), "podinfo".into()),
                ("team.io/owner".into(), "a".into())
            ]))
        );
        assert_eq!(
            c.metadata.annotations,
            Some(BTreeMap::from([("team.io/note".into(), "n".into())]))
        );
        let owner = c.metadata.owner_references.unwrap_or_default();
        assert_eq!(owner.len(), 1);
        assert_eq!(owner[0].uid, "canary-uid");
        assert_eq!(owner[0].controller, Some(true));
        assert_eq!(c.metadata.uid, None);
        assert_eq!(c.metadata.resource_version, None);

        let p = copy(&canary(Some("PreferClose")), &target(), Role::Primary, &cfg);
        assert_eq!(p.metadata.name.as_deref(), Some("podinfo-primary"));
        assert_eq!(
            p.metadata.labels,
            Some(BTreeMap::from([("team.io/owner".into(), "a".into())]))
        );
        assert_eq!(
            p.metadata.annotations,
            Some(BTreeMap::from([("team.io/note".into(), "n".into())]))
        );
        let spec = p.spec.unwrap_or_default();
        assert_eq!(spec.traffic_distribution.as_deref(), Some("PreferClose"));
        assert_eq!(spec.cluster_ip, None);
    }

    #[test]
    fn target_and_primary_fingerprint_alike_only_when_the_copied_spec_matches() {
        use crate::target::fingerprint::service_fingerprint;
        let target_spec = target().spec.unwrap_or_default();
        let mut primary_spec = target_spec.clone();
        primary_spec.cluster_ip = Some("10.0.0.9".into());
        primary_spec.cluster_ips = Some(vec!["10.0.0.9".into()]);
        if let Some(p) = primary_spec.ports.as_mut() {
            p[0].node_port = Some(31111);
        }
        assert_eq!(
            service_fingerprint(&copyable_spec(&target_spec, None)),
            service_fingerprint(&copyable_spec(&primary_spec, None))
        );
        primary_spec.selector = Some(BTreeMap::from([("app".into(), "podinfo-blue".into())]));
        assert_ne!(
            service_fingerprint(&copyable_spec(&target_spec, None)),
            service_fingerprint(&copyable_spec(&primary_spec, None))
        );
    }
}
