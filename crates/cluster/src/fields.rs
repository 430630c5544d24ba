//! Field paths and sets: list merge keys of built-in and CRD schemas, `managedFields` (FieldsV1)
//! sets, diffs and the structural merge that server-side apply uses (pure).
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How a list merges: replaced whole, as a set of scalars, or by key fields.
#[derive(Debug, Clone, PartialEq)]
pub enum ListType {
    /// Replaced as a whole (the default).
    Atomic,
    /// A set of scalars (`x-kubernetes-list-type: set`, or `patchStrategy: merge` on scalars).
    Set,
    /// Elements identified by key fields (`x-kubernetes-list-map-keys`, or `patchMergeKey`).
    Map(Vec<String>),
}

/// What a path in an object means: the list and map types of the kind's schema.
#[derive(Debug, Clone)]
pub enum Schema {
    /// A built-in kind, by its plural.
    Builtin(String),
    /// A custom resource with its structural schema (if any).
    Custom(Option<Arc<Value>>),
}

fn keys(k: &[&str]) -> ListType {
    ListType::Map(k.iter().map(|s| s.to_string()).collect())
}

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// List types of the built-in kinds, from their `patchMergeKey`/`listType` markers. `path` holds
/// field names, with `[]` for a list element.
fn builtin_list_type(plural: &str, path: &[&str]) -> ListType {
    let Some(last) = path.last() else {
        return ListType::Atomic;
    };
    let parent = path.len().checked_sub(3).and_then(|i| path.get(i));
    match *last {
        "finalizers" if path.len() == 2 && path[0] == "metadata" => ListType::Set,
        "ownerReferences" => keys(&["uid"]),
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "imagePullSecrets"
        | "env"
        | "volumes"
        | "resourceClaims"
        | "schedulingGates" => keys(&["name"]),
        "volumeMounts" => keys(&["mountPath"]),
        "volumeDevices" => keys(&["devicePath"]),
        "hostAliases" => keys(&["ip"]),
        "conditions" => keys(&["type"]),
        "topologySpreadConstraints" => keys(&["topologyKey", "whenUnsatisfiable"]),
        "ports" if parent.is_some_and(|p| CONTAINER_LISTS.contains(p)) => {
            keys(&["containerPort", "protocol"])
        }
        "ports" if plural == "services" && path == ["spec", "ports"] => keys(&["port", "protocol"]),
        _ => ListType::Atomic,
    }
}

fn is_metadata_path(path: &[&str]) -> bool {
    path.first() == Some(&"metadata")
}

impl Schema {
    /// The schema node of a custom resource at `path`, following `properties`, `additionalProperties` and `items`.
    fn node<'a>(root: &'a Value, path: &[&str]) -> Option<&'a Value> {
        let mut cur = root;
        for seg in path {
            cur = if *seg == "[]" {
                cur.get("items")?
            } else if let Some(p) = cur.get("properties").and_then(|p| p.get(*seg)) {
                p
            } else {
                cur.get("additionalProperties").filter(|a| a.is_object())?
            };
        }
        Some(cur)
    }

    /// How the list at `path` merges.
    pub fn list_type(&self, path: &[&str]) -> ListType {
        match self {
            Schema::Builtin(plural) => builtin_list_type(plural, path),
            Schema::Custom(_) if is_metadata_path(path) => builtin_list_type("", path),
            Schema::Custom(None) => ListType::Atomic,
            Schema::Custom(Some(root)) => match Self::node(root, path) {
                Some(n) => match n.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("set") => ListType::Set,
                    Some("map") => ListType::Map(
                        n["x-kubernetes-list-map-keys"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|k| k.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    ),
                    _ => ListType::Atomic,
                },
                None => ListType::Atomic,
            },
        }
    }

    /// Whether the map at `path` is replaced whole (`x-kubernetes-map-type: atomic`, label selectors).
    pub fn atomic_map(&self, path: &[&str]) -> bool {
        match self {
            Schema::Builtin(_) => path.last() == Some(&"selector"),
            Schema::Custom(_) if is_metadata_path(path) => false,
            Schema::Custom(None) => false,
            Schema::Custom(Some(root)) => Self::node(root, path).is_some_and(|n| {
                n.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
            }),
        }
    }

    /// Whether the map at `path` holds free-form keys, so that owning it (`.`) is recorded.
    fn granular_map(&self, path: &[&str]) -> bool {
        matches!(
            path.last(),
            Some(
                &("labels" | "annotations" | "data" | "binaryData" | "stringData" | "nodeSelector")
            )
        )
    }
}

