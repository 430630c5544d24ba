//! The Google Cloud Monitoring (Stackdriver) metrics provider: MQL through the REST
//! `projects.timeSeries.query` method with an OAuth2 token from a service-account key or the
//! metadata server (workload identity); network I/O.
//!
//! Like Flagger's: with a `secretRef` the Secret must hold `project` and may hold
//! `serviceAccountKey` (a JSON key); without a key Application Default Credentials are used
//! (`GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server); the reading is the first value of
//! the first point of the first time series. Unlike Flagger: without a `secretRef` the project is
//! read from the key file or the metadata server (Flagger sends an empty project and fails), and
//! an `int64Value` point is read as a number (Flagger reads it as 0).
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use super::evaluate::Reading;
use super::provider::{Env, Provider, ProviderConfig, QueryContext};
use super::rest::{self, Failure, Http};

const NAME: &str = "stackdriver";
/// The Cloud Monitoring API.
pub const DEFAULT_ADDRESS: &str = "https://monitoring.googleapis.com";
/// The metadata server (GKE workload identity, GCE).
pub const METADATA_ADDRESS: &str = "http://metadata.google.internal";
/// The scope asked for in service-account JWTs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/monitoring.read";
/// Tokens are renewed this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(60);

/// Why a Stackdriver provider cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Secret lacks a required key.
    #[error("stackdriver: the secret does not contain `{0}`")]
    MissingKey(&'static str),
    /// `spec.provider.address` is not an http(s) URL.
    #[error("stackdriver: invalid address {0:?}: expected an http(s) URL")]
    BadAddress(String),
    /// The service-account key is unusable.
    #[error("stackdriver: bad service-account key: {0}")]
    BadCredentials(String),
    /// `GOOGLE_APPLICATION_CREDENTIALS` names a file that cannot be read.
    #[error("stackdriver: cannot read GOOGLE_APPLICATION_CREDENTIALS {path}: {source}")]
    ReadCredentialsFile {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("stackdriver: cannot build the HTTP client: {0}")]
    BuildClient(#[source] reqwest::Error),
}

impl Error {
    /// A short label for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::MissingKey(_) | Self::BadCredentials(_) | Self::ReadCredentialsFile { .. } => {
                "MissingCredentials"
            }
            Self::BadAddress(_) => "InvalidProvider",
            Self::BuildClient(_) => "BuildClient",
        }
    }
}

/// The parts of a service-account JSON key that sign a token request.
struct ServiceAccount {
    client_email: String,
    private_key_id: Option<String>,
    token_uri: String,
    key: ring::signature::RsaKeyPair,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceAccount({}, <redacted>)", self.client_email)
    }
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type", default)]
    type_: String,
    #[serde(default)]
    project_id: Option<String>,
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

impl ServiceAccount {
    /// Reads a JSON key; returns it and its `project_id`.
    fn parse(json: &[u8]) -> Result<(Self, Option<String>), Error> {
        let f: KeyFile = serde_json::from_slice(json)
            .map_err(|e| Error::BadCredentials(format!("not a JSON key file: {e}")))?;
        if f.type_ != "service_account" {
            return Err(Error::BadCredentials(format!(
                "type is {:?}, expected \"service_account\"",
                f.type_
            )));
        }
        let der = pem_body(&f.private_key)
            .ok_or_else(|| Error::BadCredentials("private_key is not a PEM block".into()))?;
        let key = ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| {
            Error::BadCredentials(format!("private_key is not a PKCS#8 RSA key: {e}"))
        })?;
        Ok((
            Self {
                client_email: f.client_email,
                private_key_id: f.private_key_id,
                token_uri: f
                    .token_uri
                    .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
                key,
            },
            f.project_id,
        ))
    }

    /// A signed RS256 JWT asking for [`SCOPE`], valid for an hour from `now`.
    fn assertion(&self, now: DateTime<Utc>) -> Result<String, Failure> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = Value::String(kid.clone());
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now.timestamp(),
            "exp": now.timestamp() + 3600,
        });
        let signing_input = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| Failure(format!("{NAME}: cannot sign the token request")))?;
        Ok(format!("{signing_input}.{}", b64.encode(sig)))
    }
}

/// The DER inside a PEM block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let b64: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN "))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END "))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

#[derive(Clone)]
struct Token {
    value: String,
    expires: DateTime<Utc>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// Runs MQL queries in one project.
#[derive(Debug)]
pub struct Stackdriver {
    http: Http,
    endpoint: String,
    metadata: String,
    project: Mutex<Option<String>>,
    account: Option<ServiceAccount>,
    token: Mutex<Option<Token>>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(<redacted>, {})", self.expires)
    }
}

