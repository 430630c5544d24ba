//! An in-memory [`Snapshot`] for table tests of target observation, filled like a fixture
//! builder (`TestSnapshot::new().with(podinfo)`); test-only, no I/O.
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use serde_json::Value;

use super::Snapshot;
use crate::core::workload::Workload;

/// One cached object of any kind observation reads.
#[derive(Clone, Debug)]
pub enum Cached {
    /// A Deployment.
    Deployment(Deployment),
    /// A DaemonSet.
    DaemonSet(DaemonSet),
    /// A StatefulSet.
    StatefulSet(StatefulSet),
    /// A core Service.
    Service(Service),
    /// A ConfigMap.
    ConfigMap(ConfigMap),
    /// A Secret.
    Secret(Secret),
    /// A HorizontalPodAutoscaler.
    Hpa(HorizontalPodAutoscaler),
    /// A Knative Service, as JSON.
    Knative(Value),
    /// A KEDA ScaledObject, as JSON.
    ScaledObject(Value),
}

macro_rules! cached_from {
    ($($kind:ident),*) => {$(
        impl From<$kind> for Cached {
            fn from(o: $kind) -> Self {
                Self::$kind(o)
            }
        }
    )*};
}
cached_from!(
    Deployment,
    DaemonSet,
    StatefulSet,
    Service,
    ConfigMap,
    Secret
);

impl From<HorizontalPodAutoscaler> for Cached {
    fn from(o: HorizontalPodAutoscaler) -> Self {
        Self::Hpa(o)
    }
}

impl From<Workload> for Cached {
    fn from(w: Workload) -> Self {
        match w {
            Workload::Deployment(d) => Self::Deployment(d),
            Workload::DaemonSet(d) => Self::DaemonSet(d),
            Workload::StatefulSet(s) => Self::StatefulSet(s),
        }
    }
}

/// Cached objects in memory; Knative Services count as listed unless told otherwise.
#[derive(Clone, Debug)]
pub struct TestSnapshot {
    objects: Vec<Cached>,
    knative_synced: bool,
}

impl Default for TestSnapshot {
    fn default() -> Self {
        Self::new()
    }
}

impl TestSnapshot {
    /// An empty cache in which the Knative Services have been listed.
    pub fn new() -> Self {
        Self {
            objects: Vec::new(),
            knative_synced: true,
        }
    }

    /// Adds an object to the cache.
    pub fn with(mut self, object: impl Into<Cached>) -> Self {
        self.objects.push(object.into());
        self
    }

    /// A cache whose Knative Services have not been listed (yet, or ever: Knative Serving is
    /// not installed).
    pub fn knative_not_listed(mut self) -> Self {
        self.knative_synced = false;
        self
    }

    fn find<K: kube::Resource + Clone>(
        &self,
        pick: fn(&Cached) -> Option<&K>,
        ns: &str,
        name: &str,
    ) -> Option<Arc<K>> {
        self.objects
            .iter()
            .filter_map(pick)
            .find(|o| {
                o.meta().namespace.as_deref() == Some(ns) && o.meta().name.as_deref() == Some(name)
            })
            .map(|o| Arc::new(o.clone()))
    }
}

impl Snapshot for TestSnapshot {
    fn deployment(&self, ns: &str, name: &str) -> Option<Arc<Deployment>> {
        let pick: fn(&Cached) -> Option<&_> = |c| match c {
            Cached::Deployment(o) => Some(o),
            _ => None,
        };
        self.find(pick, ns, name)
    }

    fn daemonset(&self, ns: &str, name: &str) -> Option<Arc<DaemonSet>> {
        let pick: fn(&Cached) -> Option<&_> = |c| match c {
            Cached::DaemonSet(o) => Some(o),
            _ => None,
        };
        self.find(pick, ns, name)
    }

    fn statefulset(&self, ns: &str, name: &str) -> Option<Arc<StatefulSet>> {
        let pick: fn(&Cached) -> Option<&_> = |c| match c {
            Cached::StatefulSet(o) => Some(o),
            _ => None,
        };
        self.find(pick, ns, name)
    }

    fn scaled_object(&self, ns: &str, name: &str) -> Option<Value> {
        self.objects.iter().find_map(|c| match c {
            Cached::ScaledObject(v)
                if v["metadata"]["namespace"] == ns && v["metadata"]["name"] == name =>
            {
                Some(v.clone())
            }
            _ => None,
        })
    }

    fn service(&self, ns: &str, name: &str) -> Option<Arc<Service>> {
        let pick: fn(&Cached) -> Option<&_> = |c| match c {
            Cached::Service(o) => Some(o),
            _ => None,
        };
        self.find(pick, ns, name)
    }

    fn config_map(&self, ns: &str, name: &str) -> Option<Arc<ConfigMap>> {
        let pick: fn(&Cached) -> Option<&_> = |c| match c {
            Cached::ConfigMap(o) => Some(o),
            _ => None,
        };
        self.find(pick, ns, name)
    }

    fn secret(&self, ns: &str, name: &str) -> Option<Arc<Secret>> {
        let pick: fn(&Cached) -> Option<&_> = |c| match c {
            Cached::Secret(o) => Some(o),
            _ => None,
        };
        self.find(pick, ns, name)
    }

    fn hpa(&self, ns: &str, name: &str) -> Option<Arc<HorizontalPodAutoscaler>> {
        let pick: fn(&Cached) -> Option<&_> = |c| match c {
            Cached::Hpa(o) => Some(o),
            _ => None,
        };
        self.find(pick, ns, name)
    }

    fn knative_service(&self, ns: &str, name: &str) -> Option<Value> {
        self.objects.iter().find_map(|c| match c {
            Cached::Knative(v)
                if v["metadata"]["namespace"] == ns && v["metadata"]["name"] == name =>
            {
                Some(v.clone())
            }
            _ => None,
        })
    }

    fn knative_synced(&self) -> bool {
        self.knative_synced
    }
}
