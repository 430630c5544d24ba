//! CloudWatch, Stackdriver, Splunk, external metrics and Keptn providers against local servers
//! that check what the real APIs require (paths, parameters, headers, SigV4 and JWT
//! credentials) and answer with their documented shapes, and against the embedded cluster.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::{Value, json};
use serin::api::metric_template::SecretRef;
use serin::metrics::evaluate::Reading;
use serin::metrics::provider::{Provider, ProviderConfig, QueryContext};
use serin::metrics::{cloudwatch, externalmetrics, keptn, splunk, stackdriver};

// ---------------------------------------------------------------------------------------------
// The local servers are shared with the end-to-end suite.

#[path = "support/vendors.rs"]
mod vendors;
use vendors::{Answer, Req, Server, ok, sse};

fn ctx(now: DateTime<Utc>) -> QueryContext {
    QueryContext {
        interval: Duration::from_secs(60),
        now,
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 12, 30, 15)
        .single()
        .expect("time")
}

fn secret(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Vec<u8>>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
    )
}

fn config(kind: &str, address: Option<&str>) -> ProviderConfig {
    let mut c = ProviderConfig::default();
    c.spec.type_ = kind.into();
    c.spec.address = address.map(Into::into);
    c
}

fn failed(r: &Reading) -> &str {
    match r {
        Reading::Failed(m) => m,
        other => panic!("expected a failure, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// SigV4, recomputed independently of the signer under test.

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, data.as_bytes()).as_ref().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The SigV4 signature of a request, from the AWS documentation's four steps.
#[allow(clippy::too_many_arguments)]
fn sigv4(
    method: &str,
    path: &str,
    canonical_query: &str,
    headers: &[(String, String)],
    body: &[u8],
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
) -> String {
    let mut hs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_lowercase(), v.trim().to_string()))
        .collect();
    hs.sort();
    let canonical_headers: String = hs.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = hs.iter().map(|(k, _)| k.as_str()).collect();
    let canonical = format!(
        "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{}\n{}",
        signed.join(";"),
        sha256_hex(body)
    );
    let date = &amz_date[..8];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), date);
    let k = hmac(&k, region);
    let k = hmac(&k, service);
    let k = hmac(&k, "aws4_request");
    hex(&hmac(&k, &to_sign))
}

#[test]
fn the_test_sigv4_verifier_reproduces_the_aws_documentation_example() {
    // The IAM ListUsers example of the AWS SigV4 documentation.
    let sig = sigv4(
        "GET",
        "/",
        "Action=ListUsers&Version=2010-05-08",
        &[
            (
                "content-type".into(),
                "application/x-www-form-urlencoded; charset=utf-8".into(),
            ),
            ("host".into(), "iam.amazonaws.com".into()),
            ("x-amz-date".into(), "20150830T123600Z".into()),
        ],
        b"",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "20150830T123600Z",
        "us-east-1",
        "iam",
    );
    assert_eq!(
        sig,
        "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    );
}

/// Checks a CloudWatch request's Authorization header and recomputes its signature.
fn verify_sigv4(req: &Req, access_key: &str, secret: &str, region: &str) {
    let auth = req.header("authorization").expect("authorization");
    let amz_date = req.header("x-amz-date").expect("x-amz-date");
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .unwrap_or_else(|| panic!("algorithm: {auth}"));
    let parts: BTreeMap<&str, &str> = rest.split(", ").filter_map(|p| p.split_once('=')).collect();
    assert_eq!(
        parts.get("Credential").copied(),
        Some(
            format!(
                "{access_key}/{}/{region}/monitoring/aws4_request",
                &amz_date[..8]
            )
            .as_str()
        )
    );
    let signed = parts.get("SignedHeaders").expect("SignedHeaders");
    for h in ["content-type", "host", "x-amz-date", "x-amz-target"] {
        assert!(
            signed.split(';').any(|s| s == h),
            "{h} not signed: {signed}"
        );
    }
    let headers: Vec<(String, String)> = signed
        .split(';')
        .map(|h| {
            (
                h.to_string(),
                req.header(h)
                    .unwrap_or_else(|| panic!("{h} sent"))
                    .to_string(),
            )
        })
        .collect();
    let want = sigv4(
        req.method.as_str(),
        &req.path,
        "",
        &headers,
        &req.body,
        secret,
        amz_date,
        region,
        "monitoring",
    );
    assert_eq!(parts.get("Signature").copied(), Some(want.as_str()));
}

// ---------------------------------------------------------------------------------------------
// CloudWatch

const CW_QUERY: &str = r#"[{"Id":"e1","Expression":"m1 / m2","Label":"ErrorRate"},
  {"Id":"m1","MetricStat":{"Metric":{"Namespace":"MyKamon","MetricName":"http.server.requests.count",
   "Dimensions":[{"Name":"status_code","Value":"5xx"}]},"Period":60,"Stat":"Sum","Unit":"Count"},"ReturnData":false},
  {"Id":"m2","MetricStat":{"Metric":{"Namespace":"MyKamon","MetricName":"http.server.requests.count"},"Period":60,"Stat":"Sum","Unit":"Count"},"ReturnData":false}]"#;

