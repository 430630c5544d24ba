//! The Amazon CloudWatch metrics provider: `GetMetricData` over the AWS JSON 1.0 protocol, signed
//! with SigV4, credentials from the environment, IRSA (STS web identity) or the EC2 instance
//! profile (IMDSv2); network I/O.
//!
//! Like Flagger's, the query is a JSON array of `MetricDataQuery` (field names matched without
//! regard to case, as Go's decoder does), the window is ten metric intervals ending now,
//! `MaxDatapoints` is 20 and the reading is the first value of the first result. Credentials are
//! resolved in the AWS SDK's order, minus what Serin does not implement: static keys from
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`), else IRSA
//! (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` exchanged at STS), else the instance profile
//! from the EC2 instance metadata service with an IMDSv2 session token (unless
//! `AWS_EC2_METADATA_DISABLED=true`; `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it). Temporary keys
//! are cached until 5 minutes before they expire. Shared config files, SSO and container
//! credentials are not supported.
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use super::evaluate::Reading;
use super::provider::{Env, Provider, ProviderConfig, QueryContext};
use super::rest::{self, Failure, Http};

const NAME: &str = "cloudwatch";
/// Flagger's window: ten metric intervals.
const WINDOW_INTERVALS: u32 = 10;
/// Flagger's `MaxDatapoints`.
const MAX_DATAPOINTS: u32 = 20;
/// The AWS JSON 1.0 target of GetMetricData.
pub const TARGET: &str = "GraniteServiceVersion20100801.GetMetricData";
/// Credentials are refreshed this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// The EC2 instance metadata service.
pub const IMDS_ADDRESS: &str = "http://169.254.169.254";
/// How long an IMDSv2 session token is asked for (the AWS SDKs' default).
const IMDS_TOKEN_TTL: &str = "21600";

/// Why a CloudWatch provider cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `spec.provider.region` is empty.
    #[error("cloudwatch: spec.provider.region is required")]
    MissingRegion,
    /// `spec.provider.address` is not an http(s) URL.
    #[error("cloudwatch: invalid address {0:?}: expected an http(s) URL")]
    BadAddress(String),
    /// Neither static keys nor a web identity are in the environment, and the instance
    /// metadata service is disabled.
    #[error(
        "cloudwatch: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (IRSA), or unset AWS_EC2_METADATA_DISABLED to use the instance profile"
    )]
    NoCredentials,
    /// Only one of the two static keys is set.
    #[error("cloudwatch: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together")]
    HalfCredentials,
    /// The HTTP client could not be built.
    #[error("cloudwatch: cannot build the HTTP client: {0}")]
    BuildClient(#[source] reqwest::Error),
}

impl Error {
    /// A short label for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::MissingRegion | Self::BadAddress(_) => "InvalidProvider",
            Self::NoCredentials | Self::HalfCredentials => "MissingCredentials",
            Self::BuildClient(_) => "BuildClient",
        }
    }
}

/// AWS keys.
#[derive(Clone)]
pub struct Keys {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// When temporary credentials expire.
    pub expires: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Keys {
    // Keys never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({}, <redacted>)", self.access_key_id)
    }
}

/// Where credentials come from.
#[derive(Clone, Debug)]
enum Source {
    Static(Keys),
    WebIdentity {
        token_file: PathBuf,
        role_arn: String,
        session_name: String,
        sts: String,
    },
    InstanceProfile {
        imds: String,
    },
}

/// Runs GetMetricData queries in one region.
#[derive(Debug)]
pub struct CloudWatch {
    http: Http,
    endpoint: String,
    region: String,
    source: Source,
    cached: Mutex<Option<Keys>>,
}

impl CloudWatch {
    /// Reads the region and address from the template and the credentials from the process
    /// environment.
    pub fn new(config: &ProviderConfig) -> Result<Self, Error> {
        Self::with_env(config, |k| std::env::var(k).ok())
    }

