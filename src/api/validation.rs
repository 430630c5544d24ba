//! Semantic validation rules for Canary, MetricTemplate and AlertProvider specs; pure.
//!
//! These are the checks the schema cannot express. `serin validate` and the controller call the
//! same functions, so a manifest that lints clean is one the controller accepts.
use std::fmt;
use std::ops::RangeInclusive;

use super::alert_provider::{ALERT_PROVIDER_TYPES, AlertProviderSpec};
use super::canary::{CanaryAnalysis, CanaryService, CanarySpec, HttpMatchRequest, StringMatch};
use super::defaults::MIN_INTERVAL;
use super::duration::{parse_duration, parse_interval};
use super::metric_template::{METRIC_PROVIDER_TYPES, MetricTemplateSpec};
use super::provider::Provider;
use super::webhook_type::WebhookType;

/// How serious a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The controller would refuse the object.
    Error,
    /// The object works, but probably not as intended.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

/// One finding, located by a dotted field path such as `spec.analysis.metrics[0].interval`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// Where in the object.
    pub path: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl Problem {
    fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
        }
    }
    fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// What the rules need to know about the controller's configuration.
#[derive(Clone, Debug)]
pub struct ValidationContext {
    /// The provider used when `spec.provider` is empty (`--mesh-provider`).
    pub default_provider: String,
    /// The smallest analysis interval the controller runs (`--min-interval`).
    pub min_interval: std::time::Duration,
}

impl Default for ValidationContext {
    fn default() -> Self {
        Self {
            default_provider: "istio".to_string(),
            min_interval: MIN_INTERVAL,
        }
    }
}

/// True when any problem is an error.
pub fn has_errors(problems: &[Problem]) -> bool {
    problems.iter().any(|p| p.severity == Severity::Error)
}

const BUILTIN_METRICS: [&str; 2] = ["request-success-rate", "request-duration"];
const SEVERITIES: [&str; 4] = ["", "info", "warn", "error"];

/// Checks a Canary spec. An empty result means the controller accepts it.
pub fn validate_canary(spec: &CanarySpec, ctx: &ValidationContext) -> Vec<Problem> {
    let mut out = Vec::new();
    let provider_field = spec.provider.as_deref().filter(|p| !p.is_empty());
    let provider = match spec.provider(&ctx.default_provider) {
        Ok(p) => Some(p),
        Err(e) => {
            let path = if provider_field.is_some() {
                "spec.provider"
            } else {
                "--mesh-provider"
            };
            out.push(Problem::error(path, e.to_string()));
            None
        }
    };

    check_target(spec, provider, &mut out);
    check_service(spec, provider, &mut out);
    check_refs(spec, provider, &mut out);
    if let Some(p) = provider {
        check_provider_features(spec, p, &mut out);
    }

    if let Some(d) = spec.progress_deadline_seconds
        && d <= 0
    {
        out.push(Problem::error(
            "spec.progressDeadlineSeconds",
            format!("must be positive, got {d}"),
        ));
    }

    match &spec.analysis {
        Some(a) => check_analysis(spec, a, provider, ctx, &mut out),
        None => out.push(Problem::error(
            "spec.analysis",
            "analysis is required (use skipAnalysis: true to promote without checks)",
        )),
    }
    out
}

fn check_target(spec: &CanarySpec, provider: Option<Provider>, out: &mut Vec<Problem>) {
    let Some(t) = &spec.target_ref else {
        out.push(Problem::error("spec.targetRef", "targetRef is required"));
        return;
    };
    if t.name.is_empty() {
        out.push(Problem::error("spec.targetRef.name", "name is required"));
    }
    let knative = t.is_knative_service();
    match t.kind.as_str() {
        // Flagger ignores the apiVersion of workload targets (its FAQ even shows `v1`), so
        // Serin reads apps/v1 and only warns.
        "Deployment" | "DaemonSet" | "StatefulSet" if t.api_version != "apps/v1" => out.push(Problem::warning(
            "spec.targetRef.apiVersion",
            format!(
                "a {} target is read as apps/v1; got {:?}",
                t.kind, t.api_version
            ),
        )),
        "Deployment" | "DaemonSet" | "StatefulSet" | "Service" => {}
        other => out.push(Problem::error(
            "spec.targetRef.kind",
            format!(
                "unsupported target kind {other:?}; expected Deployment, DaemonSet, StatefulSet or Service"
            ),
        )),
    }
    if let Some(p) = provider {
        if knative && p != Provider::Knative {
            out.push(Problem::error(
                "spec.provider",
                "a Knative Service target needs provider: knative",
            ));
        }
        if p == Provider::Knative && !knative {
            out.push(Problem::error(
                "spec.targetRef",
                "provider knative needs a serving.knative.dev/v1 Service target",
            ));
        }
    }
    let service_target = t.kind == "Service" && !knative;
    if service_target && spec.autoscaler_ref.is_some() {
        out.push(Problem::error(
            "spec.autoscalerRef",
            "a Service target has no workload to scale; remove autoscalerRef",
        ));
    }
    if service_target
        && let Some(name) = spec
            .service
            .as_ref()
            .and_then(|s| s.name.as_deref())
            .filter(|n| !n.is_empty() && *n != t.name)
    {
        // The copies are named after the target; routers would point at Services that
        // never exist.
        out.push(Problem::error(
            "spec.service.name",
            format!(
                "a Service target is copied to {0}-primary and {0}-canary, so service.name must be empty or {0:?}, got {name:?}",
                t.name
            ),
        ));
    }
    if knative && spec.autoscaler_ref.is_some() {
        out.push(Problem::error(
            "spec.autoscalerRef",
            "Knative targets scale themselves; remove autoscalerRef",
        ));
    }
    if let Some(a) = &spec.autoscaler_ref {
        if !matches!(a.kind.as_str(), "HorizontalPodAutoscaler" | "ScaledObject") {
            out.push(Problem::error(
                "spec.autoscalerRef.kind",
                format!("unsupported autoscaler kind {:?}; expected HorizontalPodAutoscaler or ScaledObject", a.kind),
            ));
        }
        if let Some(r) = &a.primary_scaler_replicas
            && let (Some(min), Some(max)) = (r.min_replicas, r.max_replicas)
            && min > max
        {
            out.push(Problem::error(
                "spec.autoscalerRef.primaryScalerReplicas",
                format!("minReplicas {min} is greater than maxReplicas {max}"),
            ));
        }
    }
}

