//! The `istio` router: DestinationRules `<svc>-primary` / `<svc>-canary` and the VirtualService
//! `<svc>` (HTTP, or TCP when `service.appProtocol` is `tcp`).
//!
//! Pure builders compute the objects Flagger writes; [`routing_object`] applies and reads them
//! (API I/O).
use async_trait::async_trait;
use serde_json::{Value, json};

use super::affinity::{self, COOKIE_HEADER, Cookies, SET_COOKIE_HEADER};
use super::routing::{Lifecycle, RoutingObject};
use super::{Error, Meta, object};
use crate::api::Canary;
use crate::api::canary::HttpMatchRequest;
use crate::core::Routes;

/// The Istio networking API version Flagger writes.
pub const API_VERSION: &str = "networking.istio.io/v1beta1";
/// Where the spec of a VirtualService Serin took over is kept, to restore it on deletion.
pub const ORIGINAL_CONFIG_ANNOTATION: &str = "flagger.kubernetes.io/original-configuration";
/// kubectl's record of the last applied object.
pub const KUBECTL_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether the canary routes TCP (`service.appProtocol: tcp`, any case).
pub fn is_tcp(canary: &Canary) -> bool {
    canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.app_protocol.as_deref())
        .is_some_and(|p| p.eq_ignore_ascii_case("tcp"))
}

/// The DestinationRule for `host`, with `service.trafficPolicy`. Like Flagger, a rule that
/// existed before the Canary is updated but not adopted (no owner reference).
pub fn destination_rule(canary: &Canary, host: &str, live: Option<&Value>) -> Value {
    let policy = canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.traffic_policy.clone())
        .unwrap_or(Value::Null);
    json!({
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": super::owned_metadata(canary, host, Meta::Bare, super::owned_by(canary, live)),
        "spec": object([("host", json!(host)), ("trafficPolicy", policy)]),
    })
}

/// Flagger's Istio `mergeMatchConditions`: analysis headers and sourceLabels over every
/// service match.
pub fn merge_matches(
    analysis: &[HttpMatchRequest],
    service: &[HttpMatchRequest],
) -> Vec<HttpMatchRequest> {
    if service.is_empty() {
        return analysis.to_vec();
    }
    let mut out = Vec::new();
    for a in analysis {
        for s in service {
            let mut m = s.clone();
            if a.headers.is_some() {
                m.headers = a.headers.clone();
            }
            if a.source_labels.is_some() {
                m.source_labels = a.source_labels.clone();
            }
            out.push(m);
        }
    }
    out
}

fn destination(canary: &Canary, host: &str, weight: i32) -> Value {
    let svc = canary.spec.service.clone().unwrap_or_default();
    let gateways = svc.gateways.clone().unwrap_or_default();
    // Flagger sets the port only with port discovery behind a non-mesh gateway or delegation.
    let with_port = svc.port_discovery.unwrap_or(false)
        && ((gateways.first().is_some_and(|g| g != "mesh")) || svc.delegation.unwrap_or(false));
    let dest = if with_port {
        json!({"host": host, "port": {"number": svc.port}})
    } else {
        json!({"host": host})
    };
    json!({"destination": dest, "weight": weight})
}

fn base_route(canary: &Canary, matches: &[HttpMatchRequest], route: Vec<Value>) -> Value {
    let svc = canary.spec.service.clone().unwrap_or_default();
    let rewrite = svc
        .rewrite
        .as_ref()
        .map(|r| {
            object([
                ("uri", r.uri.clone().map(Value::from).unwrap_or(Value::Null)),
                (
                    "authority",
                    r.authority.clone().map(Value::from).unwrap_or(Value::Null),
                ),
            ])
        })
        .unwrap_or(Value::Null);
    object([
        ("match", super::list_or_null(matches)),
        ("rewrite", rewrite),
        (
            "timeout",
            svc.timeout
                .clone()
                .filter(|t| !t.is_empty())
                .map(Value::from)
                .unwrap_or(Value::Null),
        ),
        (
            "retries",
            svc.retries
                .as_ref()
                .map(|r| json!(r))
                .unwrap_or(Value::Null),
        ),
        (
            "corsPolicy",
            svc.cors_policy
                .as_ref()
                .map(|c| json!(c))
                .unwrap_or(Value::Null),
        ),
        (
            "headers",
            svc.headers
                .as_ref()
                .map(|h| json!(h))
                .unwrap_or(Value::Null),
        ),
        ("route", Value::Array(route)),
    ])
}

fn cookie_match(cookie: &str) -> HttpMatchRequest {
    HttpMatchRequest {
        headers: Some(
            [(
                COOKIE_HEADER.to_string(),
                crate::api::canary::StringMatch {
                    regex: Some(affinity::cookie_regex(cookie)),
                    ..Default::default()
                },
            )]
            .into(),
        ),
        ..Default::default()
    }
}

