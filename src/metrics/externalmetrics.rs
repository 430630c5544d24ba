//! The Kubernetes external metrics provider: reads `external.metrics.k8s.io/v1beta1` values
//! (served by KEDA, the Datadog cluster agent, prometheus-adapter…) through the API server;
//! network I/O.
//!
//! Like Flagger's: the query is `<namespace>/<metricName>?labelSelector=<urlencoded selector>`
//! (namespace defaults to `default`), the reading is the first item's value (a Quantity), an
//! empty list is no data, the timeout is 5 s, `address` replaces the API server's address,
//! `insecureSkipVerify` skips certificate checks and the Secret's `token` is sent as a bearer
//! token. Unlike Flagger, a template with an `address` never receives the operator's own
//! credentials: only the Secret's token is sent to a host the template chose.
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::evaluate::Reading;
use super::provider::{Provider, ProviderConfig, QueryContext};
use crate::core::text::{body_prefix, error_chain};

const NAME: &str = "externalmetrics";
/// Flagger's timeout.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why an external metrics provider cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `spec.provider.address` is not a URL.
    #[error("externalmetrics: invalid address {0:?}")]
    BadAddress(String),
    /// A token without an address needs the in-cluster API server address.
    #[error(
        "externalmetrics: a secret token without an address needs the in-cluster configuration: {0}"
    )]
    NotInCluster(String),
    /// The Kubernetes client could not be built.
    #[error("externalmetrics: cannot build the Kubernetes client: {0}")]
    BuildClient(#[source] kube::Error),
}

impl Error {
    /// A short label for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::BadAddress(_) => "InvalidProvider",
            Self::NotInCluster(_) => "MissingCredentials",
            Self::BuildClient(_) => "BuildClient",
        }
    }
}

/// Reads external metrics.
#[derive(Clone)]
pub struct ExternalMetrics {
    client: kube::Client,
}

impl std::fmt::Debug for ExternalMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExternalMetrics")
    }
}

impl ExternalMetrics {
    /// Uses `client` (the operator's) unless the template names an `address` or its Secret a
    /// `token`; then a client is built for them.
    pub fn new(config: &ProviderConfig, client: kube::Client) -> Result<Self, Error> {
        let address = config.spec.address.as_deref().filter(|a| !a.is_empty());
        let token = super::provider::secret_text(config.secret.as_ref(), "token");
        let insecure = config.spec.insecure_skip_verify.unwrap_or(false);
        if address.is_none() && token.is_none() && !insecure {
            return Ok(Self { client });
        }
        let mut kc = match address {
            Some(a) => {
                let uri: http::Uri = a.parse().map_err(|_| Error::BadAddress(a.into()))?;
                if uri.scheme().is_none() || uri.host().is_none() {
                    return Err(Error::BadAddress(a.into()));
                }
                let mut kc = kube::Config::new(uri);
                // Keep the cluster's CA, never its credentials.
                if let Ok(incluster) = kube::Config::incluster() {
                    kc.root_cert = incluster.root_cert;
                }
                kc
            }
            None => {
                let mut kc =
                    kube::Config::incluster().map_err(|e| Error::NotInCluster(e.to_string()))?;
                if token.is_some() {
                    kc.auth_info = Default::default();
                }
                kc
            }
        };
        if let Some(t) = token {
            kc.auth_info.token = Some(t.into());
        }
        kc.accept_invalid_certs = insecure;
        kc.read_timeout = Some(TIMEOUT);
        kc.connect_timeout = Some(TIMEOUT);
        crate::install_crypto_provider();
        Ok(Self {
            client: kube::Client::try_from(kc).map_err(Error::BuildClient)?,
        })
    }

    /// Uses `client` as is (tests, or callers that built their own).
    pub fn with_client(client: kube::Client) -> Self {
        Self { client }
    }

    async fn run(&self, query: &str) -> Result<Reading, String> {
        let q = parse_query(query)?;
        let mut path = format!(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/{}/{}",
            segment(&q.namespace),
            segment(&q.metric)
        );
        if let Some(sel) = &q.label_selector {
            path.push_str("?labelSelector=");
            path.push_str(
                &url::form_urlencoded::byte_serialize(sel.as_bytes()).collect::<String>(),
            );
        }
        let req = http::Request::get(&path)
            .body(Vec::new())
            .map_err(|e| format!("{NAME}: {e}"))?;
        let text = match tokio::time::timeout(TIMEOUT, self.client.request_text(req)).await {
            Err(_) => return Err(format!("{NAME}: GET {path} timed out after 5s")),
            Ok(Err(kube::Error::Api(s))) => {
                return Err(format!(
                    "{NAME}: GET {path} answered {} {}: {}",
                    s.code,
                    s.reason,
                    body_prefix(s.message.as_bytes())
                ));
            }
            Ok(Err(e)) => return Err(format!("{NAME}: GET {path} failed: {}", error_chain(&e))),
            Ok(Ok(t)) => t,
        };
        read(&text)
    }
}

#[async_trait]
impl Provider for ExternalMetrics {
    async fn query(&self, query: &str, _ctx: &QueryContext) -> Reading {
        self.run(query).await.unwrap_or_else(Reading::Failed)
    }
}

fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Namespace (default `default`).
    pub namespace: String,
    /// Metric name.
    pub metric: String,
    /// The decoded label selector, if any.
    pub label_selector: Option<String>,
}

