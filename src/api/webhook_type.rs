//! Webhook types (`analysis.webhooks[].type`) and their wire strings; pure.
use std::str::FromStr;

/// The strings the schema accepts; the empty string means `rollout`.
pub const WEBHOOK_TYPE_NAMES: [&str; 9] = [
    "",
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-promotion",
    "post-rollout",
    "event",
    "rollback",
    "confirm-traffic-increase",
];

/// When a webhook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookType {
    /// Gates the start of a run.
    ConfirmRollout,
    /// Runs once before traffic shifts.
    PreRollout,
    /// Runs on every analysis tick.
    Rollout,
    /// Gates each weight increase.
    ConfirmTrafficIncrease,
    /// Gates promotion.
    ConfirmPromotion,
    /// Runs after success or failure.
    PostRollout,
    /// A success triggers a rollback.
    Rollback,
    /// Receives every event.
    Event,
}

/// An unknown webhook type.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown webhook type {0:?}; expected one of: confirm-rollout, pre-rollout, rollout, confirm-traffic-increase, confirm-promotion, post-rollout, rollback, event"
)]
pub struct UnknownWebhookType(pub String);

impl FromStr for WebhookType {
    type Err = UnknownWebhookType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "confirm-rollout" => Self::ConfirmRollout,
            "pre-rollout" => Self::PreRollout,
            "" | "rollout" => Self::Rollout,
            "confirm-traffic-increase" => Self::ConfirmTrafficIncrease,
            "confirm-promotion" => Self::ConfirmPromotion,
            "post-rollout" => Self::PostRollout,
            "rollback" => Self::Rollback,
            "event" => Self::Event,
            other => return Err(UnknownWebhookType(other.to_string())),
        })
    }
}

impl WebhookType {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfirmRollout => "confirm-rollout",
            Self::PreRollout => "pre-rollout",
            Self::Rollout => "rollout",
            Self::ConfirmTrafficIncrease => "confirm-traffic-increase",
            Self::ConfirmPromotion => "confirm-promotion",
            Self::PostRollout => "post-rollout",
            Self::Rollback => "rollback",
            Self::Event => "event",
        }
    }
}
