//! The provider registry: the types this build implements and the factory that builds one from a
//! MetricTemplate's settings. It imports every provider module; none imports it back.
use super::provider::{Provider, ProviderConfig};

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
}
