//! The real [`MetricsChecker`]: resolves each metric (builtin, MetricTemplate, inline query) to a
//! query and a provider (Prometheus for builtins and inline queries, the template's type through
//! [`registry::build`] otherwise), runs it and judges it; network I/O (Kubernetes API for
//! MetricTemplates and Secrets, the metrics backends for queries).
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use std::collections::BTreeMap;
use std::time::Duration;

use super::baseline;
use super::builtin::{self, Observer};
use super::evaluate::{self, Kind, Reading, Subject};
use super::prometheus::{Endpoint, Prometheus};
use super::provider::{self, ProviderConfig, QueryContext};
use super::registry;
use super::{AnalysisReport, MetricsChecker};
use crate::api::canary::{CanaryMetric, CheckRecord};
use crate::api::duration::parse_duration;
use crate::api::template::{self, Model};
use crate::api::{Canary, MetricTemplate};

pub use crate::api::metric_template::SAMPLE_QUERY_ANNOTATION;

/// Reads the objects a check needs. A trait so that the checker can run against a real
/// Prometheus without a Kubernetes API in tests.
#[async_trait]
pub trait Objects: Send + Sync {
    /// The MetricTemplate `namespace/name`.
    async fn metric_template(&self, namespace: &str, name: &str) -> Result<MetricTemplate, String>;
    /// The data of Secret `namespace/name`.
    async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, String>;
    /// `status.latestCreatedRevisionName` of Knative Service `namespace/name`: Flagger's
    /// `{{ route }}` for Knative canaries. Without a Kubernetes API there is none.
    async fn knative_latest_revision(&self, namespace: &str, name: &str) -> Result<String, String> {
        Err(format!(
            "cannot read Knative Service {namespace}/{name}: no Kubernetes API"
        ))
    }
}

/// [`Objects`] read from the Kubernetes API, one GET per use (only while a run is analysed).
#[derive(Clone)]
pub struct KubeObjects(pub kube::Client);

#[async_trait]
impl Objects for KubeObjects {
    async fn metric_template(&self, namespace: &str, name: &str) -> Result<MetricTemplate, String> {
        kube::Api::<MetricTemplate>::namespaced(self.0.clone(), namespace)
            .get(name)
            .await
            .map_err(|e| format!("cannot get MetricTemplate {namespace}/{name}: {e}"))
    }

    async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let s = kube::Api::<Secret>::namespaced(self.0.clone(), namespace)
            .get(name)
            .await
            .map_err(|e| format!("cannot get Secret {namespace}/{name}: {e}"))?;
        let mut data: BTreeMap<String, Vec<u8>> = s
            .string_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        for (k, v) in s.data.unwrap_or_default() {
            data.insert(k, v.0);
        }
        Ok(data)
    }

    async fn knative_latest_revision(&self, namespace: &str, name: &str) -> Result<String, String> {
        let ar = crate::core::knative::resource();
        let s =
            kube::Api::<kube::api::DynamicObject>::namespaced_with(self.0.clone(), namespace, &ar)
                .get(name)
                .await
                .map_err(|e| format!("cannot get Knative Service {namespace}/{name}: {e}"))?;
        let json = serde_json::to_value(&s)
            .map_err(|e| format!("cannot read Knative Service {namespace}/{name}: {e}"))?;
        crate::core::knative::read_state(&json)
            .latest_created
            .ok_or_else(|| format!("Knative Service {namespace}/{name} has no revision yet"))
    }
}

/// Runs a canary's metric checks: builtins against Prometheus, MetricTemplates against the
/// provider their type names.
pub struct Analyzer<O> {
    objects: O,
    kube: Option<kube::Client>,
    prometheus: Prometheus,
    default_server: String,
    mesh_provider: String,
    /// Serin (`serin replay`): the time the checks are evaluated at, instead of now.
    at: Option<DateTime<Utc>>,
}

/// The namespace of the MetricTemplate `r` names: its own, else the Canary's.
fn template_namespace<'a>(
    canary: &'a Canary,
    r: &'a crate::api::canary::CrossNamespaceRef,
) -> &'a str {
    let canary_ns = canary.metadata.namespace.as_deref().unwrap_or_default();
    r.namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(canary_ns)
}

