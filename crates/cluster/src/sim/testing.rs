//! Builders for the simulators' unit tests (pure, test-only).
use super::util;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{
    Container, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;

/// A pod spec with one container `app` running `nginx:1`.
pub fn app_pod_spec() -> PodSpec {
    PodSpec {
        containers: vec![Container {
            name: "app".into(),
            image: Some("nginx:1".into()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A running pod created (and, if `ready`, Ready) at `at_secs` seconds after the epoch.
pub fn pod(name: &str, ready: bool, at_secs: i64) -> Pod {
    let at = util::time(Timestamp::from_second(at_secs).unwrap_or(Timestamp::UNIX_EPOCH));
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            creation_timestamp: Some(at.clone()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("sim-node-0".into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(at),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// A selector of `app: <app>` and a Pod template of `spec` with that label, as a workload's
/// spec pairs them.
pub fn selected_template(app: &str, spec: PodSpec) -> (LabelSelector, PodTemplateSpec) {
    let labels = BTreeMap::from([("app".to_string(), app.to_string())]);
    let selector = LabelSelector {
        match_labels: Some(labels.clone()),
        ..Default::default()
    };
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            ..Default::default()
        }),
        spec: Some(spec),
    };
    (selector, template)
}

/// A ReplicaSet selecting `app: web` with the given size.
pub fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    let (selector, template) = selected_template("web", PodSpec::default());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            generation: Some(1),
            ..Default::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            selector,
            template: Some(template),
            ..Default::default()
        },
        status: None,
    }
}
