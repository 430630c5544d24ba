//! A Gateway controller stand-in for the Gateway API suites: it writes each HTTPRoute parent's
//! `Accepted` condition for the route's current generation, retrying through API errors.
#![allow(dead_code)]

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The `status.parents` a Gateway writes for `route`: `Accepted` `True` when `accept`, else
/// `False` with reason `NotAllowedByListeners` (a route its listeners do not allow).
pub fn parents(route: &Value, accept: bool) -> Vec<Value> {
    let generation = route["metadata"]["generation"].as_i64().unwrap_or(0);
    let (status, reason, message) = if accept {
        ("True", "Accepted", "")
    } else {
        (
            "False",
            "NotAllowedByListeners",
            "no listener allows routes from this namespace",
        )
    };
    route["spec"]["parentRefs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            json!({"parentRef": p, "controllerName": "example.com/gateway", "conditions": [{
                "type": "Accepted", "status": status, "reason": reason, "message": message,
                "observedGeneration": generation, "lastTransitionTime": "2025-01-01T00:00:00Z"}]})
        })
        .collect()
}

/// Every 100 ms until `stop` is set: writes [`parents`] (per `accept`) to each HTTPRoute whose
/// status differs. Failed reads and writes are retried on the next round.
pub fn spawn(
    api: Api<DynamicObject>,
    accept: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            for r in api.list(&ListParams::default()).await.into_iter().flatten() {
                let v = serde_json::to_value(&r).unwrap_or_default();
                let want = parents(&v, accept.load(Ordering::Acquire));
                if v["status"]["parents"] != json!(want) {
                    let name = v["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let patch = json!({"status": {"parents": want}});
                    let _ = api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
