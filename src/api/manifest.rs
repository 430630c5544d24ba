//! Lints one parsed manifest document: schema check plus semantic rules, merged; pure.
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::crd;
use super::schema;
use super::validation::{self, Problem, Severity, ValidationContext};
use super::{AlertProvider, Canary, MetricTemplate};

/// The kinds Serin validates.
pub const KINDS: [&str; 3] = ["Canary", "MetricTemplate", "AlertProvider"];

/// The findings for one object.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectReport {
    /// Kind of the object.
    pub kind: String,
    /// `metadata.name`, or `<unnamed>`.
    pub name: String,
    /// Problems, errors first, each once.
    pub problems: Vec<Problem>,
}

/// Schemas are derived once per process; they are pure functions of the types.
fn schemas() -> &'static [(String, Value); 3] {
    static SCHEMAS: std::sync::OnceLock<[(String, Value); 3]> = std::sync::OnceLock::new();
    SCHEMAS.get_or_init(|| {
        [
            ("Canary".to_string(), crd::schema_of(&crd::canary())),
            (
                "MetricTemplate".to_string(),
                crd::schema_of(&crd::metric_template()),
            ),
            (
                "AlertProvider".to_string(),
                crd::schema_of(&crd::alert_provider()),
            ),
        ]
    })
}

/// Lints `doc` if it is in the `flagger.app` group: a Canary, MetricTemplate or AlertProvider is
/// checked, any other kind there is an error (a misspelt kind would be refused by the API server);
/// other groups give `None`. Schema problems that a semantic rule reports more precisely at the
/// same place (or below it) are dropped, so each mistake is reported once.
pub fn lint(doc: &Value, ctx: &ValidationContext) -> Option<ObjectReport> {
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let group = api_version.split('/').next().unwrap_or("");
    if group != "flagger.app" {
        return None;
    }
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or("<unnamed>")
        .to_string();
    let mut problems = Vec::new();
    if !KINDS.contains(&kind) {
        let message = if kind.is_empty() {
            "required field is missing".to_string()
        } else {
            format!(
                "unknown kind {kind:?} in flagger.app{}; the group has {}",
                super::suggest::did_you_mean(kind, KINDS),
                KINDS.join(", ")
            )
        };
        problems.push(Problem {
            severity: Severity::Error,
            path: "kind".into(),
            message,
        });
        return Some(ObjectReport {
            kind: if kind.is_empty() { "<no kind>" } else { kind }.to_string(),
            name,
            problems,
        });
    }
    if api_version != "flagger.app/v1beta1" {
        problems.push(Problem {
            severity: Severity::Error,
            path: "apiVersion".into(),
            message: format!(
                "unsupported version {api_version:?}; Serin serves flagger.app/v1beta1"
            ),
        });
        return Some(ObjectReport {
            kind: kind.to_string(),
            name,
            problems,
        });
    }
    if name == "<unnamed>" {
        problems.push(Problem {
            severity: Severity::Error,
            path: "metadata.name".into(),
            message: "required field is missing".into(),
        });
    }
    let schema_problems = schemas()
        .iter()
        .find(|(k, _)| k == kind)
        .map(|(_, s)| schema::check(s, doc, ""))
        .unwrap_or_default();
    let semantic = match kind {
        "Canary" => typed::<Canary>(doc).map(|c| validation::validate_canary(&c.spec, ctx)),
        "MetricTemplate" => {
            typed::<MetricTemplate>(doc).map(|m| validation::validate_metric_template(&m.spec))
        }
        _ => typed::<AlertProvider>(doc).map(|a| validation::validate_alert_provider(&a.spec)),
    };
    match semantic {
        Ok(semantic) => {
            let covered = |p: &Problem| {
                semantic.iter().any(|s| {
                    s.severity == Severity::Error
                        && (s.path == p.path
                            || s.path.starts_with(&format!("{}.", p.path))
                            || s.path.starts_with(&format!("{}[", p.path)))
                })
            };
            problems.extend(schema_problems.into_iter().filter(|p| !covered(p)));
            problems.extend(semantic);
        }
        Err(e) => {
            let had_schema_errors = schema_problems
                .iter()
                .any(|p| p.severity == Severity::Error);
            problems.extend(schema_problems);
            if !had_schema_errors {
                problems.push(Problem {
                    severity: Severity::Error,
                    path: "spec".into(),
                    message: e,
                });
            }
        }
    }
    problems.sort_by_key(|p| p.severity);
    problems.dedup();
    Some(ObjectReport {
        kind: kind.to_string(),
        name,
        problems,
    })
}

fn typed<T: DeserializeOwned>(doc: &Value) -> Result<T, String> {
    serde_json::from_value(doc.clone()).map_err(|e| format!("cannot be decoded: {e}"))
}
