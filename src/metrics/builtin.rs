//! The builtin checks `request-success-rate` and `request-duration`: Flagger's observers, their
//! selection rules and their exact PromQL templates; pure.
use crate::api::Canary;

/// The builtin check names.
pub const SUCCESS_RATE: &str = "request-success-rate";
/// The builtin latency check.
pub const DURATION: &str = "request-duration";

/// Which of Flagger's observers (query families) answers the builtin checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observer {
    /// Istio telemetry (`istio_requests_total`); Flagger's fallback for anything unknown.
    Istio,
    /// Linkerd proxy metrics.
    Linkerd,
    /// App Mesh Envoy metrics.
    AppMesh,
    /// Contour Envoy metrics.
    Contour,
    /// Gloo Envoy metrics.
    Gloo,
    /// NGINX ingress controller metrics.
    Nginx,
    /// The application's own podinfo-style metrics (`kubernetes`, `gatewayapi*`).
    Http,
    /// Skipper route metrics.
    Skipper,
    /// Traefik service metrics.
    Traefik,
    /// APISIX route metrics.
    Apisix,
    /// Kuma Envoy metrics.
    Kuma,
    /// Open Service Mesh metrics.
    Osm,
    /// Knative (Envoy cluster per revision).
    Knative,
}

/// The provider string Flagger uses to pick the observer: the canary's provider, else the
/// controller default; `linkerd` when the default mentions linkerd and the canary names any
/// provider; with a `:service` suffix for Kubernetes Service targets (not Knative ones).
pub fn metrics_provider(canary: &Canary, mesh_provider: &str) -> String {
    let mut p = mesh_provider.to_string();
    if let Some(own) = canary.spec.provider.as_deref().filter(|p| !p.is_empty()) {
        p = if mesh_provider.contains("linkerd") {
            "linkerd".to_string()
        } else {
            own.to_string()
        };
    }
    if canary
        .spec
        .target_ref
        .as_ref()
        .is_some_and(|t| t.kind == "Service" && !t.is_knative_service())
    {
        p.push_str(":service");
    }
    p
}

impl Observer {
    /// Flagger's observer factory: exact names, a few prefixes, Istio for everything else.
    pub fn for_provider(p: &str) -> Self {
        match p {
            "appmesh" => Self::AppMesh,
            _ if p.starts_with("appmesh") => Self::AppMesh,
            "linkerd" => Self::Linkerd,
            "istio" => Self::Istio,
            "contour" => Self::Contour,
            _ if p.starts_with("gloo") => Self::Gloo,
            "nginx" => Self::Nginx,
            "kubernetes" => Self::Http,
            "skipper" => Self::Skipper,
            "traefik" => Self::Traefik,
            "osm" => Self::Osm,
            "kuma" => Self::Kuma,
            _ if p.starts_with("gatewayapi") => Self::Http,
            "apisix" => Self::Apisix,
            "knative" => Self::Knative,
            _ => Self::Istio,
        }
    }

