//! The `gloo` router (Gloo Edge): kube Upstreams `<ns>-<svc>-{primary,canary}upstream-<port>`
//! (`gloo.solo.io/v1`) for the primary and canary Services, and the RouteTable `<svc>`
//! (`gateway.solo.io/v1`) whose route splits traffic between them.
//!
//! Pure builders compute the objects Flagger writes; [`routing_object`] reads the Services and the
//! `upstreamRef` config Upstream and applies them (API I/O). A user's Gloo VirtualService
//! delegates to the RouteTable.
use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::routing::{Lifecycle, RoutingObject};
use super::{Error, Meta, object};
use crate::api::Canary;
use crate::api::canary::StringMatch;
use crate::core::Routes;

/// The API version of Upstreams.
pub const UPSTREAM_API_VERSION: &str = "gloo.solo.io/v1";
/// The API version of RouteTables.
pub const ROUTE_TABLE_API_VERSION: &str = "gateway.solo.io/v1";

/// The fields of the `upstreamRef` Upstream's spec that Flagger copies into the generated
/// Upstreams (everything that tunes the connection, nothing that says where it goes).
pub const COPIED_UPSTREAM_FIELDS: [&str; 9] = [
    "labels",
    "sslConfig",
    "circuitBreakers",
    "connectionConfig",
    "loadBalancerConfig",
    "useHttp2",
    "initialStreamWindowSize",
    "initialConnectionWindowSize",
    "httpProxyHostname",
];

/// `(primary, canary)` Upstream names: `<ns>-<svc>-primaryupstream-<port>` and the canary's.
/// The builtin Gloo metrics select Envoy clusters by these names.
pub fn upstream_names(canary: &Canary) -> (String, String) {
    let ns = canary.metadata.namespace.clone().unwrap_or_default();
    let apex = canary.spec.service_name();
    let port = super::service_port(canary);
    (
        format!("{ns}-{apex}-primaryupstream-{port}"),
        format!("{ns}-{apex}-canaryupstream-{port}"),
    )
}

/// The kube Upstream `name` for the Service `service` (its live object, for the selector),
/// with the connection settings of the `upstreamRef` Upstream `config` when there is one.
pub fn upstream(
    canary: &Canary,
    name: &str,
    service: &Value,
    config: Option<&Value>,
    live: Option<&Value>,
) -> Value {
    let ns = canary.metadata.namespace.clone().unwrap_or_default();
    let mut spec = Map::new();
    if let Some(c) = config.and_then(|c| c["spec"].as_object()) {
        for key in COPIED_UPSTREAM_FIELDS {
            if let Some(v) = c.get(key).filter(|v| !v.is_null()) {
                spec.insert(key.to_string(), v.clone());
            }
        }
    }
    spec.insert(
        "kube".into(),
        object([
            ("serviceName", service["metadata"]["name"].clone()),
            ("serviceNamespace", json!(ns)),
            ("servicePort", json!(super::service_port(canary))),
            (
                "selector",
                service["spec"]["selector"]
                    .as_object()
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::Object(s.clone()))
                    .unwrap_or(Value::Null),
            ),
        ]),
    );
    json!({
        "apiVersion": UPSTREAM_API_VERSION,
        "kind": "Upstream",
        // Flagger gives generated Upstreams no labels or annotations, only the owner reference.
        "metadata": super::owned_metadata(canary, name, Meta::Bare, super::owned_by(canary, live)),
        "spec": Value::Object(spec),
    })
}

fn header_matcher(name: &str, sm: &StringMatch) -> Value {
    match &sm.regex {
        Some(re) => json!({"name": name, "value": re, "regex": true}),
        None => object([
            ("name", json!(name)),
            (
                "value",
                sm.exact
                    .clone()
                    .filter(|e| !e.is_empty())
                    .map(Value::from)
                    .unwrap_or(Value::Null),
            ),
        ]),
    }
}

