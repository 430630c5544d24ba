//! The simulated HorizontalPodAutoscaler's decisions (pure, no I/O). There are no metrics: the
//! recommendation is the current size, so the controller only keeps the target within
//! min/max, reporting the conditions and reasons the real one reports on those paths.
use super::util;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricSpec,
};
use k8s_openapi::jiff::Timestamp;

/// What one reconcile of an HPA decided.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// The size to set on the target's `/scale`, when it must change.
    pub rescale: Option<i32>,
    /// The reason the real controller gives in its SuccessfulRescale event.
    pub rescale_reason: Option<String>,
    /// The status to write, when it changed.
    pub status: Option<HorizontalPodAutoscalerStatus>,
}

/// Plans one reconcile given the target's current `spec.replicas` (read through `/scale`).
pub fn plan(hpa: &HorizontalPodAutoscaler, current: i32, now: Timestamp) -> Plan {
    let spec = hpa.spec.clone();
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let mut status = hpa.status.clone().unwrap_or_default();
    set(
        &mut status,
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
        now,
    );
    let mut plan = Plan::default();
    let desired;
    if current == 0 && min != 0 {
        // A target scaled to zero is treated as "autoscaling switched off" (Flagger relies on it).
        desired = 0;
        set(
            &mut status,
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
            now,
        );
    } else if current > max {
        desired = max;
        plan.rescale_reason = Some("Current number of replicas above Spec.MaxReplicas".into());
    } else if current < min {
        desired = min;
        plan.rescale_reason = Some("Current number of replicas below Spec.MinReplicas".into());
    } else {
        desired = current;
        let metric = describe(spec.metrics.as_deref().and_then(|m| m.first()));
        set(
            &mut status,
            "ScalingActive",
            true,
            "ValidMetricFound",
            &format!("the HPA was able to successfully calculate a replica count from {metric}"),
            now,
        );
        set(
            &mut status,
            "AbleToScale",
            true,
            "ReadyForNewScale",
            "recommended size matches current size",
            now,
        );
        set(
            &mut status,
            "ScalingLimited",
            false,
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
            now,
        );
    }
    let rescale = desired != current && plan.rescale_reason.is_some();
    if rescale {
        plan.rescale = Some(desired);
        set(
            &mut status,
            "AbleToScale",
            true,
            "SucceededRescale",
            &format!("the HPA controller was able to update the target scale to {desired}"),
            now,
        );
        status.last_scale_time = Some(util::time(now));
    }
    status.current_replicas = util::nz(current);
    status.desired_replicas = if rescale { desired } else { current };
    if hpa.status.as_ref() != Some(&status) {
        plan.status = Some(status);
    }
    plan
}

/// The status after the target's `/scale` could not be read: AbleToScale False, FailedGetScale,
/// everything else kept. `None` when that is already the status.
pub fn failed_get_scale(
    hpa: &HorizontalPodAutoscaler,
    error: &str,
    now: Timestamp,
) -> Option<HorizontalPodAutoscalerStatus> {
    let mut status = hpa.status.clone().unwrap_or_default();
    let message =
        format!("the HPA controller was unable to get the target's current scale: {error}");
    set(
        &mut status,
        "AbleToScale",
        false,
        "FailedGetScale",
        &message,
        now,
    );
    (hpa.status.as_ref() != Some(&status)).then_some(status)
}

/// How the real controller names the metric it computed a proposal from.
fn describe(metric: Option<&MetricSpec>) -> String {
    let Some(m) = metric else {
        // autoscaling/v2 defaults an empty metric list to 80% cpu utilization.
        return "cpu resource utilization (percentage of request)".into();
    };
    match m.type_.as_str() {
        "Resource" => match &m.resource {
            Some(r) if r.target.type_ == "Utilization" => {
                format!("{} resource utilization (percentage of request)", r.name)
            }
            Some(r) => format!("{} resource", r.name),
            None => "resource".into(),
        },
        "ContainerResource" => match &m.container_resource {
            Some(r) if r.target.type_ == "Utilization" => {
                format!(
                    "{} container resource utilization (percentage of request)",
                    r.name
                )
            }
            Some(r) => format!("{} container resource", r.name),
            None => "container resource".into(),
        },
        "Pods" => format!(
            "pods metric {}",
            m.pods
                .as_ref()
                .map(|p| p.metric.name.as_str())
                .unwrap_or_default()
        ),
        "Object" => m.object.as_ref().map_or_else(
            || "object metric".into(),
            |o| format!("{} metric {}", o.described_object.kind, o.metric.name),
        ),
        "External" => format!(
            "external metric {}",
            m.external
                .as_ref()
                .map(|e| e.metric.name.as_str())
                .unwrap_or_default()
        ),
        other => format!("{other} metric"),
    }
}

