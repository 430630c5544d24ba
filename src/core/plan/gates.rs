//! Webhook gates and hook bookkeeping shared by the phases; pure.

use super::*;
use crate::api::webhook_type::WebhookType;

/// A manual gate: webhooks that must answer 200 before the run goes on.
// The variants are Flagger's webhook type names (`confirm-rollout`, ...), prefix included.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Gate {
    /// `confirm-rollout`: before a run starts.
    ConfirmRollout,
    /// `confirm-traffic-increase`: before each weight step.
    ConfirmTrafficIncrease,
    /// `confirm-promotion`: before promotion (and before blue/green's full switch).
    ConfirmPromotion,
}

impl Gate {
    fn webhook_type(self) -> WebhookType {
        match self {
            Self::ConfirmRollout => WebhookType::ConfirmRollout,
            Self::ConfirmTrafficIncrease => WebhookType::ConfirmTrafficIncrease,
            Self::ConfirmPromotion => WebhookType::ConfirmPromotion,
        }
    }

    fn request(self) -> CheckRequest {
        match self {
            Self::ConfirmRollout => CheckRequest::ConfirmRollout,
            Self::ConfirmTrafficIncrease => CheckRequest::ConfirmTrafficIncrease,
            Self::ConfirmPromotion => CheckRequest::ConfirmPromotion,
        }
    }

    fn answer(self, checks: &Checks) -> Option<bool> {
        match self {
            Self::ConfirmRollout => checks.confirm_rollout,
            Self::ConfirmTrafficIncrease => checks.confirm_traffic_increase,
            Self::ConfirmPromotion => checks.confirm_promotion,
        }
    }

    /// The phase a closed gate parks the canary in; the gate announces itself (event, alert)
    /// only when the canary enters it. The traffic-increase gate has none and announces every
    /// tick, as Flagger does.
    fn waiting_phase(self) -> Option<CanaryPhase> {
        match self {
            Self::ConfirmRollout => Some(CanaryPhase::Waiting),
            Self::ConfirmTrafficIncrease => None,
            Self::ConfirmPromotion => Some(CanaryPhase::WaitingPromotion),
        }
    }

    /// The alert of a closed gate, unless the gate that said no is muted.
    fn alert(self) -> Option<&'static str> {
        match self {
            Self::ConfirmRollout => Some("Canary is waiting for approval."),
            Self::ConfirmTrafficIncrease => None,
            Self::ConfirmPromotion => Some("Canary promotion is waiting for approval."),
        }
    }
}

impl Machine<'_> {
    /// Asks a gate: `Ok(true)` when it is open or has no webhooks, `Ok(false)` when it is closed
    /// (after the event, alert and phase of a closed gate), `Err` to ask the webhooks first.
    pub(super) fn gate(&mut self, gate: Gate) -> Result<bool, CheckRequest> {
        let hooks = gate.webhook_type();
        if !self.has_hooks(hooks) {
            return Ok(true);
        }
        match gate.answer(self.checks) {
            None => Err(gate.request()),
            Some(true) => Ok(true),
            Some(false) => {
                let entering = gate.waiting_phase().is_none_or(|p| self.phase() != Some(p));
                if entering {
                    self.event(
                        EventType::Normal,
                        format!(
                            "Waiting for approval: {} gate is closed for {}",
                            hooks.as_str(),
                            self.id()
                        ),
                    );
                    if let Some(alert) = gate.alert()
                        && !self.gate_muted(hooks)
                    {
                        self.actions
                            .push(Action::Alert(AlertSeverity::Warn, alert.into()));
                    }
                    if let Some(phase) = gate.waiting_phase() {
                        // Unlike Flagger, the status weight keeps reading the traffic actually
                        // routed.
                        let weight = self.status.canary_weight;
                        self.set_phase(phase, None);
                        self.status.canary_weight = weight;
                    }
                }
                if entering {
                    self.wait_announced(Wait::GateClosed(hooks));
                } else {
                    self.wait = super::wait::WaitMark::Set(Wait::GateClosed(hooks));
                }
                self.record_hooks();
                Ok(false)
            }
        }
    }

    pub(super) fn has_hooks(&self, t: WebhookType) -> bool {
        !self.spec().webhooks_of(t).is_empty()
    }

    /// Writes the failed hooks' decision records (URL, status, body) into the status.
    pub(super) fn record_hooks(&mut self) {
        if !self.checks.hook_records.is_empty() {
            self.status.checks = Some(self.checks.hook_records.clone());
        }
    }

    /// A closed gate alerts unless the gate that said no has `muteAlert` (as in Flagger). Which
    /// gate said no is known from its decision record; without one, only when all are muted.
    pub(super) fn gate_muted(&self, t: WebhookType) -> bool {
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
}
