//! The controller's permissions as a table (each with the feature that needs it) and the RBAC
//! objects built from it; pure.
use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// How we know a permission is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The end-to-end suites (tests/*_e2e.rs) make requests that need it; the RBAC coverage
    /// test checks that they still do.
    E2e,
    /// Needed by a feature no end-to-end suite drives against the embedded cluster; the text
    /// says which code path uses it.
    Documented(&'static str),
}

/// One ClusterRole rule: an API group, resources and verbs, and why Serin needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// API group, empty for core.
    pub group: &'static str,
    /// Plural resources, `resource/subresource` for subresources.
    pub resources: &'static [&'static str],
    /// Verbs on them.
    pub verbs: &'static [&'static str],
    /// The feature that needs this permission.
    pub feature: &'static str,
    /// How we know it is needed.
    pub evidence: Evidence,
}

/// Verbs of objects Serin writes with server-side apply: the apply is a `patch`, and an apply
/// that creates the object is also authorized as `create`.
const APPLY: &[&str] = &["get", "create", "patch"];

/// Every cluster-wide permission of the controller. Kept in one table so that
/// docs/install.md, the ClusterRole in deploy/ and charts/serin, and the RBAC tests agree.
pub const CLUSTER_PERMISSIONS: &[Permission] = &[
    Permission {
        group: "flagger.app",
        resources: &["canaries"],
        verbs: &["list", "watch", "patch"],
        feature: "watch Canaries (the reconcile loop); add/remove finalizer.flagger.app for revertOnDeletion (merge patch)",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "flagger.app",
        resources: &["canaries/status"],
        verbs: &["patch"],
        feature: "record phase, weights, checks and conditions (server-side apply of the status)",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "flagger.app",
        resources: &["canaries/finalizers"],
        verbs: &["update"],
        feature: "generated objects carry an ownerReference to their Canary with blockOwnerDeletion, which clusters running the OwnerReferencesPermissionEnforcement admission plugin (OpenShift) only allow with update on canaries/finalizers",
        evidence: Evidence::Documented(
            "the embedded cluster does not run the OwnerReferencesPermissionEnforcement admission plugin",
        ),
    },
    Permission {
        group: "flagger.app",
        resources: &["metrictemplates", "alertproviders"],
        verbs: &["list"],
        feature: "startup check that the MetricTemplate and AlertProvider CRDs are installed",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "flagger.app",
        resources: &["metrictemplates"],
        verbs: &["get"],
        feature: "analysis.metrics[].templateRef: read the MetricTemplate",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "flagger.app",
        resources: &["alertproviders"],
        verbs: &["get"],
        feature: "analysis.alerts[].providerRef: read the AlertProvider",
        evidence: Evidence::Documented(
            "src/notifier/mod.rs; tests/notifier.rs drives the notifier against a local server, not the e2e harness",
        ),
    },
    Permission {
        group: "apps",
        resources: &["deployments", "daemonsets"],
        verbs: &["list", "watch", "create", "patch"],
        feature: "watch targets; create and promote <target>-primary (server-side apply); scale the target (merge patch, a node selector for DaemonSets)",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "apps",
        resources: &["statefulsets"],
        verbs: &["list", "watch", "create", "patch"],
        feature: "StatefulSet targets (a Serin extension): watch them; create and promote <target>-primary (server-side apply); scale the target (merge patch)",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "keda.sh",
        resources: &["scaledobjects"],
        verbs: &["list", "watch", "create", "patch"],
        feature: "autoscalerRef.kind ScaledObject: watch KEDA ScaledObjects (once a Canary uses one); create and promote <so>-primary (server-side apply); pause the target's with autoscaling.keda.sh/paused-replicas (merge patch)",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "apps",
        resources: &["statefulsets"],
        verbs: &["get"],
        feature: "revertOnDeletion: read the StatefulSet target before handing traffic back",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "apps",
        resources: &["deployments"],
        verbs: &["get"],
        feature: "revertOnDeletion: read the Deployment target before handing traffic back",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "apps",
        resources: &["daemonsets"],
        verbs: &["get"],
        feature: "revertOnDeletion: read the DaemonSet target before handing traffic back",
        evidence: Evidence::Documented(
            "src/controller/mod.rs; no e2e scenario deletes a DaemonSet Canary with revertOnDeletion",
        ),
    },
    Permission {
        group: "",
        resources: &["services"],
        verbs: &["get", "list", "watch", "create", "patch"],
        feature: "generate <svc>, <svc>-primary and <svc>-canary (server-side apply); Service targets; restore the apex Service on deletion (merge patch); Gloo and App Mesh read Services",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "",
        resources: &["configmaps", "secrets"],
        verbs: &["list", "watch"],
        feature: "config tracking: watch the ConfigMaps and Secrets targets reference",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "",
        resources: &["configmaps"],
        verbs: &["create", "patch"],
        feature: "config tracking: copy referenced ConfigMaps to <name>-primary (server-side apply)",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "",
        resources: &["secrets"],
        verbs: &["create", "patch"],
        feature: "config tracking: copy referenced Secrets to <name>-primary (server-side apply)",
        evidence: Evidence::Documented(
            "src/target/configs.rs; the e2e targets reference ConfigMaps only",
        ),
    },
    Permission {
        group: "",
        resources: &["secrets"],
        verbs: &["get"],
        feature: "credentials of MetricTemplate providers (spec.provider.secretRef) and AlertProviders (spec.secretRef)",
        evidence: Evidence::Documented(
            "src/metrics/analyzer.rs and src/notifier/mod.rs; no e2e template or provider uses a secretRef",
        ),
    },
    Permission {
        group: "",
        resources: &["pods"],
        verbs: &["list"],
        feature: "revertOnDeletion: switch the apex Service back only when the target's Pods are ready",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "autoscaling",
        resources: &["horizontalpodautoscalers"],
        verbs: &["list", "watch"],
        feature: "autoscalerRef: watch the target's HorizontalPodAutoscaler (autoscaling/v2)",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "autoscaling",
        resources: &["horizontalpodautoscalers"],
        verbs: &["create", "patch"],
        feature: "autoscalerRef: create and update <hpa>-primary (server-side apply)",
        evidence: Evidence::Documented(
            "src/target/builders.rs; no e2e Canary has an autoscalerRef",
        ),
    },
    Permission {
        group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create"],
        feature: "Kubernetes Events on Canaries (kube-runtime's Recorder creates events.k8s.io/v1 Events; Serin uses a fresh Recorder per event, so it never patches an event series)",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "networking.k8s.io",
        resources: &["ingresses"],
        verbs: APPLY,
        feature: "nginx and skipper providers: read ingressRef and write the <ingress>-canary copy",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "networking.k8s.io",
        resources: &["ingresses"],
        verbs: &["delete"],
        feature: "skipper provider: delete the canary Ingress when a Canary with revertOnDeletion is deleted",
        evidence: Evidence::Documented(
            "src/router/skipper.rs finalize; no end-to-end scenario deletes a skipper Canary",
        ),
    },
    Permission {
        group: "networking.istio.io",
        resources: &["virtualservices", "destinationrules"],
        verbs: APPLY,
        feature: "istio provider (and smi with Istio): VirtualService <svc>, DestinationRules <svc>-primary/-canary",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "gateway.networking.k8s.io",
        resources: &["httproutes"],
        verbs: APPLY,
        feature: "gatewayapi:v1 and gatewayapi:v1beta1 providers: HTTPRoute <svc> (and Linkerd GAMMA routes)",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "split.smi-spec.io",
        resources: &["trafficsplits"],
        verbs: APPLY,
        feature: "linkerd, osm and smi:v1alpha1-3 providers: TrafficSplit <svc>",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "projectcontour.io",
        resources: &["httpproxies"],
        verbs: APPLY,
        feature: "contour provider: HTTPProxy <svc>",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "traefik.io",
        resources: &["traefikservices"],
        verbs: APPLY,
        feature: "traefik provider: TraefikService <svc>",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "gloo.solo.io",
        resources: &["upstreams"],
        verbs: APPLY,
        feature: "gloo provider: read upstreamRef and write the primary/canary Upstreams",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "gateway.solo.io",
        resources: &["routetables"],
        verbs: APPLY,
        feature: "gloo provider: RouteTable <svc>",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "apisix.apache.org",
        resources: &["apisixroutes"],
        verbs: APPLY,
        feature: "apisix provider: read routeRef and write the <route>-<svc>-canary copy",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "kuma.io",
        resources: &["trafficroutes"],
        verbs: APPLY,
        feature: "kuma provider: TrafficRoute <svc> (cluster-scoped)",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "appmesh.k8s.aws",
        resources: &["virtualnodes", "virtualrouters", "virtualservices"],
        verbs: APPLY,
        feature: "appmesh and appmesh:v1beta2 providers: VirtualNodes, VirtualRouter and VirtualServices",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "metrics.keptn.sh",
        resources: &["keptnmetrics"],
        verbs: &["get"],
        feature: "keptn metric provider: read a KeptnMetric's status.value (src/metrics/keptn.rs)",
        evidence: Evidence::E2e,
    },
    Permission {
        group: "metrics.keptn.sh",
        resources: &["analyses"],
        verbs: &["get", "create", "delete"],
        feature: "keptn metric provider: run a Keptn Analysis, read its verdict, delete it (src/metrics/keptn.rs)",
        evidence: Evidence::Documented(
            "src/metrics/keptn.rs; tested against the embedded cluster in tests/metrics_providers2.rs, not by an e2e suite",
        ),
    },
    Permission {
        group: "serving.knative.dev",
        resources: &["services"],
        verbs: &["get", "list", "watch", "patch"],
        feature: "knative provider: watch Knative Services, pin the primary revision and split traffic (merge patch)",
        evidence: Evidence::E2e,
    },
];

