//! The `apisix` router: the ApisixRoute `<routeRef>-<svc>-canary` (`apisix.apache.org/v2`),
//! cloned from `routeRef`'s HTTP route that sends to the apex Service, with its priority raised
//! and weighted primary and canary backends. Pure builders plus [`routing_object`] (API I/O).
use serde_json::{Value, json};

use super::routing::RoutingObject;
use super::{Error, Meta};
use crate::api::Canary;
use crate::core::Routes;

/// The APISIX API version.
pub const API_VERSION: &str = "apisix.apache.org/v2";
/// The priority of the canary route, above any the user's route may have.
pub const MAX_PRIORITY: i64 = 10000;

/// The name of the canary ApisixRoute.
pub fn canary_route_name(canary: &Canary) -> String {
    let base = canary
        .spec
        .route_ref
        .as_ref()
        .map(|r| r.name.clone())
        .unwrap_or_default();
    format!("{base}-{}-canary", canary.spec.service_name())
}

/// The canary ApisixRoute for a split, from the user's live ApisixRoute.
pub fn canary_route(
    canary: &Canary,
    original: &Value,
    routes: Routes,
    live: Option<&Value>,
) -> Result<Value, Error> {
    let (apex, primary, canary_svc) = super::service_names(canary);
    let name = original["metadata"]["name"].as_str().unwrap_or_default();
    let target = original["spec"]["http"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| {
            r["backends"]
                .as_array()
                .is_some_and(|b| b.iter().any(|b| b["serviceName"] == json!(apex)))
        })
        .cloned()
        .ok_or_else(|| {
            Error::Invalid(format!(
                "no http route of ApisixRoute {name} sends to {apex}"
            ))
        })?;
    let backends = target["backends"].as_array().cloned().unwrap_or_default();
    let [backend] = backends.as_slice() else {
        return Err(Error::Invalid(format!(
            "ApisixRoute {name}: only an http route with one backend is supported"
        )));
    };
    let mut http = target.clone();
    http["priority"] = json!(MAX_PRIORITY);
    let mut p = backend.clone();
    p["serviceName"] = json!(primary);
    p["weight"] = json!(routes.primary);
    let mut c = json!({"serviceName": canary_svc, "servicePort": backend["servicePort"], "weight": routes.canary});
    for key in ["resolveGranularity", "subset"] {
        if let Some(v) = backend.get(key) {
            c[key] = v.clone();
        }
    }
    http["backends"] = json!([p, c]);
    let mut spec = original["spec"].clone();
    spec["http"] = json!([http]);
    let mut meta = super::owned_metadata(
        canary,
        &canary_route_name(canary),
        Meta::Bare,
        super::owned_by(canary, live),
    );
    for key in ["labels", "annotations"] {
        if let Some(m) = original["metadata"][key]
            .as_object()
            .filter(|m| !m.is_empty())
        {
            meta[key] = json!(m);
        }
    }
    Ok(json!({"apiVersion": API_VERSION, "kind": "ApisixRoute", "metadata": meta, "spec": spec}))
}

/// Reads the split: the primary backend's weight; the canary has the rest.
pub fn read_routes(canary: &Canary, live: &Value) -> Result<Routes, Error> {
    let (_, primary, _) = super::service_names(canary);
    let p = live["spec"]["http"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["backends"].as_array().into_iter().flatten())
        .find(|b| b["serviceName"] == json!(primary))
        .ok_or_else(|| {
            Error::Malformed(format!(
                "ApisixRoute {}: no {primary} backend",
                canary_route_name(canary)
            ))
        })?;
    Ok(super::primary_share(p.get("weight")))
}

/// APISIX's routing object: the canary ApisixRoute cloned from `routeRef`.
pub fn routing_object() -> RoutingObject {
    let build = |c: &Canary, routes, live: Option<&Value>, original: &Value| {
        canary_route(c, original, routes, live)
    };
    RoutingObject::new(
        super::resource(API_VERSION, "ApisixRoute"),
        read_routes,
        build,
    )
    .refusing_zero()
    .copy_of(
        "ApisixRoute",
        canary_route_name,
        |c| c.spec.route_ref.as_ref(),
        "routeRef",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::testing::canary;
    use crate::router::testing::split;

    fn apisix() -> Canary {
        let mut c = canary("apisix", json!({}));
        c.spec.route_ref = Some(crate::api::canary::TargetRef {
            api_version: "apisix.apache.org/v2".into(),
            kind: "ApisixRoute".into(),
            name: "app".into(),
        });
        c
    }

    fn original() -> Value {
        json!({"metadata": {"name": "app"}, "spec": {"http": [
            {"name": "other", "match": {"paths": ["/other"]}, "backends": [{"serviceName": "other", "servicePort": 80}]},
            {"name": "method", "match": {"paths": ["/*"]}, "backends": [{"serviceName": "podinfo", "servicePort": 9898, "resolveGranularity": "service"}]}]}})
    }

    #[test]
    fn the_canary_route_clones_the_apex_http_route_with_weighted_backends() {
        let c = apisix();
        let r = canary_route(&c, &original(), split(90, 10), None).unwrap();
        assert_eq!(r["metadata"]["name"], "app-podinfo-canary");
        assert_eq!(
            r["spec"]["http"],
            json!([{"name": "method", "match": {"paths": ["/*"]}, "priority": 10000, "backends": [
                {"serviceName": "podinfo-primary", "servicePort": 9898, "resolveGranularity": "service", "weight": 90},
                {"serviceName": "podinfo-canary", "servicePort": 9898, "resolveGranularity": "service", "weight": 10}]}])
        );
        assert_eq!(read_routes(&c, &r).unwrap(), split(90, 10));
    }
}
