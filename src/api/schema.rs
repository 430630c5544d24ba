//! Checks a raw object against a CRD's structural OpenAPI v3 schema, as the API server would; pure.
//!
//! It covers the keywords our CRDs use: type, properties, required, additionalProperties, items,
//! enum, pattern, format-free string checks, minimum/maximum, minLength/maxLength, maxItems,
//! oneOf/anyOf/not, x-kubernetes-int-or-string and x-kubernetes-preserve-unknown-fields. CEL rules
//! are not evaluated here; [`super::validation`] implements the same checks in Rust. Unknown
//! fields are warnings with a "did you mean": the API server prunes them unless the client asks
//! for strict validation (kubectl does), which usually hides a typo.
use serde_json::{Map, Value};

use super::validation::Problem;
use super::validation::Severity;

/// Validates `value` against `schema`, reporting problems with dotted paths from `path`.
pub fn check(schema: &Value, value: &Value, path: &str) -> Vec<Problem> {
    let mut out = Vec::new();
    walk(schema, value, path, &mut out);
    out
}

/// What happens to an unknown field, which is why it is a warning rather than an error: the API
/// server's default (`fieldValidation=Warn`, and 1.24, which has no field validation) drops it
/// and stores the rest, while kubectl asks for strict validation and refuses the whole object.
const UNKNOWN_FIELD_FATE: &str = "kubectl apply refuses it (strict field validation, kubectl's default), other clients (GitOps controllers, client libraries) have the API server drop it, with at most a warning";

fn push(out: &mut Vec<Problem>, severity: Severity, path: &str, message: String) {
    out.push(Problem {
        severity,
        path: path.to_string(),
        message,
    });
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<Problem>) {
    let Some(s) = schema.as_object() else { return };
    if value.is_null() {
        // The API server drops nulls for non-nullable fields before validation.
        return;
    }
    let int_or_string = s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if int_or_string {
        if !matches!(type_name(value), "integer" | "string") {
            push(
                out,
                Severity::Error,
                path,
                format!("must be an integer or a string, got {}", type_name(value)),
            );
        }
        return;
    }
    if let Some(want) = s.get("type").and_then(Value::as_str) {
        let got = type_name(value);
        let ok = got == want || (want == "number" && got == "integer");
        if !ok {
            push(
                out,
                Severity::Error,
                path,
                format!("must be of type {want}, got {got}"),
            );
            return;
        }
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        push(
            out,
            Severity::Error,
            path,
            format!(
                "unsupported value {value}; expected one of: {}",
                list.join(", ")
            ),
        );
    }
    match value {
        Value::String(text) => check_string(s, text, path, out),
        Value::Number(n) => check_number(s, n.as_f64().unwrap_or(0.0), path, out),
        Value::Array(items) => {
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                push(
                    out,
                    Severity::Error,
                    path,
                    format!("must have at most {max} items, got {}", items.len()),
                );
            }
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::Object(fields) => check_object(s, fields, path, out),
        _ => {}
    }
    check_combinators(s, value, path, out);
}

fn check_string(s: &Map<String, Value>, text: &str, path: &str, out: &mut Vec<Problem>) {
    let len = text.chars().count() as u64;
    if let Some(min) = s.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        push(
            out,
            Severity::Error,
            path,
            format!("must be at least {min} characters long"),
        );
    }
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        push(
            out,
            Severity::Error,
            path,
            format!("must be at most {max} characters long"),
        );
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(text) => {
                push(
                    out,
                    Severity::Error,
                    path,
                    format!("{text:?} does not match the pattern {pattern}"),
                );
            }
            _ => {}
        }
    }
}

fn check_number(s: &Map<String, Value>, n: f64, path: &str, out: &mut Vec<Problem>) {
    if let Some(min) = s.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        push(
            out,
            Severity::Error,
            path,
            format!("must be at least {min}, got {n}"),
        );
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        push(
            out,
            Severity::Error,
            path,
            format!("must be at most {max}, got {n}"),
        );
    }
}

fn check_object(
    s: &Map<String, Value>,
    fields: &Map<String, Value>,
    path: &str,
    out: &mut Vec<Problem>,
) {
    if let Some(required) = s.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if fields.get(key).is_none_or(Value::is_null) {
                push(
                    out,
                    Severity::Error,
                    &join(path, key),
                    "required field is missing".to_string(),
                );
            }
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties");
    let preserve = s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    for (key, child) in fields {
        let child_path = join(path, key);
        if let Some(prop) = props.and_then(|p| p.get(key)) {
            walk(prop, child, &child_path, out);
        } else if let Some(add) = additional.filter(|a| a.is_object()) {
            walk(add, child, &child_path, out);
        } else if !preserve && props.is_some() {
            let known = props.into_iter().flat_map(|p| p.keys().map(String::as_str));
            push(
                out,
                Severity::Warning,
                &child_path,
                format!(
                    "unknown field{}: {UNKNOWN_FIELD_FATE}",
                    super::suggest::did_you_mean(key, known)
                ),
            );
        }
    }
}