    /// The success-rate query template (a percentage).
    pub fn success_rate_query(self) -> &'static str {
        match self {
            Self::Istio => {
                r#"sum( rate( istio_requests_total{ reporter="destination", destination_workload_namespace="{{ namespace }}", destination_workload=~"{{ target }}", response_code!~"5.*" }[{{ interval }}] ) ) / sum( rate( istio_requests_total{ reporter="destination", destination_workload_namespace="{{ namespace }}", destination_workload=~"{{ target }}" }[{{ interval }}] ) ) * 100"#
            }
            Self::Linkerd => {
                r#"sum( rate( response_total{ namespace="{{ namespace }}", deployment=~"{{ target }}", classification!="failure", direction="inbound" }[{{ interval }}] ) ) / sum( rate( response_total{ namespace="{{ namespace }}", deployment=~"{{ target }}", direction="inbound" }[{{ interval }}] ) ) * 100"#
            }
            Self::AppMesh => {
                r#"sum( rate( envoy_cluster_upstream_rq{ kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)", envoy_response_code!~"5.*" }[{{ interval }}] ) ) / sum( rate( envoy_cluster_upstream_rq{ kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[{{ interval }}] ) ) * 100"#
            }
            Self::Contour => {
                r#"sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+", envoy_response_code!~"5.*" }[{{ interval }}] ) ) / sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+", }[{{ interval }}] ) ) * 100"#
            }
            Self::Gloo => {
                r#"sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"{{ namespace }}-{{ target }}-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+", envoy_response_code!~"5.*" }[{{ interval }}] ) ) / sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"{{ namespace }}-{{ target }}-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+", }[{{ interval }}] ) ) * 100"#
            }
            Self::Nginx => {
                r#"sum( rate( nginx_ingress_controller_requests{ namespace="{{ namespace }}", ingress="{{ ingress }}", canary!="", status!~"5.*" }[{{ interval }}] ) ) / sum( rate( nginx_ingress_controller_requests{ namespace="{{ namespace }}", ingress="{{ ingress }}", canary!="" }[{{ interval }}] ) ) * 100"#
            }
            Self::Http => {
                r#"sum( rate( http_request_duration_seconds_count{ kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)", status!~"5.*" }[{{ interval }}] ) ) / sum( rate( http_request_duration_seconds_count{ kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[{{ interval }}] ) ) * 100"#
            }
            Self::Skipper => {
                r#"sum(rate(skipper_response_duration_seconds_bucket{route=~"{{ $route }}",code!~"5..",le="+Inf"}[{{ interval }}])) / sum(rate(skipper_response_duration_seconds_bucket{route=~"{{ $route }}",le="+Inf"}[{{ interval }}])) * 100"#
            }
            Self::Traefik => {
                r#"sum( rate( traefik_service_request_duration_seconds_bucket{ service=~"{{ namespace }}-{{ target }}-canary-[0-9a-zA-Z-]+@kubernetescrd", code!~"5..", le="+Inf" }[{{ interval }}] ) ) / sum( rate( traefik_service_request_duration_seconds_bucket{ service=~"{{ namespace }}-{{ target }}-canary-[0-9a-zA-Z-]+@kubernetescrd", le="+Inf" }[{{ interval }}] ) ) * 100"#
            }
            Self::Apisix => {
                r#"sum( rate( apisix_http_status{ route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+", code!~"5.." }[{{ interval }}] ) ) / sum( rate( apisix_http_status{ route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+" }[{{ interval }}] ) ) * 100"#
            }
            Self::Kuma => {
                r#"sum( rate( envoy_cluster_upstream_rq{ service=~"{{ target }}-canary_{{ namespace }}_svc_[0-9a-zA-Z-]+", envoy_response_code!~"5.*" }[{{ interval }}] ) ) / sum( rate( envoy_cluster_upstream_rq{ service=~"{{ target }}-canary_{{ namespace }}_svc_[0-9a-zA-Z-]+", }[{{ interval }}] ) ) * 100"#
            }
            Self::Osm => {
                r#"sum( rate( osm_request_total{ destination_namespace="{{ namespace }}", destination_kind="Deployment", destination_name="{{ target }}", response_code!~"5.*" }[{{ interval }}] ) ) / sum( rate( osm_request_total{ destination_namespace="{{ namespace }}", destination_kind="Deployment", destination_name="{{ target }}" }[{{ interval }}] ) ) * 100"#
            }
            Self::Knative => {
                r#"sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"{{ namespace }}/{{ route }}", envoy_response_code!~"5.*" }[{{ interval }}] ) ) / sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"{{ namespace }}/{{ route }}", }[{{ interval }}] ) ) * 100"#
            }
        }
    }

    /// The request-duration query template.
    pub fn duration_query(self) -> &'static str {
        match self {
            Self::Istio => {
                r#"histogram_quantile( 0.99, sum( rate( istio_request_duration_milliseconds_bucket{ reporter="destination", destination_workload_namespace="{{ namespace }}", destination_workload=~"{{ target }}" }[{{ interval }}] ) ) by (le) )"#
            }
            Self::Linkerd => {
                r#"histogram_quantile( 0.99, sum( rate( response_latency_ms_bucket{ namespace="{{ namespace }}", deployment=~"{{ target }}", direction="inbound" }[{{ interval }}] ) ) by (le) )"#
            }
            Self::AppMesh => {
                r#"histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[{{ interval }}] ) ) by (le) )"#
            }
            Self::Contour => {
                r#"histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ envoy_cluster_name=~"{{ namespace }}_{{ service }}-canary_[0-9a-zA-Z-]+", }[{{ interval }}] ) ) by (le) )"#
            }
            Self::Gloo => {
                r#"histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ envoy_cluster_name=~"{{ namespace }}-{{ target }}-canaryupstream-[0-9a-zA-Z-]+_[0-9a-zA-Z-]+", }[{{ interval }}] ) ) by (le) )"#
            }
            Self::Nginx => {
                r#"sum( rate( nginx_ingress_controller_response_duration_seconds_sum{ namespace="{{ namespace }}", ingress="{{ ingress }}", canary!="" }[{{ interval }}] ) ) / sum( rate( nginx_ingress_controller_response_duration_seconds_count{ namespace="{{ namespace }}", ingress="{{ ingress }}", canary!="" }[{{ interval }}] ) ) * 1000"#
            }
            Self::Http => {
                r#"histogram_quantile( 0.99, sum( rate( http_request_duration_seconds_bucket{ kubernetes_namespace="{{ namespace }}", kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[{{ interval }}] ) ) by (le) )"#
            }
            Self::Skipper => {
                r#"sum(rate(skipper_serve_route_duration_seconds_sum{route=~"{{ $route }}"}[{{ interval }}])) / sum(rate(skipper_serve_route_duration_seconds_count{route=~"{{ $route }}"}[{{ interval }}])) * 1000"#
            }
            Self::Traefik => {
                r#"histogram_quantile( 0.99, sum( rate( traefik_service_request_duration_seconds_bucket{ service=~"{{ namespace }}-{{ target }}-canary-[0-9a-zA-Z-]+@kubernetescrd" }[{{ interval }}] ) ) by (le) ) * 1000"#
            }
            Self::Apisix => {
                r#"histogram_quantile( 0.99, sum( rate( apisix_http_latency_bucket{ type=~"request", route=~"{{ namespace }}_{{ route }}-{{ target }}-canary_.+" }[{{ interval }}] ) ) by (le) )"#
            }
            Self::Kuma => {
                r#"histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ service=~"{{ target }}-canary_{{ namespace }}_svc_[0-9a-zA-Z-]+", }[{{ interval }}] ) ) by (le) )"#
            }
            Self::Osm => {
                r#"histogram_quantile( 0.99, sum( rate( osm_request_duration_ms_bucket{ destination_namespace="{{ namespace }}", destination_kind="Deployment", destination_name="{{ target }}" }[{{ interval }}] ) ) by (le) )"#
            }
            Self::Knative => {
                r#"histogram_quantile( 0.99, sum( rate( envoy_cluster_upstream_rq_time_bucket{ envoy_cluster_name=~"{{ namespace }}/{{ route }}", }[{{ interval }}] ) ) by (le) )"#
            }
        }
    }

    /// Factor that turns the duration query's result into milliseconds: the HTTP observer's
    /// histogram is in seconds, every other query already yields milliseconds.
    pub fn duration_to_ms(self) -> f64 {
        match self {
            Self::Http => 1000.0,
            _ => 1.0,
        }
    }
}

