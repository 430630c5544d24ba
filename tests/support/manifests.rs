//! Multi-document YAML manifests as objects keyed by a caller-chosen key (shared by the deploy/
//! and packaging tests).
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The repository root, where deploy/, charts/ and the Dockerfile are.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Parses a multi-document YAML stream, skipping empty documents; each object is keyed by `key`,
/// and a key seen twice fails the test.
pub fn objects(text: &str, key: impl Fn(&Value) -> String) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(doc).expect("YAML document");
        if v.is_null() {
            continue;
        }
        let k = key(&v);
        assert!(out.insert(k.clone(), v).is_none(), "{k} twice");
    }
    out
}

/// A field of an object as text (empty when absent).
pub fn field<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}