/// `oneOf`, `anyOf` and `not` as used by structural schemas: value validations only, judged on the
/// same object. A branch matches when it reports no error.
fn check_combinators(s: &Map<String, Value>, value: &Value, path: &str, out: &mut Vec<Problem>) {
    let matches = |branch: &Value| -> bool {
        let mut tmp = Vec::new();
        walk(branch, value, path, &mut tmp);
        tmp.iter().all(|p| p.severity != Severity::Error)
    };
    if let Some(branches) = s.get("oneOf").and_then(Value::as_array) {
        let n = branches.iter().filter(|b| matches(b)).count();
        if n != 1 {
            let desc = describe_branches(branches);
            let message = if n == 0 {
                format!("must satisfy exactly one of: {desc}; it satisfies none")
            } else {
                format!("must satisfy exactly one of: {desc}; it satisfies {n}")
            };
            push(out, Severity::Error, path, message);
        }
    }
    if let Some(branches) = s.get("anyOf").and_then(Value::as_array)
        && !branches.iter().any(matches)
    {
        push(
            out,
            Severity::Error,
            path,
            format!(
                "must satisfy at least one of: {}",
                describe_branches(branches)
            ),
        );
    }
    if let Some(not) = s.get("not")
        && matches(not)
    {
        push(
            out,
            Severity::Error,
            path,
            "matches a forbidden combination of fields".to_string(),
        );
    }
}

fn describe_branches(branches: &[Value]) -> String {
    let parts: Vec<String> = branches
        .iter()
        .map(|b| match b.get("required").and_then(Value::as_array) {
            Some(req) => {
                let names: Vec<&str> = req.iter().filter_map(Value::as_str).collect();
                format!("[{}]", names.join(", "))
            }
            None if b.get("not").is_some() => "[none of them]".to_string(),
            None => b.to_string(),
        })
        .collect();
    parts.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canary_schema() -> Value {
        crate::api::crd::schema_of(&crate::api::crd::canary())
    }

    fn errors_of(doc: Value) -> Vec<String> {
        check(&canary_schema(), &doc, "")
            .into_iter()
            .map(|p| format!("{:?} {p}", p.severity))
            .collect()
    }

    fn minimal() -> Value {
        json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": {"interval": "1m", "threshold": 5, "stepWeight": 10}
            }
        })
    }

    #[test]
    fn a_minimal_canary_passes_the_schema() {
        assert_eq!(errors_of(minimal()), Vec::<String>::new());
    }

    #[test]
    fn the_analysis_one_of_rejects_two_modes() {
        let mut doc = minimal();
        doc["spec"]["analysis"]["iterations"] = json!(3);
        let errs = errors_of(doc);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("spec.analysis: must satisfy exactly one of"),
            "{errs:?}"
        );
    }

    #[test]
    fn wrong_types_enums_and_patterns_are_errors() {
        let mut doc = minimal();
        doc["spec"]["analysis"]["stepWeight"] = json!("ten");
        doc["spec"]["targetRef"]["kind"] = json!("ReplicaSet");
        doc["spec"]["analysis"]["interval"] = json!("1h");
        let errs = errors_of(doc);
        assert!(
            errs.iter().any(
                |e| e.contains("spec.analysis.stepWeight: must be of type integer, got string")
            ),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("spec.targetRef.kind: unsupported value \"ReplicaSet\"")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("spec.analysis.interval: \"1h\" does not match")),
            "{errs:?}"
        );
    }

    #[test]
    fn unknown_fields_are_warnings() {
        let mut doc = minimal();
        doc["spec"]["analysis"]["stepWeigth"] = json!(10);
        let errs = errors_of(doc);
        assert_eq!(
            errs,
            vec![format!(
                "Warning spec.analysis.stepWeigth: unknown field (did you mean \"stepWeight\"?): {UNKNOWN_FIELD_FATE}"
            )]
        );
    }

    #[test]
    fn string_matches_allow_at_most_one_kind() {
        let mut doc = minimal();
        doc["spec"]["analysis"] = json!({"interval": "1m", "threshold": 5, "iterations": 5,
            "match": [{"headers": {"x-canary": {"exact": "a", "regex": "b"}}}]});
        let errs = errors_of(doc);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("spec.analysis.match[0].headers.x-canary"),
            "{errs:?}"
        );
    }
}
