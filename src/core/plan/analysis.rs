//! Progressing and WaitingPromotion: readiness, rollback hooks, the failed-checks threshold,
//! one analysis tick, and advancing the weight or the iteration; pure.

use super::gates::Gate;
use super::promotion::Rollback;
use super::wait::WaitMark;
use super::*;
use crate::api::canary::CheckRecord;
use crate::api::webhook_type::WebhookType;

impl Machine<'_> {
    /// One step of a run in progress. Each helper either lets the run go on (`None`) or
    /// decides (`Some(flow)`): a restart, a rollback, a wait (with its reason) or a question.
    pub(super) fn progressing(&mut self) -> Flow {
        self.adopt_flagger_run();
        let mut t = self.target().clone();
        if let Some(stop) = self.restart_on_new_revision(&t) {
            return stop;
        }
        if t.replicas == 0 && t.is_workload() {
            // Scaled to zero mid-run (a GitOps sync, or a rollback whose status write failed):
            // bring it back. The observed status predates the scale-up, and a workload that
            // wants no replicas reads as rolled out, yet it has no Pod to take traffic.
            self.scale_target(t.scale_up_replicas.max(1));
            t.readiness = Readiness::Waiting("the canary is scaled to zero; scaling it up".into());
        }
        if let Some(stop) = self
            .manual_control()
            .or_else(|| self.await_canary(&t))
            .or_else(|| self.primary_failed())
            .or_else(|| self.manual_promotion())
            .or_else(|| self.skip_analysis())
            .or_else(|| self.await_tick_and_routes())
            .or_else(|| self.rollback_checks())
            .or_else(|| self.analysis_tick())
        {
            return stop;
        }
        let provider = self.o.provider.unwrap_or(Provider::Kubernetes);
        match self.spec().strategy(provider) {
            Strategy::Canary => self.advance_weight(),
            Strategy::AbTesting | Strategy::BlueGreen => self.advance_iteration(provider),
        }
    }

    /// A new revision mid-run: route everything to the primary and start over.
    fn restart_on_new_revision(&mut self, t: &TargetObs) -> Option<Flow> {
        if self.status.last_applied_spec.as_deref() == Some(t.fingerprint.as_str()) {
            return None;
        }
        self.actions.push(Action::SetRoutes(Routes {
            primary: 100,
            canary: 0,
            mirrored: false,
        }));
        Some(self.start_run("New revision detected! Restarting analysis for"))
    }

    /// The canary must be ready before any analysis tick; a canary that never becomes ready
    /// fails after the progress deadline instead of hanging in Progressing.
    fn await_canary(&mut self, t: &TargetObs) -> Option<Flow> {
        let msg = match &t.readiness {
            Readiness::Ready => return None,
            Readiness::Failed(msg) => {
                return Some(self.rollback(Rollback::CanaryFailed(msg.clone())));
            }
            Readiness::Waiting(msg) => msg.clone(),
        };
        self.promotion_pending(&msg);
        let started = self
            .status
            .run_start_time
            .as_ref()
            .map(from_time)
            .unwrap_or(self.now);
        let deadline = started
            + chrono::Duration::from_std(self.spec().progress_deadline()).unwrap_or_default();
        if self.now >= deadline {
            return Some(self.rollback(Rollback::CanaryNotReady {
                deadline: self.spec().progress_deadline(),
                detail: msg,
            }));
        }
        let wait = if t.is_workload() {
            Wait::CanaryPodsNotReady {
                pods: t.pods,
                detail: msg,
            }
        } else {
            Wait::CanaryRevisionNotReady(msg)
        };
        let left = (deadline - self.now).to_std().unwrap_or_default();
        Some(self.wait(wait, Requeue::After(left.min(short(self.o.interval)))))
    }

    /// A failed primary rolls the run back (unless the analysis is skipped).
    fn primary_failed(&mut self) -> Option<Flow> {
        if !self.spec().skips_analysis()
            && let Some(p) = &self.o.primary
            && let Readiness::Failed(msg) = &p.readiness
        {
            return Some(self.rollback(Rollback::PrimaryFailed(msg.clone())));
        }
        None
    }

    /// `skipAnalysis` promotes at once.
    fn skip_analysis(&mut self) -> Option<Flow> {
        self.spec()
            .skips_analysis()
            .then(|| self.skip_to_promotion())
    }

    /// Waits for the next tick (keeping the current wait), then for routes the router can read:
    /// traffic is never shifted blind.
    fn await_tick_and_routes(&mut self) -> Option<Flow> {
        if let Some(left) = self.tick_due() {
            self.wait = WaitMark::Keep;
            return Some(Ok(Requeue::After(left)));
        }
        let wait = match &self.o.routes {
            Some(Err(RouteProblem::NotAccepted(m))) => Wait::RouteNotAccepted(m.clone()),
            Some(Err(RouteProblem::NotReady(m))) => Wait::RoutesNotReady(m.clone()),
            _ => return None,
        };
        Some(self.wait(wait, Requeue::After(short(self.o.interval))))
    }

    /// Rollback webhooks, then the failed-checks threshold.
    fn rollback_checks(&mut self) -> Option<Flow> {
        if self.has_hooks(WebhookType::Rollback) {
            match self.checks.rollback {
                None => return Some(Err(CheckRequest::Rollback)),
                Some(true) => return Some(self.rollback(Rollback::Webhook)),
                Some(false) => {}
            }
        }
        let threshold = self.spec().threshold();
        if self.status.failed_checks >= threshold {
            return Some(self.rollback(Rollback::FailedChecks(self.status.failed_checks)));
        }
        None
    }

    /// One analysis tick: the pre-rollout hooks on the first, the rollout hooks and metrics on
    /// the others. `None` when the run may advance.
    fn analysis_tick(&mut self) -> Option<Flow> {
        self.status.last_analysis_time = Some(to_time(self.now));
        let first_tick = self.status.canary_weight == 0 && self.status.iterations == 0;
        if first_tick {
            return self.pre_rollout();
        }
        let report = match &self.checks.analysis {
            None => return Some(Err(CheckRequest::Analysis)),
            Some(Err(msg)) => {
                let msg = msg.clone();
                self.record_hooks();
                return Some(self.failed_check(&msg, Wait::WebhookFailed(msg.clone())));
            }
            Some(Ok(report)) => report.clone(),
        };
        if !report.records.is_empty() {
            self.status.checks = Some(report.records.clone());
        }
        match &report.verdict {
            Verdict::Pass => {
                self.status.hold_start_time = None;
                None
            }
            Verdict::Fail(msg) => Some(self.failed_tick(msg, &report.records)),
            Verdict::Hold(msg) => Some(self.hold(msg, &report.records)),
        }
    }

    /// The first tick: the pre-rollout hooks must pass before any traffic moves.
    fn pre_rollout(&mut self) -> Option<Flow> {
        match &self.checks.pre_rollout {
            None if self.has_hooks(WebhookType::PreRollout) => {
                return Some(Err(CheckRequest::PreRollout));
            }
            Some(Err(msg)) => {
                let msg = msg.clone();
                self.record_hooks();
                return Some(self.failed_check(&msg, Wait::WebhookFailed(msg.clone())));
            }
            _ => {}
        }
        self.event(
            EventType::Normal,
            format!("Starting canary analysis for {}", self.target_id()),
        );
        None
    }

    /// A failed tick counts one failed check, with one Warning event per failing check.
    fn failed_tick(&mut self, msg: &str, records: &[CheckRecord]) -> Flow {
        self.status.hold_start_time = None;
        let wait = metric_wait(records, msg);
        let events = failing_check_events(records, self.spec().inconclusive_policy());
        if events.is_empty() {
            return self.failed_check(msg, wait);
        }
        for e in events {
            self.event(EventType::Warning, e);
        }
        self.status.failed_checks += 1;
        self.wait(wait, self.interval())
    }

    /// Inconclusive analysis under the `hold` policy: neither fail nor advance, but never for
    /// longer than the progress deadline.
    pub(super) fn hold(&mut self, msg: &str, records: &[CheckRecord]) -> Flow {
        let since = self
            .status
            .hold_start_time
            .as_ref()
            .map(from_time)
            .unwrap_or(self.now);
        let limit = self.spec().progress_deadline();
        if (self.now - since).to_std().unwrap_or_default() >= limit {
            return self.rollback(Rollback::Inconclusive {
                deadline: limit,
                detail: msg.to_string(),
            });
        }
        self.status.hold_start_time = Some(to_time(since));
        self.event(
            EventType::Warning,
            format!("Holding {} advancement: {msg}", self.id()),
        );
        let wait = match metric_wait(records, msg) {
            Wait::MetricFailed(m) => Wait::AnalysisInconclusive(m),
            other => other,
        };
        self.wait(wait, self.interval())
    }

    /// Counts one failed check, with its Warning event, and waits for the next tick.
    pub(super) fn failed_check(&mut self, msg: &str, wait: Wait) -> Flow {
        self.status.failed_checks += 1;
        self.event(EventType::Warning, msg.to_string());
        self.wait(wait, self.interval())
    }

    pub(super) fn advance_weight(&mut self) -> Flow {
        let weight = self.status.canary_weight;
        let max = self.spec().max_weight();
        if weight < max && self.phase() == Some(CanaryPhase::Progressing) {
            if !self.gate(Gate::ConfirmTrafficIncrease)? {
                return Ok(self.interval());
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
            return Ok(self.interval());
        }
        self.confirm_and_promote()
    }

    pub(super) fn advance_iteration(&mut self, provider: Provider) -> Flow {
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
            return Ok(self.interval());
        }
        if !ab && provider != Provider::Kubernetes && i == n {
            // Blue/green: switch all traffic to the new version one tick before promotion.
            if !self.gate(Gate::ConfirmPromotion)? {
                return Ok(self.interval());
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
            return Ok(self.interval());
        }
        if !ab && provider != Provider::Kubernetes {
            // The traffic switch already passed the gate.
            return self.promote();
        }
        self.confirm_and_promote()
    }

    pub(super) fn confirm_and_promote(&mut self) -> Flow {
        if self.gate(Gate::ConfirmPromotion)? {
            self.promote()
        } else {
            Ok(self.interval())
        }
    }
}

/// The wait of a tick that did not pass: `MetricNoData` when a check found no data, else
/// `MetricFailed` naming the first failing check (or the verdict's words without records).
fn metric_wait(records: &[CheckRecord], verdict: &str) -> Wait {
    use crate::core::verdict::Outcome;
    let outcome = |o: Outcome| {
        records
            .iter()
            .find(|r| Outcome::parse(&r.outcome) == Some(o))
    };
    if let Some(r) = outcome(Outcome::Fail).or_else(|| outcome(Outcome::Error)) {
        let value = r
            .value
            .map_or_else(|| "none".to_string(), |v| v.to_string());
        return Wait::MetricFailed(format!("{} ({}, value {value})", r.name, r.outcome));
    }
    if let Some(r) = outcome(Outcome::NoData) {
        return Wait::MetricNoData(r.name.clone());
    }
    Wait::MetricFailed(verdict.to_string())
}

/// The Warning events of a failed analysis tick: one per check that counts as failed (a value
/// outside its range; no data or an error too under the `fail` policy), each carrying Flagger's
/// halt message followed by the decision record's facts.
fn failing_check_events(
    records: &[CheckRecord],
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