/// `setConditionInList`: replaces reason and message, moves the transition time only when the
/// status flips, appends conditions not seen before.
fn set(
    status: &mut HorizontalPodAutoscalerStatus,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let value = if ok { "True" } else { "False" };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(util::time(now));
            }
            c.status = value.into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
        }
        None => conditions.push(HorizontalPodAutoscalerCondition {
            type_: type_.into(),
            status: value.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: Some(util::time(now)),
            observed_generation: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerSpec;

    fn hpa(min: i32, max: i32) -> HorizontalPodAutoscaler {
        HorizontalPodAutoscaler {
            spec: HorizontalPodAutoscalerSpec {
                min_replicas: Some(min),
                max_replicas: max,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn condition(plan: &Plan, type_: &str) -> Option<(String, String)> {
        let c = plan
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == type_)?;
        Some((c.status.clone(), c.reason.clone().unwrap_or_default()))
    }

    #[test]
    fn targets_are_clamped_into_min_and_max() {
        let cases = [(2, 5, 1, Some(2)), (2, 5, 9, Some(5)), (2, 5, 3, None)];
        for (min, max, current, want) in cases {
            let plan = plan(&hpa(min, max), current, Timestamp::UNIX_EPOCH);
            assert_eq!(plan.rescale, want, "min {min} max {max} current {current}");
            let desired = plan.status.as_ref().map(|s| s.desired_replicas);
            assert_eq!(desired, Some(want.unwrap_or(current)));
        }
    }

    #[test]
    fn a_target_at_zero_disables_scaling() {
        let plan = plan(&hpa(2, 5), 0, Timestamp::UNIX_EPOCH);
        assert_eq!(plan.rescale, None);
        assert_eq!(
            condition(&plan, "ScalingActive"),
            Some(("False".into(), "ScalingDisabled".into()))
        );
        assert_eq!(plan.status.map(|s| s.desired_replicas), Some(0));
    }

    #[test]
    fn within_range_reports_the_metric_path_conditions() {
        let plan = plan(&hpa(1, 5), 3, Timestamp::UNIX_EPOCH);
        assert_eq!(
            condition(&plan, "AbleToScale"),
            Some(("True".into(), "ReadyForNewScale".into()))
        );
        assert_eq!(
            condition(&plan, "ScalingActive"),
            Some(("True".into(), "ValidMetricFound".into()))
        );
        assert_eq!(
            condition(&plan, "ScalingLimited"),
            Some(("False".into(), "DesiredWithinRange".into()))
        );
    }

    #[test]
    fn a_missing_target_is_reported_on_able_to_scale() {
        let status = failed_get_scale(
            &hpa(1, 3),
            "deployments.apps \"web\" not found",
            Timestamp::UNIX_EPOCH,
        );
        let c = status
            .and_then(|s| s.conditions)
            .and_then(|c| c.into_iter().next());
        assert_eq!(
            c.as_ref().map(|c| (c.type_.as_str(), c.status.as_str())),
            Some(("AbleToScale", "False"))
        );
        assert_eq!(
            c.and_then(|c| c.message),
            Some("the HPA controller was unable to get the target's current scale: deployments.apps \"web\" not found".into())
        );
    }

    #[test]
    fn an_unchanged_status_is_not_rewritten() {
        let mut h = hpa(1, 5);
        let first = plan(&h, 3, Timestamp::UNIX_EPOCH);
        h.status = first.status;
        assert_eq!(plan(&h, 3, Timestamp::UNIX_EPOCH).status, None);
    }
}