fn cw_env(
    pairs: Vec<(&'static str, String)>,
) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
}

fn cloudwatch_at(server: &Server, env: impl Fn(&str) -> Option<String>) -> cloudwatch::CloudWatch {
    let mut c = config("cloudwatch", Some(&server.base));
    c.spec.region = Some("eu-west-1".into());
    cloudwatch::CloudWatch::with_env(&c, env).expect("built")
}

fn cw_answer(req: &Req) -> Answer {
    let q = req.json();
    let first = q["MetricDataQueries"][0]["Id"].as_str().unwrap_or_default();
    match first {
        "empty" => ok(
            "application/x-amz-json-1.0",
            r#"{"MetricDataResults":[{"Id":"empty","Label":"x","Timestamps":[],"Values":[],"StatusCode":"Complete"}],"Messages":[]}"#,
        ),
        "denied" => (
            400,
            "application/x-amz-json-1.0",
            r#"{"__type":"com.amazon.coral.service#AccessDeniedException","message":"User: arn:aws:sts::1:assumed-role/x is not authorized to perform: cloudwatch:GetMetricData"}"#.into(),
            Duration::ZERO,
        ),
        "forbidden" => (403, "application/json", r#"{"__type":"InvalidSignatureException","message":"The request signature we calculated does not match"}"#.into(), Duration::ZERO),
        "broken" => (503, "text/plain", "Service Unavailable".into(), Duration::ZERO),
        "slow" => (200, "application/json", "{}".into(), Duration::from_secs(7)),
        "garbage" => ok("text/html", "<html>not json</html>"),
        _ => ok(
            "application/x-amz-json-1.0",
            r#"{"MetricDataResults":[{"Id":"e1","Label":"ErrorRate","Timestamps":[1709296200,1709296140],"Values":[0.015,0.02],"StatusCode":"Complete"}],"Messages":[]}"#,
        ),
    }
}

#[tokio::test]
async fn cloudwatch_sends_a_sigv4_signed_get_metric_data_over_ten_intervals() {
    let srv = Server::start(cw_answer).await;
    let cw = cloudwatch_at(
        &srv,
        cw_env(vec![
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE".into()),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            ),
        ]),
    );
    let q = CW_QUERY.replace("\"Id\"", "\"id\"");
    assert_eq!(cw.query(&q, &ctx(now())).await, Reading::Value(0.015));
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.path, "/");
    assert_eq!(
        r.header("x-amz-target"),
        Some("GraniteServiceVersion20100801.GetMetricData")
    );
    assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.0"));
    assert_eq!(r.header("x-amz-date"), Some("20240301T123015Z"));
    assert_eq!(r.header("x-amz-security-token"), None);
    let body = r.json();
    assert_eq!(body["EndTime"], json!(now().timestamp()));
    assert_eq!(body["StartTime"], json!(now().timestamp() - 600));
    assert_eq!(body["MaxDatapoints"], json!(20));
    assert_eq!(
        body["MetricDataQueries"],
        serde_json::from_str::<Value>(CW_QUERY).expect("json")
    );
    verify_sigv4(
        r,
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "eu-west-1",
    );
}

