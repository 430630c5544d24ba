//! Metric analysis behind [`MetricsChecker`]: builtin query templates, MetricTemplate rendering
//! and judging are pure; providers (one module each) and the [`analyzer`] do network I/O.
use async_trait::async_trait;

pub mod analyzer;
pub mod baseline;
pub mod builtin;
pub mod cloudwatch;
pub mod datadog;
pub mod dynatrace;
pub mod evaluate;
pub mod externalmetrics;
pub mod graphite;
pub mod influxdb;
pub mod keptn;
pub mod newrelic;
pub mod prometheus;
pub mod provider;
pub mod registry;
pub mod rest;
pub mod splunk;
pub mod stackdriver;

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
