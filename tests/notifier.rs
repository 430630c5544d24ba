//! Alerts against local HTTP servers: each provider's payload field by field, AlertProviders and
//! Secrets read from the embedded API server, severity routing, the global notifier, proxies and
//! failures that never block.
mod common;

use common::capture::Capture;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use serde_json::json;
use serin::api::Canary;
use serin::api::alert_provider::AlertProvider;
use serin::core::AlertSeverity;
use serin::notifier::{Destination, Kind, Message, Notifier, ProviderNotifier, send};

fn message(severity: AlertSeverity) -> Message {
    Message {
        name: "podinfo".into(),
        namespace: "test".into(),
        text: "Canary is waiting for approval.".into(),
        severity,
        fields: vec![("Cluster".into(), "prod-eu".into())],
    }
}

fn dest(kind: Kind, address: String) -> Destination {
    Destination {
        kind,
        address,
        channel: "deploys".into(),
        username: "serin-bot".into(),
        proxy: None,
        token: None,
    }
}

#[tokio::test]
async fn slack_discord_and_rocket_get_the_slack_shape_with_their_colours() {
    let srv = Capture::start().await;
    for (kind, path, want_path, good, bad) in [
        (Kind::Slack, "/slack-hook", "/slack-hook", "good", "danger"),
        (
            Kind::Discord,
            "/api/webhooks/1/x",
            "/api/webhooks/1/x/slack",
            "good",
            "danger",
        ),
        (Kind::Rocket, "/hooks/r", "/hooks/r", "#0076D7", "#FF0000"),
    ] {
        srv.clear();
        let mut d = dest(kind, srv.url(path));
        d.token = Some("xoxb-1".into());
        send(&d, &message(AlertSeverity::Warn)).await.expect("sent");
        send(&d, &message(AlertSeverity::Error))
            .await
            .expect("sent");
        let got = srv.requests();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].path, want_path);
        assert_eq!(
            got[0]
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer xoxb-1")
        );
        assert_eq!(
            got[0].body,
            json!({
                "channel": "deploys",
                "username": "serin-bot",
                "icon_url": "",
                "icon_emoji": ":rocket:",
                "attachments": [{
                    "color": good,
                    "author_name": "podinfo.test",
                    "text": "Canary is waiting for approval.",
                    "mrkdwn_in": ["text"],
                    "fields": [{"title": "Cluster", "value": "prod-eu", "short": false}],
                }],
            }),
            "{kind:?}"
        );
        assert_eq!(got[1].body["attachments"][0]["color"], bad, "{kind:?}");
    }
}

