//! The canary state machine: `plan(&Observed, &Checks, now)` decides what to do next; pure.
//!
//! Nothing here reads the clock or talks to the API. Everything the decision needs is in
//! [`Observed`] (built from caches) and [`Checks`] (answers from gates, webhooks and metrics, asked
//! for lazily: when a decision needs an answer that is not there yet, `plan` returns
//! [`Step::Need`] and the caller asks and plans again). The decision never depends on why
//! reconcile ran: all progress is in the Canary's status.
use chrono::{DateTime, Utc};
use std::time::Duration;

use super::readiness::Readiness;
use super::workload::Workload;
use crate::api::canary::{CanaryCondition, CanaryStatus};
use crate::api::defaults::Strategy;
use crate::api::time::{from_time, to_time};
use crate::api::validation::Problem;
use crate::api::{Canary, CanaryPhase, Provider, TargetKind};
pub use crate::core::alert::AlertSeverity;
pub use crate::core::routes::{Routes, session_cookie};
use crate::core::verdict::Verdict;

/// The Serin condition that reports whether the spec and target are usable.
pub const READY_CONDITION: &str = "Ready";
/// Flagger's condition.
pub const PROMOTED_CONDITION: &str = "Promoted";

/// What observe found for the target.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetObs {
    /// The target's kind.
    pub kind: TargetKind,
    /// Name of the target.
    pub name: String,
    /// The selector label and its value (e.g. `app`, `podinfo`).
    pub selector: (String, String),
    /// Fingerprint of the target's pod template plus tracked configs.
    pub fingerprint: String,
    /// Checksums of the tracked configs, keyed `configmap/<name>` / `secret/<name>`.
    pub tracked_configs: std::collections::BTreeMap<String, String>,
    /// Desired replicas now (0 when scaled to zero).
    pub replicas: i32,
    /// Replicas to scale up to when a run starts or the target is restored.
    pub scale_up_replicas: i32,
    /// Readiness of the target (the canary pods, the latest Knative revision; always ready for
    /// a Kubernetes Service).
    pub readiness: Readiness,
    /// Ready Pods of the canary workload out of those it wants (`None`: not a workload).
    pub pods: Option<super::workload::PodCounts>,
}

impl TargetObs {
    /// Whether the target is a workload Serin scales and fronts with generated Services
    /// (Deployment, DaemonSet). A Knative Service scales itself and is its own router; a
    /// Kubernetes Service target has nothing to scale and is copied, not fronted.
    pub fn is_workload(&self) -> bool {
        self.kind.is_workload()
    }
}

/// What observe found for the primary: the primary workload, for a Knative target the
/// revision named by `flagger.app/primary-revision`, for a Kubernetes Service target the
/// `<target>-primary` Service.
#[derive(Clone, Debug, PartialEq)]
pub struct PrimaryObs {
    /// Fingerprint of what the primary runs (template mapped back to the target's names).
    pub fingerprint: String,
    /// Readiness of the primary.
    pub readiness: Readiness,
    /// Replicas the primary wants.
    pub replicas: i32,
}

/// Generated objects that are missing or drifted, with their desired state; computed by observe.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Generated {
    /// Desired primary workload (for creation and promotion).
    pub primary: Option<Workload>,
    /// Knative: the revision initialisation and promotion name as primary (the latest created).
    pub primary_revision: Option<String>,
    /// Kubernetes Service target: the `<target>-primary` copy as creation and promotion write it.
    pub primary_service: Option<serde_json::Value>,
    /// Services (apex, primary, canary) whose live state differs from the desired one.
    pub services_to_apply: Vec<serde_json::Value>,
    /// Primary config copies that do not exist yet.
    pub missing_configs: Vec<serde_json::Value>,
    /// Primary config copies as promotion must write them (from the target's current configs).
    pub promoted_configs: Vec<serde_json::Value>,
    /// Primary autoscaler (HPA or KEDA ScaledObject), when the canary has an autoscaler and the
    /// primary's is missing.
    pub missing_hpa: Option<serde_json::Value>,
    /// Primary autoscaler (HPA or KEDA ScaledObject) as promotion must write it.
    pub promoted_hpa: Option<serde_json::Value>,
}