    /// As [`CloudWatch::new`], with the environment given (tests).
    pub fn with_env(config: &ProviderConfig, env: impl Env) -> Result<Self, Error> {
        let region = config
            .spec
            .region
            .clone()
            .filter(|r| !r.trim().is_empty())
            .ok_or(Error::MissingRegion)?;
        let endpoint = match config.spec.address.as_deref().filter(|a| !a.is_empty()) {
            Some(a) => checked_url(a)?,
            None => format!("https://monitoring.{region}.{}", dns_suffix(&region)),
        };
        let var = |k: &str| env(k).filter(|v| !v.is_empty());
        let source = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Source::Static(Keys {
                access_key_id,
                secret_access_key,
                session_token: var("AWS_SESSION_TOKEN"),
                expires: None,
            }),
            (Some(_), None) | (None, Some(_)) => return Err(Error::HalfCredentials),
            (None, None) => match (var("AWS_WEB_IDENTITY_TOKEN_FILE"), var("AWS_ROLE_ARN")) {
                (Some(file), Some(role_arn)) => {
                    let sts = match var("AWS_ENDPOINT_URL_STS").or_else(|| var("AWS_ENDPOINT_URL"))
                    {
                        Some(u) => checked_url(&u)?,
                        None => format!("https://sts.{region}.{}", dns_suffix(&region)),
                    };
                    Source::WebIdentity {
                        token_file: file.into(),
                        role_arn,
                        session_name: var("AWS_ROLE_SESSION_NAME")
                            .unwrap_or_else(|| "serin-cloudwatch".into()),
                        sts,
                    }
                }
                _ if var("AWS_EC2_METADATA_DISABLED")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")) =>
                {
                    return Err(Error::NoCredentials);
                }
                _ => Source::InstanceProfile {
                    imds: match var("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
                        Some(u) => checked_url(&u)?,
                        None => IMDS_ADDRESS.into(),
                    },
                },
            },
        };
        Ok(Self {
            http: Http::new(config.spec.insecure_skip_verify.unwrap_or(false))
                .map_err(Error::BuildClient)?,
            endpoint,
            region,
            source,
            cached: Mutex::new(None),
        })
    }

    /// The GetMetricData URL.
    pub fn endpoint(&self) -> String {
        format!("{}/", self.endpoint)
    }

    async fn run(&self, query: &str, ctx: &QueryContext) -> Result<Reading, Failure> {
        let queries = parse_query(query)?;
        let window = ctx.interval * WINDOW_INTERVALS;
        let start = ctx.now - chrono::Duration::from_std(window).unwrap_or_default();
        let body = serde_json::json!({
            "MetricDataQueries": queries,
            "StartTime": start.timestamp(),
            "EndTime": ctx.now.timestamp(),
            "MaxDatapoints": MAX_DATAPOINTS,
        });
        let body = serde_json::to_vec(&body).map_err(|e| Failure(format!("{NAME}: {e}")))?;
        let keys = self.keys(ctx.now).await?;
        let url = self.endpoint();
        let content_type = "application/x-amz-json-1.0";
        let signed = sign(
            &keys,
            &self.region,
            &url,
            &[("content-type", content_type), ("x-amz-target", TARGET)],
            &body,
            ctx.now.into(),
        )?;
        let mut req = self
            .http
            .client()
            .post(&url)
            .header("content-type", content_type)
            .header("x-amz-target", TARGET)
            .body(body);
        for (k, v) in signed {
            req = req.header(k, v);
        }
        let secrets: Vec<&str> = [
            Some(keys.secret_access_key.as_str()),
            keys.session_token.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let answer = self.http.send(NAME, req, &secrets).await?;
        read(&answer)
    }

    /// The current keys: static ones, or temporary ones (IRSA, instance profile) refreshed when
    /// close to expiry.
    async fn keys(&self, now: DateTime<Utc>) -> Result<Keys, Failure> {
        if let Source::Static(k) = &self.source {
            return Ok(k.clone());
        }
        let mut cached = self.cached.lock().await;
        if let Some(k) = cached.as_ref() {
            let fresh = k.expires.is_none_or(|e| {
                e - chrono::Duration::from_std(REFRESH_BEFORE).unwrap_or_default() > now
            });
            if fresh {
                return Ok(k.clone());
            }
        }
        let keys = match &self.source {
            Source::Static(k) => k.clone(),
            Source::WebIdentity {
                token_file,
                role_arn,
                session_name,
                sts,
            } => {
                self.web_identity_keys(token_file, role_arn, session_name, sts)
                    .await?
            }
            Source::InstanceProfile { imds } => self.instance_profile_keys(imds).await?,
        };
        *cached = Some(keys.clone());
        Ok(keys)
    }

    /// Exchanges the web identity token at STS (AssumeRoleWithWebIdentity).
    async fn web_identity_keys(
        &self,
        token_file: &std::path::Path,
        role_arn: &str,
        session_name: &str,
        sts: &str,
    ) -> Result<Keys, Failure> {
        let token = tokio::fs::read_to_string(token_file).await.map_err(|e| {
            Failure(format!(
                "{NAME}: cannot read the web identity token {}: {e}",
                token_file.display()
            ))
        })?;
        let token = token.trim();
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "AssumeRoleWithWebIdentity")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", role_arn)
            .append_pair("RoleSessionName", session_name)
            .append_pair("WebIdentityToken", token)
            .finish();
        let req = self
            .http
            .client()
            .post(format!("{sts}/"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form);
        let answer = self.http.send(NAME, req, &[token]).await?;
        read_sts(&answer).ok_or_else(|| {
            rest::unparsable(
                NAME,
                &answer,
                "no Credentials in the AssumeRoleWithWebIdentity answer",
                &[],
            )
        })
    }

    /// The instance profile's keys from the instance metadata service: an IMDSv2 session token
    /// (`PUT /latest/api/token`), the role name, then the role's credentials.
    async fn instance_profile_keys(&self, imds: &str) -> Result<Keys, Failure> {
        let client = self.http.client();
        let token = self
            .http
            .send(
                NAME,
                client
                    .put(format!("{imds}/latest/api/token"))
                    .header("x-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL),
                &[],
            )
            .await?;
        let token = String::from_utf8_lossy(&token).trim().to_string();
        let base = format!("{imds}/latest/meta-data/iam/security-credentials/");
        let roles = self
            .http
            .send(
                NAME,
                client.get(&base).header("x-aws-ec2-metadata-token", &token),
                &[&token],
            )
            .await?;
        let roles = String::from_utf8_lossy(&roles);
        let role = roles.lines().next().unwrap_or_default().trim();
        if role.is_empty() {
            return Err(Failure(format!(
                "{NAME}: the instance has no IAM role: the instance metadata service lists none at {base}"
            )));
        }
        let body = self
            .http
            .send(
                NAME,
                client
                    .get(format!("{base}{role}"))
                    .header("x-aws-ec2-metadata-token", &token),
                &[&token],
            )
            .await?;
        read_instance_credentials(&body)
    }
}

#[async_trait]
impl Provider for CloudWatch {
    async fn query(&self, query: &str, ctx: &QueryContext) -> Reading {
        self.run(query, ctx)
            .await
            .unwrap_or_else(|f| Reading::Failed(f.0))
    }
}

fn checked_url(a: &str) -> Result<String, Error> {
    match url::Url::parse(a) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(a.trim_end_matches('/').to_string())
        }
        _ => Err(Error::BadAddress(a.to_string())),
    }
}

