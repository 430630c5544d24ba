//! Renders query templates in Flagger's template syntax (`{{ namespace }}`, `{{ variables.key }}`);
//! pure.
//!
//! Flagger executes MetricTemplate queries as Go `text/template`s whose only data are niladic
//! functions (`name`, `namespace`, `target`, `service`, `ingress`, `route`, `interval`) and the
//! `variables` map, with `missingkey=error`. Those actions are everything a template can usefully
//! contain, so this renderer implements exactly them (with Go's `{{-`/`-}}` whitespace trimming and
//! `{{/* comments */}}`) and rejects anything else with a message that names the action. An unknown
//! name is an error, never an empty string: an empty label matcher would silently match nothing
//! and look like "no data".
use std::collections::BTreeMap;

use super::Canary;
use super::canary::CanaryMetric;

/// The names a template may use besides `variables.<key>`.
pub const TEMPLATE_FUNCTIONS: [&str; 7] = [
    "name",
    "namespace",
    "target",
    "service",
    "ingress",
    "route",
    "interval",
];

/// Why a template cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `{{` without a matching `}}`.
    #[error("unclosed action starting at byte {0}")]
    Unclosed(usize),
    /// A name the template model does not define.
    #[error(
        "unknown template variable {0:?}; expected one of name, namespace, target, service, ingress, route, interval, variables.<key>"
    )]
    UnknownVariable(String),
    /// `variables.<key>` with a key that `templateVariables` does not set.
    #[error("templateVariables has no key {0:?} (used as {{{{ variables.{0} }}}})")]
    MissingVariable(String),
    /// An action this renderer does not implement (pipelines, `printf`, `if`, …).
    #[error(
        "unsupported template action {{{{{0}}}}}: only {{{{ <name> }}}} and {{{{ variables.<key> }}}} are supported"
    )]
    Unsupported(String),
}

/// The values a template sees: Flagger's `MetricTemplateModel`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    /// The Canary's name.
    pub name: String,
    /// The Canary's namespace.
    pub namespace: String,
    /// `spec.targetRef.name`.
    pub target: String,
    /// `spec.service.name`, else the target.
    pub service: String,
    /// `spec.ingressRef.name`, else the target.
    pub ingress: String,
    /// `spec.routeRef.name`, else the target.
    pub route: String,
    /// The metric's query window (default `1m`).
    pub interval: String,
    /// `templateVariables`.
    pub variables: BTreeMap<String, String>,
}

impl Model {
    /// The model for one metric of a canary, as Flagger builds it.
    pub fn for_metric(canary: &Canary, metric: &CanaryMetric) -> Self {
        let spec = &canary.spec;
        let target = spec
            .target_ref
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        let or_target = |n: Option<&String>| {
            n.filter(|n| !n.is_empty())
                .cloned()
                .unwrap_or_else(|| target.clone())
        };
        Self {
            name: canary.metadata.name.clone().unwrap_or_default(),
            namespace: canary.metadata.namespace.clone().unwrap_or_default(),
            service: or_target(spec.service.as_ref().and_then(|s| s.name.as_ref())),
            ingress: or_target(spec.ingress_ref.as_ref().map(|r| &r.name)),
            route: or_target(spec.route_ref.as_ref().map(|r| &r.name)),
            target,
            interval: metric.interval_or_default().to_string(),
            variables: metric.template_variables.clone().unwrap_or_default(),
        }
    }

    fn lookup(&self, name: &str) -> Result<&str, Error> {
        Ok(match name {
            "name" => &self.name,
            "namespace" => &self.namespace,
            "target" => &self.target,
            "service" => &self.service,
            "ingress" => &self.ingress,
            "route" => &self.route,
            "interval" => &self.interval,
            _ => {
                if let Some(key) = name.strip_prefix("variables.") {
                    return self
                        .variables
                        .get(key)
                        .map(String::as_str)
                        .ok_or_else(|| Error::MissingVariable(key.to_string()));
                }
                return Err(Error::UnknownVariable(name.to_string()));
            }
        })
    }
}

