//! Patch types the API server accepts: JSON merge (RFC 7386), JSON patch (RFC 6902) and
//! strategic merge patch with the built-in merge keys and directives (pure).
use serde_json::{Map, Value};

use super::fields::{ListType, Schema};

/// The `Content-Type` of a PATCH request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The patch type of a content type, if it is one.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().map(str::trim) {
            Some("application/merge-patch+json") => Some(PatchType::Merge),
            Some("application/json-patch+json") => Some(PatchType::Json),
            Some("application/strategic-merge-patch+json") => Some(PatchType::Strategic),
            Some("application/apply-patch+yaml") | Some("application/apply-patch+cbor") => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// Applies an RFC 7386 merge patch.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let mut out = target.clone();
    json_patch::merge(&mut out, patch);
    out
}

/// Applies an RFC 6902 JSON patch, `test` included; the error says which operation failed.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, String> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| e.to_string())?;
    let mut out = target.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Applies a strategic merge patch to `original` using the list merge keys of `schema`.
pub fn strategic_merge(original: &Value, patch: &Value, schema: &Schema) -> Result<Value, String> {
    let mut path = vec![];
    match smp_value(Some(original), patch, schema, &mut path)? {
        Some(v) => Ok(v),
        None => Ok(Value::Object(Map::new())),
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Merges `patch` into `original`; `None` means the value is deleted.
fn smp_value(
    original: Option<&Value>,
    patch: &Value,
    schema: &Schema,
    path: &mut Vec<String>,
) -> Result<Option<Value>, String> {
    let Value::Object(pm) = patch else {
        return Ok(Some(patch.clone()));
    };
    match pm.get("$patch").and_then(Value::as_str) {
        Some("replace") => return Ok(Some(strip_directives(patch))),
        Some("delete") => return Ok(None),
        Some(other) => return Err(format!("Unknown patch type: {other}")),
        None => {}
    }
    let mut out = match original {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    let mut orders: Vec<(String, Vec<Value>)> = vec![];
    for (k, pv) in pm {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            orders.push((
                field.to_string(),
                pv.as_array().cloned().unwrap_or_default(),
            ));
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = pv.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = out.get_mut(field) {
                items.retain(|i| !remove.contains(i));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            out.remove(k);
            continue;
        }
        path.push(k.clone());
        let merged = match pv {
            Value::Array(items) => Some(smp_list(out.get(k), items, schema, path)?),
            Value::Object(_) => {
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                if schema.atomic_map(&p) {
                    Some(strip_directives(pv))
                } else {
                    smp_value(out.get(k), pv, schema, path)?
                }
            }
            _ => Some(pv.clone()),
        };
        path.pop();
        match merged {
            Some(v) => {
                out.insert(k.clone(), v);
            }
            None => {
                out.remove(k);
            }
        }
    }
    for (field, order) in orders {
        path.push(field.clone());
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let lt = schema.list_type(&p);
        path.pop();
        if let Some(Value::Array(items)) = out.get_mut(&field) {
            reorder(items, &order, &lt);
        }
    }
    if let Some(Value::Array(retain)) = pm.get("$retainKeys") {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(Some(Value::Object(out)))
}

fn merge_key(lt: &ListType) -> Option<&str> {
    match lt {
        ListType::Map(keys) => keys.first().map(String::as_str),
        _ => None,
    }
}

fn reorder(items: &mut Vec<Value>, order: &[Value], lt: &ListType) {
    let key_of = |v: &Value| -> Value {
        match merge_key(lt) {
            Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let mut sorted = Vec::with_capacity(items.len());
    for o in order {
        let want = key_of(o);
        if let Some(pos) = items.iter().position(|i| key_of(i) == want) {
            sorted.push(items.remove(pos));
        }
    }
    sorted.append(items);
    *items = sorted;
}

fn smp_list(
    original: Option<&Value>,
    patch: &[Value],
    schema: &Schema,
    path: &mut Vec<String>,
) -> Result<Value, String> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let lt = schema.list_type(&p);
    let orig: Vec<Value> = original
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match &lt {
        ListType::Atomic => Ok(strip_directives(&Value::Array(patch.to_vec()))),
        ListType::Set => {
            let mut out = orig;
            for i in patch {
                if !out.contains(i) {
                    out.push(i.clone());
                }
            }
            Ok(Value::Array(out))
        }
        ListType::Map(_) => {
            let Some(key) = merge_key(&lt) else {
                return Ok(Value::Array(patch.to_vec()));
            };
            if patch
                .iter()
                .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
            {
                let kept: Vec<Value> = patch
                    .iter()
                    .filter(|e| e.get("$patch").is_none())
                    .map(strip_directives)
                    .collect();
                return Ok(Value::Array(kept));
            }
            let mut out = orig;
            path.push("[]".into());
            for pe in patch {
                let Some(kv) = pe.get(key) else {
                    path.pop();
                    return Err(format!(
                        "map: {pe} does not contain declared merge key: {key}"
                    ));
                };
                let pos = out.iter().position(|o| o.get(key) == Some(kv));
                if pe.get("$patch").and_then(Value::as_str) == Some("delete") {
                    out.retain(|o| o.get(key) != Some(kv));
                    continue;
                }
                match pos {
                    Some(pos) => {
                        if let Some(v) = smp_value(Some(&out[pos]), pe, schema, path)? {
                            out[pos] = v;
                        }
                    }
                    None => out.push(strip_directives(pe)),
                }
            }
            path.pop();
            Ok(Value::Array(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy() -> Schema {
        Schema::Builtin("deployments".into())
    }

    #[test]
    fn merge_patch_null_removes_a_field() {
        let out = merge_patch(
            &json!({"a": 1, "b": {"c": 2, "d": 3}}),
            &json!({"b": {"c": null}, "e": 4}),
        );
        assert_eq!(out, json!({"a": 1, "b": {"d": 3}, "e": 4}));
    }

    #[test]
    fn json_patch_test_failure_is_an_error() {
        let doc = json!({"spec": {"replicas": 1}});
        let ok = json_patch(
            &doc,
            &json!([{"op": "test", "path": "/spec/replicas", "value": 1},
                                          {"op": "replace", "path": "/spec/replicas", "value": 3}]),
        );
        assert_eq!(ok.expect("applies")["spec"]["replicas"], 3);
        assert!(
            json_patch(
                &doc,
                &json!([{"op": "test", "path": "/spec/replicas", "value": 2}])
            )
            .is_err()
        );
    }

    #[test]
    fn strategic_patch_merges_containers_by_name() {
        let orig = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "a:1"}, {"name": "side", "image": "s:1"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "a:2"}]}}}});
        let out = strategic_merge(&orig, &patch, &deploy()).expect("merges");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "app", "image": "a:2"}, {"name": "side", "image": "s:1"}])
        );
    }

    #[test]
    fn strategic_patch_deletes_an_element_with_the_directive() {
        let orig = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}});
        let out = strategic_merge(&orig, &patch, &Schema::Builtin("pods".into())).expect("merges");
        assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
    }

    #[test]
    fn strategic_patch_replaces_lists_without_merge_key() {
        let orig = json!({"spec": {"containers": [{"name": "a", "args": ["1", "2"]}]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "args": ["3"]}]}});
        let out = strategic_merge(&orig, &patch, &Schema::Builtin("pods".into())).expect("merges");
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["3"]));
    }

    #[test]
    fn strategic_patch_appends_finalizers_and_deletes_from_primitive_lists() {
        let orig = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = strategic_merge(
            &orig,
            &json!({"metadata": {"finalizers": ["c", "a"]}}),
            &deploy(),
        )
        .expect("merges");
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = strategic_merge(
            &orig,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
            &deploy(),
        )
        .expect("merges");
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn strategic_patch_retain_keys_and_replace_directives() {
        let orig = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
        let out = strategic_merge(&orig, &patch, &deploy()).expect("merges");
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let out = strategic_merge(
            &orig,
            &json!({"spec": {"$patch": "replace", "paused": true}}),
            &deploy(),
        )
        .expect("merges");
        assert_eq!(out["spec"], json!({"paused": true}));
    }

    #[test]
    fn strategic_patch_keeps_the_element_order_asked_for() {
        let orig = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch =
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}});
        let out = strategic_merge(&orig, &patch, &Schema::Builtin("pods".into())).expect("merges");
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "b"}, {"name": "a"}])
        );
    }
}
