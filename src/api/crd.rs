//! Generation of the three CustomResourceDefinitions from the Rust types; pure.
//!
//! The derive produces the structural schema; this module adds what the derive cannot express on a
//! shared type (per-reference kind enums) and the CEL rules that make the API server reject what
//! Flagger only notices at run time.
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

use super::{AlertProvider, Canary, MetricTemplate};

/// A CEL rule and its message, attached at a JSON pointer inside the version's schema.
struct Rule {
    at: &'static str,
    rule: &'static str,
    message: &'static str,
}

/// CEL rules on the Canary schema. Each mirrors a check in [`super::validation`]; keep them simple
/// so that a real API server's cost estimator accepts them.
const CANARY_RULES: &[Rule] = &[
    Rule {
        at: "/properties/spec/properties/analysis/properties/sessionAffinity",
        rule: "!has(self.primaryCookieName) || self.cookieName != self.primaryCookieName",
        message: "cookieName and primaryCookieName must differ",
    },
    Rule {
        at: "/properties/spec/properties/analysis",
        rule: "!has(self.stepWeight) || !has(self.maxWeight) || self.stepWeight <= self.maxWeight",
        message: "stepWeight must not exceed maxWeight",
    },
    Rule {
        at: "/properties/spec/properties/analysis/properties/metrics/items/properties/thresholdRange",
        rule: "!has(self.min) || !has(self.max) || self.min <= self.max",
        message: "thresholdRange.min must not exceed thresholdRange.max",
    },
    Rule {
        at: "/properties/spec",
        rule: "!has(self.provider) || !self.provider.startsWith('gatewayapi') || (has(self.service) && has(self.service.gatewayRefs) && size(self.service.gatewayRefs) > 0)",
        message: "Gateway API providers need service.gatewayRefs",
    },
    Rule {
        at: "/properties/spec",
        rule: "!has(self.provider) || !(self.provider == 'nginx' || self.provider == 'skipper') || has(self.ingressRef)",
        message: "the nginx and skipper providers need ingressRef",
    },
];

/// Kind enums for the references that share the `TargetRef` type.
const REF_KINDS: &[(&str, &[&str])] = &[
    // StatefulSet is a Serin extension (docs/differences-from-flagger.md).
    (
        "targetRef",
        &["DaemonSet", "Deployment", "Service", "StatefulSet"],
    ),
    ("ingressRef", &["Ingress"]),
    ("routeRef", &["ApisixRoute"]),
];

/// Status structs the controller stops applying when they no longer hold (a wait that ends).
/// Server-side apply then removes their fields one by one and stores the emptied struct as
/// `null` (kubernetes/kubernetes#103011), which a real API server accepts only for a `nullable`
/// field: without it every later status write of the canary fails with 422.
const CANARY_NULLABLE: &[&str] = &[
    "/properties/status/properties/waitingFor",
    "/properties/status/properties/lastRequest",
];

/// The Canary CRD.
pub fn canary() -> CustomResourceDefinition {
    finish(Canary::crd(), |schema| {
        for ptr in CANARY_NULLABLE {
            if let Some(obj) = schema.pointer_mut(ptr).and_then(Value::as_object_mut) {
                obj.insert("nullable".into(), Value::Bool(true));
            }
        }
        for (ptr, default) in CANARY_DEFAULTS {
            let parsed: Value = serde_json::from_str(default).unwrap_or(Value::Null);
            if let Some(obj) = schema.pointer_mut(ptr).and_then(Value::as_object_mut) {
                obj.insert("default".into(), parsed);
            }
        }
        for (field, kinds) in REF_KINDS {
            let ptr = format!("/properties/spec/properties/{field}/properties/kind");
            if let Some(kind) = schema.pointer_mut(&ptr).and_then(Value::as_object_mut) {
                kind.insert("enum".into(), json!(kinds));
            }
        }
        for r in CANARY_RULES {
            if let Some(obj) = schema.pointer_mut(r.at).and_then(Value::as_object_mut) {
                let rules = obj
                    .entry("x-kubernetes-validations")
                    .or_insert_with(|| json!([]));
                if let Some(list) = rules.as_array_mut() {
                    list.push(json!({"rule": r.rule, "message": r.message}));
                }
            }
        }
    })
}

/// The MetricTemplate CRD.
pub fn metric_template() -> CustomResourceDefinition {
    finish(MetricTemplate::crd(), |_| {})
}

/// The AlertProvider CRD.
pub fn alert_provider() -> CustomResourceDefinition {
    finish(AlertProvider::crd(), |_| {})
}

/// All three CRDs, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![canary(), metric_template(), alert_provider()]
}

/// The CRDs as one multi-document YAML stream, exactly as committed in `crds/`.
pub fn to_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::from(
        "# Generated by `serin crds` from the Rust types in src/api; do not edit by hand.\n",
    );
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}

