//! The seam between the analyzer and one metrics backend: a provider runs one rendered query and
//! returns a reading; implementations do network I/O. The factory that names every provider is
//! [`super::registry`], so no provider module imports back into it.
use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::evaluate::Reading;
use super::rest::Http;
use crate::api::metric_template::MetricProvider as ProviderSpec;

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

impl ProviderConfig {
    /// `spec.provider.address` when it is set and not empty.
    pub fn address(&self) -> Option<&str> {
        self.spec.address.as_deref().filter(|a| !a.is_empty())
    }

    /// `spec.provider.address` as a URL with a host.
    pub fn address_url(&self) -> Result<url::Url, Settings> {
        let raw = self.spec.address.clone().unwrap_or_default();
        url::Url::parse(&raw)
            .ok()
            .filter(|u| u.has_host())
            .ok_or(Settings::BadAddress(raw))
    }

    /// A Secret key the provider cannot work without (see [`secret_text`]).
    pub fn required_key(&self, key: &'static str) -> Result<String, Settings> {
        secret_text(self.secret.as_ref(), key).ok_or(Settings::MissingKey(key))
    }

    /// The provider's HTTP client, with Flagger's timeout and `insecureSkipVerify` honoured.
    pub fn http(&self) -> Result<Http, Settings> {
        Http::new(self.spec.insecure_skip_verify.unwrap_or(false)).map_err(Settings::BuildClient)
    }
}

/// Looks up an environment variable: the process's, or one a test sets.
pub trait Env: Fn(&str) -> Option<String> {}

impl<F: Fn(&str) -> Option<String>> Env for F {}

/// `http` with another timeout: what each vendor provider's `with_timeout` (tests) swaps in.
pub fn retimed(http: Http, timeout: Duration) -> Result<Http, Settings> {
    http.with_timeout(timeout).map_err(Settings::BuildClient)
}

/// What every HTTP vendor provider can find wrong in its settings; each provider's `Error` wraps
/// it under the provider's name.
#[derive(Debug, thiserror::Error)]
pub enum Settings {
    /// A required Secret key is missing (or there is no Secret at all).
    #[error("the secretRef Secret must contain the key {0:?}")]
    MissingKey(&'static str),
    /// `address` is empty or not a URL.
    #[error("address {0:?} is not a valid URL")]
    BadAddress(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    BuildClient(#[source] reqwest::Error),
}

/// Runs queries against one metrics backend.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Runs one rendered query: `Reading::Value` for a number, `Reading::Empty` for no data, `Reading::Failed(message)` for an HTTP error, a timeout or an unparsable body (the message names the provider, the status and the first 200 bytes of the body, secrets redacted: see `crate::core::text::{redact, body_prefix}`).
    async fn query(&self, query: &str, ctx: &QueryContext) -> Reading;
}

/// Whether a provider type gets its rendered query with whitespace collapsed, as Flagger does
/// for Prometheus and Graphite only (Flux and NRQL keep their line breaks, e.g. for comments).
pub fn collapses_whitespace(type_: &str) -> bool {
    matches!(type_, "" | "prometheus" | "graphite")
}

/// A Secret value as text, without the trailing newline `kubectl create secret --from-file`
/// leaves; `None` when the key is absent. As in Flagger, a key that is present counts even when
/// its value is empty (Flagger's providers test `credentials[key]` with `ok`, never the value):
/// the vendor then refuses the call, and that answer names the problem.
pub fn secret_text(secret: Option<&BTreeMap<String, Vec<u8>>>, key: &str) -> Option<String> {
    secret.and_then(|s| s.get(key)).map(|v| {
        String::from_utf8_lossy(v)
            .trim_end_matches(['\n', '\r'])
            .to_string()
    })
}

/// A window of `factor` metric intervals, in whole seconds (Flagger truncates the same way).
pub fn window_secs(interval: Duration, factor: u32) -> i64 {
    i64::try_from((interval * factor).as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_collapsed_only_where_flagger_collapses_it() {
        assert!(collapses_whitespace("prometheus"));
        assert!(collapses_whitespace("graphite"));
        assert!(!collapses_whitespace("influxdb"));
        assert!(!collapses_whitespace("datadog"));
    }

    #[test]
    fn secret_text_drops_a_trailing_newline() {
        let s = BTreeMap::from([("k".to_string(), b"v\n".to_vec())]);
        assert_eq!(secret_text(Some(&s), "k").as_deref(), Some("v"));
        assert_eq!(secret_text(Some(&s), "x"), None);
        assert_eq!(secret_text(None, "k"), None);
        let empty = BTreeMap::from([("k".to_string(), Vec::new())]);
        assert_eq!(secret_text(Some(&empty), "k").as_deref(), Some(""));
    }

    #[test]
    fn windows_are_whole_seconds_of_intervals() {
        assert_eq!(window_secs(Duration::from_secs(60), 10), 600);
        assert_eq!(window_secs(Duration::from_millis(1500), 10), 15);
    }
}