/// One piece of a parsed template.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// Splits a template into text and variable references, applying Go's trim markers.
fn parse(template: &str) -> Result<Vec<Piece<'_>>, Error> {
    let mut pieces = Vec::new();
    let mut rest = template;
    let mut offset = 0;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let trim_before = after.starts_with("- ") || after.starts_with("-\t") || after == "-";
        if trim_before {
            text = text.trim_end();
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let close = after.find("}}").ok_or(Error::Unclosed(offset + open))?;
        let mut inner = &after[..close];
        if trim_before {
            inner = &inner[1..];
        }
        trim_next = inner.ends_with(" -") || inner.ends_with("\t-");
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        let action = inner.trim();
        if !(action.starts_with("/*") && action.ends_with("*/")) {
            pieces.push(Piece::Var(parse_action(action)?));
        }
        let consumed = open + 2 + close + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn parse_action(action: &str) -> Result<&str, Error> {
    let is_ident = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if TEMPLATE_FUNCTIONS.contains(&action) {
        return Ok(action);
    }
    match action.split_once('.') {
        Some(("variables", key)) if is_ident(key) => Ok(action),
        _ if is_ident(action) || action.starts_with('.') && is_ident(&action[1..]) => {
            Err(Error::UnknownVariable(action.to_string()))
        }
        _ => Err(Error::Unsupported(action.to_string())),
    }
}

/// Renders `template` with `model`.
pub fn render(template: &str, model: &Model) -> Result<String, Error> {
    let mut out = String::with_capacity(template.len());
    for piece in parse(template)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(v) => out.push_str(model.lookup(v)?),
        }
    }
    Ok(out)
}

/// Checks a template without values: every action is a known name or `variables.<key>`. Used by
/// validation, where `templateVariables` are not known yet.
pub fn check(template: &str) -> Result<(), Error> {
    parse(template).map(|_| ())
}

/// Collapses runs of whitespace to single spaces, as Flagger does before sending a query.
pub fn collapse_whitespace(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model {
            name: "podinfo".into(),
            namespace: "test".into(),
            target: "podinfo".into(),
            service: "podinfo-svc".into(),
            ingress: "podinfo-ing".into(),
            route: "podinfo-route".into(),
            interval: "1m".into(),
            variables: BTreeMap::from([("quantile".to_string(), "0.95".to_string())]),
        }
    }

    #[test]
    fn every_name_and_variables_render() {
        let got = render(
            "{{ name }}|{{namespace}}|{{ target }}|{{ service }}|{{ ingress }}|{{ route }}|{{ interval }}|{{ variables.quantile }}",
            &model(),
        );
        assert_eq!(
            got.as_deref(),
            Ok("podinfo|test|podinfo|podinfo-svc|podinfo-ing|podinfo-route|1m|0.95")
        );
    }

    #[test]
    fn unknown_names_are_errors_not_empty_strings() {
        assert_eq!(
            render("x{{ cluster }}", &model()),
            Err(Error::UnknownVariable("cluster".into()))
        );
        assert_eq!(
            render("{{ .namespace }}", &model()),
            Err(Error::UnknownVariable(".namespace".into()))
        );
        assert_eq!(
            render("{{ variables.missing }}", &model()),
            Err(Error::MissingVariable("missing".into()))
        );
    }

    #[test]
    fn unsupported_actions_and_unclosed_braces_are_errors() {
        assert!(matches!(
            render("{{ printf \"%s\" name }}", &model()),
            Err(Error::Unsupported(_))
        ));
        assert_eq!(render("ab{{ name ", &model()), Err(Error::Unclosed(2)));
    }

    #[test]
    fn trim_markers_and_comments_follow_go() {
        assert_eq!(
            render("a  {{- name -}}  b", &model()).as_deref(),
            Ok("apodinfob")
        );
        assert_eq!(render("a {{/* note */}}b", &model()).as_deref(), Ok("a b"));
        // A minus sign without a space belongs to the name, as in Go.
        assert_eq!(
            render("{{-1}}", &model()),
            Err(Error::UnknownVariable("-1".into()))
        );
    }

    #[test]
    fn text_without_actions_is_unchanged() {
        assert_eq!(render("vector(1)", &model()).as_deref(), Ok("vector(1)"));
        assert_eq!(render("", &model()).as_deref(), Ok(""));
    }

    #[test]
    fn whitespace_collapses_to_single_spaces() {
        assert_eq!(
            collapse_whitespace("  sum(\n  rate(x[1m])\n)\t"),
            "sum( rate(x[1m]) )"
        );
    }

    /// Every MetricTemplate in `examples/` renders with a model that sets every name and the
    /// variables the example canary sets. (Inline `query` fields are sent verbatim, as in Flagger.)
    #[test]
    fn every_example_template_renders() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut queries = Vec::new();
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("examples/ is readable") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("example is readable");
                for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                    let v: serde_json::Value =
                        serde::Deserialize::deserialize(doc).expect("example is YAML");
                    if v["kind"] == "MetricTemplate" {
                        let q = v["spec"]["query"].as_str().expect("template has a query");
                        queries.push((path.display().to_string(), q.to_string()));
                    }
                }
            }
        }
        assert!(
            queries.len() >= 13,
            "found only {} templates",
            queries.len()
        );
        for (path, q) in queries {
            let out = render(&q, &model()).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(!out.contains("{{"), "{path}: left an action in {out}");
            assert!(
                out.contains("test") || out.contains("podinfo"),
                "{path}: rendered without any canary value: {out}"
            );
        }
    }
}
