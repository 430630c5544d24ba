//! Webhooks (gates, hooks, rollback, events) behind [`Webhooks`]; [`HttpWebhooks`] does HTTP I/O
//! with Flagger's payloads and rules.
use async_trait::async_trait;

use crate::api::canary::{CanaryWebhook, CheckRecord};
use crate::api::webhook_type::WebhookType;
use crate::api::{Canary, CanaryPhase};

pub mod client;
pub mod payload;

pub use client::{Backoff, CallError};
pub use payload::Payload;

/// Webhook errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP client could not be built.
    #[error("cannot build the webhook HTTP client: {0}")]
    BuildClient(#[source] reqwest::Error),
}

/// A failed hook or closed gate: the message for the Event, and the decision record for
/// `status.checks` (URL redacted, status code, first 200 bytes of the body).
#[derive(Clone, Debug, PartialEq)]
pub struct HookFailure {
    /// Flagger's event text followed by the call's error.
    pub message: String,
    /// The decision record, when a call was made.
    pub record: Option<CheckRecord>,
}

impl std::fmt::Display for HookFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for HookFailure {
    fn from(message: String) -> Self {
        Self {
            message,
            record: None,
        }
    }
}

/// Calls a canary's webhooks of one type.
#[async_trait]
pub trait Webhooks: Send + Sync {
    /// Gates (`confirm-rollout`, `confirm-traffic-increase`, `confirm-promotion`): `Ok` when
    /// every gate of that type is open, else the first closed one.
    async fn gate(
        &self,
        canary: &Canary,
        kind: WebhookType,
        phase: Option<CanaryPhase>,
    ) -> Result<(), HookFailure>;
    /// Hooks (`pre-rollout`, `rollout`, `post-rollout`): the first failure.
    async fn run(
        &self,
        canary: &Canary,
        kind: WebhookType,
        phase: Option<CanaryPhase>,
    ) -> Result<(), HookFailure>;
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

/// Webhooks that do nothing: gates open (but those of the kind [`NoWebhooks::closed`] names),
/// hooks succeed, no rollback is requested.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoWebhooks {
    closed: Option<WebhookType>,
}

impl NoWebhooks {
    /// Webhooks that do nothing, whose gates of `kind` stay closed (tests of waiting).
    pub fn closed(kind: WebhookType) -> Self {
        Self { closed: Some(kind) }
    }
}

#[async_trait]
impl Webhooks for NoWebhooks {
    async fn gate(
        &self,
        _: &Canary,
        kind: WebhookType,
        _: Option<CanaryPhase>,
    ) -> Result<(), HookFailure> {
        if self.closed == Some(kind) {
            return Err(HookFailure {
                message: format!("{} gate closed", kind.as_str()),
                record: None,
            });
        }
        Ok(())
    }
    async fn run(
        &self,
        _: &Canary,
        _: WebhookType,
        _: Option<CanaryPhase>,
    ) -> Result<(), HookFailure> {
        Ok(())
    }
    async fn rollback_requested(&self, _: &Canary, _: Option<CanaryPhase>) -> bool {
        false
    }
    async fn event(&self, _: &Canary, _: Option<CanaryPhase>, _: bool, _: &str) {}
}

/// Webhooks over HTTP, as Flagger calls them.
#[derive(Clone, Debug)]
pub struct HttpWebhooks {
    verified: reqwest::Client,
    unverified: reqwest::Client,
    backoff: Backoff,
    event_webhook: Option<String>,
}

impl HttpWebhooks {
    /// Builds the clients; `event_webhook` receives every event of canaries without `event`
    /// hooks (Flagger's `-event-webhook`).
    pub fn new(event_webhook: Option<String>) -> Result<Self, Error> {
        crate::install_crypto_provider();
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .user_agent(concat!("serin/", env!("CARGO_PKG_VERSION")))
                .danger_accept_invalid_certs(insecure)
                .build()
                .map_err(Error::BuildClient)
        };
        Ok(Self {
            verified: build(false)?,
            unverified: build(true)?,
            backoff: Backoff::default(),
            event_webhook: event_webhook.filter(|u| !u.is_empty()),
        })
    }

    /// Replaces the retry backoff (tests use milliseconds).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    async fn call(&self, hook: &CanaryWebhook, body: &Payload) -> Result<u16, CallError> {
        let client = if hook.disable_tls.unwrap_or(false) {
            &self.unverified
        } else {
            &self.verified
        };
        let retries = hook.retries.unwrap_or(0).max(0) as u32;
        client::post_json(
            client,
            &hook.url,
            body,
            hook.timeout_or_default(),
            retries,
            self.backoff,
        )
        .await
    }

    /// Calls the hooks of `kind` in order and stops at the first failure.
    async fn call_all(
        &self,
        canary: &Canary,
        kind: WebhookType,
        phase: Option<CanaryPhase>,
        describe: impl Fn(&str, &CallError) -> String,
    ) -> Result<(), HookFailure> {
        for hook in canary.spec.webhooks_of(kind) {
            let body = payload::payload(canary, kind, phase, hook.metadata.as_ref());
            match self.call(hook, &body).await {
                Ok(status) => tracing::debug!(
                    canary = id(canary),
                    webhook = hook.name,
                    status,
                    "{} webhook passed",
                    kind.as_str()
                ),
                Err(e) => {
                    return Err(HookFailure {
                        message: describe(&hook.name, &e),
                        record: Some(record(hook, &e)),
                    });
                }
            }
        }
        Ok(())
    }
}

