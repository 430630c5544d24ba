//! The Dynatrace metrics provider: runs a metric selector through the Metrics API v2
//! (`GET <address>/api/v2/metrics/query`); network I/O.
//!
//! As in Flagger: `address` (the environment URL) is required; the Secret key `dynatrace_token`
//! is required and sent as `Authorization: Api-Token <token>`; the parameters are
//! `metricSelector`, `resolution=Inf`, `from` = now − 10 × interval and `to` = now, in Unix
//! milliseconds; the value is the first value of the last data entry of the first result. Unlike
//! Flagger, a `null` value is no data rather than a decoding error.
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::evaluate::Reading;
use super::provider::{Provider, ProviderConfig, QueryContext, Settings, retimed};
use super::rest::Http;

/// The query path.
pub const QUERY_PATH: &str = "/api/v2/metrics/query";
/// Secret key of the API token.
pub const TOKEN: &str = "dynatrace_token";
/// The window is this many metric intervals.
pub const WINDOW_INTERVALS: u32 = 10;

/// Why the provider cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `address` is not set.
    #[error("dynatrace: the MetricTemplate has no address (the environment URL)")]
    MissingAddress,
    /// A missing key or an unusable HTTP client.
    #[error("dynatrace: {0}")]
    Settings(#[from] Settings),
}

/// Runs Dynatrace metric selectors.
#[derive(Clone, Debug)]
pub struct Dynatrace {
    http: Http,
    endpoint: String,
    token: String,
}

impl Dynatrace {
    /// The same provider with another timeout (tests).
    pub fn with_timeout(self, timeout: Duration) -> Result<Self, Error> {
        let http = retimed(self.http, timeout)?;
        Ok(Self { http, ..self })
    }

    /// Reads the address and the token.
    pub fn new(config: &ProviderConfig) -> Result<Self, Error> {
        let address = config.address().ok_or(Error::MissingAddress)?;
        let token = config.required_key(TOKEN)?;
        Ok(Self {
            http: config.http()?,
            endpoint: format!("{}{QUERY_PATH}", address.trim_end_matches('/')),
            token,
        })
    }
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    result: Vec<MetricResult>,
}

#[derive(Deserialize)]
struct MetricResult {
    #[serde(default)]
    data: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    values: Vec<Option<f64>>,
}

/// Picks the first value of the last data entry of the first result.
pub fn read(body: &[u8]) -> Result<Reading, String> {
    let r: Response = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let v = r
        .result
        .first()
        .and_then(|m| m.data.last())
        .and_then(|d| d.values.first());
    Ok(match v {
        Some(Some(v)) => Reading::Value(*v),
        _ => Reading::Empty,
    })
}

#[async_trait]
impl Provider for Dynatrace {
    async fn query(&self, query: &str, ctx: &QueryContext) -> Reading {
        // Flagger uses whole seconds times 1000.
        let to = ctx.now.timestamp() * 1000;
        let window =
            i64::try_from((ctx.interval * WINDOW_INTERVALS).as_millis()).unwrap_or(i64::MAX);
        let from = to.saturating_sub(window);
        let request = self
            .http
            .client()
            .get(&self.endpoint)
            .header("Authorization", format!("Api-Token {}", self.token))
            .query(&[
                ("metricSelector", query.to_string()),
                ("resolution", "Inf".to_string()),
                ("from", from.to_string()),
                ("to", to.to_string()),
            ]);
        let secrets = [self.token.as_str()];
        self.http
            .reading("dynatrace", request, &secrets, read)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_value_of_the_last_series_is_the_value() {
        let body = br#"{"totalCount":2,"resolution":"Inf","result":[{"metricId":"builtin:service.response.time:avg","data":[{"dimensions":["SERVICE-1"],"timestamps":[1700000000000],"values":[10.0]},{"dimensions":["SERVICE-2"],"timestamps":[1700000000000],"values":[25.5]}]}]}"#;
        assert_eq!(read(body), Ok(Reading::Value(25.5)));
    }

    #[test]
    fn no_result_no_data_and_null_are_no_data() {
        assert_eq!(read(br#"{"result":[]}"#), Ok(Reading::Empty));
        assert_eq!(
            read(br#"{"result":[{"metricId":"m","data":[]}]}"#),
            Ok(Reading::Empty)
        );
        assert_eq!(
            read(br#"{"result":[{"data":[{"timestamps":[1],"values":[null]}]}]}"#),
            Ok(Reading::Empty)
        );
    }
}
