//! The `nginx` router: the canary Ingress `<ingressRef>-canary`, cloned from `ingressRef` with
//! the apex backend pointed at `<svc>-canary`, steered by NGINX canary annotations.
//!
//! Pure builders compute the canary Ingress Flagger writes; [`routing_object`] applies and reads
//! it (API I/O). The original Ingress is never written.
use serde_json::{Map, Value, json};

use super::Error;
use super::routing::{RoutingObject, ingress_copy};
use crate::api::Canary;
use crate::core::Routes;

/// Flagger's default `-ingress-annotations-prefix`.
pub const DEFAULT_PREFIX: &str = "nginx.ingress.kubernetes.io";

const KUBECTL: &str = "kubectl.kubernetes.io/last-applied-configuration";

pub use super::routing::canary_ingress_name;

/// The A/B annotations (`canary-by-cookie`, `canary-by-header`, `-value`, `-pattern`) from
/// `analysis.match`; the last match wins, as in Flagger.
fn header_annotations(canary: &Canary, prefix: &str) -> Vec<(String, String)> {
    let (mut cookie, mut header, mut value, mut regex) = (None, None, None, None);
    for m in canary.spec.ab_matches() {
        for (k, v) in m.headers.iter().flatten() {
            if k == "cookie" {
                cookie = v.exact.clone();
            } else {
                header = Some(k.clone());
                value = v.exact.clone();
                regex = v.regex.clone();
            }
        }
    }
    [
        ("canary-by-cookie", cookie),
        ("canary-by-header", header),
        ("canary-by-header-value", value),
        ("canary-by-header-pattern", regex),
    ]
    .into_iter()
    .filter_map(|(k, v)| {
        v.filter(|v| !v.is_empty())
            .map(|v| (format!("{prefix}/{k}"), v))
    })
    .collect()
}

/// The canary Ingress for a split, from the live original Ingress.
pub fn canary_ingress(
    canary: &Canary,
    prefix: &str,
    original: &Value,
    routes: Routes,
    live: Option<&Value>,
) -> Result<Value, Error> {
    let apex = canary.spec.service_name();
    let original_name = original["metadata"]["name"].as_str().unwrap_or_default();
    let mut spec = original["spec"].clone();
    let mut found = false;
    for rule in spec["rules"].as_array_mut().into_iter().flatten() {
        for path in rule["http"]["paths"].as_array_mut().into_iter().flatten() {
            if path["backend"]["service"]["name"] == json!(apex) {
                path["backend"]["service"]["name"] = json!(format!("{apex}-canary"));
                found = true;
            }
        }
    }
    if !found {
        return Err(Error::Invalid(format!(
            "backend {apex} not found in ingress {original_name}"
        )));
    }
    let canary_key = format!("{prefix}/canary");
    let mut annotations: Map<String, Value> = original["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| {
            !k.contains(&canary_key)
                && !k.contains(KUBECTL)
                && !k.contains(crate::core::TOOLKIT_MARKER)
        })
        .collect();
    for (k, v) in super::toolkit_annotations() {
        annotations.insert(k, json!(v));
    }
    annotations.insert(canary_key.clone(), json!("true"));
    // The weight stays "0" under A/B, where the header or cookie decides (Flagger leaves it so).
    let weight = if super::is_ab(canary) {
        0
    } else {
        routes.canary
    };
    annotations.insert(format!("{prefix}/canary-weight"), json!(weight.to_string()));
    if super::is_ab(canary) && routes.canary > 0 {
        for (k, v) in header_annotations(canary, prefix) {
            annotations.insert(k, json!(v));
        }
    }
    Ok(ingress_copy(canary, original, annotations, spec, live))
}

/// Reads the split from the canary Ingress annotations.
pub fn read_routes(canary: &Canary, prefix: &str, live: &Value) -> Result<Routes, Error> {
    let a = &live["metadata"]["annotations"];
    if super::is_ab(canary)
        && (a.get(format!("{prefix}/canary-by-cookie")).is_some()
            || a.get(format!("{prefix}/canary-by-header")).is_some())
    {
        return Ok(Routes::split(0, 100));
    }
    let weight = match a
        .get(format!("{prefix}/canary-weight"))
        .and_then(Value::as_str)
    {
        Some(w) => w.trim().parse::<i32>().map_err(|e| {
            Error::Malformed(format!(
                "canary-weight {w:?} of ingress {}: {e}",
                canary_ingress_name(canary)
            ))
        })?,
        None => 0,
    };
    Ok(Routes::split(100 - weight, weight))
}

/// NGINX's routing object: the canary Ingress cloned from `ingressRef`, with its annotations
/// under `prefix` (`--ingress-annotations-prefix`).
pub fn routing_object(prefix: String) -> RoutingObject {
    let read_prefix = prefix.clone();
    let read = move |c: &Canary, live: &Value| read_routes(c, &read_prefix, live);
    let build = move |c: &Canary, routes, live: Option<&Value>, original: &Value| {
        canary_ingress(c, &prefix, original, routes, live)
    };
    RoutingObject::new(
        super::resource("networking.k8s.io/v1", "Ingress"),
        read,
        build,
    )
    .copy_of_ingress()
}

#[cfg(test)]
#[path = "nginx_tests.rs"]
mod tests;
