//! Checks a raw object against a CRD's structural OpenAPI v3 schema, as the API server would; pure.
//!
//! The walk is `serin-schema`'s, the one the embedded API server validates with too; this module
//! words its findings for people. Nulls count as absent (the server prunes them before it
//! validates). CEL rules are not evaluated here; [`super::validation`] implements the same checks
//! in Rust. Unknown fields are warnings with a "did you mean": the API server prunes them unless
//! the client asks for strict validation (kubectl does), which usually hides a typo.
use serde_json::Value;
use serin_schema::{Finding, Nulls, Violation};

use super::validation::Problem;
use super::validation::Severity;

/// What happens to an unknown field, which is why it is a warning rather than an error: the API
/// server's default (`fieldValidation=Warn`, and 1.24, which has no field validation) drops it
/// and stores the rest, while kubectl asks for strict validation and refuses the whole object.
const UNKNOWN_FIELD_FATE: &str = "kubectl apply refuses it (strict field validation, kubectl's default), other clients (GitOps controllers, client libraries) have the API server drop it, with at most a warning";

/// Validates `value` against `schema` (the shared walker of `serin-schema`), reporting problems
/// with dotted paths from `path`.
pub fn check(schema: &Value, value: &Value, path: &str) -> Vec<Problem> {
    serin_schema::validate(value, schema, path, Nulls::Absent)
        .into_iter()
        .map(problem)
        .collect()
}

/// One finding, worded for people.
fn problem(f: Finding) -> Problem {
    let Finding {
        path,
        value,
        violation,
    } = f;
    let n = value.as_f64().unwrap_or(0.0);
    let as_f64 = |limit: &Value| limit.as_f64().unwrap_or(0.0);
    let message = match violation {
        Violation::Unknown { key, known } => {
            let hint = super::suggest::did_you_mean(&key, known.iter().map(String::as_str));
            return Problem {
                severity: Severity::Warning,
                message: format!("unknown field{hint}: {UNKNOWN_FIELD_FATE}"),
                path,
            };
        }
        Violation::Null { want } => format!("must be of type {want}, got null"),
        Violation::Type {
            got,
            int_or_string: true,
            ..
        } => format!("must be an integer or a string, got {got}"),
        Violation::Type { want, got, .. } => format!("must be of type {want}, got {got}"),
        Violation::Enum { allowed } => {
            let list: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
            format!(
                "unsupported value {value}; expected one of: {}",
                list.join(", ")
            )
        }
        Violation::Pattern { pattern } => format!(
            "{:?} does not match the pattern {pattern}",
            value.as_str().unwrap_or_default()
        ),
        Violation::MinLength(min) => format!("must be at least {min} characters long"),
        Violation::MaxLength(max) => format!("must be at most {max} characters long"),
        Violation::Minimum { limit, exclusive } => {
            let op = if exclusive { "more than" } else { "at least" };
            format!("must be {op} {}, got {n}", as_f64(&limit))
        }
        Violation::Maximum { limit, exclusive } => {
            let op = if exclusive { "less than" } else { "at most" };
            format!("must be {op} {}, got {n}", as_f64(&limit))
        }
        Violation::MinItems { min, got } => format!("must have at least {min} items, got {got}"),
        Violation::MaxItems { max, got } => format!("must have at most {max} items, got {got}"),
        Violation::MaxProperties { max, got } => {
            format!("must have at most {max} fields, got {got}")
        }
        Violation::Required => "required field is missing".to_string(),
        Violation::OneOf { branches, matched } => {
            let desc = describe_branches(&branches);
            if matched == 0 {
                format!("must satisfy exactly one of: {desc}; it satisfies none")
            } else {
                format!("must satisfy exactly one of: {desc}; it satisfies {matched}")
            }
        }
        Violation::AnyOf { branches } => format!(
            "must satisfy at least one of: {}",
            describe_branches(&branches)
        ),
        Violation::Not => "matches a forbidden combination of fields".to_string(),
    };
    Problem {
        severity: Severity::Error,
        path,
        message,
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
    use crate::api::Canary;
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
        Canary::test()
            .analysis(json!({"interval": "1m", "threshold": 5}))
            .json()
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