/// Name of the Lease the replicas elect a leader with.
pub const LEASE_NAME: &str = "serin-leader-election";

/// The leader-election permission, granted by a Role in the controller's namespace only.
pub const LEADER_ELECTION: Permission = Permission {
    group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["create"],
    feature: "--enable-leader-election: create the Lease serin-leader-election in --leader-election-namespace (create cannot be limited by name)",
    evidence: Evidence::E2e,
};

/// The Lease leader election reads and renews; the Role limits get and update to it.
pub const LEADER_ELECTION_LEASE: &str = "serin-leader-election";

/// Reading and renewing the Lease, limited to [`LEADER_ELECTION_LEASE`] by `resourceNames`.
pub const LEADER_ELECTION_RENEW: Permission = Permission {
    group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["get", "update"],
    feature: "--enable-leader-election: standbys read the Lease; the leader acquires, renews and releases it (PUT with resourceVersion)",
    evidence: Evidence::E2e,
};

/// Kubernetes-style labels shared by every installed object.
pub fn labels(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "serin".to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            component.to_string(),
        ),
        (
            "app.kubernetes.io/version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ])
}

fn rule(p: &Permission) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![p.group.to_string()]),
        resources: Some(p.resources.iter().map(|r| r.to_string()).collect()),
        verbs: p.verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// The rules of the controller's ClusterRole, one per table row.