/// The route matchers of the A/B `analysis.match`: one matcher per match entry (Gloo ORs
/// matchers and ANDs the conditions inside one), with its headers, query parameters and method.
pub fn matchers(canary: &Canary) -> Vec<Value> {
    let mut out = Vec::new();
    for m in canary.spec.ab_matches() {
        let headers: Vec<Value> = m
            .headers
            .iter()
            .flatten()
            .map(|(k, sm)| header_matcher(k, sm))
            .collect();
        let query: Vec<Value> = m
            .query_params
            .iter()
            .flatten()
            .map(|(k, sm)| header_matcher(k, sm))
            .collect();
        let methods: Vec<Value> = m
            .method
            .iter()
            .filter_map(|sm| sm.exact.clone())
            .map(Value::from)
            .collect();
        let non_empty = |v: Vec<Value>| {
            if v.is_empty() {
                Value::Null
            } else {
                Value::Array(v)
            }
        };
        let matcher = object([
            ("headers", non_empty(headers)),
            ("queryParameters", non_empty(query)),
            ("methods", non_empty(methods)),
        ]);
        if matcher.as_object().is_some_and(|o| !o.is_empty()) {
            out.push(matcher);
        }
    }
    out
}

fn destination(canary: &Canary, upstream: &str, weight: i32) -> Value {
    let ns = canary.metadata.namespace.clone().unwrap_or_default();
    let mut d = json!({"destination": {"upstream": {"name": upstream, "namespace": ns}}});
    // Gloo's `weight` is omitempty: a zero weight is not written.
    if weight != 0 {
        d["weight"] = json!(weight);
    }
    d
}

fn route(matchers: Vec<Value>, destinations: Vec<Value>) -> Value {
    object([
        (
            "matchers",
            if matchers.is_empty() {
                Value::Null
            } else {
                Value::Array(matchers)
            },
        ),
        (
            "routeAction",
            json!({"multi": {"destinations": destinations}}),
        ),
        ("inheritablePathMatchers", json!(true)),
    ])
}

/// Our routes for a split: the weighted route, matched by the A/B conditions when there are
/// any; then, for A/B, a route sending everyone else to the primary.
pub fn routes(canary: &Canary, routes: Routes) -> Vec<Value> {
    let (primary, canary_up) = upstream_names(canary);
    let weighted = vec![
        destination(canary, &primary, routes.primary),
        destination(canary, &canary_up, routes.canary),
    ];
    let ab = matchers(canary);
    if ab.is_empty() {
        return vec![route(vec![], weighted)];
    }
    vec![
        route(ab, weighted),
        route(vec![], vec![destination(canary, &primary, 100)]),
    ]
}

/// Whether a RouteTable route is ours: it sends to the primary or canary Upstream.
pub fn is_ours(canary: &Canary, route: &Value) -> bool {
    let (primary, canary_up) = upstream_names(canary);
    route["routeAction"]["multi"]["destinations"]
        .as_array()
        .is_some_and(|ds| {
            ds.iter().any(|d| {
                let name = &d["destination"]["upstream"]["name"];
                *name == json!(primary) || *name == json!(canary_up)
            })
        })
}

/// The RouteTable for a split. Users' routes (those not sending to our Upstreams) are kept
/// ahead of ours: Gloo takes the first route that matches, and ours matches every path.
pub fn route_table(canary: &Canary, split: Routes, live: Option<&Value>) -> Value {
    let apex = canary.spec.service_name();
    let mut list = super::foreign_items(live, "/spec/routes", |r| is_ours(canary, r));
    list.extend(routes(canary, split));
    json!({
        "apiVersion": ROUTE_TABLE_API_VERSION,
        "kind": "RouteTable",
        "metadata": super::owned_metadata(canary, &apex, Meta::Apex, super::owned_by(canary, live)),
        "spec": {"routes": list},
    })
}

