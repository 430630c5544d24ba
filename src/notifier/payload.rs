//! The JSON bodies of Flagger's alert providers (slack, discord, rocket, msteams, gchat) and of
//! Serin's generic JSON webhook; pure.
use serde_json::{Value, json};

use crate::api::Canary;
use crate::core::AlertSeverity;

/// Where an alert goes, by AlertProvider `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Slack incoming webhook (or chat.postMessage with a bot token).
    Slack,
    /// Discord's Slack-compatible endpoint.
    Discord,
    /// Rocket.Chat incoming webhook.
    Rocket,
    /// Microsoft Teams MessageCard connector.
    MsTeams,
    /// Google Chat card.
    GChat,
    /// Serin: a generic JSON webhook (`type: webhook`).
    Webhook,
}

/// An unknown AlertProvider type.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown alert provider type {0:?}; expected slack, msteams, discord, rocket, gchat or webhook"
)]
pub struct UnknownKind(pub String);

impl std::str::FromStr for Kind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "slack" => Self::Slack,
            "discord" => Self::Discord,
            "rocket" => Self::Rocket,
            "msteams" => Self::MsTeams,
            "gchat" => Self::GChat,
            "webhook" => Self::Webhook,
            other => return Err(UnknownKind(other.to_string())),
        })
    }
}

impl AlertSeverity {
    /// The wire string (`info`, `warn`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }

    /// Parses an alert's `severity`: empty means `info` (as Flagger documents), unknown too.
    pub fn parse_or_info(s: &str) -> Self {
        match s {
            "warn" => Self::Warn,
            "error" => Self::Error,
            _ => Self::Info,
        }
    }
}

/// One alert, ready to be shaped for a provider.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Canary name.
    pub name: String,
    /// Canary namespace.
    pub namespace: String,
    /// The text.
    pub text: String,
    /// Severity.
    pub severity: AlertSeverity,
    /// Extra facts (`Cluster`, `Target`, …), in order.
    pub fields: Vec<(String, String)>,
}