fn check_service(spec: &CanarySpec, provider: Option<Provider>, out: &mut Vec<Problem>) {
    let Some(s) = &spec.service else {
        // A Knative Service is its own router, and the `kubernetes` provider routes nothing
        // for a Service target; every other provider needs the port. (A Service target with
        // provider knative is already reported as the wrong target.)
        let needs_service = match spec.target_ref.as_ref() {
            Some(t) if t.is_knative_service() => false,
            Some(t) if t.kind == "Service" => {
                !matches!(provider, Some(Provider::Kubernetes | Provider::Knative))
            }
            _ => true,
        };
        if needs_service {
            out.push(Problem::error(
                "spec.service",
                "service is required (at least service.port)",
            ));
        }
        return;
    };
    if !(1..=65535).contains(&s.port) {
        out.push(Problem::error(
            "spec.service.port",
            format!("must be a port number between 1 and 65535, got {}", s.port),
        ));
    }
    for (field, value) in [
        ("timeout", &s.timeout),
        ("backendTimeout", &s.backend_timeout),
    ] {
        if let Some(v) = value
            && let Err(e) = parse_duration(v)
        {
            out.push(Problem::error(
                format!("spec.service.{field}"),
                e.to_string(),
            ));
        }
    }
    if let Some(p) = provider {
        let refs = s.gateway_refs.as_deref().unwrap_or_default();
        if p.is_gateway_api() && refs.is_empty() {
            out.push(Problem::error(
                "spec.service.gatewayRefs",
                format!(
                    "provider {p} needs at least one gatewayRefs entry (the HTTPRoute's parents)"
                ),
            ));
        }
        if p == Provider::Istio && s.delegation.unwrap_or(false) {
            let has_hosts = s.hosts.as_ref().is_some_and(|h| !h.is_empty());
            let has_gateways = s.gateways.as_ref().is_some_and(|g| !g.is_empty());
            if has_hosts || has_gateways {
                out.push(Problem::error(
                    "spec.service.delegation",
                    "a delegate VirtualService cannot also set hosts or gateways",
                ));
            }
        }
    }
    for (i, m) in s.match_.iter().flatten().enumerate() {
        check_match(&format!("spec.service.match[{i}]"), m, out);
    }
}

fn check_refs(spec: &CanarySpec, provider: Option<Provider>, out: &mut Vec<Problem>) {
    let Some(p) = provider else { return };
    if matches!(p, Provider::Nginx | Provider::Skipper) && spec.ingress_ref.is_none() {
        out.push(Problem::error(
            "spec.ingressRef",
            format!("provider {p} needs ingressRef (the Ingress to clone for the canary)"),
        ));
    }
    if p == Provider::Apisix && spec.route_ref.is_none() {
        out.push(Problem::error(
            "spec.routeRef",
            "provider apisix needs routeRef (the ApisixRoute to clone for the canary)",
        ));
    }
    if p == Provider::AppMesh
        && spec
            .service
            .as_ref()
            .and_then(|s| s.mesh_name.as_deref())
            .is_none_or(str::is_empty)
    {
        out.push(Problem::error(
            "spec.service.meshName",
            "provider appmesh (App Mesh v1beta1) needs meshName; with appmesh:v1beta2 the mesh comes from the namespace",
        ));
    }
    if spec.upstream_ref.is_some() && p != Provider::Gloo {
        out.push(Problem::error(
            "spec.upstreamRef",
            format!("upstreamRef is only used by the gloo provider, not {p}"),
        ));
    }
}

/// Routing features a provider's router cannot express are errors, never silently dropped.
fn check_provider_features(spec: &CanarySpec, p: Provider, out: &mut Vec<Problem>) {
    let svc = spec.service.clone().unwrap_or_default();
    let unsupported = |field: &str, out: &mut Vec<Problem>| {
        out.push(Problem::error(
            format!("spec.service.{field}"),
            format!("{field} is not supported by the {p} provider"),
        ))
    };
    let gw = p.is_gateway_api();
    let v1 = p == Provider::GatewayApiV1;
    let app_mesh = p.is_app_mesh();
    if svc.timeout.is_some() && !(p == Provider::Istio || v1 || p == Provider::Contour || app_mesh)
    {
        unsupported("timeout", out);
    }
    if svc.backend_timeout.is_some() && !v1 {
        unsupported("backendTimeout", out);
    }
    if svc.retries.is_some() && !matches!(p, Provider::Istio | Provider::Contour) && !app_mesh {
        unsupported("retries", out);
    }
    if svc.cors_policy.is_some() && !(p == Provider::Istio || v1) {
        unsupported("corsPolicy", out);
    }
    if v1
        && svc
            .cors_policy
            .as_ref()
            .is_some_and(|c| c.allow_origins.as_ref().is_some_and(|o| !o.is_empty()))
    {
        out.push(Problem::error(
            "spec.service.corsPolicy.allowOrigins",
            "Gateway API CORS takes plain origins: use allowOrigin",
        ));
    }
    if (svc.rewrite.is_some() || svc.headers.is_some()) && !(p == Provider::Istio || gw) {
        let field = if svc.rewrite.is_some() {
            "rewrite"
        } else {
            "headers"
        };
        unsupported(field, out);
    }
    if svc.mirror.as_ref().is_some_and(|m| !m.is_empty()) && !gw {
        unsupported("mirror", out);
    }
    let analysis = spec.analysis.clone().unwrap_or_default();
    if gw {
        // HTTPRoute matches headers and query params exactly or by regex, paths also by prefix.
        let matches = svc
            .match_
            .iter()
            .flatten()
            .map(|m| ("spec.service.match", m))
            .chain(
                analysis
                    .match_
                    .iter()
                    .flatten()
                    .map(|m| ("spec.analysis.match", m)),
            );
        for (i, (path, m)) in matches.enumerate() {
            let bad = m
                .headers
                .iter()
                .chain(m.query_params.iter())
                .flatten()
                .any(|(_, sm)| sm.exact.is_none() && sm.regex.is_none())
                || m.uri.as_ref().is_some_and(|u| u.suffix.is_some())
                || m.method.as_ref().is_some_and(|u| u.exact.is_none());
            if bad {
                out.push(Problem::error(
                    path,
                    format!("match {i}: Gateway API matches headers, query params and methods by exact value or regex, and paths by exact, prefix or regex"),
                ));
            }
        }
    }
    if p == Provider::Nginx {
        for (i, m) in analysis.match_.iter().flatten().enumerate() {
            let only_headers = m.uri.is_none()
                && m.method.is_none()
                && m.query_params.as_ref().is_none_or(|q| q.is_empty())
                && m.source_labels.is_none();
            let simple = m.headers.iter().flatten().all(|(k, sm)| {
                if k == "cookie" {
                    sm.exact.is_some()
                } else {
                    sm.exact.is_some() || sm.regex.is_some()
                }
            });
            if !only_headers || !simple {
                out.push(Problem::error(
                    format!("spec.analysis.match[{i}]"),
                    "NGINX routes A/B traffic by one header (exact or regex) or one cookie (exact) only",
                ));
            }
        }
    }
    if p == Provider::Gloo {
        check_gloo_matches(&svc, &analysis, out);
    }
    if app_mesh {
        check_app_mesh_matches(&svc, &analysis, out);
    }
    let ab =
        analysis.match_.as_ref().is_some_and(|m| !m.is_empty()) && analysis.iterations.is_some();
    if ab && analysis.session_affinity.is_some() {
        out.push(Problem::error(
            "spec.analysis.sessionAffinity",
            "session affinity needs progressive traffic (stepWeight or stepWeights), not A/B testing",
        ));
    }
}