fn add_response_header(target: &mut Value, name: &str, value: String) {
    if !target["headers"].is_object() {
        target["headers"] = json!({});
    }
    if !target["headers"]["response"].is_object() {
        target["headers"]["response"] = json!({});
    }
    if !target["headers"]["response"]["add"].is_object() {
        target["headers"]["response"]["add"] = json!({});
    }
    target["headers"]["response"]["add"][name] = json!(value);
}

fn sticky_routes(canary: &Canary, c: &Cookies, routes: Routes, mut weighted: Value) -> Vec<Value> {
    let (_, primary, canary_svc) = super::service_names(canary);
    let svc_match = canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.match_.clone())
        .unwrap_or_default();
    let mut sticky = weighted.clone();
    if routes.canary != 0 {
        for d in weighted["route"].as_array_mut().into_iter().flatten() {
            let host = d["destination"]["host"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if host == canary_svc {
                d["headers"] = json!({"response": {"add": {SET_COOKIE_HEADER: affinity::set_cookie(&c.spec, &c.canary, affinity::max_age(&c.spec))}}});
            } else if host == primary
                && let Some(p) = &c.primary
            {
                d["headers"] = json!({"response": {"add": {SET_COOKIE_HEADER: affinity::set_cookie(&c.spec, p, c.interval_secs as i64)}}});
            }
        }
        sticky["match"] = json!(merge_matches(&[cookie_match(&c.canary)], &svc_match));
        sticky["route"] = json!([
            destination(canary, &primary, 0),
            destination(canary, &canary_svc, 100)
        ]);
        if let Some(p) = &c.primary {
            let mut sp = sticky.clone();
            sp["match"] = json!(merge_matches(&[cookie_match(p)], &svc_match));
            sp["route"] = json!([
                destination(canary, &primary, 100),
                destination(canary, &canary_svc, 0)
            ]);
            return vec![sticky, sp, weighted];
        }
        return vec![sticky, weighted];
    }
    if let Some(prev) = &c.expire {
        sticky["match"] = json!(merge_matches(&[cookie_match(prev)], &svc_match));
        add_response_header(
            &mut sticky,
            SET_COOKIE_HEADER,
            format!("{prev}; Max-Age=-1"),
        );
    }
    vec![sticky, weighted]
}

/// Our VirtualService routes (`http` or `tcp`) for a split.
pub fn vs_routes(canary: &Canary, routes: Routes) -> Vec<Value> {
    let (_, primary, canary_svc) = super::service_names(canary);
    let svc = canary.spec.service.clone().unwrap_or_default();
    let both = vec![
        destination(canary, &primary, routes.primary),
        destination(canary, &canary_svc, routes.canary),
    ];
    if is_tcp(canary) {
        let l4: Vec<Value> = svc
            .match_
            .iter()
            .flatten()
            .map(|m| json!({"port": m.port.unwrap_or(0)}))
            .collect();
        return vec![object([
            ("match", super::list_or_null(&l4)),
            ("route", Value::Array(both)),
        ])];
    }
    let svc_match = svc.match_.clone().unwrap_or_default();
    let weighted = base_route(canary, &svc_match, both.clone());
    let mut out = match affinity::cookies(canary) {
        Some(c) => sticky_routes(canary, &c, routes, weighted),
        None => vec![weighted],
    };
    let analysis = canary.spec.analysis.clone().unwrap_or_default();
    if routes.mirrored
        && let Some(first) = out.first_mut()
    {
        first["mirror"] = json!({"host": canary_svc});
        if let Some(mw) = analysis.mirror_weight.filter(|w| *w > 0) {
            first["mirrorPercentage"] = json!({"value": f64::from(mw)});
        }
    }
    let ab = analysis.match_.clone().unwrap_or_default();
    if !ab.is_empty() {
        out = vec![
            base_route(canary, &merge_matches(&ab, &svc_match), both),
            base_route(
                canary,
                &svc_match,
                vec![destination(canary, &primary, routes.primary)],
            ),
        ];
    }
    out
}

/// Whether a VirtualService route is ours: it routes to the primary or canary Service.
pub fn is_ours(canary: &Canary, route: &Value) -> bool {
    let (_, primary, canary_svc) = super::service_names(canary);
    route["route"].as_array().is_some_and(|ds| {
        ds.iter().any(|d| {
            d["destination"]["host"] == json!(primary)
                || d["destination"]["host"] == json!(canary_svc)
        })
    })
}

