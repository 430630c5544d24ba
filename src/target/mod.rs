//! Target kinds: what Serin reads from, and builds for, each kind of object a `targetRef` may
//! name (Deployment, DaemonSet and StatefulSet workloads, core Services, Knative Services); pure,
//! no I/O.
//!
//! Observation is a pure function of cached objects: the caches are reached through
//! [`Snapshot`], which the controller implements over its reflector stores and tests implement
//! in memory. One module per kind; [`observe`] dispatches on [`TargetKind`].
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::ResourceExt;
use serde_json::Value;

use crate::api::{Canary, TargetKind};
use crate::core::plan::{Generated, PrimaryObs, TargetObs, TargetProblem};

pub mod builders;
pub mod configs;
pub mod fingerprint;
pub mod knative;
pub mod service;
pub mod workload;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use builders::BuildConfig;

/// Read access to the cached objects a target's observation looks at, by namespace and name.
/// Reads memory only: implementations must not call the API server.
pub trait Snapshot {
    /// An apps/v1 Deployment (target or primary).
    fn deployment(&self, ns: &str, name: &str) -> Option<Arc<Deployment>>;
    /// An apps/v1 DaemonSet (target or primary).
    fn daemonset(&self, ns: &str, name: &str) -> Option<Arc<DaemonSet>>;
    /// An apps/v1 StatefulSet (target or primary).
    fn statefulset(&self, ns: &str, name: &str) -> Option<Arc<StatefulSet>>;
    /// A core/v1 Service (a Service target, its copies, or a generated Service).
    fn service(&self, ns: &str, name: &str) -> Option<Arc<Service>>;
    /// A ConfigMap (a tracked config or its `-primary` copy).
    fn config_map(&self, ns: &str, name: &str) -> Option<Arc<ConfigMap>>;
    /// A Secret (a tracked config or its `-primary` copy).
    fn secret(&self, ns: &str, name: &str) -> Option<Arc<Secret>>;
    /// An autoscaling/v2 HorizontalPodAutoscaler (the target's or the primary's).
    fn hpa(&self, ns: &str, name: &str) -> Option<Arc<HorizontalPodAutoscaler>>;
    /// A KEDA ScaledObject (`keda.sh/v1alpha1`) as JSON (the target's or the primary's); `None`
    /// as well while KEDA's ScaledObjects are not listed (KEDA is often not installed).
    fn scaled_object(&self, ns: &str, name: &str) -> Option<Value>;
    /// A Knative Service (`serving.knative.dev/v1`) as JSON.
    fn knative_service(&self, ns: &str, name: &str) -> Option<Value>;
    /// Whether the Knative Services have been listed. Knative Serving is often not installed, so
    /// the other caches do not wait for this one; a Knative target waits instead.
    fn knative_synced(&self) -> bool;
}

/// Controller settings that shape a target's observation.
#[derive(Clone, Copy, Debug)]
pub struct Options<'a> {
    /// `--selector-labels` and `--include-label-prefix`.
    pub build: &'a BuildConfig,
    /// `--enable-config-tracking`.
    pub config_tracking: bool,
}

/// What observation found for a usable target: the target, the primary (if it exists) and the
/// generated objects to create or update.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The target.
    pub target: TargetObs,
    /// The primary, if it exists.
    pub primary: Option<PrimaryObs>,
    /// Generated objects that are missing or drifted.
    pub generated: Generated,
}

/// Observes the Canary's target, dispatching on its kind. `now` only feeds readiness deadlines.
pub fn observe(
    opts: &Options<'_>,
    snapshot: &dyn Snapshot,
    canary: &Canary,
    now: DateTime<Utc>,
) -> Result<Observation, TargetProblem> {
    let ns = canary.namespace().unwrap_or_default();
    let Some(tref) = canary.spec.target_ref.as_ref() else {
        return Err(TargetProblem::Invalid("spec.targetRef is required".into()));
    };
    match TargetKind::of(tref) {
        Some(TargetKind::KnativeService) => knative::observe(snapshot, &tref.name, &ns),
        Some(TargetKind::Service) => service::observe(opts, snapshot, canary, &tref.name, &ns),
        Some(kind @ (TargetKind::Deployment | TargetKind::DaemonSet | TargetKind::StatefulSet)) => {
            workload::observe(opts, snapshot, canary, kind, &tref.name, &ns, now)
        }
        None => Err(TargetProblem::Invalid(format!(
            "targetRef kind {:?} is not supported (Deployment, DaemonSet, StatefulSet and Service are)",
            tref.kind
        ))),
    }
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

fn is_owned_by<K: kube::Resource>(obj: &K, canary: &Canary) -> bool {
    let uid = canary.metadata.uid.as_deref();
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(o.uid.as_str()) == uid)
}