/// Everything the state machine looks at, for one Canary.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The Canary as cached.
    pub canary: Canary,
    /// The provider in effect, if it parses.
    pub provider: Option<Provider>,
    /// Validation findings (the same rules as `serin validate`).
    pub problems: Vec<Problem>,
    /// The target, or why it cannot be used.
    pub target: Result<TargetObs, TargetProblem>,
    /// The primary, if it exists.
    pub primary: Option<PrimaryObs>,
    /// Generated objects to create or update.
    pub generated: Generated,
    /// The analysis interval in effect (after `--min-interval`).
    pub interval: Duration,
    /// Whether our finalizer is on the object.
    pub has_finalizer: bool,
    /// The live traffic split, read from the router while a run is in progress; an `Err` means
    /// the routing objects are not usable yet (e.g. a Gateway has not accepted the route).
    pub routes: Option<Result<Routes, RouteProblem>>,
    /// Ready Pods of the target counted from the Pods themselves, read live while a Canary with
    /// a workload target is being deleted (`None`: not counted).
    pub target_ready_pods: Option<u32>,
}

/// Why the router cannot report the traffic split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteProblem {
    /// A Gateway has not accepted the route (Gateway API: `Accepted` is not `True` for the
    /// route's current generation, or the parent has not written a status at all).
    NotAccepted(String),
    /// Any other reason the routing objects are not usable yet.
    NotReady(String),
}

/// Why the target cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetProblem {
    /// It does not exist (yet).
    Missing(String),
    /// It exists but cannot be canaried (e.g. no selector label).
    Invalid(String),
}

/// Answers from gates, webhooks and metrics; `None` means "not asked yet".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checks {
    /// Is the `confirm-rollout` gate open?
    pub confirm_rollout: Option<bool>,
    /// Did a `rollback` webhook ask for a rollback?
    pub rollback: Option<bool>,
    /// `pre-rollout` hooks: `Err(message)` on failure.
    pub pre_rollout: Option<Result<(), String>>,
    /// `rollout` hooks (an `Err` is their first failure) then metrics (a report).
    pub analysis: Option<Result<crate::core::verdict::AnalysisReport, String>>,
    /// Is the `confirm-traffic-increase` gate open?
    pub confirm_traffic_increase: Option<bool>,
    /// Is the `confirm-promotion` gate open?
    pub confirm_promotion: Option<bool>,
    /// Decision records of the hooks and gates that failed while answering (URL, status, body).
    pub hook_records: Vec<crate::api::canary::CheckRecord>,
}

/// A question `plan` needs answered before it can decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckRequest {
    /// Ask the confirm-rollout gates (phase sent: the current phase).
    ConfirmRollout,
    /// Ask the rollback hooks.
    Rollback,
    /// Run the pre-rollout hooks.
    PreRollout,
    /// Run the rollout hooks and metric checks.
    Analysis,
    /// Ask the confirm-traffic-increase gates.
    ConfirmTrafficIncrease,
    /// Ask the confirm-promotion gates.
    ConfirmPromotion,
}

/// Kubernetes event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

/// One side effect, executed in order by `act`.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Add `finalizer.flagger.app`.
    AddFinalizer,
    /// Remove `finalizer.flagger.app`.
    RemoveFinalizer,
    /// Create or update a generated object (Service, ConfigMap, Secret, HPA) by server-side apply.
    Apply(serde_json::Value),
    /// Create the primary workload.
    CreatePrimary(Workload),
    /// Copy the target's template into the primary (promotion).
    PromotePrimary(Workload),
    /// Knative: name this revision as the primary (`flagger.app/primary-revision`).
    SetPrimaryRevision(String),
    /// Scale the target (Deployment replicas, or the DaemonSet scale-to-zero node selector).
    ScaleTarget(i32),
    /// Pause the target's KEDA ScaledObject at zero replicas (the canary is at zero).
    PauseTargetScaler,
    /// Resume the target's KEDA ScaledObject (a run starts, or the target is restored).
    ResumeTargetScaler,
    /// Create or update the router's objects without touching weights.
    ReconcileRouter,
    /// Set the traffic split.
    SetRoutes(Routes),
    /// Point the apex Service back at the target's pods and release it (deletion with revert).
    RestoreApexService,
    /// Let the router restore what it changed (deletion with revert).
    FinalizeRouter,
    /// Run the post-rollout hooks with the given phase.
    PostRollout(CanaryPhase),
    /// Record a Kubernetes event.
    Event(EventType, String),
    /// Send an alert.
    Alert(AlertSeverity, String),
}