/// Schema defaults Flagger declares (the API server fills them in before validation).
const CANARY_DEFAULTS: &[(&str, &str)] = &[
    (
        "/properties/spec/properties/analysis/properties/sessionAffinity/properties/maxAge",
        "86400",
    ),
    (
        "/properties/spec/properties/service/properties/gatewayRefs/items/properties/group",
        "\"gateway.networking.k8s.io\"",
    ),
    (
        "/properties/spec/properties/service/properties/gatewayRefs/items/properties/kind",
        "\"Gateway\"",
    ),
    (
        "/properties/spec/properties/service/properties/mirror/items/properties/backendRef/properties/group",
        "\"\"",
    ),
    (
        "/properties/spec/properties/service/properties/mirror/items/properties/backendRef/properties/kind",
        "\"Service\"",
    ),
];

/// Applies `edit` to the (single) version's schema after stripping what the derive adds but
/// Flagger's schema does not have: `nullable` (an explicit `null` is then pruned by the API server
/// rather than stored) and the `default`s implied by `#[serde(default)]` (they would let the API
/// server fill in required fields such as `name: ""` and defeat `required`). `listKind` is set
/// explicitly, as in Flagger's CRDs.
fn finish(
    crd: CustomResourceDefinition,
    edit: impl FnOnce(&mut Value),
) -> CustomResourceDefinition {
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    if let Some(names) = value
        .pointer_mut("/spec/names")
        .and_then(Value::as_object_mut)
    {
        let list_kind = names
            .get("kind")
            .and_then(Value::as_str)
            .map(|k| format!("{k}List"));
        if let Some(list_kind) = list_kind {
            names.insert("listKind".into(), Value::String(list_kind));
        }
    }
    if let Some(schema) = value.pointer_mut("/spec/versions/0/schema/openAPIV3Schema") {
        strip_derived(schema);
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert("apiVersion".into(), json!({"type": "string"}));
            props.insert("kind".into(), json!({"type": "string"}));
            props.insert("metadata".into(), json!({"type": "object"}));
        }
        edit(schema);
    }
    serde_json::from_value(value).unwrap_or(crd)
}

/// Integer formats schemars derives from Rust types that no Kubernetes client knows; the kube
/// formats for integers are `int32` and `int64` (unknown ones are ignored by the API server, but
/// OpenAPI tooling and `kubectl explain` show them). Unsigned ones keep their `minimum: 0`.
const RUST_INT_FORMATS: &[(&str, Option<&str>)] = &[
    ("int8", Some("int32")),
    ("int16", Some("int32")),
    ("uint8", None),
    ("uint16", None),
    ("uint32", None),
    ("uint64", None),
    ("uint", None),
    ("int", None),
];

/// Removes what the derive adds but a structural schema for every supported Kubernetes version
/// should not carry: `nullable` and `default` on every node, `null` inside `enum` lists (schemars
/// adds it for `Option<Enum>`; kubectl's client-side validation against a 1.24 server rejects the
/// whole CRD with `unknown object type "nil" in ...enum[12]`), and Rust-only integer formats. Keys
/// inside a `properties` map are field names, not keywords, so they are never removed.
fn strip_derived(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("nullable");
            map.remove("default");
            if let Some(Value::Array(values)) = map.get_mut("enum") {
                values.retain(|e| !e.is_null());
            }
            let format = map.get("format").and_then(Value::as_str).map(str::to_owned);
            if let Some((_, to)) = format
                .as_deref()
                .and_then(|f| RUST_INT_FORMATS.iter().find(|(from, _)| *from == f))
            {
                match to {
                    Some(to) => {
                        map.insert("format".into(), Value::String((*to).to_owned()));
                    }
                    None => {
                        map.remove("format");
                    }
                }
            }
            for (key, child) in map.iter_mut() {
                if key == "properties" {
                    if let Some(fields) = child.as_object_mut() {
                        fields.values_mut().for_each(strip_derived);
                    }
                } else {
                    strip_derived(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_derived),
        _ => {}
    }
}

/// The CEL rules (`x-kubernetes-validations`) anywhere in a CRD's schema, as (message, rule).
pub fn cel_rules(crd: &CustomResourceDefinition) -> Vec<(String, String)> {
    fn walk(v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                for r in m
                    .get("x-kubernetes-validations")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    out.push((
                        r["message"].as_str().unwrap_or_default().to_string(),
                        r["rule"].as_str().unwrap_or_default().to_string(),
                    ));
                }
                m.values().for_each(|c| walk(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&schema_of(crd), &mut out);
    out
}

/// The openAPIV3Schema of a CRD's first version, as JSON.
pub fn schema_of(crd: &CustomResourceDefinition) -> Value {
    crd.spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null)
}
