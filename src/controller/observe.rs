//! Builds the [`Observed`] model for one Canary from the reflector caches, which it offers to
//! `target` as a [`crate::target::Snapshot`]; reads memory only, no API calls.
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::plan::{Generated, Observed, TargetProblem};
use crate::api::validation::{self, ValidationContext};
use crate::api::{Canary, Provider};
use crate::core::knative;
use crate::target::{self, builders::BuildConfig};

/// The finalizer Flagger uses for `revertOnDeletion`.
pub const FINALIZER: &str = "finalizer.flagger.app";

/// KEDA's ScaledObject resource (`keda.sh/v1alpha1`).
pub fn keda_resource() -> kube::core::ApiResource {
    kube::core::ApiResource {
        group: "keda.sh".into(),
        version: "v1alpha1".into(),
        api_version: "keda.sh/v1alpha1".into(),
        kind: "ScaledObject".into(),
        plural: "scaledobjects".into(),
    }
}

/// The resourceVersion of `ns/name` in `store`, if it is cached.
pub fn cached_version<K>(store: &Store<K>, ns: &str, name: &str) -> Option<String>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .get(&ObjectRef::new(name).within(ns))
        .and_then(|o| o.resource_version())
}

/// Reflector caches of everything a Canary depends on.
#[derive(Clone)]
pub struct Stores {
    /// Deployments (targets and primaries).
    pub deployments: Store<Deployment>,
    /// DaemonSets (targets and primaries).
    pub daemonsets: Store<DaemonSet>,
    /// StatefulSets (targets and primaries).
    pub statefulsets: Store<StatefulSet>,
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
    /// KEDA ScaledObjects (`keda.sh/v1alpha1`), watched once a Canary's autoscaler is one.
    pub scaled_objects: Store<DynamicObject>,
    /// Set once the ScaledObjects have been listed (KEDA is often not installed).
    pub scaled_objects_synced: Arc<AtomicBool>,
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

fn get<K>(store: &Store<K>, ns: &str, name: &str) -> Option<Arc<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    store.get(&ObjectRef::new(name).within(ns))
}

/// The reflector caches as the snapshot target observation reads.
impl target::Snapshot for Stores {
    fn deployment(&self, ns: &str, name: &str) -> Option<Arc<Deployment>> {
        get(&self.deployments, ns, name)
    }

    fn daemonset(&self, ns: &str, name: &str) -> Option<Arc<DaemonSet>> {
        get(&self.daemonsets, ns, name)
    }

    fn statefulset(&self, ns: &str, name: &str) -> Option<Arc<StatefulSet>> {
        get(&self.statefulsets, ns, name)
    }

    fn service(&self, ns: &str, name: &str) -> Option<Arc<Service>> {
        get(&self.services, ns, name)
    }

    fn config_map(&self, ns: &str, name: &str) -> Option<Arc<ConfigMap>> {
        get(&self.configmaps, ns, name)
    }

    fn secret(&self, ns: &str, name: &str) -> Option<Arc<Secret>> {
        get(&self.secrets, ns, name)
    }

    fn hpa(&self, ns: &str, name: &str) -> Option<Arc<HorizontalPodAutoscaler>> {
        get(&self.hpas, ns, name)
    }

    fn scaled_object(&self, ns: &str, name: &str) -> Option<Value> {
        let key = ObjectRef::<DynamicObject>::new_with(name, keda_resource()).within(ns);
        self.scaled_objects
            .get(&key)
            .map(|live| serde_json::to_value(live.as_ref()).unwrap_or(Value::Null))
    }

    fn knative_service(&self, ns: &str, name: &str) -> Option<Value> {
        let key = ObjectRef::<DynamicObject>::new_with(name, knative::resource()).within(ns);
        self.knative_services
            .get(&key)
            .map(|live| serde_json::to_value(live.as_ref()).unwrap_or(Value::Null))
    }

    fn knative_synced(&self) -> bool {
        self.knative_synced.load(Ordering::Acquire)
    }
}

/// Builds the snapshot: validation, then the target's observation by its kind
/// ([`crate::target::observe`]). `now` only feeds readiness deadlines.
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
    let opts = target::Options {
        build: &cfg.build,
        config_tracking: cfg.config_tracking,
    };
    match target::observe(&opts, stores, canary, now) {
        Ok(found) => {
            o.target = Ok(found.target);
            o.primary = found.primary;
            o.generated = found.generated;
        }
        Err(e) => o.target = Err(e),
    }
    o
}
