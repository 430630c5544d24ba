//! Webhooks against a local HTTP server: every type's payload field by field, Flagger's success
//! rule, retries, timeouts, decision records and redaction.
mod common;

use common::capture::Capture;
use serde_json::json;
use serin::api::canary::{CanaryAnalysis, CanaryStatus, CanaryWebhook};
use serin::api::webhook_type::WebhookType;
use serin::api::{Canary, CanaryPhase, CanarySpec};
use serin::webhook::{Backoff, HttpWebhooks, Webhooks};
use std::collections::BTreeMap;
use std::time::Duration;

fn hook(kind: &str, url: String) -> CanaryWebhook {
    CanaryWebhook {
        name: format!("{kind}-hook"),
        type_: Some(kind.into()),
        url,
        metadata: Some(BTreeMap::from([
            ("cmd".to_string(), format!("test {kind}")),
            ("type".to_string(), "bash".to_string()),
        ])),
        ..Default::default()
    }
}

fn canary(hooks: Vec<CanaryWebhook>, phase: CanaryPhase) -> Canary {
    let mut c = Canary::new(
        "podinfo",
        CanarySpec {
            analysis: Some(CanaryAnalysis {
                webhooks: Some(hooks),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    c.metadata.namespace = Some("test".into());
    c.status = Some(CanaryStatus {
        phase: Some(phase),
        last_applied_spec: Some("v1:abc".into()),
        ..Default::default()
    });
    c
}

fn fast() -> HttpWebhooks {
    HttpWebhooks::new(None)
        .expect("client")
        .with_backoff(Backoff {
            min: Duration::from_millis(10),
            max: Duration::from_millis(50),
        })
}

fn check_common(body: &serde_json::Value, c: &Canary, phase: &str, kind: &str) {
    assert_eq!(body["name"], "podinfo");
    assert_eq!(body["namespace"], "test");
    assert_eq!(body["phase"], phase, "{kind}");
    assert_eq!(body["checksum"], serin::webhook::payload::checksum(c));
    assert_eq!(body["checksum"].as_str().map(str::len), Some(16));
    assert_eq!(body["metadata"]["cmd"], format!("test {kind}"));
    assert_eq!(body["metadata"]["type"], "bash");
}

#[tokio::test]
async fn every_webhook_type_sends_flaggers_payload_with_its_phase() {
    let srv = Capture::start().await;
    let h = fast();
    // (type, phase of the Canary, phase expected on the wire)
    let cases = [
        ("confirm-rollout", CanaryPhase::Waiting, "Waiting"),
        ("pre-rollout", CanaryPhase::Progressing, "Progressing"),
        ("rollout", CanaryPhase::Progressing, "Progressing"),
        ("", CanaryPhase::Progressing, "Progressing"),
        (
            "confirm-traffic-increase",
            CanaryPhase::Progressing,
            "Progressing",
        ),
        (
            "confirm-promotion",
            CanaryPhase::WaitingPromotion,
            "Progressing",
        ),
        ("post-rollout", CanaryPhase::Succeeded, "Succeeded"),
        ("rollback", CanaryPhase::Waiting, "Waiting"),
        ("event", CanaryPhase::Progressing, "Progressing"),
    ];
    for (kind, phase, wire) in cases {
        srv.clear();
        let c = canary(vec![hook(kind, srv.url(&format!("/{kind}")))], phase);
        let t: WebhookType = kind.parse().expect("type");
        match t {
            WebhookType::ConfirmRollout
            | WebhookType::ConfirmTrafficIncrease
            | WebhookType::ConfirmPromotion => {
                assert!(h.gate(&c, t, Some(phase)).await.is_ok(), "{kind}")
            }
            WebhookType::PreRollout | WebhookType::Rollout | WebhookType::PostRollout => {
                assert!(h.run(&c, t, Some(phase)).await.is_ok(), "{kind}")
            }
            WebhookType::Rollback => assert!(h.rollback_requested(&c, Some(phase)).await),
            WebhookType::Event => {
                h.event(
                    &c,
                    Some(phase),
                    true,
                    "Advance podinfo.test canary weight 10",
                )
                .await
            }
        }
        let got = srv.requests();
        assert_eq!(got.len(), 1, "{kind}: {got:?}");
        let r = &got[0];
        assert_eq!(r.path, format!("/{kind}"));
        assert_eq!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        check_common(&r.body, &c, wire, kind);
        let keys: Vec<&String> = r.body.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["checksum", "metadata", "name", "namespace", "phase"]);
        if t == WebhookType::Event {
            assert_eq!(
                r.body["metadata"]["eventMessage"],
                "Advance podinfo.test canary weight 10"
            );
            assert_eq!(r.body["metadata"]["eventType"], "Warning");
            let ts: i64 = r.body["metadata"]["timestamp"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("timestamp in ms");
            assert!((ts - chrono::Utc::now().timestamp_millis()).abs() < 60_000);
        }
    }
}

#[tokio::test]
async fn status_202_passes_and_203_fails_like_flagger() {
    let srv = Capture::start().await;
    let h = fast();
    let c = canary(
        vec![hook("rollout", srv.url("/"))],
        CanaryPhase::Progressing,
    );
    srv.answer(202, "accepted");
    assert!(h.run(&c, WebhookType::Rollout, None).await.is_ok());
    srv.answer(203, "non-authoritative");
    let e = h
        .run(&c, WebhookType::Rollout, None)
        .await
        .expect_err("203 fails");
    assert!(e.message.contains("returned 203"), "{}", e.message);
}

#[tokio::test]
async fn a_failure_is_recorded_with_the_url_the_code_and_200_bytes_of_body() {
    let srv = Capture::start().await;
    let h = fast();
    let c = canary(
        vec![hook("pre-rollout", srv.url("/check?token=s3cr3t"))],
        CanaryPhase::Progressing,
    );
    let body = format!("tests failed: {}", "x".repeat(400));
    srv.answer(403, &body);
    let e = h
        .run(&c, WebhookType::PreRollout, Some(CanaryPhase::Progressing))
        .await
        .expect_err("403 fails");
    assert!(
        e.message.starts_with(
            "Halt podinfo.test advancement pre-rollout check pre-rollout-hook failed POST "
        ),
        "{}",
        e.message
    );
    assert!(!e.message.contains("s3cr3t"), "{}", e.message);
    let r = e.record.expect("record");
    assert_eq!(r.name, "pre-rollout-hook");
    assert_eq!(r.kind, "webhook");
    assert_eq!(r.query, Some(format!("{}/check?token=redacted", srv.base)));
    assert_eq!(r.value, Some(403.0));
    assert_eq!(r.outcome, "Fail");
    let msg = r.message.expect("message");
    assert!(msg.contains("returned 403"), "{msg}");
    assert!(msg.ends_with(&body[..200]), "{msg}");
    assert!(!msg.contains(&body[..201]), "{msg}");
    assert_eq!(srv.requests().len(), 1, "403 is not retried");
}

#[tokio::test]
async fn retries_recover_from_5xx_and_give_up_after_the_last_attempt() {
    let srv = Capture::start().await;
    let h = fast();
    let mut w = hook("rollout", srv.url("/"));
    w.retries = Some(2);
    let c = canary(vec![w.clone()], CanaryPhase::Progressing);
    srv.script(&[(500, "a"), (503, "b"), (200, "ok")]);
    assert!(h.run(&c, WebhookType::Rollout, None).await.is_ok());
    assert_eq!(srv.requests().len(), 3);

    srv.clear();
    srv.answer(500, "down");
    let e = h
        .run(&c, WebhookType::Rollout, None)
        .await
        .expect_err("fails");
    assert!(
        e.message.contains("giving up after 3 attempt(s)"),
        "{}",
        e.message
    );
    assert_eq!(srv.requests().len(), 3);

    srv.clear();
    srv.answer(501, "not implemented");
    assert!(h.run(&c, WebhookType::Rollout, None).await.is_err());
    assert_eq!(srv.requests().len(), 1, "501 is not retried");
}

#[tokio::test]
async fn a_429_with_retry_after_waits_as_asked_before_retrying() {
    let srv = Capture::start().await;
    // Backoff alone would wait 10 ms; the server asks for 1 s.
    let h = HttpWebhooks::new(None)
        .expect("client")
        .with_backoff(Backoff {
            min: Duration::from_millis(10),
            max: Duration::from_secs(5),
        });
    let mut w = hook("rollout", srv.url("/"));
    w.retries = Some(1);
    let c = canary(vec![w], CanaryPhase::Progressing);
    srv.retry_after("1");
    srv.script(&[(429, "slow down"), (200, "ok")]);
    let started = std::time::Instant::now();
    assert!(h.run(&c, WebhookType::Rollout, None).await.is_ok());
    assert_eq!(srv.requests().len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_slow_webhook_times_out_and_the_record_says_so() {
    let srv = Capture::start().await;
    srv.delay(Duration::from_millis(1500));
    let h = fast();
    let mut w = hook("rollout", srv.url("/slow"));
    w.timeout = Some("200ms".into());
    let c = canary(vec![w], CanaryPhase::Progressing);
    let started = std::time::Instant::now();
    let e = h
        .run(&c, WebhookType::Rollout, None)
        .await
        .expect_err("times out");
    assert!(started.elapsed() < Duration::from_millis(1400));
    let r = e.record.expect("record");
    assert_eq!(r.outcome, "Error");
    assert_eq!(r.value, None);
    assert!(
        r.message
            .as_deref()
            .unwrap_or_default()
            .contains("timed out"),
        "{r:?}"
    );
}

#[tokio::test]
async fn gates_stop_at_the_first_closed_one() {
    let srv = Capture::start().await;
    let h = fast();
    let c = canary(
        vec![
            hook("confirm-promotion", srv.url("/a")),
            hook("confirm-promotion", srv.url("/b")),
        ],
        CanaryPhase::Progressing,
    );
    srv.answer(403, "Forbidden");
    let e = h
        .gate(&c, WebhookType::ConfirmPromotion, None)
        .await
        .expect_err("closed");
    assert!(
        e.message.starts_with(
            "Halt podinfo.test advancement waiting for promotion approval confirm-promotion-hook"
        ),
        "{}",
        e.message
    );
    assert_eq!(srv.requests().len(), 1);
}

#[tokio::test]
async fn a_rollback_hook_that_says_no_requests_nothing() {
    let srv = Capture::start().await;
    let h = fast();
    let c = canary(
        vec![hook("rollback", srv.url("/rollback/check"))],
        CanaryPhase::Waiting,
    );
    srv.answer(403, "Forbidden");
    assert!(!h.rollback_requested(&c, Some(CanaryPhase::Waiting)).await);
    srv.answer(200, "Approved");
    assert!(h.rollback_requested(&c, Some(CanaryPhase::Waiting)).await);
}

#[tokio::test]
async fn the_global_event_webhook_is_used_only_for_canaries_without_event_hooks() {
    let global = Capture::start().await;
    let own = Capture::start().await;
    let h = HttpWebhooks::new(Some(global.url("/events"))).expect("client");
    let plain = canary(vec![], CanaryPhase::Progressing);
    h.event(&plain, Some(CanaryPhase::Progressing), false, "hello")
        .await;
    let got = global.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].body,
        json!({
            "name": "podinfo", "namespace": "test", "phase": "Progressing",
            "checksum": serin::webhook::payload::checksum(&plain),
            "metadata": {"eventMessage": "hello", "eventType": "Normal", "timestamp": got[0].body["metadata"]["timestamp"]}
        })
    );

    let with_hook = canary(vec![hook("event", own.url("/"))], CanaryPhase::Progressing);
    h.event(&with_hook, Some(CanaryPhase::Progressing), false, "hi")
        .await;
    assert_eq!(own.requests().len(), 1);
    assert_eq!(
        global.requests().len(),
        1,
        "the canary's own event hook replaces the global one"
    );
}

#[tokio::test]
async fn a_refused_connection_is_an_error_record_without_the_secret() {
    let h = fast();
    let c = canary(
        vec![hook("rollout", "http://user:pw@127.0.0.1:9/x".into())],
        CanaryPhase::Progressing,
    );
    let e = h
        .run(&c, WebhookType::Rollout, None)
        .await
        .expect_err("refused");
    assert!(!e.message.contains("pw"), "{}", e.message);
    assert_eq!(e.record.expect("record").outcome, "Error");
}