/// Whether a match uses anything besides the listed kinds of condition.
fn uses_other_than(m: &HttpMatchRequest, headers: bool, query: bool, method: bool) -> bool {
    let some_map = |x: &Option<std::collections::BTreeMap<String, StringMatch>>| {
        x.as_ref().is_some_and(|x| !x.is_empty())
    };
    (!headers && some_map(&m.headers))
        || (!query && some_map(&m.query_params))
        || (!method && m.method.is_some())
        || m.uri.is_some()
        || m.scheme.is_some()
        || m.authority.is_some()
        || m.port.is_some()
        || m.source_labels.is_some()
        || m.gateways.is_some()
        || m.source_namespace.is_some()
        || some_map(&m.without_headers)
        || m.ignore_uri_case.is_some()
}

/// Gloo: the RouteTable inherits its path from the delegating VirtualService, and its A/B
/// matchers take headers and query parameters by exact value or regex, and methods.
fn check_gloo_matches(svc: &CanaryService, a: &CanaryAnalysis, out: &mut Vec<Problem>) {
    if svc.match_.as_ref().is_some_and(|m| !m.is_empty()) {
        out.push(Problem::error(
            "spec.service.match",
            "match is not supported by the gloo provider: the RouteTable inherits the path of the VirtualService that delegates to it",
        ));
    }
    for (i, m) in a.match_.iter().flatten().enumerate() {
        let inexact = m
            .headers
            .iter()
            .chain(m.query_params.iter())
            .flatten()
            .any(|(_, sm)| sm.exact.is_none() && sm.regex.is_none())
            || m.method.as_ref().is_some_and(|sm| sm.exact.is_none());
        if inexact || uses_other_than(m, true, true, true) {
            out.push(Problem::error(
                format!("spec.analysis.match[{i}]"),
                "Gloo matches A/B traffic by headers and query params (exact value or regex) and by method (exact)",
            ));
        }
    }
}

/// App Mesh: routes match a URI prefix, and A/B routes one set of headers that must all match.
fn check_app_mesh_matches(svc: &CanaryService, a: &CanaryAnalysis, out: &mut Vec<Problem>) {
    for (i, m) in svc.match_.iter().flatten().enumerate() {
        let prefix_only = i == 0
            && !uses_other_than(
                &HttpMatchRequest {
                    uri: None,
                    ..m.clone()
                },
                false,
                false,
                false,
            )
            && m.uri
                .as_ref()
                .is_none_or(|u| u.exact.is_none() && u.suffix.is_none() && u.regex.is_none());
        if !prefix_only {
            out.push(Problem::error(
                format!("spec.service.match[{i}]"),
                "App Mesh routes by one URI prefix only (service.match[0].uri.prefix)",
            ));
        }
    }
    let matches = a.match_.as_deref().unwrap_or_default();
    if matches.len() > 1 {
        out.push(Problem::error(
            "spec.analysis.match",
            "App Mesh takes one A/B match entry (its headers must all match); alternatives cannot be expressed",
        ));
    }
    for (i, m) in matches.iter().enumerate() {
        if uses_other_than(m, true, false, false) {
            out.push(Problem::error(
                format!("spec.analysis.match[{i}]"),
                "App Mesh matches A/B traffic by headers only",
            ));
        }
    }
}

fn check_match(path: &str, m: &HttpMatchRequest, out: &mut Vec<Problem>) {
    let single = |p: String, sm: &StringMatch, out: &mut Vec<Problem>| {
        let set = [&sm.exact, &sm.prefix, &sm.suffix, &sm.regex]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if set > 1 {
            out.push(Problem::error(
                p.clone(),
                "set only one of exact, prefix, suffix or regex",
            ));
        }
        if let Some(re) = &sm.regex
            && let Err(e) = regex::Regex::new(re)
        {
            out.push(Problem::error(p, format!("invalid regex {re:?}: {e}")));
        }
    };
    for (name, sm) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            single(format!("{path}.{name}"), sm, out);
        }
    }
    for (field, map) in [
        ("headers", &m.headers),
        ("queryParams", &m.query_params),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (k, sm) in map.iter().flatten() {
            single(format!("{path}.{field}.{k}"), sm, out);
        }
    }
}