fn id(canary: &Canary) -> String {
    format!(
        "{}.{}",
        canary.metadata.name.as_deref().unwrap_or_default(),
        canary.metadata.namespace.as_deref().unwrap_or_default()
    )
}

/// The decision record of a failed call.
pub fn record(hook: &CanaryWebhook, e: &CallError) -> CheckRecord {
    CheckRecord {
        name: hook.name.clone(),
        kind: "webhook".into(),
        query: Some(client::redact(&hook.url)),
        value: e.status().map(f64::from),
        min: None,
        max: None,
        outcome: if e.status().is_some() {
            "Fail"
        } else {
            "Error"
        }
        .into(),
        message: Some(e.to_string()),
        time: Some(crate::api::time::to_time(chrono::Utc::now())),
        ..Default::default()
    }
}

#[async_trait]
impl Webhooks for HttpWebhooks {
    async fn gate(
        &self,
        canary: &Canary,
        kind: WebhookType,
        phase: Option<CanaryPhase>,
    ) -> Result<(), HookFailure> {
        let what = match kind {
            WebhookType::ConfirmPromotion => "waiting for promotion approval",
            WebhookType::ConfirmTrafficIncrease => "waiting for traffic increase approval",
            _ => "waiting for approval",
        };
        let cid = id(canary);
        self.call_all(canary, kind, phase, |name, e| {
            format!("Halt {cid} advancement {what} {name}: {e}")
        })
        .await
    }

    async fn run(
        &self,
        canary: &Canary,
        kind: WebhookType,
        phase: Option<CanaryPhase>,
    ) -> Result<(), HookFailure> {
        let cid = id(canary);
        self.call_all(canary, kind, phase, |name, e| match kind {
            WebhookType::PreRollout => {
                format!("Halt {cid} advancement pre-rollout check {name} failed {e}")
            }
            WebhookType::PostRollout => format!("Post-rollout hook {name} failed {e}"),
            _ => format!("Halt {cid} advancement external check {name} failed {e}"),
        })
        .await
    }

    async fn rollback_requested(&self, canary: &Canary, phase: Option<CanaryPhase>) -> bool {
        for hook in canary.spec.webhooks_of(WebhookType::Rollback) {
            let body =
                payload::payload(canary, WebhookType::Rollback, phase, hook.metadata.as_ref());
            match self.call(hook, &body).await {
                Ok(_) => {
                    tracing::info!(
                        canary = id(canary),
                        webhook = hook.name,
                        "rollback requested"
                    );
                    return true;
                }
                Err(e) => tracing::debug!(
                    canary = id(canary),
                    webhook = hook.name,
                    "rollback hook not signalling a rollback: {e}"
                ),
            }
        }
        false
    }

    async fn event(
        &self,
        canary: &Canary,
        phase: Option<CanaryPhase>,
        warning: bool,
        message: &str,
    ) {
        let now = chrono::Utc::now().timestamp_millis();
        let hooks = canary.spec.webhooks_of(WebhookType::Event);
        let global;
        let targets: Vec<&CanaryWebhook> = if !hooks.is_empty() {
            hooks
        } else if let Some(url) = &self.event_webhook {
            global = CanaryWebhook {
                name: "event-webhook".into(),
                url: url.clone(),
                ..Default::default()
            };
            vec![&global]
        } else {
            return;
        };
        for hook in targets {
            let body = payload::event_payload(
                canary,
                phase,
                warning,
                message,
                now,
                hook.metadata.as_ref(),
            );
            if let Err(e) = self.call(hook, &body).await {
                tracing::warn!(
                    canary = id(canary),
                    webhook = hook.name,
                    "event webhook failed: {e}"
                );
            }
        }
    }
}
