//! Webhooks (gates, hooks, rollback, events) behind [`Webhooks`]; implementations do HTTP I/O.
use async_trait::async_trait;

use crate::api::webhook_type::WebhookType;
use crate::api::{Canary, CanaryPhase};

/// Calls a canary's webhooks of one type.
#[async_trait]
pub trait Webhooks: Send + Sync {
    /// Gates (`confirm-rollout`, `confirm-traffic-increase`, `confirm-promotion`): true when
    /// every gate of that type is open.
    async fn gate(&self, canary: &Canary, kind: WebhookType, phase: Option<CanaryPhase>) -> bool;
    /// Hooks (`pre-rollout`, `rollout`, `post-rollout`): the first failure's message.
    async fn run(
        &self,
        canary: &Canary,
        kind: WebhookType,
        phase: Option<CanaryPhase>,
    ) -> Result<(), String>;
    /// `rollback` hooks: true when any of them asks for a rollback.
    async fn rollback_requested(&self, canary: &Canary, phase: Option<CanaryPhase>) -> bool;
    /// `event` hooks (and the global event webhook): called for every Kubernetes event recorded.
    async fn event(
        &self,
        canary: &Canary,
        phase: Option<CanaryPhase>,
        warning: bool,
        message: &str,
    );
}

/// Webhooks that do nothing: gates open, hooks succeed, no rollback is requested.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoWebhooks;

#[async_trait]
impl Webhooks for NoWebhooks {
    async fn gate(&self, _: &Canary, _: WebhookType, _: Option<CanaryPhase>) -> bool {
        true
    }
    async fn run(&self, _: &Canary, _: WebhookType, _: Option<CanaryPhase>) -> Result<(), String> {
        Ok(())
    }
    async fn rollback_requested(&self, _: &Canary, _: Option<CanaryPhase>) -> bool {
        false
    }
    async fn event(&self, _: &Canary, _: Option<CanaryPhase>, _: bool, _: &str) {}
}
