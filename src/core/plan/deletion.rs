//! Deletion: revert the target and the router when `revertOnDeletion` asks, then drop the
//! finalizer; pure.

use super::*;

impl Machine<'_> {
    /// With `revertOnDeletion`: bring the target back, wait until it is ready, point the apex
    /// Service at it, then let go. The apex never selects zero ready pods.
    pub(super) fn finalize(&mut self) -> Flow {
        if !self.o.has_finalizer {
            return Ok(Requeue::AwaitChange);
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
            return Ok(Requeue::AwaitChange);
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
            return Ok(Requeue::AwaitChange);
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
            self.resume_target_scaler();
            return Ok(Requeue::After(short(self.o.interval)));
        }
        if t.readiness != Readiness::Ready {
            return Ok(Requeue::After(short(self.o.interval)));
        }
        if self.o.target_ready_pods == Some(0) {
            // A workload's status can lag the Pods it counts: right after a scale to zero and
            // back, it may still report the deleted Pods as ready. The Pods decide.
            return Ok(Requeue::After(short(self.o.interval)));
        }
        self.actions.push(Action::RestoreApexService);
        self.actions.push(Action::FinalizeRouter);
        self.actions.push(Action::RemoveFinalizer);
        self.event(
            EventType::Normal,
            format!("Terminated canary {}", self.id()),
        );
        Ok(Requeue::AwaitChange)
    }
}
