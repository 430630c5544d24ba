//! The InfluxDB metrics provider: runs a Flux query through the v2 query API
//! (`POST <address>/api/v2/query?org=<org>`) and reads the annotated CSV answer; network I/O.
//!
//! As Flagger's influxdb2 client: `address` is required; with a Secret, `token` (sent as
//! `Authorization: Token <token>`) and `org` are both required; the timeout is 15 s; the value is
//! the `_value` of the first record. Unlike Flagger, an answer without records is no data (Flagger
//! returns 0, which would pass a `max` threshold on a dead canary), and integer `_value`s are
//! accepted as numbers (Flagger's client reports them as an invalid response).
use std::time::Duration;

use async_trait::async_trait;

use super::evaluate::Reading;
use super::provider::{Provider, ProviderConfig, QueryContext, Settings, retimed};
use super::rest::Http;

/// Flagger's timeout for InfluxDB.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Why the provider cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad address, a missing key or an unusable HTTP client.
    #[error("influxdb: {0}")]
    Settings(#[from] Settings),
}

/// Runs Flux queries.
#[derive(Clone, Debug)]
pub struct InfluxDb {
    http: Http,
    endpoint: url::Url,
    token: Option<String>,
    org: String,
}

impl InfluxDb {
    /// The same provider with another timeout (tests).
    pub fn with_timeout(self, timeout: Duration) -> Result<Self, Error> {
        let http = retimed(self.http, timeout)?;
        Ok(Self { http, ..self })
    }

    /// Reads the address (required) and, with a Secret, `token` and `org`.
    pub fn new(config: &ProviderConfig) -> Result<Self, Error> {
        let mut endpoint = config.address_url()?;
        let path = format!("{}/api/v2/query", endpoint.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        let (token, org) = match config.secret {
            None => (None, String::new()),
            Some(_) => (
                Some(config.required_key("token")?),
                config.required_key("org")?,
            ),
        };
        Ok(Self {
            http: config
                .http()?
                .with_timeout(TIMEOUT)
                .map_err(Settings::BuildClient)?,
            endpoint,
            token,
            org,
        })
    }
}

/// Splits one CSV line into fields (RFC 4180 quoting; fields do not span lines in Flux answers
/// of numbers).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Reads the `_value` of the first record of an annotated CSV answer.
pub fn read(body: &[u8]) -> Result<Reading, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the answer is not UTF-8".to_string())?;
    let mut datatypes: Vec<String> = Vec::new();
    let mut defaults: Vec<String> = Vec::new();
    let mut header: Option<Vec<String>> = None;
    for line in text.lines().map(|l| l.trim_end_matches('\r')) {
        if line.trim().is_empty() {
            // A blank line ends a table; the next one brings its own annotations and header.
            header = None;
            datatypes.clear();
            defaults.clear();
            continue;
        }
        let row = fields(line);
        match row.first().map(String::as_str) {
            Some("#datatype") => {
                datatypes = row;
                continue;
            }
            Some("#default") => {
                defaults = row;
                continue;
            }
            Some(a) if a.starts_with('#') => continue,
            _ => {}
        }
        let Some(h) = &header else {
            if !row.iter().any(|f| f == "_value" || f == "error") {
                return Err("not an annotated CSV table with a _value column".into());
            }
            header = Some(row);
            continue;
        };
        if let Some(i) = h.iter().position(|f| f == "error") {
            let msg = row.get(i).cloned().unwrap_or_default();
            return Err(format!("query error: {msg}"));
        }
        let i = h
            .iter()
            .position(|f| f == "_value")
            .ok_or("the table has no _value column")?;
        let mut raw = row.get(i).cloned().unwrap_or_default();
        if raw.is_empty() {
            raw = defaults.get(i).cloned().unwrap_or_default();
        }
        if raw.is_empty() {
            return Ok(Reading::Empty);
        }
        let kind = datatypes.get(i).map(String::as_str).unwrap_or("double");
        return match kind {
            "double" | "long" | "unsignedLong" => raw
                .parse::<f64>()
                .map(Reading::Value)
                .map_err(|_| format!("_value {raw:?} is not a number")),
            other => Err(format!("_value has type {other}, not a number")),
        };
    }
    Ok(Reading::Empty)
}

#[async_trait]
impl Provider for InfluxDb {
    async fn query(&self, query: &str, _ctx: &QueryContext) -> Reading {
        let body = serde_json::json!({
            "query": query,
            "type": "flux",
            "dialect": {
                "annotations": ["datatype", "group", "default"],
                "delimiter": ",",
                "header": true,
            },
        });
        let mut request = self
            .http
            .client()
            .post(self.endpoint.clone())
            .query(&[("org", self.org.as_str())])
            .header("Accept", "text/csv")
            .json(&body);
        if let Some(t) = self.token.as_deref().filter(|t| !t.is_empty()) {
            request = request.header("Authorization", format!("Token {t}"));
        }
        let secrets: Vec<&str> = self.token.iter().map(String::as_str).collect();
        self.http.reading("influxdb", request, &secrets, read).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,double,string\r\n#group,false,false,true,true,false,true\r\n#default,_result,,,,,\r\n,result,table,_start,_stop,_value,_field\r\n,,0,2024-01-01T00:00:00Z,2024-01-01T00:10:00Z,99.5,rate\r\n,,0,2024-01-01T00:00:00Z,2024-01-01T00:10:00Z,12,rate\r\n\r\n";

    #[test]
    fn the_first_records_value_is_the_value() {
        assert_eq!(read(ONE.as_bytes()), Ok(Reading::Value(99.5)));
        let long = "#datatype,string,long,long\n#group,false,false,false\n#default,_result,,\n,result,table,_value\n,,0,42\n";
        assert_eq!(read(long.as_bytes()), Ok(Reading::Value(42.0)));
    }

    #[test]
    fn an_empty_answer_and_a_null_value_are_no_data() {
        assert_eq!(read(b""), Ok(Reading::Empty));
        assert_eq!(read(b"\r\n"), Ok(Reading::Empty));
        let null = "#datatype,string,long,double\n#group,false,false,false\n#default,_result,,\n,result,table,_value\n,,0,\n";
        assert_eq!(read(null.as_bytes()), Ok(Reading::Empty));
    }

    #[test]
    fn an_error_table_and_a_string_value_are_errors() {
        let err = "#datatype,string,string\n#group,true,true\n#default,,\n,error,reference\n,\"type error: bad, very bad\",897\n";
        assert_eq!(
            read(err.as_bytes()),
            Err("query error: type error: bad, very bad".into())
        );
        let s = "#datatype,string,long,string\n#group,false,false,false\n#default,_result,,\n,result,table,_value\n,,0,abc\n";
        assert!(read(s.as_bytes()).is_err());
    }
}