impl Stackdriver {
    /// Reads the project and key from the Secret, else Application Default Credentials from the
    /// process environment.
    pub fn new(config: &ProviderConfig) -> Result<Self, Error> {
        Self::with_env(config, |k| std::env::var(k).ok())
    }

    /// As [`Stackdriver::new`], with the environment given (tests). `GCE_METADATA_HOST`
    /// (`host:port`, as Google's libraries read it) moves the metadata server.
    pub fn with_env(config: &ProviderConfig, env: impl Env) -> Result<Self, Error> {
        let secret = config.secret.as_ref();
        let mut project = None;
        let mut key_json = None;
        if config.spec.secret_ref.is_some() {
            project = Some(
                super::provider::secret_text(secret, "project")
                    .ok_or(Error::MissingKey("project"))?,
            );
            key_json = secret
                .and_then(|s| s.get("serviceAccountKey"))
                .filter(|k| !k.is_empty())
                .cloned();
        }
        if key_json.is_none()
            && let Some(path) = env("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty())
        {
            key_json = Some(
                std::fs::read(&path).map_err(|source| Error::ReadCredentialsFile {
                    path: path.clone(),
                    source,
                })?,
            );
        }
        let account = match key_json {
            Some(json) => {
                let (account, key_project) = ServiceAccount::parse(&json)?;
                project = project.or(key_project);
                Some(account)
            }
            None => None,
        };
        let endpoint = match config.spec.address.as_deref().filter(|a| !a.is_empty()) {
            Some(a) => match url::Url::parse(a) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    a.trim_end_matches('/').to_string()
                }
                _ => return Err(Error::BadAddress(a.into())),
            },
            None => DEFAULT_ADDRESS.into(),
        };
        let metadata = env("GCE_METADATA_HOST")
            .filter(|h| !h.is_empty())
            .map(|h| format!("http://{h}"))
            .unwrap_or_else(|| METADATA_ADDRESS.into());
        Ok(Self {
            http: Http::new(config.spec.insecure_skip_verify.unwrap_or(false))
                .map_err(Error::BuildClient)?,
            endpoint,
            metadata,
            project: Mutex::new(project),
            account,
            token: Mutex::new(None),
        })
    }

    async fn run(&self, query: &str, ctx: &QueryContext) -> Result<Reading, Failure> {
        let project = self.project().await?;
        let token = self.token(ctx.now).await?;
        let url = format!(
            "{}/v3/projects/{}/timeSeries:query",
            self.endpoint,
            url::form_urlencoded::byte_serialize(project.as_bytes()).collect::<String>()
        );
        let req = self
            .http
            .client()
            .post(url)
            .bearer_auth(&token)
            .json(&serde_json::json!({ "query": query }));
        let body = self.http.send(NAME, req, &[&token]).await?;
        read(&body)
    }

    async fn project(&self) -> Result<String, Failure> {
        let mut project = self.project.lock().await;
        if let Some(p) = project.as_ref() {
            return Ok(p.clone());
        }
        let req = self
            .http
            .client()
            .get(format!(
                "{}/computeMetadata/v1/project/project-id",
                self.metadata
            ))
            .header("Metadata-Flavor", "Google");
        let body = self.http.send(NAME, req, &[]).await?;
        let id = String::from_utf8_lossy(&body).trim().to_string();
        if id.is_empty() {
            return Err(Failure(format!(
                "{NAME}: the metadata server returned no project id"
            )));
        }
        *project = Some(id.clone());
        Ok(id)
    }

    async fn token(&self, now: DateTime<Utc>) -> Result<String, Failure> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && t.expires - chrono::Duration::from_std(REFRESH_BEFORE).unwrap_or_default() > now
        {
            return Ok(t.value.clone());
        }
        let req = match &self.account {
            Some(account) => {
                let assertion = account.assertion(now)?;
                let form = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
                    .append_pair("assertion", &assertion)
                    .finish();
                self.http
                    .client()
                    .post(&account.token_uri)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form)
            }
            None => self
                .http
                .client()
                .get(format!(
                    "{}/computeMetadata/v1/instance/service-accounts/default/token",
                    self.metadata
                ))
                .header("Metadata-Flavor", "Google"),
        };
        let body = self.http.send(NAME, req, &[]).await?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| rest::unparsable(NAME, b"<token answer>", e, &[]))?;
        let token = Token {
            value: answer.access_token,
            expires: now + chrono::Duration::seconds(answer.expires_in.unwrap_or(3600)),
        };
        *cached = Some(token.clone());
        Ok(token.value)
    }
}

