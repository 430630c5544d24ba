//! The `MetricTemplate` kind (`flagger.app/v1beta1`): a provider plus a query template; pure data.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Serin: the MetricTemplate annotation holding a companion sample query (requests in the
/// window), rendered with the same variables as the template's query.
pub const SAMPLE_QUERY_ANNOTATION: &str = "serin.dev/sample-query";

/// Serin: the MetricTemplate annotation holding the judge's count of failed requests in the
/// window. With [`SAMPLE_QUERY_ANNOTATION`] (all requests in the window) it lets the judge
/// compare the error rates of the canary and of the primary, whose variant is the same queries
/// rendered with `{{ target }}` set to `<target>-primary`.
pub const ERRORS_QUERY_ANNOTATION: &str = "serin.dev/judge-errors-query";

/// The metric provider types the schema accepts.
pub const METRIC_PROVIDER_TYPES: [&str; 11] = [
    "prometheus",
    "influxdb",
    "datadog",
    "externalmetrics",
    "stackdriver",
    "cloudwatch",
    "newrelic",
    "graphite",
    "dynatrace",
    "keptn",
    "splunk",
];

/// A reusable metric query and the provider that answers it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "flagger.app",
    version = "v1beta1",
    kind = "MetricTemplate",
    plural = "metrictemplates",
    singular = "metrictemplate",
    namespaced,
    category = "all",
    status = "MetricTemplateStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "MetricTemplate is the Schema for the MetricTemplates API.",
    annotation("helm.sh/resource-policy", "keep"),
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider.type")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["provider", "query"]))]
pub struct MetricTemplateSpec {
    /// Where the query runs.
    #[serde(default)]
    pub provider: MetricProvider,
    /// The query, in Flagger's template syntax (`{{ namespace }}`, `{{ variables.x }}`, …).
    #[serde(default)]
    pub query: String,
}

/// A metrics backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["type"]))]
pub struct MetricProvider {
    /// Provider type.
    #[serde(default, rename = "type")]
    #[schemars(extend("enum" = METRIC_PROVIDER_TYPES))]
    pub type_: String,
    /// API address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Extra HTTP headers (Prometheus only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// Secret with the provider's credentials, in the template's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// Region (CloudWatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// A reference to a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["name"]))]
pub struct SecretRef {
    /// Name of the Secret.
    #[serde(default)]
    pub name: String,
}

/// MetricTemplate status (Flagger declares the subresource but writes nothing).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricTemplateStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<super::canary::CanaryCondition>>,
}
