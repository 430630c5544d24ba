//! Label and field selectors as list and watch parse and apply them (pure).
use serde_json::Value;
use std::collections::BTreeMap;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    /// `key` (exists).
    Exists(String),
    /// `!key`.
    NotExists(String),
    /// `key=v`, `key==v`, `key in (a,b)`.
    In(String, Vec<String>),
    /// `key!=v`, `key notin (a,b)`.
    NotIn(String, Vec<String>),
}

/// A parsed label selector; empty selects everything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector(pub Vec<Requirement>);

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let mut parts = vec![];
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl LabelSelector {
    /// Parses `labelSelector` syntax: `=`, `==`, `!=`, `in`, `notin`, `key`, `!key`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = vec![];
        for part in split_top(s) {
            let bad = || format!("unable to parse requirement: {part:?}");
            if let Some(k) = part.strip_prefix('!') {
                let k = k.trim();
                if !valid_key(k) {
                    return Err(bad());
                }
                reqs.push(Requirement::NotExists(k.to_string()));
            } else if let Some((k, v)) = part.split_once("!=") {
                reqs.push(Requirement::NotIn(
                    k.trim().to_string(),
                    vec![v.trim().to_string()],
                ));
            } else if let Some((k, v)) = part.split_once("==") {
                reqs.push(Requirement::In(
                    k.trim().to_string(),
                    vec![v.trim().to_string()],
                ));
            } else if let Some((k, v)) = part.split_once('=') {
                reqs.push(Requirement::In(
                    k.trim().to_string(),
                    vec![v.trim().to_string()],
                ));
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                reqs.push(Requirement::NotIn(
                    k.trim().to_string(),
                    parse_set(rest).ok_or_else(bad)?,
                ));
            } else if let Some((k, rest)) = part.split_once(" in ") {
                reqs.push(Requirement::In(
                    k.trim().to_string(),
                    parse_set(rest).ok_or_else(bad)?,
                ));
            } else if valid_key(&part) {
                reqs.push(Requirement::Exists(part.clone()));
            } else {
                return Err(bad());
            }
            let key = match reqs.last() {
                Some(
                    Requirement::Exists(k)
                    | Requirement::NotExists(k)
                    | Requirement::In(k, _)
                    | Requirement::NotIn(k, _),
                ) => k,
                None => continue,
            };
            if !valid_key(key) {
                return Err(bad());
            }
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether a set of labels satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let labels: BTreeMap<String, String> = obj["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        self.matches(&labels)
    }
}

/// One field requirement: `path=value` or `path!=value`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldRequirement {
    /// Dotted field path such as `metadata.name`.
    pub path: String,
    /// Required value.
    pub value: String,
    /// `!=` rather than `=`.
    pub negate: bool,
}

/// A parsed field selector; empty selects everything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

impl FieldSelector {
    /// Parses `fieldSelector` syntax and checks each path is one the kind supports
    /// (`metadata.name`, `metadata.namespace` and the kind's extra `supported` ones).
    pub fn parse(s: &str, supported: &[String]) -> Result<Self, String> {
        let mut reqs = vec![];
        for part in split_top(s) {
            let (path, value, negate) = if let Some((k, v)) = part.split_once("!=") {
                (k, v, true)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, v, false)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, v, false)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            let path = path.trim().to_string();
            if path != "metadata.name" && path != "metadata.namespace" && !supported.contains(&path)
            {
                return Err(format!("field label not supported: {path}"));
            }
            reqs.push(FieldRequirement {
                path,
                value: value.trim().to_string(),
                negate,
            });
        }
        Ok(FieldSelector(reqs))
    }

    /// The name this selector pins (`metadata.name=x`), if any.
    pub fn name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|r| r.path == "metadata.name" && !r.negate)
            .map(|r| r.value.as_str())
    }

    /// Whether an object satisfies every requirement.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.0.iter().all(|r| {
            let mut cur = obj;
            for seg in r.path.split('.') {
                cur = &cur[seg];
            }
            let actual = match cur {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (actual == r.value) != r.negate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_label_operator_selects_as_kubernetes_does() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let cases = [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=api", true),
            ("missing!=x", true),
            ("app in (api, web)", true),
            ("app notin (api,web)", false),
            ("tier notin (back)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier=back", false),
            ("app in (web),!missing,tier", true),
            ("", true),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).expect(sel);
            assert_eq!(s.matches(&l), want, "{sel}");
        }
    }

    #[test]
    fn malformed_label_selectors_are_rejected() {
        for bad in ["app in web", "a b", "app in (web"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_selectors_match_name_and_namespace() {
        let obj =
            json!({"metadata": {"name": "a", "namespace": "ns"}, "status": {"phase": "Running"}});
        let s =
            FieldSelector::parse("metadata.name=a,metadata.namespace!=other", &[]).expect("parses");
        assert!(s.matches_object(&obj));
        assert_eq!(s.name(), Some("a"));
        let phase =
            FieldSelector::parse("status.phase=Pending", &["status.phase".into()]).expect("parses");
        assert!(!phase.matches_object(&obj));
    }

    #[test]
    fn unsupported_field_labels_are_rejected() {
        let e = FieldSelector::parse("spec.foo=bar", &[]).expect_err("unsupported");
        assert_eq!(e, "field label not supported: spec.foo");
    }
}