#[async_trait]
impl Provider for Stackdriver {
    async fn query(&self, query: &str, ctx: &QueryContext) -> Reading {
        self.run(query, ctx)
            .await
            .unwrap_or_else(|f| Reading::Failed(f.0))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryAnswer {
    #[serde(default)]
    time_series_data: Vec<TimeSeriesData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimeSeriesData {
    #[serde(default)]
    point_data: Vec<PointData>,
}

#[derive(Deserialize)]
struct PointData {
    #[serde(default)]
    values: Vec<Value>,
}

/// Reads a `timeSeries:query` answer: the first value of the first point of the first series;
/// no series, point or value is no data.
pub fn read(body: &[u8]) -> Result<Reading, Failure> {
    let answer: QueryAnswer =
        serde_json::from_slice(body).map_err(|e| rest::unparsable(NAME, body, e, &[]))?;
    let Some(value) = answer
        .time_series_data
        .first()
        .and_then(|s| s.point_data.first())
        .and_then(|p| p.values.first())
    else {
        return Ok(Reading::Empty);
    };
    if let Some(d) = value.get("doubleValue") {
        // JSON carries NaN and infinities as strings.
        return match d {
            Value::Number(n) => Ok(Reading::Value(n.as_f64().unwrap_or(f64::NAN))),
            Value::String(s) => Ok(Reading::Value(s.parse().unwrap_or(f64::NAN))),
            _ => Err(rest::unparsable(
                NAME,
                body,
                "doubleValue is not a number",
                &[],
            )),
        };
    }
    if let Some(i) = value.get("int64Value") {
        // int64 is a JSON string in Google's REST mapping.
        let n = match i {
            Value::String(s) => s.parse::<i64>().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        };
        return n
            .map(|n| Reading::Value(n as f64))
            .ok_or_else(|| rest::unparsable(NAME, body, "int64Value is not an integer", &[]));
    }
    Err(rest::unparsable(
        NAME,
        body,
        "the first point is neither a doubleValue nor an int64Value",
        &[],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_value_of_the_first_point_is_the_reading() {
        let body = br#"{"timeSeriesDescriptor":{"pointDescriptors":[{"key":"value.ratio","valueType":"DOUBLE"}]},
            "timeSeriesData":[{"labelValues":[{"stringValue":"podinfo"}],
              "pointData":[{"values":[{"doubleValue":0.25}],"timeInterval":{"endTime":"2024-01-01T00:01:00Z"}},
                           {"values":[{"doubleValue":0.5}]}]},
              {"pointData":[{"values":[{"doubleValue":9}]}]}]}"#;
        assert_eq!(read(body), Ok(Reading::Value(0.25)));
        assert_eq!(
            read(br#"{"timeSeriesData":[{"pointData":[{"values":[{"int64Value":"42"}]}]}]}"#),
            Ok(Reading::Value(42.0))
        );
        assert!(matches!(
            read(br#"{"timeSeriesData":[{"pointData":[{"values":[{"doubleValue":"NaN"}]}]}]}"#),
            Ok(Reading::Value(v)) if v.is_nan()
        ));
    }

    #[test]
    fn no_series_or_points_is_no_data_and_other_shapes_are_errors() {
        assert_eq!(read(b"{}"), Ok(Reading::Empty));
        assert_eq!(
            read(br#"{"timeSeriesDescriptor":{},"timeSeriesData":[{"pointData":[]}]}"#),
            Ok(Reading::Empty)
        );
        assert!(
            read(br#"{"timeSeriesData":[{"pointData":[{"values":[{"stringValue":"x"}]}]}]}"#)
                .is_err()
        );
        assert!(read(b"not json").is_err());
    }

    #[test]
    fn a_secret_ref_requires_a_project_and_a_bad_key_is_refused() {
        let mut c = ProviderConfig::default();
        c.spec.type_ = "stackdriver".into();
        c.spec.secret_ref = Some(crate::api::metric_template::SecretRef { name: "gcp".into() });
        c.secret = Some(Default::default());
        assert!(matches!(
            Stackdriver::with_env(&c, |_| None),
            Err(Error::MissingKey("project"))
        ));
        c.secret = Some(
            [
                ("project".to_string(), b"my-project".to_vec()),
                ("serviceAccountKey".to_string(), b"{}".to_vec()),
            ]
            .into(),
        );
        assert!(matches!(
            Stackdriver::with_env(&c, |_| None),
            Err(Error::BadCredentials(_))
        ));
    }

    #[test]
    fn pem_blocks_are_decoded() {
        assert_eq!(
            pem_body("-----BEGIN PRIVATE KEY-----\nAAEC\nAw==\n-----END PRIVATE KEY-----\n"),
            Some(vec![0, 1, 2, 3])
        );
    }
}
