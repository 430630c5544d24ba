//! Kubernetes `Status` errors of the embedded API server: reason, code and message as the real one words them (pure).
use serde_json::{Value, json};

/// An error answered to a client as a `meta.k8s.io/v1` `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code, also `Status.code`.
    pub code: u16,
    /// `Status.reason`, such as `NotFound` or `Conflict`.
    pub reason: &'static str,
    /// Human-readable `Status.message`.
    pub message: String,
    /// `Status.details`, when the real server sends them.
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// `resource.group` as the real server names a resource in messages (`deployments.apps`, `pods`).
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, group: &str, kind: &str, name: &str) -> Self {
        let mut d = json!({ "kind": kind });
        if !name.is_empty() {
            d["name"] = json!(name);
        }
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        self.details = Some(d);
        self
    }

    /// 404 for a missing object.
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, plural)),
        )
        .with_details(group, plural, name)
    }

    /// 404 for a path that names nothing the server serves.
    pub fn not_found_path() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details("", "", "")
    }

    /// 409 for a create of an object that exists.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, plural)),
        )
        .with_details(group, plural, name)
    }

    /// 409 for a write with a stale `resourceVersion` (or a failed precondition).
    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(group, plural)
            ),
        )
        .with_details(group, plural, name)
    }

    /// 409 for a stale `resourceVersion`, worded as the real server does.
    pub fn stale(group: &str, plural: &str, name: &str) -> Self {
        Self::conflict(
            group,
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause per invalid field, as `field.ErrorList.ToAggregate()` words it.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<FieldError>) -> Self {
        let gk = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let text: Vec<String> = causes.iter().map(FieldError::text).collect();
        let joined = if text.len() == 1 {
            text[0].clone()
        } else {
            format!("[{}]", text.join(", "))
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{gk} \"{name}\" is invalid: {joined}"),
        )
        .with_details(group, kind, name);
        if let Some(d) = e.details.as_mut() {
            d["causes"] = Value::Array(
                causes
                    .iter()
                    .map(|c| json!({"reason": c.kind.reason(), "message": c.message_part(), "field": c.field}))
                    .collect(),
            );
        }
        e
    }

    /// 400 for a request the server cannot make sense of.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 415 for a body or patch type the server does not accept.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// 403 for a write the server forbids (such as new content in a terminating namespace).
    pub fn forbidden(group: &str, plural: &str, name: &str, why: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: {why}",
                qualified(group, plural)
            ),
        )
        .with_details(group, plural, name)
    }

    /// 410 for a watch from a `resourceVersion` older than the retained history.
    pub fn gone(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 500 injected or unexpected.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 429 as a rate-limited server answers.
    pub fn too_many_requests() -> Self {
        let mut e = Self::new(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
        );
        e.details = Some(json!({"retryAfterSeconds": 1}));
        e
    }

    /// 409 for server-side apply conflicts, one cause per field.
    pub fn apply_conflicts(conflicts: &[(String, String, String)]) -> Self {
        // (manager, apiVersion, field path)
        let msg = if conflicts.len() == 1 {
            let (m, v, f) = &conflicts[0];
            format!("Apply failed with 1 conflict: conflict with \"{m}\" using {v}: {f}")
        } else {
            let lines: Vec<String> = conflicts
                .iter()
                .map(|(m, v, f)| format!("- conflict with \"{m}\" using {v}: {f}"))
                .collect();
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        };
        let mut e = Self::new(409, "Conflict", msg);
        e.details = Some(json!({
            "causes": conflicts.iter().map(|(m, v, f)| json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{m}\" using {v}"),
                "field": f,
            })).collect::<Vec<_>>()
        }));
        e
    }

    /// The `Status` object sent on the wire.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// What is wrong with one field, as in `k8s.io/apimachinery/pkg/util/validation/field`.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldErrorKind {
    /// `Required value`.
    Required,
    /// `Required value: why`.
    RequiredBecause(String),
    /// `Invalid value: X: why`.
    Invalid(Value, String),
    /// `Unsupported value: X: supported values: ...`.
    NotSupported(Value, Vec<String>),
    /// `Forbidden: why`.
    Forbidden(String),
    /// `Too many: N: must have at most M items`.
    TooMany(usize, usize),
}

impl FieldErrorKind {
    fn reason(&self) -> &'static str {
        match self {
            FieldErrorKind::Required | FieldErrorKind::RequiredBecause(_) => "FieldValueRequired",
            FieldErrorKind::Invalid(..) => "FieldValueInvalid",
            FieldErrorKind::NotSupported(..) => "FieldValueNotSupported",
            FieldErrorKind::Forbidden(_) => "FieldValueForbidden",
            FieldErrorKind::TooMany(..) => "FieldValueTooMany",
        }
    }
}

/// One invalid field with its path (`spec.template.spec.containers[0].image`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong.
    pub kind: FieldErrorKind,
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

impl FieldError {
    /// A field error at `field`.
    pub fn new(field: impl Into<String>, kind: FieldErrorKind) -> Self {
        FieldError {
            field: field.into(),
            kind,
        }
    }

    fn message_part(&self) -> String {
        match &self.kind {
            FieldErrorKind::Required => "Required value".to_string(),
            FieldErrorKind::RequiredBecause(why) => format!("Required value: {why}"),
            FieldErrorKind::Invalid(v, why) => format!("Invalid value: {}: {why}", show(v)),
            FieldErrorKind::NotSupported(v, ok) => {
                let ok: Vec<String> = ok.iter().map(|s| format!("{s:?}")).collect();
                format!(
                    "Unsupported value: {}: supported values: {}",
                    show(v),
                    ok.join(", ")
                )
            }
            FieldErrorKind::Forbidden(why) => format!("Forbidden: {why}"),
            FieldErrorKind::TooMany(n, max) => {
                format!("Too many: {n}: must have at most {max} items")
            }
        }
    }

    fn text(&self) -> String {
        format!("{}: {}", self.field, self.message_part())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_the_qualified_resource() {
        let s = ApiError::not_found("apps", "deployments", "web").to_status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["group"], "apps");
    }

    #[test]
    fn invalid_lists_each_field_cause() {
        let e = ApiError::invalid(
            "apps",
            "Deployment",
            "web",
            vec![FieldError::new(
                "spec.replicas",
                FieldErrorKind::Invalid(json!(-1), "must be greater than or equal to 0".into()),
            )],
        );
        assert_eq!(
            e.message,
            "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            e.to_status()["details"]["causes"][0]["field"],
            "spec.replicas"
        );
    }
}
