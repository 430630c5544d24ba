//! The OpenAPI v2 document in gnostic's protobuf encoding (`openapi.v2.Document`, what kubectl
//! downloads from `/openapi/v2` for client-side validation), encoded by hand from the JSON
//! document (pure).
//!
//! Only the wire format's varints and length-delimited fields are needed, so a few functions
//! replace a protobuf dependency. Field numbers follow gnostic-models `openapiv2/OpenAPIv2.proto`.
//! Schemas are written so that kube-openapi's `proto.NewOpenAPIData` (kubectl's parser) accepts
//! every definition: one type at most, no `null` type, `$ref`s only to existing definitions and
//! without siblings, arrays with one item schema, maps with a type.
use std::collections::HashSet;

use serde_json::Value;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        bytes(out, field, s.as_bytes());
    }
}

fn boolean(out: &mut Vec<u8>, field: u32, b: bool) {
    if b {
        key(out, field, 0);
        varint(out, 1);
    }
}

fn int(out: &mut Vec<u8>, field: u32, v: i64) {
    key(out, field, 0);
    // int64 on the wire: two's complement as a 64-bit varint.
    varint(out, v as u64);
}

fn double(out: &mut Vec<u8>, field: u32, v: f64) {
    key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

/// `openapi.v2.Any` carrying a value as YAML (JSON is YAML), as gnostic writes it.
fn any(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 2, &serde_json::to_string(v).unwrap_or_default());
    out
}

/// `NamedAny` entries for the `x-` keys of an object.
fn vendor_extensions(out: &mut Vec<u8>, field: u32, m: &serde_json::Map<String, Value>) {
    for (k, v) in m.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Vec::new();
        string(&mut named, 1, k);
        bytes(&mut named, 2, &any(v));
        bytes(out, field, &named);
    }
}

/// One `openapi.v2.Schema`. `defs` holds the definition names `$ref`s may point at.
pub fn schema(s: &Value, defs: &HashSet<String>) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(m) = s.as_object() else {
        return out;
    };
    let reference = m
        .get("$ref")
        .and_then(Value::as_str)
        .map(|r| r.trim_start_matches("#/definitions/"))
        .filter(|r| defs.contains(*r));
    if let Some(r) = reference {
        // kube-openapi refuses a reference with a type or properties beside it.
        string(&mut out, 1, &format!("#/definitions/{r}"));
        string(
            &mut out,
            4,
            m.get("description").and_then(Value::as_str).unwrap_or(""),
        );
        return out;
    }
    let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
    let types: Vec<&str> = match m.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let mut ty = types.into_iter().find(|t| *t != "null").unwrap_or("");
    let items = match m.get("items") {
        Some(Value::Array(a)) => a.first(),
        Some(i @ Value::Object(_)) => Some(i),
        _ => None,
    };
    if ty == "array" && items.is_none() {
        ty = "";
    }
    let additional = m.get("additionalProperties");
    if ty.is_empty() && additional.is_some_and(Value::is_object) {
        ty = "object";
    }
    string(&mut out, 2, text("format"));
    string(&mut out, 3, text("title"));
    string(&mut out, 4, text("description"));
    if let Some(d) = m.get("default") {
        bytes(&mut out, 5, &any(d));
    }
    for (k, field) in [("multipleOf", 6), ("maximum", 7), ("minimum", 9)] {
        if let Some(v) = m.get(k).and_then(Value::as_f64) {
            double(&mut out, field, v);
        }
    }
    for (k, field) in [
        ("exclusiveMaximum", 8),
        ("exclusiveMinimum", 10),
        ("uniqueItems", 16),
        ("readOnly", 27),
    ] {
        boolean(
            &mut out,
            field,
            m.get(k).and_then(Value::as_bool) == Some(true),
        );
    }
    for (k, field) in [
        ("maxLength", 11),
        ("minLength", 12),
        ("maxItems", 14),
        ("minItems", 15),
        ("maxProperties", 17),
        ("minProperties", 18),
    ] {
        if let Some(v) = m.get(k).and_then(Value::as_i64) {
            int(&mut out, field, v);
        }
    }
    string(&mut out, 13, text("pattern"));
    for r in m
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        string(&mut out, 19, r.as_str().unwrap_or_default());
    }
    for e in m
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        bytes(&mut out, 20, &any(e));
    }
    match additional {
        Some(a @ Value::Object(_)) => {
            let mut item = Vec::new();
            bytes(&mut item, 1, &schema(a, defs));
            bytes(&mut out, 21, &item);
        }
        Some(Value::Bool(b)) => {
            let mut item = Vec::new();
            key(&mut item, 2, 0);
            varint(&mut item, u64::from(*b));
            bytes(&mut out, 21, &item);
        }
        _ => {}
    }
    if !ty.is_empty() {
        let mut t = Vec::new();
        string(&mut t, 1, ty);
        bytes(&mut out, 22, &t);
    }
    if let Some(i) = items.filter(|_| ty == "array") {
        let mut item = Vec::new();
        bytes(&mut item, 1, &schema(i, defs));
        bytes(&mut out, 23, &item);
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        let mut p = Vec::new();
        for (name, sub) in props {
            let mut named = Vec::new();
            string(&mut named, 1, name);
            bytes(&mut named, 2, &schema(sub, defs));
            bytes(&mut p, 1, &named);
        }
        bytes(&mut out, 25, &p);
    }
    if let Some(e) = m.get("example") {
        bytes(&mut out, 30, &any(e));
    }
    vendor_extensions(&mut out, 31, m);
    out
}