/// A set of field paths in FieldsV1 form: children keyed `f:name`, `k:{...}` or `v:value`;
/// `member` says the path itself is in the set (`.` when it also has children).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSet {
    /// The path to this node is itself a member.
    pub member: bool,
    /// Child path elements.
    pub children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    /// Whether nothing is in the set.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// The FieldsV1 JSON of the set.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, c) in &self.children {
            if !c.is_empty() {
                m.insert(k.clone(), c.to_fields_v1());
            }
        }
        Value::Object(m)
    }

    /// Parses FieldsV1 JSON; anything malformed reads as an empty set.
    pub fn from_fields_v1(v: &Value) -> FieldSet {
        let mut fs = FieldSet::default();
        if let Some(m) = v.as_object() {
            if m.is_empty() {
                fs.member = true;
            }
            for (k, c) in m {
                if k == "." {
                    fs.member = true;
                } else {
                    fs.children.insert(k.clone(), FieldSet::from_fields_v1(c));
                }
            }
        }
        fs
    }

    /// Adds every path of `other`.
    pub fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (k, c) in &other.children {
            self.children.entry(k.clone()).or_default().union(c);
        }
    }

    /// Removes every member path of `other`.
    pub fn subtract(&mut self, other: &FieldSet) {
        if other.member {
            self.member = false;
        }
        for (k, c) in &other.children {
            if let Some(mine) = self.children.get_mut(k) {
                mine.subtract(c);
            }
        }
        self.children.retain(|_, c| !c.is_empty());
    }

    /// The paths in both sets.
    pub fn intersect(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (k, c) in &self.children {
            if let Some(o) = other.children.get(k) {
                let i = c.intersect(o);
                if !i.is_empty() {
                    out.children.insert(k.clone(), i);
                }
            }
        }
        out
    }

    /// Member paths, each as a list of path elements.
    pub fn members(&self) -> Vec<Vec<String>> {
        let mut out = vec![];
        self.walk(&mut vec![], &mut out);
        out
    }

    fn walk(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (k, c) in &self.children {
            prefix.push(k.clone());
            c.walk(prefix, out);
            prefix.pop();
        }
    }

    /// Whether `path` or anything below it is in the set.
    pub fn touches(&self, path: &[String]) -> bool {
        let mut cur = self;
        for p in path {
            match cur.children.get(p) {
                Some(c) => cur = c,
                None => return false,
            }
        }
        !cur.is_empty()
    }

    fn child(&mut self, k: String) -> &mut FieldSet {
        self.children.entry(k).or_default()
    }
}

