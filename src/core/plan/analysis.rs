//! Progressing and WaitingPromotion: readiness, rollback hooks, the failed-checks threshold,
//! one analysis tick, and advancing the weight or the iteration; pure.

use super::gates::Gate;
use super::promotion::Rollback;
use super::*;

impl Machine<'_> {
    pub(super) fn progressing(&mut self) -> Flow {
        self.adopt_flagger_run();
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
        if let Some(flow) = self.manual_control() {
            return flow;
        }
        // The canary must be ready before any analysis tick; a canary that never becomes ready
        // fails after the progress deadline instead of hanging in Progressing.
        match &t.readiness {
            Readiness::Ready => {}
            Readiness::Failed(msg) => {
                return self.rollback(Rollback::CanaryFailed(msg.clone()));
            }
            Readiness::Waiting(msg) => {
                self.promotion_pending(msg);
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
                    return self.rollback(Rollback::CanaryNotReady {
                        deadline: self.spec().progress_deadline(),
                        detail: msg.clone(),
                    });
                }
                let wait = (deadline - self.now).to_std().unwrap_or_default();
                return Ok(Requeue::After(wait.min(short(self.o.interval))));
            }
        }
        if !self.spec().skips_analysis()
            && let Some(p) = &self.o.primary
            && let Readiness::Failed(msg) = &p.readiness
        {
            return self.rollback(Rollback::PrimaryFailed(msg.clone()));
        }
        if let Some(flow) = self.manual_promotion() {
            return flow;
        }
        if self.spec().skips_analysis() {
            return self.skip_to_promotion();
        }
        if let Some(wait) = self.tick_due() {
            return Ok(Requeue::After(wait));
        }
        if let Some(Err(msg)) = &self.o.routes {
            // Never shift traffic blind: wait until the router can report the split.
            tracing::debug!("routes not ready: {msg}");
            return Ok(Requeue::After(short(self.o.interval)));
        }
        if self.has_hooks(crate::api::webhook_type::WebhookType::Rollback) {
            match self.checks.rollback {
                None => return Err(CheckRequest::Rollback),
                Some(true) => return self.rollback(Rollback::Webhook),
                Some(false) => {}
            }
        }
        let threshold = self.spec().threshold();
        if self.status.failed_checks >= threshold {
            return self.rollback(Rollback::FailedChecks(self.status.failed_checks));
        }

        self.status.last_analysis_time = Some(to_time(self.now));
        let first_tick = self.status.canary_weight == 0 && self.status.iterations == 0;
        if first_tick {
            match &self.checks.pre_rollout {
                None if self.has_hooks(crate::api::webhook_type::WebhookType::PreRollout) => {
                    return Err(CheckRequest::PreRollout);
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
                None => return Err(CheckRequest::Analysis),
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
                            return Ok(self.interval());
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
    pub(super) fn hold(&mut self, msg: &str) -> Flow {
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
        Ok(self.interval())
    }

    pub(super) fn failed_check(&mut self, msg: &str) -> Flow {
        self.status.failed_checks += 1;
        self.event(EventType::Warning, msg.to_string());
        Ok(self.interval())
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
