//! The Splunk Observability (SignalFx) metrics provider: SignalFlow programs through the REST
//! `execute` endpoint, read from its server-sent-events stream; network I/O.
//!
//! Like Flagger's: `address` is required (`https://api.<realm>.signalfx.com`; the SignalFlow
//! stream host `stream.<realm>` is derived from it), the token is the Secret's `sf_token_key`,
//! the window is ten metric intervals ending now with `immediate=true`, data points without a
//! value are dropped, more than one time series is an error, and the reading is the last value.
//! Unlike Flagger, which opens a WebSocket, Serin uses the documented REST/SSE form of the same
//! API (`POST /v2/signalflow/execute`).
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::evaluate::Reading;
use super::provider::{Provider, ProviderConfig, QueryContext};
use super::rest::{Failure, Http};

const NAME: &str = "splunk";
/// The Secret key holding the access token.
pub const TOKEN_KEY: &str = "sf_token_key";
/// Flagger's window: ten metric intervals.
const WINDOW_INTERVALS: u32 = 10;

/// Why a Splunk provider cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `spec.provider.address` is empty.
    #[error("splunk: spec.provider.address is required (https://api.<realm>.signalfx.com)")]
    MissingAddress,
    /// `spec.provider.address` is not a URL.
    #[error("splunk: invalid address {0:?}: expected https://api.<realm>.signalfx.com")]
    BadAddress(String),
    /// The Secret lacks `sf_token_key`.
    #[error("splunk: the secret does not contain `sf_token_key`")]
    MissingKey,
    /// The HTTP client could not be built.
    #[error("splunk: cannot build the HTTP client: {0}")]
    BuildClient(#[source] reqwest::Error),
}

impl Error {
    /// A short label for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::MissingAddress | Self::BadAddress(_) => "InvalidProvider",
            Self::MissingKey => "MissingCredentials",
            Self::BuildClient(_) => "BuildClient",
        }
    }
}

/// Runs SignalFlow programs.
pub struct Splunk {
    http: Http,
    execute: String,
    token: String,
}

impl std::fmt::Debug for Splunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Splunk({}, <redacted>)", self.execute)
    }
}

impl Splunk {
    /// Reads the address and the Secret's `sf_token_key`.
    pub fn new(config: &ProviderConfig) -> Result<Self, Error> {
        let address = config
            .spec
            .address
            .as_deref()
            .filter(|a| !a.is_empty())
            .ok_or(Error::MissingAddress)?;
        let token = super::provider::secret_text(config.secret.as_ref(), TOKEN_KEY)
            .ok_or(Error::MissingKey)?;
        Ok(Self {
            http: Http::new(config.spec.insecure_skip_verify.unwrap_or(false))
                .map_err(Error::BuildClient)?,
            execute: execute_url(address)?,
            token,
        })
    }

    /// The `execute` URL (without query).
    pub fn execute_url(&self) -> &str {
        &self.execute
    }

