//! Validates a JSON value against a structural OpenAPI v3 schema (a CRD's `openAPIV3Schema`) and
//! returns typed findings that each caller words its own way; pure.
//!
//! One walker serves two callers: `serin validate` (`serin::api::schema`, which words findings for
//! people and turns unknown fields into warnings) and the embedded API server
//! (`serin_cluster::schema`, which words them as kube-apiserver's field errors). It covers the
//! value validations of structural schemas: `type` (with `x-kubernetes-int-or-string`), `enum`,
//! `pattern`, `minLength`/`maxLength`, `minimum`/`maximum` (with `exclusiveMinimum`/
//! `exclusiveMaximum`), `minItems`/`maxItems`, `required`, `maxProperties`, `properties`,
//! `additionalProperties`, `items`, and `oneOf`/`anyOf`/`allOf`/`not`. CEL rules are not evaluated.
use serde_json::{Map, Value};

/// How `null` values are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nulls {
    /// A `null` is an absent field: nothing to check, and a required field that is `null` is
    /// missing (the server prunes nulls of non-nullable fields before it validates).
    Absent,
    /// A `null` in a typed field that is not `nullable` is a type error, and a required field
    /// that is present with `null` is present (what the validation step alone does).
    Invalid,
}

/// One value that breaks the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Dotted path of the field (`spec.analysis.match[0]`); for [`Violation::Required`] and
    /// [`Violation::Unknown`], the path of the missing or unknown field.
    pub path: String,
    /// The offending value (`null` for a missing field).
    pub value: Value,
    /// What is wrong with it.
    pub violation: Violation,
}

/// The rule a [`Finding`] breaks, with what a message needs to name it.
#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    /// `null` where the schema wants a `type` and is not `nullable` (only with [`Nulls::Invalid`]).
    Null {
        /// The schema's `type`.
        want: String,
    },
    /// The value has the wrong JSON type.
    Type {
        /// The schema's `type` (empty when it names none).
        want: String,
        /// The value's JSON type, as [`type_name`] names it.
        got: &'static str,
        /// The schema is `x-kubernetes-int-or-string`.
        int_or_string: bool,
    },
    /// Not one of the `enum` values.
    Enum {
        /// The allowed values.
        allowed: Vec<Value>,
    },
    /// A string that does not match `pattern`.
    Pattern {
        /// The regular expression.
        pattern: String,
    },
    /// A string shorter than `minLength` characters.
    MinLength(u64),
    /// A string longer than `maxLength` characters.
    MaxLength(u64),
    /// A number below `minimum` (or equal to it, when `exclusive`).
    Minimum {
        /// The schema's `minimum`.
        limit: Value,
        /// `exclusiveMinimum` is set.
        exclusive: bool,
    },
    /// A number above `maximum` (or equal to it, when `exclusive`).
    Maximum {
        /// The schema's `maximum`.
        limit: Value,
        /// `exclusiveMaximum` is set.
        exclusive: bool,
    },
    /// A list with fewer than `minItems` items.
    MinItems {
        /// The schema's `minItems`.
        min: u64,
        /// The list's length.
        got: usize,
    },
    /// A list with more than `maxItems` items.
    MaxItems {
        /// The schema's `maxItems`.
        max: u64,
        /// The list's length.
        got: usize,
    },
    /// A `required` field is missing.
    Required,
    /// An object with more than `maxProperties` fields.
    MaxProperties {
        /// The schema's `maxProperties`.
        max: u64,
        /// The object's field count.
        got: usize,
    },
    /// A field the schema does not declare and does not preserve: the server prunes it.
    Unknown {
        /// The field's name.
        key: String,
        /// The fields the schema declares there (for a "did you mean").
        known: Vec<String>,
    },
    /// Not exactly one `oneOf` branch matches.
    OneOf {
        /// The branches.
        branches: Vec<Value>,
        /// How many match.
        matched: usize,
    },
    /// No `anyOf` branch matches.
    AnyOf {
        /// The branches.
        branches: Vec<Value>,
    },
    /// The `not` schema matches.
    Not,
}

/// The JSON type of a value, as OpenAPI names it (`integer` for whole numbers stored as such).
pub fn type_name(v: &Value) -> &'static str {
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

