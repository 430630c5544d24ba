//! The Prometheus metrics provider: runs instant queries through `prometheus-http-query`; network
//! I/O.
//!
//! Like Flagger's, it sends `GET <address>/api/v1/query?query=…` with a 5 s timeout, optional
//! basic or bearer credentials and extra headers. Unlike Flagger, a result must be exactly one
//! scalar or a one-element vector: several series are an error that says how many, because
//! picking one of them would judge the canary on an arbitrary series.
use base64::Engine;
use http::{HeaderName, HeaderValue};
use prometheus_http_query::response::Data;
use std::collections::BTreeMap;
use std::time::Duration;

use super::evaluate::Reading;
use super::provider::{Provider, ProviderConfig, QueryContext};

/// Flagger's query timeout.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Provider errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP client could not be built.
    #[error("cannot build the Prometheus HTTP client: {0}")]
    BuildClient(#[source] reqwest::Error),
    /// The query could not be run or its result is unusable; the message names the cause.
    #[error("{0}")]
    QueryMetric(String),
    /// A MetricTemplate without an address and no default server to fall back to.
    #[error("prometheus: the MetricTemplate has no address")]
    MissingAddress,
    /// The Secret of `secretRef` does not hold usable credentials.
    #[error("prometheus: {0}")]
    Credentials(String),
}

impl Error {
    /// A short label for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::BuildClient(_) => "BuildClient",
            Self::QueryMetric(_) => "QueryMetric",
            Self::MissingAddress => "MissingAddress",
            Self::Credentials(_) => "Credentials",
        }
    }
}

/// Credentials from a Secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// Basic auth.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

impl std::fmt::Debug for Auth {
    // Credentials never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
        }
    }
}

impl Auth {
    /// Reads Flagger's keys: `token`, else `username` and `password` (both required).
    pub fn from_secret(data: &BTreeMap<String, Vec<u8>>) -> Result<Self, String> {
        let text = |k: &str| {
            data.get(k)
                .map(|v| {
                    String::from_utf8_lossy(v)
                        .trim_end_matches('\n')
                        .to_string()
                })
                .filter(|v| !v.is_empty())
        };
        if let Some(token) = text("token") {
            return Ok(Self::Bearer(token));
        }
        match (text("username"), text("password")) {
            (Some(username), Some(password)) => Ok(Self::Basic { username, password }),
            _ => Err("the secret must contain `token`, or both `username` and `password`".into()),
        }
    }

    fn header(&self) -> String {
        match self {
            Self::Bearer(t) => format!("Bearer {t}"),
            Self::Basic { username, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
        }
    }
}

/// Where and how to send a query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// Base address, e.g. `http://prometheus:9090`.
    pub address: String,
    /// Credentials, if any.
    pub auth: Option<Auth>,
    /// Extra headers (MetricTemplate `provider.headers`).
    pub headers: BTreeMap<String, Vec<String>>,
    /// Skip TLS certificate verification.
    pub insecure_skip_verify: bool,
}

impl Endpoint {
    /// An endpoint with no credentials.
    pub fn plain(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            ..Default::default()
        }
    }
}

/// Runs instant queries; holds one verifying and one non-verifying HTTP client.
#[derive(Clone, Debug)]
pub struct Prometheus {
    verifying: reqwest::Client,
    insecure: reqwest::Client,
}

impl Prometheus {
    /// Builds the HTTP clients (5 s timeout).
    pub fn new() -> Result<Self, Error> {
        crate::install_crypto_provider();
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .timeout(QUERY_TIMEOUT)
                .tls_danger_accept_invalid_certs(insecure)
                .build()
                .map_err(Error::BuildClient)
        };
        Ok(Self {
            verifying: build(false)?,
            insecure: build(true)?,
        })
    }

    /// Runs `query` and reads one number from the result.
    pub async fn query(&self, endpoint: &Endpoint, query: &str) -> Reading {
        match self.run(endpoint, query).await {
            Ok(data) => read(&data),
            Err(e) => Reading::Failed(e.to_string()),
        }
    }

    async fn run(&self, endpoint: &Endpoint, query: &str) -> Result<Data, Error> {
        let http = if endpoint.insecure_skip_verify {
            &self.insecure
        } else {
            &self.verifying
        };
        let client =
            prometheus_http_query::Client::from(http.clone(), &endpoint.address).map_err(|e| {
                Error::QueryMetric(format!(
                    "invalid address {:?}: {}",
                    endpoint.address,
                    crate::core::text::error_chain(&e)
                ))
            })?;
        let mut q = client.query(query);
        if let Some(auth) = &endpoint.auth {
            let v = HeaderValue::from_str(&auth.header())
                .map_err(|_| Error::QueryMetric("credentials are not a valid header".into()))?;
            q = q.header(http::header::AUTHORIZATION, v);
        }
        for (name, values) in &endpoint.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::QueryMetric(format!("invalid header name {name:?}")))?;
            for v in values {
                let v = HeaderValue::from_str(v)
                    .map_err(|_| Error::QueryMetric(format!("invalid value for header {name}")))?;
                q = q.header(name.clone(), v);
            }
        }
        let result = q
            .get()
            .await
            .map_err(|e| Error::QueryMetric(crate::core::text::error_chain(&e)))?;
        Ok(result.data().clone())
    }

    /// Flagger's availability probe: `vector(1)` must return 1.
    pub async fn probe(&self, endpoint: &Endpoint) -> Result<(), Error> {
        match self.query(endpoint, "vector(1)").await {
            Reading::Value(1.0) => Ok(()),
            Reading::Value(v) => Err(Error::QueryMetric(format!(
                "probe query vector(1) returned {v}, not 1"
            ))),
            Reading::Empty => Err(Error::QueryMetric(
                "probe query vector(1) returned no data".into(),
            )),
            Reading::Failed(e) => Err(Error::QueryMetric(e)),
        }
    }
}