/// When to look again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// Only when something watched changes.
    AwaitChange,
    /// After this long (or earlier, on a change).
    After(Duration),
}

/// The decision for one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Side effects, in order.
    pub actions: Vec<Action>,
    /// The status to write, when it differs from the current one.
    pub status: Option<CanaryStatus>,
    /// When to look again.
    pub requeue: Requeue,
}

/// Either a decision, or a question to answer first.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Ask this, fill in [`Checks`], and call `plan` again.
    Need(CheckRequest),
    /// The decision.
    Done(Box<Plan>),
}

/// Decides the next step for one Canary.
pub fn plan(o: &Observed, checks: &Checks, now: DateTime<Utc>) -> Step {
    Machine::new(o, checks, now).run()
}

/// Working state of one decision.
struct Machine<'a> {
    o: &'a Observed,
    checks: &'a Checks,
    now: DateTime<Utc>,
    status: CanaryStatus,
    actions: Vec<Action>,
    /// What this decision says about `status.waitingFor`.
    wait: wait::WaitMark,
    /// Whether an event of the decision already announced a new wait.
    wait_announced: bool,
    /// A manual request screened as applicable, for the phase handler to carry out.
    request: Option<requests::Accepted>,
}

/// What a phase handler decided: `Ok(requeue)` completes the plan (the machine holds its actions
/// and status); `Err(request)` asks a check first, and `?` carries that out of nested handlers.
type Flow = Result<Requeue, CheckRequest>;

impl<'a> Machine<'a> {
    fn new(o: &'a Observed, checks: &'a Checks, now: DateTime<Utc>) -> Self {
        let status = o.canary.status.clone().unwrap_or_default();
        Self {
            o,
            checks,
            now,
            status,
            actions: Vec::new(),
            wait: wait::WaitMark::Clear,
            wait_announced: false,
            request: None,
        }
    }

    fn run(mut self) -> Step {
        match self.decide() {
            Ok(requeue) => self.finish(requeue),
            Err(request) => Step::Need(request),
        }
    }

    fn spec(&self) -> &crate::api::CanarySpec {
        &self.o.canary.spec
    }

    fn id(&self) -> String {
        format!(
            "{}.{}",
            self.o.canary.metadata.name.as_deref().unwrap_or_default(),
            self.o
                .canary
                .metadata
                .namespace
                .as_deref()
                .unwrap_or_default()
        )
    }

    fn target_id(&self) -> String {
        let ns = self
            .o
            .canary
            .metadata
            .namespace
            .as_deref()
            .unwrap_or_default();
        let name = self
            .o
            .target
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_else(|_| {
                self.spec()
                    .target_ref
                    .as_ref()
                    .map(|t| t.name.clone())
                    .unwrap_or_default()
            });
        format!("{name}.{ns}")
    }

    fn kind(&self) -> String {
        match &self.o.target {
            Ok(t) => t.kind.to_string(),
            Err(_) => self
                .spec()
                .target_ref
                .as_ref()
                .map(|t| t.kind.clone())
                .unwrap_or_else(|| "Deployment".into()),
        }
    }

    fn event(&mut self, t: EventType, msg: impl Into<String>) {
        self.actions.push(Action::Event(t, msg.into()));
    }

    fn phase(&self) -> Option<CanaryPhase> {
        self.status.phase
    }

