//! `serin loadtester` in process: flagger-loadtester's gate endpoints, task types and their
//! replies, and native `hey` runs against a local server (counts and rates within a tolerance).
mod common;

use common::capture::Capture;
use serde_json::json;
use serin::loadtester::{Config, LoadTester, TaskType, router};
use std::sync::Arc;
use std::time::Duration;

async fn start(config: Config) -> (String, Arc<LoadTester>) {
    serin::install_crypto_provider();
    let lt = LoadTester::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = router(lt.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), lt)
}

fn payload(metadata: serde_json::Value) -> serde_json::Value {
    json!({"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "abc", "metadata": metadata})
}

async fn post(url: &str, body: &serde_json::Value) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("loadtester answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

async fn wait_idle(lt: &LoadTester, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !lt.running().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        lt.running().is_empty(),
        "tasks still running: {:?}",
        lt.running()
    );
}

#[tokio::test]
async fn gates_answer_as_flagger_loadtester_does() {
    let (base, _) = start(Config::default()).await;
    let p = payload(json!({}));
    let other = json!({"name": "other", "namespace": "test"});
    assert_eq!(
        post(&format!("{base}/gate/approve"), &p).await,
        (200, "OK".into())
    );
    assert_eq!(
        post(&format!("{base}/gate/halt"), &p).await,
        (403, "Forbidden".into())
    );
    assert_eq!(
        post(&format!("{base}/gate/check"), &p).await,
        (403, "Forbidden".into())
    );
    assert_eq!(
        post(&format!("{base}/gate/open"), &p).await,
        (202, String::new())
    );
    assert_eq!(
        post(&format!("{base}/gate/check"), &p).await,
        (200, "Approved".into())
    );
    assert_eq!(
        post(&format!("{base}/gate/check"), &other).await.0,
        403,
        "gates are per canary"
    );
    assert_eq!(
        post(&format!("{base}/rollback/check"), &p).await.0,
        403,
        "rollback is its own key"
    );
    assert_eq!(
        post(&format!("{base}/gate/close"), &p).await,
        (202, String::new())
    );
    assert_eq!(post(&format!("{base}/gate/check"), &p).await.0, 403);

    assert_eq!(post(&format!("{base}/rollback/open"), &p).await.0, 202);
    assert_eq!(
        post(&format!("{base}/rollback/check"), &p).await,
        (200, "Approved".into())
    );
    assert_eq!(post(&format!("{base}/gate/check"), &p).await.0, 403);
    assert_eq!(post(&format!("{base}/rollback/close"), &p).await.0, 202);
    assert_eq!(post(&format!("{base}/rollback/check"), &p).await.0, 403);

    let health = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(
        post(&format!("{base}/gate/check"), &json!("not a payload"))
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn tasks_are_validated_before_anything_runs() {
    let (base, _) = start(Config {
        namespace_regexp: Some(regex::Regex::new("^te").expect("regex")),
        ..Config::default()
    })
    .await;
    assert_eq!(
        post(&base, &payload(json!({}))).await,
        (400, "metadata not found in payload".into())
    );
    assert_eq!(
        post(&base, &payload(json!({"type": "ngrinder", "cmd": "x"}))).await,
        (400, "unknown task type ngrinder".into())
    );
    let (code, text) = post(&base, &payload(json!({"type": "bash", "cmd": "echo hi"}))).await;
    assert_eq!(code, 403);
    assert!(text.contains("--enable-types bash"), "{text}");
    let (code, text) = post(&base, &payload(json!({"cmd": "hey -n 1 -c 5 http://x/"}))).await;
    assert_eq!(
        (code, text.as_str()),
        (400, "hey: -n cannot be less than -c")
    );
    let mut elsewhere = payload(json!({"cmd": "true"}));
    elsewhere["namespace"] = json!("prod");
    assert_eq!(post(&base, &elsewhere).await, (403, "Forbidden".into()));
}

#[tokio::test]
async fn bash_tasks_run_synchronously_when_enabled() {
    let (base, _) = start(Config {
        enabled: [TaskType::Bash].into(),
        timeout: Duration::from_millis(500),
        ..Config::default()
    })
    .await;
    let ok =
        payload(json!({"type": "bash", "cmd": "echo hi; echo there", "returnCmdOutput": "true"}));
    assert_eq!(post(&base, &ok).await, (200, "hi\nthere\n".into()));
    let quiet = payload(json!({"type": "bash", "cmd": "echo hi"}));
    assert_eq!(post(&base, &quiet).await, (200, String::new()));
    let (code, text) = post(
        &base,
        &payload(json!({"type": "bash", "cmd": "echo broken >&2; exit 3"})),
    )
    .await;
    assert_eq!(code, 500);
    assert!(
        text.contains("exit status 3") && text.contains("broken"),
        "{text}"
    );
    let started = std::time::Instant::now();
    let (code, text) = post(&base, &payload(json!({"type": "bash", "cmd": "sleep 5"}))).await;
    assert_eq!(code, 500);
    assert!(text.contains("killed after"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // `cmd` was not enabled here.
    assert_eq!(post(&base, &payload(json!({"cmd": "true"}))).await.0, 403);
}

#[tokio::test]
async fn helm_without_the_binary_is_a_clear_error() {
    if std::process::Command::new("helm")
        .arg("version")
        .output()
        .is_ok()
    {
        // The image has helm: the missing-binary path is covered by the unit test on a
        // nonexistent binary name.
        return;
    }
    let (base, _) = start(Config::default()).await;
    let (code, text) = post(
        &base,
        &payload(json!({"type": "helmv3", "cmd": "test podinfo"})),
    )
    .await;
    assert_eq!(code, 500);
    assert_eq!(
        text,
        "helm binary not found in PATH; install it in the loadtester image"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hey_flags_are_executed_natively_with_the_exact_request_count() {
    let target = Capture::start().await;
    let (base, lt) = start(Config::default()).await;
    let cmd = format!(
        "hey -n 40 -c 4 -m POST -H 'X-Test: yes' -H 'Cookie: canary=always' -d '{{\"k\":1}}' -host podinfo.example -t 5 {}/load",
        target.base
    );
    assert_eq!(
        post(&base, &payload(json!({"cmd": cmd}))).await,
        (202, String::new())
    );
    wait_idle(&lt, 10).await;
    let got = target.requests();
    assert_eq!(got.len(), 40);
    for r in &got {
        assert_eq!(r.path, "/load");
        assert_eq!(r.body, json!({"k": 1}));
        assert_eq!(
            r.headers.get("x-test").and_then(|v| v.to_str().ok()),
            Some("yes")
        );
        assert_eq!(
            r.headers.get("cookie").and_then(|v| v.to_str().ok()),
            Some("canary=always")
        );
        assert_eq!(
            r.headers.get("host").and_then(|v| v.to_str().ok()),
            Some("podinfo.example")
        );
    }
    let reports = lt.reports();
    assert_eq!(reports.len(), 1);
    let (canary, report) = &reports[0];
    assert_eq!(canary, "podinfo.test");
    assert_eq!(report.count(), 40);
    assert_eq!(report.status_codes.get(&200), Some(&40));
    let text = report.render();
    assert!(
        text.contains("Requests/sec:") && text.contains("[200]\t40 responses"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hey_rate_limits_hold_within_twenty_percent() {
    let target = Capture::start().await;
    let (base, lt) = start(Config::default()).await;
    // 2 workers × 10 req/s for 2 s: 40 requests, 20 req/s.
    let cmd = format!("hey -z 2s -q 10 -c 2 {}/", target.base);
    assert_eq!(post(&base, &payload(json!({"cmd": cmd}))).await.0, 202);
    wait_idle(&lt, 10).await;
    let n = target.requests().len() as f64;
    assert!((32.0..=48.0).contains(&n), "{n} requests, want 40 ± 20%");
    let report = &lt.reports()[0].1;
    assert!(
        (16.0..=24.0).contains(&report.rps()),
        "{} req/s, want 20 ± 20%",
        report.rps()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_runs_once_per_canary_however_often_the_webhook_calls() {
    let target = Capture::start().await;
    let (base, lt) = start(Config::default()).await;
    let cmd = format!("hey -n 20 -c 2 -q 20 {}/", target.base);
    for _ in 0..3 {
        assert_eq!(post(&base, &payload(json!({"cmd": cmd}))).await.0, 202);
    }
    assert_eq!(lt.running().len(), 1);
    let mut other = payload(json!({"cmd": cmd}));
    other["name"] = json!("other");
    assert_eq!(post(&base, &other).await.0, 202);
    assert_eq!(lt.running().len(), 2, "another canary gets its own run");
    wait_idle(&lt, 10).await;
    assert_eq!(target.requests().len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_outlives_the_timeout_is_killed() {
    let target = Capture::start().await;
    let (base, lt) = start(Config {
        timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let started = std::time::Instant::now();
    let cmd = format!("hey -z 30s -c 1 -q 50 {}/", target.base);
    assert_eq!(post(&base, &payload(json!({"cmd": cmd}))).await.0, 202);
    assert_eq!(
        post(&base, &payload(json!({"cmd": "sleep 30"}))).await.0,
        202
    );
    wait_idle(&lt, 5).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(lt.reports().is_empty(), "a killed run has no report");
    let n = target.requests().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(target.requests().len(), n, "no requests after the kill");
}
