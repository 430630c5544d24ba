//! Metric analysis behind [`MetricsChecker`]; providers (one module each) do network I/O.
use async_trait::async_trait;

use crate::api::Canary;

/// Runs a canary's metric checks for one analysis tick.
#[async_trait]
pub trait MetricsChecker: Send + Sync {
    /// `Ok(())` when every check passes, else the first failure's message (Flagger's "Halt …").
    async fn check(&self, canary: &Canary) -> Result<(), String>;
}

/// The checker used until metric providers exist: a canary with no metrics passes; a canary with
/// metrics also passes, with a warning that they were not evaluated.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMetrics;

#[async_trait]
impl MetricsChecker for NoMetrics {
    async fn check(&self, canary: &Canary) -> Result<(), String> {
        let n = canary.spec.metrics().len();
        if n > 0 {
            tracing::warn!(
                canary = canary.metadata.name.as_deref().unwrap_or_default(),
                "{n} metric check(s) configured but no metrics provider is available; not evaluated"
            );
        }
        Ok(())
    }
}
