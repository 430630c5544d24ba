//! The `Canary` kind (`flagger.app/v1beta1`): spec, status and phase types; pure data, no I/O.
//!
//! Field names, JSON spellings and schema constraints follow Flagger 1.44 so that existing manifests
//! parse unchanged. Enumerated strings (provider, kinds, webhook types, severities) stay `String` in
//! Rust and carry their enum in the schema: a bad value must surface as a precise validation message
//! (see [`crate::api::validation`]), never as a deserialization failure that would stall a watch.
// The derive takes one `printcolumn(...)` per column; clippy reads the repeated keys as duplicates.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::phase::CanaryPhase;

/// Desired state of a Canary: which workload to guard, how to expose it and how to analyse it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "flagger.app",
    version = "v1beta1",
    kind = "Canary",
    plural = "canaries",
    singular = "canary",
    namespaced,
    category = "all",
    status = "CanaryStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Canary is the Schema for the Canary API.",
    annotation("helm.sh/resource-policy", "keep"),
    // Status: the phase (the `Promoted` condition's reason is the phase), unless the `Ready`
    // condition says the canary is invalid or suspended, which `.status.phase` cannot show
    // (an invalid canary may never get a phase). The plan keeps `Ready` first in the list.
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.reason!=\"Valid\")].reason"
    ),
    printcolumn(name = "Weight", type_ = "string", json_path = ".status.canaryWeight"),
    printcolumn(
        name = "Waiting",
        type_ = "string",
        json_path = ".status.waitingFor.reason"
    ),
    printcolumn(
        name = "WaitingFor",
        type_ = "string",
        json_path = ".status.waitingFor.message",
        priority = "1"
    ),
    printcolumn(
        name = "Suspended",
        type_ = "boolean",
        json_path = ".spec.suspend",
        priority = "1"
    ),
    printcolumn(
        name = "FailedChecks",
        type_ = "string",
        json_path = ".status.failedChecks",
        priority = "1"
    ),
    printcolumn(
        name = "Interval",
        type_ = "string",
        json_path = ".spec.analysis.interval",
        priority = "1"
    ),
    printcolumn(
        name = "Mirror",
        type_ = "boolean",
        json_path = ".spec.analysis.mirror",
        priority = "1"
    ),
    printcolumn(
        name = "StepWeight",
        type_ = "string",
        json_path = ".spec.analysis.stepWeight",
        priority = "1"
    ),
    printcolumn(
        name = "StepWeights",
        type_ = "string",
        json_path = ".spec.analysis.stepWeights",
        priority = "1"
    ),
    printcolumn(
        name = "MaxWeight",
        type_ = "string",
        json_path = ".spec.analysis.maxWeight",
        priority = "1"
    ),
    printcolumn(
        name = "LastTransitionTime",
        type_ = "string",
        json_path = ".status.lastTransitionTime"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["targetRef", "analysis"]))]
pub struct CanarySpec {
    /// Traffic management provider for this canary; defaults to the controller's `--mesh-provider`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = crate::api::provider::PROVIDER_NAMES))]
    pub provider: Option<String>,

    /// Prometheus address for the builtin checks and inline queries; defaults to `--metrics-server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_server: Option<String>,

    /// The workload under test (Deployment, DaemonSet or Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,

    /// The autoscaler of the target, mirrored for the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler_ref: Option<AutoscalerRef>,

    /// The Ingress used by the `nginx` and `skipper` providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_ref: Option<TargetRef>,

    /// The ApisixRoute used by the `apisix` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_ref: Option<TargetRef>,

    /// The Gloo Upstream whose settings are copied into generated upstreams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ref: Option<UpstreamRef>,

    /// How the workload is exposed: Services and routing options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<CanaryService>,

    /// How new revisions are analysed and promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<CanaryAnalysis>,

    /// Seconds a rollout may take to make progress before the canary is rolled back (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,

    /// Promote new revisions without analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_analysis: Option<bool>,