fn dns_suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// The fields of `MetricDataQuery` and its parts, spelled as the API wants them.
const FIELDS: [&str; 15] = [
    "Id",
    "AccountId",
    "Expression",
    "Label",
    "MetricStat",
    "Metric",
    "Namespace",
    "MetricName",
    "Dimensions",
    "Name",
    "Value",
    "Period",
    "Stat",
    "Unit",
    "ReturnData",
];

/// Parses the query as a JSON array of `MetricDataQuery`; keys are matched without regard to
/// case and unknown keys dropped, as Go's `encoding/json` does for Flagger.
pub fn parse_query(query: &str) -> Result<Value, Failure> {
    let v: Value = serde_json::from_str(query).map_err(|e| {
        Failure(format!(
            "{NAME}: the query is not a JSON array of MetricDataQuery: {e}"
        ))
    })?;
    if !v.is_array() {
        return Err(Failure(format!(
            "{NAME}: the query is not a JSON array of MetricDataQuery"
        )));
    }
    Ok(canonical(v))
}

fn canonical(v: Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter_map(|(k, v)| {
                    FIELDS
                        .iter()
                        .find(|f| f.eq_ignore_ascii_case(&k))
                        .map(|f| (f.to_string(), canonical(v)))
                })
                .collect(),
        ),
        other => other,
    }
}