impl<O: Objects> Analyzer<O> {
    /// A checker that reads objects through `objects`, queries `default_server` (the
    /// `--metrics-server` flag) unless a canary or template names another, and picks builtin
    /// queries for `mesh_provider` (the `--mesh-provider` flag) unless the canary names one.
    pub fn new(
        objects: O,
        default_server: impl Into<String>,
        mesh_provider: impl Into<String>,
    ) -> Result<Self, super::prometheus::Error> {
        Ok(Self {
            objects,
            kube: None,
            prometheus: Prometheus::new()?,
            default_server: default_server.into(),
            mesh_provider: mesh_provider.into(),
            at: None,
        })
    }

    /// Evaluates every Prometheus query at `t` (history) and stamps the records with it.
    pub fn at(mut self, t: DateTime<Utc>) -> Self {
        self.prometheus = self.prometheus.at(t.timestamp());
        self.at = Some(t);
        self
    }

    fn now(&self) -> DateTime<Utc> {
        self.at.unwrap_or_else(Utc::now)
    }

    /// Gives providers that read the Kubernetes API (keptn, externalmetrics) a client.
    pub fn with_kube(mut self, client: kube::Client) -> Self {
        self.kube = Some(client);
        self
    }

    fn canary_server(&self, canary: &Canary) -> Endpoint {
        let addr = canary
            .spec
            .metrics_server
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.default_server);
        Endpoint::plain(addr)
    }

    /// Evaluates one metric; a builtin with a template or query also runs those, as in Flagger.
    async fn check_metric(
        &self,
        canary: &Canary,
        metric: &CanaryMetric,
        subject: &Subject,
        route: Option<&Result<String, String>>,
    ) -> Vec<CheckRecord> {
        let now = self.now();
        let mut model = Model::for_metric(canary, metric);
        let observer = Observer::for_provider(&subject.provider);
        match route {
            Some(Ok(revision)) => model.route = revision.clone(),
            Some(Err(e)) => {
                // Without the revision name the query would silently measure something else.
                let kind = if metric.is_builtin() {
                    evaluate::kind_of(metric, observer.duration_to_ms())
                } else {
                    Kind::Custom
                };
                let reading = Reading::Failed(e.clone());
                return vec![evaluate::judge(metric, kind, None, reading, subject, now)];
            }
            None => {}
        }
        let mut out = Vec::new();
        if metric.is_builtin() {
            let kind = evaluate::kind_of(metric, observer.duration_to_ms());
            let (query, reading) = match builtin::render(observer, &metric.name, &model) {
                Ok(q) => {
                    let r = self.prometheus.query(&self.canary_server(canary), &q).await;
                    (Some(q), r)
                }
                Err(e) => (None, Reading::Failed(e.to_string())),
            };
            let record = evaluate::judge(metric, kind, query, reading, subject, now);
            let record = if metric.min_samples.is_some() {
                // Serin: the number of canary requests the value was computed from.
                let sample = match builtin::render_sample(observer, &model) {
                    Ok(q) => self.prometheus.query(&self.canary_server(canary), &q).await,
                    Err(e) => Reading::Failed(e.to_string()),
                };
                evaluate::apply_sample(record, metric, sample)
            } else {
                record
            };
            out.push(record);
        }
        if let Some(r) = &metric.template_ref {
            let (query, reading, sample) = match parse_duration(metric.interval_or_default()) {
                Ok(interval) => {
                    self.run_template(canary, metric, r, &model, interval, now)
                        .await
                }
                Err(e) => (
                    None,
                    Reading::Failed(format!("metric {}: interval: {e}", metric.name)),
                    None,
                ),
            };
            let record = evaluate::judge(metric, Kind::Custom, query, reading, subject, now);
            out.push(match sample {
                Some(sample) => evaluate::apply_sample(record, metric, sample),
                None => record,
            });
        } else if let Some(q) = metric.query.as_deref().filter(|q| !q.trim().is_empty()) {
            // Flagger sends inline queries verbatim (no template rendering).
            let q = template::collapse_whitespace(q);
            let reading = self.prometheus.query(&self.canary_server(canary), &q).await;
            out.push(evaluate::judge(
                metric,
                Kind::Custom,
                Some(q),
                reading,
                subject,
                now,
            ));
        }
        out
    }

    /// The backend of MetricTemplate `ns/name` (`t`), with its Secret when it names one: read
    /// from the Canary's namespace only.
    async fn template_backend(
        &self,
        canary: &Canary,
        t: &MetricTemplate,
        ns: &str,
        name: &str,
    ) -> Result<Box<dyn provider::Provider>, String> {
        let canary_ns = canary.metadata.namespace.clone().unwrap_or_default();
        let p = &t.spec.provider;
        let mut config = ProviderConfig {
            spec: p.clone(),
            secret: None,
        };
        // A Prometheus template without an address queries the canary's metrics server.
        if matches!(p.type_.as_str(), "" | "prometheus")
            && p.address.as_deref().is_none_or(str::is_empty)
        {
            config.spec.address = Some(self.canary_server(canary).address);
        }
        if let Some(secret) = &p.secret_ref {
            // A template in another namespace must not make the controller read secrets there
            // on behalf of this canary.
            if ns != canary_ns {
                return Err(format!(
                    "MetricTemplate {ns}/{name}: secretRef {:?} is only read from the Canary's namespace {canary_ns:?}; move the template there",
                    secret.name
                ));
            }
            config.secret = Some(self.objects.secret_data(&canary_ns, &secret.name).await?);
        }
        registry::build(&config, self.kube.as_ref())
            .map_err(|e| format!("MetricTemplate {ns}/{name}: {e}"))
    }

    /// Serin: compares the canary's error rate with the primary's for a MetricTemplate that
    /// declares its per-version counts ([`baseline::template_queries`]).
    async fn judge_template(
        &self,
        canary: &Canary,
        metric: &CanaryMetric,
        r: &crate::api::canary::CrossNamespaceRef,
        judge: &crate::api::canary::CanaryJudge,
    ) -> CheckRecord {
        let now = self.now();
        let interval = match parse_duration(metric.interval_or_default()) {
            Ok(i) => i,
            Err(e) => {
                let msg = format!("metric {}: interval: {e}", metric.name);
                return baseline::error_record(metric, msg, now);
            }
        };
        let ns = template_namespace(canary, r);
        let t = match self.objects.metric_template(ns, &r.name).await {
            Ok(t) => t,
            Err(e) => return baseline::error_record(metric, e, now),
        };
        let collapse = provider::collapses_whitespace(&t.spec.provider.type_);
        let q = match baseline::template_queries(&t, &Model::for_metric(canary, metric), collapse) {
            Ok(q) => q,
            Err(e) => return baseline::error_record(metric, e.to_string(), now),
        };
        let backend = match self.template_backend(canary, &t, ns, &r.name).await {
            Ok(b) => b,
            Err(e) => return baseline::error_record(metric, e, now),
        };
        let ctx = QueryContext { interval, now };
        let count = |query: String| {
            let (backend, ctx) = (&backend, &ctx);
            async move {
                match backend.query(&query, ctx).await {
                    Reading::Value(v) if v.is_finite() => Ok(v),
                    Reading::Value(_) | Reading::Empty => Ok(0.0),
                    Reading::Failed(e) => Err(format!("{query}: {e}")),
                }
            }
        };
        let (cf, ct, pf, pt) = futures::join!(
            count(q.canary.failed.clone()),
            count(q.canary.total.clone()),
            count(q.primary.failed.clone()),
            count(q.primary.total.clone())
        );
        match (cf, ct, pf, pt) {
            (Ok(cf), Ok(ct), Ok(pf), Ok(pt)) => {
                use crate::core::judge::Proportion;
                let settings = baseline::settings(judge, metric);
                let j = crate::core::judge::error_rate(
                    Proportion::new(cf, ct),
                    Proportion::new(pf, pt),
                    &settings,
                );
                baseline::rate_record(metric, &j, &q.canary.total, now)
            }
            (Err(e), ..) | (_, Err(e), ..) | (.., Err(e), _) | (.., Err(e)) => {
                baseline::error_record(metric, e, now)
            }
        }
    }

    /// Runs a MetricTemplate's query and, when the metric sets `minSamples` and the template
    /// names one (annotation [`SAMPLE_QUERY_ANNOTATION`]), its sample query on the same backend.
    async fn run_template(
        &self,
        canary: &Canary,
        metric: &CanaryMetric,
        r: &crate::api::canary::CrossNamespaceRef,
        model: &Model,
        metric_interval: Duration,
        now: DateTime<Utc>,
    ) -> (Option<String>, Reading, Option<Reading>) {
        let ns = template_namespace(canary, r);
        let t = match self.objects.metric_template(ns, &r.name).await {
            Ok(t) => t,
            Err(e) => return (None, Reading::Failed(e), None),
        };
        let p = &t.spec.provider;
        let query = match template::render(&t.spec.query, model) {
            Ok(q) if provider::collapses_whitespace(&p.type_) => template::collapse_whitespace(&q),
            Ok(q) => q,
            Err(e) => {
                return (
                    None,
                    Reading::Failed(format!("MetricTemplate {ns}/{}: {e}", r.name)),
                    None,
                );
            }
        };
        let backend = match self.template_backend(canary, &t, ns, &r.name).await {
            Ok(b) => b,
            Err(e) => return (Some(query), Reading::Failed(e), None),
        };
        let ctx = QueryContext {
            interval: metric_interval,
            now,
        };
        let reading = backend.query(&query, &ctx).await;
        let sample_template = t
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SAMPLE_QUERY_ANNOTATION))
            .filter(|q| !q.trim().is_empty());
        let sample = match sample_template {
            Some(st) if metric.min_samples.is_some() => Some(match template::render(st, model) {
                Ok(q) => {
                    let q = if provider::collapses_whitespace(&p.type_) {
                        template::collapse_whitespace(&q)
                    } else {
                        q
                    };
                    backend.query(&q, &ctx).await
                }
                Err(e) => Reading::Failed(format!(
                    "MetricTemplate {ns}/{}: {SAMPLE_QUERY_ANNOTATION}: {e}",
                    r.name
                )),
            }),
            _ => None,
        };
        (Some(query), reading, sample)
    }

    /// Serin: compares the canary with the primary for one metric over its window (a builtin
    /// check, or a MetricTemplate that declares judge queries).
    async fn judge_metric(
        &self,
        canary: &Canary,
        metric: &CanaryMetric,
        judge: &crate::api::canary::CanaryJudge,
        subject: &Subject,
    ) -> CheckRecord {
        let now = self.now();
        if !metric.is_builtin() {
            return match &metric.template_ref {
                Some(r) => self.judge_template(canary, metric, r, judge).await,
                None => baseline::error_record(
                    metric,
                    format!(
                        "the judge compares builtin checks and MetricTemplates that declare judge queries, not {:?}",
                        metric.name
                    ),
                    now,
                ),
            };
        }
        let model = Model::for_metric(canary, metric);
        let observer = Observer::for_provider(&subject.provider);
        let latency = metric.name == builtin::DURATION;
        let q = match baseline::queries(observer, &model, latency) {
            Ok(q) => q,
            Err(e) => return baseline::error_record(metric, e.to_string(), now),
        };
        let settings = baseline::settings(judge, metric);
        let server = self.canary_server(canary);
        let count = |query: String| {
            let server = server.clone();
            async move {
                match self.prometheus.query(&server, &query).await {
                    Reading::Value(v) if v.is_finite() => Ok(v),
                    Reading::Value(_) | Reading::Empty => Ok(0.0),
                    Reading::Failed(e) => Err(format!("{query}: {e}")),
                }
            }
        };
        if latency {
            let (Some(cb), Some(pb)) = (q.canary.buckets.clone(), q.primary.buckets.clone()) else {
                return baseline::error_record(metric, "no histogram queries".into(), now);
            };
            // Bucket bounds in seconds, whatever the mesh's unit.
            let to_s = observer.duration_to_ms() / 1000.0;
            let histogram = |query: String| {
                let server = server.clone();
                async move {
                    self.prometheus
                        .query_buckets(&server, &query)
                        .await
                        .map(|b| {
                            crate::core::judge::Histogram::new(
                                b.into_iter().map(|(le, c)| (le * to_s, c)).collect(),
                            )
                        })
                        .map_err(|e| format!("{query}: {e}"))
                }
            };
            let (c, p) = futures::join!(histogram(cb.clone()), histogram(pb));
            match (c, p) {
                (Ok(c), Ok(p)) => {
                    let j =
                        crate::core::judge::latency(&c, &p, baseline::LATENCY_QUANTILE, &settings);
                    baseline::latency_record(metric, &j, c.total(), &cb, now)
                }
                (Err(e), _) | (_, Err(e)) => baseline::error_record(metric, e, now),
            }
        } else {
            let (ct, cs, pt, ps) = futures::join!(
                count(q.canary.total.clone()),
                count(q.canary.successes.clone()),
                count(q.primary.total.clone()),
                count(q.primary.successes.clone())
            );
            match (ct, cs, pt, ps) {
                (Ok(ct), Ok(cs), Ok(pt), Ok(ps)) => {
                    use crate::core::judge::Proportion;
                    let j = crate::core::judge::error_rate(
                        Proportion::new(ct - cs, ct),
                        Proportion::new(pt - ps, pt),
                        &settings,
                    );
                    baseline::rate_record(metric, &j, &q.canary.total, now)
                }
                (Err(e), ..) | (_, Err(e), ..) | (.., Err(e), _) | (.., Err(e)) => {
                    baseline::error_record(metric, e, now)
                }
            }
        }
    }

    /// Flagger's startup probe of the default metrics server.
    pub async fn probe_default_server(&self) -> Result<(), super::prometheus::Error> {
        self.prometheus
            .probe(&Endpoint::plain(&self.default_server))
            .await
    }
}

