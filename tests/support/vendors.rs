//! Local stand-ins for the metric vendors' HTTP APIs, shared by the provider tests
//! (tests/metrics_providers*.rs) and the end-to-end suite (tests/metrics_providers_e2e.rs): a
//! server that records each request and answers through a closure, a scripted variant, the
//! vendors' documented answer shapes, and one server that speaks every vendor's API at once.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Req {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// The body as a form.
    pub fn form(&self) -> BTreeMap<String, String> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }
}

/// Status, content type, body, delay before answering.
pub type Answer = (u16, &'static str, String, Duration);

/// A 200 answer.
pub fn ok(content_type: &'static str, body: impl Into<String>) -> Answer {
    (200, content_type, body.into(), Duration::ZERO)
}

/// An error answer.
pub fn status(code: u16, content_type: &'static str, body: impl Into<String>) -> Answer {
    (code, content_type, body.into(), Duration::ZERO)
}

/// A loopback HTTP server that records every request and answers through a closure.
#[derive(Clone)]
pub struct Server {
    pub base: String,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Server {
    pub async fn start(answer: impl Fn(&Req) -> Answer + Send + Sync + 'static) -> Server {
        let log: Arc<Mutex<Vec<Req>>> = Arc::default();
        let answer = Arc::new(answer);
        let l = log.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (log, answer) = (l.clone(), answer.clone());
                async move {
                    let req = Req {
                        method,
                        path: uri.path().to_string(),
                        query: url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                            .into_owned()
                            .collect(),
                        headers,
                        body: body.to_vec(),
                    };
                    let (code, content_type, body, delay) = answer(&req);
                    log.lock().expect("lock").push(req);
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let code = StatusCode::from_u16(code).expect("status");
                    (code, [("content-type", content_type)], body).into_response()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server {
            base: format!("http://{addr}"),
            log,
        }
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Req> {
        self.log.lock().expect("lock").clone()
    }

    /// The latest request.
    pub fn last(&self) -> Req {
        self.requests().pop().expect("a request reached the server")
    }
}

/// A [`Server`] that gives one scripted answer until told otherwise.
#[derive(Clone)]
pub struct Scripted {
    pub base: String,
    server: Server,
    script: Arc<Mutex<Answer>>,
}

impl Scripted {
    pub async fn start() -> Scripted {
        let script: Arc<Mutex<Answer>> = Arc::new(Mutex::new(ok("text/plain", "")));
        let s = script.clone();
        let server = Server::start(move |_| s.lock().expect("lock").clone()).await;
        Scripted {
            base: server.base.clone(),
            server,
            script,
        }
    }
    /// Answers `status` and `body` from now on, without delay.
    pub fn answer(&self, code: u16, body: &str) {
        *self.script.lock().expect("lock") = status(code, "text/plain; charset=utf-8", body);
    }
    /// Delays the current answer by `d`.
    pub fn slow(&self, d: Duration) {
        self.script.lock().expect("lock").3 = d;
    }
    pub fn last(&self) -> Req {
        self.server.last()
    }
}

// ---------------------------------------------------------------------------------------------
// The vendors' documented answers.

/// A fixed point in time for the answers' timestamps: 2024-03-01T12:30:00Z.
const TS: i64 = 1_709_296_200;

/// A server-sent-events stream of `(event, data)` pairs, as SignalFlow sends them.
pub fn sse(events: &[(&str, &str)]) -> String {
    events
        .iter()
        .map(|(e, d)| {
            let data: String = d.lines().map(|l| format!("data: {l}\n")).collect();
            format!("event: {e}\n{data}\n")
        })
        .collect()
}

/// The opening of a SignalFlow stream: stream and job start, then one time series' metadata.
pub fn signalflow_start() -> String {
    sse(&[
        (
            "control-message",
            r#"{"event":"STREAM_START","timestampMs":1709296215000}"#,
        ),
        (
            "control-message",
            r#"{"event":"JOB_START","handle":"Fx1","timestampMs":1709296215001}"#,
        ),
        (
            "metadata",
            r#"{"tsId":"AAAAAKSd38Y","properties":{"sf_metric":"requests.count"}}"#,
        ),
    ])
}

/// The end of a SignalFlow stream.
pub fn signalflow_end() -> String {
    sse(&[(
        "control-message",
        r#"{"event":"END_OF_CHANNEL","timestampMs":1709296215100}"#,
    )])
}

/// The vendor's 200 answer holding `value`, or its empty answer for `None`.
pub fn vendor_answer(vendor: &str, value: Option<f64>) -> Answer {
    match vendor {
        "datadog" => ok(
            "application/json",
            json!({"status": "ok", "res_type": "time_series",
                "series": value.map(|v| vec![json!({"metric": "m", "pointlist": [[(TS - 600) as f64 * 1000.0, v]]})]).unwrap_or_default()})
            .to_string(),
        ),
        "newrelic" => ok(
            "application/json",
            json!({"results": [{"result": value}], "performanceStats": {"inspectedCount": 10}})
                .to_string(),
        ),
        "graphite" => ok(
            "application/json",
            match value {
                Some(v) => json!([{"target": "t", "tags": {}, "datapoints": [[v, TS - 60], [null, TS]]}]),
                None => json!([]),
            }
            .to_string(),
        ),
        "influxdb" => ok(
            "text/csv; charset=utf-8",
            match value {
                Some(v) => format!(
                    "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,double\r\n#group,false,false,true,true,false\r\n#default,_result,,,,\r\n,result,table,_start,_stop,_value\r\n,,0,2024-03-01T12:29:00Z,2024-03-01T12:30:00Z,{v}\r\n\r\n"
                ),
                None => "\r\n".to_string(),
            },
        ),
        "dynatrace" => ok(
            "application/json",
            json!({"totalCount": 1, "nextPageKey": null, "resolution": "Inf", "result": [{
                "metricId": "m", "dataPointCountRatio": 0.0001, "dimensionCountRatio": 0.01,
                "data": value.map(|v| vec![json!({"dimensions": [], "dimensionMap": {},
                    "timestamps": [TS * 1000], "values": [v]})]).unwrap_or_default()}]})
            .to_string(),
        ),
        "cloudwatch" => ok(
            "application/x-amz-json-1.0",
            json!({"MetricDataResults": [{"Id": "e1", "Label": "ErrorRate",
                "Timestamps": value.map(|_| vec![TS]).unwrap_or_default(),
                "Values": value.map(|v| vec![v]).unwrap_or_default(),
                "StatusCode": "Complete"}], "Messages": []})
            .to_string(),
        ),
        "stackdriver" => ok(
            "application/json",
            match value {
                Some(v) => json!({
                    "timeSeriesDescriptor": {"pointDescriptors": [{"key": "value.error_rate", "valueType": "DOUBLE", "metricKind": "GAUGE"}]},
                    "timeSeriesData": [{"labelValues": [], "pointData": [{"values": [{"doubleValue": v}],
                        "timeInterval": {"startTime": "2024-03-01T12:29:00Z", "endTime": "2024-03-01T12:30:00Z"}}]}]}),
                None => json!({"timeSeriesDescriptor": {"labelDescriptors": []}}),
            }
            .to_string(),
        ),
        "splunk" => {
            let start = signalflow_start();
            let data = value
                .map(|v| {
                    sse(&[(
                        "data",
                        &json!({"data": [{"tsId": "AAAAAKSd38Y", "value": v}], "logicalTimestampMs": TS * 1000}).to_string(),
                    )])
                })
                .unwrap_or_default();
            let end = signalflow_end();
            ok("text/event-stream", format!("{start}{data}{end}"))
        }
        other => status(404, "text/plain", format!("no such vendor {other}")),
    }
}

// ---------------------------------------------------------------------------------------------
// One server for every vendor, as the end-to-end suite uses it.

pub const DATADOG_API_KEY: &str = "dd-api-e2e";
pub const DATADOG_APPLICATION_KEY: &str = "dd-app-e2e";
pub const NEWRELIC_ACCOUNT: &str = "4242";
pub const NEWRELIC_QUERY_KEY: &str = "NRIQ-e2e";
pub const GRAPHITE_USER: &str = "serin";
pub const GRAPHITE_PASSWORD: &str = "graphite-e2e";
pub const INFLUX_TOKEN: &str = "influx-e2e";
pub const INFLUX_ORG: &str = "serin";
pub const DYNATRACE_TOKEN: &str = "dt0c01.e2e";
pub const AWS_ACCESS_KEY: &str = "AKIDSERINE2E";
pub const AWS_SECRET_KEY: &str = "serin/e2e/secret/EXAMPLEKEY";
pub const GCP_PROJECT: &str = "serin-e2e";
pub const GCP_ACCESS_TOKEN: &str = "ya29.e2e";
pub const SPLUNK_TOKEN: &str = "sfx-e2e";

/// The vendors [`vendor_api`] speaks.
pub const HTTP_VENDORS: [&str; 8] = [
    "datadog",
    "newrelic",
    "graphite",
    "influxdb",
    "dynatrace",
    "cloudwatch",
    "stackdriver",
    "splunk",
];

/// The vendor a request is for (by its path) and the query text it carries.
pub fn vendor_query(req: &Req) -> Option<(&'static str, String)> {
    let p = req.path.as_str();
    let param = |k: &str| req.param(k).unwrap_or_default().to_string();
    let body_field = |k: &str| req.json()[k].as_str().unwrap_or_default().to_string();
    Some(match req.method.as_str() {
        "GET" if p == "/api/v1/query" => ("datadog", param("query")),
        "GET" if p.starts_with("/v1/accounts/") && p.ends_with("/query") => {
            ("newrelic", param("nrql"))
        }
        "GET" if p.ends_with("/render") => ("graphite", param("target")),
        "POST" if p == "/api/v2/query" => ("influxdb", body_field("query")),
        "GET" if p == "/api/v2/metrics/query" => ("dynatrace", param("metricSelector")),
        "POST"
            if p == "/"
                && req.header("x-amz-target")
                    == Some("GraniteServiceVersion20100801.GetMetricData") =>
        {
            ("cloudwatch", req.json()["MetricDataQueries"].to_string())
        }
        "POST" if p.starts_with("/v3/projects/") && p.ends_with("/timeSeries:query") => {
            ("stackdriver", body_field("query"))
        }
        "POST" if p == "/v2/signalflow/execute" => {
            ("splunk", String::from_utf8_lossy(&req.body).to_string())
        }
        _ => return None,
    })
}

/// Whether a request carries the credentials of [`vendor_secret`] (or, for CloudWatch, a
/// SigV4 signature by [`AWS_ACCESS_KEY`]; the signature itself is checked in
/// tests/metrics_providers2.rs).
pub fn authorized(vendor: &str, req: &Req) -> bool {
    let h = |k: &str| req.header(k).unwrap_or_default();
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{GRAPHITE_USER}:{GRAPHITE_PASSWORD}")
        )
    );
    match vendor {
        "datadog" => {
            h("dd-api-key") == DATADOG_API_KEY && h("dd-application-key") == DATADOG_APPLICATION_KEY
        }
        "newrelic" => {
            h("x-query-key") == NEWRELIC_QUERY_KEY
                && req.path == format!("/v1/accounts/{NEWRELIC_ACCOUNT}/query")
        }
        "graphite" => h("authorization") == basic,
        "influxdb" => {
            h("authorization") == format!("Token {INFLUX_TOKEN}")
                && req.param("org") == Some(INFLUX_ORG)
        }
        "dynatrace" => h("authorization") == format!("Api-Token {DYNATRACE_TOKEN}"),
        "cloudwatch" => h("authorization")
            .starts_with(&format!("AWS4-HMAC-SHA256 Credential={AWS_ACCESS_KEY}/")),
        "stackdriver" => {
            h("authorization") == format!("Bearer {GCP_ACCESS_TOKEN}")
                && req
                    .path
                    .starts_with(&format!("/v3/projects/{GCP_PROJECT}/"))
        }
        "splunk" => h("x-sf-token") == SPLUNK_TOKEN,
        _ => false,
    }
}

/// The Secret data a MetricTemplate of `vendor` needs to query [`vendor_api`] at `base`, with
/// Flagger's keys (`None`: the vendor reads its credentials from the controller's environment).
pub fn vendor_secret(vendor: &str, base: &str) -> Option<Vec<(&'static str, String)>> {
    let pairs = |p: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        p.iter().map(|(k, v)| (*k, v.to_string())).collect()
    };
    Some(match vendor {
        "datadog" => pairs(&[
            ("datadog_api_key", DATADOG_API_KEY),
            ("datadog_application_key", DATADOG_APPLICATION_KEY),
        ]),
        "newrelic" => pairs(&[
            ("newrelic_account_id", NEWRELIC_ACCOUNT),
            ("newrelic_query_key", NEWRELIC_QUERY_KEY),
        ]),
        "graphite" => pairs(&[("username", GRAPHITE_USER), ("password", GRAPHITE_PASSWORD)]),
        "influxdb" => pairs(&[("token", INFLUX_TOKEN), ("org", INFLUX_ORG)]),
        "dynatrace" => pairs(&[("dynatrace_token", DYNATRACE_TOKEN)]),
        "stackdriver" => vec![
            ("project", GCP_PROJECT.to_string()),
            (
                "serviceAccountKey",
                service_account_key(&format!("{base}/token")),
            ),
        ],
        "splunk" => pairs(&[("sf_token_key", SPLUNK_TOKEN)]),
        _ => return None,
    })
}

/// The environment the controller needs for CloudWatch's static keys.
pub fn aws_env() -> [(&'static str, &'static str); 2] {
    [
        ("AWS_ACCESS_KEY_ID", AWS_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY),
    ]
}

/// A test-only RSA key, PEM.
pub fn test_key() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/test-only-rsa-key.pem"
    ))
    .expect("test key")
}

