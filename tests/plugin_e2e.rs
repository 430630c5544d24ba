//! End to end: the `kubectl serin` plugin (the real binary, also run as `kubectl-serin` through
//! a symlink) against the real `serin controller` on the embedded cluster. Each request command
//! is written while the controller is stopped, and takes effect once it runs again.
mod common;

use common::e2e::*;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use serin::api::canary::RequestStatus;
use serin::api::{Canary, CanaryPhase};
use std::process::{Command, Output};
use std::time::Duration;

/// A blue/green run of 30 one-second iterations: long enough to act on it mid-run.
async fn progressing(env: &mut Env) -> anyhow::Result<Canary> {
    env.apply(config("blue")).await?;
    env.apply(podinfo("podinfo:1.0.0", json!({}))).await?;
    env.start_controller()?;
    env.apply(canary(
        "podinfo",
        "Deployment",
        "podinfo",
        json!({
            "progressDeadlineSeconds": 60,
            "analysis": {"interval": "1s", "threshold": 2, "iterations": 30}
        }),
    ))
    .await?;
    env.wait_phase("podinfo", CanaryPhase::Initialized, 30)
        .await?;
    env.apply(podinfo("podinfo:2.0.0", json!({}))).await?;
    env.wait_phase("podinfo", CanaryPhase::Progressing, 20)
        .await?;
    // The canary's pods are ready and the analysis has started counting.
    eventually(20, "the first iteration", || async {
        let c = env.canary("podinfo").await?;
        Ok((c.status.as_ref().is_some_and(|s| s.iterations >= 1)).then_some(c))
    })
    .await
}