/// The VirtualService to apply. Users' routes (those not sending to the canary's Services) are
/// kept, ahead of ours: Istio takes the first route that matches, and ours matches everything.
pub fn virtual_service(canary: &Canary, routes: Routes, live: Option<&Value>) -> Value {
    let (apex, _, _) = super::service_names(canary);
    let svc = canary.spec.service.clone().unwrap_or_default();
    let delegation = svc.delegation.unwrap_or(false);
    let mut hosts = svc.hosts.clone().unwrap_or_default();
    if !hosts.iter().any(|h| *h == apex || h == "*") {
        hosts.push(apex.clone());
    }
    let mut gateways = svc.gateways.clone().unwrap_or_default();
    if gateways.is_empty() {
        gateways.push("mesh".into());
    }
    if delegation {
        hosts.clear();
        gateways.clear();
    }
    let key = if is_tcp(canary) { "tcp" } else { "http" };
    let mut list = super::foreign_items(live, &format!("/spec/{key}"), |r| is_ours(canary, r));
    list.extend(vs_routes(canary, routes));
    let owned = super::owned_by(canary, live);
    let mut meta = super::owned_metadata(canary, &apex, Meta::Apex, owned);
    // Keep (or take) a copy of a VirtualService we did not create, to restore it on deletion.
    let annotations = live
        .map(|l| l["metadata"]["annotations"].clone())
        .unwrap_or(Value::Null);
    let original = annotations[ORIGINAL_CONFIG_ANNOTATION]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            (!owned && annotations[KUBECTL_ANNOTATION].is_null())
                .then(|| live.map(|l| l["spec"].to_string()))
                .flatten()
        });
    if let Some(o) = original {
        meta["annotations"][ORIGINAL_CONFIG_ANNOTATION] = json!(o);
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": meta,
        "spec": object([
            ("hosts", json!(hosts)),
            ("gateways", json!(gateways)),
            (key, Value::Array(list)),
        ]),
    })
}

/// Reads the split back: the last of our routes that sends to both Services.
pub fn read_routes(canary: &Canary, live: &Value) -> Result<Routes, Error> {
    let (apex, primary, canary_svc) = super::service_names(canary);
    let key = if is_tcp(canary) { "tcp" } else { "http" };
    let mut routes = Routes::split(0, 0);
    for r in live["spec"][key].as_array().into_iter().flatten() {
        let ds = r["route"].as_array().cloned().unwrap_or_default();
        let weight = |host: &str| {
            ds.iter()
                .find(|d| d["destination"]["host"] == json!(host))
                .map(|d| super::weight_of(d.get("weight")))
        };
        if let (Some(p), Some(c)) = (weight(&primary), weight(&canary_svc)) {
            routes.primary = p;
            routes.canary = c;
            routes.mirrored = r["mirror"]["host"].as_str().is_some_and(|h| !h.is_empty());
        }
    }
    super::non_zero(routes, &format!("VirtualService {apex}"))
}

/// Istio's routing object: the VirtualService `<svc>`, with the primary and canary
/// DestinationRules it routes to.
pub fn routing_object() -> RoutingObject {
    let build =
        |c: &Canary, routes, live: Option<&Value>, _: &Value| Ok(virtual_service(c, routes, live));
    RoutingObject::new(
        super::resource(API_VERSION, "VirtualService"),
        read_routes,
        build,
    )
    .with(Rules)
}

/// The DestinationRules the VirtualService routes to, and the restore of a VirtualService that
/// existed before the Canary.
struct Rules;

#[async_trait]
impl Lifecycle for Rules {
    /// The DestinationRules `<svc>-primary` and `<svc>-canary`.
    async fn prepare(&self, client: &kube::Client, canary: &Canary) -> Result<(), Error> {
        let ns = canary.metadata.namespace.as_deref();
        let (_, primary, canary_svc) = super::service_names(canary);
        let rules = super::resource(API_VERSION, "DestinationRule");
        for host in [primary, canary_svc] {
            let live = super::get(client, ns, &rules, &host).await?;
            let body = destination_rule(canary, &host, live.as_ref());
            super::apply(client, ns, &body).await?;
        }
        Ok(())
    }

    /// Restores the spec of a VirtualService that existed before the Canary, from kubectl's
    /// last-applied annotation or the copy taken when Serin first changed it.
    async fn finalize(&self, client: &kube::Client, canary: &Canary) -> Result<(), Error> {
        let ns = canary.metadata.namespace.as_deref();
        let name = canary.spec.service_name();
        let vs = super::resource(API_VERSION, "VirtualService");
        let Some(live) = super::get(client, ns, &vs, &name).await? else {
            return Ok(());
        };
        let annotations = &live["metadata"]["annotations"];
        let stored = if let Some(a) = annotations[KUBECTL_ANNOTATION].as_str() {
            serde_json::from_str::<Value>(a)
                .ok()
                .map(|v| v["spec"].clone())
        } else {
            annotations[ORIGINAL_CONFIG_ANNOTATION]
                .as_str()
                .and_then(|a| serde_json::from_str(a).ok())
        };
        let Some(spec) = stored else {
            tracing::warn!("VirtualService {name} has no original configuration; not reverting");
            return Ok(());
        };
        let body = json!({
            "apiVersion": API_VERSION, "kind": "VirtualService",
            "metadata": {"name": name, "namespace": canary.metadata.namespace},
            "spec": spec,
        });
        super::apply(client, ns, &body).await
    }
}

#[cfg(test)]
#[path = "istio_tests.rs"]
mod tests;
