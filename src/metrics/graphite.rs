//! The Graphite metrics provider: runs a render URL API query (`GET <address>/render?<query>&format=json`);
//! network I/O.
//!
//! As in Flagger: `address` is required; the query is the render API's query string (for example
//! `target=summarize(...)&from=-1min`) with `format=json` set; a Secret is optional and, when
//! given, must hold `username` and `password` for basic auth; the value is the last non-null
//! datapoint across all returned series; any status from 400 up is an error.
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::evaluate::Reading;
use super::provider::{Provider, ProviderConfig, QueryContext, Settings, retimed};
use super::rest::Http;

/// Why the provider cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad address, a missing key or an unusable HTTP client.
    #[error("graphite: {0}")]
    Settings(#[from] Settings),
}

/// Runs Graphite render queries.
#[derive(Clone, Debug)]
pub struct Graphite {
    http: Http,
    base: url::Url,
    credentials: Option<(String, String)>,
}

impl Graphite {
    /// The same provider with another timeout (tests).
    pub fn with_timeout(self, timeout: Duration) -> Result<Self, Error> {
        let http = retimed(self.http, timeout)?;
        Ok(Self { http, ..self })
    }

    /// Reads the address (required) and the optional basic-auth credentials.
    pub fn new(config: &ProviderConfig) -> Result<Self, Error> {
        let base = config.address_url()?;
        let credentials = match config.secret {
            None => None,
            Some(_) => Some((
                config.required_key("username")?,
                config.required_key("password")?,
            )),
        };
        Ok(Self {
            http: config.http()?,
            base,
            credentials,
        })
    }

    /// `<address>/render?<query>&format=json`, the address's own path kept.
    pub fn render_url(&self, query: &str) -> url::Url {
        let mut url = self.base.clone();
        let path = format!("{}/render", self.base.path().trim_end_matches('/'));
        url.set_path(&path);
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.trim().as_bytes())
            .filter(|(k, _)| k != "format")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("format", "json");
        url
    }
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    datapoints: Vec<(Option<Number>, serde_json::Value)>,
}

/// Graphite writes values as numbers; some servers quote them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Float(f64),
    Text(String),
}

/// Picks the last non-null datapoint across all series.
pub fn read(body: &[u8]) -> Result<Reading, String> {
    let series: Vec<Series> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut last = None;
    for s in &series {
        for (v, _) in &s.datapoints {
            match v {
                Some(Number::Float(f)) => last = Some(*f),
                Some(Number::Text(t)) => {
                    last = Some(
                        t.trim()
                            .parse::<f64>()
                            .map_err(|_| format!("datapoint value {t:?} is not a number"))?,
                    )
                }
                None => {}
            }
        }
    }
    Ok(last.map_or(Reading::Empty, Reading::Value))
}

#[async_trait]
impl Provider for Graphite {
    async fn query(&self, query: &str, _ctx: &QueryContext) -> Reading {
        let mut request = self.http.client().get(self.render_url(query));
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let secrets: Vec<&str> = self.credentials.iter().map(|(_, p)| p.as_str()).collect();
        self.http.reading("graphite", request, &secrets, read).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::metric_template::MetricProvider;

    fn graphite(address: &str) -> Graphite {
        Graphite::new(&ProviderConfig {
            spec: MetricProvider {
                type_: "graphite".into(),
                address: Some(address.into()),
                ..Default::default()
            },
            secret: None,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_last_non_null_datapoint_across_series_is_the_value() {
        let body = br#"[{"target":"a","datapoints":[[1.0,1],[2.5,2],[null,3]]},{"target":"b","datapoints":[["7",1],[null,2]]}]"#;
        assert_eq!(read(body), Ok(Reading::Value(7.0)));
        assert_eq!(
            read(br#"[{"target":"a","datapoints":[[3,1],[null,2]]}]"#),
            Ok(Reading::Value(3.0))
        );
    }

    #[test]
    fn no_series_or_only_nulls_are_no_data() {
        assert_eq!(read(b"[]"), Ok(Reading::Empty));
        assert_eq!(
            read(br#"[{"target":"a","datapoints":[[null,1]]}]"#),
            Ok(Reading::Empty)
        );
        assert!(read(br#"{"error":"x"}"#).is_err());
    }

    #[test]
    fn the_render_url_keeps_the_address_path_and_forces_json() {
        let g = graphite("http://graphite:8080/graphite/");
        assert_eq!(
            g.render_url("target=sumSeries(a.b.{c,d})&from=-10min&format=raw")
                .as_str(),
            "http://graphite:8080/graphite/render?target=sumSeries%28a.b.%7Bc%2Cd%7D%29&from=-10min&format=json"
        );
    }

    #[test]
    fn an_address_that_is_not_a_url_is_rejected() {
        let cfg = ProviderConfig {
            spec: MetricProvider {
                type_: "graphite".into(),
                address: Some("graphite:8080".into()),
                ..Default::default()
            },
            secret: None,
        };
        assert!(matches!(
            Graphite::new(&cfg),
            Err(Error::Settings(Settings::BadAddress(_)))
        ));
    }
}