/// Signs a POST and returns the headers to add (`x-amz-date`, `authorization`, and
/// `x-amz-security-token` for temporary keys).
pub fn sign(
    keys: &Keys,
    region: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    at: SystemTime,
) -> Result<Vec<(String, String)>, Failure> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
    let fail = |e: &dyn std::fmt::Display| Failure(format!("{NAME}: cannot sign the request: {e}"));
    let creds = aws_credential_types::Credentials::new(
        keys.access_key_id.clone(),
        keys.secret_access_key.clone(),
        keys.session_token.clone(),
        None,
        "serin",
    );
    let identity = creds.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("monitoring")
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| fail(&e))?
        .into();
    let req = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| fail(&e))?;
    let out = aws_sigv4::http_request::sign(req, &params).map_err(|e| fail(&e))?;
    Ok(out
        .output()
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Output {
    #[serde(default)]
    metric_data_results: Vec<MetricDataResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDataResult {
    #[serde(default)]
    values: Vec<f64>,
}

/// Reads a GetMetricData answer: the first value of the first result (CloudWatch sorts values
/// newest first); no result or no value is no data.
pub fn read(body: &[u8]) -> Result<Reading, Failure> {
    let out: Output =
        serde_json::from_slice(body).map_err(|e| rest::unparsable(NAME, body, e, &[]))?;
    Ok(
        match out
            .metric_data_results
            .first()
            .and_then(|r| r.values.first())
        {
            Some(v) => Reading::Value(*v),
            None => Reading::Empty,
        },
    )
}

/// The keys in an instance metadata credentials answer (`{"Code":"Success","AccessKeyId":…}`).
/// The body holds the secret key, so a failure never quotes it.
pub fn read_instance_credentials(body: &[u8]) -> Result<Keys, Failure> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        code: Option<String>,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
        token: Option<String>,
        expiration: Option<DateTime<Utc>>,
    }
    let fail = |why: &str| {
        Failure(format!(
            "{NAME}: cannot read the instance profile credentials: {why}"
        ))
    };
    let a: Answer = serde_json::from_slice(body).map_err(|_| fail("not the documented JSON"))?;
    if let Some(code) = a.code.as_deref().filter(|c| *c != "Success") {
        return Err(fail(&format!("Code is {code:?}")));
    }
    match (a.access_key_id, a.secret_access_key) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Keys {
            access_key_id,
            secret_access_key,
            session_token: a.token,
            expires: a.expiration,
        }),
        _ => Err(fail("no AccessKeyId or SecretAccessKey")),
    }
}

/// The keys in an AssumeRoleWithWebIdentity XML answer.
fn read_sts(body: &[u8]) -> Option<Keys> {
    let xml = String::from_utf8_lossy(body);
    let creds = element(&xml, "Credentials")?;
    Some(Keys {
        access_key_id: element(creds, "AccessKeyId")?.trim().to_string(),
        secret_access_key: element(creds, "SecretAccessKey")?.trim().to_string(),
        session_token: Some(unescape(element(creds, "SessionToken")?.trim())),
        expires: element(creds, "Expiration")
            .and_then(|e| DateTime::parse_from_rfc3339(e.trim()).ok())
            .map(|e| e.with_timezone(&Utc)),
    })
}