    /// On deletion, restore the target from the primary before removing generated objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert_on_deletion: Option<bool>,

    /// Pause all canary runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// A reference to an object in the Canary's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["apiVersion", "kind", "name"]))]
pub struct TargetRef {
    /// API version of the referent, e.g. `apps/v1`.
    #[serde(default)]
    pub api_version: String,
    /// Kind of the referent.
    #[serde(default)]
    pub kind: String,
    /// Name of the referent.
    #[serde(default)]
    pub name: String,
}

impl TargetRef {
    /// Whether this names a Knative Service (`serving.knative.dev/v1`, kind `Service`), as
    /// Flagger's `IsKnativeService` decides.
    pub fn is_knative_service(&self) -> bool {
        self.kind == "Service" && self.api_version == "serving.knative.dev/v1"
    }
}

/// A reference to the target's autoscaler (HPA or KEDA ScaledObject).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["apiVersion", "kind", "name"]))]
pub struct AutoscalerRef {
    /// API version of the autoscaler, e.g. `autoscaling/v2`.
    #[serde(default)]
    pub api_version: String,
    /// `HorizontalPodAutoscaler` or `ScaledObject`.
    #[serde(default)]
    #[schemars(extend("enum" = ["HorizontalPodAutoscaler", "ScaledObject"]))]
    pub kind: String,
    /// Name of the autoscaler.
    #[serde(default)]
    pub name: String,
    /// KEDA only: replacement queries for the primary ScaledObject, by trigger name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_scaler_queries: Option<BTreeMap<String, String>>,
    /// Replica bounds for the primary's autoscaler, overriding the target's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_scaler_replicas: Option<ScalerReplicas>,
}

/// Replica bounds for the primary autoscaler.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalerReplicas {
    /// Lower bound (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_replicas: Option<i32>,
    /// Upper bound (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_replicas: Option<i32>,
}

/// A reference to a Gloo Upstream, possibly in another namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["apiVersion", "kind", "name"]))]
pub struct UpstreamRef {
    /// API version, `gloo.solo.io/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `Upstream`.
    #[serde(default)]
    #[schemars(extend("enum" = ["Upstream"]))]
    pub kind: String,
    /// Name of the Upstream.
    #[serde(default)]
    pub name: String,
    /// Namespace of the Upstream (defaults to the Canary's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// How the canary is exposed: the generated Services and the routing options shared by routers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["port"]))]
pub struct CanaryService {
    /// Apex Service name (default: the target's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Service port.
    #[serde(default)]
    pub port: i32,
    /// Name of the main port (default `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// Container port number or name (default: `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// Application protocol of the main port; `tcp` switches Istio to a TCP route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    /// Traffic distribution preference copied to generated Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["PreferClose", "PreferSameZone", "PreferSameNode"]))]
    pub traffic_distribution: Option<String>,
    /// Expose every named container port on the generated Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_discovery: Option<bool>,
    /// Generate headless Services (`clusterIP: None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headless: Option<bool>,
    /// Request timeout (Istio, Contour, Gateway API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Backend request timeout (Gateway API v1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_timeout: Option<String>,
    /// App Mesh mesh name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_name: Option<String>,
    /// App Mesh backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<String>>,
    /// Host names (Istio VirtualService hosts, HTTPRoute hostnames, SMI root service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// Generate an Istio delegate VirtualService (no hosts or gateways).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<bool>,
    /// Base route match conditions (Istio HTTPMatchRequest shape).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<Vec<HttpMatchRequest>>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    /// URI and authority rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpRewrite>,
    /// Static request mirrors (Gateway API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Vec<HttpRequestMirrorFilter>>,
    /// Header manipulation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    /// Istio gateways of the VirtualService (default `[mesh]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
    /// Parent references of the generated HTTPRoute (Gateway API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub gateway_refs: Option<Vec<ParentReference>>,
    /// CORS policy (Istio shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<CorsPolicy>,
    /// Istio traffic policy copied to both DestinationRules, kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::schema_util::preserved_object")]
    pub traffic_policy: Option<serde_json::Value>,
    /// Extra metadata for the apex Service and router objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apex: Option<CustomMetadata>,
    /// Extra metadata for the primary Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<CustomMetadata>,
    /// Extra metadata for the canary Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CustomMetadata>,
    /// Label and annotation keys on generated Services that Serin must leave alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmanaged_metadata: Option<UnmanagedMetadata>,
}

/// Labels and annotations added to a generated object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomMetadata {
    /// Labels to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Metadata keys owned by someone else.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnmanagedMetadata {
    /// Annotation keys to preserve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Vec<String>>,
    /// Label keys to preserve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
}

