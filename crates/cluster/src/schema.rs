//! Structural schemas of custom resources: pruning unknown fields, applying `default`s and
//! validating the basic OpenAPI constraints with the real server's field paths and wording (pure).
use serde_json::Value;

use serin_schema::{Finding, Nulls, Violation, join};

use super::status::{FieldError, FieldErrorKind};

fn preserves(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || schema.get("additionalProperties") == Some(&Value::Bool(true))
}

/// Drops fields the schema does not declare, except where it preserves unknown fields.
/// At the root, `apiVersion`, `kind` and `metadata` are always kept.
pub fn prune(obj: &mut Value, schema: &Value) {
    prune_at(obj, schema, true);
}

fn prune_at(v: &mut Value, schema: &Value, root: bool) {
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let embedded =
                root || schema.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true));
            let keep_unknown = preserves(schema);
            m.retain(|k, _| {
                keep_unknown
                    || additional.is_some()
                    || props.is_some_and(|p| p.contains_key(k))
                    || (embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
            });
            for (k, c) in m.iter_mut() {
                if root && (k == "metadata" || k == "apiVersion" || k == "kind") {
                    continue;
                }
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    prune_at(c, s, false);
                } else if let Some(s) = additional {
                    prune_at(c, s, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for i in items {
                    prune_at(i, s, false);
                }
            }
        }
        _ => {}
    }
}

/// The paths of fields pruning would drop (for `fieldValidation=Strict`).
pub fn unknown_fields(obj: &Value, schema: &Value) -> Vec<String> {
    let mut out = vec![];
    unknown_at(obj, schema, "", true, &mut out);
    out
}

fn unknown_at(v: &Value, schema: &Value, path: &str, root: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if preserves(schema) {
                return;
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, c) in m {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match (props.and_then(|p| p.get(k)), additional) {
                    (Some(s), _) | (None, Some(s)) => unknown_at(c, s, &join(path, k), false, out),
                    (None, None) => out.push(join(path, k)),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_at(item, s, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

/// Fills in `default` values of properties that are absent, recursing into objects and lists.
pub fn apply_defaults(v: &mut Value, schema: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    if !m.contains_key(k)
                        && let Some(d) = s.get("default")
                    {
                        m.insert(k.clone(), d.clone());
                    }
                    if let Some(c) = m.get_mut(k) {
                        apply_defaults(c, s);
                    }
                }
            }
            if let Some(s) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for c in m.values_mut() {
                    apply_defaults(c, s);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for i in items {
                    apply_defaults(i, s);
                }
            }
        }
        _ => {}
    }
}

/// Validates `v` against `schema` (the shared walker of `serin-schema`), worded as
/// kube-apiserver's field errors; each error carries the field path (`spec.replicas`).
pub fn validate(v: &Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for f in serin_schema::validate(v, schema, path, Nulls::Invalid) {
        if let Some(e) = field_error(f) {
            errs.push(e);
        }
    }
}

