//! End to end: gates and rollback webhooks, answered by an in-process `serin loadtester`, with the
//! real `serin controller` binary against the embedded cluster (1-second intervals).
//! The harness is tests/common/e2e.rs.
mod common;

use anyhow::Context;
use common::e2e::*;
use serde_json::{Value, json};
use serin::api::{Canary, CanaryPhase};
use std::time::Duration;

/// An in-process loadtester; returns its base URL.
async fn loadtester() -> anyhow::Result<String> {
    serin::install_crypto_provider();
    let lt = serin::loadtester::LoadTester::new(Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = serin::loadtester::router(lt);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

async fn lt_post(url: String) -> anyhow::Result<()> {
    let resp = reqwest::Client::new()
        .post(url)
        .json(&json!({"name": "podinfo", "namespace": NS}))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().as_u16() == 202,
        "loadtester said {}",
        resp.status()
    );
    Ok(())
}

/// A canary with these webhooks, initialised, then given a new revision.
async fn with_hooks(env: &mut Env, analysis: Value) -> anyhow::Result<()> {
    env.initialized(json!({"analysis": analysis})).await?;
    env.apply(podinfo("podinfo:2.0.0", json!({}))).await?;
    Ok(())
}

async fn primary_image(env: &Env) -> anyhow::Result<Option<String>> {
    let primary = env.deployment("podinfo-primary").await?;
    Ok(primary
        .spec
        .template
        .spec
        .and_then(|s| s.containers.first().and_then(|c| c.image.clone())))
}

fn phase(c: &Canary) -> Option<CanaryPhase> {
    c.status.as_ref().and_then(|s| s.phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_confirm_rollout_gate_holds_waiting_until_it_opens() -> anyhow::Result<()> {
    let lt = loadtester().await?;
    let mut env = Env::start("confirm-rollout").await?;
    with_hooks(
        &mut env,
        json!({"interval": "1s", "threshold": 2, "iterations": 1, "webhooks": [
            {"name": "gate", "type": "confirm-rollout", "url": format!("{lt}/gate/check")}
        ]}),
    )
    .await?;
    let waiting = env.wait_phase("podinfo", CanaryPhase::Waiting, 15).await?;
    let record = waiting
        .status
        .and_then(|s| s.checks)
        .and_then(|c| c.into_iter().next())
        .context("a decision record for the closed gate")?;
    assert_eq!(record.name, "gate");
    assert_eq!(record.kind, "webhook");
    assert_eq!(record.query, Some(format!("{lt}/gate/check")));
    assert_eq!(record.value, Some(403.0));
    assert!(
        record
            .message
            .as_deref()
            .unwrap_or_default()
            .ends_with("Forbidden"),
        "{record:?}"
    );
    // Still waiting three ticks later, and the new revision was not scaled up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        phase(&env.canary("podinfo").await?),
        Some(CanaryPhase::Waiting)
    );
    assert_eq!(primary_image(&env).await?.as_deref(), Some("podinfo:1.0.0"));

    lt_post(format!("{lt}/gate/open")).await?;
    env.wait_phase("podinfo", CanaryPhase::Progressing, 15)
        .await?;
    env.wait_phase("podinfo", CanaryPhase::Succeeded, 40)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_confirm_promotion_gate_holds_waiting_promotion() -> anyhow::Result<()> {
    let lt = loadtester().await?;
    let mut env = Env::start("confirm-promotion").await?;
    with_hooks(
        &mut env,
        json!({"interval": "1s", "threshold": 2, "iterations": 1, "webhooks": [
            {"name": "promote", "type": "confirm-promotion", "url": format!("{lt}/gate/check")}
        ]}),
    )
    .await?;
    env.wait_phase("podinfo", CanaryPhase::WaitingPromotion, 30)
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        phase(&env.canary("podinfo").await?),
        Some(CanaryPhase::WaitingPromotion)
    );
    let image = primary_image(&env).await?;
    assert_eq!(
        image.as_deref(),
        Some("podinfo:1.0.0"),
        "not promoted while the gate is closed"
    );

    lt_post(format!("{lt}/gate/open")).await?;
    env.wait_phase("podinfo", CanaryPhase::Succeeded, 40)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_webhook_fails_a_canary_that_is_waiting_for_approval() -> anyhow::Result<()> {
    let lt = loadtester().await?;
    let mut env = Env::start("rollback-waiting").await?;
    with_hooks(
        &mut env,
        json!({"interval": "1s", "threshold": 2, "iterations": 1, "webhooks": [
            {"name": "gate", "type": "confirm-rollout", "url": format!("{lt}/gate/check")},
            {"name": "abort", "type": "rollback", "url": format!("{lt}/rollback/check")}
        ]}),
    )
    .await?;
    env.wait_phase("podinfo", CanaryPhase::Waiting, 15).await?;
    lt_post(format!("{lt}/rollback/open")).await?;
    let failed = env.wait_phase("podinfo", CanaryPhase::Failed, 15).await?;
    assert_eq!(
        failed.status.and_then(|s| s.failure_reason).as_deref(),
        Some("rollback webhook invoked while waiting for approval")
    );
    assert_eq!(primary_image(&env).await?.as_deref(), Some("podinfo:1.0.0"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_webhook_fails_a_progressing_canary() -> anyhow::Result<()> {
    let lt = loadtester().await?;
    let mut env = Env::start("rollback-progressing").await?;
    with_hooks(
        &mut env,
        json!({"interval": "1s", "threshold": 2, "iterations": 30, "webhooks": [
            {"name": "abort", "type": "rollback", "url": format!("{lt}/rollback/check")}
        ]}),
    )
    .await?;
    env.wait_phase("podinfo", CanaryPhase::Progressing, 15)
        .await?;
    lt_post(format!("{lt}/rollback/open")).await?;
    let failed = env.wait_phase("podinfo", CanaryPhase::Failed, 15).await?;
    assert!(failed.status.map(|s| s.iterations).unwrap_or(0) < 30);
    let image = primary_image(&env).await?;
    assert_eq!(image.as_deref(), Some("podinfo:1.0.0"));
    Ok(())
}
