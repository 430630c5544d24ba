//! Test fixtures as builders (`Canary::test().provider("istio").progressing(40)`), shared by unit
//! and integration tests; pure, test-only (hidden from the docs), no dependency beyond serde_json.
use serde_json::{Value, json};

use super::Canary;

/// A Canary under construction, kept as JSON so that end-to-end tests can post it as it is and
/// unit tests can parse it ([`CanaryBuilder::build`]).
///
/// It starts as the podinfo Canary of Flagger's tutorials: `podinfo` in `test`,
/// targeting the Deployment `podinfo`, `service.port: 9898`, and an analysis of `interval: 15s`,
/// `threshold: 2`, `stepWeight: 10`.
#[derive(Clone, Debug)]
pub struct CanaryBuilder {
    doc: Value,
}

impl Canary {
    /// The podinfo test Canary, to adjust with the [`CanaryBuilder`] methods.
    pub fn test() -> CanaryBuilder {
        CanaryBuilder::default()
    }
}

impl super::template::Model {
    /// The query model of the podinfo test Canary: every name `podinfo`, in `test`, over a `1m`
    /// window, no variables.
    pub fn test() -> Self {
        Self {
            name: "podinfo".into(),
            namespace: "test".into(),
            target: "podinfo".into(),
            service: "podinfo".into(),
            ingress: "podinfo".into(),
            route: "podinfo".into(),
            interval: "1m".into(),
            ..Default::default()
        }
    }
}

impl Default for CanaryBuilder {
    fn default() -> Self {
        Self {
            doc: json!({
                "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
                "metadata": {"name": "podinfo", "namespace": "test"},
                "spec": {
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                    "service": {"port": 9898},
                    "analysis": {"interval": "15s", "threshold": 2, "stepWeight": 10}
                }
            }),
        }
    }
}

impl CanaryBuilder {
    /// `metadata.name`.
    pub fn name(mut self, name: &str) -> Self {
        self.doc["metadata"]["name"] = json!(name);
        self
    }

    /// Names the Canary and its target Deployment `name`.
    pub fn workload(self, name: &str) -> Self {
        self.name(name).target("apps/v1", "Deployment", name)
    }

    /// Blue/green on the kubernetes provider: `iterations` analysis runs `interval` apart, no
    /// traffic steps.
    pub fn blue_green(self, interval: &str, iterations: i32) -> Self {
        self.provider("kubernetes")
            .analysis(json!({"interval": interval, "iterations": iterations, "stepWeight": null}))
    }

    /// `metadata.namespace`.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.doc["metadata"]["namespace"] = json!(namespace);
        self
    }

    /// `metadata.uid` (what owner references of generated objects point at).
    pub fn uid(mut self, uid: &str) -> Self {
        self.doc["metadata"]["uid"] = json!(uid);
        self
    }

    /// Merges `fields` into `metadata` (labels, annotations, uid…); a `null` removes a field.
    pub fn metadata(mut self, fields: Value) -> Self {
        merge_into(&mut self.doc["metadata"], fields);
        self
    }

    /// `spec.provider`.
    pub fn provider(mut self, provider: &str) -> Self {
        self.doc["spec"]["provider"] = json!(provider);
        self
    }

    /// `spec.targetRef`: a target of `kind` (`Deployment`, `DaemonSet`, `Service`, Knative's
    /// `Service`…) named `name`, with the apiVersion that kind has.
    pub fn target(mut self, api_version: &str, kind: &str, name: &str) -> Self {
        self.doc["spec"]["targetRef"] =
            json!({"apiVersion": api_version, "kind": kind, "name": name});
        self
    }

    /// `spec.service.port`.
    pub fn port(mut self, port: i32) -> Self {
        self.doc["spec"]["service"]["port"] = json!(port);
        self
    }

    /// Merges `fields` into `spec`, one level deep for `service` and `analysis` (the rest is
    /// replaced); a `null` removes a field.
    pub fn spec(mut self, fields: Value) -> Self {
        for (k, v) in fields.as_object().into_iter().flatten() {
            let spec = &mut self.doc["spec"];
            match (spec.get_mut(k), v) {
                (Some(dst @ Value::Object(_)), Value::Object(_))
                    if k == "service" || k == "analysis" =>
                {
                    merge_into(dst, v.clone());
                }
                _ if v.is_null() => {
                    if let Some(m) = spec.as_object_mut() {
                        m.remove(k);
                    }
                }
                _ => spec[k] = v.clone(),
            }
        }
        self
    }

    /// Sets each field of `fields` on `spec` as it is, replacing what was there (`service` and
    /// `analysis` included); a `null` removes a field.
    pub fn replace(mut self, fields: Value) -> Self {
        merge_into(&mut self.doc["spec"], fields);
        self
    }

    /// Merges `fields` into `spec.analysis`; a `null` removes a field.
    pub fn analysis(self, fields: Value) -> Self {
        self.spec(json!({ "analysis": fields }))
    }

    /// Appends a metric (`{"name": .., "thresholdRange": ..}`) to `spec.analysis.metrics`.
    pub fn metric(self, metric: Value) -> Self {
        self.push_analysis("metrics", metric)
    }

    /// Appends a webhook (`{"name": .., "type": .., "url": ..}`) to `spec.analysis.webhooks`.
    pub fn webhook(self, webhook: Value) -> Self {
        self.push_analysis("webhooks", webhook)
    }

    /// A status in phase `Progressing` at `weight` percent to the canary.
    pub fn progressing(self, weight: i32) -> Self {
        self.status(json!({"phase": "Progressing", "canaryWeight": weight}))
    }

    /// Merges `fields` into `status`.
    pub fn status(mut self, fields: Value) -> Self {
        if !self.doc["status"].is_object() {
            self.doc["status"] = json!({});
        }
        merge_into(&mut self.doc["status"], fields);
        self
    }

    /// The Canary as JSON, as an end-to-end test posts it.
    pub fn json(self) -> Value {
        self.doc
    }

    /// The Canary.
    ///
    /// # Panics
    /// When the fields set do not parse as a Canary: a mistake in the test itself.
    pub fn build(self) -> Canary {
        match serde_json::from_value(self.doc) {
            Ok(c) => c,
            Err(e) => panic!("the test Canary does not parse: {e}"),
        }
    }

    fn push_analysis(mut self, list: &str, item: Value) -> Self {
        let slot = &mut self.doc["spec"]["analysis"][list];
        match slot.as_array_mut() {
            Some(items) => items.push(item),
            None => *slot = json!([item]),
        }
        self
    }
}

