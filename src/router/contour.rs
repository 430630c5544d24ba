//! The `contour` router: the HTTPProxy `<svc>` (`projectcontour.io/v1`).
//!
//! Pure builders compute the HTTPProxy Flagger writes (weighted services with Linkerd's
//! `l5d-dst-override` header, prefix from `service.match[0].uri.prefix`); [`routing_object`]
//! applies and reads it (API I/O). A root HTTPProxy of the user's `includes` this one.
use serde_json::{Value, json};

use super::routing::RoutingObject;
use super::{Error, Meta, object};
use crate::api::Canary;
use crate::core::Routes;

/// The Contour API version.
pub const API_VERSION: &str = "projectcontour.io/v1";

fn service(canary: &Canary, name: &str, weight: i32) -> Value {
    let ns = canary.metadata.namespace.clone().unwrap_or_default();
    let port = super::service_port(canary);
    object([
        ("name", json!(name)),
        ("port", json!(port)),
        // Contour's `weight` is omitempty: a zero weight is not written.
        (
            "weight",
            if weight == 0 {
                Value::Null
            } else {
                json!(weight)
            },
        ),
        (
            "requestHeadersPolicy",
            json!({"set": [{"name": "l5d-dst-override", "value": format!("{name}.{ns}.svc.cluster.local:{port}")}]}),
        ),
    ])
}

fn route(canary: &Canary, conditions: Value, primary_weight: i32, canary_weight: i32) -> Value {
    let (_, primary, canary_svc) = super::service_names(canary);
    let svc = canary.spec.service.clone().unwrap_or_default();
    let timeout = svc
        .timeout
        .filter(|t| !t.is_empty())
        .map(|t| json!({"response": t, "idle": "5m"}))
        .unwrap_or(Value::Null);
    let retry = svc
        .retries
        .map(|r| {
            let on: Vec<String> = r
                .retry_on
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .collect();
            object([
                (
                    "count",
                    r.attempts
                        .filter(|a| *a != 0)
                        .map(Value::from)
                        .unwrap_or(Value::Null),
                ),
                (
                    "perTryTimeout",
                    r.per_try_timeout.map(Value::from).unwrap_or(Value::Null),
                ),
                ("retryOn", json!(on)),
            ])
        })
        .unwrap_or(Value::Null);
    object([
        ("conditions", conditions),
        ("timeoutPolicy", timeout),
        ("retryPolicy", retry),
        (
            "services",
            json!([
                service(canary, &primary, primary_weight),
                service(canary, &canary_svc, canary_weight)
            ]),
        ),
    ])
}

/// The A/B header conditions: exact, or `contains` for prefix and suffix (as Flagger maps them).
fn conditions(canary: &Canary) -> Value {
    let p = super::uri_prefix(canary);
    let mut out = Vec::new();
    for m in canary.spec.ab_matches() {
        for (name, sm) in m.headers.iter().flatten() {
            let header = if let Some(v) = &sm.prefix {
                json!({"name": name, "contains": v})
            } else if let Some(v) = &sm.suffix {
                json!({"name": name, "contains": v})
            } else {
                json!({"name": name, "exact": sm.exact.clone().unwrap_or_default()})
            };
            out.push(json!({"prefix": p, "header": header}));
        }
    }
    Value::Array(out)
}

/// The HTTPProxy for a split.
pub fn http_proxy(
    canary: &Canary,
    routes: Routes,
    ingress_class: Option<&str>,
    live: Option<&Value>,
) -> Value {
    let (apex, _, _) = super::service_names(canary);
    let base = json!([{"prefix": super::uri_prefix(canary)}]);
    let ab = super::is_ab(canary);
    let routes_list = if ab {
        json!([
            route(canary, conditions(canary), routes.primary, routes.canary),
            route(canary, base, 100, 0)
        ])
    } else {
        json!([route(canary, base, routes.primary, routes.canary)])
    };
    json!({
        "apiVersion": API_VERSION,
        "kind": "HTTPProxy",
        "metadata": super::owned_metadata(canary, &apex, Meta::Apex, super::owned_by(canary, live)),
        "spec": object([
            ("ingressClassName", ingress_class.filter(|c| !c.is_empty()).map(Value::from).unwrap_or(Value::Null)),
            ("routes", routes_list),
        ]),
    })
}

/// Reads the split: the primary's weight in the first route; the canary has the rest.
pub fn read_routes(canary: &Canary, live: &Value) -> Result<Routes, Error> {
    let (apex, primary, _) = super::service_names(canary);
    let services = live["spec"]["routes"][0]["services"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if services.len() < 2 {
        return Err(Error::Malformed(format!(
            "HTTPProxy {apex}: services not found"
        )));
    }
    let primary_entry = services.iter().find(|s| s["name"] == json!(primary));
    Ok(super::primary_share(
        primary_entry.and_then(|e| e.get("weight")),
    ))
}

/// Contour's routing object: the HTTPProxy `<svc>`, written with the controller's ingress class
/// (`--ingress-class`) as `spec.ingressClassName`.
pub fn routing_object(ingress_class: Option<String>) -> RoutingObject {
    let build = move |c: &Canary, routes, live: Option<&Value>, _: &Value| {
        Ok(http_proxy(c, routes, ingress_class.as_deref(), live))
    };
    RoutingObject::new(
        super::resource(API_VERSION, "HTTPProxy"),
        read_routes,
        build,
    )
    .refusing_zero()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::INITIAL;
    use crate::router::testing::split;
    use crate::router::testing::{ab_canary, canary};

    #[test]
    fn weighted_services_carry_the_linkerd_override_header_and_zero_weights_are_omitted() {
        let c = canary(
            "contour",
            json!({"service": {"timeout": "15s", "match": [{"uri": {"prefix": "/api"}}]}}),
        );
        let p = http_proxy(&c, INITIAL, Some("contour"), None);
        assert_eq!(p["spec"]["ingressClassName"], "contour");
        assert_eq!(
            p["spec"]["routes"],
            json!([{"conditions": [{"prefix": "/api"}], "timeoutPolicy": {"response": "15s", "idle": "5m"}, "services": [
                {"name": "podinfo-primary", "port": 9898, "weight": 100, "requestHeadersPolicy": {"set": [
                    {"name": "l5d-dst-override", "value": "podinfo-primary.test.svc.cluster.local:9898"}]}},
                {"name": "podinfo-canary", "port": 9898, "requestHeadersPolicy": {"set": [
                    {"name": "l5d-dst-override", "value": "podinfo-canary.test.svc.cluster.local:9898"}]}}]}])
        );
        assert_eq!(read_routes(&c, &p).unwrap(), INITIAL);
    }

    #[test]
    fn ab_testing_adds_header_conditions_and_a_default_route() {
        let c = ab_canary(
            "contour",
            json!([{"headers": {"x-canary": {"exact": "insider"}, "user-agent": {"prefix": "Firefox"}}}]),
        );
        let p = http_proxy(&c, split(0, 100), None, None);
        assert_eq!(
            p["spec"]["routes"][0]["conditions"],
            json!([{"prefix": "/", "header": {"name": "user-agent", "contains": "Firefox"}},
                   {"prefix": "/", "header": {"name": "x-canary", "exact": "insider"}}])
        );
        assert_eq!(p["spec"]["routes"][1]["services"][0]["weight"], 100);
        assert_eq!(read_routes(&c, &p).unwrap(), split(0, 100));
    }
}
