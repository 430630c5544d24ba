//! Whether a Deployment, DaemonSet, StatefulSet or Knative Service has finished rolling out, by Flagger's rules and
//! with Flagger's messages; pure (the clock is the `now` argument).
//!
//! `Waiting` is Flagger's retriable error (try again next tick, no failed check), `Failed` its
//! non-retriable one (the rollout is stuck past its deadline: roll back).
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, DeploymentCondition, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::core::workload::Workload;

/// The outcome of a readiness check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Rolled out and available enough.
    Ready,
    /// Still rolling out; check again later.
    Waiting(String),
    /// Stuck past the progress deadline.
    Failed(String),
}

impl Readiness {
    /// Whether the workload is ready.
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready)
    }
}

fn to_chrono(t: &Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(t.0.as_millisecond())
}

/// Whether `since + deadline` lies strictly before `now` (Go's `from.Add(delta).Before(now)`).
fn past_deadline(since: DateTime<Utc>, deadline: Duration, now: DateTime<Utc>) -> bool {
    let delta = TimeDelta::from_std(deadline).unwrap_or(TimeDelta::MAX);
    since.checked_add_signed(delta).is_some_and(|end| end < now)
}

/// `count × percent / 100`, truncated, computed in 32-bit floats as Flagger does
/// (`int32(float32(count) * float32(percent)/100)`) so that edge cases round identically.
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
fn threshold_count(count: i32, percent: i32) -> i32 {
    let ratio = percent as f32 / 100.0;
    (count as f32 * ratio) as i32
}

fn condition<'a>(d: &'a Deployment, type_: &str) -> Option<&'a DeploymentCondition> {
    d.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_.as_deref() == Some(type_)))
}

/// Flagger's first rule for workloads: while the controller has not observed the latest
/// generation, the rollout is not finished.
fn unobserved(kind: &str, generation: Option<i64>, observed: Option<i64>) -> Option<Readiness> {
    (generation.unwrap_or(0) > observed.unwrap_or(0)).then(|| {
        Readiness::Waiting(format!(
            "waiting for rollout to finish: observed {kind} generation less than desired generation"
        ))
    })
}

