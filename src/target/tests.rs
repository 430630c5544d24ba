//! Table tests of target observation through an in-memory snapshot; pure, no I/O.
use chrono::Utc;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use serde_json::json;

use super::builders::fixtures::{canary, deployment, label, map, template};
use super::builders::{BuildConfig, canary_services};
use super::configs::ConfigRenames;
use super::testing::{Cached, TestSnapshot};
use super::*;
use crate::api::canary::TargetRef;
use crate::core::workload::Workload;

/// podinfo's target workload, as a builder: a Deployment unless turned into a DaemonSet.
#[derive(Clone)]
struct Podinfo(Workload);

fn podinfo() -> Podinfo {
    Podinfo(deployment(Some(2)))
}

impl Podinfo {
    fn image(mut self, image: &str) -> Self {
        let template = match &mut self.0 {
            Workload::Deployment(d) => &mut d.spec.template,
            Workload::DaemonSet(d) => &mut d.spec.template,
            Workload::StatefulSet(s) => &mut s.spec.template,
        };
        if let Some(spec) = template.spec.as_mut() {
            spec.containers[0].image = Some(image.into());
        }
        self
    }

    fn match_labels(mut self, pairs: &[(&str, &str)]) -> Self {
        let selector = match &mut self.0 {
            Workload::Deployment(d) => &mut d.spec.selector,
            Workload::DaemonSet(d) => &mut d.spec.selector,
            Workload::StatefulSet(s) => &mut s.spec.selector,
        };
        selector.match_labels = Some(map(pairs));
        self
    }

    fn daemonset(self) -> Self {
        let Workload::Deployment(d) = self.0 else {
            return self;
        };
        Podinfo(Workload::DaemonSet(DaemonSet {
            metadata: d.metadata,
            spec: DaemonSetSpec {
                selector: d.spec.selector,
                template: d.spec.template,
                ..Default::default()
            },
            status: None,
        }))
    }

    /// The same target as a StatefulSet governed by the headless Service `service_name`, with a
    /// `data` claim template.
    fn statefulset(self, service_name: &str) -> Self {
        let Workload::Deployment(d) = self.0 else {
            return self;
        };
        let claim = serde_json::from_value(json!({
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"}
        }))
        .unwrap_or_default();
        Podinfo(Workload::StatefulSet(StatefulSet {
            metadata: d.metadata,
            spec: StatefulSetSpec {
                replicas: d.spec.replicas,
                service_name: Some(service_name.into()),
                selector: d.spec.selector,
                template: d.spec.template,
                volume_claim_templates: Some(vec![claim]),
                ..Default::default()
            },
            status: None,
        }))
    }

    /// The primary Serin would create from this revision (no tracked configs).
    fn primary(&self) -> Workload {
        workload::primary_workload(
            &canary(),
            &self.0,
            &label(),
            &ConfigRenames::new(),
            &BuildConfig::default(),
            "id",
            true,
        )
    }
}

impl From<Podinfo> for Cached {
    fn from(p: Podinfo) -> Self {
        p.0.into()
    }
}

/// The fixture Canary, pointed at another kind of target (or at none).
fn canary_for(target: Option<(&str, &str)>) -> Canary {
    let mut c = canary();
    c.spec.target_ref = target.map(|(api_version, kind)| TargetRef {
        api_version: api_version.into(),
        kind: kind.into(),
        name: "podinfo".into(),
    });
    c
}

fn service_target(owner_uid: Option<&str>) -> Service {
    let owners = owner_uid.map(|uid| {
        json!([{"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo",
                "uid": uid, "controller": true}])
    });
    serde_json::from_value(json!({
        "metadata": {"name": "podinfo", "namespace": "test", "ownerReferences": owners},
        "spec": {
            "selector": {"app": "podinfo-green"},
            "ports": [{"name": "http", "port": 9898, "targetPort": 9898}]
        }
    }))
    .unwrap_or_default()
}

fn knative_service(latest: &str, primary: &str) -> Value {
    json!({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": "podinfo", "namespace": "test", "generation": 2,
                     "annotations": {"flagger.app/primary-revision": primary}},
        "status": {"observedGeneration": 2, "latestCreatedRevisionName": latest,
                   "latestReadyRevisionName": latest,
                   "traffic": [{"revisionName": primary, "percent": 100}]}
    })
}

fn config_map() -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": "podinfo-config-vol", "namespace": "test"},
        "data": {"color": "blue"}
    }))
    .unwrap_or_default()
}

/// How the primary compares with the target.
#[derive(Debug, PartialEq)]
enum Primary {
    Absent,
    InSync,
    Behind,
}

