//! Canary fixtures for router tests; pure.
use serde_json::{Value, json};

use crate::api::Canary;

/// A Canary `podinfo` in `test` with `service.port: 9898` and `extra` merged into its spec
/// (one level deep for `service` and `analysis`).
pub fn canary(provider: &str, extra: Value) -> Canary {
    let mut c = json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test", "uid": "uid-1"},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {"interval": "15s", "threshold": 2, "stepWeight": 10}
        }
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        match (c["spec"].get_mut(k), v) {
            (Some(Value::Object(dst)), Value::Object(src)) if k == "service" || k == "analysis" => {
                for (k2, v2) in src {
                    if v2.is_null() {
                        dst.remove(k2);
                    } else {
                        dst.insert(k2.clone(), v2.clone());
                    }
                }
            }
            _ => c["spec"][k] = v.clone(),
        }
    }
    serde_json::from_value(c).expect("fixture canary parses")
}

/// `canary` with a status.
pub fn with_status(mut c: Canary, status: Value) -> Canary {
    c.status = Some(serde_json::from_value(status).expect("fixture status parses"));
    c
}