/// Readiness of a Deployment (Flagger's `isDeploymentReady`).
///
/// * `metadata.generation > status.observedGeneration`: waiting.
/// * condition `Progressing` with reason `ProgressDeadlineExceeded`: failed.
/// * otherwise waiting while updated < `spec.replicas`, old replicas remain, or available <
///   `updated × threshold_percent / 100`; these become failed when the `Available` condition is
///   `False`/`MinimumReplicasUnavailable` and its `lastUpdateTime + deadline` is before `now`.
///
/// `deadline` is the Canary's `progressDeadlineSeconds` ([`crate::api::CanarySpec::progress_deadline`]).
pub fn deployment_readiness(
    d: &Deployment,
    threshold_percent: i32,
    deadline: Duration,
    now: DateTime<Utc>,
) -> Readiness {
    let status = d.status.clone().unwrap_or_default();
    if let Some(waiting) = unobserved(
        "deployment",
        d.metadata.generation,
        status.observed_generation,
    ) {
        return waiting;
    }
    let progress = condition(d, "Progressing");
    let mut retriable = true;
    if progress.is_some()
        && let Some(available) = condition(d, "Available")
        && available.status.as_deref() == Some("False")
        && available.reason.as_deref() == Some("MinimumReplicasUnavailable")
        && let Some(from) = available.last_update_time.as_ref().and_then(to_chrono)
    {
        retriable = !past_deadline(from, deadline, now);
    }
    let not_ready = |msg: String| {
        if retriable {
            Readiness::Waiting(msg)
        } else {
            Readiness::Failed(msg)
        }
    };
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let needed = threshold_count(updated, threshold_percent);
    if progress.and_then(|p| p.reason.as_deref()) == Some("ProgressDeadlineExceeded") {
        let name = d.metadata.name.as_deref().unwrap_or_default();
        return Readiness::Failed(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    if let Some(desired) = d.spec.replicas
        && updated < desired
    {
        return not_ready(format!(
            "waiting for rollout to finish: {updated} out of {desired} new replicas have been updated"
        ));
    }
    if replicas > updated {
        return not_ready(format!(
            "waiting for rollout to finish: {} old replicas are pending termination",
            replicas - updated
        ));
    }
    if available < needed {
        return not_ready(format!(
            "waiting for rollout to finish: {available} of {needed} (readyThreshold {threshold_percent}%) updated replicas are available"
        ));
    }
    Readiness::Ready
}

/// Readiness of a DaemonSet (Flagger's `isDaemonSetReady`).
///
/// * `metadata.generation > status.observedGeneration`: waiting.
/// * ready when updated ≥ desired and available ≥ `desired × threshold_percent / 100`;
/// * otherwise failed once `since + deadline` is before `now`, else waiting.
///
/// Flagger measures the deadline from the Canary's `status.lastTransitionTime`; pass that as
/// `since`. Without it (`None`) the check never fails, only waits (Go's zero time would fail at
/// once).
pub fn daemonset_readiness(
    d: &DaemonSet,
    threshold_percent: i32,
    deadline: Duration,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Readiness {
    let status = d.status.clone().unwrap_or_default();
    if let Some(waiting) = unobserved(
        "daemonset",
        d.metadata.generation,
        status.observed_generation,
    ) {
        return waiting;
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let available = status.number_available.unwrap_or(0);
    let needed = threshold_count(desired, threshold_percent);
    let not_updated = updated < desired;
    let not_available = available < needed;
    if !not_updated && !not_available {
        return Readiness::Ready;
    }
    if since.is_some_and(|s| past_deadline(s, deadline, now)) {
        return Readiness::Failed(format!(
            "exceeded its progressDeadlineSeconds: {}",
            deadline.as_secs()
        ));
    }
    if not_updated {
        Readiness::Waiting(format!(
            "waiting for rollout to finish: {updated} out of {desired} new pods have been updated"
        ))
    } else {
        Readiness::Waiting(format!(
            "waiting for rollout to finish: {available} of {needed} (readyThreshold {threshold_percent}%) updated pods are available"
        ))
    }
}

/// Readiness of a StatefulSet, by what its controller reports (Flagger has no StatefulSet rule;
/// this follows `kubectl rollout status`'s StatefulSet viewer and Flagger's DaemonSet deadline).
///
/// * `metadata.generation > status.observedGeneration`: waiting.
/// * with a `partition`, ready once the ordinals at or above it are updated
///   (`updatedReplicas ≥ replicas − partition`) and enough Pods are ready;
/// * otherwise ready once `updateRevision == currentRevision` (the controller finished the
///   ordered update), `updatedReplicas ≥ spec.replicas`, and
///   `readyReplicas ≥ spec.replicas × threshold_percent / 100`;
/// * failed once `since + deadline` is before `now` (StatefulSets have no progress condition),
///   else waiting.
pub fn statefulset_readiness(
    s: &StatefulSet,
    threshold_percent: i32,
    deadline: Duration,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Readiness {
    let status = s.status.clone().unwrap_or_default();
    let generation = s.metadata.generation.unwrap_or(0);
    if generation > status.observed_generation.unwrap_or(0) {
        return Readiness::Waiting(
            "waiting for rollout to finish: observed statefulset generation less than desired generation"
                .into(),
        );
    }
    let desired = s.spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let needed = threshold_count(desired, threshold_percent);
    let partition = s
        .spec
        .update_strategy
        .as_ref()
        .filter(|u| u.type_.as_deref() != Some("OnDelete"))
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .filter(|p| *p > 0);
    let problem = if ready < needed {
        Some(format!(
            "waiting for rollout to finish: {ready} of {needed} (readyThreshold {threshold_percent}%) pods are ready"
        ))
    } else if let Some(p) = partition {
        let want = (desired - p).max(0);
        (updated < want).then(|| {
            format!(
                "waiting for partitioned roll out to finish: {updated} out of {want} new pods have been updated"
            )
        })
    } else if updated < desired {
        Some(format!(
            "waiting for rollout to finish: {updated} out of {desired} new pods have been updated"
        ))
    } else if status.update_revision != status.current_revision {
        Some(format!(
            "waiting for statefulset rolling update to complete {updated} pods at revision {}",
            status.update_revision.as_deref().unwrap_or_default()
        ))
    } else {
        None
    };
    let Some(message) = problem else {
        return Readiness::Ready;
    };
    if since.is_some_and(|t| past_deadline(t, deadline, now)) {
        return Readiness::Failed(format!(
            "exceeded its progressDeadlineSeconds: {}",
            deadline.as_secs()
        ));
    }
    Readiness::Waiting(message)
}

/// Readiness of either workload kind; `since` is only used for DaemonSets and StatefulSets.
pub fn workload_readiness(
    w: &Workload,
    threshold_percent: i32,
    deadline: Duration,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Readiness {
    match w {
        Workload::Deployment(d) => deployment_readiness(d, threshold_percent, deadline, now),
        Workload::DaemonSet(d) => daemonset_readiness(d, threshold_percent, deadline, since, now),
        Workload::StatefulSet(s) => {
            statefulset_readiness(s, threshold_percent, deadline, since, now)
        }
    }
}

/// Readiness of a Knative Service's latest created revision (the canary): Knative has
/// reconciled the current spec, the latest created revision is the latest ready one and the
/// Service's `Ready` condition is `True`. Knative retries a failing revision itself, so this is
/// never `Failed`: the run's progress deadline decides when to give up.
pub fn knative_readiness(s: &crate::core::knative::ServiceState) -> Readiness {
    let Some(latest) = &s.latest_created else {
        return Readiness::Waiting("Knative Service has no revision yet".into());
    };
    if !s.reconciled {
        return Readiness::Waiting("waiting for Knative to reconcile the Service".into());
    }
    if s.latest_ready.as_ref() != Some(latest) {
        let why = s
            .ready
            .as_ref()
            .map(|(_, m)| m.as_str())
            .filter(|m| !m.is_empty())
            .unwrap_or("not ready yet");
        return Readiness::Waiting(format!("Knative Revision {latest} is not ready: {why}"));
    }
    match &s.ready {
        Some((status, _)) if status == "True" => Readiness::Ready,
        Some((_, message)) if !message.is_empty() => {
            Readiness::Waiting(format!("Knative Service is not ready: {message}"))
        }
        _ => Readiness::Waiting("Knative Service is not ready yet".into()),
    }
}

/// Readiness of the primary revision of a Knative Service: it is the latest ready revision or
/// Knative routes to it.
pub fn knative_primary_readiness(
    s: &crate::core::knative::ServiceState,
    revision: &str,
) -> Readiness {
    let serving =
        s.latest_ready.as_deref() == Some(revision) || s.serving.iter().any(|r| r == revision);
    if serving {
        Readiness::Ready
    } else {
        Readiness::Waiting(format!("Knative Revision {revision} is not serving"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DaemonSetSpec, DaemonSetStatus, DeploymentSpec, DeploymentStatus,
        RollingUpdateStatefulSetStrategy, StatefulSetSpec, StatefulSetStatus,
        StatefulSetUpdateStrategy,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    const DEADLINE: Duration = Duration::from_secs(600);

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn time(secs_ago: i64) -> Time {
        let ts = k8s_openapi::jiff::Timestamp::from_second(now().timestamp() - secs_ago).unwrap();
        Time(ts)
    }

    fn cond(type_: &str, status: &str, reason: &str, updated_secs_ago: i64) -> DeploymentCondition {
        DeploymentCondition {
            type_: Some(type_.into()),
            status: Some(status.into()),
            reason: Some(reason.into()),
            last_update_time: Some(time(updated_secs_ago)),
            ..Default::default()
        }
    }

    /// A Deployment with `spec.replicas`, and status (replicas, updated, available).
    fn deploy(
        generation: i64,
        observed: i64,
        desired: i32,
        (replicas, updated, available): (i32, i32, i32),
        conditions: Vec<DeploymentCondition>,
    ) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("podinfo".into()),
                generation: Some(generation),
                ..Default::default()
            },
            spec: DeploymentSpec {
                replicas: Some(desired),
                ..Default::default()
            },
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                replicas: Some(replicas),
                updated_replicas: Some(updated),
                available_replicas: Some(available),
                conditions: Some(conditions),
                ..Default::default()
            }),
        }
    }

    fn progressing() -> DeploymentCondition {
        cond("Progressing", "True", "ReplicaSetUpdated", 0)
    }

    #[test]
    #[rustfmt::skip]
    fn deployment_readiness_follows_flagger_rules_and_messages() {
        let stuck = |ago| {
            vec![
                progressing(),
                cond("Available", "False", "MinimumReplicasUnavailable", ago),
            ]
        };
        let cases: Vec<(&str, Deployment, i32, Readiness)> = vec![
            ("fully rolled out", deploy(2, 2, 3, (3, 3, 3), vec![progressing()]), 100, Readiness::Ready),
            ("generation not observed yet", deploy(3, 2, 3, (3, 3, 3), vec![progressing()]), 100, Readiness::Waiting("waiting for rollout to finish: observed deployment generation less than desired generation".into())),
            ("own progress deadline exceeded", deploy(2, 2, 3, (3, 1, 1), vec![cond("Progressing", "False", "ProgressDeadlineExceeded", 0)]), 100, Readiness::Failed("deployment \"podinfo\" exceeded its progress deadline".into())),
            ("new replicas still being created", deploy(2, 2, 3, (3, 1, 1), vec![progressing()]), 100, Readiness::Waiting("waiting for rollout to finish: 1 out of 3 new replicas have been updated".into())),
            ("old replicas terminating", deploy(2, 2, 3, (5, 3, 3), vec![progressing()]), 100, Readiness::Waiting("waiting for rollout to finish: 2 old replicas are pending termination".into())),
            ("updated but not available", deploy(2, 2, 4, (4, 4, 2), vec![progressing()]), 100, Readiness::Waiting("waiting for rollout to finish: 2 of 4 (readyThreshold 100%) updated replicas are available".into())),
            ("threshold lets a partly available rollout pass", deploy(2, 2, 4, (4, 4, 2), vec![progressing()]), 50, Readiness::Ready),
            ("threshold count is truncated: 3 × 70% needs 2", deploy(2, 2, 3, (3, 3, 1), vec![progressing()]), 70, Readiness::Waiting("waiting for rollout to finish: 1 of 2 (readyThreshold 70%) updated replicas are available".into())),
            ("unavailable within the deadline keeps waiting", deploy(2, 2, 3, (3, 1, 1), stuck(599)), 100, Readiness::Waiting("waiting for rollout to finish: 1 out of 3 new replicas have been updated".into())),
            ("unavailable past the deadline fails", deploy(2, 2, 3, (3, 1, 1), stuck(601)), 100, Readiness::Failed("waiting for rollout to finish: 1 out of 3 new replicas have been updated".into())),
            ("unavailable past the deadline but ready enough is ready", deploy(2, 2, 3, (3, 3, 3), stuck(601)), 100, Readiness::Ready),
        ];
        for (name, d, threshold, want) in cases {
            assert_eq!(
                deployment_readiness(&d, threshold, DEADLINE, now()),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn zero_threshold_accepts_a_primary_with_no_available_pods() {
        let d = deploy(1, 1, 2, (2, 2, 0), vec![progressing()]);
        assert_eq!(
            deployment_readiness(&d, 0, DEADLINE, now()),
            Readiness::Ready
        );
    }

    fn ds(generation: i64, observed: i64, desired: i32, updated: i32, available: i32) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..Default::default()
            },
            spec: DaemonSetSpec::default(),
            status: Some(DaemonSetStatus {
                observed_generation: Some(observed),
                desired_number_scheduled: desired,
                updated_number_scheduled: Some(updated),
                number_available: Some(available),
                ..Default::default()
            }),
        }
    }

    #[test]
    #[rustfmt::skip]
    fn daemonset_readiness_follows_flagger_rules_and_messages() {
        let recent = Some(now() - TimeDelta::seconds(10));
        let old = Some(now() - TimeDelta::seconds(601));
        type Case = (
            &'static str,
            DaemonSet,
            i32,
            Option<DateTime<Utc>>,
            Readiness,
        );
        let cases: Vec<Case> = vec![
            ("rolled out", ds(1, 1, 3, 3, 3), 100, recent, Readiness::Ready),
            ("generation not observed", ds(2, 1, 3, 3, 3), 100, recent, Readiness::Waiting("waiting for rollout to finish: observed daemonset generation less than desired generation".into())),
            ("pods being updated", ds(1, 1, 3, 1, 1), 100, recent, Readiness::Waiting("waiting for rollout to finish: 1 out of 3 new pods have been updated".into())),
            ("updated pods not available", ds(1, 1, 3, 3, 2), 100, recent, Readiness::Waiting("waiting for rollout to finish: 2 of 3 (readyThreshold 100%) updated pods are available".into())),
            ("threshold met", ds(1, 1, 4, 4, 2), 50, recent, Readiness::Ready),
            ("past the deadline", ds(1, 1, 3, 1, 1), 100, old, Readiness::Failed("exceeded its progressDeadlineSeconds: 600".into())),
            ("no start time never fails", ds(1, 1, 3, 1, 1), 100, None, Readiness::Waiting("waiting for rollout to finish: 1 out of 3 new pods have been updated".into())),
        ];
        for (name, d, threshold, since, want) in cases {
            assert_eq!(
                daemonset_readiness(&d, threshold, DEADLINE, since, now()),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn workload_readiness_dispatches_on_kind() {
        let d = Workload::Deployment(deploy(1, 1, 2, (2, 1, 1), vec![progressing()]));
        assert!(
            matches!(workload_readiness(&d, 100, DEADLINE, None, now()), Readiness::Waiting(m) if m.contains("new replicas"))
        );
        let s = Workload::DaemonSet(ds(1, 1, 2, 1, 1));
        assert!(
            matches!(workload_readiness(&s, 100, DEADLINE, None, now()), Readiness::Waiting(m) if m.contains("new pods"))
        );
        assert!(
            workload_readiness(
                &Workload::DaemonSet(ds(1, 1, 2, 2, 2)),
                100,
                DEADLINE,
                None,
                now()
            )
            .is_ready()
        );
    }

    #[test]
    fn a_knative_revision_is_ready_once_reconciled_latest_and_ready() {
        use crate::core::knative::ServiceState;
        let ready = ServiceState::new_revision_ready();
        assert_eq!(knative_readiness(&ready), Readiness::Ready);
        let stale = ServiceState {
            reconciled: false,
            ..ready.clone()
        };
        assert!(matches!(knative_readiness(&stale), Readiness::Waiting(_)));
        let starting = ServiceState {
            latest_ready: Some("podinfo-00001".into()),
            ready: Some(("False".into(), "Revision failed: ImagePullBackOff".into())),
            ..ready.clone()
        };
        assert_eq!(
            knative_readiness(&starting),
            Readiness::Waiting(
                "Knative Revision podinfo-00002 is not ready: Revision failed: ImagePullBackOff"
                    .into()
            )
        );
        let route_not_ready = ServiceState {
            ready: Some(("Unknown".into(), String::new())),
            ..ready.clone()
        };
        assert!(matches!(
            knative_readiness(&route_not_ready),
            Readiness::Waiting(_)
        ));
        assert!(matches!(
            knative_readiness(&ServiceState::default()),
            Readiness::Waiting(_)
        ));

        // The primary serves when Knative routes to it or it is the latest ready revision.
        assert_eq!(
            knative_primary_readiness(&ready, "podinfo-00001"),
            Readiness::Ready
        );
        assert_eq!(
            knative_primary_readiness(&ready, "podinfo-00002"),
            Readiness::Ready
        );
        assert!(matches!(
            knative_primary_readiness(&ready, "podinfo-00003"),
            Readiness::Waiting(_)
        ));
    }

    /// A three-replica StatefulSet at generation 2 whose controller reports `observed`,
    /// `updated`/`ready` Pods and whether the update revision became current.
    fn sts(observed: i64, updated: i32, ready: i32, current: bool) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("db".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: StatefulSetSpec {
                replicas: Some(3),
                ..Default::default()
            },
            status: Some(StatefulSetStatus {
                observed_generation: Some(observed),
                replicas: 3,
                updated_replicas: Some(updated),
                ready_replicas: Some(ready),
                current_revision: Some(if current { "db-2" } else { "db-1" }.into()),
                update_revision: Some("db-2".into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn statefulsets_are_ready_when_the_update_revision_is_current_and_pods_ready() {
        let since = Some(now() - TimeDelta::seconds(30));
        let check =
            |s: &StatefulSet, pct: i32| statefulset_readiness(s, pct, DEADLINE, since, now());
        assert!(
            matches!(check(&sts(1, 3, 3, true), 100), Readiness::Waiting(m) if m.contains("generation"))
        );
        assert_eq!(check(&sts(2, 3, 3, true), 100), Readiness::Ready);
        assert_eq!(
            check(&sts(2, 1, 2, false), 100),
            Readiness::Waiting(
                "waiting for rollout to finish: 2 of 3 (readyThreshold 100%) pods are ready".into()
            )
        );
        assert_eq!(
            check(&sts(2, 1, 3, false), 100),
            Readiness::Waiting(
                "waiting for rollout to finish: 1 out of 3 new pods have been updated".into()
            )
        );
        // All updated and ready, but the controller has not made the revision current yet.
        assert!(
            matches!(check(&sts(2, 3, 3, false), 100), Readiness::Waiting(m) if m.contains("revision db-2"))
        );
        // The threshold counts ready Pods against spec.replicas.
        assert_eq!(check(&sts(2, 3, 2, true), 50), Readiness::Ready);
    }

    #[test]
    fn a_statefulset_partition_is_the_users_and_readiness_respects_it() {
        let mut s = sts(2, 1, 3, false);
        s.spec.update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                partition: Some(2),
                max_unavailable: None,
            }),
        });
        assert_eq!(
            statefulset_readiness(&s, 100, DEADLINE, None, now()),
            Readiness::Ready
        );
        let mut lower = s.clone();
        if let Some(r) = lower
            .spec
            .update_strategy
            .as_mut()
            .and_then(|u| u.rolling_update.as_mut())
        {
            r.partition = Some(1);
        }
        assert!(matches!(
            statefulset_readiness(&lower, 100, DEADLINE, None, now()),
            Readiness::Waiting(m) if m.contains("partitioned roll out")
        ));
    }

    #[test]
    fn a_stuck_statefulset_fails_after_the_deadline_from_since() {
        let stuck = sts(2, 1, 2, false);
        let long_ago = Some(now() - TimeDelta::seconds(601));
        assert_eq!(
            statefulset_readiness(&stuck, 100, DEADLINE, long_ago, now()),
            Readiness::Failed("exceeded its progressDeadlineSeconds: 600".into())
        );
        assert!(matches!(
            statefulset_readiness(&stuck, 100, DEADLINE, None, now()),
            Readiness::Waiting(_)
        ));
        assert!(
            workload_readiness(
                &Workload::StatefulSet(sts(2, 3, 3, true)),
                100,
                DEADLINE,
                None,
                now()
            )
            .is_ready()
        );
    }
}