    /// Builds the final plan; the status is written only if it changed.
    fn finish(mut self, requeue: Requeue) -> Step {
        self.record_wait();
        let before = self.o.canary.status.clone().unwrap_or_default();
        let status = if self.status != before {
            self.status.last_transition_time = Some(to_time(self.now));
            Some(self.status)
        } else {
            None
        };
        Step::Done(Box::new(Plan {
            actions: std::mem::take(&mut self.actions),
            status,
            requeue,
        }))
    }

    /// Sets the phase and the `Promoted` condition the way Flagger does; `why` is appended to
    /// the Failed message.
    fn set_phase(&mut self, phase: CanaryPhase, why: Option<&str>) {
        self.status.phase = Some(phase);
        let (value, mut message) = phase.promoted_condition(&self.kind());
        if let Some(why) = why {
            message = format!("{message} {why}");
        }
        self.set_condition(PROMOTED_CONDITION, value, phase.as_str(), &message);
    }

    fn set_condition(&mut self, type_: &str, value: &str, reason: &str, message: &str) {
        let now = to_time(self.now);
        let conditions = self.status.conditions.get_or_insert_with(Vec::new);
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c)
                if c.status == value
                    && c.reason == reason
                    && c.message.as_deref() == Some(message) => {}
            Some(c) => {
                if c.status != value {
                    c.last_transition_time = Some(now.clone());
                }
                c.status = value.to_string();
                c.reason = reason.to_string();
                c.message = Some(message.to_string());
                c.last_update_time = Some(now);
            }
            None => {
                let c = CanaryCondition {
                    type_: type_.to_string(),
                    status: value.to_string(),
                    last_update_time: Some(now.clone()),
                    last_transition_time: Some(now),
                    reason: reason.to_string(),
                    message: Some(message.to_string()),
                };
                // `Ready` goes first: the Status printer column shows the first condition
                // whose reason is not `Valid` (an invalid or suspended canary's reason, else
                // the `Promoted` condition's reason, which is the phase).
                if type_ == READY_CONDITION {
                    conditions.insert(0, c);
                } else {
                    conditions.push(c);
                }
            }
        }
    }

    fn ready_condition(&self) -> Option<&CanaryCondition> {
        self.status
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == READY_CONDITION)
    }

    fn tick_due(&self) -> Option<Duration> {
        let last = from_time(self.status.last_analysis_time.as_ref()?);
        let next = last + chrono::Duration::from_std(self.o.interval).ok()?;
        if next <= self.now {
            None
        } else {
            (next - self.now).to_std().ok()
        }
    }

    fn interval(&self) -> Requeue {
        Requeue::After(self.o.interval)
    }

    fn decide(&mut self) -> Flow {
        let deleting = self.o.canary.metadata.deletion_timestamp.is_some();
        if deleting {
            return self.finalize();
        }
        let wants_finalizer = self.spec().reverts_on_deletion();
        if wants_finalizer && !self.o.has_finalizer {
            self.actions.push(Action::AddFinalizer);
        } else if !wants_finalizer && self.o.has_finalizer {
            self.actions.push(Action::RemoveFinalizer);
        }

        if let Some(wait) = self.refuse_input() {
            return self.reject(wait);
        }
        self.set_condition(
            READY_CONDITION,
            "True",
            "Valid",
            "Canary spec and target are valid.",
        );

        if self.spec().is_suspended() {
            if self
                .ready_condition()
                .is_some_and(|c| c.reason != "Suspended")
            {
                self.event(
                    EventType::Normal,
                    "skipping canary run as object is suspended",
                );
            }
            self.set_condition(
                READY_CONDITION,
                "True",
                "Suspended",
                "Canary is suspended; no runs start or advance.",
            );
            self.wait_announced(Wait::Suspended);
            return Ok(Requeue::AwaitChange);
        }

        // Generated objects that are missing or drifted are repaired in every phase.
        for svc in self.o.generated.services_to_apply.clone() {
            self.actions.push(Action::Apply(svc));
        }
        self.screen_request();

        match self.phase() {
            None | Some(CanaryPhase::Initializing) => self.initialize(),
            Some(CanaryPhase::Initialized | CanaryPhase::Succeeded | CanaryPhase::Failed) => {
                self.steady()
            }
            Some(CanaryPhase::Waiting) => self.waiting(),
            Some(CanaryPhase::Progressing | CanaryPhase::WaitingPromotion) => self.progressing(),
            Some(CanaryPhase::Promoting) => self.promoting(),
            Some(CanaryPhase::Finalising) => self.finalising(),
            Some(CanaryPhase::Terminating | CanaryPhase::Terminated) => Ok(Requeue::AwaitChange),
        }
    }

    /// Bad input: the first error.
    fn refuse_input(&self) -> Option<Wait> {
        if let Some(p) = self
            .o
            .problems
            .iter()
            .find(|p| p.severity == crate::api::validation::Severity::Error)
        {
            return Some(Wait::InvalidSpec(format!("{}: {}", p.path, p.message)));
        }
        match &self.o.target {
            Err(TargetProblem::Missing(m)) => Some(Wait::TargetNotFound(m.clone())),
            Err(TargetProblem::Invalid(m)) => Some(Wait::InvalidTarget(m.clone())),
            Ok(_) => None,
        }
    }

    /// Reports bad input once (condition + Warning event, which also announces the wait) and
    /// changes nothing else.
    fn reject(&mut self, wait: Wait) -> Flow {
        let reason = wait.reason();
        let message = match &wait {
            Wait::InvalidSpec(m) | Wait::TargetNotFound(m) | Wait::InvalidTarget(m) => m.clone(),
            other => other.message(),
        };
        let same = self.ready_condition().is_some_and(|c| {
            c.status == "False" && c.reason == reason && c.message.as_deref() == Some(&message)
        });
        if !same {
            self.event(EventType::Warning, format!("{} {message}", self.id()));
        }
        self.set_condition(READY_CONDITION, "False", reason, &message);
        self.wait_announced(wait);
        Ok(Requeue::AwaitChange)
    }

    /// A run Flagger left in progress carries Flagger's hash in `lastAppliedSpec`, which cannot
    /// be compared with Serin's fingerprints. Take the current target as the revision under
    /// analysis and carry the run on where Flagger left it (same phase, weight and iteration)
    /// instead of restarting it or waiting for a promotion that would never match.
    fn adopt_flagger_run(&mut self) {
        let flagger_hash = self
            .status
            .last_applied_spec
            .as_deref()
            .is_some_and(|s| !crate::core::fingerprint::is_serin_fingerprint(s));
        if !flagger_hash {
            return;
        }
        let fingerprint = self.target().fingerprint.clone();
        self.status.last_applied_spec = Some(fingerprint);
        let phase = self.phase().map(CanaryPhase::as_str).unwrap_or_default();
        self.event(
            EventType::Normal,
            format!(
                "Adopted {} from Flagger's status: continuing {phase} at canary weight {}",
                self.id(),
                self.status.canary_weight
            ),
        );
    }

    fn target(&self) -> &TargetObs {
        // refuse_input() guarantees a usable target before any phase handler runs.
        match &self.o.target {
            Ok(t) => t,
            Err(_) => unreachable_target(),
        }
    }
}

/// Readiness waits poll at most every few seconds (watches usually wake us sooner).
fn short(interval: Duration) -> Duration {
    interval.min(Duration::from_secs(5))
}

fn non_empty(
    m: std::collections::BTreeMap<String, String>,
) -> Option<std::collections::BTreeMap<String, String>> {
    if m.is_empty() { None } else { Some(m) }
}

#[cold]
fn unreachable_target() -> ! {
    // refuse_input() returns early for every Err target, so phase handlers never get here.
    panic!("phase handler reached without a usable target")
}

mod analysis;
mod deletion;
mod gates;
mod init;
mod promotion;
mod wait;

pub use wait::Wait;
pub mod requests;

#[cfg(test)]
mod tests;
