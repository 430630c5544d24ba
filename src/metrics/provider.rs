//! The seam between the analyzer and one metrics backend: a provider runs one rendered query and returns a reading; implementations do network I/O.
use super::evaluate::Reading;
use crate::api::metric_template::MetricProvider as ProviderSpec;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::Duration;

/// What one query needs besides its text.
#[derive(Clone, Debug)]
pub struct QueryContext {
    /// The metric's `interval` (Flagger's default 1m); providers derive their window from it.
    pub interval: Duration,
    /// When the query is evaluated (the end of its window).
    pub now: DateTime<Utc>,
}

/// One MetricTemplate's provider settings and credentials.
#[derive(Clone, Debug, Default)]
pub struct ProviderConfig {
    /// `spec.provider`: type, address, headers, secretRef, region, insecureSkipVerify.
    pub spec: ProviderSpec,
    /// The data of `spec.provider.secretRef`, read by the analyzer from the template's namespace (None without a secretRef).
    pub secret: Option<BTreeMap<String, Vec<u8>>>,
}

/// Runs queries against one metrics backend.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Runs one rendered query: `Reading::Value` for a number, `Reading::Empty` for no data, `Reading::Failed(message)` for an HTTP error, a timeout or an unparsable body (the message names the provider, the status and the first 200 bytes of the body, secrets redacted: see `crate::core::text::{redact, body_prefix}`).
    async fn query(&self, query: &str, ctx: &QueryContext) -> Reading;
}
