//! Why a canary cannot advance: the typed wait reasons the plan writes to `status.waitingFor`,
//! and the one Normal event per change of cause; pure.

use super::*;
use crate::api::canary::WaitingFor;
use crate::api::webhook_type::WebhookType;
use crate::core::workload::PodCounts;

/// One cause that keeps a canary from advancing. `reason()` is the machine word written to
/// `status.waitingFor.reason`, `message()` the words (with counts) written next to it.
#[derive(Clone, Debug, PartialEq)]
pub enum Wait {
    /// The spec fails validation.
    InvalidSpec(String),
    /// The target does not exist.
    TargetNotFound(String),
    /// The target exists but cannot be canaried.
    InvalidTarget(String),
    /// `spec.suspend` is set.
    Suspended,
    /// A `pause` request holds the run (`kubectl serin resume` ends it).
    Paused,
    /// The canary workload's Pods are not ready yet (before the progress deadline).
    CanaryPodsNotReady {
        /// Ready Pods out of those wanted, when the target is a workload.
        pods: Option<PodCounts>,
        /// The readiness rule that is not met yet.
        detail: String,
    },
    /// A Knative target's latest revision is not ready yet.
    CanaryRevisionNotReady(String),
    /// The primary is not ready (initialisation, promotion).
    PrimaryNotReady(String),
    /// The primary has not received the promoted template yet.
    PrimaryNotUpdated,
    /// A Gateway has not accepted the canary's HTTPRoute.
    RouteNotAccepted(String),
    /// The router cannot report the traffic split yet.
    RoutesNotReady(String),
    /// A manual gate answered no.
    GateClosed(WebhookType),
    /// A pre-rollout or rollout webhook failed (a failed check was counted).
    WebhookFailed(String),
    /// A metric returned no data (the tick was held, or counted as failed).
    MetricNoData(String),
    /// A metric was outside its range or errored (a failed check was counted).
    MetricFailed(String),
    /// The analysis is inconclusive and held.
    AnalysisInconclusive(String),
}

impl Wait {
    /// The machine word, CamelCase.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) => "InvalidSpec",
            Self::TargetNotFound(_) => "TargetNotFound",
            Self::InvalidTarget(_) => "InvalidTarget",
            Self::Suspended => "Suspended",
            Self::Paused => "Paused",
            Self::CanaryPodsNotReady { .. } => "CanaryPodsNotReady",
            Self::CanaryRevisionNotReady(_) => "CanaryRevisionNotReady",
            Self::PrimaryNotReady(_) => "PrimaryNotReady",
            Self::PrimaryNotUpdated => "PrimaryNotUpdated",
            Self::RouteNotAccepted(_) => "RouteNotAccepted",
            Self::RoutesNotReady(_) => "RoutesNotReady",
            Self::GateClosed(_) => "GateClosed",
            Self::WebhookFailed(_) => "WebhookFailed",
            Self::MetricNoData(_) => "MetricNoData",
            Self::MetricFailed(_) => "MetricFailed",
            Self::AnalysisInconclusive(_) => "AnalysisInconclusive",
        }
    }

    /// The cause in words.
    pub fn message(&self) -> String {
        match self {
            Self::InvalidSpec(m) => format!("invalid spec: {m}"),
            Self::TargetNotFound(m) => format!("target not found: {m}"),
            Self::InvalidTarget(m) => format!("invalid target: {m}"),
            Self::Suspended => "canary is suspended (spec.suspend)".into(),
            Self::Paused => "the run is paused by a request; resume it to go on".into(),
            Self::CanaryPodsNotReady {
                pods: Some(p),
                detail,
            } => format!(
                "canary Pods not ready: {}/{} ready ({detail})",
                p.ready, p.desired
            ),
            Self::CanaryPodsNotReady { pods: None, detail } => {
                format!("canary Pods not ready: {detail}")
            }
            Self::CanaryRevisionNotReady(m) => format!("canary revision not ready: {m}"),
            Self::PrimaryNotReady(m) => format!("primary not ready: {m}"),
            Self::PrimaryNotUpdated => "primary has not received the promoted template yet".into(),
            Self::RouteNotAccepted(m) => format!("route not accepted: {m}"),
            Self::RoutesNotReady(m) => format!("routes not ready: {m}"),
            Self::GateClosed(t) => format!("{} gate is closed", t.as_str()),
            Self::WebhookFailed(m) => format!("webhook failed: {m}"),
            Self::MetricNoData(m) => format!("metric returned no data: {m}"),
            Self::MetricFailed(m) => format!("metric check failed: {m}"),
            Self::AnalysisInconclusive(m) => format!("analysis inconclusive: {m}"),
        }
    }
}

/// What the decision says about `status.waitingFor`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) enum WaitMark {
    /// The canary advanced (or rests): clear it.
    #[default]
    Clear,
    /// Nothing was decided this time (the next tick is not due): leave it as it is.
    Keep,
    /// The canary cannot advance for this reason.
    Set(Wait),
}

impl Machine<'_> {
    /// Marks the decision as a wait for `wait` and returns the requeue.
    pub(super) fn wait(&mut self, wait: Wait, requeue: Requeue) -> Flow {
        self.wait = WaitMark::Set(wait);
        Ok(requeue)
    }

    /// Marks the decision as a wait whose change of cause another event already announced.
    pub(super) fn wait_announced(&mut self, wait: Wait) {
        self.wait = WaitMark::Set(wait);
        self.wait_announced = true;
    }

    /// Writes `status.waitingFor` from the decision's mark: `since` stays while the reason
    /// stays, and a change of reason is announced with one Normal event.
    pub(super) fn record_wait(&mut self) {
        match std::mem::take(&mut self.wait) {
            WaitMark::Keep => {}
            WaitMark::Clear => self.status.waiting_for = None,
            WaitMark::Set(wait) => {
                let reason = wait.reason();
                let message = wait.message();
                let previous = self.status.waiting_for.take();
                let same = previous.as_ref().is_some_and(|p| p.reason == reason);
                let since = match previous {
                    Some(p) if same => p.since,
                    _ => Some(to_time(self.now)),
                };
                if !same && !self.wait_announced {
                    self.event(
                        EventType::Normal,
                        format!("Waiting for {} ({reason}): {message}", self.id()),
                    );
                }
                self.status.waiting_for = Some(WaitingFor {
                    reason: reason.to_string(),
                    message,
                    since,
                });
            }
        }
    }
}
