//! Metric analysis behind [`MetricsChecker`]: builtin query templates, MetricTemplate rendering
//! and judging are pure; providers (one module each) and the [`analyzer`] do network I/O.
use async_trait::async_trait;

pub mod analyzer;
pub mod builtin;
pub mod cloudwatch;
pub mod evaluate;
pub mod externalmetrics;
pub mod keptn;
pub mod prometheus;
pub mod provider;
pub mod rest;
pub mod splunk;
pub mod stackdriver;

pub use crate::core::verdict::{AnalysisReport, Outcome, Verdict};
pub use analyzer::{Analyzer, KubeObjects, Objects};

use crate::api::Canary;

/// Runs a canary's metric checks for one analysis tick.
#[async_trait]
pub trait MetricsChecker: Send + Sync {
    /// Evaluates every metric of the canary.
    async fn check(&self, canary: &Canary) -> AnalysisReport;
}
