//! `serin replay` against a live run: the real `serin controller` binary rolls a canary back on
//! the embedded cluster, with a real Prometheus scraping a test exporter, then the real
//! `serin replay --kubeconfig` replays that run's window (taken from the Canary's status) and
//! must name the same failing step and check.
mod common;

use anyhow::Context;
use chrono::{DateTime, Utc};
use common::e2e::{Env, NS, deployment};
use serde_json::{Value, json};
use serin::api::canary::CheckRecord;
use serin::api::time::from_time;
use serin::api::{Canary, CanaryPhase};
use std::process::{Command, Output};

#[path = "support/prometheus.rs"]
mod support;
use support::{Exporter, Prometheus, Workload};

/// Seconds between analysis ticks.
const INTERVAL: i64 = 3;
/// The live iteration after which the canary's traffic turns bad.
const TURNS_BAD_AFTER: i32 = 3;

/// Blue/green (kubernetes provider) at a 3 s interval, ten iterations, threshold 2, both builtin
/// checks over 5 s windows; `metrics` replaces the builtins when given.
fn canary(name: &str, metrics: Option<Value>) -> Value {
    let metrics = metrics.unwrap_or_else(|| {
        json!([
            {"name": "request-success-rate", "interval": "5s", "thresholdRange": {"min": 99}},
            {"name": "request-duration", "interval": "5s", "thresholdRange": {"max": 500}}
        ])
    });
    json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 120,
            "service": {"port": 9898},
            "analysis": {"interval": format!("{INTERVAL}s"), "threshold": 2, "iterations": 10,
                "metrics": metrics}
        }
    })
}

/// `serin replay` with `args`, as a user runs it.
fn replay(env: &Env, args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_serin"))
        .arg("replay")
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["-n", NS])
        .args(args)
        .output()?)
}

/// The names of the checks that failed, in order.
fn failing(records: &[CheckRecord]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.outcome == "Fail")
        .map(|r| format!("{} {}", r.kind, r.name))
        .collect()
}

/// One live tick that failed: when its checks ran, which failed, and the success rate seen.
#[derive(Debug)]
struct LiveFail {
    time: DateTime<Utc>,
    failing: Vec<String>,
    value: Option<f64>,
}