fn check_analysis(
    spec: &CanarySpec,
    a: &CanaryAnalysis,
    provider: Option<Provider>,
    ctx: &ValidationContext,
    out: &mut Vec<Problem>,
) {
    const P: &str = "spec.analysis";
    match a.interval.as_deref() {
        None => out.push(Problem::error(
            format!("{P}.interval"),
            "interval is required",
        )),
        Some(i) => match parse_interval(i) {
            Err(e) => out.push(Problem::error(format!("{P}.interval"), e.to_string())),
            Ok(d) if d < ctx.min_interval => out.push(Problem::warning(
                format!("{P}.interval"),
                format!(
                    "{i} is below the controller's minimum of {}s and will run every {}s",
                    ctx.min_interval.as_secs_f64(),
                    ctx.min_interval.as_secs_f64()
                ),
            )),
            Ok(_) => {}
        },
    }
    if a.threshold.is_none() {
        out.push(Problem::error(
            format!("{P}.threshold"),
            "threshold is required",
        ));
    }

    let modes = [
        a.iterations.is_some(),
        a.step_weight.is_some(),
        a.step_weights.is_some(),
    ];
    let mode_count = modes.iter().filter(|m| **m).count();
    let both_weights =
        a.step_weight.is_some() && a.step_weights.is_some() && a.iterations.is_none();
    if mode_count == 0 {
        out.push(Problem::error(
            P.to_string(),
            "set exactly one of iterations (A/B, blue/green), stepWeight or stepWeights",
        ));
    } else if mode_count > 1 && !both_weights {
        out.push(Problem::error(
            P.to_string(),
            "set only one of iterations, stepWeight or stepWeights",
        ));
    } else if both_weights {
        out.push(Problem::error(
            format!("{P}.stepWeights"),
            "stepWeight and stepWeights are both set; stepWeight would win, remove one",
        ));
    }

    if let Some(i) = a.iterations
        && i < 1
    {
        out.push(Problem::error(
            format!("{P}.iterations"),
            format!("must be at least 1, got {i}"),
        ));
    }
    out.extend(out_of_range(
        "spec.analysis.maxWeight",
        a.max_weight,
        1..=100,
    ));
    if let Some(step) = a.step_weight {
        if step < 1 {
            out.push(Problem::error(
                format!("{P}.stepWeight"),
                format!("must be at least 1, got {step}"),
            ));
        } else if step > spec.max_weight() {
            out.push(Problem::error(
                format!("{P}.stepWeight"),
                format!(
                    "stepWeight {step} is greater than maxWeight {}",
                    spec.max_weight()
                ),
            ));
        }
    }
    if let Some(ladder) = &a.step_weights {
        if ladder.is_empty() {
            out.push(Problem::error(
                format!("{P}.stepWeights"),
                "must not be empty",
            ));
        }
        for (i, w) in ladder.iter().enumerate() {
            if !(1..=100).contains(w) {
                out.push(Problem::error(
                    format!("{P}.stepWeights[{i}]"),
                    format!("{w} is outside 1..100"),
                ));
            }
        }
        if let Some(i) = ladder.windows(2).position(|w| w[1] <= w[0]) {
            out.push(Problem::error(
                format!("{P}.stepWeights[{}]", i + 1),
                format!(
                    "stepWeights must be strictly increasing: {} follows {}",
                    ladder[i + 1],
                    ladder[i]
                ),
            ));
        }
        if a.max_weight.is_some() {
            out.push(Problem::warning(
                format!("{P}.maxWeight"),
                "maxWeight is ignored when stepWeights is set (the last step is the maximum)",
            ));
        }
    }
    for (field, v) in [
        ("stepWeightPromotion", a.step_weight_promotion),
        ("mirrorWeight", a.mirror_weight),
    ] {
        out.extend(out_of_range(&format!("{P}.{field}"), v, 0..=100));
    }
    for (field, v) in [
        ("primaryReadyThreshold", a.primary_ready_threshold),
        ("canaryReadyThreshold", a.canary_ready_threshold),
    ] {
        if let Some(v) = v
            && !(0..=100).contains(&v)
        {
            out.push(Problem::error(
                format!("{P}.{field}"),
                format!("must be a percentage (0-100), got {v}"),
            ));
        }
    }

    let has_match = a.match_.as_ref().is_some_and(|m| !m.is_empty());
    if let Some(p) = provider {
        if has_match && !p.supports_ab_testing() {
            out.push(Problem::error(
                format!("{P}.match"),
                format!("A/B testing is not supported by the {p} provider"),
            ));
        }
        if has_match && p.supports_ab_testing() && a.iterations.is_none() {
            out.push(Problem::warning(
                format!("{P}.match"),
                "match is ignored without iterations (A/B testing needs iterations)",
            ));
        }
        if a.mirror.unwrap_or(false) {
            if !p.supports_mirroring() {
                out.push(Problem::error(
                    format!("{P}.mirror"),
                    format!("traffic mirroring is not supported by the {p} provider"),
                ));
            } else if p.is_gateway_api() && a.iterations.is_none() {
                out.push(Problem::error(
                    format!("{P}.mirror"),
                    format!("with provider {p}, mirroring needs iterations (blue/green)"),
                ));
            }
        }
        if a.session_affinity.is_some() && !p.supports_session_affinity() {
            out.push(Problem::error(
                format!("{P}.sessionAffinity"),
                format!("session affinity is not supported by the {p} provider"),
            ));
        }
    }
    for (i, m) in a.match_.iter().flatten().enumerate() {
        check_match(&format!("{P}.match[{i}]"), m, out);
    }

    if let Some(sa) = &a.session_affinity {
        if sa.cookie_name.is_empty() {
            out.push(Problem::error(
                format!("{P}.sessionAffinity.cookieName"),
                "cookieName is required",
            ));
        } else if sa.primary_cookie_name.as_deref() == Some(sa.cookie_name.as_str()) {
            out.push(Problem::error(
                format!("{P}.sessionAffinity.primaryCookieName"),
                format!(
                    "primaryCookieName must differ from cookieName (both are {:?})",
                    sa.cookie_name
                ),
            ));
        }
        if let Some(same_site) = &sa.same_site
            && !matches!(same_site.as_str(), "Strict" | "Lax" | "None")
        {
            out.push(Problem::error(
                format!("{P}.sessionAffinity.sameSite"),
                format!("unknown sameSite {same_site:?}; expected Strict, Lax or None"),
            ));
        }
    }

    if let Some(p) = &a.on_inconclusive
        && !matches!(p.as_str(), "fail" | "hold")
    {
        out.push(Problem::error(
            format!("{P}.onInconclusive"),
            format!("unknown policy {p:?}; expected fail or hold"),
        ));
    }
    check_metrics(a, out);
    check_judge(a, out);
    check_webhooks(a, out);
    check_alerts(a, out);
}