/// Prometheus behind the [`Provider`] seam: one MetricTemplate's address, credentials and headers.
#[derive(Clone, Debug)]
pub struct PrometheusProvider {
    client: Prometheus,
    endpoint: Endpoint,
}

impl PrometheusProvider {
    /// Reads `address` (required; the analyzer puts the canary's metrics server there when the
    /// template has none), `headers`, `insecureSkipVerify` and the Secret's `token`, or
    /// `username` and `password`.
    pub fn new(config: &ProviderConfig) -> Result<Self, Error> {
        let spec = &config.spec;
        let address = spec
            .address
            .as_deref()
            .filter(|a| !a.is_empty())
            .ok_or(Error::MissingAddress)?;
        let auth = match &config.secret {
            Some(data) => Some(Auth::from_secret(data).map_err(Error::Credentials)?),
            None => None,
        };
        Ok(Self {
            client: Prometheus::new()?,
            endpoint: Endpoint {
                address: address.to_string(),
                auth,
                headers: spec.headers.clone().unwrap_or_default(),
                insecure_skip_verify: spec.insecure_skip_verify.unwrap_or(false),
            },
        })
    }
}

#[async_trait::async_trait]
impl Provider for PrometheusProvider {
    async fn query(&self, query: &str, _ctx: &QueryContext) -> Reading {
        self.client.query(&self.endpoint, query).await
    }
}

/// Reads one number from a result: a scalar or a one-element vector; empty is no data.
pub fn read(data: &Data) -> Reading {
    match data {
        Data::Scalar(s) => Reading::Value(s.value()),
        Data::Vector(v) => match v.as_slice() {
            [] => Reading::Empty,
            [one] => Reading::Value(one.sample().value()),
            many => Reading::Failed(format!(
                "query returned an instant vector of {} series; expected a scalar or a one-element vector (aggregate it, e.g. with sum())",
                many.len()
            )),
        },
        Data::Matrix(m) => Reading::Failed(format!(
            "query returned a range vector (matrix) of {} series; expected a scalar or a one-element vector (remove the [range] selector or wrap it in a function such as rate())",
            m.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(json: &str) -> Data {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn one_scalar_or_one_series_is_a_value() {
        assert_eq!(
            read(&data(
                r#"{"resultType":"scalar","result":[1700000000,"42.5"]}"#
            )),
            Reading::Value(42.5)
        );
        assert_eq!(
            read(&data(
                r#"{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"99"]}]}"#
            )),
            Reading::Value(99.0)
        );
    }

    #[test]
    fn an_empty_vector_is_no_data_and_nan_stays_nan() {
        assert_eq!(
            read(&data(r#"{"resultType":"vector","result":[]}"#)),
            Reading::Empty
        );
        let nan = read(&data(
            r#"{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"NaN"]}]}"#,
        ));
        assert!(matches!(nan, Reading::Value(v) if v.is_nan()));
    }

    #[test]
    fn other_shapes_are_errors_that_name_the_shape() {
        let two = read(&data(
            r#"{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}"#,
        ));
        assert!(
            matches!(&two, Reading::Failed(m) if m.contains("instant vector of 2 series")),
            "{two:?}"
        );
        let matrix = read(&data(
            r#"{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2,"2"]]}]}"#,
        ));
        assert!(
            matches!(&matrix, Reading::Failed(m) if m.contains("range vector (matrix) of 1 series")),
            "{matrix:?}"
        );
    }

    #[test]
    fn secrets_give_bearer_or_basic_credentials() {
        let s = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<u8>> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        assert_eq!(
            Auth::from_secret(&s(&[("token", "t"), ("username", "u")])),
            Ok(Auth::Bearer("t".into()))
        );
        let basic = Auth::from_secret(&s(&[("username", "u"), ("password", "p")]));
        assert_eq!(basic.as_ref().map(Auth::header), Ok("Basic dTpw".into()));
        assert!(Auth::from_secret(&s(&[("username", "u")])).is_err());
        assert_eq!(
            format!("{:?}", Auth::Bearer("secret".into())),
            "Bearer(<redacted>)"
        );
    }
}