/// Turns `spec` into the podinfo Knative Service's: provider `knative`, a
/// `serving.knative.dev/v1` Service target and no `service` (Knative routes by itself).
pub fn knative(spec: &mut super::CanarySpec) {
    spec.provider = Some("knative".into());
    spec.service = None;
    spec.target_ref = Some(super::canary::TargetRef {
        api_version: "serving.knative.dev/v1".into(),
        kind: "Service".into(),
        name: "podinfo".into(),
    });
}

/// Sets each field of `fields` on the object `dst`, removing those that are `null`.
fn merge_into(dst: &mut Value, fields: Value) {
    let Value::Object(fields) = fields else {
        return;
    };
    if !dst.is_object() {
        *dst = json!({});
    }
    if let Some(dst) = dst.as_object_mut() {
        for (k, v) in fields {
            if v.is_null() {
                dst.remove(&k);
            } else {
                dst.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_podinfo_canary() {
        let c = Canary::test().build();
        assert_eq!(c.metadata.name.as_deref(), Some("podinfo"));
        assert_eq!(c.metadata.namespace.as_deref(), Some("test"));
        assert_eq!(
            c.spec.target_ref.map(|t| t.name).as_deref(),
            Some("podinfo")
        );
        assert_eq!(c.spec.service.as_ref().map(|s| s.port), Some(9898));
    }

    #[test]
    fn spec_merges_service_and_analysis_one_level_deep_and_nulls_remove() {
        let doc = Canary::test()
            .provider("istio")
            .spec(json!({"service": {"timeout": "15s"}, "analysis": {"stepWeight": null, "iterations": 3}}))
            .metric(json!({"name": "request-success-rate"}))
            .webhook(json!({"name": "load", "url": "http://load/"}))
            .metric(json!({"name": "latency"}))
            .json();
        assert_eq!(doc["spec"]["provider"], "istio");
        assert_eq!(
            doc["spec"]["service"],
            json!({"port": 9898, "timeout": "15s"})
        );
        assert_eq!(
            doc["spec"]["analysis"],
            json!({"interval": "15s", "threshold": 2, "iterations": 3,
                "metrics": [{"name": "request-success-rate"}, {"name": "latency"}],
                "webhooks": [{"name": "load", "url": "http://load/"}]})
        );
    }

    #[test]
    fn blue_green_workload_targets_its_deployment_with_iterations_and_no_steps() {
        let doc = Canary::test().workload("quiet").blue_green("1s", 2).json();
        assert_eq!(doc["metadata"]["name"], "quiet");
        assert_eq!(
            doc["spec"]["targetRef"],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "quiet"})
        );
        assert_eq!(doc["spec"]["provider"], "kubernetes");
        assert_eq!(
            doc["spec"]["analysis"],
            json!({"interval": "1s", "threshold": 2, "iterations": 2})
        );
    }

    #[test]
    fn progressing_sets_the_phase_and_the_weight() {
        let doc = Canary::test().progressing(40).json();
        assert_eq!(
            doc["status"],
            json!({"phase": "Progressing", "canaryWeight": 40})
        );
    }
}
