//! Initialisation and the steady phases (Initialized, Succeeded, Failed, Waiting): create the
//! primary, detect a new revision, pass the confirm-rollout gate and start a run; pure.

use super::gates::Gate;
use super::*;

impl Machine<'_> {
    pub(super) fn initialize(&mut self) -> Flow {
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
            return Ok(Requeue::After(short(self.o.interval)));
        };
        if !self.spec().skips_analysis() {
            match &primary.readiness {
                Readiness::Ready => {}
                Readiness::Waiting(msg) => {
                    let wait = Wait::PrimaryNotReady(msg.clone());
                    return self.wait(wait, Requeue::After(short(self.o.interval)));
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
                    return Ok(Requeue::AwaitChange);
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
        Ok(Requeue::AwaitChange)
    }

    /// Whether the target runs a revision that a run should analyse.
    pub(super) fn new_revision(&self) -> bool {
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

    pub(super) fn steady(&mut self) -> Flow {
        if self.o.primary.is_none() {
            // The primary was deleted behind our back: recreate it from the target's last
            // promoted state is impossible, so recreate from the target and re-initialise.
            self.create_primary();
            self.event(
                EventType::Warning,
                format!("{} primary is missing; re-initialising", self.id()),
            );
            self.set_phase(CanaryPhase::Initializing, None);
            return Ok(Requeue::After(short(self.o.interval)));
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
            return Ok(Requeue::AwaitChange);
        }
        if let Some(flow) = self.manual_retry() {
            return flow;
        }
        if !self.new_revision() {
            return Ok(Requeue::AwaitChange);
        }
        self.gate_and_start()
    }

    /// Asks the confirm-rollout gate, then starts a run or waits.
    pub(super) fn gate_and_start(&mut self) -> Flow {
        if !self.gate(Gate::ConfirmRollout)? {
            self.status.last_analysis_time = Some(to_time(self.now));
            return Ok(self.interval());
        }
        self.start_run("New revision detected! Scaling up")
    }

    pub(super) fn start_run(&mut self, what: &str) -> Flow {
        let t = self.target().clone();
        self.actions.push(Action::ReconcileRouter);
        if t.replicas == 0 {
            self.scale_target(t.scale_up_replicas.max(1));
        }
        // A run resumes the canary's ScaledObject whether or not the canary was at zero.
        self.resume_target_scaler();
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
        self.status.last_run_start_time = self.status.run_start_time.clone();
        self.status.last_analysis_time = Some(to_time(self.now));
        self.end_pause();
        self.start_session_cookies();
        self.set_phase(CanaryPhase::Progressing, None);
        Ok(self.interval())
    }

    pub(super) fn waiting(&mut self) -> Flow {
        if let Some(wait) = self.tick_due() {
            self.wait = super::wait::WaitMark::Keep;
            return Ok(Requeue::After(wait));
        }
        if self.has_hooks(crate::api::webhook_type::WebhookType::Rollback) {
            match self.checks.rollback {
                None => return Err(CheckRequest::Rollback),
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
                    return Ok(Requeue::AwaitChange);
                }
                Some(false) => {}
            }
        }
        self.gate_and_start()
    }
}