/// Renders a path like the real server's conflict messages: `.spec.containers[name="app"].image`.
pub fn render_path(path: &[String]) -> String {
    let mut s = String::new();
    for p in path {
        if let Some(f) = p.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = p.strip_prefix("k:") {
            let kv: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            s.push_str(&format!("[{}]", kv.join(",")));
        } else if let Some(v) = p.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// The `k:` element of a keyed list item; a missing `protocol` key reads as its default, `TCP`.
fn element_key(item: &Value, keys: &[String]) -> Option<String> {
    let mut parts = vec![];
    for k in keys {
        let v = match item.get(k) {
            Some(v) if !v.is_null() => v.clone(),
            _ if k == "protocol" => Value::String("TCP".into()),
            _ => return None,
        };
        parts.push(format!("{}:{}", Value::String(k.clone()), v));
    }
    Some(format!("k:{{{}}}", parts.join(",")))
}

fn value_key(item: &Value) -> String {
    format!("v:{item}")
}

/// Every leaf path of `v` (the fields a writer of `v` sets).
pub fn collect(v: &Value, schema: &Schema, path: &mut Vec<String>, out: &mut FieldSet) {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match v {
        Value::Object(m) if !m.is_empty() && !schema.atomic_map(&p) => {
            if schema.granular_map(&p) {
                out.member = true;
            }
            for (k, c) in m {
                path.push(k.clone());
                collect(c, schema, path, out.child(format!("f:{k}")));
                path.pop();
            }
        }
        Value::Array(items) => match schema.list_type(&p) {
            ListType::Atomic => out.member = true,
            ListType::Set => {
                for i in items {
                    out.child(value_key(i)).member = true;
                }
            }
            ListType::Map(keys) => {
                path.push("[]".into());
                for i in items {
                    let Some(k) = element_key(i, &keys) else {
                        continue;
                    };
                    let c = out.child(k);
                    c.member = true;
                    collect_fields_of(i, schema, path, c);
                }
                path.pop();
            }
        },
        _ => out.member = true,
    }
}

fn collect_fields_of(item: &Value, schema: &Schema, path: &mut Vec<String>, out: &mut FieldSet) {
    if let Some(m) = item.as_object() {
        for (k, c) in m {
            path.push(k.clone());
            collect(c, schema, path, out.child(format!("f:{k}")));
            path.pop();
        }
    }
}

/// The paths whose value differs between `old` and `new` (added, changed or removed).
pub fn diff(
    old: Option<&Value>,
    new: Option<&Value>,
    schema: &Schema,
    path: &mut Vec<String>,
    out: &mut FieldSet,
) {
    if old == new {
        return;
    }
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b)))
            if !a.is_empty() && !b.is_empty() && !schema.atomic_map(&p) =>
        {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                path.push(k.clone());
                diff(
                    a.get(k),
                    b.get(k),
                    schema,
                    path,
                    out.child(format!("f:{k}")),
                );
                path.pop();
            }
            out.children.retain(|_, c| !c.is_empty());
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => match schema.list_type(&p) {
            ListType::Atomic => out.member = true,
            ListType::Set => {
                for i in a
                    .iter()
                    .filter(|i| !b.contains(i))
                    .chain(b.iter().filter(|i| !a.contains(i)))
                {
                    out.child(value_key(i)).member = true;
                }
            }
            ListType::Map(keys) => {
                let index = |l: &Vec<Value>| -> BTreeMap<String, Value> {
                    l.iter()
                        .filter_map(|i| element_key(i, &keys).map(|k| (k, i.clone())))
                        .collect()
                };
                let (ia, ib) = (index(a), index(b));
                path.push("[]".into());
                for k in ia.keys().chain(ib.keys().filter(|k| !ia.contains_key(*k))) {
                    let c = out.child(k.clone());
                    match (ia.get(k), ib.get(k)) {
                        (Some(x), Some(y)) => {
                            for f in object_keys(x, y) {
                                path.push(f.clone());
                                diff(
                                    x.get(&f),
                                    y.get(&f),
                                    schema,
                                    path,
                                    c.child(format!("f:{f}")),
                                );
                                path.pop();
                            }
                            c.children.retain(|_, c| !c.is_empty());
                        }
                        (x, y) => {
                            if let Some(v) = y.or(x) {
                                c.member = true;
                                collect_fields_of(v, schema, path, c);
                            }
                        }
                    }
                }
                path.pop();
                out.children.retain(|_, c| !c.is_empty());
            }
        },
        (_, Some(v)) | (Some(v), None) => {
            if old.is_some() && new.is_some() {
                out.member = true;
                if v.is_object() || v.is_array() {
                    collect(v, schema, path, out);
                }
            } else {
                collect(v, schema, path, out);
            }
        }
        (None, None) => {}
    }
}

