//! Alerts to chat and webhook destinations behind [`Notifier`]; implementations do HTTP I/O.
use async_trait::async_trait;

use crate::api::Canary;
use crate::controller::plan::AlertSeverity;

/// Sends a canary's alerts to its AlertProviders (or the global notifier).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers one alert; failures are logged and counted by the implementation, never returned:
    /// a notification must not block the analysis.
    async fn alert(&self, canary: &Canary, severity: AlertSeverity, message: &str);
}

/// A notifier that only logs.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn alert(&self, canary: &Canary, severity: AlertSeverity, message: &str) {
        tracing::info!(
            canary = canary.metadata.name.as_deref().unwrap_or_default(),
            ?severity,
            "alert: {message}"
        );
    }
}