#[tokio::test]
async fn cloudwatch_reads_empty_results_as_no_data_and_errors_as_failures_without_secrets() {
    let srv = Server::start(cw_answer).await;
    let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let cw = cloudwatch_at(
        &srv,
        cw_env(vec![
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE".into()),
            ("AWS_SECRET_ACCESS_KEY", secret.into()),
            ("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEXAMPLESESSION".into()),
        ]),
    );
    let q = |id: &str| format!(r#"[{{"Id":"{id}","Expression":"SUM(METRICS())"}}]"#);
    assert_eq!(cw.query(&q("empty"), &ctx(now())).await, Reading::Empty);
    let denied = cw.query(&q("denied"), &ctx(now())).await;
    let m = failed(&denied);
    assert!(
        m.starts_with("cloudwatch:") && m.contains("400") && m.contains("AccessDeniedException"),
        "{m}"
    );
    let forbidden = cw.query(&q("forbidden"), &ctx(now())).await;
    assert!(
        failed(&forbidden).contains("403 Forbidden"),
        "{forbidden:?}"
    );
    let broken = cw.query(&q("broken"), &ctx(now())).await;
    assert!(failed(&broken).contains("503") && failed(&broken).contains("Service Unavailable"));
    let garbage = cw.query(&q("garbage"), &ctx(now())).await;
    assert!(
        failed(&garbage).contains("<html>not json</html>"),
        "{garbage:?}"
    );
    let bad_query = cw.query("sum(rate(x[1m]))", &ctx(now())).await;
    assert!(failed(&bad_query).contains("not a JSON array of MetricDataQuery"));
    let slow = cw.query(&q("slow"), &ctx(now())).await;
    assert!(failed(&slow).contains("timed out after 5s"), "{slow:?}");
    for r in [denied, forbidden, broken, garbage, slow] {
        assert!(!failed(&r).contains(secret) && !failed(&r).contains("EXAMPLESESSION"));
    }
    // The session token is sent and signed.
    let first = &srv.requests()[0];
    assert_eq!(
        first.header("x-amz-security-token"),
        Some("FwoGZXIvYXdzEXAMPLESESSION")
    );
    verify_sigv4(first, "AKIDEXAMPLE", secret, "eu-west-1");
}

#[tokio::test]
async fn cloudwatch_exchanges_an_irsa_web_identity_token_at_sts_once() {
    let srv = Server::start(|req: &Req| {
        if req.header("x-amz-target").is_none() {
            return ok(
                "text/xml",
                r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:flagger:flagger</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>IQoJb3JpZ2luX2VjEXAMPLE</SessionToken>
      <SecretAccessKey>tempSecretEXAMPLEKEY</SecretAccessKey>
      <Expiration>2024-03-01T13:30:15Z</Expiration>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#,
            );
        }
        cw_answer(req)
    })
    .await;
    let dir = std::env::temp_dir().join(format!("serin-irsa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.projected.sa-token\n").expect("token");
    let cw = cloudwatch_at(
        &srv,
        cw_env(vec![
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/flagger".into(),
            ),
            ("AWS_ENDPOINT_URL_STS", srv.base.clone()),
        ]),
    );
    assert_eq!(cw.query(CW_QUERY, &ctx(now())).await, Reading::Value(0.015));
    assert_eq!(cw.query(CW_QUERY, &ctx(now())).await, Reading::Value(0.015));
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 3, "one STS call, two queries");
    let sts = &reqs[0];
    assert_eq!((sts.method.as_str(), sts.path.as_str()), ("POST", "/"));
    assert_eq!(
        sts.header("authorization"),
        None,
        "the STS call is unsigned"
    );
    let form = sts.form();
    assert_eq!(
        form.get("Action").map(String::as_str),
        Some("AssumeRoleWithWebIdentity")
    );
    assert_eq!(form.get("Version").map(String::as_str), Some("2011-06-15"));
    assert_eq!(
        form.get("RoleArn").map(String::as_str),
        Some("arn:aws:iam::123456789012:role/flagger")
    );
    assert_eq!(
        form.get("WebIdentityToken").map(String::as_str),
        Some("eyJhbGciOiJSUzI1NiJ9.projected.sa-token")
    );
    assert!(form.contains_key("RoleSessionName"));
    for q in &reqs[1..] {
        assert_eq!(
            q.header("x-amz-security-token"),
            Some("IQoJb3JpZ2luX2VjEXAMPLE")
        );
        verify_sigv4(q, "ASIAEXAMPLE", "tempSecretEXAMPLEKEY", "eu-west-1");
    }
    // Close to expiry the keys are renewed.
    let later = now() + chrono::Duration::minutes(58);
    assert_eq!(cw.query(CW_QUERY, &ctx(later)).await, Reading::Value(0.015));
    assert_eq!(srv.requests().len(), 5);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn cloudwatch_falls_back_to_the_instance_profile_through_imdsv2() {
    const SESSION: &str = "imds-session-token";
    let srv = Server::start(|req: &Req| {
        let path = req.path.as_str();
        if !path.starts_with("/latest/") {
            return cw_answer(req);
        }
        if path == "/latest/api/token" {
            // IMDSv2: a PUT with the TTL header opens a session; anything else is refused.
            return match (req.method.as_str(), req.header("x-aws-ec2-metadata-token-ttl-seconds")) {
                ("PUT", Some(_)) => ok("text/plain", SESSION),
                _ => vendors::status(400, "text/plain", "missing ttl"),
            };
        }
        if req.header("x-aws-ec2-metadata-token") != Some(SESSION) {
            return vendors::status(401, "text/plain", "");
        }
        match path {
            "/latest/meta-data/iam/security-credentials/" => ok("text/plain", "serin-node-role"),
            "/latest/meta-data/iam/security-credentials/serin-node-role" => ok(
                "text/plain",
                r#"{"Code":"Success","LastUpdated":"2024-03-01T12:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAIMDSEXAMPLE","SecretAccessKey":"imdsSecretEXAMPLEKEY","Token":"IMDSSESSIONEXAMPLE","Expiration":"2024-03-01T18:00:00Z"}"#,
            ),
            _ => vendors::status(404, "text/plain", ""),
        }
    })
    .await;
    let cw = cloudwatch_at(
        &srv,
        cw_env(vec![(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            srv.base.clone(),
        )]),
    );
    assert_eq!(cw.query(CW_QUERY, &ctx(now())).await, Reading::Value(0.015));
    assert_eq!(cw.query(CW_QUERY, &ctx(now())).await, Reading::Value(0.015));
    let reqs = srv.requests();
    let paths: Vec<(&str, &str)> = reqs
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("PUT", "/latest/api/token"),
            ("GET", "/latest/meta-data/iam/security-credentials/"),
            (
                "GET",
                "/latest/meta-data/iam/security-credentials/serin-node-role"
            ),
            ("POST", "/"),
            ("POST", "/"),
        ],
        "the keys are fetched once and cached until close to expiry"
    );
    for q in &reqs[3..] {
        assert_eq!(q.header("x-amz-security-token"), Some("IMDSSESSIONEXAMPLE"));
        verify_sigv4(q, "ASIAIMDSEXAMPLE", "imdsSecretEXAMPLEKEY", "eu-west-1");
    }
    // Close to expiry they are fetched again.
    let later = now() + chrono::Duration::hours(5) + chrono::Duration::minutes(56);
    assert_eq!(cw.query(CW_QUERY, &ctx(later)).await, Reading::Value(0.015));
    assert_eq!(srv.requests().len(), 9);

    // No instance profile: a failure that says so and leaks nothing.
    let bare = Server::start(|req: &Req| match req.path.as_str() {
        "/latest/api/token" => ok("text/plain", SESSION),
        "/latest/meta-data/iam/security-credentials/" => {
            vendors::status(404, "text/plain", "Not Found")
        }
        _ => cw_answer(req),
    })
    .await;
    let cw = cloudwatch_at(
        &bare,
        cw_env(vec![(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            bare.base.clone(),
        )]),
    );
    let r = cw.query(CW_QUERY, &ctx(now())).await;
    assert!(
        failed(&r).starts_with("cloudwatch: HTTP 404") && !failed(&r).contains(SESSION),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Stackdriver

const MQL: &str =
    "fetch k8s_container | metric 'istio.io/service/server/request_count' | within 10m";

fn sd_answer(req: &Req) -> Answer {
    match req.path.as_str() {
        "/token" => ok(
            "application/json",
            r#"{"access_token":"ya29.c.EXAMPLE","expires_in":3599,"token_type":"Bearer"}"#,
        ),
        "/computeMetadata/v1/instance/service-accounts/default/token" => ok(
            "application/json",
            r#"{"access_token":"ya29.metadata","expires_in":3599,"token_type":"Bearer"}"#,
        ),
        "/computeMetadata/v1/project/project-id" => ok("application/text", "meta-project"),
        _ => {
            let q = req.json()["query"].as_str().unwrap_or_default().to_string();
            if q.contains("empty") {
                ok(
                    "application/json",
                    r#"{"timeSeriesDescriptor":{"labelDescriptors":[]}}"#,
                )
            } else if q.contains("denied") {
                (403, "application/json", r#"{"error":{"code":403,"message":"Permission monitoring.timeSeries.list denied","status":"PERMISSION_DENIED"}}"#.into(), Duration::ZERO)
            } else if q.contains("broken") {
                (
                    500,
                    "application/json",
                    r#"{"error":{"code":500,"status":"INTERNAL"}}"#.into(),
                    Duration::ZERO,
                )
            } else if q.contains("slow") {
                (200, "application/json", "{}".into(), Duration::from_secs(7))
            } else if q.contains("garbage") {
                ok("text/html", "<html>oops</html>")
            } else {
                ok(
                    "application/json",
                    r#"{"timeSeriesDescriptor":{"pointDescriptors":[{"key":"value.request_count","valueType":"DOUBLE","metricKind":"GAUGE"}]},
                        "timeSeriesData":[{"labelValues":[],"pointData":[{"values":[{"doubleValue":99.5}],
                        "timeInterval":{"startTime":"2024-03-01T12:29:00Z","endTime":"2024-03-01T12:30:00Z"}}]}]}"#,
                )
            }
        }
    }
}

#[tokio::test]
async fn stackdriver_signs_a_service_account_jwt_and_queries_mql_with_the_token() {
    let srv = Server::start(sd_answer).await;
    let mut c = config("stackdriver", Some(&srv.base));
    c.spec.secret_ref = Some(SecretRef { name: "gcp".into() });
    let key = vendors::service_account_key(&format!("{}/token", srv.base));
    c.secret = secret(&[("project", "my-project\n"), ("serviceAccountKey", &key)]);
    let sd = stackdriver::Stackdriver::with_env(&c, |_| None).expect("built");
    assert_eq!(sd.query(MQL, &ctx(now())).await, Reading::Value(99.5));
    assert_eq!(sd.query(MQL, &ctx(now())).await, Reading::Value(99.5));
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 3, "one token exchange, two queries");
    let tok = &reqs[0];
    assert_eq!((tok.method.as_str(), tok.path.as_str()), ("POST", "/token"));
    assert_eq!(
        tok.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = tok.form();
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    let jwt = form.get("assertion").expect("assertion");
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Value =
        serde_json::from_slice(&b64.decode(parts[0]).expect("b64")).expect("header");
    assert_eq!(
        header,
        json!({"alg": "RS256", "typ": "JWT", "kid": "kid-123"})
    );
    let claims: Value =
        serde_json::from_slice(&b64.decode(parts[1]).expect("b64")).expect("claims");
    assert_eq!(
        claims,
        json!({
            "iss": "flagger@my-project.iam.gserviceaccount.com",
            "scope": "https://www.googleapis.com/auth/monitoring.read",
            "aud": format!("{}/token", srv.base),
            "iat": now().timestamp(),
            "exp": now().timestamp() + 3600,
        })
    );
    // The signature verifies with the key's public half.
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            vendors::test_key()
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .expect("der");
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("key");
    use ring::signature::KeyPair;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        pair.public_key().as_ref(),
    )
    .verify(
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &b64.decode(parts[2]).expect("sig"),
    )
    .expect("the JWT signature verifies");
    for q in &reqs[1..] {
        assert_eq!(q.method, Method::POST);
        assert_eq!(q.path, "/v3/projects/my-project/timeSeries:query");
        assert_eq!(q.header("authorization"), Some("Bearer ya29.c.EXAMPLE"));
        assert_eq!(q.json(), json!({ "query": MQL }));
    }
}