#[async_trait]
impl<O: Objects> MetricsChecker for Analyzer<O> {
    async fn check(&self, canary: &Canary) -> AnalysisReport {
        let subject = Subject {
            name: canary.metadata.name.clone().unwrap_or_default(),
            namespace: canary.metadata.namespace.clone().unwrap_or_default(),
            target: canary.spec.target_name(),
            provider: builtin::metrics_provider(canary, &self.mesh_provider),
        };
        // Flagger's `{{ route }}` for Knative is the latest created revision, read per tick.
        let knative =
            canary.spec.provider.as_deref() == Some("knative") || self.mesh_provider == "knative";
        let route = if knative && !canary.spec.metrics().is_empty() {
            Some(
                self.objects
                    .knative_latest_revision(&subject.namespace, &subject.target)
                    .await,
            )
        } else {
            None
        };
        let checks = canary
            .spec
            .metrics()
            .iter()
            .map(|m| self.check_metric(canary, m, &subject, route.as_ref()));
        let mut records: Vec<CheckRecord> = futures::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect();
        if let Some(analysis) = &canary.spec.analysis
            && let Some(judge) = &analysis.judge
        {
            let judged = baseline::judged(analysis)
                .into_iter()
                .map(|m| self.judge_metric(canary, m, judge, &subject));
            records.extend(futures::future::join_all(judged).await);
        }
        AnalysisReport {
            verdict: evaluate::verdict(&records, canary.spec.inconclusive_policy()),
            records,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Objects with one Knative Service whose latest created revision is `podinfo-00002`.
    struct Knative(Option<&'static str>);

    #[async_trait]
    impl Objects for Knative {
        async fn metric_template(&self, ns: &str, name: &str) -> Result<MetricTemplate, String> {
            Err(format!("no MetricTemplate {ns}/{name}"))
        }
        async fn secret_data(
            &self,
            ns: &str,
            name: &str,
        ) -> Result<BTreeMap<String, Vec<u8>>, String> {
            Err(format!("no Secret {ns}/{name}"))
        }
        async fn knative_latest_revision(&self, ns: &str, name: &str) -> Result<String, String> {
            self.0
                .map(str::to_string)
                .ok_or_else(|| format!("Knative Service {ns}/{name} not found"))
        }
    }

    fn knative_canary() -> Canary {
        serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "provider": "knative",
                "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"},
                "analysis": {"interval": "1m", "threshold": 2, "stepWeight": 10, "metrics": [
                    {"name": "request-success-rate", "interval": "1m", "thresholdRange": {"min": 99}}
                ]}
            }
        }))
        .unwrap_or_else(|e| panic!("fixture canary: {e}"))
    }

    // Nothing listens on port 1: the query fails, but its text is in the decision record.
    const NO_PROMETHEUS: &str = "http://127.0.0.1:1";

    #[tokio::test]
    async fn knative_route_is_the_latest_created_revision() {
        let checker = Analyzer::new(Knative(Some("podinfo-00002")), NO_PROMETHEUS, "istio")
            .unwrap_or_else(|e| panic!("{e}"));
        let report = checker.check(&knative_canary()).await;
        let query = report.records.first().and_then(|r| r.query.clone());
        assert_eq!(
            query.as_deref(),
            Some(
                r#"sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"test/podinfo-00002", envoy_response_code!~"5.*" }[1m] ) ) / sum( rate( envoy_cluster_upstream_rq{ envoy_cluster_name=~"test/podinfo-00002", }[1m] ) ) * 100"#
            )
        );
    }

    #[tokio::test]
    async fn an_unreadable_knative_service_fails_the_check_instead_of_querying_the_target() {
        let checker =
            Analyzer::new(Knative(None), NO_PROMETHEUS, "istio").unwrap_or_else(|e| panic!("{e}"));
        let report = checker.check(&knative_canary()).await;
        assert_eq!(report.records.len(), 1);
        assert_eq!(report.records[0].query, None);
        assert!(
            report.records[0]
                .message
                .as_deref()
                .is_some_and(|m| m.contains("Knative Service test/podinfo not found")),
            "{:?}",
            report.records[0]
        );
    }
}
