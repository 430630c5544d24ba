//! `serin query` end to end: the real binary renders a Canary's metric from files (or from the
//! embedded cluster with `--kubeconfig`), runs it once against a local fake Datadog and prints the
//! query, value and outcome, with Flagger-style exit codes.
use std::path::Path;
use std::process::{Command, Output};

mod common;

const CANARY: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  analysis:
    interval: 1m
    threshold: 5
    stepWeight: 10
    metrics:
    - name: errors
      interval: 2m
      templateRef:
        name: dd-errors
      thresholdRange:
        max: 1
"#;

const SECRET: &str = r#"
apiVersion: v1
kind: Secret
metadata:
  name: datadog
  namespace: test
stringData:
  datadog_api_key: api-key-1
  datadog_application_key: app-key-2
"#;

fn template(address: &str) -> String {
    r#"
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: dd-errors
  namespace: test
spec:
  provider:
    type: datadog
    address: ADDRESS
    secretRef:
      name: datadog
  query: |
    sum:trace.errors{service:{{ printf "%s-%s" target namespace }}}.as_count()
"#
    .replace("ADDRESS", address)
}

/// A fake Datadog that answers `value` to requests with the right keys and 403 otherwise.
async fn datadog(value: Option<f64>) -> String {
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(
            move |headers: axum::http::HeaderMap,
                  axum::extract::Query(q): axum::extract::Query<
                std::collections::BTreeMap<String, String>,
            >| async move {
                let key = headers.get("dd-api-key").and_then(|v| v.to_str().ok());
                let app = headers
                    .get("dd-application-key")
                    .and_then(|v| v.to_str().ok());
                if key != Some("api-key-1") || app != Some("app-key-2") {
                    return (
                        axum::http::StatusCode::FORBIDDEN,
                        "{\"errors\":[\"Forbidden\"]}".to_string(),
                    );
                }
                let window =
                    q["to"].parse::<i64>().unwrap_or(0) - q["from"].parse::<i64>().unwrap_or(0);
                assert_eq!(window, 1200, "ten 2m intervals");
                assert_eq!(
                    q["query"],
                    "sum:trace.errors{service:podinfo-test}.as_count()\n"
                );
                let series = match value {
                    Some(v) => format!("[{{\"pointlist\":[[1704067200000.0,{v}]]}}]"),
                    None => "[]".into(),
                };
                (
                    axum::http::StatusCode::OK,
                    format!("{{\"status\":\"ok\",\"series\":{series}}}"),
                )
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write fixture");
    p.display().to_string()
}

async fn serin_query(dir: &Path, address: &str, secret: bool, json: bool) -> Output {
    let canary = write(dir, "canary.yaml", CANARY);
    let tpl = write(dir, "template.yaml", &template(address));
    let sec = write(dir, "secret.yaml", SECRET);
    let mut args = vec![
        "query",
        "--canary",
        &canary,
        "--metric",
        "errors",
        "--template",
        &tpl,
    ];
    if secret {
        args.extend(["--secret", sec.as_str()]);
    }
    if json {
        args.extend(["-o", "json"]);
    }
    let args: Vec<String> = args.into_iter().map(str::to_string).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_serin"))
            .args(&args)
            .output()
            .expect("serin runs")
    })
    .await
    .expect("joined")
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("serin-cli-query-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_inside_the_range_passes_and_prints_the_rendered_query() {
    let address = datadog(Some(0.5)).await;
    let dir = tempdir("pass");
    let out = serin_query(&dir, &address, true, false).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("provider: datadog"), "{stdout}");
    assert!(
        stdout.contains("query:    sum:trace.errors{service:podinfo-test}.as_count()"),
        "{stdout}"
    );
    assert!(stdout.contains("value:    0.5"), "{stdout}");
    assert!(stdout.contains("range:    min -, max 1"), "{stdout}");
    assert!(stdout.contains("outcome:  Pass"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_outside_the_range_fails_with_exit_1_and_json_output() {
    let address = datadog(Some(3.0)).await;
    let dir = tempdir("fail");
    let out = serin_query(&dir, &address, true, true).await;
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(v["outcome"], "Fail");
    assert_eq!(v["provider"], "datadog");
    assert_eq!(v["canary"], "test/podinfo");
    assert_eq!(v["checks"][0]["value"], 3.0);
    assert_eq!(v["checks"][0]["max"], 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_exits_1_and_a_missing_secret_is_an_error_with_exit_2() {
    let address = datadog(None).await;
    let dir = tempdir("nodata");
    let out = serin_query(&dir, &address, true, true).await;
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(v["outcome"], "NoData");

    let out = serin_query(&dir, &address, false, false).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("outcome:  Error"), "{stdout}");
    assert!(stdout.contains("no Secret test/datadog"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_metric_names_the_ones_the_canary_has() {
    let dir = tempdir("unknown");
    let canary = write(&dir, "canary.yaml", CANARY);
    let out = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args(["query", "--canary", &canary, "--metric", "nope"])
        .output()
        .expect("serin runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no metric \"nope\"; it has: errors")
    );
}

/// Creates `obj` in the cluster (its resource from `apiVersion` and `kind`).
async fn create(client: &kube::Client, obj: serde_json::Value) {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(client.clone(), "test", &common::e2e::ar(api_version, kind));
    api.create(
        &kube::api::PostParams::default(),
        &serde_json::from_value(obj).expect("object"),
    )
    .await
    .expect("created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_kubeconfig_the_template_and_secret_come_from_the_cluster() {
    let address = datadog(Some(0.5)).await;
    let cluster = serin::cluster::start(serin::cluster::ClusterConfig::default())
        .await
        .expect("cluster");
    let client = cluster.client().expect("client");
    common::e2e::install(&client, serin::api::crd::all())
        .await
        .expect("CRDs and namespace");
    let dir = tempdir("kubeconfig");
    let kubeconfig = dir.join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let canary = write(&dir, "canary.yaml", CANARY);
    let run = |canary: String, kubeconfig: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_serin"))
                .args([
                    "query", "--canary", &canary, "--metric", "errors", "-o", "json",
                ])
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .output()
                .expect("serin runs")
        })
        .await
        .expect("joined")
    };
    let json = |out: &Output| -> serde_json::Value {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "JSON output ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };

    // The template is in the cluster (CRDs are served shortly after they are created), the
    // Secret is not yet: an error that names the Secret, exit 2.
    let tpl: serde_json::Value =
        serde_yaml_ng::from_str(&template(&address)).expect("template YAML");
    let mut created = false;
    for _ in 0..100 {
        let api: kube::Api<serin::api::MetricTemplate> =
            kube::Api::namespaced(client.clone(), "test");
        if api
            .create(
                &kube::api::PostParams::default(),
                &serde_json::from_value(tpl.clone()).expect("template"),
            )
            .await
            .is_ok()
        {
            created = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(created, "the MetricTemplate was created");
    let out = run(canary.clone(), kubeconfig.clone()).await;
    assert_eq!(out.status.code(), Some(2), "{:?}", out);
    let v = json(&out);
    assert_eq!(v["outcome"], "Error");
    assert_eq!(v["provider"], "datadog");
    assert!(
        v["checks"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("test/datadog")),
        "{v}"
    );

    // With the Secret the check runs against the provider and passes.
    create(
        &client,
        serde_yaml_ng::from_str(SECRET).expect("secret YAML"),
    )
    .await;
    let out = run(canary, kubeconfig).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", out);
    let v = json(&out);
    assert_eq!(v["outcome"], "Pass");
    assert_eq!(v["checks"][0]["value"], 0.5);
    let _ = std::fs::remove_dir_all(&dir);
}
