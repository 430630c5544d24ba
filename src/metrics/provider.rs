//! The seam between the analyzer and one metrics backend: a provider runs one rendered query and returns a reading; implementations do network I/O.
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

/// Why the factory could not build a provider.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A type that is neither Flagger's nor empty.
    #[error(
        "unknown metric provider type {0:?}; expected one of prometheus, datadog, newrelic, graphite, influxdb, dynatrace, cloudwatch, stackdriver, splunk, keptn, externalmetrics"
    )]
    UnknownType(String),
    /// The provider needs the Kubernetes API and none was given.
    #[error("metric provider type {0:?} needs the Kubernetes API, which is not available here")]
    NeedsKubernetes(String),
    /// Prometheus settings or credentials are unusable.
    #[error(transparent)]
    Prometheus(#[from] super::prometheus::Error),
    /// Datadog settings or credentials are unusable.
    #[error(transparent)]
    Datadog(#[from] super::datadog::Error),
    /// New Relic settings or credentials are unusable.
    #[error(transparent)]
    NewRelic(#[from] super::newrelic::Error),
    /// Graphite settings or credentials are unusable.
    #[error(transparent)]
    Graphite(#[from] super::graphite::Error),
    /// InfluxDB settings or credentials are unusable.
    #[error(transparent)]
    InfluxDb(#[from] super::influxdb::Error),
    /// Dynatrace settings or credentials are unusable.
    #[error(transparent)]
    Dynatrace(#[from] super::dynatrace::Error),
    /// CloudWatch settings or credentials are unusable.
    #[error(transparent)]
    CloudWatch(#[from] super::cloudwatch::Error),
    /// Stackdriver settings or credentials are unusable.
    #[error(transparent)]
    Stackdriver(#[from] super::stackdriver::Error),
    /// Splunk settings or credentials are unusable.
    #[error(transparent)]
    Splunk(#[from] super::splunk::Error),
    /// Keptn settings are unusable.
    #[error(transparent)]
    Keptn(#[from] super::keptn::Error),
    /// External metrics settings are unusable.
    #[error(transparent)]
    ExternalMetrics(#[from] super::externalmetrics::Error),
}

impl Error {
    /// A short label for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::UnknownType(_) => "UnknownProvider",
            Self::NeedsKubernetes(_) => "NeedsKubernetes",
            _ => "ProviderConfig",
        }
    }
}

/// The provider types this build implements (the empty type is Prometheus, as in Flagger).
pub const IMPLEMENTED: [&str; 11] = [
    "prometheus",
    "datadog",
    "newrelic",
    "graphite",
    "influxdb",
    "dynatrace",
    "cloudwatch",
    "stackdriver",
    "splunk",
    "keptn",
    "externalmetrics",
];

/// Builds the provider named by `config.spec.type_`.
///
/// `kube` is the hook for providers that read the Kubernetes API (keptn, externalmetrics): the
/// analyzer passes its client when it has one. Flagger falls back to Prometheus for an empty type;
/// any other type outside its list is rejected rather than sent to Prometheus.
pub fn build(
    config: &ProviderConfig,
    kube: Option<&kube::Client>,
) -> Result<Box<dyn Provider>, Error> {
    let t = config.spec.type_.as_str();
    Ok(match t {
        "" | "prometheus" => Box::new(super::prometheus::PrometheusProvider::new(config)?),
        "datadog" => Box::new(super::datadog::Datadog::new(config)?),
        "newrelic" => Box::new(super::newrelic::NewRelic::new(config)?),
        "graphite" => Box::new(super::graphite::Graphite::new(config)?),
        "influxdb" => Box::new(super::influxdb::InfluxDb::new(config)?),
        "dynatrace" => Box::new(super::dynatrace::Dynatrace::new(config)?),
        "cloudwatch" => Box::new(super::cloudwatch::CloudWatch::new(config)?),
        "stackdriver" => Box::new(super::stackdriver::Stackdriver::new(config)?),
        "splunk" => Box::new(super::splunk::Splunk::new(config)?),
        // Providers that read the Kubernetes API get the controller's client.
        "keptn" => match kube {
            Some(client) => Box::new(super::keptn::Keptn::new(config, client.clone())?),
            None => return Err(Error::NeedsKubernetes(t.to_string())),
        },
        "externalmetrics" => match kube {
            Some(client) => Box::new(super::externalmetrics::ExternalMetrics::new(
                config,
                client.clone(),
            )?),
            None => return Err(Error::NeedsKubernetes(t.to_string())),
        },
        _ => return Err(Error::UnknownType(t.to_string())),
    })
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
    use crate::api::metric_template::MetricProvider;

    fn config(type_: &str, address: Option<&str>) -> ProviderConfig {
        ProviderConfig {
            spec: MetricProvider {
                type_: type_.into(),
                address: address.map(str::to_string),
                ..Default::default()
            },
            secret: None,
        }
    }

    #[test]
    fn the_factory_picks_prometheus_for_an_empty_type_and_rejects_unknown_ones() {
        assert!(build(&config("", Some("http://prom:9090")), None).is_ok());
        assert!(build(&config("prometheus", Some("http://prom:9090")), None).is_ok());
        let err = build(&config("promethues", Some("http://x")), None).err();
        assert!(
            matches!(&err, Some(Error::UnknownType(t)) if t == "promethues"),
            "{err:?}"
        );
        // Every type of Flagger's list is implemented: a CloudWatch template without a region
        // fails as CloudWatch, not as "unsupported".
        assert!(matches!(
            build(&config("cloudwatch", None), None).err(),
            Some(Error::CloudWatch(_))
        ));
        assert!(matches!(
            build(&config("keptn", None), None).err(),
            Some(Error::NeedsKubernetes(_))
        ));
    }

    #[test]
    fn construction_errors_name_the_missing_secret_key() {
        let err = build(&config("datadog", None), None).err();
        assert!(
            err.as_ref()
                .is_some_and(|e| e.to_string().contains("datadog_api_key")),
            "{err:?}"
        );
    }

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