impl LiveFail {
    fn of(c: &Canary) -> Option<Self> {
        let records = c.status.as_ref()?.checks.clone()?;
        let failed = records.iter().find(|r| r.outcome == "Fail")?;
        Some(Self {
            time: from_time(failed.time.as_ref()?),
            failing: failing(&records),
            value: failed.value,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_rolled_back_run_from_the_cluster_names_the_live_failing_step_and_check()
-> anyhow::Result<()> {
    let exporter = Exporter::start().await?;
    let healthy = Workload::healthy("podinfo-5f7c9d8b4-x2k4p", NS, "podinfo");
    exporter.set(healthy.clone());
    let prom = Prometheus::start("replay-live", exporter.addr, false).await?;
    let env = Env::with_metrics_server("replay-live", &prom.url).await?;
    env.apply(deployment("podinfo", "podinfo:1.0.0")).await?;
    env.apply(canary("podinfo", None)).await?;
    env.wait_phase("podinfo", CanaryPhase::Initialized, 30)
        .await?;
    // The first replay step queries 5 s windows ending at the run's start: let them fill.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    env.apply(deployment("podinfo", "podinfo:2.0.0")).await?;

    // Live: just after the tick of iteration 3, half the canary's requests start failing; the
    // next ticks fail and the second failed check rolls the run back.
    let mut run_start = None;
    let mut fails: Vec<LiveFail> = Vec::new();
    let mut turned_bad = false;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let failed = loop {
        let c = env.canary("podinfo").await?;
        let st = c.status.clone().unwrap_or_default();
        if let Some(t) = &st.run_start_time {
            run_start = Some(from_time(t));
        }
        if !turned_bad && st.iterations >= TURNS_BAD_AFTER {
            anyhow::ensure!(
                st.iterations == TURNS_BAD_AFTER && st.failed_checks == 0,
                "the run went past iteration {TURNS_BAD_AFTER} unseen: {st:#?}"
            );
            exporter.set(Workload {
                error_ratio: 0.5,
                ..healthy.clone()
            });
            turned_bad = true;
        }
        if usize::try_from(st.failed_checks).unwrap_or(0) > fails.len()
            && let Some(f) = LiveFail::of(&c)
        {
            fails.push(f);
        }
        if st.phase == Some(CanaryPhase::Failed) {
            break c;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the live run did not roll back within 60s: {st:#?}\n{}",
            env.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let st = failed.status.clone().unwrap_or_default();
    let run_start = run_start.context("never saw status.runStartTime while the run went on")?;
    assert_eq!(
        st.last_run_start_time.as_ref().map(from_time),
        Some(run_start),
        "{st:#?}"
    );
    assert_eq!(st.failed_checks, 2, "{st:#?}");
    assert_eq!(fails.len(), 2, "both failing ticks seen live: {fails:#?}");
    println!("live failing ticks: {fails:#?}");

    // Live ticks run an interval after the last one as status records it (to the second), so
    // tick k runs at runStartTime + k × interval, a little late; the step it belongs to is the
    // nearest one on that grid.
    let step_of = |t: DateTime<Utc>| {
        let secs = (t - run_start).num_milliseconds() as f64 / 1000.0;
        (secs / INTERVAL as f64).round() as usize
    };
    let (first, rollback) = (step_of(fails[0].time), step_of(fails[1].time));
    // Tick 1 is the pre-rollout tick, so the tick after the traffic turned bad is the first that
    // can fail; it usually does, unless Prometheus had not scraped the bad traffic yet (a loaded
    // machine). Replay must find whichever step the live run failed at.
    assert!(
        first > usize::try_from(TURNS_BAD_AFTER)?,
        "live first failure {fails:#?} from {run_start} before the traffic turned bad"
    );
    assert_eq!(rollback, first + 1, "{fails:#?}");
    assert_eq!(
        fails[0].failing,
        ["metric request-success-rate"],
        "{fails:#?}"
    );

    // Replay: no window given, so it is the last run as the status records it.
    let out = replay(
        &env,
        &[
            "--canary",
            "podinfo",
            "--prometheus",
            &prom.url,
            "-o",
            "json",
        ],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(doc["canary"], format!("{NS}/podinfo"));
    let steps = doc["steps"].as_array().cloned().unwrap_or_default();
    let time_of = |s: &Value| -> anyhow::Result<DateTime<Utc>> {
        Ok(s["time"]
            .as_str()
            .context("a step without a time")?
            .parse()?)
    };
    let ended = failed
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Promoted"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(from_time)
        .context("no Promoted condition")?;
    // One step per interval from the run's start up to the rollback.
    assert_eq!(time_of(&steps[0])?, run_start, "{doc:#}");
    let last = time_of(steps.last().context("no steps")?)?;
    assert!(
        last <= ended && ended - last < chrono::Duration::seconds(INTERVAL),
        "{last} {ended}"
    );
    for (i, s) in steps.iter().enumerate() {
        let want = run_start + chrono::Duration::seconds(INTERVAL * i64::try_from(i)?);
        assert_eq!(time_of(s)?, want, "step {i}: {s:#}");
    }
    let replay_first = steps
        .iter()
        .position(|s| s["verdict"] == "Fail")
        .with_context(|| format!("no failing step in the replay: {doc:#}"))?;
    for s in &steps[..replay_first] {
        assert_eq!(s["verdict"], "Pass", "{s:#}");
    }
    let checks = |s: &Value| -> anyhow::Result<Vec<CheckRecord>> {
        Ok(serde_json::from_value(s["checks"].clone())?)
    };
    // The same failing step, the same failing check, and the rollback at the same step.
    assert_eq!(replay_first, first, "{doc:#}");
    assert_eq!(
        failing(&checks(&steps[first])?),
        fails[0].failing,
        "{doc:#}"
    );
    assert_eq!(steps[first]["failedChecks"], 1, "{doc:#}");
    assert_eq!(steps[rollback]["verdict"], "Fail", "{doc:#}");
    assert_eq!(
        failing(&checks(&steps[rollback])?),
        fails[1].failing,
        "{doc:#}"
    );
    assert_eq!(steps[rollback]["rollback"], true, "{doc:#}");
    assert_eq!(
        steps.iter().filter(|s| s["rollback"] == true).count(),
        1,
        "{doc:#}"
    );
    let value = |s: &Value| {
        checks(s).ok().and_then(|c| {
            c.iter()
                .find(|r| r.name == "request-success-rate")
                .and_then(|r| r.value)
        })
    };
    println!(
        "success rate at the failing step: live {:?}, replay {:?}; at the rollback: live {:?}, replay {:?}",
        fails[0].value,
        value(&steps[first]),
        fails[1].value,
        value(&steps[rollback])
    );

    // The text output of the same replay, for people.
    let text = replay(&env, &["--canary", "podinfo", "--prometheus", &prom.url])?;
    let text = String::from_utf8_lossy(&text.stdout);
    println!("{text}");
    let failing_line = format!(
        "{}  Fail  failedChecks 1",
        time_of(&steps[first])?.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert!(text.contains(&failing_line), "{failing_line:?} in\n{text}");
    assert!(text.contains("failedChecks 2  ROLLBACK"), "{text}");

    // The replay only read: a get of the Canary, nothing else (no templates here).
    let reads: Vec<String> = env
        .cluster
        .requests()
        .snapshot()
        .iter()
        .filter(|c| c.key.user_agent.starts_with("kubectl-serin/") && !c.key.resource.is_empty())
        .map(|c| format!("{} {}/{}", c.key.verb, c.key.resource, c.key.name))
        .collect();
    assert_eq!(reads, ["get canaries/podinfo"], "{reads:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_from_the_cluster_names_a_missing_canary_template_or_secret() -> anyhow::Result<()>
{
    let env = Env::start("replay-missing").await?;
    let template_metric = json!([{"name": "errors", "interval": "1m",
        "templateRef": {"name": "error-rate"}, "thresholdRange": {"max": 1}}]);
    env.apply(canary("podinfo", Some(template_metric))).await?;
    let window = [
        "--from",
        "2026-12-04T21:00:00Z",
        "--to",
        "2026-12-04T21:01:00Z",
    ];
    let fails_with = |args: &[&str], want: &str| -> anyhow::Result<()> {
        let out = replay(&env, args)?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{want:?} in {err}");
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        Ok(())
    };
    let with = |name: &'static str| [&["--canary", name][..], &window[..]].concat();

    fails_with(
        &with("nope"),
        "serin replay: canary nope not found in namespace test",
    )?;
    fails_with(
        &with("podinfo"),
        "serin replay: metric \"errors\" names MetricTemplate test/error-rate, which cannot be \
         read: not found",
    )?;
    env.apply(json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "error-rate", "namespace": NS},
        "spec": {"provider": {"type": "prometheus", "address": "http://127.0.0.1:1",
            "secretRef": {"name": "prom-auth"}}, "query": "vector(0)"}
    }))
    .await?;
    fails_with(
        &with("podinfo"),
        "serin replay: MetricTemplate test/error-rate names Secret test/prom-auth, which cannot \
         be read: not found",
    )?;
    env.apply(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "prom-auth", "namespace": NS},
        "stringData": {"username": "serin", "password": "x"}
    }))
    .await?;
    // Everything is there, but the Canary never ran: without --from its status cannot tell
    // the window.
    fails_with(
        &["--canary", "podinfo"],
        "serin replay: no --from given and the Canary's status does not tell it",
    )?;
    // With a window, the replay runs the template read from the cluster (its provider, at a
    // closed port, is an Error record at every step), and only reads.
    let out = replay(&env, &[&with("podinfo")[..], &["-o", "json"]].concat())?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let doc: Value = serde_json::from_slice(&out.stdout)?;
    let steps = doc["steps"].as_array().cloned().unwrap_or_default();
    assert_eq!(steps.len(), 21, "one step every 3 s over a minute: {doc:#}");
    let first: Vec<CheckRecord> = serde_json::from_value(steps[0]["checks"].clone())?;
    assert_eq!(first.len(), 1, "{first:#?}");
    assert_eq!(
        (first[0].name.as_str(), first[0].outcome.as_str()),
        ("errors", "Error"),
        "{first:#?}"
    );
    assert_eq!(first[0].query.as_deref(), Some("vector(0)"), "{first:#?}");
    let mut reads: Vec<String> = env
        .cluster
        .requests()
        .snapshot()
        .iter()
        .filter(|c| c.key.user_agent.starts_with("kubectl-serin/") && !c.key.resource.is_empty())
        .map(|c| format!("{} {}", c.key.verb, c.key.resource))
        .collect();
    reads.sort();
    reads.dedup();
    assert_eq!(
        reads,
        ["get canaries", "get metrictemplates", "get secrets"],
        "the replay only reads"
    );
    // Files and the cluster do not mix.
    let out = replay(
        &env,
        &[&with("podinfo")[..], &["--template", "t.yaml"]].concat(),
    )?;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
