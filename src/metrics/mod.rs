//! Metric analysis behind [`MetricsChecker`]: builtin query templates, MetricTemplate rendering
//! and judging are pure; providers (one module each) and the [`analyzer`] do network I/O.
use async_trait::async_trait;

pub mod analyzer;
pub mod builtin;
pub mod datadog;
pub mod dynatrace;
pub mod evaluate;
pub mod graphite;
pub mod influxdb;
pub mod newrelic;
pub mod prometheus;
pub mod provider;

pub use crate::core::verdict::{AnalysisReport, Outcome, Verdict};
pub use analyzer::{Analyzer, KubeObjects, Objects};
pub use provider::{Provider, ProviderConfig, QueryContext};

use crate::api::Canary;

/// Runs a canary's metric checks for one analysis tick.
#[async_trait]
pub trait MetricsChecker: Send + Sync {
    /// Evaluates every metric of the canary.
    async fn check(&self, canary: &Canary) -> AnalysisReport;
}

/// The checker used until metric providers exist: a canary with no metrics passes; a canary with
/// metrics also passes, with a warning that they were not evaluated.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMetrics;

#[async_trait]
impl MetricsChecker for NoMetrics {
    async fn check(&self, canary: &Canary) -> AnalysisReport {
        let n = canary.spec.metrics().len();
        if n > 0 {
            tracing::warn!(
                canary = canary.metadata.name.as_deref().unwrap_or_default(),
                "{n} metric check(s) configured but no metrics provider is available; not evaluated"
            );
        }
        AnalysisReport::pass()
    }
}
