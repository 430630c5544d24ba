//! Webhook gates and hook bookkeeping shared by the phases; pure.

use super::*;

impl Machine<'_> {
    pub(super) fn has_hooks(&self, t: crate::api::webhook_type::WebhookType) -> bool {
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
    pub(super) fn gate_muted(&self, t: crate::api::webhook_type::WebhookType) -> bool {
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