/// What a table row checks of an observation.
#[derive(Debug, PartialEq)]
struct Summary {
    kind: TargetKind,
    selector: String,
    primary: Primary,
    desired_primary: String,
    to_apply: Vec<String>,
    tracked_configs: Vec<String>,
    missing_configs: Vec<String>,
}

impl Summary {
    fn of(kind: TargetKind, selector: &str, primary: Primary, desired_primary: &str) -> Self {
        Self {
            kind,
            selector: selector.into(),
            primary,
            desired_primary: desired_primary.into(),
            to_apply: Vec::new(),
            tracked_configs: Vec::new(),
            missing_configs: Vec::new(),
        }
    }

    fn applying(mut self, names: &[&str]) -> Self {
        self.to_apply = names.iter().map(|n| n.to_string()).collect();
        self
    }

    fn tracking(mut self, keys: &[&str], missing: &[&str]) -> Self {
        self.tracked_configs = keys.iter().map(|n| n.to_string()).collect();
        self.missing_configs = missing.iter().map(|n| n.to_string()).collect();
        self
    }

    fn from(o: &Observation) -> Self {
        let name = |v: &Value| {
            v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let g = &o.generated;
        let desired_primary = match (&g.primary, &g.primary_revision, &g.primary_service) {
            (Some(w), _, _) => format!("{} {}", w.kind(), w.name()),
            (_, Some(rev), _) => format!("revision {rev}"),
            (_, _, Some(svc)) => format!("Service {}", name(svc)),
            _ => String::new(),
        };
        let (k, v) = &o.target.selector;
        Self {
            kind: o.target.kind,
            selector: if k.is_empty() {
                String::new()
            } else {
                format!("{k}={v}")
            },
            primary: match &o.primary {
                None => Primary::Absent,
                Some(p) if p.fingerprint == o.target.fingerprint => Primary::InSync,
                Some(_) => Primary::Behind,
            },
            desired_primary,
            to_apply: g.services_to_apply.iter().map(name).collect(),
            tracked_configs: o.target.tracked_configs.keys().cloned().collect(),
            missing_configs: g.missing_configs.iter().map(name).collect(),
        }
    }
}

#[test]
fn observation_reads_each_target_kind_from_the_snapshot() {
    use TargetKind::{DaemonSet, Deployment, KnativeService, StatefulSet};
    const GENERATED: [&str; 3] = ["podinfo", "podinfo-primary", "podinfo-canary"];
    let generated_services = canary_services(&canary(), &label(), &template())
        .unwrap_or_else(|e| panic!("fixture: {e}"));
    let in_sync = generated_services
        .iter()
        .cloned()
        .fold(TestSnapshot::new(), TestSnapshot::with);
    let cases: Vec<(&str, Canary, TestSnapshot, Result<Summary, TargetProblem>)> = vec![
        (
            "a Canary without targetRef is invalid",
            canary_for(None),
            TestSnapshot::new(),
            Err(TargetProblem::Invalid("spec.targetRef is required".into())),
        ),
        (
            "an unsupported kind is invalid",
            canary_for(Some(("apps/v1", "ReplicaSet"))),
            TestSnapshot::new().with(podinfo()),
            Err(TargetProblem::Invalid(
                "targetRef kind \"ReplicaSet\" is not supported (Deployment, DaemonSet, StatefulSet and Service are)"
                    .into(),
            )),
        ),
        (
            "a target that is not cached is missing",
            canary(),
            TestSnapshot::new(),
            Err(TargetProblem::Missing(
                "Deployment podinfo.test not found".into(),
            )),
        ),
        (
            "a target without a selector label is invalid",
            canary(),
            TestSnapshot::new().with(podinfo().match_labels(&[("component", "web")])),
            Err(TargetProblem::Invalid(
                "deployment podinfo.test spec.selector.matchLabels must contain one of [app name app.kubernetes.io/name]"
                    .into(),
            )),
        ),
        (
            "a Deployment without primary gets a primary and its Services",
            canary(),
            TestSnapshot::new().with(podinfo()),
            Ok(Summary::of(Deployment, "app=podinfo", Primary::Absent, "Deployment podinfo-primary")
                .applying(&GENERATED)),
        ),
        (
            "a Deployment whose primary runs its template is in sync",
            canary(),
            TestSnapshot::new()
                .with(podinfo())
                .with(podinfo().primary()),
            Ok(Summary::of(Deployment, "app=podinfo", Primary::InSync, "Deployment podinfo-primary")
                .applying(&GENERATED)),
        ),
        (
            "a changed template has a new fingerprint and leaves the primary behind",
            canary(),
            TestSnapshot::new()
                .with(podinfo().image("ghcr.io/stefanprodan/podinfo:6.0.1"))
                .with(podinfo().primary()),
            Ok(Summary::of(Deployment, "app=podinfo", Primary::Behind, "Deployment podinfo-primary")
                .applying(&GENERATED)),
        ),
        (
            "generated Services that match are not applied again",
            canary(),
            in_sync.clone().with(podinfo()).with(podinfo().primary()),
            Ok(Summary::of(Deployment, "app=podinfo", Primary::InSync, "Deployment podinfo-primary")),
        ),
        (
            "a StatefulSet tracks its configs as a Deployment does",
            canary_for(Some(("apps/v1", "StatefulSet"))),
            in_sync
                .clone()
                .with(podinfo().statefulset("podinfo-headless"))
                .with(config_map()),
            Ok(Summary::of(StatefulSet, "app=podinfo", Primary::Absent, "StatefulSet podinfo-primary")
                .applying(&["podinfo-headless-primary"])
                .tracking(&["configmap/podinfo-config-vol"], &["podinfo-config-vol-primary"])),
        ),
        (
            "a tracked ConfigMap is fingerprinted and its missing copy generated",
            canary(),
            in_sync.with(podinfo()).with(config_map()),
            Ok(Summary::of(Deployment, "app=podinfo", Primary::Absent, "Deployment podinfo-primary")
                .tracking(&["configmap/podinfo-config-vol"], &["podinfo-config-vol-primary"])),
        ),
        (
            "a DaemonSet target has a DaemonSet primary",
            canary_for(Some(("apps/v1", "DaemonSet"))),
            TestSnapshot::new()
                .with(podinfo().daemonset())
                .with(podinfo().daemonset().primary()),
            Ok(Summary::of(DaemonSet, "app=podinfo", Primary::InSync, "DaemonSet podinfo-primary")
                .applying(&GENERATED)),
        ),
        (
            "a StatefulSet target has a StatefulSet primary and a headless Service of its own",
            canary_for(Some(("apps/v1", "StatefulSet"))),
            TestSnapshot::new()
                .with(podinfo().statefulset("podinfo-headless"))
                .with(podinfo().statefulset("podinfo-headless").primary()),
            Ok(Summary::of(StatefulSet, "app=podinfo", Primary::InSync, "StatefulSet podinfo-primary")
                .applying(&["podinfo", "podinfo-primary", "podinfo-canary", "podinfo-headless-primary"])),
        ),
        (
            "a StatefulSet governed by the Canary's own Service name is refused",
            canary_for(Some(("apps/v1", "StatefulSet"))),
            TestSnapshot::new().with(podinfo().statefulset("podinfo")),
            Err(TargetProblem::Invalid(
                "StatefulSet podinfo.test serviceName \"podinfo\" is the Canary's service name: the \
                 primary's headless Service podinfo-primary would collide with the generated \
                 primary Service; give the StatefulSet its own headless Service"
                    .into(),
            )),
        ),
        (
            "a DaemonSet target is not looked up among Deployments",
            canary_for(Some(("apps/v1", "DaemonSet"))),
            TestSnapshot::new().with(podinfo()),
            Err(TargetProblem::Missing("DaemonSet podinfo.test not found".into())),
        ),
        (
            "a Service target gets a canary copy and a primary copy",
            canary_for(Some(("v1", "Service"))),
            TestSnapshot::new().with(service_target(None)),
            Ok(Summary::of(TargetKind::Service, "", Primary::Absent, "Service podinfo-primary")
                .applying(&["podinfo-canary"])),
        ),
        (
            "a Service generated by this Canary cannot be its target",
            canary_for(Some(("v1", "Service"))),
            TestSnapshot::new().with(service_target(Some("4f1c-uid"))),
            Err(TargetProblem::Invalid(
                "Service podinfo.test is generated by this Canary and cannot be its target".into(),
            )),
        ),
        (
            "a Knative Service not yet listed waits for the list",
            canary_for(Some(("serving.knative.dev/v1", "Service"))),
            TestSnapshot::new()
                .with(Cached::Knative(knative_service("podinfo-00002", "podinfo-00001")))
                .knative_not_listed(),
            Err(TargetProblem::Missing(
                "Knative Service podinfo.test: Knative Services are not listed yet (is Knative Serving installed?)"
                    .into(),
            )),
        ),
        (
            "a Knative Service with a new revision names it as the next primary",
            canary_for(Some(("serving.knative.dev/v1", "Service"))),
            TestSnapshot::new()
                .with(Cached::Knative(knative_service("podinfo-00002", "podinfo-00001"))),
            Ok(Summary::of(KnativeService, "", Primary::Behind, "revision podinfo-00002")),
        ),
    ];
    let build = BuildConfig::default();
    let opts = Options {
        build: &build,
        config_tracking: true,
    };
    for (name, canary, snapshot, want) in cases {
        let got = observe(&opts, &snapshot, &canary, Utc::now());
        assert_eq!(got.map(|o| Summary::from(&o)), want, "{name}");
    }
}

#[test]
fn a_primary_behind_keeps_its_own_fingerprint_while_the_target_gets_a_new_one() {
    let build = BuildConfig::default();
    let opts = Options {
        build: &build,
        config_tracking: true,
    };
    let old = TestSnapshot::new()
        .with(podinfo())
        .with(podinfo().primary());
    let new = TestSnapshot::new()
        .with(podinfo().image("ghcr.io/stefanprodan/podinfo:6.0.1"))
        .with(podinfo().primary());
    let now = Utc::now();
    let (Ok(old), Ok(new)) = (
        observe(&opts, &old, &canary(), now),
        observe(&opts, &new, &canary(), now),
    ) else {
        panic!("both targets are usable");
    };
    assert_ne!(new.target.fingerprint, old.target.fingerprint);
    assert_eq!(
        new.primary.map(|p| p.fingerprint),
        Some(old.target.fingerprint)
    );
    let Some(Workload::Deployment(desired)) = new.generated.primary else {
        panic!("a Deployment target has a Deployment primary");
    };
    let image = desired
        .spec
        .template
        .spec
        .and_then(|s| s.containers.first().and_then(|c| c.image.clone()));
    assert_eq!(image.as_deref(), Some("ghcr.io/stefanprodan/podinfo:6.0.1"));
}

#[test]
fn contains_is_a_subset_check_with_exact_lists() {
    let live = json!({"a": 1, "b": {"c": [ {"x": 1, "y": 2} ]}, "extra": true});
    assert!(contains(&live, &json!({"b": {"c": [ {"x": 1} ]}})));
    assert!(!contains(&live, &json!({"b": {"c": [ {"x": 2} ]}})));
    assert!(!contains(&live, &json!({"b": {"c": []}})));
    assert!(contains(&live, &json!({"a": 1.0})));
    assert!(!contains(&live, &json!({"missing": 1})));
}

#[test]
fn a_scaled_object_autoscaler_gets_a_primary_scaled_object_and_sets_the_scale_up() {
    use crate::api::canary::AutoscalerRef;
    let mut c = canary();
    c.spec.autoscaler_ref = Some(AutoscalerRef {
        api_version: "keda.sh/v1alpha1".into(),
        kind: "ScaledObject".into(),
        name: "podinfo-so".into(),
        ..Default::default()
    });
    let so = json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "podinfo-so", "namespace": "test"},
        "spec": {"scaleTargetRef": {"name": "podinfo"}, "minReplicaCount": 3,
                 "triggers": [{"type": "cpu", "metadata": {"value": "50"}}]}
    });
    let mut target = podinfo();
    if let Workload::Deployment(d) = &mut target.0 {
        d.spec.replicas = Some(0);
    }
    let snapshot = TestSnapshot::new()
        .with(target.clone())
        .with(Cached::ScaledObject(so.clone()));
    let opts = Options {
        build: &BuildConfig::default(),
        config_tracking: false,
    };
    let o = observe(&opts, &snapshot, &c, Utc::now()).unwrap_or_else(|e| panic!("{e:?}"));
    let missing = o.generated.missing_hpa.clone().unwrap_or_default();
    assert_eq!(missing["metadata"]["name"], "podinfo-so-primary");
    assert_eq!(missing["spec"]["scaleTargetRef"]["name"], "podinfo-primary");
    assert_eq!(o.generated.promoted_hpa, Some(missing));
    assert_eq!(
        o.target.scale_up_replicas, 3,
        "the ScaledObject's minReplicaCount"
    );

    // Once the primary ScaledObject exists it is only rewritten on promotion.
    let mut primary = so;
    primary["metadata"]["name"] = json!("podinfo-so-primary");
    let snapshot = snapshot.with(Cached::ScaledObject(primary));
    let o = observe(&opts, &snapshot, &c, Utc::now()).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(o.generated.missing_hpa, None);
    assert!(o.generated.promoted_hpa.is_some());
}
