//! End to end: the real `serin controller` binary against the embedded cluster over HTTP, with the
//! `kubernetes` provider and 1-second intervals.
mod common;

use common::e2e::*;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::Api;
use serde_json::json;
use serin::api::CanaryPhase;
use serin::cluster::ClusterConfig;
use serin::cluster::sim::{self, SimConfig};
use std::process::Command;
use std::time::Duration;

async fn initialized(env: &mut Env) -> anyhow::Result<()> {
    env.initialized(json!({})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_new_version_is_promoted_and_the_services_select_the_right_pods()
-> anyhow::Result<()> {
    let mut env = Env::start("promote").await?;
    initialized(&mut env).await?;

    let primary = env.deployment("podinfo-primary").await?;
    assert_eq!(image_of(&primary).as_deref(), Some("podinfo:1.0.0"));
    assert_eq!(ready(&primary), 2);
    assert_eq!(env.deployment("podinfo").await?.spec.replicas, Some(0));
    let cm: ConfigMap = env.api().get("podinfo-config-primary").await?;
    assert_eq!(
        cm.data.and_then(|d| d.get("color").cloned()).as_deref(),
        Some("blue")
    );
    let services: Api<Service> = env.api();
    let selector = |s: Service| {
        s.spec
            .and_then(|s| s.selector)
            .and_then(|s| s.get("app").cloned())
    };
    assert_eq!(
        selector(services.get("podinfo").await?).as_deref(),
        Some("podinfo-primary")
    );
    assert_eq!(
        selector(services.get("podinfo-primary").await?).as_deref(),
        Some("podinfo-primary")
    );
    assert_eq!(
        selector(services.get("podinfo-canary").await?).as_deref(),
        Some("podinfo")
    );

    env.apply(podinfo("podinfo:2.0.0", json!({}))).await?;
    env.wait_phase("podinfo", CanaryPhase::Progressing, 15)
        .await?;
    let done = env
        .wait_phase("podinfo", CanaryPhase::Succeeded, 40)
        .await?;
    let primary = env.deployment("podinfo-primary").await?;
    assert_eq!(image_of(&primary).as_deref(), Some("podinfo:2.0.0"));
    assert_eq!(env.deployment("podinfo").await?.spec.replicas, Some(0));
    let promoted = done
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == "Promoted"));
    assert_eq!(promoted.map(|c| c.status).as_deref(), Some("True"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_new_version_fails_while_the_primary_keeps_serving() -> anyhow::Result<()> {
    let mut env = Env::start("rollback").await?;
    initialized(&mut env).await?;

    env.apply(podinfo(
        "podinfo:3.0.0",
        json!({"sim.serin.dev/fault": "unready"}),
    ))
    .await?;
    let watch_primary = async {
        // Sample the primary all along: it must keep two ready pods on the old image.
        for _ in 0..60 {
            let p = env.deployment("podinfo-primary").await?;
            assert_eq!(ready(&p), 2, "primary lost ready pods");
            assert_eq!(image_of(&p).as_deref(), Some("podinfo:1.0.0"));
            let phase = env.canary("podinfo").await?.status.and_then(|s| s.phase);
            if phase == Some(CanaryPhase::Failed) {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        anyhow::Ok(())
    };
    watch_primary.await?;
    let failed = env.wait_phase("podinfo", CanaryPhase::Failed, 30).await?;
    let reason = failed
        .status
        .and_then(|s| s.failure_reason)
        .unwrap_or_default();
    assert!(
        reason.contains("deadline") || reason.contains("not ready"),
        "{reason}"
    );
    assert_eq!(env.deployment("podinfo").await?.spec.replicas, Some(0));
    // Re-applying the failed revision unchanged does not start another run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        env.canary("podinfo").await?.status.and_then(|s| s.phase),
        Some(CanaryPhase::Failed)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_is_analysed_and_promoted_into_the_primary_copy() -> anyhow::Result<()> {
    let mut env = Env::start("config").await?;
    initialized(&mut env).await?;
    env.apply(config("green")).await?;
    env.wait_phase("podinfo", CanaryPhase::Progressing, 15)
        .await?;
    env.wait_phase("podinfo", CanaryPhase::Succeeded, 40)
        .await?;
    let cm: ConfigMap = env.api().get("podinfo-config-primary").await?;
    assert_eq!(
        cm.data.and_then(|d| d.get("color").cloned()).as_deref(),
        Some("green")
    );
    let primary = env.deployment("podinfo-primary").await?;
    let refs = serde_json::to_string(&primary.spec.template)?;
    assert!(
        refs.contains("podinfo-config-primary"),
        "primary must use the primary copy: {refs}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_canary_goes_through_the_same_lifecycle() -> anyhow::Result<()> {
    let mut env = Env::start("daemonset").await?;
    let ds = |image: &str| {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": NS},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "agent", "image": image}]}}
            }
        })
    };
    env.apply(ds("agent:1")).await?;
    env.start_controller()?;
    env.apply(canary("agent", "DaemonSet", "agent", json!({})))
        .await?;
    env.wait_phase("agent", CanaryPhase::Initialized, 30)
        .await?;
    let target: DaemonSet = env.api().get("agent").await?;
    let zero = target
        .spec
        .template
        .spec
        .and_then(|s| s.node_selector)
        .map(|n| n.contains_key("flagger.app/scale-to-zero"));
    assert_eq!(
        zero,
        Some(true),
        "the target DaemonSet is scaled to zero by node selector"
    );
    env.apply(ds("agent:2")).await?;
    env.wait_phase("agent", CanaryPhase::Succeeded, 40).await?;
    let primary: DaemonSet = env.api().get("agent-primary").await?;
    let image = primary
        .spec
        .template
        .spec
        .and_then(|s| s.containers.first().and_then(|c| c.image.clone()));
    assert_eq!(image.as_deref(), Some("agent:2"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_mid_analysis_resumes_at_the_same_iteration() -> anyhow::Result<()> {
    let mut env = Env::start("restart").await?;
    // A long run: 6 iterations of 2s.
    env.initialized(json!({"analysis": {"interval": "2s", "threshold": 2, "iterations": 6}}))
        .await?;
    env.apply(podinfo("podinfo:2.0.0", json!({}))).await?;
    eventually(30, "iteration 2", || async {
        Ok((env
            .canary("podinfo")
            .await?
            .status
            .map(|s| s.iterations)
            .unwrap_or(0)
            >= 2)
            .then_some(()))
    })
    .await?;
    env.stop_controller();
    let before = env.canary("podinfo").await?.status.unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = env.canary("podinfo").await?.status.unwrap_or_default();
    assert_eq!(
        (still.iterations, still.phase),
        (before.iterations, before.phase),
        "nothing moves without a controller"
    );
    env.start_controller()?;
    // The next iteration is exactly one more, never a restart from zero.
    let next = eventually(20, "the next iteration", || async {
        let s = env.canary("podinfo").await?.status.unwrap_or_default();
        Ok((s.iterations != before.iterations).then_some(s.iterations))
    })
    .await?;
    assert_eq!(next, before.iterations + 1);
    env.wait_phase("podinfo", CanaryPhase::Succeeded, 40)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_canary_with_revert_on_deletion_restores_the_target_first() -> anyhow::Result<()>
{
    let mut env = Env::start("revert").await?;
    env.initialized(json!({"revertOnDeletion": true})).await?;
    env.delete_finalized_canary("podinfo", 10).await?;
    // Until the canary is gone, the apex Service always selects ready pods.
    let services: Api<Service> = env.api();
    let selector = |apex: Service| selected_app(apex).unwrap_or_default();
    eventually(30, "the canary to be deleted", || async {
        let sel = selector(services.get("podinfo").await?);
        let backing = env.deployment(&sel).await.ok();
        // The two reads are not atomic: if the apex moved on in between (and the Deployment it
        // selected was removed after the switch), this sample says nothing.
        if selector(services.get("podinfo").await?) != sel {
            return Ok(None);
        }
        if backing.as_ref().map(ready).unwrap_or(0) == 0 {
            eprintln!("controller log:\n{}", env.log());
        }
        assert!(
            backing.as_ref().map(ready).unwrap_or(0) > 0,
            "apex selects {sel} with no ready pods: {:?}",
            backing.map(|d| (d.spec.replicas, d.status))
        );
        env.canary_gone("podinfo").await
    })
    .await?;
    let apex = services.get("podinfo").await?;
    assert_eq!(selected_app(apex).as_deref(), Some("podinfo"));
    assert_eq!(ready(&env.deployment("podinfo").await?), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_reported_on_the_canary_and_creates_nothing() -> anyhow::Result<()> {
    let mut env = Env::start("bad-input").await?;
    env.apply(podinfo("podinfo:1.0.0", json!({}))).await?;
    env.apply(config("blue")).await?;
    env.start_controller()?;
    env.apply(canary("podinfo", "Deployment", "missing", json!({})))
        .await?;
    let c = eventually(20, "a Ready=False condition", || async {
        let c = env.canary("podinfo").await?;
        let ready = c
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready").cloned());
        Ok(ready.filter(|r| r.status == "False"))
    })
    .await?;
    assert_eq!(c.reason, "TargetNotFound");
    assert_eq!(
        c.message.as_deref(),
        Some("Deployment missing.test not found")
    );
    assert!(
        env.api::<Deployment>()
            .get_opt("missing-primary")
            .await?
            .is_none()
    );
    assert!(env.api::<Service>().get_opt("missing").await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_succeeded_canary_makes_no_api_requests() -> anyhow::Result<()> {
    let mut env = Env::start("idle").await?;
    initialized(&mut env).await?;
    env.apply(podinfo("podinfo:2.0.0", json!({}))).await?;
    env.wait_phase("podinfo", CanaryPhase::Succeeded, 40)
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The filter below must match the controller's requests, or the test proves nothing.
    let during_run: u64 = env
        .cluster
        .requests()
        .snapshot()
        .iter()
        .filter(|r| r.key.user_agent.starts_with("serin-controller/") && r.key.verb == "patch")
        .map(|r| r.count)
        .sum();
    assert!(
        during_run > 0,
        "the controller's requests are not identifiable by User-Agent"
    );
    env.cluster.requests().reset();
    // Ten analysis intervals.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let calls: Vec<_> = env
        .cluster
        .requests()
        .snapshot()
        .into_iter()
        .filter(|r| r.key.user_agent.starts_with("serin-controller/") && r.key.verb != "watch")
        .collect();
    let total: u64 = calls.iter().map(|c| c.count).sum();
    println!("idle canary: {total} API requests in 10 intervals: {calls:?}");
    assert_eq!(total, 0, "{calls:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_refuses_to_start_without_the_crds() -> anyhow::Result<()> {
    let (cluster, _sims) =
        sim::start_cluster(ClusterConfig::default(), SimConfig::default()).await?;
    let dir = std::env::temp_dir().join(format!("serin-e2e-nocrds-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig)?;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_serin"))
            .args(["controller", "--port", "0", "--kubeconfig"])
            .arg(&kubeconfig)
            .output()
    })
    .await??;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the flagger.app CRDs are not installed (kubectl apply -f crds/)"),
        "{stderr}"
    );
    Ok(())
}