/// A string matcher: at most one of exact, prefix, suffix or regex.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = crate::api::schema_util::at_most_one_of(&["exact", "prefix", "suffix", "regex"])))]
pub struct StringMatch {
    /// Exact match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Prefix match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Suffix match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// RE2-style regular expression match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// Match conditions of a route (Istio HTTPMatchRequest shape, shared by `service.match` and
/// `analysis.match`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    /// Name of the match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// URI match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// Scheme match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    /// Method match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// Authority match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    /// Header matches by header name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, StringMatch>>,
    /// Port on the host being addressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Labels of the calling workload (Istio mesh gateway only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_labels: Option<BTreeMap<String, String>>,
    /// Gateways where the rule applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Vec<String>>,
    /// Query parameter matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_params: Option<BTreeMap<String, StringMatch>>,
    /// Case-insensitive URI matching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_uri_case: Option<bool>,
    /// Headers that must not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_headers: Option<BTreeMap<String, StringMatch>>,
    /// Namespace of the calling workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
}

/// Retry policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRetry {
    /// Number of retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// Timeout per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<String>,
    /// Conditions that trigger a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<String>,
}

/// URI and authority rewrite.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRewrite {
    /// New URI (or prefix, with `type: ReplacePrefixMatch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// New authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// `ReplacePrefixMatch`, or anything else for a full path replacement.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

/// Gateway API request mirror filter.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["backendRef"]))]
pub struct HttpRequestMirrorFilter {
    /// Where mirrored requests go.
    #[serde(default)]
    pub backend_ref: BackendObjectReference,
}

/// Gateway API backend reference.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["name"]))]
pub struct BackendObjectReference {
    /// API group ("" for core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind (default `Service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the backend.
    #[serde(default)]
    pub name: String,
    /// Namespace of the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Port of the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// Gateway API parent reference (a Gateway, or a Service for GAMMA meshes).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["name"]))]
pub struct ParentReference {
    /// API group (default `gateway.networking.k8s.io`; `core` or "" for a Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind (default `Gateway`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the parent.
    #[serde(default)]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the parent (default: the route's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Listener name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// Listener port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// Header operations for requests and responses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Headers {
    /// Operations on request headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    /// Operations on response headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

/// Add, set and remove header operations.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderOperations {
    /// Headers to append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<BTreeMap<String, String>>,
    /// Headers to overwrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<BTreeMap<String, String>>,
    /// Headers to remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<Vec<String>>,
}

/// Cross-origin resource sharing policy (Istio shape).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Allowed origins (deprecated Istio form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_origin: Option<Vec<String>>,
    /// Allowed origin patterns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_origins: Option<Vec<StringMatch>>,
    /// Allowed methods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,
    /// Allowed request headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<Vec<String>>,
    /// Headers exposed to the browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    /// How long preflight results may be cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// Whether credentials are allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
}

