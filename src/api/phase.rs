//! The Canary phase: Flagger's strings on the wire, with the `Promoted` condition mapping; pure.
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Where a Canary is in its lifecycle. An absent or empty phase means "not yet initialised".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CanaryPhase {
    /// The primary and generated Services are being created.
    Initializing,
    /// The primary serves all traffic; waiting for a new revision.
    Initialized,
    /// A new revision is held by a `confirm-rollout` gate.
    Waiting,
    /// A new revision is under analysis.
    Progressing,
    /// The analysis passed; promotion is held by a `confirm-promotion` gate.
    WaitingPromotion,
    /// The canary's template is being copied to the primary.
    Promoting,
    /// Traffic is back on the (new) primary; the canary is being scaled down.
    Finalising,
    /// The last revision was promoted.
    Succeeded,
    /// The last revision was rolled back.
    Failed,
    /// The Canary is being deleted and its target restored.
    Terminating,
    /// Reserved by Flagger; never written.
    Terminated,
}

impl CanaryPhase {
    /// Every phase, in lifecycle order.
    pub const ALL: [CanaryPhase; 11] = [
        Self::Initializing,
        Self::Initialized,
        Self::Waiting,
        Self::Progressing,
        Self::WaitingPromotion,
        Self::Promoting,
        Self::Finalising,
        Self::Succeeded,
        Self::Failed,
        Self::Terminating,
        Self::Terminated,
    ];

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initializing => "Initializing",
            Self::Initialized => "Initialized",
            Self::Waiting => "Waiting",
            Self::Progressing => "Progressing",
            Self::WaitingPromotion => "WaitingPromotion",
            Self::Promoting => "Promoting",
            Self::Finalising => "Finalising",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Terminating => "Terminating",
            Self::Terminated => "Terminated",
        }
    }

    /// True while a revision is being analysed or promoted (Flagger's "should advance" set).
    pub fn is_running(self) -> bool {
        matches!(
            self,
            Self::Progressing
                | Self::Waiting
                | Self::WaitingPromotion
                | Self::Promoting
                | Self::Finalising
        )
    }

    /// The status value, reason and message of the `Promoted` condition for this phase, as Flagger
    /// writes them. `kind` is the target kind (e.g. `Deployment`).
    pub fn promoted_condition(self, kind: &str) -> (&'static str, String) {
        match self {
            Self::Initializing => (
                "Unknown",
                format!("New {kind} detected, starting initialization."),
            ),
            Self::Initialized => ("True", format!("{kind} initialization completed.")),
            Self::Waiting | Self::WaitingPromotion => {
                ("Unknown", "Waiting for approval.".to_string())
            }
            Self::Progressing => (
                "Unknown",
                "New revision detected, progressing canary analysis.".to_string(),
            ),
            Self::Promoting => (
                "Unknown",
                "Canary analysis completed, starting primary rolling update.".to_string(),
            ),
            Self::Finalising => (
                "Unknown",
                "Canary analysis completed, routing all traffic to primary.".to_string(),
            ),
            Self::Succeeded => (
                "True",
                "Canary analysis completed successfully, promotion finished.".to_string(),
            ),
            Self::Failed => (
                "False",
                format!("Canary analysis failed, {kind} scaled to zero."),
            ),
            Self::Terminating | Self::Terminated => {
                ("Unknown", "Canary is being deleted.".to_string())
            }
        }
    }
}

impl fmt::Display for CanaryPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unrecognised phase string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown canary phase {0:?}")]
pub struct UnknownPhase(pub String);

impl FromStr for CanaryPhase {
    type Err = UnknownPhase;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPhase(s.to_string()))
    }
}

impl Serialize for CanaryPhase {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CanaryPhase {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Deserializes an optional phase where Flagger's empty string means "no phase yet".
pub(crate) fn deserialize_optional_phase<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<CanaryPhase>, D::Error> {
    let s: Option<String> = Option::deserialize(deserializer)?;
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

impl JsonSchema for CanaryPhase {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CanaryPhase".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut values = vec![serde_json::Value::from("")];
        values.extend(
            Self::ALL
                .iter()
                .map(|p| serde_json::Value::from(p.as_str())),
        );
        schemars::json_schema!({
            "description": "Analysis phase of this canary",
            "type": "string",
            "enum": values,
        })
    }
    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_round_trips_through_its_wire_string() {
        for p in CanaryPhase::ALL {
            assert_eq!(p.as_str().parse::<CanaryPhase>(), Ok(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<CanaryPhase>(&json).unwrap(), p);
        }
    }

    #[test]
    fn unknown_phase_strings_are_rejected() {
        assert!("Paused".parse::<CanaryPhase>().is_err());
    }

    #[test]
    fn promoted_condition_follows_flagger_messages() {
        assert_eq!(
            CanaryPhase::Failed.promoted_condition("Deployment"),
            (
                "False",
                "Canary analysis failed, Deployment scaled to zero.".to_string()
            )
        );
        assert_eq!(
            CanaryPhase::Initialized.promoted_condition("DaemonSet").0,
            "True"
        );
    }
}