#[tokio::test]
async fn stackdriver_uses_the_metadata_server_without_a_key() {
    let srv = Server::start(sd_answer).await;
    let host = srv.base.trim_start_matches("http://").to_string();
    let c = config("stackdriver", Some(&srv.base));
    let sd = stackdriver::Stackdriver::with_env(&c, move |k| {
        (k == "GCE_METADATA_HOST").then(|| host.clone())
    })
    .expect("built");
    assert_eq!(sd.query(MQL, &ctx(now())).await, Reading::Value(99.5));
    let reqs = srv.requests();
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/computeMetadata/v1/project/project-id",
            "/computeMetadata/v1/instance/service-accounts/default/token",
            "/v3/projects/meta-project/timeSeries:query"
        ]
    );
    for r in &reqs[..2] {
        assert_eq!(r.header("metadata-flavor"), Some("Google"));
    }
    assert_eq!(
        reqs[2].header("authorization"),
        Some("Bearer ya29.metadata")
    );
}

#[tokio::test]
async fn stackdriver_reads_empty_results_as_no_data_and_errors_as_failures_without_tokens() {
    let srv = Server::start(sd_answer).await;
    let mut c = config("stackdriver", Some(&srv.base));
    c.spec.secret_ref = Some(SecretRef { name: "gcp".into() });
    let key = vendors::service_account_key(&format!("{}/token", srv.base));
    c.secret = secret(&[("project", "my-project"), ("serviceAccountKey", &key)]);
    let sd = stackdriver::Stackdriver::with_env(&c, |_| None).expect("built");
    assert_eq!(sd.query("empty", &ctx(now())).await, Reading::Empty);
    let denied = sd.query("denied", &ctx(now())).await;
    assert!(
        failed(&denied).starts_with("stackdriver:")
            && failed(&denied).contains("403 Forbidden")
            && failed(&denied).contains("PERMISSION_DENIED"),
        "{denied:?}"
    );
    let broken = sd.query("broken", &ctx(now())).await;
    assert!(failed(&broken).contains("500"), "{broken:?}");
    let garbage = sd.query("garbage", &ctx(now())).await;
    assert!(
        failed(&garbage).contains("<html>oops</html>"),
        "{garbage:?}"
    );
    let slow = sd.query("slow", &ctx(now())).await;
    assert!(failed(&slow).contains("timed out after 5s"), "{slow:?}");
    for r in [denied, broken, garbage, slow] {
        assert!(!failed(&r).contains("ya29"));
    }
}

