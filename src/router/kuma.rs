//! The `kuma` router: the cluster-scoped TrafficRoute `<svc>` (`kuma.io/v1alpha1`) splitting
//! `kuma.io/service` `<svc>_<ns>_svc_<port>` between primary and canary. Pure builders plus
//! [`routing_object`] (API I/O).
use serde_json::{Value, json};

use super::routing::RoutingObject;
use super::{Error, Meta};
use crate::api::Canary;
use crate::core::Routes;

/// The Kuma API version.
pub const API_VERSION: &str = "kuma.io/v1alpha1";

/// Kuma's service tag for a Kubernetes Service: `<name>_<ns>_svc_<port>`.
pub fn kuma_service(canary: &Canary, name: &str) -> String {
    let ns = canary.metadata.namespace.clone().unwrap_or_default();
    format!("{name}_{ns}_svc_{}", super::service_port(canary))
}

/// The TrafficRoute for a split. It is cluster-scoped, so it carries no owner reference (as in
/// Flagger); the mesh comes from the Canary's `kuma.io/mesh` annotation, default `default`.
pub fn traffic_route(canary: &Canary, routes: Routes) -> Value {
    let (apex, primary, canary_svc) = super::service_names(canary);
    let mesh = canary
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kuma.io/mesh").cloned())
        .unwrap_or_else(|| "default".into());
    let mut meta = super::owned_metadata(canary, &apex, Meta::Apex, false);
    if let Some(m) = meta.as_object_mut() {
        m.remove("namespace");
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": "TrafficRoute",
        "metadata": meta,
        "mesh": mesh,
        "spec": {
            "sources": [{"match": {"kuma.io/service": "*"}}],
            "destinations": [{"match": {"kuma.io/service": kuma_service(canary, &apex)}}],
            "conf": {"split": [
                {"weight": routes.primary, "destination": {"kuma.io/service": kuma_service(canary, &primary)}},
                {"weight": routes.canary, "destination": {"kuma.io/service": kuma_service(canary, &canary_svc)}},
            ]},
        },
    })
}

/// Reads the split: the primary's weight; the canary has the rest.
pub fn read_routes(canary: &Canary, live: &Value) -> Result<Routes, Error> {
    let (apex, primary, _) = super::service_names(canary);
    let p = live["spec"]["conf"]["split"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| {
            s["destination"]["kuma.io/service"]
                .as_str()
                .and_then(|v| v.split('_').next())
                == Some(primary.as_str())
        })
        .map(|s| super::primary_share(s.get("weight")));
    match p {
        Some(routes) => super::non_zero(routes, &format!("TrafficRoute {apex}")),
        None => Err(Error::Malformed(format!(
            "TrafficRoute {apex} does not route to {primary}"
        ))),
    }
}

/// Kuma's routing object: the cluster-scoped TrafficRoute `<svc>`.
pub fn routing_object() -> RoutingObject {
    let build = |c: &Canary, routes, _: Option<&Value>, _: &Value| Ok(traffic_route(c, routes));
    RoutingObject::new(
        super::resource(API_VERSION, "TrafficRoute"),
        read_routes,
        build,
    )
    .cluster_scoped()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::testing::canary;
    use crate::router::testing::split;

    #[test]
    fn the_route_splits_kuma_service_tags_and_has_no_owner() {
        let c = canary("kuma", json!({}));
        let tr = traffic_route(&c, split(70, 30));
        assert_eq!(tr["mesh"], "default");
        assert!(tr["metadata"].get("ownerReferences").is_none());
        assert!(tr["metadata"].get("namespace").is_none());
        assert_eq!(
            tr["spec"]["destinations"][0]["match"]["kuma.io/service"],
            "podinfo_test_svc_9898"
        );
        assert_eq!(
            tr["spec"]["conf"]["split"],
            json!([{"weight": 70, "destination": {"kuma.io/service": "podinfo-primary_test_svc_9898"}},
                   {"weight": 30, "destination": {"kuma.io/service": "podinfo-canary_test_svc_9898"}}])
        );
        assert_eq!(read_routes(&c, &tr).unwrap(), split(70, 30));
    }
}