pub fn cluster_rules() -> Vec<PolicyRule> {
    CLUSTER_PERMISSIONS.iter().map(rule).collect()
}

/// The rules of the leader-election Role.
pub fn leader_election_rules() -> Vec<PolicyRule> {
    vec![
        rule(&LEADER_ELECTION),
        PolicyRule {
            resource_names: Some(vec![LEADER_ELECTION_LEASE.to_string()]),
            ..rule(&LEADER_ELECTION_RENEW)
        },
    ]
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(labels("controller")),
        ..ObjectMeta::default()
    }
}

fn subject(service_account: &str, namespace: &str) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".into(),
        name: service_account.into(),
        namespace: Some(namespace.into()),
        api_group: None,
    }]
}

/// The ClusterRole `name` with [`cluster_rules`].
pub fn cluster_role(name: &str) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, None),
        rules: Some(cluster_rules()),
        aggregation_rule: None,
    }
}

/// Binds the ClusterRole `name` to the ServiceAccount `name` in `namespace`.
pub fn cluster_role_binding(name: &str, namespace: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, None),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: name.into(),
        },
        subjects: Some(subject(name, namespace)),
    }
}

/// The leader-election Role in `namespace`.
pub fn leader_election_role(namespace: &str) -> Role {
    Role {
        metadata: meta(LEASE_NAME, Some(namespace)),
        rules: Some(leader_election_rules()),
    }
}

/// Binds the leader-election Role to the ServiceAccount `service_account`.
pub fn leader_election_role_binding(namespace: &str, service_account: &str) -> RoleBinding {
    RoleBinding {
        metadata: meta(LEASE_NAME, Some(namespace)),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: LEASE_NAME.into(),
        },
        subjects: Some(subject(service_account, namespace)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rule_uses_a_wildcard() {
        for p in CLUSTER_PERMISSIONS.iter().chain([&LEADER_ELECTION]) {
            assert!(!p.group.contains('*'), "{p:?}");
            assert!(p.resources.iter().all(|r| !r.contains('*')), "{p:?}");
            assert!(p.verbs.iter().all(|v| *v != "*"), "{p:?}");
            assert!(!p.feature.is_empty(), "{p:?}");
        }
    }

    #[test]
    fn leases_are_not_in_the_cluster_role() {
        assert!(
            CLUSTER_PERMISSIONS
                .iter()
                .all(|p| p.group != "coordination.k8s.io")
        );
    }
}