#[tokio::test]
async fn stackdriver_reports_a_refused_token_exchange() {
    let srv = Server::start(|req: &Req| {
        if req.path == "/token" {
            (
                401,
                "application/json",
                r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#.into(),
                Duration::ZERO,
            )
        } else {
            sd_answer(req)
        }
    })
    .await;
    let mut c = config("stackdriver", Some(&srv.base));
    c.spec.secret_ref = Some(SecretRef { name: "gcp".into() });
    let key = vendors::service_account_key(&format!("{}/token", srv.base));
    c.secret = secret(&[("project", "my-project"), ("serviceAccountKey", &key)]);
    let sd = stackdriver::Stackdriver::with_env(&c, |_| None).expect("built");
    let r = sd.query(MQL, &ctx(now())).await;
    assert!(
        failed(&r).contains("401") && failed(&r).contains("invalid_grant"),
        "{r:?}"
    );
    assert_eq!(srv.requests().len(), 1, "no query without a token");
}

// ---------------------------------------------------------------------------------------------
// Splunk

const PROGRAM: &str = "data('requests.count', filter=filter('app', 'podinfo')).sum().publish()";

fn splunk_answer(req: &Req) -> Answer {
    let program = String::from_utf8_lossy(&req.body).to_string();
    let start = vendors::signalflow_start();
    let end = vendors::signalflow_end();
    let body = if program.contains("empty") {
        format!("{start}{end}")
    } else if program.contains("denied") {
        return (
            401,
            "application/json",
            r#"{"message":"Unauthorized"}"#.into(),
            Duration::ZERO,
        );
    } else if program.contains("broken") {
        return (502, "text/plain", "Bad Gateway".into(), Duration::ZERO);
    } else if program.contains("slow") {
        return (200, "text/event-stream", start, Duration::from_secs(7));
    } else if program.contains("garbage") {
        format!("{start}{}{end}", sse(&[("data", "{not json")]))
    } else if program.contains("bad program") {
        format!(
            "{start}{}",
            sse(&[(
                "error",
                r#"{"error":400,"errorType":"ANALYTICS_PROGRAM_NAME_ERROR","message":"Unknown function 'dta'"}"#
            )])
        )
    } else {
        let data = sse(&[
            (
                "data",
                "{\n  \"data\" : [ {\n    \"tsId\" : \"AAAAAKSd38Y\",\n    \"value\" : 3.0\n  } ],\n  \"logicalTimestampMs\" : 1709296140000\n}",
            ),
            (
                "data",
                r#"{"data":[{"tsId":"AAAAAKSd38Y","value":4.5}],"logicalTimestampMs":1709296200000}"#,
            ),
        ]);
        format!("{start}{data}{end}")
    };
    ok("text/event-stream", body)
}