/// The analysis: schedule, traffic steps, checks, webhooks and alerts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [
    {"required": ["interval", "threshold", "iterations"]},
    {"required": ["interval", "threshold", "stepWeight"]},
    {"required": ["interval", "threshold", "stepWeights"]},
]))]
pub struct CanaryAnalysis {
    /// Time between analysis ticks (default `60s`, at least `10s` unless the controller allows less).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = crate::api::duration::INTERVAL_PATTERN))]
    pub interval: Option<String>,
    /// Number of ticks for A/B testing and blue/green.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<i32>,
    /// Percentage of traffic mirrored to the canary (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_weight: Option<i32>,
    /// Failed checks tolerated before rollback (values ≤ 0 mean 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<i32>,
    /// Highest canary weight before promotion (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_weight: Option<i32>,
    /// Weight added per successful tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight: Option<i32>,
    /// Explicit weight ladder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weights: Option<Vec<i32>>,
    /// Primary weight added per tick while promoting (0: all at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight_promotion: Option<i32>,
    /// Mirror traffic to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<bool>,
    /// Percent of primary pods that must be available (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_ready_threshold: Option<i32>,
    /// Percent of canary pods that must be available (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_ready_threshold: Option<i32>,
    /// A/B testing conditions.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<Vec<HttpMatchRequest>>,
    /// Metric checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<CanaryMetric>>,
    /// Webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Vec<CanaryWebhook>>,
    /// Alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Vec<CanaryAlert>>,
    /// Session affinity for canary runs (Istio and Gateway API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
    /// Serin: what an inconclusive metric check (no data, or the metrics provider failed) means.
    /// `fail` (the default, as in Flagger) counts it as a failed check; `hold` neither fails nor
    /// advances the step until data arrives, bounded by `progressDeadlineSeconds`. A value outside
    /// the range always fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["fail", "hold"]))]
    pub on_inconclusive: Option<String>,
    /// Serin: compare the canary with the primary over the same window (the statistical judge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<CanaryJudge>,
}

/// Serin: the statistical judge's settings (`analysis.judge`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryJudge {
    /// One-sided confidence required to fail a canary, in (0.5, 1); default 0.95.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// How much worse than the primary still passes, in percent (≥ 0); default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// The metrics judged (builtin checks, or metrics whose MetricTemplate declares judge
    /// queries); default: the builtin checks present in `analysis.metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<String>>,
}

impl CanaryJudge {
    /// The default confidence.
    pub const DEFAULT_CONFIDENCE: f64 = 0.95;
    /// The default tolerance, in percent.
    pub const DEFAULT_TOLERANCE: f64 = 10.0;

    /// The confidence, defaulted.
    pub fn confidence_or_default(&self) -> f64 {
        self.confidence.unwrap_or(Self::DEFAULT_CONFIDENCE)
    }

    /// The tolerance in percent, defaulted.
    pub fn tolerance_or_default(&self) -> f64 {
        self.tolerance.unwrap_or(Self::DEFAULT_TOLERANCE)
    }
}

/// A metric check.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["name"]))]
pub struct CanaryMetric {
    /// Name; `request-success-rate` and `request-duration` are builtin checks.
    #[serde(default)]
    pub name: String,
    /// Query window (default `1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = crate::api::duration::INTERVAL_PATTERN))]
    pub interval: Option<String>,
    /// Deprecated single threshold: a minimum for success rate, a maximum otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Accepted range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_range: Option<ThresholdRange>,
    /// Deprecated inline PromQL query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Reference to a MetricTemplate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<CrossNamespaceRef>,
    /// Variables exposed to the template as `variables.<key>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_variables: Option<BTreeMap<String, String>>,
    /// Serin: fewer requests than this in the window give `InsufficientSample` instead of a
    /// verdict on the value (builtin checks, and MetricTemplates with a sample query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<f64>,
}

/// Accepted range of a metric value; either bound may be absent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdRange {
    /// Lowest accepted value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Highest accepted value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// A name plus optional namespace (defaults to the Canary's).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["name"]))]
