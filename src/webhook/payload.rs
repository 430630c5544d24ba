//! The JSON body Flagger's webhooks send (and flagger-loadtester reads), and Serin's checksum; pure.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

use crate::api::webhook_type::WebhookType;
use crate::api::{Canary, CanaryPhase};

/// Metadata keys of `event` payloads; user metadata never overrides them.
pub const EVENT_MESSAGE: &str = "eventMessage";
/// `Normal` or `Warning`.
pub const EVENT_TYPE: &str = "eventType";
/// Unix milliseconds, as a string.
pub const EVENT_TIMESTAMP: &str = "timestamp";

/// The body of every webhook call: `{"name","namespace","phase","checksum","metadata"}`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Payload {
    /// The Canary's name.
    #[serde(default)]
    pub name: String,
    /// The Canary's namespace.
    #[serde(default)]
    pub namespace: String,
    /// The phase (Flagger's string; empty before the first phase is written).
    #[serde(default)]
    pub phase: String,
    /// Identifies the revision under analysis (see [`checksum`]).
    #[serde(default)]
    pub checksum: String,
    /// The webhook's metadata (omitted when empty, as Flagger does).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// The phase a webhook type reports, as Flagger sends it: hooks inside the analysis always say
/// `Progressing`; gates before a run, rollback and event hooks send the current phase;
/// post-rollout hooks send the outcome (`current`, given by the caller).
pub fn phase_for(kind: WebhookType, current: Option<CanaryPhase>) -> String {
    match kind {
        WebhookType::PreRollout
        | WebhookType::Rollout
        | WebhookType::ConfirmTrafficIncrease
        | WebhookType::ConfirmPromotion => CanaryPhase::Progressing.as_str().to_string(),
        WebhookType::ConfirmRollout
        | WebhookType::PostRollout
        | WebhookType::Rollback
        | WebhookType::Event => current.map(|p| p.as_str().to_string()).unwrap_or_default(),
    }
}

/// Identifies the revision a payload is about: a hex SHA-256 prefix of
/// `status.lastAppliedSpec` and the tracked configs' checksums. Flagger hashes the same inputs
/// differently, so the value differs from Flagger's; it only has to change with the revision.
pub fn checksum(canary: &Canary) -> String {
    let status = canary.status.as_ref();
    let mut h = Sha256::new();
    h.update(
        status
            .and_then(|s| s.last_applied_spec.as_deref())
            .unwrap_or_default(),
    );
    for (k, v) in status
        .and_then(|s| s.tracked_configs.as_ref())
        .into_iter()
        .flatten()
    {
        h.update(b"\n");
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
    }
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The payload of one webhook call.
pub fn payload(
    canary: &Canary,
    kind: WebhookType,
    phase: Option<CanaryPhase>,
    metadata: Option<&BTreeMap<String, String>>,
) -> Payload {
    Payload {
        name: canary.metadata.name.clone().unwrap_or_default(),
        namespace: canary.metadata.namespace.clone().unwrap_or_default(),
        phase: phase_for(kind, phase),
        checksum: checksum(canary),
        metadata: metadata.cloned().unwrap_or_default(),
    }
}

/// The payload of an `event` call: the event's message, type and time (Unix milliseconds) in
/// the metadata, merged over the webhook's own metadata.
pub fn event_payload(
    canary: &Canary,
    phase: Option<CanaryPhase>,
    warning: bool,
    message: &str,
    unix_millis: i64,
    metadata: Option<&BTreeMap<String, String>>,
) -> Payload {
    let mut p = payload(canary, WebhookType::Event, phase, metadata);
    p.metadata
        .insert(EVENT_MESSAGE.to_string(), message.to_string());
    p.metadata.insert(
        EVENT_TYPE.to_string(),
        if warning { "Warning" } else { "Normal" }.to_string(),
    );
    p.metadata
        .insert(EVENT_TIMESTAMP.to_string(), unix_millis.to_string());
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::canary::CanaryStatus;

    fn canary(spec: &str, configs: &[(&str, &str)]) -> Canary {
        let mut c = Canary::new("podinfo", Default::default());
        c.metadata.namespace = Some("test".into());
        c.status = Some(CanaryStatus {
            last_applied_spec: Some(spec.into()),
            tracked_configs: (!configs.is_empty()).then(|| {
                configs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            ..Default::default()
        });
        c
    }

    #[test]
    fn empty_metadata_is_omitted_from_the_body() {
        let p = payload(&canary("a", &[]), WebhookType::Rollout, None, None);
        let v = serde_json::to_value(&p).expect("encodes");
        assert_eq!(v.get("metadata"), None);
        assert_eq!(v["phase"], "Progressing");
        assert_eq!(v["name"], "podinfo");
        assert_eq!(v["namespace"], "test");
    }

    #[test]
    fn the_checksum_follows_the_spec_and_the_tracked_configs() {
        let base = checksum(&canary("a", &[("cm/x", "1")]));
        assert_eq!(base, checksum(&canary("a", &[("cm/x", "1")])));
        assert_ne!(base, checksum(&canary("b", &[("cm/x", "1")])));
        assert_ne!(base, checksum(&canary("a", &[("cm/x", "2")])));
        assert_eq!(base.len(), 16);
    }

    #[test]
    fn gates_before_a_run_send_the_current_phase_and_analysis_hooks_send_progressing() {
        let w = Some(CanaryPhase::Waiting);
        assert_eq!(phase_for(WebhookType::ConfirmRollout, w), "Waiting");
        assert_eq!(phase_for(WebhookType::Rollback, w), "Waiting");
        assert_eq!(phase_for(WebhookType::ConfirmPromotion, w), "Progressing");
        assert_eq!(
            phase_for(WebhookType::PostRollout, Some(CanaryPhase::Failed)),
            "Failed"
        );
        assert_eq!(phase_for(WebhookType::ConfirmRollout, None), "");
    }

    #[test]
    fn event_keys_override_user_metadata() {
        let user: BTreeMap<String, String> = [("eventType", "mine"), ("team", "a")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let p = event_payload(
            &canary("a", &[]),
            Some(CanaryPhase::Progressing),
            true,
            "hello",
            42,
            Some(&user),
        );
        assert_eq!(p.metadata["eventType"], "Warning");
        assert_eq!(p.metadata["eventMessage"], "hello");
        assert_eq!(p.metadata["timestamp"], "42");
        assert_eq!(p.metadata["team"], "a");
    }
}
