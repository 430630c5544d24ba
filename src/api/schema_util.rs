//! Small JSON-schema building blocks shared by the CRD types; pure.
use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

/// An object kept verbatim (`x-kubernetes-preserve-unknown-fields`), for open Istio-shaped fields.
pub fn preserved_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A `oneOf` that allows none or exactly one of `keys` (Flagger's StringMatch constraint).
pub fn at_most_one_of(keys: &[&str]) -> Value {
    let any: Vec<Value> = keys.iter().map(|k| json!({"required": [k]})).collect();
    let mut one_of = vec![json!({"not": {"anyOf": any.clone()}})];
    one_of.extend(any);
    Value::Array(one_of)
}