/// A Google service-account key file whose tokens come from `token_uri`.
pub fn service_account_key(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "key-project",
        "private_key_id": "kid-123",
        "private_key": test_key(),
        "client_email": "flagger@my-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    })
    .to_string()
}

/// One server that speaks every vendor of [`HTTP_VENDORS`]: it answers 401 without the right
/// credentials, issues Google access tokens at `/token`, and otherwise answers the vendor's
/// documented shape with `value_of(query)` (its empty answer for `None`).
pub async fn vendor_api(value_of: impl Fn(&str) -> Option<f64> + Send + Sync + 'static) -> Server {
    Server::start(move |req| {
        if req.method == Method::POST && req.path == "/token" {
            let grant = req.form().get("grant_type").cloned().unwrap_or_default();
            if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
                return status(400, "application/json", r#"{"error":"unsupported_grant_type"}"#);
            }
            return ok(
                "application/json",
                json!({"access_token": GCP_ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"})
                    .to_string(),
            );
        }
        let Some((vendor, query)) = vendor_query(req) else {
            return status(
                404,
                "text/plain",
                format!("no vendor API at {} {}", req.method, req.path),
            );
        };
        if !authorized(vendor, req) {
            return status(401, "application/json", r#"{"error":"unauthorized"}"#);
        }
        vendor_answer(vendor, value_of(&query))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// The Kubernetes-API providers' resources, as CRDs of the embedded cluster.

/// A CRD of Keptn's `metrics.keptn.sh/v1beta1` (KeptnMetric, Analysis): namespaced, with the
/// status subresource, fields kept as Keptn's schema would.
pub fn keptn_crd(kind: &str, plural: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.metrics.keptn.sh")},
        "spec": {"group": "metrics.keptn.sh", "scope": "Namespaced",
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural,
                "singular": kind.to_lowercase()},
            "versions": [{"name": "v1beta1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
    })
}

/// A stand-in for an external metrics adapter's metric `metric`: the embedded cluster has no API
/// aggregation, so a CRD in `external.metrics.k8s.io/v1beta1` whose plural is the metric name
/// serves the same path (`/apis/external.metrics.k8s.io/v1beta1/namespaces/<ns>/<metric>`), the
/// same list shape (`ExternalMetricValueList` of `metricName`, `metricLabels`, `timestamp`,
/// `value`) and filters by `labelSelector` (on the objects' labels, which mirror
/// `metricLabels`). Metric names must then be DNS labels.
pub fn external_metric_crd(metric: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{metric}.external.metrics.k8s.io"),
            "annotations": {"api-approved.kubernetes.io": "unapproved, a test stand-in for an external metrics adapter"}},
        "spec": {"group": "external.metrics.k8s.io", "scope": "Namespaced",
            "names": {"kind": "ExternalMetricValue", "listKind": "ExternalMetricValueList",
                "plural": metric, "singular": metric},
            "versions": [{"name": "v1beta1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]}
    })
}

/// One value of the external metric `metric` in `namespace`, labelled `labels`.
pub fn external_metric_value(
    metric: &str,
    namespace: &str,
    name: &str,
    labels: Value,
    value: &str,
) -> Value {
    json!({
        "apiVersion": "external.metrics.k8s.io/v1beta1", "kind": "ExternalMetricValue",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "metricName": metric, "metricLabels": labels,
        "timestamp": "2024-03-01T12:30:00Z", "value": value,
    })
}
