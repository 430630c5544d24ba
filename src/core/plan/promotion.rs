//! Promotion (Promoting, Finalising, skipAnalysis) and rollback; pure.

use super::*;

/// Why a run is rolled back. It decides the failure reason, the events and the alerts, so no
/// decision is taken by matching message text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Rollback {
    /// The canary's workload reports a failed rollout.
    CanaryFailed(String),
    /// The canary did not become ready within progressDeadlineSeconds.
    CanaryNotReady {
        /// progressDeadlineSeconds.
        deadline: Duration,
        /// What the canary was waiting for.
        detail: String,
    },
    /// The primary's workload reports a failed rollout.
    PrimaryFailed(String),
    /// A `rollback` webhook asked for it.
    Webhook,
    /// Failed checks reached the threshold.
    FailedChecks(i32),
    /// The analysis stayed inconclusive for longer than progressDeadlineSeconds.
    Inconclusive {
        /// progressDeadlineSeconds.
        deadline: Duration,
        /// The last inconclusive result.
        detail: String,
    },
    /// An `abort` request (`serin.dev/request`, written by `kubectl serin abort`).
    Manual,
}

impl Rollback {
    /// `status.failureReason` and the tail of the Failed condition, in Flagger's words.
    fn why(&self) -> String {
        match self {
            Self::CanaryFailed(m) => format!("progress deadline exceeded: {m}"),
            Self::CanaryNotReady { deadline, detail } => format!(
                "canary not ready after progressDeadlineSeconds ({}s): {detail}",
                deadline.as_secs()
            ),
            Self::PrimaryFailed(m) => format!("primary not ready: {m}"),
            Self::Webhook => "rollback webhook invoked".into(),
            Self::Manual => "abort requested (serin.dev/request)".into(),
            Self::FailedChecks(n) => format!("failed checks threshold reached {n}"),
            Self::Inconclusive { deadline, detail } => format!(
                "analysis inconclusive for longer than progressDeadlineSeconds ({}s): {detail}",
                deadline.as_secs()
            ),
        }
    }

    /// Flagger's "Progress deadline exceeded <err>", without saying it twice: the reason of a
    /// failed canary rollout already starts with those words.
    fn deadline_message(&self) -> String {
        match self {
            Self::CanaryFailed(m) => format!("Progress deadline exceeded: {m}"),
            other => format!("Progress deadline exceeded: {}", other.why()),
        }
    }

    /// The Warning event that opens the rollback of canary `id`.
    fn event(&self, id: &str) -> String {
        let why = self.why();
        match self {
            Self::CanaryFailed(_) | Self::CanaryNotReady { .. } => self.deadline_message(),
            Self::PrimaryFailed(_) => why,
            Self::Webhook => format!("Rolling back {id} manual webhook invoked"),
            Self::Manual => format!("Rolling back {id} {why}"),
            Self::FailedChecks(_) | Self::Inconclusive { .. } => format!("Rolling back {id} {why}"),
        }
    }

    /// The alert sent before the rollback acts (Flagger alerts on these as it decides).
    fn alert_before(&self) -> Option<Action> {
        match self {
            Self::Webhook => Some(Action::Alert(
                AlertSeverity::Warn,
                "Rolling back manual webhook invoked".into(),
            )),
            Self::Manual => Some(Action::Alert(
                AlertSeverity::Warn,
                "Rolling back, abort requested".into(),
            )),
            Self::FailedChecks(n) => Some(Action::Alert(
                AlertSeverity::Error,
                format!("Failed checks threshold reached {n}"),
            )),
            _ => None,
        }
    }

    /// Whether the canary missed its progress deadline (alerted once the rollback has acted).
    fn is_deadline(&self) -> bool {
        matches!(self, Self::CanaryFailed(_) | Self::CanaryNotReady { .. })
    }
}