/// Reads the split: the primary's weight in our weighted route; the canary has the rest.
pub fn read_routes(canary: &Canary, live: &Value) -> Result<Routes, Error> {
    let apex = canary.spec.service_name();
    let (primary, canary_up) = upstream_names(canary);
    let weighted = live["spec"]["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["routeAction"]["multi"]["destinations"].as_array())
        .find(|ds| {
            let has = |n: &str| {
                ds.iter()
                    .any(|d| d["destination"]["upstream"]["name"] == json!(n))
            };
            has(&primary) && has(&canary_up)
        })
        .ok_or_else(|| Error::Malformed(format!("RouteTable {apex}: destinations not found")))?;
    let primary_entry = weighted
        .iter()
        .find(|d| d["destination"]["upstream"]["name"] == json!(primary));
    Ok(super::primary_share(
        primary_entry.and_then(|e| e.get("weight")),
    ))
}

/// Gloo's routing object: the RouteTable `<svc>`, with the primary and canary Upstreams it
/// routes to.
pub fn routing_object() -> RoutingObject {
    let build =
        |c: &Canary, routes, live: Option<&Value>, _: &Value| Ok(route_table(c, routes, live));
    let resource = super::resource(ROUTE_TABLE_API_VERSION, "RouteTable");
    RoutingObject::new(resource, read_routes, build)
        .refusing_zero()
        .with(Upstreams)
}

/// The `upstreamRef` Upstream; its namespace defaults to the Canary's.
async fn config_upstream(client: &kube::Client, canary: &Canary) -> Result<Option<Value>, Error> {
    let Some(r) = &canary.spec.upstream_ref else {
        return Ok(None);
    };
    let ns = r
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| canary.metadata.namespace.clone());
    let ar = super::resource(UPSTREAM_API_VERSION, "Upstream");
    let found = super::get(client, ns.as_deref(), &ar, &r.name).await?;
    found
        .map(Some)
        .ok_or_else(|| Error::Missing(format!("upstreamRef Upstream {}", r.name)))
}

/// The Upstreams of the primary and canary Services, written before the RouteTable.
struct Upstreams;

