//! The Datadog metrics provider: runs a metrics query over the last ten metric intervals through
//! `GET /api/v1/query`; network I/O.
//!
//! As in Flagger: the address defaults to `https://api.datadoghq.com`; the Secret keys
//! `datadog_api_key` and `datadog_application_key` (both required) become the `DD-API-KEY` and
//! `DD-APPLICATION-KEY` headers; `from` is `now − 10 × interval` and `to` is `now`, in Unix
//! seconds; the value is the first (oldest) point of the first series, because the newest bucket
//! is usually incomplete. Unlike Flagger, a `null` point is no data rather than 0.
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::evaluate::Reading;
use super::provider::{Provider, ProviderConfig, QueryContext, Settings, retimed, window_secs};
use super::rest::Http;

/// Datadog's public API host.
pub const DEFAULT_ADDRESS: &str = "https://api.datadoghq.com";
/// The query path.
pub const QUERY_PATH: &str = "/api/v1/query";
/// Secret key of the API key.
pub const API_KEY: &str = "datadog_api_key";
/// Secret key of the application key.
pub const APPLICATION_KEY: &str = "datadog_application_key";
/// The window is this many metric intervals.
pub const WINDOW_INTERVALS: u32 = 10;

/// Why the provider cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A missing key or an unusable HTTP client.
    #[error("datadog: {0}")]
    Settings(#[from] Settings),
}

/// Runs Datadog queries.
#[derive(Clone, Debug)]
pub struct Datadog {
    http: Http,
    address: String,
    api_key: String,
    application_key: String,
}

impl Datadog {
    /// The same provider with another timeout (tests).
    pub fn with_timeout(self, timeout: Duration) -> Result<Self, Error> {
        let http = retimed(self.http, timeout)?;
        Ok(Self { http, ..self })
    }

    /// Reads the address (or Datadog's default) and both keys from the Secret.
    pub fn new(config: &ProviderConfig) -> Result<Self, Error> {
        Ok(Self {
            api_key: config.required_key(API_KEY)?,
            application_key: config.required_key(APPLICATION_KEY)?,
            http: config.http()?,
            address: config.address().unwrap_or(DEFAULT_ADDRESS).to_string(),
        })
    }
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    series: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    pointlist: Vec<Vec<Option<f64>>>,
}

/// Picks the first point of the first series.
pub fn read(body: &[u8]) -> Result<Reading, String> {
    let r: Response = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let point = r.series.first().and_then(|s| s.pointlist.first());
    Ok(match point.and_then(|p| p.get(1)) {
        Some(Some(v)) => Reading::Value(*v),
        _ => Reading::Empty,
    })
}

#[async_trait]
impl Provider for Datadog {
    async fn query(&self, query: &str, ctx: &QueryContext) -> Reading {
        let to = ctx.now.timestamp();
        let from = to - window_secs(ctx.interval, WINDOW_INTERVALS);
        let request = self
            .http
            .client()
            .get(format!(
                "{}{QUERY_PATH}",
                self.address.trim_end_matches('/')
            ))
            .header("DD-API-KEY", &self.api_key)
            .header("DD-APPLICATION-KEY", &self.application_key)
            .query(&[
                ("query", query.to_string()),
                ("from", from.to_string()),
                ("to", to.to_string()),
            ]);
        let secrets = [self.api_key.as_str(), self.application_key.as_str()];
        self.http.reading("datadog", request, &secrets, read).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_point_of_the_first_series_is_the_value() {
        let body = br#"{"status":"ok","series":[{"metric":"m","pointlist":[[1700000000000.0,12.5],[1700000060000.0,99.0]]},{"pointlist":[[1,3.0]]}]}"#;
        assert_eq!(read(body), Ok(Reading::Value(12.5)));
    }

    #[test]
    fn no_series_no_points_and_null_values_are_no_data() {
        assert_eq!(read(br#"{"status":"ok","series":[]}"#), Ok(Reading::Empty));
        assert_eq!(
            read(br#"{"series":[{"pointlist":[]}]}"#),
            Ok(Reading::Empty)
        );
        assert_eq!(
            read(br#"{"series":[{"pointlist":[[1.0,null]]}]}"#),
            Ok(Reading::Empty)
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_an_error() {
        assert!(read(b"<html>").is_err());
    }
}
