//! The `traefik` router: the TraefikService `<svc>` (`traefik.io/v1alpha1`) with weighted
//! services; users' IngressRoutes reference it. Pure builders plus [`routing_object`] (API I/O).
use serde_json::{Value, json};

use super::routing::RoutingObject;
use super::{Error, Meta};
use crate::api::Canary;
use crate::core::Routes;

/// The Traefik API version.
pub const API_VERSION: &str = "traefik.io/v1alpha1";

fn service(canary: &Canary, name: &str, weight: i32) -> Value {
    let mut s = json!({"name": name, "namespace": canary.metadata.namespace, "port": super::service_port(canary)});
    // Traefik's `weight` is omitempty.
    if weight != 0 {
        s["weight"] = json!(weight);
    }
    s
}

/// The TraefikService for a split: the canary is listed only while it has weight.
pub fn traefik_service(canary: &Canary, routes: Routes, live: Option<&Value>) -> Value {
    let (apex, primary, canary_svc) = super::service_names(canary);
    let mut services = vec![service(canary, &primary, routes.primary)];
    if routes.canary > 0 {
        services.push(service(canary, &canary_svc, routes.canary));
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": "TraefikService",
        "metadata": super::owned_metadata(canary, &apex, Meta::Apex, super::owned_by(canary, live)),
        "spec": {"weighted": {"services": services}},
    })
}

/// Reads the split: the primary's weight; the canary has the rest.
pub fn read_routes(canary: &Canary, live: &Value) -> Result<Routes, Error> {
    let (apex, primary, _) = super::service_names(canary);
    let services = live["spec"]["weighted"]["services"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if services.is_empty() {
        return Err(Error::Malformed(format!(
            "TraefikService {apex}: services not found"
        )));
    }
    let primary_entry = services.iter().find(|s| s["name"] == json!(primary));
    Ok(super::primary_share(
        primary_entry.and_then(|e| e.get("weight")),
    ))
}

/// Traefik's routing object: the TraefikService `<svc>`.
pub fn routing_object() -> RoutingObject {
    let build =
        |c: &Canary, routes, live: Option<&Value>, _: &Value| Ok(traefik_service(c, routes, live));
    RoutingObject::new(
        super::resource(API_VERSION, "TraefikService"),
        read_routes,
        build,
    )
    .refusing_zero()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::INITIAL;
    use crate::router::testing::canary;
    use crate::router::testing::split;

    #[test]
    fn the_canary_is_listed_only_while_it_has_weight() {
        let c = canary("traefik", json!({}));
        let s = traefik_service(&c, INITIAL, None);
        assert_eq!(
            s["spec"],
            json!({"weighted": {"services": [
            {"name": "podinfo-primary", "namespace": "test", "port": 9898, "weight": 100}]}})
        );
        assert_eq!(read_routes(&c, &s).unwrap(), INITIAL);
        let s = traefik_service(&c, split(0, 100), None);
        assert_eq!(
            s["spec"]["weighted"]["services"],
            json!([
            {"name": "podinfo-primary", "namespace": "test", "port": 9898},
            {"name": "podinfo-canary", "namespace": "test", "port": 9898, "weight": 100}])
        );
        assert_eq!(read_routes(&c, &s).unwrap(), split(0, 100));
    }
}