fn object_keys(a: &Value, b: &Value) -> Vec<String> {
    let mut keys: Vec<String> = a
        .as_object()
        .into_iter()
        .chain(b.as_object())
        .flat_map(|m| m.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Merges an applied configuration into the live object: maps field by field, keyed lists by key,
/// sets by value, everything else replaced (server-side apply's merge).
pub fn apply_merge(
    live: Option<&Value>,
    applied: &Value,
    schema: &Schema,
    path: &mut Vec<String>,
) -> Value {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match (live, applied) {
        (Some(Value::Object(l)), Value::Object(a)) if !schema.atomic_map(&p) => {
            let mut out = l.clone();
            for (k, av) in a {
                if av.is_null() {
                    out.remove(k);
                    continue;
                }
                path.push(k.clone());
                let merged = apply_merge(l.get(k), av, schema, path);
                path.pop();
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Some(Value::Array(l)), Value::Array(a)) => match schema.list_type(&p) {
            ListType::Atomic => applied.clone(),
            ListType::Set => {
                let mut out = l.clone();
                for i in a {
                    if !out.contains(i) {
                        out.push(i.clone());
                    }
                }
                Value::Array(out)
            }
            ListType::Map(keys) => {
                let mut out = l.clone();
                path.push("[]".into());
                for ai in a {
                    let k = element_key(ai, &keys);
                    match out
                        .iter()
                        .position(|li| k.is_some() && element_key(li, &keys) == k)
                    {
                        Some(pos) => {
                            let merged = apply_merge(Some(&out[pos]), ai, schema, path);
                            out[pos] = merged;
                        }
                        None => out.push(ai.clone()),
                    }
                }
                path.pop();
                Value::Array(out)
            }
        },
        _ => applied.clone(),
    }
}

/// Removes the field or list element at `path` (FieldsV1 elements) from `obj`.
///
/// For a custom resource, a map or list that the removal leaves empty becomes `null`, as
/// structured-merge-diff's `RemoveItems` makes it (kube-apiserver 1.24 to 1.35, and again after
/// the revert in kubernetes-sigs/structured-merge-diff#331): a manager that stops applying the
/// last fields of a struct leaves `field: null` behind, which the CRD's schema then rejects unless
/// the field is `nullable` (kubernetes/kubernetes#103011). Built-in kinds decode that `null` into
/// their Go types, so there the empty value stays; an emptied map of `metadata` is omitted.
pub fn remove_path(obj: &mut Value, path: &[String], schema: &Schema) {
    remove_at(obj, path, schema, &mut vec![]);
}

fn remove_at(obj: &mut Value, path: &[String], schema: &Schema, names: &mut Vec<String>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if let Some(f) = first.strip_prefix("f:") {
        let Some(m) = obj.as_object_mut() else { return };
        if rest.is_empty() {
            m.remove(f);
        } else if let Some(c) = m.get_mut(f) {
            names.push(f.to_string());
            remove_at(c, rest, schema, names);
            names.pop();
            let emptied = match c {
                Value::Object(o) => o.is_empty(),
                Value::Array(a) => a.is_empty(),
                _ => false,
            };
            // ObjectMeta is a Go type for every kind: an emptied map of it is omitted.
            let in_metadata = names.first().map_or(f == "metadata", |n| n == "metadata");
            if emptied && in_metadata {
                m.remove(f);
            } else if emptied && matches!(schema, Schema::Custom(_)) {
                *c = Value::Null;
            }
        }
        return;
    }
    let p: Vec<&str> = names.iter().map(String::as_str).collect();
    let lt = schema.list_type(&p);
    let Some(items) = obj.as_array_mut() else {
        return;
    };
    let pos = if let Some(v) = first.strip_prefix("v:") {
        let Ok(v) = serde_json::from_str::<Value>(v) else {
            return;
        };
        items.iter().position(|i| *i == v)
    } else if let ListType::Map(keys) = &lt {
        items
            .iter()
            .position(|i| element_key(i, keys).as_deref() == Some(first.as_str()))
    } else {
        None
    };
    let Some(pos) = pos else { return };
    if rest.is_empty() {
        items.remove(pos);
    } else {
        names.push("[]".into());
        remove_at(&mut items[pos], rest, schema, names);
        names.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set_of(v: &Value, schema: &Schema) -> FieldSet {
        let mut fs = FieldSet::default();
        collect(v, schema, &mut vec![], &mut fs);
        fs
    }

    #[test]
    fn containers_are_keyed_by_name_in_fields_v1() {
        let s = Schema::Builtin("deployments".into());
        let v = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "x", "ports": [{"containerPort": 80}]}]}}}});
        let fs = set_of(&v, &s);
        let want = json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
            ".": {}, "f:image": {}, "f:name": {},
            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
        }}}}}});
        assert_eq!(fs.to_fields_v1(), want);
        assert_eq!(FieldSet::from_fields_v1(&want), fs);
    }

    #[test]
    fn labels_record_the_map_itself_and_selectors_are_atomic() {
        let s = Schema::Builtin("deployments".into());
        let v = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"selector": {"matchLabels": {"a": "1"}}}});
        assert_eq!(
            set_of(&v, &s).to_fields_v1(),
            json!({"f:metadata": {"f:labels": {".": {}, "f:a": {}}}, "f:spec": {"f:selector": {}}})
        );
    }

    #[test]
    fn diff_finds_changed_removed_and_added_leaves() {
        let s = Schema::Builtin("configmaps".into());
        let old = json!({"data": {"a": "1", "b": "2"}});
        let new = json!({"data": {"a": "1", "b": "3", "c": "4"}});
        let mut fs = FieldSet::default();
        diff(Some(&old), Some(&new), &s, &mut vec![], &mut fs);
        assert_eq!(fs.to_fields_v1(), json!({"f:data": {"f:b": {}, "f:c": {}}}));
    }

    #[test]
    fn apply_merge_merges_keyed_lists_by_key() {
        let s = Schema::Builtin("pods".into());
        let live = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}});
        let applied = json!({"spec": {"containers": [{"name": "b", "image": "2"}]}});
        let out = apply_merge(Some(&live), &applied, &s, &mut vec![]);
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}])
        );
    }

    #[test]
    fn removing_a_keyed_element_drops_it() {
        let s = Schema::Builtin("pods".into());
        let mut obj = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        remove_path(
            &mut obj,
            &[
                "f:spec".into(),
                "f:containers".into(),
                "k:{\"name\":\"a\"}".into(),
            ],
            &s,
        );
        assert_eq!(obj["spec"]["containers"], json!([{"name": "b"}]));
    }

    #[test]
    fn crd_schemas_declare_list_types() {
        let schema = json!({"properties": {"spec": {"properties": {"items": {"type": "array",
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]}}}}});
        let s = Schema::Custom(Some(Arc::new(schema)));
        assert_eq!(
            s.list_type(&["spec", "items"]),
            ListType::Map(vec!["id".into()])
        );
        assert_eq!(s.list_type(&["spec", "other"]), ListType::Atomic);
    }
}
