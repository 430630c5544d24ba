//! `serin replay` against a real Prometheus whose history was backfilled with promtool (Debian's
//! `prometheus` package): a canary that turns twice as slow as its primary at a known time is
//! reported failing from that step on, by the judge, while the absolute threshold still passes.
use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BUCKETS: [f64; 6] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
/// Seconds between backfilled samples.
const STEP: i64 = 15;

/// A Prometheus process over a backfilled TSDB, killed (and its directory removed) on drop.
struct History {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Drop for History {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bin(name: &str) -> PathBuf {
    let p = PathBuf::from("/usr/bin").join(name);
    assert!(
        p.exists(),
        "{} not found: install Debian's `prometheus` package (it ships promtool)",
        p.display()
    );
    p
}

/// One request series: cumulative counts at every step, `latency(t)` for each request.
fn series(
    out: &mut String,
    pod: &str,
    start: i64,
    steps: i64,
    rps: f64,
    latency: impl Fn(i64) -> f64,
) {
    let labels = format!(r#"kubernetes_namespace="test",kubernetes_pod_name="{pod}",status="200""#);
    let mut counts = vec![0.0; BUCKETS.len()];
    let mut total = 0.0;
    let mut lines: Vec<(String, Vec<String>)> = BUCKETS
        .iter()
        .map(|b| (format!("le=\"{b}\""), vec![]))
        .chain([("le=\"+Inf\"".to_string(), vec![])])
        .collect();
    let mut count_lines = vec![];
    for i in 0..steps {
        let t = start + i * STEP;
        let n = rps * STEP as f64;
        total += n;
        let l = latency(t);
        for (j, b) in BUCKETS.iter().enumerate() {
            if l <= *b {
                counts[j] += n;
            }
        }
        for (j, (_, v)) in lines.iter_mut().enumerate() {
            let c = if j < BUCKETS.len() { counts[j] } else { total };
            v.push(format!("{c} {t}"));
        }
        count_lines.push(format!("{total} {t}"));
    }
    for (le, values) in lines {
        for v in values {
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{labels},{le}}} {v}"
            );
        }
    }
    for v in count_lines {
        let _ = writeln!(out, "http_request_duration_seconds_count{{{labels}}} {v}");
    }
}

async fn backfilled(dir: &Path, openmetrics: &str) -> anyhow::Result<History> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("data"))?;
    std::fs::write(dir.join("history.om"), openmetrics)?;
    let out = Command::new(bin("promtool"))
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(dir.join("history.om"))
        .arg(dir.join("data"))
        .output()
        .context("running promtool")?;
    if !out.status.success() {
        bail!("promtool: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 15s\n",
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(bin("prometheus"))
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting prometheus")?;
    let h = History {
        child,
        dir: dir.to_path_buf(),
        url: format!("http://127.0.0.1:{port}"),
    };
    serin::install_crypto_provider();
    let client = reqwest::Client::new();
    for _ in 0..120 {
        let ready = client
            .get(format!("{}/-/ready", h.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(h);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("prometheus over the backfilled TSDB was not ready within 30s")
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reports_the_step_where_the_judge_catches_a_slow_canary() -> anyhow::Result<()> {
    // Two hours ago, on whole minutes: 30 minutes of history, the canary turning from 100 ms to
    // 200 ms after 15 minutes (its p99 stays under the absolute 500 ms limit).
    let now = chrono::Utc::now().timestamp();
    let start = (now - 2 * 3600) / 60 * 60;
    let change = start + 15 * 60;
    let steps = 30 * 60 / STEP;
    let mut om = String::new();
    series(
        &mut om,
        "podinfo-primary-5f7c9d-abcde",
        start,
        steps,
        10.0,
        |_| 0.1,
    );
    series(&mut om, "podinfo-5f7c9d-abcde", start, steps, 10.0, |t| {
        if t < change { 0.1 } else { 0.2 }
    });
    om.push_str("# EOF\n");
    let dir = std::env::temp_dir().join(format!("serin-replay-{}", std::process::id()));
    let prom = backfilled(&dir, &om).await?;

    let canary = dir.join("canary.yaml");
    std::fs::write(
        &canary,
        r#"apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis:
    interval: 1m
    threshold: 2
    maxWeight: 50
    stepWeight: 10
    judge: {confidence: 0.95, tolerance: 10}
    metrics:
    - {name: request-duration, interval: 1m, thresholdRange: {max: 500}, minSamples: 100}
"#,
    )?;
    let from = start + 5 * 60;
    let to = start + 25 * 60;
    let out = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args(["replay", "--canary"])
        .arg(&canary)
        .args(["--from", &rfc3339(from), "--to", &rfc3339(to)])
        .args(["--prometheus", &prom.url, "-o", "json"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let steps = doc["steps"].as_array().cloned().unwrap_or_default();
    assert_eq!(steps.len(), 21, "{doc:#}");
    let first_fail = steps
        .iter()
        .position(|s| s["verdict"] == "Fail")
        .with_context(|| format!("no failing step: {doc:#}"))?;
    // Every step before the change passes; the first failing step is the first whose 1 m window
    // holds slow requests: the one at the change, whose last sample counts the first of them.
    for s in &steps[..first_fail] {
        assert_eq!(s["verdict"], "Pass", "{s:#}");
    }
    let failed_at = steps[first_fail]["time"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(failed_at, rfc3339(change), "{doc:#}");
    let checks = steps[first_fail]["checks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let absolute = checks.iter().find(|c| c["kind"] == "metric");
    let judge = checks.iter().find(|c| c["kind"] == "judge");
    assert_eq!(
        absolute.map(|c| c["outcome"].clone()),
        Some("Pass".into()),
        "{checks:#?}"
    );
    assert_eq!(
        judge.map(|c| c["outcome"].clone()),
        Some("Fail".into()),
        "{checks:#?}"
    );
    assert!(judge.is_some_and(|c| c["effect"].as_f64().is_some_and(|e| e > 0.5)));
    // The threshold is 2: the second failing tick is the rollback.
    assert_eq!(steps[first_fail + 1]["rollback"], true, "{doc:#}");

    // The text output shows the same steps with the same outcome words.
    let text = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args(["replay", "--canary"])
        .arg(&canary)
        .args([
            "--from",
            &rfc3339(change - 60),
            "--to",
            &rfc3339(change + 60),
        ])
        .args(["--prometheus", &prom.url])
        .output()?;
    let text = String::from_utf8_lossy(&text.stdout);
    println!("{text}");
    assert!(
        text.contains(&format!("{}  Fail", rfc3339(change + 60))),
        "{text}"
    );
    assert!(text.contains("judge  Fail"), "{text}");
    Ok(())
}

#[test]
fn bad_times_are_refused_with_exit_code_two() {
    let out = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args([
            "replay",
            "--canary",
            "/nonexistent.yaml",
            "--from",
            "yesterday",
        ])
        .args(["--to", "2026-12-04T21:00:00Z"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--from \"yesterday\" is not an RFC 3339 time"),
        "{err}"
    );
}
