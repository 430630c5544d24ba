//! Target and primary workloads (Deployment, DaemonSet or StatefulSet) behind one type, plus the pure builders
//! that derive the primary from the target; no I/O.
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

use crate::api::TargetKind;

/// Node selector key that keeps a scaled-to-zero DaemonSet off every node, as Flagger does.
pub const SCALE_TO_ZERO_SELECTOR: &str = "flagger.app/scale-to-zero";
/// Annotation forcing a rollout of the primary on each promotion.
pub const FLAGGER_ID_ANNOTATION: &str = "flagger-id";

/// A workload Serin can canary.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    /// An apps/v1 Deployment.
    Deployment(Deployment),
    /// An apps/v1 DaemonSet.
    DaemonSet(DaemonSet),
    /// An apps/v1 StatefulSet.
    StatefulSet(StatefulSet),
}

impl Workload {
    /// The kind, as in `targetRef.kind`.
    pub fn kind(&self) -> &'static str {
        self.target_kind().as_str()
    }

    /// The kind as a [`TargetKind`].
    pub fn target_kind(&self) -> TargetKind {
        match self {
            Self::Deployment(_) => TargetKind::Deployment,
            Self::DaemonSet(_) => TargetKind::DaemonSet,
            Self::StatefulSet(_) => TargetKind::StatefulSet,
        }
    }

    /// Object metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::Deployment(d) => &d.metadata,
            Self::DaemonSet(d) => &d.metadata,
            Self::StatefulSet(s) => &s.metadata,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// The pod template, if the spec has one.
    pub fn template(&self) -> Option<&PodTemplateSpec> {
        match self {
            Self::Deployment(d) => Some(&d.spec.template),
            Self::DaemonSet(d) => Some(&d.spec.template),
            Self::StatefulSet(s) => Some(&s.spec.template),
        }
    }

    /// `spec.selector.matchLabels`.
    pub fn match_labels(&self) -> BTreeMap<String, String> {
        let sel = match self {
            Self::Deployment(d) => &d.spec.selector,
            Self::DaemonSet(d) => &d.spec.selector,
            Self::StatefulSet(s) => &s.spec.selector,
        };
        sel.match_labels.clone().unwrap_or_default()
    }

    /// Ready Pods of the current revision and the Pods wanted, from the workload's status;
    /// `None` while the status is older than the spec (the counts would describe the previous
    /// revision). A Deployment's `readyReplicas` also counts the old revision's Pods still
    /// running during a rollout, so those (`replicas - updatedReplicas`) are taken off; a
    /// DaemonSet reports `numberReady` of `desiredNumberScheduled`.
    pub fn pod_counts(&self) -> Option<PodCounts> {
        let (generation, observed) = match self {
            Self::Deployment(d) => (
                d.metadata.generation,
                d.status.as_ref().and_then(|s| s.observed_generation),
            ),
            Self::DaemonSet(d) => (
                d.metadata.generation,
                d.status.as_ref().and_then(|s| s.observed_generation),
            ),
            Self::StatefulSet(d) => (
                d.metadata.generation,
                d.status.as_ref().and_then(|s| s.observed_generation),
            ),
        };
        if generation.unwrap_or(0) > observed.unwrap_or(0) {
            return None;
        }
        Some(match self {
            Self::Deployment(d) => {
                let s = d.status.clone().unwrap_or_default();
                let updated = s.updated_replicas.unwrap_or(0);
                let old = (s.replicas.unwrap_or(0) - updated).max(0);
                PodCounts {
                    ready: (s.ready_replicas.unwrap_or(0) - old).clamp(0, updated.max(0)),
                    desired: d.spec.replicas.unwrap_or(1),
                }
            }
            Self::DaemonSet(d) => PodCounts {
                ready: d.status.as_ref().map_or(0, |s| s.number_ready),
                desired: d.status.as_ref().map_or(0, |s| s.desired_number_scheduled),
            },
            // Pods of the update revision are counted as updated; ready ones of the old
            // revision are taken off as for a Deployment.
            Self::StatefulSet(d) => {
                let s = d.status.clone().unwrap_or_default();
                let updated = s.updated_replicas.unwrap_or(0);
                let old = (s.replicas - updated).max(0);
                PodCounts {
                    ready: (s.ready_replicas.unwrap_or(0) - old).clamp(0, updated.max(0)),
                    desired: d.spec.replicas.unwrap_or(1),
                }
            }
        })
    }

    /// Desired replicas: `spec.replicas` (default 1) for a Deployment or StatefulSet; for a
    /// DaemonSet, 0 when it is scaled to zero by node selector, else 1 (meaning "scheduled").
    pub fn desired_replicas(&self) -> i32 {
        match self {
            Self::Deployment(d) => d.spec.replicas.unwrap_or(1),
            Self::StatefulSet(s) => s.spec.replicas.unwrap_or(1),
            Self::DaemonSet(d) => {
                let zero = d
                    .spec
                    .template
                    .spec
                    .as_ref()
                    .and_then(|p| p.node_selector.as_ref())
                    .is_some_and(|n| n.contains_key(SCALE_TO_ZERO_SELECTOR));
                if zero { 0 } else { 1 }
            }
        }
    }
}

/// Ready Pods of a workload out of the Pods it wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodCounts {
    /// Pods ready.
    pub ready: i32,
    /// Pods wanted.
    pub desired: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    fn deployment(generation: i64, status: DeploymentStatus) -> Workload {
        let mut d = Deployment {
            spec: DeploymentSpec {
                replicas: Some(3),
                ..Default::default()
            },
            status: Some(status),
            ..Default::default()
        };
        d.metadata.generation = Some(generation);
        Workload::Deployment(d)
    }

    #[test]
    fn pod_counts_leave_out_the_old_revision_and_a_stale_status() {
        // Mid-rollout: 1 new Pod (not ready) next to 3 old ready ones.
        let rolling = deployment(
            2,
            DeploymentStatus {
                observed_generation: Some(2),
                replicas: Some(4),
                updated_replicas: Some(1),
                ready_replicas: Some(3),
                ..Default::default()
            },
        );
        assert_eq!(
            rolling.pod_counts(),
            Some(PodCounts {
                ready: 0,
                desired: 3
            })
        );
        let done = deployment(
            2,
            DeploymentStatus {
                observed_generation: Some(2),
                replicas: Some(3),
                updated_replicas: Some(3),
                ready_replicas: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(
            done.pod_counts(),
            Some(PodCounts {
                ready: 2,
                desired: 3
            })
        );
        let stale = deployment(
            3,
            DeploymentStatus {
                observed_generation: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(stale.pod_counts(), None);
    }
}