/// `path.key`, or `key` at the root.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Validates `value` against `schema`, with paths starting at `path` (empty for a whole object,
/// whose `apiVersion`, `kind` and `metadata` are the API machinery's to check, not the schema's).
/// Findings come in the order of the checks, parents before children.
pub fn validate(value: &Value, schema: &Value, path: &str, nulls: Nulls) -> Vec<Finding> {
    let mut out = Vec::new();
    Walk { nulls }.node(value, schema, path, &mut out);
    out
}

struct Walk {
    nulls: Nulls,
}

fn flag(s: &Map<String, Value>, key: &str) -> bool {
    s.get(key) == Some(&Value::Bool(true))
}

fn type_ok(v: &Value, want: &str, int_or_string: bool) -> bool {
    if int_or_string {
        return v.is_string() || v.is_i64() || v.is_u64();
    }
    match want {
        // kube-openapi accepts a float with no fraction as an integer.
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "" => true,
        other => type_name(v) == other,
    }
}

impl Walk {
    fn node(&self, v: &Value, schema: &Value, path: &str, out: &mut Vec<Finding>) {
        let Some(s) = schema.as_object() else { return };
        let finding = |violation| Finding {
            path: path.to_string(),
            value: v.clone(),
            violation,
        };
        let want = s.get("type").and_then(Value::as_str).unwrap_or("");
        if v.is_null() {
            if self.nulls == Nulls::Invalid && !flag(s, "nullable") && s.contains_key("type") {
                let want = if want.is_empty() { "object" } else { want };
                out.push(finding(Violation::Null {
                    want: want.to_string(),
                }));
            }
            return;
        }
        let int_or_string = flag(s, "x-kubernetes-int-or-string");
        if !type_ok(v, want, int_or_string) {
            out.push(finding(Violation::Type {
                want: want.to_string(),
                got: type_name(v),
                int_or_string,
            }));
            return;
        }
        if let Some(allowed) = s.get("enum").and_then(Value::as_array)
            && !allowed.contains(v)
        {
            out.push(finding(Violation::Enum {
                allowed: allowed.clone(),
            }));
        }
        match v {
            Value::String(text) => self.string(s, text, &finding, out),
            Value::Number(n) => {
                let n = n.as_f64().unwrap_or(0.0);
                for (key, exclusive_key, below) in [
                    ("minimum", "exclusiveMinimum", true),
                    ("maximum", "exclusiveMaximum", false),
                ] {
                    let exclusive = flag(s, exclusive_key);
                    if let Some(limit) = s.get(key)
                        && let Some(l) = limit.as_f64()
                        && ((below && n < l) || (!below && n > l) || (exclusive && n == l))
                    {
                        let limit = limit.clone();
                        out.push(finding(if below {
                            Violation::Minimum { limit, exclusive }
                        } else {
                            Violation::Maximum { limit, exclusive }
                        }));
                    }
                }
            }
            Value::Array(items) => {
                let got = items.len();
                if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                    && got as u64 > max
                {
                    out.push(finding(Violation::MaxItems { max, got }));
                }
                if let Some(min) = s.get("minItems").and_then(Value::as_u64)
                    && (got as u64) < min
                {
                    out.push(finding(Violation::MinItems { min, got }));
                }
                if let Some(item_schema) = s.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.node(item, item_schema, &format!("{path}[{i}]"), out);
                    }
                }
            }
            Value::Object(fields) => self.object(s, fields, path, &finding, out),
            _ => {}
        }
        self.combinators(s, v, path, &finding, out);
    }

    fn string(
        &self,
        s: &Map<String, Value>,
        text: &str,
        finding: &dyn Fn(Violation) -> Finding,
        out: &mut Vec<Finding>,
    ) {
        if let Some(pattern) = s.get("pattern").and_then(Value::as_str)
            && regex::Regex::new(pattern).is_ok_and(|re| !re.is_match(text))
        {
            out.push(finding(Violation::Pattern {
                pattern: pattern.to_string(),
            }));
        }
        let len = text.chars().count() as u64;
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            out.push(finding(Violation::MaxLength(max)));
        }
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            out.push(finding(Violation::MinLength(min)));
        }
    }

    fn object(
        &self,
        s: &Map<String, Value>,
        fields: &Map<String, Value>,
        path: &str,
        finding: &dyn Fn(Violation) -> Finding,
        out: &mut Vec<Finding>,
    ) {
        for key in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let missing = match (fields.get(key), self.nulls) {
                (None, _) => true,
                (Some(v), Nulls::Absent) => v.is_null(),
                (Some(_), Nulls::Invalid) => false,
            };
            if missing {
                out.push(Finding {
                    path: join(path, key),
                    value: Value::Null,
                    violation: Violation::Required,
                });
            }
        }
        if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
            && fields.len() as u64 > max
        {
            out.push(finding(Violation::MaxProperties {
                max,
                got: fields.len(),
            }));
        }
        let props = s.get("properties").and_then(Value::as_object);
        let additional = s.get("additionalProperties");
        let preserve = flag(s, "x-kubernetes-preserve-unknown-fields")
            || additional == Some(&Value::Bool(true));
        for (key, child) in fields {
            if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            let child_path = join(path, key);
            if let Some(prop) = props.and_then(|p| p.get(key)) {
                self.node(child, prop, &child_path, out);
            } else if let Some(add) = additional.filter(|a| a.is_object()) {
                self.node(child, add, &child_path, out);
            } else if !preserve && props.is_some() {
                // Only a node that declares properties prunes: a junctor branch (`oneOf:
                // [{required: [x]}]`) constrains the same object without declaring it.
                let known = props.into_iter().flat_map(|p| p.keys().cloned()).collect();
                out.push(Finding {
                    path: child_path,
                    value: child.clone(),
                    violation: Violation::Unknown {
                        key: key.clone(),
                        known,
                    },
                });
            }
        }
    }

    /// `oneOf`, `anyOf`, `allOf` and `not`, judged on the same value. A branch matches when it
    /// has no finding other than unknown fields.
    fn combinators(
        &self,
        s: &Map<String, Value>,
        v: &Value,
        path: &str,
        finding: &dyn Fn(Violation) -> Finding,
        out: &mut Vec<Finding>,
    ) {
        let matches = |branch: &Value| {
            let mut tmp = Vec::new();
            self.node(v, branch, path, &mut tmp);
            tmp.iter()
                .all(|f| matches!(f.violation, Violation::Unknown { .. }))
        };
        if let Some(branches) = s.get("oneOf").and_then(Value::as_array) {
            let matched = branches.iter().filter(|b| matches(b)).count();
            if matched != 1 {
                out.push(finding(Violation::OneOf {
                    branches: branches.clone(),
                    matched,
                }));
            }
        }
        if let Some(branches) = s.get("anyOf").and_then(Value::as_array)
            && !branches.iter().any(matches)
        {
            out.push(finding(Violation::AnyOf {
                branches: branches.clone(),
            }));
        }
        for branch in s
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.node(v, branch, path, out);
        }
        if let Some(not) = s.get("not")
            && matches(not)
        {
            out.push(finding(Violation::Not));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["target"],
        "properties": {
            "target": {"type": "string", "pattern": "^[a-z]+$", "minLength": 2, "maxLength": 5},
            "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "exclusiveMaximum": true},
            "mode": {"type": "string", "enum": ["a", "b"]},
            "items": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}},
            "labels": {"type": "object", "maxProperties": 1,
                       "additionalProperties": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "port": {"x-kubernetes-int-or-string": true},
            "choice": {"type": "object", "oneOf": [{"required": ["x"]}, {"required": ["y"]}],
                       "properties": {"x": {"type": "string"}, "y": {"type": "string"}}},
            "some": {"type": "object", "anyOf": [{"required": ["x"]}, {"required": ["y"]}],
                     "properties": {"x": {"type": "string"}, "y": {"type": "string"}}},
            "both": {"type": "string", "allOf": [{"pattern": "^a"}, {"pattern": "b$"}]},
            "neither": {"type": "object", "not": {"required": ["x"]},
                        "properties": {"x": {"type": "string"}}}
        }}}})
    }

    fn findings(spec: Value, nulls: Nulls) -> Vec<(String, Violation)> {
        let doc = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": 1}, "spec": spec});
        validate(&doc, &schema(), "", nulls)
            .into_iter()
            .map(|f| (f.path, f.violation))
            .collect()
    }

    #[test]
    fn a_valid_object_has_no_findings() {
        let spec = json!({"target": "abc", "replicas": 3, "mode": "a", "items": ["x"],
            "labels": {"a": "b"}, "free": {"any": {"deep": 1}}, "port": "http",
            "choice": {"x": "1"}, "some": {"y": "1"}, "both": "ab", "neither": {}});
        assert_eq!(findings(spec, Nulls::Invalid), vec![]);
    }

    #[test]
    fn each_keyword_reports_its_violation_at_its_path() {
        let v = |s: &str| Value::String(s.to_string());
        let cases: Vec<(Value, &str, Violation)> = vec![
            (json!({}), "spec.target", Violation::Required),
            (
                json!({"target": "A1"}),
                "spec.target",
                Violation::Pattern {
                    pattern: "^[a-z]+$".into(),
                },
            ),
            (
                json!({"target": "a"}),
                "spec.target",
                Violation::MinLength(2),
            ),
            (
                json!({"target": "abcdef"}),
                "spec.target",
                Violation::MaxLength(5),
            ),
            (
                json!({"target": "ab", "replicas": -1}),
                "spec.replicas",
                Violation::Minimum {
                    limit: json!(0),
                    exclusive: false,
                },
            ),
            (
                json!({"target": "ab", "replicas": 10}),
                "spec.replicas",
                Violation::Maximum {
                    limit: json!(10),
                    exclusive: true,
                },
            ),
            (
                json!({"target": "ab", "replicas": "x"}),
                "spec.replicas",
                Violation::Type {
                    want: "integer".into(),
                    got: "string",
                    int_or_string: false,
                },
            ),
            (
                json!({"target": "ab", "mode": "c"}),
                "spec.mode",
                Violation::Enum {
                    allowed: vec![v("a"), v("b")],
                },
            ),
            (
                json!({"target": "ab", "items": []}),
                "spec.items",
                Violation::MinItems { min: 1, got: 0 },
            ),
            (
                json!({"target": "ab", "items": ["1", "2", "3"]}),
                "spec.items",
                Violation::MaxItems { max: 2, got: 3 },
            ),
            (
                json!({"target": "ab", "items": [1]}),
                "spec.items[0]",
                Violation::Type {
                    want: "string".into(),
                    got: "integer",
                    int_or_string: false,
                },
            ),
            (
                json!({"target": "ab", "labels": {"a": "1", "b": "2"}}),
                "spec.labels",
                Violation::MaxProperties { max: 1, got: 2 },
            ),
            (
                json!({"target": "ab", "port": true}),
                "spec.port",
                Violation::Type {
                    want: String::new(),
                    got: "boolean",
                    int_or_string: true,
                },
            ),
            (
                json!({"target": "ab", "extra": 1}),
                "spec.extra",
                Violation::Unknown {
                    key: "extra".into(),
                    known: [
                        "both", "choice", "free", "items", "labels", "mode", "neither", "port",
                        "replicas", "some", "target",
                    ]
                    .map(String::from)
                    .to_vec(),
                },
            ),
            (
                json!({"target": "ab", "choice": {"x": "1", "y": "2"}}),
                "spec.choice",
                Violation::OneOf {
                    branches: vec![json!({"required": ["x"]}), json!({"required": ["y"]})],
                    matched: 2,
                },
            ),
            (
                json!({"target": "ab", "some": {}}),
                "spec.some",
                Violation::AnyOf {
                    branches: vec![json!({"required": ["x"]}), json!({"required": ["y"]})],
                },
            ),
            (
                json!({"target": "ab", "both": "ax"}),
                "spec.both",
                Violation::Pattern {
                    pattern: "b$".into(),
                },
            ),
            (
                json!({"target": "ab", "neither": {"x": "1"}}),
                "spec.neither",
                Violation::Not,
            ),
        ];
        for (spec, path, violation) in cases {
            assert_eq!(
                findings(spec.clone(), Nulls::Invalid),
                vec![(path.to_string(), violation)],
                "{spec}"
            );
        }
    }

    #[test]
    fn a_whole_number_stored_as_a_float_is_an_integer() {
        assert_eq!(
            findings(json!({"target": "ab", "replicas": 2.0}), Nulls::Invalid),
            vec![]
        );
    }

    #[test]
    fn nulls_are_absent_or_invalid_as_asked() {
        let spec = json!({"target": null, "mode": null});
        assert_eq!(
            findings(spec.clone(), Nulls::Absent),
            vec![("spec.target".to_string(), Violation::Required)]
        );
        let null = |want: &str| Violation::Null { want: want.into() };
        assert_eq!(
            findings(spec, Nulls::Invalid),
            vec![
                ("spec.mode".to_string(), null("string")),
                ("spec.target".to_string(), null("string")),
            ]
        );
    }
}