/// The text between `<tag>` and `</tag>`.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(&xml[start..start + len])
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(region: Option<&str>, address: Option<&str>) -> ProviderConfig {
        let mut c = ProviderConfig::default();
        c.spec.type_ = "cloudwatch".into();
        c.spec.region = region.map(Into::into);
        c.spec.address = address.map(Into::into);
        c
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_region_and_credentials_are_required() {
        let keys = env(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]);
        assert!(matches!(
            CloudWatch::with_env(&config(None, None), &keys),
            Err(Error::MissingRegion)
        ));
        // Without keys or a web identity the instance profile is asked, unless disabled.
        assert!(CloudWatch::with_env(&config(Some("eu-west-1"), None), env(&[])).is_ok());
        assert!(matches!(
            CloudWatch::with_env(
                &config(Some("eu-west-1"), None),
                env(&[("AWS_EC2_METADATA_DISABLED", "true")])
            ),
            Err(Error::NoCredentials)
        ));
        assert!(matches!(
            CloudWatch::with_env(
                &config(Some("eu-west-1"), None),
                env(&[("AWS_ACCESS_KEY_ID", "AKID")])
            ),
            Err(Error::HalfCredentials)
        ));
        assert!(matches!(
            CloudWatch::with_env(&config(Some("eu-west-1"), Some("ftp://x")), &keys),
            Err(Error::BadAddress(_))
        ));
    }

    #[test]
    fn instance_credentials_are_read_without_quoting_the_secret() {
        let k = read_instance_credentials(
            br#"{"Code":"Success","LastUpdated":"2024-03-01T12:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAIMDS","SecretAccessKey":"imdsSecret","Token":"imdsToken","Expiration":"2024-03-01T18:00:00Z"}"#,
        )
        .expect("keys");
        assert_eq!(k.access_key_id, "ASIAIMDS");
        assert_eq!(k.session_token.as_deref(), Some("imdsToken"));
        assert_eq!(k.expires.map(|e| e.timestamp()), Some(1_709_316_000));
        let bad = read_instance_credentials(br#"{"Code":"Failed","SecretAccessKey":"imdsSecret"}"#);
        assert!(
            matches!(&bad, Err(f) if f.0.contains("\"Failed\"") && !f.0.contains("imdsSecret")),
            "{bad:?}"
        );
    }

    #[test]
    fn the_endpoint_is_regional_unless_an_address_overrides_it() {
        let keys = env(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]);
        let cw = CloudWatch::with_env(&config(Some("eu-west-1"), None), &keys).expect("built");
        assert_eq!(cw.endpoint(), "https://monitoring.eu-west-1.amazonaws.com/");
        let cn = CloudWatch::with_env(&config(Some("cn-north-1"), None), &keys).expect("built");
        assert_eq!(
            cn.endpoint(),
            "https://monitoring.cn-north-1.amazonaws.com.cn/"
        );
        let local = CloudWatch::with_env(
            &config(Some("eu-west-1"), Some("http://127.0.0.1:9/")),
            &keys,
        )
        .expect("built");
        assert_eq!(local.endpoint(), "http://127.0.0.1:9/");
    }

    #[test]
    fn query_keys_are_matched_without_case_and_unknown_keys_dropped() {
        let q = parse_query(
            r#"[{"id":"e1","expression":"m1/m2","returnData":true,"bogus":1},
                {"Id":"m1","MetricStat":{"metric":{"namespace":"AWS/ELB","metricName":"HTTPCode_Backend_5XX",
                 "dimensions":[{"name":"LoadBalancerName","value":"lb"}]},"period":60,"stat":"Sum"},"ReturnData":false}]"#,
        )
        .expect("parsed");
        assert_eq!(
            q,
            serde_json::json!([
                {"Id":"e1","Expression":"m1/m2","ReturnData":true},
                {"Id":"m1","MetricStat":{"Metric":{"Namespace":"AWS/ELB","MetricName":"HTTPCode_Backend_5XX",
                 "Dimensions":[{"Name":"LoadBalancerName","Value":"lb"}]},"Period":60,"Stat":"Sum"},"ReturnData":false}
            ])
        );
        assert!(parse_query(r#"{"Id":"x"}"#).is_err());
        assert!(parse_query("sum(rate(x[1m]))").is_err());
    }

    #[test]
    fn the_first_value_of_the_first_result_is_the_reading() {
        assert_eq!(
            read(br#"{"MetricDataResults":[{"Id":"e1","Values":[0.5,0.7],"Timestamps":[2,1],"StatusCode":"Complete"},{"Id":"x","Values":[9]}],"Messages":[]}"#),
            Ok(Reading::Value(0.5))
        );
        assert_eq!(
            read(br#"{"MetricDataResults":[{"Id":"e1","Values":[],"Timestamps":[]}]}"#),
            Ok(Reading::Empty)
        );
        assert_eq!(read(br#"{"MetricDataResults":[]}"#), Ok(Reading::Empty));
        assert!(read(b"<html>").is_err());
    }

    #[test]
    fn sts_answers_give_temporary_keys() {
        let xml = br#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <SessionToken>tok&amp;en</SessionToken>
      <SecretAccessKey>secret</SecretAccessKey>
      <Expiration>2030-10-24T23:00:23Z</Expiration>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;
        let k = read_sts(xml).expect("keys");
        assert_eq!(k.access_key_id, "ASIAEXAMPLE");
        assert_eq!(k.secret_access_key, "secret");
        assert_eq!(k.session_token.as_deref(), Some("tok&en"));
        assert_eq!(
            k.expires.map(|e| e.to_rfc3339()),
            Some("2030-10-24T23:00:23+00:00".into())
        );
        assert!(read_sts(b"<Error/>").is_none());
    }
}