/// One finding in the real server's wording (`spec.replicas in body should be ...`). Unknown
/// fields are not validation errors: the server prunes them, or refuses them in strict decoding
/// ([`unknown_fields`]).
fn field_error(f: Finding) -> Option<FieldError> {
    let Finding {
        path,
        value,
        violation,
    } = f;
    let invalid = |why: String| FieldErrorKind::Invalid(value.clone(), why);
    let bound = |limit: &Value, exclusive: bool, strict: &str, or_equal: &str| {
        let op = if exclusive { strict } else { or_equal };
        format!("{path} in body should be {op} {limit}")
    };
    let kind = match violation {
        Violation::Null { want } => FieldErrorKind::Invalid(
            Value::String("null".into()),
            format!("{path} in body must be of type {want}: \"null\""),
        ),
        Violation::Type { want, got, .. } => FieldErrorKind::Invalid(
            Value::String(got.into()),
            format!("{path} in body must be of type {want}: \"{got}\""),
        ),
        Violation::Enum { allowed } => FieldErrorKind::NotSupported(
            value.clone(),
            allowed
                .iter()
                .map(|a| {
                    a.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| a.to_string())
                })
                .collect(),
        ),
        Violation::Pattern { pattern } => {
            invalid(format!("{path} in body should match '{pattern}'"))
        }
        Violation::MaxLength(max) => invalid(format!("may not be more than {max} bytes")),
        Violation::MinLength(min) => invalid(format!(
            "{path} in body should be at least {min} chars long"
        )),
        Violation::Minimum { limit, exclusive } => invalid(bound(
            &limit,
            exclusive,
            "greater than",
            "greater than or equal to",
        )),
        Violation::Maximum { limit, exclusive } => invalid(bound(
            &limit,
            exclusive,
            "less than",
            "less than or equal to",
        )),
        Violation::MaxItems { max, got } | Violation::MaxProperties { max, got } => {
            FieldErrorKind::TooMany(got, max as usize)
        }
        Violation::MinItems { min, got } => FieldErrorKind::Invalid(
            Value::from(got),
            format!("{path} in body should have at least {min} items"),
        ),
        Violation::Required => FieldErrorKind::Required,
        Violation::OneOf { .. } => {
            invalid("must validate one and only one schema (oneOf)".to_string())
        }
        Violation::AnyOf { .. } => invalid("must validate at least one schema (anyOf)".to_string()),
        Violation::Not => invalid("must not validate the schema (not)".to_string()),
        Violation::Unknown { .. } => return None,
    };
    Some(FieldError::new(path, kind))
}

/// The rules a real kube-apiserver (apiextensions `ValidateCustomResourceDefinitionOpenAPISchema`
/// and the structural-schema checks) applies to a CRD version's `openAPIV3Schema` at create and
/// update, with its field paths (`...openAPIV3Schema.properties[spec].type`). A schema that
/// breaks one is refused with 422, as on a real server.
///
/// Not checked here, because a real server accepts them: `null` inside `enum` (only kubectl's
/// client-side OpenAPI v2 validation rejects it, see docs/embedded-cluster.md), unknown `format`
/// values (ignored) and `nullable`.
pub fn structural_errors(schema: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        errs.push(FieldError::new(
            format!("{path}.type"),
            FieldErrorKind::Invalid(
                schema.get("type").cloned().unwrap_or(Value::Null),
                "must be object at the root".into(),
            ),
        ));
    }
    structural_node(schema, path, false, &mut errs);
    errs
}

const TYPES: &[&str] = &["object", "array", "string", "integer", "number", "boolean"];
const FORBIDDEN_KEYWORDS: &[(&str, &str)] = &[
    ("$ref", "$ref is not supported"),
    ("$schema", "$schema is not supported"),
    ("definitions", "definitions is not supported"),
    ("dependencies", "dependencies is not supported"),
    ("patternProperties", "patternProperties is not supported"),
    ("additionalItems", "additionalItems is not supported"),
    ("id", "id is not supported"),
];