impl Message {
    fn id(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

/// Whether Flagger attaches the canary's analysis settings to this alert (it does for the
/// "initialization completed" and "progressing canary analysis" alerts).
pub fn is_metadata_alert(text: &str) -> bool {
    (text.starts_with("New ") && text.ends_with(" detected, initialization completed."))
        || text == "New revision detected, progressing canary analysis."
}

/// Flagger's alert fields: `Cluster` when named, and for metadata alerts the target, the
/// threshold, the progress deadline and the traffic routing.
pub fn fields(canary: &Canary, cluster: &str, text: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    if !cluster.is_empty() {
        out.push(("Cluster".into(), cluster.into()));
    }
    if !is_metadata_alert(text) {
        return out;
    }
    let ns = canary.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(t) = &canary.spec.target_ref {
        out.push(("Target".into(), format!("{}/{}.{ns}", t.kind, t.name)));
    }
    out.push((
        "Failed checks threshold".into(),
        canary.spec.threshold().to_string(),
    ));
    out.push((
        "Progress deadline".into(),
        format!("{}s", canary.spec.progress_deadline().as_secs()),
    ));
    let a = canary.spec.analysis_or_default();
    let max = canary.spec.max_weight();
    let routing = if a.step_weight.unwrap_or(0) > 0 {
        Some(format!(
            "Weight step: {} max: {max}",
            a.step_weight.unwrap_or(0)
        ))
    } else if let Some(steps) = a.step_weights.as_ref().filter(|s| !s.is_empty()) {
        let list: Vec<String> = steps.iter().map(i32::to_string).collect();
        Some(format!("Weight steps: {} max: {max}", list.join(",")))
    } else if a.match_.as_ref().is_some_and(|m| !m.is_empty()) {
        Some("A/B Testing".into())
    } else if a.iterations.unwrap_or(0) > 0 {
        Some("Blue/Green".into())
    } else {
        None
    };
    if let Some(r) = routing {
        out.push(("Traffic routing".into(), r));
    }
    out
}

fn slack_shaped(m: &Message, channel: &str, username: &str, good: &str, bad: &str) -> Value {
    let color = if m.severity == AlertSeverity::Error {
        bad
    } else {
        good
    };
    let fields: Vec<Value> = m
        .fields
        .iter()
        .map(|(k, v)| json!({"title": k, "value": v, "short": false}))
        .collect();
    json!({
        "channel": channel,
        "username": username,
        "icon_url": "",
        "icon_emoji": ":rocket:",
        "attachments": [{
            "color": color,
            "author_name": m.id(),
            "text": m.text,
            "mrkdwn_in": ["text"],
            "fields": fields,
        }],
    })
}

/// The body for a provider.
pub fn body(kind: Kind, m: &Message, channel: &str, username: &str) -> Value {
    match kind {
        Kind::Slack | Kind::Discord => slack_shaped(m, channel, username, "good", "danger"),
        Kind::Rocket => slack_shaped(m, channel, username, "#0076D7", "#FF0000"),
        Kind::MsTeams => {
            let facts: Vec<Value> = m
                .fields
                .iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect();
            json!({
                "@type": "MessageCard",
                "@context": "http://schema.org/extensions",
                "themeColor": if m.severity == AlertSeverity::Error { "FF0000" } else { "0076D7" },
                "summary": m.id(),
                "sections": [{
                    "activityTitle": m.text,
                    "activitySubtitle": m.id(),
                    "facts": facts,
                }],
            })
        }
        Kind::GChat => {
            let mut widgets = vec![json!({"textParagraph": {"text": m.text}})];
            widgets.extend(
                m.fields
                    .iter()
                    .map(|(k, v)| json!({"textParagraph": {"text": format!("<b>{k}</b>: {v}")}})),
            );
            json!({
                "cards": [{
                    "header": {
                        "title": "Flagger",
                        "subtitle": m.id(),
                        "imageUrl": "https://flagger.app/favicon.png",
                    },
                    "sections": [{"widgets": widgets}],
                }],
            })
        }
        Kind::Webhook => {
            let fields: serde_json::Map<String, Value> = m
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            json!({
                "name": m.name,
                "namespace": m.namespace,
                "severity": m.severity.as_str(),
                "message": m.text,
                "fields": fields,
            })
        }
    }
}

/// The address to POST to: Discord takes Slack's shape on its `/slack` endpoint.
pub fn endpoint(kind: Kind, address: &str) -> String {
    if kind == Kind::Discord && !address.trim_end_matches('/').ends_with("/slack") {
        format!("{}/slack", address.trim_end_matches('/'))
    } else {
        address.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discord_addresses_get_the_slack_suffix_once() {
        assert_eq!(
            endpoint(Kind::Discord, "https://discord.com/api/webhooks/1/x"),
            "https://discord.com/api/webhooks/1/x/slack"
        );
        assert_eq!(
            endpoint(Kind::Discord, "https://discord.com/api/webhooks/1/x/slack"),
            "https://discord.com/api/webhooks/1/x/slack"
        );
        assert_eq!(endpoint(Kind::Slack, "https://h/x"), "https://h/x");
    }

    #[test]
    fn metadata_alerts_are_recognised_by_flaggers_texts() {
        assert!(is_metadata_alert(
            "New Deployment detected, initialization completed."
        ));
        assert!(is_metadata_alert(
            "New revision detected, progressing canary analysis."
        ));
        assert!(!is_metadata_alert("Canary is waiting for approval."));
    }

    #[test]
    fn empty_and_unknown_severities_mean_info() {
        assert_eq!(AlertSeverity::parse_or_info(""), AlertSeverity::Info);
        assert_eq!(AlertSeverity::parse_or_info("warn"), AlertSeverity::Warn);
        assert_eq!(AlertSeverity::parse_or_info("error"), AlertSeverity::Error);
    }
}