/// A query parameter (`ParametersItem` → `Parameter` → `NonBodyParameter` →
/// `QueryParameterSubSchema`).
fn query_parameter(name: &str, ty: &str) -> Vec<u8> {
    let mut sub = Vec::new();
    string(&mut sub, 2, "query");
    string(&mut sub, 4, name);
    string(&mut sub, 6, ty);
    let mut non_body = Vec::new();
    bytes(&mut non_body, 3, &sub);
    let mut parameter = Vec::new();
    bytes(&mut parameter, 2, &non_body);
    let mut item = Vec::new();
    bytes(&mut item, 1, &parameter);
    item
}

fn operation(op: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 5, op["operationId"].as_str().unwrap_or_default());
    for p in op["parameters"].as_array().into_iter().flatten() {
        bytes(
            &mut out,
            8,
            &query_parameter(
                p["name"].as_str().unwrap_or_default(),
                p["type"].as_str().unwrap_or("string"),
            ),
        );
    }
    if let Some(m) = op.as_object() {
        vendor_extensions(&mut out, 13, m);
    }
    out
}

/// The whole `openapi.v2.Document` of a JSON v2 document (`swagger`, `info`, `paths` with their
/// operations' query parameters and extensions, `definitions`).
pub fn document(doc: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 1, doc["swagger"].as_str().unwrap_or("2.0"));
    let mut info = Vec::new();
    string(
        &mut info,
        1,
        doc["info"]["title"].as_str().unwrap_or_default(),
    );
    string(
        &mut info,
        2,
        doc["info"]["version"].as_str().unwrap_or_default(),
    );
    bytes(&mut out, 2, &info);
    let mut paths = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        let mut pi = Vec::new();
        for (verb, field) in [
            ("get", 2),
            ("put", 3),
            ("post", 4),
            ("delete", 5),
            ("patch", 8),
        ] {
            if let Some(op) = item.get(verb) {
                bytes(&mut pi, field, &operation(op));
            }
        }
        let mut named = Vec::new();
        string(&mut named, 1, path);
        bytes(&mut named, 2, &pi);
        bytes(&mut paths, 2, &named);
    }
    bytes(&mut out, 8, &paths);
    let definitions = doc["definitions"].as_object();
    let names: HashSet<String> = definitions
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    let mut defs = Vec::new();
    for (name, s) in definitions.into_iter().flatten() {
        let mut named = Vec::new();
        string(&mut named, 1, name);
        bytes(&mut named, 2, &schema(s, &names));
        bytes(&mut defs, 1, &named);
    }
    bytes(&mut out, 9, &defs);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn varints_use_seven_bits_per_byte() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
    }

    #[test]
    fn a_schema_encodes_type_properties_and_extensions() {
        let defs = HashSet::from(["a.B".to_string()]);
        let s =
            json!({"type": ["string", "null"], "x-kubernetes-group-version-kind": [{"kind": "B"}]});
        let out = schema(&s, &defs);
        // TypeItem (field 22) holding "string".
        assert!(out.windows(11).any(|w| w == b"\xb2\x01\x08\x0a\x06string"));
        assert!(String::from_utf8_lossy(&out).contains("x-kubernetes-group-version-kind"));
        let r = schema(
            &json!({"$ref": "#/definitions/a.B", "type": "object"}),
            &defs,
        );
        assert_eq!(r, [&[0x0a, 17][..], b"#/definitions/a.B"].concat());
        let unknown = schema(&json!({"$ref": "#/definitions/missing"}), &defs);
        assert!(unknown.is_empty());
    }
}
