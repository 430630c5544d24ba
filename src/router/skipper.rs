//! The `skipper` router: the Ingress `<ingressRef>-canary`, cloned from `ingressRef` with both
//! `<svc>-primary` and `<svc>-canary` backends, weighted by `zalando.org/backend-weights`.
//! Pure builders plus [`routing_object`] (API I/O); finalize deletes the canary Ingress.
use async_trait::async_trait;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

use super::Error;
use super::routing::{Lifecycle, RoutingObject, canary_ingress_name, ingress_copy};
use crate::api::Canary;
use crate::core::Routes;

const PREDICATE: &str = "zalando.org/skipper-predicate";
const BACKEND_WEIGHTS: &str = "zalando.org/backend-weights";
const WEIGHT: &str = "Weight(100)";
const DISABLE: &str = "False()";

/// Puts `insert` first among the predicates, dropping our own earlier ones (Flagger's
/// `insertPredicate`).
pub fn insert_predicate(raw: &str, insert: &str) -> String {
    let mut out = vec![insert.to_string()];
    for p in raw.split("&&").map(str::trim) {
        if !p.is_empty() && p != WEIGHT && p != DISABLE {
            out.push(p.to_string());
        }
    }
    out.join(" && ")
}

/// The canary Ingress for a split, from the live original Ingress.
pub fn canary_ingress(
    canary: &Canary,
    original: &Value,
    routes: Routes,
    live: Option<&Value>,
) -> Result<Value, Error> {
    let (apex, primary, canary_svc) = super::service_names(canary);
    let mut spec = original["spec"].clone();
    let mut found = false;
    for rule in spec["rules"].as_array_mut().into_iter().flatten() {
        if let Some(paths) = rule["http"]["paths"].as_array_mut() {
            let mut extra = Vec::new();
            for path in paths.iter_mut() {
                if path["backend"]["service"]["name"] == json!(apex) {
                    path["backend"]["service"]["name"] = json!(primary);
                    let mut c = path.clone();
                    c["backend"]["service"]["name"] = json!(canary_svc);
                    extra.push(c);
                    found = true;
                }
            }
            paths.extend(extra);
        }
    }
    if !found {
        let name = original["metadata"]["name"].as_str().unwrap_or_default();
        return Err(Error::Invalid(format!(
            "backend {apex} not found in ingress {name}"
        )));
    }
    let mut annotations: Map<String, Value> = original["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (k, v) in super::toolkit_annotations() {
        annotations.insert(k, json!(v));
    }
    let weights: BTreeMap<&str, i32> = [
        (primary.as_str(), routes.primary),
        (canary_svc.as_str(), routes.canary),
    ]
    .into();
    annotations.insert(
        BACKEND_WEIGHTS.into(),
        json!(serde_json::to_string(&weights).unwrap_or_default()),
    );
    let raw = annotations
        .get(PREDICATE)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let predicate = insert_predicate(&raw, if routes.canary == 0 { DISABLE } else { WEIGHT });
    annotations.insert(PREDICATE.into(), json!(predicate));
    Ok(ingress_copy(canary, original, annotations, spec, live))
}

/// Reads the split from `zalando.org/backend-weights`.
pub fn read_routes(canary: &Canary, live: &Value) -> Result<Routes, Error> {
    let (_, primary, canary_svc) = super::service_names(canary);
    let name = canary_ingress_name(canary);
    let raw = live["metadata"]["annotations"][BACKEND_WEIGHTS]
        .as_str()
        .ok_or_else(|| {
            Error::Malformed(format!("ingress {name}: no {BACKEND_WEIGHTS} annotation"))
        })?;
    let weights: BTreeMap<String, f64> = serde_json::from_str(raw)
        .map_err(|e| Error::Malformed(format!("ingress {name}: {BACKEND_WEIGHTS}: {e}")))?;
    let get = |svc: &str| {
        weights
            .get(svc)
            .map(|w| w.round() as i32)
            .ok_or_else(|| Error::Malformed(format!("ingress {name}: no weight for {svc}")))
    };
    Ok(Routes::split(get(&primary)?, get(&canary_svc)?))
}

/// Skipper's routing object: the canary Ingress cloned from `ingressRef`, deleted on
/// finalisation.
pub fn routing_object() -> RoutingObject {
    let build = |c: &Canary, routes, live: Option<&Value>, original: &Value| {
        canary_ingress(c, original, routes, live)
    };
    RoutingObject::new(
        super::resource("networking.k8s.io/v1", "Ingress"),
        read_routes,
        build,
    )
    .copy_of_ingress()
    .with(DeleteCopy)
}

/// Deletes the canary Ingress on finalisation.
struct DeleteCopy;

#[async_trait]
impl Lifecycle for DeleteCopy {
    async fn finalize(&self, client: &kube::Client, canary: &Canary) -> Result<(), Error> {
        let ns = canary.metadata.namespace.as_deref();
        let ar = super::resource("networking.k8s.io/v1", "Ingress");
        super::delete(client, ns, &ar, &canary_ingress_name(canary)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::INITIAL;
    use crate::router::testing::canary;
    use crate::router::testing::split;

    fn original() -> Value {
        json!({"metadata": {"name": "podinfo", "annotations": {PREDICATE: "Host(/^app/)"}},
          "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "podinfo", "port": {"number": 80}}}}]}}]}})
    }

    fn skipper() -> Canary {
        let mut c = canary("skipper", json!({}));
        c.spec.ingress_ref = Some(crate::api::canary::TargetRef {
            api_version: "networking.k8s.io/v1".into(),
            kind: "Ingress".into(),
            name: "podinfo".into(),
        });
        c
    }

    #[test]
    fn both_backends_are_weighted_and_a_zero_canary_disables_the_route() {
        let c = skipper();
        let ing = canary_ingress(&c, &original(), split(60, 40), None).unwrap();
        let a = &ing["metadata"]["annotations"];
        assert_eq!(
            a[BACKEND_WEIGHTS],
            r#"{"podinfo-canary":40,"podinfo-primary":60}"#
        );
        assert_eq!(a[PREDICATE], "Weight(100) && Host(/^app/)");
        let names: Vec<&Value> = ing["spec"]["rules"][0]["http"]["paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &p["backend"]["service"]["name"])
            .collect();
        assert_eq!(
            names,
            vec![&json!("podinfo-primary"), &json!("podinfo-canary")]
        );
        assert_eq!(read_routes(&c, &ing).unwrap(), split(60, 40));
        let off = canary_ingress(&c, &original(), INITIAL, None).unwrap();
        assert_eq!(
            off["metadata"]["annotations"][PREDICATE],
            "False() && Host(/^app/)"
        );
    }

    #[test]
    fn insert_predicate_replaces_our_own_predicates_only() {
        assert_eq!(
            insert_predicate("False() && Path(\"/\")", WEIGHT),
            "Weight(100) && Path(\"/\")"
        );
        assert_eq!(insert_predicate("", DISABLE), "False()");
    }
}