/// One schema node. `in_junctor` is true under `allOf`/`anyOf`/`oneOf`/`not`, where only value
/// validations are allowed (no `type`, `description`, `default`, `nullable`,
/// `additionalProperties` or `x-kubernetes-*` extensions).
fn structural_node(s: &Value, path: &str, in_junctor: bool, errs: &mut Vec<FieldError>) {
    let Some(m) = s.as_object() else {
        errs.push(FieldError::new(
            path,
            FieldErrorKind::Invalid(s.clone(), "must be a schema object".into()),
        ));
        return;
    };
    let at = |k: &str| format!("{path}.{k}");
    for (k, why) in FORBIDDEN_KEYWORDS {
        if m.contains_key(*k) {
            errs.push(FieldError::new(
                at(k),
                FieldErrorKind::Forbidden((*why).into()),
            ));
        }
    }
    let int_or_string = m.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = m.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if in_junctor {
        for k in [
            "type",
            "description",
            "default",
            "nullable",
            "additionalProperties",
            "x-kubernetes-preserve-unknown-fields",
            "x-kubernetes-int-or-string",
            "x-kubernetes-embedded-resource",
            "x-kubernetes-validations",
        ] {
            if m.contains_key(k) {
                errs.push(FieldError::new(
                    at(k),
                    FieldErrorKind::Forbidden("must be empty to be structural".into()),
                ));
            }
        }
    } else {
        match m.get("type") {
            None if !int_or_string && !preserve => {
                errs.push(FieldError::new(at("type"), FieldErrorKind::Required))
            }
            Some(Value::String(t)) if TYPES.contains(&t.as_str()) && int_or_string => {
                errs.push(FieldError::new(
                    at("type"),
                    FieldErrorKind::Invalid(
                        Value::String(t.clone()),
                        "must be empty if x-kubernetes-int-or-string is true".into(),
                    ),
                ));
            }
            Some(Value::String(t)) if TYPES.contains(&t.as_str()) => {}
            Some(other) if other.is_string() => errs.push(FieldError::new(
                at("type"),
                FieldErrorKind::NotSupported(
                    other.clone(),
                    TYPES.iter().map(|t| (*t).to_string()).collect(),
                ),
            )),
            Some(other) => errs.push(FieldError::new(
                at("type"),
                FieldErrorKind::Invalid(other.clone(), "must be a single type name".into()),
            )),
            None => {}
        }
    }
    if m.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        errs.push(FieldError::new(
            at("x-kubernetes-preserve-unknown-fields"),
            FieldErrorKind::Invalid(Value::Bool(false), "must be true or undefined".into()),
        ));
    }
    if m.get("uniqueItems") == Some(&Value::Bool(true)) {
        errs.push(FieldError::new(
            at("uniqueItems"),
            FieldErrorKind::Forbidden(
                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
                    .into(),
            ),
        ));
    }
    if m.contains_key("properties") && m.contains_key("additionalProperties") {
        errs.push(FieldError::new(
            at("additionalProperties"),
            FieldErrorKind::Forbidden(
                "additionalProperties and properties are mutual exclusive".into(),
            ),
        ));
    }
    if m.get("additionalProperties") == Some(&Value::Bool(false)) {
        errs.push(FieldError::new(
            at("additionalProperties"),
            FieldErrorKind::Forbidden("additionalProperties cannot be set to false".into()),
        ));
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            structural_node(
                child,
                &format!("{path}.properties[{name}]"),
                in_junctor,
                errs,
            );
        }
    }
    match m.get("items") {
        Some(Value::Array(_)) => errs.push(FieldError::new(
            at("items"),
            FieldErrorKind::Forbidden("items must be a schema object and not an array".into()),
        )),
        Some(items) => structural_node(items, &at("items"), in_junctor, errs),
        None if !in_junctor && m.get("type").and_then(Value::as_str) == Some("array") => {
            errs.push(FieldError::new(at("items"), FieldErrorKind::Required));
        }
        None => {}
    }
    if let Some(add) = m.get("additionalProperties").filter(|a| a.is_object()) {
        structural_node(add, &at("additionalProperties"), in_junctor, errs);
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        if let Some(branches) = m.get(junctor).and_then(Value::as_array) {
            for (i, b) in branches.iter().enumerate() {
                // The one exception: `anyOf: [{type: integer}, {type: string}]` under
                // `x-kubernetes-int-or-string`.
                let int_or_string_branch = int_or_string
                    && b.as_object().is_some_and(|o| {
                        o.len() == 1
                            && matches!(
                                o.get("type").and_then(Value::as_str),
                                Some("integer" | "string")
                            )
                    });
                if !int_or_string_branch {
                    structural_node(b, &format!("{path}.{junctor}[{i}]"), true, errs);
                }
            }
        }
    }
    if let Some(not) = m.get("not") {
        structural_node(not, &at("not"), true, errs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["target"],
        "properties": {
            "target": {"type": "string", "pattern": "^[a-z]+$"},
            "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
            "mode": {"type": "string", "enum": ["a", "b"]},
            "items": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "port": {"x-kubernetes-int-or-string": true},
            "choice": {"type": "object", "oneOf": [{"required": ["x"]}, {"required": ["y"]}],
                       "properties": {"x": {"type": "string"}, "y": {"type": "string"}}}
        }}}})
    }

    fn errors(v: Value) -> Vec<String> {
        let mut errs = vec![];
        validate(&v, &schema(), "", &mut errs);
        errs.iter()
            .map(|e| format!("{}: {:?}", e.field, e.kind))
            .collect()
    }

    #[test]
    fn unknown_fields_are_pruned_except_where_preserved() {
        let mut v = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"}, "junk": 1,
            "spec": {"target": "a", "extra": 2, "free": {"anything": {"deep": 1}}}});
        prune(&mut v, &schema());
        assert_eq!(
            v,
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
            "spec": {"target": "a", "free": {"anything": {"deep": 1}}}})
        );
    }

    #[test]
    fn strict_validation_names_each_unknown_field() {
        let v = json!({"metadata": {"x": 1}, "junk": 1, "spec": {"target": "a", "extra": 2, "free": {"any": 1}}});
        assert_eq!(
            unknown_fields(&v, &schema()),
            vec!["junk".to_string(), "spec.extra".to_string()]
        );
    }

    #[test]
    fn defaults_fill_absent_fields() {
        let mut v = json!({"spec": {"target": "a"}});
        apply_defaults(&mut v, &schema());
        assert_eq!(v["spec"]["replicas"], 1);
    }

    #[test]
    fn each_constraint_reports_its_field() {
        assert!(errors(json!({"spec": {"target": "ok"}})).is_empty());
        let cases = [
            (json!({"spec": {}}), "spec.target"),
            (json!({"spec": {"target": "UPPER"}}), "spec.target"),
            (
                json!({"spec": {"target": "a", "replicas": 11}}),
                "spec.replicas",
            ),
            (
                json!({"spec": {"target": "a", "replicas": "x"}}),
                "spec.replicas",
            ),
            (json!({"spec": {"target": "a", "mode": "c"}}), "spec.mode"),
            (
                json!({"spec": {"target": "a", "items": ["1", "2", "3"]}}),
                "spec.items",
            ),
            (
                json!({"spec": {"target": "a", "items": [1]}}),
                "spec.items[0]",
            ),
            (json!({"spec": {"target": "a", "port": true}}), "spec.port"),
            (
                json!({"spec": {"target": "a", "choice": {"x": "1", "y": "2"}}}),
                "spec.choice",
            ),
        ];
        for (v, field) in cases {
            let e = errors(v.clone());
            assert_eq!(e.len(), 1, "{v}: {e:?}");
            assert!(e[0].starts_with(&format!("{field}: ")), "{v}: {e:?}");
        }
    }

    #[test]
    fn non_structural_schemas_are_named_field_by_field() {
        let schema = json!({"type": "object", "properties": {
            "a": {"$ref": "#/x"},
            "b": {"type": "object", "properties": {"x": {"type": "string"}},
                  "additionalProperties": {"type": "string"}},
            "c": {"type": "string", "anyOf": [{"type": "string"}]},
            "d": {"x-kubernetes-int-or-string": true,
                  "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "e": {"type": "string", "enum": ["x", null]}
        }});
        let got: Vec<String> = structural_errors(&schema, "s")
            .iter()
            .map(|e| e.field.clone())
            .collect();
        assert_eq!(
            got,
            [
                "s.properties[a].$ref",
                "s.properties[a].type",
                "s.properties[b].additionalProperties",
                "s.properties[c].anyOf[0].type",
            ]
        );
    }
}
