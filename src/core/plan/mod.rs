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
    /// Primary HPA, when the canary has an autoscaler and the primary's is missing.
    pub missing_hpa: Option<serde_json::Value>,
    /// Primary HPA as promotion must write it.
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
    pub routes: Option<Result<Routes, String>>,
    /// Ready Pods of the target counted from the Pods themselves, read live while a Canary with
    /// a workload target is being deleted (`None`: not counted).
    pub target_ready_pods: Option<u32>,
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
}

/// Short-circuit: either the plan is complete or a check is needed.
type Flow = Result<(), Step>;

impl<'a> Machine<'a> {
    fn new(o: &'a Observed, checks: &'a Checks, now: DateTime<Utc>) -> Self {
        let status = o.canary.status.clone().unwrap_or_default();
        Self {
            o,
            checks,
            now,
            status,
            actions: Vec::new(),
        }
    }

    fn run(mut self) -> Step {
        match self.decide() {
            Ok(()) => self.finish(Requeue::AwaitChange),
            Err(step) => step,
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

    fn done(self, requeue: Requeue) -> Flow {
        Err(self.finish(requeue))
    }

    fn need(&self, r: CheckRequest) -> Flow {
        Err(Step::Need(r))
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
            None => conditions.push(CanaryCondition {
                type_: type_.to_string(),
                status: value.to_string(),
                last_update_time: Some(now.clone()),
                last_transition_time: Some(now),
                reason: reason.to_string(),
                message: Some(message.to_string()),
            }),
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

        if let Some(reason) = self.refuse_input() {
            return self.reject(reason.0, &reason.1);
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
            return self.clone_done(Requeue::AwaitChange);
        }

        // Generated objects that are missing or drifted are repaired in every phase.
        for svc in self.o.generated.services_to_apply.clone() {
            self.actions.push(Action::Apply(svc));
        }

        match self.phase() {
            None | Some(CanaryPhase::Initializing) => self.initialize(),
            Some(CanaryPhase::Initialized | CanaryPhase::Succeeded | CanaryPhase::Failed) => {
                self.steady()
            }
            Some(CanaryPhase::Waiting) => self.waiting(),
            Some(CanaryPhase::Progressing | CanaryPhase::WaitingPromotion) => self.progressing(),
            Some(CanaryPhase::Promoting) => self.promoting(),
            Some(CanaryPhase::Finalising) => self.finalising(),
            Some(CanaryPhase::Terminating | CanaryPhase::Terminated) => Ok(()),
        }
    }

    fn clone_done(&mut self, requeue: Requeue) -> Flow {
        let m = Machine {
            o: self.o,
            checks: self.checks,
            now: self.now,
            status: self.status.clone(),
            actions: std::mem::take(&mut self.actions),
        };
        m.done(requeue)
    }

    /// Bad input: the first error, as (reason, message).
    fn refuse_input(&self) -> Option<(&'static str, String)> {
        if let Some(p) = self
            .o
            .problems
            .iter()
            .find(|p| p.severity == crate::api::validation::Severity::Error)
        {
            return Some(("InvalidSpec", format!("{}: {}", p.path, p.message)));
        }
        match &self.o.target {
            Err(TargetProblem::Missing(m)) => Some(("TargetNotFound", m.clone())),
            Err(TargetProblem::Invalid(m)) => Some(("InvalidTarget", m.clone())),
            Ok(_) => None,
        }
    }

    /// Reports bad input once (condition + event) and changes nothing else.
    fn reject(&mut self, reason: &'static str, message: &str) -> Flow {
        let same = self.ready_condition().is_some_and(|c| {
            c.status == "False" && c.reason == reason && c.message.as_deref() == Some(message)
        });
        if !same {
            self.event(EventType::Warning, format!("{} {message}", self.id()));
        }
        self.set_condition(READY_CONDITION, "False", reason, message);
        self.clone_done(Requeue::AwaitChange)
    }

    fn target(&self) -> &TargetObs {
        // refuse_input() guarantees a usable target before any phase handler runs.
        match &self.o.target {
            Ok(t) => t,
            Err(_) => unreachable_target(),
        }
    }

    // ---- Initialization ----------------------------------------------------------------------

    fn initialize(&mut self) -> Flow {
        if self.phase().is_none() {
            self.set_phase(CanaryPhase::Initializing, None);
        }
        for cfg in self.o.generated.missing_configs.clone() {
            self.actions.push(Action::Apply(cfg));
        }
        if let Some(hpa) = self.o.generated.missing_hpa.clone() {
            self.actions.push(Action::Apply(hpa));
        }
        let Some(primary) = &self.o.primary else {
            self.create_primary();
            return self.clone_done(Requeue::After(short(self.o.interval)));
        };
        if !self.spec().skips_analysis() {
            match &primary.readiness {
                Readiness::Ready => {}
                Readiness::Waiting(_) => {
                    return self.clone_done(Requeue::After(short(self.o.interval)));
                }
                Readiness::Failed(msg) => {
                    let msg = msg.clone();
                    self.event(
                        EventType::Warning,
                        format!("{} primary is not ready: {msg}", self.id()),
                    );
                    self.status.failure_reason = Some(format!("primary not ready: {msg}"));
                    self.set_phase(
                        CanaryPhase::Failed,
                        Some(&format!("Primary not ready: {msg}")),
                    );
                    return self.clone_done(Requeue::AwaitChange);
                }
            }
        }
        let t = self.target().clone();
        if t.replicas > 0 {
            self.scale_target(0);
        }
        self.actions.push(Action::ReconcileRouter);
        self.status.last_applied_spec = Some(t.fingerprint.clone());
        self.status.last_promoted_spec = Some(primary.fingerprint.clone());
        self.status.tracked_configs = non_empty(t.tracked_configs.clone());
        self.status.canary_weight = 0;
        self.status.iterations = 0;
        self.status.failed_checks = 0;
        self.set_phase(CanaryPhase::Initialized, None);
        self.event(
            EventType::Normal,
            format!("Initialization done! {}", self.id()),
        );
        self.actions.push(Action::Alert(
            AlertSeverity::Info,
            format!("New {} detected, initialization completed.", t.kind),
        ));
        self.clone_done(Requeue::AwaitChange)
    }

    // ---- Steady phases: Initialized, Succeeded, Failed -----------------------------------------

    /// Whether the target runs a revision that a run should analyse.
    fn new_revision(&self) -> bool {
        let t = self.target();
        let Some(primary) = &self.o.primary else {
            return false;
        };
        if t.fingerprint == primary.fingerprint {
            return false;
        }
        // A revision that already failed is not retried until it changes.
        !(self.phase() == Some(CanaryPhase::Failed)
            && self.status.last_applied_spec.as_deref() == Some(t.fingerprint.as_str()))
    }

    fn steady(&mut self) -> Flow {
        if self.o.primary.is_none() {
            // The primary was deleted behind our back: recreate it from the target's last
            // promoted state is impossible, so recreate from the target and re-initialise.
            self.create_primary();
            self.event(
                EventType::Warning,
                format!("{} primary is missing; re-initialising", self.id()),
            );
            self.set_phase(CanaryPhase::Initializing, None);
            return self.clone_done(Requeue::After(short(self.o.interval)));
        }
        for cfg in self.o.generated.missing_configs.clone() {
            self.actions.push(Action::Apply(cfg));
        }
        if let Some(hpa) = self.o.generated.missing_hpa.clone() {
            self.actions.push(Action::Apply(hpa));
        }
        let t = self.target().clone();
        let adopting = self.phase() == Some(CanaryPhase::Failed)
            && !self
                .status
                .last_applied_spec
                .as_deref()
                .is_some_and(crate::core::fingerprint::is_serin_fingerprint);
        if adopting {
            // A Canary Flagger left Failed: its hash cannot be compared with ours, so take the
            // current target as the already-judged revision instead of re-running it.
            self.status.last_applied_spec = Some(t.fingerprint.clone());
            return self.clone_done(Requeue::AwaitChange);
        }
        if !self.new_revision() {
            return self.clone_done(Requeue::AwaitChange);
        }
        self.gate_and_start()
    }

    /// Asks the confirm-rollout gate, then starts a run or waits.
    fn gate_and_start(&mut self) -> Flow {
        if !self
            .spec()
            .webhooks_of(crate::api::webhook_type::WebhookType::ConfirmRollout)
            .is_empty()
        {
            match self.checks.confirm_rollout {
                None => return self.need(CheckRequest::ConfirmRollout),
                Some(false) => {
                    if self.phase() != Some(CanaryPhase::Waiting) {
                        self.event(
                            EventType::Normal,
                            format!(
                                "Waiting for approval: confirm-rollout gate is closed for {}",
                                self.id()
                            ),
                        );
                        if !self.gate_muted(crate::api::webhook_type::WebhookType::ConfirmRollout) {
                            self.actions.push(Action::Alert(
                                AlertSeverity::Warn,
                                "Canary is waiting for approval.".into(),
                            ));
                        }
                        self.set_phase(CanaryPhase::Waiting, None);
                    }
                    self.record_hooks();
                    self.status.last_analysis_time = Some(to_time(self.now));
                    return self.clone_done(self.interval());
                }
                Some(true) => {}
            }
        }
        self.start_run("New revision detected! Scaling up")
    }

    fn start_run(&mut self, what: &str) -> Flow {
        let t = self.target().clone();
        self.actions.push(Action::ReconcileRouter);
        if t.replicas == 0 {
            self.scale_target(t.scale_up_replicas.max(1));
        }
        self.event(EventType::Normal, format!("{what} {}", self.target_id()));
        self.actions.push(Action::Alert(
            AlertSeverity::Info,
            "New revision detected, progressing canary analysis.".into(),
        ));
        self.status.canary_weight = 0;
        self.status.failed_checks = 0;
        self.status.iterations = 0;
        self.status.failure_reason = None;
        self.status.hold_start_time = None;
        self.status.checks = None;
        self.status.last_applied_spec = Some(t.fingerprint.clone());
        self.status.tracked_configs = non_empty(t.tracked_configs.clone());
        self.status.run_start_time = Some(to_time(self.now));
        self.status.last_analysis_time = Some(to_time(self.now));
        self.start_session_cookies();
        self.set_phase(CanaryPhase::Progressing, None);
        self.clone_done(self.interval())
    }

    fn waiting(&mut self) -> Flow {
        if let Some(wait) = self.tick_due() {
            return self.clone_done(Requeue::After(wait));
        }
        if self.has_hooks(crate::api::webhook_type::WebhookType::Rollback) {
            match self.checks.rollback {
                None => return self.need(CheckRequest::Rollback),
                Some(true) => {
                    // Nothing runs yet in Waiting: mark this revision failed so it is not retried.
                    let fp = self.target().fingerprint.clone();
                    self.status.last_applied_spec = Some(fp);
                    self.event(
                        EventType::Warning,
                        format!("Rolling back {} manual webhook invoked", self.id()),
                    );
                    self.actions.push(Action::Alert(
                        AlertSeverity::Warn,
                        "Rolling back manual webhook invoked".into(),
                    ));
                    self.status.failure_reason =
                        Some("rollback webhook invoked while waiting for approval".into());
                    self.set_phase(
                        CanaryPhase::Failed,
                        Some("Rollback webhook invoked while waiting for approval."),
                    );
                    self.actions.push(Action::PostRollout(CanaryPhase::Failed));
                    return self.clone_done(Requeue::AwaitChange);
                }
                Some(false) => {}
            }
        }
        self.gate_and_start()
    }

    fn has_hooks(&self, t: crate::api::webhook_type::WebhookType) -> bool {
        !self.spec().webhooks_of(t).is_empty()
    }

    /// Writes the failed hooks' decision records (URL, status, body) into the status.
    fn record_hooks(&mut self) {
        if !self.checks.hook_records.is_empty() {
            self.status.checks = Some(self.checks.hook_records.clone());
        }
    }

    /// A closed gate alerts unless the gate that said no has `muteAlert` (as in Flagger). Which
    /// gate said no is known from its decision record; without one, only when all are muted.
    fn gate_muted(&self, t: crate::api::webhook_type::WebhookType) -> bool {
        let gates = self.spec().webhooks_of(t);
        let failed: Vec<&str> = self
            .checks
            .hook_records
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        let relevant: Vec<_> = gates
            .iter()
            .filter(|w| failed.is_empty() || failed.contains(&w.name.as_str()))
            .collect();
        !relevant.is_empty() && relevant.iter().all(|w| w.mute_alert == Some(true))
    }

    // ---- Progressing and WaitingPromotion ---------------------------------------------------

    fn progressing(&mut self) -> Flow {
        let t = self.target().clone();
        if self.status.last_applied_spec.as_deref() != Some(t.fingerprint.as_str()) {
            self.actions.push(Action::SetRoutes(Routes {
                primary: 100,
                canary: 0,
                mirrored: false,
            }));
            return self.start_run("New revision detected! Restarting analysis for");
        }
        if t.replicas == 0 {
            // Someone scaled the canary down mid-run (e.g. a GitOps sync): bring it back.
            self.scale_target(t.scale_up_replicas.max(1));
        }
        // The canary must be ready before any analysis tick; a canary that never becomes ready
        // fails after the progress deadline instead of hanging in Progressing.
        match &t.readiness {
            Readiness::Ready => {}
            Readiness::Failed(msg) => {
                let msg = format!("progress deadline exceeded: {msg}");
                return self.rollback(&msg, &format!("Progress deadline exceeded {msg}"));
            }
            Readiness::Waiting(msg) => {
                let started = self
                    .status
                    .run_start_time
                    .as_ref()
                    .map(from_time)
                    .unwrap_or(self.now);
                let deadline = started
                    + chrono::Duration::from_std(self.spec().progress_deadline())
                        .unwrap_or_default();
                if self.now >= deadline {
                    let msg = format!(
                        "canary not ready after progressDeadlineSeconds ({}s): {msg}",
                        self.spec().progress_deadline().as_secs()
                    );
                    return self.rollback(&msg, &format!("Progress deadline exceeded {msg}"));
                }
                let wait = (deadline - self.now).to_std().unwrap_or_default();
                return self.clone_done(Requeue::After(wait.min(short(self.o.interval))));
            }
        }
        if !self.spec().skips_analysis()
            && let Some(p) = &self.o.primary
            && let Readiness::Failed(msg) = &p.readiness
        {
            let msg = format!("primary not ready: {msg}");
            return self.rollback(&msg, &msg);
        }
        if self.spec().skips_analysis() {
            return self.skip_to_promotion();
        }
        if let Some(wait) = self.tick_due() {
            return self.clone_done(Requeue::After(wait));
        }
        if let Some(Err(msg)) = &self.o.routes {
            // Never shift traffic blind: wait until the router can report the split.
            tracing::debug!("routes not ready: {msg}");
            return self.clone_done(Requeue::After(short(self.o.interval)));
        }
        if self.has_hooks(crate::api::webhook_type::WebhookType::Rollback) {
            match self.checks.rollback {
                None => return self.need(CheckRequest::Rollback),
                Some(true) => {
                    self.actions.push(Action::Alert(
                        AlertSeverity::Warn,
                        "Rolling back manual webhook invoked".into(),
                    ));
                    return self.rollback(
                        "rollback webhook invoked",
                        &format!("Rolling back {} manual webhook invoked", self.id()),
                    );
                }
                Some(false) => {}
            }
        }
        let threshold = self.spec().threshold();
        if self.status.failed_checks >= threshold {
            let msg = format!(
                "failed checks threshold reached {}",
                self.status.failed_checks
            );
            self.actions.push(Action::Alert(
                AlertSeverity::Error,
                format!(
                    "Failed checks threshold reached {}",
                    self.status.failed_checks
                ),
            ));
            return self.rollback(&msg, &format!("Rolling back {} {msg}", self.id()));
        }

        self.status.last_analysis_time = Some(to_time(self.now));
        let first_tick = self.status.canary_weight == 0 && self.status.iterations == 0;
        if first_tick {
            match &self.checks.pre_rollout {
                None if self.has_hooks(crate::api::webhook_type::WebhookType::PreRollout) => {
                    return self.need(CheckRequest::PreRollout);
                }
                Some(Err(msg)) => {
                    let msg = msg.clone();
                    self.record_hooks();
                    return self.failed_check(&msg);
                }
                _ => {}
            }
            self.event(
                EventType::Normal,
                format!("Starting canary analysis for {}", self.target_id()),
            );
        } else {
            match &self.checks.analysis {
                None => return self.need(CheckRequest::Analysis),
                Some(Err(msg)) => {
                    let msg = msg.clone();
                    self.record_hooks();
                    return self.failed_check(&msg);
                }
                Some(Ok(report)) => {
                    if !report.records.is_empty() {
                        self.status.checks = Some(report.records.clone());
                    }
                    match &report.verdict {
                        Verdict::Pass => self.status.hold_start_time = None,
                        Verdict::Fail(msg) => {
                            let msg = msg.clone();
                            self.status.hold_start_time = None;
                            let events = failing_check_events(
                                &report.records,
                                self.spec().inconclusive_policy(),
                            );
                            if events.is_empty() {
                                return self.failed_check(&msg);
                            }
                            // One event per failing check, each with its decision record.
                            for e in events {
                                self.event(EventType::Warning, e);
                            }
                            self.status.failed_checks += 1;
                            return self.clone_done(self.interval());
                        }
                        Verdict::Hold(msg) => {
                            let msg = msg.clone();
                            return self.hold(&msg);
                        }
                    }
                }
            }
        }
        let provider = self.o.provider.unwrap_or(Provider::Kubernetes);
        match self.spec().strategy(provider) {
            Strategy::Canary => self.advance_weight(),
            Strategy::AbTesting | Strategy::BlueGreen => self.advance_iteration(provider),
        }
    }

    /// Inconclusive analysis under the `hold` policy: neither fail nor advance, but never for
    /// longer than the progress deadline.
    fn hold(&mut self, msg: &str) -> Flow {
        let since = self
            .status
            .hold_start_time
            .as_ref()
            .map(from_time)
            .unwrap_or(self.now);
        let limit = self.spec().progress_deadline();
        if (self.now - since).to_std().unwrap_or_default() >= limit {
            let why = format!(
                "analysis inconclusive for longer than progressDeadlineSeconds ({}s): {msg}",
                limit.as_secs()
            );
            return self.rollback(&why, &format!("Rolling back {} {why}", self.id()));
        }
        self.status.hold_start_time = Some(to_time(since));
        self.event(
            EventType::Warning,
            format!("Holding {} advancement: {msg}", self.id()),
        );
        self.clone_done(self.interval())
    }

    fn failed_check(&mut self, msg: &str) -> Flow {
        self.status.failed_checks += 1;
        self.event(EventType::Warning, msg.to_string());
        self.clone_done(self.interval())
    }

    fn advance_weight(&mut self) -> Flow {
        let weight = self.status.canary_weight;
        let max = self.spec().max_weight();
        if weight < max && self.phase() == Some(CanaryPhase::Progressing) {
            if self.has_hooks(crate::api::webhook_type::WebhookType::ConfirmTrafficIncrease) {
                match self.checks.confirm_traffic_increase {
                    None => return self.need(CheckRequest::ConfirmTrafficIncrease),
                    Some(false) => {
                        self.event(EventType::Normal, format!("Waiting for approval: confirm-traffic-increase gate is closed for {}", self.id()));
                        self.record_hooks();
                        return self.clone_done(self.interval());
                    }
                    Some(true) => {}
                }
            }
            let next = self.spec().next_weight(weight).unwrap_or(max);
            self.actions.push(Action::SetRoutes(Routes {
                primary: 100 - next,
                canary: next,
                mirrored: false,
            }));
            self.status.canary_weight = next;
            self.event(
                EventType::Normal,
                format!("Advance {} canary weight {next}", self.id()),
            );
            return self.clone_done(self.interval());
        }
        self.confirm_and_promote()
    }

    fn advance_iteration(&mut self, provider: Provider) -> Flow {
        let n = self.spec().iterations(provider);
        let i = self.status.iterations;
        let ab = self.spec().strategy(provider) == Strategy::AbTesting;
        if i < n && self.phase() == Some(CanaryPhase::Progressing) {
            if ab {
                self.actions.push(Action::SetRoutes(Routes {
                    primary: 0,
                    canary: 100,
                    mirrored: false,
                }));
            } else if provider != Provider::Kubernetes
                && self.spec().analysis_or_default().mirror.unwrap_or(false)
            {
                self.actions.push(Action::SetRoutes(Routes {
                    primary: 100,
                    canary: 0,
                    mirrored: true,
                }));
            }
            self.status.iterations = i + 1;
            self.event(
                EventType::Normal,
                format!("Advance {} canary iteration {}/{n}", self.id(), i + 1),
            );
            return self.clone_done(self.interval());
        }
        if !ab && provider != Provider::Kubernetes && i == n {
            // Blue/green: switch all traffic to the new version one tick before promotion.
            match self.gate_promotion() {
                Ok(true) => {}
                Ok(false) => return self.clone_done(self.interval()),
                Err(step) => return Err(step),
            }
            self.actions.push(Action::SetRoutes(Routes {
                primary: 0,
                canary: 100,
                mirrored: false,
            }));
            self.status.iterations = n + 1;
            self.event(
                EventType::Normal,
                format!("Routing all traffic to canary {}", self.id()),
            );
            return self.clone_done(self.interval());
        }
        if !ab && provider != Provider::Kubernetes {
            // The traffic switch already passed the gate.
            return self.promote();
        }
        self.confirm_and_promote()
    }

    /// `Ok(true)` when promotion may go ahead; `Ok(false)` after moving to WaitingPromotion.
    fn gate_promotion(&mut self) -> Result<bool, Step> {
        if !self.has_hooks(crate::api::webhook_type::WebhookType::ConfirmPromotion) {
            return Ok(true);
        }
        match self.checks.confirm_promotion {
            None => Err(Step::Need(CheckRequest::ConfirmPromotion)),
            Some(true) => Ok(true),
            Some(false) => {
                if self.phase() != Some(CanaryPhase::WaitingPromotion) {
                    self.event(
                        EventType::Normal,
                        format!(
                            "Waiting for approval: confirm-promotion gate is closed for {}",
                            self.id()
                        ),
                    );
                    if !self.gate_muted(crate::api::webhook_type::WebhookType::ConfirmPromotion) {
                        self.actions.push(Action::Alert(
                            AlertSeverity::Warn,
                            "Canary promotion is waiting for approval.".into(),
                        ));
                    }
                    // Unlike Flagger, the status weight keeps reading the traffic actually routed.
                    let weight = self.status.canary_weight;
                    self.set_phase(CanaryPhase::WaitingPromotion, None);
                    self.status.canary_weight = weight;
                }
                self.record_hooks();
                Ok(false)
            }
        }
    }

    fn confirm_and_promote(&mut self) -> Flow {
        match self.gate_promotion() {
            Ok(true) => self.promote(),
            Ok(false) => self.clone_done(self.interval()),
            Err(step) => Err(step),
        }
    }

    /// Copies the target into the primary and enters Promoting.
    fn promote(&mut self) -> Flow {
        self.push_promotion_actions();
        self.event(
            EventType::Normal,
            format!(
                "Copying {} template spec to {}-primary",
                self.target_id(),
                self.target_id()
                    .replacen('.', "-primary.", 1)
                    .split("-primary.")
                    .next()
                    .unwrap_or_default()
            ),
        );
        self.set_phase(CanaryPhase::Promoting, None);
        self.status.canary_weight = self.status.canary_weight.max(0);
        self.clone_done(Requeue::After(short(self.o.interval)))
    }

    fn push_promotion_actions(&mut self) {
        for cfg in self.o.generated.promoted_configs.clone() {
            self.actions.push(Action::Apply(cfg));
        }
        if let Some(p) = self.o.generated.primary.clone() {
            self.actions.push(Action::PromotePrimary(p));
        }
        if let Some(hpa) = self.o.generated.promoted_hpa.clone() {
            self.actions.push(Action::Apply(hpa));
        }
        if let Some(rev) = self.o.generated.primary_revision.clone() {
            self.actions.push(Action::SetPrimaryRevision(rev));
        }
        if let Some(svc) = self.o.generated.primary_service.clone() {
            self.actions.push(Action::Apply(svc));
        }
    }

    /// Creates the primary: the primary workload, for a Knative target names the latest
    /// revision as primary (the router then writes the initial split), for a Kubernetes Service
    /// target copies the target into `<target>-primary`.
    fn create_primary(&mut self) {
        if let Some(p) = self.o.generated.primary.clone() {
            self.actions.push(Action::CreatePrimary(p));
        } else if let Some(rev) = self.o.generated.primary_revision.clone() {
            self.actions.push(Action::SetPrimaryRevision(rev));
        } else if let Some(svc) = self.o.generated.primary_service.clone() {
            self.actions.push(Action::Apply(svc));
        }
    }

    /// Scales the target; only workloads are scaled (Knative scales its revisions itself).
    fn scale_target(&mut self, replicas: i32) {
        if self.o.target.as_ref().is_ok_and(TargetObs::is_workload) {
            self.actions.push(Action::ScaleTarget(replicas));
        }
    }

    fn skip_to_promotion(&mut self) -> Flow {
        self.actions.push(Action::SetRoutes(Routes {
            primary: 100,
            canary: 0,
            mirrored: false,
        }));
        self.push_promotion_actions();
        self.scale_target(0);
        self.status.canary_weight = 0;
        self.status.iterations = 0;
        self.status.run_start_time = None;
        self.end_session_cookies();
        self.status.last_promoted_spec = self.status.last_applied_spec.clone();
        self.set_phase(CanaryPhase::Succeeded, None);
        self.event(
            EventType::Normal,
            format!(
                "Promotion completed! Canary analysis was skipped for {}",
                self.target_id()
            ),
        );
        self.actions.push(Action::Alert(
            AlertSeverity::Info,
            "Canary analysis was skipped, promotion finished.".into(),
        ));
        self.actions
            .push(Action::PostRollout(CanaryPhase::Succeeded));
        self.clone_done(Requeue::AwaitChange)
    }

    fn rollback(&mut self, why: &str, event: &str) -> Flow {
        self.status.hold_start_time = None;
        self.event(EventType::Warning, event.to_string());
        self.actions.push(Action::SetRoutes(Routes {
            primary: 100,
            canary: 0,
            mirrored: false,
        }));
        self.scale_target(0);
        self.event(
            EventType::Warning,
            format!("Canary failed! Scaling down {}", self.target_id()),
        );
        if why.starts_with("progress deadline") || why.starts_with("canary not ready") {
            self.actions.push(Action::Alert(
                AlertSeverity::Error,
                format!("Progress deadline exceeded {why}"),
            ));
        }
        self.status.canary_weight = 0;
        self.status.iterations = 0;
        self.status.run_start_time = None;
        self.end_session_cookies();
        self.status.failure_reason = Some(why.to_string());
        self.set_phase(CanaryPhase::Failed, Some(&format!("Reason: {why}.")));
        self.actions.push(Action::PostRollout(CanaryPhase::Failed));
        self.clone_done(Requeue::AwaitChange)
    }

    // ---- Promoting and Finalising -------------------------------------------------------------

    fn promoting(&mut self) -> Flow {
        let want = self.status.last_applied_spec.clone();
        let Some(primary) = self.o.primary.clone() else {
            return self.clone_done(Requeue::After(short(self.o.interval)));
        };
        if want.as_deref() != Some(primary.fingerprint.as_str()) {
            // The copy did not land (or the target changed again): copy again.
            if self.target().fingerprint.as_str() == want.as_deref().unwrap_or_default() {
                self.push_promotion_actions();
            }
            return self.clone_done(Requeue::After(short(self.o.interval)));
        }
        match &primary.readiness {
            Readiness::Ready => {}
            Readiness::Waiting(_) => {
                return self.clone_done(Requeue::After(short(self.o.interval)));
            }
            Readiness::Failed(msg) => {
                // The new primary cannot become ready: keep traffic on the canary, which is.
                let msg = format!("primary not ready: {msg}");
                self.actions.push(Action::SetRoutes(Routes {
                    primary: 0,
                    canary: 100,
                    mirrored: false,
                }));
                self.event(EventType::Warning, format!("Promotion failed, {msg}"));
                self.actions.push(Action::Alert(
                    AlertSeverity::Error,
                    format!("Promotion failed, primary not ready: {msg}"),
                ));
                self.status.canary_weight = 100;
                self.status.failure_reason = Some(format!("promotion failed: {msg}"));
                self.set_phase(
                    CanaryPhase::Failed,
                    Some(&format!("Reason: promotion failed, {msg}.")),
                );
                self.actions.push(Action::PostRollout(CanaryPhase::Failed));
                return self.clone_done(Requeue::AwaitChange);
            }
        }
        let provider = self.o.provider.unwrap_or(Provider::Kubernetes);
        let step = self
            .spec()
            .analysis_or_default()
            .step_weight_promotion
            .unwrap_or(0);
        if provider == Provider::Kubernetes || step <= 0 || self.status.canary_weight <= 0 {
            if provider != Provider::Kubernetes {
                self.actions.push(Action::SetRoutes(Routes {
                    primary: 100,
                    canary: 0,
                    mirrored: false,
                }));
                self.event(
                    EventType::Normal,
                    format!("Routing all traffic to primary {}", self.id()),
                );
            }
            self.status.canary_weight = 0;
            self.set_phase(CanaryPhase::Finalising, None);
            return self.clone_done(Requeue::After(Duration::ZERO));
        }
        if let Some(wait) = self.tick_due() {
            return self.clone_done(Requeue::After(wait));
        }
        let canary = (self.status.canary_weight - step).max(0);
        self.actions.push(Action::SetRoutes(Routes {
            primary: 100 - canary,
            canary,
            mirrored: false,
        }));
        self.status.canary_weight = canary;
        self.status.last_analysis_time = Some(to_time(self.now));
        self.event(
            EventType::Normal,
            format!("Advance {} primary weight {}", self.id(), 100 - canary),
        );
        if canary == 0 {
            self.set_phase(CanaryPhase::Finalising, None);
            return self.clone_done(Requeue::After(Duration::ZERO));
        }
        self.clone_done(self.interval())
    }

    fn finalising(&mut self) -> Flow {
        if self.target().replicas > 0 {
            self.scale_target(0);
        }
        self.status.canary_weight = 0;
        self.status.iterations = 0;
        self.status.run_start_time = None;
        self.end_session_cookies();
        self.status.last_promoted_spec = self.status.last_applied_spec.clone();
        self.set_phase(CanaryPhase::Succeeded, None);
        self.event(
            EventType::Normal,
            format!("Promotion completed! Scaling down {}", self.target_id()),
        );
        self.actions.push(Action::Alert(
            AlertSeverity::Info,
            "Canary analysis completed successfully, promotion finished.".into(),
        ));
        self.actions
            .push(Action::PostRollout(CanaryPhase::Succeeded));
        self.clone_done(Requeue::AwaitChange)
    }

    /// A run starts: new session-affinity cookies for it (routers read them from status).
    fn start_session_cookies(&mut self) {
        let uid = self.o.canary.metadata.uid.clone().unwrap_or_default();
        let sa = self.spec().analysis_or_default().session_affinity;
        self.status.session_affinity_cookie = sa
            .as_ref()
            .map(|sa| session_cookie(&sa.cookie_name, &uid, self.now));
        self.status.primary_session_affinity_cookie = sa
            .as_ref()
            .and_then(|sa| sa.primary_cookie_name.as_deref())
            .filter(|n| !n.is_empty())
            .map(|n| session_cookie(n, &uid, self.now));
    }

    /// A run ends: its canary cookie becomes the one routers expire.
    fn end_session_cookies(&mut self) {
        if let Some(c) = self.status.session_affinity_cookie.take() {
            self.status.previous_session_affinity_cookie = Some(c);
        }
        self.status.primary_session_affinity_cookie = None;
    }

    // ---- Deletion -------------------------------------------------------------------------------

    /// With `revertOnDeletion`: bring the target back, wait until it is ready, point the apex
    /// Service at it, then let go. The apex never selects zero ready pods.
    fn finalize(&mut self) -> Flow {
        if !self.o.has_finalizer {
            return self.clone_done(Requeue::AwaitChange);
        }
        if self.phase() != Some(CanaryPhase::Terminating) {
            self.set_phase(CanaryPhase::Terminating, None);
            self.event(
                EventType::Normal,
                format!("Terminating canary {}", self.id()),
            );
        }
        let Ok(t) = self.o.target.clone() else {
            // Nothing to restore.
            self.actions.push(Action::RemoveFinalizer);
            return self.clone_done(Requeue::AwaitChange);
        };
        if !t.is_workload() {
            // A Knative Service serves on its own, and a Kubernetes Service target was never
            // changed: the router hands the traffic back.
            self.actions.push(Action::FinalizeRouter);
            self.actions.push(Action::RemoveFinalizer);
            self.event(
                EventType::Normal,
                format!("Terminated canary {}", self.id()),
            );
            return self.clone_done(Requeue::AwaitChange);
        }
        if t.replicas == 0 {
            let replicas = self
                .o
                .primary
                .as_ref()
                .map(|p| p.replicas)
                .filter(|r| *r > 0)
                .unwrap_or(t.scale_up_replicas.max(1));
            self.actions.push(Action::ScaleTarget(replicas));
            return self.clone_done(Requeue::After(short(self.o.interval)));
        }
        if t.readiness != Readiness::Ready {
            return self.clone_done(Requeue::After(short(self.o.interval)));
        }
        if self.o.target_ready_pods == Some(0) {
            // A workload's status can lag the Pods it counts: right after a scale to zero and
            // back, it may still report the deleted Pods as ready. The Pods decide.
            return self.clone_done(Requeue::After(short(self.o.interval)));
        }
        self.actions.push(Action::RestoreApexService);
        self.actions.push(Action::FinalizeRouter);
        self.actions.push(Action::RemoveFinalizer);
        self.event(
            EventType::Normal,
            format!("Terminated canary {}", self.id()),
        );
        self.clone_done(Requeue::AwaitChange)
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

/// The Warning events of a failed analysis tick: one per check that counts as failed (a value
/// outside its range; no data or an error too under the `fail` policy), each carrying Flagger's
/// halt message followed by the decision record's facts.
fn failing_check_events(
    records: &[crate::api::canary::CheckRecord],
    policy: crate::api::defaults::InconclusivePolicy,
) -> Vec<String> {
    use crate::core::verdict::Outcome;
    let fmt = |v: Option<f64>| v.map_or_else(|| "none".to_string(), |v| v.to_string());
    records
        .iter()
        .filter(|r| match Outcome::parse(&r.outcome) {
            Some(Outcome::Pass) => false,
            Some(Outcome::Fail) => true,
            _ => policy == crate::api::defaults::InconclusivePolicy::Fail,
        })
        .map(|r| {
            format!(
                "{} [check {}: outcome {}, value {}, range min {} max {}, query {}]",
                r.message.as_deref().unwrap_or("check failed"),
                r.name,
                r.outcome,
                fmt(r.value),
                fmt(r.min),
                fmt(r.max),
                r.query.as_deref().unwrap_or("none"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