    async fn run(&self, program: &str, ctx: &QueryContext) -> Result<Reading, Failure> {
        let stop = ctx.now.timestamp_millis();
        let window =
            i64::try_from((ctx.interval * WINDOW_INTERVALS).as_millis()).unwrap_or(i64::MAX);
        let mut url = url::Url::parse(&self.execute)
            .map_err(|e| Failure(format!("{NAME}: invalid address: {e}")))?;
        url.query_pairs_mut()
            .append_pair("start", &stop.saturating_sub(window).to_string())
            .append_pair("stop", &stop.to_string())
            .append_pair("immediate", "true");
        let req = self
            .http
            .client()
            .post(url)
            .header("X-SF-Token", &self.token)
            .header("content-type", "text/plain")
            .header("accept", "text/event-stream")
            .body(program.to_string());
        let secrets = [self.token.as_str()];
        let mut resp = self.http.check(NAME, req, &secrets).await?;
        let mut stream = Stream::default();
        loop {
            match resp.chunk().await {
                Ok(Some(bytes)) => {
                    stream.feed(&bytes);
                    if stream.ended {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(self.http.transport(NAME, &e, &secrets)),
            }
        }
        stream.finish();
        stream.reading()
    }
}

#[async_trait]
impl Provider for Splunk {
    async fn query(&self, query: &str, ctx: &QueryContext) -> Reading {
        self.run(query, ctx)
            .await
            .unwrap_or_else(|f| Reading::Failed(f.0))
    }
}

/// The SignalFlow `execute` URL for an API or stream address: `api.<realm>` becomes
/// `stream.<realm>`, `ws(s)` becomes `http(s)`, and `/v2/signalflow/execute` is appended.
pub fn execute_url(address: &str) -> Result<String, Error> {
    let bad = || Error::BadAddress(address.to_string());
    let mut u = url::Url::parse(address).map_err(|_| bad())?;
    let scheme = match u.scheme() {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        _ => return Err(bad()),
    };
    let host = u.host_str().ok_or_else(bad)?.to_string();
    let rest = format!(
        "{scheme}://{}{}{}",
        host.strip_prefix("api.")
            .map(|r| format!("stream.{r}"))
            .unwrap_or(host.clone()),
        u.port().map(|p| format!(":{p}")).unwrap_or_default(),
        u.path().trim_end_matches('/')
    );
    u = url::Url::parse(&rest).map_err(|_| bad())?;
    let path = u.path().trim_end_matches('/').to_string();
    let base = u.as_str().trim_end_matches('/').to_string();
    Ok(if path.ends_with("/v2/signalflow") {
        format!("{base}/execute")
    } else {
        format!("{base}/v2/signalflow/execute")
    })
}

#[derive(Deserialize)]
struct DataMessage {
    #[serde(default)]
    data: Vec<Point>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Point {
    #[serde(default)]
    ts_id: String,
    #[serde(default)]
    value: Option<f64>,
}

/// A SignalFlow SSE stream being read.
#[derive(Default)]
pub struct Stream {
    buf: String,
    /// `(tsId, value)` of every data point with a value, in order.
    points: Vec<(String, f64)>,
    /// The first `error` message or unreadable data message.
    error: Option<String>,
    /// `END_OF_CHANNEL` or a channel abort was seen.
    pub ended: bool,
}

impl Stream {
    /// Adds bytes from the body; whole events are parsed.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf
            .push_str(&String::from_utf8_lossy(bytes).replace("\r\n", "\n"));
        while let Some(end) = self.buf.find("\n\n") {
            let event: String = self.buf.drain(..end + 2).collect();
            self.event(&event);
        }
    }

    /// Parses what is left after the body ended.
    pub fn finish(&mut self) {
        let rest = std::mem::take(&mut self.buf);
        if !rest.trim().is_empty() {
            self.event(&rest);
        }
    }

    fn event(&mut self, text: &str) {
        let mut name = "message";
        let mut data = Vec::new();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        let data = data.join("\n");
        match name {
            "data" => match serde_json::from_str::<DataMessage>(&data) {
                Ok(m) => self.points.extend(
                    m.data
                        .into_iter()
                        .filter_map(|p| p.value.map(|v| (p.ts_id, v))),
                ),
                Err(e) => {
                    self.error.get_or_insert(format!(
                        "{NAME}: cannot read a data message ({e}): {}",
                        crate::core::text::body_prefix(data.as_bytes())
                    ));
                }
            },
            "error" => {
                let v: Value = serde_json::from_str(&data).unwrap_or(Value::String(data.clone()));
                let msg = v
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| crate::core::text::body_prefix(data.as_bytes()));
                let kind = v
                    .get("errorType")
                    .and_then(Value::as_str)
                    .unwrap_or("error");
                self.error
                    .get_or_insert(format!("{NAME}: SignalFlow {kind}: {msg}"));
                self.ended = true;
            }
            "control-message" => {
                let v: Value = serde_json::from_str(&data).unwrap_or_default();
                if matches!(
                    v.get("event").and_then(Value::as_str),
                    Some("END_OF_CHANNEL" | "CHANNEL_ABORT")
                ) {
                    self.ended = true;
                }
            }
            _ => {}
        }
    }

    /// The reading: an error message, no data, more than one series, or the last value.
    pub fn reading(&self) -> Result<Reading, Failure> {
        if let Some(e) = &self.error {
            return Err(Failure(e.clone()));
        }
        let Some((_, last)) = self.points.last() else {
            return Ok(Reading::Empty);
        };
        let mut series: Vec<&str> = self.points.iter().map(|(t, _)| t.as_str()).collect();
        series.sort_unstable();
        series.dedup();
        if series.len() > 1 {
            return Err(Failure(format!(
                "{NAME}: the program returned {} time series; expected one (aggregate it, e.g. with sum())",
                series.len()
            )));
        }
        Ok(Reading::Value(*last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_host_is_derived_from_the_api_address() {
        assert_eq!(
            execute_url("https://api.us1.signalfx.com").ok(),
            Some("https://stream.us1.signalfx.com/v2/signalflow/execute".into())
        );
        assert_eq!(
            execute_url("wss://stream.eu0.signalfx.com/v2/signalflow").ok(),
            Some("https://stream.eu0.signalfx.com/v2/signalflow/execute".into())
        );
        assert_eq!(
            execute_url("http://127.0.0.1:8080/").ok(),
            Some("http://127.0.0.1:8080/v2/signalflow/execute".into())
        );
        assert!(execute_url("not a url").is_err());
    }

    fn read(sse: &str) -> Result<Reading, Failure> {
        let mut s = Stream::default();
        // Fed in two pieces to cross an event boundary.
        let (a, b) = sse.split_at(sse.len() / 2);
        s.feed(a.as_bytes());
        s.feed(b.as_bytes());
        s.finish();
        s.reading()
    }

    #[test]
    fn the_last_value_of_one_series_is_the_reading() {
        let sse = "event: control-message\ndata: {\"event\":\"STREAM_START\",\"timestampMs\":1}\n\n\
                   event: metadata\ndata: {\"tsId\":\"AAAAAKSd38Y\",\"properties\":{}}\n\n\
                   event: data\ndata: {\ndata: \"data\" : [ { \"tsId\" : \"AAAAAKSd38Y\", \"value\" : 1.5 } ],\ndata: \"logicalTimestampMs\" : 1\ndata: }\n\n\
                   event: data\ndata: {\"data\":[{\"tsId\":\"AAAAAKSd38Y\",\"value\":2}],\"logicalTimestampMs\":2}\n\n\
                   event: data\ndata: {\"data\":[{\"tsId\":\"AAAAAKSd38Y\",\"value\":null}],\"logicalTimestampMs\":3}\n\n\
                   event: control-message\ndata: {\"event\":\"END_OF_CHANNEL\",\"timestampMs\":4}\n\n";
        assert_eq!(read(sse), Ok(Reading::Value(2.0)));
    }

    #[test]
    fn no_points_is_no_data_and_two_series_or_an_error_message_fail() {
        assert_eq!(
            read("event: control-message\ndata: {\"event\":\"END_OF_CHANNEL\"}\n\n"),
            Ok(Reading::Empty)
        );
        let two = read(
            "event: data\ndata: {\"data\":[{\"tsId\":\"A\",\"value\":1},{\"tsId\":\"B\",\"value\":2}]}\n\n",
        );
        assert!(
            matches!(&two, Err(f) if f.0.contains("2 time series")),
            "{two:?}"
        );
        let err = read(
            "event: error\ndata: {\"error\":400,\"errorType\":\"ANALYTICS_PROGRAM_NAME_ERROR\",\"message\":\"bad program\"}\n\n",
        );
        assert!(
            matches!(&err, Err(f) if f.0.contains("ANALYTICS_PROGRAM_NAME_ERROR: bad program")),
            "{err:?}"
        );
        assert!(read("event: data\ndata: {oops\n\n").is_err());
    }
}
