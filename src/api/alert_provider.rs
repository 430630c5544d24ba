//! The `AlertProvider` kind (`flagger.app/v1beta1`): where notifications go; pure data.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::metric_template::SecretRef;

/// The alert provider types the schema accepts (Flagger's five, plus Serin's generic JSON
/// `webhook`).
pub const ALERT_PROVIDER_TYPES: [&str; 6] =
    ["slack", "msteams", "discord", "rocket", "gchat", "webhook"];

/// A chat or webhook destination for alerts.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "flagger.app",
    version = "v1beta1",
    kind = "AlertProvider",
    plural = "alertproviders",
    singular = "alertprovider",
    namespaced,
    category = "all",
    status = "AlertProviderStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "AlertProvider is the Schema for the AlertProvider API.",
    annotation("helm.sh/resource-policy", "keep"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [
    {"required": ["type", "address"]},
    {"required": ["type", "secretRef"]},
]))]
pub struct AlertProviderSpec {
    /// Provider type.
    #[serde(default, rename = "type")]
    #[schemars(extend("enum" = ALERT_PROVIDER_TYPES))]
    pub type_: String,
    /// Channel (default `general`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Bot user name (default `flagger`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Webhook address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "url"))]
    pub address: Option<String>,
    /// HTTP(S) proxy for the webhook call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "url"))]
    pub proxy: Option<String>,
    /// Secret with key `address` (and optional `token`), overriding `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// AlertProvider status (Flagger declares the subresource but writes nothing).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertProviderStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<super::canary::CanaryCondition>>,
}