fn splunk_at(srv: &Server) -> splunk::Splunk {
    let mut c = config("splunk", Some(&srv.base));
    c.spec.secret_ref = Some(SecretRef { name: "sfx".into() });
    c.secret = secret(&[("sf_token_key", "sfx-secret-token\n")]);
    splunk::Splunk::new(&c).expect("built")
}

#[tokio::test]
async fn splunk_executes_signalflow_over_rest_and_reads_the_last_value_of_the_stream() {
    let srv = Server::start(splunk_answer).await;
    let sp = splunk_at(&srv);
    assert_eq!(sp.query(PROGRAM, &ctx(now())).await, Reading::Value(4.5));
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.path, "/v2/signalflow/execute");
    let stop = now().timestamp_millis();
    assert_eq!(r.query.get("stop"), Some(&stop.to_string()));
    assert_eq!(r.query.get("start"), Some(&(stop - 600_000).to_string()));
    assert_eq!(r.query.get("immediate").map(String::as_str), Some("true"));
    assert_eq!(r.header("x-sf-token"), Some("sfx-secret-token"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(String::from_utf8_lossy(&r.body), PROGRAM);
}

#[tokio::test]
async fn splunk_reads_empty_streams_as_no_data_and_errors_as_failures_without_the_token() {
    let srv = Server::start(splunk_answer).await;
    let sp = splunk_at(&srv);
    assert_eq!(sp.query("empty", &ctx(now())).await, Reading::Empty);
    let denied = sp.query("denied", &ctx(now())).await;
    assert!(
        failed(&denied).starts_with("splunk:") && failed(&denied).contains("401 Unauthorized"),
        "{denied:?}"
    );
    let broken = sp.query("broken", &ctx(now())).await;
    assert!(failed(&broken).contains("502") && failed(&broken).contains("Bad Gateway"));
    let garbage = sp.query("garbage", &ctx(now())).await;
    assert!(
        failed(&garbage).contains("cannot read a data message"),
        "{garbage:?}"
    );
    let bad = sp.query("bad program", &ctx(now())).await;
    assert!(failed(&bad).contains("Unknown function 'dta'"), "{bad:?}");
    let slow = sp.query("slow", &ctx(now())).await;
    assert!(failed(&slow).contains("timed out after 5s"), "{slow:?}");
    for r in [denied, broken, garbage, bad, slow] {
        assert!(!failed(&r).contains("sfx-secret-token"));
    }
}

#[test]
fn splunk_requires_an_address_and_the_sf_token_key() {
    let mut c = config("splunk", None);
    c.secret = secret(&[("sf_token_key", "t")]);
    assert!(matches!(
        splunk::Splunk::new(&c),
        Err(splunk::Error::MissingAddress)
    ));
    c.spec.address = Some("https://api.us1.signalfx.com".into());
    assert_eq!(
        splunk::Splunk::new(&c).expect("built").execute_url(),
        "https://stream.us1.signalfx.com/v2/signalflow/execute"
    );
    c.secret = secret(&[("token", "t")]);
    assert!(matches!(
        splunk::Splunk::new(&c),
        Err(splunk::Error::MissingKey)
    ));
}

// ---------------------------------------------------------------------------------------------
// External metrics, against a local server speaking the aggregated API's paths.

fn ext_answer(req: &Req) -> Answer {
    let list = |items: &str| {
        format!(
            r#"{{"kind":"ExternalMetricValueList","apiVersion":"external.metrics.k8s.io/v1beta1","metadata":{{}},"items":[{items}]}}"#
        )
    };
    let metric = req.path.rsplit('/').next().unwrap_or_default();
    match metric {
        "empty" => ok("application/json", list("")),
        "missing" => (404, "application/json", r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the metric missing for namespaces prod","reason":"NotFound","code":404}"#.into(), Duration::ZERO),
        "broken" => (503, "text/plain", "service unavailable".into(), Duration::ZERO),
        "slow" => (200, "application/json", list(""), Duration::from_secs(7)),
        "garbage" => ok("application/json", "{\"items\": [{\"value\": 12}"),
        _ => ok(
            "application/json",
            list(r#"{"metricName":"http_requests","metricLabels":{"app":"podinfo"},"timestamp":"2024-03-01T12:30:00Z","value":"250m"},{"metricName":"http_requests","metricLabels":{},"timestamp":"2024-03-01T12:30:00Z","value":"7"}"#),
        ),
    }
}

fn kube_client_at(base: &str) -> kube::Client {
    serin::install_crypto_provider();
    let config = kube::Config::new(base.parse().expect("uri"));
    kube::Client::try_from(config).expect("client")
}

#[tokio::test]
async fn external_metrics_reads_the_first_item_of_the_namespaced_metric() {
    let srv = Server::start(ext_answer).await;
    let em = externalmetrics::ExternalMetrics::new(
        &config("externalmetrics", None),
        kube_client_at(&srv.base),
    )
    .expect("built");
    let q = "prod/http_requests?labelSelector=app%3Dpodinfo%2Ctier%21%3Dbatch";
    assert_eq!(em.query(q, &ctx(now())).await, Reading::Value(0.25));
    let reqs = srv.requests();
    assert_eq!(reqs[0].method, Method::GET);
    assert_eq!(
        reqs[0].path,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/prod/http_requests"
    );
    assert_eq!(
        reqs[0].query.get("labelSelector").map(String::as_str),
        Some("app=podinfo,tier!=batch")
    );
    assert_eq!(
        em.query("queue_depth", &ctx(now())).await,
        Reading::Value(0.25)
    );
    assert_eq!(
        srv.requests()[1].path,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_depth"
    );
    assert!(!srv.requests()[1].query.contains_key("labelSelector"));
}

#[tokio::test]
async fn external_metrics_reads_empty_lists_as_no_data_and_errors_as_failures() {
    let srv = Server::start(ext_answer).await;
    let em = externalmetrics::ExternalMetrics::new(
        &config("externalmetrics", None),
        kube_client_at(&srv.base),
    )
    .expect("built");
    assert_eq!(em.query("prod/empty", &ctx(now())).await, Reading::Empty);
    let missing = em.query("prod/missing", &ctx(now())).await;
    assert!(
        failed(&missing).contains("404") && failed(&missing).contains("could not find the metric"),
        "{missing:?}"
    );
    let broken = em.query("prod/broken", &ctx(now())).await;
    assert!(
        failed(&broken).starts_with("externalmetrics:"),
        "{broken:?}"
    );
    let garbage = em.query("prod/garbage", &ctx(now())).await;
    assert!(
        failed(&garbage).contains("cannot read the answer"),
        "{garbage:?}"
    );
    let slow = em.query("prod/slow", &ctx(now())).await;
    assert!(failed(&slow).contains("timed out after 5s"), "{slow:?}");
    let bad = em.query("a/b/c", &ctx(now())).await;
    assert!(failed(&bad).contains("too many slashes"));
}

#[tokio::test]
async fn external_metrics_sends_only_the_secret_token_to_an_overriding_address() {
    let srv = Server::start(ext_answer).await;
    let mut c = config("externalmetrics", Some(&srv.base));
    c.spec.secret_ref = Some(SecretRef { name: "em".into() });
    c.secret = secret(&[("token", "adapter-token")]);
    // The operator's client points nowhere: the address must win.
    let em = externalmetrics::ExternalMetrics::new(&c, kube_client_at("http://127.0.0.1:9"))
        .expect("built");
    assert_eq!(
        em.query("prod/http_requests", &ctx(now())).await,
        Reading::Value(0.25)
    );
    assert_eq!(
        srv.requests()[0].header("authorization"),
        Some("Bearer adapter-token")
    );
}

// ---------------------------------------------------------------------------------------------
// Keptn, against the embedded cluster with Keptn's CRDs.

fn keptn_api(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("metrics.keptn.sh", "v1beta1", kind),
            plural,
        ),
    )
}

async fn keptn_cluster() -> (serin::cluster::ClusterHandle, kube::Client) {
    let cluster = serin::cluster::start(serin::cluster::ClusterConfig::default())
        .await
        .expect("cluster");
    let client = cluster.client().expect("client");
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    for (kind, plural) in [("KeptnMetric", "keptnmetrics"), ("Analysis", "analyses")] {
        crds.create(
            &PostParams::default(),
            &serde_json::from_value(vendors::keptn_crd(kind, plural)).expect("crd"),
        )
        .await
        .expect("crd");
    }
    // Wait until the kinds are served.
    for _ in 0..100 {
        if keptn_api(&client, "Analysis", "analyses")
            .list(&ListParams::default())
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (cluster, client)
}

#[tokio::test]
async fn keptn_reads_a_keptn_metric_value_and_no_value_is_no_data() {
    let (_cluster, client) = keptn_cluster().await;
    let metrics = keptn_api(&client, "KeptnMetric", "keptnmetrics");
    for (name, status) in [
        (
            "error-rate",
            json!({"value": "0.0125", "rawValue": "MC4wMTI1"}),
        ),
        ("fresh", json!({})),
        ("junk", json!({"value": "n/a"})),
    ] {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "metrics.keptn.sh/v1beta1", "kind": "KeptnMetric",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"provider": {"name": "prometheus"}, "query": "sum(x)", "fetchIntervalSeconds": 10},
            "status": status,
        }))
        .expect("metric");
        metrics
            .create(&PostParams::default(), &obj)
            .await
            .expect("created");
        // Keptn's metrics operator writes the value through the status subresource.
        metrics
            .patch_status(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"status": status})),
            )
            .await
            .expect("status");
    }
    let k = keptn::Keptn::new(&config("keptn", None), client.clone()).expect("built");
    assert_eq!(
        k.query("keptnmetric/default/error-rate", &ctx(now())).await,
        Reading::Value(0.0125)
    );
    assert_eq!(
        k.query("KeptnMetrics/Default/Error-Rate", &ctx(now()))
            .await,
        Reading::Value(0.0125)
    );
    assert_eq!(
        k.query("keptnmetric/default/fresh", &ctx(now())).await,
        Reading::Empty
    );
    let junk = k.query("keptnmetric/default/junk", &ctx(now())).await;
    assert!(failed(&junk).contains("not a number"), "{junk:?}");
    let missing = k.query("keptnmetric/default/nope", &ctx(now())).await;
    assert!(
        failed(&missing).contains("could not read KeptnMetric default/nope"),
        "{missing:?}"
    );
    let bad = k.query("deployment/default/x", &ctx(now())).await;
    assert!(failed(&bad).contains("unexpected resource kind"));
}

