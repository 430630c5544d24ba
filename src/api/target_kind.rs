//! The kinds of object a Canary can target, read from `targetRef`; pure.
use std::fmt;

use super::canary::TargetRef;

/// A target kind Serin knows how to canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` DaemonSet.
    DaemonSet,
    /// `apps/v1` StatefulSet (a Serin extension: Flagger has no StatefulSet targets).
    StatefulSet,
    /// A core/v1 Service (Service-to-Service canary).
    Service,
    /// A Knative Service (`serving.knative.dev/v1`).
    KnativeService,
}

impl TargetKind {
    /// The kind a `targetRef` names, or `None` for a kind Serin does not support. A Knative
    /// Service is told apart from a core Service by its apiVersion, as Flagger does.
    pub fn of(target: &TargetRef) -> Option<Self> {
        if target.is_knative_service() {
            return Some(Self::KnativeService);
        }
        match target.kind.as_str() {
            "Deployment" => Some(Self::Deployment),
            "DaemonSet" => Some(Self::DaemonSet),
            "StatefulSet" => Some(Self::StatefulSet),
            "Service" => Some(Self::Service),
            _ => None,
        }
    }

    /// The Kubernetes `kind` (a Knative Service is a `Service` too).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::DaemonSet => "DaemonSet",
            Self::StatefulSet => "StatefulSet",
            Self::Service | Self::KnativeService => "Service",
        }
    }

    /// Whether this is a workload Serin scales and fronts with generated Services (Deployment,
    /// DaemonSet, StatefulSet). A Knative Service scales itself and is its own router; a Kubernetes Service
    /// target has nothing to scale and is copied, not fronted.
    pub fn is_workload(self) -> bool {
        matches!(self, Self::Deployment | Self::DaemonSet | Self::StatefulSet)
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tref(api_version: &str, kind: &str) -> TargetRef {
        TargetRef {
            api_version: api_version.into(),
            kind: kind.into(),
            name: "podinfo".into(),
        }
    }

    #[test]
    fn a_knative_service_is_told_apart_from_a_core_service_by_its_api_version() {
        assert_eq!(
            TargetKind::of(&tref("serving.knative.dev/v1", "Service")),
            Some(TargetKind::KnativeService)
        );
        assert_eq!(
            TargetKind::of(&tref("v1", "Service")),
            Some(TargetKind::Service)
        );
        assert_eq!(TargetKind::KnativeService.as_str(), "Service");
    }

    #[test]
    fn deployments_daemonsets_and_statefulsets_are_workloads() {
        assert!(
            TargetKind::of(&tref("apps/v1", "Deployment")).is_some_and(TargetKind::is_workload)
        );
        assert!(TargetKind::of(&tref("apps/v1", "DaemonSet")).is_some_and(TargetKind::is_workload));
        assert!(!TargetKind::Service.is_workload());
        assert!(
            TargetKind::of(&tref("apps/v1", "StatefulSet")).is_some_and(TargetKind::is_workload)
        );
        assert_eq!(TargetKind::of(&tref("apps/v1", "ReplicaSet")), None);
    }
}