/// Parses `<namespace>/<metricName>?labelSelector=<urlencoded selector>`; only the metric name is
/// required.
pub fn parse_query(query: &str) -> Result<Query, String> {
    let query = query.trim();
    let shape = "expected <namespace>/<metricName>?labelSelector=<urlencoded label selectors>";
    let u = url::Url::parse(&format!("dummy:///{query}"))
        .map_err(|_| format!("{NAME}: malformed query, {shape}, got {query:?}"))?;
    let path = u.path().trim_start_matches('/');
    let parts: Vec<&str> = path.split('/').collect();
    let (namespace, metric) = match parts.as_slice() {
        [m] => ("default", *m),
        [ns, m] => (if ns.is_empty() { "default" } else { *ns }, *m),
        _ => {
            return Err(format!(
                "{NAME}: malformed query, too many slashes, {shape}, got {query:?}"
            ));
        }
    };
    let decode = |s: &str| {
        percent_decode(s).ok_or_else(|| format!("{NAME}: malformed query, {shape}, got {query:?}"))
    };
    let metric = decode(metric)?;
    if metric.is_empty() {
        return Err(format!("{NAME}: the metric name cannot be empty"));
    }
    let label_selector = u
        .query_pairs()
        .find(|(k, _)| k == "labelSelector")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty());
    Ok(Query {
        namespace: decode(namespace)?,
        metric,
        label_selector,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[derive(Deserialize)]
struct ValueList {
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    value: String,
}

/// Reads an `ExternalMetricValueList`: the first item's Quantity; no items is no data.
pub fn read(body: &str) -> Result<Reading, String> {
    let list: ValueList = serde_json::from_str(body).map_err(|e| {
        format!(
            "{NAME}: cannot read the answer ({e}): {}",
            body_prefix(body.as_bytes())
        )
    })?;
    match list.items.first() {
        None => Ok(Reading::Empty),
        Some(item) => parse_quantity(&item.value)
            .map(Reading::Value)
            .ok_or_else(|| format!("{NAME}: {:?} is not a Kubernetes quantity", item.value)),
    }
}

/// A Kubernetes Quantity (`100m`, `1.5`, `2Ki`, `1e3`, `5G`) as a float.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    const BINARY: [(&str, i32); 6] = [
        ("Ki", 10),
        ("Mi", 20),
        ("Gi", 30),
        ("Ti", 40),
        ("Pi", 50),
        ("Ei", 60),
    ];
    for (suffix, pow) in BINARY {
        if let Some(n) = q.strip_suffix(suffix) {
            return number(n).map(|n| n * 2f64.powi(pow));
        }
    }
    // A decimal exponent (`1e3`, `1E-3`) before the `E` (exa) suffix.
    if let Some(i) = q.find(['e', 'E'])
        && i + 1 < q.len()
        && let (Some(m), Ok(exp)) = (number(&q[..i]), q[i + 1..].parse::<i32>())
    {
        return Some(m * 10f64.powi(exp));
    }
    const DECIMAL: [(&str, i32); 9] = [
        ("n", -9),
        ("u", -6),
        ("m", -3),
        ("k", 3),
        ("M", 6),
        ("G", 9),
        ("T", 12),
        ("P", 15),
        ("E", 18),
    ];
    for (suffix, pow) in DECIMAL {
        if let Some(n) = q.strip_suffix(suffix) {
            return number(n).map(|n| n * 10f64.powi(pow));
        }
    }
    number(q)
}

/// A signed decimal without exponent.
fn number(s: &str) -> Option<f64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let ok = !digits.is_empty()
        && digits != "."
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1;
    if ok { s.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_name_a_namespace_a_metric_and_a_selector() {
        assert_eq!(
            parse_query("prod/http_requests?labelSelector=app%3Dpodinfo%2Ctier%20in%20(web)"),
            Ok(Query {
                namespace: "prod".into(),
                metric: "http_requests".into(),
                label_selector: Some("app=podinfo,tier in (web)".into()),
            })
        );
        assert_eq!(
            parse_query("queue_depth").map(|q| (q.namespace, q.label_selector)),
            Ok(("default".into(), None))
        );
        assert_eq!(
            parse_query("/queue_depth").map(|q| q.namespace),
            Ok("default".into())
        );
        assert!(parse_query("a/b/c").is_err());
        assert!(parse_query("prod/").is_err());
    }

    #[test]
    fn quantities_parse_with_every_suffix() {
        for (q, want) in [
            ("100m", 0.1),
            ("1", 1.0),
            ("-2.5", -2.5),
            ("1k", 1000.0),
            ("2Gi", 2.0 * 1024.0 * 1024.0 * 1024.0),
            ("3Ki", 3072.0),
            ("5M", 5e6),
            ("7u", 7e-6),
            ("12n", 12e-9),
            ("1e3", 1000.0),
            ("1E-3", 0.001),
            ("2E", 2e18),
            (".5", 0.5),
        ] {
            let got = parse_quantity(q).unwrap_or(f64::NAN);
            assert!(
                (got - want).abs() <= want.abs() * 1e-12,
                "{q}: {got} != {want}"
            );
        }
        for bad in ["", "m", "1x", "1.2.3", "abc", "1 k"] {
            assert_eq!(parse_quantity(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_first_item_is_the_reading_and_no_items_is_no_data() {
        let list = r#"{"kind":"ExternalMetricValueList","apiVersion":"external.metrics.k8s.io/v1beta1","metadata":{},
            "items":[{"metricName":"q","metricLabels":{},"timestamp":"2024-01-01T00:00:00Z","value":"250m"},
                     {"metricName":"q","metricLabels":{},"timestamp":"2024-01-01T00:00:00Z","value":"9"}]}"#;
        assert_eq!(read(list), Ok(Reading::Value(0.25)));
        assert_eq!(read(r#"{"items":[]}"#), Ok(Reading::Empty));
        assert!(read(r#"{"items":[{"value":"lots"}]}"#).is_err());
        assert!(read("<html>").is_err());
    }
}