/// A stand-in for Keptn's controller: completes every Analysis with `pass`.
fn fake_keptn(client: kube::Client, pass: bool, seen: Arc<Mutex<Vec<Value>>>) {
    tokio::spawn(async move {
        let api = keptn_api(&client, "Analysis", "analyses");
        loop {
            if let Ok(list) = api.list(&ListParams::default()).await {
                for mut a in list.items {
                    if a.data.pointer("/status/state").is_some() {
                        continue;
                    }
                    seen.lock().expect("lock").push(a.data.clone());
                    a.data["status"] = json!({"state": "Completed", "pass": pass, "raw": "{}"});
                    let name = a.metadata.name.clone().unwrap_or_default();
                    let _ = api.replace_status(&name, &PostParams::default(), &a).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[tokio::test]
async fn keptn_runs_an_analysis_reads_its_verdict_and_deletes_it() {
    let (_cluster, client) = keptn_cluster().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    fake_keptn(client.clone(), true, seen.clone());
    let k = keptn::Keptn::new(&config("keptn", None), client.clone()).expect("built");
    assert_eq!(
        k.query(
            "analysis/default/podinfo-slo/5m/service=podinfo;stage=canary",
            &ctx(now())
        )
        .await,
        Reading::Value(1.0)
    );
    let spec = seen.lock().expect("lock")[0]["spec"].clone();
    assert_eq!(
        spec,
        json!({
            "analysisDefinition": {"name": "podinfo-slo"},
            "timeframe": {"recent": "5m"},
            "args": {"service": "podinfo", "stage": "canary"},
        })
    );
    let left = keptn_api(&client, "Analysis", "analyses")
        .list(&ListParams::default())
        .await
        .expect("list");
    assert!(left.items.is_empty(), "the Analysis is deleted");
}

#[tokio::test]
async fn keptn_times_out_on_an_analysis_that_never_completes() {
    let (_cluster, client) = keptn_cluster().await;
    let k = keptn::Keptn::new(&config("keptn", None), client.clone())
        .expect("built")
        .with_analysis_timeout(Duration::from_millis(1500));
    let r = k.query("analysis/default/slo", &ctx(now())).await;
    assert!(failed(&r).contains("timed out"), "{r:?}");
    let left = keptn_api(&client, "Analysis", "analyses")
        .list(&ListParams::default())
        .await
        .expect("list");
    assert!(
        left.items.is_empty(),
        "the Analysis is deleted after a timeout too"
    );
}