#[async_trait]
impl Lifecycle for Upstreams {
    /// The Upstreams of the primary and canary Services.
    async fn prepare(&self, client: &kube::Client, canary: &Canary) -> Result<(), Error> {
        let ns = canary.metadata.namespace.as_deref();
        let config = config_upstream(client, canary).await?;
        let (_, primary_svc, canary_svc) = super::service_names(canary);
        let (primary_up, canary_up) = upstream_names(canary);
        let services = super::resource("v1", "Service");
        let upstreams = super::resource(UPSTREAM_API_VERSION, "Upstream");
        for (svc, name) in [(primary_svc, primary_up), (canary_svc, canary_up)] {
            let service = super::get(client, ns, &services, &svc)
                .await?
                .ok_or_else(|| Error::Missing(format!("Service {svc}")))?;
            let live = super::get(client, ns, &upstreams, &name).await?;
            let body = upstream(canary, &name, &service, config.as_ref(), live.as_ref());
            super::apply(client, ns, &body).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::INITIAL;
    use crate::router::testing::split;
    use crate::router::testing::{ab_canary, canary};

    const SPLIT: Routes = split(70, 30);

    fn up(name: &str, w: Option<i32>) -> Value {
        let mut d = json!({"destination": {"upstream": {"name": name, "namespace": "test"}}});
        if let Some(w) = w {
            d["weight"] = json!(w);
        }
        d
    }

    #[test]
    fn upstreams_are_named_for_namespace_service_and_port() {
        let c = canary("gloo", json!({"service": {"name": "web", "port": 8080}}));
        assert_eq!(
            upstream_names(&c),
            (
                "test-web-primaryupstream-8080".to_string(),
                "test-web-canaryupstream-8080".to_string()
            )
        );
    }

    #[test]
    fn one_weighted_route_inherits_the_delegating_path_and_omits_zero_weights() {
        let c = canary(
            "gloo",
            json!({"service": {"apex": {"labels": {"team": "web"}}}}),
        );
        let rt = route_table(&c, INITIAL, None);
        assert_eq!(rt["apiVersion"], "gateway.solo.io/v1");
        assert_eq!(rt["metadata"]["name"], "podinfo");
        assert_eq!(rt["metadata"]["labels"], json!({"team": "web"}));
        assert_eq!(rt["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(
            rt["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/reconcile"],
            "disabled"
        );
        assert_eq!(
            rt["spec"],
            json!({"routes": [{"routeAction": {"multi": {"destinations": [
                up("test-podinfo-primaryupstream-9898", Some(100)),
                up("test-podinfo-canaryupstream-9898", None)]}},
                "inheritablePathMatchers": true}]})
        );
        assert_eq!(read_routes(&c, &rt).unwrap(), INITIAL);
        let rt = route_table(&c, SPLIT, None);
        assert_eq!(read_routes(&c, &rt).unwrap(), SPLIT);
    }

    #[test]
    fn ab_conditions_become_one_matcher_per_entry_and_everyone_else_stays_on_the_primary() {
        let c = ab_canary(
            "gloo",
            json!([
                {"headers": {"x-canary": {"exact": "insider"}}, "method": {"exact": "GET"}},
                {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}},
                 "queryParams": {"beta": {"exact": "1"}}}]),
        );
        let all_canary = split(0, 100);
        let rt = route_table(&c, all_canary, None);
        assert_eq!(
            rt["spec"]["routes"],
            json!([
                {"matchers": [
                    {"headers": [{"name": "x-canary", "value": "insider"}], "methods": ["GET"]},
                    {"headers": [{"name": "cookie", "value": "^(.*?;)?(canary=always)(;.*)?$", "regex": true}],
                     "queryParameters": [{"name": "beta", "value": "1"}]}],
                 "routeAction": {"multi": {"destinations": [
                    up("test-podinfo-primaryupstream-9898", None),
                    up("test-podinfo-canaryupstream-9898", Some(100))]}},
                 "inheritablePathMatchers": true},
                {"routeAction": {"multi": {"destinations": [up("test-podinfo-primaryupstream-9898", Some(100))]}},
                 "inheritablePathMatchers": true}])
        );
        assert_eq!(read_routes(&c, &rt).unwrap(), all_canary);
    }

    #[test]
    fn users_routes_are_kept_ahead_of_ours() {
        let c = canary("gloo", json!({}));
        let user = json!({"matchers": [{"prefix": "/admin"}],
            "routeAction": {"single": {"upstream": {"name": "admin", "namespace": "test"}}}});
        let mut live = route_table(&c, SPLIT, None);
        live["spec"]["routes"]
            .as_array_mut()
            .unwrap()
            .push(user.clone());
        let rt = route_table(&c, INITIAL, Some(&live));
        assert_eq!(rt["spec"]["routes"][0], user);
        assert_eq!(rt["spec"]["routes"].as_array().unwrap().len(), 2);
        assert_eq!(read_routes(&c, &rt).unwrap(), INITIAL);
    }

    #[test]
    fn an_existing_route_table_is_not_adopted() {
        let c = canary("gloo", json!({}));
        let live = json!({"metadata": {"name": "podinfo"}, "spec": {"routes": []}});
        let rt = route_table(&c, INITIAL, Some(&live));
        assert!(rt["metadata"].get("ownerReferences").is_none());
    }

    #[test]
    fn a_route_table_without_our_destinations_cannot_be_read() {
        let c = canary("gloo", json!({}));
        let live = json!({"spec": {"routes": [{"routeAction": {"multi": {"destinations": [
            up("test-podinfo-primaryupstream-9898", Some(100))]}}}]}});
        assert!(read_routes(&c, &live).is_err());
    }

    #[test]
    fn kube_upstreams_select_the_services_pods_and_copy_the_config_upstreams_tuning() {
        let c = canary("gloo", json!({}));
        let svc = json!({"metadata": {"name": "podinfo-primary"},
            "spec": {"selector": {"app": "podinfo-primary"}}});
        let config = json!({"spec": {
            "static": {"hosts": [{"addr": "example.com", "port": 80}]},
            "connectionConfig": {"connectTimeout": "2s", "maxRequestsPerConnection": 51},
            "loadBalancerConfig": {"roundRobin": {"slowStartConfig": {"slowStartWindow": "2m"}}},
            "useHttp2": true}});
        let u = upstream(
            &c,
            "test-podinfo-primaryupstream-9898",
            &svc,
            Some(&config),
            None,
        );
        assert_eq!(u["apiVersion"], "gloo.solo.io/v1");
        assert_eq!(u["metadata"]["ownerReferences"][0]["kind"], "Canary");
        assert!(u["metadata"].get("labels").is_none());
        assert_eq!(
            u["spec"],
            json!({
                "kube": {"serviceName": "podinfo-primary", "serviceNamespace": "test",
                         "servicePort": 9898, "selector": {"app": "podinfo-primary"}},
                "connectionConfig": {"connectTimeout": "2s", "maxRequestsPerConnection": 51},
                "loadBalancerConfig": {"roundRobin": {"slowStartConfig": {"slowStartWindow": "2m"}}},
                "useHttp2": true})
        );
        let plain = upstream(&c, "x", &svc, None, None);
        assert_eq!(
            plain["spec"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["kube"]
        );
    }
}
