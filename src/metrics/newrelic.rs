//! The New Relic metrics provider: runs an NRQL query through the Insights query API
//! (`GET /v1/accounts/<id>/query`); network I/O.
//!
//! As in Flagger: the address defaults to `https://insights-api.newrelic.com`; the Secret keys
//! `newrelic_account_id` and `newrelic_query_key` are both required, the query key is sent as
//! `X-Query-Key`; the query is sent as `nrql=<query> SINCE <interval in seconds> seconds ago`; the
//! answer must hold exactly one result, whose `result` field is the value (so queries name their
//! value `result`, which NRQL does for arithmetic on aggregates).
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::evaluate::Reading;
use super::provider::{Provider, ProviderConfig, QueryContext, Settings, retimed, window_secs};
use super::rest::Http;

/// The Insights API host.
pub const DEFAULT_ADDRESS: &str = "https://insights-api.newrelic.com";
/// Secret key of the account id.
pub const ACCOUNT_ID: &str = "newrelic_account_id";
/// Secret key of the query key.
pub const QUERY_KEY: &str = "newrelic_query_key";

/// Why the provider cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A missing key or an unusable HTTP client.
    #[error("newrelic: {0}")]
    Settings(#[from] Settings),
    /// The account id would change the request path.
    #[error("newrelic: {ACCOUNT_ID} must be a number")]
    BadAccountId,
}

/// Runs NRQL queries.
#[derive(Clone, Debug)]
pub struct NewRelic {
    http: Http,
    endpoint: String,
    query_key: String,
}

impl NewRelic {
    /// The same provider with another timeout (tests).
    pub fn with_timeout(self, timeout: Duration) -> Result<Self, Error> {
        let http = retimed(self.http, timeout)?;
        Ok(Self { http, ..self })
    }

    /// Reads the address (or the Insights default), the account id and the query key.
    pub fn new(config: &ProviderConfig) -> Result<Self, Error> {
        let account = config.required_key(ACCOUNT_ID)?;
        let account = account.trim();
        if account.is_empty() || !account.chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::BadAccountId);
        }
        let query_key = config.required_key(QUERY_KEY)?;
        let address = config.address().unwrap_or(DEFAULT_ADDRESS);
        Ok(Self {
            http: config.http()?,
            endpoint: format!(
                "{}/v1/accounts/{account}/query",
                address.trim_end_matches('/')
            ),
            query_key,
        })
    }
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    results: Vec<ResultEntry>,
}

#[derive(Deserialize)]
struct ResultEntry {
    #[serde(default)]
    result: Option<f64>,
}

/// Picks the `result` of the only result; none or several are no data, as in Flagger.
pub fn read(body: &[u8]) -> Result<Reading, String> {
    let r: Response = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(match r.results.as_slice() {
        [ResultEntry { result: Some(v) }] => Reading::Value(*v),
        _ => Reading::Empty,
    })
}

/// The `nrql` parameter: the query followed by its window.
pub fn nrql(query: &str, interval: Duration) -> String {
    format!("{query} SINCE {} seconds ago", window_secs(interval, 1))
}

#[async_trait]
impl Provider for NewRelic {
    async fn query(&self, query: &str, ctx: &QueryContext) -> Reading {
        let request = self
            .http
            .client()
            .get(&self.endpoint)
            .header("X-Query-Key", &self.query_key)
            .query(&[("nrql", nrql(query, ctx.interval))]);
        let secrets = [self.query_key.as_str()];
        self.http.reading("newrelic", request, &secrets, read).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_only_result_is_the_value() {
        assert_eq!(
            read(br#"{"results":[{"result":1.5}],"metadata":{}}"#),
            Ok(Reading::Value(1.5))
        );
    }

    #[test]
    fn no_result_several_results_and_null_are_no_data() {
        assert_eq!(read(br#"{"results":[]}"#), Ok(Reading::Empty));
        assert_eq!(
            read(br#"{"results":[{"result":1},{"result":2}]}"#),
            Ok(Reading::Empty)
        );
        assert_eq!(
            read(br#"{"results":[{"result":null}]}"#),
            Ok(Reading::Empty)
        );
        assert_eq!(read(br#"{"results":[{"average":3}]}"#), Ok(Reading::Empty));
    }

    #[test]
    fn the_window_is_one_interval_in_seconds() {
        assert_eq!(
            nrql("SELECT count(*) FROM Transaction", Duration::from_secs(120)),
            "SELECT count(*) FROM Transaction SINCE 120 seconds ago"
        );
    }
}