/// Runs the plugin with the harness's kubeconfig; `as_kubectl` runs it as `kubectl-serin`.
fn plugin(env: &Env, as_kubectl: bool, args: &[&str]) -> anyhow::Result<Output> {
    let program = if as_kubectl {
        let link = env.dir.join("kubectl-serin");
        if !link.exists() {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_serin"), &link)?;
        }
        link
    } else {
        env!("CARGO_BIN_EXE_serin").into()
    };
    let out = Command::new(program)
        .args(args)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .env("NO_COLOR", "1")
        .output()?;
    Ok(out)
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn last_request(c: &Canary) -> Option<RequestStatus> {
    c.status.as_ref().and_then(|s| s.last_request.clone())
}

/// Writes a request with the controller stopped, checks nothing happened, then restarts it.
fn request_while_stopped(env: &mut Env, verb: &str) -> anyhow::Result<()> {
    env.stop_controller();
    let out = plugin(env, false, &[verb, "podinfo", "-n", NS, "--no-wait"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("{verb} requested for {NS}/podinfo")),
        "{}",
        text(&out)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_skips_the_rest_of_the_analysis_across_a_controller_restart() -> anyhow::Result<()>
{
    let mut env = Env::start("plugin-promote").await?;
    let before = progressing(&mut env).await?;
    let revision = before
        .status
        .and_then(|s| s.last_applied_spec)
        .unwrap_or_default();
    request_while_stopped(&mut env, "promote")?;
    let c = env.canary("podinfo").await?;
    let annotations = c.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("serin.dev/request"),
        Some(&format!("promote@{revision}"))
    );
    // The annotation was written under the plugin's field manager, and no status by it.
    let managers: Vec<(String, Option<String>)> = c
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.manager.unwrap_or_default(), m.subresource))
        .filter(|(m, _)| m == "kubectl-serin")
        .collect();
    assert_eq!(managers, vec![("kubectl-serin".to_string(), None)]);

    env.start_controller()?;
    let done = env
        .wait_phase("podinfo", CanaryPhase::Succeeded, 40)
        .await?;
    let ack = last_request(&done).expect("acknowledged");
    assert_eq!(ack.request, format!("promote@{revision}"));
    assert_eq!(ack.outcome, "Applied");
    let iterations_seen = env
        .api::<Event>()
        .list(&Default::default())
        .await?
        .items
        .iter()
        .filter(|e| {
            e.note
                .as_deref()
                .is_some_and(|n| n.starts_with("Advance podinfo.test canary iteration"))
        })
        .count();
    assert!(
        iterations_seen < 30,
        "the analysis was not cut short: {iterations_seen} iterations"
    );
    let primary = env.deployment("podinfo-primary").await?;
    assert_eq!(image_of(&primary).as_deref(), Some("podinfo:2.0.0"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_rolls_back_across_a_restart_and_retry_runs_the_revision_again() -> anyhow::Result<()>
{
    let mut env = Env::start("plugin-abort").await?;
    progressing(&mut env).await?;
    request_while_stopped(&mut env, "abort")?;
    env.start_controller()?;
    let failed = env.wait_phase("podinfo", CanaryPhase::Failed, 30).await?;
    let status = failed.status.clone().unwrap_or_default();
    assert_eq!(
        status.failure_reason.as_deref(),
        Some("abort requested (serin.dev/request)")
    );
    assert_eq!(
        last_request(&failed).map(|r| r.outcome).as_deref(),
        Some("Applied")
    );
    let primary = env.deployment("podinfo-primary").await?;
    assert_eq!(image_of(&primary).as_deref(), Some("podinfo:1.0.0"));
    assert_eq!(env.deployment("podinfo").await?.spec.replicas, Some(0));

    // Retry, with the controller stopped too, then waiting for its acknowledgement.
    env.stop_controller();
    let out = plugin(
        &env,
        false,
        &["retry", "podinfo", "-n", NS, "--timeout", "2"],
    )?;
    assert_eq!(
        out.status.code(),
        Some(6),
        "no controller, no acknowledgement: {}",
        text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no acknowledgement"));
    env.start_controller()?;
    let running = env
        .wait_phase("podinfo", CanaryPhase::Progressing, 30)
        .await?;
    assert_eq!(
        status.last_applied_spec,
        running.status.clone().and_then(|s| s.last_applied_spec)
    );
    let ack = last_request(&running).expect("acknowledged");
    assert!(ack.request.starts_with("retry@"), "{ack:?}");
    assert_eq!(ack.outcome, "Applied");

    // The same retry again is the same request: already handled, not run a third time.
    let out = plugin(&env, false, &["retry", "podinfo", "-n", NS])?;
    assert!(out.status.success(), "{}", text(&out));
    // A request about a revision that is no longer current is ignored, with a reason.
    let canaries: Api<Canary> = env.api();
    canaries
        .patch(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"metadata": {"annotations": {"serin.dev/request": "abort@v1:0000"}}}),
            ),
        )
        .await?;
    let ignored = eventually(10, "the stale abort to be ignored", || async {
        let c = env.canary("podinfo").await?;
        Ok(last_request(&c).filter(|r| r.outcome == "Ignored"))
    })
    .await?;
    assert!(
        ignored
            .message
            .unwrap_or_default()
            .contains("revision v1:0000 is no longer current"),
    );
    assert_eq!(
        env.canary("podinfo").await?.status.and_then(|s| s.phase),
        Some(CanaryPhase::Progressing),
        "the stale abort changed nothing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_the_run_across_a_restart_until_resume_and_the_plugin_reads_it()
-> anyhow::Result<()> {
    let mut env = Env::start("plugin-pause").await?;
    progressing(&mut env).await?;
    request_while_stopped(&mut env, "pause")?;
    env.start_controller()?;
    let paused = eventually(20, "the pause to be applied", || async {
        let c = env.canary("podinfo").await?;
        Ok((last_request(&c).is_some_and(|r| r.outcome == "Applied")).then_some(c))
    })
    .await?;
    let held = paused.status.clone().unwrap_or_default();
    assert!(held.paused_at.is_some());
    // Several intervals later the run has not moved.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let still = env.canary("podinfo").await?.status.unwrap_or_default();
    assert_eq!(
        (still.iterations, still.canary_weight, still.phase),
        (
            held.iterations,
            held.canary_weight,
            Some(CanaryPhase::Progressing)
        )
    );

    // get -A and status, as kubectl runs the plugin.
    let out = plugin(&env, true, &["get", "-A"])?;
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "NAMESPACE",
        "NAME",
        "PHASE",
        "WEIGHT",
        "FAILED",
        "ITERATION",
        "LAST CHECK",
        "AGE",
    ] {
        assert!(header.contains(column), "{table}");
    }
    assert!(table.contains("Progressing (paused)"), "{table}");
    let out = plugin(&env, true, &["status", "podinfo", "-n", NS])?;
    assert!(out.status.success(), "{}", text(&out));
    let view = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(view.contains("phase     Progressing"), "{view}");
    assert!(view.contains("paused"), "{view}");
    assert!(view.contains("Applied: paused at canary weight"), "{view}");
    assert!(view.contains("Paused podinfo.test"), "the events: {view}");

    // Resume, waiting for the acknowledgement; the run goes on to the end.
    let out = plugin(&env, false, &["resume", "podinfo", "-n", NS])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("controller: Applied: resumed"));
    eventually(20, "the run to go on", || async {
        let s = env.canary("podinfo").await?.status.unwrap_or_default();
        Ok((s.iterations > held.iterations && s.paused_at.is_none()).then_some(()))
    })
    .await?;

    // A malformed request is rejected with a Warning Event and changes nothing.
    let canaries: Api<Canary> = env.api();
    canaries
        .patch(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"serin.dev/request": "promot@x"}}})),
        )
        .await?;
    let rejected = eventually(10, "the bad request to be rejected", || async {
        let c = env.canary("podinfo").await?;
        Ok(last_request(&c).filter(|r| r.outcome == "Rejected"))
    })
    .await?;
    assert!(
        rejected
            .message
            .unwrap_or_default()
            .contains("unknown verb")
    );
    let warned = env
        .api::<Event>()
        .list(&Default::default())
        .await?
        .items
        .iter()
        .any(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.starts_with("Rejected serin.dev/request \"promot@x\""))
        });
    assert!(warned, "a Warning Event names the bad request");

    // Clear errors and exit codes.
    let out = plugin(&env, false, &["pause", "nope", "-n", NS])?;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("canary nope not found in namespace test")
    );
    let out = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args(["get", "--kubeconfig"])
        .arg(env.dir.join("missing.kubeconfig"))
        .output()?;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cluster"));
    Ok(())
}