#[tokio::test]
async fn msteams_gets_a_message_card() {
    let srv = Capture::start().await;
    let d = dest(Kind::MsTeams, srv.url("/teams"));
    send(&d, &message(AlertSeverity::Info)).await.expect("sent");
    send(&d, &message(AlertSeverity::Error))
        .await
        .expect("sent");
    let got = srv.requests();
    assert_eq!(
        got[0].body,
        json!({
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "themeColor": "0076D7",
            "summary": "podinfo.test",
            "sections": [{
                "activityTitle": "Canary is waiting for approval.",
                "activitySubtitle": "podinfo.test",
                "facts": [{"name": "Cluster", "value": "prod-eu"}],
            }],
        })
    );
    assert_eq!(got[1].body["themeColor"], "FF0000");
    assert!(got[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn gchat_gets_a_card_and_the_generic_webhook_gets_plain_json() {
    let srv = Capture::start().await;
    send(
        &dest(Kind::GChat, srv.url("/g")),
        &message(AlertSeverity::Info),
    )
    .await
    .expect("sent");
    send(
        &dest(Kind::Webhook, srv.url("/w")),
        &message(AlertSeverity::Warn),
    )
    .await
    .expect("sent");
    let got = srv.requests();
    assert_eq!(
        got[0].body,
        json!({"cards": [{
            "header": {"title": "Flagger", "subtitle": "podinfo.test", "imageUrl": "https://flagger.app/favicon.png"},
            "sections": [{"widgets": [
                {"textParagraph": {"text": "Canary is waiting for approval."}},
                {"textParagraph": {"text": "<b>Cluster</b>: prod-eu"}},
            ]}],
        }]})
    );
    assert_eq!(
        got[1].body,
        json!({
            "name": "podinfo", "namespace": "test", "severity": "warn",
            "message": "Canary is waiting for approval.",
            "fields": {"Cluster": "prod-eu"},
        })
    );
}

#[tokio::test]
async fn a_proxy_is_used_when_the_provider_names_one() {
    let proxy = Capture::start().await;
    let mut d = dest(Kind::Slack, "http://chat.invalid/hook".into());
    d.proxy = Some(proxy.base.clone());
    send(&d, &message(AlertSeverity::Info))
        .await
        .expect("sent through the proxy");
    let got = proxy.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/hook");
    assert_eq!(
        got[0].headers.get("host").and_then(|v| v.to_str().ok()),
        Some("chat.invalid")
    );
}

#[tokio::test]
async fn a_non_2xx_answer_is_an_error_that_hides_the_webhook_path() {
    let srv = Capture::start().await;
    srv.answer(404, "no_team");
    let e = send(
        &dest(Kind::Slack, srv.url("/services/T0/B0/secret")),
        &message(AlertSeverity::Info),
    )
    .await
    .expect_err("404");
    let text = e.to_string();
    assert!(text.contains("404") && text.contains("no_team"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

fn canary_with_alerts(alerts: serde_json::Value) -> Canary {
    Canary::test()
        .analysis(json!({"interval": "1m", "threshold": 5, "maxWeight": 50, "alerts": alerts}))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_providers_and_secrets_are_read_from_the_cluster_and_severities_route()
-> anyhow::Result<()> {
    let cluster = serin::cluster::start(Default::default()).await?;
    let client = cluster.client()?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in serin::api::crd::all() {
        crds.create(&PostParams::default(), &crd).await?;
    }
    let nss: Api<Namespace> = Api::all(client.clone());
    for ns in ["test", "ops"] {
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    }
    let srv = Capture::start().await;
    let providers: Api<AlertProvider> = Api::namespaced(client.clone(), "test");
    let ops_providers: Api<AlertProvider> = Api::namespaced(client.clone(), "ops");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "ops");
    // The CRD is served once a list works.
    for _ in 0..100 {
        if providers.list(&Default::default()).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    providers
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "flagger.app/v1beta1", "kind": "AlertProvider",
                "metadata": {"name": "teams", "namespace": "test"},
                "spec": {"type": "msteams", "address": srv.url("/teams")}
            }))?,
        )
        .await?;
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "slack-url", "namespace": "ops"},
                "stringData": {"address": srv.url("/slack"), "token": "xoxb-2"}
            }))?,
        )
        .await?;
    ops_providers
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "flagger.app/v1beta1", "kind": "AlertProvider",
                "metadata": {"name": "slack", "namespace": "ops"},
                "spec": {"type": "slack", "channel": "alerts", "secretRef": {"name": "slack-url"}}
            }))?,
        )
        .await?;

    let canary = canary_with_alerts(json!([
        {"name": "all", "providerRef": {"name": "teams"}},
        {"name": "errors", "severity": "error", "providerRef": {"name": "slack", "namespace": "ops"}},
        {"name": "missing", "severity": "warn", "providerRef": {"name": "nope"}},
    ]));
    let n = ProviderNotifier::new(Some(client.clone()), None, "prod-eu");
    n.alert(
        &canary,
        AlertSeverity::Info,
        "New revision detected, progressing canary analysis.",
    )
    .await;
    let got = srv.requests();
    assert_eq!(
        got.len(),
        1,
        "only the info alert (empty severity) receives info"
    );
    assert_eq!(got[0].path, "/teams");
    assert_eq!(
        got[0].body["sections"][0]["facts"],
        json!([
            {"name": "Cluster", "value": "prod-eu"},
            {"name": "Target", "value": "Deployment/podinfo.test"},
            {"name": "Failed checks threshold", "value": "5"},
            {"name": "Progress deadline", "value": "600s"},
            {"name": "Traffic routing", "value": "Weight step: 10 max: 50"},
        ])
    );
    assert_eq!(n.failed(), 0);

    srv.clear();
    n.alert(
        &canary,
        AlertSeverity::Warn,
        "Canary is waiting for approval.",
    )
    .await;
    assert_eq!(
        srv.requests().len(),
        1,
        "warn: teams only (slack wants errors)"
    );
    assert_eq!(
        n.failed(),
        1,
        "the missing provider is counted as a failure"
    );

    srv.clear();
    n.alert(
        &canary,
        AlertSeverity::Error,
        "Failed checks threshold reached 5",
    )
    .await;
    let got = srv.requests();
    let paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/teams", "/slack"]);
    assert_eq!(got[1].body["channel"], "alerts");
    assert_eq!(got[1].body["attachments"][0]["color"], "danger");
    assert_eq!(
        got[1]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer xoxb-2")
    );
    assert_eq!(
        got[1].body["attachments"][0]["fields"],
        json!([{"title": "Cluster", "value": "prod-eu", "short": false}])
    );
    assert_eq!(n.failed(), 2);
    assert_eq!(n.sent(), 4);
    Ok(())
}

#[tokio::test]
async fn canaries_without_alerts_go_to_the_global_notifier_with_every_severity() {
    let srv = Capture::start().await;
    let n = ProviderNotifier::new(None, Some(dest(Kind::Slack, srv.url("/global"))), "");
    let canary = canary_with_alerts(json!([]));
    for s in [
        AlertSeverity::Info,
        AlertSeverity::Warn,
        AlertSeverity::Error,
    ] {
        n.alert(&canary, s, "Canary is waiting for approval.").await;
    }
    let got = srv.requests();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].body["attachments"][0]["fields"], json!([]));
    assert_eq!(n.sent(), 3);
}

#[tokio::test]
async fn an_unreachable_destination_is_counted_and_returns_quickly() {
    let n = ProviderNotifier::new(
        None,
        Some(dest(Kind::MsTeams, "http://127.0.0.1:9/x".into())),
        "",
    );
    let started = std::time::Instant::now();
    n.alert(&canary_with_alerts(json!([])), AlertSeverity::Error, "boom")
        .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(6));
    assert_eq!((n.sent(), n.failed()), (0, 1));
}