fn check_metrics(a: &CanaryAnalysis, out: &mut Vec<Problem>) {
    let mut seen = std::collections::HashSet::new();
    for (i, m) in a.metrics.iter().flatten().enumerate() {
        let path = format!("spec.analysis.metrics[{i}]");
        if m.name.is_empty() {
            out.push(Problem::error(format!("{path}.name"), "name is required"));
        } else if !seen.insert(m.name.as_str()) {
            out.push(Problem::error(
                format!("{path}.name"),
                format!("duplicate metric name {:?}", m.name),
            ));
        }
        let builtin = BUILTIN_METRICS.contains(&m.name.as_str());
        let has_query = m.query.as_ref().is_some_and(|q| !q.trim().is_empty());
        if !builtin && !has_query && m.template_ref.is_none() {
            out.push(Problem::error(
                path.clone(),
                format!(
                    "metric {:?} is not builtin (request-success-rate, request-duration) and has neither templateRef nor query",
                    m.name
                ),
            ));
        }
        if let Some(t) = &m.template_ref
            && t.name.is_empty()
        {
            out.push(Problem::error(
                format!("{path}.templateRef.name"),
                "name is required",
            ));
        }
        if has_query {
            out.push(Problem::warning(
                format!("{path}.query"),
                "inline query is deprecated; use a MetricTemplate and templateRef",
            ));
        }
        if let Some(iv) = &m.interval
            && let Err(e) = parse_interval(iv)
        {
            out.push(Problem::error(format!("{path}.interval"), e.to_string()));
        }
        if let Some(r) = &m.threshold_range
            && let (Some(min), Some(max)) = (r.min, r.max)
            && min > max
        {
            out.push(Problem::error(
                format!("{path}.thresholdRange"),
                format!("min {min} is greater than max {max}: no value can pass"),
            ));
        }
        if let Some(n) = m.min_samples
            && !(n.is_finite() && n >= 0.0)
        {
            out.push(Problem::error(
                format!("{path}.minSamples"),
                format!("minSamples {n} must be a number ≥ 0 (requests in the window)"),
            ));
        }
        if m.threshold.is_some() && m.threshold_range.is_none() {
            out.push(Problem::warning(
                format!("{path}.threshold"),
                "threshold is deprecated; use thresholdRange",
            ));
        }
        if m.threshold.is_none()
            && m.threshold_range
                .as_ref()
                .is_none_or(|r| r.min.is_none() && r.max.is_none())
        {
            out.push(Problem::warning(
                path.clone(),
                "no thresholdRange (or threshold): set the range this metric must stay in",
            ));
        }
    }
}