pub struct CrossNamespaceRef {
    /// Name of the referent.
    #[serde(default)]
    pub name: String,
    /// Namespace of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A webhook called during the analysis.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["name", "url"]))]
pub struct CanaryWebhook {
    /// Name of the webhook.
    #[serde(default)]
    pub name: String,
    /// When it runs (empty means `rollout`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = crate::api::webhook_type::WEBHOOK_TYPE_NAMES))]
    pub type_: Option<String>,
    /// Absolute http(s) URL.
    #[serde(default)]
    #[schemars(extend("format" = "url"))]
    pub url: String,
    /// Request timeout (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = crate::api::duration::INTERVAL_PATTERN))]
    pub timeout: Option<String>,
    /// Retries on transport errors, 429 and 5xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i32>,
    /// Do not alert when this webhook fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute_alert: Option<bool>,
    /// Skip TLS certificate verification.
    #[serde(
        default,
        rename = "disableTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_tls: Option<bool>,
    /// Key-value metadata sent in the payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// An alert routed to an AlertProvider.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["providerRef", "name"]))]
pub struct CanaryAlert {
    /// Name of the alert.
    #[serde(default)]
    pub name: String,
    /// Lowest severity delivered: `info`, `warn` or `error` (empty means `info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["", "info", "warn", "error"]))]
    pub severity: Option<String>,
    /// The AlertProvider.
    #[serde(default)]
    pub provider_ref: CrossNamespaceRef,
}

/// Session affinity cookie settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["cookieName"]))]
pub struct SessionAffinity {
    /// Cookie that pins a client to the canary.
    #[serde(default)]
    pub cookie_name: String,
    /// Cookie that pins a client to the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_cookie_name: Option<String>,
    /// Cookie domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Forbid JavaScript access to the cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    /// Cookie lifetime in seconds (default 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 86400))]
    pub max_age: Option<i32>,
    /// Store the cookie in partitioned storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioned: Option<bool>,
    /// Cookie path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `Strict`, `Lax` or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Strict", "Lax", "None"]))]
    pub same_site: Option<String>,
    /// Send only over https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
}

/// Observed state of a Canary. All progress lives here so that a restarted controller resumes exactly.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// Analysis phase.
    #[serde(
        default,
        deserialize_with = "super::phase::deserialize_optional_phase",
        skip_serializing_if = "Option::is_none"
    )]
    pub phase: Option<CanaryPhase>,
    /// Failed checks in the current run.
    #[serde(default)]
    pub failed_checks: i32,
    /// Traffic weight routed to the canary.
    #[serde(default)]
    pub canary_weight: i32,
    /// Completed iterations in the current run.
    #[serde(default)]
    pub iterations: i32,
    /// Checksums of tracked ConfigMaps and Secrets (`configmap/<name>`, `secret/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracked_configs: Option<BTreeMap<String, String>>,
    /// Fingerprint of the target's pod template at the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_spec: Option<String>,
    /// Fingerprint of what the primary runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_promoted_spec: Option<String>,
    /// Change fence of the canary target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tracked_revision: Option<String>,
    /// Time of the last status change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Session affinity cookie of the current run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_cookie: Option<String>,
    /// Primary session affinity cookie of the current run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_session_affinity_cookie: Option<String>,
    /// Session affinity cookie of the previous run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_session_affinity_cookie: Option<String>,
    /// Conditions: `Promoted` (as Flagger writes it) and, from Serin, `Ready` (False with the precise
    /// reason when the spec or target is unusable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<CanaryCondition>>,
    /// Serin: when the last analysis tick ran; the next one is due an interval later, so a restarted
    /// controller keeps the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis_time: Option<Time>,
    /// Serin: when the current run started (the canary's progress deadline counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_start_time: Option<Time>,
    /// Serin: when the last run started, kept after it ends (`serin replay` defaults its window
    /// from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_start_time: Option<Time>,
    /// Serin: why the last run failed, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Serin: since when the analysis has been inconclusive (held), if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_start_time: Option<Time>,
    /// Serin: the decision records of the last analysis tick, one per check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<CheckRecord>>,
    /// Serin: what keeps the canary from advancing, while something does (cleared when it
    /// advances).
    #[serde(
        default,
        deserialize_with = "deserialize_waiting_for",
        skip_serializing_if = "Option::is_none"
    )]
    pub waiting_for: Option<WaitingFor>,
    /// Serin: the last manual request (the `serin.dev/request` annotation, written by
    /// `kubectl serin`) and what the controller did with it. A request equal to this one (and
    /// not `Pending`) has been handled and is not applied again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request: Option<RequestStatus>,
    /// Serin: since when a `pause` request holds the current run (no weight changes, no
    /// analysis); absent when the run is not paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<Time>,
}