impl Machine<'_> {
    /// Copies the target into the primary and enters Promoting.
    pub(super) fn promote(&mut self) -> Flow {
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
        self.end_pause();
        self.status.canary_weight = self.status.canary_weight.max(0);
        Ok(Requeue::After(short(self.o.interval)))
    }

    pub(super) fn push_promotion_actions(&mut self) {
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
    pub(super) fn create_primary(&mut self) {
        if let Some(p) = self.o.generated.primary.clone() {
            self.actions.push(Action::CreatePrimary(p));
        } else if let Some(rev) = self.o.generated.primary_revision.clone() {
            self.actions.push(Action::SetPrimaryRevision(rev));
        } else if let Some(svc) = self.o.generated.primary_service.clone() {
            self.actions.push(Action::Apply(svc));
        }
    }

    /// Scales the target; only workloads are scaled (Knative scales its revisions itself). A
    /// target KEDA ScaledObject is paused at zero with it, and resumed when it scales up.
    pub(super) fn scale_target(&mut self, replicas: i32) {
        if self.o.target.as_ref().is_ok_and(TargetObs::is_workload) {
            // One scale decision per plan: a rollback after a scale-up must not bounce the target.
            self.actions
                .retain(|a| !matches!(a, Action::ScaleTarget(_)));
            self.actions.push(Action::ScaleTarget(replicas));
            if replicas == 0 {
                self.pause_target_scaler();
            } else {
                self.resume_target_scaler();
            }
        }
    }

    fn has_scaled_object(&self) -> bool {
        self.spec()
            .autoscaler_ref
            .as_ref()
            .is_some_and(|a| a.kind == "ScaledObject")
    }

    /// Flagger's `PauseTargetScaler`: a KEDA ScaledObject would scale the canary back up.
    pub(super) fn pause_target_scaler(&mut self) {
        if self.has_scaled_object() {
            self.actions.push(Action::PauseTargetScaler);
        }
    }

    /// Flagger's `ResumeTargetScaler`.
    pub(super) fn resume_target_scaler(&mut self) {
        if self.has_scaled_object() && !self.actions.contains(&Action::ResumeTargetScaler) {
            self.actions.push(Action::ResumeTargetScaler);
        }
    }

    pub(super) fn skip_to_promotion(&mut self) -> Flow {
        self.actions.push(Action::SetRoutes(Routes {
            primary: 100,
            canary: 0,
            mirrored: false,
        }));
        self.push_promotion_actions();
        self.scale_target(0);
        self.end_pause();
        let event = format!(
            "Promotion completed! Canary analysis was skipped for {}",
            self.target_id()
        );
        self.succeed(event, "Canary analysis was skipped, promotion finished.")
    }

    /// The run ends promoted: its counters reset, the promoted revision recorded, one event, an
    /// Info alert and the post-rollout hooks.
    fn succeed(&mut self, event: String, alert: &str) -> Flow {
        self.status.canary_weight = 0;
        self.status.iterations = 0;
        self.status.run_start_time = None;
        self.end_session_cookies();
        self.status.last_promoted_spec = self.status.last_applied_spec.clone();
        self.set_phase(CanaryPhase::Succeeded, None);
        self.event(EventType::Normal, event);
        self.actions
            .push(Action::Alert(AlertSeverity::Info, alert.into()));
        self.actions
            .push(Action::PostRollout(CanaryPhase::Succeeded));
        Ok(Requeue::AwaitChange)
    }

    pub(super) fn rollback(&mut self, reason: Rollback) -> Flow {
        let why = reason.why();
        if let Some(alert) = reason.alert_before() {
            self.actions.push(alert);
        }
        self.status.hold_start_time = None;
        self.end_pause();
        self.event(EventType::Warning, reason.event(&self.id()));
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
        if reason.is_deadline() {
            self.actions.push(Action::Alert(
                AlertSeverity::Error,
                reason.deadline_message(),
            ));
        }
        self.status.canary_weight = 0;
        self.status.iterations = 0;
        self.status.run_start_time = None;
        self.end_session_cookies();
        self.status.failure_reason = Some(why.clone());
        self.set_phase(CanaryPhase::Failed, Some(&format!("Reason: {why}.")));
        self.actions.push(Action::PostRollout(CanaryPhase::Failed));
        Ok(Requeue::AwaitChange)
    }

    pub(super) fn promoting(&mut self) -> Flow {
        self.adopt_flagger_run();
        if let Some(stop) = self.await_promoted_primary() {
            return stop;
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
            return Ok(Requeue::After(Duration::ZERO));
        }
        self.step_primary_weight(step)
    }

    /// The primary must run the promoted revision and be ready before traffic moves back to
    /// it; a primary that cannot become ready fails the promotion.
    fn await_promoted_primary(&mut self) -> Option<Flow> {
        let want = self.status.last_applied_spec.clone();
        let requeue = Requeue::After(short(self.o.interval));
        let Some(primary) = self.o.primary.clone() else {
            let wait = Wait::PrimaryNotReady("the primary does not exist".into());
            return Some(self.wait(wait, requeue));
        };
        if want.as_deref() != Some(primary.fingerprint.as_str()) {
            // The copy did not land (or the target changed again): copy again.
            if self.target().fingerprint.as_str() == want.as_deref().unwrap_or_default() {
                self.push_promotion_actions();
            }
            return Some(self.wait(Wait::PrimaryNotUpdated, requeue));
        }
        match &primary.readiness {
            Readiness::Ready => None,
            Readiness::Waiting(msg) => Some(self.wait(Wait::PrimaryNotReady(msg.clone()), requeue)),
            Readiness::Failed(msg) => Some(self.promotion_failed(msg)),
        }
    }

    /// The new primary cannot become ready: keep traffic on the canary, which is.
    fn promotion_failed(&mut self, detail: &str) -> Flow {
        let msg = format!("primary not ready: {detail}");
        self.actions.push(Action::SetRoutes(Routes {
            primary: 0,
            canary: 100,
            mirrored: false,
        }));
        self.event(EventType::Warning, format!("Promotion failed, {msg}"));
        self.actions.push(Action::Alert(
            AlertSeverity::Error,
            format!("Promotion failed, {msg}"),
        ));
        self.status.canary_weight = 100;
        self.status.failure_reason = Some(format!("promotion failed: {msg}"));
        self.set_phase(
            CanaryPhase::Failed,
            Some(&format!("Reason: promotion failed, {msg}.")),
        );
        self.actions.push(Action::PostRollout(CanaryPhase::Failed));
        Ok(Requeue::AwaitChange)
    }

    /// `stepWeightPromotion`: one step of traffic back to the primary per interval.
    fn step_primary_weight(&mut self, step: i32) -> Flow {
        if let Some(wait) = self.tick_due() {
            self.wait = super::wait::WaitMark::Keep;
            return Ok(Requeue::After(wait));
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
            return Ok(Requeue::After(Duration::ZERO));
        }
        Ok(self.interval())
    }

    pub(super) fn finalising(&mut self) -> Flow {
        if self.target().replicas > 0 {
            self.scale_target(0);
        }
        let event = format!("Promotion completed! Scaling down {}", self.target_id());
        self.succeed(
            event,
            "Canary analysis completed successfully, promotion finished.",
        )
    }

    /// A run ends or restarts: a pause held only that run.
    pub(super) fn end_pause(&mut self) {
        if self.status.paused_at.take().is_some() {
            self.event(
                EventType::Normal,
                format!("The pause of {} ended with its run", self.id()),
            );
        }
    }

    /// A run starts: new session-affinity cookies for it (routers read them from status).
    pub(super) fn start_session_cookies(&mut self) {
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
    pub(super) fn end_session_cookies(&mut self) {
        if let Some(c) = self.status.session_affinity_cookie.take() {
            self.status.previous_session_affinity_cookie = Some(c);
        }
        self.status.primary_session_affinity_cookie = None;
    }
}