/// `analysis.judge`: bounds, and judged metrics that exist and are builtin checks or MetricTemplates.
fn check_judge(a: &CanaryAnalysis, out: &mut Vec<Problem>) {
    let Some(j) = &a.judge else { return };
    if let Some(c) = j.confidence
        && !(c > 0.5 && c < 1.0)
    {
        out.push(Problem::error(
            "spec.analysis.judge.confidence",
            format!("confidence {c} must be strictly between 0.5 and 1 (e.g. 0.95)"),
        ));
    }
    if let Some(t) = j.tolerance
        && !(t.is_finite() && t >= 0.0)
    {
        out.push(Problem::error(
            "spec.analysis.judge.tolerance",
            format!("tolerance {t} must be a percentage ≥ 0 (e.g. 10)"),
        ));
    }
    for (i, name) in j.metrics.iter().flatten().enumerate() {
        let path = format!("spec.analysis.judge.metrics[{i}]");
        match a.metrics.iter().flatten().find(|m| &m.name == name) {
            None => out.push(Problem::error(
                path,
                format!("{name:?} is not in spec.analysis.metrics"),
            )),
            // A MetricTemplate declares its per-version counts in annotations (checked when the
            // template is read).
            Some(m) if !BUILTIN_METRICS.contains(&name.as_str()) && m.template_ref.is_none() => {
                out.push(Problem::error(
                    path,
                    format!(
                        "the judge compares builtin checks (request-success-rate, request-duration) and MetricTemplate metrics only, not the inline query {name:?}"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
}

fn check_webhooks(a: &CanaryAnalysis, out: &mut Vec<Problem>) {
    for (i, w) in a.webhooks.iter().flatten().enumerate() {
        let path = format!("spec.analysis.webhooks[{i}]");
        if w.name.is_empty() {
            out.push(Problem::error(format!("{path}.name"), "name is required"));
        }
        if let Some(t) = &w.type_
            && let Err(e) = t.parse::<WebhookType>()
        {
            out.push(Problem::error(format!("{path}.type"), e.to_string()));
        }
        match url::Url::parse(&w.url) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some_and(|h| !h.is_empty()) => {}
            Ok(u) => out.push(Problem::error(
                format!("{path}.url"),
                format!(
                    "{:?} is not an http(s) URL with a host (scheme {:?})",
                    w.url,
                    u.scheme()
                ),
            )),
            Err(e) => out.push(Problem::error(
                format!("{path}.url"),
                format!("invalid URL {:?}: {e}", w.url),
            )),
        }
        if let Some(t) = &w.timeout
            && let Err(e) = parse_interval(t)
        {
            out.push(Problem::error(format!("{path}.timeout"), e.to_string()));
        }
        if let Some(r) = w.retries
            && r < 0
        {
            out.push(Problem::error(
                format!("{path}.retries"),
                format!("must not be negative, got {r}"),
            ));
        }
    }
}

fn check_alerts(a: &CanaryAnalysis, out: &mut Vec<Problem>) {
    for (i, al) in a.alerts.iter().flatten().enumerate() {
        let path = format!("spec.analysis.alerts[{i}]");
        if al.name.is_empty() {
            out.push(Problem::error(format!("{path}.name"), "name is required"));
        }
        if let Some(s) = &al.severity
            && !SEVERITIES.contains(&s.as_str())
        {
            out.push(Problem::error(
                format!("{path}.severity"),
                format!("unknown severity {s:?}; expected info, warn or error"),
            ));
        }
        if al.provider_ref.name.is_empty() {
            out.push(Problem::error(
                format!("{path}.providerRef.name"),
                "name is required",
            ));
        }
    }
}

/// Checks a MetricTemplate spec.
pub fn validate_metric_template(spec: &MetricTemplateSpec) -> Vec<Problem> {
    let mut out = Vec::new();
    let t = spec.provider.type_.as_str();
    if t.is_empty() {
        out.push(Problem::error("spec.provider.type", "type is required"));
    } else if !METRIC_PROVIDER_TYPES.contains(&t) {
        out.push(Problem::error(
            "spec.provider.type",
            format!(
                "unknown metric provider {t:?}; expected one of: {}",
                METRIC_PROVIDER_TYPES.join(", ")
            ),
        ));
    }
    // Flagger only parses the address when a query runs; documentation placeholders such as
    // `https://api.<REALM>.signalfx.com` are common, so this is a warning.
    if let Some(addr) = &spec.provider.address
        && let Err(msg) = check_http_url(addr)
    {
        out.push(Problem::warning("spec.provider.address", msg));
    }
    if t == "cloudwatch" && spec.provider.region.as_deref().is_none_or(str::is_empty) {
        out.push(Problem::error(
            "spec.provider.region",
            "the cloudwatch provider needs a region",
        ));
    }
    if spec.query.trim().is_empty() {
        out.push(Problem::error("spec.query", "query is required"));
    } else if let Err(e) = super::template::check(&spec.query) {
        out.push(Problem::error("spec.query", e.to_string()));
    }
    out
}

/// Checks an AlertProvider spec.
pub fn validate_alert_provider(spec: &AlertProviderSpec) -> Vec<Problem> {
    let mut out = Vec::new();
    let t = spec.type_.as_str();
    if t.is_empty() {
        out.push(Problem::error("spec.type", "type is required"));
    } else if !ALERT_PROVIDER_TYPES.contains(&t) {
        out.push(Problem::error(
            "spec.type",
            format!(
                "unknown alert provider type {t:?}; expected one of: {}",
                ALERT_PROVIDER_TYPES.join(", ")
            ),
        ));
    }
    match (&spec.address, &spec.secret_ref) {
        (None, None) => out.push(Problem::error(
            "spec",
            "set address or secretRef (a Secret with key address)",
        )),
        (Some(addr), _) => {
            if let Err(msg) = check_http_url(addr) {
                out.push(Problem::error("spec.address", msg));
            }
        }
        _ => {}
    }
    if let Some(proxy) = &spec.proxy
        && let Err(msg) = check_http_url(proxy)
    {
        out.push(Problem::error("spec.proxy", msg));
    }
    out
}

fn check_http_url(s: &str) -> Result<(), String> {
    match url::Url::parse(s) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(())
        }
        Ok(u) => Err(format!(
            "{s:?} is not an http(s) URL with a host (scheme {:?})",
            u.scheme()
        )),
        Err(e) => Err(format!("invalid URL {s:?}: {e}")),
    }
}

/// An error at `path` when `value` is set and outside `range`.
fn out_of_range(path: &str, value: Option<i32>, range: RangeInclusive<i32>) -> Option<Problem> {
    let v = value.filter(|v| !range.contains(v))?;
    Some(Problem::error(
        path.to_string(),
        format!(
            "must be between {} and {}, got {v}",
            range.start(),
            range.end()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::canary::*;
    use crate::api::testing::knative;

    /// The podinfo test Canary's spec on Istio, progressive up to 50 %.
    fn base() -> CanarySpec {
        crate::api::Canary::test()
            .provider("istio")
            .analysis(serde_json::json!({"interval": "1m", "threshold": 5, "maxWeight": 50}))
            .build()
            .spec
    }

    fn errors(spec: &CanarySpec) -> Vec<String> {
        validate_canary(spec, &ValidationContext::default())
            .into_iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| p.to_string())
            .collect()
    }

    fn analysis(spec: &mut CanarySpec) -> &mut CanaryAnalysis {
        spec.analysis.get_or_insert_with(Default::default)
    }

    /// Turns the analysis into A/B testing: 3 iterations over `matches`, no weights.
    fn ab(spec: &mut CanarySpec, matches: Vec<HttpMatchRequest>) -> &mut CanaryAnalysis {
        let a = analysis(spec);
        a.step_weight = None;
        a.max_weight = None;
        a.iterations = Some(3);
        a.match_ = Some(matches);
        a
    }

    /// Routes through Gateway API (`provider`) with the Gateway `gw` as the parent.
    fn gateway_api<'a>(spec: &'a mut CanarySpec, provider: &str) -> &'a mut CanaryService {
        spec.provider = Some(provider.into());
        let svc = spec.service.get_or_insert_with(Default::default);
        svc.gateway_refs = Some(vec![ParentReference {
            name: "gw".into(),
            ..Default::default()
        }]);
        svc
    }

    /// A copy of `spec` scaled by a HorizontalPodAutoscaler.
    fn autoscaled(spec: &CanarySpec) -> CanarySpec {
        CanarySpec {
            autoscaler_ref: Some(AutoscalerRef {
                api_version: "autoscaling/v2".into(),
                kind: "HorizontalPodAutoscaler".into(),
                name: "podinfo".into(),
                ..Default::default()
            }),
            ..spec.clone()
        }
    }

    /// A match on the header `name`.
    fn header(name: &str, m: StringMatch) -> HttpMatchRequest {
        HttpMatchRequest {
            headers: Some([(name.to_string(), m)].into()),
            ..Default::default()
        }
    }

    fn exact(v: &str) -> StringMatch {
        StringMatch {
            exact: Some(v.into()),
            ..Default::default()
        }
    }

    fn prefix(v: &str) -> StringMatch {
        StringMatch {
            prefix: Some(v.into()),
            ..Default::default()
        }
    }

    fn suffix(v: &str) -> StringMatch {
        StringMatch {
            suffix: Some(v.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_well_formed_canary_has_no_errors() {
        assert_eq!(errors(&base()), Vec::<String>::new());
    }

    #[test]
    fn each_rule_reports_one_precise_error() {
        type Edit = fn(&mut CanarySpec);
        let cases: Vec<(Edit, &str)> = vec![
            (
                |s| analysis(s).step_weight = Some(60),
                "spec.analysis.stepWeight: stepWeight 60 is greater than maxWeight 50",
            ),
            (
                |s| {
                    let a = analysis(s);
                    a.step_weight = None;
                    a.max_weight = None;
                    a.step_weights = Some(vec![10, 5, 20]);
                },
                "spec.analysis.stepWeights[1]: stepWeights must be strictly increasing: 5 follows 10",
            ),
            (
                |s| {
                    let a = analysis(s);
                    a.step_weight = None;
                    a.max_weight = None;
                    a.step_weights = Some(vec![10, 150]);
                },
                "spec.analysis.stepWeights[1]: 150 is outside 1..100",
            ),
            (
                |s| s.provider = Some("envoy".into()),
                "spec.provider: unknown provider \"envoy\"",
            ),
            (
                |s| {
                    analysis(s).metrics = Some(vec![CanaryMetric {
                        name: "request-success-rate".into(),
                        min_samples: Some(-1.0),
                        ..Default::default()
                    }])
                },
                "spec.analysis.metrics[0].minSamples: minSamples -1 must be a number ≥ 0 (requests in the window)",
            ),
            (
                |s| {
                    analysis(s).judge = Some(CanaryJudge {
                        confidence: Some(1.0),
                        ..Default::default()
                    })
                },
                "spec.analysis.judge.confidence: confidence 1 must be strictly between 0.5 and 1 (e.g. 0.95)",
            ),
            (
                |s| {
                    analysis(s).judge = Some(CanaryJudge {
                        confidence: Some(0.5),
                        ..Default::default()
                    })
                },
                "spec.analysis.judge.confidence: confidence 0.5 must be strictly between 0.5 and 1 (e.g. 0.95)",
            ),
            (
                |s| {
                    analysis(s).judge = Some(CanaryJudge {
                        tolerance: Some(-5.0),
                        ..Default::default()
                    })
                },
                "spec.analysis.judge.tolerance: tolerance -5 must be a percentage ≥ 0 (e.g. 10)",
            ),
            (
                |s| {
                    analysis(s).judge = Some(CanaryJudge {
                        metrics: Some(vec!["request-duration".into()]),
                        ..Default::default()
                    })
                },
                "spec.analysis.judge.metrics[0]: \"request-duration\" is not in spec.analysis.metrics",
            ),
            (
                |s| {
                    let a = analysis(s);
                    a.metrics = Some(vec![CanaryMetric {
                        name: "errors".into(),
                        query: Some("vector(0)".into()),
                        ..Default::default()
                    }]);
                    a.judge = Some(CanaryJudge {
                        metrics: Some(vec!["errors".into()]),
                        ..Default::default()
                    })
                },
                "spec.analysis.judge.metrics[0]: the judge compares builtin checks (request-success-rate, request-duration) and MetricTemplate metrics only, not the inline query \"errors\"",
            ),
            (
                |s| analysis(s).interval = Some("1mx".into()),
                "spec.analysis.interval: invalid duration \"1mx\"",
            ),
            (
                |s| {
                    s.provider = Some("kubernetes".into());
                    let a = analysis(s);
                    a.step_weight = None;
                    a.max_weight = None;
                    a.iterations = Some(5);
                    a.match_ = Some(vec![HttpMatchRequest::default()]);
                },
                "spec.analysis.match: A/B testing is not supported by the kubernetes provider",
            ),
            (
                |s| {
                    analysis(s).metrics = Some(vec![CanaryMetric {
                        name: "error-budget".into(),
                        ..Default::default()
                    }])
                },
                "spec.analysis.metrics[0]: metric \"error-budget\" is not builtin",
            ),
            (
                |s| {
                    analysis(s).metrics = Some(vec![CanaryMetric {
                        name: "request-success-rate".into(),
                        threshold_range: Some(ThresholdRange {
                            min: Some(99.0),
                            max: Some(90.0),
                        }),
                        ..Default::default()
                    }])
                },
                "spec.analysis.metrics[0].thresholdRange: min 99 is greater than max 90",
            ),
            (
                |s| {
                    analysis(s).session_affinity = Some(SessionAffinity {
                        cookie_name: "c".into(),
                        primary_cookie_name: Some("c".into()),
                        ..Default::default()
                    })
                },
                "spec.analysis.sessionAffinity.primaryCookieName: primaryCookieName must differ",
            ),
            (
                |s| s.provider = Some("gatewayapi:v1".into()),
                "spec.service.gatewayRefs: provider gatewayapi:v1 needs at least one gatewayRefs entry",
            ),
            (
                |s| s.provider = Some("nginx".into()),
                "spec.ingressRef: provider nginx needs ingressRef",
            ),
            (
                |s| {
                    let svc = gateway_api(s, "gatewayapi:v1beta1");
                    svc.timeout = Some("10s".into());
                },
                "spec.service.timeout: timeout is not supported by the gatewayapi:v1beta1 provider",
            ),
            (
                |s| {
                    let svc = gateway_api(s, "gatewayapi:v1");
                    svc.retries = Some(HttpRetry::default());
                },
                "spec.service.retries: retries is not supported by the gatewayapi:v1 provider",
            ),
            (
                |s| {
                    gateway_api(s, "gatewayapi:v1");
                    ab(s, vec![header("user", prefix("a"))]);
                },
                "spec.analysis.match: match 0: Gateway API matches headers",
            ),
            (
                |s| {
                    let a = ab(s, vec![HttpMatchRequest::default()]);
                    a.session_affinity = Some(SessionAffinity {
                        cookie_name: "c".into(),
                        ..Default::default()
                    });
                },
                "spec.analysis.sessionAffinity: session affinity needs progressive traffic",
            ),
            (
                |s| {
                    s.provider = Some("gloo".into());
                    ab(s, vec![header("user", prefix("a"))]);
                },
                "spec.analysis.match[0]: Gloo matches A/B traffic by headers and query params",
            ),
            (
                |s| {
                    s.provider = Some("gloo".into());
                    s.service.get_or_insert_with(Default::default).match_ =
                        Some(vec![HttpMatchRequest::default()]);
                },
                "spec.service.match: match is not supported by the gloo provider",
            ),
            (
                |s| {
                    s.provider = Some("appmesh:v1beta2".into());
                    s.service.get_or_insert_with(Default::default).timeout = Some("5s".into());
                    ab(
                        s,
                        vec![HttpMatchRequest::default(), HttpMatchRequest::default()],
                    );
                },
                "spec.analysis.match: App Mesh takes one A/B match entry",
            ),
            (
                |s| {
                    s.provider = Some("appmesh:v1beta2".into());
                    ab(
                        s,
                        vec![HttpMatchRequest {
                            method: Some(exact("GET")),
                            ..Default::default()
                        }],
                    );
                },
                "spec.analysis.match[0]: App Mesh matches A/B traffic by headers only",
            ),
            (
                |s| s.provider = Some("appmesh".into()),
                "spec.service.meshName: provider appmesh (App Mesh v1beta1) needs meshName",
            ),
            (
                |s| {
                    s.provider = Some("appmesh:v1beta2".into());
                    analysis(s).mirror = Some(true);
                },
                "spec.analysis.mirror: traffic mirroring is not supported by the appmesh:v1beta2 provider",
            ),
            (
                |s| {
                    s.upstream_ref = Some(UpstreamRef {
                        api_version: "gloo.solo.io/v1".into(),
                        kind: "Upstream".into(),
                        name: "config".into(),
                        namespace: None,
                    })
                },
                "spec.upstreamRef: upstreamRef is only used by the gloo provider, not istio",
            ),
            (
                |s| {
                    s.service
                        .get_or_insert_with(Default::default)
                        .backend_timeout = Some("5s".into())
                },
                "spec.service.backendTimeout: backendTimeout is not supported by the istio provider",
            ),
            (
                |s| {
                    analysis(s).webhooks = Some(vec![CanaryWebhook {
                        name: "w".into(),
                        url: "not a url".into(),
                        ..Default::default()
                    }])
                },
                "spec.analysis.webhooks[0].url: invalid URL \"not a url\"",
            ),
            (
                |s| {
                    analysis(s).alerts = Some(vec![CanaryAlert {
                        name: "a".into(),
                        severity: Some("critical".into()),
                        provider_ref: CrossNamespaceRef {
                            name: "slack".into(),
                            namespace: None,
                        },
                    }])
                },
                "spec.analysis.alerts[0].severity: unknown severity \"critical\"",
            ),
        ];
        for (edit, want) in cases {
            let mut s = base();
            edit(&mut s);
            let got = errors(&s);
            assert_eq!(
                got.len(),
                1,
                "want exactly one error starting {want:?}, got {got:#?}"
            );
            assert!(got[0].starts_with(want), "want {want:?}, got {:?}", got[0]);
        }
    }

    #[test]
    fn knative_targets_and_the_knative_provider_go_together_without_an_autoscaler() {
        let mut s = base();
        knative(&mut s);
        assert_eq!(errors(&s), Vec::<String>::new());

        let mut other_provider = s.clone();
        other_provider.provider = Some("istio".into());
        assert_eq!(
            errors(&other_provider),
            vec!["spec.provider: a Knative Service target needs provider: knative"]
        );

        let mut deployment = base();
        deployment.provider = Some("knative".into());
        assert_eq!(
            errors(&deployment),
            vec!["spec.targetRef: provider knative needs a serving.knative.dev/v1 Service target"]
        );

        let mut old_api = s.clone();
        if let Some(t) = old_api.target_ref.as_mut() {
            t.api_version = "serving.knative.dev/v1alpha1".into();
        }
        assert_eq!(
            errors(&old_api),
            vec!["spec.targetRef: provider knative needs a serving.knative.dev/v1 Service target"]
        );

        let scaled = autoscaled(&s);
        assert_eq!(
            errors(&scaled),
            vec!["spec.autoscalerRef: Knative targets scale themselves; remove autoscalerRef"]
        );
    }

    #[test]
    fn service_targets_need_no_autoscaler_and_keep_the_target_name() {
        let service_target = |s: &mut CanarySpec| {
            s.target_ref = Some(TargetRef {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: "podinfo".into(),
            });
        };
        let mut s = base();
        service_target(&mut s);
        assert_eq!(errors(&s), Vec::<String>::new());

        let scaled = autoscaled(&s);
        assert_eq!(
            errors(&scaled),
            vec![
                "spec.autoscalerRef: a Service target has no workload to scale; remove autoscalerRef"
            ]
        );

        let mut renamed = s.clone();
        if let Some(svc) = renamed.service.as_mut() {
            svc.name = Some("frontend".into());
        }
        let got = errors(&renamed);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with("spec.service.name: a Service target is copied to podinfo-primary")
        );
        if let Some(svc) = renamed.service.as_mut() {
            svc.name = Some("podinfo".into());
        }
        assert_eq!(errors(&renamed), Vec::<String>::new());

        let mut portless = s.clone();
        portless.service = None;
        assert_eq!(
            errors(&portless),
            vec!["spec.service: service is required (at least service.port)"]
        );
        portless.provider = Some("kubernetes".into());
        if let Some(a) = portless.analysis.as_mut() {
            a.step_weight = None;
            a.max_weight = None;
            a.iterations = Some(3);
        }
        assert_eq!(errors(&portless), Vec::<String>::new());

        let mut knative_provider = s.clone();
        knative_provider.provider = Some("knative".into());
        assert_eq!(
            errors(&knative_provider),
            vec!["spec.targetRef: provider knative needs a serving.knative.dev/v1 Service target"]
        );
    }

    #[test]
    fn knative_cannot_express_ab_matches_or_mirroring() {
        let mut s = base();
        knative(&mut s);
        let a = analysis(&mut s);
        a.step_weight = None;
        a.max_weight = None;
        a.iterations = Some(5);
        a.match_ = Some(vec![HttpMatchRequest::default()]);
        a.mirror = Some(true);
        assert_eq!(
            errors(&s),
            vec![
                "spec.analysis.match: A/B testing is not supported by the knative provider",
                "spec.analysis.mirror: traffic mirroring is not supported by the knative provider",
            ]
        );
    }

    #[test]
    fn gloo_and_app_mesh_accept_what_their_routers_write() {
        let mut gloo = base();
        gloo.provider = Some("gloo".into());
        ab(
            &mut gloo,
            vec![HttpMatchRequest {
                headers: Some([("x-canary".to_string(), exact("insider"))].into()),
                query_params: Some([("beta".to_string(), exact("1"))].into()),
                method: Some(exact("GET")),
                ..Default::default()
            }],
        );
        assert_eq!(errors(&gloo), Vec::<String>::new());
        let mut mesh = base();
        mesh.provider = Some("appmesh:v1beta2".into());
        let svc = mesh.service.get_or_insert_with(Default::default);
        svc.timeout = Some("15s".into());
        svc.retries = Some(HttpRetry {
            attempts: Some(3),
            ..Default::default()
        });
        svc.match_ = Some(vec![HttpMatchRequest {
            uri: Some(StringMatch {
                prefix: Some("/api".into()),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        ab(&mut mesh, vec![header("user-agent", suffix("Mobile"))]);
        assert_eq!(errors(&mesh), Vec::<String>::new());
    }

    #[test]
    fn the_judge_takes_a_metric_of_a_metric_template() {
        let mut spec = base();
        let a = analysis(&mut spec);
        a.metrics = Some(vec![CanaryMetric {
            name: "errors".into(),
            template_ref: Some(CrossNamespaceRef {
                name: "error-rate".into(),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        a.judge = Some(CanaryJudge {
            metrics: Some(vec!["errors".into()]),
            ..Default::default()
        });
        assert_eq!(errors(&spec), Vec::<String>::new());
    }

    #[test]
    fn interval_below_the_minimum_is_a_warning_not_an_error() {
        let mut s = base();
        analysis(&mut s).interval = Some("5s".into());
        let problems = validate_canary(&s, &ValidationContext::default());
        assert!(!has_errors(&problems));
        assert!(
            problems
                .iter()
                .any(|p| p.path == "spec.analysis.interval" && p.severity == Severity::Warning)
        );
    }

    #[test]
    fn missing_analysis_mode_is_reported() {
        let mut s = base();
        let a = analysis(&mut s);
        a.step_weight = None;
        assert_eq!(
            errors(&s),
            vec![
                "spec.analysis: set exactly one of iterations (A/B, blue/green), stepWeight or stepWeights"
            ]
        );
    }

    #[test]
    fn alert_provider_needs_an_address_or_secret() {
        let spec = AlertProviderSpec {
            type_: "slack".into(),
            ..Default::default()
        };
        let p = validate_alert_provider(&spec);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "spec");
    }

    #[test]
    fn metric_template_rejects_unknown_provider_types() {
        let spec = MetricTemplateSpec {
            provider: crate::api::metric_template::MetricProvider {
                type_: "graphana".into(),
                ..Default::default()
            },
            query: "up".into(),
        };
        let p = validate_metric_template(&spec);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].message
                .starts_with("unknown metric provider \"graphana\"")
        );
    }
}