impl Observer {
    /// Serin: the sample query template, the number of canary requests in the window. It is the
    /// success-rate query's denominator (same metric, same selectors) with `increase` in place of
    /// `rate`, so both checks count the requests their value was computed from.
    pub fn sample_query(self) -> String {
        let q = self.success_rate_query();
        let denominator = q.rsplit_once(" / ").map_or(q, |(_, d)| d);
        let denominator = denominator.strip_suffix(" * 100").unwrap_or(denominator);
        denominator.replace("rate(", "increase(")
    }
}

/// Renders a builtin query for `model`, as Flagger sends it (whitespace collapsed).
pub fn render(
    observer: Observer,
    name: &str,
    model: &crate::api::template::Model,
) -> Result<String, crate::api::template::Error> {
    let template = if name == SUCCESS_RATE {
        observer.success_rate_query()
    } else {
        observer.duration_query()
    };
    render_template(observer, template, model)
}

/// Serin: renders the sample query (requests in the window) of a builtin check for `model`.
pub fn render_sample(
    observer: Observer,
    model: &crate::api::template::Model,
) -> Result<String, crate::api::template::Error> {
    render_template(observer, &observer.sample_query(), model)
}

fn render_template(
    observer: Observer,
    template: &str,
    model: &crate::api::template::Model,
) -> Result<String, crate::api::template::Error> {
    // Skipper's templates start with `{{- $route := printf … }}` in Flagger; the value is
    // computed here and substituted, since template variables are not part of the model.
    let template = if observer == Observer::Skipper {
        template.replace(
            "{{ $route }}",
            &format!(
                "kube(ew)?_{}__{}_canary__.*__{}_canary(_[0-9]+)?",
                model.namespace, model.ingress, model.service
            ),
        )
    } else {
        template.to_string()
    };
    crate::api::template::render(&template, model)
        .map(|q| crate::api::template::collapse_whitespace(&q))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::canary::{CanarySpec, TargetRef};
    use crate::api::template::Model;

    fn canary(provider: Option<&str>, kind: &str) -> Canary {
        let mut c = Canary::new(
            "podinfo",
            CanarySpec {
                provider: provider.map(str::to_string),
                // "KnativeService" stands for a serving.knative.dev/v1 Service.
                target_ref: Some(match kind {
                    "KnativeService" => TargetRef {
                        api_version: "serving.knative.dev/v1".into(),
                        kind: "Service".into(),
                        name: "podinfo".into(),
                    },
                    _ => TargetRef {
                        api_version: "apps/v1".into(),
                        kind: kind.into(),
                        name: "podinfo".into(),
                    },
                }),
                ..Default::default()
            },
        );
        c.metadata.namespace = Some("test".into());
        c
    }

    #[test]
    fn observer_selection_follows_flagger() {
        let cases = [
            (None, "istio", "Deployment", Observer::Istio),
            (Some("kubernetes"), "istio", "Deployment", Observer::Http),
            (Some("gatewayapi:v1"), "istio", "Deployment", Observer::Http),
            (Some("gatewayapi:v1"), "istio", "Service", Observer::Http),
            // Exact-match providers fall back to Istio for Service targets.
            (Some("kubernetes"), "istio", "Service", Observer::Istio),
            (Some("nginx"), "istio", "Service", Observer::Istio),
            (Some("gloo"), "istio", "Service", Observer::Gloo),
            (
                Some("appmesh:v1beta2"),
                "istio",
                "Deployment",
                Observer::AppMesh,
            ),
            // A linkerd default wins over any canary provider.
            (Some("nginx"), "linkerd", "Deployment", Observer::Linkerd),
            (None, "linkerd", "Deployment", Observer::Linkerd),
            (Some("smi:v1alpha3"), "istio", "Deployment", Observer::Istio),
            (None, "kubernetes", "Deployment", Observer::Http),
            (Some("knative"), "istio", "Deployment", Observer::Knative),
            // A Knative Service is not a Kubernetes Service: no `:service` suffix.
            (
                Some("knative"),
                "istio",
                "KnativeService",
                Observer::Knative,
            ),
        ];
        for (own, mesh, kind, want) in cases {
            let p = metrics_provider(&canary(own, kind), mesh);
            assert_eq!(Observer::for_provider(&p), want, "{own:?} {mesh} {kind}");
        }
    }

    #[test]
    fn http_observer_queries_are_flaggers() {
        assert_eq!(
            render(Observer::Http, SUCCESS_RATE, &Model::test()).as_deref(),
            Ok(
                r#"sum( rate( http_request_duration_seconds_count{ kubernetes_namespace="test", kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)", status!~"5.*" }[1m] ) ) / sum( rate( http_request_duration_seconds_count{ kubernetes_namespace="test", kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[1m] ) ) * 100"#
            )
        );
        assert_eq!(
            render(Observer::Http, DURATION, &Model::test()).as_deref(),
            Ok(
                r#"histogram_quantile( 0.99, sum( rate( http_request_duration_seconds_bucket{ kubernetes_namespace="test", kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[1m] ) ) by (le) )"#
            )
        );
    }

    #[test]
    fn skipper_route_is_computed_like_flaggers_printf() {
        let q = render(Observer::Skipper, SUCCESS_RATE, &Model::test()).unwrap_or_default();
        assert!(
            q.starts_with(r#"sum(rate(skipper_response_duration_seconds_bucket{route=~"kube(ew)?_test__podinfo_canary__.*__podinfo_canary(_[0-9]+)?",code!~"5..",le="+Inf"}[1m]))"#),
            "{q}"
        );
    }

    #[test]
    fn sample_queries_count_the_success_rate_denominator_over_the_window() {
        assert_eq!(
            render_sample(Observer::Http, &Model::test()).as_deref(),
            Ok(
                r#"sum( increase( http_request_duration_seconds_count{ kubernetes_namespace="test", kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)" }[1m] ) )"#
            )
        );
        assert_eq!(
            render_sample(Observer::Istio, &Model::test()).as_deref(),
            Ok(
                r#"sum( increase( istio_requests_total{ reporter="destination", destination_workload_namespace="test", destination_workload=~"podinfo" }[1m] ) )"#
            )
        );
        assert_eq!(
            render_sample(Observer::Skipper, &Model::test()).as_deref(),
            Ok(
                r#"sum(increase(skipper_response_duration_seconds_bucket{route=~"kube(ew)?_test__podinfo_canary__.*__podinfo_canary(_[0-9]+)?",le="+Inf"}[1m]))"#
            )
        );
    }

    #[test]
    fn every_sample_query_is_a_sum_of_increases_without_the_error_filter() {
        use Observer::*;
        for o in [
            Istio, Linkerd, AppMesh, Contour, Gloo, Nginx, Http, Skipper, Traefik, Apisix, Kuma,
            Osm, Knative,
        ] {
            let q = render_sample(o, &Model::test()).unwrap_or_else(|e| panic!("{o:?}: {e}"));
            assert!(q.starts_with("sum("), "{o:?}: {q}");
            assert!(
                q.contains("increase(") && !q.contains("rate("),
                "{o:?}: {q}"
            );
            assert!(!q.contains("5.") && !q.contains("failure"), "{o:?}: {q}");
            assert!(!q.contains(" / ") && !q.contains("* 100"), "{o:?}: {q}");
        }
    }

    #[test]
    fn every_builtin_template_renders_completely() {
        use Observer::*;
        for o in [
            Istio, Linkerd, AppMesh, Contour, Gloo, Nginx, Http, Skipper, Traefik, Apisix, Kuma,
            Osm, Knative,
        ] {
            for name in [SUCCESS_RATE, DURATION] {
                let q = render(o, name, &Model::test()).unwrap_or_else(|e| panic!("{o:?}: {e}"));
                assert!(!q.contains("{{") && q.contains("1m"), "{o:?} {name}: {q}");
            }
        }
        assert_eq!(Http.duration_to_ms(), 1000.0);
        assert_eq!(Istio.duration_to_ms(), 1.0);
    }
}