/// Reads `waitingFor`, taking `null` or one without a reason for none. Server-side apply
/// removes the fields a manager stops applying one by one and leaves their parent behind as
/// `null` (the schema marks the field `nullable` for that), or as `{}` on kube-apiserver
/// 1.36.0–1.36.2 (kubernetes-sigs/structured-merge-diff#331), which is also why the schema
/// requires none of its fields.
fn deserialize_waiting_for<'de, D>(d: D) -> Result<Option<WaitingFor>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let w = Option::<WaitingFor>::deserialize(d)?;
    Ok(w.filter(|w| !w.reason.is_empty()))
}

/// Serin: why a canary cannot advance right now.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitingFor {
    /// The cause, a CamelCase word: `CanaryPodsNotReady`, `PrimaryNotReady`,
    /// `RouteNotAccepted`, `GateClosed`, `MetricNoData`, `WebhookFailed`, ...
    #[serde(default)]
    pub reason: String,
    /// The cause in words, with counts where there are some (`canary Pods not ready: 1/3 ready`).
    #[serde(default)]
    pub message: String,
    /// Since when the canary has been waiting for this reason (unchanged while the reason stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// Serin: the acknowledgement of a manual request (`serin.dev/request: <verb>@<revision>`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["request", "outcome"]))]
pub struct RequestStatus {
    /// The annotation's value as the controller read it, e.g. `promote@v1:3f2a…`.
    pub request: String,
    /// When the controller handled it (or, while `Pending`, first saw it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Time>,
    /// `Applied`, `Pending` (accepted, waiting for the canary to be ready), `Ignored` (stale or
    /// not applicable in this phase) or `Rejected` (malformed).
    #[serde(default)]
    pub outcome: String,
    /// What was done, or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Serin: the last result of one check (a metric or a webhook), so a user can see why a step was
/// decided.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckRecord {
    /// Check name (the metric or webhook name).
    pub name: String,
    /// `metric` or `webhook`.
    #[serde(default)]
    pub kind: String,
    /// The query as sent (metrics) or the URL (webhooks; secrets redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The value found, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Lowest accepted value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Highest accepted value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// `Pass`, `Fail`, `NoData`, `Error` or `InsufficientSample`.
    #[serde(default)]
    pub outcome: String,
    /// Serin: the number of requests in the window (the check's sample), when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<f64>,
    /// Serin (judge): how much worse the canary is than the primary (a difference of error
    /// rates, or a ratio of latency quantiles minus one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<f64>,
    /// Serin (judge): the confidence interval of the effect, `[low, high]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Vec<f64>>,
    /// Serin (judge): the one-sided p-value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Details (the provider's error, the webhook's answer, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the check ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

/// A status condition.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("required" = ["type", "status", "reason"]))]
pub struct CanaryCondition {
    /// Condition type, e.g. `Promoted`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Last time the condition was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// Last time the status value changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Machine-readable reason (the phase name for `Promoted`).
    #[serde(default)]
    pub reason: String,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_for_left_empty_by_server_side_apply_reads_as_none() {
        let s: CanaryStatus =
            serde_json::from_value(serde_json::json!({"waitingFor": {}})).expect("status");
        assert_eq!(s.waiting_for, None);
        let s: CanaryStatus = serde_json::from_value(serde_json::json!({
            "waitingFor": {"reason": "GateClosed", "message": "confirm-promotion gate is closed"}
        }))
        .expect("status");
        assert_eq!(
            s.waiting_for.map(|w| w.reason).as_deref(),
            Some("GateClosed")
        );
    }
}
